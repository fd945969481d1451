"""MADGRAD against timm's ``MADGRAD``: momentum on and off (x0 stored only with it), decoupled decay, and a
schedule (the group lr enters the dual-averaging weights).
"""
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9),
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True),  # decay shrinks p before the momentum average
    dict(momentum=0.0),  # x0 recomputed from p each step, none stored
    dict(momentum=0.0, weight_decay=0.1),
    dict(momentum=0.0, weight_decay=0.1, decoupled_decay=True),
    dict(momentum=0.5, eps=1e-3, weight_decay=0.01),  # timm adds eps to the lr inside lamb
])
def test_madgrad(kwargs):
    alias_parity(_timm().MADGRAD, jt.optim.madgrad, lr=1e-2, **kwargs).check()


def test_madgrad_state_has_x0_only_with_momentum():
    params = {'w': jnp.ones(3)}
    assert jt.optim.madgrad(momentum=0.9).init(params).x0 is not None
    assert jt.optim.madgrad(momentum=0.0).init(params).x0 is None


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True),
    dict(momentum=0.0, weight_decay=0.1),
])
def test_madgrad_with_schedule(kwargs):
    """The group lr enters the dual-averaging weights, so the trajectory depends on the lr history."""
    scheduled_parity(_timm().MADGRAD, jt.optim.madgrad, peak=0.02, **kwargs).check()
