"""Lamb's per-leaf formulas: the first and second moments and the Adam-style direction of one step
(:class:`_LambStep`), shared by :func:`scale_by_lamb` and the fused :func:`scale_by_lamb_trust_ratio`.

Split from :mod:`._lamb`, which keeps those transformations, the alias and its registry records, so that
each module stays short. Like every helper module of :mod:`jaxopt_timm.optim` it exports nothing and
registers no optimizer.
"""

from __future__ import annotations

from typing import Any, List

import jax
import jax.numpy as jnp

from ..transforms import compute_dtype, one_minus_pow, pow_bias_correction

__all__: List[str] = []


def _bias_correction(beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta**t`` as ``-expm1(t * log(beta))``: accurate in float32 where ``1 - beta**t`` is tiny.

    A traced beta keeps the plain power, as Lamb's traced-hyperparameter parity was measured with.
    """
    return pow_bias_correction(beta, t) if isinstance(beta, jax.core.Tracer) else one_minus_pow(beta, t)


def _c(x: jax.Array, g: jax.Array) -> jax.Array:
    """A buffer in the gradient's compute dtype (float32 for low-precision leaves)."""
    return x.astype(compute_dtype(g.dtype))


class _LambStep:
    """The per-leaf formulas of one Lamb step (shared by :func:`scale_by_lamb` and the fused step)."""

    def __init__(self, b1, b2, eps, bias_correction, grad_averaging, count):
        self.b1, self.b2, self.eps, self.grad_averaging = b1, b2, eps, grad_averaging
        if bias_correction:
            t = count.astype(jnp.float32)
            self.bc1 = _bias_correction(b1, t)
            self.bc2_sqrt = jnp.sqrt(_bias_correction(b2, t))
        else:
            self.bc1 = self.bc2_sqrt = jnp.float32(1.0)

    def first_moment(self, g, m):
        if self.grad_averaging:
            return (_c(m, g) + (1.0 - self.b1) * (_c(g, g) - _c(m, g))).astype(m.dtype)
        return (self.b1 * _c(m, g) + _c(g, g)).astype(m.dtype)

    def second_moment(self, g, v):
        return (self.b2 * _c(v, g) + (1.0 - self.b2) * _c(g, g) * _c(g, g)).astype(v.dtype)

    def direction(self, g, m, v):
        m, v = _c(m, g), _c(v, g)
        denom = jnp.sqrt(v) / self.bc2_sqrt.astype(v.dtype) + self.eps
        return ((m / self.bc1.astype(m.dtype)) / denom).astype(g.dtype)
