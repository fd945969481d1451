"""The optimizer-step benchmark: ours against timm (torch) and optax, in one process and one run.

Run from the repository root::

    python -m benchmarks.step                       # every registered name, ResNet-50 and ViT-B/16 trees
    python -m benchmarks.step --names adamw,lamb --trees resnet50 --reps 20
    python -m benchmarks.step --extras growth,small,layer_decay --out benchmarks/results/cpu

For each (tree, name) it measures, with fixed random grads. The JAX side (ours, optax, streaming)
holds the tree's kernels in Flax's layout by default (conv ``(kH, kW, I, O)``, Dense ``(in, out)``:
what a Flax model holds; shape-aware names get ``layout='flax'``), timm holds the same tensors in
torch's layout; ``--jax-layout torch`` gives the JAX side torch's shapes as they are.

* ours: ``jt.create_optimizer_v2(params, name, lr=1e-3, weight_decay=0.05)``; the step
  ``update + apply_updates`` jitted with params and state donated; median of ``--reps``
  timed calls after a warm-up (``block_until_ready`` on every call); compile time = median of
  ``--compile-reps`` fresh trace + lower + compile runs, interleaved with optax's (first call minus
  the steady median where ``--compile-reps 0``, and on the 2,000-leaf tree); peak extra memory =
  XLA's ``temp_size_in_bytes`` of the compiled step; state bytes per param from ``jax.eval_shape(init)``;
* timm: ``timm.optim.create_optimizer_v2`` of the same name on ``torch.nn.Parameter``s of the
  same shapes, ``opt.step()`` timed per call, with ``foreach=False`` (torch's CPU default),
  ``foreach=True`` and, where torch has it (adam, adamw, sgd family), ``fused=True``;
* optax: the closest optax alias (``OPTAX`` below), jitted and donated like ours;
* the machine's streaming bandwidth on the same tree: a donated jitted ``x * a + b`` over every
  leaf (reads and writes each float once, as an in-place optimizer pass does), timed once per tree
  and again as a variant in every row's rounds; a row's "% of stream" is against its own pass;
* achieved bandwidth of each step under a compulsory-traffic model: params read + written,
  grads read, every state byte read + written (AdamW: 4+4+4+2*8 = 28 bytes per float32 param).

``--extras``: ``growth`` (AdamW/SGD/Lion/LAMB from 1M to 64M params in 16 equal leaves),
``small`` (2,000 leaves of 1,000 floats: compile time and step, per leaf and with the factory's
``pack_leaves=32``: ``jt.transforms.packed`` for ``PACKABLE`` names, ``stacked`` for ``STACKABLE`` ones;
buffer sizes are compared by ``benchmarks.packing``), ``schedule`` (AdamW with a cosine/warmup/noise lr
against a constant lr, and the trace count of each), ``layer_decay`` (26-group AdamW, see
``benchmarks.layer_decay``). Writes ``results.md`` and ``results.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_timm as jt
from benchmarks.trees import TREES, equal_leaves_shapes, flax_shapes, make_tree, num_params
from jaxopt_timm.cli._timm_loader import kron_eager, torch_module

LR, WD = 1e-3, 0.05
# ours and optax are timed with jt.compiler_options() (the CPU copy-insertion option; {} elsewhere) and with
# XLA's defaults ("default" columns): the options change no number, only copies around donated state.
XLA_OPTS = jt.compiler_options()

# The closest optax alias of a registry name (None: optax has no counterpart). Same lr/weight decay.
OPTAX: Dict[str, Callable[[], optax.GradientTransformation]] = {
    'sgd': lambda: optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=0.9, nesterov=True)),
    'nesterov': lambda: optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=0.9, nesterov=True)),
    'momentum': lambda: optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=0.9)),
    'sgdw': lambda: optax.chain(optax.sgd(LR, momentum=0.9, nesterov=True), optax.add_decayed_weights(-LR * WD)),
    'adam': lambda: optax.chain(optax.add_decayed_weights(WD), optax.adam(LR)),
    'adamw': lambda: optax.adamw(LR, weight_decay=WD),
    'adamax': lambda: optax.chain(optax.add_decayed_weights(WD), optax.adamax(LR)),
    'adagrad': lambda: optax.chain(optax.add_decayed_weights(WD), optax.adagrad(LR)),
    'adadelta': lambda: optax.adadelta(LR, weight_decay=WD),
    'rmsprop': lambda: optax.chain(optax.add_decayed_weights(WD), optax.rmsprop(LR, decay=0.9, momentum=0.9)),
    'rmsproptf': lambda: optax.chain(optax.add_decayed_weights(WD),
                                     optax.rmsprop(LR, decay=0.9, eps=1e-3, initial_scale=1.0, momentum=0.9)),
    'lamb': lambda: optax.lamb(LR, weight_decay=WD),
    'lars': lambda: optax.lars(LR, weight_decay=WD, momentum=0.9),
    'lion': lambda: optax.lion(LR, weight_decay=WD),
    'adabelief': lambda: optax.chain(optax.add_decayed_weights(WD), optax.adabelief(LR)),
    'radam': lambda: optax.chain(optax.add_decayed_weights(WD), optax.radam(LR)),
    'nadam': lambda: optax.chain(optax.add_decayed_weights(WD), optax.nadam(LR)),
    'nadamw': lambda: optax.nadamw(LR, weight_decay=WD),
    'novograd': lambda: optax.novograd(LR, weight_decay=WD),
    'adafactor': lambda: optax.adafactor(LR, weight_decay_rate=WD),
    'adopt': lambda: optax.chain(optax.add_decayed_weights(WD), optax.contrib.adopt(LR)),  # timm's adopt: L2
    'madgrad': lambda: optax.contrib.madgrad(LR, weight_decay=WD),
    'muon': lambda: optax.contrib.muon(LR, weight_decay=WD),
}

# Names whose torch optimizer takes ``fused=True`` on CPU (torch's fused Adam/AdamW/SGD kernels).
TORCH_FUSED = {'adam', 'adamw', 'sgd', 'nesterov', 'momentum'}

# Elementwise optimizers (the target list: <= torch's fastest, <= optax, >= 70% of streaming).
ELEMENTWISE = [
    'sgd', 'nesterov', 'momentum', 'sgdw', 'adam', 'adamw', 'lion', 'lamb', 'lars', 'adabelief', 'radam', 'nadam',
    'nadamw', 'rmsproptf', 'adan', 'laprop', 'adopt', 'madgrad', 'novograd', 'mars',
]
SHAPE_AWARE = ['adafactor', 'adafactorbv', 'muon', 'kron', 'adahessian']
# The 2,000-leaf tree's "ours packed" column: ``create_optimizer_v2(..., pack_leaves=PACK_LEAVES)``, which runs
# elementwise names concatenated into flat buffers (PACKABLE) and names with per-tensor statistics vmapped over
# same-shape stacks (STACKABLE; LAMB's global clip over all leaves first). tests/test_factory_packing.py runs
# every registered name packed against the per-leaf factory.
PACK_LEAVES = 32
_PACKING_BASES = ELEMENTWISE + SHAPE_AWARE + ['adamax', 'adagrad', 'adamp', 'sgdp']
PACKABLE = [n for n in _PACKING_BASES if n not in ('kron', 'adahessian') and jt.optim.packing_mode(n) == 'packed']
STACKABLE = [n for n in _PACKING_BASES if n not in ('kron', 'adahessian') and jt.optim.packing_mode(n) == 'stacked']


# ---------------------------------------------------------------------------------------------------------------
# timing


def _median_ms(times: List[float]) -> float:
    return statistics.median(times) * 1e3


def _time_calls(call: Callable[[], Any], reps: int, budget_s: float) -> Dict[str, Any]:
    """First call (compile + run) then ``reps`` timed calls (fewer if one call exceeds the budget share)."""
    def timed():
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0
    return time_interleaved({'x': (timed, None)}, reps, budget_s)['x']


# A variant under measurement: a call that runs one step and returns its seconds, and a finisher that adds
# the variant's own figures (memory, state bytes) to its result after timing.
Variant = Tuple[Callable[[], float], Optional[Callable[[Dict[str, Any]], None]]]


def _error(e: BaseException, width: int = 120) -> Dict[str, Any]:
    return {'error': f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:width]}'}


def time_interleaved(variants: Dict[str, Any], reps: int, budget_s: float,
                     pause_s: float = 0.02) -> Dict[str, Dict[str, Any]]:
    """Time every variant in rounds, one call of each per round, so drift on a shared machine hits all alike.

    Each variant gets a first call (compile + run) and a second warm-up, then ``reps`` timed calls (fewer,
    at least 5, if its calls would exceed ``budget_s``), interleaved round by round with the others, in a
    shuffled order each round and ``pause_s`` after the previous call: timed right after torch's fused
    step, with the same cyclic order every round, our AdamW on ResNet-50 measured 10% slower than the
    identical step timed elsewhere in the round (24.3 vs 22.2 ms; 22.1 vs 22.3 with the pause).
    ``variants`` values are :data:`Variant` pairs, or result dicts (a preparation error) passed through.
    """
    results: Dict[str, Dict[str, Any]] = {}
    live: Dict[str, Dict[str, Any]] = {}
    for key, v in variants.items():
        if isinstance(v, dict):
            results[key] = v
            continue
        call, finish = v
        try:
            first = call()
            second = call()  # second warm-up: allocator and caches settle
        except Exception as e:  # noqa: BLE001 - one failing measurement is reported, the suite goes on
            results[key] = _error(e)
            continue
        n = reps if second * reps <= budget_s else max(5, int(budget_s / max(second, 1e-9)))
        live[key] = {'call': call, 'finish': finish, 'first': first, 'n': n, 'times': []}
    order = random.Random(0)
    for rnd in range(max((m['n'] for m in live.values()), default=0)):
        keys = list(live)
        order.shuffle(keys)  # no variant always runs right after the same other one
        for key in keys:
            m = live.get(key)
            if m is None or rnd >= m['n']:
                continue
            time.sleep(pause_s)  # let the previous variant's worker threads (torch's, XLA's) go idle
            try:
                m['times'].append(m['call']())
            except Exception as e:  # noqa: BLE001
                results[key] = _error(e)
                del live[key]
    for key, m in live.items():
        med = _median_ms(m['times'])
        r = {'ms': round(med, 3), 'min_ms': round(min(m['times']) * 1e3, 3), 'first_ms': round(m['first'] * 1e3, 1),
             'compile_s': round(max(m['first'] * 1e3 - med, 0) / 1e3, 3), 'reps': m['n']}
        if m['finish'] is not None:
            m['finish'](r)
        results[key] = r
    return results


class JaxStep:
    """A jitted, donated ``params, state <- step(params, state, grads)`` of an optax transformation."""

    def __init__(self, tx, params, grads, extra: Optional[Callable] = None, compiler_options=None):
        self.grads = grads

        def step(p, s, g):
            self.traces += 1  # a Python side effect: runs once per trace, never per compiled call
            kwargs = extra(p) if extra is not None else {}
            updates, s = tx.update(g, s, p, **kwargs)
            return optax.apply_updates(p, updates), s

        self.jitted = jax.jit(step, donate_argnums=(0, 1), compiler_options=compiler_options or None)
        self.params = jax.tree.map(jnp.copy, params)
        # a fresh buffer per state leaf: some inits (optax.contrib.madgrad's x0) return the params themselves,
        # and donating params and state together would then donate one buffer twice
        self.state = jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tx.init(self.params))
        self.traces = 0
        self._tx = tx

    def memory(self) -> Optional[int]:
        try:
            compiled = self.jitted.lower(self.params, self.state, self.grads).compile()
            return int(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # noqa: BLE001 - backends without memory analysis
            return None

    def __call__(self):
        self.params, self.state = self.jitted(self.params, self.state, self.grads)
        jax.block_until_ready(self.params)


def _stream_call(params) -> Callable[[], None]:
    """One donated jitted ``x * a + b`` over every leaf of a private copy of ``params``."""
    fn = jax.jit(lambda t: jax.tree.map(lambda x: x * jnp.asarray(0.999, x.dtype) + jnp.asarray(1e-6, x.dtype), t),
                 donate_argnums=0)
    box = [jax.tree.map(jnp.copy, params)]

    def call():
        box[0] = fn(box[0])
        jax.block_until_ready(box[0])
    return call


def _stream_gbps(params, ms: float) -> float:
    nbytes = sum(2 * x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    return round(nbytes / (ms * 1e-3) / 1e9, 2)


def stream_bandwidth(params, reps: int) -> Dict[str, Any]:
    """GB/s of a donated jitted ``x * a + b`` over every leaf (8 bytes per float32: one read, one write)."""
    r = _time_calls(_stream_call(params), max(reps, 20), 30.0)
    r['gbps'] = _stream_gbps(params, r['ms'])
    return r


def stream_variant(params) -> Any:
    """The streaming pass as a :data:`Variant`, timed in every row's rounds (the machine's bandwidth drifts by
    up to 25% over minutes, so each row's "% of stream" is taken against the pass timed alongside it)."""
    step = _stream_call(params)

    def call():
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0

    def finish(r):
        r['gbps'] = _stream_gbps(params, r['ms'])
    return call, finish


