"""Per-dimension matrix preconditioners (Shampoo, SOAP): statistics, eigenbases, inverse roots, blocks.

A tensor ``G`` of shape ``(d_1, ..., d_n)`` gets one ``d_i x d_i`` statistic per preconditioned dim,
``G_(i) G_(i)^T`` (``G`` unfolded along dim ``i``: every other dim contracted). Shampoo applies inverse
roots of those statistics along each dim (:func:`inverse_root_schur_newton`, :func:`inverse_root_svd`);
SOAP runs Adam in their eigenbases (:func:`eigenbasis`, refreshed by one power-iteration step and a QR,
:func:`eigenbasis_qr_refresh`). Every decomposition runs in float32 (float64 for float64 statistics),
jittable: the data-dependent stopping of the Schur-Newton iteration is a ``lax.while_loop``.

:func:`map_matrices` batches a per-matrix function over equal-shaped matrices (one ``vmap`` per shape), so
a model with many same-sized layers traces one decomposition per shape, not per layer. The shape rules the
references share (:func:`merge_small_dims`, Shampoo's :func:`block_sizes`) are here too.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    'merge_small_dims',
    'dim_statistic',
    'apply_along',
    'map_matrices',
    'eigenbasis',
    'eigenbasis_qr_refresh',
    'power_iteration_max_eig',
    'inverse_root_svd',
    'inverse_root_schur_newton',
    'block_sizes',
    'split_blocks',
    'merge_blocks',
    'matrix_dtype',
]


def matrix_dtype(dtype: Any) -> Any:
    """The dtype the statistics and decompositions use: float64 for float64 leaves, else float32."""
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.dtype(jnp.float64) else jnp.dtype(jnp.float32)


# ---- shape rules ------------------------------------------------------------------------------------------


def merge_small_dims(shape: Sequence[int], max_dim: int) -> Tuple[int, ...]:
    """``pytorch_optimizer``'s ``merge_small_dims``: merge runs of adjacent dims while their product stays
    ``<= max_dim``; ``(1, 2, 512, 1, 2048, 1, 3, 4)`` with 1024 -> ``(1024, 2048, 12)``. As the reference, a
    result of a single dim is reported as ``(1,)`` (Shampoo reads it as "nothing to precondition")."""
    merged: List[int] = []
    product = 1
    for dim in shape:
        product *= int(dim)
        if product > max_dim:
            merged.append(product // int(dim))
            product = int(dim)
    merged.append(product)
    return tuple(merged) if len(merged) > 1 else (1,)


def block_sizes(shape: Sequence[int], block_size: int) -> Tuple[Tuple[int, ...], ...]:
    """Shampoo's ``BlockPartitioner``: per dim, the sizes of its blocks (``block_size`` each, the rest last);
    a dim no larger than ``block_size`` (or ``block_size <= 0``) is one block."""
    out: List[Tuple[int, ...]] = []
    for d in shape:
        if block_size <= 0 or block_size >= d:
            out.append((int(d),))
        else:
            n = (d - 1) // block_size
            out.append((block_size,) * n + (int(d) - n * block_size,))
    return tuple(out)


def split_blocks(x: jax.Array, sizes: Tuple[Tuple[int, ...], ...]) -> List[jax.Array]:
    """``x`` cut into blocks, in the reference's order (lexicographic, the first split dim slowest)."""
    blocks = [x]
    for axis, s in enumerate(sizes):
        if len(s) == 1:
            continue
        cuts = list(np.cumsum(s)[:-1])
        blocks = [part for b in blocks for part in jnp.split(b, cuts, axis=axis)]
    return blocks


def merge_blocks(blocks: Sequence[jax.Array], sizes: Tuple[Tuple[int, ...], ...]) -> jax.Array:
    """Inverse of :func:`split_blocks`."""
    blocks = list(blocks)
    for axis in reversed(range(len(sizes))):
        n = len(sizes[axis])
        if n == 1:
            continue
        blocks = [jnp.concatenate(blocks[k : k + n], axis=axis) for k in range(0, len(blocks), n)]
    return blocks[0]


# ---- per-dim statistics and their application ------------------------------------------------------------


def dim_statistic(x: jax.Array, axis: int) -> jax.Array:
    """``X_(axis) X_(axis)^T``: ``x`` contracted with itself over every dim but ``axis`` (a d x d matrix)."""
    others = tuple(k for k in range(x.ndim) if k != axis)
    return jnp.tensordot(x, x, axes=(others, others))


def apply_along(x: jax.Array, axis: int, mat: jax.Array, transpose: bool = True) -> jax.Array:
    """``mat^T`` (``transpose``, the references' ``tensordot(x, mat, [[axis], [0]])``) or ``mat`` acting on
    ``x`` along ``axis``; the axis keeps its place."""
    out = jnp.tensordot(x, mat, axes=([axis], [0 if transpose else 1]))
    return jnp.moveaxis(out, -1, axis)


def map_matrices(fn: Callable[..., Any], mats: Sequence[jax.Array], *args: Sequence[Any]) -> List[Any]:
    """``[fn(m, *a) for m, *a in zip(mats, *args)]``, computed with one ``vmap`` per distinct matrix shape."""
    groups: Dict[Tuple[Any, ...], List[int]] = {}  # (*shape, dtype name) -> indices
    for k, m in enumerate(mats):
        groups.setdefault(tuple(m.shape) + (str(m.dtype),), []).append(k)
    out: List[Any] = [None] * len(mats)
    for idx in groups.values():
        stacked = [jnp.stack([mats[k] for k in idx])] + [
            jax.tree.map(lambda *xs: jnp.stack(xs), *[a[k] for k in idx]) for a in args
        ]
        res = jax.vmap(fn)(*stacked)
        for j, k in enumerate(idx):
            out[k] = jax.tree.map(lambda r, j=j: r[j], res)
    return out


