"""The one guard around every registered alias (and the factory's result): tree checks and complex params.

Every registered alias is wrapped here, once, by the registration loop of
:mod:`jaxopt_timm.optim`, so no optimizer module repeats these checks:

* **grads vs params** (``update``): a grad whose shape differs from its param's (a ``(1, 3)`` grad for a
  ``(4, 3)`` param, a scalar grad) would be broadcast silently by the elementwise math, and a grads tree
  that differs from the params tree fails deep inside ``jax.tree.map`` with JAX's generic message. Both
  raise ``ValueError`` naming the leaf (its ``.``-joined key path, as :func:`leaf_names` spells it). Shapes
  are static, so the checks run at trace time and cost nothing under ``jit``. Without params (``tx.update(g,
  s)``) the grads are compared with the param-shaped parts of the state, located as ``optax.tree.map_params``
  locates them (the state is unchanged: nothing is stored for the check); where the state has none (SGD
  without momentum) there is nothing init saw to compare with, and the shape check is skipped.
* **per-leaf hyperparameter trees** (``init``): ``weight_decay``, ``lr_scale`` and the record's ``fallback``
  argument (Muon's ``use_fallback``) given as trees must have the params' structure; a mismatch used to pass
  ``init`` and fail at the first ``update`` with a pytree-metadata message.
* **complex params**: a name whose reference steps complex params as real pairs (the record's
  ``complex_params``) runs the alias on ``(..., 2)`` real views (:mod:`jaxopt_timm.transforms._complex`) and
  returns complex updates; any other name refuses a complex leaf at ``init``. The state holds the real views
  (a complex ``(4, 3)`` leaf has ``(4, 3, 2)`` float moments), its tree structure is the alias's own.

An alias serves several names (``sgdw`` is also ``csgdw``, the cautious one); a direct call is judged as the
record whose defaults its arguments match best, so ``sgdw(caution=True)`` refuses complex leaves as ``csgdw``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import jax
import numpy as np
import optax

from ..transforms import from_real_pairs, is_complex_leaf, is_params_placeholder, is_scalar, to_real_pairs
from ._param_groups import named_leaves

__all__ = [
    'PER_LEAF_ARGUMENTS',
    'guard',
    'guard_alias',
    'guard_aliases',
    'guard_factory',
    'check_grads',
    'check_leaf_tree',
]

PER_LEAF_ARGUMENTS = ('weight_decay', 'lr_scale')  # plus each record's ``fallback`` argument
_SHOWN = 8  # names listed in a message before '...'


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, 'shape') else np.shape(x)


def _show(names: Sequence[str]) -> str:
    head = ', '.join(repr(n) for n in names[:_SHOWN])
    return f'[{head}{", ..." if len(names) > _SHOWN else ""}]'


def _structure(tree: Any, limit: int = 240) -> str:
    text = str(jax.tree.structure(tree))
    return text if len(text) <= limit else text[:limit] + '...'


def _mismatch(tree: Any, reference: Any) -> str:
    """How ``tree`` differs from ``reference``: missing and extra leaf names, then both structures."""
    got = [n for n, _ in named_leaves(tree)]
    want = [n for n, _ in named_leaves(reference)]
    missing = [n for n in want if n not in set(got)]
    extra = [n for n in got if n not in set(want)]
    parts = [f'missing leaves {_show(missing)}'] if missing else []
    parts += [f'extra leaves {_show(extra)}'] if extra else []
    what = '; '.join(parts) if parts else 'the same leaf names in other containers (or None in other places)'
    return f'{what}; expected structure {_structure(reference)}, got {_structure(tree)}'


def check_leaf_tree(argument: str, value: Any, like: Any, like_what: str = 'params') -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` (a scalar, None or a per-leaf tree) fits ``like``."""
    if value is None or is_scalar(value):
        return
    if jax.tree.structure(value) != jax.tree.structure(like):
        raise ValueError(
            f'Invalid {argument}: a per-leaf tree must have the {like_what}\' structure (one value '
            f'per leaf), got {_mismatch(value, like)}'
        )


