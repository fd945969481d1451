"""What the step benchmark times for one optimizer name: ours, its optax counterpart and timm's torch steps.

Every per-name fact comes from the optimizer's registry record (``jt.get_optimizer_info``): whether it is a
row of the default suite (``benchmarked``), whether its math reads tensor shapes (``shape_aware``) or the
kernel layout (``layout_aware``), its optax counterpart (``optax_equivalent``), whether torch has a fused
kernel for it (``torch_fused``), how the factory packs it (``packing_for``) and whether it needs a
Hessian-vector product (``second_order``). Nothing here keeps a table keyed by name, so a new optimizer
joins the benchmark through its record alone.
"""
from __future__ import annotations

import contextlib
import fnmatch
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_timm as jt
from benchmarks._harness import error_result
from jaxopt_timm.parity import ensure_reference, kron_eager, load_timm, prepare_reference, torch_module

LR, WD = 1e-3, 0.05
# ours and optax are timed with jt.compiler_options() (the CPU copy-insertion option; {} elsewhere) and with
# XLA's defaults ("default" columns): the options change no number, only copies around donated state.
XLA_OPTS = jt.compiler_options()
# The 2,000-leaf tree's "ours packed" column: ``create_optimizer_v2(..., pack_leaves=PACK_LEAVES)``, which runs
# elementwise names concatenated into flat buffers and names with per-tensor statistics vmapped over same-shape
# stacks (LAMB's global clip over all leaves first). tests/test_factory_packing.py runs every registered name
# packed against the per-leaf factory.
PACK_LEAVES = 32


def suite_rows() -> List[str]:
    """The default suite ('targets'): every benchmarked record, elementwise rows first, then shape-aware ones.

    Record names only: an alias (``nesterov`` of ``sgd``) runs the same step and would repeat a row.
    """
    rows = [n for n in jt.list_optimizers() if (i := jt.get_optimizer_info(n)).benchmarked and i.name == n]
    return sorted(rows, key=lambda n: jt.get_optimizer_info(n).shape_aware)  # stable: names stay sorted


def is_elementwise_row(name: str) -> bool:
    """A suite row without shape rules (the issue's targets: <= torch's fastest, <= optax, >= 70% of streaming);
    these rows also time ours and optax with XLA's default options."""
    info = jt.get_optimizer_info(name)
    return info.benchmarked and not info.shape_aware


def packs(name: str) -> bool:
    """The factory has an exact packed or stacked form of ``name`` (``pack_leaves``; not kron, adahessian)."""
    return jt.get_optimizer_info(name).packing_for() is not None


def ours_kwargs(name: str, layout: str = 'torch') -> Dict[str, Any]:
    """Ours on a Flax-layout tree is told so where the layout changes the math (the same tensors as timm's)."""
    return {'layout': layout} if layout != 'torch' and jt.get_optimizer_info(name).layout_aware else {}


def _half_square(q):
    return sum(0.5 * jnp.sum(x * x) for x in jax.tree.leaves(q))


def update_extras(name: str):
    """The extra update arguments of ``name``, on a cheap separable loss (0.5 * sum p^2) on both sides: AdaHessian's
    ``hvp_fn`` (H v) and SAM's ``grad_fn`` (its gradient at the perturbed point)."""
    info = jt.get_optimizer_info(name)
    if info.second_order:
        return lambda p: {'hvp_fn': jt.optim.hvp_fn_from_loss(_half_square, p)}
    if info.grad_fn:
        return lambda p: {'grad_fn': jax.grad(_half_square)}
    return None


def optax_transform(name: str) -> Optional[optax.GradientTransformation]:
    """The closest optax alias of ``name`` with the benchmark's lr and weight decay (None: optax has none)."""
    make = jt.get_optimizer_info(name).optax_equivalent
    return None if make is None else make(LR, WD)


def timm_kinds(name: str, loop: bool = True) -> List[str]:
    """timm's step variants to time: torch's CPU default ('loop'), 'foreach', and 'fused' where torch has it."""
    return (['loop'] if loop else []) + ['foreach'] + (['fused'] if jt.get_optimizer_info(name).torch_fused else [])


def timm_variants(name: str, shapes, kinds: List[str]) -> Dict[str, Any]:
    """``timm_<kind>`` -> :func:`timm_variant` for each of ``kinds``."""
    return {f'timm_{kind}': timm_variant(name, shapes, kind) for kind in kinds}


def _torch_params(shapes: Dict[str, tuple], seed: int):
    rng = np.random.default_rng(seed)
    return torch_module({name: rng.standard_normal(shape, dtype=np.float32) * 0.02 for name, shape in shapes.items()})


def _timm_mode(name: str):
    """timm's Kron wraps helpers in torch.compile when dynamo imports; benchmark its eager path (no C++ toolchain)."""
    return kron_eager() if fnmatch.fnmatch(name, 'kron*') else contextlib.nullcontext()


def timm_variant(name: str, shapes, variant: str) -> Any:
    """timm's optimizer of ``name`` (``variant``: 'loop', 'foreach' or 'fused') as a Variant, or an error result."""
    import torch
    timm_optim = load_timm()[0]
    root = _torch_params(shapes, seed=0)
    rng = np.random.default_rng(1)
    params = list(root.parameters())
    info = jt.get_optimizer_info(name)
    second_order = info.second_order
    kwargs = {'foreach': False} if variant == 'loop' else {'foreach': True} if variant == 'foreach' else {'fused': True}
    try:
        ensure_reference(name)  # the names timm lacks: their reference library's class through timm's factory
        with _timm_mode(name):
            try:
                opt = timm_optim.create_optimizer_v2(root, name, lr=LR, weight_decay=WD, **kwargs)
            except TypeError as e:
                if variant != 'loop' or 'foreach' not in str(e):
                    raise
                # timm's own classes (Kron, Muon, Adahessian, ...) have one implementation: time it as 'loop'
                opt = timm_optim.create_optimizer_v2(root, name, lr=LR, weight_decay=WD)
        prepare_reference(opt)
    except (TypeError, ValueError, RuntimeError) as e:
        return error_result(e, 80)
    grads = [torch.from_numpy(rng.standard_normal(p.shape, dtype=np.float32) * 0.02) for p in params]

    if second_order:
        def step():
            opt.zero_grad(set_to_none=True)
            loss = sum(0.5 * (p * p).sum() for p in params)
            loss.backward(create_graph=True)
            t0 = time.perf_counter()
            opt.step()
            return time.perf_counter() - t0
    elif info.grad_fn:
        def closure():  # SAM's second gradient, at the point it perturbed to
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                sum(0.5 * (p * p).sum() for p in params).backward()

        def step():
            closure()
            t0 = time.perf_counter()
            opt.step(closure)
            return time.perf_counter() - t0
    else:
        for p, g in zip(params, grads):
            p.grad = g

        def step():
            t0 = time.perf_counter()
            opt.step()
            return time.perf_counter() - t0

    def call():
        with _timm_mode(name), torch.no_grad() if not second_order else contextlib.nullcontext():
            return step()

    def finish(r):
        r['state_bytes'] = int(sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                                   if torch.is_tensor(t) and t.dim() > 0))
        r.pop('compile_s', None)  # torch compiles nothing
    return call, finish


def torch_best_ms(row: Dict[str, Any]) -> Optional[float]:
    """The fastest of the row's timm variants that ran (None: none did)."""
    times = [row[k]['ms'] for k in row if k.startswith('timm_') and row[k] and 'ms' in row[k]]
    return min(times) if times else None

