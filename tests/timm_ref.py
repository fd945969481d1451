"""Load the installed timm's ``timm.optim`` / ``timm.scheduler`` without its torchvision-bound top level.

timm's package ``__init__`` imports its models (and through them
torchvision, which has no CPU build here). The optimizers and schedulers need
only torch, so a bare ``timm`` package module is put in ``sys.modules`` with a
minimal ``timm.layers`` (``use_reentrant_ckpt``) and a ``timm.models`` exposing
``group_parameters`` from timm's own ``_manipulate.py``. If timm or torch is
missing this raises: a parity test must fail, never skip.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

_LOADED = {}


def _bare_package(name: str, path: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    mod.__file__ = os.path.join(path, '__init__.py')
    sys.modules[name] = mod
    return mod


def load_timm():
    """Return ``(timm.optim, timm.scheduler)`` from the installed timm wheel."""
    if 'optim' in _LOADED:
        return _LOADED['optim'], _LOADED['scheduler']
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - reported as a failure
        raise RuntimeError('torch is not installed: run the README test command (scripts/install_test_deps.sh)') from e
    spec = importlib.util.find_spec('timm')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('timm is not installed: run the README test command (scripts/install_test_deps.sh)')
    root = list(spec.submodule_search_locations)[0]
    if 'timm' not in sys.modules or not hasattr(sys.modules['timm'], '__path__'):
        timm = _bare_package('timm', root)
    else:
        timm = sys.modules['timm']
    if 'timm.layers' not in sys.modules:
        layers = _bare_package('timm.layers', os.path.join(root, 'layers'))
        layers.use_reentrant_ckpt = lambda: False
        timm.layers = layers
    if 'timm.models' not in sys.modules:
        models = _bare_package('timm.models', os.path.join(root, 'models'))
        manip = importlib.import_module('timm.models._manipulate')
        models.group_parameters = manip.group_parameters
        models.group_modules = manip.group_modules
        timm.models = models
    optim = importlib.import_module('timm.optim')
    scheduler = importlib.import_module('timm.scheduler')
    _LOADED['optim'], _LOADED['scheduler'] = optim, scheduler
    return optim, scheduler
