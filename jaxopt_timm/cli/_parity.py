"""``jaxopt-timm parity``: our optimizers (and schedules) side by side with an installed timm.

The comparison itself (the mixed-layout problem and its loss, the reference
modes of the muon and kron families, the deviation
``max |ours - timm| / max |timm displacement|`` and its tolerance) lives in
:mod:`jaxopt_timm.parity`, shared with the tests and the benchmarks; this
module is the command: its arguments, the names it runs and the table it
prints. ``--json PATH`` also writes the results machine-readable (the docs'
optimizer table reads a stored run, ``docs/_data/parity.json``). torch and
timm are imported only when this command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from typing import Any, Dict, List, Optional

import jaxopt_timm as jt
from jaxopt_timm.parity import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    PARITY_MODES,
    SCHEDULE_TOL,
    SCHEDULES,
    TOL,
    TimmNotInstalled,
    load_timm,
    reference_parity,
    schedule_parity,
)

from ._args import CLIError, ParseKwargs

__all__ = ['add_arguments', 'run']


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        '--opt',
        nargs='+',
        default=None,
        metavar='NAME',
        help="optimizer names or fnmatch patterns ('all': every name); default: all unless --sched is given",
    )
    p.add_argument('--lr', type=float, default=DEFAULT_LR, help='learning rate')
    p.add_argument('--weight-decay', type=float, default=0.05, help='weight decay')
    p.add_argument('--momentum', type=float, default=0.9, help='momentum (optimizers that have one)')
    p.add_argument('--opt-eps', type=float, default=None, help='epsilon')
    p.add_argument('--opt-betas', type=float, nargs='+', default=None, help='betas')
    p.add_argument('--opt-kwargs', nargs='*', default={}, action=ParseKwargs, help='extra optimizer arguments')
    p.add_argument('--steps', type=int, default=DEFAULT_STEPS, help='optimizer steps')
    p.add_argument('--seed', type=int, default=0, help='seed of the starting point and loss coefficients')
    p.add_argument('--tol', type=float, default=TOL, help='pass / fail bound on the deviation')
    p.add_argument(
        '--as-is',
        action='store_true',
        help='no comparable mode: timm runs muon Newton-Schulz in bf16 and kron refits with its own '
        'random probes (by default both sides use float32 Newton-Schulz / no kron refit)',
    )
    p.add_argument(
        '--sched',
        nargs='+',
        default=None,
        metavar='NAME',
        help=f"also compare schedules ('all': {' '.join(SCHEDULES)}) over --epochs epochs",
    )
    p.add_argument('--epochs', type=int, default=30, help='schedule length for --sched')
    p.add_argument('--warmup-epochs', type=int, default=3, help='schedule warmup for --sched')
    p.add_argument('--updates-per-epoch', type=int, default=10, help='schedule updates per epoch for --sched')
    p.add_argument(
        '--json',
        default=None,
        metavar='PATH',
        help='also write {name: {"deviation", "tol", "mode", "result"}} (schedules under "schedules") to PATH',
    )


def _names(patterns: List[str]) -> List[str]:
    if any(p == 'all' for p in patterns):
        return jt.list_optimizers()
    out: List[str] = []
    for p in patterns:
        if any(c in p for c in '*?['):
            matched = jt.list_optimizers(filter=p)
            if not matched:
                raise CLIError(f'no optimizer matches {p!r} (see jaxopt-timm list)')
            out += [m for m in matched if m not in out]
        else:
            jt.get_optimizer_info(p.lower())  # unknown names: one-line error with the closest ones
            if p.lower() not in out:
                out.append(p.lower())
    return out


def _timm_name(name: str) -> str:
    """The name timm lists: timm derives ``lookahead_<name>`` in its factory and lists only ``<name>``."""
    return name.removeprefix('lookahead_') if jt.get_optimizer_info(name).lookahead else name


def _entry(deviation: Optional[float], tol: float, mode: Optional[str], result: str) -> Dict[str, Any]:
    """One name's JSON record; a non-finite deviation becomes null (JSON has no NaN)."""
    value = float(deviation) if deviation is not None and math.isfinite(deviation) else None
    return {'deviation': value, 'tol': tol, 'mode': mode, 'result': result}


