"""Step decay: timm's ``StepLRScheduler`` (``lr * decay_rate ** (t // decay_t)``)."""

from __future__ import annotations

import math
from typing import Optional

import jax.numpy as jnp
import numpy as np

from .._validate import check_range
from ._core import INT32_MAX, Schedule, int_power
from ._noise import NoiseRange
from ._warmup import WarmupAndNoise

__all__ = ['step']

_MAX_BOUNDS = 1 << 16


def _decay_count(decay_t: float, decay_rate: float, base_lr: float):
    """``t -> t // decay_t`` (Python's float floor division) for int32 ``t``.

    An integer ``decay_t`` is integer division. A fractional one (e.g.
    EfficientNet's 2.4 epochs) uses a table of the first integer step of each
    count, computed with Python's own ``//``, up to the count where
    ``decay_rate ** count`` no longer changes the float32 lr.
    """
    if float(decay_t).is_integer() and decay_t <= INT32_MAX:
        d = int(decay_t)
        return lambda t: t // d
    r = abs(float(decay_rate))
    if r in (0.0, 1.0) or base_lr == 0:
        needed = 2
    else:
        # counts past float32 underflow (r < 1) or overflow (r > 1) of base_lr * r ** count change nothing
        limit = math.log(1e-46 / base_lr) if r < 1 else math.log(3.5e38 / base_lr)
        needed = int(limit / math.log(r)) + 3
    bounds = [0]
    k = 1
    while k < min(needed, _MAX_BOUNDS):
        c = math.ceil(k * decay_t)
        while c > 0 and (c - 1) // decay_t >= k:
            c -= 1
        while c // decay_t < k:
            c += 1
        if c > INT32_MAX:
            break
        bounds.append(c)
        k += 1
    table = jnp.asarray(np.asarray(bounds, np.int64).astype(np.int32))
    n = len(bounds)
    d32 = jnp.float32(decay_t)

    def count(t):
        c = jnp.searchsorted(table, t, side='right') - 1
        if n < _MAX_BOUNDS:
            return c
        # beyond the table (only with decay_rate within ~1e-4 of 1): float32 division
        return jnp.maximum(c, jnp.floor(t.astype(jnp.float32) / d32).astype(jnp.int32))

    return count


def step(
    base_lr: float,
    decay_t: float,
    decay_rate: float = 1.0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = True,
    t_in_epochs: bool = True,
    noise_range_t: NoiseRange = None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = 42,
    *,
    noise_type: str = 'normal',
) -> Schedule:
    r"""timm's ``StepLRScheduler`` as a pure function ``schedule(t) -> lr``.

    .. math::
        \mathrm{lr}(t) = \mathrm{lr}_{base} \cdot r^{\lfloor t' / d \rfloor}

    with :math:`r` = ``decay_rate``, :math:`d` = ``decay_t`` (may be
    fractional) and :math:`t' = t - ` ``warmup_t`` when ``warmup_prefix``
    (timm's default here is True) else :math:`t`; linear warmup and noise as
    in :func:`jaxopt_timm.scheduler.cosine`.

    Args:
        base_lr: initial lr.
        decay_t: decay interval, > 0.
        decay_rate: multiplier per interval, >= 0.
        warmup_t, warmup_lr_init, warmup_prefix: linear warmup.
        t_in_epochs: recorded only.
        noise_range_t, noise_pct, noise_std, noise_seed, noise_type: lr noise.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.step(0.1, decay_t=30, decay_rate=0.1)
        >>> [round(float(sched(t)), 6) for t in (0, 29, 30, 60)]
        [0.1, 0.1, 0.01, 0.001]

    Note:
        ``decay_rate ** count`` comes from float64 tables, exact to float32
        rounding for any count; past float32 underflow the lr is 0.
    """
    check_range('base_lr', base_lr, 0.0)
    check_range('decay_t', decay_t, 0.0, lo_open=True)
    check_range('decay_rate', decay_rate, 0.0)  # a negative rate would flip the lr's sign every interval
    frame = WarmupAndNoise(
        base_lr,
        warmup_t,
        warmup_lr_init,
        warmup_prefix,
        t_in_epochs,
        noise_range_t,
        noise_type,
        noise_pct,
        noise_std,
        noise_seed,
    )
    base_lr = frame.base_lr
    count = _decay_count(float(decay_t), float(decay_rate), base_lr)
    gamma = int_power(decay_rate)

    def decayed(t):
        return jnp.float32(base_lr) * gamma(count(t))

    return frame.schedule('step', decayed)
