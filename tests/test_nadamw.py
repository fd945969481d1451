"""NAdamW against timm's ``NAdamW``: decay, caution, maximize, the update clipping threshold (also
AdamWLegacy's) and the corrected decay under a schedule.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.0, betas=(0.8, 0.95), eps=1e-6),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, clipping_threshold=0.5),
    dict(weight_decay=0.1, clipping_threshold=0.5, caution=True),
])
def test_nadamw(kwargs):
    alias_parity(_timm().NAdamW, jt.optim.nadamw, **kwargs).check()


@pytest.mark.parametrize('alias', ['nadamw', 'adamw_legacy'])
def test_clipping_threshold_clips(alias):
    """A threshold well below the early update RMS (about 1) must change the trajectory, and still match timm."""
    timm_cls = {'nadamw': _timm().NAdamW, 'adamw_legacy': _timm().AdamWLegacy}[alias]
    ours = getattr(jt.optim, alias)
    clipped = alias_parity(timm_cls, ours, weight_decay=0.1, clipping_threshold=0.3)
    clipped.check()
    free = alias_parity(timm_cls, ours, weight_decay=0.1)
    assert trajectory_diff(clipped, free) > 20 * 2e-4 * clipped.displacement


@pytest.mark.parametrize('caution', [False, True])
def test_nadamw_corrected_decay_with_schedule(caution):
    timm_cls = _timm().NAdamW
    kw = dict(weight_decay=0.5, caution=caution, clipping_threshold=0.5)
    r = scheduled_parity(timm_cls, jt.optim.nadamw, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.nadamw, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement
