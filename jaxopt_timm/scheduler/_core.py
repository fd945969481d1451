"""The schedule object, step handling and the float32 formulations every timm scheduler is built on.

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

from .._validate import check_range

__all__ = ['INT32_MAX', 'Schedule', 'as_step', 'per_epoch', 'f32_table', 'int_power', 'remaining_power']

INT32_MAX = 2**31 - 1
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
    signedness (traced or not), and floats holding a whole number (``3.0``;
    concrete values only). A fractional step is refused: timm evaluates some
    schedules at fractional epochs, these functions only at whole counts, so
    flooring it would return a plausible but different lr; a NaN or infinite
    step has no lr at all. A traced float step cannot be checked and is
    refused too (cast the count to an integer dtype first).
    """
    if isinstance(t, bool):
        raise TypeError(f'a schedule step must be an integer, got {t!r}')
    if isinstance(t, (int, np.integer)):
        return jnp.asarray(min(max(int(t), 0), INT32_MAX), jnp.int32)
    if isinstance(t, (float, np.floating)):
        t = jnp.asarray(_whole_number(float(t)), _F32)
    t = jnp.asarray(t)
    dt = t.dtype
    if jnp.issubdtype(dt, jnp.bool_):
        raise TypeError(f'a schedule step must be an integer, got dtype {dt}')
    if jnp.issubdtype(dt, jnp.floating):
        if isinstance(t, jax.core.Tracer):
            raise TypeError(
                f'a schedule step must be an integer; got a traced {dt} array (a fractional step has '
                f'no lr here): cast the step with .astype(jnp.int32)'
            )
        values = np.asarray(t, np.float64).ravel()
        bad = values[~(np.isfinite(values) & (values == np.floor(values)))]
        if bad.size:
            _whole_number(float(bad[0]))
        t = jnp.clip(t.astype(_F32), 0.0, _F32_INT32_MAX)
        return t.astype(jnp.int32)
    if jnp.issubdtype(dt, jnp.unsignedinteger):
        if jnp.iinfo(dt).max > INT32_MAX:
            t = jnp.minimum(t, jnp.asarray(INT32_MAX, dt))
        return t.astype(jnp.int32)
    if jnp.iinfo(dt).max > INT32_MAX:
        t = jnp.clip(t, 0, INT32_MAX)
    return jnp.maximum(t.astype(jnp.int32), 0)


def _whole_number(value: float) -> float:
    if not math.isfinite(value) or value != math.floor(value):
        raise ValueError(
            f'Invalid step: {value!r}, expected a whole number of updates or epochs (an int; '
            f'fractional, NaN and infinite steps have no lr here)'
        )
    return value


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
            'a plateau schedule is stepped per epoch by its own step()'
        )
    check_range('updates_per_epoch', updates_per_epoch, 1, INT32_MAX, integer=True)
    upe = int(updates_per_epoch)
    fn = schedule._fn
    return Schedule(lambda t: fn(t // upe), schedule.base_lr, schedule.name, schedule.cycle_length, upe)


# --------------------------------------------------------------------------------------------------------------------
# integer powers and k-decay


def f32_table(values: Union[np.ndarray, Sequence[float]]) -> jax.Array:
    """float64 ``values`` rounded once to a float32 table (overflow to inf and underflow to 0 are intended)."""
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
        table = f32_table(np.power(np.float64(x), np.arange(max_n + 1, dtype=np.float64)))
        return lambda n: table[jnp.clip(n, 0, max_n)]
    with np.errstate(over='ignore', under='ignore', invalid='ignore'):
        base = np.float64(x)
        t0 = f32_table(np.power(base, np.arange(1024, dtype=np.float64)))
        t1 = f32_table(np.power(base, 1024.0 * np.arange(1024, dtype=np.float64)))
        t2 = f32_table(np.power(base, 1048576.0 * np.arange(2048, dtype=np.float64)))

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
