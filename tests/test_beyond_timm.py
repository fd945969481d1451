"""The names timm lacks, each against its own reference library on the parity problem.

``sfadamw`` / ``sfsgd`` / ``sfradam`` (schedulefree 1.4.1), ``prodigy``
(prodigyopt 1.1.2), ``ademamix`` and ``sam`` (pytorch-optimizer 4.1.0) run
through ``reference_parity``: the reference class is built by timm's factory
with the same param groups, both sides take 30 steps with weight decay on,
and every main switch of each is exercised. Schedule-Free is also checked at
its evaluation point (the reference's ``optimizer.eval()``) and under a
schedule from step 0 (inside ``optax.MultiSteps`` it is covered with every
name by ``test_composition``); SAM with each base and with ASAM / gradient
centralization. A missing reference fails with the install command.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import (
    TOL, ensure_reference, from_tree, prepare_reference, reference_parity, run_parity, to_tree)
from parity import linear_decay

STEPS = 30
CASES = {
    'sfadamw': [dict(weight_decay=0.05), dict(weight_decay=0.05, warmup_steps=8, betas=(0.8, 0.99)),
                dict(weight_decay=0.05, r=1.0, weight_lr_power=1.0)],
    'sfsgd': [dict(weight_decay=0.05), dict(weight_decay=0.05, warmup_steps=8, momentum=0.8, r=0.5)],
    'sfradam': [dict(weight_decay=0.05), dict(weight_decay=0.05, silent_sgd_phase=False, betas=(0.9, 0.99))],
    'prodigy': [dict(lr=1.0, weight_decay=0.05),
                dict(lr=1.0, weight_decay=0.05, use_bias_correction=True, safeguard_warmup=True, d0=1e-3),
                dict(lr=0.5, weight_decay=0.05, decouple=False, growth_rate=1.02, d_coef=0.8),
                dict(lr=1.0, weight_decay=0.05, betas=(0.0, 0.99), beta3=0.9, slice_p=3)],
    'ademamix': [dict(weight_decay=0.05), dict(weight_decay=0.05, t_alpha_beta3=20, alpha=3.0),
                 dict(weight_decay=0.05, weight_decouple=True, fixed_decay=True, maximize=True)],
    'sam': [dict(base='sgd', weight_decay=0.05), dict(base='adamw', weight_decay=0.05, rho=0.1),
            dict(base='sgd', weight_decay=0.05, adaptive=True, rho=0.5),
            dict(base='adamw', weight_decay=0.05, use_gc=True)],
}
PARAMS = [(name, i) for name, cases in CASES.items() for i in range(len(cases))]


@pytest.mark.parametrize('name,i', PARAMS)
def test_reference_parity(name, i):
    kwargs = dict(CASES[name][i])
    kwargs.setdefault('lr', 1e-2)
    result = reference_parity(name, steps=STEPS, **kwargs)
    result.check(TOL)


def test_records_name_their_reference():
    sources = {name: jt.get_optimizer_info(name).source for name in CASES}
    assert sources == {'sfadamw': 'schedulefree 1.4.1', 'sfsgd': 'schedulefree 1.4.1', 'sfradam': 'schedulefree 1.4.1',
                       'prodigy': 'prodigyopt 1.1.2', 'ademamix': 'pytorch-optimizer 4.1.0',
                       'sam': 'pytorch-optimizer 4.1.0'}
    for name in CASES:
        ensure_reference(name)  # importable: fails with the install command otherwise


def _schedule_free_run(name, our_lr, torch_lr, **kwargs):
    """(ours, theirs) evaluation points after STEPS steps; lr per step from ``torch_lr(t)`` on the reference."""
    timm_optim, _ = __import__('jaxopt_timm.parity', fromlist=['load_timm']).load_timm()
    ensure_reference(name)
    holder = {}

    def make_timm(module):
        holder['opt'] = prepare_reference(timm_optim.create_optimizer_v2(module, name, lr=torch_lr(0), **kwargs))
        holder['named'] = dict(module.named_parameters())
        return holder['opt']

    result = run_parity(make_timm, lambda p: jt.create_optimizer_v2(p, name, lr=our_lr, **kwargs),
                        steps=STEPS, torch_lr=torch_lr)
    holder['opt'].eval()
    theirs = {k: p.detach().numpy() for k, p in holder['named'].items()}
    params = to_tree({k: jnp.asarray(v) for k, v in result.ours.items()})
    ours = from_tree(jt.optim.schedule_free_eval_params(result.state, params))
    return result, ours, theirs


@pytest.mark.parametrize('name', ['sfadamw', 'sfsgd', 'sfradam'])
def test_schedule_free_eval_point_and_schedule_from_step_zero(name):
    """The evaluation point equals the reference's after ``eval()``, with the lr following a schedule whose
    step-0 value is used (optax.contrib's schedule-free skips it)."""
    sched = linear_decay(0.05, STEPS)
    result, ours, theirs = _schedule_free_run(name, sched, lambda t: float(sched(t)), weight_decay=0.05)
    result.check(TOL)
    for k in theirs:
        scale = max(float(np.max(np.abs(theirs[k]))), 1e-3)
        np.testing.assert_allclose(ours[k], theirs[k], atol=TOL * scale, rtol=0, err_msg=k)
    # the eval point is not the training point
    assert max(float(np.max(np.abs(ours[k] - result.ours[k]))) for k in ours) > 1e-4


def test_schedule_free_eval_params_needs_one_state():
    params = {'w': jnp.ones(3)}
    with pytest.raises(ValueError, match='Schedule-Free'):
        jt.optim.schedule_free_eval_params(jt.optim.adamw().init(params), params)
    tx = jt.create_optimizer_v2(params, 'sfadamw', lr=1e-2)
    state = tx.init(params)
    np.testing.assert_array_equal(jt.optim.schedule_free_eval_params(state, params)['w'], params['w'])


def test_prodigy_refuses_layer_decay():
    params = {'a': {'w': jnp.ones((3, 3))}, 'b': {'w': jnp.ones((3, 3))}}
    tx = jt.optim.prodigy(1.0, lr_scale={'a': {'w': 0.5}, 'b': {'w': 1.0}})
    with pytest.raises(ValueError, match='lr_scale'):
        tx.init(params)
    jt.optim.prodigy(1.0, lr_scale={'a': {'w': 0.0}, 'b': {'w': 1.0}}).init(params)  # frozen leaves are fine


def test_sam_needs_grad_fn_and_a_base():
    params = {'w': jnp.ones(3)}
    tx = jt.create_optimizer_v2(params, 'sam', base='adamw', lr=1e-2)
    state = tx.init(params)
    with pytest.raises(ValueError, match='grad_fn'):
        tx.update(params, state, params)
    for bad in ('nosuch', 'sam', 3):
        with pytest.raises(ValueError, match='base'):
            jt.create_optimizer_v2(params, 'sam', base=bad, lr=1e-2)


def test_sam_grad_fn_is_called_at_the_perturbed_point():
    """With rho = 0 SAM is its base; with rho > 0 the base sees ``grad_fn(p + e)``, e along the gradient."""
    params = {'w': jnp.array([1.0, -2.0, 0.5])}
    grad_fn = jax.grad(lambda p: jnp.sum(p['w'] ** 4))
    seen = []

    def spy(p):
        seen.append(p['w'])
        return grad_fn(p)

    g = grad_fn(params)
    base = jt.optim.sgd(0.1)
    u0, _ = jt.optim.sam(base, rho=0.0).update(g, jt.optim.sam(base).init(params), params, grad_fn=spy)
    np.testing.assert_allclose(u0['w'], -0.1 * g['w'], rtol=1e-6)
    jt.optim.sam(base, rho=0.05).update(g, jt.optim.sam(base).init(params), params, grad_fn=spy)
    e = seen[-1] - params['w']
    np.testing.assert_allclose(float(jnp.linalg.norm(e)), 0.05, rtol=1e-5)
    # p + e is rounded to float32, so e is known to an ulp of p
    np.testing.assert_allclose(e / jnp.linalg.norm(e), g['w'] / jnp.linalg.norm(g['w']), rtol=1e-5, atol=2e-6)


def test_sam_packs_its_base():
    """``pack_leaves`` reaches the base optimizer: the same run as per leaf (float32 reassociation aside)."""
    params = {f'l{i}': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4) * (i + 1) for i in range(4)}
    grad_fn = jax.grad(lambda p: sum(jnp.sum(jnp.cos(x) * x ** 2) for x in jax.tree.leaves(p)))
    runs = []
    for pack in (None, 2):
        tx = jt.create_optimizer_v2(params, 'sam', base='adamw', lr=1e-2, weight_decay=0.05, pack_leaves=pack)
        p, s = params, tx.init(params)
        for _ in range(4):
            u, s = tx.update(grad_fn(p), s, p, grad_fn=grad_fn)
            p = jax.tree.map(lambda a, b: a + b, p, u)
        runs.append(p)
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_allclose(a, b, rtol=5e-6, atol=1e-7)
    assert float(jnp.max(jnp.abs(runs[0]['l0'] - params['l0']))) > 1e-3
