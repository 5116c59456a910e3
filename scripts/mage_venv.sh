#!/usr/bin/env bash
# scripts/mage_venv.sh [VENV] [WHEEL_DIR]: the Mage environment, kept apart from .venv because
# mage-ai 0.9.80 is ~1.4 GB with many pins: creates VENV (default .venv-mage) with mage-ai==0.9.80
# once, then (re)installs the qbo_rs wheel from WHEEL_DIR (default target/wheels) and checks that
# it sits beside mage-ai's pins without a conflict (`pip check`; the wheel requires nothing).
set -euo pipefail
venv="${1:-.venv-mage}"
wheels="${2:-target/wheels}"
python="${PYTHON:-python3}"
mage_version="${MAGE_VERSION:-0.9.80}"

wheel="$(ls -t "$wheels"/qbo_rs-*.whl 2>/dev/null | head -n 1 || true)"
[ -n "$wheel" ] || { echo "mage_venv: no qbo_rs wheel in $wheels (run make wheel)" >&2; exit 1; }

installed() { "$venv/bin/python" -c "import sys; from importlib.metadata import version; sys.exit(0 if version('mage-ai') == '$mage_version' else 1)" 2>/dev/null; }
if ! installed; then
    echo "mage_venv: installing mage-ai==$mage_version into $venv (a few minutes, ~1.4 GB)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "mage-ai==$mage_version"
fi
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c "import mage_ai, qbo_rs; from importlib.metadata import version; print('mage_venv: mage-ai', version('mage-ai'), '+ qbo_rs', qbo_rs.__version__, 'in $venv')"
