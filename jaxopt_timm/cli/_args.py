"""timm train.py's argument names, shared by the subcommands, and the one-line error they raise."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
from typing import Any, NoReturn, Optional, Sequence, Tuple


class CLIError(Exception):
    """A user error: reported as one line on stderr and a non-zero exit code, never a traceback."""


# The `cli` extra (pip install 'jaxopt_timm[cli]'): import name -> distribution name. The library itself needs
# none of these, so a lean install has none; a command checks for what it uses before doing any work.
CLI_EXTRA = {
    'flax': 'flax',
    'sklearn': 'scikit-learn',
    'matplotlib': 'matplotlib',
    'orbax': 'orbax-checkpoint',
    'tqdm': 'tqdm',
}


def missing_extra(names: Sequence[str], hint: str = '') -> CLIError:
    """The one-line error for the `cli` extra's packages ``names`` (import names) being absent."""
    dists = ', '.join(CLI_EXTRA.get(n.split('.')[0], n) for n in names)
    return CLIError(f"needs {dists}, not installed: pip install 'jaxopt_timm[cli]'{hint}")


def require_extra(*modules: str, hint: str = '') -> None:
    """Raise :func:`missing_extra` unless every one of ``modules`` (e.g. 'orbax.checkpoint') can be imported."""
    absent = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except ImportError:  # a dotted name whose parent package is absent
            found = False
        if not found:
            absent.append(m)
    if absent:
        raise missing_extra(absent, hint)


# Bounds on what the arguments can ask for, so no value exhausts memory or time before printing anything:
# a million epochs is far beyond any recipe; the schedules count updates in int32; seeds are 32-bit.
MAX_EPOCHS = 1_000_000
MAX_UPDATES = 2**31 - 1
MAX_SEED = 2**32 - 1


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``jaxopt-timm train: error: ...``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message}\n')


