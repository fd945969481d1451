"""Lion, LaProp, ADOPT, MARS and Adan against timm's classes: every registered name and distinctive switch."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity, to_tree
from parity import alias_parity, linear_decay, scheduled_parity, trajectory_diff

NAMES = ['lion', 'clion', 'lionc', 'clionc', 'laprop', 'claprop', 'lapropc',
         'adopt', 'adoptw', 'cadopt', 'cadoptw', 'adoptc', 'cadoptc', 'mars', 'cmars',
         'adan', 'adanw', 'cadan', 'cadanw']


def _timm():
    return load_timm()[0]


# --- Lion: sign updates are discontinuous; in these runs no component of the interpolated momentum sits within
# rounding of zero (measured errors ~1e-6, a single flipped sign would show as ~2*lr/displacement ~ 5e-2)

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.5),
    dict(weight_decay=0.5, caution=True),
    dict(weight_decay=0.1, maximize=True),
    dict(weight_decay=0.1, betas=(0.8, 0.95), caution=True, maximize=True),
])
def test_lion(kwargs):
    alias_parity(_timm().Lion, jt.optim.lion, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('caution', [False, True])
def test_lion_corrected_decay_with_schedule(caution):
    timm_cls = _timm().Lion
    r = scheduled_parity(timm_cls, jt.optim.lion, peak=0.02, weight_decay=2.0, caution=caution,
                   corrected_weight_decay=True)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.lion, peak=0.02, weight_decay=2.0, caution=caution)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


# --- LaProp

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.5),  # decay applied to the already-updated params
    dict(weight_decay=0.5, caution=True),
    dict(weight_decay=0.1, betas=(0.8, 0.95), eps=1e-3),
])
def test_laprop(kwargs):
    alias_parity(_timm().LaProp, jt.optim.laprop, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.1),  # the lr history lives in the momentum and in the lr-EMA bias correction
    dict(weight_decay=0.1, caution=True),
])
def test_laprop_with_schedule(kwargs):
    scheduled_parity(_timm().LaProp, jt.optim.laprop, **kwargs).check()


def test_laprop_corrected_decay_with_schedule():
    timm_cls = _timm().LaProp
    r = scheduled_parity(timm_cls, jt.optim.laprop, weight_decay=0.5, corrected_weight_decay=True)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.laprop, weight_decay=0.5)
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement


# --- ADOPT

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # L2: the decayed gradient also feeds the second moment
    dict(weight_decay=0.1, decoupled=True),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, decoupled=True, caution=True),
    dict(clip_exp=None, weight_decay=0.1),
    dict(clip_exp=0.5, betas=(0.3, 0.5), eps=1e-3),  # lerp weight above 0.5: torch's other lerp formula
    dict(weight_decay=0.1, maximize=True),
])
def test_adopt(kwargs):
    alias_parity(_timm().Adopt, jt.optim.adopt, lr=1e-2, **kwargs).check()


def test_adopt_clip_matters():
    """With a small clip exponent the clipping is active, so clip_exp=None must give a different run."""
    timm_cls = _timm().Adopt
    clipped = alias_parity(timm_cls, jt.optim.adopt, lr=1e-2, clip_exp=0.1, betas=(0.9, 0.5))
    clipped.check()
    free = alias_parity(timm_cls, jt.optim.adopt, lr=1e-2, clip_exp=None, betas=(0.9, 0.5))
    free.check()
    assert trajectory_diff(clipped, free) > 20 * 2e-4 * clipped.displacement


def test_adopt_first_step_moves_nothing():
    params = {'w': jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    tx = jt.optim.adopt(1e-2, weight_decay=0.5, decoupled=True)
    state = tx.init(params)
    updates, state = tx.update({'w': jnp.ones((2, 3))}, state, params)
    assert float(jnp.max(jnp.abs(updates['w']))) == 0.0
    updates, state = tx.update({'w': jnp.ones((2, 3))}, state, params)
    assert float(jnp.max(jnp.abs(updates['w']))) > 0.0


@pytest.mark.parametrize('caution', [False, True])
def test_adopt_corrected_decay_with_schedule(caution):
    timm_cls = _timm().Adopt
    kw = dict(weight_decay=0.5, decoupled=True, caution=caution)
    r = scheduled_parity(timm_cls, jt.optim.adopt, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.adopt, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement


# --- MARS

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, caution=True),
    dict(mars_type='lion', weight_decay=0.1),
    dict(mars_type='lion', caution=True),
    dict(optimize_1d=True, weight_decay=0.1),
    dict(optimize_1d=True, mars_type='lion', caution=True),
    dict(lr_1d_factor=0.5, betas_1d=(0.8, 0.95), gamma=0.2, weight_decay=0.1, eps=1e-4),
])
def test_mars(kwargs):
    alias_parity(_timm().Mars, jt.optim.mars, lr=1e-2, **kwargs).check()


def test_mars_1d_switches_change_the_1d_leaves():
    timm_cls = _timm().Mars
    base = alias_parity(timm_cls, jt.optim.mars, lr=1e-2)
    for kw in (dict(optimize_1d=True), dict(lr_1d_factor=0.5), dict(betas_1d=(0.5, 0.9))):
        other = alias_parity(timm_cls, jt.optim.mars, lr=1e-2, **kw)
        other.check()
        diff = float(np.max(np.abs(base.ours['conv.bias'] - other.ours['conv.bias'])))
        assert diff > 20 * 2e-4 * base.displacement, kw


def test_mars_with_schedule():
    scheduled_parity(_timm().Mars, jt.optim.mars, weight_decay=0.1, caution=True).check()


# --- Adan

@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # proximal: divide the updated params by 1 + lr*wd
    dict(weight_decay=0.1, no_prox=True),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, no_prox=True, caution=True, betas=(0.3, 0.6, 0.9), eps=1e-4),
])
def test_adan(kwargs):
    alias_parity(_timm().Adan, jt.optim.adan, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('no_prox', [False, True])
def test_adan_with_schedule(no_prox):
    scheduled_parity(_timm().Adan, jt.optim.adan, weight_decay=0.5, no_prox=no_prox).check()


# --- per-group lr scale (layer decay) with a schedule

def _lr_scale(name):
    return 0.3 if name.startswith(('conv', 'pos_embed')) else 1.0


@pytest.mark.parametrize('which,kwargs', [
    ('Lion', dict(weight_decay=1.0, corrected_weight_decay=True, caution=True)),
    ('LaProp', dict(weight_decay=0.5, corrected_weight_decay=True)),
    ('Adopt', dict(weight_decay=0.5, decoupled=True, corrected_weight_decay=True)),
    ('Mars', dict(weight_decay=0.1, lr_1d_factor=0.5)),
    ('Adan', dict(weight_decay=0.5)),
])
def test_lr_scale_groups_with_schedule(which, kwargs):
    timm_cls = getattr(_timm(), which)
    our_alias = {'Lion': jt.optim.lion, 'LaProp': jt.optim.laprop, 'Adopt': jt.optim.adopt,
                 'Mars': jt.optim.mars, 'Adan': jt.optim.adan}[which]
    peak, steps = 0.02, 30
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
    (jt.optim.lion, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.lion, dict(betas=(1.0, 0.99)), 'betas'),
    (jt.optim.lion, dict(betas=(0.9,)), 'betas'),
    (jt.optim.lion, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.lion, dict(caution=1), 'caution'),
    (jt.optim.lion, dict(maximize='no'), 'maximize'),
    (jt.optim.lion, dict(learning_rate=lambda t: 0.1, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.laprop, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.laprop, dict(betas=(0.9, 1.0)), 'betas'),
    (jt.optim.laprop, dict(eps=-1.0), 'eps'),
    (jt.optim.laprop, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.laprop, dict(corrected_weight_decay=None), 'corrected_weight_decay'),
    (jt.optim.laprop, dict(learning_rate=0.0, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.adopt, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adopt, dict(betas=(-0.1, 0.9999)), 'betas'),
    (jt.optim.adopt, dict(eps=-1e-6), 'eps'),
    (jt.optim.adopt, dict(clip_exp='x'), 'clip_exp'),
    (jt.optim.adopt, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adopt, dict(decoupled=0), 'decoupled'),
    (jt.optim.adopt, dict(learning_rate=lambda t: 0.1, decoupled=True, corrected_weight_decay=True), 'max_lr'),
    (jt.optim.mars, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.mars, dict(betas=(0.9, 1.5)), 'betas'),
    (jt.optim.mars, dict(eps=-1.0), 'eps'),
    (jt.optim.mars, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.mars, dict(mars_type='sgd'), 'mars_type'),
    (jt.optim.mars, dict(lr_1d_factor=-1.0), 'lr_1d_factor'),
    (jt.optim.mars, dict(betas_1d=(0.9, 1.0)), 'betas_1d'),
    (jt.optim.mars, dict(gamma=float('nan')), 'gamma'),
    (jt.optim.mars, dict(optimize_1d='yes'), 'optimize_1d'),
    (jt.optim.adan, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.adan, dict(betas=(0.98, 0.92)), 'betas'),
    (jt.optim.adan, dict(betas=(0.98, 0.92, 1.0)), 'betas'),
    (jt.optim.adan, dict(eps=-1.0), 'eps'),
    (jt.optim.adan, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.adan, dict(no_prox=1), 'no_prox'),
])
def test_invalid_hyperparameters(alias, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        alias(**kwargs)


@pytest.mark.parametrize('alias,kwargs', [
    (jt.optim.lion, dict(learning_rate=0.01, weight_decay=0.1)),
    (jt.optim.laprop, dict(learning_rate=0.01, weight_decay=0.1)),
    (jt.optim.adopt, dict(learning_rate=0.01, weight_decay=0.1, decoupled=True)),
    (jt.optim.mars, dict(learning_rate=0.01, weight_decay=0.1, gamma=0.1)),
    (jt.optim.adan, dict(learning_rate=0.01, weight_decay=0.1)),
])
def test_inject_hyperparams_matches(alias, kwargs):
    """Numeric hyperparameters may be traced (optax.inject_hyperparams) without changing the result."""
    import jax
    params = {'w': jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), 'b': jnp.zeros(3)}
    grads = {'w': jnp.linspace(0.2, 0.7, 6).reshape(3, 2), 'b': jnp.linspace(-1.0, 1.0, 3)}
    finals = []
    for tx in (alias(**kwargs), optax.inject_hyperparams(alias)(**kwargs)):
        state, p = tx.init(params), params
        step = jax.jit(tx.update)
        for _ in range(4):
            updates, state = step(grads, state, p)
            p = optax.apply_updates(p, updates)
        finals.append(p)
    for k in params:
        np.testing.assert_allclose(finals[0][k], finals[1][k], rtol=1e-6, atol=1e-7)
