"""Non-finite gradients: what every optimizer does with them, and the factory's ``skip_nonfinite`` option.

timm's optimizers, like torch's, apply whatever gradient they are given. A
NaN or Inf in one element reaches the params (at once, or on the next step
for ADOPT, whose first step only seeds its second moment), and every
optimizer with state keeps it there: Adam-style moments, Adafactor's factored
statistics, Kron's preconditioner factors, Lion's and SGD's momentum all turn
NaN, so every later step is NaN even on finite gradients. Sign-based
directions (Lion, Signum-like variants) are no exception: the sign of NaN is
NaN. Only stateless SGD (no momentum, no decay state) recovers its next
*update*, and its params are NaN already. Every registered name behaves so
here as in timm (``tests/test_nonfinite.py`` checks each one): a timm user
relies on AMP's ``GradScaler`` to skip such steps.

``create_optimizer_v2(..., skip_nonfinite=True)`` is that guard: a step whose
gradients are not all finite gives zero updates and leaves the optimizer state
untouched (counters included, so the next finite step is exactly the step an
uninterrupted run would have taken), and is counted. It is optax's
:func:`optax.apply_if_finite` with no limit on consecutive skips (optax's
``max_consecutive_errors``: use that wrapper directly for a run that should
fail after N bad steps in a row). :func:`skipped_steps` reads the count.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ['skip_nonfinite', 'skipped_steps']

_NO_LIMIT = int(jnp.iinfo(jnp.int32).max)


def skip_nonfinite(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``tx`` skipping (zero updates, state kept) and counting every step with a non-finite gradient.

    Example:
        >>> import jax.numpy as jnp, jaxopt_timm as jt
        >>> params = {'w': jnp.ones(3)}
        >>> tx = jt.optim.skip_nonfinite(jt.optim.adamw(1e-3))
        >>> state = tx.init(params)
        >>> updates, state = tx.update({'w': jnp.array([1.0, jnp.nan, 0.0])}, state, params)
        >>> int(jt.optim.skipped_steps(state)), float(abs(updates['w']).max())
        (1, 0.0)
    """
    return optax.with_extra_args_support(optax.apply_if_finite(tx, max_consecutive_errors=_NO_LIMIT))


def skipped_steps(opt_state: Any) -> jax.Array:
    """The number of steps skipped for non-finite gradients (int32; 0 when the state has no such guard).

    Reads the ``total_notfinite`` count of the :func:`optax.apply_if_finite` state in ``opt_state`` (the
    factory's ``skip_nonfinite=True``, or the wrapper applied by hand).
    """
    found = optax.tree_utils.tree_get(opt_state, 'total_notfinite', default=None)
    return jnp.zeros([], jnp.int32) if found is None else jnp.asarray(found, jnp.int32)
