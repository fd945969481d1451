"""MARS (``mars``, ``cmars``) against timm's ``Mars``: AdamW and Lion types, the 1-d leaf switches, caution and
a schedule.
"""
import numpy as np
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, caution=True),
    dict(mars_type='lion', weight_decay=0.1),
    dict(mars_type='lion', caution=True),
    dict(optimize_1d=True, weight_decay=0.1),
    dict(optimize_1d=True, mars_type='lion', caution=True),
    dict(lr_1d_factor=0.5, betas_1d=(0.8, 0.95), gamma=0.2, weight_decay=0.1, eps=1e-4),
])
def test_mars(kwargs):
    alias_parity(_timm().Mars, jt.optim.mars, lr=1e-2, **kwargs).check()


def test_mars_1d_switches_change_the_1d_leaves():
    timm_cls = _timm().Mars
    base = alias_parity(timm_cls, jt.optim.mars, lr=1e-2)
    for kw in (dict(optimize_1d=True), dict(lr_1d_factor=0.5), dict(betas_1d=(0.5, 0.9))):
        other = alias_parity(timm_cls, jt.optim.mars, lr=1e-2, **kw)
        other.check()
        diff = float(np.max(np.abs(base.ours['conv.bias'] - other.ours['conv.bias'])))
        assert diff > 20 * 2e-4 * base.displacement, kw


def test_mars_with_schedule():
    scheduled_parity(_timm().Mars, jt.optim.mars, weight_decay=0.1, caution=True).check()
