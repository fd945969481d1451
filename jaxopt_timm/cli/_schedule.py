"""``jaxopt-timm schedule``: print a schedule built from timm-style arguments and plot it to a PNG."""
from __future__ import annotations

import argparse
import os
from typing import List, Tuple

import jax.numpy as jnp
import numpy as np

import jaxopt_timm as jt

from ._args import CLIError, add_scheduler_args, check_schedule_args

__all__ = ['add_arguments', 'run', 'schedule_values', 'plot_schedule']


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_scheduler_args(p, dict(lr=0.1, epochs=100, warmup_epochs=0))
    g = p.add_argument_group('Output')
    g.add_argument('--updates-per-epoch', type=int, default=0, metavar='N',
                   help='updates per epoch (needed with --sched-on-updates; default 0: one value per epoch)')
    g.add_argument('--seed', type=int, default=42, help='noise seed (timm: --seed)')
    g.add_argument('--plot', default='schedule.png', metavar='FILE.png', help="PNG to write (default: schedule.png)")
    g.add_argument('--no-plot', action='store_true', help='print only')
    g.add_argument('--every', type=int, default=0, metavar='N', help='print every N-th value (default: ~20 rows)')


def schedule_values(args: argparse.Namespace) -> Tuple[np.ndarray, np.ndarray, int, str]:
    """``(t, lr(t), num_epochs, unit)`` over the whole run, ``unit`` 'epoch' or 'update'."""
    check_schedule_args(args)
    if args.updates_per_epoch < 0:
        raise CLIError(f'invalid --updates-per-epoch {args.updates_per_epoch}: must be >= 0')
    per_update = args.sched_on_updates or args.sched == 'onecycle'
    upe = args.updates_per_epoch
    if per_update and upe < 1:
        if args.sched_on_updates:
            raise CLIError('--sched-on-updates needs --updates-per-epoch N (N >= 1)')
        upe = 1
    kw = jt.scheduler.scheduler_kwargs(args)
    kw.update(num_epochs=args.epochs, decay_epochs=args.decay_epochs, noise_seed=args.seed,
              step_on_epochs=not per_update)
    sched, num_epochs = jt.create_scheduler_v2(args.lr, **kw, updates_per_epoch=upe if per_update else 0)
    if isinstance(sched, jt.scheduler.PlateauSchedule):
        # metric driven: a synthetic accuracy that improves for a third of the run, then stalls
        state = sched.init()
        lrs = [float(state.lr)]
        for epoch in range(1, num_epochs):
            metric = min(epoch, max(num_epochs // 3, 1)) / max(num_epochs, 1)
            state, lr = sched.step(state, epoch, jnp.asarray(metric, jnp.float32))
            lrs.append(float(lr))
        return np.arange(num_epochs), np.asarray(lrs), num_epochs, 'epoch'
    total = num_epochs * upe if per_update else num_epochs
    t = np.arange(total)
    return t, np.asarray(sched(jnp.asarray(t))), num_epochs, 'update' if per_update else 'epoch'


def plot_schedule(path: str, series: List[Tuple[np.ndarray, np.ndarray, str]], title: str, xlabel: str) -> None:
    """Write a PNG of lr curves with matplotlib's Agg canvas (no pyplot, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for t, lr, label in series:
        ax.plot(t, lr, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('learning rate')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1 or series[0][2]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format='png')


def run(args: argparse.Namespace) -> int:
    t, lrs, num_epochs, unit = schedule_values(args)
    every = args.every or max(1, len(t) // 20)
    print(f'{args.sched} schedule: lr {args.lr:g}, {num_epochs} epochs'
          + (f', {args.updates_per_epoch} updates per epoch' if unit == 'update' else '') + f' ({len(t)} {unit}s)')
    print(f'{unit:>8}  {"epoch":>8}  lr')
    for i in range(0, len(t), every):
        epoch = t[i] / (args.updates_per_epoch or 1) if unit == 'update' else t[i]
        print(f'{int(t[i]):8d}  {epoch:8.2f}  {lrs[i]:.6e}')
    if (len(t) - 1) % every:
        epoch = t[-1] / (args.updates_per_epoch or 1) if unit == 'update' else t[-1]
        print(f'{int(t[-1]):8d}  {epoch:8.2f}  {lrs[-1]:.6e}')
    print(f'min {lrs.min():.6e}  max {lrs.max():.6e}')
    if not args.no_plot:
        plot_schedule(args.plot, [(t, lrs, '')], f'{args.sched} (lr {args.lr:g}, {num_epochs} epochs)', unit)
        print(f'plot written to {args.plot}')
    return 0
