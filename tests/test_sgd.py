"""SGD against ``torch.optim.SGD``: momentum, dampening (torch seeds the buffer with g_1), Nesterov, maximize.
"""
import pytest
import torch

import jaxopt_timm as jt
from parity import alias_parity


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.1),  # torch seeds the buffer with g_1: differs from optax.trace
    dict(momentum=0.8, nesterov=True, weight_decay=0.05),
    dict(momentum=0.0),
])
def test_sgd(kwargs):
    alias_parity(torch.optim.SGD, jt.optim.sgd, lr=1e-2, **kwargs).check()


def test_sgd_maximize():
    # ascending the (quartic) harness loss runs away: few steps keep it finite
    alias_parity(torch.optim.SGD, jt.optim.sgd, lr=1e-2, steps=8, momentum=0.9, maximize=True,
                 weight_decay=0.01).check()