def state_bytes(tx, params) -> int:
    state = jax.eval_shape(tx.init, params)
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)
               if hasattr(x, 'shape') and x.ndim > 0)


def traffic_bytes(params, n_state_bytes: int) -> int:
    """Compulsory traffic of an in-place step: params read + written, grads read, state read + written."""
    p = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    return 3 * p + 2 * n_state_bytes


# ---------------------------------------------------------------------------------------------------------------
# ours / optax / timm


# Names whose shape rules read the layout (factoring, Newton-Schulz matrices, conv averaging, Kron's factors).
LAYOUT_AWARE = {'adafactor', 'adafactorbv', 'adafactorbvc', 'adahessian', 'adamuon', 'cadafactor', 'cadafactorbv',
                'cadafactorbvc', 'kron', 'kronc', 'kronw', 'muon', 'nadamuon', 'nmuon'}


def _ours_kwargs(name: str, layout: str = 'torch') -> Dict[str, Any]:
    """Ours on a Flax-layout tree is told so where the layout changes the math (the same tensors as timm's)."""
    return {'layout': layout} if layout != 'torch' and name in LAYOUT_AWARE else {}


def _hvp_extra(name: str):
    """AdaHessian needs ``hvp_fn``: H v of a cheap separable loss (0.5 * sum p^2) on both sides."""
    if not jt.get_optimizer_info(name).second_order:
        return None
    return lambda p: {'hvp_fn': jt.optim.hvp_fn_from_loss(
        lambda q: sum(0.5 * jnp.sum(x * x) for x in jax.tree.leaves(q)), p)}


