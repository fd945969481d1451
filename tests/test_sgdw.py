"""SGDW against timm's ``SGDW``: momentum, dampening, Nesterov, caution, maximize and the corrected decay under
a schedule.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(momentum=0.0, weight_decay=0.1),
    dict(momentum=0.9, caution=True, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, caution=True, weight_decay=0.1),
    dict(momentum=0.0, caution=True, weight_decay=0.1),  # timm ignores caution without momentum
    dict(momentum=0.9, nesterov=True, weight_decay=0.1, corrected_weight_decay=True),  # float lr: == plain
])
def test_sgdw(kwargs):
    alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, **kwargs).check()


def test_sgdw_maximize():
    alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, steps=8, momentum=0.9, nesterov=True, maximize=True,
                 caution=True, weight_decay=0.01).check()


def test_sgdw_caution_changes_the_trajectory():
    on = alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, momentum=0.9, caution=True, weight_decay=0.1)
    off = alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, momentum=0.9, weight_decay=0.1)
    assert trajectory_diff(on, off) > 20 * 2e-4 * on.displacement


@pytest.mark.parametrize('caution', [False, True])
def test_sgdw_corrected_decay_with_schedule(caution):
    timm_cls = _timm().SGDW
    kw = dict(momentum=0.9, nesterov=True, weight_decay=0.5, caution=caution)
    r = scheduled_parity(timm_cls, jt.optim.sgdw, peak=0.02, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.sgdw, peak=0.02, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement
