"""``jt.model_ema_v3`` / ``jt.model_ema_v2`` against timm's own ``ModelEmaV3`` / ``ModelEmaV2``.

* the decay of every step (update_after_step, warmup with several gamma/power, min_decay, ``step=None``)
  equals timm's ``get_decay``;
* 200 updates of the mixed-layout parity tree, its params moving every step, give timm's EMA weights
  (float32, 1e-6 relative), with ``update`` jitted and ``step`` traced;
* a bfloat16 average with stochastic rounding is unbiased (its mean over many roundings follows the float32
  EMA, as timm's does) where rounding to nearest stalls;
* the state round-trips through orbax and continues identically; bad arguments name themselves.

timm is loaded from the installed wheel (``jaxopt_timm.parity.timm_utils_module``); a missing timm fails.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxopt_timm as jt
from parity import assert_close_leaves
from jaxopt_timm.parity import from_tree, make_arrays, timm_utils_module, to_tree, torch_module

STEPS = 200
TOL = 1e-6

V3_CONFIGS = {
    'plain': dict(decay=0.99),
    'after-7': dict(decay=0.95, update_after_step=7),
    'warmup-default': dict(decay=0.9999, use_warmup=True),
    'warmup-g10-p075': dict(decay=0.999, use_warmup=True, warmup_gamma=10.0, warmup_power=0.75),
    'warmup-p1-min': dict(decay=0.99, min_decay=0.6, use_warmup=True, warmup_power=1.0, update_after_step=3),
    'warmup-g0.5-p0.5': dict(decay=0.98, min_decay=0.1, use_warmup=True, warmup_gamma=0.5, warmup_power=0.5),
}


@pytest.fixture(scope='module')
def timm_ema():
    return timm_utils_module('model_ema')


def _torch_params(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _trajectory(seed=0):
    """The params at steps 0..STEPS: a random walk from the parity tree's values (each step changes them)."""
    init = make_arrays(seed)[0]
    rng = np.random.default_rng(seed + 1)
    out = [init]
    for _ in range(STEPS):
        out.append({k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in out[-1].items()})
    return out


def _close(got, want, what):
    assert_close_leaves(got, want, TOL, what)


@pytest.mark.parametrize('name', V3_CONFIGS)
def test_v3_decay_matches_timm(timm_ema, name):
    kw = V3_CONFIGS[name]
    ref = timm_ema.ModelEmaV3(torch.nn.Linear(2, 2), **kw)
    ours = jt.model_ema_v3(**kw)
    steps = list(range(0, 60)) + [99, 500, 12_345, 1_000_000]
    got = np.asarray(jax.jit(jax.vmap(ours.get_decay))(jnp.asarray(steps)))
    want = np.array([ref.get_decay(s) for s in steps])
    np.testing.assert_allclose(got, want, rtol=TOL, atol=0)
    assert float(ours.get_decay(None)) == np.float32(ref.get_decay(None))
    # the case analysis is exercised: some steps copy (decay 0) and, with a warmup, the decay varies
    assert (want == 0).any() and (want > 0).any()
    if kw.get('use_warmup'):
        assert len(set(want[want > 0].tolist())) > 10


def _run_timm(ref, trajectory, steps):
    model = torch_module(trajectory[0])
    out = []
    for params, step in zip(trajectory[1:], steps):
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(torch.from_numpy(params[k]))
        if step is None:
            ref.update(model)  # V2's signature has no step
        else:
            ref.update(model, step=step)
        out.append(_torch_params(ref.module))
    return out


def _run_ours(ema, trajectory, steps):
    update = jax.jit(ema.update)
    state = ema.init(to_tree(trajectory[0]))
    out = []
    for params, step in zip(trajectory[1:], steps):
        state = update(to_tree(params), state, step)
        out.append(from_tree(state.params))
    return state, out


