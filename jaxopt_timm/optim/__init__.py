"""timm's optimizers (and the ones timm lacks) as optax transformations, one module per algorithm.

Every alias takes the reference's arguments with ``params`` dropped and ``lr``
spelt ``learning_rate`` (a float or a schedule ``step -> lr``). Beyond those
arguments each alias accepts, keyword-only, what timm expresses with param
groups: ``weight_decay`` may be a per-leaf tree of floats, ``lr_scale`` a
per-leaf tree of lr multipliers (layer decay), and ``max_lr`` the peak lr for
corrected weight decay. :func:`create_optimizer_v2` builds those trees.

Arguments shared by the aliases mean the same everywhere (an alias's docstring
lists only the others): ``learning_rate`` a float >= 0 or a schedule
``step -> lr``; ``betas`` the moment decay rates, each in [0, 1); ``maximize``
ascend instead of descend (the gradient is negated first, as torch's flag);
``lr_scale`` per-leaf lr multipliers (layer decay); ``max_lr`` the peak lr for
corrected weight decay (default: the float lr or a package schedule's
``base_lr``); ``mu_dtype`` / ``nu_dtype`` the dtypes of the first / second
moment (default: the params' dtype; float32 for float16 params). Every alias is
stepped the same way:

    >>> import jax.numpy as jnp, optax, jaxopt_timm as jt
    >>> params = {'w': jnp.ones((2, 2))}
    >>> tx = jt.optim.adamw(1e-3, weight_decay=0.05)
    >>> state = tx.init(params)
    >>> updates, state = tx.update({'w': jnp.ones((2, 2))}, state, params)
    >>> params = optax.apply_updates(params, updates)

Every registered alias (and the factory's result) is guarded (:mod:`._guard`): grads must have the
params' tree and shapes (a ``ValueError`` names the leaf instead of a silent broadcast), per-leaf trees
must fit the params at ``init``, and complex leaves are stepped as torch steps them, as pairs of reals,
by the names whose record has ``complex_params`` (the others refuse them at ``init``).

Every private module of this package other than the registry, the factory,
the guard and the param-group modules is an optimizer module: its ``__all__`` is
exported here, and its ``OPTIMIZERS`` (:class:`OptimInfo` records) and
optional ``ALIASES`` are registered, so adding an optimizer is adding its module.
A helper module split off an optimizer module (``_kron_step``, ``_shampoo_step``, ...) is loaded the same
way; it has an empty ``__all__`` and no records: its optimizer module exports the names it defines.
"""

import dataclasses as _dataclasses
import importlib as _importlib
import pkgutil as _pkgutil

from ._registry import OptimInfo, get_optimizer_info, list_optimizers, register, register_alias
from ._factory import create_optimizer, create_optimizer_v2, optimizer_kwargs, packing_mode
from ._group_matchers import flax_resnet_group_matcher, flax_vit_group_matcher, vit_group_matcher
from ._param_groups import build_param_groups, leaf_names, named_leaves, weight_decay_tree
from ._guard import guard_aliases as _guard_aliases

__all__ = [
    'OptimInfo',
    'create_optimizer',
    'create_optimizer_v2',
    'get_optimizer_info',
    'list_optimizers',
    'optimizer_kwargs',
    'packing_mode',
    'register',
    'register_alias',
    'leaf_names',
    'named_leaves',
    'weight_decay_tree',
    'build_param_groups',
    'flax_resnet_group_matcher',
    'flax_vit_group_matcher',
    'vit_group_matcher',
]


_INFRASTRUCTURE = ('_registry', '_factory', '_group_matchers', '_param_groups', '_guard')  # imported above


def _optimizer_modules():
    """Every other private module of this package (the optimizers and wrappers such as Lookahead), by name."""
    for info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith('_') and not info.ispkg and info.name not in _INFRASTRUCTURE:
            yield _importlib.import_module(f'{__name__}.{info.name}')


_MODULES = tuple(_optimizer_modules())
# every registered alias, here and in its records, is the guarded one (tree checks, complex params: see _guard)
_GUARDED = _guard_aliases([_r for _m in _MODULES for _r in getattr(_m, 'OPTIMIZERS', ())])
for _m in _MODULES:
    register(*(_dataclasses.replace(_r, alias=_GUARDED[id(_r.alias)]) for _r in getattr(_m, 'OPTIMIZERS', ())))
    globals().update({_n: _GUARDED.get(id(getattr(_m, _n)), getattr(_m, _n)) for _n in _m.__all__})
    __all__ += list(_m.__all__)
for _m in _MODULES:
    for _alias, _target in getattr(_m, 'ALIASES', {}).items():
        register_alias(_alias, _target)
del _m
