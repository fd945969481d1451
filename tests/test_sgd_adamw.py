"""Distinctive switches of SGD, AdamW, AdamWLegacy and Lookahead against torch/timm classes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity
from parity import alias_parity, linear_decay


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


def test_corrected_decay_needs_peak_lr():
    with pytest.raises(ValueError, match='max_lr'):
        jt.optim.adamw_legacy(lambda t: 0.1, corrected_weight_decay=True)


@pytest.mark.parametrize('alpha,k', [(0.5, 6), (0.8, 3), (0.3, 1)])
def test_lookahead(alpha, k):
    timm_optim, _ = load_timm()
    r = run_parity(
        lambda m: timm_optim.Lookahead(torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1), alpha=alpha, k=k),
        lambda p: jt.optim.lookahead(jt.optim.adamw(1e-2, weight_decay=0.1), alpha=alpha, k=k),
        steps=20)
    r.check()


def test_lookahead_keeps_params_tree():
    params = {'a': jnp.ones((2, 3)), 'b': [jnp.zeros(2), jnp.ones(())]}
    tx = jt.optim.lookahead(jt.optim.sgd(0.1, momentum=0.9))
    state = tx.init(params)
    for _ in range(7):
        updates, state = tx.update(params, state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        params = optax.apply_updates(params, updates)
    assert jax.tree.structure(params) == jax.tree.structure({'a': 0, 'b': [0, 0]})
    slow = jax.tree.structure(state.slow)
    assert slow == jax.tree.structure(params)
