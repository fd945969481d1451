"""The schedule's position across frameworks.

Every schedule here but plateau is a pure function of the update count, which
crosses inside the optimizer state (its ``count`` fields); timm's schedulers
other than plateau keep no position either (train.py passes the epoch and
``num_updates`` to ``step``/``step_update``). The plateau schedule is a state
machine: timm's ``PlateauLRScheduler.state_dict()`` keeps ``best`` and
``last_epoch``, and its lr lives in the optimizer's param groups. A timm
resume starts with no bad epochs and no cooldown (torch's
``ReduceLROnPlateau`` counters are not saved); the state made here does the
same, so the converted run continues exactly as a resumed timm run.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import jax.numpy as jnp
import numpy as np

from jaxopt_timm.scheduler import PlateauSchedule, PlateauState

__all__ = ['plateau_from_timm', 'plateau_to_timm']


def plateau_from_timm(
    scheduler_state_dict: Mapping[str, Any],
    schedule: PlateauSchedule,
    optimizer_state_dict: Optional[Mapping[str, Any]] = None,
) -> PlateauState:
    """The :class:`~jaxopt_timm.scheduler.PlateauState` of ``schedule`` (built with the run's arguments) that
    continues a timm run whose ``PlateauLRScheduler.state_dict()`` is ``scheduler_state_dict``; the current lr
    is read from ``optimizer_state_dict``'s first param group, divided by its ``lr_scale`` (default: the
    schedule's initial lr)."""
    if not isinstance(schedule, PlateauSchedule):
        raise ValueError(
            f'Invalid schedule: {schedule!r}, expected a PlateauSchedule (create_scheduler_v2(..., sched=\'plateau\'))'
        )
    missing = [k for k in ('best', 'last_epoch') if k not in (scheduler_state_dict or {})]
    if missing:
        raise ValueError(f'Invalid scheduler_state_dict: no {missing}; expected timm PlateauLRScheduler.state_dict()')
    state = schedule.init()
    lr = state.lr
    if optimizer_state_dict is not None:
        group = optimizer_state_dict['param_groups'][0]
        # timm's plateau scheduler writes lr * lr_scale into each group; the state holds the unscaled lr
        lr = jnp.asarray(float(group['lr']) / float(group.get('lr_scale', 1.0)), jnp.float32)
    return state._replace(
        lr=lr,
        best=jnp.asarray(float(scheduler_state_dict['best']), jnp.float32),
        last_epoch=jnp.asarray(int(scheduler_state_dict['last_epoch']), jnp.int32),
    )


def plateau_to_timm(state: PlateauState) -> Dict[str, Any]:
    """timm's ``PlateauLRScheduler.state_dict()`` for ``state`` (its lr goes with the optimizer's param groups:
    :func:`jaxopt_timm.interop.to_timm` with ``lr=float(state.lr)``)."""
    if not isinstance(state, PlateauState):
        raise ValueError(f'Invalid state: {type(state).__name__}, expected a PlateauState')
    return {'best': float(np.asarray(state.best)), 'last_epoch': int(np.asarray(state.last_epoch))}
