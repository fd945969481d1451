"""The optimizer-step benchmark: ours against timm (torch) and optax, in one process and one run.

Run from the repository root::

    python -m benchmarks.step                       # the benchmarked records, ResNet-50 and ViT-B/16 trees
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
* optax: the closest optax alias (the registry record's ``optax_equivalent``), jitted and donated
  like ours;
* the machine's streaming bandwidth on the same tree: a donated jitted ``x * a + b`` over every
  leaf (reads and writes each float once, as an in-place optimizer pass does), timed once per tree
  and again as a variant in every row's rounds; a row's "% of stream" is against its own pass;
* achieved bandwidth of each step under a compulsory-traffic model: params read + written,
  grads read, every state byte read + written (AdamW: 4+4+4+2*8 = 28 bytes per float32 param).

``--extras``: ``growth`` (AdamW/SGD/Lion/LAMB from 1M to 64M params in 16 equal leaves),
``small`` (2,000 leaves of 1,000 floats: compile time and step, per leaf and with the factory's
``pack_leaves=32``: ``jt.transforms.packed`` for elementwise names, ``stacked`` for per-tensor ones;
buffer sizes are compared by ``benchmarks.packing``), ``schedule`` (AdamW with a cosine/warmup/noise lr
against a constant lr, and the trace count of each), ``layer_decay`` (26-group AdamW, see
``benchmarks.layer_decay``). Writes ``results.md`` and ``results.json`` under ``--out``.

This module is the runner (which trees, rows and variants; the command line; results): how a variant is
timed is ``benchmarks._harness``, what is timed for a name is ``benchmarks._variants`` (read from the
optimizer's registry record), and the tables are ``benchmarks._report``.
"""
from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
from typing import Any, Dict, List

import jaxopt_timm as jt
from benchmarks._harness import (cold_compile_s, compile_medians, jax_failed, jax_variant, measure, stream_bandwidth,
                                 stream_variant, traffic_bytes, traffic_gbps)
from benchmarks._report import fmt, machine, ms_of, row_md, to_markdown
from benchmarks._variants import (LR, PACK_LEAVES, WD, XLA_OPTS, is_elementwise_row, optax_transform, ours_kwargs,
                                  packs, suite_rows, timm_kinds, timm_variants, torch_best_ms, update_extras)
from benchmarks.trees import TREES, equal_leaves_shapes, flax_shapes, make_tree, num_params


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
        tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD, **ours_kwargs(name, args.jax_layout))
        variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, update_extras(name), XLA_OPTS),
                                    'stream': stream_variant(params)}
        default_variants = bool(XLA_OPTS) and is_elementwise_row(name) and args.default_variants  # options: no copies
        if default_variants:
            variants['ours_default'] = jax_variant(tx, params, grads, update_extras(name))
        optax_tx = None if args.no_optax else optax_transform(name)
        if optax_tx is not None:
            variants['optax'] = jax_variant(optax_tx, params, grads, None, XLA_OPTS)
            if default_variants:
                variants['optax_default'] = jax_variant(optax_tx, params, grads)
        if not args.no_torch:
            variants.update(timm_variants(name, shapes, timm_kinds(name)))
        row.update(measure(variants, args.reps, args.budget))
        for key, key_tx in (('ours', tx), ('ours_default', tx), ('optax', optax_tx), ('optax_default', optax_tx)):
            if key in row:
                row[key] = jax_failed(row[key], key_tx, params)
        compiles = {}
        if args.compile_reps and 'ms' in row['ours']:
            compiles['ours'] = lambda: cold_compile_s(tx, params, grads, update_extras(name), XLA_OPTS)
        if args.compile_reps and 'ms' in row.get('optax', {}):
            compiles['optax'] = lambda: cold_compile_s(optax_tx, params, grads, None, XLA_OPTS)
        for key, sec in compile_medians(compiles, args.compile_reps).items():
            row[key]['first_call_compile_s'] = row[key]['compile_s']  # first call minus the steady median
            row[key]['compile_s'] = sec
        sb = row['ours']['state_bytes']
        row['state_bytes_per_param'] = round(sb / n, 3)
        row['traffic_bytes_per_param'] = round(traffic_bytes(params, sb) / n, 3)
        row['ours']['gbps'] = traffic_gbps(params, sb, row['ours']['ms'])
        row_stream = row['stream']['gbps'] if row.get('stream', {}).get('gbps') else stream['gbps']
        row['ours']['pct_stream'] = round(100 * row['ours']['gbps'] / row_stream, 1)
        row['torch_best_ms'] = torch_best_ms(row)
        row['vs_torch'] = round(row['ours']['ms'] / row['torch_best_ms'], 3) if row['torch_best_ms'] else None
        row['vs_optax'] = round(row['ours']['ms'] / row['optax']['ms'], 3) if 'optax' in row else None
        row['compile_vs_optax'] = (round(row['ours']['compile_s'] / max(row['optax']['compile_s'], 1e-3), 3)
                                   if 'optax' in row else None)
        rows.append(row)
        print(row_md(row), flush=True)
    return {'tree': tree_name, 'params': n, 'leaves': len(shapes), 'jax_layout': args.jax_layout,
            'stream': stream, 'rows': rows}


