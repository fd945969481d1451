"""Run timm's optimizer and ours side by side on the parity problem and measure the deviation.

:func:`run_parity` is the one loop every comparison goes through (the tests,
the ``jaxopt-timm parity`` command): timm's optimizer steps a torch module
built from the problem's arrays, ours steps the same arrays as a jax tree with
the whole step (gradient, update, apply) under ``jax.jit``, traced once.
:func:`factory_parity` compares the two factories on one name;
:func:`reference_parity` does so in the name's reference mode (see
:mod:`jaxopt_timm.parity._modes`). torch is imported only when a run starts.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from jaxopt_timm.optim import create_optimizer_v2, get_optimizer_info

from ._loader import load_timm, torch_module
from ._modes import reference_mode
from ._references import ensure_reference, prepare_reference
from ._problem import DEFAULT_STEPS, drift, from_tree, jax_loss, make_arrays, to_tree, torch_loss
from ._result import ParityResult, deviation

__all__ = ['run_parity', 'factory_parity', 'reference_parity']


def _run_timm(
    make_timm: Callable[[Any], Any],
    init,
    a,
    b,
    d,
    steps: int,
    seed: int,
    second_order: bool,
    torch_lr: Optional[Callable[[int], float]],
    grad_fn: bool = False,
) -> Dict[str, Any]:
    import torch

    torch.manual_seed(seed)
    module = torch_module(init)
    named = dict(module.named_parameters())
    ta, tb, td = ({k: torch.tensor(v) for k, v in c.items()} for c in (a, b, d))
    opt = make_timm(module)
    with warnings.catch_warnings():
        # torch warns on every backward(create_graph=True), which timm's AdaHessian requires
        warnings.filterwarnings('ignore', message='Using backward', category=UserWarning)
        for t in range(steps):
            if torch_lr is not None:
                for group in opt.param_groups:
                    group['lr'] = float(torch_lr(t)) * group.get('lr_scale', 1.0)
            opt.zero_grad(set_to_none=True)
            torch_loss(named, ta, tb, td, float(drift(t))).backward(create_graph=second_order)
            if grad_fn:  # SAM: the closure recomputes the gradient at the point the optimizer sets
                opt.step(lambda s=float(drift(t)): torch_loss(named, ta, tb, td, s).backward())
            else:
                opt.step()
    return {k: p.detach().numpy().copy() for k, p in named.items()}


def run_parity(
    make_timm: Callable[[Any], Any],
    make_ours: Callable[[Any], optax.GradientTransformation],
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    second_order: bool = False,
    torch_lr: Optional[Callable[[int], float]] = None,
    shapes: Optional[Mapping[str, tuple]] = None,
    grad_fn: bool = False,
) -> ParityResult:
    """Run ``make_timm(torch module)`` and ``make_ours(params tree)`` ``steps`` times on the problem drawn from
    ``seed`` (over ``shapes``, default the mixed-layout tree).

    ``second_order``: the loss's graph is kept for timm and ours gets ``hvp_fn``. ``torch_lr(t)`` (if given) sets
    each timm group's lr before step ``t`` (times the group's ``lr_scale``), as timm's schedulers do.
    ``grad_fn``: the reference steps with a closure and ours gets ``grad_fn`` (SAM).
    """
    init, a, b, d = make_arrays(seed, shapes)
    theirs = _run_timm(make_timm, init, a, b, d, steps, seed, second_order, torch_lr, grad_fn)

    params = to_tree({k: jnp.asarray(v) for k, v in init.items()})
    ja, jb, jd = (to_tree({k: jnp.asarray(v) for k, v in c.items()}) for c in (a, b, d))
    tx = make_ours(params)
    state = tx.init(params)
    traces = [0]

    def step(params, state, s):
        traces[0] += 1
        loss_fn = lambda p: jax_loss(p, ja, jb, jd, s)  # noqa: E731
        grads = jax.grad(loss_fn)(params)
        extra = {}
        if second_order:
            extra['hvp_fn'] = lambda v: jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
        if grad_fn:
            extra['grad_fn'] = jax.grad(loss_fn)
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step)
    for t in range(steps):
        params, state = step(params, state, jnp.asarray(drift(t)))
    ours = from_tree(params)

    if set(ours) != set(theirs):
        raise AssertionError(f'our leaves {sorted(ours)} differ from timm\'s {sorted(theirs)}')
    rel_err, max_abs, disp = deviation(ours, theirs, init)
    return ParityResult(rel_err, max_abs, disp, traces[0], ours, theirs, state)


def factory_parity(
    name: str, steps: int = DEFAULT_STEPS, seed: int = 0, ours_only: Optional[Mapping[str, Any]] = None, **kwargs: Any
) -> ParityResult:
    """timm's ``create_optimizer_v2(module, name, **kwargs)`` against ours on the same tree, as is (``ours_only``:
    extra arguments for our side, e.g. a dtype switch timm hard-codes). For a name timm lacks, timm's factory
    builds the record's reference class (see :mod:`jaxopt_timm.parity._references`)."""
    timm_optim, _ = load_timm()
    info = get_optimizer_info(name)
    ensure_reference(name)
    return run_parity(
        lambda m: prepare_reference(timm_optim.create_optimizer_v2(m, name, **kwargs)),
        lambda p: create_optimizer_v2(p, name, **kwargs, **(ours_only or {})),
        steps=steps,
        seed=seed,
        second_order=info.second_order,
        grad_fn=info.grad_fn,
    )


def reference_parity(
    name: str, steps: int = DEFAULT_STEPS, seed: int = 0, as_is: bool = False, **kwargs: Any
) -> ParityResult:
    """:func:`factory_parity` in the reference mode of ``name``'s record (``parity_mode``), so the tolerance
    applies to every name; ``as_is``: timm's run unchanged (the muon and kron families then deviate)."""
    timm_kwargs, our_kwargs, context = reference_mode(name, kwargs, as_is=as_is)
    with context:
        return factory_parity(name, steps=steps, seed=seed, ours_only=our_kwargs, **timm_kwargs)
