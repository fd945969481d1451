"""Schedules against timm's: our ``create_scheduler_v2`` next to timm's over a whole run.

The same arguments go to both factories; the lr of every epoch (and, stepped
per update, of every update) is compared, relative to the peak lr. 'onecycle'
(absent from timm) is compared with torch's ``OneCycleLR``; 'plateau' is fed
the same synthetic metric on both sides. torch and timm are imported only when
a comparison runs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import jax.numpy as jnp
import numpy as np

from jaxopt_timm.scheduler import create_scheduler_v2

from ._loader import load_timm

__all__ = ['SCHEDULES', 'SCHEDULE_TOL', 'schedule_parity']

SCHEDULES = ('cosine', 'tanh', 'step', 'multistep', 'poly', 'wsd', 'rsqrt', 'constant', 'plateau', 'onecycle')
SCHEDULE_TOL = 1e-6  # the bound on max|ours - timm| / lr: both sides compute the same closed forms


def schedule_parity(
    sched: str, epochs: int = 30, warmup_epochs: int = 3, updates_per_epoch: int = 10, lr: float = 0.1
) -> Tuple[float, int]:
    """``(max |ours - timm| / lr, values compared)`` over a whole run, per epoch and per update.

    timm's ``create_scheduler_v2`` is the reference; 'onecycle' (absent from
    timm) is compared with torch's ``OneCycleLR``; 'plateau' is fed the same
    synthetic metric on both sides.
    """
    if sched not in SCHEDULES:
        raise ValueError(f'schedule_parity: unknown sched {sched!r}; expected one of {", ".join(SCHEDULES)}')
    import torch

    _, timm_sched = load_timm()
    worst, count = 0.0, 0
    for on_updates in (False, True):
        if sched in ('plateau',) and on_updates:
            continue
        if sched == 'onecycle' and not on_updates:
            continue
        ours_s: Any  # a Schedule, or a PlateauSchedule for 'plateau'
        kw: Dict[str, Any]  # create_scheduler_v2's arguments, of mixed types
        kw = dict(
            sched=sched,
            num_epochs=epochs,
            warmup_epochs=warmup_epochs,
            warmup_lr=lr * 1e-2,
            min_lr=lr * 1e-3,
            decay_epochs=epochs // 3 if sched == 'step' else None,
            decay_milestones=(epochs // 3, 2 * epochs // 3),
            cycle_limit=2 if sched in ('cosine', 'tanh') else 1,
            cycle_decay=0.5,
            step_on_epochs=not on_updates,
        )
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=lr)
        if sched == 'onecycle':
            total = epochs * updates_per_epoch
            ref = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=total, pct_start=warmup_epochs / epochs
            )
            theirs: List[float] = []
            for _ in range(total):
                theirs.append(opt.param_groups[0]['lr'])
                opt.step()
                ref.step()
            ours_s, _ = create_scheduler_v2(
                lr,
                'onecycle',
                num_epochs=epochs,
                warmup_epochs=warmup_epochs,
                step_on_epochs=False,
                updates_per_epoch=updates_per_epoch,
            )
            ours = list(np.asarray(ours_s(jnp.arange(total))))
        else:
            timm_kw = {k: v for k, v in kw.items() if v is not None}
            if timm_kw.get('decay_epochs') is None:
                timm_kw.pop('decay_epochs', None)
            ref, num_epochs = timm_sched.create_scheduler_v2(
                opt, **timm_kw, updates_per_epoch=updates_per_epoch if on_updates else 0
            )
            ours_s, ours_epochs = create_scheduler_v2(
                lr, **kw, updates_per_epoch=updates_per_epoch if on_updates else 0
            )
            if ours_epochs != num_epochs:
                raise AssertionError(f'{sched}: num_epochs {ours_epochs} != timm {num_epochs}')
            theirs, ours = [], []
            if sched == 'plateau':
                state = ours_s.init()
                for epoch in range(num_epochs):
                    theirs.append(opt.param_groups[0]['lr'])
                    ours.append(float(state.lr))
                    metric = min(epoch, num_epochs // 3) / num_epochs
                    ref.step(epoch + 1, metric)
                    state, _ = ours_s.step(state, epoch + 1, jnp.asarray(metric, jnp.float32))
            elif on_updates:
                total = num_epochs * updates_per_epoch
                for t in range(total):
                    ref.step_update(num_updates=t)
                    theirs.append(opt.param_groups[0]['lr'])
                ours = list(np.asarray(ours_s(jnp.arange(total))))
            else:
                for epoch in range(num_epochs):
                    ref.step(epoch)
                    theirs.append(opt.param_groups[0]['lr'])
                ours = list(np.asarray(ours_s(jnp.arange(num_epochs))))
        err = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)))) / lr
        worst = max(worst, err)
        count += len(theirs)
    return worst, count
