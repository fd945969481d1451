"""Flax <-> torch axis maps for the shape-aware optimizers (Adafactor, Adafactor BV, Kron, Muon).

timm decides factoring, preconditioner structure and Muon's routing from a tensor's *torch* shape:
Linear ``(out, in)``, conv ``(O, I, *k)``. A Flax kernel stores the same tensor as Dense ``(in, out)`` or
conv ``(*k, I, O)``. With ``layout='flax'`` those optimizers read each >=2-d leaf through these maps,
apply timm's rule to the equivalent torch tensor and map the result back, so a Flax model is treated
exactly as timm treats its torch twin (ties included, which timm breaks in torch's dim order).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['LAYOUTS', 'flax_to_torch_axes', 'torch_axes', 'to_torch_layout', 'from_torch_layout', 'torch_rule_axes']

LAYOUTS = ('torch', 'flax')


def flax_to_torch_axes(ndim: int) -> Tuple[int, ...]:
    """For each torch dim, the Flax axis holding it: Dense ``(in, out)`` and conv ``(*k, I, O)`` -> ``(O, I, *k)``."""
    if ndim < 2:
        return tuple(range(ndim))
    if ndim == 2:
        return 1, 0
    return (ndim - 1, ndim - 2) + tuple(range(ndim - 2))


def torch_axes(ndim: int, layout: str) -> Tuple[int, ...]:
    """For each torch dim, the axis of an array stored in ``layout`` holding it (identity for ``'torch'``)."""
    if layout == 'torch':
        return tuple(range(ndim))
    return flax_to_torch_axes(ndim)


def to_torch_layout(x: jax.Array, layout: str) -> jax.Array:
    """``x`` (stored in ``layout``) transposed to timm's torch dim order; no-op for ``'torch'`` and <2-d."""
    return jnp.transpose(x, torch_axes(x.ndim, layout))


def from_torch_layout(x: Union[jax.Array, np.ndarray], layout: str) -> jax.Array:
    """Inverse of :func:`to_torch_layout`: a torch-ordered ``x`` back in the ``layout`` it is stored in."""
    return jnp.transpose(x, np.argsort(torch_axes(x.ndim, layout)).tolist())


def torch_rule_axes(
    shape: Sequence[int],
    layout: str,
    rule: Callable[[Tuple[int, ...]], Optional[Tuple[int, ...]]],
) -> Optional[Tuple[int, ...]]:
    """Apply ``rule`` (torch shape -> torch axes, or None) to a ``layout`` shape; the axes it picks, mapped back.

    E.g. Adafactor's factored dims: ``rule`` is timm's heuristic on the torch shape, and the result names
    the same tensor dims in the stored (Flax or torch) array.
    """
    shape = tuple(shape)
    perm = torch_axes(len(shape), layout)
    axes = rule(tuple(shape[a] for a in perm))
    if axes is None:
        return None
    return tuple(perm[a] for a in axes)
