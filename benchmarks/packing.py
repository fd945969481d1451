"""Packing many small leaves into flat buffers: does it beat per-leaf fusions on XLA:CPU?

Run: ``python -m benchmarks.packing [--leaves 2000] [--size 1000] [--reps 20] [--json out.json]``.

AdamW (lr 1e-3, weight decay 0.05) on ``--leaves`` leaves of ``--size`` floats, every variant jitted
with params and state donated and timed interleaved in one process (``benchmarks._harness.time_interleaved``:
shuffled rounds, a pause before each call), so the machine's drift hits all alike:

* ``per_leaf``: ``jt.optim.adamw`` as registered (one fused loop per output per leaf);
* ``packed_32``: ``jt.transforms.packed(adamw)`` (the default: buffers of 32 leaves);
* ``packed_all``: ``packed(adamw, leaves_per_buffer=--leaves)``: one flat buffer for the whole tree;
* ``optax_flatten``: optax's own ravel/unravel wrapper (one buffer) around the same ``adamw``;
* ``timm_fused``: timm's AdamW with torch's fused CPU kernel on the same shapes (the fastest torch).

Reported: first-call seconds (trace + compile), steady step ms (median), and the largest deviation of
each JAX variant's params from ``per_leaf`` after the same number of steps run afresh (all compute the same
elementwise math). Then XLA:CPU's compile time of the unpacking alone: ``--leaves`` slices taken out of
one buffer vs out of buffers of 32 leaves (the cost grows with the square of the slices per buffer).
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax

import jaxopt_timm as jt
from benchmarks._harness import jax_variant, time_interleaved
from benchmarks._variants import XLA_OPTS, timm_variant


def _transforms(leaves: int):
    def adamw():
        return jt.optim.adamw(1e-3, weight_decay=0.05)
    return {'per_leaf': adamw(), 'packed_32': jt.transforms.packed(adamw()),
            'packed_all': jt.transforms.packed(adamw(), leaves_per_buffer=leaves),
            'optax_flatten': optax.flatten(adamw())}


def _final_params(tx, params, grads, steps: int = 3):
    def step(p, s):
        u, s = tx.update(grads, s, p)
        return optax.apply_updates(p, u), s
    f, p, s = jax.jit(step), params, tx.init(params)
    for _ in range(steps):
        p, s = f(p, s)
    return p


def _compile_s(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    return round(time.perf_counter() - t0, 2)


def unpack_compile(leaves: int, size: int, per_buffer: int) -> float:
    """Compile seconds of taking ``leaves`` slices of ``size`` out of buffers of ``per_buffer`` leaves each."""
    n_buf = -(-leaves // per_buffer)
    bufs = [jnp.zeros((min(per_buffer, leaves - b * per_buffer) * size,)) for b in range(n_buf)]
    return _compile_s(lambda bs: [b[i * size:(i + 1) * size] for b in bs for i in range(b.shape[0] // size)], bufs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--leaves', type=int, default=2000)
    ap.add_argument('--size', type=int, default=1000)
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--budget', type=float, default=120.0)
    ap.add_argument('--no-torch', action='store_true')
    ap.add_argument('--json', default=None)
    args = ap.parse_args(argv)
    shapes = {f'p{i:05d}': (args.size,) for i in range(args.leaves)}
    params = {k: jnp.full(s, 0.1) for k, s in shapes.items()}
    grads = {k: jnp.full(s, 0.01 * (1 + i % 7)) for i, (k, s) in enumerate(shapes.items())}
    txs = _transforms(args.leaves)
    variants = {k: jax_variant(tx, params, grads, None, XLA_OPTS) for k, tx in txs.items()}
    if not args.no_torch:
        variants['timm_fused'] = timm_variant('adamw', shapes, 'fused')
    result = time_interleaved(variants, args.reps, args.budget)
    ref = _final_params(txs['per_leaf'], params, grads)
    for k, tx in txs.items():
        result[k]['max_dev'] = float(max(jnp.max(jnp.abs(a - b)) for a, b in zip(
            jax.tree.leaves(_final_params(tx, params, grads)), jax.tree.leaves(ref))))
    result['unpack_compile_s'] = {'one_buffer': unpack_compile(args.leaves, args.size, args.leaves),
                                  'buffers_of_32': unpack_compile(args.leaves, args.size, 32)}
    print(f'AdamW on {args.leaves} leaves of {args.size} floats, interleaved:\n')
    print('| variant | first call s (trace + compile) | step ms | max deviation from per_leaf |\n|---|---|---|---|')
    for key in list(txs) + (['timm_fused'] if 'timm_fused' in result else []):
        r = result[key]
        if 'ms' not in r:
            print(f'| {key} | failed: {r.get("error")} | | |')
            continue
        dev = f'{r["max_dev"]:.1e}' if 'max_dev' in r else '-'
        print(f'| {key} | {r.get("compile_s", "-")} | {r["ms"]} | {dev} |')
    u = result['unpack_compile_s']
    print(f'\n{args.leaves} slices out of one buffer compile in {u["one_buffer"]} s; out of buffers of 32 leaves in '
          f'{u["buffers_of_32"]} s')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    main()
