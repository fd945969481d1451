"""torch.optim's Adam/Adamax/Adadelta/Adagrad/RMSprop, timm's SGDW and NAdamW: every name and switch vs the reference."""
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity, to_tree
from parity import alias_parity, linear_decay, scheduled_parity, trajectory_diff



def _timm():
    return load_timm()[0]


# --- torch.optim classes

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # L2: the decay enters both moments
    dict(weight_decay=0.1, amsgrad=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, decoupled_weight_decay=True),
    dict(betas=(0.8, 0.95), eps=1e-4, weight_decay=0.05, amsgrad=True, decoupled_weight_decay=True),
])
def test_adam(kwargs):
    alias_parity(torch.optim.Adam, jt.optim.adam, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, maximize=True),
    dict(betas=(0.8, 0.9), eps=1e-3, weight_decay=0.05),
])
def test_adamax(kwargs):
    alias_parity(torch.optim.Adamax, jt.optim.adamax, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(lr=1.0),
    dict(lr=1.0, weight_decay=0.1),
    dict(lr=0.5, weight_decay=0.1, maximize=True),
    dict(lr=1.0, rho=0.5, eps=1e-4, weight_decay=0.05),
])
def test_adadelta(kwargs):
    alias_parity(torch.optim.Adadelta, jt.optim.adadelta, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1, eps=1e-8),
    dict(weight_decay=0.1, lr_decay=0.05),  # lr / (1 + (t-1) * lr_decay)
    dict(initial_accumulator_value=0.5, lr_decay=0.01),
    dict(weight_decay=0.1, maximize=True),
])
def test_adagrad(kwargs):
    alias_parity(torch.optim.Adagrad, jt.optim.adagrad, lr=5e-2, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(alpha=0.9, weight_decay=0.1),
    dict(alpha=0.9, momentum=0.9, weight_decay=0.05),
    dict(alpha=0.9, centered=True, weight_decay=0.05),
    dict(alpha=0.9, momentum=0.9, centered=True, weight_decay=0.05),
    dict(alpha=0.9, momentum=0.5, eps=1e-3, weight_decay=0.05, maximize=True),
])
def test_rmsprop(kwargs):
    alias_parity(torch.optim.RMSprop, jt.optim.rmsprop, lr=1e-3, **kwargs).check()


def test_rmsprop_momentum_with_schedule():
    """torch keeps the lr out of RMSprop's momentum buffer, unlike timm's RMSpropTF."""
    scheduled_parity(torch.optim.RMSprop, jt.optim.rmsprop, peak=5e-3, alpha=0.9, momentum=0.9, weight_decay=0.05).check()


def test_adagrad_lr_decay_with_schedule():
    scheduled_parity(torch.optim.Adagrad, jt.optim.adagrad, lr_decay=0.05, weight_decay=0.05).check()


# --- SGDW

@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(momentum=0.0, weight_decay=0.1),
    dict(momentum=0.9, caution=True, weight_decay=0.1),
    dict(momentum=0.9, nesterov=True, caution=True, weight_decay=0.1),
    dict(momentum=0.0, caution=True, weight_decay=0.1),  # timm ignores caution without momentum
    dict(momentum=0.9, nesterov=True, weight_decay=0.1, corrected_weight_decay=True),  # float lr: == plain
])
def test_sgdw(kwargs):
    alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, **kwargs).check()


def test_sgdw_maximize():
    alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, steps=8, momentum=0.9, nesterov=True, maximize=True,
                 caution=True, weight_decay=0.01).check()


def test_sgdw_caution_changes_the_trajectory():
    on = alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, momentum=0.9, caution=True, weight_decay=0.1)
    off = alias_parity(_timm().SGDW, jt.optim.sgdw, lr=1e-2, momentum=0.9, weight_decay=0.1)
    assert trajectory_diff(on, off) > 20 * 2e-4 * on.displacement


@pytest.mark.parametrize('caution', [False, True])
def test_sgdw_corrected_decay_with_schedule(caution):
    timm_cls = _timm().SGDW
    kw = dict(momentum=0.9, nesterov=True, weight_decay=0.5, caution=caution)
    r = scheduled_parity(timm_cls, jt.optim.sgdw, peak=0.02, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.sgdw, peak=0.02, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement


# --- NAdamW

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.0, betas=(0.8, 0.95), eps=1e-6),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, clipping_threshold=0.5),
    dict(weight_decay=0.1, clipping_threshold=0.5, caution=True),
])
def test_nadamw(kwargs):
    alias_parity(_timm().NAdamW, jt.optim.nadamw, **kwargs).check()


@pytest.mark.parametrize('alias', ['nadamw', 'adamw_legacy'])
def test_clipping_threshold_clips(alias):
    """A threshold well below the early update RMS (about 1) must change the trajectory, and still match timm."""
    timm_cls = {'nadamw': _timm().NAdamW, 'adamw_legacy': _timm().AdamWLegacy}[alias]
    ours = getattr(jt.optim, alias)
    clipped = alias_parity(timm_cls, ours, weight_decay=0.1, clipping_threshold=0.3)
    clipped.check()
    free = alias_parity(timm_cls, ours, weight_decay=0.1)
    assert trajectory_diff(clipped, free) > 20 * 2e-4 * clipped.displacement


