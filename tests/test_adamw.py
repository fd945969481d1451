"""AdamW against ``torch.optim.AdamW`` and AdamWLegacy against timm's ``AdamWLegacy``: amsgrad, caution,
update clipping and the corrected decay under a schedule.
"""
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity
from parity import alias_parity, linear_decay, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, amsgrad=True),  # torch keeps max of the raw second moment
    dict(weight_decay=0.0, betas=(0.8, 0.95), eps=1e-6),
    dict(weight_decay=0.1, maximize=True),
])
def test_adamw(kwargs):
    alias_parity(torch.optim.AdamW, jt.optim.adamw, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1, amsgrad=True),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, caution=True, amsgrad=True),
])
def test_adamw_legacy(kwargs):
    timm_optim, _ = load_timm()
    alias_parity(timm_optim.AdamWLegacy, jt.optim.adamw_legacy, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(clipping_threshold=0.3, amsgrad=True),
    dict(clipping_threshold=0.3, caution=True, corrected_weight_decay=True),
    dict(clipping_threshold=1.0),
])
def test_adamw_legacy_clipping(kwargs):
    alias_parity(_timm().AdamWLegacy, jt.optim.adamw_legacy, weight_decay=0.1, **kwargs).check()


def test_adamw_legacy_corrected_decay_with_schedule():
    """Corrected decay only differs from plain decoupled decay when lr moves away from its peak."""
    timm_optim, _ = load_timm()
    peak, steps = 0.05, 30
    sched = linear_decay(peak, steps)
    r = run_parity(
        lambda m: timm_optim.AdamWLegacy(m.parameters(), lr=peak, weight_decay=0.5, corrected_weight_decay=True),
        lambda p: jt.optim.adamw_legacy(
            sched, weight_decay=0.5, corrected_weight_decay=True, max_lr=peak),
        steps=steps, torch_lr=lambda t: float(sched(t)))
    r.check()
    # and it is not the uncorrected trajectory
    plain = run_parity(
        lambda m: timm_optim.AdamWLegacy(m.parameters(), lr=peak, weight_decay=0.5),
        lambda p: jt.optim.adamw_legacy(sched, weight_decay=0.5),
        steps=steps, torch_lr=lambda t: float(sched(t)))
    diff = max(np.max(np.abs(r.ours[k] - plain.ours[k])) for k in r.ours)
    assert diff > 100 * 2e-4 * r.displacement
