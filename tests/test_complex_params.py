"""Complex params follow torch: stepped as ``torch.view_as_real`` pairs where the reference does so, else refused.

Which names support complex params is measured, not assumed: ``test_policy_matches_the_reference`` steps each
name's timm/torch reference on complex64 params and on their real views and requires the record's
``complex_params`` to say exactly whether the two agree. The supported names then run against timm on a
complex tree (plus one real leaf) through our factory, the refused ones must raise at ``init``.

Gradients follow torch's convention ``dL/dx + i dL/dy``, the conjugate of ``jax.grad`` (as optax's own
complex tests conjugate).
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import (
    MIN_DISPLACEMENT, TOL, deviation, ensure_reference, load_timm, prepare_reference, reference_mode, to_tree,
    torch_module)

NAMES = jt.list_optimizers()
SUPPORTED = [n for n in NAMES if jt.get_optimizer_info(n).complex_params]
REFUSED = [n for n in NAMES if not jt.get_optimizer_info(n).complex_params]
COMPLEX_SHAPES = {'conv.weight': (4, 3, 2, 2), 'fc.bias': (5,), 'fc.weight': (5, 4)}
REAL_SHAPES = {'norm.weight': (4,)}
STEPS = 25


def _problem(shapes, seed=0):
    """Complex64 starting params (float32 for ``REAL_SHAPES``) and the loss's coefficients, numpy."""
    rng = np.random.default_rng(seed)
    init, coef = {}, {}
    for name, shape in shapes.items():
        z = 0.5 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
        init[name] = z.real.astype(np.float32) if name in REAL_SHAPES else z.astype(np.complex64)
        coef[name] = (rng.uniform(0.5, 1.5, shape).astype(np.float32),
                      (0.5 * rng.standard_normal(shape)).astype(np.float32),
                      (0.5 * rng.standard_normal(shape)).astype(np.float32))
    return init, coef


def _drift(t):
    return np.float32(np.sin(0.7 * t + 1.0))


def _leaf_loss(z, a, b_re, b_im, s, xp):
    """``a |z - s b|^2 + 0.05 |z|^4`` with ``b = b_re + i b_im``, in float32 parts (no complex abs at 0)."""
    complex_leaf = jnp.iscomplexobj(z) if xp is jnp else z.is_complex()
    re, im = (xp.real(z), xp.imag(z)) if complex_leaf else (z, 0.0 * z)
    sq = (re - s * b_re) ** 2 + (im - s * b_im) ** 2
    return (a * sq).sum() + 0.05 * ((re * re + im * im) ** 2).sum()


def _torch_run(name, init, coef, steps, real_view=False, **kwargs):
    """timm's factory for ``name`` on ``init`` (or on its complex leaves' real views), stepped ``steps`` times."""
    import torch
    timm_optim, _ = load_timm()
    flat = {k: (np.stack([v.real, v.imag], -1) if real_view and np.iscomplexobj(v) else v) for k, v in init.items()}
    torch.manual_seed(0)
    module = torch_module(flat)
    named = dict(module.named_parameters())
    info = jt.get_optimizer_info(name)
    timm_kwargs, _, context = reference_mode(name, kwargs)
    tcoef = {k: [torch.tensor(c) for c in v] for k, v in coef.items()}
    ensure_reference(name)  # a missing reference library fails here, never reads as "unsupported"
    with context, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        opt = prepare_reference(timm_optim.create_optimizer_v2(module, name, **timm_kwargs))
        for t in range(steps):
            def backward(s=float(_drift(t))):
                opt.zero_grad(set_to_none=True)
                loss = 0.0
                for k, p in named.items():
                    z = torch.view_as_complex(p) if real_view and np.iscomplexobj(init[k]) else p
                    loss = loss + _leaf_loss(z, *tcoef[k], s, torch)
                loss.backward(create_graph=info.second_order)

            backward()
            opt.step(backward) if info.grad_fn else opt.step()  # SAM steps with a closure
    return {k: _as_real(p.detach().numpy()) for k, p in named.items()}


def _as_real(x):
    x = np.asarray(x)
    return np.stack([x.real, x.imag], -1) if np.iscomplexobj(x) else x


def _ours(name, init, coef, steps, **kwargs):
    params = to_tree({k: jnp.asarray(v) for k, v in init.items()})
    coefs = to_tree({k: tuple(jnp.asarray(c) for c in v) for k, v in coef.items()})
    _, our_kwargs, _ = reference_mode(name, kwargs)
    tx = jt.create_optimizer_v2(params, name, **kwargs, **our_kwargs)

    def loss(p, s):
        per_leaf = jax.tree.map(lambda z, c: _leaf_loss(z, *c, s, jnp), p, coefs,
                                is_leaf=lambda x: isinstance(x, jax.Array))
        return sum(jax.tree.leaves(per_leaf))

    @jax.jit
    def step(p, state, s):
        grad_fn = lambda q: jax.tree.map(jnp.conj, jax.grad(loss)(q, s))  # noqa: E731  (torch's dL/dx + i dL/dy)
        extra = {'grad_fn': grad_fn} if jt.get_optimizer_info(name).grad_fn else {}
        updates, state = tx.update(grad_fn(p), state, p, **extra)
        return optax.apply_updates(p, updates), state

    state = tx.init(params)
    for t in range(steps):
        params, state = step(params, state, jnp.float32(_drift(t)))
    return {n: _as_real(v) for n, v in jt.optim.named_leaves(params)}, params