def jax_variant(tx, params, grads, extra=None, compiler_options=None) -> Any:
    """Ours or optax as a :data:`Variant` (a jitted donated step), or an error result."""
    try:
        step = JaxStep(tx, params, grads, extra, compiler_options)
    except Exception as e:  # noqa: BLE001
        return _jax_error(e, tx, params)

    def call():
        t0 = time.perf_counter()
        step()
        return time.perf_counter() - t0

    def finish(r):
        r['traces'] = step.traces  # 1: the step never retraced across the timed calls
        r['temp_bytes'] = step.memory()
        r['state_bytes'] = state_bytes(tx, params)
    return call, finish


def cold_compile_s(tx, params, grads, extra=None, compiler_options=None) -> float:
    """Seconds to trace, lower and compile the step afresh (a new closure and ``jit``: no cache can answer)."""
    def step(p, s, g):
        kwargs = extra(p) if extra is not None else {}
        updates, s = tx.update(g, s, p, **kwargs)
        return optax.apply_updates(p, updates), s

    state = jax.eval_shape(tx.init, params)
    t0 = time.perf_counter()
    jitted = jax.jit(step, donate_argnums=(0, 1), compiler_options=compiler_options or None)
    jitted.lower(params, state, grads).compile()
    return time.perf_counter() - t0