def check_grads(grads: Any, params: Any) -> None:
    """Raise ``ValueError`` naming the leaf unless ``grads`` has the tree, shapes and complex-ness of ``params``."""
    if jax.tree.structure(grads) != jax.tree.structure(params):
        raise ValueError(f"Invalid grads: the grads' tree differs from the params': {_mismatch(grads, params)}")
    pairs = list(zip(jax.tree.leaves(grads), jax.tree.leaves(params)))
    if all(_shape(g) == _shape(p) and is_complex_leaf(g) == is_complex_leaf(p) for g, p in pairs):
        return  # the common case: leaf names (a flatten with paths) are computed only for a message
    for (name, _), (g, p) in zip(named_leaves(grads), pairs):
        if _shape(g) != _shape(p):
            raise ValueError(
                f'Invalid grads: leaf {name!r} has a grad of shape {_shape(g)} for a param of shape '
                f'{_shape(p)}; a grad must have its param\'s shape (it is never broadcast)'
            )
        if is_complex_leaf(g) != is_complex_leaf(p):
            raise ValueError(
                f'Invalid grads: leaf {name!r} has a {np.dtype(g.dtype)} grad for a {np.dtype(p.dtype)} '
                f'param; a complex param needs a complex grad, a real param a real grad'
            )


def _init_param_trees(inner: optax.GradientTransformation, state: Any) -> List[Any]:
    """The param-shaped subtrees of ``state`` (the moments ``init`` sized from the params), located as
    ``optax.tree.map_params`` locates them; ``[]`` when the state has none or cannot be read that way."""
    found: List[Any] = []

    def grab(subtree):
        found.append(subtree)
        return subtree

    try:  # best effort: an init that cannot take the placeholder leaves nothing to compare with
        optax.tree.map_params(inner, grab, state, is_leaf=lambda _: True)
    except Exception:  # noqa: BLE001 - any failure only means "no reference", never a wrong error
        return []
    return [
        t for t in found if jax.tree.structure(t).num_leaves and all(hasattr(x, 'shape') for x in jax.tree.leaves(t))
    ]


def _check_against_init(inner: optax.GradientTransformation, state: Any, grads: Any, converted: bool) -> None:
    """Without params: ``grads`` (before any complex conversion) against what ``init`` sized the state from."""
    trees = _init_param_trees(inner, state)
    treedef = jax.tree.structure(grads)
    exact = [t for t in trees if jax.tree.structure(t) == treedef]
    if exact:
        for (name, g), s in zip(named_leaves(grads), jax.tree.leaves(exact[0])):
            want = _shape(s)[:-1] if converted and is_complex_leaf(g) else _shape(s)
            if _shape(g) != want:
                raise ValueError(
                    f'Invalid grads: leaf {name!r} has a grad of shape {_shape(g)} for a param of '
                    f'shape {want} (as init saw it); a grad must have its param\'s shape'
                )
        return
    fits = []
    for t in trees:
        try:
            treedef.flatten_up_to(t)  # a state may hold more per leaf (factored moments): grads are a prefix
            fits.append(t)
        except (ValueError, TypeError):
            pass
    if trees and not fits:
        smallest = min(trees, key=lambda t: jax.tree.structure(t).num_leaves)
        raise ValueError(
            f"Invalid grads: the grads' tree differs from the params' init saw: {_mismatch(grads, smallest)}"
        )


