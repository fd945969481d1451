"""Learning rates as timm applies them: a float or a schedule, times a per-group scale.

timm multiplies each param group's lr by its ``lr_scale`` (layer decay) and
several optimizers use that *group* lr non-linearly (decoupled and corrected
weight decay, MADGRAD, RMSpropTF's lr in momentum). These helpers give every
primitive the same per-leaf lr: ``schedule(count) * lr_scale[leaf]``, where
``count`` is the number of updates already applied (optax's convention, equal
to the ``num_updates`` timm's ``step_update`` sees before the update).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union, cast

import jax
import jax.numpy as jnp
import optax

from .._validate import check_range
from ._tree import leaf_values, safe_increment

__all__ = [
    'LearningRate',
    'lr_at',
    'leaf_lrs',
    'resolve_max_lr',
    'ScaleByLearningRateState',
    'scale_by_learning_rate',
    'negate_if',
]

LearningRate = Union[float, jax.Array, Callable[[jax.Array], jax.Array]]


def lr_at(learning_rate: LearningRate, count: jax.Array) -> jax.Array:
    """The (unscaled) lr for the update that follows ``count`` applied updates, as float32."""
    if callable(learning_rate):
        return jnp.asarray(learning_rate(count), dtype=jnp.float32)
    return jnp.asarray(learning_rate, dtype=jnp.float32)


def leaf_lrs(learning_rate: LearningRate, count: jax.Array, lr_scale: Any, like: Any) -> Any:
    """Per-leaf group lr: ``lr_at(learning_rate, count) * lr_scale`` as a tree shaped like ``like``."""
    lr = lr_at(learning_rate, count)
    if lr_scale is None:
        return jax.tree.map(lambda _: lr, like)
    return jax.tree.map(lambda _, s: lr * s, like, leaf_values(lr_scale, like))


def resolve_max_lr(learning_rate: LearningRate, max_lr: Optional[float], corrected: bool) -> Optional[float]:
    """Peak lr for corrected weight decay (``lr**2 / max_lr``), following timm's constructor snapshot.

    It is ``max_lr`` when given, the lr itself when it is a float, or the
    ``base_lr`` attribute of a schedule built by this package. Returns None when
    ``corrected`` is False.
    """
    if max_lr is not None and not isinstance(max_lr, jax.core.Tracer):
        # checked even when unused (corrected=False), as every other argument is
        check_range('max_lr', max_lr, 0.0, lo_open=True)
    if not corrected:
        return None
    if max_lr is None:
        if callable(learning_rate):
            max_lr = getattr(learning_rate, 'base_lr', None)
            if max_lr is None:
                raise ValueError(
                    'Invalid max_lr: None. corrected_weight_decay=True with a schedule needs the peak lr: pass '
                    'max_lr=<peak lr> or use a schedule from jaxopt_timm.scheduler (it carries base_lr); '
                    'expected a value in (0, inf)'
                )
        else:
            max_lr = cast(Any, learning_rate)  # a float, or a traced lr (returned as it is, just below)
    if isinstance(max_lr, jax.core.Tracer):
        return max_lr  # type: ignore[return-value]  # traced under inject_hyperparams: used as a float would be
    max_lr = float(max_lr)
    if not max_lr > 0:
        raise ValueError(
            f'Invalid max_lr: {max_lr!r}. Corrected weight decay (lr**2 / max_lr) needs a positive peak lr; '
            'expected a value in (0, inf)'
        )
    return max_lr


class ScaleByLearningRateState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)


def scale_by_learning_rate(
    learning_rate: LearningRate,
    lr_scale: Any = None,
    *,
    flip_sign: bool = True,
) -> optax.GradientTransformation:
    """Multiply updates by the per-leaf group lr (negated by default): ``u <- -lr(t) * lr_scale * u``.

    Same as ``optax.scale_by_learning_rate`` but with timm's per-group
    ``lr_scale`` tree (layer decay) folded into the one multiply.
    """
    sign = -1.0 if flip_sign else 1.0

    def init_fn(params):
        del params
        return ScaleByLearningRateState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        updates = jax.tree.map(
            lambda u, lr: None if u is None else (sign * lr).astype(u.dtype) * u,
            updates,
            lrs,
            is_leaf=lambda x: x is None,
        )
        return updates, ScaleByLearningRateState(count=safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def negate_if(maximize: bool) -> optax.GradientTransformation:
    """torch's ``maximize``: negate the gradient first (ascend instead of descend); the identity otherwise."""
    return optax.scale(-1.0) if maximize else optax.identity()
