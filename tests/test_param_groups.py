"""Layer-wise lr decay, group matchers, no-opt leaves, param_group_fn: against timm's factory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.optim import named_leaves
from jaxopt_timm.optim._param_groups import auto_layer_ids, build_param_groups, layer_ids_from_matcher
from jaxopt_timm.parity import load_timm, to_tree
from parity import VIT_GROUP_MATCHER, VIT_SHAPES, grouped_factory_parity

VIT_NAMES = list(VIT_SHAPES)


def test_layer_ids_match_timm_group_parameters():
    load_timm()
    import torch
    from timm.models import group_parameters
    from jaxopt_timm.parity import torch_module
    module = torch_module({k: np.zeros(s, np.float32) for k, s in VIT_SHAPES.items()})
    theirs = group_parameters(module, VIT_GROUP_MATCHER, reverse=True)
    assert layer_ids_from_matcher(VIT_NAMES, VIT_GROUP_MATCHER) == theirs
    # callable matcher, and a coarse matcher (whole blocks)
    coarse = {'stem': r'^cls_token|pos_embed|patch_embed', 'blocks': r'^blocks\.(\d+)'}
    assert layer_ids_from_matcher(VIT_NAMES, coarse) == group_parameters(module, coarse, reverse=True)
    fn = lambda n: (0,) if n.startswith('pos') else (1, len(n))  # noqa: E731
    assert layer_ids_from_matcher(VIT_NAMES, fn) == group_parameters(module, fn, reverse=True)
    del torch


# torch lists a module's own parameters before its submodules', so for auto grouping (which depends on order)
# the comparison tree keeps every leaf inside a submodule: then torch's order is the params tree's leaf order.
AUTO_SHAPES = {'stem.' + k if '.' not in k else k: s for k, s in VIT_SHAPES.items()}
AUTO_SHAPES = dict(sorted(AUTO_SHAPES.items()))


def test_auto_layer_ids_match_timm():
    load_timm()
    from timm.optim._param_groups import auto_group_layers
    from jaxopt_timm.parity import torch_module
    module = torch_module({k: np.zeros(s, np.float32) for k, s in AUTO_SHAPES.items()})
    module.pretrained_cfg = {'classifier': 'head'}
    names = [n for n, _ in module.named_parameters()]
    assert names == [n for n, _ in named_leaves(to_tree({k: 0 for k in AUTO_SHAPES}))]
    assert auto_layer_ids(names, 'head') == auto_group_layers(module)
    assert auto_layer_ids(names, 'head', layers_per_group=4) == auto_group_layers(module, layers_per_group=4)
    assert auto_layer_ids(names, 'head', num_groups=3) == auto_group_layers(module, num_groups=3)
    assert auto_layer_ids(names, ('head', 'norm'), 5) == auto_group_layers(
        _with_cfg(module, ('head', 'norm')), layers_per_group=5)


def _with_cfg(module, classifier):
    module.pretrained_cfg = {'classifier': classifier}
    return module


VIT_ATTRS = dict(
    group_matcher=lambda coarse=False: VIT_GROUP_MATCHER,
    no_weight_decay=lambda: {'pos_embed', 'cls_token'},
)
VIT_OURS = dict(group_matcher=VIT_GROUP_MATCHER, no_weight_decay_list=('pos_embed', 'cls_token'))


LAYER_DECAY_OPTS = ['adamw', 'lamb', 'sgd', 'madgrad', 'rmsproptf', 'lars', 'adamwlegacy']


@pytest.mark.parametrize('name', LAYER_DECAY_OPTS)
@pytest.mark.parametrize('layer_decay', [0.75, 0.5])
def test_layer_decay_parity(name, layer_decay):
    grouped_factory_parity(
        name, VIT_SHAPES, weight_decay=0.05, layer_decay=layer_decay,
        model_attrs=VIT_ATTRS, ours=VIT_OURS).check()


def _timm_update_schedule(peak, **sched_kwargs):
    """lr timm's scheduler puts in the optimizer before update t (step_update(num_updates=t))."""
    import torch
    _, timm_sched = load_timm()
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched, _ = timm_sched.create_scheduler_v2(dummy, **sched_kwargs)
    cache = {}

    def lr_at(t):
        if t not in cache:
            sched.step_update(num_updates=t)
            cache[t] = dummy.param_groups[0]['lr']
        return cache[t]
    return lr_at


@pytest.mark.parametrize('name', ['adamw', 'lamb', 'sgd', 'madgrad', 'rmsproptf'])
def test_layer_decay_with_warmup_cosine_per_update(name):
    """DeiT/BEiT-style recipe: warmup + cosine stepped per update, layer decay 0.75, weight decay 0.05."""
    peak = 1e-2
    sched_kwargs = dict(sched='cosine', num_epochs=6, warmup_epochs=2, warmup_lr=1e-4, min_lr=1e-4,
                        step_on_epochs=False, updates_per_epoch=5)
    ours, _ = jt.create_scheduler_v2(peak, **sched_kwargs)
    grouped_factory_parity(
        name, VIT_SHAPES, lr=peak, weight_decay=0.05, layer_decay=0.75, model_attrs=VIT_ATTRS, ours=VIT_OURS,
        schedule=ours, torch_lr=_timm_update_schedule(peak, **sched_kwargs)).check()


