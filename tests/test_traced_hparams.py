"""Construction-time checks must let traced hyperparameters through.

``optax.inject_hyperparams(alias)`` calls the alias again inside every
``update`` with its numeric hyperparameters as traced arrays, so a check that
compares one of them in Python (``if momentum <= 0``) raises a
``TracerBoolConversionError`` inside ``jax.jit``. Here the SGD family's
Nesterov rule (momentum > 0, dampening == 0) is exercised the way a user
writes it, with no ``static_args`` (the lr, momentum, dampening and weight
decay all traced); every registered name with lr, weight decay, momentum and
eps traced is covered by the ``inject_hyperparams`` property of
``test_composition.py``. Below, the same property on chosen settings of Lion,
LaProp, ADOPT, MARS, Adan, MADGRAD, NvNovoGrad, RMSpropTF, Lamb and Lars: the
traced run must equal the static one.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm._validate import check_nesterov

PARAMS = {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.asarray([0.5, -0.25, 1.0, 2.0])}
GRADS = [jax.tree.map(lambda p, k=k: jnp.cos(p * (k + 1)) + 0.1 * k, PARAMS) for k in range(3)]
LRS = (0.1, 0.04, 0.07)  # the lr of each step

# the aliases whose construction checks Nesterov's momentum > 0 and dampening == 0
NESTEROV_ALIASES = {
    'sgd': jt.optim.sgd,
    'sgdw': jt.optim.sgdw,
    'lars': jt.optim.lars,
}


@pytest.mark.parametrize('name', sorted(NESTEROV_ALIASES))
def test_nesterov_with_traced_momentum(name):
    """``inject_hyperparams(alias)(learning_rate=0.1, momentum=0.9, nesterov=True)``: init and three jitted updates
    run, a new lr each step does not retrace, and the params equal the alias rebuilt with each step's floats."""
    alias = NESTEROV_ALIASES[name]
    tx = optax.inject_hyperparams(alias)(learning_rate=LRS[0], momentum=0.9, nesterov=True)
    traces = []

    def update(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    update = jax.jit(update)
    state, params = tx.init(PARAMS), PARAMS
    ref_state, ref_params = None, PARAMS
    for k, g in enumerate(GRADS):
        state.hyperparams['learning_rate'] = jnp.asarray(LRS[k], jnp.float32)
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
        ref_tx = alias(learning_rate=LRS[k], momentum=0.9, nesterov=True)
        ref_u, ref_state = ref_tx.update(g, ref_tx.init(PARAMS) if ref_state is None else ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, ref_u)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
            # relative to the leaf's scale, as test_composition measures: a param near zero may differ by float32
            # rounding of the traced versus Python-float hyperparameters
            b = np.asarray(b)
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-6 * np.max(np.abs(b)),
                                       err_msg=f'{name} step {k + 1}')
    assert len(traces) == 1, f'{name}: traced {len(traces)} times'


@pytest.mark.parametrize('name', sorted(NESTEROV_ALIASES))
@pytest.mark.parametrize('momentum,dampening', [(0.0, 0.0), (0.9, 0.5)])
def test_nesterov_rule_still_checked(name, momentum, dampening):
    """The rule still holds for concrete values: passed to the alias, and under ``inject_hyperparams`` at ``init``
    (which calls the alias with concrete arrays)."""
    alias = NESTEROV_ALIASES[name]
    with pytest.raises(ValueError, match='Invalid nesterov'):
        alias(learning_rate=0.1, momentum=momentum, dampening=dampening, nesterov=True)
    tx = optax.inject_hyperparams(alias)(learning_rate=0.1, momentum=momentum, dampening=dampening, nesterov=True)
    with pytest.raises(ValueError, match='Invalid nesterov'):
        tx.init(PARAMS)


