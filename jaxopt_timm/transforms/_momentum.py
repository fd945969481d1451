"""Momentum and Adam moments with torch's exact conventions.

optax's ``trace`` starts its buffer at zero and ``scale_by_amsgrad`` keeps the
maximum of the *bias-corrected* second moment; torch's SGD seeds the buffer
with the first gradient (which differs when ``dampening > 0``) and torch's
AdamW(amsgrad) keeps the maximum of the *raw* second moment and corrects it
with the current step's bias correction. These primitives mirror torch.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .._validate import resolve_dtype
from ._rectify import one_minus_pow
from ._tree import cpu_fence, safe_increment, state_dtype, state_zeros, tree_any_nonzero, upcast
from ._weight_decay import l2_decayed

__all__ = [
    'TorchMomentumState',
    'scale_by_torch_momentum',
    'ScaleByAdamState',
    'scale_by_adam',
    'tree_zeros_like',
    'rms_clip_factor',
    'with_state_dtype',
    'moments_init',
    'adam_moments',
]


def tree_zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Zero state buffers: ``dtype`` if given, else :func:`state_dtype` of each leaf (its own; fp32 for fp16)."""
    return state_zeros(tree, dtype)


def moments_init(state_cls: Any, mu_dtype: Optional[Any] = None, nu_dtype: Optional[Any] = None, **extra: Any) -> Any:
    """``init`` of an Adam-style ``state_cls(count, exp_avg, exp_avg_sq, ...)``: a zero int32 count and zero moments.

    ``exp_avg`` is kept in ``mu_dtype`` and ``exp_avg_sq`` in ``nu_dtype`` (None, a dtype or timm's
    strings; default: :func:`state_dtype` of each leaf, the params' dtype or float32 for float16).
    Each further field is ``extra[field](params)``.
    """
    mu_dtype = resolve_dtype('mu_dtype', mu_dtype)
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)

    def init_fn(params):
        return state_cls(
            count=jnp.zeros([], jnp.int32),
            exp_avg=tree_zeros_like(params, mu_dtype),
            exp_avg_sq=tree_zeros_like(params, nu_dtype),
            **{k: f(params) for k, f in extra.items()},
        )

    return init_fn


def adam_moments(updates: Any, exp_avg: Any, exp_avg_sq: Any, b1: Any, b2: Any) -> Any:
    """Adam's new moments ``(m + (1-b1)(g - m), b2 v + (1-b2) g^2)``, rounded as torch's ``lerp_`` / ``addcmul_``.

    Computed in each leaf's compute dtype (float32 for low-precision leaves) and stored back in the
    buffers' own dtypes.
    """
    mu = jax.tree.map(lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, exp_avg)
    nu = jax.tree.map(
        lambda g, v: (b2 * upcast(v) + (1.0 - b2) * jnp.square(upcast(g))).astype(v.dtype), updates, exp_avg_sq
    )
    return mu, nu


def _to_state_dtype(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.astype(state_dtype(x.dtype)), tree)


