"""Reduce-on-plateau as a pure state machine: timm's ``PlateauLRScheduler``.

timm wraps ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (relative threshold)
and adds a linear warmup and lr noise. The metric makes it stateful, so here it
is ``init() -> state`` and ``step(state, epoch, metric) -> (state, lr)`` with a
pytree state that checkpoints with the training state.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from .._validate import check_choice, check_range
from ._core import INT32_MAX, as_step
from ._noise import NoiseRange, noise_fn
from ._warmup import validate_warmup, warmup_slope

__all__ = ['plateau', 'PlateauSchedule', 'PlateauState']


class PlateauState(NamedTuple):
    """State of :class:`PlateauSchedule` (an ordinary pytree of scalars).

    Attributes:
        lr: the scheduled lr without noise (timm restores it before each step).
        best: best metric so far (``inf`` for 'min', ``-inf`` for 'max' initially).
        num_bad_epochs: epochs since the last improvement.
        cooldown_counter: epochs left in the cooldown after a reduction.
        last_epoch: number of metric steps taken after warmup (torch's ``last_epoch``).
    """

    lr: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    last_epoch: jax.Array


PLATEAU_MODES = ('min', 'max')


def _validate_plateau(base_lr, decay_rate, patience_t, threshold, cooldown_t, warmup_t, warmup_lr_init, lr_min, mode):
    check_range('base_lr', base_lr, 0.0)
    check_range('decay_rate', decay_rate, 0.0, 1.0, hi_open=True)
    check_range('patience_t', patience_t, 0, INT32_MAX, integer=True)
    check_range('threshold', threshold, 0.0)
    check_range('cooldown_t', cooldown_t, 0, INT32_MAX, integer=True)
    validate_warmup(warmup_t, warmup_lr_init)
    check_range('lr_min', lr_min, 0.0)
    check_choice('mode', mode, PLATEAU_MODES)


def _scalar_metric(metric: Any) -> jax.Array:
    """The metric as a float32 scalar; anything else is refused (a vector would make the lr a vector)."""
    expected = 'expected a real number (a Python float or a 0-d array)'
    if isinstance(metric, (str, bytes, bool)):
        raise ValueError(f'Invalid metric: {metric!r}, {expected}')
    try:
        value = jnp.asarray(metric)
    except TypeError:
        raise ValueError(f'Invalid metric: {metric!r}, {expected}') from None
    real = jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)
    if value.shape != () or not real:
        raise ValueError(
            f'Invalid metric: shape {value.shape} dtype {value.dtype}, expected a real scalar (one '
            f'number per step, as timm\'s PlateauLRScheduler.step(epoch, metric))'
        )
    return value.astype(jnp.float32)


class PlateauSchedule:
    """A reduce-on-plateau lr state machine; build it with :func:`plateau` (the arguments are checked here too)."""

    __slots__ = (
        'base_lr',
        'decay_rate',
        'patience_t',
        'threshold',
        'cooldown_t',
        'warmup_t',
        'warmup_lr_init',
        'lr_min',
        'mode',
        '_noise',
        '_warmup_step',
        'name',
        '__weakref__',
    )

    def __init__(
        self, base_lr, decay_rate, patience_t, threshold, cooldown_t, warmup_t, warmup_lr_init, lr_min, mode, noise
    ):
        _validate_plateau(
            base_lr, decay_rate, patience_t, threshold, cooldown_t, warmup_t, warmup_lr_init, lr_min, mode
        )
        if noise is not None and not callable(noise):
            raise ValueError(f'Invalid noise: {noise!r}, expected None or a function from noise_fn')
        self.base_lr = float(base_lr)
        self.decay_rate = float(decay_rate)
        self.patience_t = int(patience_t)
        self.threshold = float(threshold)
        self.cooldown_t = int(cooldown_t)
        self.warmup_t = int(warmup_t)
        self.warmup_lr_init = float(warmup_lr_init)
        self.lr_min = float(lr_min)
        self.mode = mode
        self._noise = noise
        # timm's warmup_steps is [1, ...] without warmup, see step()
        self._warmup_step = warmup_slope(self.base_lr, self.warmup_lr_init, self.warmup_t)
        self.name = 'plateau'

    def init(self) -> PlateauState:
        """The state before any ``step``: ``lr`` is ``warmup_lr_init`` with a warmup, else ``base_lr``."""
        lr = self.warmup_lr_init if self.warmup_t else self.base_lr
        return PlateauState(
            lr=jnp.asarray(lr, jnp.float32),
            best=jnp.asarray(math.inf if self.mode == 'min' else -math.inf, jnp.float32),
            num_bad_epochs=jnp.zeros((), jnp.int32),
            cooldown_counter=jnp.zeros((), jnp.int32),
            last_epoch=jnp.zeros((), jnp.int32),
        )

    def step(self, state: PlateauState, epoch: Any, metric: Any = None) -> Tuple[PlateauState, jax.Array]:
        """timm's ``PlateauLRScheduler.step(epoch, metric)``: returns the new state and the lr to use.

        ``metric=None`` (a Python None) only advances warmup and noise, as in
        timm. Jittable; ``epoch`` and ``metric`` may be traced.
        """
        epoch = as_step(epoch)
        in_warmup = epoch <= self.warmup_t
        warm_lr = jnp.float32(self.warmup_lr_init) + epoch.astype(jnp.float32) * jnp.float32(self._warmup_step)

        lr, best, bad, cooldown, last = state
        if metric is not None:
            current = _scalar_metric(metric)
            if self.mode == 'min':
                better = current < best * jnp.float32(1.0 - self.threshold)
            else:
                better = current > best * jnp.float32(self.threshold + 1.0)
            best_n = jnp.where(better, current, best)
            bad_n = jnp.where(better, 0, bad + 1)
            in_cooldown = cooldown > 0
            cooldown_n = jnp.where(in_cooldown, cooldown - 1, cooldown)
            bad_n = jnp.where(in_cooldown, 0, bad_n)
            reduce = bad_n > self.patience_t
            new_lr = jnp.maximum(lr * jnp.float32(self.decay_rate), jnp.float32(self.lr_min))
            lr_n = jnp.where(reduce & (lr - new_lr > jnp.float32(1e-8)), new_lr, lr)
            cooldown_n = jnp.where(reduce, self.cooldown_t, cooldown_n)
            bad_n = jnp.where(reduce, 0, bad_n)
            last_n = jnp.minimum(last, INT32_MAX - 1) + 1
        else:
            best_n, bad_n, cooldown_n, lr_n, last_n = best, bad, cooldown, lr, last

        def keep_in_warmup(old, new):
            return jnp.where(in_warmup, old, new)

        new_state = PlateauState(
            lr=jnp.where(in_warmup, warm_lr, lr_n),
            best=keep_in_warmup(best, best_n),
            num_bad_epochs=keep_in_warmup(bad, bad_n).astype(jnp.int32),
            cooldown_counter=keep_in_warmup(cooldown, cooldown_n).astype(jnp.int32),
            last_epoch=keep_in_warmup(last, last_n).astype(jnp.int32),
        )
        out = new_state.lr
        if self._noise is not None:
            out = jnp.where(in_warmup, out, self._noise(out, epoch))
        return new_state, out

    def __repr__(self) -> str:
        return f'PlateauSchedule(base_lr={self.base_lr!r}, mode={self.mode!r}, patience_t={self.patience_t})'


def plateau(
    base_lr: float,
    decay_rate: float = 0.1,
    patience_t: int = 10,
    threshold: float = 1e-4,
    cooldown_t: int = 0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    lr_min: float = 0.0,
    mode: str = 'max',
    noise_range_t: NoiseRange = None,
    noise_type: str = 'normal',
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = None,
) -> PlateauSchedule:
    r"""timm's ``PlateauLRScheduler`` (torch's ``ReduceLROnPlateau`` + warmup + noise) as a state machine.

    Each ``step(state, epoch, metric)``:

    * ``epoch <= warmup_t``: ``lr = warmup_lr_init + epoch (base_lr - warmup_lr_init) / warmup_t``; the metric
      is ignored.
    * otherwise the metric improves when ``metric < best (1 - threshold)``
      ('min') or ``metric > best (1 + threshold)`` ('max'); after more than
      ``patience_t`` epochs without improvement (not counting ``cooldown_t``
      epochs after a reduction) ``lr = max(lr * decay_rate, lr_min)`` (if that
      lowers it by more than 1e-8).
    * inside ``noise_range_t`` the returned lr is ``lr (1 + n(epoch))``; the
      state keeps the lr without noise.

    Args:
        base_lr: initial lr.
        decay_rate: reduction factor, in [0, 1).
        patience_t: epochs without improvement tolerated.
        threshold: relative improvement threshold.
        cooldown_t: epochs to wait after a reduction.
        warmup_t, warmup_lr_init: linear warmup over epochs.
        lr_min: lr floor.
        mode: 'max' (accuracy-like metric) or 'min' (loss-like).
        noise_range_t, noise_type, noise_pct, noise_std, noise_seed: lr noise (seed None is 42).

    Example:
        >>> import jax, jaxopt_timm as jt
        >>> sched = jt.scheduler.plateau(0.1, patience_t=1, mode='min')
        >>> state = sched.init()
        >>> step = jax.jit(sched.step)
        >>> for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7], start=1):
        ...     state, lr = step(state, epoch, loss)
        >>> round(float(lr), 6)
        0.01

    Note:
        timm quirk mirrored: without warmup, ``step(0, ...)`` sets the lr to
        ``warmup_lr_init`` (timm's ``epoch <= warmup_t`` branch with a unit
        warmup slope); timm's training loop never steps epoch 0.
    """
    _validate_plateau(base_lr, decay_rate, patience_t, threshold, cooldown_t, warmup_t, warmup_lr_init, lr_min, mode)
    noise = noise_fn(noise_range_t, noise_type, noise_pct, noise_std, noise_seed)
    return PlateauSchedule(
        base_lr, decay_rate, patience_t, threshold, cooldown_t, warmup_t, warmup_lr_init, lr_min, mode, noise
    )
