"""Layer-wise trust ratios of LARS (You et al., 2017, arXiv:1708.03888) and LAMB (You et al., 2019, arXiv:1904.00962).

Both rescale each tensor's update by a ratio of norms, one ratio per tensor
(per leaf here, as timm computes one per parameter):

* LAMB: ``r = ||w|| / ||u||`` where ``u`` is the (already weight-decayed)
  Adam-style direction; LAMBC (``trust_clip``) caps ``r`` at 1.
* LARS: ``r = c * ||p|| / (||g|| + wd * ||p|| + eps)`` on the *raw* gradient,
  then the update is ``(g + wd * p) * r``; LARC (``trust_clip``) uses
  ``min(r / lr, 1)`` with the group lr (NVIDIA apex's LARC clipping).

``optax.scale_by_trust_ratio`` computes ``c * ||p|| / (||u|| + eps)`` on every
leaf. timm differs in four ways, all mirrored here:

1. a leaf adapts only where its group's ``weight_decay != 0``, unless
   ``always_adapt`` (timm keeps biases/norms, which the factory leaves
   undecayed, on the plain step);
2. ``trust_clip`` (LAMBC's ``min(r, 1)`` and LARC's ``min(r / lr, 1)``);
3. LARS puts ``wd * ||p||`` in the denominator and adds ``wd * p`` to the
   gradient *inside* the ratio scaling (the ratio uses the undecayed grad norm);
4. timm's Lamb with ``decoupled_decay`` shrinks ``p`` in place *before* it
   takes ``||p||``, so the ratio uses ``||p * (1 - c * wd)||`` with ``c`` the
   group lr (or ``lr**2 / max_lr`` for corrected decay).

In all cases the ratio is 1 where either norm is zero.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import check_bool, check_choice, check_range
from ._lr import LearningRate, leaf_lrs
from ._tree import leaf_values, safe_increment
from ._weight_decay import decoupled_decay_factor

__all__ = ['trust_ratio', 'ScaleByTrustRatioState', 'scale_by_trust_ratio', 'lamb_leaf_ratio', 'apply_leaf_ratio']


def _norm(x: jax.Array) -> jax.Array:
    dt = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    x = x.astype(dt)
    return jnp.sqrt(jnp.sum(x * x))


def trust_ratio(
    w_norm: jax.Array,
    u_norm: jax.Array,
    *,
    trust_coeff: Any = 1.0,
    eps: Any = 0.0,
    extra_denom: Any = 0.0,
) -> jax.Array:
    """``trust_coeff * w_norm / (u_norm + extra_denom + eps)``, and 1 where ``w_norm`` or ``u_norm`` is zero."""
    ratio = trust_coeff * w_norm / (u_norm + extra_denom + eps)
    one = jnp.ones_like(ratio)
    return jnp.where(w_norm > 0, jnp.where(u_norm > 0, ratio, one), one)


def _adapts(wd: Any, always_adapt: bool) -> Any:
    """timm's gate ``weight_decay != 0 or always_adapt``: a Python bool, or a traced bool for a traced wd."""
    if always_adapt:
        return True
    if isinstance(wd, jax.core.Tracer):
        return wd != 0
    return bool(wd != 0)


def lamb_leaf_ratio(
    u: jax.Array,
    p: jax.Array,
    wd: Any,
    lr: Any,
    *,
    trust_coeff: Any = 1.0,
    eps: Any = 0.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
    decoupled_decay: bool = False,
    max_lr: Optional[float] = None,
) -> Optional[jax.Array]:
    """One leaf's LAMB ratio ``||w|| / ||u||`` (see :func:`scale_by_trust_ratio`); None where the leaf never adapts."""
    if _adapts(wd, always_adapt) is False:
        return None
    w = p
    if decoupled_decay:
        k = (decoupled_decay_factor(lr, max_lr) * wd).astype(p.dtype)
        w = p + p * (-k)
    ratio = trust_ratio(_norm(w), _norm(u), trust_coeff=trust_coeff, eps=eps)
    return jnp.minimum(ratio, 1.0) if trust_clip else ratio


def apply_leaf_ratio(u: jax.Array, ratio: Optional[jax.Array], wd: Any, always_adapt: bool) -> jax.Array:
    """``u * ratio`` where the leaf adapts (a traced weight decay gates it at run time), else ``u``."""
    if ratio is None:
        return u
    adapt = _adapts(wd, always_adapt)
    out = u * ratio.astype(u.dtype)
    return out if adapt is True else jnp.where(adapt, out, u)


class ScaleByTrustRatioState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)


