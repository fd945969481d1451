"""Adan (``adan``, ``adanw``, ``cadan``, ``cadanw``) against timm's ``Adan``: proximal and plain decay, caution
and a schedule.
"""
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # proximal: divide the updated params by 1 + lr*wd
    dict(weight_decay=0.1, no_prox=True),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, no_prox=True, caution=True, betas=(0.3, 0.6, 0.9), eps=1e-4),
])
def test_adan(kwargs):
    alias_parity(_timm().Adan, jt.optim.adan, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('no_prox', [False, True])
def test_adan_with_schedule(no_prox):
    scheduled_parity(_timm().Adan, jt.optim.adan, weight_decay=0.5, no_prox=no_prox).check()
