"""AdEMAMix (``pytorch-optimizer`` 4.1.0: ``AdEMAMix``): Adam plus a slow gradient EMA.

Reference: Pagliardini, Ablin & Grangier, 2024, "The AdEMAMix Optimizer:
Better, Faster, Older" (arXiv:2409.03137).

A second, slow first moment ``m_slow`` (decay ``beta3``, close to 1) is added
to Adam's numerator with weight ``alpha``::

    m = lerp(m, g, 1 - b1),  v = b2 v + (1 - b2) g^2,  m_slow = lerp(m_slow, g, 1 - b3_t)
    p <- p - lr (m / (1 - b1^t) + alpha_t m_slow) / (sqrt(v) / sqrt(1 - b2^t) + eps)

``t_alpha_beta3`` warms both up over that many steps: ``alpha_t = min(t alpha / T,
alpha)`` and ``b3_t`` moves from ``b1`` to ``b3`` along the reference's
log-space interpolation. Weight decay is L2 (added to the gradient) by
default, decoupled with ``weight_decouple`` (``p (1 - wd lr)``, or
``p (1 - wd)`` with ``fixed_decay``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib  # noqa: F401  (the benchmark's optax counterpart)

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    add_decoupled_weight_decay,
    add_l2_weight_decay,
    compute_dtype,
    moments_init,
    negate_if,
    pow_bias_correction,
    safe_increment,
    scale_by_learning_rate,
    state_zeros,
    torch_lerp,
    torch_lerp_rounded_weight,
    tree_unzip,
)
from ._registry import OptimInfo

__all__ = ['ademamix', 'ScaleByAdemamixState']


class ScaleByAdemamixState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any
    exp_avg_slow: Any


def _beta3_at(t: jax.Array, b1: float, b3: float, horizon: Optional[float]) -> Any:
    """The slow decay at step ``t``: ``b3``, or its warmup from ``b1`` (interpolated in log-log space)."""
    if horizon is None:
        return b3
    log1, log3 = math.log(b1), math.log(b3)
    frac = t / jnp.asarray(horizon, jnp.float32)
    return jnp.minimum(jnp.exp(log1 * log3 / ((1.0 - frac) * log3 + frac * log1)), b3)


def scale_by_ademamix(
    b1: float,
    b2: float,
    b3: float,
    alpha: float,
    t_alpha_beta3: Optional[float],
    eps: float,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> optax.GradientTransformation:
    """AdEMAMix's direction ``(m / bc1 + alpha_t m_slow) / (sqrt(v) / sqrt(bc2) + eps)`` (no lr, no decay)."""
    init_moments = moments_init(
        ScaleByAdemamixState, mu_dtype, nu_dtype, exp_avg_slow=lambda params: state_zeros(params, mu_dtype)
    )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1 = pow_bias_correction(b1, t)
        bc2_sqrt = jnp.sqrt(pow_bias_correction(b2, t))
        alpha_t = jnp.asarray(alpha, jnp.float32)
        if t_alpha_beta3 is not None:
            alpha_t = jnp.minimum(t * alpha_t / jnp.asarray(t_alpha_beta3, jnp.float32), alpha_t)
        b3_t = _beta3_at(t, b1, b3, t_alpha_beta3)

        def leaf(g_in, m_in, v_in, s_in):
            cdt = compute_dtype(g_in.dtype)
            g = g_in.astype(cdt)
            m = torch_lerp(m_in.astype(cdt), g, 1.0 - b1)
            v = v_in.astype(cdt) * b2 + g * g * (1.0 - b2)
            if t_alpha_beta3 is None:
                s = torch_lerp(s_in.astype(cdt), g, 1.0 - b3)
            else:
                s = torch_lerp_rounded_weight(s_in.astype(cdt), g, (1.0 - b3_t).astype(cdt))
            denom = jnp.sqrt(v) / bc2_sqrt.astype(cdt) + jnp.asarray(eps, cdt)
            direction = (m / bc1.astype(cdt) + s * jnp.asarray(alpha_t, cdt)) / denom
            return direction.astype(g_in.dtype), m.astype(m_in.dtype), v.astype(v_in.dtype), s.astype(s_in.dtype)

        out = jax.tree.map(leaf, updates, state.exp_avg, state.exp_avg_sq, state.exp_avg_slow)
        direction, m, v, s = tree_unzip(out, updates, 4)
        return direction, ScaleByAdemamixState(count=count, exp_avg=m, exp_avg_sq=v, exp_avg_slow=s)

    return optax.GradientTransformation(init_moments, update_fn)