def test_layer_decay_min_and_no_opt_scale_parity():
    r = grouped_factory_parity(
        'adamw', VIT_SHAPES, weight_decay=0.05, layer_decay=0.5, layer_decay_min_scale=0.2,
        layer_decay_no_opt_scale=0.3, model_attrs=VIT_ATTRS, ours=VIT_OURS)
    r.check()
    # the stem (layer 0, scale 0.5**4 -> clamped 0.2 < 0.3) is frozen on both sides
    for k in ('pos_embed', 'cls_token', 'patch_embed.proj.weight'):
        np.testing.assert_array_equal(r.ours[k], r.theirs[k])


def test_auto_layer_decay_with_head_prefix_parity():
    grouped_factory_parity(
        'adamw', AUTO_SHAPES, weight_decay=0.05, layer_decay=0.7,
        model_attrs=dict(pretrained_cfg={'classifier': 'head'}), ours=dict(head_prefix='head')).check()


def test_no_opt_leaves_hold_no_state_and_get_zero_updates():
    params = to_tree({k: jnp.ones(s) for k, s in VIT_SHAPES.items()})
    tx = jt.create_optimizer_v2(params, 'adamw', lr=0.1, weight_decay=0.05, layer_decay=0.5,
                                layer_decay_no_opt_scale=0.1, group_matcher=VIT_GROUP_MATCHER)
    state = tx.init(params)
    frozen_names = ('pos_embed', 'cls_token', 'patch_embed')  # layer 0: 0.5**4 < 0.1
    trainable = sum(np.size(x) for n, x in named_leaves(params) if not n.startswith(frozen_names))
    moments = sum(x.size for x in jax.tree.leaves(state) if x.ndim > 0)
    assert moments == 2 * trainable  # AdamW's two moments for trainable leaves only, nothing for frozen ones
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), state, params)
    flat = dict(named_leaves(updates))
    assert float(jnp.abs(flat['pos_embed']).max()) == 0.0
    assert float(jnp.abs(flat['head.weight']).max()) > 0.0


def test_param_group_fn_overrides():
    params = to_tree({k: jnp.ones(s) for k, s in VIT_SHAPES.items()})

    def group_fn(name, leaf):
        if name.startswith('head'):
            return {'lr_scale': 10.0, 'weight_decay': 0.0}
        if name.startswith('blocks.0'):
            return {'betas': (0.5, 0.9)}
        if name == 'pos_embed':
            return None  # not optimized
        return {}

    tx = jt.create_optimizer_v2(params, 'adamw', lr=0.01, weight_decay=0.1, param_group_fn=group_fn)
    g = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(g, tx.init(params), params)
    flat = dict(named_leaves(updates))
    # head: lr 0.1, no decay: first Adam step is -lr * sign(g)
    np.testing.assert_allclose(flat['head.weight'], -0.1 * np.ones((3, 4)), rtol=1e-5)
    # others: lr 0.01 plus decoupled decay 0.01 * 0.1 * p (param_group_fn bypasses the 1-d filter, as timm)
    np.testing.assert_allclose(flat['norm.weight'], -(0.01 + 0.001) * np.ones(4), rtol=1e-5)
    assert float(jnp.abs(flat['pos_embed']).max()) == 0.0
    # blocks.0 runs with its own betas: after a gradient sign change its update differs from blocks.1's
    state = tx.init(params)
    for scale in (1.0, -0.5):
        updates, state = tx.update(jax.tree.map(lambda x: x * scale, g), state, params)
    flat = dict(named_leaves(updates))
    b1 = {0: 0.5, 1: 0.9}
    for blk in (0, 1):
        beta1 = b1[blk]
        beta2 = 0.9 if blk == 0 else 0.999
        m_hat = ((1 - beta1) * beta1 * 1.0 + (1 - beta1) * -0.5) / (1 - beta1 ** 2)
        v_hat = ((1 - beta2) * beta2 * 1.0 + (1 - beta2) * 0.25) / (1 - beta2 ** 2)
        expect = -0.01 * m_hat / (np.sqrt(v_hat) + 1e-8) - 0.01 * 0.1 * 1.0
        np.testing.assert_allclose(flat[f'blocks.{blk}.attn.weight'], np.full((12, 4), expect), rtol=1e-5)


def test_layer_decay_uses_1d_filter_only():
    """timm quirk: param_groups_layer_decay skips decay on ndim <= 1 but not on a '.bias' name of higher rank."""
    params = {'a': {'bias': jnp.ones((2, 2))}, 'b': jnp.ones(3)}
    g = build_param_groups(params, weight_decay=0.1, layer_decay=0.9)
    assert dict(named_leaves(g.weight_decay)) == {'a.bias': 0.1, 'b': 0.0}
    g = build_param_groups(params, weight_decay=0.1)
    assert dict(named_leaves(g.weight_decay)) == {'a.bias': 0.0, 'b': 0.0}


@pytest.mark.parametrize('bad', [dict(layer_decay=-0.1), dict(layer_decay=1.5), dict(layer_decay_min_scale=2.0)])
def test_bad_layer_decay_args(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        jt.create_optimizer_v2({'w': jnp.ones((2, 2))}, 'adamw', lr=1e-3, **bad)
