"""LAMB: timm's ``Lamb`` (an NVIDIA FusedLAMB / NvLamb-style variant) as an optax chain.

References: You et al., 2019, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes" (arXiv:1904.00962); Reddi et al., 2018, "On the
Convergence of Adam and Beyond"; Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085); corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional, Tuple

import jax
import optax

from .._validate import check_range
from ..transforms import adam_args, add_decoupled_weight_decay, add_l2_weight_decay, apply_leaf_ratio, cautious
from ..transforms import clip_by_global_norm_ratio, cpu_fence, global_norm_divisor, lamb_leaf_ratio
from ..transforms import leaf_lrs, leaf_values, moments_init, require_params
from ..transforms import resolve_max_lr, safe_increment, scale_by_learning_rate, scale_by_trust_ratio, tree_any_nonzero
from ._lamb_step import _LambStep
from ._registry import OptimInfo

__all__ = ['clip_by_global_norm_ratio', 'ScaleByLambState', 'scale_by_lamb', 'scale_by_lamb_trust_ratio', 'lamb']


class ScaleByLambState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any


def scale_by_lamb(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    *,
    bias_correction: bool = True,
    grad_averaging: bool = True,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """Lamb's Adam-style direction before decay and trust ratio.

    ``m <- b1*m + (1-b1)*g`` (``grad_averaging``) or ``m <- b1*m + g``;
    ``v <- b2*v + (1-b2)*g^2``; ``d = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)``
    with ``bc_i = 1 - b_i^t`` (1 without ``bias_correction``). Differs from
    ``optax.scale_by_adam`` in the optional bias correction and the
    non-averaged first moment.

    ``m`` is kept in ``mu_dtype`` and ``v`` in ``nu_dtype`` (default: the
    params' dtype, float32 for float16 params); low-precision leaves are
    computed in float32 and the output has the gradient's dtype.
    """
    init_fn = moments_init(ScaleByLambState, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        step = _LambStep(b1, b2, eps, bias_correction, grad_averaging, count)
        mu = jax.tree.map(step.first_moment, updates, state.exp_avg)
        nu = jax.tree.map(step.second_moment, updates, state.exp_avg_sq)
        out = jax.tree.map(step.direction, updates, mu, nu)
        return out, ScaleByLambState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_lamb_trust_ratio(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: Any = 0.0,
    *,
    max_grad_norm: Optional[float] = None,
    bias_correction: bool = True,
    grad_averaging: bool = True,
    trust_clip: bool = False,
    always_adapt: bool = False,
    decoupled_decay: bool = False,
    learning_rate: Any = None,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """Lamb's clipped moments, direction, L2 term and trust ratio as one transform.

    The same numbers as ``chain(clip_by_global_norm_ratio(max_grad_norm), scale_by_lamb(...),
    add_l2_weight_decay(weight_decay), scale_by_trust_ratio(weight_decay, form='lamb', ...))``; fused because
    in the chain the clipped gradient, read by both moment updates, becomes a full-size temporary on XLA:CPU
    (no multi-output fusion). Here the second moment re-divides the raw gradient after :func:`cpu_fence`.
    The decayed direction of an adapting leaf is still stored once, for its norm and its scaling.
    ``weight_decay`` adds ``wd * p`` to the direction unless ``decoupled_decay`` (then the ratio uses the
    shrunk params, and ``add_decoupled_weight_decay`` after the lr applies the decay).
    """
    l2 = not decoupled_decay and tree_any_nonzero(weight_decay)

    init_fn = moments_init(ScaleByLambState, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None):
        require_params(params, 'lamb')
        count = safe_increment(state.count)
        step = _LambStep(b1, b2, eps, bias_correction, grad_averaging, count)
        wds = leaf_values(weight_decay, updates)
        if decoupled_decay:
            lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        else:
            lrs = jax.tree.map(lambda _: None, updates)
        divisor = (
            None
            if max_grad_norm is None or not jax.tree.leaves(updates)
            else global_norm_divisor(updates, max_grad_norm)
        )

        def clipped(g, div):
            return g if div is None else g / div.astype(g.dtype)

        def decayed_direction(g, m, v, p, wd):
            d = step.direction(g, m, v)
            return d + (wd * p).astype(d.dtype) if l2 else d

        mu = jax.tree.map(lambda g, m: step.first_moment(clipped(g, divisor), m), updates, state.exp_avg)
        g_again, div_again = cpu_fence((updates, divisor))  # the second moment re-divides g: no shared temporary
        nu = jax.tree.map(lambda g, v: step.second_moment(clipped(g, div_again), v), g_again, state.exp_avg_sq)
        # the decayed direction is stored once for its norm and the scaling: recomputing it after the norm
        # would make XLA:CPU's reduction kernel materialise its scalar broadcasts instead (measured: worse)
        out = jax.tree.map(
            lambda g, m, v, p, wd, lr: (
                None
                if g is None
                else apply_leaf_ratio(
                    u := decayed_direction(clipped(g, divisor), m, v, p, wd),
                    lamb_leaf_ratio(
                        u,
                        p,
                        wd,
                        lr,
                        trust_clip=trust_clip,
                        always_adapt=always_adapt,
                        decoupled_decay=decoupled_decay,
                        max_lr=max_lr,
                    ),
                    wd,
                    always_adapt,
                )
            ),
            updates,
            mu,
            nu,
            params,
            wds,
            lrs,
            is_leaf=lambda x: x is None,
        )
        return out, ScaleByLambState(count=count, exp_avg=mu, exp_avg_sq=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def lamb(
    learning_rate: Any = 1e-3,
    bias_correction: bool = True,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: Any = 0.01,
    grad_averaging: bool = True,
    max_grad_norm: Optional[float] = 1.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
    caution: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Lamb``: Adam direction, weight decay, layer-wise trust ratio, global grad clipping.

    .. math::
        \hat g_t &= g_t / \max(1, \|g_t\|_{global} / \text{max\_grad\_norm}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\hat g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2)\hat g_t^2 \\
        u_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon} + \lambda \theta_{t-1} \\
        r_t &= \|\theta_{t-1}\| / \|u_t\| \quad (\min(r_t, 1) \text{ with trust\_clip}) \\
        \theta_t &= \theta_{t-1} - \eta\, r_t u_t

    per leaf, with :math:`r_t = 1` where a norm is zero and on leaves whose
    weight decay is zero (unless ``always_adapt``). With ``decoupled_decay``
    the :math:`\lambda\theta` term leaves :math:`u_t` and the params are
    shrunk first, :math:`\theta' = \theta(1 - \eta\lambda)` (or
    :math:`\eta^2/\eta_{max}` with ``corrected_weight_decay``); the ratio then
    uses :math:`\|\theta'\|`, as timm's in-place order does.

    Args:
        learning_rate, betas, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        bias_correction: divide the moments by :math:`1-\beta_i^t`.
        eps: added to the bias-corrected root second moment.
        weight_decay: :math:`\lambda` (float or per-leaf tree); also gates the
            trust ratio per leaf.
        grad_averaging: scale the gradient by :math:`1-\beta_1` in :math:`m_t`
            (off: :math:`m_t = \beta_1 m_{t-1} + \hat g_t`).
        max_grad_norm: global-norm clipping threshold over *all* leaves, or None.
        trust_clip: LAMBC, cap the trust ratio at 1.
        always_adapt: apply the trust ratio to undecayed leaves too.
        caution: mask the direction where it disagrees in sign with the
            (clipped) gradient (Cautious Optimizers).
        decoupled_decay: decay the params directly instead of adding
            :math:`\lambda\theta` to the update.
        corrected_weight_decay: with ``decoupled_decay``, decay by
            :math:`\lambda\eta^2/\eta_{max}` (ignored otherwise, as in timm).
        max_lr: peak lr for corrected decay (default: the float lr or the
            schedule's ``base_lr``).
        mu_dtype: dtype of the first moment ``exp_avg`` (default: the params'
            dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_avg_sq`` (default: the
            params' dtype; float32 for float16 params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.lamb(1e-3, weight_decay={'w': 0.01, 'b': 0.0})

    Notes:
        As in timm (and NVIDIA's FusedLAMB), not the paper: ``eps`` defaults
        to 1e-6, gradients are clipped by their global norm (1.0) first, the
        trust ratio is unclipped by default (the paper's :math:`\phi` is the
        identity) and is skipped on undecayed leaves.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        bias_correction=bias_correction,
        grad_averaging=grad_averaging,
        trust_clip=trust_clip,
        always_adapt=always_adapt,
        caution=caution,
        decoupled_decay=decoupled_decay,
        corrected_weight_decay=corrected_weight_decay,
    )
    check_range('max_grad_norm', max_grad_norm, 0.0, lo_open=True, allow_none=True)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    if not caution:
        return optax.chain(
            scale_by_lamb_trust_ratio(
                betas[0],
                betas[1],
                eps,
                weight_decay,
                max_grad_norm=max_grad_norm,
                bias_correction=bias_correction,
                grad_averaging=grad_averaging,
                trust_clip=trust_clip,
                always_adapt=always_adapt,
                decoupled_decay=decoupled_decay,
                learning_rate=learning_rate if decoupled_decay else None,
                lr_scale=lr_scale,
                max_lr=max_lr,
                mu_dtype=mu_dtype,
                nu_dtype=nu_dtype,
            ),
            scale_by_learning_rate(learning_rate, lr_scale),
            add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr)
            if decoupled_decay
            else optax.identity(),
        )
    direction = scale_by_lamb(
        betas[0],
        betas[1],
        eps,
        bias_correction=bias_correction,
        grad_averaging=grad_averaging,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )
    return optax.chain(
        optax.identity() if max_grad_norm is None else clip_by_global_norm_ratio(max_grad_norm),
        cautious(direction) if caution else direction,
        optax.identity() if decoupled_decay else add_l2_weight_decay(weight_decay),
        scale_by_trust_ratio(
            weight_decay,
            form='lamb',
            trust_clip=trust_clip,
            always_adapt=always_adapt,
            learning_rate=learning_rate if decoupled_decay else None,
            lr_scale=lr_scale,
            decoupled_decay=decoupled_decay,
            max_lr=max_lr,
        ),
        scale_by_learning_rate(learning_rate, lr_scale),
        add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr)
        if decoupled_decay
        else optax.identity(),
    )


def _info(name, description, **defaults):
    return OptimInfo(
        name=name,
        alias=lamb,
        timm_class='timm.optim.Lamb',
        description=description,
        has_betas=True,
        defaults=defaults,
        packing='stacked',
        global_clip='max_grad_norm',
        default_lr=1e-2,
        state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
    )


OPTIMIZERS = (
    dataclasses.replace(
        _info('lamb', 'Layer-wise Adaptive Moments for batch optimization'),
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.lamb(lr, weight_decay=wd),
    ),
    _info('lambc', 'LAMB with trust ratio clipping for stability', trust_clip=True),
    _info('lambw', 'LAMB with decoupled weight decay', decoupled_decay=True),
    _info(
        'lambcw',
        'LAMB with trust ratio clipping for stability and decoupled decay',
        trust_clip=True,
        decoupled_decay=True,
    ),
    _info(
        'lambcd',
        'LAMB with corrected decoupled weight decay (lr²/max_lr scaling)',
        decoupled_decay=True,
        corrected_weight_decay=True,
    ),
    _info('clamb', 'Cautious LAMB', caution=True),
    _info('clambw', 'Cautious LAMB with decoupled weight decay', caution=True, decoupled_decay=True),
)
