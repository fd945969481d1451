"""PSGD Kron's step: the state, timm's refit schedule and the random draws of :func:`scale_by_kron`.

Split from :mod:`._kron`, which keeps the alias, its argument checks and its registry records, so that each
module stays short. The preconditioner's math is :mod:`jaxopt_timm.transforms._kron_preconditioner`. Its
public names are exported by :mod:`._kron` (``jaxopt_timm.optim.*``); like every helper module of
:mod:`jaxopt_timm.optim` it exports nothing itself and registers no optimizer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._validate import resolve_dtype
from ..transforms import (
    KronLeafPlan,
    from_factor_space,
    is_params_placeholder,
    kron_balance_factors,
    kron_init_factors,
    kron_leaf_plan,
    kron_precondition,
    kron_update_factors,
    safe_increment,
    state_dtype,
    to_factor_space,
    upcast,
)

__all__: List[str] = []  # the names below are exported by ._kron

_BALANCE_PROBABILITY = 0.01  # timm re-balances the factors' scales on ~1% of the preconditioner updates


def precond_update_prob_schedule(
    n: Any,
    max_prob: float = 1.0,
    min_prob: float = 0.03,
    decay: float = 0.001,
    flat_start: float = 500,
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
    prob = (
        precond_update_prob_schedule if preconditioner_update_probability is None else preconditioner_update_probability
    )
    if not callable(prob):
        # timm compares the int counter with the Python float 1/p: the same as counter >= ceil(1/p)
        every = math.ceil(1.0 / float(prob)) if float(prob) > 0 else None
        every = None if every is not None and every > np.iinfo(np.int32).max else every

    def plan(p) -> KronLeafPlan:
        return kron_leaf_plan(
            p.shape,
            layout,
            (flatten_start_dim, flatten_end_dim) if flatten else None,
            max_size_triangular,
            min_ndim_triangular,
            memory_save_mode,
        )

    def init_fn(params):
        factors: Any = []
        for p in jax.tree.leaves(params):
            pl = plan(p)
            factors.append(
                kron_init_factors(pl.shape, pl.kinds, precond_init_scale, state_dtype(p.dtype, precond_dtype))
            )
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
            balance = jnp.logical_and(
                _draw_uniform(jax.random.fold_in(coin_key, idx)) < _BALANCE_PROBABILITY, do_update
            )

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
            count=count,
            update_counter=counter,
            key=key,
            mu=jax.tree.unflatten(treedef, new_mus),
            factors=tuple(new_factors),
        )

    return optax.GradientTransformation(init_fn, update_fn)
