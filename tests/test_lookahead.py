"""Lookahead against timm's ``Lookahead`` wrapping ``torch.optim.AdamW``, and the params tree it keeps.
"""
import jax
import jax.numpy as jnp
import optax
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity


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
