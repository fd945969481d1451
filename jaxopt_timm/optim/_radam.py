"""RAdam: ``torch.optim.RAdam`` (``radam``, ``radamw``) and timm's ``RAdamLegacy`` (``radamlegacy``).

Reference: Liu et al., 2020, "On the Variance of the Adaptive Learning Rate
and Beyond" (ICLR 2020, arXiv:1908.03265). The rectification scalars live in
:mod:`jaxopt_timm.transforms._rectify` (shared with rectified AdaBelief).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from ..transforms import adam_args, adam_moments, add_decoupled_weight_decay, decay_chain, moments_init
from ..transforms import rectified_step_size, safe_increment, scale_by_learning_rate, upcast
from ._registry import OptimInfo

__all__ = ['radam', 'radam_legacy']


class ScaleByRAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any


def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    inclusive_threshold: bool = False,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    r"""RAdam's direction: ``r_t sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps)`` past ``rho_t = 5``, else ``m/(1-b1^t)``.

    optax's ``scale_by_radam`` switches at ``rho_t >= threshold`` and adds eps
    to the *bias-corrected* root (``sqrt(v / (1-b2^t)) + eps``); torch and timm
    add it to the raw root, which this primitive mirrors.
    ``inclusive_threshold`` picks timm's legacy ``rho_t >= 5`` over torch's
    ``rho_t > 5``. ``mu_dtype`` / ``nu_dtype`` set the dtypes of ``exp_avg`` /
    ``exp_avg_sq`` (default: :func:`jaxopt_timm.transforms.state_dtype` of each leaf).
    """
    init_fn = moments_init(ScaleByRAdamState, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        rs = rectified_step_size(count.astype(jnp.float32), b1, b2, inclusive=inclusive_threshold)
        mu, nu = adam_moments(updates, state.exp_avg, state.exp_avg_sq, b1, b2)

        def direction(m, v, g):
            m, v = upcast(m), upcast(v)
            adaptive = rs.adaptive_step * m / (jnp.sqrt(v) + eps)
            return jnp.where(rs.adaptive, adaptive, rs.sgd_step * m).astype(g.dtype)

        out = jax.tree.map(direction, mu, nu, updates)
        return out, ScaleByRAdamState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def radam(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.RAdam``: Adam with the variance of its adaptive lr rectified.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \rho_t &= \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \quad \rho_\infty = \frac{2}{1-\beta_2} - 1 \\
        \theta_t &= \theta_{t-1} - \eta \frac{m_t}{1-\beta_1^t}
            \cdot \begin{cases} r_t \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
            1 & \text{otherwise} \end{cases}

    with :math:`r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty / ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}`.
    Weight decay is L2 (:math:`g_t \mathrel{+}= \lambda\theta_{t-1}`) or, with
    ``decoupled_weight_decay``, :math:`\theta \mathrel{*}= 1 - \eta\lambda` (``radamw``).

    Args:
        learning_rate, betas, maximize, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the raw root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        decoupled_weight_decay: AdamW-style decay instead of L2.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.radam(1e-3, weight_decay=1e-2, decoupled_weight_decay=True)

    Notes:
        With the default :math:`\beta_2 = 0.999` the first five steps are
        un-normalized momentum steps (:math:`\rho_t \le 5`), so RAdam needs no
        warmup but moves by :math:`\eta |m_t|` early on.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        decoupled_weight_decay=decoupled_weight_decay,
        maximize=maximize,
    )
    direction = scale_by_radam(betas[0], betas[1], eps, inclusive_threshold=False, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return decay_chain(
        direction, learning_rate, weight_decay, lr_scale, maximize=maximize, l2=not decoupled_weight_decay
    )


def radam_legacy(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``RAdamLegacy``: :func:`radam` with decoupled decay and a ``rho_t >= 5`` threshold.

    The step is :func:`radam`'s (the ported original implementation), except
    that the adaptive branch starts at :math:`\rho_t \ge 5` and weight decay is
    always decoupled, :math:`\theta \mathrel{*}= 1 - \eta\lambda`.

    Args:
        learning_rate, betas, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the raw root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.radam_legacy(1e-3, weight_decay=1e-2)

    Notes:
        The original implementation cached the step size in a buffer shared by
        all param groups (with the first group's lr baked in); timm's version,
        and this one, use each group's own lr.
    """
    mu_dtype, nu_dtype = adam_args(learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype)
    return optax.chain(
        scale_by_radam(betas[0], betas[1], eps, inclusive_threshold=True, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale),
    )


_record = functools.partial(
    OptimInfo,
    has_betas=True,
    packing='packed',
    default_lr=0.01,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='radam',
        alias=radam,
        timm_class='torch.optim.RAdam',
        description='torch.optim.RAdam, Rectified Adam with variance adaptation',
        benchmarked=True,
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.radam(lr)),
    ),
    _record(
        name='radamlegacy',
        alias=radam_legacy,
        timm_class='timm.optim.RAdamLegacy',
        description='legacy impl of RAdam that predates inclusion in torch.optim',
    ),
    _record(
        name='radamw',
        alias=radam,
        timm_class='torch.optim.RAdam',
        description='torch.optim.RAdamW, Rectified Adam with variance adaptation and decoupled weight decay',
        defaults={'decoupled_weight_decay': True},
        complex_params=True,
    ),
)
