"""Reference modes: what makes timm's run comparable with ours, keyed by the record's ``parity_mode``.

Most optimizers are compared as they are. Two families are not comparable out
of the box, and each gets a mode that both sides run in (``as_is=True`` turns
the mode off):

* ``'newton_schulz_float32'`` (the muon family): timm hard-codes its
  Newton-Schulz iteration in bfloat16. Both sides run it in float32 (ours:
  ``ns_dtype='float32'``; timm: ``zeropower_via_newtonschulz`` patched with
  ``dtype=float32``), so the float32 tolerance applies. bf16 runs are compared
  with a bf16-derived bound in the tests.
* ``'kron_no_refit'`` (the kron family): the preconditioner refit draws random
  probes (torch's generator vs jax's). With a refit probability of 1e-9 on both
  sides neither refits in a short run, which stays deterministic and still
  checks momentum, bias correction, the RMS cap and every weight-decay form.
  timm's helpers run eagerly: timm wraps them in ``torch.compile`` when dynamo
  imports, which needs a C++ toolchain on CPU and computes the same numbers.

timm is imported only inside the context managers, never at import.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, Mapping, NamedTuple, Optional, Union

from jaxopt_timm.optim import get_optimizer_info

from ._loader import timm_optim_module

__all__ = ['PARITY_MODES', 'ParityMode', 'ReferenceMode', 'reference_mode', 'timm_ns_float32', 'kron_eager']


@contextlib.contextmanager
def timm_ns_float32():
    """timm's Muon with its Newton-Schulz iteration in float32 instead of its hard-coded bfloat16 (ours:
    ``ns_dtype='float32'``): then both sides do the same arithmetic and the float32 tolerance applies."""
    import torch

    mod = timm_optim_module('muon')
    original = mod.zeropower_via_newtonschulz
    mod.zeropower_via_newtonschulz = functools.partial(original, dtype=torch.float32)
    try:
        yield
    finally:
        mod.zeropower_via_newtonschulz = original


@contextlib.contextmanager
def kron_eager():
    """Run timm's Kron helpers eagerly: timm wraps them in ``torch.compile`` when dynamo imports, which needs a
    C++ toolchain on CPU (and would dominate a test's time); the eager path computes the same numbers."""
    mod = timm_optim_module('kron')
    original = mod.has_dynamo
    mod.has_dynamo = False
    try:
        yield
    finally:
        mod.has_dynamo = original


@dataclass(frozen=True)
class ParityMode:
    """One reference mode: ``common_kwargs`` go to both factories (defaults the caller's own arguments
    override), ``our_kwargs`` to ours only (matched by the change ``patch_timm`` makes to timm). ``family`` and
    ``description`` say which names use it and what it does (the parity command prints them)."""

    family: str
    description: str
    common_kwargs: Mapping[str, Any] = field(default_factory=dict)
    our_kwargs: Mapping[str, Any] = field(default_factory=dict)
    patch_timm: Callable[[], ContextManager[Any]] = contextlib.nullcontext


PARITY_MODES: Dict[str, ParityMode] = {
    'newton_schulz_float32': ParityMode(
        'muon*',
        'Newton-Schulz in float32 on both sides (timm hard-codes bf16)',
        our_kwargs={'ns_dtype': 'float32'},
        patch_timm=timm_ns_float32,
    ),
    'kron_no_refit': ParityMode(
        'kron*',
        'preconditioner_update_probability=1e-9 on both sides (random probes differ)',
        common_kwargs={'preconditioner_update_probability': 1e-9},
        patch_timm=kron_eager,
    ),
    'soap_full_rank': ParityMode(
        'soap',
        'max_precondition_dim=8 on both sides: the eigenbasis of a rank-deficient statistic is not unique',
        common_kwargs={'max_precondition_dim': 8},
    ),
    'prodigy_d0': ParityMode(
        'prodigy',
        "d0=1e-2 on both sides: from the reference's 1e-6 the step size needs more than a short run "
        "at a small lr to move the params (the comparison is exact either way)",
        common_kwargs={'d0': 1e-2},
    ),
}


class ReferenceMode(NamedTuple):
    """What :func:`reference_mode` returns: unpack as ``timm_kwargs, our_kwargs, context``."""

    timm_kwargs: Dict[str, Any]  # the arguments for timm's factory (and ours: both sides get them)
    our_kwargs: Dict[str, Any]  # extra arguments for our factory only
    context: ContextManager[Any]  # patches timm for the duration of the run


def _mode_of(name_or_info: Union[str, Any]) -> Optional[str]:
    if isinstance(name_or_info, str):
        return get_optimizer_info(name_or_info).parity_mode
    mode = getattr(name_or_info, 'parity_mode', Ellipsis)
    if mode is Ellipsis:
        raise TypeError(
            f'reference_mode: name_or_info must be an optimizer name or an OptimInfo record, got '
            f'{type(name_or_info).__name__}'
        )
    return mode


def reference_mode(
    name_or_info: Union[str, Any], kwargs: Optional[Mapping[str, Any]] = None, as_is: bool = False
) -> ReferenceMode:
    """``(timm kwargs, our extra kwargs, context)`` that make timm's run of ``name_or_info`` comparable.

    ``kwargs``: the caller's arguments for both factories; the mode's own arguments are defaults they override.
    ``as_is``: no mode (``kwargs`` unchanged, no extra argument, no patch). Our factory takes the timm kwargs
    plus the extra ones.
    """
    kwargs = dict(kwargs or {})
    mode = None if as_is else _mode_of(name_or_info)
    if mode is None:
        return ReferenceMode(kwargs, {}, contextlib.nullcontext())
    if mode not in PARITY_MODES:
        raise ValueError(f'reference_mode: unknown parity_mode {mode!r}; expected one of {sorted(PARITY_MODES)}')
    spec = PARITY_MODES[mode]
    return ReferenceMode({**spec.common_kwargs, **kwargs}, dict(spec.our_kwargs), spec.patch_timm())
