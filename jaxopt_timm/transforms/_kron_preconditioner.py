"""PSGD's Kronecker-factored preconditioner, as timm's ``Kron`` fits and applies it.

Xi-Lin Li, 2015/2018, "Preconditioned Stochastic Gradient Descent" (arXiv:1512.04202) and
"Preconditioner on Matrix Lie Group for SGD" (arXiv:1809.10232); timm's port of Evan Walters'
``kron_torch``. A tensor's preconditioner is :math:`P = \bigotimes_i Q_i^T Q_i`, one factor per dim: an
upper-triangular ``Q_i`` (size x size) or, where :func:`kron_factor_kinds` says so, a diagonal one (a vector).
Here are the deterministic pieces: which factors a shape gets, their initial value, ``P g``, one fit of the
factors on a ``(g, v)`` pair and timm's re-balancing of their scales. The random draws (the probe ``v``,
timm's ~1% re-balancing coin) and when to refit stay with the optimizer (:mod:`jaxopt_timm.optim._kron_step`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ._layout import flax_to_torch_axes

__all__ = [
    'safe_flatten_shape',
    'kron_factor_kinds',
    'KronLeafPlan',
    'kron_leaf_plan',
    'to_factor_space',
    'from_factor_space',
    'kron_init_factors',
    'kron_precondition',
    'norm_lower_bound',
    'kron_update_factors',
    'kron_balance_factors',
]

_TINY = float(jnp.finfo(jnp.bfloat16).tiny)  # timm's guard in the factor-update denominators


# ---- preconditioner structure ----------------------------------------------------------------------------


def safe_flatten_shape(shape: Tuple[int, ...], start_dim: int, end_dim: int) -> Tuple[int, ...]:
    """Shape after timm's ``safe_flatten``: dims ``start..end`` merged, or unchanged when that range is empty."""
    ndim = len(shape)
    end = min(end_dim if end_dim >= 0 else ndim + end_dim, ndim - 1)
    if ndim <= start_dim or start_dim > end:
        return shape
    return shape[:start_dim] + (int(np.prod(shape[start_dim : end + 1])),) + shape[end + 1 :]


def kron_factor_kinds(
    shape: Sequence[int],
    max_size_triangular: int = 2048,
    min_ndim_triangular: int = 2,
    memory_save_mode: Optional[str] = None,
) -> Tuple[bool, ...]:
    """For each dim of a (torch-layout) shape, whether its factor is triangular (True) or diagonal (False).

    timm's rule: a dim is diagonal if its size is 1 or above ``max_size_triangular``, if the tensor has fewer
    than ``min_ndim_triangular`` dims, or if ``memory_save_mode`` makes it so (``'one_diag'``: the largest dim,
    the last of equal largest; ``'smart_one_diag'``: the same, only when it is strictly the largest;
    ``'all_diag'``: every dim). A 0-d tensor has one scalar factor and no dims.
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        return ()
    diag = [False] * len(shape)
    if memory_save_mode in ('one_diag', 'smart_one_diag'):
        largest = int(np.argsort(shape)[::-1][0])  # numpy's (stable for small arrays) order, as timm uses
        ordered = sorted(shape)
        if memory_save_mode == 'one_diag' or (len(shape) >= 2 and ordered[-1] > ordered[-2]):
            diag[largest] = True
    elif memory_save_mode == 'all_diag':
        diag = [True] * len(shape)
    return tuple(
        not (size == 1 or size > max_size_triangular or len(shape) < min_ndim_triangular or d)
        for size, d in zip(shape, diag)
    )


class KronLeafPlan(NamedTuple):
    """How a leaf meets its factors: transposed to torch's dim order, flattened if asked, then factored."""

    perm: Optional[Tuple[int, ...]]  # flax -> torch axes, None for torch layout
    torch_shape: Tuple[int, ...]
    shape: Tuple[int, ...]  # the shape the factors act on (torch layout, flattened if asked)
    kinds: Tuple[bool, ...]


def kron_leaf_plan(
    shape: Sequence[int],
    layout: str = 'torch',
    flatten_dims: Optional[Tuple[int, int]] = None,
    max_size_triangular: int = 2048,
    min_ndim_triangular: int = 2,
    memory_save_mode: Optional[str] = None,
) -> KronLeafPlan:
    """The :class:`KronLeafPlan` of a leaf stored in ``layout``: a Flax leaf is factored exactly as timm factors
    the transposed torch tensor (which dims get triangular factors, ``one_diag``'s tie-break and the flattened
    range ``flatten_dims = (start, end)`` all depend on the dim order)."""
    shape = tuple(shape)
    perm = None
    if layout == 'flax' and len(shape) >= 2:
        perm = flax_to_torch_axes(len(shape))
        shape = tuple(shape[a] for a in perm)
    flat = shape if flatten_dims is None else safe_flatten_shape(shape, *flatten_dims)
    return KronLeafPlan(
        perm, shape, flat, kron_factor_kinds(flat, max_size_triangular, min_ndim_triangular, memory_save_mode)
    )


def to_factor_space(x: jax.Array, plan: KronLeafPlan) -> jax.Array:
    """A leaf as the factors see it (``plan.shape``)."""
    if plan.perm is not None:
        x = jnp.transpose(x, plan.perm)
    return x.reshape(plan.shape)


def from_factor_space(x: jax.Array, plan: KronLeafPlan) -> jax.Array:
    """Inverse of :func:`to_factor_space`: back in the leaf's stored shape and layout."""
    x = x.reshape(plan.torch_shape)
    if plan.perm is not None:
        x = jnp.transpose(x, np.argsort(plan.perm).tolist())
    return x


