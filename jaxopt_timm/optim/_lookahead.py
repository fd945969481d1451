"""Lookahead: k fast steps forward, one step back (Zhang et al., 2019, arXiv:1907.08610), as timm's wrapper.

Unlike ``optax.lookahead``, the params tree passed to ``update`` and returned
by ``apply_updates`` keeps the user's structure: the slow weights live in the
optimizer state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .._validate import check_range
from ..transforms import compute_dtype, safe_increment, state_dtype

__all__ = ['LookaheadState', 'lookahead']


class LookaheadState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    slow: Any
    inner_state: Any


def lookahead(
    base_tx: optax.GradientTransformation,
    alpha: float = 0.5,
    k: int = 6,
) -> optax.GradientTransformationExtraArgs:
    r"""Wrap ``base_tx``: every ``k``-th update pulls the fast weights back to ``slow + alpha * (fast - slow)``.

    Mirrors a timm quirk: timm creates the slow buffer lazily *at the first
    sync* as a copy of the fast weights there, so the first sync (update ``k``)
    leaves the params where the base optimizer put them and only later syncs
    interpolate. The state's ``slow`` starts as the initial params and is
    replaced at the first sync.

    The slow weights take the package's state dtype (the params' dtype;
    float32 for float16 params) and the interpolation is computed in float32
    for low-precision leaves; the update has the base update's dtype.

    Args:
        base_tx: any optax transformation (it receives the params and extra args).
        alpha: slow-weights step size, in [0, 1].
        k: sync period in updates, an integer >= 1.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> tx = jt.optim.lookahead(jt.optim.adamw(1e-3), alpha=0.5, k=6)
        >>> state = tx.init({'w': jnp.ones(3)})
    """
    check_range('alpha', alpha, 0.0, 1.0)
    check_range('k', k, 1.0, integer=True)
    k = int(k)
    base_tx = optax.with_extra_args_support(base_tx)

    def init_fn(params):
        return LookaheadState(
            count=jnp.zeros([], jnp.int32),
            slow=jax.tree.map(lambda p: jnp.array(p, state_dtype(p.dtype)), params),
            inner_state=base_tx.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError('lookahead needs the params: call tx.update(grads, state, params)')
        updates, inner_state = base_tx.update(updates, state.inner_state, params, **extra_args)
        count = safe_increment(state.count)
        sync = (count % k) == 0
        first_sync = count == k

        def leaf(p, u, s_in):
            cdt = compute_dtype(p.dtype)  # float32 for low-precision leaves
            # the fast weights as the base step leaves them: p + u rounded to the params' dtype
            fast = (p + u.astype(p.dtype)).astype(cdt)
            s = s_in.astype(cdt)
            new_slow = jnp.where(first_sync, fast, s + alpha * (fast - s))
            slow = jnp.where(sync, new_slow, s).astype(s_in.dtype)
            return jnp.where(sync, (slow.astype(cdt) - p.astype(cdt)).astype(u.dtype), u), slow

        pairs = jax.tree.map(leaf, params, updates, state.slow)
        outer = jax.tree.structure(params)
        new_updates, slow = jax.tree.transpose(outer, jax.tree.structure((0, 0)), pairs)
        return new_updates, LookaheadState(count=count, slow=slow, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
