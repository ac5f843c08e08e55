#!/usr/bin/env bash
# The prepared GPU run of issue 15, one call on the device machine (run from the repository
# root; a bare checkout is enough: numpy, pydantic, torch and transformers must import):
#
#   OUT=/path/to/out bash benchmarks/gpu_run_issue15.sh           # H100/H200: ~6 min (estimate)
#   TINY=1 OUT=/tmp/x bash benchmarks/gpu_run_issue15.sh          # CPU smoke run, seconds
#
# 1. the kernel sweep with the candidate paths (attention log-sum-exp, torch.compile, CUDA
#    graphs over larger chunks), 2. TAMPO's share of a GRPO update step of a Qwen2.5-0.5B-shaped
#    model (64 completions x 1024 tokens), then of a 1.5B-shaped one. Each part has its own
#    timeout and log, and a failed part does not stop the next; the exit status is the number
#    of failed parts.
set -u
out="${OUT:?set OUT to the output folder}"
mkdir -p "$out"
tiny=()
if [[ -n "${TINY:-}" ]]; then tiny=(--tiny); fi
failed=0
run() {  # name, timeout seconds, command...
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*" | tee "$out/$name.log"
  PYTHONUNBUFFERED=1 timeout "$limit" "$@" >>"$out/$name.log" 2>&1
  local status=$?
  echo "== $name: exit $status" | tee -a "$out/$name.log"
  [[ $status -eq 0 ]] || failed=$((failed + 1))
}
py="${PYTHON:-python}"
run kernel_gpu 300 "$py" -m benchmarks.kernel_gpu --compile --out "$out/kernel_gpu" \
  --time-budget-s 240 "${tiny[@]}"
run step_0.5b 150 "$py" -m benchmarks.step_overhead --model 0.5b --out "$out/step_0.5b" "${tiny[@]}"
run step_1.5b 150 "$py" -m benchmarks.step_overhead --model 1.5b --out "$out/step_1.5b" "${tiny[@]}"
exit "$failed"