def guard(
    inner: optax.GradientTransformation,
    *,
    optimizer: str,
    complex_params: bool,
    leaf_trees: Optional[Mapping[str, Any]] = None,
    convert: bool = True,
    supported: Callable[[], List[str]] = lambda: [],
) -> optax.GradientTransformationExtraArgs:
    """``inner`` with the checks of this module; same state, extra ``update`` arguments passed through.

    Args:
        inner: the transformation to guard.
        optimizer: how messages name it (the registered name, or the alias call).
        complex_params: complex leaves are stepped as real pairs (else refused at ``init``).
        leaf_trees: per-leaf hyperparameter trees by argument name, checked against the params at ``init``.
        convert: convert complex leaves here; False where an inner guarded alias converts them (the factory).
        supported: the names that do accept complex params (for the refusal's message).
    """
    inner = optax.with_extra_args_support(inner)
    leaf_trees = dict(leaf_trees or {})

    def refuse_complex(tree: Any) -> None:
        if complex_params:
            return
        name = next(n for n, x in named_leaves(tree) if is_complex_leaf(x))
        raise ValueError(
            f'Invalid params: optimizer {optimizer} does not support complex params (leaf {name!r} is complex): '
            f'its reference raises or does not step them as torch.view_as_real pairs. Optimize the real pair '
            f'yourself (jnp.stack([x.real, x.imag], -1)) or use one of {", ".join(supported())}'
        )

    def init_fn(params):
        if is_params_placeholder(params):  # optax.tree.map_params: nothing to check or convert
            return inner.init(params)
        for argument, value in leaf_trees.items():
            check_leaf_tree(argument, value, params)
        mask = [is_complex_leaf(x) for x in jax.tree.leaves(params)]
        if any(mask):
            refuse_complex(params)
            if convert:
                params = to_real_pairs(params, mask)
        return inner.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        if params is not None:
            check_grads(updates, params)
        else:
            for argument, value in leaf_trees.items():
                check_leaf_tree(argument, value, updates, 'grads')
            _check_against_init(inner, state, updates, convert)
        mask = [is_complex_leaf(x) for x in jax.tree.leaves(updates)]
        if not any(mask):
            return inner.update(updates, state, params, **extra_args)
        refuse_complex(updates)
        if not convert:
            return inner.update(updates, state, params, **extra_args)
        real_params = None if params is None else to_real_pairs(params, mask)
        real_updates, state = inner.update(to_real_pairs(updates, mask), state, real_params, **extra_args)
        return from_real_pairs(real_updates, updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays, tracers: not a record's static default
        return False


def _closest(records: Sequence[Any], arguments: Mapping[str, Any]) -> List[Any]:
    """The records whose defaults the call's arguments match best (+1 per default matched, -1 per one not)."""
    scores = [sum(1 if _same(arguments.get(k), v) else -1 for k, v in r.defaults.items()) for r in records]
    return [r for r, s in zip(records, scores) if s == max(scores)]


def _real_hyperparam(value: Any) -> Any:
    """A complex array hyperparameter as its real part: ``optax.inject_hyperparams`` casts every numeric
    hyperparameter to the params' dtype, complex64 for complex params, though each is real (its imaginary part
    is the cast's 0). Without this, complex params under ``inject_hyperparams`` would fail the lr check."""
    if isinstance(value, (jax.Array, np.ndarray)) and is_complex_leaf(value):
        return value.real
    return value


def _complex_names() -> List[str]:
    from ._registry import get_optimizer_info, list_optimizers  # the registry is filled by then

    return [n for n in list_optimizers() if get_optimizer_info(n).complex_params]


def guard_alias(alias: Callable[..., Any], records: Sequence[Any]) -> Callable[..., Any]:
    """``alias`` returning its transformation :func:`guard`-ed; signature and docstring are the alias's
    (``functools.wraps``), so ``inspect.signature`` and ``optax.inject_hyperparams`` see the same function."""
    signature = inspect.signature(alias)
    per_leaf = PER_LEAF_ARGUMENTS + tuple(sorted({r.fallback for r in records if r.fallback}))

    @functools.wraps(alias)
    def guarded(*args, **kwargs):
        args, kwargs = tuple(_real_hyperparam(a) for a in args), {k: _real_hyperparam(v) for k, v in kwargs.items()}
        tx = alias(*args, **kwargs)  # the alias's own argument checks first
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        matched = _closest(records, arguments)
        names = '/'.join(repr(r.name) for r in matched)
        trees = {a: arguments[a] for a in per_leaf if a in arguments}
        return guard(
            tx,
            optimizer=f'{names} ({alias.__name__}, reference {matched[0].timm_class})',
            complex_params=all(r.complex_params for r in matched),
            leaf_trees=trees,
            # a wrapper (SAM) steps complex leaves itself; the base it wraps converts or refuses them
            convert=not any(r.base_argument for r in matched),
            supported=_complex_names,
        )

    return guarded


def guard_aliases(records: Sequence[Any]) -> Dict[int, Callable[..., Any]]:
    """``id(alias) -> guarded alias`` for every alias of ``records`` (each judged against all its records)."""
    by_alias: Dict[int, List[Any]] = {}
    for record in records:
        by_alias.setdefault(id(record.alias), []).append(record)
    return {key: guard_alias(recs[0].alias, recs) for key, recs in by_alias.items()}


def guard_factory(tx: optax.GradientTransformation, info: Any) -> optax.GradientTransformationExtraArgs:
    """The factory's result checked on the user's tree (names before packing or partitioning, the complex
    policy of the exact record); the guarded aliases inside convert complex leaves, so this one does not."""
    return guard(
        tx,
        optimizer=f'{info.name!r} (reference {info.timm_class})',
        complex_params=info.complex_params,
        convert=False,
        supported=_complex_names,
    )
