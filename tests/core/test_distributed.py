"""Two gloo processes on CPU hold the identical distribution after synchronised updates."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import tampo_core as tc

K = 10
WORLD = 2


def _batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for n in (6, 4, 8):
        loglik = -rng.gamma(2.0, 1.0, size=(n, K))
        out.append((loglik, rng.normal(size=n)))
    return out


def _logits_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 5, 11, generator=gen) * 3
    tokens = torch.randint(0, 11, (4, 5), generator=gen)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 2:] = False
    mask[3] = False  # an empty trajectory, skipped on this rank
    return logits, tokens, mask, torch.randn(4, generator=gen)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        policy = tc.TempMetaPolicy(warmup_steps=1, seed=11)
        temperatures = []
        for loglik, advantages in _batches(100 + rank):
            temperatures.append(policy.sample())
            policy.observe_loglik(loglik, advantages)
        logits, tokens, mask, advantages = _logits_batch(200 + rank)
        stats = policy.observe(logits, advantages, tokens=tokens, mask=mask)
        temperatures += [policy.sample() for _ in range(10)]
        unsynced = tc.TempMetaPolicy()
        unsynced.observe_loglik(*_batches(100 + rank)[0], sync=False)
        Path(out_dir, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "probs": policy.probs.tolist(),
                    "ema": policy.ema.tolist(),
                    "temperatures": temperatures,
                    "n": stats.num_trajectories,
                    "skipped": stats.num_skipped,
                    "unsynced_ema": unsynced.ema.tolist(),
                }
            )
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_gloo_ranks_hold_the_identical_distribution(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0]["probs"] == ranks[1]["probs"]
    assert ranks[0]["ema"] == ranks[1]["ema"]
    assert ranks[0]["temperatures"] == ranks[1]["temperatures"]
    assert ranks[0]["n"] == 6 and ranks[0]["skipped"] == 2
    assert ranks[0]["unsynced_ema"] != ranks[1]["unsynced_ema"]

    # The synchronised result equals one process seeing both ranks' data at once.
    single = tc.TempMetaPolicy(warmup_steps=1, seed=11)
    for step in range(3):
        loglik = np.concatenate([_batches(100 + r)[step][0] for r in range(WORLD)])
        advantages = np.concatenate([_batches(100 + r)[step][1] for r in range(WORLD)])
        single.observe_loglik(loglik, advantages)
    parts = [_logits_batch(200 + r) for r in range(WORLD)]
    single.observe(
        torch.cat([p[0] for p in parts]),
        torch.cat([p[3] for p in parts]),
        tokens=torch.cat([p[1] for p in parts]),
        mask=torch.cat([p[2] for p in parts]),
    )
    np.testing.assert_allclose(ranks[0]["ema"], single.ema, rtol=1e-12, atol=1e-15)


def test_sync_true_without_a_process_group_is_refused() -> None:
    policy = tc.TempMetaPolicy()
    with pytest.raises(RuntimeError, match=r"initialised torch\.distributed"):
        policy.observe_loglik(np.zeros((1, K)), [1.0], sync=True)
    assert policy.num_updates == 0
