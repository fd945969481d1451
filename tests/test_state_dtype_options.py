"""The state dtype options (``mu_dtype``, ``nu_dtype``, ``momentum_dtype``, ``precond_dtype``), from the records.

The cases are generated from the registry: every name whose record has ``state_dtypes`` (the options its
alias takes, each mapped to the state fields it sets), once more with ``amsgrad=True`` where the alias takes
it (its extra buffer), with :data:`_state_dtype_cases.EXTRA_KWARGS` where a buffer needs an argument to
exist. ``test_state_dtypes.py`` checks that no record falls behind its alias.

- float32 params, abstractly (init and update): each option alone and every combination sets exactly the
  fields its record names to bf16, the others keep their default; every field a record names exists in
  the state of some case of its alias (no stale names); every spelling of bfloat16 is accepted.
- float32 params with bf16 state: 5 jitted steps are finite and within a bf16-sized distance of the
  all-float32 run, and not equal to it (the option reached the arithmetic).
- bf16 params with float32 state: bf16 finite updates, float32 fields; with no option, the default dtypes.
- A bad dtype raises ``ValueError`` naming the option.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_timm.optim._lion import scale_by_lion
from _state_dtype_cases import (BF16, F32, assert_fields, assert_updates, buffers, build, case_id,
                                default_field_dtypes, grads_seq, info, option_cases, run, tree)

CASES = option_cases()
IDS = [case_id(name, kw) for name, kw in CASES]

# Elementwise bound of the bf16-state run against the float32 run, relative to the leaf's largest update
# (5e-2 otherwise; the norm-relative bound is 5e-2 for all). Muon's Newton-Schulz runs in bf16 either way, so a
# rounding difference in its input moves entries by bf16 ulps (measured <= 2%); AdaMuon (``algo='adamuon'``)
# then divides by the root of the EMA of that output squared, which amplifies the relative
# error of its small entries (measured <= 6.5%).
ADAMUON_ELEMENTWISE_TOL = 1e-1

# Exceptions to the float32 comparison (the dtype checks above still cover them):
# - kron's ``precond_dtype``: bf16 Kronecker factors change the (randomly probed) preconditioner estimate itself,
#   not just its rounding: measured up to 56% (elementwise and norm) from the float32 run over 5 steps; the
#   comparison lowers kron's ``mu_dtype`` only (measured 1.7%).
# - nadamuon: a near-zero Nesterov momentum entry changes sign under bf16 rounding and AdaMuon's normalised
#   direction moves it by about twice its size (measured 1.7x elementwise, 12% in norm over 5 steps).
# - Lion (sign of the momentum): the bf16 run may equal the float32 one, so "not equal" is not asserted.
NOT_COMPARED_OPTIONS = {'precond_dtype'}
NOT_COMPARED_NAMES = {'nadamuon'}

BAD_DTYPES = ['int8', 'float7', 3, jnp.int8, jnp.int32]
BF16_SPELLINGS = ['bfloat16', 'bf16', 'torch.bfloat16', jnp.bfloat16, np.dtype(jnp.bfloat16)]


def _want(name, low_options, low=BF16):
    """``field -> dtype`` with float32 params when ``low_options`` are set to ``low``."""
    want = default_field_dtypes(name, F32)
    for option in low_options:
        want.update({f: jnp.dtype(low) for f in info(name).state_dtypes[option]})
    return want


def _assert_present(name, state, options):
    """Each option sets some field of this state (else its checks are vacuous)."""
    present = set(buffers(state))
    for option in options:
        assert present & set(info(name).state_dtypes[option]), (name, option, sorted(k for k in present if k))


@pytest.mark.parametrize('name, kw', CASES, ids=IDS)
def test_each_option_sets_its_buffers(name, kw):
    """float32 params: no option, each option alone, every combination; each field checked by name, after init
    and after an update (abstractly)."""
    params = tree(jnp.float32)
    options = tuple(info(name).state_dtypes)
    for k in range(len(options) + 1):
        for low_options in itertools.combinations(options, k):
            tx = build(name, params, **kw, **{o: 'bfloat16' for o in low_options})
            state = jax.eval_shape(tx.init, params)
            extra = {'hvp_fn': lambda v: v} if info(name).second_order else {}
            grads = grads_seq(jnp.float32, 0.1, steps=1)[0]
            _, new_state = jax.eval_shape(lambda g, s, p: tx.update(g, s, p, **extra), grads, state, params)
            _assert_present(name, state, options)
            for s in (state, new_state):
                assert_fields(s, _want(name, low_options), (name, kw, low_options))


def test_records_name_existing_fields():
    """Every field a record lists is in the state of its name's cases (amsgrad's buffers with amsgrad): a
    misspelt or stale field would be skipped by the checks above."""
    seen = {}
    for name, kw in CASES:
        params = tree(jnp.float32)
        seen.setdefault(name, set()).update(buffers(jax.eval_shape(build(name, params, **kw).init, params)))
    for name in seen:
        for option, fields in info(name).state_dtypes.items():
            assert set(fields) <= seen[name], (name, option, sorted(set(fields) - seen[name]))


@pytest.mark.parametrize('name, kw', CASES, ids=IDS)
def test_dtype_spellings(name, kw):
    params = tree(jnp.float32)
    options = tuple(info(name).state_dtypes)
    for spelling in BF16_SPELLINGS:
        state = jax.eval_shape(build(name, params, **kw, **{o: spelling for o in options}).init, params)
        assert_fields(state, _want(name, options), (name, spelling))


@pytest.mark.parametrize('name, kw', CASES, ids=IDS)
def test_bad_dtype_raises(name, kw):
    params = tree(jnp.float32)
    for option in info(name).state_dtypes:
        for bad in BAD_DTYPES:
            with pytest.raises(ValueError, match=option):
                build(name, params, **kw, **{option: bad})


@pytest.mark.parametrize('name, kw', [c for c in CASES if c[0] not in NOT_COMPARED_NAMES],
                         ids=[i for c, i in zip(CASES, IDS) if c[0] not in NOT_COMPARED_NAMES])
def test_bf16_state_tracks_float32(name, kw):
    """float32 params, bf16 state: 5 jitted steps are finite and within bf16 resolution of the float32 run."""
    options = tuple(o for o in info(name).state_dtypes if o not in NOT_COMPARED_OPTIONS)
    params = tree(jnp.float32)
    seq = grads_seq(jnp.float32, 1.0)
    ref, ref_state = run(name, params, seq, **kw, **{o: 'float32' for o in options})
    low, state = run(name, params, seq, **kw, **{o: 'bfloat16' for o in options})
    _assert_present(name, state, options)
    assert_fields(ref_state, _want(name, options, F32), (name, 'float32'))
    assert_fields(state, _want(name, options), (name, 'bfloat16'))
    assert_updates(low, params, F32, name)
    tol = ADAMUON_ELEMENTWISE_TOL if info(name).defaults.get('algo') == 'adamuon' else 5e-2
    for t, (u_ref, u_low) in enumerate(zip(ref, low)):
        for a, b in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u_low)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(a)) + 1e-12, (name, t, a.shape)
            assert np.linalg.norm(a - b) <= 5e-2 * np.linalg.norm(a) + 1e-12, (name, t, a.shape)
    # the bf16 run is not the float32 one: the option reached the arithmetic
    if info(name).alias.__name__ != 'lion':
        assert any(not np.array_equal(np.asarray(a), np.asarray(b))
                   for u_ref, u_low in zip(ref, low) for a, b in zip(jax.tree.leaves(u_ref), jax.tree.leaves(u_low)))


@pytest.mark.parametrize('name, kw', CASES, ids=IDS)
def test_bf16_params_float32_state(name, kw):
    options = tuple(info(name).state_dtypes)
    params = tree(jnp.bfloat16)
    history, state = run(name, params, grads_seq(jnp.bfloat16, 0.1, steps=3), **kw, **{o: 'float32' for o in options})
    assert_updates(history, params, BF16, name)
    _assert_present(name, state, options)
    assert_fields(state, {f: F32 for fields in info(name).state_dtypes.values() for f in fields}, name)
    # with no option given, bf16 params keep bf16 state (but the documented exceptions)
    state = jax.eval_shape(build(name, params, **kw).init, params)
    assert_fields(state, default_field_dtypes(name, BF16), (name, 'default'))


def test_lion_direction_is_optax_bit_for_bit_in_float32():
    params = tree(jnp.float32)
    ours, theirs = scale_by_lion(0.9, 0.99), optax.scale_by_lion(0.9, 0.99)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for g in grads_seq(jnp.float32, 0.1, steps=4):
        u_ours, s_ours = ours.update(g, s_ours)
        u_theirs, s_theirs = theirs.update(g, s_theirs)
        for a, b in zip(jax.tree.leaves((u_ours, s_ours)), jax.tree.leaves((u_theirs, s_theirs))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
