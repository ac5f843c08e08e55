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
from tests.adapters.trl.tiny_model import (  # noqa: E402
    PROMPTS,
    WORDS,
    build_tokenizer,
    grpo_config,
    make_trainer,
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


def _observed(trainer: Any) -> list[np.ndarray]:
    """Patch the meta-policy to record every ``observe_loglik`` input: the ``[N, K]``
    likelihoods with the ``[N]`` token counts appended as a last column."""
    seen: list[np.ndarray] = []
    original = trainer.tampo_policy.observe_loglik

    def spy(loglik: np.ndarray, advantages: np.ndarray, **kwargs: Any) -> Any:
        assert set(kwargs) == {"num_tokens", "sync"} and kwargs["sync"] is False
        counts = np.asarray(kwargs["num_tokens"])
        assert counts.dtype == np.int64 and (counts > 0).all()
        seen.append(np.column_stack([np.asarray(loglik), counts]))
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
        probs = [entry[f"tampo/prob/{float(t)!r}"] for t in TEMPS]
        assert abs(sum(probs) - 1.0) < 1e-9
        assert {"tampo/entropy", "tampo/support_size"} <= set(entry)
        assert all(np.isfinite(entry[f"tampo/adv/{float(t)!r}"]) for t in TEMPS)
    last = steps[-1]
    np.testing.assert_allclose(
        [last[f"tampo/prob/{float(t)!r}"] for t in TEMPS], trainer.tampo_policy.probs
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
    assert saved["mid_round"] is False and saved["policy"]["num_updates"] == 3
    assert saved["policy"]["last_temperature"] == temps_full[2]

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


def _draw_steps(trainer: Any) -> list[tuple[int, float]]:
    """Patch the meta-policy to record (global step, T) of every draw."""
    draws: list[tuple[int, float]] = []
    sample = trainer.tampo_policy.sample

    def spy() -> float:
        draws.append((trainer.state.global_step, sample()))
        return draws[-1][1]

    trainer.tampo_policy.sample = spy
    return draws


def test_mid_round_checkpoint_redraws_the_rounds_temperature(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A checkpoint inside a round saves the state from before that round's draw: TRL
    regenerates the round on resume, and it is drawn at the same T.

    TRL restarts its micro-step counter on resume, so the regenerated round starts at the
    resumed step: later round boundaries shift by the micro-batches the interrupted round had
    consumed (documented in README; this pins the behaviour so a TRL change is noticed)."""
    overrides = {
        "max_steps": 4,
        "steps_per_generation": 2,
        "save_strategy": "steps",
        "save_steps": 1,
    }
    trainer = make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, overrides, tampo=LEARNING)
    full_draws = _draw_steps(trainer)
    trainer.train()
    saved = json.loads((tmp_path / "checkpoint-1" / STATE_FILE).read_text())
    assert saved["mid_round"] is True and saved["policy"]["num_updates"] == 0
    assert saved["policy"]["last_temperature"] is None  # saved before the round's draw
    resumed = make_trainer(
        TampoGRPOTrainer, tiny_model_dir, tmp_path / "resumed", overrides, tampo=LEARNING
    )
    resumed_draws = _draw_steps(resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    assert [step for step, _ in full_draws] == [0, 2]
    assert [step for step, _ in resumed_draws] == [1, 3]  # boundaries shifted by one step
    assert resumed_draws[0][1] == full_draws[0][1]  # the interrupted round's T, redrawn


@pytest.mark.parametrize(
    ("config", "kwargs", "error", "match"),
    [
        (
            {"generation_kwargs": {"temperature": 0.9}},
            {},
            ValueError,
            r"GRPOConfig.generation_kwargs\['temperature'\]: expected no value .*, got 0.9$",
        ),
        (
            {"generation_kwargs": {"do_sample": False}},
            {},
            ValueError,
            r"generation_kwargs\['do_sample'\]: expected True or unset .*greedy.*, got False$",
        ),
        (
            {"generation_kwargs": {"num_beams": 2}},
            {},
            ValueError,
            r"generation_kwargs\['num_beams'\]: expected 1 or unset .*, got 2$",
        ),
        (
            {},
            {"loss_temperature": "sometimes"},
            ValueError,
            r"^loss_temperature: expected one of \('sampled', 'fixed'\), got 'sometimes'$",
        ),
        (
            {},
            {"likelihood_source": "magic"},
            ValueError,
            r"^likelihood_source: expected one of \('hidden_states', 'extra_forward'\), "
            r"got 'magic'$",
        ),
        (
            {},
            {"eval_temperature": 0.0},
            ValueError,
            r"^eval_temperature: expected a temperature in \[0.0001, 10000\], finite and > 0, "
            r"got 0.0$",
        ),
        (
            {},
            {"eval_temperature": "hot"},
            TypeError,
            r"^eval_temperature: expected a finite real number, got str 'hot'$",
        ),
        (
            {},
            {"tampo": {"temperatures": TEMPS}},
            TypeError,
            r"^tampo: expected a TampoConfig, got dict ",
        ),
    ],
)
def test_invalid_configurations_fail_clearly(
    tiny_model_dir: Path, tmp_path: Path, config: dict, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, config, **kwargs)


def test_fixed_loss_temperature_with_vllm_importance_sampling_is_refused() -> None:
    from tampo_core.adapters.trl.grpo_args import check_grpo_args

    args = grpo_config(Path("unused"))
    args.use_vllm, args.vllm_importance_sampling_correction = True, True
    with pytest.raises(
        ValueError,
        match=r"^loss_temperature: expected 'sampled' with use_vllm=True and "
        r"vllm_importance_sampling_correction=True .*, got 'fixed'$",
    ):
        check_grpo_args(args, "fixed")
    check_grpo_args(args, "sampled")


def test_truncated_sampling_warns(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(
        UserWarning, match=r"truncated or constrained sampling \(\{'top_p': 0.9, 'top_k': 5\}\)"
    ):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, {"top_p": 0.9, "top_k": 5})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="TAMPO with truncated or constrained sampling")
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


def _drawn_temperatures(trainer: Any) -> list[float]:
    """Patch the meta-policy to record every temperature it draws."""
    drawn: list[float] = []
    sample = trainer.tampo_policy.sample

    def spy() -> float:
        drawn.append(sample())
        return drawn[-1]

    trainer.tampo_policy.sample = spy
    return drawn


def test_logged_temperature_is_the_last_draw_and_the_window_mean_is_separate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two rounds per logging window: ``tampo/temperature`` is the second round's T (a
    candidate), ``tampo/temperature_window_mean`` the mean of both."""
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"max_steps": 8, "logging_steps": 2},
        tampo=LEARNING,
    )
    drawn = _drawn_temperatures(trainer)
    trainer.train()
    entries = [e for e in trainer.state.log_history if "loss" in e]
    assert len(drawn) == 8 and len(entries) == 4 and len(set(drawn)) > 1
    for index, entry in enumerate(entries):
        window = drawn[2 * index : 2 * index + 2]
        assert entry["tampo/temperature"] == window[-1]
        assert entry["tampo/temperature_window_mean"] == pytest.approx(sum(window) / 2)
    assert any(e["tampo/temperature"] != e["tampo/temperature_window_mean"] for e in entries)


def test_steps_without_a_round_log_the_temperature_in_effect(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """steps_per_generation = 2 with one micro-batch per step: every other step generates
    nothing, and still logs the T its batch was sampled at (and no window mean)."""
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"max_steps": 4, **LAYOUTS["old_pass"][0]},
        tampo=LEARNING,
    )
    drawn = _drawn_temperatures(trainer)
    trainer.train()
    entries = [e for e in trainer.state.log_history if "loss" in e]
    assert len(drawn) == 2 and len(entries) == 4
    assert [e["tampo/temperature"] for e in entries] == [t for t in drawn for _ in range(2)]
    assert ["tampo/temperature_window_mean" in e for e in entries] == [True, False, True, False]


