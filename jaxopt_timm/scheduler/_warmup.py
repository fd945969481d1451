"""timm's linear warmup, and the warmup-and-noise wrapping every timm scheduler applies around its own lr.

timm's schedulers share one frame: ``_get_lr`` returns the warmup line while
``t < warmup_t`` (the decay shifted by ``warmup_t`` with ``warmup_prefix``),
and ``_add_noise`` then perturbs the result. :class:`WarmupAndNoise` is that
frame, written once; each scheduler supplies only its post-warmup lr.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from .._validate import check_bool, check_range
from ._core import INT32_MAX, Schedule
from ._noise import NoiseRange, noise_fn, with_noise

__all__ = ['validate_warmup', 'warmup_slope', 'linear_warmup', 'WarmupAndNoise']


def validate_warmup(warmup_t: Any, warmup_lr_init: Any, warmup_prefix: Any = False) -> None:
    """timm's warmup arguments, checked at construction (a bad one would otherwise surface as a NaN lr)."""
    check_range('warmup_t', warmup_t, 0, INT32_MAX, integer=True)
    check_range('warmup_lr_init', warmup_lr_init, 0.0)
    check_bool('warmup_prefix', warmup_prefix)


def warmup_slope(target: float, warmup_lr_init: float, warmup_t: int) -> float:
    """timm's warmup slope ``(target - warmup_lr_init) / warmup_t`` in float64; 1.0 without a warmup.

    The 1.0 is timm's placeholder (``warmup_steps = [1 for _ in base_values]``),
    which only the plateau scheduler's ``epoch <= warmup_t`` branch ever reads.
    """
    return (target - warmup_lr_init) / warmup_t if warmup_t else 1.0


def linear_warmup(
    t: jax.Array,
    warmup_t: int,
    warmup_lr_init: float,
    warmup_step: float,
    after: jax.Array,
) -> jax.Array:
    """timm's warmup: ``warmup_lr_init + t * warmup_step`` while ``t < warmup_t``, else ``after``.

    ``warmup_step`` is computed by the caller in float64, as timm does
    (:func:`warmup_slope`, or tanh's variant of its target).
    """
    if not warmup_t:
        return after
    warm = jnp.float32(warmup_lr_init) + t.astype(jnp.float32) * jnp.float32(warmup_step)
    return jnp.where(t < warmup_t, warm, after)


class WarmupAndNoise:
    """The warmup, ``t_in_epochs`` and noise arguments of a timm scheduler, checked once, and the frame they make.

    Construct it right after the scheduler's own arguments are checked, so a
    bad argument is reported in the same order as before (``base_lr``, the
    scheduler's own, warmup, ``t_in_epochs``, noise); then
    :meth:`schedule` wraps the scheduler's post-warmup lr.

    Attributes:
        base_lr: the peak lr as a float (what the warmup ramps to by default).
        warmup_t: the warmup length as an int.
        warmup_lr_init: the lr at ``t = 0`` of the warmup, as given (kept
            unconverted so that the float64 slope is timm's to the last bit).
        warmup_prefix: whether the decay starts after the warmup instead of under it.
        noise: ``(lr, t) -> lr`` from :func:`noise_fn`, or None without a noise range.
    """

    __slots__ = ('base_lr', 'warmup_t', 'warmup_lr_init', 'warmup_prefix', 'noise')

    def __init__(
        self,
        base_lr: float,
        warmup_t: int,
        warmup_lr_init: float,
        warmup_prefix: bool,
        t_in_epochs: bool,
        noise_range_t: NoiseRange,
        noise_type: str,
        noise_pct: float,
        noise_std: float,
        noise_seed: Optional[int],
    ) -> None:
        validate_warmup(warmup_t, warmup_lr_init, warmup_prefix)
        check_bool('t_in_epochs', t_in_epochs)  # accepted for timm's signature parity; nothing reads it
        self.noise = noise_fn(noise_range_t, noise_type, noise_pct, noise_std, noise_seed)
        self.base_lr = float(base_lr)
        self.warmup_t = int(warmup_t)
        self.warmup_lr_init = warmup_lr_init
        self.warmup_prefix = warmup_prefix

    def schedule(
        self,
        name: str,
        decayed: Callable[[jax.Array], jax.Array],
        cycle_length: Optional[Callable[..., int]] = None,
        warmup_target: Optional[float] = None,
    ) -> Schedule:
        """The :class:`Schedule` ``t -> noise(warmup(t) if t < warmup_t else decayed(t'))``.

        Args:
            name: the schedule's name.
            decayed: the post-warmup lr as a jnp function of the int32 step
                ``t'``: ``t - warmup_t`` with ``warmup_prefix``, else ``t``.
            cycle_length: timm's ``get_cycle_length``, if the scheduler has one.
            warmup_target: the lr the warmup ramps to (float64), default
                ``base_lr`` (tanh without ``warmup_prefix`` ramps to its own curve).
        """
        target = self.base_lr if warmup_target is None else warmup_target
        warmup_t, warmup_lr_init, prefix = self.warmup_t, self.warmup_lr_init, self.warmup_prefix
        slope = warmup_slope(target, warmup_lr_init, warmup_t)

        def lr_at(t):
            after = decayed(t - warmup_t if prefix else t)
            return linear_warmup(t, warmup_t, warmup_lr_init, slope, after)

        return Schedule(with_noise(lr_at, self.noise), self.base_lr, name, cycle_length)
