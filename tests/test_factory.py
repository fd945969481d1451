"""Factory, registry and construction-time validation (every registered name, table-driven)."""
import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.optim import named_leaves, weight_decay_tree
from _steps import update_extras

PARAMS = {
    'conv': {'weight': jnp.ones((4, 3, 3, 3)), 'bias': jnp.zeros(4)},
    'norm': {'weight': jnp.ones(4), 'bias': jnp.zeros(4)},
    'head': {'weight': jnp.ones((2, 4)), 'bias': jnp.zeros(2)},
    'pos_embed': jnp.zeros((1, 3, 4)),
}
NAMES = jt.list_optimizers()


def _flat(tree):
    return dict(named_leaves(tree))


def test_leaf_names_follow_key_paths():
    tree = {'blocks': [{'attn': {'qkv': {'weight': jnp.ones((3, 2))}}}], 'cls_token': jnp.zeros((1, 1, 2))}
    assert sorted(_flat(tree)) == ['blocks.0.attn.qkv.weight', 'cls_token']
    # a Flax linen variables dict is named from inside its 'params' collection
    assert sorted(_flat({'params': tree})) == ['blocks.0.attn.qkv.weight', 'cls_token']


def test_weight_decay_grouping_matches_timm_rules():
    wd = _flat(weight_decay_tree(PARAMS, 0.05))
    assert wd == {
        'conv.weight': 0.05, 'conv.bias': 0.0, 'norm.weight': 0.0, 'norm.bias': 0.0,
        'head.weight': 0.05, 'head.bias': 0.0, 'pos_embed': 0.05}
    wd = _flat(weight_decay_tree(PARAMS, 0.05, no_weight_decay_list=('pos_*', 'head.*')))
    assert wd['pos_embed'] == 0.0 and wd['head.weight'] == 0.0 and wd['conv.weight'] == 0.05
    wd = _flat(weight_decay_tree(PARAMS, 0.05, filter_bias_and_bn=False))
    assert set(wd.values()) == {0.05}
    assert set(_flat(weight_decay_tree(PARAMS, 0.0)).values()) == {0.0}


def test_filter_bias_and_bn_changes_the_update():
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    out = {}
    for flt in (True, False):
        tx = jt.create_optimizer_v2(PARAMS, 'adamw', lr=0.1, weight_decay=0.5, filter_bias_and_bn=flt)
        updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
        out[flt] = _flat(updates)
    assert float(jnp.abs(out[True]['norm.weight']).max()) == 0.0
    np.testing.assert_allclose(out[False]['norm.weight'], -0.1 * 0.5 * np.ones(4), rtol=1e-6)
    np.testing.assert_allclose(out[True]['conv.weight'], out[False]['conv.weight'])


def test_unknown_name_lists_closest():
    with pytest.raises(ValueError, match=r"(?s)unknown optimizer 'adamwx'.*adamw"):
        jt.create_optimizer_v2(PARAMS, 'adamwx')
    with pytest.raises(ValueError, match='Closest valid names'):
        jt.get_optimizer_info('lamc')
    with pytest.raises(ValueError, match='prefix'):
        jt.create_optimizer_v2(PARAMS, 'lookbehind_adamw')


def test_unknown_kwarg_is_named():
    with pytest.raises(ValueError, match='not_an_arg'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, not_an_arg=1)


def test_lr_none_uses_the_optimizer_default():
    tx = jt.create_optimizer_v2(PARAMS, 'adamw')  # torch AdamW: lr=1e-3, weight_decay from the factory
    ref = jt.optim.adamw(1e-3, weight_decay=0.0)
    g = jax.tree.map(jnp.ones_like, PARAMS)
    u1, _ = tx.update(g, tx.init(PARAMS), PARAMS)
    u2, _ = ref.update(g, ref.init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_allclose, u1, u2)


def test_create_optimizer_from_argparse():
    parser = argparse.ArgumentParser()
    parser.add_argument('--opt', default='sgd')
    parser.add_argument('--lr', type=float, default=None)
    parser.add_argument('--weight-decay', type=float, default=2e-5)
    parser.add_argument('--momentum', type=float, default=0.9)
    parser.add_argument('--opt-eps', type=float, default=None)
    parser.add_argument('--opt-betas', type=float, nargs='+', default=None)
    args = parser.parse_args(['--opt', 'adamw', '--lr', '0.01', '--opt-betas', '0.8', '0.9', '--opt-eps', '1e-6'])
    tx = jt.create_optimizer(args, PARAMS)
    ref = jt.create_optimizer_v2(PARAMS, 'adamw', lr=0.01, weight_decay=2e-5, betas=(0.8, 0.9), eps=1e-6)
    g = jax.tree.map(jnp.ones_like, PARAMS)
    u1, _ = tx.update(g, tx.init(PARAMS), PARAMS)
    u2, _ = ref.update(g, ref.init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_allclose, u1, u2)


