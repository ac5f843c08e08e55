"""The benchmark suite end to end in its smoke configuration, and its resume logic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks import suite
from benchmarks.diagnostics import DIAGNOSTIC_KEYS


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # the in-process runner pins one thread
    yield
    torch.set_num_threads(threads)


def test_smoke_suite_runs_reports_and_resumes(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--smoke", "--workers", "1", "--out", str(out), "--cache-dir", str(cache)]
    paths = suite.main([*args, "--tasks", "countdown"])
    for key in ("csv", "json", "md", "learning_curves", "tampo_temperature_heatmap"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    runs = sorted((out / "runs").glob("*/*/seed*.json"))
    assert len(runs) == len(suite.PROFILES["smoke"]["methods"])
    tampo = json.loads((out / "runs/countdown/tampo-w0/seed0.json").read_text())
    steps = tampo["spec"]["steps"]
    for key in (*DIAGNOSTIC_KEYS, "temperature", "truncation"):
        assert len(tampo["log"][key]) == steps, key
    assert tampo["own_T"] == pytest.approx(tampo["log"]["temperature"][-1])  # last 10%: 1 step
    settings = ("greedy", "T0.6", "T1.0", "own")
    want = {f"{m}/{s}" for s in settings for m in ("pass@1", "truncation")}
    want |= {f"pass@4/{s}" for s in settings if s != "greedy"}
    assert set(tampo["final"]) == want
    sft = json.loads((out / "runs/countdown/sft/seed0.json").read_text())
    assert sft["own_T"] is None and not any(k.endswith("/own") for k in sft["final"])
    summary = json.loads(paths["json"].read_text())
    assert {r["method"] for r in summary["summary"]} == set(suite.PROFILES["smoke"]["methods"])
    versus = summary["versus_best_fixed"]
    assert versus and all(v["verdict"] == "n/a (1 seeds)" for v in versus)
    assert {v["metric"] for v in versus} == {k for k in want if not k.startswith("trunc")}
    md = paths["md"].read_text()
    assert "| tampo-w0 |" in md and "| tampo-w2 |" in md and "SMOKE RUN" in md
    assert "diagnostics_countdown" in paths

    stamps = {p: p.stat().st_mtime_ns for p in runs}
    suite.main([*args, "--tasks", "countdown"])
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps  # nothing re-run

    record = json.loads(runs[0].read_text())
    record["key"] = "stale"
    runs[0].write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="different configuration"):
        suite.main([*args, "--tasks", "countdown"])


def test_unknown_method_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        suite.main(["--smoke", "--out", str(tmp_path / "out"), "--methods", "fixed-0.6", "tampo"])
    assert not (tmp_path / "out").exists()
    assert "tampo-w<warm-up steps>" in capsys.readouterr().err


def test_help_lists_the_valid_method_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        suite.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in (*suite.MAIN_METHODS, "sft", "cosine-<T0>-<T1>", "e3-anneal"):
        assert name in text


def test_estimate_times_one_tampo_run_per_testbed_and_projects_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--smoke", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    paths = suite.main([*args, "--estimate", "--workers", "2"])
    est = json.loads(paths["estimate"].read_text())
    assert set(est["cpu_seconds_per_run_by_testbed"]) == {"countdown"}
    cpu = est["cpu_seconds_per_run_by_testbed"]["countdown"]
    assert cpu > 0 and est["runs_total"] == len(suite.PROFILES["smoke"]["methods"])
    assert est["runs_to_do"] == est["runs_total"] - 1  # the timed run is kept as a result
    assert est["projected_wall_minutes_on_idle_cores"] == pytest.approx(
        round(cpu * est["runs_to_do"] / 2 / 60, 1)
    )
    assert (out / "runs/countdown/tampo-w0/seed0.json").exists()


def test_options_ablation_runs_every_option_through_the_suite_loop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--smoke", "--workers", "1", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    paths = suite.main([*args, "--methods", "fixed-1.2", "--ablation", "options"])
    want = {"fixed-1.2", *suite.ABLATIONS["options"]}
    assert {p.parent.name for p in (out / "runs/countdown").glob("*/seed0.json")} == want
    for method in suite.ABLATIONS["options"]:
        run = json.loads((out / f"runs/countdown/{method}/seed0.json").read_text())
        temps = run["log"]["temperature"]
        assert len(temps) == run["spec"]["steps"] and all(0.29 < t < 2.01 for t in temps), method
    batchbase = json.loads((out / "runs/countdown/tampo-batchbase/seed0.json").read_text())
    assert len(batchbase["log"]["support_size"]) == batchbase["spec"]["steps"]
    md = paths["md"].read_text()
    assert all(f"| {m} |" in md for m in want)
