"""How SOAP meets a leaf: which dims get a basis (:func:`soap_leaf_plan`), the reshape to the dims the bases
act on and back, and the projection onto the bases (the reference's ``project``).

Split from :mod:`._soap`, which keeps the step, the alias and its registry record, so that each module
stays short. Its public names are exported by :mod:`._soap` (``jaxopt_timm.optim.*``); like every helper
module of :mod:`jaxopt_timm.optim` it exports nothing itself and registers no optimizer.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..transforms import apply_along, merge_small_dims, torch_axes

__all__: List[str] = []  # the names below are exported by ._soap


class SoapLeafPlan(NamedTuple):
    """How a leaf meets its bases: stored axes in the order the reference reads them, then reshaped."""

    perm: Tuple[int, ...]  # stored axes -> the reference's order (torch layout, NCHW when merging NHWC)
    work_shape: Tuple[int, ...]  # the (merged) shape the bases act on
    precond: Tuple[bool, ...]  # per work dim: a d x d basis (True) or the identity


def soap_leaf_plan(
    shape: Tuple[int, ...],
    max_precondition_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    data_format: str = 'channels_first',
    layout: str = 'torch',
) -> SoapLeafPlan:
    """The :class:`SoapLeafPlan` of a leaf stored in ``layout`` (the reference's rules on the torch tensor).

    Where the reference's merge collapses a >=2-d leaf to one dim (all of it fits ``max_precondition_dim``),
    the reference raises (it reshapes to ``[1]``); here that leaf is one merged dim of its size.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    perm = torch_axes(ndim, layout)
    if merge_dims and ndim == 4 and data_format == 'channels_last':
        perm = tuple(perm[a] for a in (0, 3, 1, 2))
    work = tuple(shape[a] for a in perm)
    if ndim == 0 or 0 in shape:
        return SoapLeafPlan(perm, work, (False,) * ndim)
    if ndim == 1:
        return SoapLeafPlan(perm, work, (precondition_1d and shape[0] <= max_precondition_dim,))
    if merge_dims:
        merged = merge_small_dims(work, max_precondition_dim)
        work = merged if int(np.prod(merged)) == int(np.prod(shape)) else (int(np.prod(shape)),)
    return SoapLeafPlan(perm, work, tuple(d <= max_precondition_dim for d in work))


def _to_work(x: jax.Array, plan: SoapLeafPlan) -> jax.Array:
    return jnp.transpose(x, plan.perm).reshape(plan.work_shape)


def _from_work(x: jax.Array, plan: SoapLeafPlan, shape: Tuple[int, ...]) -> jax.Array:
    torch_shape = tuple(shape[a] for a in plan.perm)
    return jnp.transpose(x.reshape(torch_shape), np.argsort(plan.perm).tolist())


def _project(x: jax.Array, qs: Tuple[Optional[jax.Array], ...], forward: bool) -> jax.Array:
    """The reference's ``project``: ``Q_i^T`` (forward) or ``Q_i`` along each preconditioned dim."""
    for axis, q in enumerate(qs):
        if q is not None:
            x = apply_along(x, axis, q.astype(x.dtype), transpose=forward)
    return x
