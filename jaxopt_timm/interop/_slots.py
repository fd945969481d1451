"""Our optimizer state seen the way a torch ``state_dict()`` sees it: per param, a dict of named buffers.

A state leaf that belongs to one param sits at a key path ending with that
param's path, right after the name of the state field holding it
(``[2].exp_avg['fc']['weight']``): those are the per-param slots. Every other
leaf is global: update counts, PRNG keys, scalars shared by all params, or
per-leaf-index structures such as Kron's factor lists.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jax
import numpy as np

from jaxopt_timm.optim import named_leaves
from jaxopt_timm.transforms import from_torch_layout, to_torch_layout, torch_axes

__all__ = [
    'Slot',
    'state_slots',
    'global_values',
    'to_reference_layout',
    'from_reference_layout',
    'COUNT_FIELDS',
    'INIT_FIELDS',
]

COUNT_FIELDS = ('count',)  # update counters: every one equals the number of updates made
# fields whose initial value is right after any number of reference steps: PRNG keys (the reference's draws are
# torch's own) and optax.apply_if_finite's counters of skipped steps (the reference has no such guard)
INIT_FIELDS = ('key', 'notfinite_count', 'last_finite', 'total_notfinite')


class Slot(NamedTuple):
    path: Tuple[Any, ...]  # the leaf's key path in the state
    leaf: Any  # the leaf (an array)
    param: Optional[str]  # the param it belongs to (its leaf name), or None for a global leaf
    field: Optional[str]  # the NamedTuple field naming it (the nearest one for a global leaf)


def _field(path: Tuple[Any, ...]) -> Optional[str]:
    for key in reversed(path):
        if isinstance(key, jax.tree_util.GetAttrKey):
            return key.name
    return None


def state_slots(state: Any, params: Any) -> List[Slot]:
    """Every leaf of ``state``, with the param (leaf name of ``params``) and the field it belongs to."""
    names = [n for n, _ in named_leaves(params)]
    paths = [tuple(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    by_path: Dict[Tuple[Any, ...], str] = dict(zip(paths, names))
    lengths = sorted({len(p) for p in paths}, reverse=True)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        path = tuple(path)
        param = None
        for n in lengths:  # the longest param path that ends the leaf's path right after a state field
            if len(path) > n and path[-n:] in by_path and isinstance(path[-n - 1], jax.tree_util.GetAttrKey):
                param = by_path[path[-n:]]
                break
        out.append(Slot(path, leaf, param, _field(path)))
    return out


def to_reference_layout(
    value: Any, param_ndim: int, layout: str, shape: Optional[Tuple[int, ...]] = None
) -> np.ndarray:
    """A slot's value as the reference stores it: a param-rank array in torch dim order (reshaped to ``shape``
    when the reference drops a reduced axis)."""
    value = np.asarray(value)
    if value.ndim == param_ndim:
        value = np.asarray(to_torch_layout(value, layout))
    return value if shape is None else value.reshape(shape)


def from_reference_layout(value: np.ndarray, like: Any, param_ndim: int, layout: str) -> np.ndarray:
    """The reference's ``value`` in the layout and shape of our slot ``like``: the same dims in torch order
    (a reduced axis, kept with size 1 here, may be absent there)."""
    shape = tuple(np.shape(like))
    transposed = len(shape) == param_ndim and layout != 'torch'
    torch_shape = tuple(shape[a] for a in torch_axes(param_ndim, layout)) if transposed else shape
    if [d for d in value.shape if d != 1] != [d for d in torch_shape if d != 1]:
        raise ValueError(f'shape {tuple(value.shape)} does not fit ours {torch_shape} (in torch dim order)')
    value = value.reshape(torch_shape)
    return np.asarray(from_torch_layout(value, layout)) if transposed else value


def global_values(groups, per_param, spec) -> Dict[str, Any]:
    """Our global fields' values: from a per-param key every param repeats, or a key every group repeats."""
    for key, want in spec.group_required.items():
        if any(g.get(key, want) != want for g in groups):
            raise ValueError(
                f'torch_state_dict has {key}={not want!r}; save it with {key}={want!r} '
                "(Schedule-Free: call optimizer.train() before state_dict())"
            )
    known = {}
    for key, field in spec.shared.items():
        values = [s[key] for s in per_param.values() if key in s]
        if values:
            known[field] = values[0]
    for key, field in spec.group.items():
        distinct = {float(np.asarray(g[key])) for g in groups if key in g}
        if len(distinct) > 1:
            raise ValueError(
                f"torch_state_dict's param groups differ in {key} ({sorted(distinct)}); "
                'jaxopt_timm keeps one value for all'
            )
        if distinct:
            known[field] = distinct.pop()
    return known