def compile_medians(compiles: Dict[str, Callable[[], float]], reps: int) -> Dict[str, float]:
    """Median seconds of ``reps`` cold compiles of each entry, interleaved round by round.

    One first call is too noisy to hold a ratio to: the same ViT-B step compiled 0.37 then 0.44 s, its optax
    counterpart 0.30 then 0.33 s, in one process (the ratio read 1.12 or 1.47 by which pair one took).
    """
    times: Dict[str, List[float]] = {k: [] for k in compiles}
    for _ in range(reps):
        for key, fn in compiles.items():
            gc.collect()
            times[key].append(fn())
    return {k: round(statistics.median(v), 3) for k, v in times.items() if v}


def _jax_error(e: BaseException, tx, params) -> Dict[str, Any]:
    return _jax_failed(_error(e), tx, params)


def _jax_failed(r: Dict[str, Any], tx, params) -> Dict[str, Any]:
    """A JAX result that failed (no 'ms'), with the fields the tables read."""
    if 'ms' in r:
        return r
    return {**r, 'ms': float('nan'), 'compile_s': float('nan'), 'state_bytes': state_bytes(tx, params),
            'temp_bytes': None}


def _torch_params(shapes: Dict[str, tuple], seed: int):
    rng = np.random.default_rng(seed)
    return torch_module({name: rng.standard_normal(shape, dtype=np.float32) * 0.02 for name, shape in shapes.items()})


def _timm_mode(name: str):
    """timm's Kron wraps helpers in torch.compile when dynamo imports; benchmark its eager path (no C++ toolchain)."""
    return kron_eager() if fnmatch.fnmatch(name, 'kron*') else contextlib.nullcontext()


