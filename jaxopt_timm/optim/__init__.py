"""timm's optimizers (and the ones timm lacks) as optax transformations, one module per algorithm.

Every alias takes the reference's arguments with ``params`` dropped and ``lr``
spelt ``learning_rate`` (a float or a schedule ``step -> lr``). Beyond those
arguments each alias accepts, keyword-only, what timm expresses with param
groups: ``weight_decay`` may be a per-leaf tree of floats, ``lr_scale`` a
per-leaf tree of lr multipliers (layer decay), and ``max_lr`` the peak lr for
corrected weight decay. :func:`create_optimizer_v2` builds those trees.

Every private module of this package other than the registry, the factory
and the param-group modules is an optimizer module: its ``__all__`` is
exported here, and its ``OPTIMIZERS`` (:class:`OptimInfo` records) and
optional ``ALIASES`` are registered, so adding an optimizer is adding its module.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from ._registry import OptimInfo, get_optimizer_info, list_optimizers, register, register_alias
from ._factory import create_optimizer, create_optimizer_v2, optimizer_kwargs, packing_mode
from ._group_matchers import flax_resnet_group_matcher, flax_vit_group_matcher, vit_group_matcher
from ._param_groups import leaf_names, named_leaves, weight_decay_tree

__all__ = [
    'OptimInfo', 'create_optimizer', 'create_optimizer_v2', 'get_optimizer_info', 'list_optimizers',
    'optimizer_kwargs', 'packing_mode', 'register', 'register_alias', 'leaf_names', 'named_leaves', 'weight_decay_tree',
    'flax_resnet_group_matcher', 'flax_vit_group_matcher', 'vit_group_matcher',
]


_INFRASTRUCTURE = ('_registry', '_factory', '_group_matchers', '_param_groups')  # imported above


def _optimizer_modules():
    """Every other private module of this package (the optimizers and wrappers such as Lookahead), by name."""
    for info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith('_') and not info.ispkg and info.name not in _INFRASTRUCTURE:
            yield _importlib.import_module(f'{__name__}.{info.name}')


_MODULES = tuple(_optimizer_modules())
for _m in _MODULES:
    register(*getattr(_m, 'OPTIMIZERS', ()))
    globals().update({_n: getattr(_m, _n) for _n in _m.__all__})
    __all__ += list(_m.__all__)
for _m in _MODULES:
    for _alias, _target in getattr(_m, 'ALIASES', {}).items():
        register_alias(_alias, _target)
del _m
