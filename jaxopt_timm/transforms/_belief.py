"""AdaBelief's direction (Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
Observed Gradients", NeurIPS 2020, arXiv:2010.07468), as timm's ``AdaBelief`` computes it.

timm adds ``eps`` to the stored second moment *in place* every step
(``s <- beta2 s + (1-beta2)(g-m)^2 + eps``, so the state carries the
accumulated eps) and adds ``eps`` again to the bias-corrected root. For the
plain step that is ``optax.scale_by_belief(eps=eps, eps_root=eps)``, but
optax has neither of timm's other two switches, so this primitive covers all
three with one state:

* ``amsgrad`` keeps the maximum of the raw (eps-included) second moment and
  normalizes by it;
* ``rectify`` replaces the step by RAdam's rectified one
  (:mod:`jaxopt_timm.transforms._rectify`) with timm's ``rho_t >= 5`` threshold:
  the adaptive step divides by ``sqrt(s) + eps`` (never the ``amsgrad``
  maximum; the bias correction is folded into the step size) and, below the
  threshold, steps along ``m / (1 - beta1^t)`` (``degenerated_to_sgd``) or not
  at all.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ._rectify import one_minus_pow, rectified_step_size
from ._tree import compute_dtype, safe_increment, state_dtype, upcast

__all__ = ['ScaleByBeliefState', 'scale_by_belief']


def _state_zeros(params: Any, dtype: Optional[Any] = None) -> Any:
    """Zeros for the moments: ``dtype`` if given, else at least float32 (timm keeps fp32 state for bf16/fp16).

    The package's :func:`jaxopt_timm.transforms.state_dtype` policy applied to
    the leaf's compute dtype: a requested dtype wins, and only the default
    differs from the other primitives (float32 rather than bfloat16 for
    bfloat16 leaves, as timm's AdaBelief allocates its state).
    """
    return jax.tree.map(lambda p: jnp.zeros(p.shape, state_dtype(compute_dtype(p.dtype), dtype)), params)


class ScaleByBeliefState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_var: Any
    max_exp_avg_var: Any


def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    amsgrad: bool = False,
    *,
    rectify: bool = False,
    degenerated_to_sgd: bool = True,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""timm's AdaBelief direction (to be multiplied by ``-lr``).

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon \\
        d_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat s_t} / \sqrt{1-\beta_2^t} + \epsilon}

    with :math:`\hat s_t = \max_{k \le t} s_k` under ``amsgrad``, else :math:`s_t`.
    With ``rectify``, :math:`d_t = r_t \sqrt{1-\beta_2^t} / (1-\beta_1^t) \cdot m_t / (\sqrt{s_t} + \epsilon)`
    once :math:`\rho_t \ge 5`, and before that :math:`m_t / (1-\beta_1^t)` if
    ``degenerated_to_sgd`` else 0.

    Args:
        b1, b2: the moment decay rates.
        eps: added inside the second-moment EMA and to the denominator.
        amsgrad: normalize by the running maximum of :math:`s_t` (non-rectified step).
        rectify: RAdam's rectified step.
        degenerated_to_sgd: below the rectification threshold, take an SGD-with-momentum step.
        mu_dtype: dtype of the first moment (default: the params' dtype, at least float32, as timm).
        nu_dtype: dtype of the second moment ``exp_avg_var`` and its ``amsgrad`` maximum (default: as ``mu_dtype``).
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=_state_zeros(params, mu_dtype),
            exp_avg_var=_state_zeros(params, nu_dtype),
            max_exp_avg_var=_state_zeros(params, nu_dtype) if amsgrad else None,
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        mu = jax.tree.map(
            lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, state.exp_avg
        )
        # eps goes into the stored moment every step, as timm's in-place add does
        nu = jax.tree.map(
            lambda g, m, s: (b2 * upcast(s) + (1.0 - b2) * jnp.square(upcast(g) - upcast(m)) + eps).astype(s.dtype),
            updates,
            mu,
            state.exp_avg_var,
        )
        vmax = jax.tree.map(jnp.maximum, state.max_exp_avg_var, nu) if amsgrad else None

        if rectify:
            rs = rectified_step_size(t, b1, b2, inclusive=True)
            sgd_step = rs.sgd_step if degenerated_to_sgd else jnp.zeros_like(rs.sgd_step)

            def direction(m, s, g):
                m, s = upcast(m), upcast(s)
                adaptive = rs.adaptive_step * m / (jnp.sqrt(s) + eps)
                return jnp.where(rs.adaptive, adaptive, sgd_step * m).astype(g.dtype)

            out = jax.tree.map(direction, mu, nu, updates)
        else:
            bc1 = one_minus_pow(b1, t)
            bc2_sqrt = jnp.sqrt(one_minus_pow(b2, t))
            out = jax.tree.map(
                lambda m, s, g: ((upcast(m) / bc1) / (jnp.sqrt(upcast(s)) / bc2_sqrt + eps)).astype(g.dtype),
                mu,
                vmax if amsgrad else nu,
                updates,
            )
        return out, ScaleByBeliefState(count=count, exp_avg=mu, exp_avg_var=nu, max_exp_avg_var=vmax)

    return optax.GradientTransformation(init_fn, update_fn)
