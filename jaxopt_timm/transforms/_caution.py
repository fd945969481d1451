"""The cautious mask of 'Cautious Optimizers' (Liang et al., 2024, arXiv:2411.16085).

timm zeroes the update components whose sign disagrees with the gradient and
rescales the rest by the kept fraction: ``u * m / max(mean(m), 1e-3)`` with
``m = (u * g > 0)``, per tensor. optax has no equivalent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ._tree import compute_dtype

__all__ = ['caution_mask', 'apply_caution', 'cautious']


def caution_mask(update: jax.Array, grad: jax.Array) -> jax.Array:
    """timm's per-tensor mask ``m / max(mean(m), 1e-3)`` with ``m = (update * grad > 0)``, in ``update``'s dtype.

    When the two dtypes differ (a float32 state buffer against a bf16
    gradient) the sign test runs in the wider one, as strict promotion needs.
    """
    if update.dtype != grad.dtype:
        wide = max(compute_dtype(update.dtype), compute_dtype(grad.dtype), key=lambda d: d.itemsize)
        mask = (update.astype(wide) * grad.astype(wide) > 0).astype(update.dtype)
    else:
        mask = (update * grad > 0).astype(update.dtype)
    if mask.size == 0:
        return mask
    return mask / jnp.maximum(jnp.mean(mask), jnp.asarray(1e-3, mask.dtype))


def apply_caution(updates, grads):
    """Tree version: each update leaf times its caution mask against the matching gradient leaf."""
    return jax.tree.map(
        lambda u, g: None if u is None else u * caution_mask(u, g), updates, grads, is_leaf=lambda x: x is None
    )


def cautious(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap a *direction* transform (before any lr scaling) so its output is masked by caution.

    The mask compares the wrapped transform's output with the gradients it
    received, which is what timm compares when caution is applied to the
    Adam-style direction.
    """
    inner = optax.with_extra_args_support(inner)

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        return apply_caution(new_updates, updates), new_state

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)
