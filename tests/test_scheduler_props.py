"""Schedule properties no reference checks: jit == eager, traced once, vmap, step dtypes; and the metric-driven
(plateau) and mmengine (onecycle) schedules, and lr noise against timm's distribution. Bad arguments are in
test_schedule_bad_values.py."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from _steps import update_extras
from test_scheduler_parity import LR, assert_rel, dummy_optimizer, timm_run, timm_sched

S = jt.scheduler

ALL = {
    'cosine': lambda: S.cosine(LR, 50, lr_min=1e-5, cycle_mul=2., cycle_limit=3, warmup_t=5, warmup_lr_init=1e-4,
                               k_decay=1.5, noise_range_t=(10, 40)),
    'tanh': lambda: S.tanh(LR, 50, cycle_limit=2, warmup_t=5, noise_range_t=20),
    'step': lambda: S.step(LR, 2.4, 0.9, warmup_t=3),
    'multistep': lambda: S.multistep(LR, [10, 20], 0.5, warmup_t=3),
    'poly': lambda: S.poly(LR, 50, power=2., cycle_limit=2),
    'wsd': lambda: S.wsd(LR, 50, 10, stable_fn='rsqrt', stable_timescale=5, decay_fn='exp', warmup_t=4),
    'onecycle': lambda: S.onecycle(LR, total_steps=60, three_phase=True),
    'factory': lambda: jt.create_scheduler_v2(LR, 'cosine', num_epochs=10, warmup_epochs=2, updates_per_epoch=4)[0],
}


@pytest.mark.parametrize('name', sorted(ALL))
def test_jit_vmap_dtypes(name):
    sched = ALL[name]()
    ts = jnp.arange(130, dtype=jnp.int32)
    eager = np.asarray(sched(ts))
    assert eager.dtype == np.float32 and eager.shape == (130,)
    traces = [0]

    def f(t):
        traces[0] += 1
        return sched(t)

    jitted = jax.jit(f)
    got = np.stack([np.asarray(jitted(t)) for t in ts[:40]]
                   + [np.asarray(jitted(jnp.int32(t))) for t in range(40, 130)])
    assert traces[0] == 1, f'traced {traces[0]} times, expected once'
    np.testing.assert_allclose(got, eager, rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(jax.vmap(sched)(ts)), eager, rtol=1e-6, atol=0)
    # python ints and other integer widths give the same value
    for t in (0, 7, 63, 129):
        assert float(sched(t)) == pytest.approx(float(eager[t]), rel=1e-6)
        for dt in (jnp.uint32, jnp.int16, jnp.uint8):
            assert float(sched(jnp.asarray(t, dt))) == pytest.approx(float(eager[t]), rel=1e-6)
    assert sched(3).dtype == jnp.float32
    assert isinstance(sched.base_lr, float) and sched.base_lr == LR


def test_schedule_in_optimizers():
    """Every registered optimizer accepts a schedule as its lr; a constant schedule equals the float lr."""
    params = {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.ones(4)}
    grads = jax.tree.map(lambda p: 0.1 * p + 0.05, params)
    const = jt.create_scheduler_v2(1e-2, 'constant')[0]
    for name in jt.list_optimizers():
        extra = update_extras(name)
        outs = []
        for lr in (1e-2, const):
            tx = jt.create_optimizer_v2(params, name, lr=lr, weight_decay=0.01)
            state = tx.init(params)
            step = jax.jit(lambda g, s, p: tx.update(g, s, p, **extra))
            p = params
            for _ in range(3):
                u, state = step(grads, state, p)
                p = optax.apply_updates(p, u)
            outs.append(p)
        for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7, err_msg=name)


def test_lr_scale_multiplies_scheduled_lr():
    """timm's update_groups sets each group's lr to ``value * lr_scale``; the factory's layer decay does the same
    with a schedule (SGD, so the update is exactly ``-lr * lr_scale * g``)."""
    from jaxopt_timm.parity import load_timm, run_parity
    from parity import VIT_GROUP_MATCHER, VIT_SHAPES
    timm_optim, timm_scheduler = load = load_timm()
    del load
    kw = dict(sched='cosine', num_epochs=6, warmup_epochs=1, warmup_lr=1e-3, min_lr=1e-4, step_on_epochs=False,
              updates_per_epoch=5)
    ours_sched, _ = jt.create_scheduler_v2(0.05, **kw)
    holder = {}

    def make_timm(module):
        module.group_matcher = lambda coarse=False: VIT_GROUP_MATCHER
        opt = timm_optim.create_optimizer_v2(module, 'sgd', lr=0.05, momentum=0.9, layer_decay=0.7)
        holder['sched'], _ = timm_scheduler.create_scheduler_v2(opt, **kw)
        holder['opt'] = opt
        return opt

    # torch_lr(t) reproduces timm's step_update(t) for the whole optimizer: value * group lr_scale
    ref_sched = timm_scheduler.create_scheduler_v2(dummy_optimizer(0.05), **kw)[0]
    values = timm_run(ref_sched, range(30), on_epochs=False)
    result = run_parity(
        make_timm,
        lambda p: jt.create_optimizer_v2(p, 'sgd', lr=ours_sched, momentum=0.9, layer_decay=0.7,
                                         group_matcher=VIT_GROUP_MATCHER),
        steps=30, shapes=VIT_SHAPES, torch_lr=lambda t: float(values[t]))
    result.check(tol=1e-5)


# --------------------------------------------------------------------------------------------------------------------
# onecycle against mmengine


def _mmengine_run(total_steps, n, **kw):
    from mmengine.optim.scheduler.lr_scheduler import OneCycleLR
    opt = dummy_optimizer(LR)
    sched = OneCycleLR(opt, eta_max=LR, total_steps=total_steps, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]['lr'])  # the lr this update uses
        opt.step()
        sched.step()
    return np.asarray(out)


@pytest.mark.parametrize('anneal', ['cos', 'linear'])
@pytest.mark.parametrize('three_phase', [False, True])
@pytest.mark.parametrize('total,pct', [(100, 0.3), (37, 0.25), (1000, 0.1)])
def test_onecycle_matches_mmengine(anneal, three_phase, total, pct):
    kw = dict(pct_start=pct, anneal_strategy=anneal, three_phase=three_phase, div_factor=20., final_div_factor=500.)
    ref = _mmengine_run(total, total, **kw)
    ours = S.onecycle(LR, total_steps=total, **kw)
    assert_rel(ours(jnp.arange(total)), ref, what=f'onecycle {kw}')
    # epochs x steps_per_epoch gives the same cycle; past the end the last lr is held
    other = S.onecycle(LR, epochs=total, steps_per_epoch=1, **kw)
    np.testing.assert_array_equal(np.asarray(other(jnp.arange(total))), np.asarray(ours(jnp.arange(total))))
    assert float(ours(total + 5)) == float(ours(total - 1))


def test_onecycle_factory():
    sched, n = jt.create_scheduler_v2(LR, 'onecycle', num_epochs=10, step_on_epochs=False, updates_per_epoch=20,
                                      three_phase=True)
    assert n == 10
    ref = _mmengine_run(200, 200, pct_start=0.3, three_phase=True)
    assert_rel(sched(jnp.arange(200)), ref, what='onecycle factory')
    warm, _ = jt.create_scheduler_v2(LR, 'onecycle', num_epochs=10, warmup_epochs=2, step_on_epochs=False,
                                     updates_per_epoch=20)
    assert_rel(warm(jnp.arange(200)), _mmengine_run(200, 200, pct_start=0.2), what='onecycle warmup -> pct_start')


# --------------------------------------------------------------------------------------------------------------------
# plateau against timm


def _timm_plateau(**kw):
    with pytest.warns(FutureWarning):
        return timm_sched().PlateauLRScheduler(dummy_optimizer(LR), **kw)


METRICS = {
    # accuracy-like: improves, stalls (within threshold), improves, stalls long
    'max': [10., 20., 30., 30.001, 29., 28., 35., 35.5, 35.5, 35.2, 34., 36., 36., 35., 35., 34., 33., 33., 32., 40.,
            39., 38., 38., 37., 36., 35., 34., 33., 32., 31.],
    # loss-like
    'min': [5., 4., 3., 3.0001, 3.2, 3.1, 2.5, 2.6, 2.7, 2.8, 2.9, 2.4, 2.4, 2.45, 2.5, 2.6, 2.7, 1., 1.1, 1.2, 1.3,
            1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2],
}


@pytest.mark.parametrize('mode', ['max', 'min'])
@pytest.mark.parametrize('warmup_t,patience_t,cooldown_t,threshold', [(0, 1, 0, 1e-4), (3, 2, 2, 1e-2),
                                                                      (2, 0, 1, 0.0)])
def test_plateau_matches_timm(mode, warmup_t, patience_t, cooldown_t, threshold):
    kw = dict(decay_rate=0.5, patience_t=patience_t, cooldown_t=cooldown_t, threshold=threshold, warmup_t=warmup_t,
              warmup_lr_init=1e-3, lr_min=2e-3, mode=mode)
    ref_sched = _timm_plateau(**kw)
    ours = S.plateau(LR, **kw)
    state = ours.init()
    assert float(state.lr) == pytest.approx(ref_sched.optimizer.param_groups[0]['lr'], rel=1e-7)
    step = jax.jit(ours.step)
    ref, got = [], []
    for epoch, metric in enumerate(METRICS[mode], start=1):
        ref_sched.step(epoch, metric)
        ref.append(ref_sched.optimizer.param_groups[0]['lr'])
        state, lr = step(state, epoch, jnp.float32(metric))
        got.append(float(lr))
        assert int(state.num_bad_epochs) == ref_sched.lr_scheduler.num_bad_epochs, epoch
        assert int(state.cooldown_counter) == ref_sched.lr_scheduler.cooldown_counter, epoch
    assert_rel(got, ref, what=f'plateau {kw}')
    assert len(set(ref)) >= 3, 'vacuous: the lr was not reduced at least twice'
    # the state is a pytree of arrays: it checkpoints with the training state
    leaves, treedef = jax.tree.flatten(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    assert jax.tree.unflatten(treedef, [np.asarray(x) for x in leaves]).lr == state.lr


def test_plateau_factory_and_noise():
    args = argparse.Namespace(sched='plateau', epochs=30, warmup_epochs=2, decay_rate=0.5, patience_epochs=1,
                              eval_metric='loss', lr_noise=[0.5, 0.8], seed=7)
    ours, n = jt.create_scheduler(args, LR)
    with pytest.warns(FutureWarning):
        ref_sched, ref_n = timm_sched().create_scheduler(args, dummy_optimizer(LR))
    assert n == ref_n and ours.mode == 'min'
    state = ours.init()
    step = jax.jit(ours.step)
    for epoch, metric in enumerate(METRICS['min'], start=1):
        ref_sched.step(epoch, metric)
        ref = ref_sched.optimizer.param_groups[0]['lr']
        state, lr = step(state, epoch, jnp.float32(metric))
        clean = ref_sched.restore_lr[0] if ref_sched.restore_lr is not None else ref
        assert float(state.lr) == pytest.approx(clean, rel=1e-6)  # the noise-free lr follows timm
        if 15 <= epoch < 24:  # noise range [0.5, 0.8) * 30
            assert abs(float(lr) / float(state.lr) - 1) < 0.67
        else:
            assert float(lr) == pytest.approx(ref, rel=1e-6)


def test_plateau_reaches_a_jitted_optimizer():
    """The plateau lr drives ``optax.inject_hyperparams``-wrapped SGD inside one jitted epoch step; the params
    follow torch's SGD driven by timm's PlateauLRScheduler."""
    sched = S.plateau(LR, decay_rate=0.5, patience_t=1, mode='min', warmup_t=2, warmup_lr_init=0.01)
    tx = optax.inject_hyperparams(jt.optim.sgd, static_args=('momentum',))(
        learning_rate=float(sched.init().lr), momentum=0.9)
    target = jnp.asarray([1.0, -2.0, 3.0])

    def loss_fn(p):
        return 0.5 * jnp.sum((p - target) ** 2)

    traces = [0]

    @jax.jit
    def train_epoch(params, opt_state, sched_state, epoch, metric):
        traces[0] += 1
        for _ in range(3):  # updates in the epoch
            grads = jax.grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        sched_state, lr = sched.step(sched_state, epoch, metric)
        opt_state.hyperparams['learning_rate'] = lr
        return params, opt_state, sched_state

    params = jnp.zeros(3)
    opt_state = tx.init(params)
    sched_state = sched.init()
    # torch side
    tp = torch.nn.Parameter(torch.zeros(3))
    topt = torch.optim.SGD([tp], lr=LR, momentum=0.9)
    with pytest.warns(FutureWarning):
        tsched = timm_sched().PlateauLRScheduler(topt, decay_rate=0.5, patience_t=1, mode='min', warmup_t=2,
                                                 warmup_lr_init=0.01)
    tt = torch.tensor([1.0, -2.0, 3.0])
    metrics = [3., 2., 2.5, 2.6, 1.0, 1.5, 1.6, 1.7, 1.8, 1.9, 0.5, 0.6, 0.7]
    lrs = []
    for epoch, metric in enumerate(metrics, start=1):
        for _ in range(3):
            topt.zero_grad()
            (0.5 * ((tp - tt) ** 2).sum()).backward()
            topt.step()
        tsched.step(epoch, metric)
        params, opt_state, sched_state = train_epoch(params, opt_state, sched_state, epoch, jnp.float32(metric))
        lrs.append(float(opt_state.hyperparams['learning_rate']))
        assert lrs[-1] == pytest.approx(topt.param_groups[0]['lr'], rel=1e-6)
    assert traces[0] == 1
    assert len(set(lrs)) >= 4
    np.testing.assert_allclose(np.asarray(params), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------------
# noise


def _noise_ratio(values, clean):
    return np.asarray(values, np.float64) / np.asarray(clean, np.float64) - 1.0


@pytest.mark.parametrize('noise_type', ['normal', 'uniform'])
def test_noise_distribution_matches_timm(noise_type):
    n, pct, std = 2000, 0.5, 0.8
    kw = dict(decay_t=10 ** 6, decay_rate=1.0, noise_range_t=(0, n), noise_pct=pct, noise_std=std)
    ref_sched = timm_sched().StepLRScheduler(dummy_optimizer(LR), t_in_epochs=False, noise_seed=3, **kw)
    ref_sched.noise_type = noise_type  # timm's base class reads it; the class signature does not expose it
    ref = _noise_ratio(timm_run(ref_sched, range(n), on_epochs=False), LR)
    ours = S.step(LR, noise_type=noise_type, noise_seed=3, **kw)
    got = _noise_ratio(jax.jit(ours)(jnp.arange(n)), LR)
    assert np.all(np.abs(got) < pct) and np.all(np.abs(ref) < pct)
    assert abs(got.mean() - ref.mean()) < 0.05, (got.mean(), ref.mean())
    assert abs(got.std() - ref.std()) < 0.05, (got.std(), ref.std())
    # deterministic in (seed, t); another seed differs
    again = S.step(LR, noise_type=noise_type, noise_seed=3, **kw)
    np.testing.assert_array_equal(np.asarray(ours(jnp.arange(n))), np.asarray(again(jnp.arange(n))))
    other = np.asarray(S.step(LR, noise_type=noise_type, noise_seed=4, **kw)(jnp.arange(n)))
    assert np.mean(other != np.asarray(ours(jnp.arange(n)))) > 0.99
    assert float(ours(123)) == pytest.approx(float(jax.jit(ours)(jnp.int32(123))), rel=1e-6)


def test_noise_range_in_factory():
    """Outside the noise range timm's values exactly; inside, bounded by noise_pct around them."""
    kw = dict(sched='cosine', num_epochs=40, warmup_epochs=3, min_lr=1e-5, noise=[0.4, 0.9], noise_pct=0.3,
              noise_std=1.0, noise_seed=11, cycle_limit=2, cycle_decay=0.5)
    for on_epochs, upe in ((True, 0), (False, 5)):
        kw['step_on_epochs'] = on_epochs
        ref_sched, _ = timm_sched().create_scheduler_v2(dummy_optimizer(LR), updates_per_epoch=upe, **kw)
        clean_sched, _ = timm_sched().create_scheduler_v2(dummy_optimizer(LR), updates_per_epoch=upe,
                                                           **dict(kw, noise=None))
        ours, _ = jt.create_scheduler_v2(LR, updates_per_epoch=upe, **kw)
        n = 90 * max(upe, 1)
        ref = timm_run(ref_sched, range(n), on_epochs)
        clean = timm_run(clean_sched, range(n), on_epochs)
        got = np.asarray(ours(jnp.arange(n)), np.float64)
        t_init = 40 * max(upe, 1)
        inside = (np.arange(n) >= 0.4 * t_init) & (np.arange(n) < 0.9 * t_init)
        assert_rel(got[~inside], ref[~inside], what='outside the noise range')
        dev = _noise_ratio(got[inside], clean[inside])
        assert np.all(np.abs(dev) < 0.3 + 1e-6)
        assert np.std(dev) > 0.05  # noise is there
