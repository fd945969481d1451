"""MARS: timm's ``Mars`` (``mars``, ``cmars``).

Reference: Yuan et al., 2024, "MARS: Unleashing the Power of Variance
Reduction for Training Large Models" (arXiv:2411.10438); caution from Liang et
al., 2024 (arXiv:2411.16085).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_betas, check_choice, check_range, resolve_dtype
from ..transforms import adam_args, caution_mask, compute_dtype, folded_l2, pow_bias_correction, safe_increment
from ..transforms import scale_by_learning_rate, tree_unzip, tree_zeros_like
from ._registry import OptimInfo

__all__ = ['mars']


class ScaleByMarsState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any
    last_grad: Any  # the previous step's raw gradient (variance-reduction term)


def scale_by_mars(
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.025,
    mars_type: str = 'adamw',
    optimize_1d: bool = False,
    lr_1d_factor: float = 1.0,
    betas_1d: Optional[Tuple[float, float]] = None,
    caution: bool = False,
    weight_decay: Any = 0.0,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """MARS's update before the lr: a variance-reduced, norm-clipped gradient fed to AdamW or Lion.

    For leaves with ``ndim >= 2`` (all leaves with ``optimize_1d``):
    ``c = g + gamma*b1/(1-b1) * (g - g_prev)`` (``c = g`` on step 1, timm's
    choice), ``c <- c / max(||c||, 1)``, ``m <- b1*m + (1-b1)*c`` and
    ``d = m_hat / (sqrt(v_hat) + eps)`` with ``v`` the EMA of ``c^2``
    (``mars_type='adamw'``) or ``d = sign(m)`` (``'lion'``). Other leaves take
    plain AdamW on ``g`` with ``betas_1d`` and are scaled by ``lr_1d_factor``.
    Output ``d + wd * p`` (times the 1-d factor): timm adds the decay to the
    update before the lr, so it is never corrected. ``caution`` masks ``m``
    against ``g``. optax has no MARS.

    ``m`` is kept in ``mu_dtype``, ``v`` in ``nu_dtype`` and the previous
    gradient in the package's state dtype (each defaults to the params' dtype,
    float32 for float16 params); low-precision leaves are computed in float32
    and the output has the gradient's dtype.
    """
    b1_1d, b2_1d = betas_1d if betas_1d is not None else (b1, b2)
    mix = gamma * (b1 / (1.0 - b1))
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return ScaleByMarsState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype),
            last_grad=tree_zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        decay = folded_l2(weight_decay, updates, params, 'mars with weight_decay')
        first = state.count == 0
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        wds, ps = decay.wds, decay.params

        def adam_dir(m, v, beta1, beta2):
            bc1, bc2_sqrt = pow_bias_correction(beta1, t), jnp.sqrt(pow_bias_correction(beta2, t))
            denom = jnp.sqrt(v) / bc2_sqrt.astype(v.dtype) + eps
            return (m / bc1.astype(m.dtype)) / denom

        def leaf(g_in, m_in, v_in, last_in, p, wd):
            cdt = compute_dtype(g_in.dtype)  # float32 for low-precision leaves
            g, m, v, last = (x.astype(cdt) for x in (g_in, m_in, v_in, last_in))
            if optimize_1d or g.ndim >= 2:
                c = jnp.where(first, g, (g - last) * mix + g)
                c = c / jnp.maximum(jnp.sqrt(jnp.sum(c * c)), jnp.asarray(1.0, c.dtype))
                m = (m * b1 + (1.0 - b1) * c).astype(m_in.dtype).astype(cdt)
                shown = m * caution_mask(m, g) if caution else m
                if mars_type == 'adamw':
                    v = (v * b2 + (1.0 - b2) * c * c).astype(v_in.dtype).astype(cdt)
                    d = adam_dir(shown, v, b1, b2)
                else:
                    d = jnp.sign(shown)
                factor = None
            else:
                m = (m * b1_1d + (1.0 - b1_1d) * g).astype(m_in.dtype).astype(cdt)
                v = (v * b2_1d + (1.0 - b2_1d) * g * g).astype(v_in.dtype).astype(cdt)
                shown = m * caution_mask(m, g) if caution else m
                d = adam_dir(shown, v, b1_1d, b2_1d)
                factor = lr_1d_factor
            if p is not None:
                d = (wd * p.astype(cdt)).astype(d.dtype) + d
            if factor is not None:
                d = d * factor
            return d.astype(g_in.dtype), m.astype(m_in.dtype), v.astype(v_in.dtype), g_in.astype(last_in.dtype)

        res = jax.tree.map(leaf, updates, state.exp_avg, state.exp_avg_sq, state.last_grad, ps, wds)
        out, m, v, last = tree_unzip(res, updates, 4)
        return out, ScaleByMarsState(count=count, exp_avg=m, exp_avg_sq=v, last_grad=last)

    return optax.GradientTransformation(init_fn, update_fn)


def mars(
    learning_rate: Any = 3e-3,
    betas: Tuple[float, float] = (0.9, 0.99),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    gamma: float = 0.025,
    mars_type: str = 'adamw',
    optimize_1d: bool = False,
    lr_1d_factor: float = 1.0,
    betas_1d: Optional[Tuple[float, float]] = None,
    caution: bool = False,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Mars``: variance-reduced gradients (MARS) in an AdamW or Lion step.

    For matrix-like leaves (``ndim >= 2``, or every leaf with ``optimize_1d``):

    .. math::
        c_t &= g_t + \gamma \frac{\beta_1}{1-\beta_1} (g_t - g_{t-1}),
            \qquad \tilde c_t = c_t / \max(1, \lVert c_t \rVert) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\tilde c_t,
            \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2)\tilde c_t^2 \\
        \theta_t &= \theta_{t-1} - \eta_t\left(\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
            + \lambda\theta_{t-1}\right)

    (``mars_type='lion'``: :math:`\operatorname{sign}(m_t)` replaces the
    Adam ratio). Other leaves take AdamW on :math:`g_t` with ``betas_1d`` and
    lr :math:`\eta_t \cdot` ``lr_1d_factor``.

    Args:
        learning_rate, betas, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        gamma: weight :math:`\gamma` of the gradient-difference correction.
        mars_type: ``'adamw'`` or ``'lion'``.
        optimize_1d: use MARS for 1-d leaves too (else AdamW).
        lr_1d_factor: lr multiplier of the AdamW-updated 1-d leaves.
        betas_1d: betas of the 1-d AdamW (default: ``betas``).
        caution: mask the momentum where its sign disagrees with the gradient.
        mu_dtype: dtype of the first moment ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_avg_sq`` (default: the params' dtype; float32 for float16
            params). The previous gradient (``last_grad``) always takes the default.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.mars(3e-3, weight_decay=0.05)

    Notes:
        On the first step there is no previous gradient; timm (and this port)
        uses :math:`c_1 = g_1` rather than the paper's :math:`g_0 = 0`. Which
        leaves count as "1-d" follows timm (``ndim < 2``), so a Flax conv
        kernel is treated like a PyTorch one.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate, betas, eps, weight_decay, mu_dtype, nu_dtype, optimize_1d=optimize_1d, caution=caution
    )
    check_range('gamma', gamma)
    check_choice('mars_type', mars_type, ('adamw', 'lion'))
    check_range('lr_1d_factor', lr_1d_factor, 0.0)
    if betas_1d is not None:
        check_betas(betas_1d, name='betas_1d')
    return optax.with_extra_args_support(
        optax.chain(
            scale_by_mars(
                betas[0],
                betas[1],
                eps,
                gamma,
                mars_type,
                optimize_1d,
                lr_1d_factor,
                betas_1d,
                caution,
                weight_decay,
                mu_dtype=mu_dtype,
                nu_dtype=nu_dtype,
            ),
            scale_by_learning_rate(learning_rate, lr_scale),
        )
    )


_record = functools.partial(
    OptimInfo,
    alias=mars,
    timm_class='timm.optim.Mars',
    has_betas=True,
    packing='stacked',
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(
        name='mars',
        description='Unleashing the Power of Variance Reduction for Training Large Models',
        benchmarked=True,
    ),
    _record(name='cmars', description='Cautious MARS', defaults={'caution': True}),
)
