"""The step benchmark's tables: one markdown row per (tree, name) as it is measured, and ``results.md`` at the end.

Apart from the runner so the format that ``benchmarks/README.md`` quotes lives in one place: the rows printed
while the suite runs and the tables written at its end are the same function.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict

import jax
import optax


def fmt(x, digits=1):
    return '-' if x is None else f'{x:.{digits}f}'


def ms_of(row, key):
    """The ``key`` variant's median ms in ``row``, or '-' where it did not run."""
    r = row.get(key)
    return fmt(r['ms']) if r and 'ms' in r else '-'


ROW_HEADER = ('| name | ours ms | ours default ms | timm loop | timm foreach | torch fused | optax | optax default | '
              'ours/torch best | ours/optax | GB/s (% of the row stream GB/s) | state B/param | compile s (optax) | '
              'temp MB |\n'
              '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')


def _stream_of(row) -> str:
    st = row.get('stream') or {}
    return f'{st["gbps"]:.0f}' if st.get('gbps') else 'tree'


def row_md(row) -> str:
    o = row['ours']
    temp = '-' if o.get('temp_bytes') is None else f'{o["temp_bytes"] / 2**20:.1f}'
    comp = fmt(o['compile_s'], 2) + (f' ({row["optax"]["compile_s"]:.2f})' if 'optax' in row else '')
    return (f'| {row["name"]} | {o["ms"]:.1f} | {ms_of(row, "ours_default")} | {ms_of(row, "timm_loop")} | '
            f'{ms_of(row, "timm_foreach")} | {ms_of(row, "timm_fused")} | {ms_of(row, "optax")} | '
            f'{ms_of(row, "optax_default")} | '
            f'{fmt(row["vs_torch"], 2)} | '
            f'{fmt(row["vs_optax"], 2)} | {o["gbps"]:.1f} ({o["pct_stream"]:.0f}% of {_stream_of(row)}) | '
            f'{row["state_bytes_per_param"]:.2f} | {comp} | {temp} |')


def to_markdown(result: Dict[str, Any]) -> str:
    lines = [f'Machine: {result["machine"]}', '']
    for tree in result['trees']:
        lines += [f'### {tree["tree"]}: {tree["params"] / 1e6:.1f}M params, {tree["leaves"]} leaves; JAX side in '
                  f'{tree.get("jax_layout", "torch")} layout; streaming {tree["stream"]["gbps"]} GB/s', '', ROW_HEADER]
        lines += [row_md(r) for r in tree['rows']]
        retraced = [r['name'] for r in tree['rows'] if r['ours'].get('traces', 1) != 1]
        lines += ['', 'Retracing: every step traced once over its timed calls' if not retraced else
                  f'Retracing: {", ".join(retraced)} traced more than once']
        lines.append('')
    if result.get('growth'):
        lines += ['### Growth (16 equal leaves)', '', '| name | params | ours ms | ns/param | GB/s | optax ms | '
                  'torch foreach ms | torch fused ms |', '|---|---|---|---|---|---|---|---|']
        for r in result['growth']:
            lines.append(f'| {r["name"]} | {r["params"] / 2**20:.0f}Mi | {r["ours"]["ms"]:.2f} | {r["ns_per_param"]} | '
                         f'{r["ours"]["gbps"]} | {ms_of(r, "optax")} | {ms_of(r, "timm_foreach")} | '
                         f'{ms_of(r, "timm_fused")} |')
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
                         f'{fmt(pk and pk.get("ms"), 2)} | {fmt(pk and pk.get("compile_s"), 2)} | '
                         f'{fmt(o and o["ms"], 2)} | {fmt(o and o["compile_s"], 2)} | '
                         f'{fmt(r["torch_best_ms"], 2)} | '
                         f'{fmt(vs, 2)} |')
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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), cpu)
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores; jax {jax.__version__} ({jax.default_backend()}: {jax.devices()[0]}), '
            f'optax {optax.__version__}, python {sys.version.split()[0]}')
