"""``jaxopt-timm schedule``: print a schedule built from timm-style arguments and plot it to a PNG."""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any, Callable, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_timm as jt

from ._args import (
    MAX_UPDATES,
    CLIError,
    add_scheduler_args,
    check_schedule_args,
    create_schedule,
    folder_problem,
    require_extra,
)

__all__ = ['add_arguments', 'run', 'schedule_values', 'plot_schedule']


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_scheduler_args(p, dict(lr=0.1, epochs=100, warmup_epochs=0))
    g = p.add_argument_group('Output')
    g.add_argument(
        '--updates-per-epoch',
        type=int,
        default=0,
        metavar='N',
        help='updates per epoch (needed with --sched-on-updates; default 0: one value per epoch)',
    )
    g.add_argument('--seed', type=int, default=42, help='noise seed (timm: --seed)')
    g.add_argument('--plot', default='schedule.png', metavar='FILE.png', help="PNG to write (default: schedule.png)")
    g.add_argument('--no-plot', action='store_true', help='print only')
    g.add_argument('--every', type=int, default=0, metavar='N', help='print every N-th value (default: ~20 rows)')


MAX_POINTS = 10_000  # values plotted: a longer run is sampled evenly, its first and last values included
_CHUNK = 1 << 16  # values evaluated per call, so memory stays bounded however long the run


def _schedule(args: argparse.Namespace) -> Tuple[Any, int, int, bool]:
    """``(schedule, num_epochs, updates_per_epoch, per_update)`` from the arguments, every bound checked."""
    check_schedule_args(args)
    if not 0 <= args.updates_per_epoch <= MAX_UPDATES:
        raise CLIError(f'invalid --updates-per-epoch {args.updates_per_epoch}: must be in [0, {MAX_UPDATES}]')
    per_update = args.sched_on_updates or args.sched == 'onecycle'
    upe = args.updates_per_epoch
    if per_update and upe < 1:
        if args.sched_on_updates:
            raise CLIError('--sched-on-updates needs --updates-per-epoch N (N >= 1)')
        upe = 1
    kw = jt.scheduler.scheduler_kwargs(args)
    kw.update(
        num_epochs=args.epochs, decay_epochs=args.decay_epochs, noise_seed=args.seed, step_on_epochs=not per_update
    )
    sched, num_epochs = create_schedule(args.lr, upe if per_update else 0, **kw)
    return sched, num_epochs, upe, per_update


def _plateau_run(sched: Any, num_epochs: int) -> np.ndarray:
    """A plateau schedule's lr per epoch, driven by a synthetic accuracy that improves for a third of the
    run, then stalls (one compiled scan: a Python loop would take milliseconds per epoch)."""
    stall = max(num_epochs // 3, 1)

    def body(state, epoch):
        metric = jnp.minimum(epoch, stall).astype(jnp.float32) / max(num_epochs, 1)
        state, lr = sched.step(state, epoch, metric)
        return state, lr

    state = sched.init()
    _, lrs = jax.lax.scan(body, state, jnp.arange(1, num_epochs, dtype=jnp.int32))
    return np.concatenate([[float(state.lr)], np.asarray(lrs, np.float64)])


def _values(sched: Any, t: np.ndarray) -> np.ndarray:
    """``sched`` at the steps ``t``, evaluated a chunk at a time."""
    return np.concatenate(
        [np.asarray(sched(jnp.asarray(t[i : i + _CHUNK], jnp.int32))) for i in range(0, len(t), _CHUNK)]
        or [np.zeros(0)]
    )


def _sample(total: int, max_points: Optional[int]) -> np.ndarray:
    if max_points is None or total <= max_points:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max_points).round().astype(np.int64))


def _series(args: argparse.Namespace) -> Tuple[Callable[[np.ndarray], np.ndarray], int, int, str]:
    """``(values, total, num_epochs, unit)``: ``values(t)`` is the lr at the steps ``t`` of the ``total``."""
    sched, num_epochs, upe, per_update = _schedule(args)
    if isinstance(sched, jt.scheduler.PlateauSchedule):
        lrs = _plateau_run(sched, num_epochs)
        return (lambda t: lrs[t]), num_epochs, num_epochs, 'epoch'
    total = num_epochs * upe if per_update else num_epochs
    return functools.partial(_values, sched), total, num_epochs, 'update' if per_update else 'epoch'


def schedule_values(
    args: argparse.Namespace, max_points: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray, int, str]:
    """``(t, lr(t), num_epochs, unit)``, ``unit`` 'epoch' or 'update': every step of the run, or, when it
    has more than ``max_points`` steps, ``max_points`` evenly spaced ones (the first and last included)."""
    values, total, num_epochs, unit = _series(args)
    t = _sample(total, max_points)
    return t, values(t), num_epochs, unit


def _rows(values: Callable[[np.ndarray], np.ndarray], total: int, every: int) -> Iterator[Tuple[int, float]]:
    """``(t, lr)`` of the printed rows (every ``every``-th step and the last), computed as they are printed."""
    for start in range(0, total, every * _CHUNK):
        t = np.arange(start, min(start + every * _CHUNK, total), every)
        yield from zip(t.tolist(), values(t).tolist())
    if (total - 1) % every:
        yield total - 1, float(values(np.asarray([total - 1]))[0])


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
    fig.savefig(path, format='png')


def _check_plot_path(path: str) -> None:
    """Create the folder of ``--plot`` now, so a bad path is reported before any work, in one line."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f'--plot {path!r} is a folder; give a file name such as {os.path.join(path, "schedule.png")}')
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CLIError(
            f'--plot {path!r}: cannot create the folder {folder!r} ({folder_problem(folder) or e.strerror or e})'
        ) from None
    if not os.access(folder, os.W_OK):
        raise CLIError(f'--plot {path!r}: the folder {folder!r} is not writable')


def run(args: argparse.Namespace) -> int:
    if args.every < 0:
        raise CLIError(f'invalid --every {args.every}: must be >= 1 (or 0: about 20 rows)')
    if not args.no_plot:
        require_extra('matplotlib', hint=' (or print only: --no-plot)')
        _check_plot_path(args.plot)
    values, total, num_epochs, unit = _series(args)
    t = _sample(total, MAX_POINTS)
    lrs = values(t)
    every = args.every or max(1, total // 20)
    upe = args.updates_per_epoch or 1
    print(
        f'{args.sched} schedule: lr {args.lr:g}, {num_epochs} epochs'
        + (f', {args.updates_per_epoch} updates per epoch' if unit == 'update' else '')
        + f' ({total} {unit}s)'
    )
    print(f'{unit:>8}  {"epoch":>8}  lr')
    lo, hi = float(lrs.min()), float(lrs.max())
    for step, lr in _rows(values, total, every):
        print(f'{step:8d}  {step / upe if unit == "update" else step:8.2f}  {lr:.6e}')
        lo, hi = min(lo, lr), max(hi, lr)
    sampled = f' (over the printed and {len(t)} evenly spaced of the {total} {unit}s)' if len(t) < total else ''
    print(f'min {lo:.6e}  max {hi:.6e}{sampled}')
    if not args.no_plot:
        try:
            plot_schedule(args.plot, [(t, lrs, '')], f'{args.sched} (lr {args.lr:g}, {num_epochs} epochs)', unit)
        except OSError as e:
            raise CLIError(f'--plot {args.plot!r}: cannot write the PNG ({e.strerror or e})') from None
        print(f'plot written to {args.plot}')
    return 0
