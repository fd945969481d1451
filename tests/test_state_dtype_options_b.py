"""State dtypes of the factored / projected / second-order / orthogonalised optimizers: options and default policy.

- ``mu_dtype`` / ``nu_dtype`` (adafactor, adahessian, adamp, adan, adopt, lamb,
  laprop, mars, muon, novograd): with float32 params each option sets exactly
  the buffers it names (checked buffer by buffer, each option alone and both
  together), and 5 jitted steps with bf16 moments stay finite and within a
  bf16-sized tolerance of the all-float32 run.
- The default policy (state in the params' dtype, float32 for float16 params):
  with float16 params every floating state buffer is float32, except the
  documented ones, and 5 jitted steps on gradients of ~1e-4 give finite float16
  updates (fp16 state would square them to zero).
- bf16 params with float32 moments: bf16 updates, float32 buffers.
- A bad dtype is a ``ValueError`` naming the argument.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from _fast_jit import fast_jit

# PyTorch layouts: 'fc.weight' is factored by Adafactor (both dims > 16) and orthogonalised by Muon; 'conv.weight'
# is a Muon kernel and unfactored for Adafactor; biases and the 1-element scale take Muon's AdamW fallback.
SHAPES = {'conv': {'weight': (8, 4, 3, 3), 'bias': (8,)}, 'fc': {'weight': (20, 18), 'bias': (20,)}, 'scale': (1,)}

MU_NAMES = ('exp_avg', 'exp_avg_diff', 'momentum_buffer')
NU_NAMES = ('exp_avg_sq', 'exp_avg_sq_row', 'exp_avg_sq_col', 'exp_hessian_diag_sq', 'max_exp_avg_sq')

# registry name -> (extra options, first-moment buffers, second-moment buffers) the state must hold
OPTIONS = {
    'adafactor': (dict(betas=(0.9, 0.999)), {'exp_avg'}, {'exp_avg_sq', 'exp_avg_sq_row', 'exp_avg_sq_col'}),
    'cadafactor': ({}, {'exp_avg'}, {'exp_avg_sq', 'exp_avg_sq_row', 'exp_avg_sq_col'}),
    'adahessian': ({}, {'exp_avg'}, {'exp_hessian_diag_sq'}),
    'adamp': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'cadamp': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'adan': ({}, {'exp_avg', 'exp_avg_diff'}, {'exp_avg_sq'}),
    'cadanw': ({}, {'exp_avg', 'exp_avg_diff'}, {'exp_avg_sq'}),
    'adopt': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'cadoptw': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'lamb': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'clambw': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'laprop': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'claprop': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'mars': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'cmars': (dict(optimize_1d=True), {'exp_avg'}, {'exp_avg_sq'}),
    'muon': ({}, {'momentum_buffer', 'exp_avg'}, {'exp_avg_sq'}),
    'nmuon': ({}, {'momentum_buffer', 'exp_avg'}, {'exp_avg_sq'}),
    'adamuon': ({}, {'momentum_buffer', 'exp_avg'}, {'exp_avg_sq'}),
    'novograd': ({}, {'exp_avg'}, {'exp_avg_sq'}),
    'novogradw': (dict(amsgrad=True), {'exp_avg'}, {'exp_avg_sq', 'max_exp_avg_sq'}),
}

# Elementwise bound of the bf16-moment run against the float32 run, relative to the leaf's largest update
# (5e-2 otherwise; the norm-relative bound is 5e-2 for all). Muon's Newton-Schulz runs in bf16 either way, so a
# rounding difference in its input moves entries by bf16 ulps (measured <= 2%); AdaMuon then divides by the root of
# the EMA of that output squared, which amplifies the relative error of its small entries (measured <= 6.5%).
ELEMENTWISE_TOL = {'adamuon': 1e-1}

# Every name whose state this change touches: the aliases above plus the policy-only ones.
POLICY_NAMES = sorted(set(OPTIONS) | {
    'adafactorbv', 'cadafactorbvc', 'kron', 'kronw', 'madgrad', 'madgradw', 'sgdp', 'csgdp', 'lookahead_lamb',
    'lookahead_madgrad'})

# float16 params, default options: floating state buffers (ndim >= 1) that are deliberately not float32.
# adafactorbv's momentum is timm's `momentum_dtype`, bfloat16 by default whatever the params.
FP16_EXCEPTIONS = {name: {'exp_avg': jnp.bfloat16} for name in ('adafactorbv', 'cadafactorbvc')}


def _tree(dtype, scale=1.0, offset=1.0, seed=0):
    leaves, treedef = jax.tree.flatten(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [(offset + scale * jax.random.normal(k, s)).astype(dtype) for k, s in zip(keys, leaves)])


def _second_order(name):
    return jt.get_optimizer_info(name).second_order


def _buffers(state):
    """``field name -> [leaves]`` for every array in the state, keyed by the innermost NamedTuple field holding it."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        fields = [k.name for k in path if isinstance(k, jax.tree_util.GetAttrKey)]
        out.setdefault(fields[-1] if fields else None, []).append(leaf)
    return out


