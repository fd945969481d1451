"""``torch.optim.Adam`` as timm registers it (``adam``).

References: Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization"
(arXiv:1412.6980); Reddi et al., 2018, "On the Convergence of Adam and Beyond"
(amsgrad). Weight decay is torch's: L2, added to the gradient before the
direction, or decoupled with ``decoupled_weight_decay``, as torch allows.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import optax

from ..transforms import adam_args, decay_chain, scale_by_adam
from ._registry import OptimInfo

__all__ = ['adam']


def adam(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adam``: Adam with L2 weight decay (torch's default) and optional amsgrad.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1}
            - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    With ``amsgrad`` the running maximum of the raw :math:`v_t` replaces
    :math:`v_t` (torch's convention, see
    :func:`jaxopt_timm.transforms.scale_by_adam`). With
    ``decoupled_weight_decay`` the decay is AdamW's
    :math:`\theta \mathrel{*}= 1 - \eta\lambda` instead.

    Args:
        learning_rate, betas, maximize, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree), L2 unless decoupled.
        amsgrad: use the running maximum of the second moment.
        decoupled_weight_decay: AdamW-style decay (torch's Adam flag of the same name).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adam(1e-3, weight_decay=1e-4, amsgrad=True)
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
    )
    direction = scale_by_adam(betas[0], betas[1], eps, amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return decay_chain(
        direction, learning_rate, weight_decay, lr_scale, maximize=maximize, l2=not decoupled_weight_decay
    )


OPTIMIZERS = (
    OptimInfo(
        name='adam',
        alias=adam,
        timm_class='torch.optim.Adam',
        description='torch.optim.Adam, Adaptive Moment Estimation',
        has_betas=True,
        packing='packed',
        benchmarked=True,
        torch_fused=True,
        complex_params=True,
        state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq', 'max_exp_avg_sq')},
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)),
    ),
)