def timm_variant(name: str, shapes, variant: str) -> Any:
    """timm's optimizer of ``name`` (``variant``: 'loop', 'foreach' or 'fused') as a :data:`Variant`."""
    import torch
    from jaxopt_timm.cli._timm_loader import load_timm
    timm_optim = load_timm()[0]
    root = _torch_params(shapes, seed=0)
    rng = np.random.default_rng(1)
    params = list(root.parameters())
    second_order = jt.get_optimizer_info(name).second_order
    kwargs = {'foreach': False} if variant == 'loop' else {'foreach': True} if variant == 'foreach' else {'fused': True}
    try:
        with _timm_mode(name):
            try:
                opt = timm_optim.create_optimizer_v2(root, name, lr=LR, weight_decay=WD, **kwargs)
            except TypeError as e:
                if variant != 'loop' or 'foreach' not in str(e):
                    raise
                # timm's own classes (Kron, Muon, Adahessian, ...) have one implementation: time it as 'loop'
                opt = timm_optim.create_optimizer_v2(root, name, lr=LR, weight_decay=WD)
    except (TypeError, ValueError, RuntimeError) as e:
        return _error(e, 80)
    grads = [torch.from_numpy(rng.standard_normal(p.shape, dtype=np.float32) * 0.02) for p in params]

    if second_order:
        def step():
            opt.zero_grad(set_to_none=True)
            loss = sum(0.5 * (p * p).sum() for p in params)
            loss.backward(create_graph=True)
            t0 = time.perf_counter()
            opt.step()
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


# ---------------------------------------------------------------------------------------------------------------
# suite


def _measure(variants: Dict[str, Any], args) -> Dict[str, Dict[str, Any]]:
    """Time one row's variants interleaved, then free them (every variant holds its own tree and state)."""
    res = time_interleaved(variants, args.reps, args.budget)
    variants.clear()
    gc.collect()
    return res


def run_tree(tree_name: str, names: List[str], args) -> Dict[str, Any]:
    shapes = TREES[tree_name]()  # torch layout: timm's side
    jax_shapes = flax_shapes(shapes) if args.jax_layout == 'flax' else shapes
    n = num_params(shapes)
    params = make_tree(jax_shapes, seed=0)
    grads = make_tree(jax_shapes, seed=1)
    stream = stream_bandwidth(params, args.reps)
    print(f'# {tree_name}: {n / 1e6:.1f}M params, {len(shapes)} leaves, JAX side in {args.jax_layout} layout; '
          f'stream {stream["gbps"]} GB/s ({stream["ms"]} ms for 8 B/param)', flush=True)
    rows = []
    for name in names:
        row: Dict[str, Any] = {'name': name}
        tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD, **_ours_kwargs(name, args.jax_layout))
        variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, _hvp_extra(name), XLA_OPTS),
                                    'stream': stream_variant(params)}
        if XLA_OPTS and name in ELEMENTWISE and args.default_variants:  # the options remove state copies
            variants['ours_default'] = jax_variant(tx, params, grads, _hvp_extra(name))
        if name in OPTAX and not args.no_optax:
            optax_tx = OPTAX[name]()
            variants['optax'] = jax_variant(optax_tx, params, grads, None, XLA_OPTS)
            if XLA_OPTS and name in ELEMENTWISE and args.default_variants:
                variants['optax_default'] = jax_variant(optax_tx, params, grads)
        if not args.no_torch:
            for v in ['loop', 'foreach'] + (['fused'] if name in TORCH_FUSED else []):
                variants[f'timm_{v}'] = timm_variant(name, shapes, v)
        row.update(_measure(variants, args))
        for key in ('ours', 'ours_default'):
            if key in row:
                row[key] = _jax_failed(row[key], tx, params)
        for key in ('optax', 'optax_default'):
            if key in row:
                row[key] = _jax_failed(row[key], optax_tx, params)
        compiles = {}
        if args.compile_reps and 'ms' in row['ours']:
            compiles['ours'] = lambda: cold_compile_s(tx, params, grads, _hvp_extra(name), XLA_OPTS)
        if args.compile_reps and 'ms' in row.get('optax', {}):
            compiles['optax'] = lambda: cold_compile_s(optax_tx, params, grads, None, XLA_OPTS)
        for key, sec in compile_medians(compiles, args.compile_reps).items():
            row[key]['first_call_compile_s'] = row[key]['compile_s']  # first call minus the steady median
            row[key]['compile_s'] = sec
        sb = row['ours']['state_bytes']
        row['state_bytes_per_param'] = round(sb / n, 3)
        row['traffic_bytes_per_param'] = round(traffic_bytes(params, sb) / n, 3)
        row['ours']['gbps'] = round(traffic_bytes(params, sb) / (row['ours']['ms'] * 1e-3) / 1e9, 2)
        row_stream = row['stream']['gbps'] if row.get('stream', {}).get('gbps') else stream['gbps']
        row['ours']['pct_stream'] = round(100 * row['ours']['gbps'] / row_stream, 1)
        torch_ms = [row[k]['ms'] for k in row if k.startswith('timm_') and row[k] and 'ms' in row[k]]
        row['torch_best_ms'] = min(torch_ms) if torch_ms else None
        row['vs_torch'] = round(row['ours']['ms'] / row['torch_best_ms'], 3) if torch_ms else None
        row['vs_optax'] = round(row['ours']['ms'] / row['optax']['ms'], 3) if 'optax' in row else None
        row['compile_vs_optax'] = (round(row['ours']['compile_s'] / max(row['optax']['compile_s'], 1e-3), 3)
                                   if 'optax' in row else None)
        rows.append(row)
        print(_row_md(row), flush=True)
    return {'tree': tree_name, 'params': n, 'leaves': len(shapes), 'jax_layout': args.jax_layout,
            'stream': stream, 'rows': rows}


