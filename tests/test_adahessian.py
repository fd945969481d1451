"""AdaHessian against timm's ``Adahessian`` (second-order runs): Hessian power, ``update_each``, samples, conv
kernel averaging (also in Flax layout); the Hessian-vector product and Hutchinson estimate against jax.hessian.
"""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import run_parity
from parity import alias_parity, in_flax_layout as _in_flax_layout, timm_optim as _timm


@pytest.mark.parametrize('kwargs', [
    dict(weight_decay=0.0),
    dict(weight_decay=0.1),
    dict(hessian_power=0.5, weight_decay=0.05),
    dict(update_each=2),
    dict(update_each=3, n_samples=2, weight_decay=0.05),
    dict(n_samples=2, betas=(0.8, 0.99), eps=1e-6),
    dict(avg_conv_kernel=True, weight_decay=0.05),
    dict(avg_conv_kernel=True, update_each=2, hessian_power=0.7),
])
def test_adahessian(kwargs):
    alias_parity(_timm().Adahessian, jt.optim.adahessian, lr=0.05, second_order=True, **kwargs).check()


def test_adahessian_flax_layout_conv_averaging():
    r = run_parity(
        lambda m: _timm().Adahessian(m.parameters(), lr=0.05, avg_conv_kernel=True, weight_decay=0.05),
        lambda p: _in_flax_layout(jt.optim.adahessian(0.05, avg_conv_kernel=True, weight_decay=0.05, layout='flax')),
        second_order=True)
    r.check()


def test_adahessian_update_each_reuses_estimate():
    """With update_each=k the stored estimate changes only on steps 0, k, 2k, ..."""
    loss_fn = lambda p: jnp.sum(p['w'] ** 4)  # noqa: E731
    params = {'w': jnp.array([1.0, -2.0, 0.5])}
    tx = jt.optim.adahessian(0.1, update_each=3)
    state = tx.init(params)
    seen = []
    for _ in range(6):
        grads = jax.grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, hvp_fn=jt.optim.hvp_fn_from_loss(loss_fn, params))
        params = optax.apply_updates(params, updates)
        seen.append(np.asarray(state[0].hessian['w']))
    assert np.array_equal(seen[0], seen[1]) and np.array_equal(seen[0], seen[2])
    assert not np.array_equal(seen[2], seen[3]) and np.array_equal(seen[3], seen[5])


def test_hvp_fn_from_loss():
    def loss_fn(p, x):
        return jnp.sum(jnp.sin(p['a'] @ x) * p['b'] ** 2)
    params = {'a': jnp.arange(6.0).reshape(2, 3) / 5, 'b': jnp.array([0.5, -1.0])}
    x = jnp.array([0.3, -0.2, 0.9])
    v = {'a': jnp.ones((2, 3)), 'b': jnp.array([1.0, 2.0])}
    hv = jt.optim.hvp_fn_from_loss(loss_fn, params, x)(v)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hess = jax.hessian(lambda f: loss_fn(unravel(f), x))(flat)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(hv)[0], hess @ jax.flatten_util.ravel_pytree(v)[0],
                               rtol=1e-5, atol=1e-6)


def test_hutchinson_estimate_is_unbiased_for_dense_hessian():
    h = jnp.array([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]])
    est, _ = jt.transforms.hutchinson_diagonal(lambda v: h @ v, jax.random.PRNGKey(0), jnp.zeros(3), n_samples=4000)
    # Monte Carlo: the estimate's std per entry is sqrt(sum of squared off-diagonals / n) <= 0.6 / sqrt(4000) ~ 0.01,
    # so 0.05 is a 5-sigma bound; exactness is tested on diagonal Hessians (the parity runs).
    np.testing.assert_allclose(est, jnp.diag(h), atol=0.05)


def test_adahessian_needs_hvp_fn():
    tx = jt.optim.adahessian()
    params = {'w': jnp.ones(3)}
    with pytest.raises(ValueError, match='hvp_fn'):
        tx.update(params, tx.init(params), params)
