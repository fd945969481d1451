"""AdamP and SGDP against timm's ``AdamP`` / ``SGDP``: every switch, and the projection branch on
scale-invariant weights (per channel and per layer) where the harness problem never projects.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import TOL
from parity import alias_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, nesterov=True, wd_ratio=0.01),
    dict(weight_decay=0.05, delta=0.5, caution=True),
    dict(betas=(0.8, 0.99), eps=1e-6, nesterov=True, caution=True),
])
def test_adamp(kwargs):
    alias_parity(_timm().AdamP, jt.optim.adamp, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.05, wd_ratio=0.01),
    dict(momentum=0.8, dampening=0.2, weight_decay=0.05, caution=True),
    dict(momentum=0.0, delta=0.5),
])
def test_sgdp(kwargs):
    alias_parity(_timm().SGDP, jt.optim.sgdp, **kwargs).check()


# The projection branch: the harness loss gives gradients well aligned with the weights, so nothing is
# projected there. Here three matrices are scale invariant per row (grad orthogonal to every output channel),
# scale invariant as a whole (grad orthogonal to the flattened weight only), and ordinary.

_PROJ_SHAPES = {'chan': (8, 4, 3, 3), 'layer': (6, 12), 'plain': (5, 7), 'bias': (6,)}


def _proj_arrays(seed=1):
    rng = np.random.default_rng(seed)
    init = {k: (0.5 * rng.standard_normal(s)).astype(np.float32) for k, s in _PROJ_SHAPES.items()}
    target = {k: rng.standard_normal(s).astype(np.float32) for k, s in _PROJ_SHAPES.items()}
    return init, target


def _drift(t):
    return np.float32(1.0 + 0.3 * np.sin(0.7 * t))


def _proj_loss(p, target, s, xp):
    chan = p['chan']
    rows = chan.reshape(chan.shape[0], -1)
    chan_n = rows / xp.sqrt((rows * rows).sum(1, keepdims=True))
    layer_n = p['layer'] / xp.sqrt((p['layer'] * p['layer']).sum())
    loss = ((chan_n - s * target['chan'].reshape(rows.shape) / 6.0) ** 2).sum()
    loss = loss + ((layer_n - s * target['layer'] / 8.0) ** 2).sum()
    loss = loss + (0.5 * p['plain'] ** 2 + s * target['plain'] * p['plain']).sum()
    return loss + (0.5 * p['bias'] ** 2 + s * target['bias'] * p['bias']).sum()


def _projection_parity(make_timm, make_ours, steps=25):
    init, target = _proj_arrays()
    tparams = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    ttarget = {k: torch.tensor(v) for k, v in target.items()}
    opt = make_timm(list(tparams.values()))
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        _proj_loss(tparams, ttarget, float(_drift(t)), torch).backward()
        opt.step()
    theirs = {k: v.detach().numpy() for k, v in tparams.items()}

    jtarget = {k: jnp.asarray(v) for k, v in target.items()}
    params = {k: jnp.asarray(v) for k, v in init.items()}
    tx = make_ours()
    state = tx.init(params)
    branches = []

    @jax.jit
    def step(params, state, s):
        grads = jax.grad(lambda p: _proj_loss(p, jtarget, s, jnp))(params)
        taken = {k: jt.transforms.projection_branch(params[k], grads[k], 0.1) for k in params}
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, taken

    for t in range(steps):
        params, state, taken = step(params, state, jnp.asarray(_drift(t)))
        branches.append({k: int(v) for k, v in taken.items()})
    err = max(float(np.max(np.abs(np.asarray(params[k]) - theirs[k]))) for k in init)
    disp = max(float(np.max(np.abs(theirs[k] - init[k]))) for k in init)
    return err / disp, disp, branches, {k: np.asarray(v) for k, v in params.items()}


@pytest.mark.parametrize('cls,alias,kwargs', [
    ('AdamP', jt.optim.adamp, dict(lr=1e-2, weight_decay=0.1, nesterov=True)),
    ('AdamP', jt.optim.adamp, dict(lr=1e-2, weight_decay=0.1, caution=True, wd_ratio=0.3)),
    ('SGDP', jt.optim.sgdp, dict(lr=5e-2, momentum=0.9, weight_decay=0.1, nesterov=True)),
    ('SGDP', jt.optim.sgdp, dict(lr=5e-2, momentum=0.9, weight_decay=0.1, caution=True)),
])
def test_projection_branch_parity(cls, alias, kwargs):
    kw = dict(kwargs)
    lr = kw.pop('lr')
    rel, disp, branches, ours = _projection_parity(
        lambda ps: getattr(_timm(), cls)(ps, lr=lr, **kw), lambda: alias(lr, **kw))
    assert disp > 1e-3
    assert rel <= TOL, rel
    # every step: per-channel projection on 'chan', whole-layer projection on 'layer', none elsewhere
    assert all(b == {'chan': 1, 'layer': 2, 'plain': 0, 'bias': 0} for b in branches), branches[:3]
    # and the projection changes the trajectory (delta=0 never projects)
    _, _, _, unprojected = _projection_parity(
        lambda ps: getattr(_timm(), cls)(ps, lr=lr, **kw), lambda: alias(lr, **dict(kw, delta=0.0)))
    assert np.max(np.abs(unprojected['chan'] - ours['chan'])) > 10 * TOL * disp


def test_projection_primitive_removes_radial_part():
    p = jnp.arange(1.0, 13.0).reshape(3, 4)
    g = jnp.array([[1.0, -1.0, 1.0, -1.0 * 1.0]] * 3)
    g = g - p * (jnp.sum(g * p, 1, keepdims=True) / jnp.sum(p * p, 1, keepdims=True))  # orthogonal per row
    u = p + g
    out, wd = jt.transforms.project_tangent(p, g, u, delta=0.1, wd_ratio=0.25, eps=1e-8)
    np.testing.assert_allclose(jnp.sum(out * p, 1), 0.0, atol=1e-4)
    assert float(wd) == 0.25
    out1, wd1 = jt.transforms.project_tangent(p[0], g[0], u[0], delta=0.1, wd_ratio=0.25, eps=1e-8)
    np.testing.assert_array_equal(out1, u[0])
    assert float(wd1) == 1.0
