"""Training state saved with orbax mid-run and restored in a fresh process continues bit-identically.

The state is params + optimizer state + schedule position: the optax step
count (which a schedule passed as ``lr`` reads), Lookahead's slow weights and
counter, the PRNG keys of Kron and AdaHessian, and a plateau schedule's state
driving the lr through ``optax.inject_hyperparams``. This process runs
``N_BEFORE`` steps, saves, runs ``N_AFTER`` more; a fresh Python process
(this file run as a script) rebuilds the optimizers, restores into the
``jax.eval_shape`` of a fresh state and runs the same ``N_AFTER`` steps. The two
final states must be equal bit for bit.
"""
import os
import subprocess
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxopt_timm as jt  # noqa: E402

N_BEFORE, N_AFTER = 4, 5
UPDATES_PER_EPOCH = 2


def _params():
    shapes = {'conv': {'weight': (8, 4, 3, 3), 'bias': (8,)}, 'fc': {'weight': (20, 18), 'bias': (20,)},
              'scale': (1,)}
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    return jax.tree.unflatten(treedef, [1.0 + 0.3 * jax.random.normal(k, s) for k, s in zip(keys, leaves)])


def _loss(params, t):
    """A params-dependent loss that changes with the step (so every step sees new gradients)."""
    phase = jnp.sin(t.astype(jnp.float32))
    return sum(jnp.sum((p - 0.5 * phase) ** 2 + 0.1 * p ** 4) for p in jax.tree.leaves(params))


def configs():
    """name -> (tx, uses_plateau, second_order): the optimizers whose state must survive the round trip."""
    params = _params()
    sched, _ = jt.create_scheduler_v2(
        1e-2, sched='cosine', num_epochs=10, warmup_epochs=2, warmup_lr=1e-4, step_on_epochs=False,
        updates_per_epoch=UPDATES_PER_EPOCH)
    out = {
        'adamw_cosine': (jt.create_optimizer_v2(params, 'adamw', lr=sched, weight_decay=0.05), False, False),
        'lookahead_lamb': (jt.create_optimizer_v2(params, 'lookahead_lamb', lr=sched, weight_decay=0.02), False,
                           False),
        'lookahead_k3': (jt.optim.lookahead(jt.optim.adamw(1e-2), alpha=0.5, k=3), False, False),
        'adafactor': (jt.create_optimizer_v2(params, 'adafactor', lr=None, weight_decay=0.01), False, False),
        'adahessian': (jt.create_optimizer_v2(params, 'adahessian', lr=0.1, weight_decay=0.01), False, True),
        'plateau_sgd': (optax.inject_hyperparams(jt.optim.sgd, static_args=('nesterov', 'momentum', 'dampening'))(
            learning_rate=0.05, momentum=0.9, nesterov=True), True, False),
    }
    if 'kron' in jt.list_optimizers():
        out['kron'] = (jt.create_optimizer_v2(params, 'kron', lr=1e-2, weight_decay=0.01), False, False)
    return out


PLATEAU = jt.scheduler.plateau(0.05, decay_rate=0.5, patience_t=0, mode='min')


def init_state(tx):
    params = _params()
    return {'params': params, 'opt_state': tx.init(params), 'plateau': PLATEAU.init(),
            'step': jnp.zeros([], jnp.int32)}


def make_step(tx, uses_plateau, second_order):
    @jax.jit
    def step(state):
        params, t = state['params'], state['step']
        loss, grads = jax.value_and_grad(_loss)(params, t)
        opt_state, plateau = state['opt_state'], state['plateau']
        if uses_plateau:
            # an "epoch" ends every UPDATES_PER_EPOCH updates: step the plateau schedule on the loss
            epoch_end = (t + 1) % UPDATES_PER_EPOCH == 0
            new_plateau, lr = PLATEAU.step(plateau, (t + 1) // UPDATES_PER_EPOCH, loss)
            plateau = jax.tree.map(lambda a, b: jnp.where(epoch_end, a, b), new_plateau, plateau)
            hp = dict(opt_state.hyperparams)
            hp['learning_rate'] = jnp.where(epoch_end, lr, hp['learning_rate']).astype(hp['learning_rate'].dtype)
            opt_state = opt_state._replace(hyperparams=hp)
        extra = {'hvp_fn': jt.optim.hvp_fn_from_loss(_loss, params, t)} if second_order else {}
        updates, opt_state = tx.update(grads, opt_state, params, **extra)
        return {'params': optax.apply_updates(params, updates), 'opt_state': opt_state, 'plateau': plateau,
                'step': t + 1}

    return step


def run(step, state, n):
    for _ in range(n):
        state = step(state)
    return state


def _flat(state):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(state)[0]}


def _checkpointer():
    import orbax.checkpoint as ocp
    return ocp.StandardCheckpointer()


def resume_main(ckpt_root, out_path):
    """Fresh process: restore every config from ``ckpt_root``, run N_AFTER steps, save the states to npz."""
    jax.config.update('jax_numpy_dtype_promotion', 'strict')
    finals = {}
    ckptr = _checkpointer()
    for name, (tx, uses_plateau, second_order) in configs().items():
        target = jax.eval_shape(lambda: init_state(tx))
        restored = ckptr.restore(os.path.join(ckpt_root, name), target)
        state = run(make_step(tx, uses_plateau, second_order), restored, N_AFTER)
        for k, v in _flat(state).items():
            finals[f'{name}|{k}'] = v
        for k, v in _flat(restored).items():
            finals[f'restored|{name}|{k}'] = v
    ckptr.close()
    np.savez(out_path, **finals)


def test_orbax_round_trip_continues_bit_identically(tmp_path):
    root = tmp_path / 'ckpt'
    expected, saved = {}, {}
    ckptr = _checkpointer()
    cfgs = configs()
    assert {'lookahead_k3', 'adahessian', 'plateau_sgd'} <= set(cfgs)
    for name, (tx, uses_plateau, second_order) in cfgs.items():
        step = make_step(tx, uses_plateau, second_order)
        state = run(step, init_state(tx), N_BEFORE)
        ckptr.save(root / name, state)
        saved[name] = _flat(state)
        expected[name] = _flat(run(step, state, N_AFTER))
    ckptr.wait_until_finished()
    ckptr.close()
    # the run went somewhere interesting: the plateau lowered the lr, lookahead synced before and after the save
    assert float(expected['plateau_sgd']["['plateau'].lr"]) < 0.05
    out = tmp_path / 'resumed.npz'
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(root), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resumed = dict(np.load(out))
    for name in cfgs:
        for key, want in saved[name].items():
            got = resumed[f'restored|{name}|{key}']
            assert got.dtype == want.dtype and np.array_equal(got, want), f'{name}: restored {key} differs'
        for key, want in expected[name].items():
            got = resumed[f'{name}|{key}']
            assert got.dtype == want.dtype and np.array_equal(got, want), (
                f'{name}: {key} differs after resuming (max diff {np.max(np.abs(got - want))})')


if __name__ == '__main__':
    resume_main(sys.argv[1], sys.argv[2])
