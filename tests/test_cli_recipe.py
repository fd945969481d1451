"""The ``train`` command's timm recipe pieces: ``--model-ema`` and timm's ``--clip-grad`` / ``--clip-mode``.

* ``--model-ema``: the EMA's test accuracy is logged and written (summary.csv, results.json); a run resumed
  from a mid-run checkpoint ends with the uninterrupted run's params *and* EMA weights, bit for bit;
* ``--model-ema-warmup``: the EMA weights are ``jt.model_ema_v3(use_warmup=True)`` updated after every
  optimizer step with ``step=num_updates`` (1, 2, ...), recomputed here from the params after each step;
* ``--clip-grad X --clip-mode norm|value|agc``: a one-epoch run ends where a loop built by hand with
  ``jt.dispatch_clip_grad(X, mode, layout='flax')`` (AGC without the head, as timm's train.py) ends, and not
  where the unclipped loop, AGC with the head or AGC on torch layouts would.

Runs are in-process and tiny (64 images, a 610-param MLP).
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_timm as jt
from jaxopt_timm.cli import build_parser, main, train
from jaxopt_timm.cli._data import epoch_batches, load_digits_split
from jaxopt_timm.cli._models import make_model
from jaxopt_timm.cli._steps import _loss_fn

TINY = ['train', '--warmup-epochs', '0', '--train-subset', '64', '--batch-size', '32', '--model-width', '8',
        '--model-depth', '0', '--no-progress', '--quiet']


def _train(argv):
    return train(build_parser().parse_args(argv), log=lambda *a: None)


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_model_ema_is_reported_and_resumes_exactly(tmp_path, capsys):
    common = TINY + ['--epochs', '3', '--model-ema', '--model-ema-decay', '0.8']
    full = _train(common + ['--output', str(tmp_path / 'a'), '--checkpoint-hist', '3'])
    assert full.ema_params is not None and not _equal(full.ema_params, full.params)
    assert all({'ema_test_acc', 'ema_test_loss'} <= set(row) for row in full.history)
    results = json.loads((tmp_path / 'a' / 'results.json').read_text())
    assert results['ema_test_acc'] == full.ema_test_acc == full.history[-1]['ema_test_acc']
    assert results['config']['model_ema'] is True and results['config']['model_ema_decay'] == 0.8
    assert (tmp_path / 'a' / 'summary.csv').read_text().splitlines()[0].endswith(',ema_test_loss,ema_test_acc')
    # resumed from epoch 1 into another folder: the same history, params and EMA weights
    resumed = _train(common + ['--resume', str(tmp_path / 'a' / 'checkpoint-1'), '--output', str(tmp_path / 'b')])
    assert resumed.start_epoch == 1 and resumed.history == full.history
    assert _equal(resumed.params, full.params) and _equal(resumed.ema_params, full.ema_params)
    # the log line and the final summary show it
    assert main([a for a in common if a != '--quiet'] + ['--epochs', '1']) == 0
    out = capsys.readouterr().out
    assert 'ema test loss' in out and 'EMA test accuracy' in out
    # an EMA's settings are part of the recipe a resume compares
    assert main(TINY + ['--epochs', '3', '--resume', str(tmp_path / 'a')]) == 2
    assert '--model-ema True -> (unset)' in capsys.readouterr().err


def test_model_ema_warmup_is_timms_v3_stepped_by_num_updates(monkeypatch):
    import jaxopt_timm.cli._train as train_module
    seen = []
    real = train_module.make_steps

    def make_steps(*a, **kw):
        train_step, eval_step = real(*a, **kw)

        def recording_step(*args):
            out = train_step(*args)
            seen.append(out[0])
            return out
        return recording_step, eval_step

    monkeypatch.setattr(train_module, 'make_steps', make_steps)
    result = _train(TINY + ['--epochs', '3', '--model-ema', '--model-ema-warmup'])
    assert len(seen) == 6  # 3 epochs of 2 updates
    by_hand = {}
    for warmup in (True, False):
        ema = jt.model_ema_v3(decay=0.9998, use_warmup=warmup)
        update, state = jax.jit(ema.update), ema.init(seen[0])
        for step, params in enumerate(seen, start=1):
            state = update(params, state, step)
        by_hand[warmup] = state.params
    assert _equal(result.ema_params, by_hand[True])
    assert not _equal(by_hand[True], by_hand[False])  # the warmup is what makes it match
    assert main(TINY + ['--model-ema', '--model-ema-decay', '1.5']) == 2


def _by_hand(clip):
    """One epoch of the TINY job (adamw at its default lr 1e-3: a cosine schedule's first epoch), built here."""
    x, y = (a[:64] for a in load_digits_split()[:2])
    model = make_model('mlp', 8, 0)
    params = model.init(jax.random.key(42), jnp.zeros((1, 64), jnp.float32))['params']
    tx = jt.create_optimizer_v2(params, 'adamw', lr=1e-3, weight_decay=0.05, momentum=0.9)
    tx = tx if clip is None else optax.chain(clip, tx)
    loss_fn = _loss_fn(model, 0.0)

    @jax.jit
    def step(params, state, xb, yb):
        grads = jax.grad(lambda p: loss_fn(p, xb, yb)[0])(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for idx in epoch_batches(42, 0, 64, 32):
        params, state = step(params, state, x[idx], y[idx])
    return params


def _close(a, b):
    return all(np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-8)
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('mode, value', [('norm', 0.05), ('value', 0.002), ('agc', 0.01)])
def test_clip_grad_is_timms_dispatch_clip_grad_on_flax_layouts(monkeypatch, mode, value):
    calls = []
    real = jt.dispatch_clip_grad

    def spy(*a, **kw):
        calls.append((a, kw))
        return real(*a, **kw)

    monkeypatch.setattr(jt, 'dispatch_clip_grad', spy)
    result = _train(TINY + ['--epochs', '1', '--clip-grad', str(value), '--clip-mode', mode])
    assert calls == [((value,), dict(mode=mode, layout='flax'))]
    head_free = lambda p: {name: name != 'head' for name in p}  # noqa: E731 - timm train.py: AGC leaves the head out
    clip = real(value, mode=mode, layout='flax')
    want = _by_hand(optax.masked(clip, head_free) if mode == 'agc' else clip)
    assert _close(result.params, want)
    assert not _close(result.params, _by_hand(None))  # the clipping is active at this value
    if mode == 'agc':
        assert not _close(result.params, _by_hand(clip))  # the head is left out
        # timm's units on torch layouts (dim 0) are the *input* units of a Flax Dense kernel: the layout matters
        assert not _close(result.params, _by_hand(optax.masked(real(value, mode='agc'), head_free)))
    if mode == 'norm':
        assert not _close(result.params, _by_hand(real(value, mode='norm', norm_type=1.0)))
