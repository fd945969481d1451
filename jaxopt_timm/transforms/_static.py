"""Checks for hyperparameters that must stay static under ``optax.inject_hyperparams``.

``inject_hyperparams`` traces every numeric argument by default. Most are fine traced (lrs, betas, decay),
but some decide state shapes (Adafactor's factoring threshold, Kron's factor structure), PRNG keys or the
step's structure (AdaHessian's ``update_each``): those must be Python values when the optimizer is built,
and a traced one is rejected with a message naming the fix instead of failing deep inside ``init``.
"""
from __future__ import annotations

from typing import Any

import jax

__all__ = ['require_static']


def require_static(name: str, value: Any, alias: str, decides: str = 'state shapes') -> None:
    """Raise ``ValueError`` if ``value`` (argument ``name`` of ``alias``) is traced; ``decides`` says why it matters."""
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            f'Invalid {name}: a traced value; it decides {decides}, so pass it as a static argument '
            f"(e.g. optax.inject_hyperparams({alias}, static_args=('{name}',)))")
