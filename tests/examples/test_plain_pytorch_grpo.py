"""The single-file example runs end to end, with TAMPO and at a fixed temperature, and its
command line refuses bad values before any work."""

from __future__ import annotations

import runpy
import subprocess
import sys

import pytest

from tests.paths import EXAMPLES, REPO

EXAMPLE = EXAMPLES / "plain_pytorch_grpo.py"


@pytest.mark.parametrize("extra", [[], ["--fixed-temperature", "1.0"]])
def test_example_trains_a_few_steps(
    extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--steps", "3", "--prompts", "4", *extra])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "step    2" in out and "greedy accuracy on all 10 prompts" in out
    assert ("pi(T)" in out) == (not extra)


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--fixed-temperature", "0"],
            "argument --fixed-temperature: expected a temperature in [0.0001, 10000], "
            "finite and > 0, got 0.0",
        ),
        (["--fixed-temperature", "-1"], "argument --fixed-temperature: expected a temperature"),
        (["--fixed-temperature", "nan"], "argument --fixed-temperature: expected a finite"),
        (["--steps", "0"], "argument --steps: expected an int >= 1, got 0"),
        (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
        (["--group-size", "1"], "argument --group-size: expected an int >= 2, got 1"),
        (["--lr", "0"], "argument --lr: expected a finite real number > 0, got 0.0"),
        (["--seed", "-1"], "argument --seed: expected an int >= 0, got -1"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(args: list[str], message: str) -> None:
    done = run_example(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("plain_pytorch_grpo.py: error: ") and message in last
    assert "Traceback" not in done.stderr


def test_help_has_a_description_and_every_default() -> None:
    done = run_example("--help")
    assert done.returncode == 0
    assert "GRPO with a TAMPO-learned sampling temperature" in done.stdout
    for default in ("150", "16", "8", "0.0003", "(default: 0)", "(default: None"):
        assert default in done.stdout, default