def ademamix(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float, float] = (0.9, 0.999, 0.9999),
    weight_decay: Any = 0.0,
    weight_decouple: bool = False,
    fixed_decay: bool = False,
    alpha: float = 5.0,
    t_alpha_beta3: Optional[float] = None,
    eps: float = 1e-8,
    maximize: bool = False,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``pytorch_optimizer.AdEMAMix``: Adam with a slow EMA of the gradient added (see the module docstring).

    Args:
        learning_rate, maximize, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`);
            ``mu_dtype`` sets both first moments.
        betas: ``(b1, b2, b3)``: the fast moment's, the second moment's (each in [0, 1)) and the slow
            moment's decay (in [0, 1]; > 0 with ``t_alpha_beta3``).
        weight_decay: L2 added to the gradient, or decoupled with ``weight_decouple`` (float or per-leaf tree).
        weight_decouple: decay the params (AdamW style) instead of the gradient.
        fixed_decay: decoupled decay not scaled by the lr.
        alpha: weight of the slow moment, >= 0.
        t_alpha_beta3: steps over which ``alpha`` and ``b3`` warm up (None: no warmup), > 0.
        eps: added to the bias-corrected root second moment, >= 0.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> tx = jt.optim.ademamix(1e-3, alpha=5.0, t_alpha_beta3=10_000)
        >>> state = tx.init({'w': jnp.ones(3)})
    """
    check_lr(learning_rate)
    check_betas(betas, num=3, hi_open=False)  # the reference: b1, b2 in [0, 1), b3 in [0, 1]
    check_range('betas[0]', betas[0], 0.0, 1.0, hi_open=True)
    check_range('betas[1]', betas[1], 0.0, 1.0, hi_open=True)
    check_weight_decay(weight_decay)
    for name, value in (('weight_decouple', weight_decouple), ('fixed_decay', fixed_decay), ('maximize', maximize)):
        check_bool(name, value)
    check_range('alpha', alpha, 0.0)
    check_range('t_alpha_beta3', t_alpha_beta3, 0.0, lo_open=True, allow_none=True)
    if t_alpha_beta3 is not None:
        # the warmup interpolates log(b1) and log(b3): both must be finite
        check_range('betas[0]', betas[0], 0.0, 1.0, lo_open=True, hi_open=True)
        check_range('betas[2]', betas[2], 0.0, 1.0, lo_open=True, hi_open=True)
    check_range('eps', eps, 0.0)
    b1, b2, b3 = (float(b) for b in betas)
    direction = scale_by_ademamix(
        b1, b2, b3, alpha, t_alpha_beta3, eps, resolve_dtype('mu_dtype', mu_dtype), resolve_dtype('nu_dtype', nu_dtype)
    )
    return optax.with_extra_args_support(
        optax.chain(
            negate_if(maximize),
            optax.identity() if weight_decouple else add_l2_weight_decay(weight_decay),
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
            add_decoupled_weight_decay(weight_decay, None if fixed_decay else learning_rate, lr_scale)
            if weight_decouple
            else optax.identity(),
        )
    )


OPTIMIZERS = (
    OptimInfo(
        name='ademamix',
        alias=ademamix,
        source='pytorch-optimizer 4.1.0',
        timm_class='pytorch_optimizer.AdEMAMix',
        has_betas=True,
        num_betas=3,
        packing='packed',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.contrib.ademamix(lr, weight_decay=wd),
        description='AdEMAMix, Adam with a mixture of a fast and a slow gradient EMA',
        state_dtypes={'mu_dtype': ('exp_avg', 'exp_avg_slow'), 'nu_dtype': ('exp_avg_sq',)},
    ),
)
