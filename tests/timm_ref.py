"""Load the installed timm's ``timm.optim`` / ``timm.scheduler`` without its torchvision-bound top level.

The loader lives in the package (the ``jaxopt-timm parity`` command uses it too):
a bare ``timm`` package module is put in ``sys.modules`` with a minimal
``timm.layers`` and a ``timm.models`` exposing ``group_parameters``. If timm or
torch is missing it raises: a parity test must fail, never skip.
"""
from jaxopt_timm.cli._timm_loader import load_timm, torch_module

__all__ = ['load_timm', 'torch_module']