def test_schedule_as_lr_through_the_factory():
    sched = lambda t: 0.1 * (0.5 ** t.astype(jnp.float32))  # noqa: E731
    tx = jt.create_optimizer_v2(PARAMS, 'momentum', lr=sched, momentum=0.0)
    g = jax.tree.map(jnp.ones_like, PARAMS)
    state = tx.init(PARAMS)
    for expect in (0.1, 0.05, 0.025):
        u, state = tx.update(g, state, PARAMS)
        np.testing.assert_allclose(u['conv']['weight'], -expect * np.ones((4, 3, 3, 3)), rtol=1e-6)


# ---- construction-time validation, every registered name -------------------------------------------------

def _build(name, **overrides):
    info = jt.get_optimizer_info(name)
    kwargs = dict(info.defaults)
    kwargs.update(overrides)
    return info.alias(**kwargs)


BAD_NUMBERS = [-0.5, float('nan'), float('inf')]


def _assert_names(exc, arg, value):
    """The message names the argument, shows the value and the accepted range."""
    msg = str(exc.value)
    assert arg in msg and repr(value) in msg and 'expected' in msg, msg
    assert re.search(r'[\[(][^\])]*, [^\])]*[\])]', msg), f'no range in: {msg}'


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('bad_lr', [-1e-3, float('nan'), float('inf')])
def test_bad_learning_rate(name, bad_lr):
    with pytest.raises(ValueError, match='learning_rate') as exc:
        _build(name, learning_rate=bad_lr)
    _assert_names(exc, 'learning_rate', bad_lr)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('bad', BAD_NUMBERS)
def test_bad_weight_decay(name, bad):
    with pytest.raises(ValueError, match='weight_decay') as exc:
        _build(name, learning_rate=1e-3, weight_decay=bad)
    _assert_names(exc, 'weight_decay', bad)


@pytest.mark.parametrize('name', [n for n in NAMES if jt.get_optimizer_info(n).has_betas])
@pytest.mark.parametrize('betas', [(1.0, 0.999), (-0.1, 0.999), (0.9, 1.5), (0.9, float('nan'))])
def test_bad_betas(name, betas):
    info = jt.get_optimizer_info(name)
    betas = tuple(betas) + (0.99,) * (info.num_betas - 2)
    with pytest.raises(ValueError, match=r'beta') as exc:
        _build(name, learning_rate=1e-3, betas=betas)
    assert 'expected' in str(exc.value), str(exc.value)


@pytest.mark.parametrize('name', [n for n in NAMES if jt.get_optimizer_info(n).has_eps])
@pytest.mark.parametrize('bad', [-1e-8, float('nan'), float('inf')])
def test_bad_eps(name, bad):
    with pytest.raises(ValueError, match='eps') as exc:
        _build(name, learning_rate=1e-3, eps=bad)
    _assert_names(exc, 'eps', bad)


@pytest.mark.parametrize('name', [n for n in NAMES if jt.get_optimizer_info(n).has_momentum])
@pytest.mark.parametrize('bad', BAD_NUMBERS)
def test_bad_momentum(name, bad):
    with pytest.raises(ValueError, match='momentum') as exc:
        _build(name, learning_rate=1e-3, momentum=bad)
    _assert_names(exc, 'momentum', bad)


def test_factory_validates_before_building():
    with pytest.raises(ValueError, match='lr'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=-1.0)
    with pytest.raises(ValueError, match='weight_decay'):
        jt.create_optimizer_v2(PARAMS, 'adamw', lr=1e-3, weight_decay=-1.0)


@pytest.mark.parametrize('name', NAMES)
def test_state_is_arrays_only_and_update_keeps_structure(name):
    jt.get_optimizer_info(name)
    tx = jt.create_optimizer_v2(PARAMS, name, lr=1e-2, weight_decay=0.01)
    state = tx.init(PARAMS)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))
    g = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), PARAMS)
    extra = update_extras(name)
    updates, state2 = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))(g, state, PARAMS)
    assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)
    assert jax.tree.structure(state2) == jax.tree.structure(state)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(PARAMS)):
        assert u.shape == p.shape and u.dtype == p.dtype
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_optax_chain_composition():
    tx = optax.chain(optax.clip_by_global_norm(1.0), jt.optim.adamw(1e-3))
    state = tx.init(PARAMS)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
    assert jax.tree.structure(updates) == jax.tree.structure(PARAMS)
