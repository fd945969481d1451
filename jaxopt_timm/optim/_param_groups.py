"""timm's param groups, expressed as per-leaf hyperparameter trees over any params pytree.

A leaf's name is its key path joined with '.', e.g. ``blocks.0.attn.qkv.weight``.
A Flax linen variables dict ``{'params': {...}}`` is named from inside its
``'params'`` collection, so timm-style patterns (``pos_embed``, ``*.bias``)
match as they do on a torch model.
"""
from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, Collection, List, Tuple

import jax
import numpy as np

__all__ = ['leaf_names', 'params_of', 'named_leaves', 'weight_decay_tree']


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
    """``(name, leaf)`` for each leaf, in ``jax.tree.leaves`` order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for path, leaf in flat:
        path = _strip_linen_params(path, params)
        out.append(('.'.join(_key_str(k) for k in path), leaf))
    return out


def leaf_names(params: Any) -> Any:
    """A tree like ``params`` holding each leaf's name."""
    names = [n for n, _ in named_leaves(params)]
    treedef = jax.tree.structure(params)
    return jax.tree.unflatten(treedef, names)


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
    values = []
    for name, leaf in named_leaves(params):
        excluded = filter_bias_and_bn and (np.ndim(leaf) <= 1 or name.endswith('.bias'))
        if not weight_decay or excluded or _matches(name, no_weight_decay_list):
            values.append(0.0)
        else:
            values.append(float(weight_decay))
    return jax.tree.unflatten(jax.tree.structure(params), values)
