"""optax's conventions, on every registered name (optax's own ``alias_test`` checks these of its aliases).

- ``optax.tree.map_params(tx, f, state)``, optax's way to derive the state's
  shardings from the params', works for every name and applies ``f`` to
  exactly the state leaves that are copies of a param (a moment of leaf ``w``
  has ``w``'s shape and ends its key path with ``w``'s); factor matrices,
  factored statistics, counters and keys are left alone.
- ``optax.inject_hyperparams(alias)(...)`` with no ``static_args``: either the
  update equals the alias's own, or construction raises a ``ValueError``
  naming the argument to pass in ``static_args`` (an argument that decides
  state shapes or the step structure). Muon's family and RMSprop work.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from _fast_jit import fast_jit
from _steps import update_extras

NAMES = list(jt.list_optimizers()) + ['lookahead_adamw', 'lookahead_muon']
PARAMS = {
    'fc': {'weight': jnp.linspace(-1.0, 1.0, 30, dtype=jnp.float32).reshape(6, 5),
           'bias': jnp.linspace(0.1, 0.7, 7, dtype=jnp.float32)},
    'conv': jnp.linspace(-0.5, 0.5, 96, dtype=jnp.float32).reshape(2, 3, 4, 4),
}
GRADS = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, PARAMS)
PARAM_SHAPES = {tuple(path): leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(PARAMS)[0]}
MUST_INJECT = ('muon', 'nmuon', 'adamuon', 'nadamuon', 'rmsprop', 'adamw', 'sgd', 'lamb')


def _extra(name):
    return update_extras(name)


def _param_copies(state):
    """Key paths of the state leaves that copy a param: the path ends with a param's path and has its shape."""
    out = set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        for ppath, shape in PARAM_SHAPES.items():
            if tuple(path[-len(ppath):]) == ppath and np.shape(leaf) == shape:
                out.add(tuple(path))
    return out


@pytest.mark.parametrize('name', NAMES)
def test_map_params_maps_exactly_the_param_copies(name):
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01)
    state = tx.init(PARAMS)
    same = optax.tree.map_params(tx, lambda v: v, state)
    assert jax.tree.structure(same) == jax.tree.structure(state)

    seen = []

    def mark(leaf, param):
        # optax's documented is_leaf for states holding None or masked leaves in a params-shaped tree
        if leaf is None or isinstance(leaf, optax.MaskedNode):
            return leaf
        assert np.shape(leaf) == np.shape(param), (name, np.shape(leaf), np.shape(param))
        seen.append(np.shape(leaf))
        return jnp.full(np.shape(leaf), 7.0, jnp.float32)

    # with the params as an extra argument, as when deriving the state's shardings from the params'
    marked = optax.tree.map_params(tx, mark, state, PARAMS,
                                   transform_non_params=lambda v: jax.tree.map(lambda _: 0, v),
                                   is_leaf=lambda v: v is None or isinstance(v, optax.MaskedNode))
    leaves = jax.tree_util.tree_flatten_with_path(marked)[0]
    mapped = {tuple(p) for p, v in leaves if isinstance(v, jax.Array) and v.size and bool(jnp.all(v == 7.0))}
    assert mapped == _param_copies(state), name
    if jax.tree.leaves(state) and name not in ('sgd', 'adadelta'):
        assert seen, f'{name}: no state leaf mapped'


def _injectable(name):
    info = jt.get_optimizer_info(name)
    kw = dict(info.defaults, learning_rate=1e-2)
    if info.has_momentum:
        kw.setdefault('momentum', 0.9)
    return info.alias, kw


@pytest.mark.parametrize('name', list(jt.list_optimizers()))
def test_inject_hyperparams_without_static_args(name):
    alias, kw = _injectable(name)
    extra = _extra(name)
    injected = optax.inject_hyperparams(alias)(**kw)
    try:
        state = injected.init(PARAMS)
    except ValueError as err:
        assert name not in MUST_INJECT, f'{name}: {err}'
        msg = str(err)
        assert 'static_args' in msg
        named = [a for a in inspect.signature(alias).parameters if f"'{a}'" in msg.split('static_args=')[-1]]
        assert named, msg
        # and the advice works
        fixed = optax.inject_hyperparams(alias, static_args=tuple(named))(**kw)
        fixed.init(PARAMS)
        return
    step = fast_jit(lambda g, s, p: injected.update(g, s, p, **extra))
    ref = alias(**kw)
    ref_state = ref.init(PARAMS)
    params, ref_params = PARAMS, PARAMS
    for k in range(2):
        grads = jax.tree.map(lambda g: g * (1.0 + 0.5 * k), GRADS)
        u, state = step(grads, state, params)
        ru, ref_state = ref.update(grads, ref_state, ref_params, **extra)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ru)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7, err_msg=name)
        params, ref_params = optax.apply_updates(params, u), optax.apply_updates(ref_params, ru)


@pytest.mark.parametrize('ns_steps', [3, 7])
def test_muon_traced_ns_steps_matches_static(ns_steps):
    """A traced iteration count runs the same triples as the static one: truncated (3) and padded (7)."""
    injected = optax.inject_hyperparams(jt.optim.muon)(learning_rate=0.02, ns_steps=ns_steps)
    state = injected.init(PARAMS)
    u, _ = fast_jit(injected.update)(GRADS, state, PARAMS)
    ref = jt.optim.muon(0.02, ns_steps=ns_steps)
    ru, _ = ref.update(GRADS, ref.init(PARAMS), PARAMS)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ru)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    other = jt.optim.muon(0.02, ns_steps=5)
    ou, _ = other.update(GRADS, other.init(PARAMS), PARAMS)
    assert not np.allclose(np.asarray(ou['fc']['weight']), np.asarray(u['fc']['weight']), rtol=1e-4)
