"""Pieces every timm scheduler shares: the schedule object, step handling, warmup, cycles, k-decay, noise.

timm evaluates its schedules in float64 Python math on Python ints. Here they
are float32 ``jnp`` functions of an int32 step, so the formulations are chosen
to keep the relative error near float32's epsilon at every step:

* steps are int32 and saturate at ``2**31 - 1`` instead of wrapping; cycle
  index and position come from integer arithmetic (or from tables of integer
  cycle boundaries computed once in float64), and only the position *within*
  a cycle becomes a float;
* ``1 + cos(pi x)`` is written ``2 sin^2(pi (1 - x) / 2)`` with ``1 - x``
  taken from the remaining integer steps, ``1 - x**k`` as
  ``-expm1(k log1p(-(1 - x)))``, so nothing cancels at the end of a cycle;
* integer powers (``decay_rate ** count``, ``cycle_decay ** i``) come from
  float64 tables, not from float32 ``pow`` whose error grows with the exponent.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_bool, check_choice, check_range

__all__ = [
    'INT32_MAX', 'Schedule', 'as_step', 'per_epoch', 'int_power', 'remaining_power', 'CyclePosition', 'cycles',
    'cycle_length', 'linear_warmup', 'noise_fn', 'with_noise', 'NoiseRange', 'NOISE_TYPES', 'validate_cycles',
    'validate_noise', 'validate_noise_range', 'validate_warmup',
]

INT32_MAX = 2 ** 31 - 1
_F32_INT32_MAX = 2147483520.0  # largest float32 below 2**31
_F32 = jnp.float32


class Schedule:
    """A learning-rate schedule ``schedule(t) -> lr`` (float32 scalar) that carries its peak lr.

    Attributes:
        base_lr: the base (peak) lr, what timm reads from the optimizer and what
            optimizers read for corrected weight decay.
        name: the schedule's name ('cosine', 'step', ...).
        cycle_length: timm's ``get_cycle_length()`` in the schedule's own units
            (None for schedules that have none).
    """

    __slots__ = ('_fn', 'base_lr', 'name', 'cycle_length', 'updates_per_epoch', '__weakref__')

    def __init__(
            self,
            fn: Callable[[jax.Array], jax.Array],
            base_lr: float,
            name: str,
            cycle_length: Optional[Callable[..., int]] = None,
            updates_per_epoch: int = 0,
    ) -> None:
        if not callable(fn):
            raise ValueError(f'Invalid fn: {fn!r}, expected a callable step -> lr')
        check_range('base_lr', base_lr, 0.0)
        if not isinstance(name, str):
            raise ValueError(f'Invalid name: {name!r}, expected a string')
        if cycle_length is not None and not callable(cycle_length):
            raise ValueError(f'Invalid cycle_length: {cycle_length!r}, expected None or a callable cycles -> length')
        check_range('updates_per_epoch', updates_per_epoch, 0, INT32_MAX, integer=True)
        self._fn = fn
        self.base_lr = float(base_lr)
        self.name = name
        self.cycle_length = cycle_length
        self.updates_per_epoch = updates_per_epoch

    def __call__(self, t: Any) -> jax.Array:
        return jnp.asarray(self._fn(as_step(t)), _F32)

    def __repr__(self) -> str:
        per = f', updates_per_epoch={self.updates_per_epoch}' if self.updates_per_epoch else ''
        return f'Schedule({self.name!r}, base_lr={self.base_lr!r}{per})'


def as_step(t: Any) -> jax.Array:
    """The step as an int32 array, saturated to ``[0, 2**31 - 1]`` (never wrapped).

    Accepts Python ints (of any size), integer arrays of any width or
    signedness (traced or not) and, for convenience, floats (floored).
    """
    if isinstance(t, bool):
        raise TypeError(f'a schedule step must be an integer, got {t!r}')
    if isinstance(t, (int, np.integer)):
        return jnp.asarray(min(max(int(t), 0), INT32_MAX), jnp.int32)
    if isinstance(t, float):
        t = jnp.asarray(t, _F32)
    t = jnp.asarray(t)
    dt = t.dtype
    if jnp.issubdtype(dt, jnp.bool_):
        raise TypeError(f'a schedule step must be an integer, got dtype {dt}')
    if jnp.issubdtype(dt, jnp.floating):
        t = jnp.clip(jnp.floor(t.astype(_F32)), 0.0, _F32_INT32_MAX)
        return t.astype(jnp.int32)
    if jnp.issubdtype(dt, jnp.unsignedinteger):
        if jnp.iinfo(dt).max > INT32_MAX:
            t = jnp.minimum(t, jnp.asarray(INT32_MAX, dt))
        return t.astype(jnp.int32)
    if jnp.iinfo(dt).max > INT32_MAX:
        t = jnp.clip(t, 0, INT32_MAX)
    return jnp.maximum(t.astype(jnp.int32), 0)


def per_epoch(schedule: Schedule, updates_per_epoch: int) -> Schedule:
    """Compose an epoch-indexed schedule with ``t // updates_per_epoch``.

    timm steps such a scheduler with ``step(epoch)`` once per epoch; fed the
    optax update count ``t``, the composed schedule returns the value of epoch
    ``t // updates_per_epoch``, so epoch-stepped recipes run inside the jitted
    update.
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(
            f'Invalid schedule: {schedule!r}, expected a Schedule (from cosine, step, ..., create_scheduler_v2); '
            'a plateau schedule is stepped per epoch by its own step()')
    check_range('updates_per_epoch', updates_per_epoch, 1, INT32_MAX, integer=True)
    upe = int(updates_per_epoch)
    fn = schedule._fn
    return Schedule(lambda t: fn(t // upe), schedule.base_lr, schedule.name, schedule.cycle_length, upe)


# --------------------------------------------------------------------------------------------------------------------
# integer powers


def _f32_table(values: np.ndarray) -> jax.Array:
    with np.errstate(over='ignore', under='ignore', invalid='ignore'):
        return jnp.asarray(np.asarray(values, np.float64).astype(np.float32))


def int_power(x: float, max_n: Optional[int] = None) -> Callable[[jax.Array], jax.Array]:
    """``n -> float32(x ** n)`` for int32 ``n >= 0``, from float64 tables.

    ``x ** n = x**a * x**(1024 b) * x**(2**20 c)`` with three 1024/1024/2048
    entry tables computed in float64 (each entry rounded once), so the error
    stays at a few float32 ulps for any ``n < 2**31``. With ``max_n`` below
    1024 a single table indexed by ``min(n, max_n)`` is used.
    """
    x = float(x)
    if x == 1.0:
        return lambda n: jnp.ones(jnp.shape(n), _F32)
    if max_n is not None and max_n < 1024:
        table = _f32_table(np.power(np.float64(x), np.arange(max_n + 1, dtype=np.float64)))
        return lambda n: table[jnp.clip(n, 0, max_n)]
    with np.errstate(over='ignore', under='ignore', invalid='ignore'):
        base = np.float64(x)
        t0 = _f32_table(np.power(base, np.arange(1024, dtype=np.float64)))
        t1 = _f32_table(np.power(base, 1024.0 * np.arange(1024, dtype=np.float64)))
        t2 = _f32_table(np.power(base, 1048576.0 * np.arange(2048, dtype=np.float64)))

    def power(n):
        n = jnp.clip(n, 0, INT32_MAX if max_n is None else max_n)
        return t0[n & 1023] * t1[(n >> 10) & 1023] * t2[n >> 20]

    return power


def remaining_power(rem: jax.Array, cur: jax.Array, length: jax.Array, k: float) -> jax.Array:
    """``1 - (cur / length) ** k`` where ``rem = length - cur``, without cancellation near ``cur = length``.

    This is timm's k-decay (``t_curr ** k / t_i ** k``); with ``k == 1`` it is
    ``rem / length``.
    """
    if k == 1.0:
        return rem / length
    r = jnp.clip(rem / length, 0.0, 1.0)
    q = jnp.clip(cur / length, 0.0, 1.0)
    # where the remaining fraction is small, log1p(-r) is exact; elsewhere log(q) is
    log_q = jnp.where(r < 0.5, jnp.log1p(-r), jnp.log(q))
    return -jnp.expm1(k * log_q)


# --------------------------------------------------------------------------------------------------------------------
# warmup


def validate_warmup(warmup_t: Any, warmup_lr_init: Any, warmup_prefix: Any = False) -> None:
    check_range('warmup_t', warmup_t, 0, INT32_MAX, integer=True)
    check_range('warmup_lr_init', warmup_lr_init, 0.0)
    check_bool('warmup_prefix', warmup_prefix)


def linear_warmup(
        t: jax.Array,
        warmup_t: int,
        warmup_lr_init: float,
        warmup_step: float,
        after: jax.Array,
) -> jax.Array:
    """timm's warmup: ``warmup_lr_init + t * warmup_step`` while ``t < warmup_t``, else ``after``.

    ``warmup_step`` is computed by the caller in float64, as timm does
    (``(base_lr - warmup_lr_init) / warmup_t``, or tanh's variant).
    """
    if not warmup_t:
        return after
    warm = jnp.float32(warmup_lr_init) + t.astype(_F32) * jnp.float32(warmup_step)
    return jnp.where(t < warmup_t, warm, after)


# --------------------------------------------------------------------------------------------------------------------
# cycles (cosine, tanh, poly)


class CyclePosition:
    """Where a step lies in timm's cycles.

    Attributes:
        active: the cycle index is below ``cycle_limit`` (otherwise timm returns ``lr_min``).
        cur: ``t_curr``, the position in the cycle (float32).
        rem: ``t_i - t_curr``, the remaining steps (float32, from integers, no cancellation).
        length: ``t_i``, the cycle length (float32).
        lr_max: ``base_lr * cycle_decay ** i`` (float32).
    """

    __slots__ = ('active', 'cur', 'rem', 'length', 'lr_max')

    def __init__(self, active, cur, rem, length, lr_max):
        self.active, self.cur, self.rem, self.length, self.lr_max = active, cur, rem, length, lr_max


def _timm_cycle_index(t: int, t_initial: int, cycle_mul: float) -> float:
    """timm's float64 cycle index for ``cycle_mul != 1`` (``inf`` where timm's log has no domain)."""
    arg = 1 - t / t_initial * (1 - cycle_mul)
    if arg <= 0:
        return math.inf
    return math.floor(math.log(arg, cycle_mul))


_MAX_TABLE = 1 << 20


def _cycle_tables(t_initial: int, cycle_mul: float, cycle_limit: int):
    """Integer start steps of cycles ``0 .. n`` exactly as timm's float64 ``floor(log(...))`` assigns them.

    Returns ``(bounds, n)``: ``bounds[i]`` is the first integer step whose
    timm cycle index is ``>= i``; steps at or past ``bounds[n]`` are past the
    cycle limit (or past the end of a shrinking series, where timm's log
    raises), where the lr is ``lr_min``.
    """
    bounds = [0]
    i = 0
    while True:
        i += 1
        if i > _MAX_TABLE:
            raise ValueError(
                f'Invalid cycle_limit: {cycle_limit!r}, with cycle_mul={cycle_mul!r} more than {_MAX_TABLE} cycles '
                f'start below 2**31 steps; expected a cycle_limit in [1, {_MAX_TABLE}]')
        s = t_initial * (1 - cycle_mul ** i) / (1 - cycle_mul)
        if s > INT32_MAX + 1 or not math.isfinite(s):
            c = INT32_MAX + 1
        else:
            c = max(bounds[-1], math.ceil(s))
            while c > bounds[-1] and _timm_cycle_index(c - 1, t_initial, cycle_mul) >= i:
                c -= 1
            while c <= INT32_MAX and _timm_cycle_index(c, t_initial, cycle_mul) < i:
                c += 1
        bounds.append(c)
        if i >= cycle_limit or c > INT32_MAX:
            return bounds, i
        if cycle_mul < 1 and _timm_cycle_index(c, t_initial, cycle_mul) == math.inf:
            # shrinking cycles: every later cycle starts at the end of the series
            return bounds, i


def cycles(
        t_initial: int,
        cycle_mul: float,
        cycle_decay: float,
        cycle_limit: int,
        base_lr: float,
) -> Callable[[jax.Array], CyclePosition]:
    """``t -> CyclePosition`` for timm's restarts (``t`` already shifted by a warmup prefix).

    With ``cycle_mul == 1`` the index and position are integer division and
    remainder. Otherwise cycle ``i`` spans ``s_i = t_initial (1 - m**i) / (1 - m)``
    to ``s_i + m**i t_initial``; which integer steps fall in which cycle is
    tabulated once, mirroring timm's ``floor(log(1 - t / t_initial (1 - m), m))``
    including its float rounding at cycle boundaries.
    """
    if cycle_limit == 0:
        def never(t):
            zero = jnp.zeros(jnp.shape(t), _F32)
            return CyclePosition(jnp.zeros(jnp.shape(t), bool), zero, zero, jnp.float32(1), zero)

        return never

    if cycle_mul == 1:
        T = int(t_initial)
        lr_max_of = int_power(cycle_decay, max_n=max(cycle_limit - 1, 0) if cycle_limit <= 1024 else None)

        def position(t):
            i = t // T
            cur = t - i * T
            return CyclePosition(
                active=i < cycle_limit,
                cur=cur.astype(_F32),
                rem=(T - cur).astype(_F32),
                length=jnp.float32(T),
                lr_max=jnp.float32(base_lr) * lr_max_of(i),
            )

        return position

    bounds, n = _cycle_tables(t_initial, cycle_mul, cycle_limit)
    starts, start_frac, ends, end_excess, lengths, lr_maxes = [], [], [], [], [], []
    for i in range(n):
        # timm's own expressions, in float64
        s = (1 - cycle_mul ** i) / (1 - cycle_mul) * t_initial
        t_i = cycle_mul ** i * t_initial
        e = s + t_i
        s_int = min(math.floor(s), INT32_MAX)
        e_int = min(math.floor(e), INT32_MAX)
        starts.append(s_int)
        start_frac.append(s - s_int)
        ends.append(e_int)
        end_excess.append(e - e_int)
        lengths.append(t_i)
        lr_maxes.append(base_lr * cycle_decay ** i)
    b_active = np.asarray(bounds[:n], np.int64)
    end_bound = bounds[n]
    starts = jnp.asarray(np.asarray(starts, np.int64).astype(np.int32))
    ends = jnp.asarray(np.asarray(ends, np.int64).astype(np.int32))
    start_frac, end_excess = _f32_table(start_frac), _f32_table(end_excess)
    lengths, lr_maxes = _f32_table(lengths), _f32_table(lr_maxes)
    b_table = jnp.asarray(np.minimum(b_active, INT32_MAX).astype(np.int32))

    def position(t):
        i = jnp.clip(jnp.searchsorted(b_table, t, side='right') - 1, 0, n - 1)
        active = t < end_bound if end_bound <= INT32_MAX else jnp.ones(jnp.shape(t), bool)
        cur = (t - starts[i]).astype(_F32) - start_frac[i]
        rem = (ends[i] - t).astype(_F32) + end_excess[i]
        return CyclePosition(active=active, cur=cur, rem=rem, length=lengths[i], lr_max=lr_maxes[i])

    return position


def cycle_length(t_initial: int, cycle_mul: float, cycle_limit: int, warmup_t: int, warmup_prefix: bool):
    """timm's ``get_cycle_length(cycles=0)`` for cosine / tanh / poly."""

    def length(cycles: int = 0) -> int:
        cycles = max(1, cycles or cycle_limit)
        if cycle_mul == 1.0:
            t = t_initial * cycles
        else:
            t = int(math.floor(-t_initial * (cycle_mul ** cycles - 1) / (1 - cycle_mul)))
        return t + warmup_t if warmup_prefix else t

    return length


def validate_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay=1.0) -> None:
    check_range('t_initial', t_initial, 0, INT32_MAX, lo_open=True, integer=True)
    check_range('lr_min', lr_min, 0.0)
    check_range('cycle_mul', cycle_mul, 0.0, lo_open=True)
    check_range('cycle_decay', cycle_decay, 0.0)
    # timm's cycle_limit=0 holds lr_min from the first step (older timm read it as no limit): rejected as ambiguous
    check_range('cycle_limit', cycle_limit, 1, INT32_MAX, integer=True)
    check_range('k_decay', k_decay, 0.0, lo_open=True)


# --------------------------------------------------------------------------------------------------------------------
# noise

NoiseRange = Union[None, float, int, Sequence[float]]
NOISE_TYPES = ('normal', 'uniform')


def validate_noise_range(name: str, noise_range: Any, lengths: Sequence[int] = (2,)) -> None:
    """``None``, a finite start, or a ``(start, end)`` pair with ``start <= end`` (sequences of ``lengths``)."""
    if noise_range is None:
        return
    if isinstance(noise_range, (list, tuple)):
        if len(noise_range) not in lengths:
            raise ValueError(f'Invalid {name}: {noise_range!r}, expected None, a start step, or a (start, end) pair')
        for j, v in enumerate(noise_range):
            check_range(f'{name}[{j}]', v)
        if len(noise_range) == 2 and noise_range[1] < noise_range[0]:
            raise ValueError(f'Invalid {name}: {noise_range!r}, expected a (start, end) pair with start <= end')
    else:
        check_range(name, noise_range)


def validate_noise(noise_range_t: NoiseRange, noise_type: str, noise_pct: float, noise_std: float, noise_seed) -> None:
    validate_noise_range('noise_range_t', noise_range_t)
    # timm treats any noise_type but 'normal' as uniform; a misspelt 'normal' is rejected here
    check_choice('noise_type', noise_type, NOISE_TYPES)
    check_range('noise_std', noise_std, 0.0)
    if noise_type == 'normal' and noise_range_t is not None and noise_std > 0:
        # timm redraws until |n| < noise_pct: a non-positive limit would never return
        check_range('noise_pct', noise_pct, 0.0, lo_open=True)
    else:
        check_range('noise_pct', noise_pct, 0.0)
    if noise_seed is not None and (isinstance(noise_seed, bool) or not isinstance(noise_seed, (int, np.integer))):
        raise ValueError(f'Invalid noise_seed: {noise_seed!r}, expected an integer')


def _first_int_at_or_above(x: float) -> int:
    if x == math.inf:
        return INT32_MAX + 1
    if x == -math.inf:
        return 0
    return max(math.ceil(x), 0)


def noise_fn(
        noise_range_t: NoiseRange,
        noise_type: str = 'normal',
        noise_pct: float = 0.67,
        noise_std: float = 1.0,
        noise_seed: Optional[int] = 42,
) -> Optional[Callable[[jax.Array, jax.Array], jax.Array]]:
    """``(lr, t) -> lr + lr * n(t)`` inside the noise range, else ``lr``; None without a range.

    timm's range test is ``lo <= t < hi`` for a pair, ``t >= lo`` for a number.
    The noise ``n(t)`` is drawn from ``fold_in(key(seed), t)``, so it is a
    pure function of ``(seed, t)``. Its law is timm's: for ``'normal'`` a
    ``N(0, noise_std**2)`` sample redrawn until ``|n| < noise_pct``, which is
    exactly a normal truncated to ``(-noise_pct, noise_pct)`` (drawn here
    directly, without a loop); ``'uniform'`` is uniform on
    ``(-noise_pct, noise_pct)`` (timm takes any other string for uniform;
    here it raises ``ValueError``). torch's generator is not reproduced bit
    for bit, only the distribution.
    """
    validate_noise(noise_range_t, noise_type, noise_pct, noise_std, noise_seed)
    if noise_range_t is None:
        return None
    if isinstance(noise_range_t, (list, tuple)):
        lo = _first_int_at_or_above(float(noise_range_t[0]))
        hi_last = _first_int_at_or_above(float(noise_range_t[1])) - 1
    else:
        lo = _first_int_at_or_above(float(noise_range_t))
        hi_last = INT32_MAX
    hi_last = min(hi_last, INT32_MAX)
    if lo > INT32_MAX or hi_last < lo:
        return None
    seed = 42 if noise_seed is None else int(noise_seed)
    pct, std = float(noise_pct), float(noise_std)
    normal = noise_type == 'normal'

    def draw(t):
        key = jax.random.fold_in(jax.random.key(seed & 0xFFFFFFFF), t)
        if normal:
            if std == 0:
                return jnp.zeros((), _F32)
            return jnp.float32(std) * jax.random.truncated_normal(key, -pct / std, pct / std, (), _F32)
        return jax.random.uniform(key, (), _F32, -pct, pct)

    def apply(lr, t):
        n = jnp.vectorize(draw)(t)
        inside = (t >= lo) & (t <= hi_last)
        return jnp.where(inside, lr + lr * n, lr)

    return apply


def with_noise(fn, noise):
    """Wrap ``fn(t)`` with ``noise`` (from :func:`noise_fn`), as timm's ``_add_noise`` after ``_get_lr``."""
    if noise is None:
        return fn
    return lambda t: noise(fn(t), t)
