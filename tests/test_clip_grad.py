"""``jt.dispatch_clip_grad`` against timm's own ``timm.utils.dispatch_clip_grad`` (torch's clip functions, AGC).

* every mode on the mixed-layout parity tree (torch layouts, ``jaxopt_timm.parity.SHAPES``): ``norm`` with
  p = 2, 1, 3 and inf, active and inactive, ``value``, ``agc`` with p = 2, 1 and inf; float32, 1e-6 relative,
  the update jitted; each case checks that the clipping did change (or, inactive, did not change) the gradients;
* ``layout='flax'`` on the same tree stored in Flax layouts (Dense ``(in, out)``, conv ``(kH, kW, I, O)``)
  equals timm on the torch tensors, and the torch layout on that tree does not (so the layout is what matters);
* bad arguments name themselves at construction; AGC without params is an error.

timm's modules are loaded from the installed wheel (``jaxopt_timm.parity.timm_utils_module``).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from parity import assert_close_leaves
from jaxopt_timm.parity import SHAPES, from_tree, make_arrays, timm_utils_module, to_tree, torch_module
from jaxopt_timm.transforms import from_torch_layout, to_torch_layout

TOL = 1e-6

CASES = {
    'norm-2': (1.0, 'norm', 2.0),
    'norm-1': (5.0, 'norm', 1.0),
    'norm-3': (0.7, 'norm', 3.0),
    'norm-inf': (0.3, 'norm', math.inf),
    'norm-inactive': (1e4, 'norm', 2.0),
    'value': (0.4, 'value', 2.0),
    'agc-2': (0.05, 'agc', 2.0),
    'agc-1': (0.02, 'agc', 1.0),
    'agc-inf': (0.04, 'agc', math.inf),
}


def _problem(seed=0):
    """Params from the parity tree; gradients whose scale varies per output row (so AGC clips some units only)."""
    params = make_arrays(seed)[0]
    rng = np.random.default_rng(seed + 7)
    grads = {}
    for k, shape in SHAPES.items():
        row_scale = np.exp(rng.uniform(-5, 1, (shape[0],) + (1,) * (len(shape) - 1)))
        grads[k] = (row_scale * rng.standard_normal(shape)).astype(np.float32)
    return params, grads


def _timm(params, grads, value, mode, norm_type):
    module = torch_module(params)
    for k, p in module.named_parameters():
        p.grad = torch.from_numpy(grads[k].copy())
    timm_utils_module('clip_grad').dispatch_clip_grad(module.parameters(), value, mode=mode, norm_type=norm_type)
    return {k: p.grad.numpy().copy() for k, p in module.named_parameters()}


def _ours(params, grads, layout='torch', **kw):
    tx = jt.dispatch_clip_grad(layout=layout, **kw)
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return out


def _close(got, want, what):
    assert_close_leaves(got, want, TOL, what)


@pytest.mark.parametrize('case', CASES)
def test_matches_timm_torch_layout(case):
    value, mode, p = CASES[case]
    params, grads = _problem()
    want = _timm(params, grads, value, mode, p)
    got = from_tree(_ours(to_tree(params), to_tree(grads), value=value, mode=mode, norm_type=p))
    _close(got, want, case)
    changed = [k for k in grads if not np.array_equal(want[k], grads[k])]
    if case == 'norm-inactive':
        assert not changed
    else:
        assert changed, f'{case}: the clipping changed nothing, the comparison proves little'
    if mode == 'agc':  # per unit: some rows of the weights clipped, others left exactly as they were
        w = 'fc.weight'
        rows_changed = [not np.array_equal(want[w][i], grads[w][i]) for i in range(SHAPES[w][0])]
        assert any(rows_changed) and not all(rows_changed), rows_changed


def _flax(flat):
    """The tree in Flax layouts: every >= 2-d leaf transposed (linear (out,in) -> (in,out), conv -> (kH,kW,I,O))."""
    return to_tree({k: np.asarray(from_torch_layout(jnp.asarray(v), 'flax')) for k, v in flat.items()})


@pytest.mark.parametrize('case', ['agc-2', 'agc-1', 'agc-inf', 'norm-2', 'value'])
def test_flax_layout_matches_timm_on_the_torch_tensors(case):
    value, mode, p = CASES[case]
    params, grads = _problem(seed=1)
    want = _timm(params, grads, value, mode, p)
    assert _flax(params)['fc']['weight'].shape == SHAPES['fc.weight'][::-1]
    assert _flax(params)['conv']['weight'].shape == (3, 3, 4, 8)
    got_flax = _ours(_flax(params), _flax(grads), layout='flax', value=value, mode=mode, norm_type=p)
    got = {k: np.asarray(to_torch_layout(jnp.asarray(v), 'flax')) for k, v in from_tree(got_flax).items()}
    _close(got, want, f'{case} flax')
    if mode == 'agc':  # the torch layout's units on Flax arrays are the wrong ones: the layout is what matches
        wrong = from_tree(_ours(_flax(params), _flax(grads), layout='torch', value=value, mode=mode, norm_type=p))
        wrong = {k: np.asarray(to_torch_layout(jnp.asarray(v), 'flax')) for k, v in wrong.items()}
        assert not np.allclose(wrong['fc.weight'], want['fc.weight'], rtol=1e-3)


def test_in_a_chain_and_in_bfloat16():
    """First in an ``optax.chain`` (AGC gets the params through it); bfloat16 gradients stay bfloat16."""
    params, grads = jax.tree.map(jnp.asarray, (to_tree(_problem()[0]), to_tree(_problem()[1])))
    chain = optax.chain(jt.dispatch_clip_grad(0.01, 'agc'), optax.sgd(1.0))
    updates, _ = jax.jit(chain.update)(grads, chain.init(params), params)
    clipped, _ = jax.jit(jt.dispatch_clip_grad(0.01, 'agc').update)(grads, (), params)
    for u, c in zip(jax.tree.leaves(updates), jax.tree.leaves(clipped)):
        np.testing.assert_allclose(np.asarray(u), -np.asarray(c), rtol=TOL, atol=1e-9)
    bf = jax.tree.map(lambda x: x.astype(jnp.bfloat16), (params, grads))
    for tx in (jt.dispatch_clip_grad(0.01, 'agc'), jt.dispatch_clip_grad(1.0), jt.dispatch_clip_grad(0.1, 'value')):
        out, _ = jax.jit(tx.update)(bf[1], tx.init(bf[0]), bf[0])
        assert all(x.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))


def test_agc_needs_params():
    params, grads = _problem()
    tx = jt.dispatch_clip_grad(0.01, mode='agc')
    with pytest.raises(ValueError, match='call update\\(grads, state, params\\) with the params'):
        tx.update(to_tree(grads), tx.init(None))


def test_norm_type_inf_as_string_and_empty_trees():
    params, grads = _problem()
    a = _ours(to_tree(params), to_tree(grads), value=0.3, mode='norm', norm_type='inf')
    b = _ours(to_tree(params), to_tree(grads), value=0.3, mode='norm', norm_type=float('inf'))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    for mode in ('norm', 'value', 'agc'):
        tx = jt.dispatch_clip_grad(1.0, mode)
        assert tx.update({}, tx.init({}), {})[0] == {}


@pytest.mark.parametrize('kwargs, named', [
    (dict(value=0.0), 'Invalid value: 0.0, expected a value in (0, inf)'),
    (dict(value=-1.0), 'Invalid value: -1.0'),
    (dict(value=float('nan')), 'Invalid value: nan'),
    (dict(value=None), 'Invalid value: None'),
    (dict(value=1.0, mode='global'), "Invalid mode: 'global', expected one of ['norm', 'value', 'agc']"),
    (dict(value=1.0, layout='jax'), "Invalid layout: 'jax', expected one of ['torch', 'flax']"),
    (dict(value=1.0, norm_type=0), 'Invalid norm_type: 0, expected a number in (0, inf]'),
    (dict(value=1.0, norm_type=-2.0), 'Invalid norm_type: -2.0'),
    (dict(value=1.0, norm_type=float('nan')), 'Invalid norm_type: nan'),
    (dict(value=1.0, norm_type=-math.inf), 'Invalid norm_type: -inf'),
    (dict(value=1.0, norm_type='two'), "Invalid norm_type: 'two'"),
])
def test_bad_arguments_raise(kwargs, named):
    with pytest.raises(ValueError) as info:
        jt.dispatch_clip_grad(**kwargs)
    assert named in str(info.value), str(info.value)
