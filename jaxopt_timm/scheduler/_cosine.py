"""Cosine annealing with warm restarts: timm's ``CosineLRScheduler``.

Reference: Loshchilov & Hutter, 2016, "SGDR: Stochastic Gradient Descent with
Warm Restarts" (https://arxiv.org/abs/1608.03983); k-decay from Zhang & Li,
2020, "k-decay: A New Method For Learning Rate Schedule"
(https://arxiv.org/abs/2004.05909).
"""

from __future__ import annotations

import math
from typing import Optional

import jax.numpy as jnp

from .._validate import check_range
from ._core import Schedule, remaining_power
from ._cycles import cycle_length, cycles, validate_cycles
from ._noise import NoiseRange
from ._warmup import WarmupAndNoise

__all__ = ['cosine']


def cosine(
    base_lr: float,
    t_initial: int,
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
    r"""timm's ``CosineLRScheduler`` as a pure function ``schedule(t) -> lr``.

    In cycle :math:`i` (length :math:`T_i = m^i T`, position :math:`t_c`):

    .. math::
        \mathrm{lr}(t) = \mathrm{lr}_{min} + \tfrac12 (\gamma^i \mathrm{lr}_{base} - \mathrm{lr}_{min})
            \left(1 + \cos\left(\pi\, t_c^k / T_i^k\right)\right)

    with :math:`m` = ``cycle_mul``, :math:`\gamma` = ``cycle_decay``,
    :math:`k` = ``k_decay``; ``lr_min`` once ``i >= cycle_limit``. For
    ``t < warmup_t`` the lr is ``warmup_lr_init + t (base_lr - warmup_lr_init) / warmup_t``;
    ``warmup_prefix`` shifts the cosine by ``warmup_t``. Noise (see
    :func:`jaxopt_timm.scheduler.noise_fn`) multiplies by ``1 + n(t)`` inside
    ``noise_range_t``.

    ``t`` is whatever timm's scheduler is stepped with: the epoch for
    ``step(epoch)`` or the update count for ``step_update(num_updates)``
    (``t_in_epochs`` is accepted for signature parity and only recorded).
    ``schedule(t)`` equals ``optimizer.param_groups[0]['lr']`` after timm's
    ``step(t)`` / ``step_update(t)``.

    Args:
        base_lr: peak lr (timm reads it from the optimizer).
        t_initial: length of the first cycle, > 0.
        lr_min: floor of the annealing, >= 0.
        cycle_mul: cycle length multiplier.
        cycle_decay: peak lr multiplier per cycle.
        cycle_limit: number of cycles before holding ``lr_min``, >= 1 (timm's 0, ``lr_min`` throughout, is
            rejected as ambiguous: older timm read it as no limit).
        warmup_t: linear warmup length.
        warmup_lr_init: lr at ``t = 0`` of the warmup.
        warmup_prefix: start the cosine after the warmup instead of under it.
        t_in_epochs: recorded only.
        noise_range_t: ``None``, a start step, or a ``(start, end)`` pair.
        noise_pct: noise limit.
        noise_std: noise standard deviation (normal noise).
        noise_seed: noise seed.
        k_decay: k-decay exponent, > 0.
        noise_type: 'normal' (truncated) or 'uniform'.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.cosine(0.1, t_initial=100, warmup_t=5, warmup_lr_init=1e-4, warmup_prefix=True)
        >>> [round(float(sched(t)), 6) for t in (0, 5, 55, 105)]
        [0.0001, 0.1, 0.05, 0.0]

    Note:
        With ``cycle_mul != 1`` the cycle index is timm's float64
        ``floor(log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))``,
        tabulated once per integer step, so a boundary that timm's rounding
        puts in the previous cycle is put there here too. With
        ``cycle_mul < 1`` timm raises past the end of the series
        (``t >= t_initial / (1 - cycle_mul)``); here the lr is ``lr_min``.
    """
    check_range('base_lr', base_lr, 0.0)
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
    lr_min, k = float(lr_min), float(k_decay)
    position = cycles(t_initial, float(cycle_mul), float(cycle_decay), cycle_limit, frame.base_lr)
    half_pi = math.pi / 2

    def decayed(t):
        p = position(t)
        # 1 + cos(pi x) == 2 sin^2(pi (1 - x) / 2): no cancellation at the end of a cycle
        s = jnp.sin(jnp.float32(half_pi) * remaining_power(p.rem, p.cur, p.length, k))
        return jnp.where(p.active, lr_min + (p.lr_max - jnp.float32(lr_min)) * (s * s), jnp.float32(lr_min))

    length = cycle_length(t_initial, cycle_mul, cycle_limit, frame.warmup_t, warmup_prefix)
    return frame.schedule('cosine', decayed, length)
