#!/usr/bin/env bash
# Install jaxopt_timm with its test dependencies on a fresh machine.
# torch goes first and pinned: the CPU wheel; an unpinned torch would pull a CUDA build.
# timm, mmengine, schedulefree, prodigyopt and pytorch-optimizer are reference libraries for the parity tests only: installed without
# their heavy dependencies (torchvision, opencv, ...); jaxopt_timm/parity/_loader.py loads timm.optim and
# timm.scheduler without timm's torchvision-bound top level.
set -euo pipefail
PY=${PYTHON:-python3}
$PY -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
$PY -m pip install --quiet --disable-pip-version-check -e ".[test]"
$PY -m pip install --quiet --disable-pip-version-check --no-deps "timm==1.0.31" "mmengine==0.10.7"
# references of the optimizers timm lacks (pure torch; pytorch-optimizer also needs numpy, already present)
$PY -m pip install --quiet --disable-pip-version-check --no-deps "schedulefree==1.4.1" "prodigyopt==1.1.2" \
    "pytorch-optimizer==4.1.0"
$PY -m pip install --quiet --disable-pip-version-check addict termcolor yapf rich
$PY -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# the docs' browser check (scripts/check_docs_browser.py) renders pages in headless Chromium: Debian's package
command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
