"""Real-LM track: GRPO on SmolLM2-135M-Instruct through the plain-torch adapter, every
temperature method, on locally generated arithmetic word problems with exact-match rewards.

    python -m benchmarks.real_lm smoke            # CPU, 2 steps, ~30-60 s (tests run it)
    python -m benchmarks.real_lm gpu              # every method x 3 seeds, one process per run

Task: one-digit arithmetic, direct ("What is 7 - 3?") or as a word problem ("Mia has 4 shells and
finds 7 more. How many shells does Mia have now?"), with +, - and x, generated from seeds
(held-out set disjoint from training; the start model solves about a quarter), asked through
the chat template with "Answer with the number only."; reward 1 when the last integer of the
completion equals the answer and the completion ended with ``<|im_end|>`` before the cap.
Training: LoRA (rank ``--lora-rank``, all linear layers; 0 = full fine-tuning), AdamW, one
on-policy GRPO step per batch (clip 0.2, no KL), ``grpo_update`` with the temperature policy
observing the loss pass's logits. Evaluation on the held-out set: greedy pass@1, pass@1 at
T = 0.6 and 1.0 and at the run's own T (mean of its last 10% of steps), as in the CPU suite.

GPU mode status: READY AND UNTESTED ON A GPU (no GPU was available to the issue that built it;
its orchestration is exercised on CPU by ``tests/benchmarks/test_real_lm.py``). Sized for one
H200: 12 methods x 3 seeds = 36 runs of 40 steps x 16 prompts x 8 rollouts x <= 32 tokens,
``--parallel 12`` processes at a time (each up to ~8 GB of GPU memory: the update's fp32 logits
are 128 x ~80 positions x 49,152), expected 5-10 minutes in total (estimated, not measured).

Getting the model to the GPU machine (it has no package index and takes at most 64 MiB of
tree per call; files it writes outside the tree stay while it is warm, about 30 s after a
call). The GGUF (98,362,432 bytes) goes in two halves, with two wheels the machine's image
lacks (``gguf``, and tampo-core itself: the source tree alone does not import as
``tampo_core.adapters``); the image has torch, transformers, peft, safetensors, accelerate:

1. here: ``python -m benchmarks.real_lm stage`` writes ``.gpu_stage/a/`` (first half) and
   ``.gpu_stage/b/`` (second half, ``pip download --no-deps gguf==0.19.0`` and
   ``pip wheel --no-deps .``); add ``/.gpu_stage/`` to ``.git/info/exclude``;
2. ``run`` with ``carry=[".gpu_stage/a"]``, command
   ``mkdir -p /tmp/smollm2 && cp .gpu_stage/a/* /tmp/smollm2/``;
3. at once (while warm), ``run`` with ``carry=[".gpu_stage/b"]``, command
   ``cp .gpu_stage/b/* /tmp/smollm2/ && python3 -m pip install -q --no-index --no-deps
   --target /tmp/site /tmp/smollm2/*.whl && R=$PWD && cd /tmp && PYTHONPATH=/tmp/site:$R
   PYTHONUNBUFFERED=1 python3 -m benchmarks.real_lm gpu --gguf-parts /tmp/smollm2
   --out /tmp/real_lm && cp /tmp/real_lm/*.md /tmp/real_lm/*.json /tmp/real_lm/*.png $OUT/
   && tar czf $OUT/runs.tgz -C /tmp/real_lm runs`` (at most 8 files come back: the tables,
   invocations.json, the three plots and the per-run JSON as one archive).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import smollm2
from benchmarks.diagnostics import RecordingMetaPolicy
from benchmarks.methods import check_method, make_temperature_policy
from benchmarks.suite import RESULTS, machine
from benchmarks.suite_report import write_report
from benchmarks.suite_run import EVAL_TEMPERATURES, MAIN_METHODS, log_step, own_temperature
from tampo_core import PAPER_TEMPERATURES, TempMetaPolicy
from tampo_core.adapters.torch_loop import group_advantages, grpo_update, sample_completions

TASK = "smollm2-arith"
GGUF_HALVES = ("a", "b")
_INT = re.compile(r"-?\d+")
_NAMES = ("Mia", "Tom", "Ana", "Raj", "Lea", "Sam", "Ivy", "Ben")
_ITEMS = ("apple", "shell", "coin", "book", "card", "stone", "pencil", "marble")
_TEMPLATES = (
    ("+", "What is {a} + {b}?"),
    ("-", "What is {a} - {b}?"),
    ("*", "What is {a} * {b}?"),
    ("+", "{n} has {a} {i}s and finds {b} more. How many {i}s does {n} have now?"),
    ("-", "{n} had {a} {i}s and gave {b} away. How many {i}s does {n} have left?"),
    ("*", "{n} buys {a} bags with {b} {i}s in each. How many {i}s does {n} buy?"),
)
EVAL_SEED = 4242


@dataclass(frozen=True)
class WordProblem:
    question: str
    answer: int


def draw_problem(rng: np.random.Generator) -> WordProblem:
    op, template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    a, b = sorted((int(x) for x in rng.integers(1, 10, size=2)), reverse=op == "-")
    name, item = _NAMES[int(rng.integers(len(_NAMES)))], _ITEMS[int(rng.integers(len(_ITEMS)))]
    answer = a + b if op == "+" else a - b if op == "-" else a * b
    return WordProblem(template.format(n=name, a=a, b=b, i=item), answer)


def problems(n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[WordProblem]:
    """``n`` problems with distinct questions, none in ``exclude``."""
    rng, out, seen = np.random.default_rng(seed), [], set(exclude)
    while len(out) < n:
        p = draw_problem(rng)
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


def reward(text: str, answer: int, finished: bool) -> float:
    """1.0 when the completion ended before the cap and its last integer is ``answer``."""
    found = _INT.findall(text)
    return float(finished and bool(found) and int(found[-1]) == answer)


@dataclass(frozen=True)
class RealLMConfig:
    """One run; ``lora_rank`` 0 means full fine-tuning; ``lr`` None: 2e-4 with LoRA, 1e-5 for
    full fine-tuning."""

    method: str
    seed: int
    steps: int = 40
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 32
    lr: float | None = None
    lora_rank: int = 16
    pool_size: int = 600
    eval_size: int = 128
    eval_samples: int = 4
    eval_temperatures: tuple[float, ...] = EVAL_TEMPERATURES
    device: str = "cpu"

    def path(self, out_dir: Path) -> Path:
        return out_dir / "runs" / TASK / self.method / f"seed{self.seed}.json"


class Encoder:
    """Chat-template prompts, left padded: (int64 [N, P] ids, int64 [N, P] attention mask)."""

    def __init__(self, tokenizer: Any, device: str) -> None:
        self.tok, self.device = tokenizer, device

    def __call__(self, batch: list[WordProblem]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [
            self.tok.apply_chat_template(
                [{"role": "user", "content": f"{p.question} Answer with the number only."}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for p in batch
        ]
        enc = self.tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)


def _score(
    tok: Any, batch: list[WordProblem], ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """(float32 [N] rewards, truncation rate) of completions ids/mask [N, L]."""
    rewards, cut = [], 0
    for p, row, m in zip(batch, ids.tolist(), mask.tolist(), strict=True):
        toks = [t for t, keep in zip(row, m, strict=True) if keep]
        finished = bool(toks) and toks[-1] == tok.eos_token_id
        cut += not finished
        rewards.append(reward(tok.decode(toks, skip_special_tokens=True), p.answer, finished))
    return torch.tensor(rewards), cut / max(len(batch), 1)


def _sample(
    model: Any, enc: Encoder, batch: list[WordProblem], t: float, cfg: RealLMConfig, gen: Any
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    ids, mask = enc(batch)
    rollout = sample_completions(
        model,
        ids,
        attention_mask=mask,
        temperature=t,
        max_new_tokens=cfg.max_new_tokens,
        eos_token_id=enc.tok.eos_token_id,
        pad_token_id=enc.tok.pad_token_id,
        generator=gen,
    )
    return rollout, ids, mask


def _evaluate(
    model: Any, enc: Encoder, held_out: list[WordProblem], cfg: RealLMConfig, own: float | None
) -> dict[str, float]:
    settings: dict[str, float] = {"greedy": 0.0, **{f"T{t:.1f}": t for t in cfg.eval_temperatures}}
    if own is not None:
        settings["own"] = own
    out = {}
    for label, t in settings.items():
        gen = torch.Generator(device=cfg.device).manual_seed(10_000 + cfg.seed)
        batch = held_out if t == 0.0 else [p for p in held_out for _ in range(cfg.eval_samples)]
        rewards, cuts = [], []
        for i in range(0, len(batch), 64):
            part = batch[i : i + 64]
            rollout, _, _ = _sample(model, enc, part, t, cfg, gen)
            r, cut = _score(enc.tok, part, rollout.completion_ids, rollout.completion_mask)
            rewards.append(r)
            cuts.append(cut * len(part))
        out[f"pass@1/{label}"] = float(torch.cat(rewards).mean())
        out[f"truncation/{label}"] = float(sum(cuts) / len(batch))
    return out


def _probe_logprobs(model: Any, enc: Encoder, probe: list[WordProblem]) -> torch.Tensor:
    """float32 [N, V] next-token log-probs after each probe prompt (the LM's distribution)."""
    ids, mask = enc(probe)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -1].float()
    return torch.log_softmax(logits, -1).cpu()


