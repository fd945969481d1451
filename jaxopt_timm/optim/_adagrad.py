"""``torch.optim.Adagrad`` as timm registers it (``adagrad``).

Reference: Duchi et al., 2011, "Adaptive Subgradient Methods for Online
Learning and Stochastic Optimization" (JMLR 12). Weight decay is torch's L2,
folded into the direction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_lr, check_range, check_weight_decay
from ..transforms import cpu_fence, folded_l2, negate_if, safe_increment, scale_by_learning_rate, state_dtype, upcast
from ._registry import OptimInfo

__all__ = ['adagrad']


class ScaleByTorchAdagradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    sum: Any


def scale_by_torch_adagrad(
    lr_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    r"""torch's Adagrad direction: ``g / (sqrt(s) + eps) / (1 + (t-1) * lr_decay)`` with ``s += g^2``.

    ``optax.scale_by_rss`` puts :math:`\epsilon` inside the square root and
    has no ``lr_decay``, so it differs from torch; this primitive follows
    torch (``s`` starts at ``initial_accumulator_value``, :math:`t` counts
    from 1). The lr decay divides the step, so folding it into the direction
    leaves the later ``-lr`` multiply unchanged. ``weight_decay`` (float or
    per-leaf tree) folds torch's L2 term in (``g <- g + wd*p``): the direction
    recomputes it after the sum is stored rather than sharing it, which
    XLA:CPU (no multi-output fusion) would write to a full-size temporary.
    """

    def init_fn(params):
        return ScaleByTorchAdagradState(
            count=jnp.zeros([], jnp.int32),
            sum=jax.tree.map(lambda p: jnp.full(p.shape, initial_accumulator_value, state_dtype(p.dtype)), params),
        )

    def update_fn(updates, state, params=None):
        l2 = folded_l2(weight_decay, updates, params, 'scale_by_torch_adagrad with weight_decay')
        wds, ps = l2.wds, l2.params

        def grad(g, p, wd):  # add_l2_weight_decay's sum, in the gradient's dtype
            return upcast(l2.grad(g, p, wd))

        decay = 1.0 + state.count.astype(jnp.float32) * jnp.asarray(lr_decay, jnp.float32)
        none_leaf = lambda x: x is None  # noqa: E731
        sums = jax.tree.map(
            lambda g, s, p, wd: None if g is None else (upcast(s) + grad(g, p, wd) ** 2).astype(s.dtype),
            updates,
            state.sum,
            ps,
            wds,
            is_leaf=none_leaf,
        )
        if l2.on:
            sums, updates, ps = cpu_fence((sums, updates, ps))  # the sum is stored before g + wd*p is recomputed
        out = jax.tree.map(
            lambda g, s, p, wd: (
                None if g is None else (grad(g, p, wd) / (jnp.sqrt(upcast(s)) + eps) / decay).astype(g.dtype)
            ),
            updates,
            sums,
            ps,
            wds,
            is_leaf=none_leaf,
        )
        return out, ScaleByTorchAdagradState(count=safe_increment(state.count), sum=sums)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: Any = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: Any = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.Adagrad``: per-coordinate steps scaled by the root of the summed squared gradients.

    .. math::
        g_t &= \nabla f(\theta_{t-1}) + \lambda\theta_{t-1}, \quad s_t = s_{t-1} + g_t^2 \quad (s_0 = s_{init}) \\
        \theta_t &= \theta_{t-1} - \frac{\eta}{1 + (t-1)\,\delta} \frac{g_t}{\sqrt{s_t} + \epsilon}

    Args:
        learning_rate, maximize, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        lr_decay: :math:`\delta`, the lr's inverse-time decay per step, >= 0.
        weight_decay: L2 penalty :math:`\lambda` (float or per-leaf tree).
        initial_accumulator_value: :math:`s_{init}`, >= 0.
        eps: added to the root of the sum (timm's registry binds 1e-8; torch's default is 1e-10).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.adagrad(1e-2, lr_decay=1e-3, initial_accumulator_value=0.1)
    """
    check_lr(learning_rate)
    check_range('lr_decay', lr_decay, 0.0)
    check_weight_decay(weight_decay)
    check_range('initial_accumulator_value', initial_accumulator_value, 0.0)
    check_range('eps', eps, 0.0)
    check_bool('maximize', maximize)
    return optax.chain(
        negate_if(maximize),
        scale_by_torch_adagrad(lr_decay, initial_accumulator_value, eps, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate, lr_scale),
    )


OPTIMIZERS = (
    OptimInfo(
        name='adagrad',
        alias=adagrad,
        timm_class='torch.optim.Adagrad',
        description='torch.optim.Adagrad, Adapts learning rates using cumulative squared gradients',
        defaults={'eps': 1e-8},
        packing='packed',
        default_lr=0.01,
        complex_params=True,
        optax_equivalent=lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.adagrad(lr)),
    ),
)
