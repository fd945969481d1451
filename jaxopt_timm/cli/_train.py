"""``jaxopt-timm train``: a timm train.py-style run on scikit-learn's bundled handwritten digits.

This module is the command: its arguments (timm's names), the optimizer and
schedule they describe, and the epoch loop. The model is a small Flax linen
MLP (or ``--model cnn``, :mod:`._models`); the optimizer and schedule come from
:func:`jaxopt_timm.create_optimizer_v2` / :func:`jaxopt_timm.create_scheduler_v2`
with timm's argument names, and the schedule runs inside the jitted update
(:mod:`._steps`). The data and its resumable batch order live in :mod:`._data`;
what ``--output`` writes and ``--resume`` reads back in :mod:`._checkpoints`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_timm as jt

from ._args import CLIError, add_optimizer_args, add_scheduler_args, check_schedule_args
from ._checkpoints import TrainState, append_summary, load_checkpoint, save_checkpoint, write_results
from ._data import epoch_batches, load_digits_split
from ._models import GROUP_MATCHER, MODELS, make_model
from ._steps import make_steps

__all__ = ['add_arguments', 'run', 'train', 'load_digits_split', 'default_lr', 'TrainResult', 'DEFAULTS']

# The default recipe: AdamW + cosine with a short warmup, stepped per epoch as in timm.
DEFAULTS = dict(opt='adamw', lr=None, weight_decay=0.05, sched='cosine', epochs=20, warmup_epochs=2,
                warmup_lr=1e-5, min_lr=1e-5, batch_size=64)


def default_lr(opt: str) -> float:
    """The lr the digits job uses for ``opt`` when neither ``--lr`` nor ``--lr-base`` is given: the
    record's ``default_lr`` (per family, tuned for the digits model at batch 64)."""
    return jt.get_optimizer_info(opt).default_lr
def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group('Model and data')
    g.add_argument('--model', default='mlp', choices=sorted(MODELS), help='model (default: mlp)')
    g.add_argument('--model-width', type=int, default=0, help='hidden width (0: the model default)')
    g.add_argument('--model-depth', type=int, default=-1, help='number of blocks (-1: the model default)')
    g.add_argument('-b', '--batch-size', type=int, default=DEFAULTS['batch_size'], metavar='N',
                   help=f"batch size (default: {DEFAULTS['batch_size']})")
    g.add_argument('--smoothing', type=float, default=0.0, help='label smoothing (default: 0)')
    g.add_argument('--train-subset', type=int, default=0, help='use only the first N training images (0: all)')
    add_optimizer_args(p, DEFAULTS['opt'])
    p.set_defaults(weight_decay=DEFAULTS['weight_decay'])
    g = p.add_argument_group('Optimizer extras')
    g.add_argument('--layer-decay', type=float, default=None, help='layer-wise lr decay (e.g. 0.75)')
    g.add_argument('--clip-grad', type=float, default=None, metavar='NORM', help='gradient clipping (off)')
    g.add_argument('--clip-mode', type=str, default='norm', choices=('norm', 'value', 'agc'),
                   help='gradient clipping mode')
    g.add_argument('--lr-base', type=float, default=None, metavar='LR',
                   help='timm: lr = lr_base * batch_size / lr_base_size when --lr is not given')
    g.add_argument('--lr-base-size', type=int, default=256, metavar='DIV', help='timm: base batch size')
    g.add_argument('--lr-base-scale', type=str, default='', metavar='SCALE',
                   help="timm: 'linear' or 'sqrt' (default: sqrt for ada*/lamb, else linear)")
    add_scheduler_args(p, DEFAULTS)
    g = p.add_argument_group('Run')
    g.add_argument('--seed', type=int, default=42, metavar='S', help='random seed (default: 42)')
    g.add_argument('--output', default='', metavar='DIR', help='write checkpoints and summaries here')
    g.add_argument('--resume', default='', metavar='PATH',
                   help='resume the full training state from a checkpoint (DIR/checkpoint-N, or DIR: the latest)')
    g.add_argument('--checkpoint-hist', type=int, default=1, metavar='N', help='checkpoints to keep (default: 1)')
    g.add_argument('--no-progress', action='store_true', help='no progress bar')
    g.add_argument('--quiet', action='store_true', help='only the final summary')



