"""``jt.transforms.packed``: an elementwise optimizer over all leaves in one flat buffer equals it per leaf."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from _steps import run_steps
from benchmarks._variants import suite_rows

# The names checked: the benchmark's rows (what its 2,000-leaf table times packed or stacked) and records beyond
# them that packing also serves: adamax, adagrad and rmsprop (elementwise), adamp and sgdp (projections: per-tensor
# cosines), cadamw (timm's caution turns an elementwise optimizer per-tensor). Each is built from its record with
# its registry defaults and scalar hyperparameters (what packing is exact for), and split by the record's packing.
_CASES = suite_rows() + ['adamax', 'adagrad', 'rmsprop', 'adamp', 'sgdp', 'cadamw']
PACKABLE = [n for n in _CASES if jt.get_optimizer_info(n).packing_for() == 'packed']
STACKABLE = [n for n in _CASES if jt.get_optimizer_info(n).packing_for() == 'stacked']
TREE = {'blocks': [{'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.full((4,), 0.3, jnp.float32)}],
        'head': jnp.linspace(0.5, -0.5, 7), 'scalar': jnp.asarray(0.25, jnp.float32)}


def _alias(name):
    info = jt.get_optimizer_info(name)
    momentum = {'momentum': 0.9} if info.has_momentum else {}
    return info.alias(**{**info.defaults, 'learning_rate': 1e-2, 'weight_decay': 0.05, **momentum})


@pytest.mark.parametrize('name', PACKABLE)
def test_packed_equals_per_leaf(name):
    per_leaf, flat = _alias(name), jt.transforms.packed(_alias(name), leaves_per_buffer=2)  # 4 leaves: 2 buffers
    traces = [0]

    def step(tx):
        def f(p, s, g):
            traces[0] += 1
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s
        return jax.jit(f)

    runs = {}
    for key, tx in (('per_leaf', per_leaf), ('packed', flat)):
        p, s, f = TREE, tx.init(TREE), step(tx)
        for t in range(4):
            g = jax.tree.map(lambda x: jnp.sin(3.0 * x + t) + 0.1, p)
            p, s = f(p, s, g)
        runs[key] = p
    assert traces[0] == 2, traces  # one trace per variant over 4 steps
    assert jax.tree.structure(runs['packed']) == jax.tree.structure(TREE)
    for a, b in zip(jax.tree.leaves(runs['packed']), jax.tree.leaves(runs['per_leaf'])):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_cases_cover_both_packings():
    """The lists above are read from the records: a record losing its packing cannot empty a parametrization."""
    assert {'sgd', 'adamw', 'lion', 'adan', 'madgrad', 'adamax', 'adagrad', 'rmsprop'} <= set(PACKABLE)
    assert {'lamb', 'lars', 'novograd', 'mars', 'adafactor', 'muon', 'adamp', 'sgdp', 'cadamw'} <= set(STACKABLE)
    assert not {'kron', 'adahessian'} & set(PACKABLE + STACKABLE)


def test_packed_state_is_flat():
    tx = jt.transforms.packed(jt.optim.adamw(1e-3))
    state = tx.init(TREE)
    n = sum(x.size for x in jax.tree.leaves(TREE))
    assert {x.shape for x in jax.tree.leaves(state) if x.ndim} == {(n,)}


_run = run_steps


def _assert_same(a_tree, b_tree):
    assert jax.tree.structure(a_tree) == jax.tree.structure(b_tree)
    for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-6, atol=1e-7)


def test_packed_mixed_dtypes_get_one_buffer_each():
    tree = {'a': jnp.linspace(-1, 1, 5), 'b': jnp.linspace(0.2, 0.9, 6).astype(jnp.bfloat16),
            'c': jnp.full((2, 2), 0.7), 'd': jnp.full((3,), -0.4, jnp.bfloat16)}
    tx = jt.transforms.packed(jt.optim.adamw(1e-2, weight_decay=0.05))
    flat_p, flat_s = _run(tx, tree)
    _assert_same(flat_p, _run(jt.optim.adamw(1e-2, weight_decay=0.05), tree)[0])
    mu = [x for x in jax.tree.leaves(flat_s) if x.ndim][:2]  # the first moment's buffers: float32 a+c, bf16 b+d
    assert [(x.shape, x.dtype) for x in mu] == [((9,), jnp.float32), ((9,), jnp.bfloat16)]


def test_packed_leaves_per_buffer_and_max_leaf_size():
    tree = {f'p{i:03d}': jnp.linspace(-1.0, 1.0, 3 + i % 4) * (1 + i) for i in range(70)}
    tree['big'] = jnp.linspace(0.5, -0.5, 40)
    per_leaf = _run(jt.optim.lion(1e-2, weight_decay=0.1), tree)[0]
    tx = jt.transforms.packed(jt.optim.lion(1e-2, weight_decay=0.1), leaves_per_buffer=32, max_leaf_size=10)
    p, s = _run(tx, tree)
    _assert_same(p, per_leaf)
    sizes = [x.shape[0] for x in jax.tree.leaves(s) if x.ndim]
    leaves = jax.tree.leaves(tree)
    groups = jt.transforms.pack_groups(leaves, 32, 10)
    assert sorted(i for g in groups for i in g) == list(range(71))
    assert [len(g) for g in groups if len(g) > 1] == [32, 32, 6] and [leaves[g[0]].size for g in groups
                                                                      if len(g) == 1] == [40]
    assert sorted(sizes) == sorted(sum(leaves[i].size for i in g) for g in groups)


def test_packed_leaves_left_alone_keep_their_shape_and_buffers():
    """A leaf above ``max_leaf_size`` is updated in its own shape, in place: raveled, its donated step copied the
    params first (ResNet-50 AdamW with max_leaf_size=65536: 60 MB of temporaries and 43 ms vs 26 ms per leaf)."""
    tree = {'conv': jnp.linspace(-1.0, 1.0, 3 * 3 * 64 * 64).reshape(3, 3, 64, 64),
            'fc': jnp.linspace(1.0, -1.0, 256 * 128).reshape(256, 128),
            **{f'b{i}': jnp.linspace(-0.5, 0.5, 64) for i in range(6)}}
    tx = jt.transforms.packed(jt.optim.adamw(1e-2, weight_decay=0.05), max_leaf_size=1000)
    state = tx.init(tree)
    shapes = [x.shape for x in jax.tree.leaves(state) if x.ndim]
    assert sorted(shapes, key=len) == [(384,)] * 2 + [(256, 128)] * 2 + [(3, 3, 64, 64)] * 2, shapes

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(tree, state, tree).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    small_bytes = 6 * 64 * 4
    assert temp <= 4 * small_bytes, temp  # the packed small leaves' buffers only, never a big leaf's copy
    _assert_same(_run(tx, tree)[0], _run(jt.optim.adamw(1e-2, weight_decay=0.05), tree)[0])


@pytest.mark.parametrize('kwargs, match', [({'leaves_per_buffer': 0}, 'leaves_per_buffer: 0'),
                                           ({'leaves_per_buffer': 2.5}, 'leaves_per_buffer: 2.5'),
                                           ({'max_leaf_size': -1}, 'max_leaf_size: -1')])
def test_packed_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jt.transforms.packed(jt.optim.adamw(1e-3), **kwargs)


def test_packed_rejects_params_unlike_updates():
    tx = jt.transforms.packed(jt.optim.adamw(1e-3))
    tree = {'a': jnp.ones(3), 'b': jnp.ones(2)}
    with pytest.raises(ValueError, match='same leaf sizes and dtypes'):
        tx.update(tree, tx.init(tree), {'a': jnp.ones(3), 'b': jnp.ones(4)})


def test_packed_empty_tree():
    tx = jt.transforms.packed(jt.optim.adamw(1e-3))
    updates, _ = tx.update({}, tx.init({}), {})
    assert updates == {}


# 1-d and 2-d leaves of a few shapes, so per-tensor statistics (norms, factoring, Newton-Schulz) differ per leaf
MIXED = {**{f'w{i}': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4) * (i + 1) for i in range(5)},
         **{f'b{i}': jnp.linspace(0.3, -0.2, 4) * (i + 1) for i in range(3)},
         'c': jnp.linspace(-2.0, 2.0, 30).reshape(5, 6)}


@pytest.mark.parametrize('name', [n for n in STACKABLE if n != 'lamb'])
def test_stacked_equals_per_leaf(name):
    per_leaf = _run(_alias(name), MIXED, steps=5)[0]
    p, s = _run(jt.transforms.stacked(_alias(name), leaves_per_buffer=2), MIXED, steps=5)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(per_leaf)):
        assert a.shape == b.shape and a.dtype == b.dtype
        # float32 reassociation only: vmapped reductions may sum in another order than the per-leaf ones
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-7)
    # leaves in key order b0..b2, c, w0..w4: stacks [b0, b1], [b2], [c], [w0, w1], [w2, w3], [w4]
    assert jt.transforms.stack_groups(jax.tree.leaves(MIXED), 2) == [[0, 1], [2], [3], [4, 5], [6, 7], [8]]


def test_stacked_is_not_packed_for_per_tensor_statistics():
    """The test above can fail: packing LARS's leaves (one trust ratio per buffer) changes the numbers."""
    per_leaf = _run(_alias('lars'), MIXED, steps=3)[0]
    flat = _run(jt.transforms.packed(_alias('lars')), MIXED, steps=3)[0]
    moved = [(a - x, b - x)
             for a, b, x in zip(jax.tree.leaves(flat), jax.tree.leaves(per_leaf), jax.tree.leaves(MIXED))]
    # one trust ratio for the whole buffer instead of one per leaf: the distance moved differs by far more than 1%
    assert max(float(jnp.max(jnp.abs(da - db)) / jnp.max(jnp.abs(db))) for da, db in moved) > 1e-2