def _check(ours, theirs, init):
    rel, max_abs, disp = deviation(ours, theirs, {k: _as_real(v) for k, v in init.items()})
    assert disp > MIN_DISPLACEMENT, f'vacuous: params moved {disp:.3g}'
    assert rel <= TOL, f'deviation {rel:.3g} > {TOL} (max abs {max_abs:.3g}, displacement {disp:.3g})'


@pytest.mark.parametrize('name', NAMES)
def test_policy_matches_the_reference(name):
    """The record's ``complex_params`` is True exactly where timm's run on complex params finishes, finite and equal
    to its run on the real views (tensors of >= 2 dims, so timm's no-decay grouping by ndim is the same)."""
    init, coef = _problem({k: s for k, s in COMPLEX_SHAPES.items() if len(s) >= 2})
    kwargs = dict(lr=1e-2, weight_decay=0.05)
    from pytorch_optimizer.base.exception import NoComplexParameterError
    try:
        on_complex = _torch_run(name, init, coef, 6, **kwargs)
    except (RuntimeError, NotImplementedError, TypeError, NoComplexParameterError):  # what the references raise
        supported = False
    else:
        on_real = _torch_run(name, init, coef, 6, real_view=True, **kwargs)
        rel, _, _ = deviation(on_complex, on_real, {k: _as_real(v) for k, v in init.items()})
        supported = bool(np.isfinite(rel)) and rel < 1e-4
    assert jt.get_optimizer_info(name).complex_params == supported


@pytest.mark.parametrize('name', SUPPORTED)
def test_complex_parity(name):
    init, coef = _problem({**COMPLEX_SHAPES, **REAL_SHAPES})
    kwargs = dict(lr=1e-2, weight_decay=0.05)
    ours, _ = _ours(name, init, coef, STEPS, **kwargs)
    _check(ours, _torch_run(name, init, coef, STEPS, **kwargs), init)


@pytest.mark.parametrize('name,pack_leaves', [('adamw', 2), ('lars', 2), ('lookahead_adamw', None)])
def test_complex_parity_packed_and_lookahead(name, pack_leaves):
    init, coef = _problem({**COMPLEX_SHAPES, **REAL_SHAPES})
    ours, _ = _ours(name, init, coef, STEPS, lr=1e-2, weight_decay=0.05, pack_leaves=pack_leaves)
    _check(ours, _torch_run(name, init, coef, STEPS, lr=1e-2, weight_decay=0.05), init)


def test_adamw_alias_steps_both_parts():
    """The reported case: one AdamW step on ``1+1j`` with grad ``1+1j`` moves the imaginary part as torch does."""
    import torch
    p = torch.nn.Parameter(torch.tensor([1 + 1j], dtype=torch.complex64))
    opt = torch.optim.AdamW([p], lr=0.03, weight_decay=0.0)
    p.grad = torch.tensor([1 + 1j], dtype=torch.complex64)
    opt.step()
    expected = p.detach().numpy()
    param = jnp.asarray([1 + 1j], jnp.complex64)
    for tx in (jt.optim.adamw(0.03, weight_decay=0.0),
               optax.inject_hyperparams(jt.optim.adamw)(learning_rate=0.03, weight_decay=0.0)):
        updates, _ = tx.update(param, tx.init(param), param)
        np.testing.assert_allclose(np.asarray(optax.apply_updates(param, updates)), expected, rtol=1e-6)


def test_state_holds_real_pairs():
    params = {'w': jnp.ones((5, 4), jnp.complex64), 'r': jnp.ones(3)}
    state = jt.optim.adamw(1e-2).init(params)
    shapes = {(x.shape, str(x.dtype)) for x in jax.tree.leaves(state) if x.ndim}
    assert ((5, 4, 2), 'float32') in shapes and not any('complex' in d for _, d in shapes)


@pytest.mark.parametrize('name', REFUSED)
def test_refused_at_init(name):
    params = {'fc': {'weight': jnp.ones((5, 4), jnp.complex64)}, 'norm': {'weight': jnp.ones(4)}}
    tx = jt.create_optimizer_v2(params, name, lr=1e-2)
    with pytest.raises(ValueError, match=rf"optimizer '{name}' .*does not support complex params \(leaf 'fc\.weight'"
                                         r".*jnp\.stack\(\[x\.real, x\.imag\], -1\)"):
        tx.init(params)
    info = jt.get_optimizer_info(name)
    args = dict(info.defaults, learning_rate=1e-2, **({'momentum': 0.9} if info.has_momentum else {}))
    with pytest.raises(ValueError, match=r"does not support complex params \(leaf 'fc\.weight'"):
        info.alias(**args).init(params)


def test_an_alias_follows_the_record_its_arguments_match():
    """``sgdw`` serves ``sgdw`` (complex like torch) and ``csgdw`` (timm's caution mask fails on complex)."""
    params = {'w': jnp.ones((2, 2), jnp.complex64)}
    jt.optim.sgdw(1e-2, momentum=0.9, nesterov=True).init(params)
    with pytest.raises(ValueError, match=r"optimizer 'csgdw'"):
        jt.optim.sgdw(1e-2, momentum=0.9, nesterov=True, caution=True).init(params)