@dataclasses.dataclass
class TrainResult:
    params: Any
    history: List[Dict[str, float]]
    test_acc: float
    test_loss: float
    train_time_s: float
    lr: float
    num_epochs: int


def _resolve_lr(args: argparse.Namespace) -> float:
    if args.lr is not None:
        return args.lr
    if args.lr_base is not None:  # timm train.py's rule
        ratio = args.batch_size / args.lr_base_size
        scale = args.lr_base_scale or ('sqrt' if any(o in args.opt.lower() for o in ('ada', 'lamb')) else 'linear')
        return args.lr_base * (ratio ** 0.5 if scale == 'sqrt' else ratio)
    return default_lr(args.opt)


def _opt_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kw = dict(args.opt_kwargs or {})
    if args.opt_eps is not None:
        kw['eps'] = args.opt_eps
    if args.opt_betas is not None:
        kw['betas'] = tuple(args.opt_betas)
    return kw


def _check_args(args: argparse.Namespace) -> None:
    check_schedule_args(args)
    if args.batch_size < 1:
        raise CLIError(f'invalid --batch-size {args.batch_size}: must be >= 1')
    if args.weight_decay is not None and not args.weight_decay >= 0:
        raise CLIError(f'invalid --weight-decay {args.weight_decay:g}: must be >= 0')
    if not 0 <= args.smoothing < 1:
        raise CLIError(f'invalid --smoothing {args.smoothing:g}: must be in [0, 1)')
    if args.clip_grad is not None and not args.clip_grad > 0:
        raise CLIError(f'invalid --clip-grad {args.clip_grad:g}: must be > 0')
    if args.checkpoint_hist < 1:
        raise CLIError(f'invalid --checkpoint-hist {args.checkpoint_hist}: must be >= 1')


def _build(args: argparse.Namespace, params: Any, updates_per_epoch: int):
    """``(tx, schedule, lr, num_epochs, is_plateau, second_order)`` from the arguments, with timm's factories."""
    name = args.opt.lower()
    info = jt.get_optimizer_info(name)
    lr = _resolve_lr(args)
    sched_kw = jt.scheduler.scheduler_kwargs(args)
    sched_kw['num_epochs'] = args.epochs
    sched_kw['noise_seed'] = args.seed
    sched_kw['decay_epochs'] = args.decay_epochs
    if args.sched == 'onecycle':
        sched_kw['step_on_epochs'] = False  # OneCycle is per update by definition (torch/mmengine)
    schedule, num_epochs = jt.create_scheduler_v2(lr, **sched_kw, updates_per_epoch=updates_per_epoch)
    plateau = isinstance(schedule, jt.scheduler.PlateauSchedule)

    common = dict(weight_decay=args.weight_decay or 0.0, momentum=args.momentum, layer_decay=args.layer_decay,
                  group_matcher=GROUP_MATCHER if args.layer_decay is not None else None, **_opt_kwargs(args))
    clip = None
    if args.clip_grad is not None:
        clip = {'norm': optax.clip_by_global_norm, 'value': optax.clip,
                'agc': optax.adaptive_grad_clip}[args.clip_mode](args.clip_grad)

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
    return tx, schedule, lr, num_epochs, plateau, info.second_order


def _progress(total: int, desc: str, disable: bool):
    from tqdm.auto import tqdm
    tqdm.monitor_interval = 0  # no monitor thread
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True, file=sys.stderr)


