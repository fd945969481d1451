"""Weight decay in timm's two forms: L2-coupled (into the gradient) and decoupled (onto the params).

optax's ``add_decayed_weights`` adds ``wd * p`` to the update *before* the lr
multiply, which is only timm's decoupled form when the decay is linear in the
lr. timm also has ``fixed_decay`` (AdaBelief: ``p *= 1 - wd``, no lr) and
corrected decay (``p *= 1 - wd * lr**2 / max_lr``, arXiv:2506.02285), and every
form uses the *group* lr (with its layer-decay ``lr_scale``). The decoupled
primitive here therefore runs *after* the lr scaling, with its own lr.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import check_choice
from ._lr import LearningRate, leaf_lrs
from ._tree import leaf_values, require_params, safe_increment, tree_any_nonzero

__all__ = [
    'add_l2_weight_decay',
    'AddDecoupledWeightDecayState',
    'add_decoupled_weight_decay',
    'decoupled_decay_factor',
    'l2_leaf',
    'l2_decayed',
    'FoldedL2',
    'folded_l2',
]


def l2_leaf(g: Any, p: Any, wd: Any) -> Any:
    """``g + wd * p`` in ``g``'s dtype (torch's coupled weight decay); None for a masked leaf.

    Optimizers that fold the sum into their direction (SGD with momentum, ADOPT, Adagrad, RMSpropTF)
    compute it twice, before and after a :func:`cpu_fence`, instead of storing it: one expression for
    both places keeps the two computations identical.
    """
    return None if g is None else g + (wd * p).astype(g.dtype)


def l2_decayed(updates: Any, params: Any, weight_decay: Any) -> Any:
    """:func:`l2_leaf` over a tree; ``weight_decay`` is a float or a per-leaf tree."""
    return jax.tree.map(l2_leaf, updates, params, leaf_values(weight_decay, updates), is_leaf=lambda x: x is None)


class FoldedL2(NamedTuple):
    """What a direction that folds torch's L2 term in needs per leaf (see :func:`folded_l2`)."""

    on: bool  # any non-zero weight decay (a traced one counts)
    params: Any  # the params, or a tree of None when off (nothing of them is read)
    wds: Any  # per-leaf weight decays

    def grad(self, g: Any, p: Any, wd: Any) -> Any:
        """``g + wd * p`` (:func:`l2_leaf`) when on, else ``g``."""
        return l2_leaf(g, p, wd) if self.on else g


def folded_l2(weight_decay: Any, updates: Any, params: Any, name: str) -> FoldedL2:
    """The inputs of an L2 term folded into a direction instead of a separate :func:`add_l2_weight_decay`.

    Directions that fold it (SGD momentum, ADOPT, Adagrad) recompute ``g + wd*p`` after a
    :func:`cpu_fence` rather than share it between two loops, which XLA:CPU (no multi-output fusion)
    would write to a full-size temporary; :meth:`FoldedL2.grad` keeps both computations identical.
    """
    on = tree_any_nonzero(weight_decay)
    if on:
        require_params(params, name)
    ps = params if on else jax.tree.map(lambda _: None, updates)
    return FoldedL2(on, ps, leaf_values(weight_decay, updates))


def add_l2_weight_decay(weight_decay: Any) -> optax.GradientTransformation:
    """L2-coupled weight decay: ``g <- g + wd * p`` (torch's default ``weight_decay``).

    Placed before the direction (moments see the decayed gradient), as
    ``torch.optim.Adam``/``SGD`` and timm's non-decoupled modes do.
    ``weight_decay`` is a float or a per-leaf tree of floats.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if not tree_any_nonzero(weight_decay):
            return updates, state
        require_params(params, 'add_l2_weight_decay')
        return l2_decayed(updates, params, weight_decay), state

    return optax.GradientTransformation(init_fn, update_fn)


def decoupled_decay_factor(lr: jax.Array, max_lr: Optional[float]) -> jax.Array:
    """Multiplier of ``wd * p`` in a decoupled step: the group lr, or ``lr**2 / max_lr`` when corrected."""
    return lr if max_lr is None else lr * lr / max_lr


class AddDecoupledWeightDecayState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)


def add_decoupled_weight_decay(
    weight_decay: Any,
    learning_rate: Optional[LearningRate] = None,
    lr_scale: Any = None,
    max_lr: Optional[float] = None,
    *,
    order: str = 'pre',
) -> optax.GradientTransformation:
    """Decoupled weight decay applied after the lr scaling: ``u <- u - c * wd * p``.

    ``c`` is timm's step factor for the decay:

    * ``learning_rate=None``: ``c = 1`` (fixed decay, AdaBelief's ``fixed_decay``);
    * otherwise ``c = lr(t) * lr_scale`` (decoupled, as torch's AdamW);
    * with ``max_lr``: ``c = (lr(t) * lr_scale)**2 / max_lr`` (corrected decay).

    Because ``p`` is untouched by the direction in these optimizers,
    ``p * (1 - c*wd) - lr*d`` (timm's in-place order) equals
    ``p + (-lr*d - c*wd*p)``. ``order`` says when timm shrinks the params:

    * ``'pre'``: before the step, as above (AdamW);
    * ``'post'``: after it, ``p' = (p + u)(1 - c*wd)``, so ``u <- u - c*wd*(p + u)`` (LaProp; the
      difference ``c*wd*u`` is second order but compounds beyond the parity tolerance);
    * ``'proximal'``: the proximal step of the L2 penalty, ``p' = (p + u) / (1 + c*wd)`` (Adan's default).
    """
    check_choice('order', order, ('pre', 'post', 'proximal'))
    if order != 'pre' and learning_rate is None:
        raise ValueError(f"Invalid learning_rate: None with order={order!r}, expected a float >= 0 or a schedule")

    def leaf(u, p, wd, c):
        if u is None:
            return None
        if order == 'proximal':
            return (p + u) / (1.0 + c * wd).astype(u.dtype) - p
        return u - (c * wd).astype(u.dtype) * ((p + u) if order == 'post' else p)

    def init_fn(params):
        del params
        return AddDecoupledWeightDecayState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        new_state = AddDecoupledWeightDecayState(count=safe_increment(state.count))
        if not tree_any_nonzero(weight_decay):
            return updates, new_state
        require_params(params, 'add_decoupled_weight_decay')
        wds = leaf_values(weight_decay, updates)
        if learning_rate is None:
            factors = jax.tree.map(lambda _: jnp.float32(1.0), updates)
        else:
            lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
            factors = jax.tree.map(lambda lr: decoupled_decay_factor(lr, max_lr), lrs)
        updates = jax.tree.map(leaf, updates, params, wds, factors, is_leaf=lambda x: x is None)
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)
