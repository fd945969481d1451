"""Hyperbolic-tangent decay with restarts: timm's ``TanhLRScheduler``.

Reference: Hsueh et al., 2018, "Stochastic Gradient Descent with Hyperbolic-Tangent
Decay on Classification" (https://arxiv.org/abs/1806.01593).
"""

from __future__ import annotations

import math
from typing import Optional

import jax.numpy as jnp

from .._validate import check_range
from ._core import Schedule
from ._cycles import cycle_length, cycles, timm_cycle_index, validate_cycles
from ._noise import NoiseRange
from ._warmup import WarmupAndNoise

__all__ = ['tanh']


def _tanh_lr_float64(t, t_initial, lb, ub, lr_min, cycle_mul, cycle_decay, cycle_limit, base_lr):
    """The post-warmup tanh lr at one step in float64, for the warmup slope (timm evaluates it at ``warmup_t``)."""
    if cycle_mul != 1:
        i = timm_cycle_index(t, t_initial, cycle_mul)
        if i == math.inf:
            return lr_min
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - t_initial * i
    if i >= cycle_limit:
        return lr_min
    tr = t_curr / t_i
    return lr_min + 0.5 * (base_lr * cycle_decay**i - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))


def tanh(
    base_lr: float,
    t_initial: int,
    lb: float = -7.0,
    ub: float = 3.0,
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
    *,
    noise_type: str = 'normal',
) -> Schedule:
    r"""timm's ``TanhLRScheduler`` as a pure function ``schedule(t) -> lr``.

    In cycle :math:`i` with :math:`r = t_c / T_i`:

    .. math::
        \mathrm{lr}(t) = \mathrm{lr}_{min} + \tfrac12 (\gamma^i \mathrm{lr}_{base} - \mathrm{lr}_{min})
            \left(1 - \tanh(lb (1 - r) + ub\, r)\right)

    computed as ``(lr_max - lr_min) / (1 + exp(2 z))`` with
    ``z = ub + (lb - ub)(1 - r)`` so that nothing cancels near ``r = 1``.
    Cycles, warmup and noise as in :func:`jaxopt_timm.scheduler.cosine`.

    Args:
        base_lr: peak lr.
        t_initial: length of the first cycle, > 0.
        lb: lower bound of the tanh argument, < ub.
        ub: upper bound of the tanh argument.
        lr_min, cycle_mul, cycle_decay, cycle_limit: as for :func:`jaxopt_timm.scheduler.cosine`.
        warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs: as for :func:`jaxopt_timm.scheduler.cosine`.
        noise_range_t, noise_pct, noise_std, noise_seed, noise_type: as for :func:`jaxopt_timm.scheduler.cosine`.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.tanh(0.1, t_initial=100)
        >>> round(float(sched(100)), 6)  # past the single cycle: lr_min
        0.0

    Note:
        timm quirk mirrored: without ``warmup_prefix`` the warmup ramps to the
        tanh curve's value at ``warmup_t`` (not to ``base_lr``), i.e. the
        slope is ``(lr(warmup_t) - warmup_lr_init) / warmup_t``. Without a
        warmup, ``schedule(0)`` is ``lr_min + (base_lr - lr_min)(1 - tanh(lb)) / 2``
        (what ``step(0)`` sets), slightly below the ``base_lr`` timm's
        constructor leaves in the optimizer.
    """
    check_range('base_lr', base_lr, 0.0)
    validate_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
    check_range('lb', lb)
    check_range('ub', ub)
    if not lb < ub:
        raise ValueError(f'Invalid lb: {lb!r}, expected a value in (-inf, ub={ub!r})')
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
    base_lr, lr_min, lb, ub = frame.base_lr, float(lr_min), float(lb), float(ub)
    cycle_mul, cycle_decay = float(cycle_mul), float(cycle_decay)
    # timm ramps to the tanh curve's own value at warmup_t unless the curve starts after the warmup
    target = (
        None
        if warmup_prefix or not frame.warmup_t
        else _tanh_lr_float64(frame.warmup_t, t_initial, lb, ub, lr_min, cycle_mul, cycle_decay, cycle_limit, base_lr)
    )
    position = cycles(t_initial, cycle_mul, cycle_decay, cycle_limit, base_lr)
    exp_2ub = math.exp(2 * ub) if 2 * ub < 80 else math.inf

    def decayed(t):
        p = position(t)
        a = jnp.float32(2 * (lb - ub)) * (p.rem / p.length)  # 2 (z - ub), small near the end of a cycle
        if math.isfinite(exp_2ub):
            e = jnp.float32(exp_2ub) * jnp.exp(a)
        else:
            e = jnp.exp(jnp.float32(2 * ub) + a)
        # (1 - tanh(z)) / 2 == 1 / (1 + exp(2 z))
        return jnp.where(p.active, lr_min + (p.lr_max - jnp.float32(lr_min)) / (1.0 + e), jnp.float32(lr_min))

    length = cycle_length(t_initial, cycle_mul, cycle_limit, frame.warmup_t, warmup_prefix)
    return frame.schedule('tanh', decayed, length, warmup_target=target)
