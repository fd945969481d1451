"""Adafactor with timm's factoring heuristic (timm ``Adafactor``, from fairseq's port).

Names: ``adafactor`` and ``cadafactor`` (caution, first moment on). Reference:
Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear
Memory Cost" (arXiv:1804.04235); Liang et al., 2024, "Cautious Optimizers"
(arXiv:2411.16085).

``optax.adafactor`` differs from timm's in several places (it factors the two
largest dims, applies the parameter-scale to any lr, decays the lr-free update
in its momentum, and orders decay and clipping differently), so the step is
written out here.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import (
    check_betas,
    check_bool,
    check_choice,
    check_lr,
    check_range,
    check_weight_decay,
    resolve_dtype,
)
from ..transforms import (
    LAYOUTS,
    as_stored,
    caution_mask,
    clip_by_rms,
    compute_dtype,
    init_second_moments,
    leaf_values,
    lr_at,
    require_static,
    rms,
    safe_increment,
    torch_lerp_rounded_weight,
    torch_rule_axes,
    update_second_moment,
)
from ._registry import OptimInfo

__all__ = ['adafactor', 'adafactor_factored_dims']


def _timm_factored_dims(shape: Sequence[int], min_dim_size_to_factor: int) -> Optional[Tuple[int, int]]:
    """timm's rule on a torch-layout shape: leading (out, in) dims of >2-d tensors, else the last two."""
    ndim = len(shape)
    if ndim > 2 and shape[0] > min_dim_size_to_factor and shape[1] > min_dim_size_to_factor:
        return 0, 1
    if ndim >= 2 and shape[-2] > min_dim_size_to_factor and shape[-1] > min_dim_size_to_factor:
        return ndim - 2, ndim - 1
    return None


def adafactor_factored_dims(
    shape: Sequence[int],
    min_dim_size_to_factor: int = 16,
    layout: str = 'torch',
) -> Optional[Tuple[int, int]]:
    """The ``(col, row)`` axes of ``shape`` whose second moments are kept factored, or None (full).

    ``layout='torch'`` is timm's rule as is. ``layout='flax'`` reads the shape
    as a Flax kernel (2-d: Dense ``(in, out)``; >=3-d: conv ``(*spatial, I, O)``),
    applies timm's rule to the equivalent torch tensor and maps the axes back,
    so a Flax model is factored exactly as timm factors the same model in torch.
    """
    rule = functools.partial(_timm_factored_dims, min_dim_size_to_factor=min_dim_size_to_factor)
    axes = torch_rule_axes(shape, layout, rule)
    return None if axes is None else (axes[0], axes[1])  # the rule picks two axes


class ScaleByAdafactorState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any  # None leaves when beta1 is None
    exp_avg_sq: Any  # full second moment, None leaves for factored params
    exp_avg_sq_row: Any  # None leaves for unfactored params (keepdims shapes: size 1 along the row axis)
    exp_avg_sq_col: Any


def _state_dtype(p: jax.Array, requested: Any = None):
    # timm computes bf16/fp16 params' steps in float32 and keeps all their state in float32 (this module's
    # deliberate exception to the package's policy, which keeps bf16 state in bf16); `requested` wins
    return jnp.dtype(requested) if requested is not None else compute_dtype(p.dtype)


