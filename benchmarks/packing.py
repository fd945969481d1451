"""Packing many small leaves into one flat buffer: does it beat per-leaf fusions on XLA:CPU?

Run: ``python -m benchmarks.packing [--leaves 2000] [--size 1000] [--reps 20]``.

Three AdamW steps on ``--leaves`` leaves of ``--size`` floats, each jitted with params and state donated:

* ``per_leaf``: ``jt.optim.adamw`` as registered (one fused loop per output per leaf);
* ``packed``: ``jt.transforms.packed(adamw)``: the state kept as one flat buffer; each step
  concatenates the grads and params (``optimization_barrier`` keeps the concatenation from being fused
  into every consumer), runs the same ``adamw`` on the flat arrays, and slices the update back;
* ``optax.flatten``: optax's own ravel/unravel wrapper around the same ``adamw``.

Reported: trace (lower) and XLA compile seconds, steady step ms (median), and the largest deviation
from ``per_leaf`` after the timed steps (all three compute the same elementwise math). Also times
the two halves of packing alone (one 2,000-operand concatenate; 2,000 slices of a flat buffer).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import jaxopt_timm as jt


def _time(tx, params, grads, reps):
    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    state = tx.init(params)
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    p, s = jax.tree.map(jnp.copy, params), state
    times = []
    for _ in range(reps + 2):
        t3 = time.perf_counter()
        p, s = compiled(p, s, grads)
        jax.block_until_ready(p)
        times.append(time.perf_counter() - t3)
    return {'lower_s': round(t1 - t0, 2), 'compile_s': round(t2 - t1, 2),
            'step_ms': round(statistics.median(times[2:]) * 1e3, 2)}, p


def _compile_only(fn, *args):
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return round(time.perf_counter() - t0, 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--leaves', type=int, default=2000)
    ap.add_argument('--size', type=int, default=1000)
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--json', default=None)
    args = ap.parse_args(argv)
    params = {f'p{i:05d}': jnp.full((args.size,), 0.1) for i in range(args.leaves)}
    grads = {f'p{i:05d}': jnp.full((args.size,), 0.01 * (1 + i % 7)) for i in range(args.leaves)}
    result, finals = {}, {}
    for key, tx in (('per_leaf', jt.optim.adamw(1e-3, weight_decay=0.05)),
                    ('packed', jt.transforms.packed(jt.optim.adamw(1e-3, weight_decay=0.05))),
                    ('optax_flatten', optax.flatten(jt.optim.adamw(1e-3, weight_decay=0.05)))):
        result[key], finals[key] = _time(tx, params, grads, args.reps)
        result[key]['max_dev'] = float(max(jnp.max(jnp.abs(a - b)) for a, b in zip(
            jax.tree.leaves(finals[key]), jax.tree.leaves(finals['per_leaf']))))
        print(key, result[key], flush=True)
    leaves = list(params.values())
    flat = jnp.zeros((args.leaves * args.size,))
    result['concatenate_only_compile_s'] = _compile_only(jnp.concatenate, leaves)
    result['slices_only_compile_s'] = _compile_only(
        lambda u: [u[i * args.size:(i + 1) * args.size] for i in range(args.leaves)], flat)
    print('| variant | trace s | compile s | step ms | max deviation |\n|---|---|---|---|---|')
    for key in ('per_leaf', 'packed', 'optax_flatten'):
        r = result[key]
        print(f'| {key} | {r["lower_s"]} | {r["compile_s"]} | {r["step_ms"]} | {r["max_dev"]:.1e} |')
    print(f'concatenate of {args.leaves} leaves alone: {result["concatenate_only_compile_s"]} s compile; '
          f'{args.leaves} slices of one buffer alone: {result["slices_only_compile_s"]} s compile')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
