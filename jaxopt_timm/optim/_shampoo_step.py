"""Scalable Shampoo's step: the static block layout of a leaf (:func:`shampoo_leaf_plan`) and the whole
jitted update on it (:func:`scale_by_shampoo`), as described in :mod:`._shampoo`.

Split from :mod:`._shampoo`, which keeps the alias, its argument checks and its registry record, so that
each module stays short. Its public names are exported by :mod:`._shampoo` (``jaxopt_timm.optim.*``); like
every helper module of :mod:`jaxopt_timm.optim` it exports nothing itself and registers no optimizer.
"""

from __future__ import annotations

import itertools
from typing import Any, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from ..transforms import (
    apply_along,
    block_sizes,
    compute_dtype,
    dim_statistic,
    from_torch_layout,
    inverse_root_schur_newton,
    inverse_root_svd,
    is_params_placeholder,
    leaf_lrs,
    leaf_values,
    map_matrices,
    matrix_dtype,
    merge_blocks,
    merge_small_dims,
    require_params,
    safe_increment,
    split_blocks,
    state_zeros,
    state_dtype,
    to_torch_layout,
    torch_axes,
    torch_lerp,
    tree_any_nonzero,
)

__all__: List[str] = []  # the names below are exported by ._shampoo


class ShampooLeafPlan(NamedTuple):
    """Static layout of a leaf's preconditioners (``None`` fields when it takes the graft alone)."""

    shape: Optional[Tuple[int, ...]]  # the transformed (merged) torch-layout shape
    sizes: Optional[Tuple[Tuple[int, ...], ...]]  # block sizes per dim
    dims: Tuple[int, ...]  # the preconditioned dims
    exponent: int


def shampoo_leaf_plan(
    shape: Tuple[int, ...],
    block_size: int = 512,
    skip_preconditioning_rank_lt: int = 1,
    no_preconditioning_for_layers_with_dim_gt: int = 8192,
    shape_interpretation: bool = True,
    pre_conditioner_type: str = 'all',
    inverse_exponent_override: int = 0,
    layout: str = 'torch',
) -> ShampooLeafPlan:
    """The reference's ``PreConditioner`` rules on the torch twin of a leaf stored in ``layout``."""
    ts = tuple(int(shape[a]) for a in torch_axes(len(shape), layout))
    transformed = merge_small_dims(ts, block_size) if shape_interpretation else ts
    skip = len(ts) < skip_preconditioning_rank_lt or any(d > no_preconditioning_for_layers_with_dim_gt for d in ts)
    if len(transformed) <= 1 or skip or 0 in ts:
        return ShampooLeafPlan(None, None, (), 0)
    n = len(transformed)
    dims = {'all': range(n), 'input': range(n - 1), 'output': (n - 1,)}[pre_conditioner_type]
    exponent = inverse_exponent_override if inverse_exponent_override > 0 else 2 * len(dims)
    return ShampooLeafPlan(transformed, block_sizes(transformed, block_size), tuple(dims), exponent)


def _matrix_sizes(pl: ShampooLeafPlan):
    """Per block (the reference's order), per preconditioned dim: the matrix size."""
    assert pl.sizes is not None  # a preconditioned leaf's plan has its blocks
    return [block[i] for block in itertools.product(*pl.sizes) for i in pl.dims]


class ScaleByShampooState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    momentum: Any  # params' shapes
    graft_momentum: Any  # params' shapes
    graft_statistics: Any  # params' shapes (AdaGrad / RMSProp grafts) or None
    statistics: Any  # per leaf (tree order): the blocks' d x d statistics, flat (block-major, then dim)
    pre_conditioners: Any  # per leaf: their inverse roots, same order


