"""Lion (``lion``, ``clion``, ``lionc``, ``clionc``) against timm's ``Lion``: decay, caution, maximize, and the
corrected decay under a schedule.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


# Sign updates are discontinuous; in these runs no component of the interpolated momentum sits within rounding of
# zero (measured errors ~1e-6, a single flipped sign would show as ~2*lr/displacement ~ 5e-2).

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.5),
    dict(weight_decay=0.5, caution=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, betas=(0.8, 0.95), caution=True, maximize=True),
])
def test_lion(kwargs):
    alias_parity(_timm().Lion, jt.optim.lion, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('caution', [False, True])
def test_lion_corrected_decay_with_schedule(caution):
    timm_cls = _timm().Lion
    r = scheduled_parity(timm_cls, jt.optim.lion, peak=0.02, weight_decay=2.0, caution=caution,
                   corrected_weight_decay=True)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.lion, peak=0.02, weight_decay=2.0, caution=caution)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance
