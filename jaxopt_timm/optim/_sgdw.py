"""SGDW: SGD with momentum and decoupled weight decay (timm's ``SGDW``).

References: Loshchilov & Hutter, 2019, "Decoupled Weight Decay
Regularization" (arXiv:1711.05101); Sutskever et al., 2013, "On the
importance of initialization and momentum in deep learning" (Nesterov
momentum); Liang et al., 2024, "Cautious Optimizers" (arXiv:2411.16085);
corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import optax

from .._validate import check_bool, check_nesterov, check_lr, check_range, check_weight_decay
from ..transforms import decay_chain, resolve_max_lr, scale_by_torch_momentum, tree_any_nonzero
from ._registry import OptimInfo

__all__ = ['sgdw']


def sgdw(
    learning_rate: Any = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: Any = 0.0,
    nesterov: bool = False,
    *,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``SGDW``: torch's SGD momentum with the weight decay decoupled from the gradient.

    .. math::
        b_t &= \mu b_{t-1} + (1 - \tau) g_t \quad (b_1 = g_1), \qquad
            d_t = g_t + \mu b_t \text{ if nesterov else } b_t \\
        \theta_t &= \theta_{t-1}(1 - c_t\lambda) - \eta_t\, d_t, \qquad
            c_t = \eta_t \text{ or } \eta_t^2 / \eta_{max} \text{ (corrected)}

    ``caution`` multiplies :math:`d_t` by
    :func:`jaxopt_timm.transforms.caution_mask` against :math:`g_t`; as in
    timm it only acts when ``momentum > 0`` (without momentum the direction
    is the gradient itself, which always agrees with it).

    Args:
        learning_rate, maximize, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        momentum: momentum factor :math:`\mu` in [0, 1] (timm's factory defaults it to 0.9; above 1 the buffer
            grows like :math:`\mu^t` and overflows, though timm accepts it).
        dampening: dampening :math:`\tau` of the momentum, in [0, 1].
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        caution: mask the update where it disagrees in sign with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta^2/\eta_{max}` instead of :math:`\lambda\eta`.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.sgdw(0.1, momentum=0.9, weight_decay=1e-4, nesterov=True, caution=True)

    Notes:
        Registered as ``sgdw`` (alias ``nesterovw``), ``csgdw`` (caution),
        ``sgdc`` (corrected decay) and ``csgdc`` (both), all with Nesterov on.
    """
    check_lr(learning_rate)
    check_range('momentum', momentum, 0.0, 1.0)  # above 1 the buffer grows like momentum**t (torch's overflows)
    check_range('dampening', dampening, 0.0, 1.0)
    check_weight_decay(weight_decay)
    for name, value in (
        ('nesterov', nesterov),
        ('caution', caution),
        ('corrected_weight_decay', corrected_weight_decay),
        ('maximize', maximize),
    ):
        check_bool(name, value)
    check_nesterov(nesterov, momentum, dampening)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = scale_by_torch_momentum(momentum, dampening, nesterov)
    # as in timm, caution only acts with momentum (without it the direction is the gradient itself)
    return decay_chain(
        direction,
        learning_rate,
        weight_decay,
        lr_scale,
        max_lr,
        maximize=maximize,
        caution=caution and tree_any_nonzero(momentum),
    )


_record = functools.partial(
    OptimInfo,
    alias=sgdw,
    timm_class='timm.optim.SGDW',
    has_eps=False,
    has_momentum=True,
    packing='packed',
    default_lr=0.05,
)

OPTIMIZERS = (
    _record(
        name='sgdw',
        description='SGD with decoupled weight decay and Nesterov momentum',
        defaults={'nesterov': True},
        benchmarked=True,
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.chain(
            optax.sgd(lr, momentum=0.9, nesterov=True), optax.add_decayed_weights(-lr * wd)
        ),
    ),
    _record(
        name='csgdw',
        description='Cautious SGD with decoupled weight decay and Nesterov momentum',
        defaults={'nesterov': True, 'caution': True},
    ),
    _record(
        name='sgdc',
        description='SGD with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'nesterov': True, 'corrected_weight_decay': True},
        complex_params=True,
    ),
    _record(
        name='csgdc',
        description='Cautious SGD with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'nesterov': True, 'caution': True, 'corrected_weight_decay': True},
    ),
)
ALIASES = {'nesterovw': 'sgdw'}
