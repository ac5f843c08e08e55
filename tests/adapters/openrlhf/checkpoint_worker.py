"""Subprocess worker of ``test_checkpoint.py``: the TAMPO checkpoint entries through OpenRLHF's
``DeepspeedStrategy.save_ckpt`` / ``load_ckpt`` and a real DeepSpeed engine on CPU.

``python -m tests.adapters.openrlhf.checkpoint_worker OUT_DIR PORT`` (cwd: the repository root)
writes ``OUT_DIR/result.json``. Its own process, because it initialises torch.distributed
(gloo, one rank), which must not leak into the other tests. The one test double:
``torch.cuda.synchronize`` (called by OpenRLHF's barrier helper) is a no-op on CPU.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch


def _engine(deepspeed, seed: int):
    from tests.adapters.openrlhf.testkit import tiny_model

    model = tiny_model(seed).train()
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 0},
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def main(out: Path, port: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
    )
    torch.cuda.synchronize = lambda *args, **kwargs: None
    import deepspeed
    from openrlhf.utils import get_strategy

    from tampo_core import TempMetaPolicy
    from tampo_core.adapters.openrlhf.meta_update import MetaUpdater
    from tampo_core.adapters.openrlhf.trainer import checkpoint_entries, restore_checkpoint_entries
    from tampo_core.loglik import TemperatureLoglik
    from tests.adapters.openrlhf.testkit import TEMPERATURES, cli_args, ppo_argv

    deepspeed.init_distributed(dist_backend="gloo")
    strategy = get_strategy(cli_args(ppo_argv(**{"--ckpt.path": str(out / "ckpt")})))

    updater = MetaUpdater(TempMetaPolicy(temperatures=TEMPERATURES, warmup_steps=1, seed=5))
    generator = torch.Generator().manual_seed(0)
    for step in range(3):
        updater.meta_policy.sample()
        loglik = TemperatureLoglik(-torch.rand(6, 4, generator=generator), torch.full((6,), 3))
        advantages = torch.randn(6, generator=generator)
        if step == 1:
            advantages[2] = float("nan")  # skipped and counted
        updater.update(loglik, advantages)
    updater.pending.append(updater.meta_policy.sample())  # an empty end-of-episode call's draw
    # what PPOTrainer.fit passes, plus the TAMPO entries TampoPPOTrainer adds
    client_states = {
        "episode": 0,
        "global_step": 3,
        "total_consumed_prompts": 6,
        "data_loader_state_dict": {},
        **checkpoint_entries(updater),
    }
    sent = copy.deepcopy(client_states)
    save_dir = str(out / "ckpt" / "_actor")
    strategy.save_ckpt(_engine(deepspeed, 1), save_dir, "global_step3", client_state=client_states)
    files = sorted(str(p.relative_to(out)) for p in (out / "ckpt").rglob("*") if p.is_file())

    load_path, states = strategy.load_ckpt(_engine(deepspeed, 2), save_dir)
    restored = MetaUpdater(TempMetaPolicy(temperatures=TEMPERATURES, warmup_steps=1, seed=5))
    found = restore_checkpoint_entries(states, restored)
    draws = [updater.meta_policy.sample() for _ in range(20)]
    restored_draws = [restored.meta_policy.sample() for _ in range(20)]
    result = {
        "deepspeed": deepspeed.__version__,
        "files": files,
        "load_path": load_path,
        "found": found,
        "sent_keys": sorted(sent),
        "loaded_entries_equal": all(states.get(key) == value for key, value in sent.items()),
        "meta_policy_equal": restored.meta_policy.state_dict() == updater.meta_policy.state_dict(),
        "adapter_state": restored.state_dict(),
        "sent_adapter_state": updater.state_dict(),
        "draws_equal": draws == restored_draws,
        "num_updates": restored.meta_policy.num_updates,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
