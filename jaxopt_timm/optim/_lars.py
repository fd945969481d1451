"""LARS / LARC: timm's ``Lars`` (SGD with a layer-wise trust ratio) as an optax chain.

References: You et al., 2017, "Large Batch Training of Convolutional Networks"
(arXiv:1708.03888); LARC clipping as in NVIDIA apex's ``LARC``; momentum as
``torch.optim.SGD`` (Sutskever et al., 2013).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from .._validate import check_bool, check_nesterov, check_lr, check_range, check_weight_decay
from ..transforms import scale_by_learning_rate, scale_by_torch_momentum, scale_by_trust_ratio
from ._registry import OptimInfo

__all__ = ['lars']


def lars(
    learning_rate: Any = 1.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: Any = 0.0,
    nesterov: bool = False,
    trust_coeff: float = 0.001,
    eps: float = 1e-8,
    trust_clip: bool = False,
    always_adapt: bool = False,
    *,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Lars``: per-leaf trust ratio (LARS, or LARC with ``trust_clip``) then torch SGD momentum.

    .. math::
        r_t &= c \, \frac{\|\theta_{t-1}\|}{\|g_t\| + \lambda \|\theta_{t-1}\| + \epsilon}
              \quad (\min(r_t / \eta, 1) \text{ with trust\_clip}) \\
        \tilde g_t &= r_t (g_t + \lambda \theta_{t-1}) \\
        b_t &= \mu b_{t-1} + (1 - \tau) \tilde g_t \quad (b_1 = \tilde g_1) \\
        \theta_t &= \theta_{t-1} - \eta\, (\tilde g_t + \mu b_t \text{ if nesterov else } b_t)

    per leaf, with :math:`r_t = 1` where a norm is zero. Leaves whose weight
    decay is zero skip the ratio (and the decay) unless ``always_adapt``.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        momentum: momentum factor :math:`\mu` in [0, 1] (timm's factory defaults it to 0.9; above 1 the buffer
            grows like :math:`\mu^t` and overflows, though timm accepts it).
        dampening: dampening :math:`\tau` of the momentum.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree); also
            gates the trust ratio per leaf.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        trust_coeff: trust coefficient :math:`c`.
        eps: added to the ratio's denominator.
        trust_clip: LARC, scale by :math:`\min(r_t/\eta, 1)` with the group lr,
            so the effective lr never exceeds :math:`\eta`.
        always_adapt: apply the ratio to undecayed leaves too.
        lr_scale: per-leaf lr multipliers (layer decay); LARC divides by the
            scaled group lr.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.lars(0.1, momentum=0.9, weight_decay=1e-4, trust_clip=True)

    Notes:
        As in timm, ``lr`` defaults to 1.0 (the trust ratio with
        ``trust_coeff=0.001`` sets the scale) and the ratio is only applied on
        decayed leaves by default, the paper's exclusion of biases and norms.
    """
    check_lr(learning_rate)
    check_range('momentum', momentum, 0.0, 1.0)  # above 1 the buffer grows like momentum**t (torch's overflows)
    check_range('dampening', dampening, 0.0, 1.0)
    check_weight_decay(weight_decay)
    check_bool('nesterov', nesterov)
    check_range('trust_coeff', trust_coeff, 0.0, lo_open=True)
    check_range('eps', eps, 0.0)
    check_bool('trust_clip', trust_clip)
    check_bool('always_adapt', always_adapt)
    check_nesterov(nesterov, momentum, dampening)
    return optax.chain(
        scale_by_trust_ratio(
            weight_decay,
            form='lars',
            trust_coeff=trust_coeff,
            eps=eps,
            trust_clip=trust_clip,
            always_adapt=always_adapt,
            learning_rate=learning_rate if trust_clip else None,
            lr_scale=lr_scale,
        ),
        scale_by_torch_momentum(momentum, dampening, nesterov),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


def _info(name, description, **defaults):
    return OptimInfo(
        name=name,
        alias=lars,
        timm_class='timm.optim.Lars',
        description=description,
        has_momentum=True,
        defaults=defaults,
        packing='stacked',
        default_lr=2.0,
        complex_params=True,
    )


OPTIMIZERS = (
    dataclasses.replace(
        _info('lars', 'Layer-wise Adaptive Rate Scaling'),
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.lars(lr, weight_decay=wd, momentum=0.9),
    ),
    _info('larc', 'LARS with trust ratio clipping for stability', trust_clip=True),
    _info('nlars', 'LARS with Nesterov momentum', nesterov=True),
    _info('nlarc', 'LARS with Nesterov momentum & trust ratio clipping', nesterov=True, trust_clip=True),
)