def _with_lora(model: Any, rank: int) -> Any:
    import peft

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    return peft.get_peft_model(model, cfg)


def run(cfg: RealLMConfig, model_dir: Path | None) -> dict[str, Any]:
    """Train and evaluate one (method, seed); returns a record in the CPU suite's format."""
    torch.manual_seed(cfg.seed)
    model, tok = smollm2.load(model_dir)
    if cfg.lora_rank:
        model = _with_lora(model, cfg.lora_rank)
    model.to(cfg.device)
    enc = Encoder(tok, cfg.device)
    held_out = problems(cfg.eval_size, EVAL_SEED)
    pool = problems(cfg.pool_size, cfg.seed + 1, frozenset(p.question for p in held_out))
    probe = held_out[:4]
    before = _probe_logprobs(model, enc, probe)
    lr = cfg.lr if cfg.lr is not None else 2e-4 if cfg.lora_rank else 1e-5
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    tp = make_temperature_policy(
        cfg.method,
        steps=cfg.steps,
        group_size=cfg.group_size,
        vocab_size=len(tok),
        seed=cfg.seed,
    )
    if isinstance(tp, TempMetaPolicy):
        tp = RecordingMetaPolicy(tp)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    keys = ("temperature", "reward", "truncation", "step_seconds", "entropy", "diversity")
    log: dict[str, list[Any]] = {k: [] for k in keys}
    for _ in range(cfg.steps):
        t0 = time.perf_counter()
        temperature = tp.sample()
        idx = rng.choice(len(pool), cfg.prompts_per_step, replace=False)
        batch = [pool[i] for i in idx for _ in range(cfg.group_size)]
        rollout, ids, mask = _sample(model, enc, batch, temperature, cfg, gen)
        rewards, cut = _score(tok, batch, rollout.completion_ids, rollout.completion_mask)
        adv = group_advantages(rewards.to(cfg.device), cfg.group_size, "grpo")
        grpo_update(
            model, opt, ids, rollout, adv, temperature, temperature_policy=tp, attention_mask=mask
        )
        log_step(log, tp, time.perf_counter() - t0, temperature, rewards, cut)
    if isinstance(tp, RecordingMetaPolicy):
        log.update(tp.record)
    shift = float((_probe_logprobs(model, enc, probe) - before).abs().max())
    own = own_temperature(log["temperature"]) if log["temperature"] else None
    model.eval()
    final = _evaluate(model, enc, held_out, cfg, own)
    steps = log["step_seconds"]
    spec = {**dataclasses.asdict(cfg), "task": TASK, "lr_effective": lr}
    return {
        "spec": spec,
        "key": json.dumps(spec, sort_keys=True),
        "final": final,
        "own_T": own,
        "curve": [{"step": cfg.steps, "pass@1/greedy": final["pass@1/greedy"]}],
        "log": log,
        "temperatures": list(PAPER_TEMPERATURES),
        "probe_max_logprob_shift": shift,
        "median_step_seconds": float(np.median(steps)) if steps else 0.0,
    }


