"""Edge-case trees through the factory, for every registered optimizer.

None leaves are empty subtrees and pass through; integer/bool leaves (step
counters, masks) are frozen, as timm never optimizes a tensor that cannot
have a gradient; leaves frozen by ``param_group_fn`` (timm's
``requires_grad=False``) get zero updates and hold no state; every optimizer
also composes with ``optax.masked``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.optim import named_leaves
from _steps import update_extras

NAMES = jt.list_optimizers()
TREE = {
    'w': jnp.linspace(-1.0, 1.0, 20, dtype=jnp.float32).reshape(4, 5),
    'b': jnp.full((4,), 0.2, jnp.float32),
    'steps': jnp.asarray(7, jnp.int32),
    'mask': jnp.asarray([True, False]),
    'nothing': None,
}


def _extra(name):
    return update_extras(name)


def _grads(tree):
    return jax.tree.map(lambda p: (p + 0.5).astype(p.dtype) if jnp.issubdtype(p.dtype, jnp.floating)
                        else jnp.zeros_like(p), tree)


@pytest.mark.parametrize('name', NAMES)
def test_none_and_integer_leaves(name):
    tx = jt.create_optimizer_v2(TREE, name, lr=1e-2, weight_decay=0.01)
    state = tx.init(TREE)
    updates, state = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))(_grads(TREE), state, TREE)
    assert updates['nothing'] is None
    assert int(updates['steps']) == 0 and not bool(updates['mask'].any())
    assert updates['steps'].dtype == jnp.int32 and updates['mask'].dtype == jnp.bool_
    new = optax.apply_updates(TREE, updates)
    assert int(new['steps']) == 7
    # no float state was allocated for the integer leaves (the only params of size 2; a PRNG key is uint32[2])
    sizes = sorted({x.size for x in jax.tree.leaves(state) if x.ndim > 0 and jnp.issubdtype(x.dtype, jnp.floating)})
    assert 2 not in sizes, sizes


@pytest.mark.parametrize('name', NAMES)
def test_frozen_leaf_by_param_group_fn(name):
    params = {k: v for k, v in TREE.items() if k in ('w', 'b')}
    tx = jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01,
                                param_group_fn=lambda n, leaf: None if n == 'b' else {})
    state = tx.init(params)
    updates, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))(_grads(params), state, params)
    assert float(jnp.abs(updates['b']).max()) == 0.0
    # ADOPT's and SOAP's first step only seeds their statistics; Schedule-Free RAdam's first steps are silent
    assert float(jnp.abs(updates['w']).max()) > 0.0 or name.startswith(('adopt', 'cadopt', 'soap', 'sfradam')), name
    assert all(x.size != 4 for x in jax.tree.leaves(state) if x.ndim > 0)


@pytest.mark.parametrize('name', NAMES)
def test_optax_masked(name):
    params = {k: v for k, v in TREE.items() if k in ('w', 'b')}
    info = jt.get_optimizer_info(name)
    kwargs = dict(info.defaults)
    if info.has_momentum:
        kwargs.setdefault('momentum', 0.9)  # as the factory binds it (Nesterov needs momentum > 0)
    tx = optax.masked(info.alias(**kwargs, learning_rate=1e-2), {'w': True, 'b': False})
    state = tx.init(params)
    updates, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, **_extra(name)))(_grads(params), state, params)
    np.testing.assert_array_equal(np.asarray(updates['b']), np.asarray(_grads(params)['b']))  # passed through


def test_named_leaves_with_none():
    assert [n for n, _ in named_leaves(TREE)] == ['b', 'mask', 'steps', 'w']