@pytest.mark.parametrize('name, step_kind', [(n, 'int') for n in V3_CONFIGS] + [('plain', 'none'), ('v2', 'none')])
def test_ema_weights_match_timm_over_200_steps(timm_ema, name, step_kind):
    traj = _trajectory()
    steps = [None] * STEPS if step_kind == 'none' else list(range(1, STEPS + 1))  # timm train.py: num_updates
    if name == 'v2':
        ref, ours = timm_ema.ModelEmaV2(torch_module(traj[0]), decay=0.97), jt.model_ema_v2(0.97)
    else:
        ref, ours = timm_ema.ModelEmaV3(torch_module(traj[0]), **V3_CONFIGS[name]), jt.model_ema_v3(**V3_CONFIGS[name])
    want = _run_timm(ref, traj, steps)
    state, got = _run_ours(ours, traj, steps)
    for t in (0, 1, 2, 5, 9, 50, STEPS - 1):
        _close(got[t], want[t], f'{name} step {t + 1}')
    assert int(state.count) == STEPS and state.key is None
    # a meaningful comparison: the average is far (>> TOL) from the current params and from the first ones
    last = traj[-1]
    assert max(float(np.max(np.abs(got[-1][k] - last[k]))) for k in last) > 1e-2
    assert max(float(np.max(np.abs(got[-1][k] - traj[0][k]))) for k in last) > 1e-2


def test_first_updates_copy_and_step_none_ignores_the_warmup():
    """timm's case analysis: decay 0 up to ``update_after_step + 1`` (the update copies the params); ``step=None``
    is the plain decay whatever the warmup settings."""
    ema = jt.model_ema_v3(decay=0.9, update_after_step=2, use_warmup=True)
    state = ema.init({'w': jnp.zeros(3)})
    for step in (0, 1, 2, 3):
        state = ema.update({'w': jnp.full(3, float(step + 1))}, state, step)
        np.testing.assert_array_equal(np.asarray(state.params['w']), np.full(3, step + 1.0, np.float32))
    state = ema.update({'w': jnp.full(3, 14.0)}, state, None)  # decay 0.9: 4 + 0.1 * 10
    np.testing.assert_allclose(np.asarray(state.params['w']), 5.0, rtol=1e-6)


def test_integer_leaves_are_copied_and_dtypes_kept():
    ema = jt.model_ema_v3(decay=0.5, ema_dtype=jnp.float32)
    params = {'w': jnp.ones(2, jnp.bfloat16), 'n': jnp.array(3, jnp.int32), 'on': jnp.array(True)}
    state = ema.init(params)
    assert state.params['w'].dtype == jnp.float32 and state.params['n'].dtype == jnp.int32
    state = jax.jit(ema.update)({'w': jnp.zeros(2, jnp.bfloat16), 'n': jnp.array(9), 'on': jnp.array(False)},
                                state, None)
    assert int(state.params['n']) == 9 and not bool(state.params['on'])
    np.testing.assert_array_equal(np.asarray(state.params['w']), np.full(2, 0.5, np.float32))


# ---- bfloat16 with stochastic rounding -------------------------------------------------------------------------
# 1.0 in bfloat16 has a spacing of 2^-7; moving towards 1.25 with weight 0.01 steps by 0.0025, under half a
# spacing: round-to-nearest never leaves 1.0, stochastic rounding moves up by 2^-7 with probability 0.32.
N_SR, SR_STEPS, TARGET, DECAY = 65_536, 40, 1.25, 0.99


def _float32_ema(n_steps):
    e = 1.0
    for _ in range(n_steps):
        e = e * DECAY + (1 - DECAY) * TARGET
    return e


