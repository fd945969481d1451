"""Non-finite gradients and counters.

timm propagates a NaN/Inf gradient into the params (PyTorch users rely on
AMP's GradScaler to skip such steps). Ours do the same by default, for every
registered optimizer; the opt-in guard is optax's own ``apply_if_finite``,
whose semantics are exactly what a timm user gets from the scaler: the step is
skipped, the inner state is kept, and skipped steps are counted.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.transforms import safe_increment

NAMES = jt.list_optimizers()
PARAMS = {'w': jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), 'b': jnp.full((3,), 0.1, jnp.float32)}


def _extra(name):
    return {'hvp_fn': (lambda v: v)} if jt.get_optimizer_info(name).second_order else {}


def _grads(scale=1.0):
    return jax.tree.map(lambda p: scale * (p + 0.3), PARAMS)


@pytest.mark.parametrize('name', NAMES)
def test_nan_gradient_propagates_like_timm(name):
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01)
    state = tx.init(PARAMS)
    g = _grads()
    g['w'] = g['w'].at[0, 0].set(jnp.nan)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))
    # the NaN reaches the update at once, or through the state on the next step (ADOPT's first step only
    # seeds its second moment)
    u1, state = step(g, state, PARAMS)
    u2, _ = step(_grads(), state, PARAMS)
    finite = [bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves((u1, u2))]
    assert not all(finite), f'{name}: a NaN gradient vanished; timm propagates it'


@pytest.mark.parametrize('name', NAMES)
def test_apply_if_finite_skips_and_keeps_state(name):
    tx = optax.apply_if_finite(jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01),
                               max_consecutive_errors=100)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))
    state0 = tx.init(PARAMS)
    bad = _grads()
    bad['b'] = bad['b'].at[1].set(jnp.inf)
    updates, state1 = step(bad, state0, PARAMS)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates) if u.size)
    assert int(state1.notfinite_count) == 1 and int(state1.total_notfinite) == 1
    for a, b in zip(jax.tree.leaves(state0.inner_state), jax.tree.leaves(state1.inner_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the next finite step is the one an uninterrupted run takes
    u_after, _ = step(_grads(), state1, PARAMS)
    u_clean, _ = step(_grads(), state0, PARAMS)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), u_after, u_clean)


def test_counters_saturate():
    top = jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32)
    assert int(safe_increment(top)) == int(top)
    assert int(safe_increment(top - 1)) == int(top)


@pytest.mark.parametrize('name', ['adamw', 'lamb', 'radam', 'nadam', 'adabelief', 'sgd', 'lion', 'adopt'])
def test_update_stays_finite_at_saturated_count(name):
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01)
    state = tx.init(PARAMS)
    top = jnp.iinfo(jnp.int32).max
    state = jax.tree.map(lambda x: jnp.full_like(x, top) if x.dtype == jnp.int32 and x.ndim == 0 else x, state)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))
    for _ in range(2):
        updates, state = step(_grads(), state, PARAMS)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), name
    counts = [int(x) for x in jax.tree.leaves(state) if x.dtype == jnp.int32 and x.ndim == 0]
    assert counts and all(c == top for c in counts)
