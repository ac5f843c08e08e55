#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then the quick benchmark of TAMPO against fixed
# temperatures, schedules and controllers (a smoke run whose numbers decide nothing; a few
# minutes on 2 cores), and say where the results are. Every phase prints a progress line.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
echo "[main 1/3] setup: .venv with CPU torch and tampo-core (skips what is installed)"
bash scripts/setup.sh
echo
echo "[main 2/3, $((SECONDS - START))s] quick benchmark: supervised starts (cached after the" \
    "first time), then one progress bar over the runs"
.venv/bin/python -m benchmarks.suite --quick "$@"
echo
echo "[main 3/3, $((SECONDS - START))s] done"
echo "Table:  benchmarks/results/suite_quick/results.md (CSV/JSON beside it)"
echo "Plots:  benchmarks/results/suite_quick/learning_curves.png, tampo_temperature_heatmap.png,"
echo "        diagnostics_<testbed>.png"
echo "This was a smoke run: a verdict needs >= 5 seeds (python -m benchmarks.suite, the full suite)."
