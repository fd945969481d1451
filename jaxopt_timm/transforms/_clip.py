"""Gradient clipping in timm's own math: Lamb's global norm, and ``timm.utils.dispatch_clip_grad``'s three modes.

* :func:`clip_by_global_norm_ratio`: timm Lamb's ``max_grad_norm`` (and the factory's clip), in its rounding;
* :func:`clip_grad_norm`, :func:`clip_grad_value`: torch's ``clip_grad_norm_`` / ``clip_grad_value_``, which
  timm's train.py calls for ``--clip-mode norm|value`` (optax's ``clip_by_global_norm`` has no ``+1e-6`` and
  only the 2-norm; ``optax.clip`` is the same as the value mode);
* :func:`adaptive_clip_grad`: timm's AGC: one unit per *output* channel (every other dim reduced; dim 0 in
  torch layouts, the last axis in Flax ones) and any p-norm. ``optax.adaptive_grad_clip`` guesses its units
  from the rank (Flax-like for 2-d and 4-d kernels, not for 3-d ones or torch layouts) and has only the 2-norm.

:func:`jaxopt_timm.dispatch_clip_grad` picks one by timm's mode names.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from ._layout import torch_axes
from ._tree import upcast

__all__ = [
    'global_norm_divisor',
    'clip_by_global_norm_ratio',
    'vector_norm',
    'total_grad_norm',
    'clip_grad_norm',
    'clip_grad_value',
    'unitwise_norm',
    'adaptive_clip_grad',
]


def global_norm_divisor(updates: Any, max_norm: float) -> jax.Array:
    """``max(1, ||g||_global / max_norm)`` over every leaf, in float32."""
    # one reduction over the stacked per-leaf sums: a Python sum() of 2,000 scalars is a chain of adds that XLA's
    # fusion pass merges one by one (its compile time grows with the square of the leaf count)
    sq = jnp.sum(
        jax.lax.optimization_barrier(
            jnp.stack([jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(updates)])
        )
    )
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


# ---------------------------------------------------------------------------------------------------------------
# timm.utils.dispatch_clip_grad's three modes: torch's clip_grad_norm_ / clip_grad_value_ and timm's AGC.
# The numbers are taken in (at least) float32 and each result is cast back to the gradient's dtype; torch takes a
# bfloat16 leaf's norm in bfloat16, one rounding more (the float32 parity tests are unaffected).
# ---------------------------------------------------------------------------------------------------------------


def vector_norm(
    x: jax.Array, norm_type: float, axis: Optional[Tuple[int, ...]] = None, keepdims: bool = False
) -> jax.Array:
    """``torch.linalg.vector_norm(x, norm_type, dim=axis, keepdim=keepdims)``: the p-norm of ``|x|`` (``inf``: its
    max); complex entries count by their modulus, as in torch. A leaf with no elements has norm 0."""
    a = jnp.abs(upcast(x))
    if math.isinf(norm_type):
        return jnp.max(a, axis=axis, keepdims=keepdims, initial=0.0)
    if norm_type == 1.0:
        return jnp.sum(a, axis=axis, keepdims=keepdims)
    if norm_type == 2.0:
        return jnp.sqrt(jnp.sum(a * a, axis=axis, keepdims=keepdims))
    return jnp.sum(a**norm_type, axis=axis, keepdims=keepdims) ** (1.0 / norm_type)


def total_grad_norm(updates: Any, norm_type: float = 2.0) -> jax.Array:
    """torch's ``get_total_norm``: the ``norm_type`` norm of the per-leaf norms (two stages, as torch rounds)."""
    norms = [vector_norm(x, norm_type) for x in jax.tree.leaves(updates)]
    if not norms:
        return jnp.zeros([], jnp.float32)
    stacked = jnp.stack([n.astype(jnp.result_type(*norms)) for n in norms])
    return vector_norm(stacked, norm_type)


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_``: every leaf times ``min(max_norm / (total + 1e-6), 1)``.

    ``total`` is the ``norm_type`` norm over all leaves at once (``inf``: the largest ``|g|``). The coefficient is
    clamped, not branched on: an inactive clip still multiplies by exactly 1. A NaN or Inf in any gradient makes
    the total non-finite and every leaf NaN (torch's ``error_if_nonfinite=False``).
    """

    def update_fn(updates, state, params=None):
        del params
        if not jax.tree.leaves(updates):
            return updates, state
        total = total_grad_norm(updates, norm_type)
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _clamp(g: jax.Array, clip_value: float) -> jax.Array:
    if jnp.iscomplexobj(g):  # torch's clamp has no complex kernel: clamp the parts, as on a view_as_real
        return jax.lax.complex(jnp.clip(g.real, -clip_value, clip_value), jnp.clip(g.imag, -clip_value, clip_value))
    return jnp.clip(g, -clip_value, clip_value)


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_value_``: every gradient entry clamped to ``[-clip_value, clip_value]``
    (NaN stays NaN)."""

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: _clamp(g, clip_value), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def unitwise_norm(x: jax.Array, norm_type: float = 2.0, layout: str = 'torch') -> jax.Array:
    """timm's ``agc.unitwise_norm``: one norm per output unit, over every other dim (kept, for broadcasting).

    The output dim is torch's dim 0 (Linear ``(out, in)``, conv ``(O, I, *k)``); for ``layout='flax'`` it is the
    last axis (Dense ``(in, out)``, conv ``(*k, I, O)``). A 0-d or 1-d leaf (bias, norm scale) is one unit: its
    whole norm, a scalar.
    """
    if x.ndim <= 1:
        return vector_norm(x, norm_type)
    out_axis = torch_axes(x.ndim, layout)[0]
    return vector_norm(x, norm_type, axis=tuple(a for a in range(x.ndim) if a != out_axis), keepdims=True)


def _agc_leaf(g: jax.Array, p: jax.Array, clip_factor: float, eps: float, norm_type: float, layout: str) -> jax.Array:
    max_norm = jnp.maximum(unitwise_norm(p, norm_type, layout), eps) * clip_factor
    grad_norm = unitwise_norm(g, norm_type, layout)
    clipped = upcast(g) * (max_norm / jnp.maximum(grad_norm, 1e-6))
    # torch.where, not min(1, ratio): a unit whose norm equals max_norm takes the scaled branch
    return jnp.where(grad_norm < max_norm, g, clipped.astype(g.dtype))


def adaptive_clip_grad(
    clip_factor: float, eps: float = 1e-3, norm_type: float = 2.0, layout: str = 'torch'
) -> optax.GradientTransformation:
    """timm's ``adaptive_clip_grad`` (AGC, Brock et al. 2021): per output unit,
    ``g <- g * max_norm / max(|g|, 1e-6)`` where ``|g| >= max_norm = clip_factor * max(|p|, eps)``.

    Needs the params: ``update(grads, state, params)``; calling it without them is a ``ValueError``.
    Unlike ``optax.adaptive_grad_clip`` the unit is timm's (every dim but the output one, in ``layout``), the
    norm is any p-norm, and a 1-d leaf is one unit.
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(
                'adaptive_clip_grad (clip mode "agc") scales each gradient by its parameter\'s norm: '
                'call update(grads, state, params) with the params'
            )
        return jax.tree.map(lambda g, p: _agc_leaf(g, p, clip_factor, eps, norm_type, layout), updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
