"""SGD with momentum / Nesterov momentum: ``torch.optim.SGD`` as timm registers it.

Names: ``sgd`` and its alias ``nesterov`` (Nesterov on), ``momentum``
(classical momentum). Reference: Sutskever et al., 2013, "On the importance
of initialization and momentum in deep learning".
"""

from __future__ import annotations

import functools
from typing import Any

import optax

from .._validate import check_bool, check_nesterov, check_lr, check_range, check_weight_decay
from ..transforms import negate_if, scale_by_learning_rate, scale_by_torch_momentum
from ._registry import OptimInfo

__all__ = ['sgd']


def sgd(
    learning_rate: Any = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: Any = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.SGD``: L2 weight decay, torch-style momentum buffer, optional Nesterov.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
        b_t &= \mu b_{t-1} + (1 - \tau) g_t \quad (b_1 = g_1) \\
        \theta_t &= \theta_{t-1} - \eta \, (g_t + \mu b_t \text{ if nesterov else } b_t)

    Args:
        learning_rate, maximize: as for every alias (see :mod:`jaxopt_timm.optim`).
        momentum: momentum factor :math:`\mu` in [0, 1] (timm's factory defaults it to 0.9; above 1 the buffer
            grows like :math:`\mu^t` and overflows, though torch accepts it).
        dampening: dampening :math:`\tau` of the momentum.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        lr_scale: per-leaf lr multipliers (timm's ``lr_scale`` param groups).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.sgd(0.1, momentum=0.9, nesterov=True)
    """
    check_lr(learning_rate)
    check_range('momentum', momentum, 0.0, 1.0)  # above 1 the buffer grows like momentum**t (torch's overflows)
    check_range('dampening', dampening, 0.0, 1.0)
    check_weight_decay(weight_decay)
    check_bool('nesterov', nesterov)
    check_nesterov(nesterov, momentum, dampening)
    return optax.chain(
        negate_if(maximize),
        scale_by_torch_momentum(momentum, dampening, nesterov, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


_record = functools.partial(
    OptimInfo,
    alias=sgd,
    timm_class='torch.optim.SGD',
    has_eps=False,
    has_momentum=True,
    packing='packed',
    default_lr=0.05,
    benchmarked=True,
    torch_fused=True,
    complex_params=True,
)

OPTIMIZERS = (
    _record(
        name='sgd',
        description='torch.Optim Stochastic Gradient Descent (SGD) with Nesterov momentum',
        defaults={'nesterov': True},
        optax_equivalent=lambda lr, wd: optax.chain(
            optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9, nesterov=True)
        ),
    ),
    _record(
        name='momentum',
        description='torch.Optim Stochastic Gradient Descent (SGD) with classical momentum',
        defaults={'nesterov': False},
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
    ),
)
ALIASES = {'nesterov': 'sgd'}
