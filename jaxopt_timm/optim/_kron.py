"""PSGD Kron: SGD with momentum preconditioned by learned Kronecker factors (timm ``Kron``).

Names: ``kron``, ``kronw`` (decoupled decay) and ``kronc`` (corrected decoupled
decay). References: Xi-Lin Li, 2015/2018, "Preconditioned Stochastic Gradient
Descent" (arXiv:1512.04202) and "Preconditioner on Matrix Lie Group for SGD"
(arXiv:1809.10232); timm's port of Evan Walters' ``kron_torch``; corrected
decay ``lr**2 / max_lr`` from arXiv:2506.02285.

Nothing in optax learns a PSGD preconditioner, so the direction is written out
here; the lr and the weight decay are this package's shared primitives.
Randomness (the Gaussian probe of each preconditioner fit, timm's ~1% chance of
re-balancing the factors, and stochastic weight decay) comes from a
``jax.random`` key kept in the state: runs are reproducible from ``seed``, but
not bit-equal to timm's, which draws from torch's and Python's generators.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import check_bool, check_choice, check_lr, check_range, check_weight_decay, resolve_dtype
from ..transforms import (
    add_decoupled_weight_decay, add_l2_weight_decay, decoupled_decay_factor, leaf_lrs, leaf_values, resolve_max_lr,
    safe_increment, scale_by_learning_rate, state_dtype, upcast,
)
from ._adafactor import _flax_to_torch_axes
from ._registry import OptimInfo

__all__ = ['kron', 'scale_by_kron', 'precond_update_prob_schedule', 'kron_factor_kinds']

_TINY = float(jnp.finfo(jnp.bfloat16).tiny)  # timm's guard in the factor-update denominators
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


# ---- preconditioner structure ----------------------------------------------------------------------------

def _flat_shape(shape: Tuple[int, ...], start_dim: int, end_dim: int) -> Tuple[int, ...]:
    """Shape after timm's ``safe_flatten``: dims ``start..end`` merged, or unchanged when that range is empty."""
    ndim = len(shape)
    end = min(end_dim if end_dim >= 0 else ndim + end_dim, ndim - 1)
    if ndim <= start_dim or start_dim > end:
        return shape
    return shape[:start_dim] + (int(np.prod(shape[start_dim:end + 1])),) + shape[end + 1:]


