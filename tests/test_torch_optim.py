"""Adam, Adamax, Adadelta, Adagrad and RMSprop against their ``torch.optim`` classes: every switch, and the
lr decay and momentum buffer under a schedule.
"""
import pytest
import torch

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # L2: the decay enters both moments
    dict(weight_decay=0.1, amsgrad=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, decoupled_weight_decay=True),
    dict(betas=(0.8, 0.95), eps=1e-4, weight_decay=0.05, amsgrad=True, decoupled_weight_decay=True),
])
def test_adam(kwargs):
    alias_parity(torch.optim.Adam, jt.optim.adam, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, maximize=True),
    dict(betas=(0.8, 0.9), eps=1e-3, weight_decay=0.05),
])
def test_adamax(kwargs):
    alias_parity(torch.optim.Adamax, jt.optim.adamax, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(lr=1.0),
    dict(lr=1.0, weight_decay=0.1),
    dict(lr=0.5, weight_decay=0.1, maximize=True),
    dict(lr=1.0, rho=0.5, eps=1e-4, weight_decay=0.05),
])
def test_adadelta(kwargs):
    alias_parity(torch.optim.Adadelta, jt.optim.adadelta, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1, eps=1e-8),
    dict(weight_decay=0.1, lr_decay=0.05),  # lr / (1 + (t-1) * lr_decay)
    dict(initial_accumulator_value=0.5, lr_decay=0.01),
    dict(weight_decay=0.1, maximize=True),
])
def test_adagrad(kwargs):
    alias_parity(torch.optim.Adagrad, jt.optim.adagrad, lr=5e-2, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(alpha=0.9, weight_decay=0.1),
    dict(alpha=0.9, momentum=0.9, weight_decay=0.05),
    dict(alpha=0.9, centered=True, weight_decay=0.05),
    dict(alpha=0.9, momentum=0.9, centered=True, weight_decay=0.05),
    dict(alpha=0.9, momentum=0.5, eps=1e-3, weight_decay=0.05, maximize=True),
])
def test_rmsprop(kwargs):
    alias_parity(torch.optim.RMSprop, jt.optim.rmsprop, lr=1e-3, **kwargs).check()


def test_rmsprop_momentum_with_schedule():
    """torch keeps the lr out of RMSprop's momentum buffer, unlike timm's RMSpropTF."""
    scheduled_parity(torch.optim.RMSprop, jt.optim.rmsprop, peak=5e-3, alpha=0.9, momentum=0.9,
                     weight_decay=0.05).check()


def test_adagrad_lr_decay_with_schedule():
    scheduled_parity(torch.optim.Adagrad, jt.optim.adagrad, lr_decay=0.05, weight_decay=0.05).check()
