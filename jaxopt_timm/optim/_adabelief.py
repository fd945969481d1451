"""AdaBelief: timm's ``AdaBelief`` (names ``adabelief`` and ``radabelief``).

References: Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by
the Belief in Observed Gradients" (NeurIPS 2020, arXiv:2010.07468); the
rectified step is RAdam's (Liu et al., 2020, arXiv:1908.03265); amsgrad from
Reddi et al., 2018, "On the Convergence of Adam and Beyond".
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import optax

from ..transforms import adam_args, add_decoupled_weight_decay, add_l2_weight_decay, scale_by_belief
from ..transforms import scale_by_learning_rate
from ._registry import OptimInfo

__all__ = ['adabelief']


def adabelief(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-16,
    weight_decay: Any = 0.0,
    amsgrad: bool = False,
    decoupled_decay: bool = True,
    fixed_decay: bool = False,
    rectify: bool = True,
    degenerated_to_sgd: bool = True,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``AdaBelief``: Adam whose second moment tracks the *belief* :math:`(g_t - m_t)^2`.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon \\
        \theta_t &= \theta_{t-1}(1 - \eta\lambda)
            - \eta \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t} / \sqrt{1-\beta_2^t} + \epsilon}

    With ``rectify`` the last line uses RAdam's rectified step (see
    :func:`jaxopt_timm.transforms.scale_by_belief`): once the SMA length
    :math:`\rho_t \ge 5` the step is
    :math:`\eta\, r_t \sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot m_t / (\sqrt{s_t} + \epsilon)`;
    before, :math:`\eta\, m_t / (1-\beta_1^t)` (``degenerated_to_sgd``) or no step.

    Args:
        learning_rate, betas, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added inside the second-moment EMA *and* to the denominator (timm's
            placement; the paper's 1e-16 default relies on that).
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        amsgrad: normalize by the running maximum of :math:`s_t` (ignored by the
            rectified adaptive step, as in timm).
        decoupled_decay: decay the params directly (AdamW style); else add
            :math:`\lambda\theta` to the gradient (L2).
        fixed_decay: with ``decoupled_decay``, decay by :math:`\lambda` instead of
            :math:`\eta\lambda` (independent of the lr and its schedule).
        rectify: RAdam's rectified step.
        degenerated_to_sgd: with ``rectify``, take SGD-with-momentum steps while
            :math:`\rho_t < 5`; if False the params only decay in those steps.
        mu_dtype: dtype of the first moment (default: the params' dtype, at least float32, as timm).
        nu_dtype: dtype of the second moment (default: the params' dtype, at least float32, as timm).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adabelief(1e-3, weight_decay=1e-2, rectify=False)

    Notes:
        The class default ``rectify=True`` is timm's; timm's registry binds
        ``adabelief`` to ``rectify=False`` and ``radabelief`` to ``rectify=True``.
        timm computes the rectified step size per parameter from its own step
        count (the original implementation cached it in a buffer shared by all
        groups); here every leaf shares the optimizer's step count, which is the
        same thing when all leaves are updated every step.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        amsgrad=amsgrad,
        decoupled_decay=decoupled_decay,
        fixed_decay=fixed_decay,
        rectify=rectify,
        degenerated_to_sgd=degenerated_to_sgd,
    )
    direction = scale_by_belief(
        betas[0],
        betas[1],
        eps,
        amsgrad,
        rectify=rectify,
        degenerated_to_sgd=degenerated_to_sgd,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    if not decoupled_decay:
        return optax.chain(
            add_l2_weight_decay(weight_decay),
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
        )
    return optax.chain(
        direction,
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, None if fixed_decay else learning_rate, lr_scale),
    )


_record = functools.partial(
    OptimInfo,
    alias=adabelief,
    timm_class='timm.optim.AdaBelief',
    has_betas=True,
    packing='packed',
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_var', 'max_exp_avg_var')},
)

OPTIMIZERS = (
    _record(
        name='adabelief',
        description='Adapts learning rate based on gradient prediction error',
        defaults={'rectify': False},
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adabelief(lr)),
    ),
    _record(
        name='radabelief',
        description='Rectified AdaBelief with variance adaptation',
        defaults={'rectify': True},
        default_lr=0.01,
    ),
)
