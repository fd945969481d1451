"""Adafactor against timm's ``Adafactor``: relative step, parameter scale, first moment, clipping, warm-up,
timm's factoring heuristic on a tree with factored leaves, and the Flax layout option.
"""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import TOL, factory_parity, run_parity
from parity import flax_axes as _flax_axes, in_flax_layout as _in_flax_layout, timm_optim as _timm


# The harness tree has no dim above 16, so nothing in it is factored: this one exercises timm's heuristic
# (leading out/in channels of a conv, trailing dims of a 4-d and a 3-d tensor, a linear) next to full moments.

FACTORED_SHAPES = {
    'conv.weight': (20, 18, 3, 3),      # factored over (O, I)
    'conv2.weight': (4, 20, 17, 18),    # leading dims too small: factored over the last two
    'fc.weight': (24, 32),
    'fc.bias': (24,),
    'emb': (2, 20, 24),
    'conv1d.weight': (20, 18, 17),      # (O, I, k): factored over (O, I); a naive Flax read would pick (k, I)
    'small.weight': (6, 32),            # 6 <= 16: full second moment
    'gamma': (1,),
}


def test_factory_adafactor_relative_step():
    """lr=None: timm's Adafactor switches to its relative step size; the factory must keep lr unset."""
    factory_parity('adafactor', lr=None, weight_decay=0.05).check()


@pytest.mark.parametrize('lr,kwargs', [
    (None, dict()),                                                 # relative step, parameter scale
    (None, dict(scale_parameter=False, weight_decay=0.1)),          # relative step, no parameter scale
    (None, dict(betas=(0.9, 0.999))),                               # first moment on
    (None, dict(betas=(0.8, 0.99), caution=True, weight_decay=0.1)),
    (1e-2, dict()),                                                 # external lr: no relative step
    (1e-2, dict(clip_threshold=0.1, weight_decay=0.1)),             # RMS clipping active every step
    (1e-2, dict(decay_rate=-0.5, eps=1e-20, min_dim_size_to_factor=20)),
])
def test_adafactor(lr, kwargs):
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=lr, **kwargs),
        lambda p: jt.optim.adafactor(lr, **kwargs),
        shapes=FACTORED_SHAPES)
    r.check()


def test_adafactor_warmup_init():
    # warm-up lr is 1e-6 * t: run long enough that the displacement is well above float32 rounding
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), warmup_init=True),
        lambda p: jt.optim.adafactor(warmup_init=True),
        shapes=FACTORED_SHAPES, steps=80)
    r.check()


def test_adafactor_clipping_is_active():
    """clip_threshold=0.1 really changes the run (so the clipped test above is not vacuous)."""
    clipped = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=1e-2, clip_threshold=0.1),
        lambda p: jt.optim.adafactor(1e-2, clip_threshold=0.1), shapes=FACTORED_SHAPES, steps=5)
    plain = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=1e-2),
        lambda p: jt.optim.adafactor(1e-2), shapes=FACTORED_SHAPES, steps=5)
    diff = max(np.max(np.abs(clipped.ours[k] - plain.ours[k])) for k in plain.ours)
    assert diff > 0.1 * plain.displacement


def test_adafactor_factored_dims():
    f = jt.optim.adafactor_factored_dims
    assert f((20, 18, 3, 3)) == (0, 1)
    assert f((4, 20, 17, 18)) == (2, 3)
    assert f((6, 32)) is None
    assert f((32, 24), layout='flax') == (1, 0)            # Dense (in, out) = torch (out, in)
    assert f((3, 3, 18, 20), layout='flax') == (3, 2)      # conv (kH, kW, I, O) = torch (O, I, kH, kW)
    assert f((17, 18, 20, 4), layout='flax') == (0, 1)     # torch (4, 20, 17, 18): trailing kernel dims
    assert f((17, 18, 20), layout='flax') == (2, 1) and f((17, 18, 20)) == (0, 1)
    params = {'fc': jnp.ones((24, 32)), 'b': jnp.ones(24)}
    inner = jt.optim.adafactor().init(params)
    assert inner.exp_avg_sq_row['fc'].shape == (24, 1) and inner.exp_avg_sq_col['fc'].shape == (1, 32)
    assert inner.exp_avg_sq['fc'] is None and inner.exp_avg_sq['b'].shape == (24,)


def test_flax_axes_match_option():
    for shape in [(24, 32), (20, 18, 3, 3), (4, 20, 17, 18), (2, 20, 24), (20, 18, 17)]:
        flax_shape = tuple(shape[a] for a in _flax_axes(len(shape)))
        torch_dims = jt.optim.adafactor_factored_dims(shape)
        flax_dims = jt.optim.adafactor_factored_dims(flax_shape, layout='flax')
        assert (torch_dims is None) == (flax_dims is None)
        if torch_dims is not None:
            assert [flax_shape[a] for a in flax_dims] == [shape[a] for a in torch_dims]


@pytest.mark.parametrize('lr,kwargs', [
    (None, dict(weight_decay=0.05)),
    (1e-2, dict(betas=(0.9, 0.999), clip_threshold=0.5)),
])
def test_adafactor_flax_layout(lr, kwargs):
    r = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), lr=lr, **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor(lr, layout='flax', **kwargs)),
        shapes=FACTORED_SHAPES)
    r.check()


def test_adafactor_torch_layout_on_flax_tree_differs():
    """Without the option a transposed tree is factored differently, so the option is doing the work."""
    kwargs = dict(lr=None)
    good = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor(layout='flax')), shapes=FACTORED_SHAPES, steps=10)
    bad = run_parity(
        lambda m: _timm().Adafactor(m.parameters(), **kwargs),
        lambda p: _in_flax_layout(jt.optim.adafactor()), shapes=FACTORED_SHAPES, steps=10)
    assert good.rel_err <= TOL < bad.rel_err
