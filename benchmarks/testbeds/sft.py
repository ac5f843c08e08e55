"""Supervised warm start: train a tiny LM on reference completions to a partial policy.

Checkpoints are cached under a cache directory keyed by a hash of the full configuration, so
every benchmark run of a task starts from the same, bit-identical model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.testbeds.model import TinyCausalLM, TinyLMConfig
from benchmarks.testbeds.task import Problem, Task

EVAL_SEED = 12345
TRAIN_POOL_SEED = 777
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SFTConfig:
    """Supervised stage of one testbed. ``steps`` is set so the result is partial, not solved."""

    steps: int
    batch_size: int = 64
    lr: float = 3e-3
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    seed: int = 0
    pool_size: int = 20000
    eval_size: int = 512


def eval_problems(task: Task, n: int) -> list[Problem]:
    """The fixed held-out evaluation set (same seed for every run)."""
    return task.problems(n, EVAL_SEED)


def train_pool(task: Task, cfg: SFTConfig) -> list[Problem]:
    """Training problems, disjoint from the evaluation set."""
    held_out = frozenset(p.prompt for p in eval_problems(task, cfg.eval_size))
    return task.problems(cfg.pool_size, TRAIN_POOL_SEED, exclude=held_out)


def config_key(task: Task, cfg: SFTConfig) -> str:
    blob = json.dumps(
        {
            "task": task.name,
            "vocab": task.vocab,
            "params": task.params,
            "format": FORMAT_VERSION,
            **dataclasses.asdict(cfg),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    root = os.environ.get("TAMPO_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tampo-core-bench"
    )
    return Path(root)


def build_model(task: Task, cfg: SFTConfig) -> TinyCausalLM:
    max_len = task.prompt_len + task.max_new_tokens
    return TinyCausalLM(
        TinyLMConfig(task.vocab_size, max_len, cfg.d_model, cfg.n_layers, cfg.n_heads)
    )


def train_sft(task: Task, cfg: SFTConfig) -> TinyCausalLM:
    """Teacher-forced cross-entropy on completion tokens, Adam, seeded."""
    torch.manual_seed(cfg.seed)
    model = build_model(task, cfg)
    pool = train_pool(task, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    width = task.max_new_tokens
    for _ in range(cfg.steps):
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=gen).tolist()
        batch = [pool[i] for i in idx]
        target = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, p in enumerate(batch):
            ref = task.sft_reference(p, rng)
            target[row, : len(ref)] = torch.tensor(ref)
        inputs = torch.cat([task.prompt_ids(batch), target.clamp_min(0)], dim=1)[:, :-1]
        logits = model(inputs).logits[:, task.prompt_len - 1 :]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def load_or_train(task: Task, cfg: SFTConfig, cache_dir: Path | None = None) -> TinyCausalLM:
    """The cached SFT model for ``(task, cfg)``, training and caching it on first use."""
    path = (cache_dir or default_cache_dir()) / f"{task.name}-{config_key(task, cfg)}.pt"
    model = build_model(task, cfg)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train_sft(task, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model
