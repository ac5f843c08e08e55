"""Two CPU ranks (torchrun, gloo): same temperatures and distributions on both.

Run as a script by torchrun; each rank writes what it saw to ``<out>/rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from tests.paths import REPO

TEMPS = (0.5, 1.0, 1.7)
STEPS = 4


def _worker(model_dir: Path, out_dir: Path) -> None:
    from tampo_core import TampoConfig
    from tampo_core.adapters.trl import TampoGRPOTrainer
    from tests.adapters.trl.tiny_model import make_trainer

    trainer = make_trainer(
        TampoGRPOTrainer,
        model_dir,
        out_dir / "run",
        # 2 completions per rank, groups of 4: every group straddles the two ranks
        {"max_steps": STEPS, "per_device_train_batch_size": 2, "num_generations": 4},
        tampo=TampoConfig(temperatures=TEMPS, warmup_steps=0, top_p=1.0, ema_alpha=0.5),
    )
    generated: list[float] = []
    completions: list[list[list[int]]] = []
    generate = trainer.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        generated.append(kwargs["generation_config"].temperature)
        out = generate(*args, **kwargs)
        completions.append(out.tolist())
        return out

    with patch.object(trainer.model, "generate", spy):
        trainer.train()
    policy = trainer.tampo_policy
    report = {
        "rank": trainer.accelerator.process_index,
        "world": trainer.accelerator.num_processes,
        "generated": generated,
        "cells": [c.cell_contents for c in trainer._temperature_cells],
        "completions": completions,
        "num_trajectories": policy.last_stats.num_trajectories,
        "state": policy.state_dict(),
        "probs": policy.probs.tolist(),
    }
    rank = report["rank"]
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
def test_two_ranks_draw_and_learn_identically(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from tests.adapters.trl.tiny_model import save_tiny_model

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None, "torchrun not found next to the Python executable"
    model_dir = save_tiny_model(tmp_path / "model")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    result = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            "--module",
            __name__,
            str(model_dir),
            str(tmp_path),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    first, second = reports
    assert len(first["generated"]) == STEPS and set(first["generated"]) <= set(TEMPS)
    assert len(set(first["generated"])) > 1
    assert first["generated"] == second["generated"]
    assert first["generated"][-1] == first["cells"][0] == second["cells"][0]
    assert first["completions"] != second["completions"]  # ranks sample different rows...
    assert first["num_trajectories"] == 4  # ...and both update from all 2 x 2 of them
    assert first["state"] == second["state"]
    assert first["probs"] == second["probs"]


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
