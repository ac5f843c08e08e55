"""GPU check of the TAMPO OpenRLHF policy hook on OpenRLHF's real ``Actor`` (no vLLM, no Ray).

Builds a small Llama locally (no hub), wraps it in ``openrlhf.models.actor.Actor``, runs the
no-grad experience-making forward the way ``PolicyModelActor.forward`` does, with the TAMPO hook
installed, padded and packed, then repeats the checks with the model wrapped in a DeepSpeed
inference engine as OpenRLHF's ``strategy.prepare`` does (skipped, with the reason recorded, when
DeepSpeed does not initialise). It records:

- ``max_gap_at_source``: |hook's column at T_s - masked mean of OpenRLHF's action_log_probs|;
- ``max_err_all_temperatures``: hook vs ``log_softmax(raw / T_k)`` computed from the output logits;
- ``model_calls``: model forwards per hooked call (must be 1);
- the hook's extra time and peak memory over the plain forward at a larger shape.

- ``counts_match_action_mask``: the hook's per-sample action-token counts (0 for the sample
  without action tokens);

Writes ``openrlhf_gpu_check.json`` to ``--out``; exits 1 if a check fails. Runs on CPU too
(``--device cpu``, smaller shapes; ``tests/benchmarks/test_openrlhf_gpu_check.py``).

It imports only installed packages (nothing is put on ``sys.path``). On a GPU machine with CUDA
torch and transformers, from the repository root::

    pip install -e . && pip install --no-deps openrlhf==0.11.2 && pip install deepspeed==0.19.6
    # flash-attn is optional; without it, install the CPU tests' pure-torch stand-in package:
    python -c "import flash_attn" || pip install tests/adapters/openrlhf/standins/flash_attn_standin
    python benchmarks/openrlhf_gpu_check.py --out benchmarks/results

(``scripts/ci/install-openrlhf.sh`` does the same for the CPU environment). vLLM is not needed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)


def _flash_attn_note() -> str:
    """Which flash_attn the Actor's padding helpers come from."""
    try:
        return f"flash_attn: flash-attn {importlib.metadata.version('flash-attn')}"
    except importlib.metadata.PackageNotFoundError:
        return "flash_attn: the CPU tests' stand-in package (pure-torch padding helpers)"


