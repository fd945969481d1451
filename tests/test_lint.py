"""The linters CI runs: ruff (lint, and the format check of the package) and mypy, configured in
pyproject.toml.

Each runs as a subprocess from the repository root and the test fails with its
output. A missing linter is a failure that says how to install it (the `lint`
extra), never a skip: CI must not pass without having checked.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str, timeout: float = 600) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[lint]' (or '.[test]')", pytrace=False)
    proc = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"`{module} {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}",
                    pytrace=False)


def test_ruff_check():
    _run('ruff', 'check', 'jaxopt_timm', 'tests', 'benchmarks')


# the whole package is in ruff's format (its one-argument-per-line signatures within the 350-line budget)
FORMATTED = ('jaxopt_timm',)


def test_ruff_format():
    _run('ruff', 'format', '--check', *FORMATTED)


def test_mypy():
    # the packages and strictness are in [tool.mypy]; the cache (.mypy_cache) makes reruns take about a second
    _run('mypy', 'jaxopt_timm')
