"""MADGRAD, NvNovoGrad and RMSpropTF against timm's classes: every registered name and distinctive switch."""
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.parity import load_timm, run_parity, to_tree
from parity import alias_parity, linear_decay, scheduled_parity, trajectory_diff



def _timm():
    return load_timm()[0]


# --- MADGRAD

@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9),
    dict(momentum=0.9, weight_decay=0.1),
    dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True),  # decay shrinks p before the momentum average
    dict(momentum=0.0),  # x0 recomputed from p each step, none stored
    dict(momentum=0.0, weight_decay=0.1),
    dict(momentum=0.0, weight_decay=0.1, decoupled_decay=True),
    dict(momentum=0.5, eps=1e-3, weight_decay=0.01),  # timm adds eps to the lr inside lamb
])
def test_madgrad(kwargs):
    alias_parity(_timm().MADGRAD, jt.optim.madgrad, lr=1e-2, **kwargs).check()


def test_madgrad_state_has_x0_only_with_momentum():
    params = {'w': jnp.ones(3)}
    assert jt.optim.madgrad(momentum=0.9).init(params).x0 is not None
    assert jt.optim.madgrad(momentum=0.0).init(params).x0 is None


@pytest.mark.parametrize('kwargs', [
    dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True),
    dict(momentum=0.0, weight_decay=0.1),
])
def test_madgrad_with_schedule(kwargs):
    """The group lr enters the dual-averaging weights, so the trajectory depends on the lr history."""
    scheduled_parity(_timm().MADGRAD, jt.optim.madgrad, peak=0.02, **kwargs).check()


# --- NovoGrad

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


# --- RMSpropTF

@pytest.mark.parametrize('kwargs', [
    dict(),  # momentum 0: plain TF RMSprop
    dict(weight_decay=0.1),
    dict(momentum=0.9, weight_decay=0.05),
    dict(momentum=0.9, centered=True, weight_decay=0.05),
    dict(momentum=0.9, lr_in_momentum=False, weight_decay=0.05),
    dict(momentum=0.9, decoupled_decay=True, weight_decay=0.1),
    dict(momentum=0.9, caution=True, weight_decay=0.05),
    dict(momentum=0.9, caution=True, lr_in_momentum=False, centered=True),
    dict(caution=True),  # timm ignores caution without momentum
    dict(momentum=0.5, alpha=0.99, eps=1e-3, centered=True),
])
def test_rmsprop_tf(kwargs):
    alias_parity(_timm().RMSpropTF, jt.optim.rmsprop_tf, lr=1e-2, **kwargs).check()


@pytest.mark.parametrize('lr_in_momentum', [True, False])
def test_rmsprop_tf_momentum_with_schedule(lr_in_momentum):
    """With a schedule, lr_in_momentum keeps past lrs in the buffer; the two settings must differ."""
    timm_cls = _timm().RMSpropTF
    r = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, momentum=0.9, weight_decay=0.05, lr_in_momentum=lr_in_momentum)
    r.check()
    other = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, momentum=0.9, weight_decay=0.05,
                       lr_in_momentum=not lr_in_momentum)
    assert trajectory_diff(r, other) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


def test_rmsprop_tf_corrected_decay_with_schedule():
    timm_cls = _timm().RMSpropTF
    kw = dict(momentum=0.9, weight_decay=0.5, decoupled_decay=True)
    r = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, corrected_weight_decay=True, **kw)
    r.check()
    plain = scheduled_parity(timm_cls, jt.optim.rmsprop_tf, **kw)
    plain.check()
    assert trajectory_diff(r, plain) > 20 * 2e-4 * r.displacement  # far outside the parity tolerance


def test_rmsprop_tf_caution_with_schedule():
    scheduled_parity(_timm().RMSpropTF, jt.optim.rmsprop_tf, momentum=0.9, caution=True, weight_decay=0.05).check()


# --- validation

