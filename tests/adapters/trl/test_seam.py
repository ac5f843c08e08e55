"""Contract tests of the TRL seam: they fail loudly when TRL changes the internals it touches."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
import torch

trl = pytest.importorskip("trl")

from tampo_core import TampoConfig  # noqa: E402
from tampo_core.adapters.trl import TampoGRPOTrainer, _seam  # noqa: E402
from tests.adapters.trl.tiny_model import make_trainer  # noqa: E402

TEMPS = (0.5, 1.0, 1.7)


def _fused_and_manual(model: torch.nn.Module, temperature: float) -> tuple[torch.Tensor, ...]:
    """Fused per-token log-probs of a fixed batch vs log_softmax(z / T) of the real logits."""
    torch.manual_seed(0)
    input_ids = torch.randint(3, 11, (3, 7))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :2] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    with torch.no_grad():
        fused = model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True
        ).log_probs  # [B, L - 1], position t scores token t + 1
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    manual = torch.log_softmax(logits / temperature, dim=-1)
    manual = manual.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    valid = labels[:, 1:] != -100
    return fused[valid], manual[valid]


def test_supported_versions_and_clear_refusal() -> None:
    assert _seam.check_trl_version() in _seam.SUPPORTED_TRL
    _seam.check_trl_version("1.16.0")
    for version in ("1.15.0", "1.14.2", "1.17.0", "0.29.0"):
        with pytest.raises(ImportError, match=rf"trl>=1.16,<1.17.*got trl {version}"):
            _seam.check_trl_version(version)


def test_the_install_extra_admits_every_version_the_seam_accepts() -> None:
    """``tampo-core[trl]`` must not exclude a version the seam supports."""
    import tomllib

    from packaging.requirements import Requirement

    from tests.paths import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (pin,) = [Requirement(r).specifier for r in extras["trl"] if Requirement(r).name == "trl"]
    for version in ("1.16.0", "1.16.1", "1.16.9"):
        assert (version in pin) == (version in _seam.SUPPORTED_TRL), version


def test_overridden_methods_still_exist_with_their_parameters() -> None:
    _seam.check_overridden_methods(trl.GRPOTrainer)

    class Changed:
        def _generate_and_score_completions(self, batch: Any) -> None: ...

    with pytest.raises(RuntimeError, match="_generate_and_score_completions changed"):
        _seam.check_overridden_methods(Changed)


def test_fused_head_temperature_is_frozen_in_trl(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Why the seam exists: setting ``trainer.temperature`` does not reach TRL's loss. If TRL
    makes it mutable, this fails and the seam can be simplified."""
    trainer = make_trainer(trl.GRPOTrainer, tiny_model_dir, tmp_path)
    trainer.temperature = 0.5
    fused, manual = _fused_and_manual(trainer.model, 1.0)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_cell_write_gives_log_softmax_at_t(
    tiny_model_dir: Path, tmp_path: Path, beta: float
) -> None:
    trainer = make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path, {"beta": beta})
    models = [trainer.model] + ([trainer.ref_model] if beta else [])
    assert len(trainer._temperature_cells) == len(models)
    for temperature in TEMPS:
        trainer._apply_temperature(temperature)
        for model in models:
            fused, manual = _fused_and_manual(model, temperature)
            torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)


