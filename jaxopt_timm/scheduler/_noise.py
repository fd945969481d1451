"""timm's lr noise: ``lr (1 + n(t))`` inside a step range, drawn as a pure function of ``(seed, t)``."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union, cast

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_choice, check_range
from ._core import INT32_MAX

__all__ = ['NoiseRange', 'NOISE_TYPES', 'noise_fn', 'with_noise', 'validate_noise', 'validate_noise_range']

_F32 = jnp.float32

NoiseRange = Union[None, float, int, Sequence[float]]
NOISE_TYPES = ('normal', 'uniform')


def validate_noise_range(name: str, noise_range: Any, lengths: Sequence[int] = (2,)) -> None:
    """``None``, a finite start, or a ``(start, end)`` pair with ``start <= end`` (sequences of ``lengths``)."""
    if noise_range is None:
        return
    if isinstance(noise_range, (list, tuple)):
        if len(noise_range) not in lengths:
            raise ValueError(f'Invalid {name}: {noise_range!r}, expected None, a start step, or a (start, end) pair')
        for j, v in enumerate(noise_range):
            check_range(f'{name}[{j}]', v)
        if len(noise_range) == 2 and noise_range[1] < noise_range[0]:
            raise ValueError(f'Invalid {name}: {noise_range!r}, expected a (start, end) pair with start <= end')
    else:
        check_range(name, noise_range)


def validate_noise(noise_range_t: NoiseRange, noise_type: str, noise_pct: float, noise_std: float, noise_seed) -> None:
    """timm's noise arguments, stricter where timm would misread them or loop forever (see the comments)."""
    validate_noise_range('noise_range_t', noise_range_t)
    # timm treats any noise_type but 'normal' as uniform; a misspelt 'normal' is rejected here
    check_choice('noise_type', noise_type, NOISE_TYPES)
    check_range('noise_std', noise_std, 0.0)
    if noise_type == 'normal' and noise_range_t is not None and noise_std > 0:
        # timm redraws until |n| < noise_pct: a non-positive limit would never return
        check_range('noise_pct', noise_pct, 0.0, lo_open=True)
    else:
        check_range('noise_pct', noise_pct, 0.0)
    if noise_seed is not None and (isinstance(noise_seed, bool) or not isinstance(noise_seed, (int, np.integer))):
        raise ValueError(f'Invalid noise_seed: {noise_seed!r}, expected an integer')


def _first_int_at_or_above(x: float) -> int:
    if x == math.inf:
        return INT32_MAX + 1
    if x == -math.inf:
        return 0
    return max(math.ceil(x), 0)


def noise_fn(
    noise_range_t: NoiseRange,
    noise_type: str = 'normal',
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: Optional[int] = 42,
) -> Optional[Callable[[jax.Array, jax.Array], jax.Array]]:
    """``(lr, t) -> lr + lr * n(t)`` inside the noise range, else ``lr``; None without a range.

    timm's range test is ``lo <= t < hi`` for a pair, ``t >= lo`` for a number.
    The noise ``n(t)`` is drawn from ``fold_in(key(seed), t)``, so it is a
    pure function of ``(seed, t)``. Its law is timm's: for ``'normal'`` a
    ``N(0, noise_std**2)`` sample redrawn until ``|n| < noise_pct``, which is
    exactly a normal truncated to ``(-noise_pct, noise_pct)`` (drawn here
    directly, without a loop); ``'uniform'`` is uniform on
    ``(-noise_pct, noise_pct)`` (timm takes any other string for uniform;
    here it raises ``ValueError``). torch's generator is not reproduced bit
    for bit, only the distribution.
    """
    validate_noise(noise_range_t, noise_type, noise_pct, noise_std, noise_seed)
    if noise_range_t is None:
        return None
    if isinstance(noise_range_t, (list, tuple)):
        lo = _first_int_at_or_above(float(noise_range_t[0]))
        hi_last = _first_int_at_or_above(float(noise_range_t[1])) - 1
    else:  # validate_noise let only a number through here
        lo = _first_int_at_or_above(float(cast(float, noise_range_t)))
        hi_last = INT32_MAX
    hi_last = min(hi_last, INT32_MAX)
    if lo > INT32_MAX or hi_last < lo:
        return None
    seed = 42 if noise_seed is None else int(noise_seed)
    pct, std = float(noise_pct), float(noise_std)
    normal = noise_type == 'normal'

    def draw(t):
        key = jax.random.fold_in(jax.random.key(seed & 0xFFFFFFFF), t)
        if normal:
            if std == 0:
                return jnp.zeros((), _F32)
            return jnp.float32(std) * jax.random.truncated_normal(key, -pct / std, pct / std, (), _F32)
        return jax.random.uniform(key, (), _F32, -pct, pct)

    def apply(lr, t):
        n = jnp.vectorize(draw)(t)
        inside = (t >= lo) & (t <= hi_last)
        return jnp.where(inside, lr + lr * n, lr)

    return apply


def with_noise(fn, noise):
    """Wrap ``fn(t)`` with ``noise`` (from :func:`noise_fn`), as timm's ``_add_noise`` after ``_get_lr``."""
    if noise is None:
        return fn
    return lambda t: noise(fn(t), t)
