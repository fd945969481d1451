"""XLA compile options that make an optimizer step cost only its memory traffic on the CPU backend."""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp

__all__ = ['compiler_options']

_CPU = {
    # Copy insertion proves, region by region, that the step's loop reading the old state runs before the
    # loop overwriting it in place (donated state), instead of copying the old state first. Without it,
    # XLA:CPU copies Lion's momentum, AdaBelief's variance, Adan's and ADOPT's moments every step (a full
    # extra read + write into a freshly faulted buffer): see benchmarks/README.md.
    'xla_cpu_copy_insertion_use_region_analysis': True,
}


def compiler_options(backend: Optional[str] = None) -> Dict[str, Any]:
    """Options for ``jax.jit(train_step, donate_argnums=..., compiler_options=jt.compiler_options())``.

    A dict for the CPU backend (``backend`` defaults to ``jax.default_backend()``); empty for GPU/TPU,
    whose fusion already writes every output of a leaf in one pass. The numbers do not change: only
    the copies XLA:CPU adds around donated state are removed.

    The region analysis costs compile time that grows faster than the number of leaves: on 2,000
    leaves of 1,000 floats Adan's per-leaf step compiled in 111 s with these options and 25 s without
    (500 leaves: copy insertion 2.0 s vs 0.5 s). On such trees run the optimizer under
    ``jt.transforms.packed`` / ``stacked`` (Adan packed: 3.4 s with, 3.7 s without) or drop the options.

    Example:
        >>> import jax, jaxopt_timm as jt
        >>> opts = jt.compiler_options('cpu')
        >>> sorted(opts)
        ['xla_cpu_copy_insertion_use_region_analysis']
    """
    backend = backend or jax.default_backend()
    if backend != 'cpu':
        return {}
    return {k: v for k, v in _CPU.items() if _cpu_accepts(k, v)}


@functools.lru_cache(maxsize=None)
def _cpu_accepts(key: str, value: Any) -> bool:
    """Whether this jaxlib's CPU compiler knows the option (older and newer XLAs rename them): one tiny compile."""
    try:
        x = jax.device_put(jnp.zeros(2), jax.devices('cpu')[0])  # the computation follows its argument to the CPU
        jax.jit(lambda y: y + 1).lower(x).compile(compiler_options={key: value})
    except Exception:  # noqa: BLE001 - XLA reports an unknown option as INVALID_ARGUMENT (a RuntimeError subclass)
        return False
    return True
