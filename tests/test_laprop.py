"""LaProp (``laprop``, ``claprop``, ``lapropc``) against timm's ``LaProp``: decay, caution, a schedule (the lr
history in the momentum and its bias correction) and the corrected decay.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.5),  # decay applied to the already-updated params
    dict(weight_decay=0.5, caution=True),
    dict(weight_decay=0.1, betas=(0.8, 0.95), eps=1e-3),
])
def test_laprop(kwargs):
    alias_parity(_timm().LaProp, jt.optim.laprop, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1),  # the lr history lives in the momentum and in the lr-EMA bias correction
    dict(weight_decay=0.1, caution=True),
])
def test_laprop_with_schedule(kwargs):
    scheduled_parity(_timm().LaProp, jt.optim.laprop, **kwargs).check()


def test_laprop_corrected_decay_with_schedule():
    timm_cls = _timm().LaProp
    r = scheduled_parity(timm_cls, jt.optim.laprop, weight_decay=0.5, corrected_weight_decay=True)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.laprop, weight_decay=0.5)
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement
