"""Parity against timm's own torch optimizers and schedulers, as one importable module.

The ``jaxopt-timm parity`` command, the tests and the benchmarks all check our
optimizers against timm's the same way: the same mixed-layout problem and
loss (``_problem``), the same reference modes keyed by each record's
``parity_mode`` (``_modes``), the same deviation metric and tolerance with a
result that checks itself (``_result``), one side-by-side loop (``_run``) and
the schedule comparison (``_schedules``); the names timm lacks run their own
reference libraries through timm's factory (``_references``). They import it from here so each
fact lives in one place. Nothing here imports torch or timm at import time:
torch is a test-time dependency, loaded only when a reference runs.
"""

from ._loader import INSTALL_HINT, TimmNotInstalled, load_timm, timm_optim_module, timm_utils_module, torch_module
from ._modes import PARITY_MODES, ParityMode, ReferenceMode, kron_eager, reference_mode, timm_ns_float32
from ._problem import DEFAULT_LR, DEFAULT_STEPS, SHAPES, drift, from_tree, jax_loss, make_arrays, to_tree, torch_loss
from ._references import ensure_reference, prepare_reference
from ._result import MIN_DISPLACEMENT, TOL, ParityResult, deviation
from ._run import factory_parity, reference_parity, run_parity
from ._schedules import SCHEDULE_TOL, SCHEDULES, schedule_parity

__all__ = [
    # loading the reference
    'INSTALL_HINT',
    'TimmNotInstalled',
    'load_timm',
    'timm_optim_module',
    'timm_utils_module',
    'torch_module',
    'ensure_reference',
    'prepare_reference',
    # reference modes
    'PARITY_MODES',
    'ParityMode',
    'ReferenceMode',
    'kron_eager',
    'reference_mode',
    'timm_ns_float32',
    # the problem
    'DEFAULT_LR',
    'DEFAULT_STEPS',
    'SHAPES',
    'drift',
    'from_tree',
    'jax_loss',
    'make_arrays',
    'to_tree',
    'torch_loss',
    # the metric and the result
    'MIN_DISPLACEMENT',
    'TOL',
    'ParityResult',
    'deviation',
    # running
    'factory_parity',
    'reference_parity',
    'run_parity',
    'SCHEDULE_TOL',
    'SCHEDULES',
    'schedule_parity',
]
