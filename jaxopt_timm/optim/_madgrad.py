"""MADGRAD: timm's ``MADGRAD`` (``madgrad``, ``madgradw``).

Reference: Defazio & Jelassi, 2021, "Adaptivity without Compromise: A
Momentumized, Adaptive, Dual Averaged Gradient Method for Stochastic
Optimization" (arXiv:2101.11075).

MADGRAD is dual averaging: the iterate is rebuilt every step from an anchor
point ``x0`` and the lr-weighted gradient sums, so the lr enters the
accumulators themselves (``lamb = lr * sqrt(k)``) and the weight decay acts on
the iterate before it is averaged. Neither fits optax's "direction, then lr,
then decay" chain, hence the single :func:`scale_by_madgrad` transform here
that returns ``x_{k+1} - x_k``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_range, check_weight_decay, is_schedule
from ..transforms import compute_dtype, cube_root, leaf_lrs, leaf_values, require_params, safe_increment, state_dtype
from ..transforms import tree_any_nonzero, tree_unzip, tree_zeros_like
from ._registry import OptimInfo

__all__ = ['madgrad']


class ScaleByMadgradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    grad_sum_sq: Any
    s: Any
    x0: Optional[Any]  # None when momentum == 0 (x0 is then recovered from p, s and grad_sum_sq)


def scale_by_madgrad(
    learning_rate: Any,
    momentum: float = 0.9,
    weight_decay: Any = 0.0,
    eps: float = 1e-6,
    decoupled_decay: bool = False,
    lr_scale: Any = None,
) -> optax.GradientTransformation:
    """The whole MADGRAD step (direction, lr and weight decay) as the param delta ``x_{k+1} - x_k``.

    timm's numerics are mirrored, quirks included: the dual-averaging weight
    is ``lamb = (lr + eps) * sqrt(k)`` (timm adds ``eps`` to the group lr),
    decoupled decay shrinks the iterate by ``1 - lr * wd`` *before* it enters
    the momentum average (so with momentum it is scaled by ``momentum``), and
    with ``momentum == 0`` the anchor ``x0`` is recomputed from the decayed
    iterate instead of being stored.

    ``s``, ``grad_sum_sq`` and ``x0`` follow the package's state policy (the
    params' dtype, float32 for float16 params); low-precision leaves are
    computed in float32 and the update has the gradient's dtype.
    """
    # An array momentum (inject_hyperparams) takes the stored-x0 path in init and update alike.
    use_x0 = isinstance(momentum, jax.Array) or momentum != 0
    ck = 1.0 - momentum

    def init_fn(params):
        return ScaleByMadgradState(
            count=jnp.zeros([], jnp.int32),
            grad_sum_sq=tree_zeros_like(params),
            s=tree_zeros_like(params),
            x0=jax.tree.map(lambda p: jnp.array(p, state_dtype(p.dtype)), params) if use_x0 else None,
        )

    def update_fn(updates, state, params=None):
        require_params(params, 'madgrad')
        count = safe_increment(state.count)
        sqrt_k = jnp.sqrt(count.astype(jnp.float32))
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        wds = leaf_values(weight_decay, updates)
        x0s = state.x0 if use_x0 else jax.tree.map(lambda _: None, updates)

        def leaf(g_in, p_in, gss_in, s_in, x0, lr, wd):
            cdt = compute_dtype(g_in.dtype)  # float32 for low-precision leaves
            g, p, gss, s = (x.astype(cdt) for x in (g_in, p_in, gss_in, s_in))
            x0 = None if x0 is None else x0.astype(cdt)
            lamb = (lr + eps) * sqrt_k
            p_dec = p
            if tree_any_nonzero(wd):  # timm's per-group `if weight_decay != 0` (wd is a concrete float here)
                if decoupled_decay:
                    p_dec = p * (1.0 - lr * wd).astype(p.dtype)
                else:
                    g = g + (wd * p).astype(g.dtype)
            if not use_x0:
                x0 = p_dec + s / (cube_root(gss) + eps)
            gss = gss + lamb.astype(g.dtype) * (g * g)
            s = s + lamb.astype(g.dtype) * g
            z = x0 - s / (cube_root(gss) + eps)
            p_new = z if not use_x0 else p_dec * momentum + z * ck
            return (p_new - p).astype(g_in.dtype), gss.astype(gss_in.dtype), s.astype(s_in.dtype)

        out = jax.tree.map(leaf, updates, params, state.grad_sum_sq, state.s, x0s, lrs, wds)
        new_updates, gss, s = tree_unzip(out, updates, 3)
        return new_updates, ScaleByMadgradState(count=count, grad_sum_sq=gss, s=s, x0=state.x0)

    return optax.GradientTransformation(init_fn, update_fn)


def madgrad(
    learning_rate: Any = 1e-2,
    momentum: float = 0.9,
    weight_decay: Any = 0.0,
    eps: float = 1e-6,
    decoupled_decay: bool = False,
    *,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``MADGRAD``: momentumized, adaptive, dual-averaged gradient method.

    With :math:`\lambda_k = (\eta_k + \epsilon)\sqrt{k}` at step :math:`k = 1, 2, \dots`:

    .. math::
        s_k &= s_{k-1} + \lambda_k g_k, \quad \nu_k = \nu_{k-1} + \lambda_k g_k^2 \\
        z_k &= x_0 - \frac{s_k}{\nu_k^{1/3} + \epsilon} \\
        x_k &= \mu\, x_{k-1} + (1 - \mu)\, z_k

    where :math:`x_0` is the initial point. With ``momentum == 0`` the
    iterate is :math:`z_k` itself and :math:`x_0` is recovered each step as
    :math:`x_{k-1} + s_{k-1} / (\nu_{k-1}^{1/3} + \epsilon)`. Weight decay is
    L2 (:math:`g \leftarrow g + \omega x`) or, with ``decoupled_decay``,
    :math:`x_{k-1} \leftarrow x_{k-1}(1 - \eta_k\omega)` before the step.

    Args:
        learning_rate: float or schedule ``step -> lr`` (must be > 0, as timm).
        momentum: :math:`\mu` in [0, 1) (timm's factory passes 0.9).
        weight_decay: :math:`\omega` (float or per-leaf tree).
        eps: added to the cube root of :math:`\nu` (and, as in timm, to the lr in :math:`\lambda_k`).
        decoupled_decay: decay the iterate instead of adding an L2 gradient.
        lr_scale: per-leaf lr multipliers (layer decay); the *group* lr enters
            :math:`\lambda_k`, so a scaled group is not a scaled update.

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.madgrad(1e-2, momentum=0.9)

    Notes:
        The paper's :math:`\lambda_k = \eta\sqrt{k+1}` for 0-based :math:`k`
        equals timm's 1-based :math:`\sqrt{k}`. timm's ``lr + eps`` inside
        :math:`\lambda` is not in the paper; it is kept for parity. The state
        holds a copy of the initial params when ``momentum != 0`` (in float32
        for float16 params, like the other buffers).
    """
    if not is_schedule(learning_rate):
        check_range('learning_rate', learning_rate, 0.0, lo_open=True)
    check_range('momentum', momentum, 0.0, 1.0, hi_open=True)
    check_weight_decay(weight_decay)
    check_range('eps', eps, 0.0)
    check_bool('decoupled_decay', decoupled_decay)
    return optax.with_extra_args_support(
        scale_by_madgrad(learning_rate, momentum, weight_decay, eps, decoupled_decay, lr_scale)
    )


_record = functools.partial(
    OptimInfo, alias=madgrad, timm_class='timm.optim.MADGRAD', has_momentum=True, packing='packed', default_lr=0.01
)

OPTIMIZERS = (
    _record(
        name='madgrad',
        description='Momentum-based Adaptive gradient method',
        benchmarked=True,
        optax_equivalent=lambda lr, wd: optax.contrib.madgrad(lr, weight_decay=wd),
    ),
    _record(name='madgradw', description='MADGRAD with decoupled weight decay', defaults={'decoupled_decay': True}),
)
