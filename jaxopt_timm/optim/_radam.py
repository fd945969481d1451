"""RAdam: ``torch.optim.RAdam`` (``radam``, ``radamw``) and timm's ``RAdamLegacy`` (``radamlegacy``).

Reference: Liu et al., 2020, "On the Variance of the Adaptive Learning Rate
and Beyond" (ICLR 2020, arXiv:1908.03265). The rectification scalars live in
:mod:`jaxopt_timm.transforms._rectify` (shared with rectified AdaBelief).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_adam_args, check_bool, resolve_dtype
from ..transforms import (
    upcast,
    add_decoupled_weight_decay, add_l2_weight_decay, rectified_step_size, safe_increment, scale_by_learning_rate,
    tree_zeros_like,
)
from ._registry import OptimInfo

__all__ = ['radam', 'radam_legacy']



class ScaleByRAdamState(NamedTuple):
    count: jax.Array
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
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByRAdamState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        rs = rectified_step_size(count.astype(jnp.float32), b1, b2, inclusive=inclusive_threshold)
        mu = jax.tree.map(
            lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, state.exp_avg)
        nu = jax.tree.map(
            lambda g, v: (b2 * upcast(v) + (1.0 - b2) * jnp.square(upcast(g))).astype(v.dtype),
            updates, state.exp_avg_sq)

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
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to the raw root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        decoupled_weight_decay: AdamW-style decay instead of L2.
        maximize: ascend instead of descend.
        lr_scale: per-leaf lr multipliers (layer decay).
        mu_dtype: dtype of the first moment (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment (default: the params' dtype; float32 for float16 params).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.radam(1e-3, weight_decay=1e-2, decoupled_weight_decay=True)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        With the default :math:`\beta_2 = 0.999` the first five steps are
        un-normalized momentum steps (:math:`\rho_t \le 5`), so RAdam needs no
        warmup but moves by :math:`\eta |m_t|` early on.
    """
    check_adam_args(learning_rate, betas, eps, weight_decay)
    check_bool('decoupled_weight_decay', decoupled_weight_decay)
    check_bool('maximize', maximize)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    return optax.chain(
        optax.scale(-1.0) if maximize else optax.identity(),
        optax.identity() if decoupled_weight_decay else add_l2_weight_decay(weight_decay),
        scale_by_radam(betas[0], betas[1], eps, inclusive_threshold=False, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale) if decoupled_weight_decay
        else optax.identity(),
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
        learning_rate: float or schedule ``step -> lr``.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: added to the raw root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        lr_scale: per-leaf lr multipliers (layer decay).
        mu_dtype: dtype of the first moment (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment (default: the params' dtype; float32 for float16 params).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((2, 2))}
        >>> tx = jt.optim.radam_legacy(1e-3, weight_decay=1e-2)
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        The original implementation cached the step size in a buffer shared by
        all param groups (with the first group's lr baked in); timm's version,
        and this one, use each group's own lr.
    """
    check_adam_args(learning_rate, betas, eps, weight_decay)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    return optax.chain(
        scale_by_radam(betas[0], betas[1], eps, inclusive_threshold=True, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='radam', alias=radam, timm_class='torch.optim.RAdam',
        description='torch.optim.RAdam, Rectified Adam with variance adaptation', has_betas=True,
        packing='packed', default_lr=0.01, benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.radam(lr))),
    OptimInfo(
        name='radamlegacy', alias=radam_legacy, timm_class='timm.optim.RAdamLegacy',
        description='legacy impl of RAdam that predates inclusion in torch.optim', has_betas=True,
        packing='packed', default_lr=0.01),
    OptimInfo(
        name='radamw', alias=radam, timm_class='torch.optim.RAdam',
        description='torch.optim.RAdamW, Rectified Adam with variance adaptation and decoupled weight decay',
        has_betas=True, defaults={'decoupled_weight_decay': True},
        packing='packed', default_lr=0.01),
)