def _fmt(x, digits=1):
    return '-' if x is None else f'{x:.{digits}f}'


def _ms(row, key):
    r = row.get(key)
    return _fmt(r['ms']) if r and 'ms' in r else '-'


ROW_HEADER = ('| name | ours ms | ours default ms | timm loop | timm foreach | torch fused | optax | optax default | '
              'ours/torch best | ours/optax | GB/s (% of the row stream GB/s) | state B/param | compile s (optax) | '
              'temp MB |\n'
              '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')


def _stream_of(row) -> str:
    st = row.get('stream') or {}
    return f'{st["gbps"]:.0f}' if st.get('gbps') else 'tree'


def _row_md(row) -> str:
    o = row['ours']
    temp = '-' if o.get('temp_bytes') is None else f'{o["temp_bytes"] / 2**20:.1f}'
    comp = _fmt(o['compile_s'], 2) + (f' ({row["optax"]["compile_s"]:.2f})' if 'optax' in row else '')
    return (f'| {row["name"]} | {o["ms"]:.1f} | {_ms(row, "ours_default")} | {_ms(row, "timm_loop")} | '
            f'{_ms(row, "timm_foreach")} | {_ms(row, "timm_fused")} | {_ms(row, "optax")} | '
            f'{_ms(row, "optax_default")} | '
            f'{_fmt(row["vs_torch"], 2)} | '
            f'{_fmt(row["vs_optax"], 2)} | {o["gbps"]:.1f} ({o["pct_stream"]:.0f}% of {_stream_of(row)}) | '
            f'{row["state_bytes_per_param"]:.2f} | {comp} | {temp} |')


def run_growth(args) -> List[Dict[str, Any]]:
    out = []
    for name in args.growth_names.split(','):
        for total in (1 << 20, 1 << 22, 1 << 24, 1 << 26):
            shapes = equal_leaves_shapes(total)
            params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
            tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD)
            variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, None, XLA_OPTS)}
            if name in OPTAX and not args.no_optax:
                variants['optax'] = jax_variant(OPTAX[name](), params, grads, None, XLA_OPTS)
            if not args.no_torch:
                for v in ['foreach'] + (['fused'] if name in TORCH_FUSED else []):
                    variants[f'timm_{v}'] = timm_variant(name, shapes, v)
            r = {'name': name, 'params': total, **_measure(variants, args)}
            r['ours'] = _jax_failed(r['ours'], tx, params)
            sb = r['ours']['state_bytes']
            r['ours']['gbps'] = round(traffic_bytes(params, sb) / (r['ours']['ms'] * 1e-3) / 1e9, 2)
            r['ns_per_param'] = round(r['ours']['ms'] * 1e6 / total, 3)
            out.append(r)
            print(f'growth {name} {total / 2**20:.0f}Mi: ours {r["ours"]["ms"]:.2f} ms '
                  f'({r["ns_per_param"]} ns/param, {r["ours"]["gbps"]} GB/s), optax {_ms(r, "optax")}, '
                  f'torch foreach {_ms(r, "timm_foreach")}, fused {_ms(r, "timm_fused")}', flush=True)
            del params, grads
            gc.collect()
    return out


