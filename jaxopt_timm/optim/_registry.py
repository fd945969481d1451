"""The optimizer registry: frozen records binding a timm name to an alias and its defaults.

As in timm, a variant is a name bound to defaults (``lambc`` is Lamb with
``trust_clip=True``). Each optimizer module owns its records in a module-level
``OPTIMIZERS`` tuple (and optional ``ALIASES`` dict); :mod:`jaxopt_timm.optim`
registers them at import.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ['OptimInfo', 'register', 'register_alias', 'list_optimizers', 'get_optimizer_info']


@dataclass(frozen=True)
class OptimInfo:
    """Immutable description of a registered optimizer.

    Attributes:
        name: the timm name (lower case).
        alias: the ``jaxopt_timm.optim`` function building the transformation;
            its arguments are timm's, with ``lr`` spelt ``learning_rate``.
        description: timm's one-line description.
        has_eps / has_momentum / has_betas / num_betas: which common arguments
            the factory forwards (timm drops ``eps``/``betas`` where absent and
            defaults ``momentum`` to 0.9 where present).
        second_order: the update needs ``hvp_fn`` as an extra argument.
        defaults: keyword arguments bound by this name (e.g. ``trust_clip``).
        timm_class: the timm/torch class name this ports, for traceability.
    """
    name: str
    alias: Callable[..., Any]
    description: str = ''
    has_eps: bool = True
    has_momentum: bool = False
    has_betas: bool = False
    num_betas: int = 2
    second_order: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    timm_class: str = ''

    def __post_init__(self):
        object.__setattr__(self, 'defaults', MappingProxyType(dict(self.defaults or {})))


_REGISTRY: Dict[str, OptimInfo] = {}


def register(*infos: OptimInfo) -> None:
    for info in infos:
        name = info.name.lower()
        if name in _REGISTRY:
            raise ValueError(f'Optimizer {name!r} is already registered')
        _REGISTRY[name] = info


def register_alias(alias: str, target: str) -> None:
    target = target.lower()
    if target not in _REGISTRY:
        raise KeyError(f'Cannot alias {alias!r} to unregistered optimizer {target!r}')
    _REGISTRY[alias.lower()] = _REGISTRY[target]


def list_optimizers(
        filter: Union[str, Sequence[str]] = '',
        exclude_filters: Optional[Sequence[str]] = (),
        with_description: bool = False,
) -> List[Union[str, Tuple[str, str]]]:
    """Registered names, sorted, filtered with fnmatch wildcards exactly like timm's ``list_optimizers``."""
    names = sorted(_REGISTRY)
    if filter:
        filters = [filter] if isinstance(filter, str) else list(filter)
        names = sorted({n for n in names for f in filters if fnmatch(n, f)})
    for pattern in exclude_filters or ():
        names = [n for n in names if not fnmatch(n, pattern)]
    if with_description:
        return [(n, _REGISTRY[n].description) for n in names]
    return names


def get_optimizer_info(name: str) -> OptimInfo:
    """The record for ``name``; an unknown name raises ``ValueError`` listing the closest valid names."""
    if not isinstance(name, str):
        raise ValueError(f'Invalid opt: {name!r}, expected an optimizer name (see list_optimizers())')
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f' Closest valid names: {", ".join(close)}.' if close else ''
        raise ValueError(
            f'Invalid opt: unknown optimizer {name!r}.{hint} See jaxopt_timm.list_optimizers() for all '
            f'{len(_REGISTRY)} names.')
    return _REGISTRY[key]
