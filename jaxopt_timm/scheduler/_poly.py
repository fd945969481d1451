"""Polynomial decay with restarts: timm's ``PolyLRScheduler``.

k-decay from Zhang & Li, 2020, "k-decay: A New Method For Learning Rate
Schedule" (https://arxiv.org/abs/2004.05909).
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from .._validate import check_range
from ._core import Schedule, remaining_power
from ._cycles import cycle_length, cycles, validate_cycles
from ._noise import NoiseRange
from ._warmup import WarmupAndNoise

__all__ = ['poly']


def poly(
    base_lr: float,
    t_initial: int,
    power: float = 0.5,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    t_in_epochs: bool = True,
    noise_range_t: NoiseRange = None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = 42,
    k_decay: float = 1.0,
    *,
    noise_type: str = 'normal',
) -> Schedule:
    r"""timm's ``PolyLRScheduler`` as a pure function ``schedule(t) -> lr``.

    In cycle :math:`i` (length :math:`T_i`, position :math:`t_c`):

    .. math::
        \mathrm{lr}(t) = \mathrm{lr}_{min} + (\gamma^i \mathrm{lr}_{base} - \mathrm{lr}_{min})
            \left(1 - t_c^k / T_i^k\right)^{p}

    with :math:`p` = ``power``; cycles, warmup and noise as in
    :func:`jaxopt_timm.scheduler.cosine`.

    Args:
        base_lr: peak lr.
        t_initial: length of the first cycle, > 0.
        power: polynomial power :math:`p`, >= 0.
        lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay: as for :func:`jaxopt_timm.scheduler.cosine`.
        warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs: as for :func:`jaxopt_timm.scheduler.cosine`.
        noise_range_t, noise_pct, noise_std, noise_seed, noise_type: as for :func:`jaxopt_timm.scheduler.cosine`.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.poly(0.1, t_initial=100, power=2.0)
        >>> round(float(sched(50)), 6)
        0.025

    Note:
        ``create_scheduler_v2(sched='poly')`` passes its ``decay_rate`` as
        ``power`` (timm's overloading, mirrored in the factory).
    """
    check_range('base_lr', base_lr, 0.0)
    check_range('power', power, 0.0)
    validate_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay)
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
    t_initial, cycle_limit = int(t_initial), int(cycle_limit)
    lr_min, k, power = float(lr_min), float(k_decay), float(power)
    position = cycles(t_initial, float(cycle_mul), float(cycle_decay), cycle_limit, frame.base_lr)

    def decayed(t):
        p = position(t)
        y = jnp.maximum(remaining_power(p.rem, p.cur, p.length, k), 0.0)
        return jnp.where(
            p.active, lr_min + (p.lr_max - jnp.float32(lr_min)) * jnp.power(y, jnp.float32(power)), jnp.float32(lr_min)
        )

    length = cycle_length(t_initial, cycle_mul, cycle_limit, frame.warmup_t, warmup_prefix)
    return frame.schedule('poly', decayed, length)
