"""``jaxopt-timm train``: a timm train.py-style run on scikit-learn's bundled handwritten digits.

This module is the command and its epoch loop; the optimizer and schedule its
arguments (timm's names, defined and bounded in :mod:`._train_args`) describe
are built in :mod:`._optimizer`. The model is a small Flax linen
MLP (or ``--model cnn``, :mod:`._models`); the optimizer and schedule come from
:func:`jaxopt_timm.create_optimizer_v2` / :func:`jaxopt_timm.create_scheduler_v2`
with timm's argument names, and the schedule runs inside the jitted update
(:mod:`._steps`). ``--clip-grad`` is timm's :func:`jaxopt_timm.dispatch_clip_grad`
on the Flax layouts; ``--model-ema`` timm's EMA of the weights (:mod:`._ema`). The data
and its resumable batch order live in :mod:`._data`; what ``--output`` writes and
``--resume`` reads back in :mod:`._checkpoints`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_timm as jt

from ._args import CLIError, require_extra
from ._checkpoints import (
    TrainState,
    check_output,
    create_output,
    latest_checkpoint,
    params_digest,
    read_checkpoint,
    restore_state,
    run_dir,
    same_folder,
    save_checkpoint,
    write_results,
    write_summary,
)
from ._data import epoch_batches, load_digits_split
from ._ema import ema_metrics, make_ema
from ._optimizer import make_optimizer
from ._steps import make_steps
from ._store import pause_point
from ._train_args import (
    DEFAULTS,
    MAX_PARAMS,
    add_arguments,
    check_args,
    config_changes,
    default_lr,
    resolve_lr,
    run_config,
)

__all__ = ['add_arguments', 'run', 'train', 'load_digits_split', 'default_lr', 'TrainResult', 'DEFAULTS']


@dataclasses.dataclass
class TrainResult:
    params: Any
    history: List[Dict[str, float]]  # every epoch of the run, those of a resumed checkpoint included
    test_acc: float
    test_loss: float
    train_time_s: float  # over every process that ran the run
    lr: float
    num_epochs: int
    start_epoch: int = 0  # epochs already done when this process started (a resume)
    skipped_steps: int = 0  # updates skipped for non-finite gradients (--skip-nonfinite)
    ema_params: Any = None  # --model-ema: the averaged weights, and their final test metrics
    ema_test_acc: Optional[float] = None
    ema_test_loss: Optional[float] = None


def _init_params(args: argparse.Namespace, model: Any) -> Any:
    """The model's initial params, after checking their number (on shapes only, nothing allocated)."""
    init = functools.partial(model.init, jax.random.key(args.seed), jnp.zeros((1, 64), jnp.float32))
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(jax.eval_shape(init)))
    if count > MAX_PARAMS:
        raise CLIError(
            f'--model {args.model} --model-width {args.model_width} --model-depth {args.model_depth}: '
            f'{count:,} parameters, at most {MAX_PARAMS:,} are accepted'
        )
    return init()['params']


def _resume(args: argparse.Namespace, config: Dict[str, Any], log) -> Tuple[str, Dict[str, Any]]:
    """The verified checkpoint ``--resume`` names and its meta.json; refused if it was made with other
    arguments, unless ``--resume-config-change``."""
    path, meta = read_checkpoint(args.resume)
    changes = config_changes(meta['config'], config)
    if changes and not args.resume_config_change:
        raise CLIError(
            f"--resume {path} was made with other arguments: {'; '.join(changes)} "
            '(pass --resume-config-change to continue with the new ones)'
        )
    if changes and not args.quiet:
        log(f"Resuming with changed arguments: {'; '.join(changes)}")
    return path, meta


def _progress(total: int, desc: str, disable: bool):
    from tqdm.auto import tqdm

    tqdm.monitor_interval = 0  # no monitor thread
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True, file=sys.stderr)


def _epoch_loss(losses: List[Any], skip_nonfinite: bool) -> float:
    """Mean training loss of an epoch; with ``--skip-nonfinite`` over the finite steps only (the skipped
    ones changed nothing)."""
    stacked = jnp.stack(losses)
    if skip_nonfinite:
        stacked = stacked[jnp.isfinite(stacked)]
        if not stacked.size:
            return float('nan')
    return float(jnp.mean(stacked))


def _skipped_steps(args: argparse.Namespace, opt_state: Any) -> int:
    # jt.optim exports its optimizer modules' names at import, where a type checker does not look
    return int(jt.optim.skipped_steps(opt_state)) if args.skip_nonfinite else 0  # type: ignore[attr-defined]


