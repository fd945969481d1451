"""timm's param groups, expressed as per-leaf hyperparameter trees over any params pytree.

A leaf's name is its key path joined with '.', e.g. ``blocks.0.attn.qkv.weight``.
A Flax linen variables dict ``{'params': {...}}`` is named from inside its
``'params'`` collection, so timm-style patterns (``pos_embed``, ``*.bias``)
match as they do on a torch model.
"""

from __future__ import annotations

import dataclasses
import re
from fnmatch import fnmatch
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from .._validate import check_range

__all__ = [
    'leaf_names',
    'params_of',
    'named_leaves',
    'weight_decay_tree',
    'layer_ids_from_matcher',
    'auto_layer_ids',
    'ParamGroups',
    'build_param_groups',
    'MATCH_PREV_GROUP',
    'check_name_patterns',
]


def _key_str(k) -> str:
    for attr in ('key', 'name', 'idx'):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def params_of(model_or_params: Any) -> Any:
    """The params tree of ``model_or_params``: a ``flax.nnx.Module`` gives its ``nnx.Param`` state."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is a dependency
        return model_or_params
    if isinstance(model_or_params, nnx.Module):
        return nnx.state(model_or_params, nnx.Param)
    return model_or_params


def _strip_linen_params(path: Tuple, tree: Any) -> Tuple:
    if (isinstance(tree, dict) or hasattr(tree, 'keys')) and list(tree.keys()) == ['params'] and path:
        return path[1:]
    return path


def named_leaves(params: Any) -> List[Tuple[str, Any]]:
    """``(name, leaf)`` for each leaf, in ``jax.tree.leaves`` order.

    The trailing ``.value`` attribute of a ``flax.nnx`` Variable is dropped, so
    an nnx state names ``blocks.0.kernel`` like the module path.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in flat:
        path = _strip_linen_params(path, params)
        if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == 'value':
            path = path[:-1]
        out.append(('.'.join(_key_str(k) for k in path), leaf))
    return out


def leaf_names(params: Any) -> Any:
    """A tree like ``params`` holding each leaf's name."""
    names = [n for n, _ in named_leaves(params)]
    treedef = jax.tree.structure(params)
    return jax.tree.unflatten(treedef, names)


def _is_float(leaf: Any) -> bool:
    dtype = getattr(leaf, 'dtype', None)
    if dtype is None:
        return isinstance(leaf, float)
    return bool(np.issubdtype(np.dtype(dtype), np.inexact)) or str(dtype) == 'bfloat16'