def test_fused_head_cells_reads_trl_closure(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(trl.GRPOTrainer, tiny_model_dir, tmp_path)
    cells = _seam.fused_head_cells(_seam.patched_model(trainer.model))
    assert cells["temperature"].cell_contents == trainer.args.temperature
    assert cells["logit_scale"].cell_contents == 1.0
    assert cells["final_logit_softcapping"].cell_contents is None
    with pytest.raises(RuntimeError, match="no TRL fused LM head"):
        _seam.fused_head_cells(torch.nn.Linear(2, 2))


def test_backbone_output_feeds_the_fused_head(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The hook's assumption: the fused forward runs ``model.base_model`` with input_ids and
    attention_mask as keywords, and its ``last_hidden_state`` goes through the LM head."""
    trainer = make_trainer(TampoGRPOTrainer, tiny_model_dir, tmp_path)
    seen: list[dict[str, Any]] = []
    handle = _seam.backbone(trainer.model).register_forward_hook(
        lambda m, a, kw, out: seen.append({"kwargs": set(kw), "hidden": out.last_hidden_state}),
        with_kwargs=True,
    )
    input_ids = torch.randint(3, 11, (2, 5))
    labels = input_ids.clone()
    with torch.no_grad():
        fused = trainer.model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            labels=labels,
            fused_lm_head=True,
        ).log_probs
    handle.remove()
    assert len(seen) == 1 and {"input_ids", "attention_mask"} <= seen[0]["kwargs"]
    logits = seen[0]["hidden"] @ trainer.model.get_output_embeddings().weight.T
    manual = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-5)


def test_generate_sees_the_sampled_temperature(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(
        TampoGRPOTrainer,
        tiny_model_dir,
        tmp_path,
        {"max_steps": 4},
        tampo=TampoConfig(temperatures=TEMPS, warmup_steps=0, top_p=1.0),
    )
    seen: list[float] = []
    generate = trainer.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["generation_config"].temperature)
        return generate(*args, **kwargs)

    with patch.object(trainer.model, "generate", spy):
        trainer.train()
    logged = [e["tampo/temperature"] for e in trainer.state.log_history if "tampo/temperature" in e]
    assert len(seen) == 4 and seen == logged
    assert set(seen) <= set(TEMPS)
    assert trainer._temperature_cells[0].cell_contents == seen[-1]


def test_vllm_sampler_gets_the_temperature() -> None:
    """vLLM (colocate and server) reads ``VLLMGeneration.temperature`` on every call."""
    vllm_trainer = SimpleNamespace(use_vllm=True, vllm_generation=SimpleNamespace(temperature=1.0))
    _seam.set_sampling_temperature(vllm_trainer, 0.7)
    assert vllm_trainer.temperature == 0.7 and vllm_trainer.vllm_generation.temperature == 0.7
    from trl.generation.vllm_generation import VLLMGeneration

    assert "self.temperature" in __import__("inspect").getsource(VLLMGeneration.generate)


def test_sharded_lm_head_is_detected() -> None:
    def trainer(fsdp: bool, deepspeed: bool, stage: int) -> SimpleNamespace:
        plugin = SimpleNamespace(zero_stage=stage) if deepspeed else None
        state = SimpleNamespace(deepspeed_plugin=plugin)
        return SimpleNamespace(
            is_fsdp_enabled=fsdp,
            is_deepspeed_enabled=deepspeed,
            accelerator=SimpleNamespace(state=state),
        )

    assert _seam.sharded_lm_head(trainer(False, False, 0)) is None
    assert _seam.sharded_lm_head(trainer(False, True, 2)) is None
    assert "ZeRO-3" in str(_seam.sharded_lm_head(trainer(False, True, 3)))
    assert "FSDP" in str(_seam.sharded_lm_head(trainer(True, False, 0)))


def test_missing_output_keys_fail_loudly() -> None:
    output = dict.fromkeys(_seam.OUTPUT_KEYS)
    _seam.check_output_keys(output)
    del output["advantages"]
    with pytest.raises(RuntimeError, match=r"no longer returns \['advantages'\]"):
        _seam.check_output_keys(output)


def test_sharded_head_detector_reads_a_real_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The attributes ``sharded_lm_head`` reads exist on TRL's trainer (single CPU process:
    nothing is sharded)."""
    trainer = make_trainer(trl.GRPOTrainer, tiny_model_dir, tmp_path)
    assert _seam.sharded_lm_head(trainer) is None


def test_unsupported_trainers_still_exist_in_trl() -> None:
    """The trainers refused by name are TRL's (a rename would silently drop the refusal)."""
    assert trl.RLOOTrainer.__name__ in _seam.UNSUPPORTED_TRAINERS
    assert not issubclass(trl.RLOOTrainer, trl.GRPOTrainer)
    async_grpo = pytest.importorskip("trl.experimental.async_grpo")
    assert async_grpo.AsyncGRPOTrainer.__name__ in _seam.UNSUPPORTED_TRAINERS
    assert "temperature=self.args.temperature" in __import__("inspect").getsource(
        async_grpo.AsyncGRPOTrainer
    )


def test_loss_mask_is_completion_times_tool_mask() -> None:
    completion = torch.tensor([[1, 1, 0]])
    assert _seam.loss_mask({"completion_mask": completion}) is completion
    tool = torch.tensor([[1, 0, 1]])
    assert _seam.loss_mask({"completion_mask": completion, "tool_mask": tool}).tolist() == [
        [1, 0, 0]
    ]
