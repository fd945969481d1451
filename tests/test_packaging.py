"""The distributions as a user gets them: built, checked, and installed into a bare virtual environment.

``python -m build`` makes the sdist and, from it, the wheel (so the sdist is
complete enough to build); ``twine check`` validates both. The wheel is then
installed with pip into a fresh venv without system site packages: the lean
install pulls jax, jaxlib, optax and numpy only, and the library must work
there (an optimizer from the factory, a jitted step, a schedule, every module
but the command line's private ones) with none of the `cli` extra's packages,
nor torch, importable. The command line must still answer ``--help`` and
``list`` and must refuse ``train`` with one line naming the extra.

This needs the package index or pip's cache (jax and jaxlib are large: a
warm cache keeps the whole module well under a minute and a half). Without
them the test fails and says so: it never skips.
"""
import email
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = 'jaxopt_timm'
RUNTIME = {'jax', 'jaxlib', 'optax', 'numpy'}
EXTRAS = {'cli', 'docs', 'lint', 'test'}
ABSENT = ('torch', 'flax', 'sklearn', 'matplotlib', 'orbax', 'tqdm')  # none of these in a lean install
# Not needed to build: the docs, notebooks and benchmarks, and whatever a run left in the work tree.
COPY_IGNORE = shutil.ignore_patterns('.git', 'docs', 'notebooks', 'benchmarks', 'scripts', 'build', 'dist', '.venv',
                                     '*.egg-info', '__pycache__', '.*_cache', '.hypothesis', '.benchmarks')


