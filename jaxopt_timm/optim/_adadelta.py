"""``torch.optim.Adadelta`` as timm registers it (``adadelta``).

Reference: Zeiler, 2012, "ADADELTA: An Adaptive Learning Rate Method"
(arXiv:1212.5701). Weight decay is torch's L2, added to the gradient before
the direction.
"""

from __future__ import annotations

from typing import Any

import optax

from .._validate import check_bool, check_lr, check_range, check_weight_decay
from ..transforms import add_l2_weight_decay, negate_if, scale_by_learning_rate, with_state_dtype
from ._registry import OptimInfo

__all__ = ['adadelta']


def adadelta(
    learning_rate: Any = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: Any = 0.0,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adadelta``: step sizes from running windows of squared gradients and squared steps.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1} \\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2, \quad
            \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}} g_t, \quad
            u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \eta\Delta_t

    The direction is ``optax.scale_by_adadelta``, whose math is torch's, run
    by :func:`jaxopt_timm.transforms.with_state_dtype` so its state follows the
    package's dtype policy (float32 for float16 params).

    Args:
        maximize, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        learning_rate: float or schedule ``step -> lr`` (torch's default 1.0, the paper's lr-free form).
        rho: decay :math:`\rho` of both running averages, in [0, 1].
        eps: added inside both square roots.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adadelta(1.0, rho=0.9)
    """
    check_lr(learning_rate)
    check_range('rho', rho, 0.0, 1.0)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_bool('maximize', maximize)
    return optax.chain(
        negate_if(maximize),
        add_l2_weight_decay(weight_decay),
        with_state_dtype(optax.scale_by_adadelta(rho, eps)),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='adadelta',
        alias=adadelta,
        timm_class='torch.optim.Adadelta',
        description='torch.optim.Adadelta, Adapts learning rates based on running windows of gradients',
        packing='packed',
        default_lr=1.0,
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.adadelta(lr, weight_decay=wd),
    ),
)
