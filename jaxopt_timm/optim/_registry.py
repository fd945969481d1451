"""The optimizer registry: frozen records binding a name to an alias, its defaults and every fact about it.

As in timm, a variant is a name bound to defaults (``lambc`` is Lamb with
``trust_clip=True``). Each optimizer module owns its records in a module-level
``OPTIMIZERS`` tuple (and optional ``ALIASES`` dict); :mod:`jaxopt_timm.optim`
finds the modules and registers them at import. Whatever code needs to know
about one optimizer (the factory's packing and global-clip handling, the
command line's default lr, the parity harness's reference mode, the
benchmark's rows and optax counterpart) reads it from the record, so adding
an optimizer is one module and its records.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field
from fnmatch import fnmatch
from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, List, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

__all__ = ['OptimInfo', 'register', 'register_alias', 'list_optimizers', 'get_optimizer_info']

LOOKAHEAD_PREFIX = 'lookahead_'
PACKING_MODES = ('packed', 'stacked')


@dataclass(frozen=True)
class OptimInfo:
    """Immutable description of a registered optimizer.

    Attributes:
        name: the registered name (lower case; timm's for timm's optimizers).
        alias: the ``jaxopt_timm.optim`` function building the transformation;
            its arguments are the reference's, with ``lr`` spelt ``learning_rate``.
        description: the reference's one-line description.
        has_eps / has_momentum / has_betas / num_betas: which common arguments
            the factory forwards (timm drops ``eps``/``betas`` where absent and
            defaults ``momentum`` to 0.9 where present).
        second_order: the update needs ``hvp_fn`` as an extra argument.
        defaults: keyword arguments bound by this name (e.g. ``trust_clip``).
        timm_class: the timm/torch class name this ports, for traceability.
        source: the reference the port follows (``'timm'`` for timm's names).
        packing: how ``create_optimizer_v2(..., pack_leaves=n)`` runs it: ``'packed'``
            (elementwise: exact over leaves concatenated into flat buffers), ``'stacked'``
            (per-tensor statistics: exact under ``vmap`` over same-shape stacks) or ``None``
            (no exact packed form, e.g. per-leaf random draws or an ``hvp_fn``).
        global_clip: the argument naming a gradient clip that timm computes over every
            parameter at once (Lamb's ``max_grad_norm``); the factory keeps it global.
        fallback: the argument taking a per-leaf tree that routes leaves to a fallback
            optimizer (Muon's ``use_fallback``); the factory fills it from ``fallback_list``.
        parity_mode: how the parity harness makes timm's run comparable
            (see :mod:`jaxopt_timm.parity`); ``None``: as is.
        default_lr: the command line's lr when none is given (the digits job, batch 64).
        shape_aware: its math reads tensor shapes (factoring, orthogonalization, ...).
        benchmarked: a row of the step benchmark's default suite.
        optax_equivalent: ``(lr, weight_decay) -> optax transformation``, the closest optax
            alias (the benchmark's comparison), or ``None``.
        torch_fused: torch has a fused CPU kernel for the reference (``fused=True``).
        lookahead: the record of a ``lookahead_<name>``: the factory wraps the optimizer in
            :func:`jaxopt_timm.optim.lookahead`.
        state_dtypes: the state dtype options the alias takes (``mu_dtype``, ``nu_dtype``, ...) mapped to the
            names of the state fields (NamedTuple fields, nested states included) each one sets; a field that
            exists only under some arguments is listed too (adamw's ``max_exp_avg_sq``, with ``amsgrad``).
            Empty: the state follows the default policy only (the params' dtype, float32 for float16 params).
        complex_params: the reference steps a complex param as the pair of reals ``torch.view_as_real`` gives
            (found by running it on complex64 params and on their real views); ours then does the same, and
            a name without it refuses complex leaves at ``init`` (see :mod:`jaxopt_timm.optim._guard`).
        base_argument: the record wraps another registered optimizer, named by this argument of
            :func:`create_optimizer_v2` (SAM's ``base``): the factory builds that one (with the param groups and
            every argument the wrapper does not take) and passes it as the alias's first argument.
        grad_fn: the update needs ``grad_fn`` (``params -> grads``) as an extra argument (SAM).
        eval_params: ``(opt_state, params) -> params``, the point to evaluate at when it is not the params
            (Schedule-Free's :func:`jaxopt_timm.optim.schedule_free_eval_params`); ``None``: the params.
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
    source: str = 'timm'
    packing: Optional[str] = None
    global_clip: Optional[str] = None
    fallback: Optional[str] = None
    parity_mode: Optional[str] = None
    default_lr: float = 1e-3
    shape_aware: bool = False
    benchmarked: bool = False
    optax_equivalent: Optional[Callable[[float, float], Any]] = None
    torch_fused: bool = False
    lookahead: bool = False
    state_dtypes: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    complex_params: bool = False
    base_argument: Optional[str] = None
    grad_fn: bool = False
    eval_params: Optional[Callable[[Any, Any], Any]] = None

    def __post_init__(self):
        object.__setattr__(self, 'defaults', MappingProxyType(dict(self.defaults or {})))
        state_dtypes = dict(self.state_dtypes or {})
        for option, fields in state_dtypes.items():
            if not self.accepts(option):
                raise ValueError(
                    f'{self.name!r}: state dtype option {option!r} is not an argument of {self.alias.__name__}'
                )
            if isinstance(fields, str) or not fields or not all(isinstance(f, str) for f in fields):
                raise ValueError(
                    f'{self.name!r}: state_dtypes[{option!r}] must be a non-empty tuple of state '
                    f'field names, got {fields!r}'
                )
        object.__setattr__(self, 'state_dtypes', MappingProxyType({k: tuple(v) for k, v in state_dtypes.items()}))
        if self.packing not in (None,) + PACKING_MODES:
            raise ValueError(
                f'Invalid packing: {self.packing!r} for {self.name!r}, expected one of {PACKING_MODES} or None'
            )
        for arg in (self.global_clip, self.fallback):
            if arg is not None and arg not in self.arguments:
                raise ValueError(f'{self.name!r}: {arg!r} is not an argument of {self.alias.__name__}')

    @property
    def arguments(self) -> FrozenSet[str]:
        """The keyword arguments the alias accepts."""
        return _arguments(self.alias)

    def accepts(self, argument: str) -> bool:
        return argument in self.arguments

    @property
    def layout_aware(self) -> bool:
        """Its shape rules read the layout (takes ``layout='torch' | 'flax'``)."""
        return self.accepts('layout')

    def packing_for(self, caution: Optional[bool] = None) -> Optional[str]:
        """The packing mode with ``caution`` (None: the record's default): a cautious update normalises its
        mask by the mask's mean per tensor, so an elementwise optimizer becomes 'stacked'."""
        cautious = self.defaults.get('caution', False) if caution is None else caution
        return 'stacked' if self.packing == 'packed' and cautious else self.packing


_SIGNATURES: Dict[Callable[..., Any], FrozenSet[str]] = {}


def _arguments(fn: Callable[..., Any]) -> FrozenSet[str]:
    if fn not in _SIGNATURES:
        _SIGNATURES[fn] = frozenset(inspect.signature(fn).parameters)
    return _SIGNATURES[fn]


_REGISTRY: Dict[str, OptimInfo] = {}


def register(*infos: OptimInfo) -> None:
    for info in infos:
        name = info.name.lower()
        if name in _REGISTRY:
            raise ValueError(f'Optimizer {name!r} is already registered')
        if name.startswith(LOOKAHEAD_PREFIX):
            raise ValueError(f'Optimizer {name!r}: the {LOOKAHEAD_PREFIX!r} prefix is derived, not registered')
        _REGISTRY[name] = info


def register_alias(alias: str, target: str) -> None:
    target = target.lower()
    if target not in _REGISTRY:
        raise KeyError(f'Cannot alias {alias!r} to unregistered optimizer {target!r}')
    _REGISTRY[alias.lower()] = _REGISTRY[target]


# The return type follows with_description: names, or (name, description) pairs.
@overload
def list_optimizers(
    filter: Union[str, Sequence[str]] = '',
    exclude_filters: Optional[Sequence[str]] = (),
    with_description: Literal[False] = False,
) -> List[str]: ...
@overload
def list_optimizers(
    filter: Union[str, Sequence[str]] = '',
    exclude_filters: Optional[Sequence[str]] = (),
    *,
    with_description: Literal[True],
) -> List[Tuple[str, str]]: ...
@overload
def list_optimizers(
    filter: Union[str, Sequence[str]] = '',
    exclude_filters: Optional[Sequence[str]] = (),
    with_description: bool = False,
) -> Union[List[str], List[Tuple[str, str]]]: ...
def list_optimizers(
    filter: Union[str, Sequence[str]] = '',
    exclude_filters: Optional[Sequence[str]] = (),
    with_description: bool = False,
) -> Union[List[str], List[Tuple[str, str]]]:
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
    """The record for ``name``; an unknown name raises ``ValueError`` listing the closest valid names.

    ``'lookahead_<name>'`` answers with ``<name>``'s record renamed and marked ``lookahead``.
    """
    if not isinstance(name, str):
        raise ValueError(f'Invalid opt: {name!r}, expected an optimizer name (see list_optimizers())')
    key = name.lower()
    if key.startswith(LOOKAHEAD_PREFIX):
        base = get_optimizer_info(key[len(LOOKAHEAD_PREFIX) :])
        return dataclasses.replace(base, name=key, lookahead=True, description=f'Lookahead {base.description}')
    if key not in _REGISTRY:
        if '_' in key:
            raise ValueError(f"Invalid opt: {name!r}, the only supported prefix is {LOOKAHEAD_PREFIX!r}")
        close = difflib.get_close_matches(key, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f' Closest valid names: {", ".join(close)}.' if close else ''
        raise ValueError(
            f'Invalid opt: unknown optimizer {name!r}.{hint} See jaxopt_timm.list_optimizers() for all '
            f'{len(_REGISTRY)} names.'
        )
    return _REGISTRY[key]