def _tiny_llama(vocab: int, hidden: int, layers: int, dtype: torch.dtype, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def _batch(batch: int, seqlen: int, actions: int, vocab: int, device: str, seed: int):
    """Right-padded ragged batch; one row without action tokens."""
    generator = torch.Generator().manual_seed(seed)
    sequences = torch.randint(3, vocab, (batch, seqlen), generator=generator)
    attention_mask = torch.zeros(batch, seqlen, dtype=torch.long)
    action_mask = torch.zeros(batch, actions, dtype=torch.bool)
    prompt = seqlen - actions
    for b in range(batch):
        length = seqlen - (b * (actions // 2)) // max(batch - 1, 1)
        attention_mask[b, :length] = 1
        sequences[b, length:] = 0
        action_mask[b, : max(0, length - prompt)] = True
    action_mask[-1] = False
    return sequences.to(device), attention_mask.to(device), action_mask.to(device)


def _try_deepspeed(actor: Any, dtype: torch.dtype) -> dict:
    """Wrap ``actor.model`` in a DeepSpeed inference engine like OpenRLHF's eval prepare."""
    try:
        import deepspeed
        from openrlhf.utils.deepspeed.deepspeed_utils import get_eval_ds_config

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        deepspeed.init_distributed()
        config = get_eval_ds_config(
            offload=False, stage=0, param_dtype="bf16" if dtype == torch.bfloat16 else "fp16"
        )
        config["train_micro_batch_size_per_gpu"] = 1
        config["train_batch_size"] = 1
        engine, *_ = deepspeed.initialize(model=actor.model, config=config)
        actor.model = engine
        return {"used": True, "version": deepspeed.__version__}
    except Exception as error:  # recorded, the check goes on without DeepSpeed
        return {"used": False, "error": f"{type(error).__name__}: {error}"}


def _hooked_forward(actor: Any, sequences, attention_mask, action_mask):
    # PolicyModelActor.forward: eval mode, no grad, then back to train mode.
    actor.eval()
    with torch.no_grad():
        result = actor(sequences, action_mask, attention_mask, return_output=True)
    actor.train()
    return result


def _check_layout(actor, packed: bool, source: float, sizes: dict, device: str) -> dict:
    from tampo_core.adapters.openrlhf.action_loglik import sequence_key
    from tampo_core.adapters.openrlhf.policy_hook import PolicyLoglikHook
    from tampo_core.adapters.openrlhf.reference import reference_action_loglik

    actor.packing_samples = packed
    actor.temperature = source
    calls = []
    handle = actor.model.register_forward_hook(lambda *_: calls.append(1))
    hook = PolicyLoglikHook(actor, TEMPERATURES, chunk_size=None)
    sequences, attention_mask, action_mask = _batch(**sizes, device=device, seed=1)
    log_probs, output = _hooked_forward(actor, sequences, attention_mask, action_mask)
    handle.remove()
    del actor.forward  # back to the class method
    loglik, num_tokens = hook.pop()[sequence_key(sequences)]
    valid = action_mask.any(dim=1).cpu()
    mask = action_mask.float()
    at_source = ((log_probs * mask).sum(1) / mask.sum(1)).cpu()[valid]
    column = loglik[:, TEMPERATURES.index(source)][valid]
    expected = reference_action_loglik(
        output["logits"], sequences, attention_mask, action_mask, packed, source, TEMPERATURES
    ).cpu()
    return {
        "packed": packed,
        "source_temperature": source,
        "shape": list(loglik.shape),
        "model_calls": len(calls),
        "counts_match_action_mask": num_tokens.tolist() == action_mask.sum(1).tolist()
        and bool((num_tokens[~valid] == 0).all()),
        "max_gap_at_source": float((column - at_source).abs().max()),
        "max_err_all_temperatures": float((loglik[valid] - expected[valid]).abs().max()),
        "loglik_at_source_mean": float(column.mean()),
    }


def _timing(actor, sizes: dict, device: str, repeats: int) -> dict:
    from tampo_core.adapters.openrlhf.policy_hook import PolicyLoglikHook

    actor.packing_samples = False
    actor.temperature = 0.8
    sequences, attention_mask, action_mask = _batch(**sizes, device=device, seed=2)

    def run() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        actor.eval()
        with torch.no_grad():
            actor(sequences, action_mask, attention_mask)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    result = {"sizes": sizes}
    for name in ("plain", "hooked"):
        if name == "hooked":
            hook = PolicyLoglikHook(actor, TEMPERATURES, chunk_size=None)
        run()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = sorted(run() for _ in range(repeats))
        result[f"{name}_ms_median"] = 1e3 * times[len(times) // 2]
        if device == "cuda":
            result[f"{name}_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if name == "hooked":
            hook.pop()
    del actor.forward  # back to the class method
    result["hook_overhead_ms"] = result["hooked_ms_median"] - result["plain_ms_median"]
    return result


def _run_checks(actor: Any, sizes: dict, device: str, failures: list[str], label: str) -> list:
    checks = [
        _check_layout(actor, packed, source, sizes, device)
        for packed in (False, True)
        for source in (0.7, 1.0, 1.3)
    ]
    for check in checks:
        tag = f"{label} packed={check['packed']} T_s={check['source_temperature']}"
        if check["model_calls"] != 1:
            failures.append(f"{tag}: model ran {check['model_calls']} times")
        if not check["counts_match_action_mask"]:
            failures.append(f"{tag}: action-token counts differ from the action mask")
        if not check["max_gap_at_source"] <= 1e-4:
            failures.append(f"{tag}: gap at T_s {check['max_gap_at_source']}")
        if not check["max_err_all_temperatures"] <= 1e-3:
            failures.append(f"{tag}: error vs definition {check['max_err_all_temperatures']}")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for openrlhf_gpu_check.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--no-deepspeed", action="store_true", help="skip the DeepSpeed engine")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": args.device, "python": platform.python_version()}
    report["notes"] = [_flash_attn_note()]
    failures: list[str] = []
    try:
        import transformers
        from openrlhf.models.actor import Actor

        from tampo_core.adapters.openrlhf import _seam

        report["versions"] = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "openrlhf": str(_seam.check_openrlhf_version()),
        }
        if args.device == "cuda":
            report["gpu"] = torch.cuda.get_device_name(0)
            dtype, vocab, hidden, layers = torch.bfloat16, 32000, 256, 2
            check_sizes = {"batch": 4, "seqlen": 256, "actions": 192, "vocab": vocab}
            time_sizes = {"batch": 8, "seqlen": 1024, "actions": 768, "vocab": vocab}
        else:
            dtype, vocab, hidden, layers = torch.bfloat16, 512, 64, 2
            check_sizes = {"batch": 4, "seqlen": 48, "actions": 32, "vocab": vocab}
            time_sizes = {"batch": 2, "seqlen": 128, "actions": 96, "vocab": vocab}
        actor = Actor(_tiny_llama(vocab, hidden, layers, dtype, args.device))
        report["checks"] = _run_checks(actor, check_sizes, args.device, failures, "plain")
        report["timing"] = _timing(actor, time_sizes, args.device, repeats=5)
        if args.no_deepspeed:
            report["deepspeed"] = {"used": False, "error": "skipped (--no-deepspeed)"}
        else:
            report["deepspeed"] = _try_deepspeed(actor, dtype)
        if report["deepspeed"]["used"]:
            report["deepspeed"]["checks"] = _run_checks(
                actor, check_sizes, args.device, failures, "deepspeed"
            )
            report["deepspeed"]["timing"] = _timing(actor, time_sizes, args.device, repeats=5)
    except Exception:
        failures.append(traceback.format_exc())
    report["failures"] = failures
    report["ok"] = not failures
    (out / "openrlhf_gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
