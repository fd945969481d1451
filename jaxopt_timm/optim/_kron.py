"""PSGD Kron: SGD with momentum preconditioned by learned Kronecker factors (timm ``Kron``).

Names: ``kron``, ``kronw`` (decoupled decay) and ``kronc`` (corrected decoupled
decay). References: Xi-Lin Li, 2015/2018, "Preconditioned Stochastic Gradient
Descent" (arXiv:1512.04202) and "Preconditioner on Matrix Lie Group for SGD"
(arXiv:1809.10232); timm's port of Evan Walters' ``kron_torch``; corrected
decay ``lr**2 / max_lr`` from arXiv:2506.02285.

Nothing in optax learns a PSGD preconditioner: its math (factor structure,
``P g``, the factor fit) is :mod:`jaxopt_timm.transforms._kron_preconditioner`;
its step (:mod:`._kron_step`) keeps the state, timm's refit schedule and the random draws; the
lr and the weight decay are this package's shared primitives.
Randomness (the Gaussian probe of each preconditioner fit, timm's ~1% chance of
re-balancing the factors, and stochastic weight decay) comes from a
``jax.random`` key kept in the state: runs are reproducible from ``seed``, but
not bit-equal to timm's, which draws from torch's and Python's generators.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import optax

from .._validate import check_bool, check_choice, check_lr, check_range, check_weight_decay
from ..transforms import (
    LAYOUTS,
    add_decoupled_weight_decay,
    add_l2_weight_decay,
    add_stochastic_weight_decay,
    kron_factor_kinds,
    require_static,
    resolve_max_lr,
    scale_by_learning_rate,
)
from . import _kron_step
from ._kron_step import precond_update_prob_schedule, scale_by_kron
from ._registry import OptimInfo

__all__ = ['kron', 'scale_by_kron', 'precond_update_prob_schedule', 'kron_factor_kinds']

_MEMORY_SAVE_MODES = (None, 'one_diag', 'smart_one_diag', 'all_diag')


def kron(
    learning_rate: Any = 0.001,
    momentum: float = 0.9,
    weight_decay: Any = 0.0,
    preconditioner_update_probability: Union[None, float, Callable[[jax.Array], jax.Array]] = None,
    max_size_triangular: int = 2048,
    min_ndim_triangular: int = 2,
    memory_save_mode: Optional[str] = None,
    momentum_into_precond_update: bool = True,
    precond_lr: float = 0.1,
    precond_init_scale: float = 1.0,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    flatten: bool = False,
    flatten_start_dim: int = 2,
    flatten_end_dim: int = -1,
    stochastic_weight_decay: bool = False,
    deterministic: bool = False,
    *,
    seed: int = 1337,
    layout: str = 'torch',
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
    r"""timm's ``Kron``: PSGD with a Kronecker-factored preconditioner on the debiased momentum.

    .. math::
        m_t &= \beta m_{t-1} + (1-\beta) g_t, \qquad \hat m_t = m_t / (1 - \beta^t) \\
        Q_i &\leftarrow Q_i - \eta_Q \frac{A_i A_i^T - B_i B_i^T}{\|A_i A_i^T + B_i B_i^T\|} Q_i
            \quad (A = Q\,\hat m,\ B = Q^{-T} v,\ v \sim \mathcal N(0, I);\ \text{on update steps}) \\
        d_t &= P \hat m_t\ \min\!\Big(1, \frac{1.1}{\mathrm{RMS}(P\hat m_t) + 10^{-8}}\Big),
            \quad P = \textstyle\bigotimes_i Q_i^T Q_i \\
        \theta_t &= \theta_{t-1} - \eta\,(d_t + \lambda \theta_{t-1})
            \quad \text{or (decoupled)}\quad \theta_{t-1}(1 - \eta\lambda) - \eta\, d_t

    Each dim of a leaf gets an upper-triangular factor ``Q_i`` (size x size), or a diagonal one where
    :func:`kron_factor_kinds` says so; a 0-d leaf has a scalar factor. ``A_i A_i^T`` contracts every dim but
    ``i``; triangular factors take the upper triangle of the step and normalise by a lower bound of its
    spectral norm, diagonal ones by its max. On about 1% of the update steps the factors of a >=2-d leaf are
    first rebalanced to equal max-norms, as in timm.

    Args:
        learning_rate: float or schedule ``step -> lr``.
        momentum: :math:`\beta` in [0, 1).
        weight_decay: :math:`\lambda` (float or per-leaf tree); L2 (added to the capped direction) unless
            ``decoupled_decay``.
        preconditioner_update_probability: None (timm's schedule, :func:`precond_update_prob_schedule`: every
            step for 500 steps, then annealed to 3%), a float ``p`` in [0, 1] or a callable ``step -> p``. As
            in timm the choice is deterministic: the ``k``-th step since the last fit refits when
            ``k >= 1/p``. ``p = 0`` never refits (timm divides by zero there).
        max_size_triangular: dims larger than this get diagonal factors.
        min_ndim_triangular: leaves with fewer dims get only diagonal factors.
        memory_save_mode: None, ``'one_diag'``, ``'smart_one_diag'`` or ``'all_diag'`` (see
            :func:`kron_factor_kinds`).
        momentum_into_precond_update: fit the preconditioner on the debiased momentum (True) or on the raw
            gradient.
        precond_lr: :math:`\eta_Q`, step size of the factor fit.
        precond_init_scale: the preconditioner starts at this multiple of the identity (each of the ``n``
            factors at its ``n``-th root). Must be positive (timm 1.0.31 has no data-dependent ``None`` mode).
        mu_dtype: dtype of the momentum buffer (default: the param's; float32 for float16 params).
        precond_dtype: dtype of the factors, the probe and the preconditioned momentum (default: the param's;
            float32 for float16 params, whose range cannot hold the factor fit).
        decoupled_decay: AdamW-style decay :math:`\theta(1 - \eta\lambda)`.
        corrected_weight_decay: with ``decoupled_decay``, decay by :math:`\eta^2/\eta_{max}` (arXiv:2506.02285).
        flatten: merge dims ``flatten_start_dim..flatten_end_dim`` of the torch-layout leaf before factoring.
        flatten_start_dim / flatten_end_dim: the merged range (timm's ``safe_flatten``).
        stochastic_weight_decay: each step, each leaf decays by :math:`2u\lambda`, :math:`u \sim U[0, 1)`.
        deterministic: accepted for timm compatibility; every run here is reproducible from ``seed``.
        seed: seed of the PRNG key held in the state (probes, rebalancing coin, stochastic decay).
        layout: ``'torch'`` (factor structure read from the shape as timm reads torch tensors) or ``'flax'``:
            2-d leaves are Dense kernels ``(in, out)`` and >=3-d leaves conv kernels ``(*spatial, I, O)``; each is
            preconditioned exactly as timm preconditions the transposed torch tensor (which dims get triangular
            factors, ``one_diag``'s tie-break and ``flatten`` all depend on the dim order).
        lr_scale: per-leaf lr multipliers (layer decay).
        max_lr: peak lr for corrected decay (default: the float lr or a package schedule's ``base_lr``).

    Example:
        >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
        >>> params = {'w': jnp.ones((4, 3)), 'b': jnp.zeros(4)}
        >>> tx = jt.optim.kron(1e-3, weight_decay=1e-2, decoupled_decay=True)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(params, state, params)
        >>> params = optax.apply_updates(params, updates)

    Note:
        The probes come from JAX's PRNG, not torch's generator, so trajectories match timm's in distribution
        (and exactly where no probe is drawn), not bit for bit. timm keeps a step count per tensor; here one
        count serves the whole tree (the same when every leaf gets a gradient every step).
    """
    check_lr(learning_rate)
    check_range('momentum', momentum, 0.0, 1.0, hi_open=True)
    check_weight_decay(weight_decay)
    if preconditioner_update_probability is not None and not callable(preconditioner_update_probability):
        check_range('preconditioner_update_probability', preconditioner_update_probability, 0.0, 1.0)
    check_range('max_size_triangular', max_size_triangular, integer=True)
    check_range('min_ndim_triangular', min_ndim_triangular, integer=True)
    check_choice('memory_save_mode', memory_save_mode, _MEMORY_SAVE_MODES)
    check_bool('momentum_into_precond_update', momentum_into_precond_update)
    check_range('precond_lr', precond_lr, 0.0)
    check_range('precond_init_scale', precond_init_scale, 0.0, lo_open=True)
    for name, flag in (
        ('decoupled_decay', decoupled_decay),
        ('corrected_weight_decay', corrected_weight_decay),
        ('flatten', flatten),
        ('stochastic_weight_decay', stochastic_weight_decay),
        ('deterministic', deterministic),
    ):
        check_bool(name, flag)
    check_range('flatten_start_dim', flatten_start_dim, 0, integer=True)
    check_range('flatten_end_dim', flatten_end_dim, integer=True)
    check_range('seed', seed, 0, integer=True)
    check_choice('layout', layout, LAYOUTS)
    require_static(
        'kron',
        'state shapes or keys',
        max_size_triangular=max_size_triangular,
        min_ndim_triangular=min_ndim_triangular,
        precond_init_scale=precond_init_scale,
        seed=seed,
    )
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    direction = scale_by_kron(
        momentum,
        preconditioner_update_probability,
        int(max_size_triangular),
        int(min_ndim_triangular),
        memory_save_mode,
        momentum_into_precond_update,
        precond_lr,
        float(precond_init_scale),
        mu_dtype,
        precond_dtype,
        flatten,
        int(flatten_start_dim),
        int(flatten_end_dim),
        seed=int(seed),
        layout=layout,
    )
    if stochastic_weight_decay:
        return optax.with_extra_args_support(
            optax.chain(
                direction,
                scale_by_learning_rate(learning_rate, lr_scale),
                # max_lr is None unless decoupled and corrected, so the decay factor is the group lr or lr**2 / max_lr
                add_stochastic_weight_decay(
                    weight_decay,
                    learning_rate,
                    lr_scale,
                    max_lr,
                    seed=int(seed) + 1,
                    draw_uniform=lambda key: _kron_step._draw_uniform(key),
                ),  # late-bound: tests patch it
            )
        )
    if decoupled_decay:
        return optax.with_extra_args_support(
            optax.chain(
                direction,
                scale_by_learning_rate(learning_rate, lr_scale),
                add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
            )
        )
    return optax.with_extra_args_support(
        optax.chain(
            direction,
            add_l2_weight_decay(weight_decay),
            scale_by_learning_rate(learning_rate, lr_scale),
        )
    )


_STATE_DTYPES = {'mu_dtype': ('mu',), 'precond_dtype': ('factors',)}

OPTIMIZERS = (
    OptimInfo(
        name='kron',
        alias=kron,
        timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner',
        has_eps=False,
        has_momentum=True,
        shape_aware=True,
        parity_mode='kron_no_refit',
        default_lr=0.003,
        state_dtypes=_STATE_DTYPES,
        benchmarked=True,
    ),
    OptimInfo(
        name='kronw',
        alias=kron,
        timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner and decoupled weight decay',
        has_eps=False,
        has_momentum=True,
        defaults={'decoupled_decay': True},
        shape_aware=True,
        parity_mode='kron_no_refit',
        default_lr=0.003,
        state_dtypes=_STATE_DTYPES,
    ),
    OptimInfo(
        name='kronc',
        alias=kron,
        timm_class='timm.optim.Kron',
        description='PSGD Kron with corrected decoupled weight decay (lr²/max_lr scaling)',
        has_eps=False,
        has_momentum=True,
        defaults={'decoupled_decay': True, 'corrected_weight_decay': True},
        shape_aware=True,
        parity_mode='kron_no_refit',
        default_lr=0.003,
        state_dtypes=_STATE_DTYPES,
    ),
)