def test_stacked_rejects_bad_args_and_unlike_params():
    with pytest.raises(ValueError, match='leaves_per_buffer: 0'):
        jt.transforms.stacked(jt.optim.lars(0.1), leaves_per_buffer=0)
    tx = jt.transforms.stacked(jt.optim.lars(0.1))
    tree = {'a': jnp.ones((2, 3)), 'b': jnp.ones(3)}
    with pytest.raises(ValueError, match='same leaf shapes and dtypes'):
        tx.update(tree, tx.init(tree), {'a': jnp.ones((3, 2)), 'b': jnp.ones(3)})


def test_stacked_lamb_with_global_clip_in_front_equals_per_leaf():
    big = jax.tree.map(lambda x: 30.0 * x, MIXED)  # gradients ~sin(90 x): global norm > 1, so the clip acts
    info = jt.get_optimizer_info('lamb')
    args = {**info.defaults, 'learning_rate': 1e-2, 'weight_decay': 0.05}
    per_leaf = _run(info.alias(**args), big, steps=5)[0]
    tx = jt.transforms.stacked(info.alias(**args, max_grad_norm=None), leaves_per_buffer=2,
                               front=jt.optim.clip_by_global_norm_ratio(1.0))
    p = _run(tx, big, steps=5)[0]
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(per_leaf)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-6)
    # without the clip in front the numbers differ (the global norm is well above 1 here)
    q = _run(jt.transforms.stacked(info.alias(**args, max_grad_norm=None), leaves_per_buffer=2), big, steps=5)[0]
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(q), jax.tree.leaves(per_leaf))) > 1e-4


