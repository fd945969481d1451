"""Lamb and Lars (and the trust-ratio primitive) against timm's ``Lamb`` / ``Lars`` classes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.transforms import (
    add_decoupled_weight_decay, scale_by_learning_rate, scale_by_trust_ratio,
)
from jaxopt_timm.parity import TOL, factory_parity, load_timm, run_parity
from parity import alias_parity, linear_decay, trajectory_diff

LAMB_NAMES = ['lamb', 'lambc', 'lambw', 'lambcw', 'lambcd', 'clamb', 'clambw']
LARS_NAMES = ['lars', 'larc', 'nlars', 'nlarc']


def _timm():
    return load_timm()[0]


# ---------------------------------------------------------------- registry / factory

def test_registry_records():
    timm_optim = _timm()
    for name in LAMB_NAMES + LARS_NAMES:
        ours, theirs = jt.get_optimizer_info(name), timm_optim.get_optimizer_info(name)
        assert ours.description == theirs.description
        assert dict(ours.defaults) == dict(theirs.defaults or {})
        for key in ('has_eps', 'has_momentum', 'has_betas', 'num_betas', 'second_order'):
            assert getattr(ours, key) == getattr(theirs, key), (name, key)


def test_factory_always_adapt_on_undecayed_leaves():
    """The factory leaves biases/norms undecayed; always_adapt still gives them a trust ratio."""
    factory_parity('lamb', lr=1e-2, weight_decay=0.05, always_adapt=True).check()
    factory_parity('lars', lr=1.0, weight_decay=0.05, always_adapt=True, trust_coeff=0.02).check()


# ---------------------------------------------------------------- Lamb switches

@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1),
    dict(weight_decay=0.0),  # no trust ratio anywhere
    dict(weight_decay=0.0, always_adapt=True),
    dict(weight_decay=0.1, trust_clip=True),
    dict(weight_decay=0.1, grad_averaging=False),
    dict(weight_decay=0.1, bias_correction=False),
    dict(weight_decay=0.1, max_grad_norm=None),
    dict(weight_decay=0.1, max_grad_norm=0.1),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, caution=True, decoupled_decay=True),
    dict(weight_decay=0.1, decoupled_decay=True),
    dict(weight_decay=0.1, decoupled_decay=True, trust_clip=True, always_adapt=True),
    dict(weight_decay=0.05, betas=(0.8, 0.95), eps=1e-3),
])
def test_lamb(kwargs):
    alias_parity(_timm().Lamb, jt.optim.lamb, lr=1e-2, **kwargs).check()


def test_lamb_trust_clip_is_active():
    """The LAMBC cap binds in this run (else the trust_clip parity test would prove nothing)."""
    base = alias_parity(_timm().Lamb, jt.optim.lamb, lr=1e-2, weight_decay=0.1).check()
    clip = alias_parity(_timm().Lamb, jt.optim.lamb, lr=1e-2, weight_decay=0.1, trust_clip=True).check()
    assert trajectory_diff(base, clip) > 10 * TOL * clip.displacement


@pytest.mark.parametrize('max_grad_norm', [0.1, 2.0])
def test_lamb_grad_clip_is_global(max_grad_norm):
    """One clip factor for all leaves: clipping each leaf by its own norm gives another trajectory."""
    timm_optim = _timm()
    kw = dict(weight_decay=0.0, eps=1.0, max_grad_norm=max_grad_norm)
    r = alias_parity(timm_optim.Lamb, jt.optim.lamb, lr=1e-2, **kw).check()

    def per_leaf(params):
        clip = optax.GradientTransformation(
            optax.init_empty_state,
            lambda u, s, p=None: (jax.tree.map(
                lambda g: g / jnp.maximum(jnp.linalg.norm(g.ravel()) / max_grad_norm, 1.0), u), s))
        return optax.chain(clip, jt.optim.lamb(1e-2, weight_decay=0.0, eps=1.0, max_grad_norm=None))

    wrong = run_parity(lambda m: timm_optim.Lamb(m.parameters(), lr=1e-2, **kw), per_leaf)
    assert wrong.rel_err > 100 * TOL
    # and the clip is doing something at all
    unclipped = run_parity(
        lambda m: timm_optim.Lamb(m.parameters(), lr=1e-2, **kw),
        lambda p: jt.optim.lamb(1e-2, weight_decay=0.0, eps=1.0, max_grad_norm=None))
    assert unclipped.rel_err > 100 * TOL
    assert r.rel_err <= TOL


def test_lamb_decoupled_ratio_uses_shrunk_params():
    """timm shrinks p in place before ||p||: a ratio on the unshrunk p leaves parity."""
    timm_optim = _timm()
    lr, wd = 0.05, 1.0
    make_timm = lambda m: timm_optim.Lamb(m.parameters(), lr=lr, weight_decay=wd, decoupled_decay=True)  # noqa: E731
    alias_parity(timm_optim.Lamb, jt.optim.lamb, lr=lr, weight_decay=wd, decoupled_decay=True).check()

    def unshrunk(params):
        from jaxopt_timm.optim._lamb import clip_by_global_norm_ratio, scale_by_lamb
        return optax.chain(
            clip_by_global_norm_ratio(1.0), scale_by_lamb(),
            scale_by_trust_ratio(wd, form='lamb'),
            scale_by_learning_rate(lr), add_decoupled_weight_decay(wd, lr))

    assert run_parity(make_timm, unshrunk).rel_err > 10 * TOL


@pytest.mark.parametrize('extra', [dict(), dict(trust_clip=True, caution=True)])
def test_lamb_corrected_decay_with_schedule(extra):
    timm_optim = _timm()
    peak, steps, wd = 0.05, 30, 0.5
    sched = linear_decay(peak, steps)
    kw = dict(weight_decay=wd, decoupled_decay=True, **extra)
    r = run_parity(
        lambda m: timm_optim.Lamb(m.parameters(), lr=peak, corrected_weight_decay=True, **kw),
        lambda p: jt.optim.lamb(lambda t: sched(t), corrected_weight_decay=True, max_lr=peak, **kw),
        steps=steps, torch_lr=sched).check()
    plain = run_parity(
        lambda m: timm_optim.Lamb(m.parameters(), lr=peak, **kw),
        lambda p: jt.optim.lamb(lambda t: sched(t), **kw),
        steps=steps, torch_lr=sched).check()
    assert trajectory_diff(r, plain) > 10 * TOL * r.displacement


def test_lamb_corrected_decay_max_lr_from_schedule_base_lr():
    """Without max_lr, corrected decay takes the schedule's ``base_lr`` (as timm snapshots the constructor lr)."""
    timm_optim = _timm()
    peak, steps = 0.05, 20
    decay = linear_decay(peak, steps)

    def sched(t):
        return decay(t)
    sched.base_lr = peak

    kw = dict(weight_decay=0.5, decoupled_decay=True, corrected_weight_decay=True)
    run_parity(
        lambda m: timm_optim.Lamb(m.parameters(), lr=peak, **kw),
        lambda p: jt.optim.lamb(sched, **kw),
        steps=steps, torch_lr=decay).check()


