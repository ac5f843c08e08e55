#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, run the quick benchmark of TAMPO against fixed
# temperatures, schedules and controllers (< 5 min on 2 cores), and say where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m benchmarks.suite --quick "$@"
echo
echo "Table:  benchmarks/results/suite_quick/results.md (CSV/JSON beside it)"
echo "Plots:  benchmarks/results/suite_quick/learning_curves.png, tampo_temperature_heatmap.png"
