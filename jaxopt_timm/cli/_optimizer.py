"""The ``train`` job's optimizer and schedule: what its arguments (timm's names, :mod:`._train_args`)
describe, built with :func:`jaxopt_timm.create_optimizer_v2` / :func:`jaxopt_timm.create_scheduler_v2`.

``--clip-grad`` is chained in front as timm's :func:`jaxopt_timm.dispatch_clip_grad` on the Flax layouts; a
plateau schedule, driven by the test accuracy each epoch, sets the lr as an injected hyperparameter. Split
from :mod:`._train` (the command and its epoch loop) so that each module stays short.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax.numpy as jnp
import optax

import jaxopt_timm as jt

from ._args import create_schedule
from ._train_args import opt_kwargs

__all__ = ['make_optimizer']


def make_optimizer(args: argparse.Namespace, params: Any, lr: float, updates_per_epoch: int):
    """``(tx, schedule, num_epochs, is_plateau, info)`` from the arguments, with timm's factories (``info``: the
    optimizer's record: its extra update arguments and evaluation point)."""
    from ._models import GROUP_MATCHER

    name = args.opt.lower()
    info = jt.get_optimizer_info(name)
    sched_kw = jt.scheduler.scheduler_kwargs(args)
    sched_kw['num_epochs'] = args.epochs
    sched_kw['noise_seed'] = args.seed
    sched_kw['decay_epochs'] = args.decay_epochs
    if args.sched == 'onecycle':
        sched_kw['step_on_epochs'] = False  # OneCycle is per update by definition (torch/mmengine)
    schedule, num_epochs = create_schedule(lr, updates_per_epoch, **sched_kw)
    plateau = isinstance(schedule, jt.scheduler.PlateauSchedule)

    common = dict(
        weight_decay=args.weight_decay or 0.0,
        momentum=args.momentum,
        layer_decay=args.layer_decay,
        group_matcher=GROUP_MATCHER if args.layer_decay is not None else None,
        **opt_kwargs(args),
    )
    if args.skip_nonfinite:
        common['skip_nonfinite'] = True  # the factory wraps the optimizer in a guard that counts skipped steps
    clip = None
    if args.clip_grad is not None:
        # timm's math (torch's clip_grad_norm_ / clip_grad_value_, timm's AGC), on the Flax model's layouts
        clip = jt.dispatch_clip_grad(args.clip_grad, mode=args.clip_mode, layout='flax')
        if args.clip_mode == 'agc':  # timm train.py: dispatch_clip_grad(model_parameters(model, exclude_head=True))
            clip = optax.masked(clip, lambda p: {name: name != 'head' for name in p})

    def make(learning_rate):
        tx = jt.create_optimizer_v2(params, name, lr=learning_rate, **common)
        return tx if clip is None else optax.chain(clip, tx)

    if plateau:
        # metric-driven lr: injected as a hyperparameter and set from the plateau state each epoch
        if info.accepts('max_lr') and 'max_lr' not in common:
            common['max_lr'] = lr  # corrected weight decay needs the peak lr; the injected lr is traced
        tx = optax.inject_hyperparams(make)(learning_rate=jnp.asarray(schedule.init().lr, jnp.float32))
    else:
        tx = make(schedule)
    return tx, schedule, num_epochs, plateau, info