@pytest.mark.parametrize('kwargs', [
    dict(clipping_threshold=0.3, amsgrad=True),
    dict(clipping_threshold=0.3, caution=True, corrected_weight_decay=True),
    dict(clipping_threshold=1.0),
])
def test_adamw_legacy_clipping(kwargs):
    alias_parity(_timm().AdamWLegacy, jt.optim.adamw_legacy, weight_decay=0.1, **kwargs).check()


@pytest.mark.parametrize('caution', [False, True])
def test_nadamw_corrected_decay_with_schedule(caution):
    timm_cls = _timm().NAdamW
    kw = dict(weight_decay=0.5, caution=caution, clipping_threshold=0.5)
    r = scheduled_parity(timm_cls, jt.optim.nadamw, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.nadamw, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement


# --- per-group lr scale (layer decay) with a schedule: the group lr enters the corrected decay

def _lr_scale(name):
    return 0.3 if name.startswith(('conv', 'pos_embed')) else 1.0


@pytest.mark.parametrize('which,kwargs', [
    ('sgdw', dict(momentum=0.9, nesterov=True, caution=True, weight_decay=0.3, corrected_weight_decay=True)),
    ('nadamw', dict(weight_decay=0.3, caution=True, corrected_weight_decay=True, clipping_threshold=0.5)),
    ('adagrad', dict(lr_decay=0.05, weight_decay=0.1)),
    ('rmsprop', dict(momentum=0.9, centered=True, alpha=0.9, weight_decay=0.1)),
])
def test_lr_scale_groups_with_schedule(which, kwargs):
    timm_cls = {'sgdw': _timm().SGDW, 'nadamw': _timm().NAdamW, 'adagrad': torch.optim.Adagrad,
                'rmsprop': torch.optim.RMSprop}[which]
    our_alias = getattr(jt.optim, which)
    peak, steps = 0.01, 30
    sched = linear_decay(peak, steps)

    def make_timm(module):
        groups = {}
        for name, p in module.named_parameters():
            groups.setdefault(_lr_scale(name), []).append(p)
        return timm_cls([dict(params=ps, lr_scale=s) for s, ps in groups.items()], lr=peak, **kwargs)

    def make_ours(params):
        names = dict(jt.optim.named_leaves(params))
        scale = to_tree({n: _lr_scale(n) for n in names})
        extra = {'max_lr': peak} if kwargs.get('corrected_weight_decay') else {}
        return our_alias(sched, lr_scale=scale, **kwargs, **extra)

    run_parity(make_timm, make_ours, steps=steps, torch_lr=lambda t: float(sched(t))).check()


# --- validation

@pytest.mark.parametrize('alias,kwargs,arg', [
    (jt.optim.adam, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adam, dict(betas=(1.0, 0.999)), 'betas'),
    (jt.optim.adam, dict(eps=-1.0), 'eps'),
    (jt.optim.adam, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adam, dict(amsgrad='yes'), 'amsgrad'),
    (jt.optim.adam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.adamax, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.adamax, dict(eps=-1.0), 'eps'),
    (jt.optim.adadelta, dict(rho=1.5), 'rho'),
    (jt.optim.adadelta, dict(rho=-0.1), 'rho'),
    (jt.optim.adadelta, dict(eps=-1e-6), 'eps'),
    (jt.optim.adagrad, dict(lr_decay=-0.1), 'lr_decay'),
    (jt.optim.adagrad, dict(initial_accumulator_value=-1.0), 'initial_accumulator_value'),
    (jt.optim.adagrad, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.rmsprop, dict(alpha=-0.1), 'alpha'),
    (jt.optim.rmsprop, dict(momentum=-0.9), 'momentum'),
    (jt.optim.rmsprop, dict(centered=1), 'centered'),
    (jt.optim.rmsprop, dict(maximize=None), 'maximize'),
    (jt.optim.sgdw, dict(learning_rate=float('nan')), 'learning_rate'),
    (jt.optim.sgdw, dict(momentum=-0.1), 'momentum'),
    (jt.optim.sgdw, dict(dampening=1.5), 'dampening'),
    (jt.optim.sgdw, dict(nesterov=True, momentum=0.0), 'nesterov'),
    (jt.optim.sgdw, dict(nesterov=True, momentum=0.9, dampening=0.1), 'nesterov'),
    (jt.optim.sgdw, dict(caution='on'), 'caution'),
    (jt.optim.sgdw, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.sgdw, dict(learning_rate=0.0, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.nadamw, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.nadamw, dict(betas=(0.9,)), 'betas'),
    (jt.optim.nadamw, dict(eps=-1e-8), 'eps'),
    (jt.optim.nadamw, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.nadamw, dict(clipping_threshold=0.0), 'clipping_threshold'),
    (jt.optim.nadamw, dict(clipping_threshold=-1.0), 'clipping_threshold'),
    (jt.optim.nadamw, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.adamw_legacy, dict(clipping_threshold=0.0), 'clipping_threshold'),
])
def test_invalid_hyperparameters(alias, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        alias(**kwargs)


def test_corrected_decay_uses_schedule_base_lr():
    sched, _ = jt.create_scheduler_v2(0.1, sched='cosine', num_epochs=10)
    jt.optim.sgdw(sched, weight_decay=0.1, corrected_weight_decay=True)  # peak taken from sched.base_lr
    jt.optim.nadamw(sched, corrected_weight_decay=True)
