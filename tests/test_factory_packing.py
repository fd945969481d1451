"""``create_optimizer_v2(..., pack_leaves=n)``: every packable registered name equals the per-leaf factory."""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from _steps import run_steps

# three same-shape blocks (stacks of 2 with pack_leaves=2), decayed 2-d weights and undecayed 1-d biases
TREE = {
    'embed': jnp.linspace(-0.3, 0.6, 20).reshape(4, 5),
    'blocks': {str(i): {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4) * (i + 1),
                        'b': jnp.linspace(0.1, 0.4, 4) * (i + 1)} for i in range(3)},
    'head': {'weight': jnp.linspace(0.5, -0.5, 28).reshape(4, 7), 'bias': jnp.linspace(-0.2, 0.2, 7)},
}
MATCHER = {'stem': r'^embed', 'blocks': r'^blocks\.(\d+)'}
# the names with an exact packed form (the record's packing: not kron, adahessian; SAM packs its base)
NAMES = sorted(n for n in jt.list_optimizers() if jt.get_optimizer_info(n).packing is not None)
# vmapped per-tensor norms (stacked names) may sum in another order than per leaf: float32 rounding over 5
# steps, worst measured 2.8e-6 (novogradw). A misplaced statistic (a norm over a buffer, a caution mask
# normalised over two leaves, Lamb's clip per group) moves the numbers by 1e-3 or more (the controls below).
RTOL, ATOL = 5e-6, 1e-7


def _run(tx, steps=5, tree=TREE):
    return run_steps(tx, tree, steps)


def _assert_same(a_tree, b_tree, rtol=RTOL, atol=ATOL):
    assert jax.tree.structure(a_tree) == jax.tree.structure(b_tree)
    for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _max_rel(a_tree, b_tree):
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(b)) + 1e-6)))
               for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)))


@pytest.mark.parametrize('name', NAMES)
def test_pack_leaves_equals_per_leaf(name):
    kw = dict(lr=1e-2, weight_decay=0.05)
    per_leaf = _run(jt.create_optimizer_v2(TREE, name, **kw))[0]
    tx = jt.create_optimizer_v2(TREE, name, pack_leaves=2, **kw)
    _assert_same(_run(tx)[0], per_leaf)
    mode = jt.optim.packing_mode(name)

    def arrays(t):
        return [x for x in jax.tree.leaves(jax.eval_shape(t.init, TREE))
                if x.ndim and jnp.issubdtype(x.dtype, jnp.floating)]
    per_leaf_state, state = arrays(jt.create_optimizer_v2(TREE, name, **kw)), arrays(tx)
    if mode == 'packed' and per_leaf_state:  # 9 leaves in 5 buffers: fewer state arrays, the same elements
        assert len(state) < len(per_leaf_state)
        assert sum(x.size for x in state) == sum(x.size for x in per_leaf_state)
    else:  # the blocks' same-shape weights (and biases) in stacks of 2
        assert mode == 'stacked' and any(x.ndim >= 2 and x.shape[0] == 2 for x in state), state


@pytest.mark.parametrize('name', ['adamw', 'lamb', 'cadamw', 'lars', 'muon'])
def test_pack_leaves_with_layer_decay_frozen_leaves_and_fallback(name):
    kw = dict(lr=1e-2, weight_decay=0.05, layer_decay=0.75, layer_decay_no_opt_scale=0.5, group_matcher=MATCHER)
    if name == 'muon':
        kw['fallback_list'] = ['head.*']
    per_leaf = _run(jt.create_optimizer_v2(TREE, name, **kw))[0]
    packed = _run(jt.create_optimizer_v2(TREE, name, pack_leaves=3, **kw))[0]
    _assert_same(packed, per_leaf)
    frozen = [k for k in ('embed',) if np.array_equal(np.asarray(packed[k]), np.asarray(TREE[k]))]
    assert frozen == ['embed']  # scale 0.75**4 < 0.5: excluded from optimization, as timm does
    assert not np.array_equal(np.asarray(packed['head']['weight']), np.asarray(TREE['head']['weight']))


