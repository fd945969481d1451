"""Optimizer state across frameworks: a timm optimizer's ``state_dict()`` to this package's state, and back.

``from_timm`` fills the state of ``create_optimizer_v2(params, opt, **kw)``
from the state_dict that timm's optimizer for the same name and arguments
made; ``to_timm`` writes one that timm's optimizer loads. The param behind
each state_dict index follows from the model's ``named_parameters()`` names
and the factory's grouping (:mod:`._order`); each buffer goes to the state
field of the same name (the reference class's differences: :mod:`._specs`),
transposed between torch and Flax layouts; every update counter takes the
step count. Anything that cannot be placed raises, naming it: a state_dict
of another optimizer never becomes a plausible wrong state.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_timm.optim import create_optimizer_v2, get_optimizer_info, named_leaves
from jaxopt_timm.transforms import LAYOUTS, torch_axes

from ._factors import factors_to_reference, indexed_values
from ._order import timm_param_groups
from ._slots import (
    COUNT_FIELDS,
    INIT_FIELDS,
    Slot,
    from_reference_layout,
    global_values,
    state_slots,
    to_reference_layout,
)
from ._specs import TimmState, timm_state_of

__all__ = ['from_timm', 'to_timm', 'timm_param_order']


def _setup(params: Any, names: Sequence[str], opt: str, layout: str, kwargs: Dict[str, Any]):
    if layout not in LAYOUTS:
        raise ValueError(f'Invalid layout: {layout!r}, expected one of {LAYOUTS}')
    info = get_optimizer_info(opt)
    spec = timm_state_of(info.timm_class, info.lookahead)
    for reason in (
        spec.unsupported,
        spec.refuse(kwargs) if spec.refuse else '',
        'a packed state is laid out per buffer, not per param' if kwargs.get('pack_leaves') else '',
    ):
        if reason:
            raise ValueError(
                f'{opt!r} ({info.timm_class}): its state cannot cross between timm and jaxopt_timm: {reason}'
            )
    if info.accepts('layout'):
        kwargs.setdefault('layout', layout)
    groups = timm_param_groups(params, names, kwargs)
    tx = create_optimizer_v2(params, opt, **kwargs)
    return info, spec, tx, groups


def timm_param_order(params: Any, names: Sequence[str], **factory_kwargs: Any) -> List[str]:
    """The param names in the order of a timm optimizer's ``state_dict()`` indices (0, 1, ...), for a model
    whose ``named_parameters()`` are ``names`` and the factory arguments ``factory_kwargs``."""
    return [n for _, group in timm_param_groups(params, names, factory_kwargs) for n in group]


def _numpy(value: Any) -> Any:
    if hasattr(value, 'detach'):  # a torch tensor
        return value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):  # per-dim factor lists (Kron's Q): entries of different shapes
        return [_numpy(v) for v in value]
    return value


def _check_groups(sd: Mapping[str, Any], groups: List[Tuple[float, List[str]]], opt: str) -> List[List[int]]:
    if not isinstance(sd, Mapping) or 'state' not in sd or 'param_groups' not in sd:
        raise ValueError(
            f'Invalid torch_state_dict: expected an optimizer state_dict() with keys "state" and '
            f'"param_groups", got {type(sd).__name__}' + (f' with keys {sorted(sd)}' if isinstance(sd, Mapping) else '')
        )
    theirs = [list(g['params']) for g in sd['param_groups']]
    want = [len(names) for _, names in groups]
    if [len(g) for g in theirs] != want:
        raise ValueError(
            f'torch_state_dict has param groups of sizes {[len(g) for g in theirs]}, but timm\'s '
            f'create_optimizer_v2(model, {opt!r}, ...) makes {want} for these names and arguments '
            '(check names, weight_decay, filter_bias_and_bn, layer_decay and fallback_list)'
        )
    for g, (wd, names) in zip(sd['param_groups'], groups):
        if 'weight_decay' in g and not np.isclose(float(g['weight_decay']), wd):
            raise ValueError(
                f"torch_state_dict's group of {names[:3]}... has weight_decay {g['weight_decay']}, "
                f'expected {wd} from the arguments given'
            )
    return theirs


def _stored_step(sd: Mapping[str, Any], per_param: Dict[str, Dict[str, Any]], spec: TimmState) -> Optional[int]:
    if spec.step is None:
        return None
    if spec.step.startswith('group'):
        values = {int(_numpy(g['step'])) for g in sd['param_groups'] if 'step' in g}
    else:
        values = {int(_numpy(s['step'])) for s in per_param.values() if 'step' in s}
    if len(values) > 1:
        raise ValueError(
            f'torch_state_dict has different step counts {sorted(values)} for different params; '
            'jaxopt_timm keeps one count for all'
        )
    return values.pop() if values else 0


def from_timm(
    torch_state_dict: Mapping[str, Any],
    params: Any,
    names: Sequence[str],
    opt: str = 'adamw',
    *,
    step: Optional[int] = None,
    layout: str = 'torch',
    **factory_kwargs: Any,
) -> Any:
    """The state of ``create_optimizer_v2(params, opt, **factory_kwargs)`` holding what timm's optimizer for
    the same name and arguments saved in ``torch_state_dict`` (its ``state_dict()``).

    Args:
        torch_state_dict: the optimizer's ``state_dict()`` (tensors or numpy arrays).
        params: the JAX params (any pytree); their values are not read, only their structure and shapes.
        names: the torch model's ``named_parameters()`` names in order, each the ``.``-joined key path of a
            leaf of ``params`` (as :func:`jaxopt_timm.optim.leaf_names` gives).
        opt: the optimizer name, as given to both factories.
        step: the number of updates made, for references that do not keep it (SGD, Lion, Lars, ...) when the
            optimizer's lr is a schedule; where the reference keeps it, it must agree.
        layout: ``'torch'`` or ``'flax'`` (Dense ``(in, out)`` / conv ``(*k, I, O)`` leaves); also passed to
            the factory for layout-aware optimizers.
        **factory_kwargs: the arguments of both factories (``lr``, ``weight_decay``, ``layer_decay``, ...).

    Raises:
        ValueError: names that do not match the params, a state_dict of another optimizer or of other groups,
            a buffer of the wrong size, a buffer with no place here, or a name whose state cannot cross.
    """
    info, spec, tx, groups = _setup(params, names, opt, layout, factory_kwargs)
    indices = [i for g in _check_groups(torch_state_dict, groups, opt) for i in g]
    order = [n for _, group in groups for n in group]
    raw = torch_state_dict['state']
    per_param = {n: {k: _numpy(v) for k, v in raw.get(i, raw.get(str(i), {})).items()} for n, i in zip(order, indices)}
    stored = _stored_step(torch_state_dict, per_param, spec)
    if step is not None and stored is not None and int(step) != stored:
        raise ValueError(f'Invalid step: {step}, the state_dict says {stored} updates were made')
    for key in spec.group_counts:
        counts = {int(_numpy(g[key])) for g in torch_state_dict['param_groups'] if key in g}
        if stored is None and counts:
            stored = counts.pop()
        if counts - {stored}:
            raise ValueError(f"torch_state_dict's {key} {sorted(counts)} differs from its step count {stored}")
    started = any(per_param.values())
    if step is None:
        if stored is None and started and callable(factory_kwargs.get('lr')):
            raise ValueError(
                f'{opt!r}: the reference keeps no step count; pass step= (the number of updates '
                'made) so the lr schedule continues where timm left off'
            )
        step = stored if stored is not None else int(started)
    state = tx.init(params)
    leaf_ndim = {n: np.ndim(leaf) for n, leaf in named_leaves(params)}
    used: Dict[str, Set[str]] = {n: set() for n in per_param}
    known = global_values(torch_state_dict['param_groups'], per_param, spec)
    slots = state_slots(state, params)
    known.update(indexed_values(slots, per_param, used, spec, params, layout, opt))
    new_leaves = [_fill(slot, per_param, used, spec, step, known, leaf_ndim, layout, opt) for slot in slots]
    for n, theirs in per_param.items():
        left = set(theirs) - used[n] - {'step'} - set(spec.derived) - set(spec.shared)
        if left:
            raise ValueError(
                f"torch_state_dict's state of {n!r} has {sorted(left)}, which {opt!r} here has no "
                f'place for (is it the state_dict of another optimizer?)'
            )
    return jax.tree.unflatten(jax.tree.structure(state), new_leaves)


def _fill(slot: Slot, per_param, used, spec: TimmState, step: int, known, leaf_ndim, layout: str, opt: str) -> Any:
    leaf = slot.leaf
    if slot.param is None:
        if slot.field in COUNT_FIELDS:
            return jnp.asarray(step, leaf.dtype)
        if slot.field in INIT_FIELDS or slot.field in spec.constants:
            return leaf
        if slot.field in set(spec.indexed.values()):
            return jnp.asarray(known[slot.path], leaf.dtype) if slot.path in known else leaf
        if slot.field in set(spec.shared.values()) | set(spec.group.values()):
            return jnp.asarray(known[slot.field], leaf.dtype) if slot.field in known else leaf
        raise ValueError(
            f'{opt!r}: our state field {slot.field!r} ({jax.tree_util.keystr(slot.path)}) has no '
            'counterpart in the reference state_dict'
        )
    if slot.field in spec.ours_only:
        return leaf
    theirs = per_param[slot.param]
    assert slot.field is not None  # a param's slot lies under a state field (state_slots)
    key = spec.key(slot.field)
    if key not in theirs:
        if not theirs or key in spec.optional:
            return leaf  # the reference has not stepped this param yet: its state is created at its first step
        raise ValueError(
            f"torch_state_dict's state of {slot.param!r} lacks {key!r}, which {opt!r} needs (it has {sorted(theirs)})"
        )
    used[slot.param].add(key)
    value = np.asarray(theirs[key], np.float64) * spec.scale.get(key, 1.0)
    if key in spec.flat and np.ndim(leaf) == leaf_ndim[slot.param]:  # flattened in torch dim order there
        value = value.reshape([np.shape(leaf)[a] for a in torch_axes(np.ndim(leaf), layout)])
    try:
        value = from_reference_layout(value, leaf, leaf_ndim[slot.param], layout)
    except ValueError as err:
        raise ValueError(f"torch_state_dict's {key!r} of {slot.param!r}: {err}") from None
    return jnp.asarray(value, leaf.dtype)


def to_timm(
    opt_state: Any,
    params: Any,
    names: Sequence[str],
    opt: str = 'adamw',
    *,
    layout: str = 'torch',
    **factory_kwargs: Any,
) -> Dict[str, Any]:
    """A ``state_dict()`` that timm's optimizer for ``opt`` and ``factory_kwargs`` loads, from the state of
    ``create_optimizer_v2(params, opt, **factory_kwargs)`` (arguments as :func:`from_timm`).

    Tensors are torch tensors when torch is importable, else numpy arrays. The param groups carry every
    hyperparameter of timm's optimizer when timm is importable (torch's ``load_state_dict`` replaces a group's
    settings with the saved ones); without it, only ``params``, ``lr`` and ``weight_decay``.
    """
    info, spec, tx, groups = _setup(params, names, opt, layout, factory_kwargs)
    template = jax.eval_shape(tx.init, params)
    if jax.tree.structure(template) != jax.tree.structure(opt_state):
        raise ValueError(
            f'Invalid opt_state: its structure is not that of create_optimizer_v2(params, {opt!r}, '
            '...) with the arguments given'
        )
    for want, got in zip(jax.tree.leaves(template), jax.tree.leaves(opt_state)):
        if tuple(want.shape) != tuple(np.shape(got)):
            raise ValueError(
                f'Invalid opt_state: a leaf of shape {tuple(np.shape(got))} where {tuple(want.shape)} is expected'
            )
    slots = state_slots(opt_state, params)
    counts = {int(np.asarray(s.leaf)) for s in slots if s.param is None and s.field in COUNT_FIELDS}
    step = max(counts) if counts else 0
    order = [n for _, group in groups for n in group]
    tensor = _tensor_maker()
    by_param: Dict[str, List[Slot]] = {}
    for s in slots:
        if s.param is not None:
            by_param.setdefault(s.param, []).append(s)
    shared = {
        k: next(np.asarray(s.leaf) for s in slots if s.param is None and s.field == f) for k, f in spec.shared.items()
    }
    params_np = dict(named_leaves(params))
    leaf_index = {n: i for i, n in enumerate(params_np)}

    def arg(name: str) -> Any:  # an optimizer argument as the factory gives it: the caller's, else the default
        if name in factory_kwargs:
            return factory_kwargs[name]
        if name in info.defaults:
            return info.defaults[name]
        default = inspect.signature(info.alias).parameters.get(name)
        return None if default is None else default.default

    state: Dict[int, Dict[str, Any]] = {}
    for i, name in enumerate(order):
        if step == 0:
            break  # the reference creates a param's state at its first step
        ndim = np.ndim(params_np[name])
        entry: Dict[str, Any] = {}
        param_torch = to_reference_layout(np.asarray(params_np[name], np.float32), ndim, layout)
        for s in by_param.get(name, []):
            key = spec.key(s.field)
            if s.field in spec.ours_only or (key in spec.optional and not spec.optional[key](step)):
                continue
            value = to_reference_layout(np.asarray(s.leaf, np.float32) / spec.scale.get(key, 1.0), ndim, layout)
            if key in spec.flat:
                value = value.reshape(-1)
            if key in spec.squeezed:  # the reduced axis: size 1 here, more in the param
                value = value.squeeze(
                    tuple(a for a, (v, p) in enumerate(zip(value.shape, param_torch.shape)) if v == 1 and p > 1)
                )
            entry[key] = spec.python[key](value) if key in spec.python else tensor(value)
        for key, field in spec.indexed.items():
            mine = sorted(
                (s for s in slots if s.param is None and s.field == field and s.path[-2].idx == leaf_index[name]),
                key=lambda s: s.path[-1].idx,
            )
            entry[key] = factors_to_reference([s.leaf for s in mine], np.shape(params_np[name]), layout, tensor)
        for key, value in shared.items():
            entry[key] = spec.python[key](value) if key in spec.python else tensor(value)
        paths = tuple(jax.tree_util.keystr(s.path) for s in by_param.get(name, []))
        for key, fn in spec.derived.items():
            value = fn(param_torch, step, paths, arg)
            entry[key] = spec.python[key](value) if key in spec.python else tensor(np.asarray(value, np.float32))
        if spec.step == 'param_tensor':
            entry['step'] = tensor(np.asarray(step, np.float32))
        elif spec.step == 'param_int':
            entry['step'] = int(step)
        state[i] = entry
    param_groups = _param_groups(info, spec, groups, params_np, names, layout, factory_kwargs, step, slots)
    return {'state': state, 'param_groups': param_groups}


def _tensor_maker():
    try:
        import torch
    except ImportError:
        return lambda v: np.array(v, copy=True)
    return lambda v: torch.tensor(np.array(v, copy=True))


def _param_groups(info, spec: TimmState, groups, params_np, names, layout, kwargs, step, slots) -> List[Dict[str, Any]]:
    from ._reference import reference_param_groups

    out = reference_param_groups(info.name, params_np, names, layout, kwargs, step)
    start = 0
    if out is None:
        lr = kwargs.get('lr')
        out = [{'weight_decay': wd, 'lr': float(lr(step)) if callable(lr) else lr} for wd, _ in groups]
    if [len(g.get('params', range(len(n)))) for g, (_, n) in zip(out, groups)] != [len(n) for _, n in groups]:
        raise AssertionError('timm grouped the params differently from jaxopt_timm.interop.timm_param_order')
    for g, (_, group_names) in zip(out, groups):
        g['params'] = list(range(start, start + len(group_names)))
        start += len(group_names)
        for key in spec.group_counts:
            g[key] = int(step)
        g.update(spec.group_required)
        for key, field in spec.group.items():
            g[key] = next(float(np.asarray(s.leaf)) for s in slots if s.param is None and s.field == field)
        if spec.step == 'group_tensor' and step:
            g['step'] = _tensor_maker()(np.asarray(step, np.float32))
        elif spec.step == 'group_int' and step:
            g['step'] = int(step)
    return out
