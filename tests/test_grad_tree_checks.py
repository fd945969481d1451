"""Grads that do not fit the params are refused by every alias, naming the leaf (issue: silent broadcasting).

A ``(1, 3)`` grad for a ``(4, 3)`` param, or a scalar grad, used to be broadcast by the elementwise math; a
grads tree missing or adding a leaf failed with JAX's generic pytree message. The guard every registered alias
is wrapped in (``jaxopt_timm.optim._guard``) checks at trace time; these tests also pin what the guard must
not change: the state structure, the signature and the records' aliases.
"""
import inspect
import re

import jax
import jax.numpy as jnp
import optax
import pytest

import jaxopt_timm as jt
from _steps import update_extras

NAMES = jt.list_optimizers()
PARAMS = {'fc': {'weight': jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), 'bias': jnp.full((4,), 0.1)}}


def _alias_tx(name, **kwargs):
    """The name's alias called with its record's defaults, as a user would call ``jt.optim.<alias>``."""
    info = jt.get_optimizer_info(name)
    args = dict(info.defaults, learning_rate=1e-2, **kwargs)
    if info.has_momentum:
        args.setdefault('momentum', 0.9)
    return info.alias(**args)


def _with(tree, **leaves):
    return {'fc': {**tree['fc'], **leaves}}


@pytest.mark.parametrize('name', NAMES)
def test_every_alias_refuses_misshapen_grads(name):
    tx = _alias_tx(name)
    state = tx.init(PARAMS)
    bad = {
        "'fc.weight' has a grad of shape (1, 3) for a param of shape (4, 3)": _with(PARAMS, weight=jnp.ones((1, 3))),
        "'fc.weight' has a grad of shape () for a param of shape (4, 3)": _with(PARAMS, weight=jnp.ones(())),
        "missing leaves ['fc.bias']": {'fc': {'weight': PARAMS['fc']['weight']}},
        "extra leaves ['fc.scale']": _with(PARAMS, scale=jnp.ones(4)),
    }
    extra = update_extras(name)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))  # shapes are static: refused while tracing
    for message, grads in bad.items():
        with pytest.raises(ValueError, match='Invalid grads: .*' + re.escape(message)):
            step(grads, state, PARAMS)


@pytest.mark.parametrize('pack_leaves', [None, 2])
@pytest.mark.parametrize('name', ['adamw', 'lamb', 'lars', 'lookahead_sgd'])
def test_factory_refuses_misshapen_grads_by_name(name, pack_leaves):
    """Packed buffers or partitions inside; the message still names the user's leaf."""
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.05, pack_leaves=pack_leaves)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"'fc\.weight' has a grad of shape \(1, 3\) for a param of shape \(4, 3\)"):
        tx.update(_with(PARAMS, weight=jnp.ones((1, 3))), state, PARAMS)
    with pytest.raises(ValueError, match=r"missing leaves \['fc\.bias'\]"):
        tx.update({'fc': {'weight': PARAMS['fc']['weight']}}, state, PARAMS)


def test_without_params_grads_are_checked_against_init():
    """No params: the shapes init sized the momentum from are the reference (nothing added to the state)."""
    tx = jt.optim.sgd(1e-2, momentum=0.9)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"'fc\.weight' has a grad of shape \(1, 3\) for a param of shape \(4, 3\)"):
        tx.update(_with(PARAMS, weight=jnp.ones((1, 3))), state)
    with pytest.raises(ValueError, match=r"missing leaves \['fc\.bias'\]"):
        tx.update({'fc': {'weight': PARAMS['fc']['weight']}}, state)
    updates, _ = tx.update(PARAMS, state)  # fitting grads still step
    assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)


def test_integer_and_none_leaves_pass():
    params = {'w': jnp.ones((2, 2)), 'steps': jnp.asarray(3, jnp.int32), 'nothing': None}
    tx = jt.create_optimizer_v2(params, 'adamw', lr=1e-2)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert updates['nothing'] is None


@pytest.mark.parametrize('name', NAMES)
def test_guard_keeps_state_structure(name):
    """The guarded alias's state is the alias's own (``optax.tree.map_params`` and checkpoints rely on it)."""
    info = jt.get_optimizer_info(name)
    args = dict(info.defaults, learning_rate=1e-2)
    if info.has_momentum:
        args.setdefault('momentum', 0.9)
    guarded, original = info.alias(**args), info.alias.__wrapped__(**args)
    assert isinstance(guarded, optax.GradientTransformationExtraArgs)
    assert jax.tree.structure(guarded.init(PARAMS)) == jax.tree.structure(original.init(PARAMS))


def test_guarded_aliases_keep_their_identity():
    for name in NAMES:
        info = jt.get_optimizer_info(name)
        assert getattr(jt.optim, info.alias.__name__) is info.alias, name
        assert inspect.signature(info.alias) == inspect.signature(info.alias.__wrapped__), name
        assert info.alias.__doc__ == info.alias.__wrapped__.__doc__, name
    tx = optax.inject_hyperparams(jt.optim.adamw)(learning_rate=1e-2, weight_decay=0.1)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"'fc\.weight' has a grad of shape \(1, 3\)"):
        tx.update(_with(PARAMS, weight=jnp.ones((1, 3))), state, PARAMS)
