"""Schedule-Free's state and the step that :func:`sfadamw`, :func:`sfsgd` and :func:`sfradam` share (see
:mod:`._schedule_free` for the method).

Split from :mod:`._schedule_free`, which keeps the three aliases, their argument checks, the evaluation
point and the registry records, so that each module stays short. Its public names are exported by
:mod:`._schedule_free` (``jaxopt_timm.optim.*``); like every helper module of :mod:`jaxopt_timm.optim` it
exports nothing itself and registers no optimizer.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..transforms import (
    compute_dtype,
    leaf_lrs,
    leaf_values,
    lr_at,
    pow_bias_correction,
    require_params,
    safe_increment,
    state_dtype,
    state_zeros,
    torch_lerp_rounded_weight,
    tree_unzip,
)

__all__: List[str] = []  # the names below are exported by ._schedule_free


class ScheduleFreeState(NamedTuple):
    """Schedule-Free's state: the reference's per-group scalars and per-param ``z`` / ``exp_avg_sq``."""

    # steps done (the reference's ``k``)
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    weight_sum: jax.Array  # float32: sum of the averaging weights
    lr_max: jax.Array  # float32: largest scheduled lr so far (-1 before the first step)
    momentum: jax.Array  # float32: beta1 (or SGD's momentum), for the evaluation point
    z: Any
    exp_avg_sq: Any  # None for SGD


def _scale_by_schedule_free(
    learning_rate, beta1, beta2, eps, weight_decay, lr_factor, r, weight_lr_power, lr_scale, adaptive, nu_dtype
) -> optax.GradientTransformation:
    """The shared step. ``lr_factor(t) -> (factor, use_adam)`` scales the lr at step ``t`` (1-based) and says
    whether the Adam normalization applies (RAdam's SGD phase); ``adaptive``: the direction has a second
    moment at all (False for SGD)."""

    def init_fn(params):
        return ScheduleFreeState(
            count=jnp.zeros([], jnp.int32),
            weight_sum=jnp.zeros([], jnp.float32),
            lr_max=jnp.full([], -1.0, jnp.float32),
            momentum=jnp.asarray(beta1, jnp.float32),
            z=jax.tree.map(lambda p: jnp.asarray(p, state_dtype(p.dtype)), params),  # fp16 params: float32 z
            exp_avg_sq=state_zeros(params, nu_dtype) if adaptive else None,
        )

    def update_fn(updates, state, params=None):
        require_params(params, 'schedule-free')
        t = (state.count + 1).astype(jnp.float32)
        factor, use_adam = lr_factor(t)
        lr = lr_at(learning_rate, state.count) * factor
        lr_max = jnp.maximum(lr, state.lr_max)
        weight = t ** jnp.float32(r) * lr_max ** jnp.float32(weight_lr_power)
        weight_sum = state.weight_sum + weight
        ckp1 = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1.0), 0.0)
        b1 = jnp.asarray(beta1, jnp.float32)
        y_coef = b1 * (1.0 - ckp1) - 1.0
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        wds = leaf_values(weight_decay, updates)
        bc2 = pow_bias_correction(beta2, t) if adaptive else None
        vs = state.exp_avg_sq if adaptive else updates  # SGD: a stand-in, unread

        def leaf(g_in, y_in, z_in, v_in, leaf_lr, wd):
            cdt = compute_dtype(y_in.dtype)
            g, y, z = g_in.astype(cdt), y_in.astype(cdt), z_in.astype(cdt)
            v_new = None
            if adaptive:
                v = v_in.astype(cdt)
                v_new = v * jnp.asarray(beta2, cdt) + (1.0 - jnp.asarray(beta2, cdt)) * g * g
                normalized = g / (jnp.sqrt(v_new / bc2) + jnp.asarray(eps, cdt))
                g = jnp.where(use_adam, normalized, g)
                v_new = v_new.astype(v_in.dtype)
            d = g + wd * y if wd is not None else g
            step_lr = (leaf_lr * factor).astype(cdt)
            y_new = torch_lerp_rounded_weight(y, z, ckp1.astype(cdt)) + d * (step_lr * y_coef.astype(cdt))
            z_new = z - d * step_lr
            return (y_new - y).astype(g_in.dtype), z_new.astype(z_in.dtype), v_new

        out = jax.tree.map(leaf, updates, params, state.z, vs, lrs, wds)
        new_updates, z, v = tree_unzip(out, updates, 3)
        return new_updates, ScheduleFreeState(
            count=safe_increment(state.count),
            weight_sum=weight_sum,
            lr_max=lr_max,
            momentum=state.momentum,
            z=z,
            exp_avg_sq=v if adaptive else None,
        )

    return optax.GradientTransformation(init_fn, update_fn)
