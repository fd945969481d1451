"""``jaxopt-timm parity``: our optimizers (and schedules) side by side with an installed timm.

The problem is the one the test suite uses: a mixed tree in PyTorch layouts
(conv ``(O, I, kH, kW)``, linear ``(out, in)``, biases, norm scales, a 3-d
embedding, a 1-element tensor), the same float32 start on both sides, and at
every step the gradient of the same loss at each side's *own* params
(``sum(0.5*A*p^2 + (B + D*sin(0.7*t))*p + 0.025*p^4)``), so deviations
compound. Our step runs under ``jax.jit``. The deviation is
``max |ours - timm| / max |timm displacement|``.

torch and timm are imported only when this command runs.
"""
from __future__ import annotations

import argparse
import fnmatch
import time
import warnings
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_timm as jt

from ._args import CLIError, ParseKwargs
from ._timm_loader import TimmNotInstalled, kron_eager, load_timm, torch_module

__all__ = ['add_arguments', 'run', 'optimizer_parity', 'schedule_parity', 'SHAPES']

SHAPES: Dict[str, tuple] = {
    'conv.weight': (8, 4, 3, 3),
    'conv.bias': (8,),
    'norm.weight': (8,),
    'norm.bias': (8,),
    'fc.weight': (6, 32),
    'fc.bias': (6,),
    'pos_embed': (1, 4, 16),
    'gamma': (1,),
}

SCHEDULES = ('cosine', 'tanh', 'step', 'multistep', 'poly', 'wsd', 'rsqrt', 'constant', 'plateau', 'onecycle')


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--opt', nargs='+', default=None, metavar='NAME',
                   help="optimizer names or fnmatch patterns ('all': every name); default: all unless --sched is given")
    p.add_argument('--lr', type=float, default=1e-2, help='learning rate')
    p.add_argument('--weight-decay', type=float, default=0.05, help='weight decay')
    p.add_argument('--momentum', type=float, default=0.9, help='momentum (optimizers that have one)')
    p.add_argument('--opt-eps', type=float, default=None, help='epsilon')
    p.add_argument('--opt-betas', type=float, nargs='+', default=None, help='betas')
    p.add_argument('--opt-kwargs', nargs='*', default={}, action=ParseKwargs, help='extra optimizer arguments')
    p.add_argument('--steps', type=int, default=30, help='optimizer steps')
    p.add_argument('--seed', type=int, default=0, help='seed of the starting point and loss coefficients')
    p.add_argument('--tol', type=float, default=2e-4, help='pass / fail bound on the deviation')
    p.add_argument('--as-is', action='store_true',
                   help='no comparable mode: timm runs muon Newton-Schulz in bf16 and kron refits with its own '
                        'random probes (by default both sides use float32 Newton-Schulz / no kron refit)')
    p.add_argument('--sched', nargs='+', default=None, metavar='NAME',
                   help=f"also compare schedules ('all': {' '.join(SCHEDULES)}) over --epochs epochs")
    p.add_argument('--epochs', type=int, default=30, help='schedule length for --sched')
    p.add_argument('--warmup-epochs', type=int, default=3, help='schedule warmup for --sched')
    p.add_argument('--updates-per-epoch', type=int, default=10, help='schedule updates per epoch for --sched')


# ----------------------------------------------------------------------------- optimizers

