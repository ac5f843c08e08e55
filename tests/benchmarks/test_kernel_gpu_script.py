"""The GPU kernel benchmark script runs end to end on CPU with tiny shapes (``--tiny``)."""

from __future__ import annotations

import csv
import json

from benchmarks import kernel_gpu


def test_tiny_run_writes_complete_results(tmp_path):
    kernel_gpu.main(["--tiny", "--out", str(tmp_path), "--repeats", "2"])
    report = json.loads((tmp_path / "kernel_gpu.json").read_text())
    with open(tmp_path / "kernel_gpu.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["results"]) > 0
    assert report["correctness"]["failures"] == []
    assert report["correctness"]["max_abs_err"]["fused/bfloat16"] <= 2e-5
    profile = kernel_gpu.TINY
    logits_rows = [r for r in rows if r["path"] == "logits"]
    for n in profile.sizes:
        for k in profile.ks:
            at = {
                r["method"]: r["status"]
                for r in logits_rows
                if (r["n_valid"], r["k"]) == (str(n), str(k))
            }
            for method in (
                "naive_fp32_loop",
                "in_dtype_loop",
                "gather_logsumexp_loop",
                "selective_log_softmax_loop",
                "fused_default",
                "fused",
            ):
                assert at[method] == "ok", (n, k, method, at[method])
    fused_only = [r for r in logits_rows if r["n_valid"] == str(profile.fused_only_sizes[0])]
    assert {r["status"] for r in fused_only if r["method"] == "naive_fp32_loop"} == {
        "skipped: fused-only size"
    }
    graph = [r for r in logits_rows if r["method"] == kernel_gpu.GRAPH_METHOD]
    assert graph and all(r["status"].startswith("skipped") for r in graph)  # no CUDA here
    hidden = {r["method"] for r in rows if r["path"] == "hidden" and r["status"] == "ok"}
    assert {"gemm_then_fused", "fused_hidden_default", "fused_hidden"} <= hidden
    assert report["goals"]["available"] is True
    assert report["device_rates"]["exp_rate_source"].startswith("assumed")
    strategies = {r["method"]: r["status"] for r in logits_rows if "row_loop_" in r["method"]}
    assert strategies["fused_row_loop_power"] == strategies["fused_row_loop_clamped"] == "ok"
    assert {r["status"] for r in logits_rows if r["method"] == "sdpa_lse"} == {"ok"}
    assert {r["status"] for r in logits_rows if r["method"] == "compiled_chunks"} == {
        "skipped: no --compile"
    }
    candidates = report["correctness"]["candidates"]
    assert set(candidates) == {f"sdpa_lse/{d}" for d in ("bfloat16", "float16", "float32")}
    assert all(c["exact"] for c in candidates.values())  # CPU: the fp32 attention path
    assert report["goals"]["candidates"]["sdpa_lse"]["speedup_vs_fused_default"] > 0