def kron_factor_kinds(
        shape: Sequence[int], max_size_triangular: int = 2048, min_ndim_triangular: int = 2,
        memory_save_mode: Optional[str] = None,
) -> Tuple[bool, ...]:
    """For each dim of a (torch-layout) shape, whether its factor is triangular (True) or diagonal (False).

    timm's rule: a dim is diagonal if its size is 1 or above ``max_size_triangular``, if the tensor has fewer
    than ``min_ndim_triangular`` dims, or if ``memory_save_mode`` makes it so (``'one_diag'``: the largest dim,
    the last of equal largest; ``'smart_one_diag'``: the same, only when it is strictly the largest;
    ``'all_diag'``: every dim). A 0-d tensor has one scalar factor and no dims.
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        return ()
    diag = [False] * len(shape)
    if memory_save_mode in ('one_diag', 'smart_one_diag'):
        largest = int(np.argsort(shape)[::-1][0])  # numpy's (stable for small arrays) order, as timm uses
        ordered = sorted(shape)
        if memory_save_mode == 'one_diag' or (len(shape) >= 2 and ordered[-1] > ordered[-2]):
            diag[largest] = True
    elif memory_save_mode == 'all_diag':
        diag = [True] * len(shape)
    return tuple(
        not (size == 1 or size > max_size_triangular or len(shape) < min_ndim_triangular or d)
        for size, d in zip(shape, diag))


def _init_factors(shape: Tuple[int, ...], kinds: Tuple[bool, ...], scale: float, dtype) -> Tuple[jax.Array, ...]:
    if not shape:
        return (jnp.full((), scale, dtype),)
    per_dim = scale ** (1 / len(shape))
    return tuple(
        per_dim * jnp.eye(size, dtype=dtype) if tri else jnp.full((size,), per_dim, dtype)
        for size, tri in zip(shape, kinds))


# ---- the deterministic pieces: applying and fitting the factors ------------------------------------------

def _along(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    """``Q`` acting on ``x`` along ``axis``: ``Q @ x`` (triangular factor) or ``q * x`` (diagonal factor)."""
    if q.ndim == 2:
        return jnp.moveaxis(jnp.tensordot(q, x, axes=([1], [axis])), 0, axis)
    shape = [1] * x.ndim
    shape[axis] = q.shape[0]
    return x * q.reshape(shape)


def _along_transposed(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    if q.ndim == 2:
        return _along(x, axis, q.T)
    return _along(x, axis, q)


def _solve_along(x: jax.Array, axis: int, q: jax.Array) -> jax.Array:
    """``Q^{-T}`` acting on ``x`` along ``axis`` (``x @ inv(Q)`` on that dim; the solve runs in float32 as timm's)."""
    if q.ndim < 2:
        shape = [1] * x.ndim
        if x.ndim:
            shape[axis] = q.shape[0]
        return x / q.reshape(shape)
    moved = jnp.moveaxis(x, axis, -1)
    flat = moved.reshape(-1, moved.shape[-1]).astype(jnp.float32)
    solved = jax.lax.linalg.triangular_solve(q.astype(jnp.float32), flat, left_side=False, lower=False)
    return jnp.moveaxis(solved.reshape(moved.shape).astype(x.dtype), -1, axis)


def precondition(factors: Sequence[jax.Array], g: jax.Array) -> jax.Array:
    """``P g`` with ``P = (Q_1^T Q_1) x ... x (Q_n^T Q_n)``, each factor acting on its own dim of ``g``."""
    if g.ndim == 0:
        return factors[0] * factors[0] * g
    out = g
    for axis, q in enumerate(factors):
        out = _along_transposed(_along(out, axis, q), axis, q)
    return out


def _norm_lower_bound(a: jax.Array) -> jax.Array:
    """timm's cheap lower bound of the spectral norm of a (symmetric) matrix: one power-iteration step
    started from its largest row/column."""
    max_abs = jnp.max(jnp.abs(a))
    x = a / jnp.where(max_abs > 0, max_abs, jnp.ones_like(max_abs))
    sq = x * x
    col, row = jnp.sum(sq, axis=0), jnp.sum(sq, axis=1)
    i, j = jnp.argmax(col), jnp.argmax(row)
    y0 = x[:, i] @ x
    y1 = x @ x[j]
    r0 = jnp.linalg.norm((y0 / jnp.linalg.norm(y0)) @ x.T)
    r1 = jnp.linalg.norm(x.T @ (y1 / jnp.linalg.norm(y1)))
    bound = max_abs * jnp.where(col[i] > row[j], r0, r1)
    return jnp.where(max_abs > 0, bound, max_abs)


def _other_axes(ndim: int, axis: int) -> Tuple[int, ...]:
    return tuple(k for k in range(ndim) if k != axis)


def update_factors(
        factors: Sequence[jax.Array], g: jax.Array, v: jax.Array, precond_lr: float,
) -> Tuple[jax.Array, ...]:
    """One PSGD fit of the Kronecker factors on ``(g, v)``: ``A = Q g``, ``B = Q^{-T} v``, and for each factor
    ``Q_i <- Q_i - lr * (A_i A_i^T - B_i B_i^T) / ||A_i A_i^T + B_i B_i^T|| * Q_i`` (upper triangle of the
    step for triangular factors, spectral-norm lower bound; elementwise and max-norm for diagonal ones)."""
    if g.ndim == 0:
        q = factors[0]
        a, b = q * g, v / q
        t1, t2 = a * a, b * b
        return (q - (t1 - t2) * precond_lr * q / (jnp.abs(t1 + t2) + _TINY),)
    a, b = g, v
    for axis, q in enumerate(factors):
        a = _along(a, axis, q)
        b = _solve_along(b, axis, q)
    out = []
    for axis, q in enumerate(factors):
        others = _other_axes(g.ndim, axis)
        if q.ndim < 2:
            t1 = jnp.sum(a * a, axis=others)
            t2 = jnp.sum(b * b, axis=others)
            step = (t1 - t2) * precond_lr * q / (jnp.max(jnp.abs(t1 + t2)) + _TINY)
        else:
            t1 = jnp.tensordot(a, a, axes=(others, others))
            t2 = jnp.tensordot(b, b, axes=(others, others))
            step = jnp.triu((t1 - t2) * precond_lr) / (_norm_lower_bound(t1 + t2) + _TINY) @ q
        out.append(q - step.astype(q.dtype))
    return tuple(out)


def balance_factors(factors: Sequence[jax.Array]) -> Tuple[jax.Array, ...]:
    """Rescale the factors to equal max-norms (their geometric mean), leaving their product unchanged."""
    norms = jnp.stack([jnp.max(jnp.abs(q)) for q in factors])
    mean = jnp.prod(norms) ** (1 / len(factors))
    return tuple(q * (mean / norms[k]).astype(q.dtype) for k, q in enumerate(factors))


# ---- randomness (module-level so a test can substitute fixed draws on both sides) ------------------------

def _draw_probe(key: jax.Array, shape: Tuple[int, ...], dtype) -> jax.Array:
    return jax.random.normal(key, shape, dtype)


def _draw_uniform(key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (), jnp.float32)


# ---- the transformation ----------------------------------------------------------------------------------

class ScaleByKronState(NamedTuple):
    count: jax.Array  # updates done (timm's per-param `step`)
    update_counter: jax.Array  # steps since the last preconditioner update (timm's `update_counter`)
    key: jax.Array
    mu: Any  # momentum buffer, params' shapes
    factors: Tuple[Tuple[jax.Array, ...], ...]  # per leaf (in tree order), the Kronecker factors




class _LeafPlan(NamedTuple):
    perm: Optional[Tuple[int, ...]]  # flax -> torch axes, None for torch layout
    torch_shape: Tuple[int, ...]
    shape: Tuple[int, ...]  # the shape the factors act on (torch layout, flattened if asked)
    kinds: Tuple[bool, ...]


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

    def plan(p) -> _LeafPlan:
        shape = tuple(p.shape)
        perm = None
        if layout == 'flax' and len(shape) >= 2:
            perm = _flax_to_torch_axes(len(shape))
            shape = tuple(shape[a] for a in perm)
        flat = _flat_shape(shape, flatten_start_dim, flatten_end_dim) if flatten else shape
        return _LeafPlan(perm, shape, flat, kron_factor_kinds(flat, max_size_triangular, min_ndim_triangular,
                                                              memory_save_mode))

    def to_work(x, pl: _LeafPlan):
        if pl.perm is not None:
            x = jnp.transpose(x, pl.perm)
        return x.reshape(pl.shape)

    def from_work(x, pl: _LeafPlan):
        x = x.reshape(pl.torch_shape)
        if pl.perm is not None:
            x = jnp.transpose(x, np.argsort(pl.perm))
        return x

    def init_fn(params):
        leaves = jax.tree.leaves(params)
        factors = []
        for p in leaves:
            pl = plan(p)
            factors.append(_init_factors(pl.shape, pl.kinds, precond_init_scale, state_dtype(p.dtype, precond_dtype)))
        return ScaleByKronState(
            count=jnp.zeros([], jnp.int32),
            update_counter=jnp.zeros([], jnp.int32),
            key=jax.random.PRNGKey(seed),
            mu=jax.tree.map(lambda p: jnp.zeros(p.shape, state_dtype(p.dtype, mu_dtype)), params),
            factors=tuple(factors),
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
            debiased = to_work((m / bias_correction.astype(m.dtype)).astype(pdt), pl)
            fit_on = debiased if momentum_into_precond_update else to_work(g, pl).astype(pdt)
            balance = jnp.logical_and(_draw_uniform(jax.random.fold_in(coin_key, idx)) < _BALANCE_PROBABILITY,
                                      do_update)

            def refit(qs, fit_on=fit_on, balance=balance, idx=idx, ndim=len(pl.shape), pdt=pdt):
                if ndim > 1:
                    qs = jax.lax.cond(balance, balance_factors, tuple, qs)
                probe = _draw_probe(jax.random.fold_in(probe_key, idx), fit_on.shape, pdt)
                return update_factors(qs, fit_on, probe, precond_lr)

            qs = jax.lax.cond(do_update, refit, tuple, tuple(qs))
            new_factors.append(qs)
            # the RMS cap in float32 for low-precision leaves (fp16 squares underflow), then the grad's dtype
            pre = upcast(precondition(qs, debiased).astype(g.dtype))
            rms = jnp.sqrt(jnp.mean(jnp.square(pre)))
            pre = pre * jnp.minimum(1.1 / (rms + 1e-8), 1.0)
            outs.append(from_work(pre.astype(g.dtype), pl))
        return jax.tree.unflatten(treedef, outs), ScaleByKronState(
            count=count, update_counter=counter, key=key, mu=jax.tree.unflatten(treedef, new_mus),
            factors=tuple(new_factors))

    return optax.GradientTransformation(init_fn, update_fn)


class AddStochasticWeightDecayState(NamedTuple):
    count: jax.Array
    key: jax.Array


def _add_stochastic_weight_decay(
        weight_decay: Any, learning_rate: Any, lr_scale: Any, decoupled: bool, max_lr: Optional[float], seed: int,
) -> optax.GradientTransformation:
    """timm Kron's ``stochastic_weight_decay``: each leaf's decay is ``2 u * wd``, ``u ~ U[0, 1)`` per step.

    Runs after the lr scaling: ``u <- u - c * (2 u wd) * p`` with ``c`` the group lr (L2: the decay joins the
    preconditioned direction before the lr multiply, which is the same) or the decoupled / corrected factor.
    """

    def init_fn(params):
        del params
        return AddStochasticWeightDecayState(jnp.zeros([], jnp.int32), jax.random.PRNGKey(seed))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError('kron weight decay needs the params: call tx.update(grads, state, params)')
        key, draw_key = jax.random.split(state.key)
        lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        wds = leaf_values(weight_decay, updates)
        treedef = jax.tree.structure(updates)
        flat = [treedef.flatten_up_to(x) for x in (updates, params, lrs, wds)]
        outs = []
        for idx, (u, p, lr, wd) in enumerate(zip(*flat)):
            if not isinstance(wd, jax.core.Tracer) and wd == 0:
                outs.append(u)
                continue
            factor = decoupled_decay_factor(lr, max_lr) if decoupled else lr
            wd_now = 2.0 * _draw_uniform(jax.random.fold_in(draw_key, idx)) * wd
            outs.append(u - (factor * wd_now).astype(u.dtype) * p)
        return jax.tree.unflatten(treedef, outs), AddStochasticWeightDecayState(safe_increment(state.count), key)

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
    check_choice('layout', layout, ('torch', 'flax'))
    for name, value in (('max_size_triangular', max_size_triangular), ('min_ndim_triangular', min_ndim_triangular),
                        ('precond_init_scale', precond_init_scale), ('seed', seed)):
        if isinstance(value, jax.core.Tracer):
            raise ValueError(f'Invalid {name}: a traced value; it decides state shapes or keys, so pass it as a '
                             f"static argument (optax.inject_hyperparams(kron, static_args=('{name}',)))")
    max_lr = resolve_max_lr(learning_rate, max_lr, corrected_weight_decay and decoupled_decay)
    direction = scale_by_kron(
        momentum, preconditioner_update_probability, int(max_size_triangular), int(min_ndim_triangular),
        memory_save_mode, momentum_into_precond_update, precond_lr, float(precond_init_scale), mu_dtype,
        precond_dtype, flatten, int(flatten_start_dim), int(flatten_end_dim), seed=int(seed), layout=layout)
    if stochastic_weight_decay:
        return optax.with_extra_args_support(optax.chain(
            direction,
            scale_by_learning_rate(learning_rate, lr_scale),
            _add_stochastic_weight_decay(weight_decay, learning_rate, lr_scale, decoupled_decay, max_lr,
                                         int(seed) + 1),
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


OPTIMIZERS = (
    OptimInfo(
        name='kron', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner', has_eps=False, has_momentum=True,
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003, benchmarked=True),
    OptimInfo(
        name='kronw', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD optimizer with Kronecker-factored preconditioner and decoupled weight decay',
        has_eps=False, has_momentum=True, defaults={'decoupled_decay': True},
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003),
    OptimInfo(
        name='kronc', alias=kron, timm_class='timm.optim.Kron',
        description='PSGD Kron with corrected decoupled weight decay (lr²/max_lr scaling)', has_eps=False,
        has_momentum=True, defaults={'decoupled_decay': True, 'corrected_weight_decay': True},
        shape_aware=True, parity_mode='kron_no_refit', default_lr=0.003),
)
