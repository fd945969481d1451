"""timm's optimizers as optax transformations, one module per timm optimizer.

Every alias takes timm's arguments with ``params`` dropped and ``lr`` spelt
``learning_rate`` (a float or a schedule ``step -> lr``). Beyond timm's
arguments each alias accepts, keyword-only, what timm expresses with param
groups: ``weight_decay`` may be a per-leaf tree of floats, ``lr_scale`` a
per-leaf tree of lr multipliers (layer decay), and ``max_lr`` the peak lr for
corrected weight decay. :func:`create_optimizer_v2` builds those trees.
"""
from . import _registry
from ._registry import OptimInfo, get_optimizer_info, list_optimizers, register, register_alias
from ._sgd import *  # noqa: F401,F403
from ._adamw import *  # noqa: F401,F403
from ._adabelief import *  # noqa: F401,F403
from ._adafactor import *  # noqa: F401,F403
from ._adahessian import *  # noqa: F401,F403
from ._adamp import *  # noqa: F401,F403
from ._sgdp import *  # noqa: F401,F403
from ._lamb import *  # noqa: F401,F403
from ._lars import *  # noqa: F401,F403
from ._lookahead import *  # noqa: F401,F403
from ._madgrad import *  # noqa: F401,F403
from ._nadam import *  # noqa: F401,F403
from ._nvnovograd import *  # noqa: F401,F403
from ._radam import *  # noqa: F401,F403
from ._rmsprop_tf import *  # noqa: F401,F403
from ._torch_optim import *  # noqa: F401,F403
from ._sgdw import *  # noqa: F401,F403
from ._nadamw import *  # noqa: F401,F403
from ._lion import *  # noqa: F401,F403
from ._laprop import *  # noqa: F401,F403
from ._adopt import *  # noqa: F401,F403
from ._mars import *  # noqa: F401,F403
from ._adan import *  # noqa: F401,F403
from ._muon import *  # noqa: F401,F403
from ._kron import *  # noqa: F401,F403
from ._adafactor_bv import *  # noqa: F401,F403
from . import _sgd, _adamw, _adabelief, _adafactor, _adahessian, _adamp, _sgdp, _lamb, _lars, _lookahead, _madgrad, _nadam, _nvnovograd, _radam, _rmsprop_tf
from . import _torch_optim, _sgdw, _nadamw, _lion, _laprop, _adopt, _mars, _adan
from . import _muon, _kron, _adafactor_bv
from ._factory import create_optimizer, create_optimizer_v2, optimizer_kwargs, packing_mode
from ._group_matchers import flax_resnet_group_matcher, flax_vit_group_matcher, vit_group_matcher
from ._param_groups import leaf_names, named_leaves, weight_decay_tree

_MODULES = (
    _sgd,
    _adamw,
    _adabelief,
    _adafactor,
    _adahessian,
    _adamp,
    _sgdp,
    _lamb,
    _lars,
    _lookahead,
    _madgrad,
    _nadam,
    _nvnovograd,
    _radam,
    _rmsprop_tf,
    _torch_optim,
    _sgdw,
    _nadamw,
    _lion,
    _laprop,
    _adopt,
    _mars,
    _adan,
    _muon,
    _kron,
    _adafactor_bv,
)

for _m in _MODULES:
    register(*getattr(_m, 'OPTIMIZERS', ()))
for _m in _MODULES:
    for _alias, _target in getattr(_m, 'ALIASES', {}).items():
        register_alias(_alias, _target)

__all__ = [
    'OptimInfo', 'create_optimizer', 'create_optimizer_v2', 'get_optimizer_info', 'list_optimizers',
    'optimizer_kwargs', 'packing_mode', 'register', 'register_alias', 'leaf_names', 'named_leaves', 'weight_decay_tree',
    'flax_resnet_group_matcher', 'flax_vit_group_matcher', 'vit_group_matcher',
]
for _m in _MODULES:
    __all__ += list(_m.__all__)
del _m
