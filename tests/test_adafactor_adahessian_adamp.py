"""Adafactor, AdaHessian, AdamP and SGDP against timm's classes: every name, every distinctive switch."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import TOL, factory_parity, load_timm, run_parity
from parity import alias_parity


# The harness tree has no dim above 16, so nothing in it is factored: this one exercises timm's heuristic
# (leading out/in channels of a conv, trailing dims of a 4-d and a 3-d tensor, a linear) next to full moments.
FACTORED_SHAPES = {
    'conv.weight': (20, 18, 3, 3),      # factored over (O, I)
    'conv2.weight': (4, 20, 17, 18),    # leading dims too small: factored over the last two
    'fc.weight': (24, 32),
    'fc.bias': (24,),
    'emb': (2, 20, 24),
    'conv1d.weight': (20, 18, 17),      # (O, I, k): factored over (O, I); a naive Flax read would pick (k, I)
    'small.weight': (6, 32),            # 6 <= 16: full second moment
    'gamma': (1,),
}


def _timm():
    return load_timm()[0]


def test_factory_adafactor_relative_step():
    """lr=None: timm's Adafactor switches to its relative step size; the factory must keep lr unset."""
    factory_parity('adafactor', lr=None, weight_decay=0.05).check()


# --------------------------------------------------------------------------------------------- Adafactor

@pytest.mark.parametrize('lr,kwargs', [
    (None, dict()),                                                 # relative step, parameter scale
    (None, dict(scale_parameter=False, weight_decay=0.1)),          # relative step, no parameter scale
    (None, dict(betas=(0.9, 0.999))),                               # first moment on
    (None, dict(betas=(0.8, 0.99), caution=True, weight_decay=0.1)),
    (1e-2, dict()),                                                 # external lr: no relative step
    (1e-2, dict(clip_threshold=0.1, weight_decay=0.1)),             # RMS clipping active every step
    (1e-2, dict(decay_rate=-0.5, eps=1e-20, min_dim_size_to_factor=20)),
])
def test_adafactor(lr, kwargs):
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=lr, **kwargs),
        lambda p: jt.optim.adafactor(lr, **kwargs),
        shapes=FACTORED_SHAPES)
    r.check()


def test_adafactor_warmup_init():
    # warm-up lr is 1e-6 * t: run long enough that the displacement is well above float32 rounding
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), warmup_init=True),
        lambda p: jt.optim.adafactor(warmup_init=True),
        shapes=FACTORED_SHAPES, steps=80)
    r.check()


def test_adafactor_clipping_is_active():
    """clip_threshold=0.1 really changes the run (so the clipped test above is not vacuous)."""
    clipped = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=1e-2, clip_threshold=0.1),
        lambda p: jt.optim.adafactor(1e-2, clip_threshold=0.1), shapes=FACTORED_SHAPES, steps=5)
    plain = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=1e-2),
        lambda p: jt.optim.adafactor(1e-2), shapes=FACTORED_SHAPES, steps=5)
    diff = max(np.max(np.abs(clipped.ours[k] - plain.ours[k])) for k in plain.ours)
    assert diff > 0.1 * plain.displacement


def test_adafactor_factored_dims():
    f = jt.optim.adafactor_factored_dims
    assert f((20, 18, 3, 3)) == (0, 1)
    assert f((4, 20, 17, 18)) == (2, 3)
    assert f((6, 32)) is None
    assert f((32, 24), layout='flax') == (1, 0)            # Dense (in, out) = torch (out, in)
    assert f((3, 3, 18, 20), layout='flax') == (3, 2)      # conv (kH, kW, I, O) = torch (O, I, kH, kW)
    assert f((17, 18, 20, 4), layout='flax') == (0, 1)     # torch (4, 20, 17, 18): trailing kernel dims
    assert f((17, 18, 20), layout='flax') == (2, 1) and f((17, 18, 20)) == (0, 1)
    params = {'fc': jnp.ones((24, 32)), 'b': jnp.ones(24)}
    inner = jt.optim.adafactor().init(params)
    assert inner.exp_avg_sq_row['fc'].shape == (24, 1) and inner.exp_avg_sq_col['fc'].shape == (1, 32)
    assert inner.exp_avg_sq['fc'] is None and inner.exp_avg_sq['b'].shape == (24,)


# --- Flax layouts: run ours on the Flax-transposed tree, timm on the torch tree.

def _flax_axes(ndim):
    """Transpose taking a torch-layout tensor to Flax layout (Dense (in, out), conv (*k, I, O))."""
    if ndim < 2:
        return tuple(range(ndim))
    if ndim == 2:
        return (1, 0)
    return tuple(range(2, ndim)) + (1, 0)


