"""Scalable Shampoo (``pytorch-optimizer`` 4.1.0: ``ScalableShampoo``): blockwise Shampoo with layer-wise grafting.

References: Gupta, Koren & Singer, 2018, "Shampoo: Preconditioned Stochastic Tensor Optimization"
(arXiv:1802.09568); Anil et al., 2020, "Scalable Second Order Optimization for Deep Learning"
(arXiv:2002.09018, grafting, blocking and the coupled Schur-Newton inverse root); the reference follows
google-research's ``distributed_shampoo``.

A leaf (read in torch's dim order) is reshaped by ``merge_small_dims(shape, block_size)`` (with
``shape_interpretation``) and cut into blocks of at most ``block_size`` per dim. Each block keeps, per
preconditioned dim, ``L <- b2 L + (1 - b2) G_(i) G_(i)^T`` (from ``matrix_eps I``; every
``statistics_compute_steps`` steps) and its inverse root ``L^(-1/e)``, ``e = 2 x (dims preconditioned)`` or
``inverse_exponent_override`` (every ``preconditioning_compute_steps`` steps; Schur-Newton, or SVD with
``use_svd``). The Shampoo direction is the gradient with each root applied along its dim; the graft (SGD,
AdaGrad, RMSProp, sign or none) gives its norm::

    s = shampoo(g) ||graft(g)|| / (||shampoo(g)|| + 1e-16),   m = b1 m + s   (lerp with moving average)
    p <- p - lr (b1 m + s)    (Nesterov; before start_preconditioning_step the graft's own momentum)

Leaves that merge to one dim, have fewer than ``skip_preconditioning_rank_lt`` dims or a dim above
``no_preconditioning_for_layers_with_dim_gt`` take the graft direction alone. The step is one jitted
function: the refresh of the roots is a ``lax.cond`` on the step count, the Schur-Newton stop a
``lax.while_loop``.

State: ``momentum`` and ``graft_momentum`` (params' shapes), ``graft_statistics`` (params' shapes, AdaGrad
and RMSProp grafts), and per block and preconditioned dim of size ``d`` a statistic and a root (``d x d``
each, float32; float64 for float64 leaves): ``2 P (+ P) + 2 sum d^2`` floats. Under FSDP the ``d x d``
matrices are not param-shaped: they are replicated on every device unless sharded explicitly (blocks of at
most ``block_size`` keep each matrix small), and each root is computed on the full matrix.
"""
from __future__ import annotations

import itertools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import check_betas, check_bool, check_choice, check_lr, check_range, check_weight_decay
from ..transforms import (
    LAYOUTS, apply_along, block_sizes, compute_dtype, dim_statistic, from_torch_layout, inverse_root_schur_newton,
    inverse_root_svd, is_params_placeholder, leaf_lrs, leaf_values, map_matrices, matrix_dtype, merge_blocks,
    merge_small_dims, negate_if, require_params, require_static, safe_increment, split_blocks, state_zeros,
    state_dtype, to_torch_layout, torch_axes, torch_lerp, tree_any_nonzero,
)
from ._registry import OptimInfo

__all__ = ['shampoo', 'scale_by_shampoo', 'shampoo_leaf_plan', 'ScaleByShampooState', 'GRAFT_TYPES',
           'PRECONDITIONER_TYPES']

GRAFT_TYPES = ('none', 'sgd', 'adagrad', 'rmsprop', 'sqrtn')  # the reference's LayerWiseGrafting 0..4
PRECONDITIONER_TYPES = ('all', 'input', 'output')  # the reference's PreConditionerType 0..2


def _choice(name: str, value: Any, names: Tuple[str, ...]) -> str:
    """An int (the reference's IntEnum value) or a name, as the name."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= int(value) < len(names):
        return names[int(value)]
    if isinstance(value, str) and value.lower() in names:
        return value.lower()
    raise ValueError(f'Invalid {name}: {value!r}, expected one of {list(names)} or its index 0..{len(names) - 1}')


class ShampooLeafPlan(NamedTuple):
    """Static layout of a leaf's preconditioners (``None`` fields when it takes the graft alone)."""
    shape: Optional[Tuple[int, ...]]  # the transformed (merged) torch-layout shape
    sizes: Optional[Tuple[Tuple[int, ...], ...]]  # block sizes per dim
    dims: Tuple[int, ...]  # the preconditioned dims
    exponent: int


