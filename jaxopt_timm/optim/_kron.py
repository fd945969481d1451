"""PSGD Kron: SGD with momentum preconditioned by learned Kronecker factors (timm ``Kron``).

Names: ``kron``, ``kronw`` (decoupled decay) and ``kronc`` (corrected decoupled
decay). References: Xi-Lin Li, 2015/2018, "Preconditioned Stochastic Gradient
Descent" (arXiv:1512.04202) and "Preconditioner on Matrix Lie Group for SGD"
(arXiv:1809.10232); timm's port of Evan Walters' ``kron_torch``; corrected
decay ``lr**2 / max_lr`` from arXiv:2506.02285.

Nothing in optax learns a PSGD preconditioner: its math (factor structure,
``P g``, the factor fit) is :mod:`jaxopt_timm.transforms._kron_preconditioner`;
this module keeps the state, timm's refit schedule and the random draws; the
lr and the weight decay are this package's shared primitives.
Randomness (the Gaussian probe of each preconditioner fit, timm's ~1% chance of
re-balancing the factors, and stochastic weight decay) comes from a
``jax.random`` key kept in the state: runs are reproducible from ``seed``, but
not bit-equal to timm's, which draws from torch's and Python's generators.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import check_bool, check_choice, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    LAYOUTS, KronLeafPlan, add_decoupled_weight_decay, add_l2_weight_decay, add_stochastic_weight_decay,
    from_factor_space, is_params_placeholder, kron_balance_factors, kron_factor_kinds, kron_init_factors,
    kron_leaf_plan, kron_precondition, kron_update_factors, require_static, resolve_max_lr, safe_increment,
    scale_by_learning_rate, state_dtype, to_factor_space, upcast,
)
from ._registry import OptimInfo

__all__ = ['kron', 'scale_by_kron', 'precond_update_prob_schedule', 'kron_factor_kinds']

_BALANCE_PROBABILITY = 0.01  # timm re-balances the factors' scales on ~1% of the preconditioner updates
_MEMORY_SAVE_MODES = (None, 'one_diag', 'smart_one_diag', 'all_diag')


def precond_update_prob_schedule(
        n: Any, max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: float = 500,
) -> jax.Array:
    """timm's default preconditioner-update probability at step ``n`` (updates done): flat, then exponential.

    ``max_prob * exp(-decay * (n - flat_start))`` clamped to ``[min_prob, max_prob]``, in float32 like
    timm: 1.0 for the first 500 steps, then annealed to 0.03 by about step 4000. Jittable in ``n``; to change
    the constants pass ``functools.partial(precond_update_prob_schedule, min_prob=...)``.
    """
    n = jnp.asarray(n, jnp.float32)
    prob = max_prob * jnp.exp(-decay * (n - flat_start))
    return jnp.clip(prob, min_prob, max_prob)


# ---- randomness (module-level so a test can substitute fixed draws on both sides) ------------------------

def _draw_probe(key: jax.Array, shape: Tuple[int, ...], dtype) -> jax.Array:
    return jax.random.normal(key, shape, dtype)


def _draw_uniform(key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (), jnp.float32)


# ---- the transformation ----------------------------------------------------------------------------------

class ScaleByKronState(NamedTuple):
    # updates done (timm's per-param `step`)
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    update_counter: jax.Array  # steps since the last preconditioner update (timm's `update_counter`)
    key: jax.Array
    mu: Any  # momentum buffer, params' shapes
    factors: Tuple[Tuple[jax.Array, ...], ...]  # per leaf (in tree order), the Kronecker factors




def scale_by_kron(
        momentum: float = 0.9,
        preconditioner_update_probability: Union[None, float, Callable[[jax.Array], jax.Array]] = None,
        max_size_triangular: int = 2048,
        min_ndim_triangular: int = 2,
        memory_save_mode: Optional[str] = None,
        momentum_into_precond_update: bool = True,
        precond_lr: float = 0.1,
        precond_init_scale: float = 1.0,
        mu_dtype: Any = None,
        precond_dtype: Any = None,
        flatten: bool = False,
        flatten_start_dim: int = 2,
        flatten_end_dim: int = -1,
        *,
        seed: int = 1337,
        layout: str = 'torch',
) -> optax.GradientTransformation:
    """PSGD Kron's direction: the debiased momentum preconditioned by the Kronecker factors, RMS-capped at 1.1.

    The factors are re-fitted on steps chosen by timm's counter rule (the ``k``-th step since the last fit
    triggers one when ``k >= 1 / p(step)``), on a Gaussian probe drawn from the state's key.
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    precond_dtype = resolve_dtype('precond_dtype', precond_dtype)
    prob = precond_update_prob_schedule if preconditioner_update_probability is None \
        else preconditioner_update_probability
    if not callable(prob):
        # timm compares the int counter with the Python float 1/p: the same as counter >= ceil(1/p)
        every = math.ceil(1.0 / float(prob)) if float(prob) > 0 else None
        every = None if every is not None and every > np.iinfo(np.int32).max else every

    def plan(p) -> KronLeafPlan:
        return kron_leaf_plan(p.shape, layout, (flatten_start_dim, flatten_end_dim) if flatten else None,
                              max_size_triangular, min_ndim_triangular, memory_save_mode)

    def init_fn(params):
        factors: Any = []
        for p in jax.tree.leaves(params):
            pl = plan(p)
            factors.append(kron_init_factors(pl.shape, pl.kinds, precond_init_scale,
                                             state_dtype(p.dtype, precond_dtype)))
        return ScaleByKronState(
            count=jnp.zeros([], jnp.int32),
            update_counter=jnp.zeros([], jnp.int32),
            key=jax.random.PRNGKey(seed),
            mu=jax.tree.map(lambda p: jnp.zeros(p.shape, state_dtype(p.dtype, mu_dtype)), params),
            # one non-param leaf for optax.tree.map_params, whose placeholder has no leaves to size the list
            factors=jnp.zeros([]) if is_params_placeholder(params) else tuple(factors),
        )

    def update_fn(updates, state, params=None):
        del params
        counter = state.update_counter + 1
        if callable(prob):
            p_now = jnp.asarray(prob(state.count), jnp.float32)
            do_update = counter.astype(jnp.float32) >= 1.0 / p_now
        elif every is None:
            do_update = jnp.zeros([], bool)
        else:
            do_update = counter >= every
        counter = jnp.where(do_update, jnp.zeros_like(counter), counter)
        count = safe_increment(state.count)
        bias_correction = 1.0 - jnp.asarray(momentum, jnp.float32) ** count.astype(jnp.float32)
        key, probe_key, coin_key = jax.random.split(state.key, 3)

        treedef = jax.tree.structure(updates)
        grads = treedef.flatten_up_to(updates)
        mus = treedef.flatten_up_to(state.mu)
        new_mus, outs, new_factors = [], [], []
        for idx, (g, m, qs) in enumerate(zip(grads, mus, state.factors)):
            if g.size == 0:  # an empty leaf has nothing to precondition (reductions over it have no identity)
                new_mus.append(m), new_factors.append(tuple(qs)), outs.append(g)
                continue
            pl = plan(g)
            pdt = state_dtype(g.dtype, precond_dtype)
            m = (momentum * m.astype(jnp.float32) + (1.0 - momentum) * g.astype(jnp.float32)).astype(m.dtype)
            new_mus.append(m)
            debiased = to_factor_space((m / bias_correction.astype(m.dtype)).astype(pdt), pl)
            fit_on = debiased if momentum_into_precond_update else to_factor_space(g, pl).astype(pdt)
            balance = jnp.logical_and(_draw_uniform(jax.random.fold_in(coin_key, idx)) < _BALANCE_PROBABILITY,
                                      do_update)

            def refit(qs, fit_on=fit_on, balance=balance, idx=idx, ndim=len(pl.shape), pdt=pdt):
                if ndim > 1:
                    qs = jax.lax.cond(balance, kron_balance_factors, tuple, qs)
                probe = _draw_probe(jax.random.fold_in(probe_key, idx), fit_on.shape, pdt)
                return kron_update_factors(qs, fit_on, probe, precond_lr)

            qs = jax.lax.cond(do_update, refit, tuple, tuple(qs))
            new_factors.append(qs)
            # the RMS cap in float32 for low-precision leaves (fp16 squares underflow), then the grad's dtype
            pre = upcast(kron_precondition(qs, debiased).astype(g.dtype))
            rms = jnp.sqrt(jnp.mean(jnp.square(pre)))
            pre = pre * jnp.minimum(1.1 / (rms + 1e-8), 1.0)
            outs.append(from_factor_space(pre.astype(g.dtype), pl))
        return jax.tree.unflatten(treedef, outs), ScaleByKronState(
            count=count, update_counter=counter, key=key, mu=jax.tree.unflatten(treedef, new_mus),
            factors=tuple(new_factors))

    return optax.GradientTransformation(init_fn, update_fn)


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
    for name, flag in (('decoupled_decay', decoupled_decay), ('corrected_weight_decay', corrected_weight_decay),
                       ('flatten', flatten), ('stochastic_weight_decay', stochastic_weight_decay),
                       ('deterministic', deterministic)):
        check_bool(name, flag)
    check_range('flatten_start_dim', flatten_start_dim, 0, integer=True)
    check_range('flatten_end_dim', flatten_end_dim, integer=True)
    check_range('seed', seed, 0, integer=True)
    check_choice('layout', layout, LAYOUTS)
    require_static('kron', 'state shapes or keys', max_size_triangular=max_size_triangular,
                   min_ndim_triangular=min_ndim_triangular, precond_init_scale=precond_init_scale, seed=seed)
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    direction = scale_by_kron(
        momentum, preconditioner_update_probability, int(max_size_triangular), int(min_ndim_triangular),
        memory_save_mode, momentum_into_precond_update, precond_lr, float(precond_init_scale), mu_dtype,
        precond_dtype, flatten, int(flatten_start_dim), int(flatten_end_dim), seed=int(seed), layout=layout)
    if stochastic_weight_decay:
        return optax.with_extra_args_support(optax.chain(
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
            # max_lr is None unless decoupled and corrected, so the decay factor is the group lr or lr**2 / max_lr
            add_stochastic_weight_decay(weight_decay, learning_rate, lr_scale, max_lr, seed=int(seed) + 1,
                                        draw_uniform=lambda key: _draw_uniform(key)),  # late-bound: tests patch it
        ))
    if decoupled_decay:
        return optax.with_extra_args_support(optax.chain(
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
            add_decoupled_weight_decay(weight_decay, learning_rate, lr_scale, max_lr),
        ))
    return optax.with_extra_args_support(optax.chain(
        direction,
        add_l2_weight_decay(weight_decay),
        scale_by_learning_rate(learning_rate, lr_scale),
    ))


_STATE_DTYPES = {'mu_dtype': ('mu',), 'precond_dtype': ('factors',)}

OPTIMIZERS = (
    OptimInfo(
        name='kron', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner', has_eps=False, has_momentum=True,
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003, state_dtypes=_STATE_DTYPES, benchmarked=True),
    OptimInfo(
        name='kronw', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner and decoupled weight decay',
        has_eps=False, has_momentum=True, defaults={'decoupled_decay': True},
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003, state_dtypes=_STATE_DTYPES),
    OptimInfo(
        name='kronc', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD Kron with corrected decoupled weight decay (lr²/max_lr scaling)', has_eps=False,
        has_momentum=True, defaults={'decoupled_decay': True, 'corrected_weight_decay': True},
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003, state_dtypes=_STATE_DTYPES),
)
