"""Checks for hyperparameters that must stay static under ``optax.inject_hyperparams``.

``inject_hyperparams`` traces every numeric argument by default. Most are fine traced (lrs, betas, decay),
but some decide state shapes (Adafactor's factoring threshold, Kron's factor structure), PRNG keys or the
step's structure (AdaHessian's ``update_each``): those must be Python values when the optimizer is built,
and a traced one is rejected with a message naming the fix instead of failing deep inside ``init``.
A concrete JAX array is rejected too: ``inject_hyperparams`` passes its numbers to the alias as arrays at
``init``, so the refusal comes at ``init`` rather than at the first (jitted) ``update``.
"""

from __future__ import annotations

from typing import Any

import jax

__all__ = ['require_static']


def require_static(alias: str, decides: str, **values: Any) -> None:
    """Raise ``ValueError`` naming every one of ``values`` (arguments of ``alias``) that is a JAX array (traced,
    or as ``inject_hyperparams`` passes it), with the ``static_args`` that fixes them all; ``decides`` says why
    they matter."""
    arrays = tuple(name for name, value in values.items() if isinstance(value, jax.Array))
    if arrays:
        raise ValueError(
            f'Invalid {", ".join(arrays)}: a JAX array (traced by optax.inject_hyperparams); '
            f'{"it decides" if len(arrays) == 1 else "they decide"} {decides}, so pass '
            f'{"it" if len(arrays) == 1 else "them"} as Python numbers (static arguments: '
            f'optax.inject_hyperparams({alias}, static_args={arrays!r}))'
        )
