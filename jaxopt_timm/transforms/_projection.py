"""Projection of an update onto the tangent space of scale-invariant weights (AdamP / SGDP).

Heo et al., 2021, "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights" (arXiv:2006.08217). A weight whose gradient is nearly
orthogonal to it is treated as scale-invariant (it feeds a normalisation
layer): the radial part of the update is removed, so momentum no longer grows
its norm, and its weight decay is multiplied by ``wd_ratio``. The test is run
per output channel first (``(O, -1)`` view) and then on the whole tensor
(``(1, -1)`` view); the first view whose largest ``|cos(grad, param)|`` is below
``delta / sqrt(view width)`` is projected.

With caution on, timm uses the "spherical" cautious mask (Spherical Cautious
Optimizers, https://openreview.net/forum?id=OyT2CJ4fh7) for projected leaves:
the update is compared with the *tangential* part of the gradient, masked,
and projected again; other leaves get the plain cautious mask.

Nothing in optax does this; the branch is data dependent, so here both views
are computed and the result selected with ``jnp.where`` (jit-safe) instead of
timm's Python ``if`` on ``cosine_sim.max()``.
"""

from __future__ import annotations

import math
from typing import Any, Tuple

import jax
import jax.numpy as jnp

from ._caution import caution_mask

__all__ = ['cosine_similarity_rows', 'projection_branch', 'project_tangent', 'tree_project_tangent']


def _views(x: jax.Array):
    """timm's two views of a >=2-d tensor: per output channel ``(O, -1)`` and whole layer ``(1, -1)``."""
    return (x.reshape(x.shape[0], -1), x.reshape(1, -1))


def cosine_similarity_rows(a: jax.Array, b: jax.Array, eps: float) -> jax.Array:
    """Row-wise cosine similarity as ``torch.nn.functional.cosine_similarity(dim=1)`` computes it.

    Each row is divided by its norm clamped below at ``eps`` before the dot
    product (torch's current formula, not ``a.b / max(|a||b|, eps)``).
    """
    na = jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), jnp.asarray(eps, a.dtype))
    nb = jnp.maximum(jnp.linalg.norm(b, axis=1, keepdims=True), jnp.asarray(eps, b.dtype))
    return jnp.sum((a / na) * (b / nb), axis=1)


def _view_hit(param: jax.Array, grad: jax.Array, view: int, delta: float, eps: float) -> jax.Array:
    pv, gv = _views(param)[view], _views(grad)[view]
    cos = jnp.abs(cosine_similarity_rows(gv, pv, eps))
    return jnp.max(cos) < jnp.asarray(delta / math.sqrt(pv.shape[1]), cos.dtype)


def projection_branch(param: jax.Array, grad: jax.Array, delta: float, eps: float = 1e-8) -> jax.Array:
    """Which view timm projects for this leaf: 0 none, 1 per channel, 2 whole layer (int32 scalar).

    Leaves with ``ndim <= 1`` are never projected. Useful to check that a
    tree actually exercises the projection.
    """
    if param.ndim <= 1 or param.size == 0:
        return jnp.zeros([], jnp.int32)
    hit_c = _view_hit(param, grad, 0, delta, eps)
    hit_l = _view_hit(param, grad, 1, delta, eps)
    return jnp.where(hit_c, 1, jnp.where(hit_l, 2, 0)).astype(jnp.int32)


def _radial(unit: jax.Array, x: jax.Array, view: int) -> jax.Array:
    """Component of ``x`` along ``unit`` (rows of the chosen view), in ``x``'s shape."""
    coef = _views(unit * x)[view].sum(axis=1)
    expand = (-1,) + (1,) * (x.ndim - 1)
    return unit * coef.reshape(expand)


def _project_view(param, grad, perturb, view, eps, caution):
    expand = (-1,) + (1,) * (param.ndim - 1)
    norms = jnp.linalg.norm(_views(param)[view], axis=1) + jnp.asarray(eps, param.dtype)
    unit = param / norms.reshape(expand)
    out = perturb - _radial(unit, perturb, view)
    if caution:
        grad_perp = grad - _radial(unit, grad, view)
        out = out * caution_mask(out, grad_perp)
        # timm re-projects after masking (the mask can reintroduce a radial component)
        out = out - _radial(unit, out, view)
    return out


def project_tangent(
    param: jax.Array,
    grad: jax.Array,
    perturb: jax.Array,
    delta: float,
    wd_ratio: float,
    eps: float,
    caution: bool = False,
) -> Tuple[jax.Array, jax.Array]:
    """One leaf: ``(projected update, weight-decay multiplier)`` exactly as timm's ``adamp.projection``.

    The multiplier is ``wd_ratio`` where a view was projected, else 1. For
    ``ndim <= 1`` leaves nothing is projected (timm's ``len(p.shape) > 1``
    test) and caution, if on, is the plain cautious mask.
    """
    one = jnp.ones([], perturb.dtype)
    plain = perturb * caution_mask(perturb, grad) if caution else perturb
    if param.ndim <= 1 or param.size == 0:
        return plain, one
    hit_c = _view_hit(param, grad, 0, delta, eps)
    hit_l = _view_hit(param, grad, 1, delta, eps)
    by_channel = _project_view(param, grad, perturb, 0, eps, caution)
    by_layer = _project_view(param, grad, perturb, 1, eps, caution)
    out = jnp.where(hit_c, by_channel, jnp.where(hit_l, by_layer, plain))
    wd = jnp.where(hit_c | hit_l, jnp.asarray(wd_ratio, perturb.dtype), one)
    return out, wd


def tree_project_tangent(
    params: Any, grads: Any, perturbs: Any, delta: float, wd_ratio: float, eps: float, caution: bool = False
) -> Tuple[Any, Any]:
    """:func:`project_tangent` over a tree: returns ``(projected updates, per-leaf wd multipliers)``."""
    pairs = jax.tree.map(
        lambda p, g, u: project_tangent(p, g, u, delta, wd_ratio, eps, caution), params, grads, perturbs
    )
    treedef = jax.tree.structure(params)
    flat = treedef.flatten_up_to(pairs)
    return (jax.tree.unflatten(treedef, [x[0] for x in flat]), jax.tree.unflatten(treedef, [x[1] for x in flat]))
