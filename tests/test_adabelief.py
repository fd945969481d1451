"""AdaBelief (``adabelief``, ``radabelief``) against timm's ``AdaBelief``: every switch, rectified and
not, a per-group lr with a schedule, and no step while rho_t < 5 without ``degenerated_to_sgd``.
"""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import run_parity, to_tree
from parity import alias_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(rectify=False, weight_decay=0.0),
    dict(rectify=False, weight_decay=0.1),  # decoupled lr * wd
    dict(rectify=False, weight_decay=0.1, amsgrad=True),  # max of the eps-accumulating raw moment
    dict(rectify=False, weight_decay=0.1, decoupled_decay=False),  # L2 into the belief
    dict(rectify=False, weight_decay=0.05, fixed_decay=True),  # p *= 1 - wd, no lr
    dict(rectify=False, weight_decay=0.0, eps=1e-8, betas=(0.8, 0.95)),
    dict(rectify=True, weight_decay=0.0),  # SGD steps for rho_t < 5, then rectified adaptive
    dict(rectify=True, weight_decay=0.1),
    dict(rectify=True, weight_decay=0.1, amsgrad=True),  # the rectified step ignores the max
    dict(rectify=True, weight_decay=0.1, degenerated_to_sgd=False),  # no step until rho_t >= 5
    dict(rectify=True, weight_decay=0.1, decoupled_decay=False),
    dict(rectify=True, weight_decay=0.05, fixed_decay=True, betas=(0.9, 0.99)),
])
def test_adabelief(kwargs):
    alias_parity(_timm().AdaBelief, jt.optim.adabelief, steps=30, **kwargs).check()


def test_adabelief_lr_scale_and_schedule():
    """Per-group lr (layer decay) and a schedule both enter the decoupled decay as timm's group lr."""
    peak, steps = 0.03, 30
    sched = lambda t: peak * (1.0 - 0.9 * t / steps)  # noqa: E731
    names = ('conv.weight', 'conv.bias', 'norm.weight', 'norm.bias', 'fc.weight', 'fc.bias', 'pos_embed', 'gamma')
    scales = {n: (0.5 if n.startswith('conv') else 1.0) for n in names}
    decays = {n: (0.0 if n.endswith('bias') else 0.2) for n in names}

    def make_timm(m):
        groups = [dict(params=[p], lr_scale=scales[n], weight_decay=decays[n]) for n, p in m.named_parameters()]
        return _timm().AdaBelief(groups, lr=peak, rectify=True)

    def make_ours(params):
        return jt.optim.adabelief(
            lambda t: sched(jnp.asarray(t, jnp.float32)), rectify=True,
            weight_decay=to_tree(decays), lr_scale=to_tree(scales))

    run_parity(make_timm, make_ours, steps=steps, torch_lr=sched).check()


def test_adabelief_degenerated_to_sgd_matters():
    """degenerated_to_sgd=False and no decay: nothing moves while rho_t < 5 (the first 5 steps for beta2=0.999)."""
    r = alias_parity(_timm().AdaBelief, jt.optim.adabelief, steps=5, rectify=True, degenerated_to_sgd=False)
    assert r.displacement == 0.0
    np.testing.assert_array_equal(r.ours['fc.weight'], r.theirs['fc.weight'])
