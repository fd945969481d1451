"""The benchmarks' timing harness: how a step is timed, compiled and sized, whatever optimizer it runs.

Kept apart from what is timed (``benchmarks._variants``) and from the suite that picks rows and prints
tables (``benchmarks.step``) because the measurement rules are the part every benchmark here must share:
``benchmarks.packing`` times its variants with the same interleaved rounds, so a ratio read in one table
means what it means in another. The rules, each with the measurement that motivated it, are in the
docstrings below: interleaved shuffled rounds with a pause (drift and torch's worker threads), a streaming
pass timed in every row's rounds (the machine's bandwidth moves between rows), and cold compiles taken as
a median of fresh traces (one first call is too noisy to hold a ratio to).
"""
from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# A variant under measurement: a call that runs one step and returns its seconds, and a finisher that adds
# the variant's own figures (memory, state bytes) to its result after timing.
Variant = Tuple[Callable[[], float], Optional[Callable[[Dict[str, Any]], None]]]


def error_result(e: BaseException, width: int = 120) -> Dict[str, Any]:
    """A failed measurement as a result: the exception's type and first line."""
    return {'error': f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:width]}'}


def seconds_of(call: Callable[[], Any]) -> Callable[[], float]:
    """``call`` as a :data:`Variant` call: runs it and returns its wall-clock seconds."""
    def timed() -> float:
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0
    return timed


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
            results[key] = error_result(e)
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
                results[key] = error_result(e)
                del live[key]
    for key, m in live.items():
        med = statistics.median(m['times']) * 1e3
        r = {'ms': round(med, 3), 'min_ms': round(min(m['times']) * 1e3, 3), 'first_ms': round(m['first'] * 1e3, 1),
             'compile_s': round(max(m['first'] * 1e3 - med, 0) / 1e3, 3), 'reps': m['n']}
        if m['finish'] is not None:
            m['finish'](r)
        results[key] = r
    return results


def measure(variants: Dict[str, Any], reps: int, budget_s: float) -> Dict[str, Dict[str, Any]]:
    """Time one row's variants interleaved, then free them (every variant holds its own tree and state)."""
    res = time_interleaved(variants, reps, budget_s)
    variants.clear()
    gc.collect()
    return res


# ---------------------------------------------------------------------------------------------------------------
# a jitted, donated optimizer step


def _step_fn(tx, extra: Optional[Callable] = None, on_trace: Optional[Callable[[], None]] = None):
    """``(params, state, grads) -> (params, state)`` of ``tx``; ``extra(params)`` adds update kwargs (hvp_fn,
    grad_fn)."""
    def step(p, s, g):
        if on_trace is not None:
            on_trace()  # a Python side effect: runs once per trace, never per compiled call
        kwargs = extra(p) if extra is not None else {}
        updates, s = tx.update(g, s, p, **kwargs)
        return optax.apply_updates(p, updates), s
    return step


class JaxStep:
    """A jitted, donated ``params, state <- step(params, state, grads)`` of an optax transformation."""

    def __init__(self, tx, params, grads, extra: Optional[Callable] = None, compiler_options=None):
        self.grads = grads
        self.traces = 0

        def count_trace():
            self.traces += 1

        self.jitted = jax.jit(_step_fn(tx, extra, count_trace), donate_argnums=(0, 1),
                              compiler_options=compiler_options or None)
        self.params = jax.tree.map(jnp.copy, params)
        # a fresh buffer per state leaf: some inits (optax.contrib.madgrad's x0) return the params themselves,
        # and donating params and state together would then donate one buffer twice
        self.state = jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tx.init(self.params))

    def memory(self) -> Optional[int]:
        try:
            compiled = self.jitted.lower(self.params, self.state, self.grads).compile()
            return int(compiled.memory_analysis().temp_size_in_bytes)
        except Exception:  # noqa: BLE001 - backends without memory analysis
            return None

    def __call__(self):
        self.params, self.state = self.jitted(self.params, self.state, self.grads)
        jax.block_until_ready(self.params)


def jax_variant(tx, params, grads, extra=None, compiler_options=None) -> Any:
    """Ours or optax as a :data:`Variant` (a jitted donated step), or an error result."""
    try:
        step = JaxStep(tx, params, grads, extra, compiler_options)
    except Exception as e:  # noqa: BLE001
        return jax_failed(error_result(e), tx, params)

    def finish(r):
        r['traces'] = step.traces  # 1: the step never retraced across the timed calls
        r['temp_bytes'] = step.memory()
        r['state_bytes'] = state_bytes(tx, params)
    return seconds_of(step), finish


def jax_failed(r: Dict[str, Any], tx, params) -> Dict[str, Any]:
    """A JAX result that failed (no 'ms'), with the fields the tables read."""
    if 'ms' in r:
        return r
    return {**r, 'ms': float('nan'), 'compile_s': float('nan'), 'state_bytes': state_bytes(tx, params),
            'temp_bytes': None}


def cold_compile_s(tx, params, grads, extra=None, compiler_options=None) -> float:
    """Seconds to trace, lower and compile the step afresh (a new closure and ``jit``: no cache can answer)."""
    step = _step_fn(tx, extra)
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


# ---------------------------------------------------------------------------------------------------------------
# bytes and bandwidth


def state_bytes(tx, params) -> int:
    state = jax.eval_shape(tx.init, params)
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(state)
               if hasattr(x, 'shape') and x.ndim > 0)


def traffic_bytes(params, n_state_bytes: int) -> int:
    """Compulsory traffic of an in-place step: params read + written, grads read, state read + written."""
    p = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
    return 3 * p + 2 * n_state_bytes


def traffic_gbps(params, n_state_bytes: int, ms: float) -> float:
    """Achieved GB/s of a step of ``ms`` under the compulsory-traffic model of :func:`traffic_bytes`."""
    return round(traffic_bytes(params, n_state_bytes) / (ms * 1e-3) / 1e9, 2)


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
    r = time_interleaved({'stream': (seconds_of(_stream_call(params)), None)}, max(reps, 20), 30.0)['stream']
    r['gbps'] = _stream_gbps(params, r['ms'])
    return r


def stream_variant(params) -> Any:
    """The streaming pass as a :data:`Variant`, timed in every row's rounds (the machine's bandwidth drifts by
    up to 25% over minutes, so each row's "% of stream" is taken against the pass timed alongside it)."""
    def finish(r):
        r['gbps'] = _stream_gbps(params, r['ms'])
    return seconds_of(_stream_call(params)), finish
