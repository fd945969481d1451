"""timm's warm restarts (cosine, tanh, poly): which cycle a step is in, where in it, and at what peak lr.

The cycle index and position come from integer arithmetic, or from tables of
integer cycle boundaries computed once in float64 that mirror timm's own
float rounding (see :mod:`._core` for why nothing else becomes a float).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_range
from ._core import INT32_MAX, f32_table, int_power

__all__ = ['CyclePosition', 'cycles', 'cycle_length', 'timm_cycle_index', 'validate_cycles']

_F32 = jnp.float32


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


def timm_cycle_index(t: int, t_initial: int, cycle_mul: float) -> float:
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
                f'start below 2**31 steps; expected a cycle_limit in [1, {_MAX_TABLE}]'
            )
        s = t_initial * (1 - cycle_mul**i) / (1 - cycle_mul)
        if s > INT32_MAX + 1 or not math.isfinite(s):
            c = INT32_MAX + 1
        else:
            c = max(bounds[-1], math.ceil(s))
            while c > bounds[-1] and timm_cycle_index(c - 1, t_initial, cycle_mul) >= i:
                c -= 1
            while c <= INT32_MAX and timm_cycle_index(c, t_initial, cycle_mul) < i:
                c += 1
        bounds.append(c)
        if i >= cycle_limit or c > INT32_MAX:
            return bounds, i
        if cycle_mul < 1 and timm_cycle_index(c, t_initial, cycle_mul) == math.inf:
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

        def periodic(t):
            i = t // T
            cur = t - i * T
            return CyclePosition(
                active=i < cycle_limit,
                cur=cur.astype(_F32),
                rem=(T - cur).astype(_F32),
                length=jnp.float32(T),
                lr_max=jnp.float32(base_lr) * lr_max_of(i),
            )

        return periodic

    bounds, n = _cycle_tables(t_initial, cycle_mul, cycle_limit)
    starts, start_frac, ends, end_excess, lengths, lr_maxes = [], [], [], [], [], []
    for i in range(n):
        # timm's own expressions, in float64
        s = (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
        t_i = cycle_mul**i * t_initial
        e = s + t_i
        s_int = min(math.floor(s), INT32_MAX)
        e_int = min(math.floor(e), INT32_MAX)
        starts.append(s_int)
        start_frac.append(s - s_int)
        ends.append(e_int)
        end_excess.append(e - e_int)
        lengths.append(t_i)
        lr_maxes.append(base_lr * cycle_decay**i)
    b_active = np.asarray(bounds[:n], np.int64)
    end_bound = bounds[n]
    starts_t = jnp.asarray(np.asarray(starts, np.int64).astype(np.int32))
    ends_t = jnp.asarray(np.asarray(ends, np.int64).astype(np.int32))
    start_frac_t, end_excess_t = f32_table(start_frac), f32_table(end_excess)
    lengths_t, lr_maxes_t = f32_table(lengths), f32_table(lr_maxes)
    b_table = jnp.asarray(np.minimum(b_active, INT32_MAX).astype(np.int32))

    def position(t):
        i = jnp.clip(jnp.searchsorted(b_table, t, side='right') - 1, 0, n - 1)
        active = t < end_bound if end_bound <= INT32_MAX else jnp.ones(jnp.shape(t), bool)
        cur = (t - starts_t[i]).astype(_F32) - start_frac_t[i]
        rem = (ends_t[i] - t).astype(_F32) + end_excess_t[i]
        return CyclePosition(active=active, cur=cur, rem=rem, length=lengths_t[i], lr_max=lr_maxes_t[i])

    return position


def cycle_length(t_initial: int, cycle_mul: float, cycle_limit: int, warmup_t: int, warmup_prefix: bool):
    """timm's ``get_cycle_length(cycles=0)`` for cosine / tanh / poly."""

    def length(cycles: int = 0) -> int:
        cycles = max(1, cycles or cycle_limit)
        if cycle_mul == 1.0:
            t = t_initial * cycles
        else:
            t = int(math.floor(-t_initial * (cycle_mul**cycles - 1) / (1 - cycle_mul)))
        return t + warmup_t if warmup_prefix else t

    return length


def validate_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay=1.0) -> None:
    """The restart arguments of cosine / tanh / poly, checked at construction rather than as a NaN lr later."""
    check_range('t_initial', t_initial, 0, INT32_MAX, lo_open=True, integer=True)
    check_range('lr_min', lr_min, 0.0)
    check_range('cycle_mul', cycle_mul, 0.0, lo_open=True)
    check_range('cycle_decay', cycle_decay, 0.0)
    # timm's cycle_limit=0 holds lr_min from the first step (older timm read it as no limit): rejected as ambiguous
    check_range('cycle_limit', cycle_limit, 1, INT32_MAX, integer=True)
    check_range('k_decay', k_decay, 0.0, lo_open=True)
