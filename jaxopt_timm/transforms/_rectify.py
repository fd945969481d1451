"""RAdam's variance rectification (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and
Beyond", arXiv:1908.03265), shared by RAdam (torch and timm's legacy class) and rectified AdaBelief.

The rectification depends only on the step ``t`` and ``beta2``:

* the length of the approximated simple moving average
  ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)`` with ``rho_inf = 2 / (1 - beta2) - 1``;
* while ``rho_t`` is below 5 the variance of the adaptive lr is intractable and the step is an
  un-normalized (SGD with momentum) one, ``m_t / (1 - beta1^t)``;
* otherwise the adaptive step ``m_t / (sqrt(v_t) + eps)`` is scaled by
  ``r_t sqrt(1 - beta2^t) / (1 - beta1^t)`` with
  ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.

timm and torch evaluate these scalars in Python double precision. Evaluated
naively in float32, ``rho_t`` is the difference of two numbers near
``rho_inf`` (about 2000 for ``beta2 = 0.999``) and loses about four digits in
the early steps, exactly where ``rho_t - 4`` is small; the same goes for
``1 - beta^t``. The helpers here are reformulated so float32 keeps full
relative precision at every step (``expm1`` for ``1 - beta^t``, and a series
for the cancelling part of ``rho_t``), which keeps the jitted update within
float32 rounding of timm's double-precision scalars.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    'one_minus_pow',
    'pow_bias_correction',
    'sma_length',
    'rectification',
    'RectifiedStepSize',
    'rectified_step_size',
]


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _log_beta(beta: Any) -> jax.Array:
    """``log(beta)`` as float32, computed in double precision when ``beta`` is a concrete number."""
    if _is_concrete(beta):
        beta = float(beta)
        return jnp.asarray(math.log(beta) if beta > 0 else -math.inf, jnp.float32)
    return jnp.log(jnp.asarray(beta, jnp.float32))


def one_minus_pow(beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta**t`` in float32 without cancellation (``-expm1(t log beta)``); ``t`` is a float32 step >= 1."""
    return -jnp.expm1(t * _log_beta(beta))


def pow_bias_correction(beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta**t`` formed as written, ``1 - float32(beta) ** t`` (the optimizers that match timm this way).

    Rounds differently from :func:`one_minus_pow` (which avoids the cancellation); each optimizer keeps the
    form its parity was measured with.
    """
    return 1.0 - jnp.asarray(beta, jnp.float32) ** t


def _expm1_remainder(y: jax.Array) -> jax.Array:
    """``y / expm1(y) - 1 + y/2`` for ``0 < y < 1`` by its Bernoulli series (accurate in float32 where it is tiny)."""
    z = y * y
    return z * (1.0 / 12 + z * (-1.0 / 720 + z * (1.0 / 30240 + z * (-1.0 / 1209600 + z * (1.0 / 47900160)))))


def sma_length(t: jax.Array, b2: Any) -> jax.Array:
    """``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)`` for a float32 step ``t >= 1``.

    With ``L = -log(beta2)`` and ``y = t L``, the subtracted term is ``2t / expm1(y)``.
    For ``y >= 1`` it is at most about ``rho_t``, so it is subtracted directly.
    For ``y < 1`` it equals ``(2/L) (1 - y/2 + h(y))`` with ``h`` a small series
    (:func:`_expm1_remainder`), so ``rho_t = (rho_inf - 2/L) + t - (2/L) h(y)``:
    the cancelling constant is formed in double precision once and nothing
    else cancels in float32.
    """
    t = jnp.asarray(t, jnp.float32)
    if not _is_concrete(b2):
        b2 = jnp.asarray(b2, jnp.float32)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        b2_t = b2**t
        return rho_inf - 2.0 * t * b2_t / (1.0 - b2_t)
    b2 = float(b2)
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    if b2 == 0.0:
        return jnp.full_like(t, rho_inf)
    neg_log = -math.log(b2)
    two_over_l = 2.0 / neg_log
    y = t * jnp.asarray(neg_log, jnp.float32)
    small = y < 1.0
    y_small = jnp.where(small, y, jnp.zeros_like(y))
    near = (
        jnp.asarray(rho_inf - two_over_l, jnp.float32)
        + t
        - jnp.asarray(two_over_l, jnp.float32) * _expm1_remainder(y_small)
    )
    y_large = jnp.where(small, jnp.ones_like(y), y)
    far = jnp.asarray(rho_inf, jnp.float32) - 2.0 * t / jnp.expm1(y_large)
    return jnp.where(small, near, far)


def rectification(rho_t: jax.Array, b2: Any) -> jax.Array:
    """RAdam's ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``.

    Only meaningful where ``rho_t`` exceeds the threshold (5); elsewhere the
    result is clamped to a finite value and must be discarded by the caller.
    """
    if _is_concrete(b2):
        rho_inf = 2.0 / (1.0 - float(b2)) - 1.0
        # rho_t < rho_inf, so with rho_inf <= 4 the adaptive branch is never taken
        k = jnp.asarray(rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0)) if rho_inf > 4.0 else 0.0, jnp.float32)
    else:
        rho_inf_t = 2.0 / (1.0 - jnp.asarray(b2, jnp.float32)) - 1.0
        k = rho_inf_t / ((rho_inf_t - 4.0) * (rho_inf_t - 2.0))
    safe_rho = jnp.maximum(rho_t, 5.0)
    return jnp.sqrt(jnp.maximum((safe_rho - 4.0) * (safe_rho - 2.0) / safe_rho * k, 0.0))


class RectifiedStepSize(NamedTuple):
    """The lr-free scalars of one rectified step.

    Attributes:
        adaptive: whether ``rho_t`` passed the threshold (use the adaptive step).
        adaptive_step: ``r_t sqrt(1 - beta2^t) / (1 - beta1^t)``, multiplies ``m / (sqrt(v) + eps)``.
        sgd_step: ``1 / (1 - beta1^t)``, multiplies ``m`` otherwise.
    """

    adaptive: jax.Array
    adaptive_step: jax.Array
    sgd_step: jax.Array


def rectified_step_size(
    t: jax.Array,
    b1: Any,
    b2: Any,
    *,
    threshold: float = 5.0,
    inclusive: bool = True,
) -> RectifiedStepSize:
    """RAdam's step-size scalars at float32 step ``t >= 1``.

    ``inclusive`` selects the comparison with the threshold: timm's
    ``RAdamLegacy`` and ``AdaBelief`` use ``rho_t >= 5``, ``torch.optim.RAdam``
    uses ``rho_t > 5``.
    """
    t = jnp.asarray(t, jnp.float32)
    rho_t = sma_length(t, b2)
    adaptive = rho_t >= threshold if inclusive else rho_t > threshold
    bc1 = one_minus_pow(b1, t)
    bc2 = one_minus_pow(b2, t)
    adaptive_step = rectification(rho_t, b2) * jnp.sqrt(bc2) / bc1
    return RectifiedStepSize(adaptive=adaptive, adaptive_step=adaptive_step, sgd_step=1.0 / bc1)
