"""Muon / AdaMuon (``muon``, ``nmuon``, ``adamuon``, ``nadamuon``) against timm's ``Muon``.

timm runs Newton–Schulz in bfloat16 with no switch. The float32 tests force
its iteration to float32 by wrapping ``timm.optim.muon.zeropower_via_newtonschulz``
(the module global its step functions call) and run ours with
``ns_dtype='float32'``: then the two are the same arithmetic and the parity
bound is the harness's 2e-4. The bfloat16 path is checked bit for bit on single
Newton–Schulz calls, and over whole runs with a bound derived from bf16
rounding (see ``BF16_*`` below).
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import SHAPES, TOL, load_timm, run_parity, timm_ns_float32
from jaxopt_timm.transforms._orthogonalize import orthogonalize_via_newton_schulz, resolve_ns_coefficients
from parity import (
    VIT_GROUP_MATCHER, VIT_SHAPES, flax_axes as _flax_axes, in_flax_layout as _in_flax_layout, linear_decay,
    trajectory_diff, grouped_factory_parity, timm_muon_module as _timm_muon_module,
)

NAMES = ['muon', 'nmuon', 'adamuon', 'nadamuon']


def _timm():
    return load_timm()[0]


def _factory_f32(name, **kwargs):
    with timm_ns_float32():
        return run_parity(lambda m: _timm().create_optimizer_v2(m, name, **kwargs),
                          lambda p: jt.create_optimizer_v2(p, name, ns_dtype='float32', **kwargs))


def _alias_f32(lr=1e-2, steps=30, shapes=None, torch_lr=None, ours_lr=None, **kwargs):
    with timm_ns_float32():
        return run_parity(lambda m: _timm().Muon(m.parameters(), lr=lr, **kwargs),
                          lambda p: jt.optim.muon(ours_lr or lr, ns_dtype='float32', **kwargs),
                          steps=steps, shapes=shapes, torch_lr=torch_lr)


# --- routing: timm's shape rule, then the factory's fallback flags

@pytest.mark.parametrize('shape', [
    (64, 128), (96, 3, 4, 4), (4, 2048), (64,), (1, 196, 768), (8, 1, 3, 3), (3, 16), (16, 3, 3, 3),
    (8, 4, 3, 3), (6, 32), (1, 4, 16), (1,), (5, 700), (5, 600), (2, 4, 8), (7, 7, 1),
])
def test_routing_matches_timm(shape):
    timm_muon = _timm_muon_module()
    assert jt.optim.muon_routes_to_fallback(shape) == (not timm_muon._is_suitable_for_muon(torch.zeros(shape)))


# --- every name through both factories, weight decay on/off, float32 iteration

@pytest.mark.parametrize('name', ['nadamuon'])
def test_factory_fallback_list(name):
    kw = dict(lr=1e-2, weight_decay=0.05)
    routed = _factory_f32(name, fallback_list=['fc.*'], **kw).check()
    plain = _factory_f32(name, **kw)
    assert trajectory_diff(routed, plain) > 20 * TOL * routed.displacement  # fc.weight really switched optimizer


def test_factory_fallback_no_weight_decay():
    # timm's fallback_no_weight_decay reads model.no_weight_decay(); ours takes the list explicitly
    with timm_ns_float32():
        r = grouped_factory_parity('muon', SHAPES, weight_decay=0.05, fallback_no_weight_decay=True,
                                   model_attrs={'no_weight_decay': lambda: {'fc.weight'}},
                                   ours={'no_weight_decay_list': ('fc.weight',), 'ns_dtype': 'float32'})
    r.check()


@pytest.mark.parametrize('name', ['adamuon'])
def test_factory_layer_decay(name):
    with timm_ns_float32():
        r = grouped_factory_parity(name, VIT_SHAPES | {'blocks.0.mlp.weight': (16, 8)}, weight_decay=0.05,
                                   layer_decay=0.6,
                                   model_attrs={'group_matcher': lambda coarse=False: VIT_GROUP_MATCHER},
                                   ours={'group_matcher': VIT_GROUP_MATCHER, 'ns_dtype': 'float32'})
    r.check()


# --- the class's switches (float32 iteration)

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1, nesterov=True),
    dict(adjust_lr_fn='original', momentum=0.9),
    dict(adjust_lr_fn='rms_to_rms', weight_decay=0.1),
    dict(adjust_lr_fn=None, lr=2e-3, ns_coefficients='polar_express', safety_factor=1.01),
    dict(ns_coefficients='polar_express_safer', ns_steps=10, scale_eps=True, eps=1e-4),
    dict(ns_coefficients=(3.0, -3.2, 1.2), ns_steps=3, nesterov=True),
    dict(fallback_lr_scale=0.3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
])
def test_muon(kwargs):
    _alias_f32(**kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(nesterov=True, weight_decay=0.1),
    dict(adjust_lr_fn='rms_to_rms', betas=(0.9, 0.99)),
    dict(adjust_lr_fn='rsqrt_in', lr=5e-2),
    dict(adjust_lr_fn=None, lr=2e-3),
])
def test_adamuon(kwargs):
    _alias_f32(algo='adamuon', **kwargs).check()


def test_switches_change_the_run():
    base = _alias_f32(steps=10)
    for kw in (dict(conv_mode='batched'), dict(ns_coefficients='polar_express')):
        assert trajectory_diff(base, _alias_f32(steps=10, **kw)) > 20 * TOL * base.displacement, kw


@pytest.mark.parametrize('algo', ['muon', 'adamuon'])
def test_schedule(algo):
    sched = linear_decay(0.02, 30)
    _alias_f32(lr=0.02, ours_lr=sched, torch_lr=lambda t: float(sched(t)), algo=algo, weight_decay=0.1,
               nesterov=True).check()


CONV_SHAPES = {  # a wider conv and a 1-d conv, batched-mode matrices of several shapes, a transposed (tall) matrix
    'conv.weight': (16, 8, 3, 3),
    'conv1d.weight': (12, 6, 5),
    'fc.weight': (40, 12),
    'fc.bias': (40,),
    'dw.weight': (8, 1, 3, 3),  # depthwise: fallback
}


@pytest.mark.parametrize('kwargs', [
    dict(conv_mode='batched', normalize_spatial=False, nesterov=True), dict(conv_mode='batched', algo='adamuon'),
    dict(algo='adamuon', nesterov=True, adjust_lr_fn='rms_to_rms'),
])
def test_conv_leaves(kwargs):
    _alias_f32(shapes=CONV_SHAPES, weight_decay=0.05, **kwargs).check()


# --- bfloat16, as timm ships it

@pytest.mark.parametrize('shape', [(8, 36), (40, 12), (9, 8, 4)])
@pytest.mark.parametrize('kwargs', [
    dict(coefficients='quintic'), dict(coefficients='polar_express', safety_factor=1.01),
    dict(coefficients='original', scale_eps=True, steps=7),
])
def test_newton_schulz_bf16_bitwise(shape, kwargs):
    """With the same bf16 input, each fused product accumulated in f32 and rounded once gives timm's bits."""
    timm_muon = _timm_muon_module()
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    kwargs = dict(kwargs)
    steps = kwargs.pop('steps', 5)
    coeffs = kwargs.pop('coefficients')
    theirs = timm_muon.zeropower_via_newtonschulz(
        torch.tensor(g), steps, timm_muon.resolve_ns_coefficients(coeffs, timm_muon._COEFFICIENTS), **kwargs)
    ours = jax.jit(lambda x: orthogonalize_via_newton_schulz(x, steps, coeffs, **kwargs))(jnp.asarray(g))
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(ours.astype(jnp.float32)), theirs.float().numpy())


