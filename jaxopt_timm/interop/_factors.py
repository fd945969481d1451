"""Per-dimension preconditioner factors (Kron's ``Q``, SOAP's ``GG`` and ``Q``) across frameworks.

The reference keeps, per param, a list with one entry per torch dim: a factor
(a matrix, or a vector for a diagonal dim) or an empty list where that dim is
not preconditioned. Here they are a tuple per leaf (in tree order) holding
only the factors, in torch dim order whatever the leaf's layout (the
layout-aware optimizers read a Flax kernel through its torch twin). A factor
belongs to the first unclaimed dim of its size, walking the torch dims in
order, which is how both sides build them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from jaxopt_timm.optim import named_leaves
from jaxopt_timm.transforms import torch_axes

__all__ = ['factor_dims', 'factors_from_reference', 'factors_to_reference', 'indexed_values']


def _torch_shape(param_shape: Sequence[int], layout: str) -> Tuple[int, ...]:
    return tuple(param_shape[a] for a in torch_axes(len(param_shape), layout))


def factor_dims(torch_shape: Sequence[int], factor_shapes: Sequence[Tuple[int, ...]]) -> Dict[int, int]:
    """``{torch dim: index of its factor}`` for a param of ``torch_shape`` holding factors of these shapes."""
    out: Dict[int, int] = {}
    j = 0
    for dim, size in enumerate(torch_shape):
        if j < len(factor_shapes) and tuple(factor_shapes[j]) in ((size,), (size, size)):
            out[dim] = j
            j += 1
    if j != len(factor_shapes):
        raise ValueError(
            f'factors of shapes {list(factor_shapes)} do not fit a param of torch shape {tuple(torch_shape)}'
        )
    return out


def factors_from_reference(
    theirs: Sequence[Any], param_shape: Sequence[int], layout: str, factor_shapes: Sequence[Tuple[int, ...]]
) -> List[np.ndarray]:
    """Our factors (in order) from the reference's per-torch-dim list."""
    torch_shape = _torch_shape(param_shape, layout)
    if len(theirs) != max(len(torch_shape), 1):
        raise ValueError(f'a list of {len(theirs)} entries for a param of {len(torch_shape)} dims')
    dims = factor_dims(torch_shape, factor_shapes)
    extra = [k for k, v in enumerate(theirs) if hasattr(v, 'shape') and k not in dims]
    if extra:
        raise ValueError(f'factors for dims {extra}, which are not preconditioned here')
    out: List[Any] = [None] * len(factor_shapes)
    for dim, j in dims.items():
        value = np.asarray(theirs[dim], np.float64)
        if value.shape != tuple(factor_shapes[j]):
            raise ValueError(f'an entry of shape {value.shape} where {tuple(factor_shapes[j])} is expected')
        out[j] = value
    return out


def factors_to_reference(
    factors: Sequence[Any], param_shape: Sequence[int], layout: str, tensor: Callable[[np.ndarray], Any]
) -> List[Any]:
    """The reference's per-torch-dim list from our factors (``[]`` for a dim without one)."""
    torch_shape = _torch_shape(param_shape, layout)
    dims = factor_dims(torch_shape, [np.shape(f) for f in factors])
    return [tensor(np.asarray(factors[dims[k]], np.float32)) if k in dims else [] for k in range(len(torch_shape))] or [
        []
    ]


def indexed_values(slots, per_param, used, spec, params, layout: str, opt: str) -> Dict[Any, Any]:
    """``{slot path: value}`` for the slots of our per-leaf factor tuples (fields ``spec.indexed`` names), from the
    reference's per-dim lists in ``per_param``; marks the keys read in ``used``."""
    fields = {f: k for k, f in spec.indexed.items()}
    leaves = named_leaves(params)
    by_leaf: Dict[Tuple[str, int], List[Any]] = {}
    for s in slots:
        if s.param is None and s.field in fields:
            by_leaf.setdefault((s.field, s.path[-2].idx), []).append(s)
    claimed = {(f, leaves[i][0]) for f, i in by_leaf}
    for name, theirs in per_param.items():  # a leaf without factors here: the reference's list must be empty too
        for key, field in spec.indexed.items():
            if key in theirs and (field, name) not in claimed:
                if any(hasattr(v, 'shape') for v in theirs[key]):
                    raise ValueError(f"torch_state_dict's {key!r} of {name!r} holds factors {opt!r} here has none of")
                used[name].add(key)
    out: Dict[Any, Any] = {}
    for (field, i), group in by_leaf.items():
        name, leaf = leaves[i]
        theirs = per_param.get(name, {})
        if fields[field] not in theirs:
            if theirs:
                raise ValueError(f"torch_state_dict's state of {name!r} lacks {fields[field]!r}, which {opt!r} needs")
            continue
        used[name].add(fields[field])
        group = sorted(group, key=lambda s: s.path[-1].idx)
        try:
            values = factors_from_reference(
                theirs[fields[field]], np.shape(leaf), layout, [np.shape(s.leaf) for s in group]
            )
        except ValueError as err:
            raise ValueError(f"torch_state_dict's {fields[field]!r} of {name!r}: {err}") from None
        out.update({s.path: v for s, v in zip(group, values)})
    return out