# ---- eigenbases (SOAP) ------------------------------------------------------------------------------------


def eigenbasis(m: jax.Array) -> jax.Array:
    """The eigenvectors of the symmetric ``m + 1e-30 I`` as columns, largest eigenvalue first (SOAP's
    ``get_orthogonal_matrix``), computed in :func:`matrix_dtype`."""
    dt = matrix_dtype(m.dtype)
    m32 = m.astype(dt) + jnp.asarray(1e-30, dt) * jnp.eye(m.shape[0], dtype=dt)
    _, q = jnp.linalg.eigh(m32)
    return jnp.flip(q, axis=1).astype(m.dtype)


def eigenbasis_qr_refresh(gg: jax.Array, q: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """SOAP's ``get_orthogonal_matrix_qr`` for one dim: ``(Q', order)``.

    The columns of ``GG Q`` are sorted by the estimated eigenvalues ``diag(Q^T GG Q)`` (descending, ``order``:
    the permutation the second moment is re-indexed by along that dim) and re-orthogonalised by a QR, in
    float32. Q's column signs do not matter: Householder QR gives the same ``Q'`` for any signs."""
    product = gg @ q
    est_eig = jnp.sum(q * product, axis=0)
    order = jnp.argsort(-est_eig)
    q_new, _ = jnp.linalg.qr(product[:, order].astype(matrix_dtype(gg.dtype)))
    return q_new.astype(q.dtype), order


# ---- inverse roots (Shampoo) ------------------------------------------------------------------------------

_POWER_START_KEY = 0


def power_iteration_max_eig(m: jax.Array, num_iters: int = 100) -> jax.Array:
    """The largest eigenvalue of a PSD ``m`` by ``num_iters`` power iterations, as the reference (its start
    vector is torch's ``randn``; here a fixed Gaussian draw), clamped at 1e-16."""
    v = jax.random.normal(jax.random.PRNGKey(_POWER_START_KEY), (m.shape[0],), m.dtype)
    tiny = jnp.finfo(m.dtype).tiny

    def body(_, v):
        mv = m @ v
        return mv / jnp.maximum(jnp.linalg.norm(mv), tiny)

    v = jax.lax.fori_loop(0, num_iters, body, v)
    return jnp.maximum(jnp.dot(v, m @ v), jnp.asarray(1e-16, m.dtype))


def inverse_root_svd(m: jax.Array, p: float) -> jax.Array:
    """``m^(-1/p)`` from its SVD (``compute_power_svd``; no ridge), in :func:`matrix_dtype`."""
    dt = matrix_dtype(m.dtype)
    u, s, vh = jnp.linalg.svd(m.astype(dt), full_matrices=False)
    return ((u * (s ** jnp.asarray(-1.0 / p, dt))[None, :]) @ vh).astype(m.dtype)


def inverse_root_schur_newton(
    m: jax.Array,
    p: int,
    ridge_epsilon: float = 1e-6,
    max_iters: int = 100,
    error_tolerance: float = 1e-3,
    max_error_ratio: float = 1.2,
) -> jax.Array:
    """``(m + ridge * lambda_max I)^(-1/p)`` by the coupled Schur-Newton iteration (Guo & Higham, 2006), as
    ``pytorch_optimizer``'s ``compute_power_schur_newton``: stop once ``max|M - I| <= error_tolerance`` (the
    new root) or when the error grows by more than ``max_error_ratio`` (the previous root), else after
    ``max_iters``. A 1 x 1 ``m`` gets its closed form. Runs as a ``lax.while_loop`` (jittable, vmappable)."""
    dt = matrix_dtype(m.dtype)
    mat_g = m.astype(dt)
    n = mat_g.shape[0]
    if n == 1:
        return ((mat_g + ridge_epsilon * jnp.maximum(mat_g, 1e-16)) ** (-1.0 / p)).astype(m.dtype)
    identity = jnp.eye(n, dtype=dt)
    mat_g = mat_g + power_iteration_max_eig(mat_g) * jnp.asarray(ridge_epsilon, dt) * identity
    z = (1 + p) / (2 * jnp.linalg.norm(mat_g))
    root = identity * z ** jnp.asarray(1.0 / p, dt)
    mat_m = mat_g * z
    alpha = -1.0 / p
    alpha_identity = (1.0 - alpha) * identity
    err0 = jnp.max(jnp.abs(mat_m - identity))

    def cond(carry):
        i, _, _, _, done = carry
        return jnp.logical_and(i < max_iters, jnp.logical_not(done))

    def body(carry):
        i, root, mat_m, prev_error, _ = carry
        mat_m_i = alpha_identity + alpha * mat_m
        new_root = root @ mat_m_i
        new_m = jnp.linalg.matrix_power(mat_m_i, p) @ mat_m
        error = jnp.max(jnp.abs(new_m - identity))
        diverged = error > prev_error * max_error_ratio
        done = jnp.logical_or(diverged, error <= error_tolerance)
        root = jnp.where(diverged, root, new_root)
        return i + 1, root, new_m, error, done

    carry = (jnp.zeros([], jnp.int32), root, mat_m, err0, jnp.zeros([], bool))
    _, root, _, _, _ = jax.lax.while_loop(cond, body, carry)
    return root.astype(m.dtype)
