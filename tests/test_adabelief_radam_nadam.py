"""AdaBelief, RAdam (torch and legacy) and NAdam (torch and legacy) against the timm/torch classes."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.transforms import one_minus_pow, rectified_step_size, sma_length
from jaxopt_timm.parity import factory_parity, load_timm, run_parity, to_tree
from parity import alias_parity


def _timm():
    return load_timm()[0]


# ---------------------------------------------------------------- AdaBelief

@pytest.mark.parametrize('kwargs', [
    dict(rectify=False, weight_decay=0.0),
    dict(rectify=False, weight_decay=0.1),  # decoupled lr * wd
    dict(rectify=False, weight_decay=0.1, amsgrad=True),  # max of the eps-accumulating raw moment
    dict(rectify=False, weight_decay=0.1, decoupled_decay=False),  # L2 into the belief
    dict(rectify=False, weight_decay=0.05, fixed_decay=True),  # p *= 1 - wd, no lr
    dict(rectify=False, weight_decay=0.0, eps=1e-8, betas=(0.8, 0.95)),
    dict(rectify=True, weight_decay=0.0),  # SGD steps for rho_t < 5, then rectified adaptive
    dict(rectify=True, weight_decay=0.1),
    dict(rectify=True, weight_decay=0.1, amsgrad=True),  # the rectified step ignores the max
    dict(rectify=True, weight_decay=0.1, degenerated_to_sgd=False),  # no step until rho_t >= 5
    dict(rectify=True, weight_decay=0.1, decoupled_decay=False),
    dict(rectify=True, weight_decay=0.05, fixed_decay=True, betas=(0.9, 0.99)),
])
def test_adabelief(kwargs):
    alias_parity(_timm().AdaBelief, jt.optim.adabelief, steps=30, **kwargs).check()


def test_adabelief_lr_scale_and_schedule():
    """Per-group lr (layer decay) and a schedule both enter the decoupled decay as timm's group lr."""
    peak, steps = 0.03, 30
    sched = lambda t: peak * (1.0 - 0.9 * t / steps)  # noqa: E731
    names = ('conv.weight', 'conv.bias', 'norm.weight', 'norm.bias', 'fc.weight', 'fc.bias', 'pos_embed', 'gamma')
    scales = {n: (0.5 if n.startswith('conv') else 1.0) for n in names}
    decays = {n: (0.0 if n.endswith('bias') else 0.2) for n in names}

    def make_timm(m):
        groups = [dict(params=[p], lr_scale=scales[n], weight_decay=decays[n]) for n, p in m.named_parameters()]
        return _timm().AdaBelief(groups, lr=peak, rectify=True)

    def make_ours(params):
        return jt.optim.adabelief(
            lambda t: sched(jnp.asarray(t, jnp.float32)), rectify=True,
            weight_decay=to_tree(decays), lr_scale=to_tree(scales))

    run_parity(make_timm, make_ours, steps=steps, torch_lr=sched).check()


def test_adabelief_degenerated_to_sgd_matters():
    """degenerated_to_sgd=False and no decay: nothing moves while rho_t < 5 (the first 5 steps for beta2=0.999)."""
    r = alias_parity(_timm().AdaBelief, jt.optim.adabelief, steps=5, rectify=True, degenerated_to_sgd=False)
    assert r.displacement == 0.0
    np.testing.assert_array_equal(r.ours['fc.weight'], r.theirs['fc.weight'])


# ---------------------------------------------------------------- RAdam

@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),  # L2
    dict(weight_decay=0.1, decoupled_weight_decay=True),  # radamw
    dict(weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6),
    dict(weight_decay=0.1, maximize=True),
])
def test_radam_torch(kwargs):
    alias_parity(torch.optim.RAdam, jt.optim.radam, steps=30, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(weight_decay=0.05, betas=(0.85, 0.98), eps=1e-6),
])
def test_radam_legacy(kwargs):
    alias_parity(_timm().RAdamLegacy, jt.optim.radam_legacy, steps=30, **kwargs).check()


def test_radamw_factory():
    factory_parity('radamw', lr=1e-2, weight_decay=0.1).check()


# ---------------------------------------------------------------- NAdam