@pytest.mark.parametrize('alias,kwargs,arg', [
    (jt.optim.madgrad, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.madgrad, dict(learning_rate=0.0), 'learning_rate'),  # timm requires lr > 0
    (jt.optim.madgrad, dict(momentum=1.0), 'momentum'),
    (jt.optim.madgrad, dict(momentum=-0.1), 'momentum'),
    (jt.optim.madgrad, dict(eps=-1e-6), 'eps'),
    (jt.optim.madgrad, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.madgrad, dict(decoupled_decay=1), 'decoupled_decay'),
    (jt.optim.novograd, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.novograd, dict(betas=(1.0, 0.98)), 'betas'),
    (jt.optim.novograd, dict(betas=(0.9, -0.1)), 'betas'),
    (jt.optim.novograd, dict(betas=(0.9,)), 'betas'),
    (jt.optim.novograd, dict(eps=-1.0), 'eps'),
    (jt.optim.novograd, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.novograd, dict(weight_decay={'a': 0.1, 'b': -0.1}), 'weight_decay'),
    (jt.optim.novograd, dict(grad_averaging='yes'), 'grad_averaging'),
    (jt.optim.novograd, dict(amsgrad=None), 'amsgrad'),
    (jt.optim.novograd, dict(learning_rate=lambda t: 0.1, decoupled_decay=True, corrected_weight_decay=True),
     'max_lr'),
    (jt.optim.rmsprop_tf, dict(learning_rate=-1.0), 'learning_rate'),
    (jt.optim.rmsprop_tf, dict(alpha=-0.1), 'alpha'),
    (jt.optim.rmsprop_tf, dict(alpha=1.5), 'alpha'),
    (jt.optim.rmsprop_tf, dict(eps=-1e-10), 'eps'),
    (jt.optim.rmsprop_tf, dict(weight_decay=-0.1), 'weight_decay'),
    (jt.optim.rmsprop_tf, dict(momentum=-0.9), 'momentum'),
    (jt.optim.rmsprop_tf, dict(centered=0), 'centered'),
    (jt.optim.rmsprop_tf, dict(lr_in_momentum='tf'), 'lr_in_momentum'),
    (jt.optim.rmsprop_tf, dict(caution=1), 'caution'),
    (jt.optim.rmsprop_tf, dict(learning_rate=0.0, decoupled_decay=True, corrected_weight_decay=True), 'max_lr'),
])
def test_invalid_hyperparameters(alias, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        alias(**kwargs)


@pytest.mark.parametrize('name', ['madgrad', 'novogradc', 'rmsproptfc'])
def test_factory_rejects_negative_lr(name):
    params = {'w': np.ones((2, 2), np.float32)}
    with pytest.raises(ValueError, match='lr'):  # the factory names its own argument
        jt.create_optimizer_v2(params, name, lr=-0.1)


# --- per-group lr scale (layer decay): the group lr enters MADGRAD's weights and RMSpropTF's buffer

def _lr_scale(name):
    return 0.3 if name.startswith(('conv', 'pos_embed')) else 1.0


@pytest.mark.parametrize('which,kwargs', [
    ('madgrad', dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True)),
    ('madgrad', dict(momentum=0.0, weight_decay=0.1)),
    ('novograd', dict(weight_decay=0.1, decoupled_decay=True, corrected_weight_decay=True)),
    ('rmsprop_tf', dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True, corrected_weight_decay=True)),
    ('rmsprop_tf', dict(momentum=0.9, lr_in_momentum=False, caution=True, weight_decay=0.05)),
])
def test_lr_scale_groups_with_schedule(which, kwargs):
    timm_cls = {'madgrad': _timm().MADGRAD, 'novograd': _timm().NvNovoGrad, 'rmsprop_tf': _timm().RMSpropTF}[which]
    our_alias = getattr(jt.optim, which)
    peak, steps = 0.02, 30
    sched = linear_decay(peak, steps)

    def make_timm(module):
        groups = {}
        for name, p in module.named_parameters():
            groups.setdefault(_lr_scale(name), []).append(p)
        return timm_cls([dict(params=ps, lr_scale=s) for s, ps in groups.items()], lr=peak, **kwargs)

    def make_ours(params):
        names = dict(jt.optim.named_leaves(params))
        scale = to_tree({n: _lr_scale(n) for n in names})
        extra = {'max_lr': peak} if kwargs.get('corrected_weight_decay') else {}
        return our_alias(lambda t: sched(jnp.asarray(t, jnp.float32)), lr_scale=scale, **kwargs, **extra)

    run_parity(make_timm, make_ours, steps=steps, torch_lr=sched).check()


@pytest.mark.parametrize('alias,kwargs', [
    (jt.optim.madgrad, dict(learning_rate=0.01, momentum=0.9, weight_decay=0.1, decoupled_decay=True)),
    (jt.optim.madgrad, dict(learning_rate=0.01, momentum=0.0, weight_decay=0.1)),
    (jt.optim.novograd, dict(learning_rate=0.01, weight_decay=0.1, amsgrad=True)),
    (jt.optim.rmsprop_tf, dict(learning_rate=0.01, momentum=0.9, alpha=0.9, weight_decay=0.1, centered=True)),
])
def test_inject_hyperparams_matches(alias, kwargs):
    """Numeric hyperparameters may be traced (optax.inject_hyperparams) without changing the result."""
    import jax
    import optax
    params = {'w': jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), 'b': jnp.zeros(3)}
    grads = {'w': jnp.full((3, 2), 0.5), 'b': jnp.linspace(-1.0, 1.0, 3)}
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
