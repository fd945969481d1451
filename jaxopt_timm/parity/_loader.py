"""Load an installed timm's ``timm.optim`` / ``timm.scheduler`` (and ``timm.utils`` modules) without its
torchvision-bound top level.

Every parity run (the tests, the ``jaxopt-timm parity`` command, the step
benchmark) needs timm's optimizers and schedulers, but timm's package
``__init__`` imports its models and, through them, torchvision, which those do
not need. A bare ``timm`` package module is put in ``sys.modules`` with a
minimal ``timm.layers`` and a ``timm.models`` exposing ``group_parameters``
from timm's own ``_manipulate.py``. ``timm.utils``' own ``__init__`` imports torchvision too (through
its checkpoint and model helpers), so :func:`timm_utils_module` loads single modules of it (``model_ema``,
``clip_grad``, ``agc``) under a bare ``timm.utils``. torch and timm load only when
:func:`load_timm` is called, never at import: torch is a test-time dependency.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Any, Dict

import numpy as np

__all__ = ['load_timm', 'timm_optim_module', 'timm_utils_module', 'TimmNotInstalled', 'INSTALL_HINT', 'torch_module']

INSTALL_HINT = (
    'install the reference with: pip install "torch==2.13.0" (a CPU build) && pip install --no-deps '
    '"timm==1.0.31" (or run: bash scripts/install.sh)'
)

_LOADED: Dict[str, Any] = {}
_find_spec = importlib.util.find_spec  # indirection: tests simulate a missing timm


class TimmNotInstalled(RuntimeError):
    """torch or timm is missing: a parity check cannot run (and must fail, never skip)."""


def _bare_package(name: str, path: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    mod.__file__ = os.path.join(path, '__init__.py')
    # a real spec, so importlib.util.find_spec(name) keeps working once the bare module is in sys.modules
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    mod.__spec__.submodule_search_locations = [path]
    sys.modules[name] = mod
    return mod


def load_timm():
    """Return ``(timm.optim, timm.scheduler)`` from the installed timm wheel; raise TimmNotInstalled if absent."""
    if 'optim' in _LOADED:
        return _LOADED['optim'], _LOADED['scheduler']
    if _find_spec('torch') is None:
        raise TimmNotInstalled(f'torch is not installed; {INSTALL_HINT}')
    existing = sys.modules.get('timm')
    if existing is not None and getattr(existing, '__path__', None):
        root = list(existing.__path__)[0]  # already loaded (bare or real): find_spec would consult its __spec__
    else:
        spec = _find_spec('timm')
        if spec is None or not spec.submodule_search_locations:
            raise TimmNotInstalled(f'timm is not installed; {INSTALL_HINT}')
        root = list(spec.submodule_search_locations)[0]
    importlib.import_module('torch')
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


def timm_optim_module(name: str) -> types.ModuleType:
    """timm's ``timm.optim.<name>`` module (e.g. ``'muon'``), importable only once :func:`load_timm` has run."""
    load_timm()
    return importlib.import_module(f'timm.optim.{name}')


def timm_utils_module(name: str) -> types.ModuleType:
    """timm's ``timm.utils.<name>`` module (e.g. ``'model_ema'``, ``'clip_grad'``, ``'agc'``), loaded without
    ``timm.utils``' ``__init__`` (which needs torchvision); raises TimmNotInstalled if torch or timm is absent."""
    load_timm()
    timm = sys.modules['timm']
    if 'timm.utils' not in sys.modules:
        setattr(timm, 'utils', _bare_package('timm.utils', os.path.join(list(timm.__path__)[0], 'utils')))
    return importlib.import_module(f'timm.utils.{name}')


def torch_module(flat: Dict[str, Any]) -> Any:
    """A ``torch.nn.Module`` whose parameters are ``flat``'s arrays under their dotted names (copied)."""
    import torch

    root = torch.nn.Module()
    for name, value in flat.items():
        mod = root
        *parents, leaf = name.split('.')
        for part in parents:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, torch.nn.Parameter(torch.tensor(np.array(value, copy=True))))
    return root
