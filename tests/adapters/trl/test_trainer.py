"""Behaviour of TampoGRPOTrainer on a tiny local model (CPU, no hub)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
import torch

trl = pytest.importorskip("trl")

from tampo_core import TampoConfig  # noqa: E402
from tampo_core.adapters.trl import TampoGRPOTrainer, _seam  # noqa: E402
from tampo_core.adapters.trl.trainer import STATE_FILE, TEMPERATURE_KEY  # noqa: E402
from tests.adapters.trl.test_tiny_model import (  # noqa: E402
    PROMPTS,
    WORDS,
    build_tokenizer,
    grpo_config,
    make_trainer,
    save_tiny_model,
    scoring_pass_counter,
)

TEMPS = (0.5, 1.0, 1.7)
LEARNING = TampoConfig(temperatures=TEMPS, warmup_steps=0, top_p=1.0, ema_alpha=0.5)

# (config overrides, whether TRL runs its no-grad old-log-prob pass)
LAYOUTS = {
    "aligned": ({}, False),
    "old_pass": ({"steps_per_generation": 2, "per_device_train_batch_size": 2}, True),
    "iterations": (
        {"num_iterations": 2, "steps_per_generation": 2, "gradient_accumulation_steps": 4},
        False,
    ),
    "iterations_old_pass": ({"num_iterations": 2, "steps_per_generation": 2}, True),
    "reference": ({"beta": 0.1}, False),
}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny_qwen2"))


def _observed(trainer: Any) -> list[np.ndarray]:
    """Patch the meta-policy to record every ``observe_loglik`` input."""
    seen: list[np.ndarray] = []
    original = trainer.tampo_policy.observe_loglik

    def spy(loglik: np.ndarray, advantages: np.ndarray, **kwargs: Any) -> Any:
        seen.append(np.asarray(loglik).copy())
        assert kwargs == {"sync": False}
        return original(loglik, advantages, **kwargs)

    trainer.tampo_policy.observe_loglik = spy
    return seen


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_zero_extra_backbone_passes(tiny_model_dir: Path, tmp_path: Path, layout: str) -> None:
    """Scoring passes (backbone without KV cache) of GRPO and TAMPO are equal in number; the
    explicit fallback adds one pass over each round's rows, in per-device chunks."""
    overrides, old_pass = LAYOUTS[layout]
    counts, updates = {}, {}
    for name, cls, kwargs in (
        ("grpo", trl.GRPOTrainer, {}),
        ("tampo", TampoGRPOTrainer, {"tampo": LEARNING}),
        ("fallback", TampoGRPOTrainer, {"tampo": LEARNING, "likelihood_source": "extra_forward"}),
    ):
        trainer = make_trainer(cls, tiny_model_dir, tmp_path / name, overrides, **kwargs)
        assert _seam.old_logps_pass_runs(trainer) is old_pass
        counter = scoring_pass_counter(trainer.model)
        trainer.train()
        counts[name] = counter[0]
        updates[name] = getattr(trainer, "tampo_policy", None) and trainer.tampo_policy.num_updates
    args = trainer.args
    generate_every = args.steps_per_generation * trainer.num_iterations
    rounds = -(-args.max_steps * args.gradient_accumulation_steps // generate_every)
    assert counts["tampo"] == counts["grpo"] > 0
    assert counts["fallback"] == counts["grpo"] + rounds * args.steps_per_generation
    assert updates["tampo"] == updates["fallback"] == rounds


@pytest.mark.parametrize("layout", ["aligned", "old_pass", "iterations"])
def test_hidden_state_likelihoods_match_real_logits(
    tiny_model_dir: Path, tmp_path: Path, layout: str
) -> None:
    """With lr = 0 the weights never move, so the hook's likelihoods (from the training or the
    old-log-prob pass) must equal those of an extra pass over real logits."""
    overrides = {**LAYOUTS[layout][0], "learning_rate": 0.0}
    observed = {}
    for source in ("hidden_states", "extra_forward"):
        trainer = make_trainer(
            TampoGRPOTrainer,
            tiny_model_dir,
            tmp_path / source,
            overrides,
            tampo=LEARNING,
            likelihood_source=source,
        )
        observed[source] = _observed(trainer)
        trainer.train()
    assert len(observed["hidden_states"]) == len(observed["extra_forward"]) > 0
    for hidden, real in zip(observed["hidden_states"], observed["extra_forward"], strict=True):
        # rows are shuffled across micro-batches in the hook path: compare as sorted sets
        np.testing.assert_allclose(
            hidden[np.lexsort(hidden.T)], real[np.lexsort(real.T)], rtol=1e-5, atol=1e-5
        )


def test_each_micro_batch_uses_its_rounds_temperature_across_eval(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """steps_per_generation = num_iterations = 2 and evaluation every step: every loss is
    computed at the T its batch was generated with, evaluation at eval_temperature."""
    eval_t = 0.8
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {
            "num_iterations": 2,
            "steps_per_generation": 2,
            "max_steps": 8,
            "eval_strategy": "steps",
            "eval_steps": 1,
            "per_device_eval_batch_size": 4,
            "beta": 0.1,
        },
        tampo=LEARNING,
        eval_temperature=eval_t,
        eval_dataset=__import__("datasets").Dataset.from_dict({"prompt": list(PROMPTS)}),
    )
    calls: list[tuple[bool, float, float]] = []
    original = trl.GRPOTrainer._compute_loss

    def spy(self: Any, model: Any, inputs: dict[str, Any]) -> Any:
        cells = [c.cell_contents for c in self._temperature_cells]
        assert len(set(cells)) == 1
        calls.append((self.model.training, float(inputs[TEMPERATURE_KEY][0]), cells[0]))
        return original(self, model, inputs)

    with patch.object(trl.GRPOTrainer, "_compute_loss", spy):
        trainer.train()
    train_calls = [c for c in calls if c[0]]
    eval_calls = [c for c in calls if not c[0]]
    assert len(train_calls) == 8 and len(eval_calls) == 8 * len(PROMPTS)  # 4 batches per eval
    assert all(tag == cell for _, tag, cell in train_calls)
    assert all(tag == cell == eval_t for _, tag, cell in eval_calls)
    # one round per steps_per_generation * num_iterations = 4 micro-batches
    rounds = [train_calls[i][1] for i in range(0, 8, 4)]
    assert [c[1] for c in train_calls] == [t for t in rounds for _ in range(4)]
    assert trainer.tampo_policy.num_updates == 2
    logged = [e["tampo/temperature"] for e in trainer.state.log_history if "tampo/temperature" in e]
    assert logged[:1] == rounds[:1]
    assert [e["eval_tampo/temperature"] for e in trainer.state.log_history if "eval_loss" in e] == [
        eval_t
    ] * 8


def test_metrics_reach_trl_logs(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, tampo=LEARNING)
    trainer.train()
    steps = [e for e in trainer.state.log_history if "loss" in e]
    assert len(steps) == 3
    for entry in steps:
        assert entry["tampo/temperature"] in TEMPS
        probs = [entry[f"tampo/prob/{t:g}"] for t in TEMPS]
        assert abs(sum(probs) - 1.0) < 1e-9
        assert {"tampo/entropy", "tampo/support_size"} <= set(entry)
        assert all(np.isfinite(entry[f"tampo/adv/{t:g}"]) for t in TEMPS)
    last = steps[-1]
    np.testing.assert_allclose(
        [last[f"tampo/prob/{t:g}"] for t in TEMPS], trainer.tampo_policy.probs
    )


def _temperatures_and_state(trainer: Any) -> tuple[list[float], dict[str, Any]]:
    logged = [e["tampo/temperature"] for e in trainer.state.log_history if "tampo/temperature" in e]
    return logged, trainer.tampo_policy.state_dict()


def test_resume_reproduces_the_temperature_sequence(tiny_model_dir: Path, tmp_path: Path) -> None:
    overrides = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    full = make_trainer(
        TampoGRPOTrainer, tiny_model_dir, tmp_path / "full", overrides, tampo=LEARNING
    )
    full.train()
    temps_full, state_full = _temperatures_and_state(full)
    checkpoint = tmp_path / "full" / "checkpoint-3"
    saved = json.loads((checkpoint / STATE_FILE).read_text())
    assert saved["mid_round"] is False and saved["policy"]["num_samples"] == 3

    resumed = make_trainer(
        TampoGRPOTrainer, tiny_model_dir, tmp_path / "resumed", overrides, tampo=LEARNING
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    temps_resumed, state_resumed = _temperatures_and_state(resumed)
    assert len(set(temps_full)) > 1  # the sequence is not trivially constant
    # the resumed log history holds the checkpoint's 3 steps, then the newly drawn ones
    assert len(temps_resumed) == 6 and temps_resumed[3:] == temps_full[3:]
    assert state_resumed["rng"] == state_full["rng"]
    np.testing.assert_allclose(state_resumed["ema"], state_full["ema"], rtol=1e-6, atol=1e-9)

    fresh = make_trainer(
        TampoGRPOTrainer, tiny_model_dir, tmp_path / "fresh", overrides, tampo=LEARNING
    )
    (checkpoint / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=STATE_FILE):
        fresh.train(resume_from_checkpoint=str(checkpoint))


def test_mid_round_checkpoint_redraws_the_rounds_temperature(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint inside a round saves the state from before that round's draw: TRL
    regenerates the round on resume, and it is drawn at the same T."""
    overrides = {
        "max_steps": 4,
        "steps_per_generation": 2,
        "save_strategy": "steps",
        "save_steps": 1,
    }
    trainer = make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, overrides, tampo=LEARNING)
    trainer.train()
    temps, _ = _temperatures_and_state(trainer)
    saved = json.loads((tmp_path / "checkpoint-1" / STATE_FILE).read_text())
    assert saved["mid_round"] is True and saved["policy"]["num_samples"] == 0
    resumed = make_trainer(
        TampoGRPOTrainer, tiny_model_dir, tmp_path / "resumed", overrides, tampo=LEARNING
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert _temperatures_and_state(resumed)[0][1] == temps[0]  # [0]: the checkpoint's step


@pytest.mark.parametrize(
    ("config", "kwargs", "error", "match"),
    [
        ({"generation_kwargs": {"temperature": 0.9}}, {}, ValueError, "must not set 'temperature'"),
        ({}, {"loss_temperature": "sometimes"}, ValueError, "loss_temperature must be one of"),
        ({}, {"likelihood_source": "magic"}, ValueError, "likelihood_source must be one of"),
        ({}, {"eval_temperature": 0.0}, ValueError, "eval_temperature must be a finite float > 0"),
        ({}, {"eval_temperature": "hot"}, TypeError, "eval_temperature must be a float"),
        ({}, {"tampo": {"temperatures": TEMPS}}, TypeError, "tampo must be a TampoConfig"),
    ],
)
def test_invalid_configurations_fail_clearly(
    tiny_model_dir: Path, tmp_path: Path, config: dict, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, config, **kwargs)


def test_fixed_loss_temperature_with_vllm_importance_sampling_is_refused() -> None:
    from tampo_core.adapters.trl.validation import check_grpo_args

    args = grpo_config(Path("unused"))
    args.use_vllm, args.vllm_importance_sampling_correction = True, True
    with pytest.raises(ValueError, match="loss_temperature='fixed' with use_vllm=True"):
        check_grpo_args(args, "fixed")
    check_grpo_args(args, "sampled")


def test_truncated_sampling_warns(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"truncated sampling \(\{'top_p': 0.9, 'top_k': 5\}\)"):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, {"top_p": 0.9, "top_k": 5})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="TAMPO with truncated sampling")
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path)


def test_fixed_loss_temperature_keeps_the_head_at_config_t(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"temperature": 0.9},
        tampo=LEARNING,
        loss_temperature="fixed",
    )
    trainer.train()
    assert trainer.temperature in TEMPS
    assert trainer._temperature_cells[0].cell_contents == 0.9


def test_softcapped_model_needs_the_fallback(tmp_path: Path) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=len(WORDS),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        final_logit_softcapping=30.0,
    )
    Gemma2ForCausalLM(config).save_pretrained(tmp_path / "gemma2")
    build_tokenizer().save_pretrained(tmp_path / "gemma2")
    with pytest.raises(ValueError, match=r"final_logit_softcapping=30\.0"):
        make_trainer(TampoGRPOTrainer, tmp_path / "gemma2", tmp_path / "out", tampo=LEARNING)
    trainer = make_trainer(
        TampoGRPOTrainer,
        tmp_path / "gemma2",
        tmp_path / "out",
        {"max_steps": 1},
        tampo=LEARNING,
        likelihood_source="extra_forward",
    )
    trainer.train()
    assert trainer.tampo_policy.num_updates == 1


def test_training_equals_grpo_when_the_policy_draws_the_config_temperature(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """top_p = 0 on a flat EMA draws the lowest candidate, 1.0 = GRPOConfig.temperature: one
    TAMPO step must then train exactly like GRPO (the hook and the update touch nothing)."""
    trainers = []
    for cls, kwargs in (
        (trl.GRPOTrainer, {}),
        (
            TampoGRPOTrainer,
            {"tampo": TampoConfig(temperatures=(1.0, 1.5), warmup_steps=0, top_p=0.0)},
        ),
    ):  # built and trained one after the other: construction re-seeds the global RNG
        trainers.append(
            make_trainer(cls, tiny_model_dir, tmp_path / cls.__name__, {"max_steps": 1}, **kwargs)
        )
        trainers[-1].train()
    assert trainers[1].tampo_policy.last_temperature == 1.0
    assert trainers[1].tampo_policy.num_updates == 1
    losses = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in trainers]
    assert losses[0] == losses[1] and losses[0][0] != 0.0
    for grpo_param, tampo_param in zip(
        trainers[0].model.parameters(), trainers[1].model.parameters(), strict=True
    ):
        assert torch.equal(grpo_param, tampo_param)


@pytest.mark.parametrize("layout", ["aligned", "old_pass"])
def test_peft_reference_pass_is_never_captured(
    tiny_model_dir: Path, tmp_path: Path, layout: str
) -> None:
    """With PEFT and beta > 0 TRL scores the reference by disabling the adapter on the policy
    itself. A random (non-zero) LoRA makes policy != reference, so capturing the reference pass
    would break the equality with the real-logit likelihoods; pass counts match GRPO's."""
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    overrides = {**LAYOUTS[layout][0], "beta": 0.1, "learning_rate": 0.0}
    observed, counts = {}, {}
    for name, cls, kwargs in (
        ("grpo", trl.GRPOTrainer, {}),
        ("hidden_states", TampoGRPOTrainer, {"tampo": LEARNING}),
        (
            "extra_forward",
            TampoGRPOTrainer,
            {"tampo": LEARNING, "likelihood_source": "extra_forward"},
        ),
    ):
        trainer = make_trainer(
            cls, tiny_model_dir, tmp_path / name, overrides, peft_config=lora, **kwargs
        )
        assert (
            trainer.ref_model is None and _seam.old_logps_pass_runs(trainer) is LAYOUTS[layout][1]
        )
        if name != "grpo":
            observed[name] = _observed(trainer)
        counter = scoring_pass_counter(_seam.patched_model(trainer.model))
        trainer.train()
        counts[name] = counter[0]
    assert counts["hidden_states"] == counts["grpo"] > 0
    assert len(observed["hidden_states"]) == len(observed["extra_forward"]) > 0
    for hidden, real in zip(observed["hidden_states"], observed["extra_forward"], strict=True):
        np.testing.assert_allclose(
            hidden[np.lexsort(hidden.T)], real[np.lexsort(real.T)], rtol=1e-5, atol=1e-5
        )