@pytest.mark.parametrize(
    "generation_kwargs",
    [{"min_new_tokens": 6}, {"min_length": 9}, {"no_repeat_ngram_size": 2}, {"min_tokens": 3}],
)
def test_constrained_sampling_warns(
    tiny_model_dir: Path, tmp_path: Path, generation_kwargs: dict[str, Any]
) -> None:
    ((key, value),) = generation_kwargs.items()
    with pytest.warns(
        UserWarning,
        match=r"truncated or constrained sampling "
        + rf"\(\{{\"generation_kwargs\['{key}'\]\": {value}\}}\)",
    ):
        make_trainer(
            TampoGRPOTrainer, tiny_model_dir, tmp_path, {"generation_kwargs": generation_kwargs}
        )


@pytest.mark.parametrize(
    ("kwargs", "config", "name"),
    [
        ({"eval_temperature": torch.tensor([0.7, 1.0])}, {}, "eval_temperature"),
        ({"eval_temperature": [0.7, 1.0]}, {}, "eval_temperature"),
        ({"eval_temperature": np.array([0.7, 1.0])}, {}, "eval_temperature"),
    ],
)
def test_per_row_temperatures_are_refused_with_the_reason(
    tiny_model_dir: Path, tmp_path: Path, kwargs: dict[str, Any], config: dict, name: str
) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^{name}: expected one float \(TRL's HF-generate path takes one temperature per "
        r"generate call and its fused LM head closes over one scalar temperature.*per-prompt",
    ):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, config, **kwargs)


