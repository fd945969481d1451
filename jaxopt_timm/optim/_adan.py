"""Adan: timm's ``Adan`` (``adan``, ``adanw``, ``cadan``, ``cadanw``).

Reference: Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for
Faster Optimizing Deep Models" (arXiv:2208.06677); caution from Liang et al.,
2024 (arXiv:2411.16085).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ..transforms import adam_args, add_decoupled_weight_decay, caution_mask, compute_dtype, pow_bias_correction
from ..transforms import safe_increment, scale_by_learning_rate, torch_lerp, tree_unzip, tree_zeros_like
from ._registry import OptimInfo

__all__ = ['adan']


class ScaleByAdanState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any
    exp_avg_diff: Any
    pre_grad: Any  # the previous step's gradient


def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    caution: bool = False,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """Adan's direction (before the lr), as timm computes it.

    ``delta = g - g_prev`` (0 on step 1: the previous gradient is seeded with
    ``g``), ``m <- lerp(m, g, 1-b1)``, ``d <- b2*d + (1-b2)*delta``,
    ``n <- b3*n + (1-b3)*(g + b2*delta)^2``; output
    ``(m_masked / bc1 + b2 * d / bc2) / (sqrt(n) / sqrt(bc3) + eps)`` with
    ``bc_i = 1 - b_i^t`` (timm's ``b2 / bc2`` weighting of the difference term).
    ``caution`` masks ``m`` against ``g``. optax has no Adan.

    ``m`` and ``d`` are kept in ``mu_dtype``, ``n`` in ``nu_dtype`` and the
    previous gradient in the package's state dtype (each defaults to the
    params' dtype, float32 for float16 params); low-precision leaves are
    computed in float32 and the output has the gradient's dtype.
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByAdanState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype),
            exp_avg_diff=tree_zeros_like(params, mu_dtype),
            pre_grad=tree_zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1, bc2 = pow_bias_correction(b1, t), pow_bias_correction(b2, t)
        bc3_sqrt = jnp.sqrt(pow_bias_correction(b3, t))
        diff_scale = jnp.asarray(b2, jnp.float32) / bc2

        def leaf(g_in, m_in, n_in, d_in, prev_in):
            cdt = compute_dtype(g_in.dtype)  # float32 for low-precision leaves
            g, prev = g_in.astype(cdt), prev_in.astype(cdt)
            delta = g - jnp.where(first, g, prev)
            m = torch_lerp(m_in.astype(cdt), g, 1.0 - b1).astype(m_in.dtype)
            d = (d_in.astype(cdt) * b2 + (1.0 - b2) * delta).astype(d_in.dtype)
            nest = delta * b2 + g
            n = (n_in.astype(cdt) * b3 + (1.0 - b3) * nest * nest).astype(n_in.dtype)
            m_c, d_c, n_c = m.astype(cdt), d.astype(cdt), n.astype(cdt)
            denom = jnp.sqrt(n_c) / bc3_sqrt.astype(cdt) + eps
            shown = m_c * caution_mask(m_c, g) if caution else m_c
            out = (shown / denom) / bc1.astype(cdt) + (d_c / denom) * diff_scale.astype(cdt)
            return out.astype(g_in.dtype), m, n, d, g_in.astype(prev_in.dtype)

        res = jax.tree.map(leaf, updates, state.exp_avg, state.exp_avg_sq, state.exp_avg_diff, state.pre_grad)
        out, m, n, d, prev = tree_unzip(res, updates, 5)
        return out, ScaleByAdanState(count=count, exp_avg=m, exp_avg_sq=n, exp_avg_diff=d, pre_grad=prev)

    return optax.GradientTransformation(init_fn, update_fn)


def adan(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float, float] = (0.98, 0.92, 0.99),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    no_prox: bool = False,
    caution: bool = False,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Adan``: Nesterov momentum estimated from gradient differences.

    .. math::
        \Delta_t &= g_t - g_{t-1} \quad (\Delta_1 = 0) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t,
            \qquad d_t = \beta_2 d_{t-1} + (1-\beta_2)\Delta_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3)(g_t + \beta_2\Delta_t)^2 \\
        u_t &= \frac{m_t/(1-\beta_1^t) + \beta_2 d_t/(1-\beta_2^t)}{\sqrt{n_t/(1-\beta_3^t)} + \epsilon} \\
        \theta_t &= (\theta_{t-1} - \eta_t u_t) / (1 + \eta_t\lambda)

    With ``no_prox`` the decay is decoupled instead:
    :math:`\theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t u_t`.

    Args:
        learning_rate, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        betas: :math:`(\beta_1, \beta_2, \beta_3)`, each in [0, 1).
        eps: added to the bias-corrected root of :math:`n_t`.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        no_prox: decoupled decay instead of the proximal step.
        caution: mask :math:`m_t` where its sign disagrees with the gradient.
        mu_dtype: dtype of the first-moment-like buffers, :math:`m_t` (``exp_avg``) and :math:`d_t`
            (``exp_avg_diff``) (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment :math:`n_t` (``exp_avg_sq``) (default: the params' dtype; float32
            for float16 params). The previous gradient (``pre_grad``) always takes the default.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adan(1e-3, weight_decay=0.02)

    Notes:
        timm's betas are the paper's :math:`1-\beta_i` (the paper writes
        :math:`\beta_1 = 0.02`, timm 0.98). The difference term is weighted by
        :math:`\beta_2/(1-\beta_2^t)` as in the official implementation.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, num_betas=3, no_prox=no_prox, caution=caution
    )
    # the proximal step of the L2 penalty (the paper's default), p' = (p + u) / (1 + lr*wd), or decoupled decay
    decay = add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, order='pre' if no_prox else 'proximal')
    return optax.with_extra_args_support(
        optax.chain(
            scale_by_adan(betas[0], betas[1], betas[2], eps, caution, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
            scale_by_learning_rate(learning_rate, lr_scale),
            decay,
        )
    )


_record = functools.partial(
    OptimInfo,
    alias=adan,
    timm_class='timm.optim.Adan',
    has_betas=True,
    num_betas=3,
    packing='packed',
    state_dtypes={'mu_dtype': ('exp_avg', 'exp_avg_diff'), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='adan', description='Adaptive Nesterov Momentum Algorithm', defaults={'no_prox': False}, benchmarked=True
    ),
    _record(
        name='adanw', description='Adaptive Nesterov Momentum with decoupled weight decay', defaults={'no_prox': True}
    ),
    _record(
        name='cadan',
        description='Cautious Adaptive Nesterov Momentum Algorithm',
        defaults={'caution': True, 'no_prox': False},
    ),
    _record(
        name='cadanw',
        description='Cautious Adaptive Nesterov Momentum with decoupled weight decay',
        defaults={'caution': True, 'no_prox': True},
    ),
)
