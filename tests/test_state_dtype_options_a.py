"""``mu_dtype`` / ``nu_dtype`` of the Adam-like aliases and Lion, and the default state-dtype policy.

For each alias (through one registry name, built by ``create_optimizer_v2``):

- float32 params with bf16 moments: each named buffer has the requested dtype
  (so an option that is ignored or wired to the other buffer fails), 5 jitted
  steps stay finite and within a bf16-sized distance of the all-float32 run;
- float16 params with default options: every floating state leaf is float32
  and 5 jitted steps on ~1e-4 gradients give finite float16 updates;
- bf16 params with float32 moments: bf16 finite updates, float32 state;
- a bad dtype raises ``ValueError`` naming the option.

The same float16 check covers the other names of these modules, whose state
follows the default policy (no options).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.optim._lion import scale_by_lion
from _fast_jit import fast_jit

BF16, F16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16), jnp.dtype(jnp.float32)

# registry name, extra kwargs, first-moment buffers, second-moment buffers (state field names)
CASES = [
    ('adamw', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('adamw', {'amsgrad': True}, ('exp_avg',), ('exp_avg_sq', 'max_exp_avg_sq')),
    ('adamwlegacy', {'caution': True}, ('exp_avg',), ('exp_avg_sq',)),
    ('nadam', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('nadamlegacy', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('nadamw', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('radam', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('radamlegacy', {}, ('exp_avg',), ('exp_avg_sq',)),
    ('adam', {'amsgrad': True}, ('exp_avg',), ('exp_avg_sq', 'max_exp_avg_sq')),
    ('adamax', {}, ('exp_avg',), ('exp_inf',)),
    ('adabelief', {'amsgrad': True}, ('exp_avg',), ('exp_avg_var', 'max_exp_avg_var')),
    ('radabelief', {}, ('exp_avg',), ('exp_avg_var',)),
    ('lion', {}, ('mu',), ()),
]
IDS = [name + ('-' + '-'.join(kw) if kw else '') for name, kw, _, _ in CASES]
# names of the same modules without dtype options: their state follows the default policy
POLICY_ONLY = ['sgd', 'momentum', 'sgdw', 'lars', 'nlarc', 'rmsprop', 'rmsproptf', 'crmsproptf', 'adadelta',
               'adagrad', 'clionc', 'cadamc', 'cnadamw']


def _params(dtype):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {'w': (1.0 + 0.3 * jax.random.normal(k1, (8, 6))).astype(dtype),
            'b': (0.1 * jax.random.normal(k2, (6,))).astype(dtype)}


def _grads(params, step, scale):
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), step), len(params))
    return {k: (scale * jax.random.normal(key, p.shape)).astype(p.dtype) for key, (k, p) in zip(keys, params.items())}


def _build(name, params, **opts):
    return jt.create_optimizer_v2(params, name, lr=1e-2, weight_decay=0.01, **opts)


def _run(name, params, steps=5, grad_scale=0.1, **opts):
    """The updates of ``steps`` jitted steps and the final state."""
    tx = _build(name, params, **opts)
    update = fast_jit(tx.update)
    state = tx.init(params)
    updates = []
    for t in range(steps):
        u, state = update(_grads(params, t, grad_scale), state, params)
        params = optax.apply_updates(params, u)
        updates.append(u)
    return updates, state


def _buffer_dtypes(state):
    """``{state field name: {dtypes of its array leaves}}`` over the leaves with ``ndim >= 1``."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if jnp.ndim(leaf) < 1:
            continue
        field = [k.name for k in path if isinstance(k, jax.tree_util.GetAttrKey)][-1]
        out.setdefault(field, set()).add(jnp.dtype(leaf.dtype))
    return out


def _assert_buffers(state, fields, dtype, context):
    dtypes = _buffer_dtypes(state)
    for field in fields:
        assert dtypes.get(field) == {dtype}, (context, field, dtypes)


def _assert_finite(updates, dtype, context):
    for u in jax.tree.leaves(updates):
        assert u.dtype == dtype, (context, u.dtype)
        assert bool(jnp.all(jnp.isfinite(u))), context


def test_cases_cover_the_registry_names():
    names = set(jt.list_optimizers())
    assert {name for name, *_ in CASES} <= names
    assert set(POLICY_ONLY) <= names


