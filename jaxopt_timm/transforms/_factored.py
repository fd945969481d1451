"""Adafactor's factored second moment, shared by timm's ``Adafactor`` and ``AdafactorBigVision``.

Shazeer & Stern, 2018, "Adafactor" (arXiv:1804.04235): for a matrix, keep EMAs of the row and column
means of :math:`g^2 + \\epsilon` instead of the full second moment and rebuild its inverse root as
:math:`\\mathrm{rsqrt}(R / \\mathrm{mean}(R)) \\cdot \\mathrm{rsqrt}(C)`. The two timm optimizers pick
different axes (timm's leading dims against big_vision's two largest) and multiply the factors into the
gradient in different orders, which the callers keep; the state layout (keepdims row/column statistics,
as timm's), the EMA with torch's ``lerp`` rounding, the rounding of each statistic to its stored dtype and
the RMS update clipping are the same and live here.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from ._math import torch_lerp_rounded_weight

__all__ = ['rms', 'as_stored', 'clip_by_rms', 'second_moment_zeros', 'init_second_moments', 'update_second_moment']

FactoredDims = Optional[Tuple[int, int]]  # (col axis, row axis) of a factored leaf, None for a full second moment


def rms(x: jax.Array) -> jax.Array:
    """Root mean square as timm computes it: ``x.norm(2) / x.numel() ** 0.5`` (the norm, then the division)."""
    return jnp.linalg.norm(x.reshape(-1)) / jnp.sqrt(jnp.asarray(x.size, x.dtype))


def as_stored(x: jax.Array, buffer: jax.Array) -> jax.Array:
    """``x`` (compute dtype) rounded to ``buffer``'s state dtype and back: the step uses what is stored."""
    return x.astype(buffer.dtype).astype(x.dtype)


def clip_by_rms(u: jax.Array, threshold: Any) -> jax.Array:
    """Adafactor's update clipping, in ``u``'s dtype: ``u / max(1, RMS(u) / threshold)``."""
    return u / jnp.maximum(rms(u) / jnp.asarray(threshold, u.dtype), jnp.ones([], u.dtype))


def second_moment_zeros(shape: Sequence[int], dims: FactoredDims, dtype: Any) -> Tuple[Any, Any, Any]:
    """Zero ``(full, row, col)`` statistics of one leaf: the full second moment (None when factored), or the
    row statistics (size 1 along the row axis) and column statistics (size 1 along the column axis)."""
    shape = tuple(shape)
    if dims is None:
        return jnp.zeros(shape, dtype), None, None
    col_axis, row_axis = dims

    def reduced(axis):
        return jnp.zeros(tuple(1 if i == axis else s for i, s in enumerate(shape)), dtype)

    return None, reduced(row_axis), reduced(col_axis)


def init_second_moments(
    params: Any,
    dims_of: Callable[[jax.Array], FactoredDims],
    dtype_of: Callable[[jax.Array], Any],
) -> Tuple[Any, Any, Any]:
    """:func:`second_moment_zeros` of every leaf, as three trees ``(full, row, col)`` with None leaves."""
    leaves, treedef = jax.tree.flatten(params)
    per_leaf = [second_moment_zeros(p.shape, dims_of(p), dtype_of(p)) for p in leaves]
    return tuple(jax.tree.unflatten(treedef, [z[i] for z in per_leaf]) for i in range(3))


def update_second_moment(
    sq: jax.Array,
    stats: Tuple[Any, Any, Any],
    stored: Tuple[Any, Any, Any],
    dims: FactoredDims,
    one_minus_beta2: Any,
) -> Tuple[Tuple[Any, Any, Any], Tuple[jax.Array, ...]]:
    """One EMA step of a leaf's second moment on ``sq = g**2 + eps``, and the factors of its inverse root.

    ``stats`` are the ``(full, row, col)`` statistics in the compute dtype, ``stored`` the state buffers
    they were read from (each new statistic is rounded to its buffer's dtype before it is used). Returns the
    new statistics and ``(row_factor, col_factor)`` (factored) or ``(rsqrt(full),)``: the caller multiplies
    them into the gradient in its own timm order.
    """
    full, row, col = stats
    if dims is None:
        full = as_stored(torch_lerp_rounded_weight(full, sq, one_minus_beta2), stored[0])
        return (full, row, col), (jax.lax.rsqrt(full),)
    col_axis, row_axis = dims
    row = as_stored(
        torch_lerp_rounded_weight(row, jnp.mean(sq, axis=row_axis, keepdims=True), one_minus_beta2), stored[1]
    )
    col = as_stored(
        torch_lerp_rounded_weight(col, jnp.mean(sq, axis=col_axis, keepdims=True), one_minus_beta2), stored[2]
    )
    # timm's rows keep their dims, so the row mean is over the column axis directly
    row_factor = jax.lax.rsqrt(row / jnp.mean(row, axis=col_axis, keepdims=True))
    return (full, row, col), (row_factor, jax.lax.rsqrt(col))
