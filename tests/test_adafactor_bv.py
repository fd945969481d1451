"""Adafactor Big Vision (``adafactorbv`` and its cautious / corrected variants) against timm's AdafactorBigVision."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.parity import TOL, load_timm, run_parity
from parity import (
    VIT_GROUP_MATCHER, VIT_SHAPES, grouped_factory_parity, in_flax_layout as _in_flax_layout, linear_decay,
    scheduled_parity,
)

NAMES = ['adafactorbv', 'adafactorbvc', 'cadafactorbv', 'cadafactorbvc']

# The harness tree has no dim >= 16 next to another, so nothing in it is factored. This one exercises timm's
# rule (the two largest dims, when the smaller of them is >= min_dim_size_to_factor) next to full moments.
FACTORED_SHAPES = {
    'conv.weight': (20, 18, 3, 3),      # factored over O (row) and I (col)
    'conv2.weight': (4, 20, 17, 18),    # non-adjacent: row = dim 1 (20), col = dim 3 (18)
    'fc.weight': (24, 32),
    'fc.bias': (24,),
    'emb': (2, 20, 20),                 # tie: timm orders equal sizes by position (col = 1, row = 2)
    'edge.weight': (16, 40),            # 16 >= 16: factored (timm's Adafactor needs > 16; this one >=)
    'small.weight': (6, 32),            # 6 < 16: full second moment
    'gamma': (1,),
}
LR = 1e-2

# bf16 momentum: both sides round the same float32 EMA (agreeing to ~1 float32 ulp) to bfloat16 with
# round-to-nearest-even, so the stored momenta are bitwise equal except where the float32 values straddle a
# bf16 rounding midpoint. Such a flip moves one element by one bf16 ulp (2**-8 relative), i.e. at most
# 2**-8 * lr * |m| in that step and, carried by the EMA (sum of 0.9**k = 10), about 10x that in total: against
# a displacement of ~30 steps of lr * |m| that is 2**-8 * 10 / 30 ~ 1.3e-3 per flip, whereas float32
# trajectories agree to ~1e-6. Flips are rare (the default run below has one, measured 1.0e-3; the harness
# tree none, ~5e-6), so the bound allows about one flip per leaf element affected:
BF16_TOL = 2e-3


def _timm():
    return load_timm()[0]


_TORCH_DTYPES = {'bfloat16': torch.bfloat16, 'float32': torch.float32, 'float16': torch.float16}


def _torch_kwargs(kwargs):
    kw = dict(kwargs)
    if isinstance(kw.get('momentum_dtype'), str):
        kw['momentum_dtype'] = _TORCH_DTYPES[kw['momentum_dtype']]
    return kw


def _parity(lr=LR, shapes=FACTORED_SHAPES, steps=30, wrap=lambda tx: tx, ours=None, **kwargs):
    return run_parity(
        lambda m: _timm().AdafactorBigVision(m.parameters(), lr=lr, **_torch_kwargs(kwargs)),
        lambda p: wrap(jt.optim.adafactor_bv(lr, **kwargs, **(ours or {}))),
        shapes=shapes, steps=steps)


# --------------------------------------------------------------------------------------------- factory

def test_registry_entries_match_timm():
    for name in NAMES:
        ours, theirs = jt.get_optimizer_info(name), _timm().get_optimizer_info(name)
        assert ours.description == theirs.description
        assert dict(ours.defaults) == dict(theirs.defaults or {})
        assert (ours.has_momentum, ours.has_betas, ours.has_eps) == (
            theirs.has_momentum, theirs.has_betas, theirs.has_eps)


def test_factory_layer_decay():
    # per-group lr = lr * lr_scale feeds the update, and corrected decay squares it (timm's group lr over the
    # constructor snapshot); min_dim_size_to_factor=4 factors the small ViT's (12, 4) and (4, 3, 2, 2) kernels
    grouped_factory_parity(
        'cadafactorbvc', VIT_SHAPES, weight_decay=0.05, layer_decay=0.7, min_dim_size_to_factor=4,
        model_attrs={'group_matcher': lambda coarse=False: VIT_GROUP_MATCHER},
        ours={'group_matcher': VIT_GROUP_MATCHER}).check()


# --------------------------------------------------------------------------------------------- switches

@pytest.mark.parametrize('kwargs', [
    dict(momentum_dtype='float32'),
    dict(momentum_dtype='float32', caution=True, weight_decay=0.1),
    dict(momentum_dtype='float32', weight_decay=0.01, unscaled_wd=True, clipping_threshold=0.5),
    dict(momentum_dtype='float32', decay_rate=0.5, decay_offset=5, beta2_cap=0.9, momentum=0.5),
    dict(momentum_dtype='float32', eps=1e-3, min_dim_size_to_factor=20, weight_decay=0.1),
    dict(momentum=None, caution=True, weight_decay=0.1),         # timm: caution lives in the momentum branch
    dict(momentum_dtype='float32', corrected_weight_decay=True, weight_decay=0.1),
    dict(momentum_dtype='float32', corrected_weight_decay=True, unscaled_wd=True, weight_decay=0.01),
])
def test_float32_switches(kwargs):
    _parity(**kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(caution=True, weight_decay=0.1),
    dict(clipping_threshold=0.5, weight_decay=0.01, unscaled_wd=True),
])
def test_bfloat16_momentum(kwargs):
    r = _parity(momentum_dtype='bfloat16', **kwargs)
    r.check(BF16_TOL)  # see BF16_TOL's comment
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(r.state.exp_avg))


def test_momentum_dtype_spellings():
    params = {'w': jnp.ones((20, 24))}
    for dt in ('bfloat16', 'torch.bfloat16', jnp.bfloat16, np.dtype(jnp.bfloat16)):
        assert jt.optim.adafactor_bv(momentum_dtype=dt).init(params).exp_avg['w'].dtype == jnp.bfloat16
    assert jt.optim.adafactor_bv(momentum_dtype='float32').init(params).exp_avg['w'].dtype == jnp.float32


def _ours(steps=8, learning_rate=LR, **kwargs):
    """Our params after a few jitted steps on a small factored tree (no reference): to show a switch acts."""
    params = {'w': jnp.linspace(-1.0, 1.0, 20 * 24, dtype=jnp.float32).reshape(20, 24), 'b': jnp.ones(24)}
    tx = jt.optim.adafactor_bv(learning_rate, **kwargs)

    @jax.jit
    def step(params, state, s):
        grads = jax.tree.map(lambda p: p + jnp.sin(3.0 * p + s), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for t in range(steps):
        params, state = step(params, state, jnp.float32(t))
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])


def test_switches_change_the_run():
    """Each switch tested above moves our trajectory well beyond the parity tolerance (not vacuous)."""
    base_kw = dict(momentum_dtype='float32', weight_decay=0.1)
    base = _ours(**base_kw)
    disp = np.max(np.abs(base - _ours(steps=0, **base_kw)))
    for kw in (dict(clipping_threshold=0.05), dict(caution=True), dict(unscaled_wd=True), dict(momentum=0.5),
               dict(decay_offset=5), dict(beta2_cap=0.5), dict(eps=1.0), dict(min_dim_size_to_factor=40),
               dict(momentum=None), dict(momentum_dtype='bfloat16')):
        assert np.max(np.abs(_ours(**dict(base_kw, **kw)) - base)) > 10 * TOL * disp, kw
    # corrected decay under a decaying schedule (with a float lr it equals the plain decay, as in timm)
    sched = linear_decay(0.05, 8)
    for unscaled in (False, True):
        kw = dict(base_kw, learning_rate=sched, unscaled_wd=unscaled, weight_decay=0.5)
        diff = _ours(corrected_weight_decay=True, max_lr=0.05, **kw) - _ours(**kw)
        assert np.max(np.abs(diff)) > 10 * TOL * disp
    np.testing.assert_allclose(_ours(corrected_weight_decay=True, **base_kw), _ours(**base_kw), rtol=1e-6)


@pytest.mark.parametrize('unscaled_wd', [False, True])
def test_corrected_weight_decay_scheduled(unscaled_wd):
    # timm snapshots the constructor lr as max_lr; with a decaying lr the corrected factor lr**2/max_lr
    # (lr/max_lr unscaled) differs from the plain one
    wd = 0.5 if not unscaled_wd else 0.02
    kwargs = dict(momentum_dtype='float32', weight_decay=wd, unscaled_wd=unscaled_wd, corrected_weight_decay=True)
    r = run_parity(
        lambda m: _timm().AdafactorBigVision(m.parameters(), lr=0.05, **_torch_kwargs(kwargs)),
        lambda p: jt.optim.adafactor_bv(linear_decay(0.05, 30), max_lr=0.05, **kwargs),
        shapes=FACTORED_SHAPES, torch_lr=lambda t: float(linear_decay(0.05, 30)(t)))
    r.check()


def test_corrected_weight_decay_scheduled_harness_tree():
    scheduled_parity(_timm().AdafactorBigVision, jt.optim.adafactor_bv, weight_decay=0.5,
                     momentum_dtype='float32', corrected_weight_decay=True).check()


# --------------------------------------------------------------------------------------------- factoring

def test_factored_dims():
    f = jt.optim.adafactor_bv_factored_dims
    assert f((20, 18, 3, 3)) == (1, 0)
    assert f((4, 20, 17, 18)) == (3, 1)
    assert f((24, 32)) == (0, 1)
    assert f((2, 20, 20)) == (1, 2)
    assert f((16, 40)) == (0, 1) and f((16, 40), 17) is None
    assert f((6, 32)) is None and f((32,)) is None
    assert f((32, 24), layout='flax') == (1, 0)             # Dense (in, out) = torch (out, in)
    assert f((3, 3, 18, 20), layout='flax') == (2, 3)       # conv (kH, kW, I, O) = torch (O, I, kH, kW)
    assert f((20, 20, 2), layout='flax') == (1, 0)          # torch (2, 20, 20): tie broken in torch order
    assert f((20, 20, 2)) == (0, 1)
    state = jt.optim.adafactor_bv().init({'fc': jnp.ones((24, 32)), 'b': jnp.ones(24)})
    assert state.exp_avg_sq_r['fc'].shape == (24, 1) and state.exp_avg_sq_c['fc'].shape == (1, 32)
    assert state.exp_avg_sq['fc'] is None and state.exp_avg_sq['b'].shape == (24,)


def test_flax_layout():
    """Ours on the Flax-transposed tree against timm on the torch tree.

    The two-largest-dims rule is blind to dim order except for ties, and a tie only swaps the roles of the row
    and column statistics, which leaves R C / mean(R) unchanged in exact arithmetic; so the option's job is to
    make the factoring (and with it the reduction order) exactly timm's, which the dims test above pins down.
    """
    kwargs = dict(momentum_dtype='float32', weight_decay=0.1, clipping_threshold=0.5)
    _parity(wrap=_in_flax_layout, ours=dict(layout='flax'), **kwargs).check()
