"""timm's ``args`` object as :func:`create_scheduler_v2` keywords: :func:`scheduler_kwargs` (timm's
``scheduler_kwargs``) and, for :func:`create_scheduler`'s messages, which ``args`` attribute each keyword
is read from.

Split from :mod:`._factory`, which exports :func:`scheduler_kwargs` with the factories, so that each module
stays short.
"""

from __future__ import annotations

from typing import Any, Optional

from .._validate import check_bool

__all__ = ['scheduler_kwargs']


def scheduler_kwargs(cfg: Any, decreasing_metric: Optional[bool] = None) -> dict:
    """timm's ``scheduler_kwargs``: argparse / config attributes to :func:`create_scheduler_v2` kwargs."""
    eval_metric = getattr(cfg, 'eval_metric', 'top1')
    if decreasing_metric is not None:
        plateau_mode = 'min' if decreasing_metric else 'max'
    else:
        plateau_mode = 'min' if 'loss' in eval_metric else 'max'
    sched_on_updates = getattr(cfg, 'sched_on_updates', False)
    check_bool('sched_on_updates', sched_on_updates)
    return dict(
        sched=cfg.sched,
        num_epochs=getattr(cfg, 'epochs', 100),
        decay_epochs=getattr(cfg, 'decay_epochs', 30),
        decay_milestones=getattr(cfg, 'decay_milestones', [30, 60]),
        warmup_epochs=getattr(cfg, 'warmup_epochs', 5),
        cooldown_epochs=getattr(cfg, 'cooldown_epochs', 0),
        patience_epochs=getattr(cfg, 'patience_epochs', 10),
        decay_rate=getattr(cfg, 'decay_rate', 0.1),
        min_lr=getattr(cfg, 'min_lr', 0.0),
        warmup_lr=getattr(cfg, 'warmup_lr', 1e-5),
        warmup_prefix=getattr(cfg, 'warmup_prefix', False),
        noise=getattr(cfg, 'lr_noise', None),
        noise_pct=getattr(cfg, 'lr_noise_pct', 0.67),
        noise_std=getattr(cfg, 'lr_noise_std', 1.0),
        noise_seed=getattr(cfg, 'seed', 42),
        cycle_mul=getattr(cfg, 'lr_cycle_mul', 1.0),
        cycle_decay=getattr(cfg, 'lr_cycle_decay', 0.1),
        cycle_limit=getattr(cfg, 'lr_cycle_limit', 1),
        k_decay=getattr(cfg, 'lr_k_decay', 1.0),
        decay_fn=getattr(cfg, 'lr_decay_fn', None),
        stable_timescale=getattr(cfg, 'lr_stable_timescale', None),
        plateau_mode=plateau_mode,
        step_on_epochs=not sched_on_updates,
    )


# create_scheduler_v2's argument -> the attribute scheduler_kwargs reads it from, where they differ
_ARG_ATTRS = {
    'num_epochs': 'epochs',
    'noise': 'lr_noise',
    'noise_pct': 'lr_noise_pct',
    'noise_std': 'lr_noise_std',
    'noise_seed': 'seed',
    'cycle_mul': 'lr_cycle_mul',
    'cycle_decay': 'lr_cycle_decay',
    'cycle_limit': 'lr_cycle_limit',
    'k_decay': 'lr_k_decay',
    'decay_fn': 'lr_decay_fn',
    'stable_timescale': 'lr_stable_timescale',
}
