"""``jt.transforms.packed``: an elementwise optimizer over all leaves in one flat buffer equals it per leaf."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt

# elementwise aliases with scalar hyperparameters (what packing is exact for), built with their registry defaults
ELEMENTWISE = ['sgd', 'momentum', 'sgdw', 'adam', 'adamw', 'nadam', 'nadamw', 'radam', 'lion', 'adabelief', 'laprop',
               'adamax', 'rmsproptf']
TREE = {'blocks': [{'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.full((4,), 0.3, jnp.float32)}],
        'head': jnp.linspace(0.5, -0.5, 7), 'scalar': jnp.asarray(0.25, jnp.float32)}


def _alias(name):
    info = jt.get_optimizer_info(name)
    momentum = {'momentum': 0.9} if info.has_momentum else {}
    return info.alias(**{**info.defaults, 'learning_rate': 1e-2, 'weight_decay': 0.05, **momentum})


@pytest.mark.parametrize('name', ELEMENTWISE)
def test_packed_equals_per_leaf(name):
    per_leaf, flat = _alias(name), jt.transforms.packed(_alias(name))
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


def test_packed_state_is_flat():
    tx = jt.transforms.packed(jt.optim.adamw(1e-3))
    state = tx.init(TREE)
    n = sum(x.size for x in jax.tree.leaves(TREE))
    assert {x.shape for x in jax.tree.leaves(state) if x.ndim} == {(n,)}


def test_packed_rejects_mixed_dtypes():
    with pytest.raises(ValueError, match='one dtype'):
        jt.transforms.packed(jt.optim.adamw(1e-3)).init({'a': jnp.ones(3), 'b': jnp.ones(2, jnp.bfloat16)})


def test_packed_empty_tree():
    tx = jt.transforms.packed(jt.optim.adamw(1e-3))
    updates, _ = tx.update({}, tx.init({}), {})
    assert updates == {}
