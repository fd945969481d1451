"""NAdam against ``torch.optim.NAdam`` (momentum-decay schedule, L2 and decoupled decay) and NAdamLegacy
against timm's ``NAdamLegacy``.
"""
import pytest
import torch

import jaxopt_timm as jt
from parity import alias_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),  # L2, also in the Nesterov gradient term
    dict(weight_decay=0.1, decoupled_weight_decay=True),
    dict(weight_decay=0.05, momentum_decay=0.05),  # a fast-warming momentum schedule
    dict(weight_decay=0.0, momentum_decay=0.0, betas=(0.8, 0.99)),
    dict(weight_decay=0.1, maximize=True),
])
def test_nadam_torch(kwargs):
    alias_parity(torch.optim.NAdam, jt.optim.nadam, steps=30, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(weight_decay=0.05, schedule_decay=0.05, betas=(0.85, 0.99)),
])
def test_nadam_legacy(kwargs):
    alias_parity(_timm().NAdamLegacy, jt.optim.nadam_legacy, steps=30, **kwargs).check()