def _to_flax(tree):
    return jax.tree.map(lambda x: jnp.transpose(x, _flax_axes(x.ndim)), tree)


def _to_torch(tree):
    return jax.tree.map(lambda x: jnp.transpose(x, tuple(np.argsort(_flax_axes(x.ndim)))), tree)


def _in_flax_layout(inner):
    """Present a torch-layout tree to ``inner`` transposed to Flax layout (and its updates back)."""
    def init_fn(params):
        return inner.init(_to_flax(params))

    def update_fn(grads, state, params=None, **extra):
        if 'hvp_fn' in extra:
            hvp = extra['hvp_fn']
            extra = dict(extra, hvp_fn=lambda v: _to_flax(hvp(_to_torch(v))))
        updates, state = inner.update(_to_flax(grads), state, _to_flax(params), **extra)
        return _to_torch(updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def test_flax_axes_match_option():
    for shape in [(24, 32), (20, 18, 3, 3), (4, 20, 17, 18), (2, 20, 24), (20, 18, 17)]:
        flax_shape = tuple(shape[a] for a in _flax_axes(len(shape)))
        torch_dims = jt.optim.adafactor_factored_dims(shape)
        flax_dims = jt.optim.adafactor_factored_dims(flax_shape, layout='flax')
        assert (torch_dims is None) == (flax_dims is None)
        if torch_dims is not None:
            assert [flax_shape[a] for a in flax_dims] == [shape[a] for a in torch_dims]


@pytest.mark.parametrize('lr,kwargs', [
    (None, dict(weight_decay=0.05)),
    (1e-2, dict(betas=(0.9, 0.999), clip_threshold=0.5)),
])
def test_adafactor_flax_layout(lr, kwargs):
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=lr, **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor(lr, layout='flax', **kwargs)),
        shapes=FACTORED_SHAPES)
    r.check()


def test_adafactor_torch_layout_on_flax_tree_differs():
    """Without the option a transposed tree is factored differently, so the option is doing the work."""
    kwargs = dict(lr=None)
    good = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor(layout='flax')), shapes=FACTORED_SHAPES, steps=10)
    bad = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor()), shapes=FACTORED_SHAPES, steps=10)
    assert good.rel_err <= TOL < bad.rel_err


# --------------------------------------------------------------------------------------------- AdaHessian

@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(hessian_power=0.5, weight_decay=0.05),
    dict(update_each=2),
    dict(update_each=3, n_samples=2, weight_decay=0.05),
    dict(n_samples=2, betas=(0.8, 0.99), eps=1e-6),
    dict(avg_conv_kernel=True, weight_decay=0.05),
    dict(avg_conv_kernel=True, update_each=2, hessian_power=0.7),
])
def test_adahessian(kwargs):
    alias_parity(_timm().Adahessian, jt.optim.adahessian, lr=0.05, second_order=True, **kwargs).check()


def test_adahessian_flax_layout_conv_averaging():
    r = run_parity(
        lambda m: _timm().Adahessian(m.parameters(), lr=0.05, avg_conv_kernel=True, weight_decay=0.05),
        lambda p: _in_flax_layout(jt.optim.adahessian(0.05, avg_conv_kernel=True, weight_decay=0.05, layout='flax')),
        second_order=True)
    r.check()


def test_adahessian_update_each_reuses_estimate():
    """With update_each=k the stored estimate changes only on steps 0, k, 2k, ..."""
    loss_fn = lambda p: jnp.sum(p['w'] ** 4)  # noqa: E731
    params = {'w': jnp.array([1.0, -2.0, 0.5])}
    tx = jt.optim.adahessian(0.1, update_each=3)
    state = tx.init(params)
    seen = []
    for _ in range(6):
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, hvp_fn=jt.optim.hvp_fn_from_loss(loss_fn, params))
        params = optax.apply_updates(params, updates)
        seen.append(np.asarray(state[0].hessian['w']))
    assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], seen[2])
    assert not np.array_equal(seen[2], seen[3]) and np.array_equal(seen[3], seen[5])


def test_hvp_fn_from_loss():
    def loss_fn(p, x):
        return jnp.sum(jnp.sin(p['a'] @ x) * p['b'] ** 2)
    params = {'a': jnp.arange(6.0).reshape(2, 3) / 5, 'b': jnp.array([0.5, -1.0])}
    x = jnp.array([0.3, -0.2, 0.9])
    v = {'a': jnp.ones((2, 3)), 'b': jnp.array([1.0, 2.0])}
    hv = jt.optim.hvp_fn_from_loss(loss_fn, params, x)(v)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hess = jax.hessian(lambda f: loss_fn(unravel(f), x))(flat)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(hv)[0], hess @ jax.flatten_util.ravel_pytree(v)[0],
                               rtol=1e-5, atol=1e-6)


