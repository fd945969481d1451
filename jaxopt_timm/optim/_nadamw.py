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

import optax

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    add_decoupled_weight_decay, cautious, resolve_max_lr, scale_by_adam, scale_by_learning_rate,
)
from ._registry import OptimInfo

__all__ = ['nadamw']


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
        nu_dtype: Optional[Any] = None,
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
    (StableAdamW; the decay is not clipped). See :func:`jaxopt_timm.transforms.scale_by_adam`.

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
        mu_dtype: dtype of the first moment (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment (default: the params' dtype; float32 for float16 params).

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
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    direction = scale_by_adam(
        betas[0], betas[1], eps, nesterov=True, clipping_threshold=clipping_threshold, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype)
    return optax.chain(
        optax.scale(-1.0) if maximize else optax.identity(),
        cautious(direction) if caution else direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
    )


_DESCRIPTION = 'Adam with Nesterov momentum and decoupled weight decay, mlcommons/algorithmic-efficiency impl'

OPTIMIZERS = (
    OptimInfo(name='nadamw', alias=nadamw, timm_class='timm.optim.NAdamW', description=_DESCRIPTION,
              has_betas=True,
              packing='packed', benchmarked=True,
              optax_equivalent=lambda lr, wd: optax.nadamw(lr, weight_decay=wd)),
    OptimInfo(name='cnadamw', alias=nadamw, timm_class='timm.optim.NAdamW', description='Cautious NAdamW',
              has_betas=True, defaults={'caution': True},
              packing='packed'),
    OptimInfo(name='nadamc', alias=nadamw, timm_class='timm.optim.NAdamW',
              description='NAdamW with corrected weight decay (lr²/max_lr scaling)', has_betas=True,
              defaults={'corrected_weight_decay': True},
              packing='packed'),
    OptimInfo(name='cnadamc', alias=nadamw, timm_class='timm.optim.NAdamW',
              description='Cautious NAdamW with corrected weight decay (lr²/max_lr scaling)', has_betas=True,
              defaults={'caution': True, 'corrected_weight_decay': True},
              packing='packed'),
)
