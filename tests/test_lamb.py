"""Lamb (``lamb``, ``lambc``, ``lambw``, ...) against timm's ``Lamb``: every switch, the global grad clip, the
trust ratio on the decay-shrunk params, the corrected decay under a schedule and a per-group lr.
"""
import jax
import jax.numpy as jnp
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.transforms import add_decoupled_weight_decay, scale_by_learning_rate, scale_by_trust_ratio
from jaxopt_timm.parity import TOL, run_parity
from parity import alias_parity, linear_decay, timm_optim as _timm, trajectory_diff


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
