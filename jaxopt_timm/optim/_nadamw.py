"""NAdamW: Adam with a Nesterov look-ahead numerator and decoupled weight decay (timm's ``NAdamW``).

The simplified NAdam of Dozat, 2016, "Incorporating Nesterov Momentum into
Adam", as tabulated in Choi et al., 2019, "On Empirical Comparisons of
Optimizers for Deep Learning" (arXiv:1910.05446, Table 1) and used by the
mlcommons algorithmic-efficiency baseline; decoupled decay from Loshchilov &
Hutter, 2019 (arXiv:1711.05101); Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285;
RMS update clipping from Wortsman et al., 2023, "Stable and low-precision
training for large-scale vision-language models" (StableAdamW,
arXiv:2304.13013).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay
from ..transforms import (
    ScaleByAdamState, add_decoupled_weight_decay, cautious, one_minus_pow, resolve_max_lr, safe_increment,
    scale_by_learning_rate, tree_zeros_like,
)
from ._registry import OptimInfo

__all__ = ['nadamw']


def rms_clip_factor(grad: jax.Array, denom: jax.Array, clipping_threshold: float) -> jax.Array:
    """StableAdamW's per-tensor clip: ``max(1, rms(grad / denom) / threshold)``, to divide the update by.

    timm scales the Adam denominator in place by this factor (its
    ``_rms_clip_denom_``), which divides the whole update of the tensor by it.
    """
    ratio = (grad / denom).astype(jnp.float32)
    rms = jnp.sqrt(jnp.sum(ratio * ratio)) / jnp.sqrt(jnp.float32(max(grad.size, 1)))
    return jnp.maximum(rms / jnp.float32(clipping_threshold), jnp.float32(1.0))


def scale_by_clipped_adam(
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        *,
        nesterov: bool = False,
        amsgrad: bool = False,
        clipping_threshold: Optional[float] = None,
        mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""Adam's direction with timm's two extensions: a Nesterov numerator and StableAdamW RMS clipping.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \tilde m_t &= \beta_1 m_t + (1-\beta_1) g_t \text{ (nesterov) else } m_t, \quad
            D_t = \sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon \\
        d_t &= \frac{\tilde m_t / (1-\beta_1^t)}{D_t \cdot \max(1, \mathrm{rms}(g_t / D_t) / \tau)}

    The clip (per tensor, :math:`\tau` = ``clipping_threshold``, off when
    None) is what optax lacks; without it and without Nesterov this is
    :func:`jaxopt_timm.transforms.scale_by_adam` (same state, same amsgrad
    convention). The Nesterov numerator is timm's NAdamW look-ahead, not
    torch's NAdam momentum schedule (see ``scale_by_nadam``).
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
        bc1 = one_minus_pow(b1, t)
        bc2_sqrt = jnp.sqrt(one_minus_pow(b2, t))
        mu = jax.tree.map(lambda g, m: (m + (1.0 - b1) * (g - m)).astype(m.dtype), updates, state.exp_avg)
        nu = jax.tree.map(lambda g, v: b2 * v + (1.0 - b2) * g * g, updates, state.exp_avg_sq)
        vmax = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, nu) if amsgrad else None

        def direction(g, m, v):
            numer = m + (1.0 - b1) * (g - m) if nesterov else m
            denom = jnp.sqrt(v) / bc2_sqrt + eps
            if clipping_threshold is not None:
                denom = denom * rms_clip_factor(g, denom, clipping_threshold).astype(denom.dtype)
            return ((numer / bc1) / denom).astype(g.dtype)

        out = jax.tree.map(direction, updates, mu, vmax if amsgrad else nu)
        return out, ScaleByAdamState(count=count, exp_avg=mu, exp_avg_sq=nu, max_exp_avg_sq=vmax)

    return optax.GradientTransformation(init_fn, update_fn)


def nadamw(
        learning_rate: Any = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: Any = 1e-2,
        caution: bool = False,
        corrected_weight_decay: bool = False,
        maximize: bool = False,
        clipping_threshold: Optional[float] = None,
        *,
        lr_scale: Any = None,
        max_lr: Optional[float] = None,
        mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``NAdamW``: AdamW whose numerator takes one more Nesterov look-ahead step.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1}(1 - c_t\lambda)
            - \eta_t \frac{(\beta_1 m_t + (1-\beta_1) g_t) / (1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},
        \qquad c_t = \eta_t \text{ or } \eta_t^2/\eta_{max} \text{ (corrected)}

    ``caution`` masks the update with
    :func:`jaxopt_timm.transforms.caution_mask`; ``clipping_threshold``
    divides each tensor's update by ``max(1, rms(g / denom) / threshold)``
    (StableAdamW; the decay is not clipped). See :func:`scale_by_clipped_adam`.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to the bias-corrected root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        caution: mask the update where it disagrees in sign with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta^2/\eta_{max}` instead of :math:`\lambda\eta`.
        maximize: ascend instead of descend.
        clipping_threshold: RMS clipping threshold (> 0; 1.0 in the StableAdamW paper), None disables.
        lr_scale: per-leaf lr multipliers (layer decay).
        max_lr: peak lr for corrected decay (default: the float lr or the schedule's ``base_lr``).
        mu_dtype: dtype of the first moment (default: the params' dtype).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.nadamw(1e-3, weight_decay=0.05, caution=True, clipping_threshold=1.0)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        This is not ``torch.optim.NAdam(decoupled_weight_decay=True)``: there is
        no warming momentum schedule, only the look-ahead numerator.
        Registered as ``nadamw``, ``cnadamw`` (caution), ``nadamc``
        (corrected decay) and ``cnadamc`` (both).
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    for name, value in (('caution', caution), ('corrected_weight_decay', corrected_weight_decay),
                        ('maximize', maximize)):
        check_bool(name, value)
    check_range('clipping_threshold', clipping_threshold, 0.0, lo_open=True, allow_none=True)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = scale_by_clipped_adam(
        betas[0], betas[1], eps, nesterov=True, clipping_threshold=clipping_threshold, mu_dtype=mu_dtype)
    return optax.chain(
        optax.scale(-1.0) if maximize else optax.identity(),
        cautious(direction) if caution else direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
    )


_DESCRIPTION = 'Adam with Nesterov momentum and decoupled weight decay, mlcommons/algorithmic-efficiency impl'

OPTIMIZERS = (
    OptimInfo(name='nadamw', alias=nadamw, timm_class='timm.optim.NAdamW', description=_DESCRIPTION,
              has_betas=True),
    OptimInfo(name='cnadamw', alias=nadamw, timm_class='timm.optim.NAdamW', description='Cautious NAdamW',
              has_betas=True, defaults={'caution': True}),
    OptimInfo(name='nadamc', alias=nadamw, timm_class='timm.optim.NAdamW',
              description='NAdamW with corrected weight decay (lr²/max_lr scaling)', has_betas=True,
              defaults={'corrected_weight_decay': True}),
    OptimInfo(name='cnadamc', alias=nadamw, timm_class='timm.optim.NAdamW',
              description='Cautious NAdamW with corrected weight decay (lr²/max_lr scaling)', has_betas=True,
              defaults={'caution': True, 'corrected_weight_decay': True}),
)
