"""RAdam against ``torch.optim.RAdam`` (L2 and decoupled decay) and RAdamLegacy against timm's ``RAdamLegacy``;
the rectification scalars (shared with RAdaBelief) against the float64 formulas.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from jaxopt_timm.transforms import one_minus_pow, rectified_step_size, sma_length
from jaxopt_timm.parity import factory_parity
from parity import alias_parity, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),  # L2
    dict(weight_decay=0.1, decoupled_weight_decay=True),  # radamw
    dict(weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6),
    dict(weight_decay=0.1, maximize=True),
])
def test_radam_torch(kwargs):
    alias_parity(torch.optim.RAdam, jt.optim.radam, steps=30, **kwargs).check()


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(weight_decay=0.05, betas=(0.85, 0.98), eps=1e-6),
])
def test_radam_legacy(kwargs):
    alias_parity(_timm().RAdamLegacy, jt.optim.radam_legacy, steps=30, **kwargs).check()


def test_radamw_factory():
    factory_parity('radamw', lr=1e-2, weight_decay=0.1).check()


@pytest.mark.parametrize('b2', [0.999, 0.9999, 0.99, 0.95, 0.9, 0.5])
def test_rectification_scalars_match_double_precision(b2):
    t = np.concatenate([np.arange(1, 2000), [1e4, 1e5, 1e6]])
    rho_ref = 2 / (1 - b2) - 1 - 2 * t * b2 ** t / (1 - b2 ** t)
    rho = np.asarray(sma_length(jnp.asarray(t, jnp.float32), b2), np.float64)
    np.testing.assert_allclose(rho, rho_ref, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(one_minus_pow(b2, jnp.asarray(t, jnp.float32))), 1 - b2 ** t, rtol=1e-6)
    rs = rectified_step_size(jnp.asarray(t, jnp.float32), 0.9, b2)
    np.testing.assert_array_equal(np.asarray(rs.adaptive), rho_ref >= 5)
    rho_inf = 2 / (1 - b2) - 1
    ok = rho_ref >= 5
    if ok.any():
        rho_ok, t_ok = rho_ref[ok], t[ok]
        r = np.sqrt((rho_ok - 4) * (rho_ok - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_ok))
        step_ref = r * np.sqrt(1 - b2 ** t_ok) / (1 - 0.9 ** t_ok)
        np.testing.assert_allclose(np.asarray(rs.adaptive_step, np.float64)[ok], step_ref, rtol=2e-6)
