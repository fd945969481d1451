"""Small optax primitives for the parts of timm's math that optax lacks or does differently.

Each is a ``GradientTransformation`` factory (or a pure helper used inside
one); the optimizers in :mod:`jaxopt_timm.optim` are short chains of these and
of optax's own transforms.
"""
from . import (
    _belief, _caution, _hutchinson, _lr, _math, _momentum, _orthogonalize, _packed, _projection, _rectify,
    _tree, _trust_ratio, _weight_decay,
)
from ._belief import *  # noqa: F401,F403
from ._caution import *  # noqa: F401,F403
from ._hutchinson import *  # noqa: F401,F403
from ._lr import *  # noqa: F401,F403
from ._math import *  # noqa: F401,F403
from ._momentum import *  # noqa: F401,F403
from ._orthogonalize import *  # noqa: F401,F403
from ._packed import *  # noqa: F401,F403
from ._projection import *  # noqa: F401,F403
from ._rectify import *  # noqa: F401,F403
from ._tree import *  # noqa: F401,F403
from ._trust_ratio import *  # noqa: F401,F403
from ._weight_decay import *  # noqa: F401,F403

__all__ = []
for _m in (_belief, _caution, _hutchinson, _lr, _math, _momentum, _orthogonalize, _packed, _projection, _rectify,
           _tree, _trust_ratio, _weight_decay):
    __all__ += list(_m.__all__)
del _m
