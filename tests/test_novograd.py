"""NvNovoGrad (``novograd``, ``nvnovograd``, ``novogradc``, ...) against timm's ``NvNovoGrad``: L2 and decoupled
decay, grad averaging, amsgrad, the layer-wise second moment and the corrected decay under a schedule.
"""
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # L2 added to the normalised gradient, inside the momentum
    dict(weight_decay=0.1, grad_averaging=True),
    dict(weight_decay=0.1, amsgrad=True),
    dict(amsgrad=True, grad_averaging=True, betas=(0.9, 0.5)),  # small beta2: the norm EMA drops, the max holds
    dict(weight_decay=0.1, decoupled_decay=True),
    dict(weight_decay=0.1, decoupled_decay=True, amsgrad=True, eps=1e-4),
])
def test_novograd(kwargs):
    alias_parity(_timm().NvNovoGrad, jt.optim.novograd, lr=1e-2, **kwargs).check()


def test_novograd_corrected_decay_with_schedule():
    timm_cls = _timm().NvNovoGrad
    r = scheduled_parity(timm_cls, jt.optim.novograd, weight_decay=0.5, decoupled_decay=True,
                   corrected_weight_decay=True)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.novograd, weight_decay=0.5, decoupled_decay=True)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


def test_novograd_layerwise_state():
    params = {'w': jnp.ones((4, 3)), 'b': jnp.zeros(4)}
    state = jt.optim.novograd(amsgrad=True).init(params)[0]
    assert all(v.shape == () and v.dtype == jnp.float32 for v in state.exp_avg_sq.values())
    assert all(v.shape == () for v in state.max_exp_avg_sq.values())
