"""LaProp: timm's ``LaProp`` (``laprop``, ``claprop``, ``lapropc``).

Reference: Ziyin et al., 2020, "LaProp: Separating Momentum and Adaptivity in
Adam" (arXiv:2002.04839); caution from Liang et al., 2024 (arXiv:2411.16085);
corrected decay ``lr**2 / max_lr`` from arXiv:2506.02285.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from ..transforms import adam_args, add_decoupled_weight_decay, caution_mask, compute_dtype, leaf_lrs, resolve_max_lr
from ..transforms import moments_init, per_leaf_stats, safe_increment, tree_unzip
from ._registry import OptimInfo

__all__ = ['laprop']


class ScaleByLapropState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any  # momentum of lr * normalised gradient (the lr lives inside the momentum)
    exp_avg_sq: Any
    exp_avg_lr_1: Any  # one float32 scalar per leaf: EMA of that leaf's group lr (first-moment bias correction)
    exp_avg_lr_2: jax.Array  # EMA of 1 (second-moment bias correction, 1 - b2**t)


def scale_by_laprop(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-15,
    caution: bool = False,
    lr_scale: Any = None,
    *,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """LaProp's step (already lr-scaled, positive: subtract it), as timm computes it.

    ``v <- b2*v + (1-b2)*g^2``; ``m <- b1*m + lr*(1-b1) * g / (sqrt(v / bc2) + eps)``;
    output ``(lr / lr1) * m`` with ``lr1`` the EMA of past group lrs (``lr * bc1``
    for a constant lr; 0 output while it is 0). The lr enters the momentum, so
    unlike Adam the direction cannot be separated from ``scale_by_learning_rate``.
    ``caution`` masks ``m`` (not the stored momentum) against ``g``.

    ``m`` is kept in ``mu_dtype`` and ``v`` in ``nu_dtype`` (default: the
    params' dtype, float32 for float16 params); the lr EMAs are float32
    scalars. Low-precision leaves are computed in float32 and the output has
    the gradient's dtype.
    """
    init_fn = moments_init(
        ScaleByLapropState,
        mu_dtype,
        nu_dtype,
        exp_avg_lr_1=lambda params: per_leaf_stats(lambda _: jnp.zeros([], jnp.float32), params),
        exp_avg_lr_2=lambda params: jnp.zeros([], jnp.float32),
    )

    def update_fn(updates, state, params=None):
        del params
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        bc2 = state.exp_avg_lr_2 * b2 + (1.0 - b2)

        def leaf(g_in, m_in, v_in, lr1, lr):
            cdt = compute_dtype(g_in.dtype)  # float32 for low-precision leaves
            g = g_in.astype(cdt)
            lr1 = lr1 * b1 + (1.0 - b1) * lr
            safe = jnp.where(lr1 != 0, lr1, jnp.ones_like(lr1))
            step_size = jnp.where(lr1 != 0, lr / safe, jnp.zeros_like(lr1))
            v = (v_in.astype(cdt) * b2 + (1.0 - b2) * g * g).astype(v_in.dtype)
            denom = jnp.sqrt(v.astype(cdt) / bc2.astype(cdt)) + eps
            m = (m_in.astype(cdt) * b1 + (lr * (1.0 - b1)).astype(cdt) * (g / denom)).astype(m_in.dtype)
            m_c = m.astype(cdt)
            shown = m_c * caution_mask(m_c, g) if caution else m_c
            return (shown * step_size.astype(cdt)).astype(g_in.dtype), m, v, lr1

        out = jax.tree.map(leaf, updates, state.exp_avg, state.exp_avg_sq, state.exp_avg_lr_1, lrs)
        out, m, v, lr1 = tree_unzip(out, updates, 4)
        return out, ScaleByLapropState(
            count=safe_increment(state.count), exp_avg=m, exp_avg_sq=v, exp_avg_lr_1=lr1, exp_avg_lr_2=bc2
        )

    return optax.GradientTransformation(init_fn, update_fn)


def laprop(
    learning_rate: Any = 4e-4,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-15,
    weight_decay: Any = 0.0,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    *,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``LaProp``: momentum over the *normalised* gradient, decoupling momentum from adaptivity.

    .. math::
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,\eta_t \frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} \\
        \theta'_t &= \theta_{t-1} - \frac{\eta_t}{\bar\eta_t} m_t,
            \qquad \bar\eta_t = \beta_1\bar\eta_{t-1} + (1-\beta_1)\eta_t \\
        \theta_t &= \theta'_t (1 - c_t\lambda)

    :math:`\bar\eta_t` is timm's lr-weighted first-moment bias correction
    (:math:`\eta(1-\beta_1^t)` for a constant lr); :math:`c_t = \eta_t`
    (:math:`\eta_t^2/\eta_{max}` with ``corrected_weight_decay``). The decay
    shrinks the params *after* the step, as timm does.

    Args:
        learning_rate, betas, lr_scale, max_lr: as for every alias (see :mod:`jaxopt_timm.optim`).
        eps: added to the bias-corrected root second moment.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        caution: mask the momentum step where its sign disagrees with the gradient.
        corrected_weight_decay: decay by :math:`\lambda\eta_t^2/\eta_{max}`.
        mu_dtype: dtype of the momentum ``exp_avg`` (default: the params' dtype; float32 for float16 params).
        nu_dtype: dtype of the second moment ``exp_avg_sq`` (default: the params' dtype; float32 for float16
            params).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.laprop(4e-4, weight_decay=0.05)

    Notes:
        The paper has no weight decay; timm's decoupled decay is kept, with its
        post-step order. A schedule's past lrs stay in the momentum, so LaProp
        with a schedule is not Adam-with-a-schedule.
    """
    mu_dtype, nu_dtype = adam_args(
        learning_rate,
        betas,
        eps,
        weight_decay,
        mu_dtype,
        nu_dtype,
        caution=caution,
        corrected_weight_decay=corrected_weight_decay,
    )
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay)
    return optax.with_extra_args_support(
        optax.chain(
            scale_by_laprop(
                learning_rate, betas[0], betas[1], eps, caution, lr_scale, mu_dtype=mu_dtype, nu_dtype=nu_dtype
            ),
            optax.scale(-1.0),
            # timm's LaProp shrinks the params after the step, p' = (p + u)(1 - c*wd), not before it as AdamW
            add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr, order='post'),
        )
    )


_record = functools.partial(
    OptimInfo,
    alias=laprop,
    timm_class='timm.optim.LaProp',
    has_betas=True,
    packing='packed',
    complex_params=True,
    state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
)

OPTIMIZERS = (
    _record(name='laprop', description='Separating Momentum and Adaptivity in Adam', benchmarked=True),
    _record(name='claprop', description='Cautious LaProp', defaults={'caution': True}),
    _record(
        name='lapropc',
        description='LaProp with corrected weight decay (lr²/max_lr scaling)',
        defaults={'corrected_weight_decay': True},
    ),
)