def run_small(names: List[str], args) -> List[Dict[str, Any]]:
    shapes = TREES['small2000']()
    params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
    out = []
    for name in names:
        tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD)
        variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, _hvp_extra(name), XLA_OPTS)}
        ptx = (jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD, pack_leaves=PACK_LEAVES)
               if name in PACKABLE or name in STACKABLE else None)
        if ptx is not None:
            variants['ours_packed'] = jax_variant(ptx, params, grads, None, XLA_OPTS)
        if name in OPTAX and not args.no_optax and not args.skip_slow_optax:
            variants['optax'] = jax_variant(OPTAX[name](), params, grads, None, XLA_OPTS)
        if not args.no_torch:
            for v in ['loop', 'foreach'] + (['fused'] if name in TORCH_FUSED else []):
                variants[f'timm_{v}'] = timm_variant(name, shapes, v)
        r = {'name': name, **_measure(variants, args)}
        r['ours'] = _jax_failed(r['ours'], tx, params)
        torch_ms = [r[k]['ms'] for k in r if k.startswith('timm_') and r[k] and 'ms' in r[k]]
        r['torch_best_ms'] = min(torch_ms) if torch_ms else None
        out.append(r)
        if 'ours_packed' in r:
            r['ours_packed'] = _jax_failed(r['ours_packed'], ptx, params)
        pk = r.get('ours_packed')
        print(f'small2000 {name}: ours {r["ours"]["ms"]:.2f} ms (compile {r["ours"]["compile_s"]:.2f} s)'
              + (f', packed {_ms(r, "ours_packed")} ms (compile {_fmt(pk.get("compile_s"), 2)} s)' if pk else '')
              + f', optax {_ms(r, "optax")}, torch best {_fmt(r["torch_best_ms"], 2)}', flush=True)
    return out


def to_markdown(result: Dict[str, Any]) -> str:
    lines = [f'Machine: {result["machine"]}', '']
    for tree in result['trees']:
        lines += [f'### {tree["tree"]}: {tree["params"] / 1e6:.1f}M params, {tree["leaves"]} leaves; JAX side in '
                  f'{tree.get("jax_layout", "torch")} layout; streaming {tree["stream"]["gbps"]} GB/s', '', ROW_HEADER]
        lines += [_row_md(r) for r in tree['rows']]
        retraced = [r['name'] for r in tree['rows'] if r['ours'].get('traces', 1) != 1]
        lines += ['', 'Retracing: every step traced once over its timed calls' if not retraced else
                  f'Retracing: {", ".join(retraced)} traced more than once']
        lines.append('')
    if result.get('growth'):
        lines += ['### Growth (16 equal leaves)', '', '| name | params | ours ms | ns/param | GB/s | optax ms | '
                  'torch foreach ms | torch fused ms |', '|---|---|---|---|---|---|---|---|']
        for r in result['growth']:
            lines.append(f'| {r["name"]} | {r["params"] / 2**20:.0f}Mi | {r["ours"]["ms"]:.2f} | {r["ns_per_param"]} | '
                         f'{r["ours"]["gbps"]} | {_ms(r, "optax")} | {_ms(r, "timm_foreach")} | '
                         f'{_ms(r, "timm_fused")} |')
        lines.append('')
    if result.get('small'):
        lines += ['### 2,000 leaves of 1,000 floats', '', '| name | ours ms | compile s | ours packed/stacked ms | '
                  'packed/stacked compile s | optax ms | optax compile s | torch best ms | best ours/torch best |',
                  '|---|---|---|---|---|---|---|---|---|']
        for r in result['small']:
            o, pk = r.get('optax'), r.get('ours_packed')
            best = min([x['ms'] for x in (r['ours'], pk) if x and x.get('ms') == x.get('ms')], default=None)  # no NaN
            vs = best / r['torch_best_ms'] if r['torch_best_ms'] and best else None
            lines.append(f'| {r["name"]} | {r["ours"]["ms"]:.2f} | {r["ours"]["compile_s"]:.2f} | '
                         f'{_fmt(pk and pk.get("ms"), 2)} | {_fmt(pk and pk.get("compile_s"), 2)} | '
                         f'{_fmt(o and o["ms"], 2)} | {_fmt(o and o["compile_s"], 2)} | '
                         f'{_fmt(r["torch_best_ms"], 2)} | '
                         f'{_fmt(vs, 2)} |')
        lines.append('')
    if result.get('schedule'):
        sc = result['schedule']
        lines += ['### Schedule (ResNet-50, AdamW)', '', f'cosine + warmup + noise: {sc["scheduled"]["ms"]} ms vs '
                  f'{sc["constant"]["ms"]} ms constant lr, ratio {sc["ratio"]}; traces '
                  f'{sc["scheduled"].get("traces")} / {sc["constant"].get("traces")} over '
                  f'{sc["scheduled"].get("reps", 0) + 2} calls', '']
    if result.get('layer_decay'):
        ld = result['layer_decay']
        lines += ['### Layer decay (ViT-B/16, AdamW)', '', f'{ld["groups"]} groups: {ld["layer_decay_ms"]} ms vs '
                  f'{ld["single_group_ms"]} ms single group, ratio {ld["ratio"]}', '']
    return '\n'.join(lines)


