"""Momentum and Adam moments with torch's exact conventions.

optax's ``trace`` starts its buffer at zero and ``scale_by_amsgrad`` keeps the
maximum of the *bias-corrected* second moment; torch's SGD seeds the buffer
with the first gradient (which differs when ``dampening > 0``) and torch's
AdamW(amsgrad) keeps the maximum of the *raw* second moment and corrects it
with the current step's bias correction. These primitives mirror torch.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ._tree import safe_increment

__all__ = [
    'TorchMomentumState', 'scale_by_torch_momentum', 'ScaleByAdamState', 'scale_by_adam', 'tree_zeros_like',
]


def tree_zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype or p.dtype), tree)


class TorchMomentumState(NamedTuple):
    count: jax.Array
    momentum_buffer: Any


def scale_by_torch_momentum(
        momentum: float = 0.9,
        dampening: float = 0.0,
        nesterov: bool = False,
) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum: ``b <- m*b + (1-d)*g`` (``b <- g`` on the first step); nesterov ``g + m*b``."""

    def init_fn(params):
        return TorchMomentumState(count=jnp.zeros([], jnp.int32), momentum_buffer=tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        if not isinstance(momentum, jax.core.Tracer) and momentum == 0:
            # torch skips the buffer; a traced momentum (inject_hyperparams) takes the general path, equal at 0
            return updates, state._replace(count=safe_increment(state.count))
        first = state.count == 0

        def buf_fn(g, b):
            return jnp.where(first, g, momentum * b + (1.0 - dampening) * g).astype(b.dtype)

        bufs = jax.tree.map(buf_fn, updates, state.momentum_buffer)
        if nesterov:
            out = jax.tree.map(lambda g, b: g + momentum * b, updates, bufs)
        else:
            out = bufs
        return out, TorchMomentumState(count=safe_increment(state.count), momentum_buffer=bufs)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any


def scale_by_adam(
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        amsgrad: bool = False,
        *,
        mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """Adam's direction as torch computes it (Kingma & Ba, 2014, arXiv:1412.6980).

    ``m <- b1*m + (1-b1)*g``, ``v <- b2*v + (1-b2)*g^2``, ``vmax <- max(vmax, v)``
    (amsgrad), ``d = (m / bc1) / (sqrt(v or vmax) / sqrt(bc2) + eps)`` with
    ``bc_i = 1 - b_i^t``. Differs from ``optax.scale_by_amsgrad`` in keeping the
    maximum of the raw second moment, as torch does.
    """

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params),
            max_exp_avg_sq=tree_zeros_like(params) if amsgrad else None,
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1 = 1.0 - jnp.asarray(b1, jnp.float32) ** t
        bc2_sqrt = jnp.sqrt(1.0 - jnp.asarray(b2, jnp.float32) ** t)
        mu = jax.tree.map(lambda g, m: (m + (1.0 - b1) * (g - m)).astype(m.dtype), updates, state.exp_avg)
        nu = jax.tree.map(lambda g, v: b2 * v + (1.0 - b2) * g * g, updates, state.exp_avg_sq)
        vmax = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, nu) if amsgrad else None
        denom_base = vmax if amsgrad else nu
        out = jax.tree.map(
            lambda m, v, g: ((m / bc1) / (jnp.sqrt(v) / bc2_sqrt + eps)).astype(g.dtype), mu, denom_base, updates)
        return out, ScaleByAdamState(count=count, exp_avg=mu, exp_avg_sq=nu, max_exp_avg_sq=vmax)

    return optax.GradientTransformation(init_fn, update_fn)