def _write_json(path: str, report: Dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed), so an interrupted run leaves the previous file intact."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise CLIError(f'invalid --steps {args.steps}: must be >= 1')
    if not args.lr >= 0 or not args.weight_decay >= 0:
        raise CLIError('invalid --lr / --weight-decay: must be >= 0')
    opts = args.opt if args.opt is not None else ([] if args.sched else ['all'])
    names = _names(opts) if opts else []
    scheds = list(SCHEDULES) if args.sched and 'all' in args.sched else list(args.sched or [])
    for s in scheds:
        if s not in SCHEDULES:
            raise CLIError(f'unknown schedule {s!r}; expected one of {", ".join(SCHEDULES)}')
    if args.json:  # a path that cannot be written is reported now, not after the whole run
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(args.json):
            raise CLIError(f'--json {args.json!r}: not a file in a writable folder')
    try:
        timm_optim, _ = load_timm()
    except TimmNotInstalled as e:
        raise CLIError(f'parity needs timm and torch: {e}') from None
    timm_names = set(timm_optim.list_optimizers())

    kwargs: Dict[str, Any] = dict(lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum)
    if args.opt_eps is not None:
        kwargs['eps'] = args.opt_eps
    if args.opt_betas is not None:
        kwargs['betas'] = tuple(args.opt_betas)
    kwargs.update(args.opt_kwargs or {})

    failures = 0
    report: Dict[str, Any] = {}
    if names:
        print(
            f'Optimizers vs timm: lr {args.lr:g}, weight_decay {args.weight_decay:g}, {args.steps} steps, '
            f'seed {args.seed}; deviation = max|ours - timm| / max|timm displacement|, pass <= {args.tol:g}'
        )
        if not args.as_is and any(jt.get_optimizer_info(n).parity_mode for n in names):
            print('; '.join(f'{mode.family}: {mode.description}' for mode in PARITY_MODES.values()) + '; --as-is: off')
        width = max(len(n) for n in names)
        print(f'{"name":<{width}}  {"deviation":>10}  {"max abs err":>11}  {"displacement":>12}  result')
        for name in names:
            mode = None if args.as_is else jt.get_optimizer_info(name).parity_mode  # the reference mode it ran in
            # the names timm lacks are compared with their own reference (the record's source), registered in
            # timm's factory by the parity package: only a timm name can be missing from the installed timm
            if jt.get_optimizer_info(name).source == 'timm' and _timm_name(name) not in timm_names:
                print(f'{name:<{width}}  {"-":>10}  {"-":>11}  {"-":>12}  not in this timm')
                report[name] = _entry(None, args.tol, mode, 'not in this timm')
                continue
            t0 = time.perf_counter()
            try:
                result = reference_parity(name, args.steps, args.seed, args.as_is, **kwargs)
            except (ValueError, TypeError, RuntimeError, TimmNotInstalled) as e:
                failures += 1
                print(f'{name:<{width}}  {"-":>10}  {"-":>11}  {"-":>12}  error: {" ".join(str(e).split())[:120]}')
                report[name] = _entry(None, args.tol, mode, 'error')
                continue
            ok = result.within(args.tol)
            failures += not ok
            report[name] = _entry(result.rel_err, args.tol, mode, 'ok' if ok else 'FAIL')
            print(
                f'{name:<{width}}  {result.rel_err:10.2e}  {result.max_abs_err:11.2e}  {result.displacement:12.3g}  '
                f'{"ok" if ok else "FAIL"}  ({time.perf_counter() - t0:.1f}s)',
                flush=True,
            )
    if scheds:
        print(
            f'Schedules vs timm (onecycle vs torch OneCycleLR): {args.epochs} epochs, warmup {args.warmup_epochs}, '
            f'{args.updates_per_epoch} updates per epoch; deviation = max|ours - timm| / lr'
        )
        for s in scheds:
            try:
                with warnings.catch_warnings():
                    # timm deprecates PlateauLRScheduler (a warning about its checkpointing, not its values)
                    warnings.filterwarnings(
                        'ignore', message='PlateauLRScheduler is deprecated', category=FutureWarning
                    )
                    dev, count = schedule_parity(s, args.epochs, args.warmup_epochs, args.updates_per_epoch)
            except (ValueError, TypeError, AssertionError) as e:
                failures += 1
                print(f'{s:<10}  error: {" ".join(str(e).split())[:120]}')
                report.setdefault('schedules', {})[s] = _entry(None, SCHEDULE_TOL, None, 'error')
                continue
            ok = dev <= SCHEDULE_TOL
            failures += not ok
            report.setdefault('schedules', {})[s] = _entry(dev, SCHEDULE_TOL, None, 'ok' if ok else 'FAIL')
            print(f'{s:<10}  {dev:10.2e}  over {count} values  {"ok" if ok else "FAIL"}')
    print(f'{"all within tolerance" if not failures else f"{failures} failure(s)"}')
    if args.json:
        _write_json(args.json, report)
    return 1 if failures else 0
