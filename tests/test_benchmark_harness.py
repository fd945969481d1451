"""The benchmark's trees and its layout switch: the JAX side gets the same tensors as timm, in Flax's layout.

``python -m benchmarks.step`` times timm on torch-layout tensors and ours on the same
tensors in Flax's layout (what a Flax model holds). These tests keep that comparison
fair: same leaf names and sizes, kernels permuted as Flax stores them, and every name
whose math reads the layout told so (the set is probed from the registry, so a new
layout-aware optimizer cannot be benchmarked with the wrong shape rule).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
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
    params = {'w': jnp.ones((3, 3, 4, 8)), 'b': jnp.ones((8,))}
    takes = set()
    for name in jt.list_optimizers():
        try:
            jt.create_optimizer_v2(params, name, lr=1e-3, layout='flax')
        except ValueError as e:  # the factory names the arguments an optimizer does not take
            assert "['layout']" in str(e), str(e)
            continue
        takes.add(name)
    assert takes == step.LAYOUT_AWARE


def test_ours_kwargs():
    assert step._ours_kwargs('adafactor', 'flax') == {'layout': 'flax'}
    assert step._ours_kwargs('adafactor', 'torch') == {}
    assert step._ours_kwargs('adamw', 'flax') == {}


def test_flax_tree_factors_like_timm():
    """Adafactor on a Flax-layout conv kernel keeps the factored state timm keeps on the torch tensor."""
    torch_shape = (64, 32, 3, 3)
    fl = flax_shape('conv.weight', torch_shape)
    ours = jt.create_optimizer_v2({'conv': {'weight': jnp.ones(fl)}}, 'adafactor', lr=1e-3, layout='flax')
    ref = jt.create_optimizer_v2({'conv': {'weight': jnp.ones(torch_shape)}}, 'adafactor', lr=1e-3)
    sizes = lambda tx, p: sorted(int(np.prod(x.shape)) for x in jax.tree.leaves(tx.init(p)))
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
    res = step.time_interleaved({'a': _fake(log, 'a', 0.001), 'b': _fake(log, 'b', 0.002)}, reps=4, budget_s=10,
                                pause_s=0)
    assert log[:4] == ['a', 'a', 'b', 'b']          # first call and warm-up of each, before any timing
    rounds = [log[i:i + 2] for i in range(4, 12, 2)]
    assert all(sorted(r) == ['a', 'b'] for r in rounds)  # then one call of each per round
    assert ['b', 'a'] in rounds                     # in a shuffled order
    assert res['a']['ms'] == 1.0 and res['b']['ms'] == 2.0 and res['a']['reps'] == res['b']['reps'] == 4


def test_time_interleaved_budget_and_errors():
    log = []
    res = step.time_interleaved({
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
    res = step.time_interleaved({'x': _fake([], 'x', 100.0)}, reps=20, budget_s=5.0, pause_s=0)
    assert res['x']['reps'] == 5


def test_stream_variant_and_row_percentage():
    """Each row's % of stream is taken against the streaming pass timed in that row's rounds."""
    params = {'a': jnp.ones((256, 64)), 'b': jnp.ones(1000)}
    res = step.time_interleaved({'stream': step.stream_variant(params)}, reps=3, budget_s=5.0, pause_s=0.0)
    r = res['stream']
    nbytes = 2 * 4 * (256 * 64 + 1000)
    assert r['ms'] > 0 and r['gbps'] == pytest.approx(nbytes / (r['ms'] * 1e-3) / 1e9, rel=1e-2)
    row = {'name': 'x', 'ours': {'ms': 1.0, 'gbps': 10.0, 'pct_stream': 50.0, 'compile_s': 0.1, 'temp_bytes': 0},
           'stream': {'ms': 1.0, 'gbps': 20.0}, 'vs_torch': None, 'vs_optax': None, 'state_bytes_per_param': 8.0}
    assert '(50% of 20)' in step._row_md(row)
    assert '(50% of tree)' in step._row_md({**row, 'stream': {}})


def test_cold_compile_is_fresh_every_time():
    """Each cold compile traces anew (no jit cache answers it), and the medians interleave the entries."""
    traces = []

    def update(g, s, p=None):
        traces.append(1)
        return jax.tree.map(lambda x: -0.1 * x, g), s
    tx = optax.GradientTransformation(lambda p: (), update)
    params = {'w': jnp.ones((8, 4))}
    secs = [step.cold_compile_s(tx, params, params) for _ in range(2)]
    assert len(traces) == 2 and all(s > 0 for s in secs)
    log = []
    med = step.compile_medians({'a': lambda: log.append('a') or 1.0, 'b': lambda: log.append('b') or 2.0}, reps=3)
    assert med == {'a': 1.0, 'b': 2.0} and log == ['a', 'b'] * 3
