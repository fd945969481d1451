"""LAMB: timm's ``Lamb`` (an NVIDIA FusedLAMB / NvLamb-style variant) as an optax chain.

References: You et al., 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes" (arXiv:1904.00962); Reddi et al., 2018, "On the
Convergence of Adam and Beyond"; Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay
from ..transforms import (
    add_decoupled_weight_decay, add_l2_weight_decay, cautious, resolve_max_lr, safe_increment,
    scale_by_learning_rate, scale_by_trust_ratio, tree_zeros_like,
)
from ._registry import OptimInfo

__all__ = ['clip_by_global_norm_ratio', 'ScaleByLambState', 'scale_by_lamb', 'lamb']


def clip_by_global_norm_ratio(max_norm: float) -> optax.GradientTransformation:
    """timm Lamb's global clipping: ``g <- g / max(1, ||g||_global / max_norm)`` over *all* leaves at once.

    Same math as ``optax.clip_by_global_norm`` (which multiplies by
    ``max_norm / norm``); written in timm's form so the rounding follows it.
    The norm is taken over every leaf, not per parameter group.
    """

    def update_fn(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, state
        sq = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)
        divisor = jnp.maximum(jnp.sqrt(sq) / max_norm, 1.0)
        updates = jax.tree.map(lambda g: g / divisor.astype(g.dtype), updates)
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


class ScaleByLambState(NamedTuple):
    count: jax.Array
    exp_avg: Any
    exp_avg_sq: Any


def _bias_correction(beta: Any, t: jax.Array) -> jax.Array:
    """``1 - beta**t`` as ``-expm1(t * log(beta))``: accurate in float32 where ``1 - beta**t`` is tiny."""
    if isinstance(beta, jax.core.Tracer):
        return 1.0 - jnp.asarray(beta, jnp.float32) ** t
    log_beta = math.log(beta) if beta > 0 else -math.inf
    return -jnp.expm1(t * jnp.float32(log_beta))


def scale_by_lamb(
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-6,
        *,
        bias_correction: bool = True,
        grad_averaging: bool = True,
) -> optax.GradientTransformation:
    """Lamb's Adam-style direction before decay and trust ratio.

    ``m <- b1*m + (1-b1)*g`` (``grad_averaging``) or ``m <- b1*m + g``;
    ``v <- b2*v + (1-b2)*g^2``; ``d = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)``
    with ``bc_i = 1 - b_i^t`` (1 without ``bias_correction``). Differs from
    ``optax.scale_by_adam`` in the optional bias correction and the
    non-averaged first moment.
    """

    def init_fn(params):
        return ScaleByLambState(
            count=jnp.zeros([], jnp.int32), exp_avg=tree_zeros_like(params), exp_avg_sq=tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        if bias_correction:
            t = count.astype(jnp.float32)
            bc1 = _bias_correction(b1, t)
            bc2_sqrt = jnp.sqrt(_bias_correction(b2, t))
        else:
            bc1 = bc2_sqrt = jnp.float32(1.0)
        if grad_averaging:
            mu = jax.tree.map(lambda g, m: m + (1.0 - b1) * (g - m), updates, state.exp_avg)
        else:
            mu = jax.tree.map(lambda g, m: b1 * m + g, updates, state.exp_avg)
        nu = jax.tree.map(lambda g, v: b2 * v + (1.0 - b2) * g * g, updates, state.exp_avg_sq)
        out = jax.tree.map(
            lambda m, v: (m / bc1.astype(m.dtype)) / (jnp.sqrt(v) / bc2_sqrt.astype(v.dtype) + eps), mu, nu)
        return out, ScaleByLambState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def lamb(
        learning_rate: Any = 1e-3,
        bias_correction: bool = True,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: Any = 0.01,
        grad_averaging: bool = True,
        max_grad_norm: Optional[float] = 1.0,
        trust_clip: bool = False,
        always_adapt: bool = False,
        caution: bool = False,
        decoupled_decay: bool = False,
        corrected_weight_decay: bool = False,
        *,
        lr_scale: Any = None,
        max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Lamb``: Adam direction, weight decay, layer-wise trust ratio, global grad clipping.

    .. math::
        \hat g_t &= g_t / \max(1, \|g_t\|_{global} / \text{max\_grad\_norm}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\hat g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2)\hat g_t^2 \\
        u_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon} + \lambda \theta_{t-1} \\
        r_t &= \|\theta_{t-1}\| / \|u_t\| \quad (\min(r_t, 1) \text{ with trust\_clip}) \\
        \theta_t &= \theta_{t-1} - \eta\, r_t u_t

    per leaf, with :math:`r_t = 1` where a norm is zero and on leaves whose
    weight decay is zero (unless ``always_adapt``). With ``decoupled_decay``
    the :math:`\lambda\theta` term leaves :math:`u_t` and the params are
    shrunk first, :math:`\theta' = \theta(1 - \eta\lambda)` (or
    :math:`\eta^2/\eta_{max}` with ``corrected_weight_decay``); the ratio then
    uses :math:`\|\theta'\|`, as timm's in-place order does.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        bias_correction: divide the moments by :math:`1-\beta_i^t`.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to the bias-corrected root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree); also gates the
            trust ratio per leaf.
        grad_averaging: scale the gradient by :math:`1-\beta_1` in :math:`m_t`
            (off: :math:`m_t = \beta_1 m_{t-1} + \hat g_t`).
        max_grad_norm: global-norm clipping threshold over *all* leaves, or None.
        trust_clip: LAMBC, cap the trust ratio at 1.
        always_adapt: apply the trust ratio to undecayed leaves too.
        caution: mask the direction where it disagrees in sign with the
            (clipped) gradient (Cautious Optimizers).
        decoupled_decay: decay the params directly instead of adding
            :math:`\lambda\theta` to the update.
        corrected_weight_decay: with ``decoupled_decay``, decay by
            :math:`\lambda\eta^2/\eta_{max}` (ignored otherwise, as in timm).
        lr_scale: per-leaf lr multipliers (layer decay).
        max_lr: peak lr for corrected decay (default: the float lr or the
            schedule's ``base_lr``).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 3)), 'b': jnp.zeros(2)}
        >>> tx = jt.optim.lamb(1e-3, weight_decay={'w': 0.01, 'b': 0.0})
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 3)), 'b': jnp.ones(2)}, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        As in timm (and NVIDIA's FusedLAMB), not the paper: ``eps`` defaults
        to 1e-6, gradients are clipped by their global norm (1.0) first, the
        trust ratio is unclipped by default (the paper's :math:`\phi` is the
        identity) and is skipped on undecayed leaves.
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_range('max_grad_norm', max_grad_norm, 0.0, lo_open=True, allow_none=True)
    for name, value in (('bias_correction', bias_correction), ('grad_averaging', grad_averaging),
                        ('trust_clip', trust_clip), ('always_adapt', always_adapt), ('caution', caution),
                        ('decoupled_decay', decoupled_decay), ('corrected_weight_decay', corrected_weight_decay)):
        check_bool(name, value)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    direction = scale_by_lamb(betas[0], betas[1], eps, bias_correction=bias_correction, grad_averaging=grad_averaging)
    return optax.chain(
        optax.identity() if max_grad_norm is None else clip_by_global_norm_ratio(max_grad_norm),
        cautious(direction) if caution else direction,
        optax.identity() if decoupled_decay else add_l2_weight_decay(weight_decay),
        scale_by_trust_ratio(
            weight_decay, form='lamb', trust_clip=trust_clip, always_adapt=always_adapt,
            learning_rate=learning_rate if decoupled_decay else None, lr_scale=lr_scale,
            decoupled_decay=decoupled_decay, max_lr=max_lr),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr) if decoupled_decay
        else optax.identity(),
    )


def _info(name, description, **defaults):
    return OptimInfo(
        name=name, alias=lamb, timm_class='timm.optim.Lamb', description=description, has_betas=True,
        defaults=defaults)


OPTIMIZERS = (
    _info('lamb', 'Layer-wise Adaptive Moments for batch optimization'),
    _info('lambc', 'LAMB with trust ratio clipping for stability', trust_clip=True),
    _info('lambw', 'LAMB with decoupled weight decay', decoupled_decay=True),
    _info('lambcw', 'LAMB with trust ratio clipping for stability and decoupled decay',
          trust_clip=True, decoupled_decay=True),
    _info('lambcd', 'LAMB with corrected decoupled weight decay (lr²/max_lr scaling)',
          decoupled_decay=True, corrected_weight_decay=True),
    _info('clamb', 'Cautious LAMB', caution=True),
    _info('clambw', 'Cautious LAMB with decoupled weight decay', caution=True, decoupled_decay=True),
)