def run_growth(args) -> List[Dict[str, Any]]:
    out = []
    for name in args.growth_names.split(','):
        for total in (1 << 20, 1 << 22, 1 << 24, 1 << 26):
            shapes = equal_leaves_shapes(total)
            params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
            tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD)
            variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, None, XLA_OPTS)}
            optax_tx = None if args.no_optax else optax_transform(name)
            if optax_tx is not None:
                variants['optax'] = jax_variant(optax_tx, params, grads, None, XLA_OPTS)
            if not args.no_torch:
                variants.update(timm_variants(name, shapes, timm_kinds(name, loop=False)))
            r = {'name': name, 'params': total, **measure(variants, args.reps, args.budget)}
            r['ours'] = jax_failed(r['ours'], tx, params)
            r['ours']['gbps'] = traffic_gbps(params, r['ours']['state_bytes'], r['ours']['ms'])
            r['ns_per_param'] = round(r['ours']['ms'] * 1e6 / total, 3)
            out.append(r)
            print(f'growth {name} {total / 2**20:.0f}Mi: ours {r["ours"]["ms"]:.2f} ms '
                  f'({r["ns_per_param"]} ns/param, {r["ours"]["gbps"]} GB/s), optax {ms_of(r, "optax")}, '
                  f'torch foreach {ms_of(r, "timm_foreach")}, fused {ms_of(r, "timm_fused")}', flush=True)
            del params, grads
            gc.collect()
    return out


def run_small(names: List[str], args) -> List[Dict[str, Any]]:
    shapes = TREES['small2000']()
    params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
    out = []
    for name in names:
        tx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD)
        variants: Dict[str, Any] = {'ours': jax_variant(tx, params, grads, update_extras(name), XLA_OPTS)}
        ptx = jt.create_optimizer_v2(params, name, lr=LR, weight_decay=WD, pack_leaves=PACK_LEAVES) if packs(name) \
            else None
        if ptx is not None:
            variants['ours_packed'] = jax_variant(ptx, params, grads, None, XLA_OPTS)
        optax_tx = None if args.no_optax or args.skip_slow_optax else optax_transform(name)
        if optax_tx is not None:
            variants['optax'] = jax_variant(optax_tx, params, grads, None, XLA_OPTS)
        if not args.no_torch:
            variants.update(timm_variants(name, shapes, timm_kinds(name)))
        r = {'name': name, **measure(variants, args.reps, args.budget)}
        r['ours'] = jax_failed(r['ours'], tx, params)
        r['torch_best_ms'] = torch_best_ms(r)
        out.append(r)
        if 'ours_packed' in r:
            r['ours_packed'] = jax_failed(r['ours_packed'], ptx, params)
        pk = r.get('ours_packed')
        print(f'small2000 {name}: ours {r["ours"]["ms"]:.2f} ms (compile {r["ours"]["compile_s"]:.2f} s)'
              + (f', packed {ms_of(r, "ours_packed")} ms (compile {fmt(pk.get("compile_s"), 2)} s)' if pk else '')
              + f', optax {ms_of(r, "optax")}, torch best {fmt(r["torch_best_ms"], 2)}', flush=True)
    return out


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
    res = measure(variants, args.reps, args.budget)
    out = {'constant': res['constant'], 'scheduled': res['scheduled'],
           'ratio': round(res['scheduled']['ms'] / res['constant']['ms'], 3)}
    print(f'schedule: adamw constant lr {out["constant"]["ms"]} ms, cosine+warmup+noise {out["scheduled"]["ms"]} ms, '
          f'ratio {out["ratio"]}; traces {out["constant"].get("traces")}/{out["scheduled"].get("traces")}',
          flush=True)
    return out


def select_names(spec: str) -> List[str]:
    """``--names``: 'all' (every registered name), 'targets' (:func:`suite_rows`) or comma fnmatch globs."""
    all_names = list(jt.list_optimizers())
    if spec == 'all':
        return all_names
    if spec == 'targets':
        return suite_rows()
    out = []
    for pat in spec.split(','):
        hits = fnmatch.filter(all_names, pat)
        if not hits:
            raise SystemExit(f'--names: {pat!r} matches no registered optimizer')
        out += [h for h in hits if h not in out]
    return out


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

    names = select_names(args.names)
    result: Dict[str, Any] = {'machine': machine(), 'lr': LR, 'weight_decay': WD, 'trees': []}
    print(result['machine'], flush=True)
    for tree in [t for t in args.trees.split(',') if t]:
        result['trees'].append(run_tree(tree, names, args))
    extras = set(filter(None, args.extras.split(',')))
    if 'growth' in extras:
        result['growth'] = run_growth(args)
    if 'small' in extras:
        result['small'] = run_small(select_names(args.small_names), args)
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
