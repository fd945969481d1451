"""timm's global-norm gradient clipping in its own rounding (Lamb's ``max_grad_norm``, the factory's clip)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ['global_norm_divisor', 'clip_by_global_norm_ratio']


def global_norm_divisor(updates: Any, max_norm: float) -> jax.Array:
    """``max(1, ||g||_global / max_norm)`` over every leaf, in float32."""
    # one reduction over the stacked per-leaf sums: a Python sum() of 2,000 scalars is a chain of adds that XLA's
    # fusion pass merges one by one (its compile time grows with the square of the leaf count)
    sq = jnp.sum(jax.lax.optimization_barrier(
        jnp.stack([jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(updates)])))
    return jnp.maximum(jnp.sqrt(sq) / max_norm, 1.0)


def clip_by_global_norm_ratio(max_norm: float) -> optax.GradientTransformation:
    """timm Lamb's global clipping: ``g <- g / max(1, ||g||_global / max_norm)`` over *all* leaves at once.

    Same math as ``optax.clip_by_global_norm`` (which multiplies by
    ``max_norm / norm``); written in timm's form so the rounding follows it.
    The norm is taken over every leaf, not per parameter group.
    """

    def update_fn(updates, state, params=None):
        del params
        if not jax.tree.leaves(updates):
            return updates, state
        divisor = global_norm_divisor(updates, max_norm)
        updates = jax.tree.map(lambda g: g / divisor.astype(g.dtype), updates)
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