def _run(name, params, grads_seq, **opts):
    """Jitted steps from ``params`` on a fixed gradient sequence: (updates per step, final state)."""
    tx = jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **opts)
    extra = {'hvp_fn': lambda v: v} if _second_order(name) else {}

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params, **extra)
        params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)
        return params, state, updates

    step = fast_jit(step)
    state = tx.init(params)
    history = []
    for grads in grads_seq:
        params, state, updates = step(params, state, grads)
        history.append(updates)
    return history, state


def _grads_seq(dtype, scale, steps=5):
    return [_tree(dtype, scale=scale, offset=0.0, seed=t + 1) for t in range(steps)]


def _assert_dtypes(name, state, mu, nu, default):
    """Each first-moment buffer is ``mu`` and each second-moment buffer ``nu`` (None: ``default``, except
    novograd's per-leaf norm scalars, float32 by default whatever the params, as timm's)."""
    bufs = _buffers(state)
    mu_names, nu_names = OPTIONS[name][1], OPTIONS[name][2]
    assert mu_names <= set(bufs) and nu_names <= set(bufs), (name, sorted(k for k in bufs if k))
    for field, leaves in bufs.items():
        if field in mu_names:
            want = mu or default
        elif field in nu_names:
            want = nu or (jnp.float32 if 'novograd' in name else default)
        else:
            continue
        floating = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floating, (name, field)
        for x in floating:
            assert x.dtype == jnp.dtype(want), (name, field, x.dtype, want)


# ------------------------------------------------------------------------------------------------ the options

@pytest.mark.parametrize('name', sorted(OPTIONS))
def test_each_option_sets_its_buffers(name):
    """float32 params: mu_dtype alone, nu_dtype alone, both; each buffer checked by name (abstractly)."""
    extra = OPTIONS[name][0]
    params = _tree(jnp.float32)
    for mu, nu in ((None, None), ('bfloat16', None), (None, 'bfloat16'), ('bfloat16', 'bfloat16')):
        opts = {k: v for k, v in (('mu_dtype', mu), ('nu_dtype', nu)) if v is not None}
        tx = jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **extra, **opts)
        state = jax.eval_shape(tx.init, params)
        _assert_dtypes(name, state, mu, nu, jnp.float32)


@pytest.mark.parametrize('name', sorted(OPTIONS))
def test_bf16_moments_track_float32(name):
    """float32 params, bf16 moments: 5 jitted steps are finite and within bf16 resolution of the float32 run."""
    extra = OPTIONS[name][0]
    params = _tree(jnp.float32)
    grads_seq = _grads_seq(jnp.float32, 1.0)
    ref, _ = _run(name, params, grads_seq, **extra)
    low, state = _run(name, params, grads_seq, mu_dtype='bfloat16', nu_dtype='bfloat16', **extra)
    _assert_dtypes(name, state, 'bfloat16', 'bfloat16', jnp.float32)
    tol = ELEMENTWISE_TOL.get(name, 5e-2)
    for t, (u_ref, u_low) in enumerate(zip(ref, low)):
        for a, b in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u_low)):
            assert b.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(b))), (name, t)
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(a)) + 1e-12, (name, t, a.shape)
            assert np.linalg.norm(a - b) <= 5e-2 * np.linalg.norm(a) + 1e-12, (name, t, a.shape)
    # the bf16 run is not the float32 one: the option reached the arithmetic
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for u_ref, u_low in zip(ref, low) for a, b in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u_low)))