def test_check_nesterov():
    check_nesterov(True, 0.9, 0.0)
    check_nesterov(False, 0.0, 0.5)  # only Nesterov has the rule
    for momentum, dampening in ((0.0, 0.0), (-0.1, 0.0), (0.9, 0.1), (jnp.float32(0.0), 0.0)):
        with pytest.raises(ValueError) as e:
            check_nesterov(True, momentum, dampening)
        assert f'momentum={momentum!r}' in str(e.value) and f'dampening={dampening!r}' in str(e.value)
    # traced values cannot be compared and are let through (a concrete one beside them is still checked)
    assert jax.jit(lambda m, d: (check_nesterov(True, m, d), m)[1])(0.9, 0.0) == pytest.approx(0.9)
    with pytest.raises(ValueError, match='dampening=0.5'):
        jax.jit(lambda m: (check_nesterov(True, m, 0.5), m)[1])(0.9)

# the gradient of 'w' in each run: a ramp, or flat
W_GRADS = {'ramp': lambda: jnp.linspace(0.2, 0.7, 6).reshape(3, 2), 'flat': lambda: jnp.full((3, 2), 0.5)}


@pytest.mark.parametrize('alias,kwargs,w_grad', [
    (jt.optim.lion, dict(learning_rate=0.01, weight_decay=0.1), 'ramp'),
    (jt.optim.laprop, dict(learning_rate=0.01, weight_decay=0.1), 'ramp'),
    (jt.optim.adopt, dict(learning_rate=0.01, weight_decay=0.1, decoupled=True), 'ramp'),
    (jt.optim.mars, dict(learning_rate=0.01, weight_decay=0.1, gamma=0.1), 'ramp'),
    (jt.optim.adan, dict(learning_rate=0.01, weight_decay=0.1), 'ramp'),
    (jt.optim.madgrad, dict(learning_rate=0.01, momentum=0.9, weight_decay=0.1, decoupled_decay=True), 'flat'),
    (jt.optim.madgrad, dict(learning_rate=0.01, momentum=0.0, weight_decay=0.1), 'flat'),
    (jt.optim.novograd, dict(learning_rate=0.01, weight_decay=0.1, amsgrad=True), 'flat'),
    (jt.optim.rmsprop_tf, dict(learning_rate=0.01, momentum=0.9, alpha=0.9, weight_decay=0.1, centered=True), 'flat'),
])
def test_inject_hyperparams_matches(alias, kwargs, w_grad):
    """Numeric hyperparameters may be traced (optax.inject_hyperparams) without changing the result."""
    params = {'w': jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), 'b': jnp.zeros(3)}
    grads = {'w': W_GRADS[w_grad](), 'b': jnp.linspace(-1.0, 1.0, 3)}
    finals = []
    for tx in (alias(**kwargs), optax.inject_hyperparams(alias)(**kwargs)):
        state, p = tx.init(params), params
        step = jax.jit(tx.update)
        for _ in range(4):
            updates, state = step(grads, state, p)
            p = optax.apply_updates(p, updates)
        finals.append(p)
    for k in params:
        np.testing.assert_allclose(finals[0][k], finals[1][k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('alias,kwargs', [
    (jt.optim.lamb, dict(learning_rate=1e-2, weight_decay=0.1)),
    (jt.optim.lamb, dict(learning_rate=1e-2, weight_decay=0.1, decoupled_decay=True, trust_clip=True)),
    (jt.optim.lars, dict(learning_rate=1.0, momentum=0.9, weight_decay=0.1, trust_coeff=0.02, trust_clip=True)),
])
def test_inject_hyperparams(alias, kwargs):
    """Traced lr / weight decay (the per-leaf gate becomes a traced select) give the static answer."""
    params = {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.linspace(0.5, 1.0, 3)}
    grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)
    # momentum stays static: scale_by_torch_momentum branches on it in Python
    tx = optax.inject_hyperparams(alias, static_args=('momentum',) if 'momentum' in kwargs else ())(**kwargs)
    static = alias(**kwargs)
    s1, s2 = jax.jit(tx.init)(params), static.init(params)
    p1 = p2 = params
    for _ in range(3):
        u1, s1 = jax.jit(tx.update)(grads, s1, p1)
        u2, s2 = static.update(grads, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for k in params:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-6, atol=1e-7)