def test_controls_a_misplaced_statistic_is_caught():
    """The tree and steps above tell a per-tensor statistic from a per-buffer one, and a global clip from a
    per-group one: each wrong build differs from the per-leaf factory far beyond the tolerance."""
    kw = dict(lr=1e-2, weight_decay=0.05)
    for name, wrong in [
        ('cadamw', jt.transforms.packed(jt.optim.adamw_legacy(1e-2, weight_decay=0.05, caution=True), 2)),
        ('lars', jt.transforms.packed(jt.optim.lars(1e-2, weight_decay=0.05, momentum=0.9), 2)),
    ]:
        ref = _run(jt.optim.adamw_legacy(1e-2, weight_decay=0.05, caution=True) if name == 'cadamw'
                   else jt.optim.lars(1e-2, weight_decay=0.05, momentum=0.9))[0]
        assert _max_rel(_run(wrong)[0], ref) > 1e-3, name
    # Lamb clipped per weight-decay group instead of over every leaf
    decay = {'embed': 'd', 'blocks': {k: {'w': 'd', 'b': 'n'} for k in TREE['blocks']},
             'head': {'weight': 'd', 'bias': 'n'}}
    per_group = optax.multi_transform(
        {'d': jt.optim.lamb(1e-2, weight_decay=0.05), 'n': jt.optim.lamb(1e-2, weight_decay=0.0)}, decay)
    ref = _run(jt.create_optimizer_v2(TREE, 'lamb', **kw))[0]
    assert _max_rel(_run(per_group)[0], ref) > 1e-3


@pytest.mark.parametrize('name', ['kron', 'kronw', 'adahessian'])
def test_pack_leaves_rejects_names_without_an_exact_form(name):
    with pytest.raises(ValueError, match=f"pack_leaves for optimizer '{name}'"):
        jt.create_optimizer_v2(TREE, name, lr=1e-2, pack_leaves=4)


@pytest.mark.parametrize('value', [0, -3, 2.5, 'x'])
def test_pack_leaves_rejects_bad_values(value):
    with pytest.raises((ValueError, TypeError), match='pack_leaves'):
        jt.create_optimizer_v2(TREE, 'adamw', lr=1e-2, pack_leaves=value)


def test_packing_mode():
    assert jt.optim.packing_mode('adamw') == 'packed'
    assert jt.optim.packing_mode('cadamw') == 'stacked'  # caution's mask mean is per tensor
    assert jt.optim.packing_mode('adamw', caution=True) == 'stacked'
    assert jt.optim.packing_mode('lookahead_lion') == 'packed'
    assert jt.optim.packing_mode('lamb') == 'stacked'
    with pytest.raises(ValueError, match='kron'):
        jt.optim.packing_mode('kron')


def test_pack_leaves_caution_kwarg_and_lookahead():
    kw = dict(lr=1e-2, weight_decay=0.05)
    _assert_same(_run(jt.create_optimizer_v2(TREE, 'lion', caution=True, pack_leaves=2, **kw))[0],
                 _run(jt.create_optimizer_v2(TREE, 'lion', caution=True, **kw))[0])
    _assert_same(_run(jt.create_optimizer_v2(TREE, 'lookahead_adamw', pack_leaves=2, **kw), steps=7)[0],
                 _run(jt.create_optimizer_v2(TREE, 'lookahead_adamw', **kw), steps=7)[0])


def test_pack_leaves_from_the_command_line_kwargs():
    """timm's argparse form: ``opt_args={'pack_leaves': n}`` reaches the factory through ``optimizer_kwargs``."""
    ns = argparse.Namespace(opt='adamw', lr=1e-2, weight_decay=0.05, momentum=0.9, opt_args={'pack_leaves': 2})
    tx = jt.create_optimizer(ns, TREE)
    assert len([x for x in jax.tree.leaves(tx.init(TREE)) if x.ndim]) < 2 * len(jax.tree.leaves(TREE))  # packed
    _assert_same(_run(tx)[0], _run(jt.create_optimizer_v2(TREE, 'adamw', lr=1e-2, weight_decay=0.05))[0])
