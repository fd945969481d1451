"""Which param each index of a timm optimizer's ``state_dict()`` stands for.

torch numbers a state_dict's params by walking ``param_groups`` in order, and
timm's factory builds those groups from the model's ``named_parameters()``:
``param_groups_weight_decay`` makes up to four groups in a fixed order (no
decay, decay, then the same two for fallback params) and
``param_groups_layer_decay`` one group per ``layer_<id>_<decay|no_decay>[_fallback]``
in order of first appearance; frozen params are left out. The same grouping
is read here from this package's own param-group trees (built by
:func:`jaxopt_timm.optim.build_param_groups` from the same arguments), so the
order follows from the names and the factory's arguments alone.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import jax

from jaxopt_timm.optim import build_param_groups, named_leaves

__all__ = ['timm_param_groups', 'check_names']

_GROUP_ARGS = (
    'weight_decay',
    'filter_bias_and_bn',
    'no_weight_decay_list',
    'fallback_list',
    'fallback_no_weight_decay',
    'layer_decay',
    'layer_decay_min_scale',
    'layer_decay_no_opt_scale',
    'group_matcher',
    'head_prefix',
)


def check_names(params: Any, names: Sequence[str]) -> Dict[str, Any]:
    """``{name: leaf}`` for ``names``, which must be the params' leaf names, each once (in any order)."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f'Invalid names: {names!r}, expected a sequence of parameter names '
            "(the torch model's named_parameters() names, in order)"
        )
    leaves = dict(named_leaves(params))
    seen: Dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    twice = sorted(n for n, c in seen.items() if c > 1)
    missing = [n for n in leaves if n not in seen]
    extra = [n for n in names if n not in leaves]
    if twice or missing or extra:
        parts = [
            f'named more than once: {twice}' if twice else '',
            f'params without a name: {missing}' if missing else '',
            f'names without a param: {extra}' if extra else '',
        ]
        raise ValueError(
            'Invalid names: they must name every leaf of params once ('
            + '; '.join(p for p in parts if p)
            + f'); the params\' leaf names are {list(leaves)}'
        )
    return {n: leaves[n] for n in names}


def timm_param_groups(
    params: Any, names: Sequence[str], factory_kwargs: Mapping[str, Any]
) -> List[Tuple[float, List[str]]]:
    """timm's param groups for a model whose ``named_parameters()`` are ``names`` (leaves of ``params``):
    ``[(weight_decay, [name, ...]), ...]`` in the order timm's ``create_optimizer_v2`` builds them, so the
    state_dict's index ``i`` is the ``i``-th name of the concatenated lists."""
    if factory_kwargs.get('param_group_fn') is not None:
        raise ValueError(
            'Invalid param_group_fn: a custom param_group_fn decides the param order of the '
            "state_dict itself; convert with the factory's own grouping (weight decay / layer decay)"
        )
    check_names(params, names)
    kw = {k: factory_kwargs[k] for k in _GROUP_ARGS if k in factory_kwargs}
    weight_decay = float(kw.pop('weight_decay', 0.0) or 0.0)
    # built with a unit decay: the tree then marks the leaves timm's rule excludes (1-d, '.bias', listed) as 0,
    # which decides the group name even when the decay itself is 0 (timm's layer-decay groups)
    groups = build_param_groups(params, weight_decay=1.0, **kw)
    leaf_name = [n for n, _ in named_leaves(params)]
    per_leaf = {
        key: dict(zip(leaf_name, jax.tree.leaves(tree)))
        for key, tree in (
            ('wd', groups.weight_decay),
            ('trainable', groups.trainable),
            ('fallback', groups.use_fallback),
        )
    }
    layer_ids = dict(zip(leaf_name, jax.tree.leaves(groups.layer_id))) if groups.layer_id is not None else None
    order: Dict[str, Tuple[float, List[str]]] = {}
    fixed = ('no_decay', 'decay', 'no_decay_fallback', 'decay_fallback')
    for name in names:
        if not per_leaf['trainable'][name]:
            continue  # timm: requires_grad=False (or below layer_decay_no_opt_scale) never reaches the optimizer
        # timm's weight-decay groups put everything in 'no_decay' when the decay is 0; its layer-decay groups don't
        decays = per_leaf['wd'][name] > 0 and (weight_decay > 0 or layer_ids is not None)
        suffix = '_fallback' if per_leaf['fallback'][name] else ''
        g = ('decay' if decays else 'no_decay') + suffix
        key = g if layer_ids is None else f'layer_{layer_ids[name]}_{g}'
        order.setdefault(key, (weight_decay if decays else 0.0, []))[1].append(name)
    if layer_ids is None:
        return [order[k] for k in fixed if k in order]
    return list(order.values())
