"""The ``jaxopt-timm`` command line, run in-process through its ``main`` function.

* the default recipe reaches >= 95% test accuracy on the digits in under a minute;
* every registered optimizer name trains the default model for one epoch without NaN;
* a run resumed from a mid-run checkpoint ends with exactly the params of an uninterrupted run;
* bad arguments exit non-zero with one line on stderr, never a traceback;
* ``list``, ``schedule`` (a non-empty PNG) and ``parity`` (against the installed timm).
"""
import fnmatch
import json
import math

import jax
import numpy as np
import pytest

import jaxopt_timm as jt
from jaxopt_timm.cli import build_parser, main, train
from jaxopt_timm.parity import _loader as timm_loader


def test_default_recipe_reaches_95_percent_within_a_minute(tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['train', '--no-progress', '--output', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'epoch  20/20' in printed and 'final test accuracy' in printed
    results = json.loads((out / 'results.json').read_text())
    assert results['opt'] == 'adamw' and results['sched'] == 'cosine' and results['epochs'] == 20
    assert results['test_acc'] >= 0.95, results['test_acc']
    assert results['train_time_s'] < 60, results['train_time_s']
    assert [h['epoch'] for h in results['history']] == list(range(1, 21))
    assert (out / 'summary.csv').read_text().count('\n') == 21
    assert (out / 'checkpoint-20' / 'state').is_dir()


# One epoch of the default model (1,437 images, 22 updates at batch 64) with each name's default lr
# (jaxopt_timm.cli.default_lr: the record's default_lr). Bounds: the loss must be finite and the test loss below
# ln(10), the loss of a uniform guess, so every optimizer must have learnt something; accuracy floors per family.
# Families whose first steps are deliberately small get the lower floor (measured one-epoch accuracy in
# brackets at the time of writing): RAdam's rectification runs SGD-like steps, then a small rectified
# factor (radam ~0.45); RMSpropTF starts its square average at ones (~0.7); Kron's preconditioner starts
# at identity scale (~0.3); LARS scales steps by trust_coeff 1e-3 * |w| / |g| (~0.3-0.6); NvNovoGrad's
# per-layer second moment starts at the first grad norm (~0.7); AdaHessian (Hutchinson noise) and
# Adadelta (no lr scale in its first steps). Everything else reaches >= 0.5 (measured 0.5-0.95).
SLOW_STARTERS = ('radam*', 'radabelief', '*rmsproptf*', 'kron*', '*lars', '*larc', '*novograd*', 'adahessian',
                 'adadelta', 'adagrad', 'adamax', '*adopt*')


def _floor(name):
    return 0.15 if any(fnmatch.fnmatch(name, p) for p in SLOW_STARTERS) else 0.5


@pytest.mark.parametrize('name', jt.list_optimizers())
def test_every_optimizer_trains_one_epoch(name):
    args = build_parser().parse_args(
        ['train', '--opt', name, '--epochs', '1', '--warmup-epochs', '0', '--quiet', '--no-progress'])
    result = train(args, log=lambda *a: None)
    (row,) = result.history
    assert math.isfinite(row['train_loss']) and math.isfinite(row['test_loss']), row
    assert all(bool(np.all(np.isfinite(np.asarray(p)))) for p in jax.tree.leaves(result.params))
    assert row['test_loss'] < math.log(10), row
    assert row['test_acc'] >= _floor(name), (name, row)


@pytest.mark.parametrize('extra', [
    ['--opt', 'lamb', '--sched-on-updates', '--lr-noise', '0.3', '0.9', '--warmup-epochs', '1'],
    ['--opt', 'adamc', '--sched', 'plateau', '--warmup-epochs', '1', '--clip-grad', '1.0', '--layer-decay', '0.7'],
], ids=['lamb-noisy-cosine-per-update', 'adamc-plateau-clip-layer-decay'])
def test_resume_from_mid_run_checkpoint_is_exact(tmp_path, extra):
    common = ['train', '--epochs', '4', '--no-progress', '--quiet'] + extra
    full = train(build_parser().parse_args(common + ['--output', str(tmp_path / 'a'), '--checkpoint-hist', '4']),
                        log=lambda *a: None)
    assert sorted(p.name for p in (tmp_path / 'a').glob('checkpoint-*')) == [f'checkpoint-{i}' for i in range(1, 5)]
    resumed = train(build_parser().parse_args(
        common + ['--resume', str(tmp_path / 'a' / 'checkpoint-2'), '--output', str(tmp_path / 'b')]),
        log=lambda *a: None)
    assert resumed.start_epoch == 2 and [h['epoch'] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history == full.history  # epochs 1-2 from the checkpoint, 3-4 run again: the same numbers
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # and through main: --resume DIR picks the latest checkpoint; nothing left to do is fine
    assert main(common + ['--resume', str(tmp_path / 'a')]) == 0


BAD = [
    ['train', '--opt', 'adamww'],
    ['train', '--sched', 'cosin'],
    ['train', '--lr', '-0.1'],
    ['train', '--epochs', '0'],
    ['train', '--epochs', '-5'],
    ['train', '--warmup-epochs', '-1'],
    ['train', '--batch-size', '0'],
    ['train', '--lr', 'abc'],
    ['train', '--weight-decay', '-1'],
    ['train', '--opt-betas', '0.9', '1.5', '--epochs', '1'],
    ['train', '--resume', '/nonexistent/checkpoint-3'],
    ['train', '--sched', 'step', '--decay-epochs', '0'],
    ['schedule', '--sched', 'nope'],
    ['schedule', '--lr', '-1'],
    ['schedule', '--epochs', '0'],
    ['schedule', '--sched-on-updates'],
    ['list', '--bogus'],
    ['parity', '--opt', 'lamd'],
    ['nonsense'],
]


@pytest.mark.parametrize('argv', BAD, ids=[' '.join(a) for a in BAD])
def test_bad_arguments_one_line_error(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and 'error' in err, err
    assert 'Traceback' not in captured.err + captured.out


def test_unknown_optimizer_names_closest(capsys):
    assert main(['train', '--opt', 'adamww']) != 0
    assert 'adamw' in capsys.readouterr().err


def test_list(capsys):
    assert main(['list']) == 0
    out = capsys.readouterr().out
    for name, desc in jt.list_optimizers(with_description=True):
        assert f'{name} ' in out and desc in out
    assert main(['list', 'lamb*', '--exclude', '*w']) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert names == jt.list_optimizers('lamb*', exclude_filters=('*w',))
    assert main(['list', '--names-only', '*sgd*']) == 0
    assert capsys.readouterr().out.split() == jt.list_optimizers('*sgd*')


@pytest.mark.parametrize('argv', [
    ['--sched', 'cosine', '--warmup-epochs', '5', '--lr-cycle-limit', '2', '--epochs', '40'],
    ['--sched', 'step', '--decay-epochs', '10', '--sched-on-updates', '--updates-per-epoch', '5', '--epochs', '30'],
    ['--sched', 'plateau', '--epochs', '40', '--patience-epochs', '3'],
    ['--sched', 'onecycle', '--updates-per-epoch', '10', '--epochs', '20'],
    ['--sched', 'cosine', '--lr-noise', '0.4', '0.9', '--lr-k-decay', '0.5'],
], ids=['cosine-cycles', 'step-updates', 'plateau', 'onecycle', 'noise-kdecay'])
def test_schedule_prints_and_plots(tmp_path, capsys, argv):
    png = tmp_path / 'sched.png'
    assert main(['schedule', '--plot', str(png)] + argv) == 0
    out = capsys.readouterr().out
    assert 'lr' in out and str(png) in out
    data = png.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 2000


def test_schedule_values_match_library():
    args = build_parser().parse_args(['schedule', '--sched', 'cosine', '--epochs', '10', '--warmup-epochs', '2',
                                      '--lr', '0.5', '--no-plot'])
    from jaxopt_timm.cli import schedule_values
    t, lrs, num_epochs, unit = schedule_values(args)
    sched, n = jt.create_scheduler_v2(0.5, 'cosine', num_epochs=10, warmup_epochs=2, min_lr=0.0, warmup_lr=1e-5)
    assert (num_epochs, unit) == (n, 'epoch')
    np.testing.assert_allclose(lrs, [float(sched(i)) for i in range(n)], rtol=1e-6)


def test_parity_command(capsys):
    assert main(['parity', '--opt', 'adamw', 'sgd', '--sched', 'cosine', 'onecycle']) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[-1] in ('ok', 'FAIL')
            or ' ok ' in line}
    assert {'adamw', 'sgd', 'cosine', 'onecycle'} <= set(rows), out
    assert 'all within tolerance' in out


def test_parity_without_timm_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(timm_loader, '_LOADED', {})
    monkeypatch.setattr(timm_loader, '_find_spec', lambda name: None)
    assert main(['parity', '--opt', 'sgd']) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install' in err and 'timm' in err


def test_python_dash_m_entry_point():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, '-m', 'jaxopt_timm', 'list', '--names-only', 'sgd'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ['sgd'], proc.stderr


def test_no_torch_at_import():
    import subprocess
    import sys
    code = 'import sys, jaxopt_timm, jaxopt_timm.cli; sys.exit(int("torch" in sys.modules or "timm" in sys.modules))'
    assert subprocess.run([sys.executable, '-c', code], timeout=120).returncode == 0


def test_missing_cli_extra_is_one_line(monkeypatch, capsys, tmp_path):
    """Without the `cli` extra (a lean install) the commands that need it name it in one line and do nothing;
    printing a schedule needs none of it (tests/test_packaging.py runs ``train`` in a real lean install)."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name.split('.')[0] in ('matplotlib', 'orbax') else real(name, *a))
    png = tmp_path / 'lr.png'
    assert main(['schedule', '--epochs', '3', '--plot', str(png)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "jaxopt-timm schedule: error: needs matplotlib, not installed: pip install 'jaxopt_timm[cli]' "
        '(or print only: --no-plot)']
    assert not png.exists()
    assert main(['schedule', '--epochs', '3', '--no-plot']) == 0
    assert main(['train', '--epochs', '1', '--output', str(tmp_path / 'run')]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "jaxopt-timm train: error: needs orbax-checkpoint, not installed: pip install 'jaxopt_timm[cli]'"]
    assert not (tmp_path / 'run').exists()
