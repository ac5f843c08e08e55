#!/usr/bin/env bash
# Create the virtual environment for the OpenRLHF adapter tests (default: .venv-openrlhf).
# A separate environment: OpenRLHF pins transformers==5.15.0, the TRL extra needs a newer one.
#   bash scripts/ci/install-openrlhf.sh [VENV_DIR]
# Idempotent. Exits non-zero if any step fails (.ci/run then skips these tests, saying why).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-.venv-openrlhf}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" >"$CONSTRAINTS"
# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -r scripts/ci/openrlhf-requirements.txt -c "$CONSTRAINTS"
# deepspeed ships an sdist whose setup.py imports torch: build it against the torch above.
"${PIP[@]}" --no-build-isolation "deepspeed==0.19.6" -c "$CONSTRAINTS"
# openrlhf requires flash-attn==2.8.3 (CUDA build only): install it without its requirements.
"${PIP[@]}" --no-deps "openrlhf==0.11.2"
"${PIP[@]}" -e ".[dev]" -c "$CONSTRAINTS"
# flash-attn and vLLM are CUDA-only: where the real distribution is absent, install the tests'
# import-level stand-ins as tiny packages (in site-packages, so Ray workers import them too).
# Built from a copy so that no build files land in the checkout.
STANDINS=tests/adapters/openrlhf/standins
for pair in flash-attn:flash_attn_standin vllm:vllm_standin; do
  dist=${pair%%:*} folder=${pair#*:}
  if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$dist" \
    2>/dev/null; then
    echo "$dist is installed: its stand-in is not used"
  else
    build=$(mktemp -d)
    cp -r "$STANDINS/$folder" "$build/"
    "${PIP[@]}" --no-build-isolation --no-deps --force-reinstall "$build/$folder"
    rm -rf "$build"
  fi
done
"$VENV/bin/python" -c "import openrlhf.trainer.ppo_trainer, ray, deepspeed; print('openrlhf env ok')"