def test_newton_schulz_bf16_large_within_an_ulp():
    """With longer f32 dot products the accumulation order can differ from torch's and, at a rounding tie, move an
    entry by one bf16 ulp (2**-8 on |O| < 1, 2**-7 on [1, 2)); later iterations carry such ulps along."""
    timm_muon = _timm_muon_module()
    g = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    coeffs = timm_muon.resolve_ns_coefficients('polar_express', timm_muon._COEFFICIENTS)
    theirs = timm_muon.zeropower_via_newtonschulz(torch.tensor(g), 5, coeffs).float().numpy()
    ours = np.asarray(orthogonalize_via_newton_schulz(jnp.asarray(g), 5, 'polar_express').astype(jnp.float32))
    assert np.max(np.abs(ours - theirs)) <= 2.0 ** -7


# Whole runs in bf16 cannot be bitwise: the float32 momentum differs from timm's in the last bits (different but
# equally exact gradient/update rounding), and whenever such a difference crosses a bf16 rounding boundary of the
# Newton–Schulz input, that step's orthogonalised update moves by up to one bf16 ulp, 2**-8 relative (8 significant
# bits). Bounded by one ulp on every step, the error is <= 2**-8 * path length, and over these 30-step runs the path
# length is below 2x the max displacement: BF16_MUON = 2 * 2**-8. AdaMuon divides by the root second moment, which
# at step 1 is |O| itself (Adam's first step is a sign): an entry of O within an ulp of zero can flip sign and cost
# up to two full per-element steps, 2 * lr * 0.2 (match_rms_adamw), i.e. 4e-3 / 0.3 (displacement) ~ 1.3e-2.
BF16_MUON = 2 * 2.0 ** -8
BF16_ADAMUON = 1.5e-2


@pytest.mark.parametrize('weight_decay', [0.05])
@pytest.mark.parametrize('name', NAMES)
def test_factory_bf16_as_shipped(name, weight_decay):
    r = run_parity(lambda m: _timm().create_optimizer_v2(m, name, lr=1e-2, weight_decay=weight_decay),
                   lambda p: jt.create_optimizer_v2(p, name, lr=1e-2, weight_decay=weight_decay))
    r.check(BF16_ADAMUON if 'adamuon' in name else BF16_MUON)


# --- Flax layouts: ours on the Flax-transposed tree (parity.in_flax_layout), timm on the torch tree

