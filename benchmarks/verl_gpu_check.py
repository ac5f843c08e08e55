"""Device check of the TAMPO verl likelihood hook on verl's real worker and engine path.

``python -m benchmarks.verl_gpu_check --device cuda --out benchmarks/results`` (from the repository
root, in the verl environment: ``scripts/ci/install-verl.sh``).

Builds a small Llama locally (no hub) and runs the old-log-prob pass as ``RayPPOTrainer`` does:
``DataProto.to_tensordict`` -> ``left_right_2_no_padding`` ->
``ActorRolloutRefWorker.compute_log_prob`` -> ``TrainingWorker.infer_batch`` ->
``FSDPEngineWithLMHead`` (micro-batching, ``forward_step``, the hooked ``prepare_model_outputs``)
-> ``postprocess_batch_func``, packed (``use_remove_padding``) and padded, with the engine's
mixed-precision autocast (bf16 on CUDA, off on CPU). The engine object is built without FSDP
wrapping (one rank; ``tests.adapters.verl.testkit``). Per layout and sampling temperature it
records:

- ``max_gap_at_source``: |hook's column at T - masked mean of verl's own ``log_probs``|;
- ``max_err_all_temperatures``: hook vs the float64 ``log_softmax(z / T_k)`` of the very logits
  that forward produced, sliced to the responses by verl's ``no_padding_2_padding``;
- ``model_calls``: model forwards per micro-batch (must be 1);

and, at a larger shape, the hooked pass's time and peak memory over the plain one, measured side
by side in this run. Writes ``verl_gpu_check.json`` (or ``verl_gpu_check_cpu.json`` with
``--device cpu``, smaller shapes) to ``--out``; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
SOURCES = (0.6, 1.0, 1.3)


def _sizes(device: str) -> dict[str, int]:
    if device == "cuda":
        return {"vocab": 32000, "hidden": 256, "layers": 2, "batch": 16, "micro_batch": 4}
    return {"vocab": 512, "hidden": 32, "layers": 2, "batch": 8, "micro_batch": 2}


def _model(sizes: dict[str, int], device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=sizes["vocab"],
        hidden_size=sizes["hidden"],
        intermediate_size=2 * sizes["hidden"],
        num_hidden_layers=sizes["layers"],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(device).eval()


def _batch(sizes: dict[str, int], prompt: int, response: int, seed: int) -> dict:
    """Ragged left-padded prompts and right-padded responses; the last row has one token."""
    import tests.adapters.verl.testkit as kit

    generator = torch.Generator().manual_seed(seed)
    vocab, batch = sizes["vocab"], sizes["batch"]
    prompts, responses = [], []
    for b in range(batch):
        prompts.append(torch.randint(3, vocab, (1 + (b * 3) % prompt,), generator=generator))
        length = 1 if b == batch - 1 else 1 + (b * 7) % response
        responses.append(torch.randint(3, vocab, (length,), generator=generator))
    return kit.pad_batch(
        [p.tolist() for p in prompts], [r.tolist() for r in responses], prompt, response
    )


def _tensordict(tensors: dict, temperature: float, request: bool, device: str) -> Any:
    from verl.protocol import DataProto
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    from tampo_core.adapters.verl import _seam

    batch = DataProto.from_single_dict({k: v.to(device) for k, v in tensors.items()})
    batch.meta_info["global_token_num"] = tensors["attention_mask"].sum(-1).tolist()
    _seam.set_batch_temperature(batch, temperature)
    if request:
        _seam.request_loglik(batch, TEMPERATURES, None)
    data = left_right_2_no_padding(batch.to_tensordict())
    tu.assign_non_tensor(data, calculate_entropy=True, compute_loss=False)
    return data


class _LogitsRecorder:
    """Keeps the logits of every model forward (the hook must see exactly these)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.logits: list[torch.Tensor] = []
        self.handle = model.register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        self.logits.append(output.logits.detach())


def _reference_from_logits(logits: list[torch.Tensor], data: Any, packed: bool) -> torch.Tensor:
    """float64 ``[B, K]`` by the definition from the recorded logits, aligned by verl's own
    ``no_padding_2_padding`` (one micro-batch after another, in batch order)."""
    from verl.workers.utils.padding import no_padding_2_padding

    input_ids = data["input_ids"]
    lengths = input_ids.offsets().diff().tolist()
    flat = []
    position = 0
    for chunk in logits:
        if packed:
            flat.append(chunk.squeeze(0))
            position += chunk.shape[1]
        else:
            for row in chunk:
                flat.append(row[: lengths[position]])
                position += 1
    values = torch.cat(flat)[: input_ids.values().numel()].double()
    targets = torch.roll(input_ids.values(), shifts=-1).to(values.device)
    mask = data["response_mask"].bool()
    columns = []
    for temperature in TEMPERATURES:
        per_token = torch.log_softmax(values / temperature, dim=-1)
        per_token = per_token.gather(1, targets[:, None]).squeeze(1)
        response = no_padding_2_padding(per_token, data).to(mask.device)
        columns.append((response * mask).sum(1) / mask.sum(1))
    return torch.stack(columns, dim=1)


