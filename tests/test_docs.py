"""The documentation site and the data it is generated from.

* ``bash scripts/docs.sh`` succeeds: the Sphinx build with warnings as errors
  (every public name documented, no page that needs the network), the
  docstring doctests, and the headless-Chromium check that the math renders;
  never skipped: a missing tool is a failure with its install command.
* the stored parity run the optimizer table reads (``docs/_data/parity.json``)
  has a passing result for every registered name, so a new optimizer cannot
  ship without one;
* ``jaxopt-timm parity --json PATH`` writes what that file holds.
"""
import json
import math
import os
import subprocess
import sys

import pytest

import jaxopt_timm as jt
from jaxopt_timm.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY_JSON = os.path.join(ROOT, 'docs', '_data', 'parity.json')
REGENERATE = 'jaxopt-timm parity --opt all --sched all --json docs/_data/parity.json'


def test_docs_build_doctests_and_browser_check():
    env = dict(os.environ, PYTHON=sys.executable)
    try:
        proc = subprocess.run(['bash', os.path.join('scripts', 'docs.sh')], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f'scripts/docs.sh ran past 10 minutes:\n{(e.stdout or b"")[-6000:]}')
    if proc.returncode != 0:
        pytest.fail(f'scripts/docs.sh exited {proc.returncode}:\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}')
    assert 'browser check: ok' in proc.stdout, proc.stdout[-4000:]
    shots = os.path.join(ROOT, 'docs', '_build', 'screenshots')
    assert sorted(os.listdir(shots)) and all(os.path.getsize(os.path.join(shots, f)) > 0 for f in os.listdir(shots))


def _check_entry(where, entry):
    assert set(entry) >= {'deviation', 'tol', 'mode', 'result'}, (where, entry)
    assert entry['result'] == 'ok', f'{where}: stored result {entry["result"]!r}; rerun: {REGENERATE}'
    assert isinstance(entry['deviation'], float) and math.isfinite(entry['deviation']), (where, entry)
    assert 0 <= entry['deviation'] <= entry['tol'], (where, entry)


def test_stored_parity_run_covers_every_registered_name():
    with open(PARITY_JSON) as f:
        stored = json.load(f)
    missing = [n for n in jt.list_optimizers() if n not in stored]
    assert not missing, f'no stored parity result for {missing}; run: {REGENERATE}'
    for name in jt.list_optimizers():
        _check_entry(name, stored[name])
        assert stored[name]['mode'] == jt.get_optimizer_info(name).parity_mode, name
    from jaxopt_timm.parity import SCHEDULES
    assert set(stored.get('schedules', {})) == set(SCHEDULES), f'schedules missing; run: {REGENERATE}'
    for name, entry in stored['schedules'].items():
        _check_entry(f'schedule {name}', entry)


def test_parity_json_option(tmp_path, capsys):
    # a timm name, a name in a reference mode, a name timm lacks (compared with its own reference) and a schedule
    path = tmp_path / 'parity.json'
    names = ['adamw', 'muon', 'sfsgd']
    assert main(['parity', '--opt', *names, '--sched', 'cosine', '--steps', '5', '--json', str(path)]) == 0
    capsys.readouterr()
    report = json.loads(path.read_text())
    assert set(report) == {*names, 'schedules'} and set(report['schedules']) == {'cosine'}
    for name in names:
        _check_entry(name, report[name])
    assert report['muon']['mode'] == 'newton_schulz_float32' and report['adamw']['mode'] is None
    _check_entry('cosine', report['schedules']['cosine'])
    assert not (tmp_path / 'parity.json.tmp').exists()


def test_parity_json_option_bad_path_fails_before_running(tmp_path, capsys):
    assert main(['parity', '--opt', 'adamw', '--json', str(tmp_path / 'no' / 'such' / 'p.json')]) == 2
    captured = capsys.readouterr()
    assert '--json' in captured.err and len(captured.err.strip().splitlines()) == 1
    assert 'Optimizers vs timm' not in captured.out