def adafactor(
    learning_rate: Any = None,
    eps: float = 1e-30,
    eps_scale: float = 1e-3,
    clip_threshold: float = 1.0,
    decay_rate: float = -0.8,
    betas: Optional[Tuple[float, float]] = None,
    weight_decay: Any = 0.0,
    scale_parameter: bool = True,
    warmup_init: bool = False,
    min_dim_size_to_factor: int = 16,
    caution: bool = False,
    *,
    layout: str = 'torch',
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Adafactor``: factored second moments, RMS update clipping, optional relative step size.

    .. math::
        \hat\beta_{2,t} &= 1 - t^{c}, \quad G_t = g_t^2 + \epsilon_1 \\
        R_t &= \hat\beta_{2,t} R_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{row}}(G_t), \quad
        C_t = \hat\beta_{2,t} C_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{col}}(G_t) \\
        U_t &= g_t \Big/ \sqrt{\frac{R_t C_t}{\mathrm{mean}(R_t)}}
            \quad (\text{unfactored: } g_t / \sqrt{V_t}), \qquad
        U_t \leftarrow \frac{U_t}{\max(1, \mathrm{RMS}(U_t)/d)} \\
        \rho_t &= \min(10^{-2}\ (\text{or } 10^{-6} t),\ 1/\sqrt{t}) \cdot
            \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1})) \quad (\text{lr=None}) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, \rho_t U_t \quad (\text{if betas}), \qquad
        \theta_t = \theta_{t-1} (1 - \lambda\rho_t) - m_t \ (\text{or } \rho_t U_t)

    Factoring follows timm's heuristic on the torch shape: tensors with more
    than two dims whose first two dims both exceed ``min_dim_size_to_factor``
    are factored over those (out, in) channels; otherwise the last two dims
    are, if both exceed it; else the second moment is kept in full.

    Args:
        learning_rate: external lr (float or schedule ``step -> lr``), or None for the
            relative step size :math:`\rho_t` (then ``scale_parameter`` / ``warmup_init`` apply).
        eps: :math:`\epsilon_1`, added to the squared gradient.
        eps_scale: :math:`\epsilon_2`, lower bound of the parameter RMS in the relative step.
        clip_threshold: :math:`d`, RMS threshold of the update.
        decay_rate: :math:`c` (<= 0) of the second-moment decay :math:`1 - t^c`.
        betas: None (no first moment) or ``(beta1, beta2)``; only ``beta1`` is used, as in timm.
        weight_decay: :math:`\lambda`, applied as :math:`\theta \leftarrow \theta(1 - \lambda \rho_t)` with the
            step's lr (float or per-leaf tree).
        scale_parameter: relative step only: scale it by the parameter RMS.
        warmup_init: relative step only: linear warm-up :math:`10^{-6} t`.
        min_dim_size_to_factor: both factored dims must be larger than this.
        caution: cautious mask on the first moment (needs ``betas``), as timm's ``cadafactor``.
        layout: ``'torch'`` (shapes are read as timm reads torch tensors) or ``'flax'``: 2-d leaves
            are Dense kernels ``(in, out)`` and >=3-d leaves conv kernels ``(*spatial, I, O)``, factored
            as timm factors the transposed torch tensor (see :func:`adafactor_factored_dims`).
        lr_scale: per-leaf lr multipliers (layer decay); with ``learning_rate=None`` they multiply the
            relative step (timm's relative step overwrites the group lr, dropping ``lr_scale``).
        mu_dtype: dtype of the first moment ``exp_avg``, only kept with ``betas`` (default: the params'
            dtype; float32 for bfloat16 and float16 params, as timm).
        nu_dtype: dtype of the second moment (``exp_avg_sq``, or the factored ``exp_avg_sq_row`` /
            ``exp_avg_sq_col``) (default: the params' dtype; float32 for bfloat16 and float16 params, as timm).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((32, 64)), 'b': jnp.zeros(32)}
        >>> tx = jt.optim.adafactor()  # relative step size
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        As in timm (and unlike fairseq / HF), ``scale_parameter`` and
        ``warmup_init`` only affect the relative step; an external lr is used
        as given.
        State dtypes deliberately differ from the package's default policy
        (state in the params' dtype, float32 only for float16 params): timm's
        Adafactor computes bfloat16 params' steps in float32 and keeps their
        state in float32, and so does this one unless ``mu_dtype`` /
        ``nu_dtype`` say otherwise. The step is always computed in float32 for
        low-precision params and the state rounded once when stored.
    """
    if learning_rate is not None:
        check_lr(learning_rate)
    check_range('eps', eps, 0.0)
    check_range('eps_scale', eps_scale, 0.0)
    check_range('clip_threshold', clip_threshold, 0.0, lo_open=True)
    check_range('decay_rate', decay_rate, None, 0.0)
    if betas is not None:
        check_betas(betas)
    check_weight_decay(weight_decay)
    check_bool('scale_parameter', scale_parameter)
    check_bool('warmup_init', warmup_init)
    check_range('min_dim_size_to_factor', min_dim_size_to_factor, 0, integer=True)
    require_static('adafactor', 'state shapes', min_dim_size_to_factor=min_dim_size_to_factor)
    check_bool('caution', caution)
    check_choice('layout', layout, LAYOUTS)
    if warmup_init and learning_rate is not None:
        raise ValueError(
            f'Invalid warmup_init: True with learning_rate={learning_rate!r}; warm-up initialisation is part of '
            'the relative step size and requires learning_rate=None'
        )
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    beta1 = None if betas is None else float(betas[0])
    min_dim_size_to_factor = int(min_dim_size_to_factor)
    relative_step = learning_rate is None
    # The whole step (lr and weight decay included) is one transform. The lr cannot be a separate transform at
    # the end: timm scales the clipped update by the lr *before* its first-moment EMA, and in relative-step mode
    # the lr of each leaf depends on that leaf's RMS. Each step is computed in float32 for low-precision params
    # (else in their dtype) and stored back in the state dtypes.

    def _dims(p):
        return adafactor_factored_dims(p.shape, min_dim_size_to_factor, layout)

    def init_fn(params):
        def momentum(p):
            return None if beta1 is None else jnp.zeros(p.shape, _state_dtype(p, mu_dtype))

        return ScaleByAdafactorState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(momentum, params),
            *init_second_moments(params, _dims, lambda p: _state_dtype(p, nu_dtype)),
        )

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError('adafactor needs the params: call tx.update(grads, state, params)')
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        one_minus_beta2t = 1.0 - (1.0 - t ** jnp.asarray(decay_rate, jnp.float32))
        if relative_step:
            min_step = 1e-6 * t if warmup_init else jnp.float32(1e-2)
            rel_lr = jnp.minimum(min_step, 1.0 / jnp.sqrt(t))
        else:
            ext_lr = lr_at(learning_rate, state.count)
        treedef = jax.tree.structure(params)
        flat = [
            treedef.flatten_up_to(x)
            for x in (
                grads,
                params,
                state.exp_avg,
                state.exp_avg_sq,
                state.exp_avg_sq_row,
                state.exp_avg_sq_col,
                leaf_values(lr_scale, params),
                leaf_values(weight_decay, params),
            )
        ]
        outs = []
        for g_in, p_in, m_in, v_in, row_in, col_in, scale, wd in zip(*flat):
            sdt = _state_dtype(p_in)  # the compute dtype: float32 for bf16/fp16 params, as timm
            g, p = g_in.astype(sdt), p_in.astype(sdt)
            m, v, row, col = (None if x is None else x.astype(sdt) for x in (m_in, v_in, row_in, col_in))
            if relative_step:
                lr = (
                    rel_lr * jnp.maximum(jnp.asarray(eps_scale, jnp.float32), rms(p).astype(jnp.float32))
                    if scale_parameter
                    else rel_lr
                )
            else:
                lr = ext_lr
            if scale is not None:
                lr = lr * scale
            lr = lr.astype(sdt)
            sq = g * g + jnp.asarray(eps, sdt)
            (v, row, col), inv_root = update_second_moment(
                sq, (v, row, col), (v_in, row_in, col_in), _dims(p_in), one_minus_beta2t
            )
            u = functools.reduce(operator.mul, inv_root) * g  # timm: (row_factor * col_factor) * g
            u = clip_by_rms(u, clip_threshold) * lr
            if beta1 is not None:
                m = as_stored(torch_lerp_rounded_weight(m, u, jnp.float32(1.0 - beta1)), m_in)
                u = m * caution_mask(m, g) if caution else m
            out = -u
            if isinstance(wd, jax.core.Tracer) or wd != 0:  # timm: `if group['weight_decay'] != 0`, per group
                out = out - (wd * lr) * p
            stored = tuple(
                None if x is None else x.astype(x_in.dtype)
                for x, x_in in ((m, m_in), (v, v_in), (row, row_in), (col, col_in))
            )
            outs.append((out.astype(g_in.dtype),) + stored)
        unflat = [jax.tree.unflatten(treedef, [o[i] for o in outs]) for i in range(5)]
        return unflat[0], ScaleByAdafactorState(count, *unflat[1:])

    return optax.with_extra_args_support(optax.GradientTransformation(init_fn, update_fn))


# the first moment (with betas) and the full or factored second moments
_STATE_DTYPES = {'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq', 'exp_avg_sq_row', 'exp_avg_sq_col')}

OPTIMIZERS = (
    OptimInfo(
        name='adafactor',
        alias=adafactor,
        timm_class='timm.optim.Adafactor',
        description='Memory-efficient implementation of Adam with factored gradients',
        has_betas=True,
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        benchmarked=True,
        state_dtypes=_STATE_DTYPES,
        optax_equivalent=lambda lr, wd: optax.adafactor(lr, weight_decay_rate=wd),
    ),
    OptimInfo(
        name='cadafactor',
        alias=adafactor,
        timm_class='timm.optim.Adafactor',
        description='Cautious Adafactor',
        has_betas=True,
        defaults={'caution': True, 'betas': (0.9, 0.999)},
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        state_dtypes=_STATE_DTYPES,
    ),
)