def train(args: argparse.Namespace, log=print) -> TrainResult:
    """Run the job described by ``args`` (the parsed ``train`` arguments)."""
    check_args(args)
    # the `cli` extra's packages this run imports, checked before any work (a lean install has none of them)
    require_extra('flax', 'sklearn', 'tqdm', *(('orbax.checkpoint',) if args.output or args.resume else ()))
    from ._models import make_model

    x_train, y_train, x_test, y_test = load_digits_split()
    if args.train_subset > len(x_train):
        raise CLIError(
            f'invalid --train-subset {args.train_subset}: must be in [1, {len(x_train)}] '
            f'(or 0: all {len(x_train)} training images)'
        )
    if args.train_subset:
        x_train, y_train = x_train[: args.train_subset], y_train[: args.train_subset]
    n = len(x_train)
    if args.batch_size > n:
        raise CLIError(f'invalid --batch-size {args.batch_size}: larger than the {n} training images')
    updates_per_epoch = n // args.batch_size  # drop_last, as timm's train loader
    lr = resolve_lr(args)
    config = run_config(args, lr)
    if args.output:
        check_output(args.output, args.resume)
    resume_path, resume_meta = _resume(args, config, log) if args.resume else (None, None)

    model = make_model(args.model, args.model_width, args.model_depth)
    params = _init_params(args, model)
    tx, schedule, num_epochs, plateau, info = make_optimizer(args, params, lr, updates_per_epoch)
    state = TrainState(params, tx.init(params))
    ema = make_ema(args)
    if ema is not None:
        state.ema = ema.init(params)
    if plateau:
        state.plateau = schedule.init()
        state.lr = float(state.plateau.lr)
    if resume_path is not None and resume_meta is not None:  # set together
        state = restore_state(resume_path, resume_meta, state)
        if not args.quiet:
            log(f'Resumed from {resume_path} at epoch {state.epoch} (update {state.step})')
    if state.epoch > num_epochs:
        raise CLIError(
            f'--resume {resume_path} is at epoch {state.epoch}, past the {num_epochs} epochs of this run '
            f'(--epochs {args.epochs})'
        )
    if args.output:
        create_output(args.output)
        if resume_path is not None and not same_folder(run_dir(resume_path), args.output):
            save_checkpoint(args.output, state, args.checkpoint_hist, config)  # the new folder resumes alone
        else:
            write_summary(args.output, state.history)  # drop rows saved after the resumed checkpoint

    train_step, eval_step = make_steps(model, tx, info, args.smoothing)
    x_test_j, y_test_j = jnp.asarray(x_test), jnp.asarray(y_test)
    if not args.quiet:
        nparams = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        log(
            f'Model {args.model} ({nparams:,} params), {n} train / {len(x_test)} test digits, '
            f'{updates_per_epoch} updates per epoch'
        )
        log(
            f'Optimizer {args.opt} lr {lr:g} weight_decay {args.weight_decay:g}; schedule {args.sched}, '
            f'{num_epochs} epochs' + (f', layer_decay {args.layer_decay:g}' if args.layer_decay is not None else '')
        )
        if state.epoch == num_epochs:
            log(f'{resume_path} is the end of the run ({num_epochs} epochs): nothing left to train')

    start_epoch, time_before = state.epoch, state.train_time_s
    t0 = time.perf_counter()
    for epoch in range(state.epoch, num_epochs):
        if plateau:
            state.opt_state.hyperparams['learning_rate'] = jnp.asarray(state.lr, jnp.float32)
            epoch_lr = state.lr
        else:
            epoch_lr = float(schedule(state.step))
        losses, accs = [], []
        bar = _progress(updates_per_epoch, f'epoch {epoch + 1}/{num_epochs}', args.no_progress or args.quiet)
        params_, opt_state, ema_state = state.params, state.opt_state, state.ema
        for b, idx in enumerate(epoch_batches(args.seed, epoch, n, args.batch_size)):
            params_, opt_state, loss, acc = train_step(params_, opt_state, x_train[idx], y_train[idx])
            if ema is not None:  # timm train.py: model_ema.update(model, step=num_updates), num_updates from 1
                ema_state = ema.update(params_, ema_state, state.step + b + 1)
            losses.append(loss)
            accs.append(acc)
            bar.update(1)
            if b % 8 == 0:
                bar.set_postfix(loss=f'{float(loss):.4f}')
                pause_point('train', epoch + 1)
        bar.close()
        state.params, state.opt_state, state.ema = params_, opt_state, ema_state
        state.step += updates_per_epoch
        state.epoch = epoch + 1
        train_loss = _epoch_loss(losses, args.skip_nonfinite)
        train_acc = float(jnp.mean(jnp.stack(accs)))
        # Schedule-Free trains at y and is evaluated at x (the reference's optimizer.eval())
        at = state.params if info.eval_params is None else info.eval_params(state.opt_state, state.params)
        test_loss, test_acc = (float(v) for v in eval_step(at, x_test_j, y_test_j))
        if not np.isfinite(train_loss):
            raise CLIError(
                f'training diverged at epoch {epoch + 1} (loss {train_loss}); try a smaller --lr'
                + ('' if args.skip_nonfinite else ' or --skip-nonfinite')
            )
        if plateau:
            state.plateau, new_lr = schedule.step(state.plateau, state.epoch, jnp.asarray(test_acc, jnp.float32))
            state.lr = float(new_lr)
        row = dict(
            epoch=epoch + 1,
            lr=epoch_lr,
            train_loss=train_loss,
            train_acc=train_acc,
            test_loss=test_loss,
            test_acc=test_acc,
        )
        if ema is not None:
            row.update(ema_metrics(eval_step, state.ema, x_test_j, y_test_j))
        state.history.append(row)
        state.train_time_s = time_before + (time.perf_counter() - t0)
        if not args.quiet:
            log(
                f'epoch {epoch + 1:3d}/{num_epochs}  lr {epoch_lr:.3e}  train loss {train_loss:.4f} '
                f'acc {100 * train_acc:6.2f}%  test loss {test_loss:.4f} acc {100 * test_acc:6.2f}%'
                + (
                    f'  ema test loss {row["ema_test_loss"]:.4f} acc {100 * row["ema_test_acc"]:6.2f}%'
                    if ema is not None
                    else ''
                )
            )
        if args.output:
            save_checkpoint(args.output, state, args.checkpoint_hist, config)
    last = state.history[-1]
    result = TrainResult(
        state.params,
        state.history,
        last['test_acc'],
        last['test_loss'],
        state.train_time_s,
        lr,
        num_epochs,
        start_epoch,
        _skipped_steps(args, state.opt_state),
        None if state.ema is None else state.ema.params,
        last.get('ema_test_acc'),
        last.get('ema_test_loss'),
    )
    if args.output:
        # a pure function of the final checkpoint: re-running a finished run rewrites identical results
        recipe = dict(
            opt=args.opt,
            sched=args.sched,
            lr=lr,
            epochs=num_epochs,
            model=args.model,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        ema_fields = (
            {}
            if state.ema is None
            else dict(
                ema_test_acc=result.ema_test_acc,
                ema_test_loss=result.ema_test_loss,
                ema_params_sha256=params_digest(state.ema.params),
            )
        )
        write_results(
            args.output,
            dict(
                recipe,
                test_acc=result.test_acc,
                test_loss=result.test_loss,
                **ema_fields,
                train_time_s=result.train_time_s,
                skipped_steps=result.skipped_steps,
                params_sha256=params_digest(state.params),
                config=config,
                history=state.history,
            ),
        )
    return result


def run(args: argparse.Namespace) -> int:
    try:
        result = train(args)
    except KeyboardInterrupt:
        hint = ''
        if args.output:
            try:
                hint = (
                    f'; {latest_checkpoint(args.output)} is intact: continue with --resume {args.output} '
                    f'--output {args.output}'
                )
            except CLIError:
                hint = '; no checkpoint was completed'
        print(f'{args._prog}: interrupted{hint}', file=sys.stderr)
        return 130
    best = max(h['test_acc'] for h in result.history)
    ran = len(result.history) - result.start_epoch
    print(
        f'Done: {len(result.history)} epochs ({ran} in this process) in {result.train_time_s:.1f}s; final test '
        f'accuracy {100 * result.test_acc:.2f}% (best {100 * best:.2f}%), test loss {result.test_loss:.4f}'
        + (f'; EMA test accuracy {100 * result.ema_test_acc:.2f}%' if result.ema_test_acc is not None else '')
        + (f', {result.skipped_steps} steps skipped' if args.skip_nonfinite else '')
        + (f'; outputs in {args.output}' if args.output else '')
    )
    return 0