class ParseKwargs(argparse.Action):
    """timm's ``--opt-kwargs key=value ...`` (values parsed as Python literals when they are)."""

    def __call__(self, parser, namespace, values, option_string=None):
        kw = {}
        for value in values or ():
            if '=' not in value:
                raise argparse.ArgumentError(self, f'expected key=value, got {value!r}')
            key, raw = value.split('=', 1)
            try:
                kw[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                kw[key] = raw
        setattr(namespace, self.dest, kw)


def add_optimizer_args(p: argparse.ArgumentParser, opt_default: Optional[str] = 'adamw') -> None:
    g = p.add_argument_group('Optimizer parameters (timm train.py names)')
    g.add_argument(
        '--opt',
        default=opt_default,
        metavar='OPTIMIZER',
        help=f'optimizer name, see `jaxopt-timm list` (default: {opt_default!r})',
    )
    g.add_argument('--opt-eps', default=None, type=float, metavar='EPSILON', help='optimizer epsilon')
    g.add_argument('--opt-betas', default=None, type=float, nargs='+', metavar='BETA', help='optimizer betas')
    g.add_argument('--momentum', type=float, default=0.9, metavar='M', help='optimizer momentum (default: 0.9)')
    g.add_argument('--weight-decay', type=float, default=None, help='weight decay')
    g.add_argument(
        '--opt-kwargs',
        nargs='*',
        default={},
        action=ParseKwargs,
        help="extra optimizer arguments, key=value (timm's names)",
    )


def add_scheduler_args(p: argparse.ArgumentParser, defaults: dict) -> None:
    g = p.add_argument_group('Learning rate schedule parameters (timm train.py names)')
    g.add_argument(
        '--sched',
        type=str,
        default=defaults.get('sched', 'cosine'),
        metavar='SCHEDULER',
        help='cosine tanh step multistep poly wsd rsqrt constant plateau none onecycle',
    )
    g.add_argument(
        '--sched-on-updates',
        action='store_true',
        default=False,
        help='step the schedule per update instead of per epoch',
    )
    g.add_argument('--lr', type=float, default=defaults.get('lr'), metavar='LR', help='learning rate (peak)')
    g.add_argument(
        '--lr-noise', type=float, nargs='+', default=None, metavar='pct, pct', help='noise on/off epoch percentages'
    )
    g.add_argument('--lr-noise-pct', type=float, default=0.67, metavar='PERCENT', help='noise limit')
    g.add_argument('--lr-noise-std', type=float, default=1.0, metavar='STDDEV', help='noise std-dev')
    g.add_argument('--lr-cycle-mul', type=float, default=1.0, metavar='MULT', help='cycle length multiplier')
    g.add_argument('--lr-cycle-decay', type=float, default=0.5, metavar='MULT', help='per-cycle lr decay')
    g.add_argument('--lr-cycle-limit', type=int, default=1, metavar='N', help='number of cycles')
    g.add_argument('--lr-k-decay', type=float, default=1.0, help='k-decay (cosine, poly)')
    g.add_argument('--lr-decay-fn', type=str, default=None, help="wsd/rsqrt decay function ('1-sqrt', 'linear', ...)")
    g.add_argument('--lr-stable-timescale', type=float, default=None, help='rsqrt timescale in epochs')
    g.add_argument(
        '--warmup-lr', type=float, default=defaults.get('warmup_lr', 1e-5), metavar='LR', help='warmup start lr'
    )
    g.add_argument('--min-lr', type=float, default=defaults.get('min_lr', 0.0), metavar='LR', help='lr floor')
    g.add_argument('--epochs', type=int, default=defaults.get('epochs', 300), metavar='N', help='epochs')
    g.add_argument(
        '--decay-milestones',
        default=defaults.get('decay_milestones', [90, 180, 270]),
        type=int,
        nargs='+',
        metavar='MILESTONES',
        help='multistep milestones (epochs)',
    )
    g.add_argument(
        '--decay-epochs',
        type=float,
        default=defaults.get('decay_epochs'),
        metavar='N',
        help='epoch interval to decay lr (step, default 90); decay length (wsd, rsqrt; default 0.2 of the run)',
    )
    g.add_argument(
        '--warmup-epochs', type=int, default=defaults.get('warmup_epochs', 5), metavar='N', help='warmup epochs'
    )
    g.add_argument('--warmup-prefix', action='store_true', default=False, help='warmup before the schedule')
    g.add_argument('--cooldown-epochs', type=int, default=0, metavar='N', help='epochs at min_lr after the schedule')
    g.add_argument('--patience-epochs', type=int, default=10, metavar='N', help='plateau patience')
    g.add_argument('--decay-rate', '--dr', type=float, default=0.1, metavar='RATE', help='lr decay rate')


def check_schedule_args(args: argparse.Namespace) -> None:
    """The arguments no schedule can use: negative lr, non-positive epochs, negative warmup / cooldown."""
    if args.lr is not None and not args.lr >= 0:
        raise CLIError(f'invalid --lr {args.lr:g}: the learning rate must be >= 0')
    if not 1 <= args.epochs <= MAX_EPOCHS:
        raise CLIError(f'invalid --epochs {args.epochs}: must be in [1, {MAX_EPOCHS}]')
    if not 0 <= args.seed <= MAX_SEED:
        raise CLIError(f'invalid --seed {args.seed}: must be in [0, {MAX_SEED}]')
    if args.lr_cycle_limit < 1:
        raise CLIError(f'invalid --lr-cycle-limit {args.lr_cycle_limit}: must be >= 1')
    for name in ('warmup_epochs', 'cooldown_epochs', 'patience_epochs'):
        if getattr(args, name) < 0:
            raise CLIError(f"invalid --{name.replace('_', '-')} {getattr(args, name)}: must be >= 0")
    if args.warmup_lr < 0 or args.min_lr < 0:
        raise CLIError('invalid --warmup-lr / --min-lr: learning rates must be >= 0')
    if args.decay_epochs is not None and args.decay_epochs <= 0:
        raise CLIError(f'invalid --decay-epochs {args.decay_epochs:g}: must be > 0')


def check_run_length(num_epochs: int, updates_per_epoch: int) -> None:
    """The length of the run a schedule describes (cycles, warmup and cooldown included) is bounded."""
    if num_epochs > MAX_EPOCHS:
        raise CLIError(
            f'the schedule runs {num_epochs} epochs (--epochs with --lr-cycle-limit / --lr-cycle-mul, '
            f'warmup and cooldown); at most {MAX_EPOCHS} are accepted'
        )
    if num_epochs * max(updates_per_epoch, 1) > MAX_UPDATES:
        raise CLIError(
            f'{num_epochs} epochs of {updates_per_epoch} updates is more than the {MAX_UPDATES} updates '
            'a schedule can count (int32); use fewer --epochs or --updates-per-epoch'
        )


def create_schedule(lr: Any, updates_per_epoch: int, **kw: Any) -> Tuple[Any, int]:
    """:func:`jaxopt_timm.create_scheduler_v2` with the run's length bounded (:func:`check_run_length`)."""
    import jaxopt_timm as jt

    check_run_length(kw['num_epochs'], updates_per_epoch)  # before the library's own (unnamed) bound
    try:
        schedule, num_epochs = jt.create_scheduler_v2(lr, **kw, updates_per_epoch=updates_per_epoch)
    except OverflowError:
        raise CLIError(
            f"--lr-cycle-limit {kw.get('cycle_limit')} with --lr-cycle-mul {kw.get('cycle_mul'):g}: "
            f'the cycles run past {MAX_EPOCHS} epochs'
        ) from None
    check_run_length(num_epochs, updates_per_epoch)
    return schedule, num_epochs


def folder_problem(path: str) -> Optional[str]:
    """Why the folder ``path`` cannot be created, when a part of it is a file (``makedirs`` only says
    'File exists' or 'Not a directory'); None otherwise."""
    path = os.path.abspath(path)
    while path != os.path.dirname(path):
        if os.path.exists(path):
            return None if os.path.isdir(path) else f'{path} is a file, not a folder'
        path = os.path.dirname(path)
    return None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return ' '.join(text.split())


def fail(prog: str, exc: BaseException, code: int = 2) -> int:
    print(f'{prog}: error: {one_line(exc)}', file=sys.stderr)
    return code


def parse_with(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> Any:
    return parser.parse_args(argv)
