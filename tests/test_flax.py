"""The same recipe on Flax linen variables, a linen TrainState and a flax.nnx model; Flax-named group matchers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import jaxopt_timm as jt
from jaxopt_timm.optim import named_leaves
from jaxopt_timm.optim._param_groups import layer_ids_from_matcher

RECIPE = dict(opt='adamw', lr=1e-2, weight_decay=0.05, layer_decay=0.75)


def test_flax_vit_matcher_layer_ids():
    names = ['cls', 'embedding.kernel', 'embedding.bias', 'Transformer.posembed_input.pos_embedding']
    for i in range(3):
        names += [f'Transformer.encoderblock_{i}.LayerNorm_0.scale',
                  f'Transformer.encoderblock_{i}.MlpBlock_3.Dense_0.kernel']
    names += ['Transformer.encoder_norm.scale', 'head.kernel', 'head.bias']
    ids = layer_ids_from_matcher(names, jt.optim.flax_vit_group_matcher())
    assert {ids[n] for n in names[:4]} == {0}
    assert [ids[f'Transformer.encoderblock_{i}.LayerNorm_0.scale'] for i in range(3)] == [1, 2, 3]
    assert ids['Transformer.encoder_norm.scale'] == 3  # merged into the last block, as timm's `norm`
    assert ids['head.kernel'] == 4
    coarse = layer_ids_from_matcher(names, jt.optim.flax_vit_group_matcher(coarse=True))
    assert coarse['Transformer.encoderblock_2.MlpBlock_3.Dense_0.kernel'] == 3


def test_flax_resnet_matcher_layer_ids():
    timm_style = ['conv1.kernel', 'bn1.scale', 'layer1_0.conv1.kernel', 'layer1_1.conv1.kernel',
                  'layer2_0.conv1.kernel', 'fc.kernel']
    ids = layer_ids_from_matcher(timm_style, jt.optim.flax_resnet_group_matcher())
    assert [ids[n] for n in timm_style] == [0, 0, 1, 2, 3, 4]
    ids = layer_ids_from_matcher(timm_style, jt.optim.flax_resnet_group_matcher(coarse=True))
    assert [ids[n] for n in timm_style] == [0, 0, 1, 1, 2, 3]
    example = ['conv_init.kernel', 'bn_init.scale', 'BottleneckResNetBlock_0.Conv_0.kernel',
               'BottleneckResNetBlock_1.Conv_0.kernel', 'Dense_0.kernel']
    ids = layer_ids_from_matcher(example, jt.optim.flax_resnet_group_matcher())
    assert [ids[n] for n in example] == [0, 0, 1, 2, 3]


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(3):
            x = nn.relu(nn.Dense(8, name=f'encoderblock_{i}')(x))
        x = nn.LayerNorm(name='encoder_norm')(x)
        return nn.Dense(2, name='head')(x)


def _data():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 4))
    y = jnp.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1)
    return x, y


def test_linen_variables_and_train_state():
    x, y = _data()
    model = LinenMLP()
    variables = model.init(jax.random.PRNGKey(1), x)
    matcher = {'blocks': [(r'^encoderblock_(\d+)', None), (r'^encoder_norm', (99999,))]}
    # the whole variables dict: names are taken from inside 'params'
    tx = jt.create_optimizer_v2(variables, **RECIPE, group_matcher=matcher)
    state = tx.init(variables)

    def loss(v):
        return jnp.mean((model.apply(v, x) - y) ** 2)

    @jax.jit
    def step(v, s):
        g = jax.grad(loss)(v)
        u, s = tx.update(g, s, v)
        return optax.apply_updates(v, u), s

    l0 = loss(variables)
    for _ in range(20):
        variables, state = step(variables, state)
    assert loss(variables) < 0.7 * l0

    # a linen TrainState over variables['params'] with a scheduled lr
    # optax's own schedules mix int32 counts with Python floats, which strict promotion rejects: feed a float count
    optax_sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 50)
    sched = lambda t: optax_sched(jnp.asarray(t, jnp.float32))  # noqa: E731
    params = model.init(jax.random.PRNGKey(1), x)['params']
    tx = jt.create_optimizer_v2(params, 'lamb', lr=sched, weight_decay=0.05, layer_decay=0.75, group_matcher=matcher)
    ts = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    @jax.jit
    def ts_step(ts):
        g = jax.grad(lambda p: jnp.mean((ts.apply_fn({'params': p}, x) - y) ** 2))(ts.params)
        return ts.apply_gradients(grads=g)

    l0 = loss({'params': params})
    for _ in range(30):
        ts = ts_step(ts)
    assert loss({'params': ts.params}) < 0.7 * l0


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.blocks = nnx.List([nnx.Linear(4 if i == 0 else 8, 8, rngs=rngs) for i in range(3)])
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        for b in self.blocks:
            x = nnx.relu(b(x))
        return self.head(x)


def test_nnx_optimizer():
    x, y = _data()
    model = NnxMLP(nnx.Rngs(0))
    names = [n for n, _ in named_leaves(nnx.state(model, nnx.Param))]
    assert 'blocks.0.kernel' in names and 'head.bias' in names
    tx = jt.create_optimizer_v2(model, **RECIPE, group_matcher={'blocks': r'^blocks\.(\d+)'})
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_fn(m):
        return jnp.mean((m(x) - y) ** 2)

    @nnx.jit
    def step(m, o):
        loss, g = nnx.value_and_grad(loss_fn)(m)
        o.update(m, g)
        return loss

    first = float(step(model, opt))
    for _ in range(20):
        last = float(step(model, opt))
    assert last < 0.7 * first
    # the head (last layer) moved with scale 1, block 0 with 0.75**3
    groups = jt.optim._param_groups.build_param_groups(
        nnx.state(model, nnx.Param), layer_decay=0.75, group_matcher={'blocks': r'^blocks\.(\d+)'})
    scales = dict(named_leaves(groups.lr_scale))
    np.testing.assert_allclose(scales['blocks.0.kernel'], 0.75 ** 3)
    assert scales['head.kernel'] == 1.0
