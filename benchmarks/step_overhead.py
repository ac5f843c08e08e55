"""TAMPO's share of a real GRPO update step on a GPU (issue 15), for both likelihood paths.

    PYTHONUNBUFFERED=1 python -m benchmarks.step_overhead --out DIR     # one GPU, ~2 min (estimate)
    python -m benchmarks.step_overhead --tiny --out DIR                 # CPU, seconds

A Qwen2-architecture causal LM is built from a config (``--model 0.5b``: Qwen2.5-0.5B's shapes,
``1.5b``: Qwen2.5-1.5B's; random weights, nothing is downloaded) with fp32 weights, AdamW and
bf16 autocast on CUDA. One update step: for each micro-batch, forward on prompt + completion,
the GRPO surrogate ``-mean(A * log pi_T(o))`` at T = 1, backward; then one optimizer step. The
three arms differ only in TAMPO's work, all inside the step:

- ``grpo``: nothing else;
- ``tampo_logits``: per micro-batch ``multi_temperature_loglik`` on the detached completion
  logits the loss already has, then one ``observe_loglik`` per step;
- ``tampo_hidden``: the same from the final hidden states and the LM head
  (``multi_temperature_loglik_from_hidden``; the forward also returns hidden states).

Arms are interleaved round by round (rotating order, one warm-up round dropped); a step's time
is wall time between device synchronisations. The overhead is reported per round against the
same round's ``grpo`` step (median and quartiles) and as the ratio of medians. One extra,
instrumented step per TAMPO arm times the TAMPO work alone (synchronised around it). The two
paths' likelihoods are compared on the first micro-batch (they must agree to fp32/bf16
rounding). Writes ``step_overhead.json`` (with the command) under ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tampo_core import TempMetaPolicy
from tampo_core.loglik import multi_temperature_loglik, multi_temperature_loglik_from_hidden
from tampo_core.loglik.result import TemperatureLoglik

ARMS = ("grpo", "tampo_logits", "tampo_hidden")
GOAL_FRACTION = 0.01


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


MODELS = {
    "0.5b": Shape(896, 24, 14, 2, 4864, 151_936),
    "1.5b": Shape(1536, 28, 12, 2, 8960, 151_936),
    "tiny": Shape(64, 2, 4, 2, 128, 1000),
}


def build_model(shape: Shape, device: torch.device, seed: int) -> torch.nn.Module:
    """A Qwen2ForCausalLM with ``shape``, random weights (fp32), tied embeddings, SDPA."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).to(device).train()


@dataclass
class Batch:
    ids: torch.Tensor  # [B, P + C]
    advantages: torch.Tensor  # [B]
    prompt: int

    @property
    def completion(self) -> torch.Tensor:
        return self.ids[:, self.prompt :]


