"""``jaxopt-timm train``'s arguments: their definitions, their bounds, and the recipe a checkpoint records.

Every argument is checked before any work starts, and each check names the
flag, the value given and what is accepted, so a mistake costs one line on
stderr, not a traceback or a silently different run. Sizes are bounded too
(model width, depth and parameter count, epochs): no argument can make the
job exhaust the machine's memory before it prints anything.

:func:`run_config` is the recipe stored in every checkpoint; ``--resume``
compares it with the new arguments (:func:`config_changes`) and refuses a
different one unless ``--resume-config-change`` is given, because a resumed
run that silently changed its optimizer or batch size is not the run its
outputs claim to continue.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List

import jaxopt_timm as jt

from ._args import MAX_SEED, CLIError, add_optimizer_args, add_scheduler_args, check_schedule_args

__all__ = [
    'DEFAULTS',
    'default_lr',
    'add_arguments',
    'check_args',
    'resolve_lr',
    'opt_kwargs',
    'run_config',
    'config_changes',
    'MAX_WIDTH',
    'MAX_DEPTH',
    'MAX_PARAMS',
    'UNCHECKED_ON_RESUME',
]

# The default recipe: AdamW + cosine with a short warmup, stepped per epoch as in timm.
DEFAULTS: Dict[str, Any] = dict(
    opt='adamw',
    lr=None,
    weight_decay=0.05,
    sched='cosine',
    epochs=20,
    warmup_epochs=2,
    warmup_lr=1e-5,
    min_lr=1e-5,
    batch_size=64,
)

# Model size bounds: far above what 8x8 digits need, far below what exhausts a workstation.
MAX_WIDTH = 4096
MAX_DEPTH = 64
MAX_PARAMS = 20_000_000

# The keys of _models.MODELS, named here so parsing (and --help) needs no flax: _models imports it when a run starts.
MODEL_NAMES = ('cnn', 'mlp')

# Arguments that may differ between a run and its resumption: where it is written and read, how it
# reports progress, and how many checkpoints it keeps. Everything else shapes the numbers and is
# compared (--epochs included: it sets the length, hence the values, of every decaying schedule).
UNCHECKED_ON_RESUME = ('output', 'resume', 'resume_config_change', 'checkpoint_hist', 'no_progress', 'quiet')


def default_lr(opt: str) -> float:
    """The lr the digits job uses for ``opt`` when neither ``--lr`` nor ``--lr-base`` is given: the
    record's ``default_lr`` (per family, tuned for the digits model at batch 64)."""
    return jt.get_optimizer_info(opt).default_lr


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('Model and data')
    g.add_argument('--model', default='mlp', choices=MODEL_NAMES, help='model (default: mlp)')
    g.add_argument('--model-width', type=int, default=0, help=f'hidden width, 1..{MAX_WIDTH} (0: the model default)')
    g.add_argument(
        '--model-depth', type=int, default=-1, help=f'number of blocks, 0..{MAX_DEPTH} (-1: the model default)'
    )
    g.add_argument(
        '-b',
        '--batch-size',
        type=int,
        default=DEFAULTS['batch_size'],
        metavar='N',
        help=f"batch size (default: {DEFAULTS['batch_size']})",
    )
    g.add_argument('--smoothing', type=float, default=0.0, help='label smoothing (default: 0)')
    g.add_argument('--train-subset', type=int, default=0, help='use only the first N training images (0: all)')
    add_optimizer_args(p, DEFAULTS['opt'])
    p.set_defaults(weight_decay=DEFAULTS['weight_decay'])
    g = p.add_argument_group('Optimizer extras')
    g.add_argument('--layer-decay', type=float, default=None, help='layer-wise lr decay (e.g. 0.75)')
    g.add_argument(
        '--clip-grad',
        type=float,
        default=None,
        metavar='NORM',
        help="gradient clipping value, timm's dispatch_clip_grad (default: off)",
    )
    g.add_argument(
        '--clip-mode',
        type=str,
        default='norm',
        choices=('norm', 'value', 'agc'),
        help='gradient clipping mode: total 2-norm, value, or adaptive (agc: the head left out, as timm train.py)',
    )
    g.add_argument(
        '--skip-nonfinite',
        action='store_true',
        help='skip (and count, results.json skipped_steps) updates whose gradients are not all finite',
    )
    g.add_argument(
        '--lr-base',
        type=float,
        default=None,
        metavar='LR',
        help='timm: lr = lr_base * batch_size / lr_base_size when --lr is not given',
    )
    g.add_argument('--lr-base-size', type=int, default=256, metavar='DIV', help='timm: base batch size')
    g.add_argument(
        '--lr-base-scale',
        type=str,
        default='',
        metavar='SCALE',
        help="timm: 'linear' or 'sqrt' (default: sqrt for ada*/lamb, else linear)",
    )
    add_scheduler_args(p, DEFAULTS)
    g = p.add_argument_group('Model exponential moving average (timm train.py)')
    g.add_argument(
        '--model-ema',
        action='store_true',
        help="track timm's ModelEmaV3 of the weights; its test accuracy (ema_test_acc) beside the model's",
    )
    g.add_argument(
        '--model-ema-decay', type=float, default=0.9998, metavar='DECAY', help='EMA decay, in [0, 1] (default: 0.9998)'
    )
    g.add_argument(
        '--model-ema-warmup', action='store_true', help="warm the EMA decay up as timm's ModelEmaV3(use_warmup=True)"
    )
    g = p.add_argument_group('Run')
    g.add_argument('--seed', type=int, default=42, metavar='S', help=f'random seed, 0..{MAX_SEED}')
    g.add_argument(
        '--output',
        default='',
        metavar='DIR',
        help='write checkpoints and summaries here (a new or empty folder, or the folder of --resume)',
    )
    g.add_argument(
        '--resume',
        default='',
        metavar='PATH',
        help='resume the full training state from a checkpoint (DIR/checkpoint-N, or DIR: the latest)',
    )
    unchecked = ', '.join('--' + a.replace('_', '-') for a in UNCHECKED_ON_RESUME if a != 'resume_config_change')
    g.add_argument(
        '--resume-config-change',
        action='store_true',
        help="let --resume continue with arguments that differ from the checkpoint's recorded ones "
        f'(refused otherwise, listing them; --epochs is compared; never compared: {unchecked})',
    )
    g.add_argument('--checkpoint-hist', type=int, default=1, metavar='N', help='checkpoints to keep (default: 1)')
    g.add_argument('--no-progress', action='store_true', help='no progress bar')
    g.add_argument('--quiet', action='store_true', help='only the final summary')


