"""Prodigy (``prodigyopt`` 1.1.2: ``Prodigy``): Adam whose step size ``d`` is estimated from the run itself.

Reference: Mishchenko & Defazio, 2024, "Prodigy: An Expeditiously Adaptive
Parameter-Free Learner" (arXiv:2306.06101).

``d`` estimates the distance from the initial params ``p0`` to the solution.
With ``dlr = d * lr * bc`` (``bc`` Adam's bias correction when enabled), each
step accumulates, over every leaf, ``s <- beta3 s + (d/d0) dlr g`` (``(d/d0) d g``
with ``safeguard_warmup``) and the numerator ``sum (d/d0) dlr <g, p0 - p>``
(decayed by ``beta3``); then ``d_hat = d_coef * numerator / sum |s|``, ``d`` grows
to ``min(d_max, d * growth_rate)`` with ``d_max = max(d_max, d_hat)``. The
moments are Adam's scaled by ``d`` (``m <- b1 m + d (1-b1) g``,
``v <- b2 v + d^2 (1-b2) g^2``) and the step is
``p <- p (1 - wd dlr) - dlr m / (sqrt(v) + d eps)``. ``d`` and its companions are
single scalars over the whole tree, as the reference keeps them in its first
param group. A step whose ``sum |s|`` is zero (all gradients zero so far) moves
nothing and does not count, as in the reference.

The reference allows per-group lrs only of 0 or the lr: ``lr_scale`` (layer
decay) must be 0 or 1 per leaf.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib  # noqa: F401  (the benchmark's optax counterpart)

from .._validate import check_betas, check_bool, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    leaf_values,
    lr_at,
    pow_bias_correction,
    require_params,
    require_static,
    state_dtype,
    state_zeros,
    tree_unzip,
)
from ._registry import OptimInfo

__all__ = ['prodigy', 'ProdigyState']


class ProdigyState(NamedTuple):
    """Prodigy's state: the reference's step-size scalars (float32) and per-param buffers."""

    # counted steps (the reference's ``k``)
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    d: jax.Array
    d_max: jax.Array
    d_numerator: jax.Array
    p0: Any  # the initial params (sliced and flattened when slice_p > 1)
    s: Any
    exp_avg: Any  # None when betas[0] == 0
    exp_avg_sq: Any


def _sliced(x: jax.Array, slice_p: int) -> jax.Array:
    return x if slice_p == 1 else x.reshape(-1)[::slice_p]


def _check_scales(lr_scale: Any, params: Any) -> None:
    for value in jax.tree.leaves(leaf_values(lr_scale, params)):
        if isinstance(value, jax.Array):
            continue
        if float(value) not in (0.0, 1.0):
            raise ValueError(
                f'Invalid lr_scale: {value!r}; Prodigy takes one lr for every param (a leaf may only '
                'be frozen, lr_scale 0, as the reference allows): expected 0 or 1 (no layer decay)'
            )


def prodigy(
    learning_rate: Any = 1.0,
    betas: Tuple[float, float] = (0.9, 0.999),
    beta3: Optional[float] = None,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = math.inf,
    slice_p: int = 1,
    *,
    lr_scale: Any = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``prodigyopt.Prodigy``: Adam with the step size estimated on the fly (see the module docstring).

    Args:
        learning_rate, betas, lr_scale, mu_dtype, nu_dtype: as for every alias (see :mod:`jaxopt_timm.optim`);
            the lr multiplies the estimated ``d`` (keep 1.0, or a schedule around 1), > 0; ``lr_scale`` 0 or 1.
        beta3: decay of the ``d`` estimate's sums (default ``sqrt(betas[1])``), in [0, 1].
        eps: added to the root second moment, scaled by ``d``; > 0.
        weight_decay: decoupled (``p * wd * dlr``) or, with ``decouple=False``, L2 added to the gradient.
        use_bias_correction: Adam's bias correction in ``dlr``.
        safeguard_warmup: accumulate ``s`` without the lr (for warmup schedules).
        d0: initial ``d``, > 0. d_coef: multiplies ``d_hat``, > 0. growth_rate: bound on ``d``'s growth per step,
            >= 1 (inf: unbounded).
        slice_p: estimate ``d`` from every ``slice_p``-th element only (memory), >= 1.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> tx = jt.optim.prodigy(1.0, weight_decay=0.01)
        >>> state = tx.init({'w': jnp.ones(3)})
    """
    check_lr(learning_rate)
    if not callable(learning_rate) and not isinstance(learning_rate, jax.Array):
        check_range('learning_rate', learning_rate, 0.0, lo_open=True)
    check_betas(betas)
    check_range('beta3', beta3, 0.0, 1.0, allow_none=True)
    check_range('eps', eps, 0.0, lo_open=True)
    check_weight_decay(weight_decay)
    for name, value in (
        ('decouple', decouple),
        ('use_bias_correction', use_bias_correction),
        ('safeguard_warmup', safeguard_warmup),
    ):
        check_bool(name, value)
    check_range('d0', d0, 0.0, lo_open=True)
    check_range('d_coef', d_coef, 0.0, lo_open=True)
    if isinstance(growth_rate, jax.core.Tracer) or float(growth_rate) != math.inf:  # inf: unbounded (default)
        check_range('growth_rate', growth_rate, 1.0)
    check_range('slice_p', slice_p, 1, integer=True)
    require_static('prodigy', 'state shapes', slice_p=slice_p)
    slice_p = int(slice_p)
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    b1, b2 = betas
    b3 = math.sqrt(b2) if beta3 is None else beta3
    momentum = not (isinstance(b1, (int, float)) and b1 == 0)

    def init_fn(params):
        if lr_scale is not None:
            _check_scales(lr_scale, params)
        f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        return ProdigyState(
            count=jnp.zeros([], jnp.int32),
            d=f32(d0),
            d_max=f32(d0),
            d_numerator=f32(0.0),
            p0=jax.tree.map(lambda p: _sliced(jnp.asarray(p, state_dtype(p.dtype)), slice_p), params),
            s=jax.tree.map(lambda p: jnp.zeros(_sliced(jnp.asarray(p), slice_p).shape, state_dtype(p.dtype)), params),
            exp_avg=state_zeros(params, mu_dtype) if momentum else None,
            exp_avg_sq=state_zeros(params, nu_dtype),
        )

    def update_fn(updates, state, params=None):
        require_params(params, 'prodigy')
        t = (state.count + 1).astype(jnp.float32)
        lr = lr_at(learning_rate, state.count)
        bc = jnp.sqrt(pow_bias_correction(b2, t)) / pow_bias_correction(b1, t) if use_bias_correction else 1.0
        d = state.d
        dlr = d * lr * bc
        ratio = d / jnp.float32(d0)
        s_scale = ratio * (d if safeguard_warmup else dlr)
        wds = leaf_values(weight_decay, updates)
        actives = leaf_values(1.0 if lr_scale is None else lr_scale, updates)
        ms = state.exp_avg if momentum else updates  # without momentum: a stand-in, unread
        f32 = lambda x: x.astype(jnp.float32)  # noqa: E731  (every leaf computed in float32, stored in its dtype)

        def accumulate(g, p, p0, s, m, v, wd, active):
            g, p = f32(g), f32(p)
            if not decouple:
                g = g + wd * p
            on = jnp.asarray(active, jnp.float32) > 0
            sg = _sliced(g, slice_p)
            num = jnp.where(on, ratio * dlr * jnp.sum(sg * (f32(p0) - _sliced(p, slice_p))), 0.0)
            m_new = jnp.where(on, f32(m) * b1 + g * (d * (1.0 - b1)), f32(m)).astype(m.dtype) if momentum else None
            v_new = jnp.where(on, f32(v) * b2 + g * g * (d * d * (1.0 - b2)), f32(v)).astype(v.dtype)
            s_new = jnp.where(on, f32(s) * b3 + sg * s_scale, f32(s)).astype(s.dtype)
            denom = jnp.where(on, jnp.sum(jnp.abs(f32(s_new))), 0.0)
            return num, denom, g, m_new, v_new, s_new

        out = jax.tree.map(accumulate, updates, params, state.p0, state.s, ms, state.exp_avg_sq, wds, actives)
        nums, denoms, gs, m, v, s = tree_unzip(out, updates, 6)
        d_numerator = state.d_numerator * b3 + sum(jax.tree.leaves(nums))
        d_denom = sum(jax.tree.leaves(denoms))
        safe_denom = jnp.where(d_denom > 0, d_denom, 1.0)
        d_hat = jnp.where(lr > 0, jnp.float32(d_coef) * d_numerator / safe_denom, d)
        d_new = jnp.where((lr > 0) & (d == jnp.float32(d0)), jnp.maximum(d, d_hat), d)
        d_max = jnp.where(lr > 0, jnp.maximum(state.d_max, d_hat), state.d_max)
        d_new = jnp.where(lr > 0, jnp.minimum(d_max, d_new * jnp.float32(growth_rate)), d_new)
        skip = d_denom == 0

        def step(g, p_in, m_new, v_new, wd):
            p = f32(p_in)
            denom = jnp.sqrt(f32(v_new)) + d_new * jnp.float32(eps)
            direction = f32(m_new) if momentum else g * d_new
            # the update itself, not new_p - p: Prodigy's first steps (d ~ d0) are far below the params' ulp
            u = -dlr * direction / denom - (p * (wd * dlr) if decouple else 0.0)
            return jnp.where(skip, jnp.zeros_like(p), u).astype(p_in.dtype)

        new_updates = jax.tree.map(step, gs, params, m if momentum else gs, v, wds)
        keep = lambda new, old: jnp.where(skip, old, new)  # noqa: E731
        return new_updates, ProdigyState(
            count=keep(state.count + 1, state.count),
            d=keep(d_new, d),
            d_max=keep(d_max, state.d_max),
            d_numerator=keep(d_numerator, state.d_numerator),
            p0=state.p0,
            s=s,
            exp_avg=m if momentum else None,
            exp_avg_sq=v,
        )

    return optax.with_extra_args_support(optax.GradientTransformation(init_fn, update_fn))


OPTIMIZERS = (
    OptimInfo(
        name='prodigy',
        alias=prodigy,
        source='prodigyopt 1.1.2',
        timm_class='prodigyopt.Prodigy',
        description='Prodigy, Adam with the step size estimated from the run (parameter-free)',
        has_betas=True,
        default_lr=1.0,
        benchmarked=True,
        packing='packed',
        parity_mode='prodigy_d0',
        optax_equivalent=lambda lr, wd: optax.contrib.prodigy(lr, weight_decay=wd),
        state_dtypes={'mu_dtype': ('exp_avg',), 'nu_dtype': ('exp_avg_sq',)},
    ),
)
