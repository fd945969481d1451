"""The benchmark's trees and its layout switch: the JAX side gets the same tensors as timm, in Flax's layout.

``python -m benchmarks.step`` times timm on torch-layout tensors and ours on the same
tensors in Flax's layout (what a Flax model holds). These tests keep that comparison
fair: same leaf names and sizes, kernels permuted as Flax stores them, and every name
whose math reads the layout told so (the set is probed through the factory, so a new
layout-aware optimizer cannot be benchmarked with the wrong shape rule). The rows and
per-name variants are read from the registry records; the timing harness is tested
with fake variants.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from benchmarks import _harness as harness
from benchmarks import _report as report
from benchmarks import _variants as variants
from benchmarks import step
from benchmarks.trees import TREES, flax_shape, flax_shapes, num_params


@pytest.mark.parametrize('tree', ['resnet50', 'vitb16', 'vitl16', 'small2000'])
def test_flax_shapes_same_tensors(tree):
    shapes = TREES[tree]()
    fl = flax_shapes(shapes)
    assert list(fl) == list(shapes)
    assert num_params(fl) == num_params(shapes)
    for name, shape in shapes.items():
        assert sorted(fl[name]) == sorted(shape), name


@pytest.mark.parametrize('name, shape, expected', [
    ('layer1.0.conv2.weight', (64, 32, 3, 3), (3, 3, 32, 64)),   # conv (O, I, kH, kW) -> (kH, kW, I, O)
    ('layer1.0.conv1.weight', (64, 256, 1, 1), (1, 1, 256, 64)),
    ('fc.weight', (1000, 2048), (2048, 1000)),                  # Linear (out, in) -> Dense (in, out)
    ('fc.bias', (1000,), (1000,)),
    ('bn1.weight', (64,), (64,)),
    ('cls_token', (1, 1, 768), (1, 1, 768)),                    # not kernels: unchanged
    ('pos_embed', (1, 197, 768), (1, 197, 768)),
])
def test_flax_shape(name, shape, expected):
    assert flax_shape(name, shape) == expected


def test_layout_aware_names_are_the_ones_that_take_layout():
    """The benchmark gives ``layout='flax'`` to exactly the names whose factory call takes it (probed)."""
    params = {'w': jnp.ones((3, 3, 4, 8)), 'b': jnp.ones((8,))}
    names = jt.list_optimizers()
    takes = set()
    for name in names:
        try:
            jt.create_optimizer_v2(params, name, lr=1e-3, layout='flax')
        except ValueError as e:  # the factory names the arguments an optimizer does not take
            assert "['layout']" in str(e), str(e)
            continue
        takes.add(name)
    assert {'adafactor', 'muon', 'kron', 'adahessian'} <= takes and 'adamw' not in takes
    assert takes == {n for n in names if jt.get_optimizer_info(n).layout_aware}
    for name in names:
        assert variants.ours_kwargs(name, 'flax') == ({'layout': 'flax'} if name in takes else {}), name
        assert variants.ours_kwargs(name, 'torch') == {}, name


def test_ours_kwargs():
    assert variants.ours_kwargs('adafactor', 'flax') == {'layout': 'flax'}
    assert variants.ours_kwargs('adafactor', 'torch') == {}
    assert variants.ours_kwargs('adamw', 'flax') == {}


def test_suite_rows_are_the_benchmarked_records():
    """The default rows are read from the records: benchmarked record names (no alias repeats a row),
    elementwise rows first, then the shape-aware ones; each row's optax counterpart and torch variants too."""
    rows = variants.suite_rows()
    assert step.select_names('targets') == rows and step.select_names('adamw,lamb*')[:2] == ['adamw', 'lamb']
    infos = {n: jt.get_optimizer_info(n) for n in jt.list_optimizers()}
    assert set(rows) == {n for n, i in infos.items() if i.benchmarked and i.name == n}
    assert len(rows) == len(set(rows)) and 'nesterov' not in rows and {'sgd', 'adamw', 'muon', 'kron'} <= set(rows)
    shape_aware = [infos[n].shape_aware for n in rows]
    assert shape_aware == sorted(shape_aware) and any(shape_aware) and not all(shape_aware)
    assert [n for n in rows if variants.is_elementwise_row(n)] == [n for n in rows if not infos[n].shape_aware]
    assert not variants.is_elementwise_row('adamax')  # not a row: no XLA-default variants
    for name in rows:
        tx = variants.optax_transform(name)
        assert (tx is None) == (infos[name].optax_equivalent is None), name
        assert tx is None or isinstance(tx, optax.GradientTransformation), name
        assert variants.timm_kinds(name)[:2] == ['loop', 'foreach']
        assert ('fused' in variants.timm_kinds(name, loop=False)) == infos[name].torch_fused, name
        assert variants.packs(name) == (name not in ('kron', 'adahessian', 'sam')), name  # SAM: its base packs
    assert variants.optax_transform('adamw') is not None and variants.optax_transform('adan') is None
    assert variants.timm_kinds('adamw') == ['loop', 'foreach', 'fused']
    assert variants.timm_kinds('lion', loop=False) == ['foreach']


