"""``create_scheduler_v2`` / ``create_scheduler``: timm's scheduler factory, returning pure schedules.

Mirrors ``timm.scheduler.scheduler_factory``: the same names, defaults,
argument scaling for per-update stepping and the same ``num_epochs`` in the
return value. The schedule's argument follows API.md:

* ``step_on_epochs=False``: ``t`` is the number of updates done (timm's
  ``step_update(num_updates=t)``);
* ``step_on_epochs=True`` with ``updates_per_epoch > 0``: ``t`` is the number
  of updates done and the value is that of epoch ``t // updates_per_epoch``
  (timm's ``step(epoch)``), so it can be fed the optax count;
* ``step_on_epochs=True`` with ``updates_per_epoch == 0``: ``t`` is the epoch.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, Optional, Sequence, Tuple, Union, cast

import jax.numpy as jnp

from .._validate import check_bool, check_choice, check_range
from ._core import INT32_MAX, Schedule, per_epoch
from ._noise import validate_noise_range
from ._cosine import cosine
from ._kwargs import _ARG_ATTRS, scheduler_kwargs
from ._multistep import multistep, validate_milestones
from ._onecycle import onecycle
from ._plateau import PLATEAU_MODES, PlateauSchedule, plateau
from ._poly import poly
from ._step import step
from ._tanh import tanh
from ._wsd import wsd

__all__ = ['create_scheduler', 'create_scheduler_v2', 'scheduler_kwargs', 'SCHEDULERS']

SCHEDULERS = ('cosine', 'tanh', 'step', 'multistep', 'poly', 'wsd', 'rsqrt', 'constant', 'plateau', 'none', 'onecycle')


def create_scheduler(args: Any, lr: float, updates_per_epoch: int = 0):
    """timm's ``create_scheduler(args, optimizer, updates_per_epoch)`` with the optimizer replaced by its ``lr``.

    Returns ``(schedule, num_epochs)`` as :func:`create_scheduler_v2`. A
    bad value raises ``ValueError`` naming the ``args`` attribute it came
    from where that is not the keyword's name (``args.epochs`` for
    ``num_epochs``, ``args.lr_cycle_mul`` for ``cycle_mul``, ...).
    """
    kwargs = scheduler_kwargs(args)
    try:
        return create_scheduler_v2(lr, **kwargs, updates_per_epoch=updates_per_epoch)
    except ValueError as e:
        match = re.match(r'Invalid (\w+)', str(e))
        attr = _ARG_ATTRS.get(match.group(1)) if match else None
        if attr is None:
            raise
        raise ValueError(f'{e} (from args.{attr})') from None


def _unknown_sched(sched: Any) -> ValueError:
    close = difflib.get_close_matches(str(sched), SCHEDULERS, n=3)
    hint = f' (did you mean {", ".join(repr(c) for c in close)}?)' if close else ''
    return ValueError(f'Invalid sched: {sched!r}{hint}, expected one of {list(SCHEDULERS)}')


def create_scheduler_v2(
    lr: float,
    sched: str = 'cosine',
    num_epochs: int = 300,
    decay_epochs: Optional[float] = None,
    decay_milestones: Sequence[int] = (90, 180, 270),
    cooldown_epochs: int = 0,
    patience_epochs: int = 10,
    decay_rate: float = 0.1,
    min_lr: float = 0.0,
    warmup_lr: float = 1e-5,
    warmup_epochs: int = 0,
    warmup_prefix: bool = False,
    noise: Union[float, Sequence[float], None] = None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
    cycle_mul: float = 1.0,
    cycle_decay: float = 0.1,
    cycle_limit: int = 1,
    k_decay: float = 1.0,
    decay_fn: Optional[str] = None,
    stable_timescale: Optional[float] = None,
    plateau_mode: str = 'max',
    step_on_epochs: bool = True,
    updates_per_epoch: int = 0,
    *,
    pct_start: Optional[float] = None,
    anneal_strategy: str = 'cos',
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Tuple[Union[Schedule, PlateauSchedule], int]:
    """Build a schedule by name, as ``timm.scheduler.create_scheduler_v2`` builds a scheduler.

    Args:
        lr: the base (peak) lr, what timm reads from the optimizer.
        sched: 'cosine', 'tanh', 'step', 'multistep', 'poly', 'wsd', 'rsqrt',
            'constant' (warmup then hold), 'plateau' (a
            :class:`~jaxopt_timm.scheduler.PlateauSchedule` state machine),
            'none' (the constant ``lr``) or 'onecycle'.
        num_epochs: schedule length in epochs (excluding a warmup prefix and cooldown).
        decay_epochs: step interval (step), or decay length for wsd / rsqrt (a
            value in (0, 1) is a fraction of the stable + decay length);
            None: 90 (step), 0.2 (wsd / rsqrt).
        decay_milestones: multistep milestones (epochs).
        cooldown_epochs: epochs at ``min_lr`` after the schedule (adds to ``num_epochs``).
        patience_epochs: plateau patience.
        decay_rate: step / multistep / plateau factor; the polynomial power for 'poly'.
        min_lr: lr floor.
        warmup_lr: lr at the start of the warmup.
        warmup_epochs: warmup length (also the onecycle ramp when given: ``pct_start = warmup / num_epochs``).
        warmup_prefix: warmup before ``num_epochs`` rather than within it.
        noise: noise on / off points as fractions of the schedule length.
        noise_pct, noise_std, noise_seed: noise limit, std and seed.
        cycle_mul, cycle_decay, cycle_limit: restarts (cosine, tanh, poly).
        k_decay: k-decay (cosine, poly).
        decay_fn: wsd / rsqrt decay function; None: '1-sqrt' (wsd), 'linear' (rsqrt).
        stable_timescale: rsqrt timescale in epochs; None: warmup length.
        plateau_mode: 'max' or 'min'.
        step_on_epochs: step per epoch (timm's ``step``) rather than per update (``step_update``).
        updates_per_epoch: updates per epoch; required (> 0) when ``step_on_epochs=False``,
            and with ``step_on_epochs=True`` makes the schedule take the update count.
        pct_start, anneal_strategy, div_factor, final_div_factor, three_phase:
            'onecycle' only (mmengine's names); ``pct_start`` defaults to
            ``warmup_epochs / num_epochs`` when there is a warmup, else 0.3.

    Returns:
        ``(schedule, num_epochs)`` with timm's ``num_epochs`` (cycles, cooldown and warmup prefix included).

    Example:
        >>> import jaxopt_timm as jt
        >>> sched, epochs = jt.create_scheduler_v2(0.1, 'cosine', num_epochs=100, warmup_epochs=5,
        ...                                         step_on_epochs=False, updates_per_epoch=50)
        >>> epochs, round(float(sched(0)), 8)
        (100, 1e-05)

    Note:
        timm quirks mirrored: 'poly' takes its power from ``decay_rate``;
        'constant' is a step schedule with ``decay_t=1, decay_rate=1`` (so it
        has warmup and noise); 'plateau' ignores ``cooldown_epochs`` (timm
        passes ``cooldown_t=0``) and ``warmup_prefix``; wsd / rsqrt fit their
        warmup inside ``num_epochs`` unless ``warmup_prefix``. 'none' returns
        a constant schedule at ``lr`` (timm returns no scheduler and leaves the
        optimizer's lr, i.e. the same constant).
    """
    if not isinstance(sched, str) or sched not in SCHEDULERS:
        raise _unknown_sched(sched)
    check_range('lr', lr, 0.0)
    check_bool('step_on_epochs', step_on_epochs)
    check_range('num_epochs', num_epochs, 0, INT32_MAX, lo_open=sched not in ('none', 'plateau'), integer=True)
    if step_on_epochs:
        check_range('updates_per_epoch', updates_per_epoch, 0, INT32_MAX, integer=True)
    else:
        if not isinstance(updates_per_epoch, int) or isinstance(updates_per_epoch, bool) or updates_per_epoch <= 0:
            raise ValueError(
                f'Invalid updates_per_epoch: {updates_per_epoch!r}, step_on_epochs=False needs the number of '
                f'dataloader batches; expected an integer in [1, {INT32_MAX}]'
            )
    check_range('warmup_epochs', warmup_epochs, 0, INT32_MAX, integer=True)
    check_range('cooldown_epochs', cooldown_epochs, 0, INT32_MAX, integer=True)
    # the arguments the schedules receive renamed (min_lr -> lr_min, ...) or scaled by updates_per_epoch are checked
    # here, so that a message names what the caller wrote
    check_range('min_lr', min_lr, 0.0)
    check_range('warmup_lr', warmup_lr, 0.0)
    validate_noise_range('noise', noise, lengths=(1, 2))
    if stable_timescale is not None:
        check_range('stable_timescale', stable_timescale, 0.0, lo_open=True)

    if decay_epochs is None:
        # wsd / rsqrt decay over the last 20% of the stable + decay length, step every 90 epochs
        decay_epochs = 0.2 if sched in ('wsd', 'rsqrt') else 90
    if sched in ('step', 'wsd', 'rsqrt'):
        check_range('decay_epochs', decay_epochs, 0.0, lo_open=True)
    if sched == 'multistep':
        validate_milestones('decay_milestones', decay_milestones)
    if sched in ('step', 'multistep', 'poly'):
        # a multiplier per interval / milestone; the polynomial power for poly
        check_range('decay_rate', decay_rate, 0.0)
    elif sched == 'plateau':
        check_range('decay_rate', decay_rate, 0.0, 1.0, hi_open=True)
        check_range('patience_epochs', patience_epochs, 0, INT32_MAX, integer=True)
        check_choice('plateau_mode', plateau_mode, PLATEAU_MODES)
    elif sched == 'onecycle' and pct_start is None and warmup_epochs:
        # the warmup is the ramp: pct_start = warmup_epochs / num_epochs
        check_range('warmup_epochs', warmup_epochs, 0, num_epochs, integer=True)

    t_initial = num_epochs
    warmup_t = warmup_epochs
    decay_t = decay_epochs
    cooldown_t = cooldown_epochs
    timescale_t = stable_timescale
    if not step_on_epochs:
        t_initial = t_initial * updates_per_epoch
        warmup_t = warmup_t * updates_per_epoch
        decay_t = decay_t * updates_per_epoch
        decay_milestones = [d * updates_per_epoch for d in decay_milestones]
        cooldown_t = cooldown_t * updates_per_epoch
        if timescale_t is not None:
            timescale_t = timescale_t * updates_per_epoch

    # keyword bundles for the schedules below; their values' types differ, hence Dict[str, Any]
    warmup_args: Dict[str, Any] = dict(warmup_lr_init=warmup_lr, warmup_t=warmup_t, warmup_prefix=warmup_prefix)
    noise_range: Any
    if noise is not None:
        if isinstance(noise, (list, tuple)):
            noise_range = [n * t_initial for n in noise]
            if len(noise_range) == 1:
                noise_range = noise_range[0]
        else:
            noise_range = cast(float, noise) * t_initial  # validate_noise_range let only a number through here
    else:
        noise_range = None
    noise_args: Dict[str, Any] = dict(
        noise_range_t=noise_range, noise_pct=noise_pct, noise_std=noise_std, noise_seed=noise_seed
    )
    cycle_args: Dict[str, Any] = dict(cycle_mul=cycle_mul, cycle_decay=cycle_decay, cycle_limit=cycle_limit)

    schedule: Union[Schedule, PlateauSchedule]
    if sched == 'cosine':
        schedule = cosine(
            lr,
            t_initial=t_initial,
            lr_min=min_lr,
            t_in_epochs=step_on_epochs,
            k_decay=k_decay,
            **cycle_args,
            **warmup_args,
            **noise_args,
        )
    elif sched == 'tanh':
        schedule = tanh(
            lr,
            t_initial=t_initial,
            lr_min=min_lr,
            t_in_epochs=step_on_epochs,
            **cycle_args,
            **warmup_args,
            **noise_args,
        )
    elif sched == 'step':
        schedule = step(
            lr, decay_t=decay_t, decay_rate=decay_rate, t_in_epochs=step_on_epochs, **warmup_args, **noise_args
        )
    elif sched == 'constant':
        # timm: a step schedule that never decays (warmup, noise and lr_scale still apply)
        schedule = step(lr, decay_t=1, decay_rate=1.0, t_in_epochs=step_on_epochs, **warmup_args, **noise_args)
    elif sched == 'multistep':
        schedule = multistep(
            lr,
            decay_t=list(decay_milestones),
            decay_rate=decay_rate,
            t_in_epochs=step_on_epochs,
            **warmup_args,
            **noise_args,
        )
    elif sched == 'plateau':
        if not step_on_epochs:
            raise ValueError('Invalid step_on_epochs: False, plateau only steps per epoch; expected True')
        schedule = plateau(
            lr,
            decay_rate=decay_rate,
            patience_t=patience_epochs,
            cooldown_t=0,
            warmup_lr_init=warmup_lr,
            warmup_t=warmup_t,
            lr_min=min_lr,
            mode=plateau_mode,
            **noise_args,
        )
    elif sched == 'poly':
        # timm quirk: decay_rate is overloaded as the polynomial power
        schedule = poly(
            lr,
            power=decay_rate,
            t_initial=t_initial,
            lr_min=min_lr,
            t_in_epochs=step_on_epochs,
            k_decay=k_decay,
            **cycle_args,
            **warmup_args,
            **noise_args,
        )
    elif sched in ('wsd', 'rsqrt'):
        # warmup is always a prefix here; without warmup_prefix the stable + decay phases fit in num_epochs
        t_sched = t_initial if warmup_prefix else t_initial - warmup_t
        if 0 < decay_epochs < 1:
            decay_t = decay_epochs * t_sched
        decay_t = int(round(decay_t))
        if not 0 < decay_t <= t_sched:
            limit = 'num_epochs' if warmup_prefix else 'num_epochs - warmup_epochs'
            raise ValueError(
                f'Invalid decay_epochs: {decay_epochs!r}, {sched} needs a decay length in (0, {limit}] '
                f'(or a fraction in (0, 1)); got decay {decay_t} with stable + decay length {t_sched}'
            )
        schedule = wsd(
            lr,
            t_initial=t_sched,
            decay_t=decay_t,
            lr_min=min_lr,
            stable_fn='rsqrt' if sched == 'rsqrt' else 'constant',
            stable_timescale=timescale_t,
            decay_fn=decay_fn or ('linear' if sched == 'rsqrt' else '1-sqrt'),
            t_in_epochs=step_on_epochs,
            warmup_t=warmup_t,
            warmup_lr_init=warmup_lr,
            **noise_args,
        )
    elif sched == 'onecycle':
        if pct_start is None:
            pct_start = warmup_epochs / num_epochs if warmup_epochs else 0.3
        schedule = onecycle(
            lr,
            total_steps=t_initial,
            pct_start=float(pct_start),
            anneal_strategy=anneal_strategy,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
        )
    else:  # 'none': timm leaves the optimizer's lr alone
        schedule = Schedule(lambda t: jnp.full(jnp.shape(t), lr, jnp.float32), lr, 'none')

    if sched in ('cosine', 'tanh', 'poly', 'wsd', 'rsqrt'):
        # cycle based: total length with cycles, warmup prefix and cooldown
        assert isinstance(schedule, Schedule) and schedule.cycle_length is not None  # these schedules set it
        total = schedule.cycle_length() + cooldown_t
        num_epochs = total if step_on_epochs else total // updates_per_epoch
    elif warmup_prefix:
        num_epochs += warmup_epochs

    if step_on_epochs and updates_per_epoch and isinstance(schedule, Schedule):
        schedule = per_epoch(schedule, updates_per_epoch)
    return schedule, num_epochs