def test_hutchinson_estimate_is_unbiased_for_dense_hessian():
    h = jnp.array([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]])
    est, _ = jt.transforms.hutchinson_diagonal(lambda v: h @ v, jax.random.PRNGKey(0), jnp.zeros(3), n_samples=4000)
    # Monte Carlo: the estimate's std per entry is sqrt(sum of squared off-diagonals / n) <= 0.6 / sqrt(4000) ~ 0.01,
    # so 0.05 is a 5-sigma bound; exactness is tested on diagonal Hessians (the parity runs).
    np.testing.assert_allclose(est, jnp.diag(h), atol=0.05)


def test_adahessian_needs_hvp_fn():
    tx = jt.optim.adahessian()
    params = {'w': jnp.ones(3)}
    with pytest.raises(ValueError, match='hvp_fn'):
        tx.update(params, tx.init(params), params)


# --------------------------------------------------------------------------------------------- AdamP / SGDP

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


# --- The projection branch: the harness loss gives gradients well aligned with the weights, so nothing is
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


# --------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize('build,arg', [
    (lambda: jt.optim.adafactor(-1.0), 'learning_rate'),
    (lambda: jt.optim.adafactor(betas=(1.0, 0.999)), 'betas'),
    (lambda: jt.optim.adafactor(eps=-1e-30), 'eps'),
    (lambda: jt.optim.adafactor(eps_scale=-1.0), 'eps_scale'),
    (lambda: jt.optim.adafactor(weight_decay=-0.1), 'weight_decay'),
    (lambda: jt.optim.adafactor(clip_threshold=0.0), 'clip_threshold'),
    (lambda: jt.optim.adafactor(decay_rate=0.5), 'decay_rate'),
    (lambda: jt.optim.adafactor(1e-2, warmup_init=True), 'warmup_init'),
    (lambda: jt.optim.adafactor(min_dim_size_to_factor=-1), 'min_dim_size_to_factor'),
    (lambda: jt.optim.adafactor(layout='nhwc'), 'layout'),
    (lambda: jt.optim.adafactor(scale_parameter=1), 'scale_parameter'),
    (lambda: jt.optim.adahessian(-0.1), 'learning_rate'),
    (lambda: jt.optim.adahessian(betas=(0.9, 1.0)), 'betas'),
    (lambda: jt.optim.adahessian(eps=-1.0), 'eps'),
    (lambda: jt.optim.adahessian(weight_decay=-1.0), 'weight_decay'),
    (lambda: jt.optim.adahessian(hessian_power=1.5), 'hessian_power'),
    (lambda: jt.optim.adahessian(update_each=0), 'update_each'),
    (lambda: jt.optim.adahessian(n_samples=0), 'n_samples'),
    (lambda: jt.optim.adahessian(n_samples=1.5), 'n_samples'),
    (lambda: jt.optim.adahessian(layout='nchw'), 'layout'),
    (lambda: jt.optim.adamp(-1e-3), 'learning_rate'),
    (lambda: jt.optim.adamp(betas=(-0.1, 0.999)), 'betas'),
    (lambda: jt.optim.adamp(eps=-1e-8), 'eps'),
    (lambda: jt.optim.adamp(weight_decay=-1e-2), 'weight_decay'),
    (lambda: jt.optim.adamp(delta=-0.1), 'delta'),
    (lambda: jt.optim.adamp(wd_ratio=-0.1), 'wd_ratio'),
    (lambda: jt.optim.sgdp(), 'learning_rate'),
    (lambda: jt.optim.sgdp(-0.1), 'learning_rate'),
    (lambda: jt.optim.sgdp(0.1, momentum=1.0), 'momentum'),
    (lambda: jt.optim.sgdp(0.1, dampening=-0.1), 'dampening'),
    (lambda: jt.optim.sgdp(0.1, eps=-1.0), 'eps'),
    (lambda: jt.optim.sgdp(0.1, weight_decay=-1.0), 'weight_decay'),
    (lambda: jt.optim.sgdp(0.1, delta=-1.0), 'delta'),
    (lambda: jt.optim.sgdp(0.1, wd_ratio=-1.0), 'wd_ratio'),
    (lambda: jt.optim.sgdp(0.1, nesterov='yes'), 'nesterov'),
])
def test_bad_hyperparameters(build, arg):
    with pytest.raises(ValueError, match=arg):
        build()
