"""Lion: timm's ``Lion`` (``lion``, ``clion``, ``lionc``, ``clionc``).

Reference: Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"
(arXiv:2302.06675); caution from Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import optax

from .._validate import check_betas, check_bool, check_lr, check_weight_decay
from ..transforms import add_decoupled_weight_decay, cautious, resolve_max_lr, scale_by_learning_rate
from ._registry import OptimInfo

__all__ = ['lion']


def lion(
        learning_rate: Any = 1e-4,
        betas: Tuple[float, float] = (0.9, 0.99),
        weight_decay: Any = 0.0,
        caution: bool = False,
        corrected_weight_decay: bool = False,
        maximize: bool = False,
        *,
        lr_scale: Any = None,
        max_lr: Optional[float] = None,
        mu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Lion``: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        u_t &= \operatorname{sign}(\beta_1 m_{t-1} + (1-\beta_1) g_t) \\
        \theta_t &= \theta_{t-1}(1 - c_t\lambda) - \eta_t u_t \\
        m_t &= \beta_2 m_{t-1} + (1-\beta_2) g_t

    with :math:`c_t = \eta_t` (:math:`\eta_t^2/\eta_{max}` with
    ``corrected_weight_decay``). The direction is ``optax.scale_by_lion``
    (the same math); ``caution`` masks :math:`u_t` with
    :func:`jaxopt_timm.transforms.caution_mask` against :math:`g_t`.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        caution: mask update components whose sign disagrees with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta_t^2/\eta_{max}`.
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).
        max_lr: peak lr for corrected decay (default: the float lr or a package schedule's ``base_lr``).
        mu_dtype: dtype of the momentum (default: the params' dtype).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.lion(1e-4, weight_decay=1.0)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        The paper recommends an lr 3-10x smaller and a weight decay 3-10x
        larger than AdamW's; timm's defaults (``lr=1e-4``, no decay) are kept.
    """
    check_lr(learning_rate)
    check_betas(betas)
    check_weight_decay(weight_decay)
    for name, value in (('caution', caution), ('corrected_weight_decay', corrected_weight_decay),
                        ('maximize', maximize)):
        check_bool(name, value)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = optax.scale_by_lion(betas[0], betas[1], mu_dtype=mu_dtype)
    return optax.chain(
        optax.scale(-1.0) if maximize else optax.identity(),
        cautious(direction) if caution else direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
    )


OPTIMIZERS = (
    OptimInfo(
        name='lion', alias=lion, timm_class='timm.optim.Lion',
        description='Evolved Sign Momentum optimizer for improved convergence', has_eps=False, has_betas=True),
    OptimInfo(
        name='clion', alias=lion, timm_class='timm.optim.Lion',
        description='Cautious Lion', has_eps=False, has_betas=True, defaults={'caution': True}),
    OptimInfo(
        name='lionc', alias=lion, timm_class='timm.optim.Lion',
        description='Lion with corrected weight decay (lr²/max_lr scaling)', has_eps=False, has_betas=True,
        defaults={'corrected_weight_decay': True}),
    OptimInfo(
        name='clionc', alias=lion, timm_class='timm.optim.Lion',
        description='Cautious Lion with corrected weight decay (lr²/max_lr scaling)', has_eps=False,
        has_betas=True, defaults={'caution': True, 'corrected_weight_decay': True}),
)
