"""Lars (``lars``, ``larc``, ``nlars``, ``nlarc``) against timm's ``Lars``: momentum, Nesterov, dampening, the
LARC cap (binding and idle) under a schedule with a per-group lr.
"""
import jax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import TOL, run_parity
from parity import alias_parity, linear_decay, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.0, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, dampening=0.3, weight_decay=0.1, trust_coeff=0.02),
    dict(lr=1.0, momentum=0.9, weight_decay=0.0, always_adapt=True, trust_coeff=0.02),
    dict(lr=1e-2, momentum=0.9, weight_decay=0.0),  # plain SGD, no ratio
    dict(lr=0.05, momentum=0.9, weight_decay=0.1, trust_coeff=1.0, trust_clip=True),  # LARC cap binds
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, trust_clip=True),  # LARC cap idle
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1, trust_coeff=1.0, trust_clip=True),
    dict(lr=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, eps=1.0),
])
def test_lars(kwargs):
    alias_parity(_timm().Lars, jt.optim.lars, **kwargs).check()


def test_lars_trust_clip_with_schedule_and_lr_scale():
    """LARC divides by the *group* lr at each step: scheduled and layer-scaled."""
    timm_optim = _timm()
    steps = 30
    sched = linear_decay(0.2, steps)

    def make_timm(m):
        groups = [dict(params=[p], lr_scale=0.3 if n == 'fc.weight' else 1.0) for n, p in m.named_parameters()]
        return timm_optim.Lars(groups, lr=0.2, momentum=0.9, weight_decay=0.1, trust_coeff=0.1, trust_clip=True)

    def make_ours(params):
        scale_tree = jax.tree.map(lambda _: 1.0, params)
        scale_tree['fc']['weight'] = 0.3
        return jt.optim.lars(
            lambda t: sched(t), momentum=0.9, weight_decay=0.1, trust_coeff=0.1, trust_clip=True,
            lr_scale=scale_tree)

    r = run_parity(make_timm, make_ours, steps=steps, torch_lr=sched).check()
    idle = run_parity(
        make_timm,
        lambda p: jt.optim.lars(lambda t: sched(t), momentum=0.9, weight_decay=0.1, trust_coeff=0.1),
        steps=steps, torch_lr=sched)
    assert idle.rel_err > 100 * TOL
    assert r.rel_err <= TOL
