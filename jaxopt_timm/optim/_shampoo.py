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

from typing import Any, Tuple

import numpy as np
import optax

from .._validate import check_betas, check_bool, check_choice, check_lr, check_range, check_weight_decay
from ..transforms import LAYOUTS, negate_if, require_static
from ._registry import OptimInfo
from ._shampoo_step import ScaleByShampooState, scale_by_shampoo, shampoo_leaf_plan

__all__ = [
    'shampoo',
    'scale_by_shampoo',
    'shampoo_leaf_plan',
    'ScaleByShampooState',
    'GRAFT_TYPES',
    'PRECONDITIONER_TYPES',
]

GRAFT_TYPES = ('none', 'sgd', 'adagrad', 'rmsprop', 'sqrtn')  # the reference's LayerWiseGrafting 0..4
PRECONDITIONER_TYPES = ('all', 'input', 'output')  # the reference's PreConditionerType 0..2


def _choice(name: str, value: Any, names: Tuple[str, ...]) -> str:
    """An int (the reference's IntEnum value) or a name, as the name."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= int(value) < len(names):
        return names[int(value)]
    if isinstance(value, str) and value.lower() in names:
        return value.lower()
    raise ValueError(f'Invalid {name}: {value!r}, expected one of {list(names)} or its index 0..{len(names) - 1}')


def shampoo(
    learning_rate: Any = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    moving_average_for_momentum: bool = False,
    weight_decay: Any = 0.0,
    decoupled_weight_decay: bool = False,
    decoupled_learning_rate: bool = True,
    inverse_exponent_override: int = 0,
    start_preconditioning_step: int = 25,
    preconditioning_compute_steps: int = 1000,
    statistics_compute_steps: int = 1,
    block_size: int = 512,
    skip_preconditioning_rank_lt: int = 1,
    no_preconditioning_for_layers_with_dim_gt: int = 8192,
    shape_interpretation: bool = True,
    graft_type: Any = 'sgd',
    pre_conditioner_type: Any = 'all',
    nesterov: bool = True,
    diagonal_eps: float = 1e-10,
    matrix_eps: float = 1e-6,
    use_svd: bool = False,
    maximize: bool = False,
    *,
    layout: str = 'torch',
    lr_scale: Any = None,
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
    for name, flag in (
        ('moving_average_for_momentum', moving_average_for_momentum),
        ('decoupled_weight_decay', decoupled_weight_decay),
        ('decoupled_learning_rate', decoupled_learning_rate),
        ('shape_interpretation', shape_interpretation),
        ('nesterov', nesterov),
        ('use_svd', use_svd),
        ('maximize', maximize),
    ):
        check_bool(name, flag)
    check_weight_decay(weight_decay)
    check_range('inverse_exponent_override', inverse_exponent_override, 0, integer=True)
    for name, value in (
        ('start_preconditioning_step', start_preconditioning_step),
        ('preconditioning_compute_steps', preconditioning_compute_steps),
        ('statistics_compute_steps', statistics_compute_steps),
    ):
        check_range(name, value, 1, integer=True)
    check_range('block_size', block_size, 0, integer=True)
    check_range('skip_preconditioning_rank_lt', skip_preconditioning_rank_lt, 0, integer=True)
    check_range('no_preconditioning_for_layers_with_dim_gt', no_preconditioning_for_layers_with_dim_gt, 0, integer=True)
    graft = _choice('graft_type', graft_type, GRAFT_TYPES)
    kind = _choice('pre_conditioner_type', pre_conditioner_type, PRECONDITIONER_TYPES)
    check_range('diagonal_eps', diagonal_eps, 0.0)
    check_range('matrix_eps', matrix_eps, 0.0)
    check_choice('layout', layout, LAYOUTS)
    require_static(
        'shampoo',
        'the preconditioners\' shapes and the step structure',
        inverse_exponent_override=inverse_exponent_override,
        block_size=block_size,
        skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
        no_preconditioning_for_layers_with_dim_gt=no_preconditioning_for_layers_with_dim_gt,
        matrix_eps=matrix_eps,
    )

    def plan(shape):
        return shampoo_leaf_plan(
            shape,
            int(block_size),
            int(skip_preconditioning_rank_lt),
            int(no_preconditioning_for_layers_with_dim_gt),
            shape_interpretation,
            kind,
            int(inverse_exponent_override),
            layout,
        )

    return optax.with_extra_args_support(
        optax.chain(
            negate_if(maximize),
            scale_by_shampoo(
                learning_rate,
                (betas[0], betas[1]),
                moving_average_for_momentum,
                weight_decay,
                decoupled_weight_decay,
                decoupled_learning_rate,
                start_preconditioning_step,
                preconditioning_compute_steps,
                statistics_compute_steps,
                plan,
                graft,
                nesterov,
                diagonal_eps,
                matrix_eps,
                use_svd,
                layout,
                lr_scale,
            ),
        )
    )


OPTIMIZERS = (
    OptimInfo(
        name='shampoo',
        alias=shampoo,
        source='pytorch-optimizer 4.1.0',
        timm_class='pytorch_optimizer.ScalableShampoo',
        has_eps=False,
        has_betas=True,
        shape_aware=True,
        packing='stacked',
        default_lr=0.03,
        benchmarked=True,
        description='Scalable Shampoo, blockwise Shampoo with layer-wise grafting',
    ),
)