def test_bfloat16_stochastic_rounding_is_unbiased(timm_ema):
    params = {'w': jnp.ones(N_SR, jnp.float32)}
    target = {'w': jnp.full(N_SR, TARGET, jnp.float32)}
    sr = jt.model_ema_v3(decay=DECAY, ema_dtype=jnp.bfloat16, key=jax.random.key(3))
    nearest = jt.model_ema_v3(decay=DECAY, ema_dtype='bfloat16', stochastic_rounding=False)
    s_sr, s_near = sr.init(params), nearest.init(params)
    assert s_sr.params['w'].dtype == jnp.bfloat16 and s_sr.key is not None and s_near.key is None
    up_sr, up_near = jax.jit(sr.update), jax.jit(nearest.update)
    keys = set()
    for _ in range(SR_STEPS):
        s_sr, s_near = up_sr(target, s_sr, None), up_near(target, s_near, None)
        keys.add(tuple(np.asarray(s_sr.key).tolist()))
    assert len(keys) == SR_STEPS  # a fresh key each update
    want = _float32_ema(SR_STEPS)  # ~1.083
    mean = float(jnp.mean(s_sr.params['w'].astype(jnp.float32)))
    # per element, the rounding noise of each step adds at most (2^-8)^2 of variance; 5 standard errors
    tol = 5 * np.sqrt(SR_STEPS) * 2 ** -8 / np.sqrt(N_SR)
    assert abs(mean - want) < tol, (mean, want, tol)
    assert float(jnp.max(s_near.params['w'].astype(jnp.float32))) == 1.0  # nearest: stalled, biased by 0.083
    # timm's own bfloat16 EMA rounds the same way (its own random bits): the same mean within the same noise
    model = torch_module({'w': np.ones(N_SR, np.float32)})
    ref = timm_ema.ModelEmaV3(model, decay=DECAY, dtype=torch.bfloat16)
    with torch.no_grad():
        model.w.fill_(TARGET)
    for _ in range(SR_STEPS):
        ref.update(model)
    timm_mean = float(ref.module.w.detach().float().mean())
    assert abs(timm_mean - want) < tol and abs(timm_mean - mean) < 2 * tol, (timm_mean, mean)


# ---- checkpoints and arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_orbax_round_trip(tmp_path, dtype):
    import orbax.checkpoint as ocp
    ema = jt.model_ema_v3(decay=0.9, use_warmup=True, ema_dtype=dtype, key=7)
    traj = _trajectory()[:8]
    update = jax.jit(ema.update)
    state = ema.init(to_tree(traj[0]))
    for t in range(1, 5):
        state = update(to_tree(traj[t]), state, t)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / 'ema', state)
        ckptr.wait_until_finished()
        restored = ckptr.restore(tmp_path / 'ema', jax.eval_shape(lambda: ema.init(to_tree(traj[0]))))
    restored = jt.ModelEmaState(*restored) if not isinstance(restored, jt.ModelEmaState) else restored
    assert (restored.key is None) == (dtype == 'float32')
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    for t in range(5, 8):
        state, restored = update(to_tree(traj[t]), state, t), update(to_tree(traj[t]), restored, t)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('kwargs, named', [
    (dict(decay=1.5), 'decay: 1.5, expected a value in [0, 1]'),
    (dict(decay=-0.1), 'decay: -0.1'),
    (dict(decay=float('nan')), 'decay: nan'),
    (dict(decay=0.9, min_decay=0.95), 'min_decay: 0.95, expected a value in [0, decay=0.9]'),
    (dict(min_decay=-1.0), 'min_decay: -1.0'),
    (dict(update_after_step=-1), 'update_after_step: -1'),
    (dict(update_after_step=2.5), 'update_after_step: 2.5, expected an integer'),
    (dict(use_warmup='yes'), "use_warmup: 'yes', expected True or False"),
    (dict(warmup_gamma=0.0), 'warmup_gamma: 0.0, expected a value in (0, inf)'),
    (dict(warmup_power=-1.0), 'warmup_power: -1.0'),
    (dict(ema_dtype=jnp.int32), 'ema_dtype'),
    (dict(ema_dtype='fp8'), "ema_dtype: 'fp8'"),
    (dict(stochastic_rounding=1), 'stochastic_rounding: 1'),
    (dict(key=-3), 'key: -3'),
    (dict(key='seed'), "key: 'seed'"),
])
def test_bad_arguments_raise(kwargs, named):
    with pytest.raises(ValueError, match='Invalid ') as info:
        jt.model_ema_v3(**kwargs)
    assert named in str(info.value), str(info.value)


def test_v2_bad_decay_raises():
    with pytest.raises(ValueError, match=r'Invalid decay: 2, expected a value in \[0, 1\]'):
        jt.model_ema_v2(2)
