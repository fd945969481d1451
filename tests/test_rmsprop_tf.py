"""RMSpropTF (``rmsproptf``, ``rmsproptfc``) against timm's ``RMSpropTF``: centered, lr in momentum or not,
decoupled and corrected decay, caution, under a schedule.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(),  # momentum 0: plain TF RMSprop
    dict(weight_decay=0.1),
    dict(momentum=0.9, weight_decay=0.05),
    dict(momentum=0.9, centered=True, weight_decay=0.05),
    dict(momentum=0.9, lr_in_momentum=False, weight_decay=0.05),
    dict(momentum=0.9, decoupled_decay=True, weight_decay=0.1),
    dict(momentum=0.9, caution=True, weight_decay=0.05),
    dict(momentum=0.9, caution=True, lr_in_momentum=False, centered=True),
    dict(caution=True),  # timm ignores caution without momentum
    dict(momentum=0.5, alpha=0.99, eps=1e-3, centered=True),
])
def test_rmsprop_tf(kwargs):
    alias_parity(_timm().RMSpropTF, jt.optim.rmsprop_tf, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('lr_in_momentum', [True, False])
def test_rmsprop_tf_momentum_with_schedule(lr_in_momentum):
    """With a schedule, lr_in_momentum keeps past lrs in the buffer; the two settings must differ."""
    timm_cls = _timm().RMSpropTF
    r = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, momentum=0.9, weight_decay=0.05, lr_in_momentum=lr_in_momentum)
    r.check()
    other = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, momentum=0.9, weight_decay=0.05,
                       lr_in_momentum=not lr_in_momentum)
    assert trajectory_diff(r, other) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


def test_rmsprop_tf_corrected_decay_with_schedule():
    timm_cls = _timm().RMSpropTF
    kw = dict(momentum=0.9, weight_decay=0.5, decoupled_decay=True)
    r = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


def test_rmsprop_tf_caution_with_schedule():
    scheduled_parity(_timm().RMSpropTF, jt.optim.rmsprop_tf, momentum=0.9, caution=True, weight_decay=0.05).check()