@pytest.mark.parametrize('name', sorted(OPTIONS))
def test_bf16_params_fp32_moments(name):
    extra = OPTIONS[name][0]
    params = _tree(jnp.bfloat16)
    history, state = _run(name, params, _grads_seq(jnp.bfloat16, 0.1, steps=3), mu_dtype='float32',
                          nu_dtype='float32', **extra)
    _assert_dtypes(name, state, 'float32', 'float32', jnp.float32)
    for updates in history:
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.dtype == jnp.bfloat16 and u.shape == p.shape, (name, u.dtype)
            assert bool(jnp.all(jnp.isfinite(u))), name
    # with no option given, bf16 params keep bf16 moments (timm's Adafactor keeps float32 statistics)
    state = jax.eval_shape(jt.create_optimizer_v2(params, name, lr=1e-2, **extra).init, params)
    default = jnp.float32 if 'adafactor' in name else jnp.bfloat16
    _assert_dtypes(name, state, None, None, default)


@pytest.mark.parametrize('bad', ['int8', 'float7', 3, jnp.int32])
@pytest.mark.parametrize('option', ['mu_dtype', 'nu_dtype'])
@pytest.mark.parametrize('name', ['adafactor', 'adahessian', 'adamp', 'adan', 'adopt', 'lamb', 'laprop', 'mars',
                                  'muon', 'novograd'])
def test_bad_dtype(name, option, bad):
    params = _tree(jnp.float32)
    with pytest.raises(ValueError, match=option):
        jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **{option: bad})


@pytest.mark.parametrize('name', ['adafactor', 'adamp', 'muon'])
def test_dtype_spellings(name):
    params = _tree(jnp.float32)
    for spelling in ('bfloat16', 'torch.bfloat16', 'bf16', jnp.bfloat16, np.dtype(jnp.bfloat16)):
        tx = jt.create_optimizer_v2(params, name, lr=1e-2, mu_dtype=spelling, betas=(0.9, 0.95))
        state = jax.eval_shape(tx.init, params)
        assert {x.dtype for x in _buffers(state)['exp_avg']} == {jnp.dtype(jnp.bfloat16)}, (name, spelling)


# ------------------------------------------------------------------------------------------------ the default policy

@pytest.mark.parametrize('name', POLICY_NAMES)
def test_float16_params_get_float32_state(name):
    extra = OPTIONS.get(name, ({},))[0]
    params = _tree(jnp.float16)
    history, state = _run(name, params, _grads_seq(jnp.float16, 1e-4), **extra)
    exceptions = FP16_EXCEPTIONS.get(name, {})
    seen = 0
    for field, leaves in _buffers(state).items():
        for x in leaves:
            if x.ndim >= 1 and jnp.issubdtype(x.dtype, jnp.floating):
                assert x.dtype == jnp.dtype(exceptions.get(field, jnp.float32)), (name, field, x.dtype)
                seen += 1
    assert seen, name
    for t, updates in enumerate(history):
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.dtype == jnp.float16 and u.shape == p.shape, (name, u.dtype)
            assert bool(jnp.all(jnp.isfinite(u))), (name, t)
    # the small gradients moved something (an all-zero run would pass the checks above vacuously)
    assert any(bool(jnp.any(u != 0)) for updates in history for u in jax.tree.leaves(updates)), name


@pytest.mark.parametrize('name', ['adafactorbv', 'kron', 'madgrad', 'sgdp', 'lookahead_lamb'])
def test_bf16_params_keep_bf16_state(name):
    """The policy-only names: bf16 params keep bf16 buffers (timm's), updates bf16 and finite."""
    params = _tree(jnp.bfloat16)
    history, state = _run(name, params, _grads_seq(jnp.bfloat16, 0.1, steps=3))
    for field, leaves in _buffers(state).items():
        for x in leaves:
            if x.ndim >= 1 and jnp.issubdtype(x.dtype, jnp.floating):
                assert x.dtype == jnp.bfloat16, (name, field, x.dtype)
    for updates in history:
        assert all(u.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
