"""``torch.optim.RMSprop`` as timm registers it (``rmsprop``).

References: Hinton, 2012, Coursera lecture 6e (RMSprop); Graves, 2013,
"Generating Sequences With Recurrent Neural Networks" (arXiv:1308.0850, the
centered variant). Weight decay is torch's L2, added to the gradient before
the direction.
"""

from __future__ import annotations

from typing import Any

import optax

from .._validate import check_bool, check_lr, check_range, check_weight_decay
from ..transforms import add_l2_weight_decay, negate_if, scale_by_learning_rate, tree_any_nonzero, with_state_dtype
from ._registry import OptimInfo

__all__ = ['rmsprop']


def rmsprop(
    learning_rate: Any = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.RMSprop``: gradients divided by a running root mean square, optional momentum.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \quad v_t = \alpha v_{t-1} + (1-\alpha) g_t^2 \\
        d_t &= \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon} \text{ (centered, }
            \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \text{) else } \frac{g_t}{\sqrt{v_t} + \epsilon} \\
        b_t &= \mu b_{t-1} + d_t \quad (b_0 = 0), \qquad \theta_t = \theta_{t-1} - \eta\, b_t

    Unlike timm's ``RMSpropTF`` (``rmsproptf``), :math:`\epsilon` is outside
    the root, the average starts at zero and the lr stays out of the momentum
    buffer, so the direction is optax's ``scale_by_rms`` /
    ``scale_by_stddev`` with ``eps_in_sqrt=False`` followed by ``trace``, run
    by :func:`jaxopt_timm.transforms.with_state_dtype` (float32 state for
    float16 params).

    Args:
        learning_rate, maximize, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        alpha: smoothing constant :math:`\alpha` in [0, 1) (timm's registry binds 0.9; torch's default is 0.99).
            torch accepts any alpha >= 0, but at 1 the average stays at its zero start (every step is
            :math:`g/\epsilon`) and above 1 the second moment turns negative and the step NaNs.
        eps: added to the root mean square.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        momentum: momentum factor :math:`\mu` in [0, 1] (timm's factory defaults it to 0.9; torch accepts any
            value >= 0, but above 1 the buffer grows like :math:`\mu^t` and overflows).
        centered: normalise by the estimated variance instead of the raw second moment.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.rmsprop(1e-2, alpha=0.9, momentum=0.9, centered=True)
    """
    check_lr(learning_rate)
    check_range('alpha', alpha, 0.0, 1.0, hi_open=True)
    check_range('eps', eps, 0.0)
    check_weight_decay(weight_decay)
    check_range('momentum', momentum, 0.0, 1.0)  # above 1 the buffer grows like momentum**t (torch's overflows)
    check_bool('centered', centered)
    check_bool('maximize', maximize)
    if centered:
        direction = optax.scale_by_stddev(decay=alpha, eps=eps, eps_in_sqrt=False)
    else:
        direction = optax.scale_by_rms(decay=alpha, eps=eps, eps_in_sqrt=False)
    if tree_any_nonzero(momentum):
        direction = optax.chain(direction, optax.trace(decay=momentum))
    return optax.chain(
        negate_if(maximize),
        add_l2_weight_decay(weight_decay),
        with_state_dtype(direction),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='rmsprop',
        alias=rmsprop,
        timm_class='torch.optim.RMSprop',
        description='torch.optim.RMSprop, Root Mean Square Propagation',
        has_momentum=True,
        defaults={'alpha': 0.9},
        packing='packed',
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.chain(
            optax.add_decayed_weights(wd), optax.rmsprop(lr, decay=0.9, momentum=0.9)
        ),
    ),
)
