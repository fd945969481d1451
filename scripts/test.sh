#!/usr/bin/env bash
# The one test command (README and .ci/run): install everything from nothing, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=${PYTHON:-python3}
exec $PY -m pytest -q "$@"
