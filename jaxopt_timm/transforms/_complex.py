"""Complex leaves as pairs of reals, the way torch's optimizers step a complex param.

torch's optimizers that support complex params run their math on
``torch.view_as_real(param)`` (and the same view of the gradient and the
state): a complex ``(4, 3)`` tensor is stepped as a real ``(4, 3, 2)`` one.
So ``v = beta*v + (1-beta)*g*g`` squares the real and imaginary parts
separately instead of taking ``g*g`` in complex arithmetic (which would give
AdamW a complex second moment and a wrong imaginary update), and a per-tensor
norm (LARS) is the norm over both parts. These helpers make a real-valued
transformation do the same: complex leaves go in as ``(..., 2)`` real arrays
(``[..., 0]`` the real part, ``[..., 1]`` the imaginary part) and the updates
come back complex.

The gradient convention is torch's: the update direction for ``z = x + iy`` is
``dL/dx + i dL/dy``. ``jax.grad`` of a real loss returns the conjugate of that,
so pass ``jnp.conj(jax.grad(loss)(params))`` (as optax's own complex tests do).
"""

from __future__ import annotations

from typing import Any, List

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['is_complex_leaf', 'tree_has_complex', 'to_real_pairs', 'from_real_pairs']


def is_complex_leaf(x: Any) -> bool:
    """Whether ``x`` is a complex array (or a Python complex); anything else (None, ints, floats) is not."""
    if isinstance(x, complex):
        return True
    dtype = getattr(x, 'dtype', None)
    return dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating)


def tree_has_complex(*trees: Any) -> bool:
    """Whether any leaf of ``trees`` is complex (decided from dtypes, so free at trace time)."""
    return any(is_complex_leaf(x) for t in trees for x in jax.tree.leaves(t))


def _pair(x: Any) -> Any:
    x = jnp.asarray(x)
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def to_real_pairs(tree: Any, mask: List[bool]) -> Any:
    """``tree`` with each leaf flagged in ``mask`` (one flag per leaf, in leaf order) as a ``(..., 2)`` real array.

    A flagged real leaf gets a zero imaginary part: a complex param with a real gradient is stepped as one
    whose gradient has no imaginary part.
    """
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [_pair(x) if m else x for x, m in zip(leaves, mask)])


def from_real_pairs(tree: Any, like: Any) -> Any:
    """Inverse of :func:`to_real_pairs`: each leaf of ``tree`` whose ``like`` leaf is complex becomes complex of
    that leaf's dtype (``[..., 0] + i [..., 1]``); the others are returned as they are."""
    leaves, treedef = jax.tree.flatten(tree)
    refs = treedef.flatten_up_to(like)
    out = []
    for u, ref in zip(leaves, refs):
        if u is not None and is_complex_leaf(ref):
            dtype = jnp.dtype(ref.dtype)
            real = jnp.finfo(dtype).dtype  # complex64 -> float32, complex128 -> float64
            u = jax.lax.complex(u[..., 0].astype(real), u[..., 1].astype(real)).astype(dtype)
        out.append(u)
    return jax.tree.unflatten(treedef, out)