def _arrays(seed: int):
    rng = np.random.default_rng(seed)
    init, a, b, d = {}, {}, {}, {}
    for name, shape in SHAPES.items():
        base = 1.0 if name == 'norm.weight' else 0.0
        init[name] = (base + 0.5 * rng.standard_normal(shape)).astype(np.float32)
        a[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        b[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        d[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
    return init, a, b, d


def to_tree(flat: Dict[str, Any]) -> Dict[str, Any]:
    """{'conv.weight': x} -> {'conv': {'weight': x}} (names round-trip through jt's leaf naming)."""
    tree: Dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def drift(t: int) -> np.float32:
    """The time-varying factor of the parity loss's linear term (shared with the test harness)."""
    return np.float32(np.sin(0.7 * t))


def _reference_mode(name: str, kwargs: Dict[str, Any], as_is: bool):
    """``(timm kwargs, our extra kwargs, context)`` making the run comparable (what the test suite does).

    * muon family: timm hard-codes Newton-Schulz in bfloat16; both sides run it in float32
      (``ns_dtype='float32'`` here, timm's ``zeropower_via_newtonschulz`` with ``dtype=float32``).
    * kron family: the preconditioner refit draws random probes (torch's generator vs jax's), so the
      refit probability defaults to 1e-9 on both sides; timm's helpers run eagerly (no torch.compile).
    """
    import contextlib
    import functools
    import importlib
    base = name.split('_')[-1]
    if as_is:
        return kwargs, {}, contextlib.nullcontext()
    if fnmatch.fnmatch(base, '*muon'):
        mod = importlib.import_module('timm.optim.muon')

        @contextlib.contextmanager
        def ns_float32():
            import torch
            original = mod.zeropower_via_newtonschulz
            mod.zeropower_via_newtonschulz = functools.partial(original, dtype=torch.float32)
            try:
                yield
            finally:
                mod.zeropower_via_newtonschulz = original
        return kwargs, {'ns_dtype': 'float32'}, ns_float32()
    if fnmatch.fnmatch(base, 'kron*'):
        kw = dict(kwargs)
        kw.setdefault('preconditioner_update_probability', 1e-9)
        return kw, {}, kron_eager()
    return kwargs, {}, contextlib.nullcontext()


def _timm_run(torch, timm_optim, name, init, a, b, d, steps, seed, second_order, kwargs):
    torch.manual_seed(seed)
    root = torch_module(init)
    named = dict(root.named_parameters())
    ta, tb, td = ({k: torch.tensor(v) for k, v in c.items()} for c in (a, b, d))
    opt = timm_optim.create_optimizer_v2(root, name, **kwargs)
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        s = float(drift(t))
        loss = sum((0.5 * ta[k] * p * p + (tb[k] + td[k] * s) * p + 0.025 * p ** 4).sum() for k, p in named.items())
        loss.backward(create_graph=second_order)
        opt.step()
    theirs = {k: p.detach().numpy().copy() for k, p in named.items()}
    return theirs


def optimizer_parity(name: str, steps: int = 30, seed: int = 0, as_is: bool = False,
                     **kwargs: Any) -> Tuple[float, float, float]:
    """``(deviation, max_abs_err, displacement)`` of ``name`` against timm's ``create_optimizer_v2``.

    Unless ``as_is``, the muon and kron families run in the comparable mode of :func:`_reference_mode`.
    """
    import torch
    timm_optim, _ = load_timm()
    init, a, b, d = _arrays(seed)
    info = jt.get_optimizer_info(name.split('_')[-1])
    kwargs, ours_only, context = _reference_mode(name, kwargs, as_is)
    with warnings.catch_warnings(), context:
        # torch warns on every backward(create_graph=True), which timm's AdaHessian requires
        warnings.filterwarnings('ignore', message='Using backward', category=UserWarning)
        theirs = _timm_run(torch, timm_optim, name, init, a, b, d, steps, seed, info.second_order, kwargs)

    params = to_tree({k: jnp.asarray(v) for k, v in init.items()})
    ja, jb, jd = (to_tree({k: jnp.asarray(v) for k, v in c.items()}) for c in (a, b, d))
    tx = jt.create_optimizer_v2(params, name, **kwargs, **ours_only)
    state = tx.init(params)

    def loss_fn(p, s):
        return sum(jax.tree.leaves(jax.tree.map(
            lambda x, ai, bi, di: jnp.sum(0.5 * ai * x * x + (bi + di * s) * x + 0.025 * x ** 4), p, ja, jb, jd)))

    @jax.jit
    def step(params, state, s):
        grads = jax.grad(loss_fn)(params, s)
        extra = {}
        if info.second_order:
            extra['hvp_fn'] = lambda v: jax.jvp(lambda q: jax.grad(loss_fn)(q, s), (params,), (v,))[1]
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    for t in range(steps):
        params, state = step(params, state, jnp.asarray(drift(t)))
    ours = {n: np.asarray(v) for n, v in jt.optim.named_leaves(params)}
    max_abs = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in theirs)
    disp = max(float(np.max(np.abs(theirs[k] - init[k]))) for k in theirs)
    return max_abs / max(disp, 1e-30), max_abs, disp


# ----------------------------------------------------------------------------- schedules

def schedule_parity(sched: str, epochs: int = 30, warmup_epochs: int = 3, updates_per_epoch: int = 10,
                    lr: float = 0.1) -> Tuple[float, int]:
    """``(max |ours - timm| / lr, values compared)`` over a whole run, per epoch and per update.

    timm's ``create_scheduler_v2`` is the reference; 'onecycle' (absent from
    timm) is compared with torch's ``OneCycleLR``; 'plateau' is fed the same
    synthetic metric on both sides.
    """
    import torch
    _, timm_sched = load_timm()
    worst, count = 0.0, 0
    for on_updates in (False, True):
        if sched in ('plateau',) and on_updates:
            continue
        if sched == 'onecycle' and not on_updates:
            continue
        kw = dict(sched=sched, num_epochs=epochs, warmup_epochs=warmup_epochs, warmup_lr=lr * 1e-2,
                  min_lr=lr * 1e-3, decay_epochs=epochs // 3 if sched == 'step' else None,
                  decay_milestones=(epochs // 3, 2 * epochs // 3), cycle_limit=2 if sched in ('cosine', 'tanh')
                  else 1, cycle_decay=0.5, step_on_epochs=not on_updates)
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=lr)
        if sched == 'onecycle':
            total = epochs * updates_per_epoch
            ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total,
                                                     pct_start=warmup_epochs / epochs)
            theirs = []
            for _ in range(total):
                theirs.append(opt.param_groups[0]['lr'])
                opt.step()
                ref.step()
            ours_s, _ = jt.create_scheduler_v2(lr, 'onecycle', num_epochs=epochs, warmup_epochs=warmup_epochs,
                                              step_on_epochs=False, updates_per_epoch=updates_per_epoch)
            ours = np.asarray(ours_s(jnp.arange(total)))
        else:
            timm_kw = {k: v for k, v in kw.items() if v is not None}
            if timm_kw.get('decay_epochs') is None:
                timm_kw.pop('decay_epochs', None)
            ref, num_epochs = timm_sched.create_scheduler_v2(
                opt, **timm_kw, updates_per_epoch=updates_per_epoch if on_updates else 0)
            ours_s, ours_epochs = jt.create_scheduler_v2(
                lr, **kw, updates_per_epoch=updates_per_epoch if on_updates else 0)
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


# ----------------------------------------------------------------------------- command

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
            jt.get_optimizer_info(p.lower().split('_')[-1])  # unknown names: one-line error with the closest ones
            if p.lower() not in out:
                out.append(p.lower())
    return out


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
    if names:
        print(f'Optimizers vs timm: lr {args.lr:g}, weight_decay {args.weight_decay:g}, {args.steps} steps, '
              f'seed {args.seed}; deviation = max|ours - timm| / max|timm displacement|, pass <= {args.tol:g}')
        if not args.as_is and any(fnmatch.fnmatch(n, p) for n in names for p in ('*muon', 'kron*')):
            print('muon*: Newton-Schulz in float32 on both sides (timm hard-codes bf16); kron*: '
                  'preconditioner_update_probability=1e-9 on both sides (random probes differ); --as-is: off')
        width = max(len(n) for n in names)
        print(f'{"name":<{width}}  {"deviation":>10}  {"max abs err":>11}  {"displacement":>12}  result')
        for name in names:
            if name.split('_')[-1] not in timm_names:
                print(f'{name:<{width}}  {"-":>10}  {"-":>11}  {"-":>12}  not in this timm')
                continue
            t0 = time.perf_counter()
            try:
                dev, abs_err, disp = optimizer_parity(name, args.steps, args.seed, args.as_is, **kwargs)
            except (ValueError, TypeError, RuntimeError) as e:
                failures += 1
                print(f'{name:<{width}}  {"-":>10}  {"-":>11}  {"-":>12}  error: {" ".join(str(e).split())[:120]}')
                continue
            ok = dev <= args.tol and np.isfinite(dev)
            failures += not ok
            print(f'{name:<{width}}  {dev:10.2e}  {abs_err:11.2e}  {disp:12.3g}  {"ok" if ok else "FAIL"}'
                  f'  ({time.perf_counter() - t0:.1f}s)', flush=True)
    if scheds:
        print(f'Schedules vs timm (onecycle vs torch OneCycleLR): {args.epochs} epochs, warmup {args.warmup_epochs}, '
              f'{args.updates_per_epoch} updates per epoch; deviation = max|ours - timm| / lr')
        for s in scheds:
            try:
                with warnings.catch_warnings():
                    # timm deprecates PlateauLRScheduler (a warning about its checkpointing, not its values)
                    warnings.filterwarnings('ignore', message='PlateauLRScheduler is deprecated', category=FutureWarning)
                    dev, count = schedule_parity(s, args.epochs, args.warmup_epochs, args.updates_per_epoch)
            except (ValueError, TypeError, AssertionError) as e:
                failures += 1
                print(f'{s:<10}  error: {" ".join(str(e).split())[:120]}')
                continue
            ok = dev <= 1e-6
            failures += not ok
            print(f'{s:<10}  {dev:10.2e}  over {count} values  {"ok" if ok else "FAIL"}')
    print(f'{"all within tolerance" if not failures else f"{failures} failure(s)"}')
    return 1 if failures else 0