def shampoo_leaf_plan(shape: Tuple[int, ...], block_size: int = 512, skip_preconditioning_rank_lt: int = 1,
                      no_preconditioning_for_layers_with_dim_gt: int = 8192, shape_interpretation: bool = True,
                      pre_conditioner_type: str = 'all', inverse_exponent_override: int = 0,
                      layout: str = 'torch') -> ShampooLeafPlan:
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
        learning_rate: Any, betas: Tuple[float, float], moving_average_for_momentum: bool, weight_decay: Any,
        decoupled_weight_decay: bool, decoupled_learning_rate: bool, start_preconditioning_step: int,
        preconditioning_compute_steps: int, statistics_compute_steps: int, plan: Any, graft_type: str,
        nesterov: bool, diagonal_eps: float, matrix_eps: float, use_svd: bool, layout: str,
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
            return ScaleByShampooState(jnp.zeros([], jnp.int32), params, params, params if graft_stats else None,
                                       jnp.zeros([]), jnp.zeros([]))
        stats, roots = [], []
        for p in jax.tree.leaves(params):
            pl, dt = plan(p.shape), matrix_dtype(compute_dtype(p.dtype))
            sizes = _matrix_sizes(pl) if pl.shape is not None else []
            stats.append(tuple(matrix_eps * jnp.eye(d, dtype=dt) for d in sizes))
            roots.append(tuple(jnp.eye(d, dtype=dt) for d in sizes))
        return ScaleByShampooState(
            count=jnp.zeros([], jnp.int32), momentum=state_zeros(params), graft_momentum=state_zeros(params),
            graft_statistics=state_zeros(params) if graft_stats else None, statistics=tuple(stats),
            pre_conditioners=tuple(roots))

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
                fn = (lambda m, e=e: inverse_root_svd(m, e)) if use_svd else \
                    (lambda m, e=e: inverse_root_schur_newton(m, e, ridge_epsilon=matrix_eps))
                for (k, j), r in zip(group, map_matrices(fn, [new_stats[k][j] for k, j in group])):
                    out[k][j] = r
            return tuple(tuple(r) for r in out)

        new_roots = jax.lax.cond(step % preconditioning_compute_steps == 0, roots, lambda _: state.pre_conditioners,
                                 None) if slots else state.pre_conditioners

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
            count=step, momentum=treedef.unflatten(new_moms), graft_momentum=treedef.unflatten(new_gmoms),
            graft_statistics=treedef.unflatten(new_gss) if graft_stats else None, statistics=tuple(new_stats),
            pre_conditioners=new_roots)

    return optax.GradientTransformation(init_fn, update_fn)