def check_args(args: argparse.Namespace) -> None:
    """Every bound that does not need the data or the model: one :class:`CLIError` naming the flag."""
    check_schedule_args(args)
    if args.batch_size < 1:
        raise CLIError(f'invalid --batch-size {args.batch_size}: must be >= 1')
    if args.weight_decay is not None and not args.weight_decay >= 0:
        raise CLIError(f'invalid --weight-decay {args.weight_decay:g}: must be >= 0')
    if not 0 <= args.smoothing < 1:
        raise CLIError(f'invalid --smoothing {args.smoothing:g}: must be in [0, 1)')
    if args.clip_grad is not None and not args.clip_grad > 0:
        raise CLIError(f'invalid --clip-grad {args.clip_grad:g}: must be > 0')
    if not 0 <= args.model_ema_decay <= 1:
        raise CLIError(f'invalid --model-ema-decay {args.model_ema_decay:g}: must be in [0, 1]')
    if args.checkpoint_hist < 1:
        raise CLIError(f'invalid --checkpoint-hist {args.checkpoint_hist}: must be >= 1')
    if not 0 <= args.model_width <= MAX_WIDTH:
        raise CLIError(
            f'invalid --model-width {args.model_width}: must be in [1, {MAX_WIDTH}] (or 0: the model default)'
        )
    if not -1 <= args.model_depth <= MAX_DEPTH:
        raise CLIError(
            f'invalid --model-depth {args.model_depth}: must be in [0, {MAX_DEPTH}] (or -1: the model default)'
        )
    if args.train_subset < 0:
        raise CLIError(f'invalid --train-subset {args.train_subset}: must be >= 1 (or 0: all training images)')
    if args.lr_base_size < 1:
        raise CLIError(f'invalid --lr-base-size {args.lr_base_size}: must be >= 1')


def resolve_lr(args: argparse.Namespace) -> float:
    if args.lr is not None:
        return args.lr
    if args.lr_base is not None:  # timm train.py's rule
        ratio = args.batch_size / args.lr_base_size
        scale = args.lr_base_scale or ('sqrt' if any(o in args.opt.lower() for o in ('ada', 'lamb')) else 'linear')
        return args.lr_base * (ratio**0.5 if scale == 'sqrt' else ratio)
    return default_lr(args.opt)


def opt_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kw = dict(args.opt_kwargs or {})
    if args.opt_eps is not None:
        kw['eps'] = args.opt_eps
    if args.opt_betas is not None:
        kw['betas'] = tuple(args.opt_betas)
    return kw


def run_config(args: argparse.Namespace, lr: float) -> Dict[str, Any]:
    """The arguments that shape the run's numbers, JSON-ready: what a checkpoint records and a resume compares.

    The lr is the resolved one (``--lr``, timm's ``--lr-base`` rule or the optimizer's default), so
    spelling the same lr differently is not a change; ``--lr-base*`` are then left out.
    """
    skip = set(UNCHECKED_ON_RESUME) | {'command', 'lr_base', 'lr_base_size', 'lr_base_scale'}
    config = {k: v for k, v in sorted(vars(args).items()) if not k.startswith('_') and k not in skip}
    config['lr'] = lr
    if not args.model_ema:  # without an EMA its settings shape nothing (and older checkpoints lack them)
        for key in ('model_ema', 'model_ema_decay', 'model_ema_warmup'):
            config.pop(key, None)
    return json.loads(json.dumps(config, default=repr))  # as it reads back from meta.json: tuples as lists


def _flag_value(value: Any) -> str:
    if isinstance(value, list):
        return ' '.join(map(str, value)) or '[]'
    if isinstance(value, float):
        return f'{value:g}'
    return str(value)


def config_changes(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """``['--opt adamw -> sgd', ...]``: the compared arguments whose values differ (a key only one side
    has, from another version, counts as a change)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in UNCHECKED_ON_RESUME:
            continue
        a, b = old.get(key, '(unset)'), new.get(key, '(unset)')
        if a != b:
            out.append(f"--{key.replace('_', '-')} {_flag_value(a)} -> {_flag_value(b)}")
    return out