def train(args: argparse.Namespace, log=print) -> TrainResult:
    """Run the job described by ``args`` (the parsed ``train`` arguments)."""
    _check_args(args)
    x_train, y_train, x_test, y_test = load_digits_split()
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    n = len(x_train)
    if args.batch_size > n:
        raise CLIError(f'invalid --batch-size {args.batch_size}: larger than the {n} training images')
    updates_per_epoch = n // args.batch_size  # drop_last, as timm's train loader

    model = make_model(args.model, args.model_width, args.model_depth)
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, 64), jnp.float32))['params']
    tx, schedule, lr, num_epochs, plateau, second_order = _build(args, params, updates_per_epoch)
    state = TrainState(params, tx.init(params))
    if plateau:
        state.plateau = schedule.init()
        state.lr = float(state.plateau.lr)
    meta = dict(opt=args.opt, sched=args.sched, lr=lr, epochs=num_epochs, model=args.model, seed=args.seed,
                batch_size=args.batch_size)
    if args.resume:
        state = load_checkpoint(args.resume, state)
        if not args.quiet:
            log(f'Resumed from {args.resume} at epoch {state.epoch} (update {state.step})')
    if state.epoch > num_epochs:
        raise CLIError(f'checkpoint is at epoch {state.epoch}, past the {num_epochs} epochs of this run')
    if args.output:
        os.makedirs(args.output, exist_ok=True)

    train_step, eval_step = make_steps(model, tx, second_order, args.smoothing)
    x_test_j, y_test_j = jnp.asarray(x_test), jnp.asarray(y_test)
    if not args.quiet:
        nparams = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        log(f'Model {args.model} ({nparams:,} params), {n} train / {len(x_test)} test digits, '
            f'{updates_per_epoch} updates per epoch')
        log(f'Optimizer {args.opt} lr {lr:g} weight_decay {args.weight_decay:g}; schedule {args.sched}, '
            f'{num_epochs} epochs' + (f', layer_decay {args.layer_decay:g}' if args.layer_decay is not None else ''))

    history: List[Dict[str, float]] = []
    t0 = time.perf_counter()
    test_loss = test_acc = float('nan')
    for epoch in range(state.epoch, num_epochs):
        if plateau:
            state.opt_state.hyperparams['learning_rate'] = jnp.asarray(state.lr, jnp.float32)
            epoch_lr = state.lr
        else:
            epoch_lr = float(schedule(state.step))
        losses, accs = [], []
        bar = _progress(updates_per_epoch, f'epoch {epoch + 1}/{num_epochs}', args.no_progress or args.quiet)
        params_, opt_state = state.params, state.opt_state
        for b, idx in enumerate(epoch_batches(args.seed, epoch, n, args.batch_size)):
            params_, opt_state, loss, acc = train_step(params_, opt_state, x_train[idx], y_train[idx])
            losses.append(loss)
            accs.append(acc)
            bar.update(1)
            if b % 8 == 0:
                bar.set_postfix(loss=f'{float(loss):.4f}')
        bar.close()
        state.params, state.opt_state = params_, opt_state
        state.step += updates_per_epoch
        state.epoch = epoch + 1
        train_loss = float(jnp.mean(jnp.stack(losses)))
        train_acc = float(jnp.mean(jnp.stack(accs)))
        test_loss, test_acc = (float(v) for v in eval_step(state.params, x_test_j, y_test_j))
        if not np.isfinite(train_loss):
            raise CLIError(f'training diverged at epoch {epoch + 1} (loss {train_loss}); try a smaller --lr')
        if plateau:
            state.plateau, new_lr = schedule.step(state.plateau, state.epoch, jnp.asarray(test_acc, jnp.float32))
            state.lr = float(new_lr)
        row = dict(epoch=epoch + 1, lr=epoch_lr, train_loss=train_loss, train_acc=train_acc,
                   test_loss=test_loss, test_acc=test_acc)
        history.append(row)
        if not args.quiet:
            log(f'epoch {epoch + 1:3d}/{num_epochs}  lr {epoch_lr:.3e}  train loss {train_loss:.4f} '
                f'acc {100 * train_acc:6.2f}%  test loss {test_loss:.4f} acc {100 * test_acc:6.2f}%')
        if args.output:
            save_checkpoint(args.output, state, args.checkpoint_hist, meta)
            append_summary(args.output, row)
    train_time = time.perf_counter() - t0
    result = TrainResult(state.params, history, test_acc, test_loss, train_time, lr, num_epochs)
    if args.output:
        write_results(args.output, meta, test_acc=test_acc, test_loss=test_loss, train_time_s=train_time,
                      history=history)
    return result


def run(args: argparse.Namespace) -> int:
    result = train(args)
    best = max((h['test_acc'] for h in result.history), default=float('nan'))
    print(f'Done: {len(result.history)} epochs in {result.train_time_s:.1f}s; final test accuracy '
          f'{100 * result.test_acc:.2f}% (best {100 * best:.2f}%), test loss {result.test_loss:.4f}'
          + (f'; outputs in {args.output}' if args.output else ''))
    return 0
