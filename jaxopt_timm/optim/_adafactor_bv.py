"""Adafactor, Big Vision variant: timm's ``AdafactorBigVision``.

Names: ``adafactorbv``, ``cadafactorbv`` (caution), ``adafactorbvc`` and
``cadafactorbvc`` (corrected weight decay). References: Zhai et al., 2021,
"Scaling Vision Transformers" (arXiv:2106.04560) and google-research/big_vision;
Shazeer & Stern, 2018, "Adafactor" (arXiv:1804.04235); Liang et al., 2024,
"Cautious Optimizers" (arXiv:2411.16085); corrected decay from arXiv:2506.02285.

This is not timm's ``Adafactor`` (:mod:`._adafactor`) nor ``optax.adafactor``:
it factors the *two largest* dims, caps :math:`\\beta_2`, clips the
lr-free update by RMS, keeps a (by default bfloat16) momentum of the clipped
update, then scales by the lr and decays the params decoupled, optionally
without the lr (``unscaled_wd``). The step is written out as one transform
because the per-leaf factoring, the low-precision momentum cast and caution
inside the momentum branch have no optax equivalent.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_choice, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    LAYOUTS,
    caution_mask,
    clip_by_rms,
    compute_dtype,
    decoupled_decay_factor,
    init_second_moments,
    leaf_values,
    lr_at,
    require_static,
    resolve_max_lr,
    safe_increment,
    state_dtype,
    torch_lerp_rounded_weight,
    torch_rule_axes,
    update_second_moment,
)
from ._registry import OptimInfo

__all__ = ['adafactor_bv', 'adafactor_bv_factored_dims', 'ScaleByAdafactorBVState']


def _timm_bv_factored_dims(shape: Sequence[int], min_dim_size_to_factor: int) -> Optional[Tuple[int, int]]:
    # big_vision's rule: the two largest dims (ties broken by position), unless the smaller is below the minimum
    if len(shape) < 2:
        return None
    order = sorted((size, axis) for axis, size in enumerate(shape))
    if order[-2][0] < min_dim_size_to_factor:
        return None
    return order[-2][1], order[-1][1]


def adafactor_bv_factored_dims(
    shape: Sequence[int],
    min_dim_size_to_factor: int = 16,
    layout: str = 'torch',
) -> Optional[Tuple[int, int]]:
    """The ``(col, row)`` axes (second largest, largest) whose second moments are factored, or None (full).

    ``layout='torch'`` applies timm's rule to ``shape`` as is. ``layout='flax'``
    reads it as a Flax kernel (2-d Dense ``(in, out)``, >=3-d conv
    ``(*spatial, I, O)``), applies the rule to the equivalent torch shape (so
    equal sizes are tie-broken in torch's dim order, as timm does) and maps the
    axes back.
    """
    rule = functools.partial(_timm_bv_factored_dims, min_dim_size_to_factor=min_dim_size_to_factor)
    axes = torch_rule_axes(shape, layout, rule)
    return None if axes is None else (axes[0], axes[1])  # the rule picks two axes


class ScaleByAdafactorBVState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any  # momentum in momentum_dtype; None leaves when momentum is None
    exp_avg_sq: Any  # full second moment; None leaves for factored params
    exp_avg_sq_r: Any  # keepdims row statistics (size 1 along the largest axis); None when unfactored
    exp_avg_sq_c: Any  # keepdims column statistics (size 1 along the second largest axis)


def adafactor_bv(
    learning_rate: Any = 1.0,
    min_dim_size_to_factor: int = 16,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    beta2_cap: float = 0.999,
    momentum: Optional[float] = 0.9,
    momentum_dtype: Any = 'bfloat16',
    eps: Optional[float] = None,
    weight_decay: Any = 0.0,
    clipping_threshold: Optional[float] = None,
    unscaled_wd: bool = False,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    *,
    layout: str = 'torch',
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``AdafactorBigVision``: factored second moments of the two largest dims, capped :math:`\beta_2`,
    low-precision momentum.

    .. math::
        \hat\beta_{2,t} &= \min(\beta_{2,cap},\ 1 - s_t^{-c}), \quad s_t = \max(t - t_0, 1), \quad
        G_t = g_t^2 + \epsilon \\
        R_t &= \hat\beta_{2,t} R_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{row}}(G_t), \quad
        C_t = \hat\beta_{2,t} C_{t-1} + (1-\hat\beta_{2,t})\,\mathrm{mean}_{\text{col}}(G_t) \\
        U_t &= g_t \Big/ \sqrt{\frac{R_t C_t}{\mathrm{mean}(R_t)}}
            \quad (\text{unfactored: } g_t / \sqrt{V_t}), \qquad
        U_t \leftarrow \frac{U_t}{\max(1, \mathrm{RMS}(U_t)/d)} \ (\text{if } d) \\
        m_t &= \mu\, m_{t-1} + (1-\mu)\, U_t \ (\text{stored in momentum\_dtype}), \qquad
        \theta_t = \theta_{t-1}(1 - k_t\lambda) - \eta_t m_t

    with :math:`k_t = \eta_t` (``unscaled_wd``: 1), or with corrected decay
    :math:`k_t = \eta_t^2/\eta_{max}` (``unscaled_wd``: :math:`\eta_t/\eta_{max}`);
    :math:`\eta_t` is the group lr (schedule times ``lr_scale``).

    A tensor with at least two dims is factored over its two largest dims
    (``col`` the second largest, ``row`` the largest; equal sizes ordered by
    position) when the second largest is ``>= min_dim_size_to_factor``.

    Args:
        learning_rate: float or schedule ``step -> lr`` (timm's default is 1.0).
        min_dim_size_to_factor: the smaller factored dim must be at least this.
        decay_rate: :math:`c` (>= 0) of :math:`\hat\beta_{2,t} = 1 - s_t^{-c}`.
        decay_offset: :math:`t_0`, steps by which the :math:`\beta_2` schedule is delayed (clamped to step 1).
        beta2_cap: upper bound of :math:`\hat\beta_{2,t}`.
        momentum: :math:`\mu` in [0, 1), or None for no momentum (then ``caution`` has no effect, as in timm).
        momentum_dtype: dtype of :math:`m` (jnp dtype or timm's string, e.g. ``'bfloat16'``, ``'float32'``).
        eps: :math:`\epsilon` added to the squared gradient; None: 1e-30 (1e-7 for float16 params).
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        clipping_threshold: :math:`d`, RMS threshold of the pre-momentum update; None disables it.
        unscaled_wd: big_vision's fully decoupled decay, not multiplied by the lr.
        caution: mask momentum components whose sign disagrees with the gradient ('Cautious Optimizers').
        corrected_weight_decay: scale the decay by :math:`\eta_t/\eta_{max}` (arXiv:2506.02285).
        layout: ``'torch'`` or ``'flax'``: 2-d leaves are Dense kernels ``(in, out)`` and >=3-d leaves conv
            kernels ``(*spatial, I, O)``, factored as timm factors the transposed torch tensor (equal dims are
            tie-broken in torch's order; see :func:`adafactor_bv_factored_dims`), so a Flax model follows the
            same trajectory as timm on its torch twin.
        lr_scale: per-leaf lr multipliers (layer decay).
        max_lr: peak lr for corrected decay (default: the float lr or a package schedule's ``base_lr``).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((32, 64)), 'b': jnp.zeros(32)}
        >>> tx = jt.optim.adafactor_bv(1e-3, weight_decay=1e-4)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params)
        >>> params = optax.apply_updates(params, updates)

    Notes:
        As in timm, the statistics are kept in the params' dtype, except that
        float16 params get float32 statistics (the package's state policy:
        float16 cannot hold squared gradients); the step is computed in float32
        for bfloat16 / float16 params and each buffer rounded once when stored.
        Only the momentum has its own dtype (``momentum_dtype``, default
        bfloat16; its EMA is computed in float32 and rounded once, as torch's
        CPU kernels do).
        big_vision's own optimizer uses ``unscaled_wd``-style decay; timm's
        default (and this one's) scales the decay by the lr like AdamW.
    """
    check_lr(learning_rate)
    check_range('min_dim_size_to_factor', min_dim_size_to_factor, 0, integer=True)
    require_static('adafactor_bv', 'state shapes', min_dim_size_to_factor=min_dim_size_to_factor)
    check_range('decay_rate', decay_rate, 0.0)
    check_range('decay_offset', decay_offset, 0, integer=True)
    check_range('beta2_cap', beta2_cap, 0.0, 1.0)
    check_range('momentum', momentum, 0.0, 1.0, hi_open=True, allow_none=True)
    mom_dtype = resolve_dtype('momentum_dtype', momentum_dtype)
    if mom_dtype is None:
        raise ValueError('Invalid momentum_dtype: None, expected a floating dtype such as jnp.bfloat16 or "float32"')
    check_range('eps', eps, 0.0, allow_none=True)
    check_weight_decay(weight_decay)
    check_range('clipping_threshold', clipping_threshold, 0.0, lo_open=True, allow_none=True)
    for name, value in (
        ('unscaled_wd', unscaled_wd),
        ('caution', caution),
        ('corrected_weight_decay', corrected_weight_decay),
    ):
        check_bool(name, value)
    check_choice('layout', layout, LAYOUTS)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    min_dim_size_to_factor = int(min_dim_size_to_factor)
    mom_dtype = None if momentum is None else jnp.dtype(mom_dtype)
    # The whole step (lr and weight decay included) is one transform. Statistics live in the params' dtype (timm
    # allocates them like the gradient), float32 for float16 params (the package's state policy); the momentum
    # lives in ``momentum_dtype``. The step is computed in float32 for bf16/fp16 params and the statistics
    # rounded once when stored.
    # 1 - min(cap, 1 - s**-c) == max(1 - cap, s**-c): computing the complement directly keeps it as exact
    # in float32 as timm's double-precision Python scalar is after its cast
    min_one_minus_beta2 = 1.0 - float(beta2_cap)

    def _dims(p):
        return adafactor_bv_factored_dims(p.shape, min_dim_size_to_factor, layout)

    def init_fn(params):
        return ScaleByAdafactorBVState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: None if momentum is None else jnp.zeros(p.shape, mom_dtype), params),
            *init_second_moments(params, _dims, lambda p: state_dtype(p.dtype)),
        )

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError('adafactor_bv needs the params: call tx.update(grads, state, params)')
        count = safe_increment(state.count)
        decay_step = jnp.maximum(count - jnp.int32(decay_offset), 1).astype(jnp.float32)
        one_minus_beta2 = jnp.maximum(jnp.float32(min_one_minus_beta2), decay_step ** jnp.float32(-decay_rate))
        base_lr = lr_at(learning_rate, state.count)
        treedef = jax.tree.structure(params)
        flat = [
            treedef.flatten_up_to(x)
            for x in (
                grads,
                params,
                state.exp_avg,
                state.exp_avg_sq,
                state.exp_avg_sq_r,
                state.exp_avg_sq_c,
                leaf_values(lr_scale, params),
                leaf_values(weight_decay, params),
            )
        ]
        outs = []
        for g_in, p_in, m, v_in, row_in, col_in, scale, wd in zip(*flat):
            dt = compute_dtype(g_in.dtype)  # float32 for bf16/fp16 params
            g, p = g_in.astype(dt), p_in.astype(dt)
            v, row, col = (None if x is None else x.astype(dt) for x in (v_in, row_in, col_in))
            lr = base_lr if scale is None else base_lr * scale
            leaf_eps = eps if eps is not None else (1e-7 if jnp.dtype(g_in.dtype) == jnp.float16 else 1e-30)
            sq = jnp.square(g) + jnp.asarray(leaf_eps, dt)
            (v, row, col), inv_root = update_second_moment(
                sq, (v, row, col), (v_in, row_in, col_in), _dims(p), one_minus_beta2
            )
            u = g
            for factor in inv_root:  # timm: g * row_factor * col_factor, left to right
                u = u * factor
            if clipping_threshold is not None:
                u = clip_by_rms(u, clipping_threshold)
            if momentum is not None:
                # torch's CPU kernels compute half-precision elementwise ops in float32 and round the result once
                op = compute_dtype(mom_dtype)
                target = u.astype(mom_dtype).astype(op)
                m = torch_lerp_rounded_weight(m.astype(op), target, jnp.float32(1.0 - momentum)).astype(mom_dtype)
                u = m.astype(dt)
                if caution:  # timm masks only inside its momentum branch
                    u = u * caution_mask(u, g)
            u = u * lr.astype(dt)
            out = -u
            if isinstance(wd, jax.core.Tracer) or wd != 0:  # timm: `if weight_decay != 0`, per group
                if unscaled_wd:  # big_vision's fully decoupled decay: no lr, or lr / max_lr when corrected
                    c = jnp.float32(1.0) if max_lr is None else lr / max_lr
                else:
                    c = decoupled_decay_factor(lr, max_lr)
                out = out - (c * wd).astype(dt) * p
            stats = tuple(
                None if x is None else x.astype(x_in.dtype) for x, x_in in ((v, v_in), (row, row_in), (col, col_in))
            )
            outs.append((out.astype(g_in.dtype), m) + stats)
        unflat = [jax.tree.unflatten(treedef, [o[i] for o in outs]) for i in range(5)]
        return unflat[0], ScaleByAdafactorBVState(count, *unflat[1:])

    return optax.with_extra_args_support(optax.GradientTransformation(init_fn, update_fn))