@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),  # L2, also in the Nesterov gradient term
    dict(weight_decay=0.1, decoupled_weight_decay=True),
    dict(weight_decay=0.05, momentum_decay=0.05),  # a fast-warming momentum schedule
    dict(weight_decay=0.0, momentum_decay=0.0, betas=(0.8, 0.99)),
    dict(weight_decay=0.1, maximize=True),
])
def test_nadam_torch(kwargs):
    alias_parity(torch.optim.NAdam, jt.optim.nadam, steps=30, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(weight_decay=0.05, schedule_decay=0.05, betas=(0.85, 0.99)),
])
def test_nadam_legacy(kwargs):
    alias_parity(_timm().NAdamLegacy, jt.optim.nadam_legacy, steps=30, **kwargs).check()


# ---------------------------------------------------------------- long runs and the rectification scalars

@pytest.mark.parametrize('name,kwargs', [
    ('radabelief', dict(betas=(0.9, 0.99))),
    ('radam', dict(betas=(0.9, 0.99))),
    ('nadam', dict()),
])
def test_long_run_factory(name, kwargs):
    factory_parity(name, steps=120, lr=3e-3, weight_decay=0.05, **kwargs).check()


@pytest.mark.parametrize('b2', [0.999, 0.9999, 0.99, 0.95, 0.9, 0.5])
def test_rectification_scalars_match_double_precision(b2):
    t = np.concatenate([np.arange(1, 2000), [1e4, 1e5, 1e6]])
    rho_ref = 2 / (1 - b2) - 1 - 2 * t * b2 ** t / (1 - b2 ** t)
    rho = np.asarray(sma_length(jnp.asarray(t, jnp.float32), b2), np.float64)
    np.testing.assert_allclose(rho, rho_ref, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(one_minus_pow(b2, jnp.asarray(t, jnp.float32))), 1 - b2 ** t, rtol=1e-6)
    rs = rectified_step_size(jnp.asarray(t, jnp.float32), 0.9, b2)
    np.testing.assert_array_equal(np.asarray(rs.adaptive), rho_ref >= 5)
    rho_inf = 2 / (1 - b2) - 1
    ok = rho_ref >= 5
    if ok.any():
        rho_ok, t_ok = rho_ref[ok], t[ok]
        r = np.sqrt((rho_ok - 4) * (rho_ok - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_ok))
        step_ref = r * np.sqrt(1 - b2 ** t_ok) / (1 - 0.9 ** t_ok)
        np.testing.assert_allclose(np.asarray(rs.adaptive_step, np.float64)[ok], step_ref, rtol=2e-6)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize('alias', [
    jt.optim.adabelief, jt.optim.radam, jt.optim.radam_legacy, jt.optim.nadam, jt.optim.nadam_legacy])
@pytest.mark.parametrize('kwargs,arg', [
    (dict(learning_rate=-1e-3), 'learning_rate'),
    (dict(betas=(1.0, 0.999)), 'betas'),
    (dict(betas=(0.9, -0.1)), 'betas'),
    (dict(betas=(0.9,)), 'betas'),
    (dict(eps=-1e-8), 'eps'),
    (dict(weight_decay=-0.1), 'weight_decay'),
])
def test_bad_common_hyperparameters(alias, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        alias(**kwargs)


@pytest.mark.parametrize('alias,kwargs,arg', [
    (jt.optim.adabelief, dict(amsgrad=1), 'amsgrad'),
    (jt.optim.adabelief, dict(decoupled_decay='yes'), 'decoupled_decay'),
    (jt.optim.adabelief, dict(fixed_decay=None), 'fixed_decay'),
    (jt.optim.adabelief, dict(rectify=0), 'rectify'),
    (jt.optim.adabelief, dict(degenerated_to_sgd='no'), 'degenerated_to_sgd'),
    (jt.optim.radam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.radam, dict(maximize='no'), 'maximize'),
    (jt.optim.nadam, dict(momentum_decay=-4e-3), 'momentum_decay'),
    (jt.optim.nadam, dict(decoupled_weight_decay=1), 'decoupled_weight_decay'),
    (jt.optim.nadam_legacy, dict(schedule_decay=-1.0), 'schedule_decay'),
    (jt.optim.adabelief, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
])
def test_bad_own_hyperparameters(alias, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        alias(**kwargs)


def test_registry_entries_match_timm():
    timm_optim = _timm()
    for name in ('adabelief', 'radabelief', 'radam', 'radamw', 'radamlegacy', 'nadam', 'nadamlegacy'):
        ours, theirs = jt.get_optimizer_info(name), timm_optim.get_optimizer_info(name)
        assert ours.description == theirs.description
        for field in ('has_eps', 'has_momentum', 'has_betas', 'num_betas', 'second_order'):
            assert getattr(ours, field) == getattr(theirs, field), (name, field)
        assert dict(ours.defaults) == dict(theirs.defaults or {}), name
