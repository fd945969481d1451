"""Multi-step decay: timm's ``MultiStepLRScheduler`` (``lr * decay_rate ** #milestones passed``)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from .._validate import check_range
from ._core import INT32_MAX, Schedule
from ._warmup import WarmupAndNoise

__all__ = ['multistep', 'validate_milestones']


def validate_milestones(name: str, milestones: Any) -> None:
    """A non-empty sequence of finite, non-negative, non-decreasing milestones."""
    if not isinstance(milestones, (list, tuple, np.ndarray)) or len(milestones) == 0:
        raise ValueError(
            f'Invalid {name}: {milestones!r}, expected a non-empty sequence of non-decreasing milestones '
            '(a schedule without milestones is step or constant)'
        )
    for j, m in enumerate(milestones):
        check_range(f'{name}[{j}]', m, 0.0)
    if any(b < a for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f'Invalid {name}: {list(milestones)!r}, expected non-decreasing milestones')


def multistep(
    base_lr: float,
    decay_t: Sequence[float],
    decay_rate: float = 1.0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = True,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = 42,
    *,
    noise_type: str = 'normal',
) -> Schedule:
    r"""timm's ``MultiStepLRScheduler`` as a pure function ``schedule(t) -> lr``.

    .. math::
        \mathrm{lr}(t) = \mathrm{lr}_{base} \cdot r^{\#\{j : m_j \le t' + 1\}}

    with :math:`m_j` the sorted milestones ``decay_t``, :math:`r` =
    ``decay_rate`` and :math:`t' = t - ` ``warmup_t`` when ``warmup_prefix``;
    linear warmup and noise as in :func:`jaxopt_timm.scheduler.cosine`.

    Args:
        base_lr: initial lr.
        decay_t: milestones, non-empty, non-negative, non-decreasing.
        decay_rate: multiplier per milestone passed, >= 0.
        warmup_t, warmup_lr_init, warmup_prefix: linear warmup.
        t_in_epochs: recorded only.
        noise_range_t, noise_pct, noise_std, noise_seed, noise_type: lr noise.

    Example:
        >>> import jaxopt_timm as jt
        >>> sched = jt.scheduler.multistep(0.1, decay_t=[10, 20], decay_rate=0.5)
        >>> [round(float(sched(t)), 6) for t in (8, 9, 19)]  # milestone 10 applies at t = 9
        [0.1, 0.05, 0.025]

    Note:
        timm quirk mirrored: the count is ``bisect_right(decay_t, t + 1)``, so
        milestone ``m`` takes effect at ``t = m - 1`` (one step earlier than
        ``torch.optim.lr_scheduler.MultiStepLR``). timm assumes sorted
        milestones without checking; here unsorted (or no) milestones raise ``ValueError``.
    """
    check_range('base_lr', base_lr, 0.0)
    validate_milestones('decay_t', decay_t)
    check_range('decay_rate', decay_rate, 0.0)  # a negative rate would flip the lr's sign at every milestone
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
    # m <= t + 1  <=>  t >= ceil(m) - 1 for integer t (no t + 1 overflow at 2**31 - 1)
    thresholds = [max(math.ceil(float(m)) - 1, -1) for m in decay_t if math.ceil(float(m)) - 1 <= INT32_MAX]
    thr = jnp.asarray(np.asarray(thresholds or [0], np.int64).astype(np.int32))
    n = len(thresholds)
    values = jnp.asarray(np.asarray([base_lr * float(decay_rate) ** c for c in range(n + 1)], np.float32))

    def decayed(t):
        c = jnp.searchsorted(thr, t, side='right') if n else jnp.zeros(jnp.shape(t), jnp.int32)
        return values[c]

    return frame.schedule('multistep', decayed)
