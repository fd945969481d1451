"""Optimizer state dtypes and size: bytes of state per parameter, bf16 params, fp32 moments for bf16 params.

- For every registered name, the state of a ViT-block-like tree is measured
  abstractly (``jax.eval_shape(tx.init)``, nothing is allocated) for float32
  and bfloat16 params; ``python tests/test_state_dtypes.py`` prints the table.
- With bf16 params the jitted update is bf16 and finite, and the state is no
  larger than with fp32 params (state defaults to the params' dtype, as timm's).
- Where an alias takes ``mu_dtype`` / ``nu_dtype``, bf16 params with fp32
  moments work: the update stays bf16 and the state holds fp32 leaves.
  Every Adam-like name (those with ``betas``) takes both (Lion's family: ``mu_dtype``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from _fast_jit import fast_jit

NAMES = list(jt.list_optimizers()) + ['lookahead_adamw']

# A transformer block's leaves in PyTorch layouts (~0.22M params): what "bytes per param" is quoted for.
BLOCK = {
    'attn': {'qkv': {'weight': (384, 128), 'bias': (384,)}, 'proj': {'weight': (128, 128), 'bias': (128,)}},
    'mlp': {'fc1': {'weight': (512, 128), 'bias': (512,)}, 'fc2': {'weight': (128, 512), 'bias': (128,)}},
    'norm1': {'weight': (128,), 'bias': (128,)},
    'patch_embed': {'weight': (128, 3, 8, 8)},
}
SMALL = {'conv': {'weight': (8, 4, 3, 3), 'bias': (8,)}, 'fc': {'weight': (20, 18), 'bias': (20,)}, 'scale': (1,)}

# Every Adam-like name (registry ``has_betas``) takes ``mu_dtype`` and, where a second moment exists (not
# Lion's sign-of-momentum family), ``nu_dtype``.
ONE_MOMENT = ('lion',)


def _tree(shapes, dtype):
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    return jax.tree.unflatten(
        treedef, [(1.0 + 0.3 * jax.random.normal(k, s)).astype(dtype) for k, s in zip(keys, leaves)])


def _abstract(shapes, dtype):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, dtype), shapes, is_leaf=lambda x: isinstance(x, tuple))


def _info(name):
    return jt.get_optimizer_info(name)


def _accepted(name):
    return set(_info(name).arguments)


def _build(name, params, **kwargs):
    return jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **kwargs)


def state_bytes_per_param(name, dtype, **kwargs):
    params = _abstract(BLOCK, dtype)
    state = jax.eval_shape(_build(name, params, **kwargs).init, params)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)) / n_params


def dtype_options(name):
    acc = _accepted(name)
    return tuple(o for o in ('mu_dtype', 'nu_dtype', 'momentum_dtype') if o in acc)


def _bf16_update(name, **kwargs):
    params = _tree(SMALL, jnp.bfloat16)
    tx = _build(name, params, **kwargs)
    grads = jax.tree.map(lambda p: (0.1 * p).astype(p.dtype), params)
    extra = {'hvp_fn': lambda v: v} if _info(name).second_order else {}
    updates, state = fast_jit(lambda g, s, p: tx.update(g, s, p, **extra))(grads, tx.init(params), params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == jnp.bfloat16 and u.shape == p.shape, (name, u.dtype, u.shape)
        assert bool(jnp.all(jnp.isfinite(u))), name
    return state


@pytest.mark.parametrize('name', NAMES)
def test_bf16_params(name):
    _bf16_update(name)
    assert state_bytes_per_param(name, jnp.bfloat16) <= state_bytes_per_param(name, jnp.float32) + 1e-9


@pytest.mark.parametrize('name', [n for n in NAMES if {'mu_dtype', 'nu_dtype'} & _accepted(n)])
def test_bf16_params_fp32_state(name):
    options = {o: 'float32' for o in ('mu_dtype', 'nu_dtype') if o in _accepted(name)}
    state = _bf16_update(name, **options)
    dtypes = {jnp.dtype(x.dtype) for x in jax.tree.leaves(state) if x.ndim >= 2}
    assert jnp.dtype(jnp.float32) in dtypes, (name, options, dtypes)
    assert state_bytes_per_param(name, jnp.bfloat16, **options) >= state_bytes_per_param(name, jnp.bfloat16)


def test_adam_like_names_have_state_dtype_options():
    missing = {}
    for name in NAMES:
        info = _info(name)
        if not info.has_betas:
            continue
        wanted = ('mu_dtype',) if any(m in name for m in ONE_MOMENT) else ('mu_dtype', 'nu_dtype')
        lacks = tuple(o for o in wanted if o not in _accepted(name))
        if lacks:
            missing[f'{info.alias.__module__.split(".")[-1]}.{info.alias.__name__}'] = lacks
    assert missing == {}, f'Adam-like aliases lacking state dtype options: {missing}'


def table():
    rows = []
    for name in NAMES:
        rows.append((name, state_bytes_per_param(name, jnp.float32), state_bytes_per_param(name, jnp.bfloat16),
                     ','.join(dtype_options(name)) or '-'))
    return rows


if __name__ == '__main__':
    jax.config.update('jax_numpy_dtype_promotion', 'strict')
    print(f'{"name":16s} {"f32 B/param":>12s} {"bf16 B/param":>13s}  dtype options')
    for name, f32, bf16, opts in table():
        print(f'{name:16s} {f32:12.3f} {bf16:13.3f}  {opts}')
