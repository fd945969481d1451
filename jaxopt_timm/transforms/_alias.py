"""What the optimizer aliases share: the Adam family's argument checks and the chain around a direction."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import optax

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ._caution import cautious
from ._lr import negate_if, scale_by_learning_rate
from ._weight_decay import add_decoupled_weight_decay, add_l2_weight_decay

__all__ = ['adam_args', 'decay_chain']


def adam_args(
    learning_rate: Any,
    betas: Any,
    eps: Any,
    weight_decay: Any,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
    *,
    num_betas: int = 2,
    **flags: Any,
) -> Tuple[Any, Any]:
    """Check an Adam-style alias's arguments; return its resolved ``(mu_dtype, nu_dtype)``.

    lr >= 0 (or a schedule), ``num_betas`` betas each in [0, 1), eps >= 0 (``None``: the optimizer has
    none), weight decay >= 0 (float or per-leaf tree), and each keyword flag a bool.
    """
    check_lr(learning_rate)
    check_betas(betas, num=num_betas)
    if eps is not None:
        check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    for name, value in flags.items():
        check_bool(name, value)
    return resolve_dtype('mu_dtype', mu_dtype), resolve_dtype('nu_dtype', nu_dtype)


def decay_chain(
    direction: optax.GradientTransformation,
    learning_rate: Any,
    weight_decay: Any,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    *,
    maximize: bool = False,
    caution: bool = False,
    l2: Optional[bool] = None,
) -> optax.GradientTransformation:
    """``chain(negate_if(maximize), [L2,] direction, scale_by_learning_rate, decoupled decay)``.

    ``caution`` wraps the direction in :func:`cautious`. ``l2=None`` (the AdamW family): decay is
    always decoupled and the chain has no L2 slot. ``l2=True`` / ``False`` (torch's
    ``decoupled_weight_decay`` switch, inverted): the chain keeps a slot for each form and fills the
    one in use (``add_l2_weight_decay`` before the direction, or the decoupled decay after the lr), so
    the state has the same structure either way.
    """
    parts = [negate_if(maximize)]
    if l2 is not None:
        parts.append(add_l2_weight_decay(weight_decay) if l2 else optax.identity())
    parts += [
        cautious(direction) if caution else direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        optax.identity() if l2 else add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
    ]
    return optax.chain(*parts)
