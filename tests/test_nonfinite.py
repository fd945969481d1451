"""Non-finite gradients and counters.

timm propagates a NaN/Inf gradient into the params (PyTorch users rely on
AMP's GradScaler to skip such steps). Ours do the same by default, for every
registered optimizer; the opt-in guard is the factory's ``skip_nonfinite=True``
(optax's ``apply_if_finite`` underneath), whose semantics are exactly what a
timm user gets from the scaler: the step is skipped, the inner state is kept,
and skipped steps are counted (``jt.optim.skipped_steps``).
"""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.transforms import safe_increment
from _steps import update_extras

NAMES = jt.list_optimizers()
PARAMS = {'w': jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), 'b': jnp.full((3,), 0.1, jnp.float32)}


def _extra(name):
    return update_extras(name)


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


@pytest.mark.parametrize('name', NAMES + ['lookahead_adamw'])
def test_skip_nonfinite_skips_counts_and_keeps_state(name):
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01, skip_nonfinite=True)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))
    state0 = tx.init(PARAMS)
    assert int(jt.optim.skipped_steps(state0)) == 0
    bad = _grads()
    bad['b'] = bad['b'].at[1].set(jnp.inf)
    updates, state1 = step(bad, state0, PARAMS)
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates) if u.size)
    nan = _grads()
    nan['w'] = nan['w'].at[2, 3].set(jnp.nan)
    _, state2 = step(nan, state1, PARAMS)
    assert int(jt.optim.skipped_steps(state2)) == 2
    for a, b in zip(jax.tree.leaves(state0.inner_state), jax.tree.leaves(state2.inner_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the next finite step is the one an uninterrupted run takes, and is not counted
    u_after, state3 = step(_grads(), state2, PARAMS)
    u_clean, _ = step(_grads(), state0, PARAMS)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), u_after, u_clean)
    assert int(jt.optim.skipped_steps(state3)) == 2


def test_skip_nonfinite_has_no_limit_on_consecutive_skips():
    """optax's default ``max_consecutive_errors`` (5) would apply the sixth NaN step; the option never does."""
    tx = jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-2, skip_nonfinite=True)
    state = tx.init(PARAMS)
    nan = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), _grads())
    for _ in range(8):
        updates, state = tx.update(nan, state, PARAMS)
        assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert int(jt.optim.skipped_steps(state)) == 8


def test_skip_nonfinite_is_a_bool_and_reaches_the_argparse_form():
    with pytest.raises(ValueError, match='skip_nonfinite'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-2, skip_nonfinite='yes')
    args = types.SimpleNamespace(opt='adamw', lr=1e-2, weight_decay=0.0, momentum=0.9, skip_nonfinite=True)
    assert jt.optimizer_kwargs(args)['skip_nonfinite'] is True
    state = jt.create_optimizer(args, PARAMS).init(PARAMS)
    assert int(jt.optim.skipped_steps(state)) == 0 and hasattr(state, 'total_notfinite')


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
