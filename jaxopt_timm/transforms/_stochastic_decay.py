"""Stochastic weight decay: timm ``Kron``'s ``stochastic_weight_decay`` switch.

Each step each leaf decays by ``2 u * wd`` with ``u ~ U[0, 1)`` drawn per leaf (mean ``wd``), instead of
``wd``. timm draws ``u`` from Python's ``random``; here it comes from a ``jax.random`` key kept in the
state, so runs are reproducible from ``seed`` but not bit-equal to timm's.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ._lr import leaf_lrs
from ._tree import leaf_values, require_params, safe_increment
from ._weight_decay import decoupled_decay_factor

__all__ = ['AddStochasticWeightDecayState', 'add_stochastic_weight_decay']


class AddStochasticWeightDecayState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    key: jax.Array


def _uniform(key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (), jnp.float32)


def add_stochastic_weight_decay(
    weight_decay: Any,
    learning_rate: Any,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    *,
    seed: int = 0,
    draw_uniform: Optional[Callable[[jax.Array], jax.Array]] = None,
) -> optax.GradientTransformation:
    """Runs after the lr scaling: ``u <- u - c * (2 u wd) * p`` per leaf, ``u`` drawn fresh each step.

    ``c`` is the group lr (``lr(t) * lr_scale``), or ``lr**2 / max_lr`` with ``max_lr`` (corrected decay).
    With ``c`` the group lr this is also timm Kron's L2 mode: there the decay joins the preconditioned
    direction before the lr multiply, which gives the same update. Leaves whose (concrete) ``wd`` is 0 are
    left alone. ``draw_uniform(key) -> U[0, 1)`` scalar replaces the draw (a test injects fixed values).
    """
    draw = _uniform if draw_uniform is None else draw_uniform

    def init_fn(params):
        del params
        return AddStochasticWeightDecayState(jnp.zeros([], jnp.int32), jax.random.PRNGKey(seed))

    def update_fn(updates, state, params=None):
        require_params(params, 'add_stochastic_weight_decay')
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
            wd_now = 2.0 * draw(jax.random.fold_in(draw_key, idx)) * wd
            outs.append(u - (decoupled_decay_factor(lr, max_lr) * wd_now).astype(u.dtype) * p)
        return jax.tree.unflatten(treedef, outs), AddStochasticWeightDecayState(safe_increment(state.count), key)

    return optax.GradientTransformation(init_fn, update_fn)