def run_schedule(args) -> Dict[str, Any]:
    """AdamW on ResNet-50's tree with a scheduled lr against a constant one, interleaved.

    The schedule is DeiT's recipe with timm's extras switched on: cosine over 300 epochs of 1,251 updates,
    5 warmup epochs, per-update stepping, lr noise over epochs 100-200 (``create_scheduler_v2``).
    """
    shapes = flax_shapes(TREES['resnet50']()) if args.jax_layout == 'flax' else TREES['resnet50']()
    params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
    schedule, _ = jt.create_scheduler_v2(LR, sched='cosine', num_epochs=300, warmup_epochs=5, warmup_lr=1e-6,
                                         min_lr=1e-5, noise=(100, 200), step_on_epochs=False, updates_per_epoch=1251)
    variants = {
        'constant': jax_variant(jt.create_optimizer_v2(params, 'adamw', lr=LR, weight_decay=WD), params, grads,
                                None, XLA_OPTS),
        'scheduled': jax_variant(jt.create_optimizer_v2(params, 'adamw', lr=schedule, weight_decay=WD), params,
                                 grads, None, XLA_OPTS),
    }
    res = _measure(variants, args)
    out = {'constant': res['constant'], 'scheduled': res['scheduled'],
           'ratio': round(res['scheduled']['ms'] / res['constant']['ms'], 3)}
    print(f'schedule: adamw constant lr {out["constant"]["ms"]} ms, cosine+warmup+noise {out["scheduled"]["ms"]} ms, '
          f'ratio {out["ratio"]}; traces {out["constant"].get("traces")}/{out["scheduled"].get("traces")}',
          flush=True)
    return out


def _select(spec: str) -> List[str]:
    all_names = list(jt.list_optimizers())
    if spec == 'all':
        return all_names
    if spec == 'targets':
        return [n for n in ELEMENTWISE + SHAPE_AWARE if n in all_names]
    out = []
    for pat in spec.split(','):
        hits = fnmatch.filter(all_names, pat)
        if not hits:
            raise SystemExit(f'--names: {pat!r} matches no registered optimizer')
        out += [h for h in hits if h not in out]
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), cpu)
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.default_backend()}: {jax.devices()[0]}), '
            f'optax {optax.__version__}, python {sys.version.split()[0]}')


def main(argv=None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--trees', default='resnet50,vitb16', help=f'comma list of {sorted(TREES)}')
    ap.add_argument('--jax-layout', default='flax', choices=('flax', 'torch'),
                    help="layout of the JAX side's kernels: 'flax' (conv (kH, kW, I, O), Dense (in, out): what a Flax "
                         "model holds) or 'torch' (timm's shapes as they are); timm always gets torch's layout")
    ap.add_argument('--names', default='targets', help="'all', 'targets' (the issue's list) or comma globs")
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--budget', type=float, default=60.0, help='seconds per measurement before reps are cut (>= 5)')
    ap.add_argument('--extras', default='', help='comma list of growth, small, schedule, layer_decay')
    ap.add_argument('--small-names', default='targets', help="names timed on the 2,000-leaf tree (as --names)")
    ap.add_argument('--growth-names', default='adamw,sgd,lion,lamb')
    ap.add_argument('--skip-slow-optax', action='store_true', help='skip optax on the 2,000-leaf tree (LAMB: minutes)')
    ap.add_argument('--no-default-variants', dest='default_variants', action='store_false',
                    help='skip the XLA-default-options runs of ours and optax')
    ap.add_argument('--compile-reps', type=int, default=3,
                    help='cold compiles of ours and optax per row (ResNet-50/ViT-B), interleaved; their median is '
                         'the compile time (0: first call minus the steady median, one sample)')
    ap.add_argument('--no-torch', action='store_true')
    ap.add_argument('--no-optax', action='store_true')
    ap.add_argument('--out', default=None, help='directory for results.md and results.json')
    args = ap.parse_args(argv)

    names = _select(args.names)
    result: Dict[str, Any] = {'machine': machine(), 'lr': LR, 'weight_decay': WD, 'trees': []}
    print(result['machine'], flush=True)
    for tree in [t for t in args.trees.split(',') if t]:
        result['trees'].append(run_tree(tree, names, args))
    extras = set(filter(None, args.extras.split(',')))
    if 'growth' in extras:
        result['growth'] = run_growth(args)
    if 'small' in extras:
        result['small'] = run_small(_select(args.small_names), args)
    if 'schedule' in extras:
        result['schedule'] = run_schedule(args)
    if 'layer_decay' in extras:
        from benchmarks import layer_decay
        result['layer_decay'] = layer_decay.main(['--reps', str(args.reps)])
    md = to_markdown(result)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, 'results.md'), 'w') as f:
            f.write(md + '\n')
        with open(os.path.join(args.out, 'results.json'), 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