def _run_and_save(args: tuple[RealLMConfig, Path, Path | None]) -> str:
    cfg, out_dir, model_dir = args
    if cfg.device == "cpu":
        torch.set_num_threads(1)
    record = run(cfg, model_dir)
    path = cfg.path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return f"{cfg.method}/seed{cfg.seed}"


def join_gguf(parts_dir: Path) -> Path:
    """Reassemble the GGUF halves staged by ``stage`` in ``parts_dir``."""
    target = parts_dir / smollm2.GGUF_NAME
    if not target.exists():
        with target.open("wb") as f:
            for half in GGUF_HALVES:
                f.write((parts_dir / f"{smollm2.GGUF_NAME}.part-{half}").read_bytes())
    return target


def stage(out: Path) -> None:
    """Write the two carry folders of the GPU plan (module docstring)."""
    data = smollm2.installed_gguf().read_bytes()
    mid = len(data) // 2
    for half, chunk in zip(GGUF_HALVES, (data[:mid], data[mid:]), strict=True):
        (out / half).mkdir(parents=True, exist_ok=True)
        (out / half / f"{smollm2.GGUF_NAME}.part-{half}").write_bytes(chunk)
    pip = [sys.executable, "-m", "pip"]
    b = str(out / "b")
    subprocess.run([*pip, "download", "--no-deps", "gguf==0.19.0", "-d", b], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", ".", "-w", b], check=True)
    print(f"staged {len(data)} bytes in {out}/a and {out}/b")


def main(argv: list[str] | None = None) -> Path | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("smoke", "gpu", "stage"))
    ap.add_argument("--methods", nargs="+", type=check_method, help="default: the suite's")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=12, help="processes at a time")
    ap.add_argument("--device", help="default: cuda for gpu mode, cpu for smoke")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lora-rank", type=int)
    ap.add_argument("--model-dir", type=Path, help="safetensors cache (default: smollm2's)")
    ap.add_argument("--gguf-parts", type=Path, help="folder with the staged GGUF halves")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.mode == "stage":
        stage(a.out or Path(".gpu_stage"))
        return None
    model_dir = a.model_dir
    if a.gguf_parts is not None:
        model_dir = model_dir or a.gguf_parts / "converted"
        if not (model_dir / "model.safetensors").exists():
            smollm2.convert(join_gguf(a.gguf_parts), model_dir)
    if a.mode == "smoke":
        overrides: dict[str, Any] = {
            "steps": 2,
            "prompts_per_step": 4,
            "group_size": 4,
            "max_new_tokens": 16,
            "lora_rank": 4,
            "pool_size": 64,
            "eval_size": 4,
            "eval_samples": 2,
            "device": a.device or "cpu",
        }
        methods, seeds, out = (
            a.methods or ["tampo-w0"],
            1,
            a.out or RESULTS / "_scratch" / "real_lm_smoke",
        )
    else:
        overrides = {"device": a.device or "cuda"}
        methods, seeds, out = (
            a.methods or list(MAIN_METHODS),
            a.seeds,
            a.out or RESULTS / "real_lm_gpu",
        )
    if a.steps is not None:
        overrides["steps"] = a.steps
    if a.lora_rank is not None:
        overrides["lora_rank"] = a.lora_rank
    if a.mode == "smoke" and overrides["lora_rank"]:
        overrides["lr"] = 1e-3  # two steps must move the LoRA weights visibly
    configs = [RealLMConfig(method=m, seed=s, **overrides) for m in methods for s in range(seeds)]
    todo = [c for c in configs if not c.path(out).exists()]
    smollm2.load(model_dir)  # convert once before any worker starts
    start = time.time()
    print(f"real-LM {a.mode}: {len(configs)} runs, {len(todo)} to do -> {out}", flush=True)
    jobs = [(c, out, model_dir) for c in todo]
    if a.parallel <= 1 or len(jobs) <= 1:
        for job in jobs:
            print(f"run {_run_and_save(job)} done ({time.time() - start:.0f} s)", flush=True)
    else:
        with ProcessPoolExecutor(a.parallel, mp_context=mp.get_context("spawn")) as pool:
            for name in pool.map(_run_and_save, jobs):
                print(f"run {name} done ({time.time() - start:.0f} s)", flush=True)
    meta = {
        "command": shlex.join(["python", "-m", "benchmarks.real_lm", *(argv or sys.argv[1:])]),
        "mode": a.mode,
        "runs_done_now": len(todo),
        "wall_seconds_this_invocation": round(time.time() - start, 1),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {
            **machine(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "run_config": {
            k: v for k, v in dataclasses.asdict(configs[0]).items() if k not in ("method", "seed")
        },
        "device": overrides["device"],
    }
    log_path = out / "invocations.json"
    history = json.loads(log_path.read_text()) if log_path.exists() else []
    log_path.write_text(json.dumps([*history, meta], indent=1))
    paths = write_report(out, ("sft", *MAIN_METHODS))
    print(f"-> {paths['md']}")
    return out


if __name__ == "__main__":
    main()