FLAX_SHAPES = {  # no 3-d non-kernel leaves: layout='flax' reads every >=2-d leaf as a kernel
    'conv.weight': (16, 8, 3, 3),
    'conv1d.weight': (12, 6, 5),
    'fc.weight': (40, 12),
    'fc.bias': (40,),
    'head.weight': (6, 32),
    'dw.weight': (8, 1, 3, 3),
}


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.05), dict(algo='adamuon', conv_mode='batched', nesterov=True, weight_decay=0.05),
])
def test_flax_layout(kwargs):
    with timm_ns_float32():
        r = run_parity(lambda m: _timm().Muon(m.parameters(), lr=1e-2, **kwargs),
                       lambda p: _in_flax_layout(jt.optim.muon(1e-2, ns_dtype='float32', layout='flax', **kwargs)),
                       shapes=FLAX_SHAPES)
    r.check()


@pytest.mark.parametrize('name', ['muon', 'adamuon', 'nmuon', 'nadamuon'])
@pytest.mark.parametrize('flax_shape', [(64, 32), (256, 128), (3, 3, 32, 16)])
def test_flax_layout_bf16_jitted(name, flax_shape):
    """Default bfloat16 Newton-Schulz, jitted, on Flax kernels with more inputs than outputs.

    The transpose to torch's layout used to reach XLA:CPU's first product as a (0, 0)-contracting
    bfloat16 dot, which its runtime rejects ("UNIMPLEMENTED: ... DotThunk"); every Flax Dense kernel
    with in > out failed. Compared with the same leaf given in torch's layout: the same products in the
    same order, measured bit-identical; 1e-6 of the largest update leaves room for float32 reassociation.
    """
    axes = _flax_axes(len(flax_shape))
    torch_shape = tuple(flax_shape[a] for a in np.argsort(axes))
    g = jax.random.normal(jax.random.PRNGKey(0), torch_shape)
    flax_tree = {'w': jnp.transpose(g, axes)}
    ours = jt.create_optimizer_v2(flax_tree, name, lr=1e-2, layout='flax')
    u_flax, _ = jax.jit(ours.update)(flax_tree, ours.init(flax_tree), flax_tree)
    u_flax = np.asarray(jax.block_until_ready(u_flax)['w'])
    ref = jt.create_optimizer_v2({'w': g}, name, lr=1e-2)
    u_torch = np.asarray(jax.jit(ref.update)({'w': g}, ref.init({'w': g}), {'w': g})[0]['w'])
    assert np.all(np.isfinite(u_flax))
    np.testing.assert_allclose(np.transpose(u_flax, tuple(np.argsort(axes))), u_torch,
                               atol=1e-6 * np.abs(u_torch).max(), rtol=0)

def test_flax_routing():
    for shape in FLAX_SHAPES.values():
        flax_shape = tuple(shape[a] for a in _flax_axes(len(shape)))
        assert jt.optim.muon_routes_to_fallback(flax_shape, layout='flax') == jt.optim.muon_routes_to_fallback(shape)


def test_torch_layout_on_flax_tree_differs():
    kwargs = dict(conv_mode='batched', adjust_lr_fn='original')
    with timm_ns_float32():
        bad = run_parity(lambda m: _timm().Muon(m.parameters(), lr=1e-2, **kwargs),
                         lambda p: _in_flax_layout(jt.optim.muon(1e-2, ns_dtype='float32', **kwargs)),
                         shapes=FLAX_SHAPES, steps=10)
    assert bad.rel_err > 20 * TOL


# --- properties

def test_state_and_jit():
    params = {'w': jnp.ones((16, 32)), 'conv': jnp.ones((8, 4, 3, 3)), 'b': jnp.zeros(16)}
    tx = jt.optim.muon(0.02, weight_decay=0.01, algo='adamuon', use_fallback={'w': False, 'conv': True, 'b': False})
    state = tx.init(params)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))
    g = jax.tree.map(lambda p: 0.1 * jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) / p.size, params)
    u_jit, _ = jax.jit(tx.update)(g, state, params)
    u, _ = tx.update(g, state, params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_jit)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert jax.tree.structure(u) == jax.tree.structure(params)


def test_adamw_lr_is_deprecated_alias_of_fallback_lr_scale():
    g = {'w': jnp.ones((16, 32)), 'b': jnp.ones(16)}
    with pytest.warns(FutureWarning, match='adamw_lr'):
        old = jt.optim.muon(0.02, adamw_lr=0.004)
    new = jt.optim.muon(0.02, fallback_lr_scale=0.2)
    u_old, _ = old.update(g, old.init(g), g)
    u_new, _ = new.update(g, new.init(g), g)
    np.testing.assert_allclose(u_old['b'], u_new['b'], rtol=1e-6)
    with pytest.raises(ValueError, match='adamw_lr'), warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        jt.optim.muon(linear_decay(0.02, 10), adamw_lr=0.004)


def test_ns_coefficient_resolution():
    assert resolve_ns_coefficients((1, 2, 3)) == ((1.0, 2.0, 3.0),)
    assert len(resolve_ns_coefficients('polar_express')) == 8