def _run(cmd, what: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        pytest.fail(f'{what} failed (exit {proc.returncode}): {" ".join(map(str, cmd))}\n'
                    f'{proc.stdout[-4000:]}{proc.stderr[-4000:]}', pytrace=False)
    return proc


def _clean_env() -> dict:
    """The environment for the venv's processes: nothing that points Python at this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV'))}
    env['JAX_PLATFORMS'] = 'cpu'
    env['PYTHONNOUSERSITE'] = '1'
    return env


@pytest.fixture(scope='module')
def dists(tmp_path_factory):
    """``(wheel, sdist)`` built from a copy of the work tree (a build writes its egg-info beside the sources)."""
    for module in ('build', 'twine'):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed: pip install -e '.[test]'", pytrace=False)
    base = tmp_path_factory.mktemp('dist')
    src, out = base / 'src', base / 'out'
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    _run([sys.executable, '-m', 'build', '--outdir', str(out), str(src)],
         'python -m build (its isolated environment installs setuptools: needs the package index or pip\'s cache)')
    wheels, sdists = glob.glob(str(out / '*.whl')), glob.glob(str(out / '*.tar.gz'))
    assert len(wheels) == 1 and len(sdists) == 1, os.listdir(out)
    return wheels[0], sdists[0]


def test_twine_check(dists):
    _run([sys.executable, '-m', 'twine', 'check', '--strict', *dists], 'twine check')


def test_wheel_holds_the_package_and_nothing_else(dists):
    wheel, _ = dists
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = email.message_from_bytes(z.read(f'{NAME}-{_version(wheel)}.dist-info/METADATA'))
    assert f'{NAME}/py.typed' in names
    assert not [n for n in names if n.startswith('tests/') or '/tests/' in n]
    assert {n.split('/')[0] for n in names} == {NAME, f'{NAME}-{_version(wheel)}.dist-info'}
    ours = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, NAME, '**', '*.py'), recursive=True)}
    assert ours - set(names) == set(), 'modules missing from the wheel'
    # the runtime needs jax, jaxlib, optax and numpy only; everything else is an extra
    unconditional = {r.split(';')[0].split('>')[0].split('=')[0].split('<')[0].strip().lower()
                     for r in metadata.get_all('Requires-Dist') if 'extra ==' not in r}
    assert unconditional == RUNTIME
    assert set(metadata.get_all('Provides-Extra')) == EXTRAS


def test_sdist_holds_the_project_files(dists):
    _, sdist = dists
    with tarfile.open(sdist) as t:
        names = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    wanted = {'README.md', 'pyproject.toml', 'CHANGELOG.md', f'{NAME}/py.typed'}
    wanted |= {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'LICEN[CS]E*'))}
    assert wanted - names == set()


def _version(path: str) -> str:
    return os.path.basename(path).split('-')[1].replace('.tar.gz', '')


CHECK = textwrap.dedent('''
    import importlib, importlib.util, json, os, pkgutil, sys
    import jax, jax.numpy as jnp, optax
    import jaxopt_timm as jt

    params = {'w': jnp.ones((3, 2)), 'b': jnp.zeros((2,))}
    schedule, num_epochs = jt.create_scheduler_v2(1e-2, 'cosine', num_epochs=5, warmup_epochs=1,
                                                  step_on_epochs=False, updates_per_epoch=2)
    tx = jt.create_optimizer_v2(params, 'adamw', lr=schedule, weight_decay=0.05)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda q: jnp.sum(q['w'] ** 2) + jnp.sum(q['b']))(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = step(params, tx.init(params))
    p, s = step(p, s)
    modules = [m.name for m in pkgutil.walk_packages(jt.__path__, 'jaxopt_timm.')
               if not m.name.startswith('jaxopt_timm.cli._')]
    for name in modules:
        importlib.import_module(name)
    print(json.dumps({
        'file': jt.__file__, 'modules': len(modules), 'num_epochs': num_epochs,
        'lrs': [float(schedule(t)) for t in range(0, 10, 3)],
        'moved': float(jnp.max(jnp.abs(p['w'] - params['w']))), 'finite': bool(jnp.isfinite(p['w']).all()),
        'found': [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None],
        'loaded': sorted({k.split('.')[0] for k in sys.modules} & set(sys.argv[1:])),
    }))
''')


@pytest.fixture(scope='module')
def lean_venv(dists, tmp_path_factory):
    """A venv without system site packages holding the wheel and what pip pulls for it; returns its bin dir."""
    wheel, _ = dists
    base = tmp_path_factory.mktemp('venv')
    venv = base / 'venv'
    _run([sys.executable, '-m', 'venv', str(venv)], 'python -m venv', cwd=base)
    bindir = venv / ('Scripts' if os.name == 'nt' else 'bin')
    _run([str(bindir / 'python'), '-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', wheel],
         'pip install of the wheel into a fresh venv (jax, jaxlib, optax, numpy come from the package index or '
         "pip's cache: neither answered)", timeout=600, cwd=base, env=_clean_env())
    return bindir


def test_lean_install_works_without_the_extras(lean_venv, tmp_path):
    script = tmp_path / 'check.py'
    script.write_text(CHECK)
    # run from an empty folder: the checkout's jaxopt_timm must not shadow the installed one
    out = _run([str(lean_venv / 'python'), str(script), *ABSENT], 'the lean install check', cwd=tmp_path,
               env=_clean_env()).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert os.path.realpath(got['file']).startswith(os.path.realpath(lean_venv.parent)), got['file']
    assert got['found'] == [] and got['loaded'] == [], got
    assert got['modules'] > 100 and got['moved'] > 0 and got['finite']
    assert got['num_epochs'] == 5 and got['lrs'][0] < got['lrs'][1]  # warmup, then the cosine


def test_lean_install_command_line(lean_venv, tmp_path):
    cli = str(lean_venv / 'jaxopt-timm')
    env = _clean_env()
    assert 'COMMAND' in _run([cli, '--help'], 'jaxopt-timm --help', cwd=tmp_path, env=env).stdout
    listed = _run([cli, 'list', 'adamw', '--names-only'], 'jaxopt-timm list', cwd=tmp_path, env=env).stdout
    assert listed.split() == ['adamw']
    train = subprocess.run([cli, 'train', '--epochs', '1'], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=300)
    assert train.returncode == 2, train.stdout + train.stderr
    assert train.stderr.strip().splitlines() == [
        "jaxopt-timm train: error: needs flax, scikit-learn, tqdm, not installed: pip install 'jaxopt_timm[cli]'"]
