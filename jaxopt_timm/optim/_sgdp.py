"""SGDP: SGD with the update projected off scale-invariant weights (timm ``SGDP``).

Names: ``sgdp`` and ``csgdp`` (plain + spherical caution). The projection is
AdamP's (Heo et al., 2021, arXiv:2006.08217), applied to SGD momentum; the
references for both caution forms are listed in :mod:`jaxopt_timm.optim._adamp`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_lr, check_range, check_weight_decay
from ..transforms import leaf_lrs, leaf_values, require_params, safe_increment, tree_project_tangent, tree_zeros_like
from ..transforms import upcast
from ._registry import OptimInfo

__all__ = ['sgdp']


class ScaleBySGDPState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    momentum_buffer: Any


def scale_by_sgdp(
    learning_rate: Any,
    momentum: float,
    dampening: float,
    weight_decay: Any,
    nesterov: bool,
    eps: float,
    delta: float,
    wd_ratio: float,
    caution: bool,
    lr_scale: Any = None,
) -> optax.GradientTransformation:
    """The whole SGDP step (momentum, projection, lr and weight decay) as one transform.

    Unlike ``torch.optim.SGD`` (:func:`jaxopt_timm.transforms.scale_by_torch_momentum`)
    the buffer starts at zero and is never seeded with the first gradient, so
    ``dampening`` also damps step 1, as in timm's SGDP.

    The buffer follows the package's state policy (the params' dtype, float32
    for float16 params); low-precision leaves are computed in float32, the
    projection included, and the update has the gradient's dtype.
    """

    def init_fn(params):
        return ScaleBySGDPState(count=jnp.zeros([], jnp.int32), momentum_buffer=tree_zeros_like(params))

    def update_fn(grads, state, params=None):
        require_params(params, 'sgdp')
        grads_c = jax.tree.map(upcast, grads)  # float32 for low-precision leaves
        params_c = jax.tree.map(lambda p, g: p.astype(g.dtype), params, grads_c)
        bufs = jax.tree.map(
            lambda g, b: (momentum * b.astype(g.dtype) + (1.0 - dampening) * g).astype(b.dtype),
            grads_c,
            state.momentum_buffer,
        )
        if nesterov:
            d_p = jax.tree.map(lambda g, b: g + momentum * b.astype(g.dtype), grads_c, bufs)
        else:
            d_p = jax.tree.map(lambda g, b: b.astype(g.dtype), grads_c, bufs)
        d_p, wd_factor = tree_project_tangent(params_c, grads_c, d_p, delta, wd_ratio, eps, caution)
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, grads)
        wds = leaf_values(weight_decay, grads)

        def step(u, p, lr, wd, r, g):
            out = -lr.astype(u.dtype) * u
            if isinstance(wd, jax.core.Tracer) or wd != 0:  # timm: `if weight_decay != 0`, per group
                # timm divides the decay by (1 - momentum), matching the momentum's steady-state gain
                out = out - (lr * wd / (1.0 - momentum)).astype(p.dtype) * r * p
            return out.astype(g.dtype)

        updates = jax.tree.map(step, d_p, params_c, lrs, wds, wd_factor, grads)
        return updates, ScaleBySGDPState(count=safe_increment(state.count), momentum_buffer=bufs)

    return optax.GradientTransformation(init_fn, update_fn)


def sgdp(
    learning_rate: Any = None,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: Any = 0.0,
    nesterov: bool = False,
    eps: float = 1e-8,
    delta: float = 0.1,
    wd_ratio: float = 0.1,
    caution: bool = False,
    *,
    lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``SGDP``: momentum SGD whose update is projected onto the tangent space of scale-invariant weights.

    .. math::
        b_t &= \mu b_{t-1} + (1-\tau) g_t \quad (b_0 = 0), \qquad
        u_t = g_t + \mu b_t \text{ if nesterov else } b_t \\
        u_t &\leftarrow u_t - \hat p\,\langle \hat p, u_t\rangle, \ r = \text{wd\_ratio}
            \quad \text{if } \max|\cos(g_t, \theta)| < \delta / \sqrt{\dim} \text{ (else } r = 1) \\
        \theta_t &= \theta_{t-1}\left(1 - \frac{\eta\lambda r}{1-\mu}\right) - \eta u_t

    The projection is AdamP's (per output channel, then whole tensor; never
    on ``ndim <= 1`` leaves). Weight decay is decoupled and divided by
    :math:`1-\mu` as in timm (so ``momentum`` must be < 1).

    Args:
        learning_rate: float or schedule ``step -> lr``; required, as in timm.
        momentum: momentum factor :math:`\mu` in [0, 1) (timm's factory defaults it to 0.9).
        dampening: dampening :math:`\tau` of the momentum.
        weight_decay: decoupled decay :math:`\lambda` (float or per-leaf tree).
        nesterov: Nesterov momentum.
        eps: norm clamp in the cosine test and projection.
        delta: threshold of the cosine test (``delta / sqrt(row width)``), >= 0.
        wd_ratio: weight-decay multiplier for projected leaves, >= 0.
        caution: cautious mask (spherical for projected leaves), as timm's ``csgdp``.
        lr_scale: per-leaf lr multipliers (layer decay).

    Example:
        >>> import jaxopt_timm as jt  # stepped as every alias: see jaxopt_timm.optim
        >>> tx = jt.optim.sgdp(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    """
    check_lr(learning_rate)
    check_range('momentum', momentum, 0.0, 1.0, hi_open=True)
    check_range('dampening', dampening, 0.0, 1.0)
    check_weight_decay(weight_decay)
    check_range('eps', eps, 0.0)
    check_range('delta', delta, 0.0)
    check_range('wd_ratio', wd_ratio, 0.0)
    check_bool('nesterov', nesterov)
    check_bool('caution', caution)
    return optax.with_extra_args_support(
        scale_by_sgdp(
            learning_rate, momentum, dampening, weight_decay, nesterov, eps, delta, wd_ratio, caution, lr_scale
        )
    )


_record = functools.partial(
    OptimInfo, alias=sgdp, timm_class='timm.optim.SGDP', has_momentum=True, packing='stacked', default_lr=0.05
)

OPTIMIZERS = (
    _record(name='sgdp', description='SGD with built-in projection to unit norm sphere', defaults={'nesterov': True}),
    _record(
        name='csgdp',
        description='Add the spherical cautious optimizer and the standard cautious optimizer to SGDP',
        defaults={'nesterov': True, 'caution': True},
    ),
)