def with_state_dtype(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Run a transform whose state takes its inputs' dtypes (optax's ``scale_by_rms``, ``trace``, ...) in the
    :func:`jaxopt_timm.transforms.state_dtype` of each leaf.

    ``init`` sees the params, and ``update`` the updates (and params), cast to
    that dtype, so the state follows the package's policy (float32 for float16
    leaves, the leaf's own dtype otherwise); the output is cast back to each
    update's dtype. For float32 and bfloat16 leaves every cast is the identity
    and the wrapped transform's math is unchanged.
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return inner.init(_to_state_dtype(params))

    def update_fn(updates, state, params=None, **extra_args):
        out, new_state = inner.update(
            _to_state_dtype(updates), state, None if params is None else _to_state_dtype(params), **extra_args
        )
        return jax.tree.map(lambda o, g: o.astype(g.dtype), out, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class TorchMomentumState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    momentum_buffer: Any


def scale_by_torch_momentum(
    momentum: float = 0.9,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: Any = 0.0,
) -> optax.GradientTransformation:
    """torch.optim.SGD's momentum: ``b <- m*b + (1-d)*g`` (``b <- g`` on the first step); nesterov ``g + m*b``.

    ``weight_decay`` (a float or per-leaf tree) folds torch's L2 term in: ``g <- g + wd*p`` first, the same
    numbers as :func:`add_l2_weight_decay` in front. Folded, the Nesterov step reads ``g`` and ``p`` again
    after the buffer is written instead of sharing ``g + wd*p`` between the two: XLA:CPU (no multi-output
    fusion) would otherwise materialise that sum as a fresh full-size temporary every step.
    """

    def init_fn(params):
        return TorchMomentumState(count=jnp.zeros([], jnp.int32), momentum_buffer=tree_zeros_like(params))

    def decayed(updates, params):
        if not tree_any_nonzero(weight_decay):
            return updates
        if params is None:
            raise ValueError(
                'scale_by_torch_momentum with weight_decay needs params: call update(grads, state, params)'
            )
        return l2_decayed(updates, params, weight_decay)

    def update_fn(updates, state, params=None):
        if not isinstance(momentum, jax.core.Tracer) and momentum == 0:
            # torch skips the buffer; a traced momentum (inject_hyperparams) takes the general path, equal at 0
            return decayed(updates, params), state._replace(count=safe_increment(state.count))
        first = state.count == 0
        # torch's first step sets b <- g undamped; from init's zero buffer m*0 + g is that same g, so the
        # per-leaf select is only built for a nonzero (or traced) dampening (one compare+select per leaf less)
        undamped = not isinstance(dampening, jax.core.Tracer) and dampening == 0

        def buf_fn(g, b):
            g32 = upcast(g)
            later = momentum * upcast(b) + (g32 if undamped else (1.0 - dampening) * g32)
            return (later if undamped else jnp.where(first, g32, later)).astype(b.dtype)

        bufs = jax.tree.map(buf_fn, decayed(updates, params), state.momentum_buffer)
        if nesterov:
            if tree_any_nonzero(weight_decay):
                # the buffer is final before g + wd*p is recomputed for the direction (no shared temporary)
                bufs, updates, params = cpu_fence((bufs, updates, params))
            out = jax.tree.map(
                lambda g, b: (upcast(g) + momentum * upcast(b)).astype(g.dtype), decayed(updates, params), bufs
            )
        else:  # the buffer itself, in the update's dtype (a float16 leaf keeps a float32 buffer)
            out = jax.tree.map(lambda g, b: b.astype(g.dtype), updates, bufs)
        return out, TorchMomentumState(count=safe_increment(state.count), momentum_buffer=bufs)

    return optax.GradientTransformation(init_fn, update_fn)


def rms_clip_factor(grad: jax.Array, denom: jax.Array, clipping_threshold: float) -> jax.Array:
    """StableAdamW's per-tensor clip (Wortsman et al., 2023, arXiv:2304.13013): ``max(1, rms(grad / denom) / tau)``.

    timm multiplies the Adam denominator by this factor in place (its
    ``_rms_clip_denom_``), dividing the tensor's whole update by it.
    """
    ratio = (grad / denom).astype(jnp.float32)
    rms = jnp.sqrt(jnp.sum(ratio * ratio)) / jnp.sqrt(jnp.float32(max(grad.size, 1)))
    return jnp.maximum(rms / jnp.float32(clipping_threshold), jnp.float32(1.0))


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # optax's name (shadows tuple.count)
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
    *,
    nesterov: bool = False,
    clipping_threshold: Optional[float] = None,
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformation:
    """Adam's direction as torch computes it (Kingma & Ba, 2014, arXiv:1412.6980).

    ``m <- b1*m + (1-b1)*g``, ``v <- b2*v + (1-b2)*g^2``, ``vmax <- max(vmax, v)``
    (amsgrad), ``d = (m / bc1) / (sqrt(v or vmax) / sqrt(bc2) + eps)`` with
    ``bc_i = 1 - b_i^t``. Differs from ``optax.scale_by_amsgrad`` in keeping the
    maximum of the raw second moment, as torch does.

    ``nesterov`` uses timm NAdamW's look-ahead numerator ``m + (1-b1)(g - m)``;
    ``clipping_threshold`` divides each tensor's direction by
    :func:`rms_clip_factor` (StableAdamW, timm's ``clipping_threshold``).

    ``mu_dtype`` is the dtype of ``exp_avg``, ``nu_dtype`` that of
    ``exp_avg_sq`` and ``max_exp_avg_sq`` (default for both:
    :func:`jaxopt_timm.transforms.state_dtype` of each leaf, its own dtype or
    float32 for float16); the arithmetic is float32 or wider whatever they are.
    """
    nu_dtype = resolve_dtype('nu_dtype', nu_dtype)
    init_fn = moments_init(
        ScaleByAdamState,
        mu_dtype,
        nu_dtype,
        max_exp_avg_sq=lambda params: tree_zeros_like(params, nu_dtype) if amsgrad else None,
    )

    def update_fn(updates, state, params=None):
        del params
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        bc1 = one_minus_pow(b1, t)
        bc2_sqrt = jnp.sqrt(one_minus_pow(b2, t))
        # low-precision leaves are computed in float32 and stored back in their own dtype, as timm does
        mu = jax.tree.map(
            lambda g, m: (upcast(m) + (1.0 - b1) * (upcast(g) - upcast(m))).astype(m.dtype), updates, state.exp_avg
        )
        nu = jax.tree.map(
            lambda g, v: (b2 * upcast(v) + (1.0 - b2) * upcast(g) * upcast(g)).astype(v.dtype),
            updates,
            state.exp_avg_sq,
        )
        vmax = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, nu) if amsgrad else None
        denom_base = vmax if amsgrad else nu

        def direction(m, v, g):
            g32, m32 = upcast(g), upcast(m)
            numer = m32 + (1.0 - b1) * (g32 - m32) if nesterov else m32
            denom = jnp.sqrt(upcast(v)) / bc2_sqrt + eps
            if clipping_threshold is not None:
                denom = denom * rms_clip_factor(g32, denom, clipping_threshold).astype(denom.dtype)
            return ((numer / bc1) / denom).astype(g.dtype)

        out = jax.tree.map(direction, mu, denom_base, updates)
        return out, ScaleByAdamState(count=count, exp_avg=mu, exp_avg_sq=nu, max_exp_avg_sq=vmax)

    return optax.GradientTransformation(init_fn, update_fn)
