"""Warmup-Stable-Decay: timm's ``WSDLRScheduler``.

References: Hu et al., 2024, "MiniCPM" (https://arxiv.org/abs/2404.06395);
Hägele et al., 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations" (1-sqrt cooldown, https://arxiv.org/abs/2405.18392);
Zhai et al., 2021, "Scaling Vision Transformers" (rsqrt + linear cooldown,
https://arxiv.org/abs/2106.04560); Shen et al., 2024, "Power Scheduler"
(https://arxiv.org/abs/2408.13359).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import jax.numpy as jnp

from .._validate import check_choice, check_range
from ._core import INT32_MAX, Schedule
from ._noise import NoiseRange
from ._warmup import WarmupAndNoise

__all__ = ['wsd', 'STABLE_FNS', 'DECAY_FNS']

STABLE_FNS = ('constant', 'rsqrt', 'power')
DECAY_FNS = ('linear', '1-sqrt', 'cosine', 'power', 'exp')


def _decay_factor(decay_fn, y, frac, decay_power, decay_ratio):
    """Decay factor from the remaining fraction ``y = 1 - frac`` (and ``frac``), without cancellation near 0."""
    if callable(decay_fn):
        return jnp.asarray(decay_fn(frac), jnp.float32)
    if decay_fn == 'linear':
        return y
    if decay_fn == '1-sqrt':
        return y / (1.0 + jnp.sqrt(frac))  # 1 - sqrt(f) == (1 - f) / (1 + sqrt(f))
    if decay_fn == 'cosine':
        s = jnp.sin(jnp.float32(math.pi / 2) * y)  # (1 + cos(pi f)) / 2 == sin^2(pi (1 - f) / 2)
        return s * s
    if decay_fn == 'power':
        log_f = jnp.where(frac < 0.5, jnp.log(frac), jnp.log1p(-y))
        return -jnp.expm1(jnp.float32(decay_power) * log_f)  # 1 - f ** p
    # exp: (r ** f - r) / (1 - r) == r (r ** -y - 1) / (1 - r)
    r = decay_ratio
    return jnp.float32(r / (1 - r)) * jnp.expm1(jnp.float32(-math.log(r)) * y)


def wsd(
    base_lr: float,
    t_initial: int,
    decay_t: int,
    lr_min: float = 0.0,
    stable_fn: str = 'constant',
    stable_timescale: Optional[float] = None,
    stable_power: float = 0.5,
    decay_fn: Union[str, Callable] = '1-sqrt',
    decay_power: float = 0.5,
    decay_ratio: float = 0.1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    t_in_epochs: bool = True,
    noise_range_t: NoiseRange = None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = 42,
    *,
    noise_type: str = 'normal',
) -> Schedule:
    r"""timm's ``WSDLRScheduler`` as a pure function ``schedule(t) -> lr``.

    After a linear warmup of ``warmup_t`` steps (always a prefix), with
    :math:`t_s = t - ` ``warmup_t`` and the decay progress
    :math:`f = \min(\max(t_s - (T - d), 0) / d, 1)` (:math:`T` = ``t_initial``,
    :math:`d` = ``decay_t``):

    .. math::
        s(t) &= \max(\mathrm{lr}_{base} \cdot \mathrm{stable}(t_s), \mathrm{lr}_{min}) \\
        \mathrm{lr}(t) &= \mathrm{lr}_{min} + (s(t) - \mathrm{lr}_{min}) \cdot \mathrm{decay}(f)

    ``stable``: 'constant' 1, 'rsqrt' :math:`(1 + t_s/\tau)^{-1/2}`, 'power'
    :math:`(1 + t_s/\tau)^{-p_s}` (:math:`\tau` = ``stable_timescale``,
    default ``warmup_t``). ``decay``: 'linear' :math:`1 - f`, '1-sqrt'
    :math:`1 - \sqrt f`, 'cosine' :math:`(1 + \cos \pi f)/2`, 'power'
    :math:`1 - f^{p_d}`, 'exp' :math:`(r^f - r)/(1 - r)`, or a jnp callable
    ``fn(f)``. The schedule spans ``warmup_t + t_initial`` steps, then holds ``lr_min``.

    Args:
        base_lr: peak lr.
        t_initial: stable + decay length, > 0 (integer).
        decay_t: decay length, in (0, t_initial] (integer).
        lr_min: final lr, >= 0.
        stable_fn: 'constant', 'rsqrt' or 'power'.
        stable_timescale: rsqrt / power timescale (> 0), default ``warmup_t``.
        stable_power: exponent of 'power' stable, > 0.
        decay_fn: 'linear', '1-sqrt', 'cosine', 'power', 'exp' or a callable on jnp float32.
        decay_power: exponent of 'power' decay, > 0.
        decay_ratio: 'exp' decay's final ratio, in (0, 1).
        warmup_t, warmup_lr_init: linear warmup.
        t_in_epochs: recorded only.
        noise_range_t, noise_pct, noise_std, noise_seed, noise_type: lr noise.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.wsd(0.1, t_initial=100, decay_t=20, decay_fn='linear')
        >>> [round(float(sched(t)), 6) for t in (0, 80, 90, 100)]
        [0.1, 0.1, 0.05, 0.0]
    """
    check_range('base_lr', base_lr, 0.0)
    check_range('t_initial', t_initial, 0, INT32_MAX, lo_open=True, integer=True)
    check_range('decay_t', decay_t, 0, t_initial, lo_open=True, integer=True)
    check_range('lr_min', lr_min, 0.0)
    check_choice('stable_fn', stable_fn, STABLE_FNS)
    if not callable(decay_fn):
        check_choice('decay_fn', decay_fn, DECAY_FNS)
    check_range('decay_ratio', decay_ratio, 0.0, 1.0, lo_open=True, hi_open=True)
    check_range('decay_power', decay_power, 0.0, lo_open=True)
    check_range('stable_power', stable_power, 0.0, lo_open=True)
    # timm's WSD warmup is always a prefix: the stable phase starts after it
    frame = WarmupAndNoise(
        base_lr,
        warmup_t,
        warmup_lr_init,
        True,
        t_in_epochs,
        noise_range_t,
        noise_type,
        noise_pct,
        noise_std,
        noise_seed,
    )
    if stable_fn != 'constant':
        if stable_timescale is None:
            if not warmup_t:
                raise ValueError(
                    f'Invalid stable_timescale: None, stable_fn={stable_fn!r} defaults it to warmup_t={warmup_t!r}; '
                    'expected a value in (0, inf) (or a warmup)'
                )
            stable_timescale = warmup_t
        check_range('stable_timescale', stable_timescale, 0.0, lo_open=True)
    base_lr, lr_min = frame.base_lr, float(lr_min)
    t_initial, decay_t, warmup_t = int(t_initial), int(decay_t), frame.warmup_t
    power = 0.5 if stable_fn == 'rsqrt' else float(stable_power)
    decay_start = t_initial - decay_t

    def decayed(t_s):
        if stable_fn == 'constant':
            stable = jnp.full(jnp.shape(t_s), base_lr, jnp.float32)
        else:
            u = t_s.astype(jnp.float32) / jnp.float32(stable_timescale)
            stable = jnp.float32(base_lr) * jnp.exp(jnp.float32(-power) * jnp.log1p(u))
        stable = jnp.maximum(stable, jnp.float32(lr_min))
        t_decay = t_s - decay_start
        frac = jnp.clip(t_decay.astype(jnp.float32) / jnp.float32(decay_t), 0.0, 1.0)
        y = jnp.clip((decay_t - t_decay).astype(jnp.float32) / jnp.float32(decay_t), 0.0, 1.0)
        d = _decay_factor(decay_fn, y, frac, decay_power, decay_ratio)
        return jnp.where(t_decay <= 0, stable, lr_min + (stable - jnp.float32(lr_min)) * d)

    return frame.schedule('wsd', decayed, lambda cycles=0: warmup_t + t_initial)
