"""AdamW: ``torch.optim.AdamW`` (``adamw``) and timm's ``AdamWLegacy`` (``adamwlegacy`` and variants).

References: Loshchilov & Hutter, 2019, "Decoupled Weight Decay
Regularization" (arXiv:1711.05101); Reddi et al., 2018, "On the Convergence
of Adam and Beyond" (amsgrad); Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import optax

from .._validate import check_range
from ..transforms import adam_args, decay_chain, resolve_max_lr, scale_by_adam
from ._registry import OptimInfo

__all__ = ['adamw', 'adamw_legacy']


def adamw(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.AdamW``: Adam with weight decay decoupled from the gradient.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda)
            - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    With ``amsgrad`` the maximum of the raw :math:`v_t` replaces :math:`v_t`.
    Unlike ``optax.adamw`` (which scales the decay by the lr only through
    ``scale_by_learning_rate`` and masks by a callable), the decay here uses the
    per-group lr exactly as torch does.

    Args:
        learning_rate, betas, maximize, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        amsgrad: use the running maximum of the second moment.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adamw(1e-3, weight_decay=0.05)
    """
    mu_dtype, nu_dtype = adam_args(learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, amsgrad=amsgrad)
    direction = scale_by_adam(betas[0], betas[1], eps, amsgrad, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return decay_chain(direction, learning_rate, weight_decay, lr_scale, maximize=maximize)


def adamw_legacy(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 1e-2,
    amsgrad: bool = False,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
    clipping_threshold: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``AdamWLegacy``: AdamW plus caution and corrected weight decay.

    The direction is :func:`adamw`'s. ``caution`` masks it with
    :func:`jaxopt_timm.transforms.caution_mask`; ``corrected_weight_decay``
    decays by :math:`\lambda \eta^2 / \eta_{max}` instead of
    :math:`\lambda\eta` (``max_lr``: the peak lr, see
    :func:`jaxopt_timm.transforms.resolve_max_lr`). ``clipping_threshold``
    (> 0, None disables) divides each tensor's update by
    ``max(1, rms(g / denom) / clipping_threshold)``, StableAdamW's RMS clip
    (arXiv:2304.13013; see :func:`jaxopt_timm.transforms.scale_by_adam`);
    the decay is not clipped.

    ``mu_dtype`` / ``nu_dtype`` set the dtypes of the first / second moment
    (default: the params' dtype; float32 for float16 params).

    Registered as ``adamwlegacy``, ``cadamw`` (caution), ``adamc`` (corrected)
    and ``cadamc`` (both).
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        amsgrad=amsgrad,
        caution=caution,
        corrected_weight_decay=corrected_weight_decay,
        maximize=maximize,
    )
    check_range('clipping_threshold', clipping_threshold, 0.0, lo_open=True, allow_none=True)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    direction = scale_by_adam(
        betas[0], betas[1], eps, amsgrad, clipping_threshold=clipping_threshold, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return decay_chain(direction, learning_rate, weight_decay, lr_scale, max_lr, maximize=maximize, caution=caution)


_record = functools.partial(
    OptimInfo,
    has_betas=True,
    packing='packed',
    complex_params=True,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq', 'max_exp_avg_sq')},
)

OPTIMIZERS = (
    _record(
        name='adamw',
        alias=adamw,
        timm_class='torch.optim.AdamW',
        description='torch.optim.AdamW, Adam with decoupled weight decay',
        benchmarked=True,
        torch_fused=True,
        optax_equivalent=lambda lr, wd: optax.adamw(lr, weight_decay=wd),
    ),
    _record(
        name='adamwlegacy',
        alias=adamw_legacy,
        timm_class='timm.optim.AdamWLegacy',
        description='legacy impl of AdamW that pre-dates inclusion to torch.optim',
    ),
    _record(
        name='cadamw',
        alias=adamw_legacy,
        timm_class='timm.optim.AdamWLegacy',
        description='Cautious AdamW',
        defaults={'caution': True},
    ),
    _record(
        name='adamc',
        alias=adamw_legacy,
        timm_class='timm.optim.AdamWLegacy',
        description='AdamW with corrected weight decay (lr²/max_lr scaling)',
        defaults={'corrected_weight_decay': True},
    ),
    _record(
        name='cadamc',
        alias=adamw_legacy,
        timm_class='timm.optim.AdamWLegacy',
        description='Cautious AdamW with corrected weight decay (lr²/max_lr scaling)',
        defaults={'caution': True, 'corrected_weight_decay': True},
    ),
)