def test_stacked_empty_tree_and_scalar_leaves():
    tx = jt.transforms.stacked(jt.optim.lars(0.1))
    updates, _ = tx.update({}, tx.init({}), {})
    assert updates == {}
    tree = {'a': jnp.asarray(0.5, jnp.float32), 'b': jnp.asarray(-0.25, jnp.float32), 'c': jnp.linspace(1.0, 2.0, 4)}
    p = _run(jt.transforms.stacked(jt.optim.adamw(1e-2, weight_decay=0.1)), tree)[0]
    _assert_same(p, _run(jt.optim.adamw(1e-2, weight_decay=0.1), tree)[0])


def test_stacked_with_labels_runs_each_label_and_one_front():
    """``labels`` pick each leaf's transformation; stacks never mix labels; ``front`` sees every stack."""
    big = jax.tree.map(lambda x: 30.0 * x, MIXED)  # the global clip acts
    labels = {k: ('d' if k.startswith('w') or k == 'c' else 'n') for k in MIXED}
    inners = {'d': jt.optim.lamb(1e-2, weight_decay=0.05, max_grad_norm=None),
              'n': jt.optim.lamb(1e-2, weight_decay=0.0, max_grad_norm=None)}
    tx = jt.transforms.stacked(inners, 2, front=jt.optim.clip_by_global_norm_ratio(1.0), labels=labels)
    ref = optax.chain(jt.optim.clip_by_global_norm_ratio(1.0), optax.multi_transform(inners, labels))
    for a, b in zip(jax.tree.leaves(_run(tx, big, steps=5)[0]), jax.tree.leaves(_run(ref, big, steps=5)[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=1e-6)  # vmapped norms reassociate
    leaves = jax.tree.leaves(MIXED)
    groups = jt.transforms.stack_groups(leaves, 2, jax.tree.leaves(labels))
    assert all(len({jax.tree.leaves(labels)[i] for i in g}) == 1 for g in groups)
    with pytest.raises(ValueError, match="no transformation in inner for labels \\['n'\\]"):
        jt.transforms.stacked({'d': inners['d']}, labels=labels).init(MIXED)
    with pytest.raises(ValueError, match='inner must be a dict'):
        jt.transforms.stacked(inners['d'], labels=labels)
