"""Hutchinson's estimator of the Hessian diagonal from Hessian-vector products.

``diag(H) ~= mean_k z_k * (H z_k)`` with Rademacher probes ``z_k`` (entries
+-1), as used by AdaHessian (Yao et al., 2021, arXiv:2006.00719; Bekas et
al., 2007, "An estimator for the diagonal of a matrix"). optax has no
second-order primitives. The probes come from a JAX PRNG key the caller keeps
in its state, so a run is reproducible and identical on every device (timm
uses a fixed-seed torch generator for the same reason); the stream of numbers
is JAX's, not torch's, which only matters when the Hessian is not diagonal.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

from ._tree import compute_dtype

__all__ = ['rademacher_like', 'hutchinson_diagonal', 'hvp_from_loss']


def rademacher_like(key: jax.Array, tree: Any) -> Any:
    """A tree shaped like ``tree`` with independent +-1 entries (each leaf in its own dtype)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    probes = [jax.random.rademacher(k, jnp.shape(x), dtype=jnp.int32).astype(x.dtype) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, probes)


def hutchinson_diagonal(
    hvp_fn: Callable[[Any], Any],
    key: jax.Array,
    like: Any,
    n_samples: int = 1,
    *,
    out_like: Optional[Any] = None,
) -> Tuple[Any, jax.Array]:
    """Estimate ``diag(H)`` as ``sum_k z_k * (H z_k) / n_samples``; returns ``(estimate, next key)``.

    ``hvp_fn(v)`` returns ``H v`` as a tree shaped like ``like`` (the probes
    ``z`` take ``like``'s dtypes). The estimate is accumulated one probe at a
    time, ``h += (H z) * z / n``, the order timm uses, in float32 for bf16/fp16
    leaves, and returned in the dtypes of ``out_like``'s leaves (default:
    ``like``'s). Exact for any probe when ``H`` is diagonal.
    """
    out_like = like if out_like is None else out_like
    estimate = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), compute_dtype(x.dtype)), like)
    for _ in range(n_samples):
        key, sub = jax.random.split(key)
        z = rademacher_like(sub, like)
        hz = hvp_fn(z)
        estimate = jax.tree.map(
            lambda h, hv, zi: h + hv.astype(h.dtype) * zi.astype(h.dtype) / n_samples, estimate, hz, z
        )
    return jax.tree.map(lambda h, o: h.astype(o.dtype), estimate, out_like), key


def hvp_from_loss(loss_fn: Callable[..., jax.Array], params: Any, *args: Any) -> Callable[[Any], Any]:
    """``v -> H v`` at ``params`` for ``loss_fn(params, *args)``, by forward-over-reverse (``jvp`` of ``grad``)."""
    grad_fn = jax.grad(lambda p: loss_fn(p, *args))

    def hvp_fn(v):
        return jax.jvp(grad_fn, (params,), (v,))[1]

    return hvp_fn