def _check(device: str, packed: bool, source: float, sizes: dict, autocast: torch.dtype) -> dict:
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding

    import tests.adapters.verl.testkit as kit
    from tampo_core.adapters.verl import _seam

    policy = _model(sizes, device)
    worker = kit.local_actor_worker(policy, policy, sizes["micro_batch"], packed, autocast)
    tensors = _batch(sizes, prompt=12, response=24, seed=1)
    data = _tensordict(tensors, source, request=True, device=device)
    recorder = _LogitsRecorder(policy)
    output = worker.compute_log_prob(data)
    recorder.handle.remove()
    loglik, num_tokens = _seam.pop_loglik(output)
    mask = tensors["response_mask"].bool()
    valid = mask.any(dim=1)
    own = no_padding_2_padding(tu.get(output, "log_probs"), data).cpu().float()
    own_mean = (own * mask).sum(1) / mask.sum(1)
    at_source = loglik[:, TEMPERATURES.index(source)]
    reference = _reference_from_logits(recorder.logits, data, packed).cpu()
    return {
        "packed": packed,
        "source_temperature": source,
        "logits_dtype": str(recorder.logits[0].dtype),
        "model_calls": len(recorder.logits),
        "micro_batches": -(-sizes["batch"] // sizes["micro_batch"]),
        "num_tokens_match": num_tokens.tolist() == mask.sum(1).tolist(),
        "max_gap_at_source": (at_source - own_mean)[valid].abs().max().item(),
        "max_err_all_temperatures": (loglik.double() - reference)[valid].abs().max().item(),
    }


def _timed(worker: Any, data: Any, device: str, repeats: int) -> tuple[float, int]:
    def run() -> None:
        worker.compute_log_prob(data.clone())

    run()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return (time.perf_counter() - start) / repeats, peak


def _overhead(device: str, sizes: dict, autocast: torch.dtype) -> dict:
    import tests.adapters.verl.testkit as kit

    policy = _model(sizes, device)
    worker = kit.local_actor_worker(policy, policy, sizes["micro_batch"], True, autocast)
    tensors = _batch(sizes, prompt=64, response=256 if device == "cuda" else 32, seed=2)
    repeats = 5 if device == "cuda" else 2
    plain = _timed(worker, _tensordict(tensors, 1.0, False, device), device, repeats)
    hooked = _timed(worker, _tensordict(tensors, 1.0, True, device), device, repeats)
    return {
        "plain_seconds": plain[0],
        "hooked_seconds": hooked[0],
        "time_ratio": hooked[0] / plain[0],
        "plain_peak_bytes": plain[1],
        "hooked_peak_bytes": hooked[1],
        "repeats": repeats,
    }


def _failures(checks: list[dict], autocast: torch.dtype) -> list[str]:
    from tampo_core.adapters.verl.engine_hook import (
        SELF_CHECK_ATOL,
        SELF_CHECK_ATOL_LOW_PRECISION,
    )

    gap_limit = SELF_CHECK_ATOL.get(autocast, SELF_CHECK_ATOL_LOW_PRECISION)
    err_limit = 1e-4
    failures = []
    for check in checks:
        name = f"packed={check['packed']} T={check['source_temperature']}"
        if check["model_calls"] != check["micro_batches"]:
            failures.append(f"{name}: {check['model_calls']} model calls")
        if not check["num_tokens_match"]:
            failures.append(f"{name}: token counts differ from the response mask")
        if not check["max_gap_at_source"] <= gap_limit:
            failures.append(f"{name}: gap at source {check['max_gap_at_source']:.3g}")
        if not check["max_err_all_temperatures"] <= err_limit:
            failures.append(f"{name}: error {check['max_err_all_temperatures']:.3g}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    import verl

    import tests.adapters.verl.testkit as kit

    if args.device == "cpu":
        kit.use_cpu_devices()
    kit.single_process_group()
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    autocast = torch.bfloat16 if args.device == "cuda" else torch.float32
    sizes = _sizes(args.device)
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.verl_gpu_check", *(argv or sys.argv[1:])]),
        "device": torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"cpu ({platform.machine()})",
        "versions": {"verl": verl.__version__, "torch": torch.__version__},
        "autocast_dtype": str(autocast),
        "sizes": sizes,
        "temperatures": TEMPERATURES,
    }
    try:
        report["checks"] = [
            _check(args.device, packed, source, sizes, autocast)
            for packed in (True, False)
            for source in SOURCES
        ]
        report["overhead"] = _overhead(args.device, sizes, autocast)
        report["failures"] = _failures(report["checks"], autocast)
    except Exception:  # recorded in the JSON, the exit code says it failed
        report["failures"] = [traceback.format_exc()]
    report["ok"] = not report["failures"]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "verl_gpu_check.json" if args.device == "cuda" else "verl_gpu_check_cpu.json"
    (args.out / name).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({"ok": report["ok"], "failures": report["failures"]}, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