def _matches(name: str, patterns: Collection[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def weight_decay_tree(
    params: Any,
    weight_decay: float,
    filter_bias_and_bn: bool = True,
    no_weight_decay_list: Collection[str] = (),
) -> Any:
    """Per-leaf weight decay, as timm's ``param_groups_weight_decay``.

    No decay when ``weight_decay`` is 0, on leaves matching
    ``no_weight_decay_list``, and (``filter_bias_and_bn``) on leaves with
    ``ndim <= 1`` or a name ending in ``.bias``.
    """
    no_weight_decay_list = check_name_patterns('no_weight_decay_list', no_weight_decay_list)
    values = []
    for name, leaf in named_leaves(params):
        excluded = filter_bias_and_bn and (np.ndim(leaf) <= 1 or name.endswith('.bias'))
        if not weight_decay or excluded or _matches(name, no_weight_decay_list):
            values.append(0.0)
        else:
            values.append(float(weight_decay))
    return jax.tree.unflatten(jax.tree.structure(params), values)


# ---- layer-wise lr decay ------------------------------------------------------------------------------------

MATCH_PREV_GROUP = (99999,)  # timm's marker: a matcher suffix that merges a match into the previous layer id


def check_name_patterns(argument: str, patterns: Any) -> Tuple[str, ...]:
    """``patterns`` as a tuple of fnmatch patterns; a bare string (which would match its characters one by one)
    or a non-string entry is refused, naming ``argument``."""
    if isinstance(patterns, (str, bytes)):
        raise ValueError(
            f'Invalid {argument}: {patterns!r} is a bare string (it would be read as its characters); '
            f'expected a list of names or fnmatch patterns, e.g. [{patterns!r}]'
        )
    try:
        items = tuple(patterns or ())
    except TypeError:
        raise ValueError(f'Invalid {argument}: {patterns!r}, expected a list of names or fnmatch patterns') from None
    bad = [p for p in items if not isinstance(p, str)]
    if bad:
        raise ValueError(f'Invalid {argument}: entries {bad!r} are not strings; expected names or fnmatch patterns')
    return items


def _compile_regex(key: Any, regex: Any):
    try:
        return re.compile(regex)
    except (re.error, TypeError) as e:
        raise ValueError(f'Invalid group_matcher[{key!r}]: {regex!r} is not a regular expression ({e})') from None


def _compile_matcher(group_matcher: Any):
    """timm's dict form ``{group_name: regex | [(regex, suffix), ...]}`` -> list of (regex, ordinal, suffix)."""
    if callable(group_matcher):
        return group_matcher
    if not isinstance(group_matcher, dict):
        raise ValueError(
            f'Invalid group_matcher: {group_matcher!r}, expected timm\'s dict of regular expressions '
            f'({{group: regex | [(regex, suffix), ...]}}) or a callable name -> layer ordinal'
        )
    compiled = []
    for ordinal, (key, spec) in enumerate(group_matcher.items()):
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            for entry in spec:
                if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                    raise ValueError(f'Invalid group_matcher[{key!r}]: entry {entry!r}, expected (regex, suffix)')
                regex, suffix = entry
                compiled.append((_compile_regex(key, regex), (ordinal,), suffix))
        else:
            compiled.append((_compile_regex(key, spec), (ordinal,), None))
    return compiled


def _ordinal(name: str, matcher: Any) -> Tuple[float, ...]:
    if isinstance(matcher, (list, tuple)):
        for regex, prefix, suffix in matcher:
            m = regex.match(name)
            if m:
                parts = [p for p in (prefix, m.groups(), suffix) if p]
                return tuple(float(x) for part in parts for x in part)
        return (float('inf'),)  # unmatched leaves (neck, head) go last
    value = matcher(name)
    if isinstance(value, (tuple, list)):
        return tuple(value)
    return (value,)


def layer_ids_from_matcher(names: Sequence[str], group_matcher: Any) -> Dict[str, int]:
    """Layer id of each name, as ``timm.models.group_parameters(..., reverse=True)``.

    Names are keyed by their matcher ordinal tuples, the distinct tuples are
    sorted, and consecutive ids are handed out, except that a tuple ending in
    ``MATCH_PREV_GROUP`` joins the previous id.
    """
    matcher = _compile_matcher(group_matcher)
    by_ordinal: Dict[Tuple, List[str]] = {}
    for name in names:
        by_ordinal.setdefault(_ordinal(name, matcher), []).append(name)
    layer_of: Dict[str, int] = {}
    lid = -1
    for key in sorted(k for k in by_ordinal if k is not None):
        if lid < 0 or key[-1] != MATCH_PREV_GROUP[0]:
            lid += 1
        for name in by_ordinal[key]:
            layer_of[name] = lid
    return layer_of


def auto_layer_ids(
    names: Sequence[str], head_prefix: Any = None, layers_per_group: int = 12, num_groups: Optional[int] = None
) -> Dict[str, int]:
    """timm's ``auto_group_layers``: trunk leaves in order, ``layers_per_group`` to an id; the head gets the last.

    Order is the params tree's leaf order (``jax.tree.leaves``; sorted keys for
    dicts), which plays the role of torch's registration order. Without a
    ``head_prefix`` every leaf counts as head, so all share one id, as in timm.
    """

    def in_head(n):
        if not head_prefix:
            return True
        if isinstance(head_prefix, (tuple, list)):
            return any(n.startswith(h) for h in head_prefix)
        return n.startswith(head_prefix)

    trunk = [n for n in names if not in_head(n)]
    head = [n for n in names if in_head(n)]
    if num_groups is not None:
        layers_per_group = -(len(trunk) // -num_groups)
    layer_of = {n: i // layers_per_group for i, n in enumerate(trunk)}
    num_trunk_groups = -(len(trunk) // -layers_per_group) if trunk else 0
    layer_of.update({n: num_trunk_groups for n in head})
    return layer_of


def _group_value(name: str, group: dict, key: str, default: float) -> float:
    """``group.pop(key, default)`` as a float, checked: a finite number >= 0 (a negative lr scale ascends)."""
    value = group.pop(key, default)
    check_range(f"param_group_fn({name!r})['{key}']", value, 0.0)
    return float(value)


@dataclasses.dataclass(frozen=True)
class ParamGroups:
    """Per-leaf hyperparameters, the tree form of timm's param groups.

    ``weight_decay`` and ``lr_scale`` are trees of floats shaped like the params;
    ``trainable`` a tree of bools (False: excluded from optimization, as timm's
    ``requires_grad=False`` / ``layer_decay_no_opt_scale``); ``use_fallback`` a
    tree of bools for hybrid optimizers; ``overrides`` a list, in leaf order,
    of dicts of other per-leaf optimizer arguments (from ``param_group_fn``);
    ``layer_id`` a tree of layer ids when layer decay is on.
    """

    weight_decay: Any
    lr_scale: Any
    trainable: Any
    use_fallback: Any
    overrides: Any
    layer_id: Any = None


def build_param_groups(
    params: Any,
    weight_decay: float = 0.0,
    filter_bias_and_bn: bool = True,
    no_weight_decay_list: Collection[str] = (),
    fallback_list: Collection[str] = (),
    fallback_no_weight_decay: bool = False,
    layer_decay: Optional[float] = None,
    layer_decay_min_scale: float = 0.0,
    layer_decay_no_opt_scale: Optional[float] = None,
    param_group_fn: Optional[Callable[[str, Any], Optional[dict]]] = None,
    group_matcher: Any = None,
    head_prefix: Any = None,
) -> ParamGroups:
    """timm's grouping precedence over a params tree: ``param_group_fn``, then layer decay, then weight decay."""
    no_weight_decay_list = check_name_patterns('no_weight_decay_list', no_weight_decay_list)
    fallback_list = check_name_patterns('fallback_list', fallback_list)
    if group_matcher is not None:
        _compile_matcher(group_matcher)  # a broken matcher is reported even when layer decay is off
    if param_group_fn is not None and not callable(param_group_fn):
        raise ValueError(f'Invalid param_group_fn: {param_group_fn!r}, expected a callable (name, leaf) -> dict | None')
    named = named_leaves(params)
    names = [n for n, _ in named]
    treedef = jax.tree.structure(params)
    if fallback_no_weight_decay:
        fallback_list = set(fallback_list) | set(no_weight_decay_list)
    fallback = [_matches(n, fallback_list) for n in names]
    wd: List[Any] = []
    scale: List[Any] = []
    trainable: List[bool] = []
    overrides: List[Dict[str, Any]] = []
    layer: List[Any] = []

    if param_group_fn is not None:
        # As timm: groups carry their own values; a group without 'weight_decay' gets the factory's weight_decay.
        for name, leaf in named:
            group = param_group_fn(name, leaf)
            if group is None:
                wd.append(0.0)
                scale.append(1.0)
                trainable.append(False)
                overrides.append({})
                continue
            if not isinstance(group, dict):
                raise ValueError(f'Invalid param_group_fn result for {name!r}: {group!r}, expected a dict or None')
            group = dict(group)
            wd.append(_group_value(name, group, 'weight_decay', weight_decay))
            scale.append(_group_value(name, group, 'lr_scale', 1.0))
            trainable.append(True)
            if 'use_fallback' in group:
                fallback[len(wd) - 1] = bool(group.pop('use_fallback'))
            overrides.append(group)
    elif layer_decay is not None:
        if group_matcher is not None:
            layer_of = layer_ids_from_matcher(names, group_matcher)
        else:
            layer_of = auto_layer_ids(names, head_prefix)
        num_layers = max(layer_of.values()) + 1 if layer_of else 1
        layer_max = num_layers - 1
        scales = [max(layer_decay_min_scale, layer_decay ** (layer_max - i)) for i in range(num_layers)]
        for name, leaf in named:
            # timm quirk mirrored: with layer decay the 1-d filter ignores the '.bias' name rule.
            no_decay = (filter_bias_and_bn and np.ndim(leaf) <= 1) or _matches(name, no_weight_decay_list)
            lid = layer_of.get(name, layer_max)
            s = scales[lid]
            keep = not (layer_decay_no_opt_scale and s < layer_decay_no_opt_scale)
            wd.append(0.0 if no_decay else float(weight_decay))
            scale.append(float(s))
            trainable.append(keep)
            overrides.append({})
            layer.append(lid)
    else:
        wd = jax.tree.leaves(weight_decay_tree(params, weight_decay, filter_bias_and_bn, no_weight_decay_list))
        scale = [1.0] * len(names)
        trainable = [True] * len(names)
        overrides = [{}] * len(names)

    # Integer/bool leaves (step counters, masks kept in a params tree) cannot have gradients in torch, so timm
    # never optimizes them: they are frozen here (zero updates, no optimizer state).
    trainable = [keep and _is_float(leaf) for keep, (_, leaf) in zip(trainable, named)]

    def unflat(values):
        return jax.tree.unflatten(treedef, values)

    return ParamGroups(
        weight_decay=unflat(wd),
        lr_scale=unflat(scale),
        trainable=unflat(trainable),
        use_fallback=unflat(fallback),
        overrides=list(overrides),
        layer_id=unflat(layer) if layer else None,
    )
