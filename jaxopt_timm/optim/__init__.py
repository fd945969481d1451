"""timm's optimizers (and the ones timm lacks) as optax transformations, one module per algorithm.

Every alias takes the reference's arguments with ``params`` dropped and ``lr``
spelt ``learning_rate`` (a float or a schedule ``step -> lr``). Beyond those
arguments each alias accepts, keyword-only, what timm expresses with param
groups: ``weight_decay`` may be a per-leaf tree of floats, ``lr_scale`` a
per-leaf tree of lr multipliers (layer decay), and ``max_lr`` the peak lr for
corrected weight decay. :func:`create_optimizer_v2` builds those trees.

An optimizer module is any private module of this package that defines
``OPTIMIZERS`` (its :class:`OptimInfo` records), an ``__all__`` of the
functions it exports, and optionally ``ALIASES``; it is found and registered
here, so adding an optimizer is adding its module.
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


def _optimizer_modules():
    """Every private module of this package that defines ``OPTIMIZERS``, in name order."""
    for info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith('_') and not info.ispkg:
            module = _importlib.import_module(f'{__name__}.{info.name}')
            if hasattr(module, 'OPTIMIZERS'):
                yield module


_MODULES = tuple(_optimizer_modules())
for _m in _MODULES:
    register(*_m.OPTIMIZERS)
    globals().update({_n: getattr(_m, _n) for _n in _m.__all__})
    __all__ += list(_m.__all__)
for _m in _MODULES:
    for _alias, _target in getattr(_m, 'ALIASES', {}).items():
        register_alias(_alias, _target)
del _m
