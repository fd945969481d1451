"""Small optax primitives for the parts of timm's math that optax lacks or does differently.

Each is a ``GradientTransformation`` factory (or a pure helper used inside
one); the optimizers in :mod:`jaxopt_timm.optim` are short chains of these and
of optax's own transforms.
"""

from . import (
    _alias,
    _belief,
    _caution,
    _clip,
    _complex,
    _factored,
    _hutchinson,
    _kron_preconditioner,
    _layout,
    _lr,
    _math,
    _matrix_precond,
    _momentum,
    _orthogonalize,
    _packed,
    _projection,
    _rectify,
    _static,
    _stochastic_decay,
    _tree,
    _trust_ratio,
    _weight_decay,
)
from ._alias import *  # noqa: F401,F403
from ._belief import *  # noqa: F401,F403
from ._caution import *  # noqa: F401,F403
from ._clip import *  # noqa: F401,F403
from ._complex import *  # noqa: F401,F403
from ._factored import *  # noqa: F401,F403
from ._hutchinson import *  # noqa: F401,F403
from ._kron_preconditioner import *  # noqa: F401,F403
from ._layout import *  # noqa: F401,F403
from ._lr import *  # noqa: F401,F403
from ._math import *  # noqa: F401,F403
from ._matrix_precond import *  # noqa: F401,F403
from ._momentum import *  # noqa: F401,F403
from ._orthogonalize import *  # noqa: F401,F403
from ._packed import *  # noqa: F401,F403
from ._projection import *  # noqa: F401,F403
from ._rectify import *  # noqa: F401,F403
from ._static import *  # noqa: F401,F403
from ._stochastic_decay import *  # noqa: F401,F403
from ._tree import *  # noqa: F401,F403
from ._trust_ratio import *  # noqa: F401,F403
from ._weight_decay import *  # noqa: F401,F403

__all__ = []
for _m in (
    _alias,
    _belief,
    _caution,
    _clip,
    _complex,
    _factored,
    _hutchinson,
    _kron_preconditioner,
    _layout,
    _lr,
    _math,
    _matrix_precond,
    _momentum,
    _orthogonalize,
    _packed,
    _projection,
    _rectify,
    _static,
    _stochastic_decay,
    _tree,
    _trust_ratio,
    _weight_decay,
):
    __all__ += list(_m.__all__)
del _m
