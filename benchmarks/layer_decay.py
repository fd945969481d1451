"""Cost of layer-wise lr decay: the 26-group (ViT-B, layer_decay=0.75) update vs the single-group update.

Run: ``python -m benchmarks.layer_decay [--depth 12] [--reps 20]``. Each update is
jitted with params and state donated; median of ``reps`` timed steps after
warm-up, both variants measured in this one process, interleaved.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import optax

import jaxopt_timm as jt
from benchmarks.trees import VIT_GROUP_MATCHER, make_tree, num_params, vit_shapes


def _stepper(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--depth', type=int, default=12)
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--opt', default='adamw')
    ap.add_argument('--json', default=None)
    args = ap.parse_args(argv)

    shapes = vit_shapes(depth=args.depth)
    grads = make_tree(shapes, seed=1)
    variants = {
        'single_group': dict(),
        'layer_decay': dict(layer_decay=0.75, group_matcher=VIT_GROUP_MATCHER),
    }
    runs = {}
    for key, extra in variants.items():
        params = make_tree(shapes)
        tx = jt.create_optimizer_v2(params, args.opt, lr=1e-3, weight_decay=0.05, **extra)
        state = tx.init(params)
        step = _stepper(tx)
        params, state = step(params, state, grads)
        jax.block_until_ready(params)
        runs[key] = [step, params, state, []]
    n_groups = len({(round(s, 12), w) for s, w in zip(
        jax.tree.leaves(jt.optim._param_groups.build_param_groups(
            runs['layer_decay'][1], 0.05, layer_decay=0.75, group_matcher=VIT_GROUP_MATCHER).lr_scale),
        jax.tree.leaves(jt.optim._param_groups.build_param_groups(
            runs['layer_decay'][1], 0.05, layer_decay=0.75, group_matcher=VIT_GROUP_MATCHER).weight_decay))})
    for _ in range(args.reps):
        for key in variants:
            step, params, state, times = runs[key]
            t0 = time.perf_counter()
            params, state = step(params, state, grads)
            jax.block_until_ready(params)
            times.append(time.perf_counter() - t0)
            runs[key][1], runs[key][2] = params, state
    med = {k: statistics.median(v[3]) * 1e3 for k, v in runs.items()}
    ratio = med['layer_decay'] / med['single_group']
    result = {
        'opt': args.opt, 'params': num_params(shapes), 'leaves': len(shapes), 'groups': n_groups,
        'single_group_ms': round(med['single_group'], 2), 'layer_decay_ms': round(med['layer_decay'], 2),
        'ratio': round(ratio, 3), 'backend': jax.default_backend(), 'devices': str(jax.devices()[0]),
    }
    print("| opt | params | leaves | groups | single group ms | layer decay ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.opt} | {result['params'] / 1e6:.1f}M | {result['leaves']} | {n_groups} | "
          f"{result['single_group_ms']} | {result['layer_decay_ms']} | {result['ratio']} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