def make_batch(args: argparse.Namespace, vocab: int, device: torch.device) -> Batch:
    gen = torch.Generator(device="cpu").manual_seed(0)
    total = args.prompt_tokens + args.completion_tokens
    ids = torch.randint(0, vocab, (args.completions, total), generator=gen)
    adv = torch.randn(args.completions, generator=gen)
    return Batch(ids.to(device), adv.to(device), args.prompt_tokens)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """fp32 ``log softmax(logits)[tokens]`` at T = 1 (the surrogate's log-probabilities).

    Written out rather than imported from ``tampo_core.adapters`` (which only an install maps
    into place), so the script runs from a bare checkout on the GPU machine."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """One update step of one arm; ``tampo_seconds`` is filled when ``instrument`` is set."""

    def __init__(
        self,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        policy: TempMetaPolicy,
        batch: Batch,
        micro_batch: int,
        device: torch.device,
    ) -> None:
        self.model, self.opt, self.policy, self.batch = model, opt, policy, batch
        self.micro_batch, self.device = micro_batch, device
        self.tampo_seconds = 0.0

    def autocast(self) -> torch.autocast:
        """bf16 autocast on CUDA, a no-op on CPU."""
        enabled = self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _tampo(self, fn: Callable[[], Any], instrument: bool) -> Any:
        if not instrument:
            return fn()
        sync(self.device)
        start = time.perf_counter()
        out = fn()
        sync(self.device)
        self.tampo_seconds += time.perf_counter() - start
        return out

    def from_logits(self, out: Any, comp: torch.Tensor) -> TemperatureLoglik:
        """TAMPO's likelihoods from a forward output's (detached) completion logits."""
        logits = out.logits[:, self.batch.prompt - 1 : -1].detach()
        return multi_temperature_loglik(logits, comp, self.policy.temperatures)

    def from_hidden(self, out: Any, comp: torch.Tensor) -> TemperatureLoglik:
        """The same from its final (post-norm) hidden states and the LM head."""
        hidden = out.hidden_states[-1][:, self.batch.prompt - 1 : -1].detach()
        weight = self.model.get_output_embeddings().weight.detach()
        with self.autocast():
            return multi_temperature_loglik_from_hidden(
                hidden, weight, comp, self.policy.temperatures
            )

    def run(self, arm: str, instrument: bool = False) -> float:
        """Seconds of one step of ``arm`` (synchronised before and after)."""
        self.tampo_seconds = 0.0
        p, ids, adv = self.batch.prompt, self.batch.ids, self.batch.advantages
        paths = {"tampo_logits": self.from_logits, "tampo_hidden": self.from_hidden}
        sync(self.device)
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        parts: list[TemperatureLoglik] = []
        for lo in range(0, ids.shape[0], self.micro_batch):
            mb = ids[lo : lo + self.micro_batch]
            comp = mb[:, p:]
            with self.autocast():
                out = self.model(
                    input_ids=mb, use_cache=False, output_hidden_states=arm == "tampo_hidden"
                )
            logits = out.logits[:, p - 1 : -1]
            logp = token_logprobs(logits, comp)
            loss = -(adv[lo : lo + self.micro_batch, None] * logp).mean()
            loss.mul(mb.shape[0] / ids.shape[0]).backward()
            if arm in paths:
                parts.append(self._tampo(functools.partial(paths[arm], out, comp), instrument))
            del out, logits, logp, loss
        if parts:
            joined = TemperatureLoglik(
                torch.cat([x.loglik for x in parts]), torch.cat([x.num_tokens for x in parts])
            )
            self._tampo(lambda: self.policy.observe_loglik(joined, adv), instrument)
        self.opt.step()
        sync(self.device)
        return time.perf_counter() - start


def quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]] if values else []
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch (CPU)")
    parser.add_argument("--model", choices=sorted(MODELS), default="0.5b")
    parser.add_argument("--completions", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--completion-tokens", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (plus one warm-up)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.model, args.completions, args.prompt_tokens = "tiny", 8, 8
        args.completion_tokens, args.micro_batch, args.rounds = 16, 4, 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke run")
    shape = MODELS[args.model]
    model = build_model(shape, device, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    policy = TempMetaPolicy(warmup_steps=0, seed=0)
    batch = make_batch(args, shape.vocab, device)
    step = Step(model, opt, policy, batch, args.micro_batch, device)
    command = " ".join([sys.executable, "-m", "benchmarks.step_overhead", *(argv or sys.argv[1:])])
    print(f"{args.model} on {device}, {args.completions} x {args.completion_tokens} tokens")

    with torch.no_grad(), step.autocast():
        out = model(input_ids=batch.ids[: args.micro_batch], output_hidden_states=True)
    comp = batch.completion[: args.micro_batch]
    gap = step.from_logits(out, comp).loglik - step.from_hidden(out, comp).loglik
    path_gap = float(gap.abs().max())
    del out

    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for round_index in range(args.rounds + 1):
        order = ARMS[round_index % 3 :] + ARMS[: round_index % 3]
        seconds_of = {arm: step.run(arm) for arm in order}
        if round_index:
            for arm, seconds in seconds_of.items():
                times[arm].append(seconds)
        shown = ", ".join(f"{a} {seconds_of[a]:.3f} s" for a in ARMS)
        print(f"round {round_index}{' (warm-up)' if not round_index else ''}: {shown}")
    work = {}
    for arm in ARMS[1:]:
        step.run(arm, instrument=True)
        work[arm] = step.tampo_seconds
    median = {arm: statistics.median(v) for arm, v in times.items()}
    report: dict = {
        "command": command,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": {"preset": args.model, **asdict(shape)},
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": {
            "completions": args.completions,
            "prompt_tokens": args.prompt_tokens,
            "completion_tokens": args.completion_tokens,
            "micro_batch": args.micro_batch,
            "temperatures": list(policy.temperatures),
        },
        "rounds": args.rounds,
        "step_seconds": times,
        "median_step_seconds": median,
        "goal_fraction_of_step": GOAL_FRACTION,
        "likelihood_paths_max_abs_gap": path_gap,
        "meta_policy_updates": policy.num_updates,
        "arms": {},
    }
    for arm in ARMS[1:]:
        paired = [t / g - 1 for t, g in zip(times[arm], times["grpo"], strict=True)]
        report["arms"][arm] = {
            "overhead_of_medians": median[arm] / median["grpo"] - 1,
            "median_paired_overhead": statistics.median(paired),
            "paired_overhead_quartiles": quartiles(paired),
            "tampo_work_seconds": work[arm],
            "tampo_work_fraction_of_grpo_step": work[arm] / median["grpo"],
            "meets_goal": median[arm] / median["grpo"] - 1 <= GOAL_FRACTION,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["arms"], indent=2))
    print(f"likelihood paths agree to {path_gap:.2e}; wrote {args.out / 'step_overhead.json'}")
    return report


if __name__ == "__main__":
    main()