def shampoo(
        learning_rate: Any = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), moving_average_for_momentum: bool = False,
        weight_decay: Any = 0.0, decoupled_weight_decay: bool = False, decoupled_learning_rate: bool = True,
        inverse_exponent_override: int = 0, start_preconditioning_step: int = 25,
        preconditioning_compute_steps: int = 1000, statistics_compute_steps: int = 1, block_size: int = 512,
        skip_preconditioning_rank_lt: int = 1, no_preconditioning_for_layers_with_dim_gt: int = 8192,
        shape_interpretation: bool = True, graft_type: Any = 'sgd', pre_conditioner_type: Any = 'all',
        nesterov: bool = True, diagonal_eps: float = 1e-10, matrix_eps: float = 1e-6, use_svd: bool = False,
        maximize: bool = False, *, layout: str = 'torch', lr_scale: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""``pytorch_optimizer.ScalableShampoo``: blockwise Shampoo grafted onto a diagonal method's step size.

    See the module docstring for the step.

    Args:
        learning_rate, maximize, lr_scale: as for every alias (see :mod:`jaxopt_timm.optim`).
        betas: ``(b1, b2)``: the momentum's and the statistics' (and RMSProp graft's) decay, each in [0, 1).
        moving_average_for_momentum: momentum ``lerp(m, s, 1 - b1)`` instead of ``b1 m + s``.
        weight_decay: float or per-leaf tree; L2 added to the grafted and the graft directions, or decoupled
            ``p (1 - lr wd)`` with ``decoupled_weight_decay``.
        decoupled_learning_rate: the lr scales the momentum step (True) or the directions before the momentum.
        inverse_exponent_override: root order ``e`` (> 0), else ``2 x`` the number of preconditioned dims.
        start_preconditioning_step: from this step (1-based) the Shampoo momentum is applied, before it the
            graft's, >= 1.
        preconditioning_compute_steps / statistics_compute_steps: recompute the roots / add to the statistics on
            steps divisible by this, >= 1.
        block_size: merge limit (``shape_interpretation``) and block size, >= 0 (0: no blocks).
        skip_preconditioning_rank_lt: leaves with fewer dims take the graft alone.
        no_preconditioning_for_layers_with_dim_gt: leaves with a larger dim take the graft alone.
        shape_interpretation: merge small adjacent dims first (``merge_small_dims``).
        graft_type: ``'none'``, ``'sgd'``, ``'adagrad'``, ``'rmsprop'``, ``'sqrtn'`` or the reference's
            ``LayerWiseGrafting`` value 0..4.
        pre_conditioner_type: ``'all'``, ``'input'`` (all dims but the last), ``'output'`` (the last) or the
            reference's ``PreConditionerType`` value 0..2.
        nesterov: Nesterov momentum.
        diagonal_eps: added to the AdaGrad / RMSProp graft's root, >= 0.
        matrix_eps: the statistics start at ``matrix_eps I``; Schur-Newton's ridge (times the top eigenvalue), >= 0.
        use_svd: inverse roots from an SVD (no ridge) instead of the coupled Schur-Newton iteration.
        layout: ``'torch'`` or ``'flax'`` (Dense ``(in, out)``, conv ``(*k, I, O)``): the merge, the blocks and
            ``pre_conditioner_type``'s last dim are read on the torch twin of each leaf.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> tx = jt.optim.shampoo(1e-3, block_size=128, start_preconditioning_step=10,
        ...                       preconditioning_compute_steps=10, graft_type='adagrad')
        >>> state = tx.init({'w': jnp.ones((256, 64))})

    Note:
        Schur-Newton scales its ridge by a 100-step power-iteration estimate of the top eigenvalue; the
        reference starts it from torch's ``randn``, this port from a fixed Gaussian draw (the estimate, not
        the start, is what the root depends on).
    """
    check_lr(learning_rate)
    check_betas(betas)
    for name, flag in (('moving_average_for_momentum', moving_average_for_momentum),
                       ('decoupled_weight_decay', decoupled_weight_decay),
                       ('decoupled_learning_rate', decoupled_learning_rate),
                       ('shape_interpretation', shape_interpretation), ('nesterov', nesterov), ('use_svd', use_svd),
                       ('maximize', maximize)):
        check_bool(name, flag)
    check_weight_decay(weight_decay)
    check_range('inverse_exponent_override', inverse_exponent_override, 0, integer=True)
    for name, value in (('start_preconditioning_step', start_preconditioning_step),
                        ('preconditioning_compute_steps', preconditioning_compute_steps),
                        ('statistics_compute_steps', statistics_compute_steps)):
        check_range(name, value, 1, integer=True)
    check_range('block_size', block_size, 0, integer=True)
    check_range('skip_preconditioning_rank_lt', skip_preconditioning_rank_lt, 0, integer=True)
    check_range('no_preconditioning_for_layers_with_dim_gt', no_preconditioning_for_layers_with_dim_gt, 0,
                integer=True)
    graft = _choice('graft_type', graft_type, GRAFT_TYPES)
    kind = _choice('pre_conditioner_type', pre_conditioner_type, PRECONDITIONER_TYPES)
    check_range('diagonal_eps', diagonal_eps, 0.0)
    check_range('matrix_eps', matrix_eps, 0.0)
    check_choice('layout', layout, LAYOUTS)
    require_static('shampoo', 'the preconditioners\' shapes and the step structure',
                   inverse_exponent_override=inverse_exponent_override, block_size=block_size,
                   skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
                   no_preconditioning_for_layers_with_dim_gt=no_preconditioning_for_layers_with_dim_gt,
                   matrix_eps=matrix_eps)

    def plan(shape):
        return shampoo_leaf_plan(shape, int(block_size), int(skip_preconditioning_rank_lt),
                                 int(no_preconditioning_for_layers_with_dim_gt), shape_interpretation, kind,
                                 int(inverse_exponent_override), layout)

    return optax.with_extra_args_support(optax.chain(negate_if(maximize), scale_by_shampoo(
        learning_rate, (betas[0], betas[1]), moving_average_for_momentum, weight_decay, decoupled_weight_decay,
        decoupled_learning_rate, start_preconditioning_step, preconditioning_compute_steps, statistics_compute_steps,
        plan, graft, nesterov, diagonal_eps, matrix_eps, use_svd, layout, lr_scale)))


OPTIMIZERS = (
    OptimInfo(name='shampoo', alias=shampoo, source='pytorch-optimizer 4.1.0',
              timm_class='pytorch_optimizer.ScalableShampoo', has_eps=False, has_betas=True, shape_aware=True,
              packing='stacked', default_lr=0.03, benchmarked=True,
              description='Scalable Shampoo, blockwise Shampoo with layer-wise grafting'),
)
