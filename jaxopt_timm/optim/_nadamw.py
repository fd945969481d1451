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

import functools
from typing import Any, Optional, Tuple

import optax

from .._validate import check_range
from ..transforms import adam_args, decay_chain, resolve_max_lr, scale_by_adam
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
        learning_rate, betas, maximize, lr_scale, max_lr, mu_dtype, nu_dtype: as for every alias
            (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        caution: mask the update where it disagrees in sign with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta^2/\eta_{max}` instead of :math:`\lambda\eta`.
        clipping_threshold: RMS clipping threshold (> 0; 1.0 in the StableAdamW paper), None disables.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.nadamw(1e-3, weight_decay=0.05, caution=True, clipping_threshold=1.0)

    Notes:
        This is not ``torch.optim.NAdam(decoupled_weight_decay=True)``: there is
        no warming momentum schedule, only the look-ahead numerator.
        Registered as ``nadamw``, ``cnadamw`` (caution), ``nadamc``
        (corrected decay) and ``cnadamc`` (both).
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        caution=caution,
        corrected_weight_decay=corrected_weight_decay,
        maximize=maximize,
    )
    check_range('clipping_threshold', clipping_threshold, 0.0, lo_open=True, allow_none=True)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = scale_by_adam(
        betas[0],
        betas[1],
        eps,
        nesterov=True,
        clipping_threshold=clipping_threshold,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    return decay_chain(direction, learning_rate, weight_decay, lr_scale, max_lr, maximize=maximize, caution=caution)


_DESCRIPTION = 'Adam with Nesterov momentum and decoupled weight decay, mlcommons/algorithmic-efficiency impl'

_record = functools.partial(
    OptimInfo,
    alias=nadamw,
    timm_class='timm.optim.NAdamW',
    has_betas=True,
    packing='packed',
    complex_params=True,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='nadamw',
        description=_DESCRIPTION,
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.nadamw(lr, weight_decay=wd),
    ),
    _record(name='cnadamw', description='Cautious NAdamW', defaults={'caution': True}),
    _record(
        name='nadamc',
        description='NAdamW with corrected weight decay (lr²/max_lr scaling)',
        defaults={'corrected_weight_decay': True},
    ),
    _record(
        name='cnadamc',
        description='Cautious NAdamW with corrected weight decay (lr²/max_lr scaling)',
        defaults={'caution': True, 'corrected_weight_decay': True},
    ),
)