def test_lamb_lr_scale_per_group():
    """Per-group lr (layer decay) enters the step and the decoupled decay's shrink before ||p||."""
    timm_optim = _timm()
    scales = {'conv.weight': 0.5, 'fc.weight': 0.25}

    def make_timm(m):
        groups = [dict(params=[p], lr_scale=scales.get(n, 1.0)) for n, p in m.named_parameters()]
        return timm_optim.Lamb(groups, lr=0.05, weight_decay=0.5, decoupled_decay=True, trust_clip=True)

    def make_ours(params):
        scale_tree = jax.tree.map(lambda _: 1.0, params)
        scale_tree['conv']['weight'] = 0.5
        scale_tree['fc']['weight'] = 0.25
        return jt.optim.lamb(0.05, weight_decay=0.5, decoupled_decay=True, trust_clip=True, lr_scale=scale_tree)

    run_parity(make_timm, make_ours, torch_lr=lambda t: 0.05).check()


# ---------------------------------------------------------------- Lars switches

@pytest.mark.parametrize('kwargs', [
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.0, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, dampening=0.3, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, weight_decay=0.0, always_adapt=True, trust_coeff=0.02),
    dict(lr=1e-2, momentum=0.9, weight_decay=0.0),  # plain SGD, no ratio
    dict(lr=0.05, momentum=0.9, weight_decay=0.1, trust_coeff=1.0, trust_clip=True),  # LARC cap binds
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, trust_clip=True),  # LARC cap idle
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1, trust_coeff=1.0, trust_clip=True),
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, eps=1.0),
])
def test_lars(kwargs):
    alias_parity(_timm().Lars, jt.optim.lars, **kwargs).check()


def test_lars_trust_clip_with_schedule_and_lr_scale():
    """LARC divides by the *group* lr at each step: scheduled and layer-scaled."""
    timm_optim = _timm()
    steps = 30
    sched = linear_decay(0.2, steps)

    def make_timm(m):
        groups = [dict(params=[p], lr_scale=0.3 if n == 'fc.weight' else 1.0) for n, p in m.named_parameters()]
        return timm_optim.Lars(groups, lr=0.2, momentum=0.9, weight_decay=0.1, trust_coeff=0.1, trust_clip=True)

    def make_ours(params):
        scale_tree = jax.tree.map(lambda _: 1.0, params)
        scale_tree['fc']['weight'] = 0.3
        return jt.optim.lars(
            lambda t: sched(t), momentum=0.9, weight_decay=0.1, trust_coeff=0.1, trust_clip=True,
            lr_scale=scale_tree)

    r = run_parity(make_timm, make_ours, steps=steps, torch_lr=sched).check()
    idle = run_parity(
        make_timm,
        lambda p: jt.optim.lars(lambda t: sched(t), momentum=0.9, weight_decay=0.1, trust_coeff=0.1),
        steps=steps, torch_lr=sched)
    assert idle.rel_err > 100 * TOL
    assert r.rel_err <= TOL


# ---------------------------------------------------------------- primitive and traced hyperparameters