def scale_by_shampoo(
    learning_rate: Any,
    betas: Tuple[float, float],
    moving_average_for_momentum: bool,
    weight_decay: Any,
    decoupled_weight_decay: bool,
    decoupled_learning_rate: bool,
    start_preconditioning_step: int,
    preconditioning_compute_steps: int,
    statistics_compute_steps: int,
    plan: Any,
    graft_type: str,
    nesterov: bool,
    diagonal_eps: float,
    matrix_eps: float,
    use_svd: bool,
    layout: str,
    lr_scale: Any = None,
) -> optax.GradientTransformation:
    """The whole ScalableShampoo step (lr and decay included: the reference scales the direction by the lr
    inside the graft and the momentum when ``decoupled_learning_rate=False``). ``plan``: shape -> plan."""
    b1, b2 = betas
    w = (1.0 - b1) if moving_average_for_momentum else 1.0
    w2 = 1.0 if b2 == 1.0 else 1.0 - b2
    graft_stats = graft_type in ('adagrad', 'rmsprop')

    def init_fn(params):
        if is_params_placeholder(params):
            return ScaleByShampooState(
                jnp.zeros([], jnp.int32), params, params, params if graft_stats else None, jnp.zeros([]), jnp.zeros([])
            )
        stats, roots = [], []
        for p in jax.tree.leaves(params):
            pl, dt = plan(p.shape), matrix_dtype(compute_dtype(p.dtype))
            sizes = _matrix_sizes(pl) if pl.shape is not None else []
            stats.append(tuple(matrix_eps * jnp.eye(d, dtype=dt) for d in sizes))
            roots.append(tuple(jnp.eye(d, dtype=dt) for d in sizes))
        return ScaleByShampooState(
            count=jnp.zeros([], jnp.int32),
            momentum=state_zeros(params),
            graft_momentum=state_zeros(params),
            graft_statistics=state_zeros(params) if graft_stats else None,
            statistics=tuple(stats),
            pre_conditioners=tuple(roots),
        )

    def blocks_of(g, pl, dt):
        return split_blocks(to_torch_layout(g, layout).astype(dt).reshape(pl.shape), pl.sizes)

    def update_fn(updates, state, params=None):
        decay_on = tree_any_nonzero(weight_decay)
        if decay_on:
            require_params(params, 'shampoo')
        step = safe_increment(state.count)
        is_pre = step >= start_preconditioning_step
        treedef = jax.tree.structure(updates)
        grads = treedef.flatten_up_to(updates)
        plans = [plan(g.shape) for g in grads]

        # statistics, then (every preconditioning_compute_steps) their inverse roots, all leaves at once
        new_stats = []
        for g, pl, ss in zip(grads, plans, state.statistics):
            if not ss:
                new_stats.append(ss)
                continue
            grams = [dim_statistic(b, i) for b in blocks_of(g, pl, ss[0].dtype) for i in pl.dims]
            added = tuple(s * b2 + gram * w2 for s, gram in zip(ss, grams))
            new_stats.append(tuple(jnp.where(step % statistics_compute_steps == 0, a, s) for a, s in zip(added, ss)))
        slots = [(k, j) for k, ss in enumerate(new_stats) for j in range(len(ss))]

        def roots(_):
            out = [list(r) for r in state.pre_conditioners]
            for e in sorted({plans[k].exponent for k, _ in slots}):
                group = [(k, j) for k, j in slots if plans[k].exponent == e]
                fn = (
                    (lambda m, e=e: inverse_root_svd(m, e))
                    if use_svd
                    else (lambda m, e=e: inverse_root_schur_newton(m, e, ridge_epsilon=matrix_eps))
                )
                for (k, j), r in zip(group, map_matrices(fn, [new_stats[k][j] for k, j in group])):
                    out[k][j] = r
            return tuple(tuple(r) for r in out)

        new_roots = (
            jax.lax.cond(step % preconditioning_compute_steps == 0, roots, lambda _: state.pre_conditioners, None)
            if slots
            else state.pre_conditioners
        )

        lrs = treedef.flatten_up_to(leaf_lrs(learning_rate, state.count, lr_scale, updates))
        wds = treedef.flatten_up_to(leaf_values(weight_decay, updates))
        ps = treedef.flatten_up_to(params) if decay_on else [None] * len(grads)
        gss = treedef.flatten_up_to(state.graft_statistics) if graft_stats else [None] * len(grads)
        moms, gmoms = treedef.flatten_up_to(state.momentum), treedef.flatten_up_to(state.graft_momentum)
        outs, new_moms, new_gmoms, new_gss = [], [], [], []
        for g_in, pl, rs, lr, wd, p, gs, mom, gmom in zip(grads, plans, new_roots, lrs, wds, ps, gss, moms, gmoms):
            cdt = compute_dtype(g_in.dtype)
            g = g_in.astype(cdt)
            pcm = 1.0 if decoupled_learning_rate else lr.astype(cdt)
            mm = lr.astype(cdt) if decoupled_learning_rate else 1.0
            if graft_type == 'adagrad':
                gs = gs.astype(cdt) + g * g
            elif graft_type == 'rmsprop':
                gs = gs.astype(cdt) * b2 + g * g * (1.0 - b2)
            if graft_stats:
                graft = g / (jnp.sqrt(gs) + diagonal_eps)
                new_gss.append(gs.astype(state_dtype(g_in.dtype)))
            else:
                graft = jnp.sign(g) if graft_type == 'sqrtn' else g
            graft = graft * pcm
            if rs:
                blocks = blocks_of(g, pl, rs[0].dtype)
                out_blocks = []
                for b_idx, blk in enumerate(blocks):
                    for k, axis in enumerate(pl.dims):
                        blk = apply_along(blk, axis, rs[b_idx * len(pl.dims) + k])
                    out_blocks.append(blk)
                torch_shape = to_torch_layout(g, layout).shape
                sh = merge_blocks(out_blocks, pl.sizes).reshape(torch_shape)
                sh = from_torch_layout(sh, layout).astype(cdt) * pcm
            else:
                sh = graft
            if graft_type != 'none':
                sh = sh * (jnp.linalg.norm(graft) / (jnp.linalg.norm(sh) + 1e-16))
            if decay_on and not decoupled_weight_decay:
                graft = graft + wd * p.astype(cdt)
                sh = sh + wd * p.astype(cdt)
            mom = torch_lerp(mom.astype(cdt), sh, w) if moving_average_for_momentum else mom.astype(cdt) * b1 + sh
            gmom = gmom.astype(cdt) * b1 + graft * w
            upd = jnp.where(is_pre, mom, gmom)
            if nesterov:
                wdu = jnp.where(is_pre, sh, graft)
                upd = torch_lerp(upd, wdu, w) if moving_average_for_momentum else upd * b1 + wdu
            upd = -mm * upd
            if decay_on and decoupled_weight_decay:
                upd = upd - (lr * wd).astype(cdt) * p.astype(cdt)
            outs.append(upd.astype(g_in.dtype))
            new_moms.append(mom.astype(state_dtype(g_in.dtype)))
            new_gmoms.append(gmom.astype(state_dtype(g_in.dtype)))
        return treedef.unflatten(outs), ScaleByShampooState(
            count=step,
            momentum=treedef.unflatten(new_moms),
            graft_momentum=treedef.unflatten(new_gmoms),
            graft_statistics=treedef.unflatten(new_gss) if graft_stats else None,
            statistics=tuple(new_stats),
            pre_conditioners=new_roots,
        )

    return optax.GradientTransformation(init_fn, update_fn)
