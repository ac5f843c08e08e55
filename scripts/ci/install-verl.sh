#!/usr/bin/env bash
# Create the virtual environment for the verl adapter tests (default: .venv-verl).
# A separate environment: verl 0.9.1 pins transformers<5.11, the TRL extra needs a newer one.
#   bash scripts/ci/install-verl.sh [VENV_DIR]
# Idempotent. Exits non-zero if any step fails (.ci/run then skips these tests, saying why).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.venv-verl}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" >"$CONSTRAINTS"
# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -r scripts/ci/verl-requirements.txt -c "$CONSTRAINTS"
# verl's extras pin torch 2.11 and CUDA engines; its base requirements are in the file above.
"${PIP[@]}" --no-deps "verl==0.9.1"
"${PIP[@]}" -e ".[dev]" -c "$CONSTRAINTS"
"$VENV/bin/python" -c "import verl, ray, tensordict, hydra, transformers; print('verl env ok')"