def test_trust_ratio_is_one_on_zero_norms():
    params = {'zero_w': jnp.zeros(3), 'zero_g': jnp.ones(3), 'both': jnp.full((2, 2), 2.0)}
    grads = {'zero_w': jnp.ones(3), 'zero_g': jnp.zeros(3), 'both': jnp.ones((2, 2))}
    for form in ('lamb', 'lars'):
        tx = scale_by_trust_ratio(0.0, form=form, always_adapt=True, trust_coeff=1.0)
        out, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(out['zero_w'], grads['zero_w'])
        np.testing.assert_allclose(out['zero_g'], grads['zero_g'])
        np.testing.assert_allclose(out['both'], 2.0 * grads['both'], rtol=1e-6)


def test_trust_ratio_per_leaf_gate():
    params = {'decayed': jnp.full(4, 3.0), 'free': jnp.full(4, 3.0)}
    grads = {'decayed': jnp.ones(4), 'free': jnp.ones(4)}
    tx = scale_by_trust_ratio({'decayed': 0.1, 'free': 0.0}, form='lamb')
    out, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(out['decayed'], 3.0 * grads['decayed'], rtol=1e-6)
    np.testing.assert_allclose(out['free'], grads['free'])


@pytest.mark.parametrize('alias,kwargs', [
    (jt.optim.lamb, dict(learning_rate=1e-2, weight_decay=0.1)),
    (jt.optim.lamb, dict(learning_rate=1e-2, weight_decay=0.1, decoupled_decay=True, trust_clip=True)),
    (jt.optim.lars, dict(learning_rate=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, trust_clip=True)),
])
def test_inject_hyperparams(alias, kwargs):
    """Traced lr / weight decay (the per-leaf gate becomes a traced select) give the static answer."""
    params = {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.linspace(0.5, 1.0, 3)}
    grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)
    # momentum stays static: scale_by_torch_momentum branches on it in Python
    tx = optax.inject_hyperparams(alias, static_args=('momentum',) if 'momentum' in kwargs else ())(**kwargs)
    static = alias(**kwargs)
    s1, s2 = jax.jit(tx.init)(params), static.init(params)
    p1 = p2 = params
    for _ in range(3):
        u1, s1 = jax.jit(tx.update)(grads, s1, p1)
        u2, s2 = static.update(grads, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for k in params:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize('kwargs,arg', [
    (dict(learning_rate=-1e-3), 'learning_rate'),
    (dict(betas=(1.0, 0.999)), 'betas'),
    (dict(betas=(0.9, -0.1)), 'betas'),
    (dict(betas=(0.9,)), 'betas'),
    (dict(eps=-1e-6), 'eps'),
    (dict(weight_decay=-0.01), 'weight_decay'),
    (dict(weight_decay={'w': 0.1, 'b': -0.1}), 'weight_decay'),
    (dict(max_grad_norm=0.0), 'max_grad_norm'),
    (dict(max_grad_norm=-1.0), 'max_grad_norm'),
    (dict(trust_clip='yes'), 'trust_clip'),
    (dict(always_adapt=1), 'always_adapt'),
    (dict(bias_correction=None), 'bias_correction'),
    (dict(grad_averaging=0), 'grad_averaging'),
    (dict(caution='on'), 'caution'),
    (dict(decoupled_decay=1), 'decoupled_decay'),
    (dict(learning_rate=lambda t: 1e-3, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
    (dict(learning_rate=0.0, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
])
def test_lamb_validation(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        jt.optim.lamb(**kwargs)


@pytest.mark.parametrize('kwargs,arg', [
    (dict(learning_rate=-1.0), 'learning_rate'),
    (dict(momentum=-0.1), 'momentum'),
    (dict(dampening=1.5), 'dampening'),
    (dict(weight_decay=-1e-4), 'weight_decay'),
    (dict(eps=-1e-8), 'eps'),
    (dict(trust_coeff=0.0), 'trust_coeff'),
    (dict(trust_coeff=-0.001), 'trust_coeff'),
    (dict(nesterov=True), 'nesterov'),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), 'nesterov'),
    (dict(trust_clip=1), 'trust_clip'),
    (dict(always_adapt='no'), 'always_adapt'),
])
def test_lars_validation(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        jt.optim.lars(**kwargs)


def test_factory_validation():
    params = {'w': jnp.ones((2, 2))}
    with pytest.raises(ValueError, match='betas'):
        jt.create_optimizer_v2(params, 'lamb', lr=1e-3, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match='trust_coeff'):
        jt.create_optimizer_v2(params, 'larc', lr=1e-3, trust_coeff=-1.0)


def test_trust_ratio_validation():
    with pytest.raises(ValueError, match='form'):
        scale_by_trust_ratio(0.1, form='adam')
    with pytest.raises(ValueError, match='learning_rate'):
        scale_by_trust_ratio(0.1, form='lars', trust_clip=True)
    with pytest.raises(ValueError, match='learning_rate'):
        scale_by_trust_ratio(0.1, form='lamb', decoupled_decay=True)
    with pytest.raises(ValueError, match='eps'):
        scale_by_trust_ratio(0.1, eps=-1.0)