def kron_init_factors(shape: Tuple[int, ...], kinds: Tuple[bool, ...], scale: float, dtype) -> Tuple[jax.Array, ...]:
    if not shape:
        return (jnp.full((), scale, dtype),)
    per_dim = scale ** (1 / len(shape))
    return tuple(
        per_dim * jnp.eye(size, dtype=dtype) if tri else jnp.full((size,), per_dim, dtype)
        for size, tri in zip(shape, kinds)
    )


# ---- the deterministic pieces: applying and fitting the factors ------------------------------------------


def _along(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    """``Q`` acting on ``x`` along ``axis``: ``Q @ x`` (triangular factor) or ``q * x`` (diagonal factor)."""
    if q.ndim == 2:
        return jnp.moveaxis(jnp.tensordot(q, x, axes=([1], [axis])), 0, axis)
    shape = [1] * x.ndim
    shape[axis] = q.shape[0]
    return x * q.reshape(shape)


def _along_transposed(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    if q.ndim == 2:
        return _along(x, axis, q.T)
    return _along(x, axis, q)


def _solve_along(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    """``Q^{-T}`` acting on ``x`` along ``axis`` (``x @ inv(Q)`` on that dim; the solve runs in float32 as timm's)."""
    if q.ndim < 2:
        shape = [1] * x.ndim
        if x.ndim:
            shape[axis] = q.shape[0]
        return x / q.reshape(shape)
    moved = jnp.moveaxis(x, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1]).astype(jnp.float32)
    solved = jax.lax.linalg.triangular_solve(q.astype(jnp.float32), flat, left_side=False, lower=False)
    return jnp.moveaxis(solved.reshape(moved.shape).astype(x.dtype), -1, axis)


def kron_precondition(factors: Sequence[jax.Array], g: jax.Array) -> jax.Array:
    """``P g`` with ``P = (Q_1^T Q_1) x ... x (Q_n^T Q_n)``, each factor acting on its own dim of ``g``."""
    if g.ndim == 0:
        return factors[0] * factors[0] * g
    out = g
    for axis, q in enumerate(factors):
        out = _along_transposed(_along(out, axis, q), axis, q)
    return out


def norm_lower_bound(a: jax.Array) -> jax.Array:
    """timm's cheap lower bound of the spectral norm of a (symmetric) matrix: one power-iteration step
    started from its largest row/column."""
    max_abs = jnp.max(jnp.abs(a))
    x = a / jnp.where(max_abs > 0, max_abs, jnp.ones_like(max_abs))
    sq = x * x
    col, row = jnp.sum(sq, axis=0), jnp.sum(sq, axis=1)
    i, j = jnp.argmax(col), jnp.argmax(row)
    y0 = x[:, i] @ x
    y1 = x @ x[j]
    r0 = jnp.linalg.norm((y0 / jnp.linalg.norm(y0)) @ x.T)
    r1 = jnp.linalg.norm(x.T @ (y1 / jnp.linalg.norm(y1)))
    bound = max_abs * jnp.where(col[i] > row[j], r0, r1)
    return jnp.where(max_abs > 0, bound, max_abs)


def _other_axes(ndim: int, axis: int) -> Tuple[int, ...]:
    return tuple(k for k in range(ndim) if k != axis)


def kron_update_factors(
    factors: Sequence[jax.Array],
    g: jax.Array,
    v: jax.Array,
    precond_lr: float,
) -> Tuple[jax.Array, ...]:
    """One PSGD fit of the Kronecker factors on ``(g, v)``: ``A = Q g``, ``B = Q^{-T} v``, and for each factor
    ``Q_i <- Q_i - lr * (A_i A_i^T - B_i B_i^T) / ||A_i A_i^T + B_i B_i^T|| * Q_i`` (upper triangle of the
    step for triangular factors, spectral-norm lower bound; elementwise and max-norm for diagonal ones)."""
    if g.ndim == 0:
        q = factors[0]
        a, b = q * g, v / q
        t1, t2 = a * a, b * b
        return (q - (t1 - t2) * precond_lr * q / (jnp.abs(t1 + t2) + _TINY),)
    a, b = g, v
    for axis, q in enumerate(factors):
        a = _along(a, axis, q)
        b = _solve_along(b, axis, q)
    out = []
    for axis, q in enumerate(factors):
        others = _other_axes(g.ndim, axis)
        if q.ndim < 2:
            t1 = jnp.sum(a * a, axis=others)
            t2 = jnp.sum(b * b, axis=others)
            step = (t1 - t2) * precond_lr * q / (jnp.max(jnp.abs(t1 + t2)) + _TINY)
        else:
            t1 = jnp.tensordot(a, a, axes=(others, others))
            t2 = jnp.tensordot(b, b, axes=(others, others))
            step = jnp.triu((t1 - t2) * precond_lr) / (norm_lower_bound(t1 + t2) + _TINY) @ q
        out.append(q - step.astype(q.dtype))
    return tuple(out)


def kron_balance_factors(factors: Sequence[jax.Array]) -> Tuple[jax.Array, ...]:
    """Rescale the factors to equal max-norms (their geometric mean), leaving their product unchanged."""
    norms = jnp.stack([jnp.max(jnp.abs(q)) for q in factors])
    mean = jnp.prod(norms) ** (1 / len(factors))
    return tuple(q * (mean / norms[k]).astype(q.dtype) for k, q in enumerate(factors))
