"""NovoGrad: timm's ``NvNovoGrad`` (``novograd``, ``novogradw``, ``novogradc``).

Reference: Ginsburg et al., 2019, "Stochastic Gradient Methods with
Layer-wise Adaptive Moments for Training of Deep Networks" (arXiv:1905.11286),
as in NVIDIA's Jasper example; amsgrad from Reddi et al., 2018; corrected
decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ..transforms import adam_args, add_decoupled_weight_decay, compute_dtype, folded_l2, resolve_max_lr, safe_increment
from ..transforms import per_leaf_stats, scale_by_learning_rate, tree_any_nonzero, tree_unzip, tree_zeros_like
from ._registry import OptimInfo

__all__ = ['novograd']


class ScaleByNovogradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any  # one scalar per leaf (float32 unless nu_dtype): EMA of the leaf's squared gradient norm
    max_exp_avg_sq: Optional[Any]


def scale_by_novograd(
    b1: float = 0.95,
    b2: float = 0.98,
    eps: float = 1e-8,
    grad_averaging: bool = False,
    amsgrad: bool = False,
    weight_decay: Any = 0.0,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """NovoGrad's direction: a momentum of the gradient normalised by its layer-wise norm EMA.

    Per leaf: ``n = sum(g^2)``; ``v <- n`` while ``v == 0`` (timm seeds the
    EMA with the first norm, keyed on the value, not the step), else
    ``v <- b2*v + (1-b2)*n``; ``u = g / (sqrt(v or max v) + eps) + wd * p``
    (L2 added *after* the normalisation, as the paper; pass 0 for decoupled
    decay); ``m <- b1*m + (1-b1 if grad_averaging else 1) * u``. optax has no
    layer-wise second moment.

    ``m`` is kept in ``mu_dtype`` (default: the params' dtype, float32 for
    float16 params) and the per-leaf norm EMAs in ``nu_dtype`` (default:
    float32 whatever the params' dtype, as timm's scalars); low-precision
    leaves are computed in float32 and the output has the gradient's dtype.
    """
    scale_u = (1.0 - b1) if grad_averaging else None
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    norm_dtype = jnp.dtype(jnp.float32) if nu_dtype is None else nu_dtype

    def init_fn(params):
        scalars = per_leaf_stats(lambda _: jnp.zeros([], norm_dtype), params)
        return ScaleByNovogradState(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=scalars,
            max_exp_avg_sq=scalars if amsgrad else None,
        )

    def update_fn(updates, state, params=None):
        l2 = folded_l2(weight_decay, updates, params, 'novograd with weight_decay')
        wds, ps = l2.wds, l2.params
        vmaxs = state.max_exp_avg_sq if amsgrad else jax.tree.map(lambda _: None, updates)

        def leaf(g_in, p, m_in, v_in, vmax_in, wd):
            cdt = compute_dtype(g_in.dtype)  # float32 for low-precision leaves
            g, m = g_in.astype(cdt), m_in.astype(cdt)
            norm = jnp.sum(jnp.square(g_in.astype(jnp.float32)))
            v = v_in.astype(jnp.float32)
            v = jnp.where(v == 0, norm, b2 * v + (1.0 - b2) * norm).astype(v_in.dtype)
            vmax = None
            if amsgrad:
                vmax = jnp.maximum(vmax_in, v)
            denom = jnp.sqrt((vmax if amsgrad else v).astype(jnp.float32)) + eps
            u = g / denom.astype(cdt)
            if tree_any_nonzero(wd):  # timm's per-group `if weight_decay != 0`
                u = u + (wd * p.astype(cdt)).astype(cdt)
            if scale_u is not None:
                u = u * scale_u
            m = (b1 * m + u).astype(m_in.dtype)
            return m.astype(g_in.dtype), m, v, vmax

        out = jax.tree.map(leaf, updates, ps, state.exp_avg, state.exp_avg_sq, vmaxs, wds)
        direction, mu, nu, vmax = tree_unzip(out, updates, 4)
        return direction, ScaleByNovogradState(
            count=safe_increment(state.count), exp_avg=mu, exp_avg_sq=nu, max_exp_avg_sq=vmax if amsgrad else None
        )

    return optax.GradientTransformation(init_fn, update_fn)


def novograd(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.95, 0.98),
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    grad_averaging: bool = False,
    amsgrad: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``NvNovoGrad``: SGD momentum on gradients normalised by a layer-wise second moment.

    For each leaf (layer) :math:`l`:

    .. math::
        v^l_t &= \beta_2 v^l_{t-1} + (1-\beta_2) \lVert g^l_t \rVert^2
            \quad (v^l_1 = \lVert g^l_1 \rVert^2) \\
        m^l_t &= \beta_1 m^l_{t-1} + c \left( \frac{g^l_t}{\sqrt{v^l_t} + \epsilon}
            + \lambda \theta^l_{t-1} \right) \\
        \theta^l_t &= \theta^l_{t-1} - \eta_t m^l_t

    with :math:`c = 1 - \beta_1` when ``grad_averaging`` else 1. With
    ``amsgrad`` the running maximum of :math:`v^l` normalises. With
    ``decoupled_decay`` the :math:`\lambda\theta` term leaves the momentum and
    the weights are shrunk by :math:`1 - \eta_t\lambda` instead
    (:math:`1 - \lambda\eta_t^2/\eta_{max}` with ``corrected_weight_decay``).

    Args:
        learning_rate, betas, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the root of the norm EMA.
        weight_decay: :math:`\lambda` (float or per-leaf tree).
        grad_averaging: scale the momentum input by :math:`1 - \beta_1`.
        amsgrad: normalise by the running maximum of the norm EMA.
        decoupled_decay: decay the weights directly instead of through the momentum.
        corrected_weight_decay: decoupled decay scaled by :math:`\eta_t^2/\eta_{max}` (needs ``decoupled_decay``).
        mu_dtype: dtype of the momentum ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the per-leaf norm EMA :math:`v^l` (``exp_avg_sq``, and ``max_exp_avg_sq`` with
            ``amsgrad``) (default: float32 for every params' dtype, as timm's scalars: they cost one number
            per leaf).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.novograd(1e-2, weight_decay=1e-3, grad_averaging=True)

    Notes:
        Like timm (and NVIDIA's Jasper code) there is no bias correction and
        ``grad_averaging`` (the paper's :math:`1-\beta_1` input scaling) is off
        by default. The norm EMA is seeded with the first squared norm while it
        is still exactly zero, keyed on the value as timm does (a leaf whose
        gradients stay zero keeps being re-seeded).
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        grad_averaging=grad_averaging,
        amsgrad=amsgrad,
        decoupled_decay=decoupled_decay,
        corrected_weight_decay=corrected_weight_decay,
    )
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    return optax.with_extra_args_support(
        optax.chain(
            scale_by_novograd(
                betas[0],
                betas[1],
                eps,
                grad_averaging,
                amsgrad,
                0.0 if decoupled_decay else weight_decay,
                mu_dtype=mu_dtype,
                nu_dtype=nu_dtype,
            ),
            scale_by_learning_rate(learning_rate, lr_scale),
            add_decoupled_weight_decay(weight_decay if decoupled_decay else 0.0, learning_rate, lr_scale, max_lr),
        )
    )


_record = functools.partial(
    OptimInfo,
    alias=novograd,
    timm_class='timm.optim.NvNovoGrad',
    has_betas=True,
    packing='stacked',
    default_lr=0.01,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq', 'max_exp_avg_sq')},
)

OPTIMIZERS = (
    _record(
        name='novograd',
        description='Normalized Adam with L2 norm gradient normalization',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.novograd(lr, weight_decay=wd),
    ),
    _record(name='novogradw', description='NovoGrad with decoupled weight decay', defaults={'decoupled_decay': True}),
    _record(
        name='novogradc',
        description='NovoGrad with corrected decoupled weight decay (lr²/max_lr scaling)',
        defaults={'decoupled_decay': True, 'corrected_weight_decay': True},
    ),
)
