"""Every schedule entry point rejects bad values at construction, with a message naming them.

One table, ``BAD_SCHEDULE_VALUES``: each row is an entry point exported by
``jaxopt_timm.scheduler`` (the factory per ``sched`` name, as
``create_scheduler_v2[cosine]``, and ``create_scheduler`` fed an argparse
namespace), the argument as the caller writes it, a bad value and a builder
taking that value. Building must raise ``ValueError`` whose message holds the
argument's name, ``repr`` of the value and, where the validator prints one,
the accepted range. timm accepts some of these silently (a negative step
``decay_rate``, ``cycle_limit=0``, an unknown ``noise_type``, empty or
negative milestones, a reversed noise range); here they are rejected where
they are written instead of showing up as a wrong or NaN lr later.

``test_every_entry_point_has_rows`` fails for an exported schedule with fewer
than three rows, so a new export needs its rows (or a reason in
``NOT_ENTRY_POINTS``).
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm import scheduler as S

LR = 0.1
NAN, INF = math.nan, math.inf
V2 = jt.create_scheduler_v2

# exported names that are not schedule entry points, and why
NOT_ENTRY_POINTS = {
    'PlateauState': 'the state pytree of a plateau schedule, produced by PlateauSchedule.init()',
    'SCHEDULERS': 'a constant: the factory names (each has rows as create_scheduler_v2[name])',
    'STABLE_FNS': "a constant: wsd's stable_fn names",
    'DECAY_FNS': "a constant: wsd's decay_fn names",
    'scheduler_kwargs': "translates an argparse namespace to create_scheduler_v2's keywords; create_scheduler's rows "
                        'go through it',
    'as_step': 'converts a step, saturating out-of-range steps to [0, 2**31 - 1]; it has no hyperparameters',
}


class Bad(NamedTuple):
    """One (entry point, argument, bad value) row."""
    entry: str
    arg: str
    value: Any
    make: Callable[[Any], Any]
    range_text: Optional[str]  # the accepted range (or choices) the message prints, where it prints one
    shown: str  # how the value appears in the message: repr(value) unless an element of it is named


BAD_SCHEDULE_VALUES = []


def _rows(entry, arg, values, make, range_text=None, shown=None):
    for v in values:
        BAD_SCHEDULE_VALUES.append(Bad(entry, arg, v, make, range_text, repr(v) if shown is None else shown))


# ---- cosine / tanh / poly: cycles, warmup, noise
_rows('cosine', 'base_lr', (-0.1, NAN, INF), lambda v: S.cosine(v, 10), '[0,')
_rows('cosine', 't_initial', (0, -5, 2.5, INF, NAN), lambda v: S.cosine(LR, v), '(0,')
_rows('cosine', 'lr_min', (-1e-3, NAN), lambda v: S.cosine(LR, 10, lr_min=v), '[0,')
_rows('cosine', 'cycle_mul', (0., -1., NAN), lambda v: S.cosine(LR, 10, cycle_mul=v, cycle_limit=2), '(0,')
_rows('cosine', 'cycle_decay', (-0.5, NAN), lambda v: S.cosine(LR, 10, cycle_decay=v, cycle_limit=2), '[0,')
_rows('cosine', 'cycle_limit', (0, -1, 1.5), lambda v: S.cosine(LR, 10, cycle_limit=v), '[1,')
_rows('cosine', 'warmup_t', (-1, 2.5, INF), lambda v: S.cosine(LR, 10, warmup_t=v), '[0,')
_rows('cosine', 'warmup_lr_init', (-1e-4,), lambda v: S.cosine(LR, 10, warmup_t=2, warmup_lr_init=v), '[0,')
_rows('cosine', 'warmup_prefix', (1, 'yes'), lambda v: S.cosine(LR, 10, warmup_t=2, warmup_prefix=v), 'True or False')
_rows('cosine', 'k_decay', (0., -1., NAN), lambda v: S.cosine(LR, 10, k_decay=v), '(0,')
_rows('cosine', 'noise_pct', (0., -0.1), lambda v: S.cosine(LR, 10, noise_range_t=5, noise_pct=v), '(0,')
_rows('cosine', 'noise_std', (-1.,), lambda v: S.cosine(LR, 10, noise_range_t=5, noise_std=v), '[0,')
_rows('cosine', 'noise_type', ('gauss', 'Normal'), lambda v: S.cosine(LR, 10, noise_range_t=5, noise_type=v),
      "'normal'")
_rows('cosine', 'noise_range_t', ((8, 2),), lambda v: S.cosine(LR, 10, noise_range_t=v), 'start <= end')
_rows('cosine', 'noise_range_t', ((1, 2, 3), 'late'), lambda v: S.cosine(LR, 10, noise_range_t=v))
_rows('cosine', 'noise_seed', (1.5,), lambda v: S.cosine(LR, 10, noise_range_t=5, noise_seed=v), 'integer')
_rows('cosine', 't_in_epochs', ('yes',), lambda v: S.cosine(LR, 10, t_in_epochs=v), 'True or False')

_rows('tanh', 't_initial', (-5, 0), lambda v: S.tanh(LR, v), '(0,')
_rows('tanh', 'lb', (3.,), lambda v: S.tanh(LR, 10, lb=v, ub=1.), 'ub=')  # lb must lie below ub
_rows('tanh', 'lb', (NAN,), lambda v: S.tanh(LR, 10, lb=v))
_rows('tanh', 'ub', (-8., INF), lambda v: S.tanh(LR, 10, ub=v))
_rows('tanh', 'cycle_limit', (0,), lambda v: S.tanh(LR, 10, cycle_limit=v), '[1,')
_rows('tanh', 'lr_min', (-1.,), lambda v: S.tanh(LR, 10, lr_min=v), '[0,')

_rows('poly', 'lr_min', (-1.,), lambda v: S.poly(LR, 10, lr_min=v), '[0,')
_rows('poly', 'power', (-1., NAN), lambda v: S.poly(LR, 10, power=v), '[0,')
_rows('poly', 'k_decay', (0.,), lambda v: S.poly(LR, 10, k_decay=v), '(0,')
_rows('poly', 't_initial', (0,), lambda v: S.poly(LR, v), '(0,')
_rows('poly', 'cycle_mul', (-2.,), lambda v: S.poly(LR, 10, cycle_mul=v, cycle_limit=2), '(0,')

# ---- step / multistep
_rows('step', 'decay_t', (0, -1, NAN), lambda v: S.step(LR, v), '(0,')
_rows('step', 'decay_rate', (-0.5, NAN), lambda v: S.step(LR, 3, v), '[0,')
_rows('step', 'warmup_t', (-3,), lambda v: S.step(LR, 3, warmup_t=v), '[0,')
_rows('step', 'warmup_lr_init', (-1e-3,), lambda v: S.step(LR, 3, warmup_t=2, warmup_lr_init=v), '[0,')
_rows('step', 'base_lr', (INF,), lambda v: S.step(v, 3), '[0,')

_rows('multistep', 'decay_t', ([30, 10],), lambda v: S.multistep(LR, v), 'non-decreasing')
_rows('multistep', 'decay_t', ([], 30, None), lambda v: S.multistep(LR, v), 'non-empty sequence')
_rows('multistep', 'decay_t', ([-5, 10],), lambda v: S.multistep(LR, v), '[0,', shown='-5')
_rows('multistep', 'decay_t', ([10, NAN],), lambda v: S.multistep(LR, v), '[0,', shown='nan')
_rows('multistep', 'decay_rate', (-0.1,), lambda v: S.multistep(LR, [3], v), '[0,')
_rows('multistep', 'warmup_lr_init', (-1.,), lambda v: S.multistep(LR, [3], warmup_t=2, warmup_lr_init=v), '[0,')

# ---- wsd
_rows('wsd', 't_initial', (0, -10), lambda v: S.wsd(LR, v, 1), '(0,')
_rows('wsd', 'decay_t', (11, 0, 2.5), lambda v: S.wsd(LR, 10, v), '(0, 10]')
_rows('wsd', 'decay_fn', ('nope',), lambda v: S.wsd(LR, 10, 5, decay_fn=v), "'linear'")
_rows('wsd', 'decay_ratio', (0., 1.), lambda v: S.wsd(LR, 10, 5, decay_fn='exp', decay_ratio=v), '(0, 1)')
_rows('wsd', 'decay_power', (0.,), lambda v: S.wsd(LR, 10, 5, decay_fn='power', decay_power=v), '(0,')
_rows('wsd', 'stable_fn', ('linear',), lambda v: S.wsd(LR, 10, 5, stable_fn=v), "'constant'")
_rows('wsd', 'stable_power', (-1.,), lambda v: S.wsd(LR, 10, 5, stable_fn='power', stable_timescale=2,
                                                      stable_power=v), '(0,')
_rows('wsd', 'stable_timescale', (0,), lambda v: S.wsd(LR, 10, 5, stable_fn='rsqrt', stable_timescale=v), '(0,')
_rows('wsd', 'stable_timescale', (None,), lambda v: S.wsd(LR, 10, 5, stable_fn='rsqrt', stable_timescale=v),
      'warmup_t=0')
_rows('wsd', 'lr_min', (NAN,), lambda v: S.wsd(LR, 10, 5, lr_min=v), '[0,')

# ---- plateau (function and class)
_rows('plateau', 'mode', ('avg', 'MIN'), lambda v: S.plateau(LR, mode=v), "'min'")
_rows('plateau', 'decay_rate', (1.5, 1.0, -0.1), lambda v: S.plateau(LR, decay_rate=v), '[0, 1)')
_rows('plateau', 'patience_t', (-1, 1.5), lambda v: S.plateau(LR, patience_t=v), '[0,')
_rows('plateau', 'threshold', (-0.1,), lambda v: S.plateau(LR, threshold=v), '[0,')
_rows('plateau', 'cooldown_t', (-2,), lambda v: S.plateau(LR, cooldown_t=v), '[0,')
_rows('plateau', 'noise_type', ('gauss',), lambda v: S.plateau(LR, noise_range_t=3, noise_type=v), "'uniform'")


def _plateau_class(**kw):
    args = dict(base_lr=LR, decay_rate=0.1, patience_t=10, threshold=1e-4, cooldown_t=0, warmup_t=0,
                warmup_lr_init=0., lr_min=0., mode='max', noise=None)
    return S.PlateauSchedule(**{**args, **kw})


_rows('PlateauSchedule', 'mode', ('avg',), lambda v: _plateau_class(mode=v), "'min'")
_rows('PlateauSchedule', 'patience_t', (-1,), lambda v: _plateau_class(patience_t=v), '[0,')
_rows('PlateauSchedule', 'decay_rate', (1.5,), lambda v: _plateau_class(decay_rate=v), '[0, 1)')
_rows('PlateauSchedule', 'noise', (0.5,), lambda v: _plateau_class(noise=v), 'noise_fn')

# ---- onecycle
_rows('onecycle', 'total_steps', (None,), lambda v: S.onecycle(LR, total_steps=v), 'positive')
_rows('onecycle', 'total_steps', (0, -1, 2.5), lambda v: S.onecycle(LR, total_steps=v), '(0,')
_rows('onecycle', 'anneal_strategy', ('exp',), lambda v: S.onecycle(LR, total_steps=10, anneal_strategy=v), "'cos'")
_rows('onecycle', 'pct_start', (1.5, -0.1, NAN), lambda v: S.onecycle(LR, total_steps=10, pct_start=v), '[0, 1]')
# a zero-length phase: with 10 steps the ramp would end at step 0
_rows('onecycle', 'pct_start', (0.1,), lambda v: S.onecycle(LR, total_steps=10, pct_start=v), 'zero length')
_rows('onecycle', 'div_factor', (0., -1.), lambda v: S.onecycle(LR, total_steps=10, div_factor=v), '(0,')
_rows('onecycle', 'final_div_factor', (0.,), lambda v: S.onecycle(LR, total_steps=10, final_div_factor=v), '(0,')
_rows('onecycle', 'epochs', (0,), lambda v: S.onecycle(LR, epochs=v, steps_per_epoch=3), '(0,')
_rows('onecycle', 'steps_per_epoch', (-1,), lambda v: S.onecycle(LR, epochs=3, steps_per_epoch=v), '(0,')
_rows('onecycle', 'eta_max', (-0.1,), lambda v: S.onecycle(v, total_steps=10), '[0,')
_rows('onecycle', 'three_phase', (1,), lambda v: S.onecycle(LR, total_steps=10, three_phase=v), 'True or False')

# ---- building blocks: Schedule, per_epoch, noise_fn
_rows('Schedule', 'base_lr', (-1., NAN), lambda v: S.Schedule(lambda t: t, v, 'custom'), '[0,')
_rows('Schedule', 'fn', (0.1,), lambda v: S.Schedule(v, LR, 'custom'), 'callable')
_rows('Schedule', 'name', (3,), lambda v: S.Schedule(lambda t: t, LR, v), 'string')
_rows('Schedule', 'updates_per_epoch', (-1,), lambda v: S.Schedule(lambda t: t, LR, 'custom', None, v), '[0,')

_rows('per_epoch', 'updates_per_epoch', (0, -2, 2.5, NAN), lambda v: S.per_epoch(S.cosine(LR, 10), v), '[1,')
_rows('per_epoch', 'schedule', (S.plateau(LR),), lambda v: S.per_epoch(v, 5), 'expected a Schedule')

_rows('noise_fn', 'noise_pct', (-0.1,), lambda v: S.noise_fn(5, noise_pct=v), '(0,')
_rows('noise_fn', 'noise_std', (-1.,), lambda v: S.noise_fn(5, noise_std=v), '[0,')
_rows('noise_fn', 'noise_type', ('gauss',), lambda v: S.noise_fn(5, noise_type=v), "'normal'")
_rows('noise_fn', 'noise_range_t', ((5, 1),), lambda v: S.noise_fn(v), 'start <= end')
_rows('noise_fn', 'noise_seed', ('x',), lambda v: S.noise_fn(5, noise_seed=v), 'integer')

# ---- create_scheduler_v2: arguments shared by every sched, then per sched name
_rows('create_scheduler_v2', 'sched', ('cosinee', 'Cosine', 5), lambda v: V2(LR, v), "'cosine'")
_rows('create_scheduler_v2', 'lr', (-1., NAN), lambda v: V2(v, 'cosine'), '[0,')
_rows('create_scheduler_v2', 'updates_per_epoch', (0, -4, 2.5),
      lambda v: V2(LR, 'cosine', step_on_epochs=False, updates_per_epoch=v), '[1,')
_rows('create_scheduler_v2', 'step_on_epochs', ('no',), lambda v: V2(LR, 'cosine', step_on_epochs=v), 'True or False')

_rows('create_scheduler_v2[cosine]', 'num_epochs', (0, -3), lambda v: V2(LR, 'cosine', num_epochs=v), '(0,')
_rows('create_scheduler_v2[cosine]', 'min_lr', (-1.,), lambda v: V2(LR, 'cosine', min_lr=v), '[0,')
_rows('create_scheduler_v2[cosine]', 'warmup_lr', (-1.,), lambda v: V2(LR, 'cosine', warmup_epochs=2, warmup_lr=v),
      '[0,')
_rows('create_scheduler_v2[cosine]', 'warmup_epochs', (-1, 1.5), lambda v: V2(LR, 'cosine', warmup_epochs=v), '[0,')
_rows('create_scheduler_v2[cosine]', 'cooldown_epochs', (-1,), lambda v: V2(LR, 'cosine', cooldown_epochs=v), '[0,')
_rows('create_scheduler_v2[cosine]', 'cycle_mul', (0.,), lambda v: V2(LR, 'cosine', cycle_mul=v), '(0,')
_rows('create_scheduler_v2[cosine]', 'cycle_limit', (0,), lambda v: V2(LR, 'cosine', cycle_limit=v), '[1,')
_rows('create_scheduler_v2[cosine]', 'cycle_decay', (-1.,), lambda v: V2(LR, 'cosine', cycle_decay=v), '[0,')
_rows('create_scheduler_v2[cosine]', 'k_decay', (0.,), lambda v: V2(LR, 'cosine', k_decay=v), '(0,')
_rows('create_scheduler_v2[cosine]', 'noise', ([0.5, 0.2],), lambda v: V2(LR, 'cosine', noise=v), 'start <= end')
_rows('create_scheduler_v2[cosine]', 'noise', ([0.1, 0.2, 0.3], NAN), lambda v: V2(LR, 'cosine', noise=v))
_rows('create_scheduler_v2[cosine]', 'noise_pct', (-0.1,), lambda v: V2(LR, 'cosine', noise=0.5, noise_pct=v), '(0,')

_rows('create_scheduler_v2[tanh]', 'num_epochs', (0, -10), lambda v: V2(LR, 'tanh', num_epochs=v), '(0,')
_rows('create_scheduler_v2[tanh]', 'cycle_mul', (-1.,), lambda v: V2(LR, 'tanh', cycle_mul=v), '(0,')
_rows('create_scheduler_v2[tanh]', 'warmup_epochs', (1.5,), lambda v: V2(LR, 'tanh', warmup_epochs=v), 'integer')

_rows('create_scheduler_v2[step]', 'decay_epochs', (0, -3, NAN), lambda v: V2(LR, 'step', decay_epochs=v), '(0,')
_rows('create_scheduler_v2[step]', 'decay_rate', (-0.5,), lambda v: V2(LR, 'step', decay_rate=v), '[0,')

_rows('create_scheduler_v2[multistep]', 'decay_milestones', ([60, 30],),
      lambda v: V2(LR, 'multistep', decay_milestones=v), 'non-decreasing')
_rows('create_scheduler_v2[multistep]', 'decay_milestones', ([],), lambda v: V2(LR, 'multistep', decay_milestones=v),
      'non-empty')
_rows('create_scheduler_v2[multistep]', 'decay_milestones', ([-5, 30],),
      lambda v: V2(LR, 'multistep', decay_milestones=v), '[0,', shown='-5')
_rows('create_scheduler_v2[multistep]', 'decay_rate', (-1.,), lambda v: V2(LR, 'multistep', decay_rate=v), '[0,')

# poly's power is the factory's decay_rate (timm's overloading): the message names decay_rate
_rows('create_scheduler_v2[poly]', 'decay_rate', (-1., NAN, INF), lambda v: V2(LR, 'poly', decay_rate=v), '[0,')

_rows('create_scheduler_v2[wsd]', 'decay_fn', ('sqrt',), lambda v: V2(LR, 'wsd', decay_fn=v), "'1-sqrt'")
_rows('create_scheduler_v2[wsd]', 'decay_epochs', (20,), lambda v: V2(LR, 'wsd', num_epochs=10, decay_epochs=v), '(0,')
_rows('create_scheduler_v2[wsd]', 'decay_epochs', (0, NAN), lambda v: V2(LR, 'wsd', decay_epochs=v), '(0,')

_rows('create_scheduler_v2[rsqrt]', 'decay_epochs', (7,),
      lambda v: V2(LR, 'rsqrt', num_epochs=10, warmup_epochs=4, decay_epochs=v), 'num_epochs - warmup_epochs')
# the timescale is given in epochs: the message shows it unscaled by updates_per_epoch
_rows('create_scheduler_v2[rsqrt]', 'stable_timescale', (-1, 0),
      lambda v: V2(LR, 'rsqrt', stable_timescale=v, step_on_epochs=False, updates_per_epoch=5), '(0,')
_rows('create_scheduler_v2[rsqrt]', 'decay_fn', ('exp2',), lambda v: V2(LR, 'rsqrt', warmup_epochs=2, decay_fn=v),
      "'linear'")

_rows('create_scheduler_v2[constant]', 'num_epochs', (0,), lambda v: V2(LR, 'constant', num_epochs=v), '(0,')
_rows('create_scheduler_v2[constant]', 'lr', (-0.5,), lambda v: V2(v, 'constant'), '[0,')
_rows('create_scheduler_v2[constant]', 'warmup_epochs', (-2,), lambda v: V2(LR, 'constant', warmup_epochs=v), '[0,')
_rows('create_scheduler_v2[constant]', 'noise_std', (-1.,), lambda v: V2(LR, 'constant', noise=0.5, noise_std=v),
      '[0,')

_rows('create_scheduler_v2[plateau]', 'plateau_mode', ('avg',), lambda v: V2(LR, 'plateau', plateau_mode=v), "'min'")
_rows('create_scheduler_v2[plateau]', 'patience_epochs', (-1,), lambda v: V2(LR, 'plateau', patience_epochs=v), '[0,')
_rows('create_scheduler_v2[plateau]', 'decay_rate', (1.5,), lambda v: V2(LR, 'plateau', decay_rate=v), '[0, 1)')
_rows('create_scheduler_v2[plateau]', 'step_on_epochs', (False,),
      lambda v: V2(LR, 'plateau', step_on_epochs=v, updates_per_epoch=3), 'True')

_rows('create_scheduler_v2[none]', 'lr', (-1., NAN), lambda v: V2(v, 'none'), '[0,')
_rows('create_scheduler_v2[none]', 'num_epochs', (-1,), lambda v: V2(LR, 'none', num_epochs=v), '[0,')
_rows('create_scheduler_v2[none]', 'warmup_epochs', (-1,), lambda v: V2(LR, 'none', warmup_epochs=v), '[0,')

_rows('create_scheduler_v2[onecycle]', 'pct_start', (1.5,), lambda v: V2(LR, 'onecycle', pct_start=v), '[0, 1]')
_rows('create_scheduler_v2[onecycle]', 'div_factor', (0.,), lambda v: V2(LR, 'onecycle', div_factor=v), '(0,')
_rows('create_scheduler_v2[onecycle]', 'final_div_factor', (-1.,), lambda v: V2(LR, 'onecycle', final_div_factor=v),
      '(0,')
_rows('create_scheduler_v2[onecycle]', 'anneal_strategy', ('exp',), lambda v: V2(LR, 'onecycle', anneal_strategy=v),
      "'cos'")
# the warmup is onecycle's ramp (pct_start = warmup_epochs / num_epochs): a warmup longer than the run is named
_rows('create_scheduler_v2[onecycle]', 'warmup_epochs', (12,),
      lambda v: V2(LR, 'onecycle', num_epochs=10, warmup_epochs=v), '[0, 10]')


# ---- create_scheduler: an argparse namespace; the message names the attribute
def _args(**kw):
    return argparse.Namespace(**{'sched': 'cosine', **kw})


_rows('create_scheduler', 'sched', ('cosinee',), lambda v: jt.create_scheduler(_args(sched=v), LR), "'cosine'")
_rows('create_scheduler', 'epochs', (0,), lambda v: jt.create_scheduler(_args(epochs=v), LR), '(0,')
_rows('create_scheduler', 'lr_cycle_mul', (0.,), lambda v: jt.create_scheduler(_args(lr_cycle_mul=v), LR), '(0,')
_rows('create_scheduler', 'lr_cycle_limit', (0,), lambda v: jt.create_scheduler(_args(lr_cycle_limit=v), LR), '[1,')
_rows('create_scheduler', 'lr_k_decay', (0.,), lambda v: jt.create_scheduler(_args(lr_k_decay=v), LR), '(0,')
_rows('create_scheduler', 'lr_noise', ([0.9, 0.1],), lambda v: jt.create_scheduler(_args(lr_noise=v), LR),
      'start <= end')
_rows('create_scheduler', 'seed', (1.5,), lambda v: jt.create_scheduler(_args(lr_noise=0.5, seed=v), LR), 'integer')
_rows('create_scheduler', 'sched_on_updates', ('no',),
      lambda v: jt.create_scheduler(_args(sched_on_updates=v), LR, updates_per_epoch=5), 'True or False')
_rows('create_scheduler', 'min_lr', (-1.,), lambda v: jt.create_scheduler(_args(min_lr=v), LR), '[0,')
_rows('create_scheduler', 'decay_rate', (-1.,), lambda v: jt.create_scheduler(_args(sched='step', decay_rate=v), LR),
      '[0,')
_rows('create_scheduler', 'lr', (-1.,), lambda v: jt.create_scheduler(_args(), v), '[0,')


def _entry_point(entry: str) -> str:
    return entry.split('[')[0]


@pytest.mark.parametrize('row', BAD_SCHEDULE_VALUES,
                         ids=[f'{r.entry}-{r.arg}-{i}' for i, r in enumerate(BAD_SCHEDULE_VALUES)])
def test_bad_value_is_rejected(row):
    with pytest.raises(ValueError) as e:
        row.make(row.value)
    msg = str(e.value)
    assert row.arg in msg, f'{row.entry}: the message does not name {row.arg!r}: {msg}'
    assert row.shown in msg, f'{row.entry}: the message does not show {row.shown}: {msg}'
    if row.range_text is not None:
        assert row.range_text in msg, f'{row.entry}: the message does not print {row.range_text!r}: {msg}'


def test_every_entry_point_has_rows():
    exported = set(S.__all__)
    assert set(NOT_ENTRY_POINTS) <= exported, sorted(set(NOT_ENTRY_POINTS) - exported)
    counts = {}
    for row in BAD_SCHEDULE_VALUES:
        counts[row.entry] = counts.get(row.entry, 0) + 1
        base = _entry_point(row.entry)
        assert base in exported and base not in NOT_ENTRY_POINTS, row.entry
        if base != row.entry:
            assert base == 'create_scheduler_v2' and row.entry[len(base) + 1:-1] in S.SCHEDULERS, row.entry
    per_export = {}
    for entry, n in counts.items():
        per_export[_entry_point(entry)] = per_export.get(_entry_point(entry), 0) + n
    few = {name: per_export.get(name, 0) for name in exported - set(NOT_ENTRY_POINTS) if per_export.get(name, 0) < 3}
    assert not few, f'exported schedule entry points with fewer than 3 bad-value rows: {few}'
    few_scheds = {s: counts.get(f'create_scheduler_v2[{s}]', 0) for s in S.SCHEDULERS
                  if counts.get(f'create_scheduler_v2[{s}]', 0) < 3}
    assert not few_scheds, f'create_scheduler_v2 sched names with fewer than 3 bad-value rows: {few_scheds}'


@pytest.mark.parametrize('sched', ['cosine', 'tanh', 'step', 'multistep', 'wsd', 'poly', 'onecycle'])
@pytest.mark.parametrize('step', [2.5, float('nan'), float('inf'), -0.5, np.float32(1.25), jnp.asarray(2.5),
                                  jnp.asarray([1.0, float('nan')])], ids=repr)
def test_fractional_or_nan_step_is_refused(sched, step):
    """Flooring 2.5 gave cosine's epoch-2 lr (0.0905) where timm's fractional epoch gives 0.0854, and a NaN step
    gave the step-0 lr: both plausible and wrong. Whole floats still work; a traced float cannot be checked."""
    schedule, _ = jt.create_scheduler_v2(0.1, sched=sched, num_epochs=10, warmup_epochs=2)
    with pytest.raises(ValueError, match=r'Invalid step: .*expected a whole number'):
        schedule(step)
    assert float(schedule(3.0)) == float(schedule(3)) == float(schedule(jnp.asarray(3.0)))
    with pytest.raises(TypeError, match='must be an integer; got a traced float32'):
        jax.jit(schedule)(jnp.float32(3))


@pytest.mark.parametrize('metric', ['x', True, [1.0], jnp.ones(3), jnp.asarray(1 + 1j), object()], ids=repr)
def test_plateau_metric_must_be_a_real_scalar(metric):
    """A string, a bool or a vector metric was accepted (a vector turned the lr into a vector)."""
    sched = S.plateau(0.1, patience_t=1)
    with pytest.raises(ValueError, match='Invalid metric'):
        sched.step(sched.init(), 5, metric)
    for ok in (None, 0.5, 3, jnp.float32(0.25)):  # None: timm skips the plateau step
        _, lr = sched.step(sched.init(), 5, ok)
        assert lr.shape == () and float(lr) == pytest.approx(0.1)
