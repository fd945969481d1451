"""Optimizer state dtypes and size: bytes of state per parameter, the default dtype policy, bf16 params.

Driven by the registry: every registered name (and lookahead around three of them), and each record's
``state_dtypes`` (the state dtype options of its alias and the fields each sets; the options themselves are
tested in ``test_state_dtype_options.py``).

- The records keep up with the aliases: every state dtype argument an alias takes is in ``state_dtypes``;
  every Adam-like name (those with ``betas``) takes ``mu_dtype`` and, but for Lion, ``nu_dtype``.
- For every name, the state of a ViT-block-like tree is measured abstractly
  (``jax.eval_shape(tx.init)``, nothing is allocated) for float32 and bfloat16
  params; ``python tests/test_state_dtypes.py`` prints the table.
- With bf16 params the jitted update is bf16 and finite, the state stays bf16 (as timm's: state defaults to
  the params' dtype) and is no larger than with fp32 params.
- With float16 params and default options every floating state leaf is float32 (fp16 state would square
  ~1e-4 gradients to zero) and 5 jitted steps on ~1e-4 gradients give finite, nonzero float16 updates.
- Where a record has ``state_dtypes``, bf16 params with fp32 state work: the update stays bf16 and the
  state holds fp32 leaves.
The exceptions to the policy (an option with its own default, Adafactor's and AdaBelief's float32 state,
NovoGrad's float32 norm scalars) are :func:`_state_dtype_cases.default_field_dtypes`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from _state_dtype_cases import (BF16, F16, F32, NAMES, NOT_STATE_DTYPES, assert_updates, buffers,
                                case_id, default_field_dtypes, grads_seq, info, option_cases, run, tree)

# A transformer block's leaves in PyTorch layouts (~0.22M params): what "bytes per param" is quoted for.
BLOCK = {
    'attn': {'qkv': {'weight': (384, 128), 'bias': (384,)}, 'proj': {'weight': (128, 128), 'bias': (128,)}},
    'mlp': {'fc1': {'weight': (512, 128), 'bias': (512,)}, 'fc2': {'weight': (128, 512), 'bias': (128,)}},
    'norm1': {'weight': (128,), 'bias': (128,)},
    'patch_embed': {'weight': (128, 3, 8, 8)},
}
# Every Adam-like name (registry ``has_betas``) takes ``mu_dtype`` and, where a second moment exists (not
# Lion's sign-of-momentum family), ``nu_dtype``.
ONE_MOMENT = ('lion',)
# (name, option) an Adam-like name does not offer, and why
WITHOUT_STATE_DTYPE = {
    **{(n, 'mu_dtype'): 'Schedule-Free keeps no first moment: z is an iterate, kept like the params'
       for n in ('sfadamw', 'sfradam')},
    **{(n, o): 'not offered yet: the eigenbasis / inverse-root state stays in the params\' dtype (float32 for '
       'float16 params), like the moments' for n in ('soap', 'shampoo') for o in ('mu_dtype', 'nu_dtype')},
}


def _abstract(shapes, dtype):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, dtype), shapes, is_leaf=lambda x: isinstance(x, tuple))


def _build(name, params, **kwargs):
    return jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **kwargs)


def state_bytes_per_param(name, dtype, **kwargs):
    params = _abstract(BLOCK, dtype)
    state = jax.eval_shape(_build(name, params, **kwargs).init, params)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)) / n_params


def _floating_buffers(state, min_ndim=1):
    """``(field, leaf)`` for the floating state leaves with ``ndim >= min_ndim``."""
    return [(field, x) for field, leaves in buffers(state).items() for x in leaves
            if x.ndim >= min_ndim and jnp.issubdtype(x.dtype, jnp.floating)]


def _bf16_update(name, steps=1, **kwargs):
    params = tree(jnp.bfloat16, scale=0.3)
    grads = jax.tree.map(lambda p: (0.1 * p).astype(p.dtype), params)
    history, state = run(name, params, [grads] * steps, **kwargs)
    assert_updates(history, params, BF16, name)
    return state


def test_records_name_every_state_dtype_option():
    """A state dtype argument of an alias missing from its record would drop out of every test generated from
    the records (``test_state_dtype_options.py``): each must be in ``state_dtypes``."""
    missing = {}
    for name in NAMES:
        rec = info(name)
        wanted = {a for a in rec.arguments if a.endswith('_dtype')} - NOT_STATE_DTYPES
        if wanted - set(rec.state_dtypes):
            missing[name] = sorted(wanted - set(rec.state_dtypes))
    assert missing == {}, f'records lacking state_dtypes entries for options their alias takes: {missing}'


@pytest.mark.parametrize('name', NAMES)
def test_bf16_params(name):
    """3 jitted steps: bf16 finite updates; the floating buffers stay bf16 (but the documented exceptions)."""
    state = _bf16_update(name, steps=3)
    want = default_field_dtypes(name, BF16)
    for field, x in _floating_buffers(state):
        assert x.dtype == want.get(field, BF16), (name, field, x.dtype)
    assert state_bytes_per_param(name, jnp.bfloat16) <= state_bytes_per_param(name, jnp.float32) + 1e-9


@pytest.mark.parametrize('name', [n for n in NAMES if info(n).state_dtypes])
def test_bf16_params_fp32_state(name):
    options = {o: 'float32' for o in info(name).state_dtypes}
    state = _bf16_update(name, **options)
    dtypes = {jnp.dtype(x.dtype) for x in jax.tree.leaves(state) if x.ndim >= 2}
    assert F32 in dtypes, (name, options, dtypes)
    assert state_bytes_per_param(name, jnp.bfloat16, **options) >= state_bytes_per_param(name, jnp.bfloat16)


# Every name, with the arguments its option cases add (amsgrad's buffer, Adafactor's first moment, ...).
F16_CASES = option_cases() + [(n, {}) for n in NAMES if n not in {c[0] for c in option_cases()}]


@pytest.mark.parametrize('name, kw', F16_CASES, ids=[case_id(*c) for c in F16_CASES])
def test_float16_params_get_float32_state(name, kw):
    """Default options (the factory's momentum 0.9 where used), float16 params, 5 steps on ~1e-4 gradients."""
    params = tree(jnp.float16)
    history, state = run(name, params, grads_seq(jnp.float16, 1e-4), **kw)
    assert_updates(history, params, F16, name)
    # the small gradients moved something at the last step (an all-zero run would pass vacuously)
    assert any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(history[-1])), name
    want = default_field_dtypes(name, F16)
    buffers_ = _floating_buffers(state, min_ndim=0)
    assert any(x.ndim >= 1 for _, x in buffers_), name  # some buffer was checked
    for field, x in buffers_:
        assert x.dtype == want.get(field, F32), (name, field, x.dtype)


def test_adam_like_names_have_state_dtype_options():
    missing = {}
    for name in NAMES:
        rec = info(name)
        if not rec.has_betas:
            continue
        wanted = ('mu_dtype',) if any(m in name for m in ONE_MOMENT) else ('mu_dtype', 'nu_dtype')
        lacks = tuple(o for o in wanted if not rec.accepts(o) and (name, o) not in WITHOUT_STATE_DTYPE)
        if lacks:
            missing[f'{rec.alias.__module__.split(".")[-1]}.{rec.alias.__name__}'] = lacks
    assert missing == {}, f'Adam-like aliases lacking state dtype options: {missing}'


def table():
    rows = []
    for name in NAMES:
        rows.append((name, state_bytes_per_param(name, jnp.float32), state_bytes_per_param(name, jnp.bfloat16),
                     ','.join(info(name).state_dtypes) or '-'))
    return rows


if __name__ == '__main__':
    jax.config.update('jax_numpy_dtype_promotion', 'strict')
    print(f'{"name":16s} {"f32 B/param":>12s} {"bf16 B/param":>13s}  dtype options')
    for name, f32, bf16, opts in table():
        print(f'{name:16s} {f32:12.3f} {bf16:13.3f}  {opts}')