@pytest.mark.parametrize('name, kw, mu_fields, nu_fields', CASES, ids=IDS)
def test_bf16_moments_for_float32_params(name, kw, mu_fields, nu_fields):
    params = _params(jnp.float32)
    opts = {'mu_dtype': 'bfloat16', **({'nu_dtype': 'bfloat16'} if nu_fields else {})}
    ref, ref_state = _run(name, params, **kw)
    low, state = _run(name, params, **kw, **opts)
    _assert_buffers(ref_state, mu_fields + nu_fields, F32, (name, 'default'))
    _assert_buffers(state, mu_fields + nu_fields, BF16, (name, opts))
    for t, (u_ref, u_low) in enumerate(zip(ref, low)):
        _assert_finite(u_low, F32, (name, t))
        for key in u_ref:
            scale = float(jnp.max(jnp.abs(u_ref[key])))
            diff = float(jnp.max(jnp.abs(u_low[key] - u_ref[key])))
            assert diff <= 5e-2 * scale, (name, t, key, diff, scale)


@pytest.mark.parametrize('name, kw, mu_fields, nu_fields', CASES, ids=IDS)
def test_each_option_sets_its_own_buffers(name, kw, mu_fields, nu_fields):
    """Only ``mu_dtype``, then only ``nu_dtype``: the other moment keeps the params' float32 (init and update)."""
    params = _params(jnp.float32)
    for option, low_fields, other_fields in (('mu_dtype', mu_fields, nu_fields), ('nu_dtype', nu_fields, mu_fields)):
        if not low_fields:
            continue
        tx = _build(name, params, **kw, **{option: 'bfloat16'})
        state = jax.eval_shape(tx.init, params)
        _, new_state = jax.eval_shape(tx.update, _grads(params, 0, 0.1), state, params)
        for s in (state, new_state):
            _assert_buffers(s, low_fields, BF16, (name, option))
            _assert_buffers(s, other_fields, F32, (name, option))


@pytest.mark.parametrize('name, kw, mu_fields, nu_fields', CASES, ids=IDS)
def test_float16_params_default_state(name, kw, mu_fields, nu_fields):
    updates, state = _run(name, _params(jnp.float16), grad_scale=1e-4, **kw)
    for t, u in enumerate(updates):
        _assert_finite(u, F16, (name, t))
    assert any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates[-1])), name
    floating = {jnp.dtype(x.dtype) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floating == {F32}, (name, floating)
    _assert_buffers(state, mu_fields + nu_fields, F32, name)


@pytest.mark.parametrize('name', POLICY_ONLY)
def test_float16_params_default_state_other_names(name):
    updates, state = _run(name, _params(jnp.float16), grad_scale=1e-4)  # the factory's momentum 0.9 where used
    for t, u in enumerate(updates):
        _assert_finite(u, F16, (name, t))
    floating = {jnp.dtype(x.dtype) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floating <= {F32}, (name, floating)
    assert any(x.ndim >= 1 for x in jax.tree.leaves(state)), name  # some buffer was checked


@pytest.mark.parametrize('name, kw, mu_fields, nu_fields', CASES, ids=IDS)
def test_bf16_params_float32_moments(name, kw, mu_fields, nu_fields):
    opts = {'mu_dtype': 'float32', **({'nu_dtype': 'float32'} if nu_fields else {})}
    updates, state = _run(name, _params(jnp.bfloat16), steps=3, **kw, **opts)
    for t, u in enumerate(updates):
        _assert_finite(u, BF16, (name, t))
    _assert_buffers(state, mu_fields + nu_fields, F32, (name, opts))


@pytest.mark.parametrize('name, kw, mu_fields, nu_fields', CASES, ids=IDS)
@pytest.mark.parametrize('bad', ['int8', 'float7', 3, jnp.int8])
def test_bad_dtype_raises(name, kw, mu_fields, nu_fields, bad):
    params = _params(jnp.float32)
    for option in ('mu_dtype', 'nu_dtype') if nu_fields else ('mu_dtype',):
        with pytest.raises(ValueError, match=option):
            _build(name, params, **kw, **{option: bad})


@pytest.mark.parametrize('spelling', ['bfloat16', 'bf16', 'torch.bfloat16', jnp.bfloat16, np.dtype(jnp.bfloat16)])
def test_dtype_spellings(spelling):
    params = _params(jnp.float32)
    state = jax.eval_shape(_build('adamw', params, mu_dtype=spelling, nu_dtype=spelling).init, params)
    _assert_buffers(state, ('exp_avg', 'exp_avg_sq'), BF16, spelling)


def test_lion_direction_is_optax_bit_for_bit_in_float32():
    params = _params(jnp.float32)
    ours, theirs = scale_by_lion(0.9, 0.99), optax.scale_by_lion(0.9, 0.99)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for t in range(4):
        g = _grads(params, t, 0.1)
        u_ours, s_ours = ours.update(g, s_ours)
        u_theirs, s_theirs = theirs.update(g, s_theirs)
        for a, b in zip(jax.tree.leaves((u_ours, s_ours)), jax.tree.leaves((u_theirs, s_theirs))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
