#!/usr/bin/env bash
# Build the documentation site and check it: the one docs command (tests/test_docs.py runs it in CI).
#   1. sphinx-build -b html, warnings as errors: autodoc over every public name (a missing one is an error),
#      the optimizer table, CLI reference and schedule gallery generated from the code, and no page that
#      would fetch anything from the network (MathJax is served from the build).
#   2. sphinx-build -b doctest on the same doctrees: the >>> examples of the rendered docstrings and the
#      quickstart's code.
#   3. scripts/check_docs_browser.py: headless Chromium renders the home page and the adamw API page,
#      checks the math was typeset, and keeps screenshots in docs/_build/screenshots/.
# Fresh each time (-E): the generated pages depend on the package's code, which Sphinx does not track.
# Nothing here needs the network. Output: docs/_build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
OPTS=(-W --keep-going -q -E -d docs/_build/doctrees)
start=$SECONDS
$PY -m sphinx -b html "${OPTS[@]}" docs docs/_build/html
echo "docs: html built in $((SECONDS - start))s (docs/_build/html)"
# the doctest builder reuses the doctrees just written (-E only in the first build)
$PY -m sphinx -b doctest -W --keep-going -q -d docs/_build/doctrees docs docs/_build/doctest || {
    echo "docs: doctests failed; the failing examples:"; grep -B3 -A20 '^Failed example' docs/_build/doctest/output.txt
    exit 1; }
echo "docs: doctests passed ($((SECONDS - start))s)"
$PY scripts/check_docs_browser.py docs/_build/html
echo "docs: all checks passed in $((SECONDS - start))s"
