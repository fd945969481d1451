"""timm's learning-rate schedulers as pure JAX functions ``schedule(t) -> lr``.

One module per timm scheduler (``cosine``, ``tanh``, ``step``, ``multistep``,
``poly``, ``wsd``, ``plateau``) plus mmengine's ``onecycle``; the shared
pieces live in ``_core`` (the schedule object, steps, float32 powers),
``_cycles`` (restarts), ``_noise`` and ``_warmup`` (the warmup-and-noise frame
every timm scheduler shares); the factory mirrors
``timm.scheduler.create_scheduler_v2``.
"""

from ._core import Schedule, as_step, per_epoch
from ._noise import noise_fn
from ._cosine import cosine
from ._factory import SCHEDULERS, create_scheduler, create_scheduler_v2, scheduler_kwargs
from ._multistep import multistep
from ._onecycle import onecycle
from ._plateau import PlateauSchedule, PlateauState, plateau
from ._poly import poly
from ._step import step
from ._tanh import tanh
from ._wsd import DECAY_FNS, STABLE_FNS, wsd

__all__ = [
    'Schedule',
    'PlateauSchedule',
    'PlateauState',
    'SCHEDULERS',
    'STABLE_FNS',
    'DECAY_FNS',
    'cosine',
    'tanh',
    'step',
    'multistep',
    'poly',
    'wsd',
    'plateau',
    'onecycle',
    'create_scheduler',
    'create_scheduler_v2',
    'scheduler_kwargs',
    'per_epoch',
    'noise_fn',
    'as_step',
]
