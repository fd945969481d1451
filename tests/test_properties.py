"""Property tests over random trees and hyperparameters, for every registered optimizer.

Properties: the update keeps the tree structure, shapes and dtypes; ``jit``
equals eager; the jitted step is traced once over 3 steps; finite in, finite
out. Trees are nested dicts and lists with 0-d to 4-d leaves, zero-size
leaves and float32/bfloat16/float16 leaves.

The hypothesis budget is fixed for the normal test command; set
``JAXOPT_TIMM_FUZZ_EXAMPLES`` for a longer run.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxopt_timm as jt
from _steps import update_extras

NAMES = jt.list_optimizers()
EXAMPLES = int(os.environ.get('JAXOPT_TIMM_FUZZ_EXAMPLES', '40'))
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
# jit and eager may round a fused float32 expression differently before it is stored in a low-precision state,
# which then moves by one unit of that dtype: compare relative to the leaf's largest update (as the parity
# metric does), at the dtype's resolution (float16 leaves keep float32 state, so only the output rounds)
RTOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2, jnp.float16: 4e-3}


def _leaf_shapes():
    dim = st.integers(1, 5)
    return st.one_of(
        st.just(()),
        st.tuples(dim),
        st.tuples(dim, dim),
        st.tuples(dim, dim, dim),
        st.tuples(dim, dim, st.integers(1, 3), st.integers(1, 3)),
        st.sampled_from([(0,), (3, 0), (0, 2, 2)]),  # zero-size leaves
    )


def _trees():
    leaf = st.tuples(_leaf_shapes(), st.sampled_from(sorted(DTYPES)))
    return st.recursive(
        st.dictionaries(st.sampled_from(['weight', 'bias', 'a', 'b']), leaf, min_size=1, max_size=3),
        lambda children: st.one_of(
            st.dictionaries(st.sampled_from(['blocks', 'head', 'x', 'y']), children, min_size=1, max_size=2),
            st.lists(children, min_size=1, max_size=2)),
        max_leaves=6)


def _materialize(spec, seed):
    rng = np.random.default_rng(seed)

    def leaf(s):
        shape, dtype = s
        return jnp.asarray(rng.standard_normal(shape).astype(np.float32) * 0.5, dtype=DTYPES[dtype])
    return jax.tree.map(leaf, spec, is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2
                        and isinstance(x[1], str))


def _check(name, params, lr, wd, seed=0):
    jt.get_optimizer_info(name)
    tx = jt.create_optimizer_v2(params, name, lr=lr, weight_decay=wd)
    rng = np.random.default_rng(seed + 1)
    grads_seq = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape).astype(np.float32), p.dtype),
                              params) for _ in range(3)]
    extra = update_extras(name)
    traces = [0]

    def step(g, s, p):
        traces[0] += 1
        u, s = tx.update(g, s, p, **extra)
        return u, s

    jstep = jax.jit(step)
    s_jit = s_eager = tx.init(params)
    p_jit = p_eager = params
    for g in grads_seq:
        u_jit, s_jit = jstep(g, s_jit, p_jit)
        u_eager, s_eager = step(g, s_eager, p_eager)
        assert jax.tree.structure(u_jit) == jax.tree.structure(params), name
        for u, ue, p in zip(jax.tree.leaves(u_jit), jax.tree.leaves(u_eager), jax.tree.leaves(params)):
            assert u.shape == p.shape and u.dtype == p.dtype, (name, u.shape, u.dtype, p.shape, p.dtype)
            assert bool(jnp.all(jnp.isfinite(u))), (name, p.shape, p.dtype)
            a, b = np.asarray(u, np.float32), np.asarray(ue, np.float32)
            if a.size:
                scale = max(float(np.max(np.abs(b))), 1e-30)
                # MADGRAD (and other "new point minus old point" updates) round at the params' scale: one ulp
                # of p, not of the update, is the resolution there
                ulp_p = 2 * float(np.finfo(np.float32).eps) * float(np.max(np.abs(np.asarray(p, np.float32))))
                assert float(np.max(np.abs(a - b))) <= RTOL[p.dtype.type] * scale + ulp_p, (
                    name, p.shape, p.dtype, a, b)
        p_jit = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), p_jit, u_jit)
        p_eager = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), p_eager, u_eager)
    assert traces[0] == 1 + 3, f'{name}: jitted step retraced ({traces[0] - 3} traces)'  # eager calls count too


FIXED_TREE = {
    'blocks': [{'w': jnp.ones((3, 4, 2, 2)) * 0.3, 'b': jnp.zeros((4,))}, {'w': jnp.ones((5, 3)) * -0.2}],
    'scalar': jnp.asarray(0.5, jnp.float32),  # strongly typed: a weak-typed leaf makes optax state retrace once
    'empty': jnp.zeros((0, 3)),
    'bf16': jnp.ones((2, 3), jnp.bfloat16),
    'f16': jnp.full((3, 2), 0.25, jnp.float16),
}


@pytest.mark.parametrize('name', NAMES)
def test_every_optimizer_on_a_mixed_tree(name):
    _check(name, FIXED_TREE, lr=1e-2, wd=0.01)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(NAMES), spec=_trees(), lr=st.floats(1e-4, 1e-1), wd=st.sampled_from([0.0, 1e-4, 0.05]),
       seed=st.integers(0, 2 ** 16))
def test_fuzz_random_trees(name, spec, lr, wd, seed):
    _check(name, _materialize(spec, seed), lr=lr, wd=wd, seed=seed)


@pytest.mark.parametrize('name', NAMES)
def test_float16_params_small_grads(name):
    """float16 params with |g| ~ 1e-4 (g**2 underflows in float16): state is float32 by policy, steps stay finite."""
    params = {'w': jnp.full((4, 3), 0.5, jnp.float16), 'b': jnp.full((4,), -0.25, jnp.float16)}
    tx = jt.create_optimizer_v2(params, name, lr=1e-3, weight_decay=0.01)
    extra = update_extras(name)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))
    state = tx.init(params)
    assert all(x.dtype != jnp.float16 for x in jax.tree.leaves(state) if hasattr(x, 'dtype')), name
    rng = np.random.default_rng(0)
    for _ in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(1e-4 * rng.standard_normal(p.shape), jnp.float16), params)
        updates, state = step(grads, state, params)
        for u in jax.tree.leaves(updates):
            assert u.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(u))), (name, u)
        params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


def test_empty_tree():
    """The factory refuses an empty params tree (torch: "optimizer got an empty parameter list"; an empty
    transformation would pass gradients through as updates); each alias, as optax's, maps {} to {}."""
    for name in NAMES:
        with pytest.raises(ValueError, match='has no parameters'):
            jt.create_optimizer_v2({}, name, lr=1e-2)
        info = jt.get_optimizer_info(name)
        kwargs = dict(info.defaults)
        if info.has_momentum:
            kwargs.setdefault('momentum', 0.9)
        tx = info.alias(learning_rate=1e-2, **kwargs)
        extra = update_extras(name)
        u, _ = tx.update({}, tx.init({}), {}, **extra)
        assert u == {}, name