def test_flax_tree_factors_like_timm():
    """Adafactor on a Flax-layout conv kernel keeps the factored state timm keeps on the torch tensor."""
    torch_shape = (64, 32, 3, 3)
    fl = flax_shape('conv.weight', torch_shape)
    ours = jt.create_optimizer_v2({'conv': {'weight': jnp.ones(fl)}}, 'adafactor', lr=1e-3, layout='flax')
    ref = jt.create_optimizer_v2({'conv': {'weight': jnp.ones(torch_shape)}}, 'adafactor', lr=1e-3)

    def sizes(tx, p):
        return sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(tx.init(p)))
    assert sizes(ours, {'conv': {'weight': jnp.ones(fl)}}) == sizes(ref, {'conv': {'weight': jnp.ones(torch_shape)}})


# --- the interleaved timer: every ratio in the tables comes from variants timed round by round

def _fake(log, key, seconds, fail_at=None):
    calls = []

    def call():
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError(f'{key} broke')
        log.append(key)
        return seconds

    return call, None


def test_time_interleaved_rounds():
    log = []
    res = harness.time_interleaved({'a': _fake(log, 'a', 0.001), 'b': _fake(log, 'b', 0.002)}, reps=4, budget_s=10,
                                pause_s=0)
    assert log[:4] == ['a', 'a', 'b', 'b']          # first call and warm-up of each, before any timing
    rounds = [log[i:i + 2] for i in range(4, 12, 2)]
    assert all(sorted(r) == ['a', 'b'] for r in rounds)  # then one call of each per round
    assert ['b', 'a'] in rounds                     # in a shuffled order
    assert res['a']['ms'] == 1.0 and res['b']['ms'] == 2.0 and res['a']['reps'] == res['b']['reps'] == 4


def test_time_interleaved_budget_and_errors():
    log = []
    res = harness.time_interleaved({
        'slow': _fake(log, 'slow', 1.0),             # 20 reps would take 20 s > 6 s budget: cut to 6
        'fast': _fake(log, 'fast', 0.001),
        'broken': _fake(log, 'broken', 0.001, fail_at=4),  # fails in its second timed round
        'unprepared': {'error': 'TypeError: no such option'},
    }, reps=20, budget_s=6.0, pause_s=0)
    assert res['slow']['reps'] == 6 and res['fast']['reps'] == 20
    assert res['broken'] == {'error': 'RuntimeError: broken broke'}
    assert res['unprepared'] == {'error': 'TypeError: no such option'}
    assert log.count('fast') == 22 and log.count('slow') == 8


def test_time_interleaved_minimum_reps():
    res = harness.time_interleaved({'x': _fake([], 'x', 100.0)}, reps=20, budget_s=5.0, pause_s=0)
    assert res['x']['reps'] == 5


def test_stream_variant_and_row_percentage():
    """Each row's % of stream is taken against the streaming pass timed in that row's rounds."""
    params = {'a': jnp.ones((256, 64)), 'b': jnp.ones(1000)}
    res = harness.time_interleaved({'stream': harness.stream_variant(params)}, reps=3, budget_s=5.0, pause_s=0.0)
    r = res['stream']
    nbytes = 2 * 4 * (256 * 64 + 1000)
    assert r['ms'] > 0 and r['gbps'] == pytest.approx(nbytes / (r['ms'] * 1e-3) / 1e9, rel=1e-2)
    row = {'name': 'x', 'ours': {'ms': 1.0, 'gbps': 10.0, 'pct_stream': 50.0, 'compile_s': 0.1, 'temp_bytes': 0},
           'stream': {'ms': 1.0, 'gbps': 20.0}, 'vs_torch': None, 'vs_optax': None, 'state_bytes_per_param': 8.0}
    assert '(50% of 20)' in report.row_md(row)
    assert '(50% of tree)' in report.row_md({**row, 'stream': {}})


def test_cold_compile_is_fresh_every_time():
    """Each cold compile traces anew (no jit cache answers it), and the medians interleave the entries."""
    traces = []

    def update(g, s, p=None):
        traces.append(1)
        return jax.tree.map(lambda x: -0.1 * x, g), s
    tx = optax.GradientTransformation(lambda p: (), update)
    params = {'w': jnp.ones((8, 4))}
    secs = [harness.cold_compile_s(tx, params, params) for _ in range(2)]
    assert len(traces) == 2 and all(s > 0 for s in secs)
    log = []
    med = harness.compile_medians({'a': lambda: log.append('a') or 1.0, 'b': lambda: log.append('b') or 2.0}, reps=3)
    assert med == {'a': 1.0, 'b': 2.0} and log == ['a', 'b'] * 3
