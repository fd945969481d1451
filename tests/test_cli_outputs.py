"""The ``train`` command loses nothing it wrote and says in one line what is wrong with its inputs.

* ``--resume`` compares the checkpoint's recorded arguments with the new ones and refuses a change
  (listing each differing flag, old -> new) unless ``--resume-config-change``;
* a new run never writes into a non-empty ``--output``: the old run's files stay as they were;
* resuming a finished run rewrites identical results (never NaN, never an empty history), and
  recreates them when the process died between its last checkpoint and ``results.json``;
* a checkpoint whose bytes changed, whose file is truncated or missing is refused as damaged (with
  the older intact checkpoint named), never loaded;
* paths that cannot be written and out-of-range sizes are one-line errors naming the flag and value,
  and no value can make ``schedule`` or ``train`` exhaust memory;
* ``--skip-nonfinite`` skips and counts updates with non-finite gradients (``results.json``).

Runs are in-process and tiny (64 images, a 610-param MLP, two epochs); :mod:`test_cli_interrupt`
kills real processes.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxopt_timm.cli import build_parser, main, train

TINY = ['train', '--epochs', '2', '--warmup-epochs', '0', '--train-subset', '64', '--batch-size', '32',
        '--model-width', '8', '--model-depth', '0', '--checkpoint-hist', '2', '--no-progress', '--quiet']


def _error(capsys):
    """The one stderr line of a failed command (and no traceback anywhere)."""
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and ': error: ' in err, err
    assert 'Traceback' not in captured.err + captured.out
    return err


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    """A finished two-epoch run (checkpoint-1 and checkpoint-2 kept); tests copy it before changing it."""
    out = str(tmp_path_factory.mktemp('finished') / 'run')
    assert main(TINY + ['--output', out]) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path):
    dst = str(tmp_path / 'run')
    shutil.copytree(finished, dst)
    return dst


@pytest.mark.parametrize('change, listed', [
    (['--opt', 'sgd'], ['--opt adamw -> sgd', '--lr 0.001 -> 0.05']),  # sgd's default lr: the resolved lr
    (['--batch-size', '16', '--model', 'cnn'], ['--batch-size 32 -> 16', '--model mlp -> cnn']),
    (['--epochs', '3'], ['--epochs 2 -> 3']),
    (['--sched', 'step', '--seed', '7'], ['--sched cosine -> step', '--seed 42 -> 7']),
], ids=['opt', 'batch-model', 'epochs', 'sched-seed'])
def test_resume_refuses_changed_arguments(finished, change, listed, capsys):
    assert main(TINY + change + ['--resume', finished]) == 2
    err = _error(capsys)
    assert 'checkpoint-2 was made with other arguments' in err and '--resume-config-change' in err, err
    for item in listed:
        assert item in err, (item, err)
    assert err.count('->') == len(listed), err


def test_resume_accepts_unchecked_arguments_and_the_explicit_flag(run_copy, capsys):
    # where it writes, how it reports and how many checkpoints it keeps are not part of the recipe
    assert main([a for a in TINY if a not in ('--no-progress', '--quiet')]
                + ['--checkpoint-hist', '5', '--resume', run_copy, '--output', run_copy]) == 0
    capsys.readouterr()
    args = build_parser().parse_args(TINY + ['--epochs', '3', '--resume-config-change', '--resume', run_copy,
                                             '--output', run_copy])
    result = train(args, log=lambda *a: None)
    assert result.start_epoch == 2 and [h['epoch'] for h in result.history] == [1, 2, 3]
    with open(os.path.join(run_copy, 'results.json')) as f:
        assert json.load(f)['config']['epochs'] == 3  # the new recipe is the one recorded from now on
    # with the flag, a change the state cannot follow (another model) is still one line, not a traceback
    assert main(TINY + ['--epochs', '3', '--model-width', '16', '--resume-config-change', '--resume', run_copy]) == 2
    assert 'does not match this model' in _error(capsys)


def test_new_run_refuses_a_non_empty_output(finished, capsys):
    before = _snapshot(finished)
    assert main(TINY + ['--output', finished]) == 2
    err = _error(capsys)
    assert repr(finished) in err and 'not empty' in err and f'--resume {finished}' in err, err
    assert _snapshot(finished) == before  # nothing pruned, nothing appended


def test_output_with_other_files_or_leftovers(tmp_path, capsys):
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('mine')
    assert main(TINY + ['--output', str(other)]) == 2
    assert 'notes.txt' in _error(capsys) and (other / 'notes.txt').read_text() == 'mine'
    # a folder holding only what an interrupted save left behind holds nothing: the run starts there
    partial = tmp_path / 'partial'
    (partial / '.checkpoint-1.tmp-12345' / 'state').mkdir(parents=True)
    assert main(TINY + ['--output', str(partial)]) == 0
    assert sorted(os.listdir(partial)) == ['checkpoint-1', 'checkpoint-2', 'results.json', 'summary.csv']


def test_resuming_a_finished_run_keeps_its_results(run_copy, tmp_path):
    before = _snapshot(run_copy)
    text = before['results.json'].decode()
    assert 'NaN' not in text and json.loads(text)['history']
    assert main(TINY + ['--resume', run_copy, '--output', run_copy]) == 0
    assert _snapshot(run_copy) == before  # results.json and summary.csv rewritten byte for byte
    # killed after its last checkpoint, before results.json: the resume writes the same results
    os.unlink(os.path.join(run_copy, 'results.json'))
    assert main(TINY + ['--resume', run_copy, '--output', run_copy]) == 0
    assert _snapshot(run_copy) == before
    # into a new folder: that folder gets the checkpoint and the same results
    assert main(TINY + ['--resume', run_copy, '--output', str(tmp_path / 'copy')]) == 0
    copied = _snapshot(str(tmp_path / 'copy'))
    assert copied['results.json'] == before['results.json'] and copied['summary.csv'] == before['summary.csv']
    assert os.path.join('checkpoint-2', 'MANIFEST.json') in copied


def _largest_file(folder):
    files = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names]
    return max(files, key=os.path.getsize)


def test_damaged_checkpoints_are_refused(run_copy, capsys):
    # one flipped bit in the newest checkpoint's array data
    path = _largest_file(os.path.join(run_copy, 'checkpoint-2', 'state'))
    data = bytearray(pathlib.Path(path).read_bytes())
    data[len(data) // 2] ^= 0x01
    pathlib.Path(path).write_bytes(bytes(data))
    assert main(TINY + ['--resume', run_copy]) == 2
    err = _error(capsys)
    newest, older = os.path.join(run_copy, 'checkpoint-2'), os.path.join(run_copy, 'checkpoint-1')
    assert f'checkpoint {newest} is damaged: ' in err and os.path.basename(path) in err, err
    assert f'{older} is intact' in err, err  # named, not silently used
    # the older one, truncated: nothing older to offer
    path = _largest_file(os.path.join(older, 'state'))
    os.truncate(path, os.path.getsize(path) // 2)
    assert main(TINY + ['--resume', older]) == 2
    err = _error(capsys)
    assert f'checkpoint {older} is damaged: ' in err and 'truncated' in err and 'no older intact' in err, err
    # a file gone, and the recorded arguments edited
    os.unlink(path)
    assert main(TINY + ['--resume', older]) == 2
    assert 'missing' in _error(capsys)
    meta = pathlib.Path(newest, 'meta.json')
    meta.write_text(meta.read_text().replace('"adamw"', '"sgd"  '))
    assert main(TINY + ['--resume', newest]) == 2
    assert 'meta.json' in _error(capsys)


@pytest.mark.parametrize('argv, named', [
    (['--output', '{file}'], "--output '{file}' is a file"),
    (['--output', '{file}/sub'], "--output '{file}/sub': cannot write there ({file} is a file"),
], ids=['output-is-a-file', 'output-under-a-file'])
def test_unwritable_output_is_one_line(tmp_path, capsys, argv, named):
    file = tmp_path / 'file.txt'
    file.write_text('x')
    argv = [a.format(file=file) for a in argv]
    assert main(TINY + argv) == 2
    assert named.format(file=file) in _error(capsys)


def test_unwritable_plot_is_one_line(tmp_path, capsys):
    file = tmp_path / 'file.txt'
    file.write_text('x')
    assert main(['schedule', '--plot', str(file / 'plots' / 'a.png')]) == 2
    assert f"--plot '{file / 'plots' / 'a.png'}'" in (err := _error(capsys)) and f'{file} is a file' in err
    assert main(['schedule', '--plot', str(tmp_path)]) == 2
    assert 'is a folder' in _error(capsys)
    # a missing folder is created
    assert main(['schedule', '--epochs', '5', '--plot', str(tmp_path / 'new' / 'deeper' / 'a.png')]) == 0
    assert (tmp_path / 'new' / 'deeper' / 'a.png').stat().st_size > 1000


OUT_OF_RANGE = [
    (['train', '--model-width', '-4'], '--model-width -4', '[1, 4096]'),
    (['train', '--model-depth', '100000'], '--model-depth 100000', '[0, 64]'),
    (['train', '--model-depth', '-2'], '--model-depth -2', '[0, 64]'),
    (['train', '--model-width', '4096', '--model-depth', '64'], '--model-width 4096 --model-depth 64',
     'at most 20,000,000'),
    (['train', '--seed', '-1'], '--seed -1', '[0, 4294967295]'),
    (['train', '--seed', str(2 ** 32)], f'--seed {2 ** 32}', '[0, 4294967295]'),
    (['train', '--train-subset', '-5'], '--train-subset -5', '>= 1'),
    (['train', '--train-subset', '5000'], '--train-subset 5000', '[1, 1437]'),
    (['train', '--epochs', '100000000'], '--epochs 100000000', '[1, 1000000]'),
    (['train', '--lr-cycle-limit', '100000000'], 'the schedule runs', 'at most 1000000'),
    (['schedule', '--epochs', '100000000'], '--epochs 100000000', '[1, 1000000]'),
    (['schedule', '--lr-cycle-limit', '100000000', '--lr-cycle-mul', '1.5'], '--lr-cycle-limit 100000000',
     'past 1000000 epochs'),
    (['schedule', '--every', '-1'], '--every -1', '>= 1'),
    (['schedule', '--updates-per-epoch', '-3'], '--updates-per-epoch -3', '[0, 2147483647]'),
    (['schedule', '--sched-on-updates', '--updates-per-epoch', '5000', '--epochs', '1000000'], 'int32',
     '2147483647'),
]


@pytest.mark.parametrize('argv, named, accepted', OUT_OF_RANGE, ids=[' '.join(a[0]) for a in OUT_OF_RANGE])
def test_out_of_range_values_name_flag_value_and_range(argv, named, accepted, capsys):
    assert main(argv + ['--no-plot'] if argv[0] == 'schedule' else argv) == 2
    err = _error(capsys)
    assert named in err and accepted in err, err


def test_longest_schedule_prints_in_bounded_memory(tmp_path):
    """2e9 updates (the most a schedule can count): ~20 printed rows, a sampled plot, well under 1 GB."""
    png, log = tmp_path / 'long.png', tmp_path / 'out.txt'
    # the peak is read in the child from /proc/self/status (VmHWM, its own address space): a wait4 rusage would
    # also count the pytest process's pages the child holds between fork and exec
    script = ('import runpy, sys\n'
              'sys.argv = ["jaxopt_timm"] + sys.argv[1:]\n'
              'try:\n    runpy.run_module("jaxopt_timm", run_name="__main__")\n'
              'finally:\n'
              '    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]\n'
              '    print("PEAK", hwm.split()[1], flush=True)\n')
    with open(log, 'w') as out:
        proc = subprocess.run([sys.executable, '-c', script, 'schedule', '--sched', 'onecycle',
                               '--epochs', '1000000', '--updates-per-epoch', '2000', '--plot', str(png)],
                              stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS='cpu'))
    text = log.read_text()
    assert proc.returncode == 0, text
    rows = [line for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert 20 <= len(rows) <= 22 and rows[-1].split()[0] == str(2_000_000_000 - 1), text
    peak_kib = int(next(line.split()[1] for line in text.splitlines() if line.startswith('PEAK')))
    assert peak_kib < 1_000_000, peak_kib  # all 2e9 values would take 8 GB
    assert png.stat().st_size > 2000


def test_skip_nonfinite_skips_and_counts(monkeypatch, tmp_path, capsys):
    """Poisoned batches (NaN inputs, hence NaN loss and gradients) are skipped and counted; without the
    flag the run stops with a one-line error that suggests it."""
    import jaxopt_timm.cli._train as train_module
    poisoned = {1, 2, 5}  # update indices over the run: 2 epochs of 4 updates at batch 16
    real = train_module.make_steps

    def make_steps(*a, **kw):
        train_step, eval_step = real(*a, **kw)
        calls = []

        def poisoned_step(params, opt_state, x, y):
            calls.append(None)
            if len(calls) - 1 in poisoned:
                x = x * np.float32('nan')
            return train_step(params, opt_state, x, y)
        return poisoned_step, eval_step

    monkeypatch.setattr(train_module, 'make_steps', make_steps)
    argv = TINY + ['--batch-size', '16', '--output', str(tmp_path / 'skip')]
    result = train(build_parser().parse_args(argv + ['--skip-nonfinite']), log=lambda *a: None)
    assert result.skipped_steps == len(poisoned)
    assert all(bool(np.all(np.isfinite(np.asarray(p)))) for p in jax.tree.leaves(result.params))
    assert all(np.isfinite(h['train_loss']) for h in result.history)
    with open(tmp_path / 'skip' / 'results.json') as f:
        assert json.load(f)['skipped_steps'] == len(poisoned)
    assert main(TINY + ['--batch-size', '16']) == 2
    err = _error(capsys)
    assert 'diverged at epoch 1' in err and '--skip-nonfinite' in err, err
