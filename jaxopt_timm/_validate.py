"""One small validation layer shared by every optimizer, schedule and factory.

Every check raises ``ValueError`` at construction time with the argument's
name, the offending value and the accepted range, so a bad hyperparameter is
reported where it was written instead of as a NaN many steps later.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    'check_range',
    'check_range_tree',
    'check_weight_decay',
    'check_lr',
    'check_betas',
    'check_bool',
    'check_choice',
    'resolve_dtype',
    'is_schedule',
    'check_nesterov',
]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return True
    return False


def _concrete(value: Any) -> Optional[float]:
    """The float value of ``value`` if it is known at construction, else None (a tracer)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return float(value)


def _range_text(lo, hi, lo_open, hi_open) -> str:
    left = '(' if lo_open or lo is None else '['  # infinities are never accepted: an open end
    right = ')' if hi_open or hi is None else ']'
    lo_s = '-inf' if lo is None else f'{lo:g}'
    hi_s = 'inf' if hi is None else f'{hi:g}'
    return f'{left}{lo_s}, {hi_s}{right}'


def check_range(
    name: str,
    value: Any,
    lo: Optional[float] = None,
    hi: Optional[float] = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_none: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number in the given interval.

    Traced values (inside ``inject_hyperparams``) cannot be checked at
    construction and are let through.
    """
    if value is None:
        if allow_none:
            return
        raise ValueError(f'Invalid {name}: None, expected a number in {_range_text(lo, hi, lo_open, hi_open)}')
    if not _is_number(value):
        raise ValueError(
            f'Invalid {name}: {value!r} ({type(value).__name__}), expected a number in '
            f'{_range_text(lo, hi, lo_open, hi_open)}'
        )
    v = _concrete(value)
    if v is None:
        return
    # an infinite or NaN value fails the interval test below (int() of it would raise OverflowError / a bare ValueError)
    if integer and math.isfinite(v) and v != int(v):
        raise ValueError(f'Invalid {name}: {value!r}, expected an integer in {_range_text(lo, hi, lo_open, hi_open)}')
    bad = not math.isfinite(v)
    if lo is not None:
        bad = bad or (v <= lo if lo_open else v < lo)
    if hi is not None:
        bad = bad or (v >= hi if hi_open else v > hi)
    if bad:
        raise ValueError(f'Invalid {name}: {value!r}, expected a value in {_range_text(lo, hi, lo_open, hi_open)}')


def is_schedule(value: Any) -> bool:
    return callable(value)


def check_lr(value: Any, name: str = 'learning_rate') -> None:
    """A learning rate is a float >= 0 or a schedule ``step -> lr``."""
    if is_schedule(value):
        return
    check_range(name, value, 0.0)


def check_betas(betas: Any, num: int = 2, name: str = 'betas', hi_open: bool = True) -> None:
    """Each beta must lie in [0, 1) (timm/torch's range)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != num:
        raise ValueError(f'Invalid {name}: {betas!r}, expected a tuple of {num} numbers, each in [0, 1)')
    for i, b in enumerate(betas):
        check_range(f'{name}[{i}]', b, 0.0, 1.0, hi_open=hi_open)


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f'Invalid {name}: {value!r}, expected True or False')


def check_nesterov(nesterov: Any, momentum: Any, dampening: Any = 0.0) -> None:
    """Nesterov momentum needs ``momentum > 0`` and ``dampening == 0`` (torch's SGD rule).

    ``momentum`` or ``dampening`` traced inside ``inject_hyperparams``' update
    cannot be compared in Python and is let through; the concrete values
    ``inject_hyperparams``' init passes are still checked.
    """
    if not nesterov:
        return
    m, d = _concrete(momentum), _concrete(dampening)
    if (m is not None and not m > 0) or (d is not None and d != 0):
        raise ValueError(
            f'Invalid nesterov: True with momentum={momentum!r}, dampening={dampening!r}; Nesterov momentum '
            'requires momentum in (0, inf) and dampening == 0'
        )


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f'Invalid {name}: {value!r}, expected one of {list(choices)}')


_DTYPE_NAMES = {
    'float32': jnp.float32,
    'fp32': jnp.float32,
    'float': jnp.float32,
    'bfloat16': jnp.bfloat16,
    'bf16': jnp.bfloat16,
    'float16': jnp.float16,
    'fp16': jnp.float16,
    'half': jnp.float16,
    'float64': jnp.float64,
    'fp64': jnp.float64,
    'double': jnp.float64,
}


def resolve_dtype(name: str, value: Any):
    """Accept None, a jnp/numpy dtype, or timm's strings ('bfloat16', 'float32', 'torch.bfloat16', ...)."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.lower().removeprefix('torch.').removeprefix('jnp.')
        if key not in _DTYPE_NAMES:
            raise ValueError(f'Invalid {name}: {value!r}, expected one of {sorted(_DTYPE_NAMES)} or a jnp dtype')
        return jnp.dtype(_DTYPE_NAMES[key])
    try:
        dt = jnp.dtype(value)
    except TypeError as e:
        raise ValueError(f'Invalid {name}: {value!r}, expected a floating dtype') from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f'Invalid {name}: {value!r}, expected a floating dtype')
    return dt


def check_range_tree(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None, **kw) -> None:
    """``check_range`` for a scalar or for every leaf of a per-leaf tree (factory-built param groups)."""
    if _is_number(value) or value is None:
        check_range(name, value, lo, hi, **kw)
        return
    for leaf in jax.tree.leaves(value):
        check_range(name, leaf, lo, hi, **kw)


def check_weight_decay(value: Any, name: str = 'weight_decay') -> None:
    check_range_tree(name, value, 0.0)
