"""ADOPT (``adopt``, ``adoptw``, ``cadopt``, ...) against timm's ``Adopt``: L2 and decoupled decay, clipping,
caution, the zero first step and the corrected decay under a schedule.
"""
import jax.numpy as jnp
import pytest

import jaxopt_timm as jt
from parity import alias_parity, scheduled_parity, timm_optim as _timm, trajectory_diff


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(weight_decay=0.1),  # L2: the decayed gradient also feeds the second moment
    dict(weight_decay=0.1, decoupled=True),
    dict(weight_decay=0.1, caution=True),
    dict(weight_decay=0.1, decoupled=True, caution=True),
    dict(clip_exp=None, weight_decay=0.1),
    dict(clip_exp=0.5, betas=(0.3, 0.5), eps=1e-3),  # lerp weight above 0.5: torch's other lerp formula
    dict(weight_decay=0.1, maximize=True),
])
def test_adopt(kwargs):
    alias_parity(_timm().Adopt, jt.optim.adopt, lr=1e-2, **kwargs).check()


def test_adopt_clip_matters():
    """With a small clip exponent the clipping is active, so clip_exp=None must give a different run."""
    timm_cls = _timm().Adopt
    clipped = alias_parity(timm_cls, jt.optim.adopt, lr=1e-2, clip_exp=0.1, betas=(0.9, 0.5))
    clipped.check()
    free = alias_parity(timm_cls, jt.optim.adopt, lr=1e-2, clip_exp=None, betas=(0.9, 0.5))
    free.check()
    assert trajectory_diff(clipped, free) > 20 * 2e-4 * clipped.displacement


def test_adopt_first_step_moves_nothing():
    params = {'w': jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    tx = jt.optim.adopt(1e-2, weight_decay=0.5, decoupled=True)
    state = tx.init(params)
    updates, state = tx.update({'w': jnp.ones((2, 3))}, state, params)
    assert float(jnp.max(jnp.abs(updates['w']))) == 0.0
    updates, state = tx.update({'w': jnp.ones((2, 3))}, state, params)
    assert float(jnp.max(jnp.abs(updates['w']))) > 0.0


@pytest.mark.parametrize('caution', [False, True])
def test_adopt_corrected_decay_with_schedule(caution):
    timm_cls = _timm().Adopt
    kw = dict(weight_decay=0.5, decoupled=True, caution=caution)
    r = scheduled_parity(timm_cls, jt.optim.adopt, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.adopt, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement
