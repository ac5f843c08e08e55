"""The ``--tampo.*`` options and the launcher's ``--help`` without OpenRLHF (no OpenRLHF needed:
these run in the main environment too)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tampo_core import TampoConfig
from tampo_core.adapters.openrlhf.options import TampoOptions, parse_tampo_args
from tests.paths import REPO

# Runs the launcher with OpenRLHF and Ray made unimportable (as when they are not installed).
WITHOUT_OPENRLHF = (
    "import sys\n"
    "for name in ('openrlhf', 'ray', 'deepspeed'):\n"
    "    sys.modules[name] = None\n"
    "from tampo_core.adapters.openrlhf.launch import main\n"
    "main(sys.argv[1:])\n"
)


def _launch_without_openrlhf(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        # torch warns that pynvml is deprecated when the OpenRLHF environment has it
        [sys.executable, "-W", "ignore::FutureWarning", "-c", WITHOUT_OPENRLHF, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_every_config_field_is_an_option():
    values = {
        "--tampo.temperatures": ["0.5", "0.9", "1.3"],
        "--tampo.ema_alpha": ["0.2"],
        "--tampo.top_p": ["0.5"],
        "--tampo.warmup_steps": ["3"],
        "--tampo.seed": ["7"],
        "--tampo.likelihood": ["sum"],
        "--tampo.sparsemax_scale": ["2.5"],
        "--tampo.warmup": ["fixed"],
        "--tampo.warmup_temperature": ["0.9"],
        "--tampo.meta_advantage": ["batch_baseline"],
        "--tampo.chunk_size": ["8"],
        "--tampo.detailed_metrics": [],
    }
    adapter = {f"--tampo.{name}" for name in TampoOptions.model_fields if name != "config"}
    fields = {f"--tampo.{name}" for name in TampoConfig.model_fields} | adapter
    assert set(values) == fields, "a TampoConfig field this test does not set"
    argv = [token for flag, given in values.items() for token in (flag, *given)]
    options, rest = parse_tampo_args([*argv, "--rollout.batch_size", "2"])
    assert rest == ["--rollout.batch_size", "2"]
    assert options.config == TampoConfig(
        temperatures=(0.5, 0.9, 1.3),
        ema_alpha=0.2,
        top_p=0.5,
        warmup_steps=3,
        seed=7,
        likelihood="sum",
        sparsemax_scale=2.5,
        warmup="fixed",
        warmup_temperature=0.9,
        meta_advantage="batch_baseline",
    )
    assert options.chunk_size == 8 and options.detailed_metrics is True
    flat = options.flat()
    assert flat["temperatures"] == [0.5, 0.9, 1.3] and flat["chunk_size"] == 8
    assert flat["detailed_metrics"] is True and len(flat) == len(fields)


def test_tampo_options_parse_and_validate():
    options, rest = parse_tampo_args(
        ["--tampo.top_p", "0.5", "--rollout.batch_size", "2", "--tampo.temperatures", "0.7", "1.1"]
    )
    assert options.config.top_p == 0.5 and options.config.temperatures == (0.7, 1.1)
    assert options.chunk_size is None and rest == ["--rollout.batch_size", "2"]
    assert parse_tampo_args([])[0] == TampoOptions()
    with pytest.raises(ValueError, match=r"chunk_size: expected None or an int >= 1, got int 0"):
        TampoOptions(chunk_size=0)
    with pytest.raises(ValueError, match="config"):
        TampoOptions(config={"top_p": 2})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tampo.top_p", "2"], "--tampo.top_p: expected less than or equal to 1, got 2.0"),
        (["--tampo.topp", "0.5"], "unknown TAMPO option(s) ['--tampo.topp']"),
        (["--tampo.chunk_size", "0"], "--tampo.chunk_size: expected None or an int >= 1"),
        (["--tampo.temperatures", "1.0", "0.5"], "--tampo.temperatures: expected strictly"),
        (["--tampo.sparsemax_scale", "-1"], "--tampo.sparsemax_scale: expected a finite real"),
        (["--tampo.warmup", "nope"], "argument --tampo.warmup: invalid choice: 'nope'"),
        (["--tampo.ema_alpha", "x"], "argument --tampo.ema_alpha: invalid float value: 'x'"),
        (
            ["--tampo.warmup", "fixed", "--tampo.warmup_temperature", "0.65"],
            "--tampo.warmup_temperature: expected one of the candidate temperatures",
        ),
    ],
)
def test_bad_options_are_one_line_argparse_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_tampo_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "pydantic" not in err
    assert err.startswith("python -m tampo_core.adapters.openrlhf.launch: error: ")
    assert message in err


def test_help_without_openrlhf_lists_the_tampo_options_and_says_what_is_missing():
    result = _launch_without_openrlhf("--help")
    assert result.returncode == 0, result.stderr
    assert "--tampo.top_p" in result.stdout and "--tampo.meta_advantage" in result.stdout
    assert "(default: 0.7)" in result.stdout
    assert "need OpenRLHF" in result.stdout and "pip install" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_launch_without_openrlhf_is_a_one_line_error():
    result = _launch_without_openrlhf("--tampo.top_p", "0.5", "--rollout.batch_size", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "need OpenRLHF" in result.stderr
    bad = _launch_without_openrlhf("--tampo.top_p", "2")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--tampo.top_p: expected less than or equal to 1, got 2.0" in bad.stderr