def test_per_row_grpo_temperature_is_refused() -> None:
    from tampo_core.adapters.trl.grpo_args import check_grpo_args

    args = grpo_config(Path("unused"))
    args.temperature = [0.7, 1.0]
    with pytest.raises(ValueError, match=r"^GRPOConfig.temperature: expected one float \(TRL's"):
        check_grpo_args(args, "sampled")


def test_contextual_policy_is_refused_with_the_reason(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tampo_core.contextual import ContextualTempMetaPolicy

    policy = ContextualTempMetaPolicy.__new__(ContextualTempMetaPolicy)  # only its type matters
    with pytest.raises(
        TypeError,
        match=r"^tampo: expected a TampoConfig .*contextual per-prompt policy are refused: "
        r"TRL's HF-generate path takes one temperature.*got ContextualTempMetaPolicy$",
    ):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, tampo=policy)


def test_batch_baseline_meta_advantage_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"^TampoConfig.meta_advantage: expected 'given' .*got 'batch_baseline'$"
    ):
        make_trainer(
            TampoGRPOTrainer,
            tiny_model_dir,
            tmp_path,
            tampo=TampoConfig(meta_advantage="batch_baseline"),
        )


def test_rloo_and_async_grpo_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    class TampoRLOO(TampoGRPOTrainer, trl.RLOOTrainer):
        pass

    with pytest.raises(
        TypeError, match=r"^TampoRLOO: expected a GRPOTrainer without RLOOTrainer, got a class"
    ):
        make_trainer(TampoRLOO, tiny_model_dir, tmp_path)
    async_grpo = pytest.importorskip("trl.experimental.async_grpo")

    class TampoAsync(TampoGRPOTrainer, async_grpo.AsyncGRPOTrainer):
        pass

    with pytest.raises(TypeError, match=r"AsyncGRPOTrainer.*read args.temperature once"):
        _seam.check_trainer_class(TampoAsync)


def test_sharded_head_needs_the_fallback(tiny_model_dir: Path, tmp_path: Path) -> None:
    """FSDP / ZeRO-3 cannot run on this CPU machine: the refusal is checked with the detector
    patched (the detector itself is covered in test_seam)."""
    with (
        patch.object(_seam, "sharded_lm_head", return_value="FSDP shards the LM head"),
        pytest.raises(
            ValueError,
            match=r"^likelihood_source: expected 'extra_forward' when the LM head is sharded .*"
            r"got 'hidden_states' while FSDP shards the LM head$",
        ),
    ):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, tampo=LEARNING)
    with patch.object(_seam, "sharded_lm_head", return_value="FSDP shards the LM head"):
        make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, likelihood_source="extra_forward")
