#!/usr/bin/env bash
# The project's test command (README, .ci/run): the main suite in .venv, then the OpenRLHF and
# the verl adapter suites, each in its own environment (OpenRLHF pins an older transformers than
# TRL needs; verl pins its own stack). An environment that cannot be installed skips its suite
# with a visible message; a failing test fails the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
if bash scripts/ci/install-openrlhf.sh .venv-openrlhf; then
  .venv-openrlhf/bin/python -m pytest -p no:cacheprovider \
    tests/adapters/openrlhf tests/benchmarks/test_openrlhf_gpu_check.py
else
  echo "SKIPPED: OpenRLHF adapter tests (installing the OpenRLHF CPU environment failed, see above)"
fi
if bash scripts/ci/install-verl.sh .venv-verl; then
  .venv-verl/bin/python -m pytest -p no:cacheprovider \
    tests/adapters/verl tests/benchmarks/test_verl_gpu_check.py
else
  echo "SKIPPED: verl adapter tests (installing the verl CPU environment failed, see above)"
fi
