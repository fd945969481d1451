"""A real ``jaxopt-timm train`` process, interrupted (SIGINT, SIGKILL) at known moments, then resumed, ends
exactly where an uninterrupted run ends.

The moments are made deterministic by the command line's test hook
(``JAXOPT_TIMM_TEST_PAUSE=stage@epoch=FLAGFILE``): the process writes FLAGFILE when it
reaches ``stage`` of ``epoch`` and waits there to be killed. One run folder goes
through five processes:

1. SIGINT in the middle of epoch 2 (checkpoint-1 complete);
2. resumed, SIGINT inside the save of checkpoint-2, after orbax wrote the state
   (the temporary folder must be removed, checkpoint-1 stays the newest);
3. resumed, SIGKILL inside the save of checkpoint-3, its manifest written but the
   folder not yet renamed (a complete-looking temporary folder is left behind);
4. resumed, SIGKILL right after checkpoint-4 was committed, before summary.csv was
   rewritten and before results.json (the summary lags one epoch);
5. resumed: nothing left to train; summary.csv and results.json are written from
   checkpoint-4.

After each process the folder must show the state its moment implies, and at the
end ``results.json`` (final params digest, metrics, history) must equal the
uninterrupted run's exactly, and ``summary.csv`` must hold every epoch exactly once.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jaxopt_timm.cli import main

# The smallest job that still has state worth losing: 128 images, 4 updates per epoch, a 610-param MLP.
ARGS = ['train', '--epochs', '4', '--warmup-epochs', '1', '--train-subset', '128', '--batch-size', '32',
        '--model-width', '8', '--model-depth', '0', '--checkpoint-hist', '2', '--no-progress', '--quiet']
WAIT_S = 120


def _env(folder, **extra):
    # the processes share a persistent compilation cache: the same executables, a few seconds less each
    return dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=os.path.join(folder, 'jax-cache'),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
                **extra)


def _interrupt(argv, pause, sig, flag):
    """Run ``argv`` until it pauses at ``pause``, send ``sig``; the exit code and stderr."""
    if os.path.exists(flag):
        os.unlink(flag)
    env = _env(os.path.dirname(flag), JAXOPT_TIMM_TEST_PAUSE=f'{pause}={flag}')
    proc = subprocess.Popen([sys.executable, '-m', 'jaxopt_timm'] + argv, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT_S
    while not os.path.exists(flag):
        if proc.poll() is not None:
            pytest.fail(f'the process ended before {pause}: {proc.returncode} {proc.communicate()}')
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f'the process never reached {pause}')
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    return proc.returncode, err


def _folder(path):
    return sorted(os.listdir(path))


def _epochs(path):
    with open(os.path.join(path, 'summary.csv')) as f:
        return [int(row['epoch']) for row in csv.DictReader(f)]


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    ref, run, flag = str(tmp_path / 'ref'), str(tmp_path / 'run'), str(tmp_path / 'paused')
    assert main(ARGS + ['--output', ref]) == 0
    resume = ARGS + ['--resume', run, '--output', run]

    code, err = _interrupt(ARGS + ['--output', run], 'train@2', signal.SIGINT, flag)
    assert code == 130 and len(err.strip().splitlines()) == 1 and 'interrupted' in err, err
    assert 'checkpoint-1 is intact' in err and 'Traceback' not in err, err
    assert _folder(run) == ['checkpoint-1', 'summary.csv'] and _epochs(run) == [1]

    code, err = _interrupt(resume, 'save-state@2', signal.SIGINT, flag)
    assert code == 130 and 'Traceback' not in err, err
    assert _folder(run) == ['checkpoint-1', 'summary.csv'] and _epochs(run) == [1]  # no half-written checkpoint

    code, _ = _interrupt(resume, 'save-manifest@3', signal.SIGKILL, flag)
    assert code == -signal.SIGKILL
    names = _folder(run)
    (partial,) = [d for d in names if d.startswith('.checkpoint-3.tmp-')]
    assert 'MANIFEST.json' in os.listdir(os.path.join(run, partial))  # complete, but never made visible
    assert [d for d in names if not d.startswith('.')] == ['checkpoint-1', 'checkpoint-2', 'summary.csv']
    assert _epochs(run) == [1, 2]

    code, _ = _interrupt(resume, 'save-committed@4', signal.SIGKILL, flag)
    assert code == -signal.SIGKILL
    # the leftover was removed; killed before summary.csv caught up with checkpoint-4 and before pruning
    assert _folder(run) == ['checkpoint-2', 'checkpoint-3', 'checkpoint-4', 'summary.csv']
    assert _epochs(run) == [1, 2, 3]

    proc = subprocess.run([sys.executable, '-m', 'jaxopt_timm'] + resume, capture_output=True, text=True,
                          timeout=WAIT_S, env=_env(str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert _folder(run) == ['checkpoint-2', 'checkpoint-3', 'checkpoint-4', 'results.json', 'summary.csv']
    assert _epochs(run) == [1, 2, 3, 4]

    with open(os.path.join(ref, 'results.json')) as f:
        want = json.load(f)
    with open(os.path.join(run, 'results.json')) as f:
        got = json.load(f)
    assert want.pop('train_time_s') > 0 and got.pop('train_time_s') > 0  # the only quantity that may differ
    assert [h['epoch'] for h in got['history']] == [1, 2, 3, 4]
    assert got == want
    with open(os.path.join(ref, 'summary.csv')) as f, open(os.path.join(run, 'summary.csv')) as g:
        assert f.read() == g.read()