_TIMM_CLASS = 'timm.optim.AdafactorBigVision'

OPTIMIZERS = (
    OptimInfo(
        name='adafactorbv',
        alias=adafactor_bv,
        timm_class=_TIMM_CLASS,
        description='Big Vision variant of Adafactor with factored gradients, half precision momentum',
        has_momentum=True,
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        state_dtypes={'momentum_dtype': ('exp_avg',)},
        benchmarked=True,
    ),
    OptimInfo(
        name='adafactorbvc',
        alias=adafactor_bv,
        timm_class=_TIMM_CLASS,
        description='Adafactor Big Vision with corrected weight decay (lr²/max_lr or lr/max_lr scaling)',
        has_momentum=True,
        defaults={'corrected_weight_decay': True},
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        state_dtypes={'momentum_dtype': ('exp_avg',)},
    ),
    OptimInfo(
        name='cadafactorbv',
        alias=adafactor_bv,
        timm_class=_TIMM_CLASS,
        description='Cautious Big Vision Adafactor',
        has_momentum=True,
        defaults={'caution': True},
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        state_dtypes={'momentum_dtype': ('exp_avg',)},
    ),
    OptimInfo(
        name='cadafactorbvc',
        alias=adafactor_bv,
        timm_class=_TIMM_CLASS,
        description='Cautious Adafactor Big Vision with corrected weight decay',
        has_momentum=True,
        defaults={'caution': True, 'corrected_weight_decay': True},
        packing='stacked',
        shape_aware=True,
        default_lr=0.01,
        state_dtypes={'momentum_dtype': ('exp_avg',)},
    ),
)