def scale_by_trust_ratio(
    weight_decay: Any = 0.0,
    *,
    form: str = 'lamb',
    trust_coeff: Any = 1.0,
    eps: Any = 0.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
    learning_rate: Optional[LearningRate] = None,
    lr_scale: Any = None,
    decoupled_decay: bool = False,
    max_lr: Optional[float] = None,
) -> optax.GradientTransformation:
    """Scale each leaf's update by timm's layer-wise trust ratio (LAMB or LARS form).

    Args:
        weight_decay: float or per-leaf tree of floats. A leaf adapts only where
            its value is non-zero (unless ``always_adapt``); in the LARS form it
            is also the L2 decay added inside the scaling and the
            ``wd * ||p||`` term of the denominator; in the LAMB form with
            ``decoupled_decay`` it shrinks ``p`` before its norm is taken.
        form: ``'lamb'``: ``r = c ||w|| / (||u|| + eps)``, ``u <- r u``;
            ``'lars'``: ``r = c ||p|| / (||g|| + wd ||p|| + eps)``,
            ``u <- r (g + wd p)``.
        trust_coeff: ``c`` (1 for timm's Lamb, 0.001 by default for Lars).
        eps: added to the denominator (0 for timm's Lamb).
        trust_clip: LAMBC ``min(r, 1)``; LARC ``min(r / lr, 1)`` with the group lr.
        always_adapt: adapt leaves whose weight decay is zero too.
        learning_rate / lr_scale: the group lr ``lr(count) * lr_scale``, needed by
            LARC clipping and by the LAMB form's ``decoupled_decay``.
        decoupled_decay: (LAMB form) take ``||p * (1 - k * wd)||`` with
            ``k = lr`` (or ``lr**2 / max_lr`` with ``max_lr``), the params as timm
            has shrunk them in place before computing the ratio. The decay
            itself is applied by ``add_decoupled_weight_decay`` later in the chain.
        max_lr: peak lr for corrected decoupled decay (LAMB form).

    The count in the state is the number of updates already applied, so the
    lr is the one the following ``scale_by_learning_rate`` uses.
    """
    check_choice('form', form, ('lamb', 'lars'))
    check_range('trust_coeff', trust_coeff, 0.0, lo_open=True)
    check_range('eps', eps, 0.0)
    check_bool('trust_clip', trust_clip)
    check_bool('always_adapt', always_adapt)
    check_bool('decoupled_decay', decoupled_decay)
    if form == 'lars' and decoupled_decay:
        raise ValueError("Invalid decoupled_decay: True with form='lars'; LARS decay is L2, expected False")
    needs_lr = (form == 'lars' and trust_clip) or (form == 'lamb' and decoupled_decay)
    if needs_lr and learning_rate is None:
        raise ValueError(
            'Invalid learning_rate: None; LARC clipping and decoupled-decay LAMB ratios need the group lr, '
            'expected a float >= 0 or a schedule'
        )

    def init_fn(params):
        del params
        return ScaleByTrustRatioState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError('scale_by_trust_ratio needs the params: call tx.update(grads, state, params)')
        wds = leaf_values(weight_decay, updates)
        if needs_lr:
            lrs = leaf_lrs(learning_rate, state.count, lr_scale, updates)
        else:
            lrs = jax.tree.map(lambda _: None, updates)

        def lamb_leaf(u, p, wd, lr):
            ratio = lamb_leaf_ratio(
                u,
                p,
                wd,
                lr,
                trust_coeff=trust_coeff,
                eps=eps,
                trust_clip=trust_clip,
                always_adapt=always_adapt,
                decoupled_decay=decoupled_decay,
                max_lr=max_lr,
            )
            return apply_leaf_ratio(u, ratio, wd, always_adapt)

        def lars_leaf(g, p, wd, lr):
            adapt = _adapts(wd, always_adapt)
            if adapt is False:
                return g
            w_norm = _norm(p)
            ratio = trust_ratio(w_norm, _norm(g), trust_coeff=trust_coeff, eps=eps, extra_denom=w_norm * wd)
            if trust_clip:
                ratio = jnp.minimum(ratio / lr.astype(ratio.dtype), 1.0)
            out = (g + (wd * p).astype(g.dtype)) * ratio.astype(g.dtype)
            return out if adapt is True else jnp.where(adapt, out, g)

        leaf_fn = lamb_leaf if form == 'lamb' else lars_leaf
        updates = jax.tree.map(
            lambda u, p, wd, lr: None if u is None else leaf_fn(u, p, wd, lr),
            updates,
            params,
            wds,
            lrs,
            is_leaf=lambda x: x is None,
        )
        return updates, ScaleByTrustRatioState(count=safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
