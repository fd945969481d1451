"""The trust ratio shared by Lamb and Lars: ``always_adapt`` on the leaves timm's factory leaves undecayed
(against timm's factory), and the primitive on zero norms and its per-leaf gate (against the formula).
"""
import jax.numpy as jnp
import numpy as np

from jaxopt_timm.transforms import scale_by_trust_ratio
from jaxopt_timm.parity import factory_parity


def test_factory_always_adapt_on_undecayed_leaves():
    """The factory leaves biases/norms undecayed; always_adapt still gives them a trust ratio."""
    factory_parity('lamb', lr=1e-2, weight_decay=0.05, always_adapt=True).check()
    factory_parity('lars', lr=1.0, weight_decay=0.05, always_adapt=True, trust_coeff=0.02).check()


def test_trust_ratio_is_one_on_zero_norms():
    params = {'zero_w': jnp.zeros(3), 'zero_g': jnp.ones(3), 'both': jnp.full((2, 2), 2.0)}
    grads = {'zero_w': jnp.ones(3), 'zero_g': jnp.zeros(3), 'both': jnp.ones((2, 2))}
    for form in ('lamb', 'lars'):
        tx = scale_by_trust_ratio(0.0, form=form, always_adapt=True, trust_coeff=1.0)
        out, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(out['zero_w'], grads['zero_w'])
        np.testing.assert_allclose(out['zero_g'], grads['zero_g'])
        np.testing.assert_allclose(out['both'], 2.0 * grads['both'], rtol=1e-6)


def test_trust_ratio_per_leaf_gate():
    params = {'decayed': jnp.full(4, 3.0), 'free': jnp.full(4, 3.0)}
    grads = {'decayed': jnp.ones(4), 'free': jnp.ones(4)}
    tx = scale_by_trust_ratio({'decayed': 0.1, 'free': 0.0}, form='lamb')
    out, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(out['decayed'], 3.0 * grads['decayed'], rtol=1e-6)
    np.testing.assert_allclose(out['free'], grads['free'])
