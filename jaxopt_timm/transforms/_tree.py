"""Per-leaf hyperparameter trees.

The optimizer factory turns timm's param groups into trees of Python floats
shaped like the params (one ``lr_scale`` and one ``weight_decay`` per leaf).
Primitives accept either a scalar or such a tree wherever a hyperparameter can
differ between groups; the values are plain constants folded into the jitted
update, so nothing is re-derived from names inside ``update``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    'is_scalar',
    'leaf_values',
    'tree_any_nonzero',
    'safe_increment',
    'compute_dtype',
    'upcast',
    'state_dtype',
    'state_zeros',
    'cpu_fence',
    'require_params',
    'tree_unzip',
    'is_params_placeholder',
    'per_leaf_stats',
]


def is_scalar(value: Any) -> bool:
    """True for a number or a 0-d array, False for a tree of per-leaf values."""
    if isinstance(value, (bool, int, float, np.number)):
        return True
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return True
    return False


def leaf_values(value: Any, like: Any) -> Any:
    """``value`` as a tree with one entry per leaf of ``like`` (a scalar is broadcast).

    A ``like`` with no leaves (``optax.tree.map_params`` initializes with a leafless placeholder) maps to
    itself, so the state built from it keeps the placeholder where the params' structure goes.
    """
    if jax.tree.structure(like).num_leaves == 0:
        return jax.tree.map(lambda _: value, like)
    if value is None or is_scalar(value):
        return jax.tree.map(lambda _: value, like)
    return value


def is_params_placeholder(params: Any) -> bool:
    """Whether ``params`` is the leafless stand-in ``optax.tree.map_params`` initializes a state with.

    A state part sized by the number of leaves (Kron's per-leaf factor lists) cannot be built from it;
    such a part is built as one leaf instead, which ``map_params`` treats as a non-param field.
    """
    return type(params).__name__ == '_ParamsPlaceholder' and jax.tree.structure(params).num_leaves == 0


def per_leaf_stats(fn: Any, params: Any) -> Any:
    """``jax.tree.map(fn, params)`` for per-leaf statistics that are not copies of the params (one scalar per
    tensor, say); for ``optax.tree.map_params``'s placeholder, one non-param leaf, so the map leaves them alone."""
    if is_params_placeholder(params):
        return jnp.zeros([])
    return jax.tree.map(fn, params)


def tree_any_nonzero(value: Any) -> bool:
    """Whether a scalar-or-tree hyperparameter may be non-zero anywhere (decides whether a stage is built).

    A JAX array counts as non-zero even when it holds 0: ``optax.inject_hyperparams`` passes concrete arrays
    at ``init`` and tracers at ``update``, and both calls must build the same chain.
    """
    if is_scalar(value):
        return isinstance(value, jax.Array) or bool(value != 0)
    return any(tree_any_nonzero(v) for v in jax.tree.leaves(value))


def require_params(params: Any, name: str) -> None:
    """Raise the package's one error for an ``update`` called without the params a step needs."""
    if params is None:
        raise ValueError(f'{name} needs the params: call tx.update(grads, state, params)')


def tree_unzip(out: Any, like: Any, n: int) -> tuple:
    """Split a per-leaf map that returned ``n``-tuples (``jax.tree.map(leaf, like, ...)``) into ``n`` trees.

    One map computing several outputs per leaf (direction and new buffers) lets a step read each input
    once; the tuples are then regrouped into trees shaped like ``like``.
    """
    treedef = jax.tree.structure(like)
    flat = treedef.flatten_up_to(out)
    return tuple(treedef.unflatten([o[i] for o in flat]) for i in range(n))


def safe_increment(count: jax.Array) -> jax.Array:
    """Step counter increment that saturates at int32 max instead of wrapping."""
    max_int32 = jnp.iinfo(jnp.int32).max
    return jnp.where(count < max_int32, count + jnp.ones_like(count), max_int32)


def compute_dtype(dtype: Any) -> Any:
    """float32 for bf16/fp16 (timm computes low-precision updates in fp32), else the dtype itself."""
    return jnp.dtype(jnp.float32) if jnp.dtype(dtype).itemsize < 4 else jnp.dtype(dtype)


def upcast(x: jax.Array) -> jax.Array:
    """``x`` in its :func:`compute_dtype`."""
    return x.astype(compute_dtype(x.dtype))


def state_dtype(param_dtype: Any, requested: Any = None) -> Any:
    """The dtype of an optimizer-state buffer for a leaf of ``param_dtype``.

    ``requested`` (an alias's ``mu_dtype`` / ``nu_dtype``, already resolved) wins.
    Otherwise the params' dtype, as timm (torch keeps ``exp_avg`` etc. in the
    param's dtype), except float16: fp16's range cannot hold Adam-style
    statistics (any ``|g| < 2.4e-4`` squares to 0, so ``m / (sqrt(v) + eps)``
    blows up), so fp16 leaves get float32 state. timm users never meet this
    because AMP keeps fp32 master params; bf16 has fp32's range and keeps bf16.
    """
    if requested is not None:
        return jnp.dtype(requested)
    dt = jnp.dtype(param_dtype)
    return jnp.dtype(jnp.float32) if dt == jnp.dtype(jnp.float16) else dt


def state_zeros(tree: Any, requested: Any = None) -> Any:
    """Zeros shaped like ``tree`` in :func:`state_dtype` of each leaf (``None`` leaves stay ``None``)."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), state_dtype(p.dtype, requested)), tree)


def cpu_fence(tree: Any) -> Any:
    """``tree`` unchanged, as an ordering point for XLA:CPU (``jax.lax.optimization_barrier``); identity elsewhere.

    XLA:CPU has no multi-output fusion: each output of a step is its own loop, and an intermediate shared by
    two loops is either recomputed in both or written to a fresh temporary. Two patterns cost a full extra
    pass (plus page faults on the temporary) per step:

    * the direction loop recomputing the new moments from the *old* state, which donation is about to
      overwrite, so XLA copies the old state first: fencing the new state makes the direction read it;
    * a multi-input intermediate (``g + wd*p``, ``sign(u) == sign(g)``) feeding the state loop and the
      direction loop: fencing the raw inputs lets the second loop recompute it instead.

    On GPU/TPU multi-output fusion already makes the step one pass, and a barrier would only split it, so
    this is the identity on any other default backend.
    """
    if jax.default_backend() != 'cpu':
        return tree
    return jax.lax.optimization_barrier(tree)
