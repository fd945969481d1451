"""Schedules against timm's own schedulers, value by value over whole runs.

timm's scheduler is built on a dummy torch optimizer and stepped as timm's
training loop steps it (``step(epoch)`` or ``step_update(num_updates)``); after
each call ``optimizer.param_groups[0]['lr']`` must equal ``schedule(t)`` to
1e-6 relative, and ``num_epochs`` must be timm's. Our side is evaluated on
whole ``arange`` vectors (one call per configuration; jit is covered in
``test_scheduler_props.py``).
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm

RTOL = 1e-6
LR = 0.1
UPE = 7  # updates per epoch in update-stepped runs
MEASURED = {'max_rel': 0.0, 'configs': 0}


def timm_sched():
    return load_timm()[1]


def dummy_optimizer(lr=LR):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def timm_run(sched, ts, on_epochs=True):
    """lr in the optimizer after ``sched.step(t)`` / ``sched.step_update(t)`` for each t."""
    opt = sched.optimizer
    out = []
    for t in ts:
        if on_epochs:
            sched.step(int(t))
        else:
            sched.step_update(int(t))
        out.append(opt.param_groups[0]['lr'])
    return np.asarray(out, np.float64)


def assert_rel(ours, ref, rtol=RTOL, what=''):
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    err = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300)
    err = np.where((ours == 0) & (ref == 0), 0.0, err)
    worst = float(np.max(err)) if err.size else 0.0
    MEASURED['max_rel'] = max(MEASURED['max_rel'], worst)
    if worst > rtol:
        i = int(np.argmax(err))
        raise AssertionError(f'{what}: max relative error {worst:.3g} > {rtol:g} at index {i}: ours {ours[i]!r}, '
                             f'timm {ref[i]!r}')
    return worst


# --------------------------------------------------------------------------------------------------------------------
# the factory matrix

CYCLES = {
    'single': dict(cycle_mul=1., cycle_decay=0.1, cycle_limit=1),
    'decay3': dict(cycle_mul=1., cycle_decay=0.5, cycle_limit=3),
    'mul2x3': dict(cycle_mul=2., cycle_decay=0.5, cycle_limit=3),
}


def _matrix():
    cases = []
    for sched, warmup, prefix, cyc, k_decay, cooldown, on_epochs in itertools.product(
            ('cosine', 'tanh', 'poly'), (0, 3), (False, True), CYCLES, (1.0, 2.0), (0, 2), (True, False)):
        cases.append((sched, warmup, prefix, cyc, k_decay, cooldown, on_epochs))
    for sched, warmup, prefix, cooldown, on_epochs in itertools.product(
            ('step', 'multistep', 'constant', 'wsd', 'rsqrt', 'none'), (0, 3), (False, True), (0, 2), (True, False)):
        cases.append((sched, warmup, prefix, 'single', 1.0, cooldown, on_epochs))
    return cases


MATRIX = _matrix()


def _factory_kwargs(sched, warmup, prefix, cyc, k_decay, cooldown, on_epochs, index):
    kw = dict(
        sched=sched, num_epochs=12, warmup_epochs=warmup, warmup_prefix=prefix, warmup_lr=1e-4,
        cooldown_epochs=cooldown, k_decay=k_decay, step_on_epochs=on_epochs, decay_milestones=(4, 7, 10),
        # alternate an lr floor of 0 and 1e-5 through the matrix
        min_lr=0.0 if index % 2 else 1e-5, **CYCLES[cyc])
    if sched == 'step':
        kw.update(decay_epochs=2.4 if index % 4 < 2 else 3, decay_rate=0.5)  # fractional interval: float //
    if sched == 'multistep':
        kw.update(decay_rate=0.3)
    if sched == 'poly':
        kw.update(decay_rate=2.0 if index % 4 < 2 else 0.5)  # the polynomial power (timm's overloading)
    if sched == 'rsqrt':
        kw.update(stable_timescale=2)  # timm defaults it to warmup_epochs, which may be 0
    if sched == 'wsd':
        kw.update(decay_epochs=None if index % 4 < 2 else 3, decay_fn=None if index % 3 else 'cosine')
    return kw


def _timm_factory(kw, updates_per_epoch):
    opt = dummy_optimizer()
    return timm_sched().create_scheduler_v2(opt, updates_per_epoch=updates_per_epoch, **kw)


@pytest.mark.parametrize('case', MATRIX, ids=['-'.join(map(str, c)) for c in MATRIX])
def test_factory_matrix(case):
    index = MATRIX.index(case)
    sched, warmup, prefix, cyc, k_decay, cooldown, on_epochs = case
    kw = _factory_kwargs(*case, index)
    upe = 0 if on_epochs else UPE
    ref_sched, ref_epochs = _timm_factory(kw, upe)
    ours, num_epochs = jt.create_scheduler_v2(LR, updates_per_epoch=upe, **kw)
    assert num_epochs == ref_epochs, f'num_epochs {num_epochs} != timm {ref_epochs}'
    assert ours.base_lr == LR
    n_epochs = ref_epochs + 3  # run past the end: cooldown / lr_min hold
    if ref_sched is None:  # 'none': timm leaves the optimizer's lr alone
        ref = np.full(n_epochs * (UPE if not on_epochs else 1), LR)
    else:
        ts = np.arange(n_epochs if on_epochs else n_epochs * UPE)
        ref = timm_run(ref_sched, ts, on_epochs)
    got = np.asarray(ours(jnp.arange(ref.size)))
    assert got.dtype == np.float32
    assert_rel(got, ref, what=str(case))
    if on_epochs:
        # the same recipe fed the optax update count: the value of epoch t // updates_per_epoch
        per_update, n2 = jt.create_scheduler_v2(LR, updates_per_epoch=UPE, **kw)
        assert n2 == ref_epochs
        got_u = np.asarray(per_update(jnp.arange(ref.size * UPE)))
        assert_rel(got_u, np.repeat(ref, UPE), what=f'{case} via updates')
    MEASURED['configs'] += 1


def test_matrix_covers_the_issue():
    scheds = {c[0] for c in MATRIX}
    assert scheds == {'cosine', 'tanh', 'poly', 'step', 'multistep', 'constant', 'wsd', 'rsqrt', 'none'}
    assert len(MATRIX) == 3 * 2 * 2 * 3 * 2 * 2 * 2 + 6 * 2 * 2 * 2 * 2


def test_create_scheduler_from_args():
    import argparse
    args = argparse.Namespace(sched='cosine', epochs=10, warmup_epochs=2, min_lr=1e-6, warmup_lr=1e-5,
                              lr_cycle_limit=2, lr_cycle_decay=0.5, sched_on_updates=True, lr_k_decay=1.5)
    ref_sched, ref_epochs = timm_sched().create_scheduler(args, dummy_optimizer(), updates_per_epoch=5)
    ours, num_epochs = jt.create_scheduler(args, LR, updates_per_epoch=5)
    assert num_epochs == ref_epochs
    ts = np.arange((ref_epochs + 1) * 5)
    assert_rel(ours(jnp.arange(ts.size)), timm_run(ref_sched, ts, on_epochs=False), what='create_scheduler')


# --------------------------------------------------------------------------------------------------------------------
# the classes, for arguments the factory does not reach


def _class_case(cls_name, our_fn, n, on_epochs=True, **kw):
    cls = getattr(timm_sched(), cls_name)
    ref = timm_run(cls(dummy_optimizer(), **kw), range(n), on_epochs)
    ours = our_fn(LR, **{k: v for k, v in kw.items() if k != 't_in_epochs'})
    return assert_rel(ours(jnp.arange(n)), ref, what=f'{cls_name} {kw}')


CLASS_CASES = [
    ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=10, cycle_mul=1.5, cycle_decay=0.7, cycle_limit=4,
                                                    lr_min=1e-4, warmup_t=2, warmup_lr_init=1e-3)),
    ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=7, cycle_mul=3.0, cycle_limit=3, k_decay=0.5)),
    # shrinking cycles: timm's log has no domain from t_initial / (1 - cycle_mul) = 40 on (it raises)
    ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=20, cycle_mul=0.5, cycle_limit=30, cycle_decay=0.8,
                                                    lr_min=1e-5, n=40)),
    ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=13, cycle_limit=5, cycle_decay=0.9, k_decay=3.0,
                                                    warmup_t=4, warmup_prefix=True)),
    ('TanhLRScheduler', jt.scheduler.tanh, dict(t_initial=30, lb=-3., ub=5., lr_min=1e-5, warmup_t=5,
                                                warmup_lr_init=1e-4)),
    ('TanhLRScheduler', jt.scheduler.tanh, dict(t_initial=11, cycle_mul=2., cycle_limit=3, cycle_decay=0.5,
                                                warmup_t=3, warmup_prefix=False)),
    ('TanhLRScheduler', jt.scheduler.tanh, dict(t_initial=11, lb=-1., ub=1., cycle_mul=1.5, cycle_limit=4)),
    ('PolyLRScheduler', jt.scheduler.poly, dict(t_initial=25, power=2.0, lr_min=1e-5, k_decay=1.5, cycle_limit=2)),
    ('PolyLRScheduler', jt.scheduler.poly, dict(t_initial=9, power=0.9, cycle_mul=2., cycle_limit=3,
                                                cycle_decay=0.5, warmup_t=3, warmup_prefix=True)),
    ('StepLRScheduler', jt.scheduler.step, dict(decay_t=2.4, decay_rate=0.97, warmup_t=3, warmup_lr_init=1e-6,
                                                warmup_prefix=False)),
    ('StepLRScheduler', jt.scheduler.step, dict(decay_t=5, decay_rate=0.5, warmup_t=2, warmup_prefix=True)),
    ('MultiStepLRScheduler', jt.scheduler.multistep, dict(decay_t=[3, 8, 8, 20], decay_rate=0.5, warmup_t=2,
                                                          warmup_prefix=False)),
    ('MultiStepLRScheduler', jt.scheduler.multistep, dict(decay_t=[1, 5], decay_rate=0.1, warmup_t=4,
                                                          warmup_prefix=True)),
]


@pytest.mark.parametrize('cls_name,fn,kw', CLASS_CASES, ids=[f'{c[0]}-{i}' for i, c in enumerate(CLASS_CASES)])
@pytest.mark.parametrize('on_epochs', [True, False])
def test_classes(cls_name, fn, kw, on_epochs):
    kw = dict(kw)
    n = kw.pop('n', 120)
    _class_case(cls_name, fn, n, on_epochs, t_in_epochs=on_epochs, **kw)
    if n < 120:  # past the end of a shrinking series: lr_min here (timm raises)
        assert np.all(np.asarray(fn(LR, **kw)(jnp.arange(n, 120))) == np.float32(kw['lr_min']))


WSD_CASES = [
    dict(stable_fn=s, decay_fn=d, warmup_t=w, lr_min=m)
    for s, d, w, m in itertools.product(('constant', 'rsqrt', 'power'), ('linear', '1-sqrt', 'cosine', 'power', 'exp'),
                                        (0, 4), (0.0, 1e-4))
]


@pytest.mark.parametrize('kw', WSD_CASES, ids=[f"{k['stable_fn']}-{k['decay_fn']}-{k['warmup_t']}-{k['lr_min']}"
                                               for k in WSD_CASES])
def test_wsd_class(kw):
    kw = dict(kw, t_initial=40, decay_t=15, decay_power=1.7, decay_ratio=0.05, stable_power=0.3, warmup_lr_init=1e-4)
    if kw['stable_fn'] != 'constant':
        kw['stable_timescale'] = 3.0
    _class_case('WSDLRScheduler', jt.scheduler.wsd, 60, **kw)


def test_wsd_callable_decay():
    kw = dict(t_initial=30, decay_t=10, warmup_t=2)
    ref = timm_run(timm_sched().WSDLRScheduler(dummy_optimizer(), decay_fn=lambda f: (1 - f) ** 2, **kw), range(40))
    ours = jt.scheduler.wsd(LR, decay_fn=lambda f: (1 - f) ** 2, **kw)
    assert_rel(ours(jnp.arange(40)), ref, what='wsd callable')


# --------------------------------------------------------------------------------------------------------------------
# large steps


def _cosine_f64(t, base, lr_min, T, warmup, init):
    """Cosine (single cycle) in float64 with the cancellation-free form: the exact value to compare against."""
    t = np.asarray(t, np.float64)
    rem = T - t
    lr = lr_min + (base - lr_min) * np.sin(np.pi / 2 * rem / T) ** 2
    lr = np.where(t >= T, lr_min, lr)
    return np.where(t < warmup, init + t * (base - init) / warmup, lr)


def test_int32_max_step():
    big = 2 ** 31 - 1
    ts = [0, 1, 2 ** 24 + 1, 2 ** 30, big - 100, big - 1, big]
    cases = [
        ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=big, lr_min=1e-5, warmup_t=1000, warmup_lr_init=0.)),
        ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=1_000_003, cycle_limit=5000, cycle_decay=0.999,
                                                        lr_min=1e-6)),
        ('CosineLRScheduler', jt.scheduler.cosine, dict(t_initial=1000, cycle_mul=1.01, cycle_limit=100000,
                                                        lr_min=1e-6)),
        ('TanhLRScheduler', jt.scheduler.tanh, dict(t_initial=big - 5, lr_min=1e-5)),
        ('PolyLRScheduler', jt.scheduler.poly, dict(t_initial=2 ** 30, power=2.0, lr_min=1e-5, cycle_limit=3,
                                                    cycle_decay=0.5)),
        ('StepLRScheduler', jt.scheduler.step, dict(decay_t=2 ** 29, decay_rate=0.5)),
        ('StepLRScheduler', jt.scheduler.step, dict(decay_t=2.4e8 + 0.5, decay_rate=0.9)),
        ('MultiStepLRScheduler', jt.scheduler.multistep, dict(decay_t=[2 ** 30, big, 2 ** 31], decay_rate=0.5)),
        ('WSDLRScheduler', jt.scheduler.wsd, dict(t_initial=big - 10, decay_t=2 ** 30, stable_fn='rsqrt',
                                                  stable_timescale=1e4, warmup_t=10, lr_min=1e-6)),
    ]
    for cls_name, fn, kw in cases:
        cls = getattr(timm_sched(), cls_name)
        ref = timm_run(cls(dummy_optimizer(), t_in_epochs=False, **kw), ts, on_epochs=False)
        ours = fn(LR, t_in_epochs=False, **kw)
        got = np.asarray([ours(t) for t in ts])  # Python ints
        assert_rel(got, ref, what=f'{cls_name} python ints')
        assert_rel(ours(jnp.asarray(ts, jnp.int32)), ref, what=f'{cls_name} int32 array')
        assert np.all(np.isfinite(got))
    # past int32: saturates instead of wrapping (the value at 2**31 - 1)
    sched = jt.scheduler.cosine(LR, t_initial=big, lr_min=1e-5)
    assert float(sched(2 ** 40)) == float(sched(big))
    assert float(sched(jnp.asarray(2 ** 32 - 1, jnp.uint32))) == float(sched(big))


def test_ten_million_step_run():
    n, warmup = 10_000_000, 100_000
    sched, _ = jt.create_scheduler_v2(LR, 'cosine', num_epochs=n // 1000, warmup_epochs=warmup // 1000, min_lr=0.0,
                                      warmup_lr=1e-6, step_on_epochs=False, updates_per_epoch=1000)
    import jax
    f = jax.jit(jax.vmap(sched))
    worst = 0.0
    chunk = 1_000_000
    for start in range(0, n, chunk):
        t = np.arange(start, start + chunk)
        got = np.asarray(f(jnp.asarray(t, jnp.int32)), np.float64)
        ref = _cosine_f64(t, LR, 0.0, n, warmup, 1e-6)
        worst = max(worst, float(np.max(np.abs(got - ref) / ref)))
    MEASURED['max_rel'] = max(MEASURED['max_rel'], worst)
    assert worst <= RTOL, f'10M-step cosine: max relative error {worst:.3g}'
    # and timm itself where its float64 formula is well conditioned (lr_min > 0), at sampled steps
    ref_sched, _ = timm_sched().create_scheduler_v2(
        dummy_optimizer(), 'cosine', num_epochs=n // 1000, warmup_epochs=warmup // 1000, min_lr=1e-6,
        warmup_lr=1e-6, step_on_epochs=False, updates_per_epoch=1000)
    ours, _ = jt.create_scheduler_v2(LR, 'cosine', num_epochs=n // 1000, warmup_epochs=warmup // 1000, min_lr=1e-6,
                                     warmup_lr=1e-6, step_on_epochs=False, updates_per_epoch=1000)
    ts = np.unique(np.concatenate([np.linspace(0, n + 10, 1500).astype(np.int64), np.arange(n - 300, n + 3),
                                   np.arange(warmup - 3, warmup + 3)]))
    assert_rel(jax.jit(jax.vmap(ours))(jnp.asarray(ts, jnp.int32)), timm_run(ref_sched, ts, on_epochs=False),
               what='10M-step cosine vs timm')


def test_report_measured():
    """Not a check: prints the largest relative error met so far in this module (run with -s)."""
    print(f"\n[scheduler parity] configurations: {MEASURED['configs']}, max relative error vs timm: "
          f"{MEASURED['max_rel']:.3g}")
    assert MEASURED['max_rel'] <= RTOL
