"""Contract with the installed OpenRLHF, the launcher and the TAMPO options (no Ray started)."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from types import SimpleNamespace

import pytest

openrlhf = pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

import openrlhf.trainer.ppo_trainer as ppo_trainer_module  # noqa: E402
import openrlhf.trainer.ppo_trainer_async as ppo_trainer_async_module  # noqa: E402

import tests.adapters.openrlhf.testkit as kit  # noqa: E402
from tampo_core.adapters.openrlhf import _seam, launch  # noqa: E402
from tampo_core.adapters.openrlhf.options import TampoOptions  # noqa: E402


def test_installed_openrlhf_meets_the_contract():
    _seam.check_trainer_contract()
    _seam.check_launcher_contract()


def test_version_check_refuses_other_versions():
    assert str(_seam.check_openrlhf_version("0.11.2")) == "0.11.2"
    for version in ("0.10.2", "0.11.0", "0.12.0"):
        with pytest.raises(ImportError, match=r">=0.11.1"):
            _seam.check_openrlhf_version(version)


def test_importing_the_seam_checks_the_version(monkeypatch):
    installed = importlib.metadata.version

    def version(name: str) -> str:
        return "0.12.0" if name == "openrlhf" else installed(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ImportError, match=r"openrlhf>=0.11.1,<0.12"):
        importlib.reload(_seam)
    monkeypatch.undo()
    importlib.reload(_seam)


def test_contract_check_fails_loudly_on_a_changed_internal(monkeypatch):
    changed = (
        (
            "openrlhf.trainer.ppo_trainer",
            "BasePPOTrainer.train_step",
            ("self.experience_maker.make_experience_batch(rollout_samples, extra)",),
        ),
        ("openrlhf.trainer.ppo_trainer", "BasePPOTrainer.renamed_method", ("x",)),
    )
    monkeypatch.setattr(_seam, "_SOURCE_CONTRACT", changed)
    with pytest.raises(RuntimeError, match="changed") as error:
        _seam.check_trainer_contract()
    assert "no longer contains" in str(error.value) and "renamed_method" in str(error.value)
    monkeypatch.setattr(_seam, "TRAINER_METHODS", {"train_step": ("self", "samples")})
    with pytest.raises(RuntimeError, match="expected parameters"):
        _seam.check_trainer_contract()


def test_unsupported_features_are_named():
    args = kit.cli_args(kit.ppo_argv(**{"--train.async_enable": ""}))
    assert _seam.unsupported_features(args) == [f"--train.async_enable: {_seam.ASYNC_REFUSAL}"]
    assert _seam.unsupported_features(kit.cli_args(kit.ppo_argv())) == []


def test_options_are_recorded_in_the_args_that_wandb_logs(monkeypatch):
    from openrlhf.utils.logging_utils import WandbLogger

    args = kit.cli_args(kit.ppo_argv(**{"--logger.wandb.key": "unused"}))
    options = TampoOptions(chunk_size=8)
    strategy = SimpleNamespace(args=args)
    recorded = _seam.record_options(
        ("model", strategy, None, None, None, None, None), {}, options.flat()
    )
    assert recorded is args and vars(args.tampo) == options.flat()
    configs = []
    fake_wandb = SimpleNamespace(
        api=SimpleNamespace(api_key="set"),
        init=lambda **kwargs: configs.append(kwargs["config"]),
        define_metric=lambda *a, **k: None,
        Table=lambda columns: None,
    )
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    WandbLogger(args)  # OpenRLHF's own logger: the run config is args.__dict__
    assert vars(configs[0]["tampo"]) == options.flat()
    assert configs[0]["tampo"].top_p == 0.7 and configs[0]["tampo"].chunk_size == 8


def test_launcher_swaps_the_trainer_and_passes_the_rest(monkeypatch):
    monkeypatch.setattr(ppo_trainer_module, "PPOTrainer", ppo_trainer_module.PPOTrainer)
    monkeypatch.setattr(
        ppo_trainer_async_module, "PPOTrainerAsync", ppo_trainer_async_module.PPOTrainerAsync
    )
    seen = {}

    def fake_run_module(name, run_name, alter_sys):
        import sys

        seen["module"], seen["argv"] = name, list(sys.argv)
        seen["trainer"] = ppo_trainer_module.PPOTrainer
        seen["async"] = ppo_trainer_async_module.PPOTrainerAsync

    monkeypatch.setattr(launch.runpy, "run_module", fake_run_module)
    monkeypatch.setattr(launch.sys, "argv", ["launch"])
    launch.main(["--tampo.top_p", "0.4", "--tampo.chunk_size", "8", *kit.ppo_argv()])
    assert seen["module"] == "openrlhf.cli.train_ppo_ray"
    assert seen["argv"][1:] == kit.ppo_argv()
    from tampo_core.adapters.openrlhf.trainer import BoundTampoTrainer

    assert isinstance(seen["trainer"], BoundTampoTrainer)
    assert seen["trainer"].options.config.top_p == 0.4 and seen["trainer"].options.chunk_size == 8
    with pytest.raises(ValueError, match="async PPO") as refused:
        seen["async"].remote()
    assert str(refused.value) == f"--train.async_enable: {_seam.ASYNC_REFUSAL}"


def test_launcher_runs_the_real_cli_up_to_the_trainer(monkeypatch):
    monkeypatch.setattr(ppo_trainer_module, "PPOTrainer", ppo_trainer_module.PPOTrainer)
    monkeypatch.setattr(
        ppo_trainer_async_module, "PPOTrainerAsync", ppo_trainer_async_module.PPOTrainerAsync
    )
    monkeypatch.setattr(launch.sys, "argv", ["launch"])
    argv = ["--tampo.warmup_steps", "3", *kit.ppo_argv()]
    args = kit.cli_args_through(launch.main, argv)
    assert args.rollout.n_samples_per_prompt == 4
    assert ppo_trainer_module.PPOTrainer.options.config.warmup_steps == 3


def test_launcher_refuses_async_and_lists_tampo_options(capsys, monkeypatch):
    with pytest.raises(SystemExit, match="async PPO") as refused:
        launch.main([*kit.ppo_argv(), "--train.async_enable"])
    assert str(refused.value).endswith(f"--train.async_enable: {_seam.ASYNC_REFUSAL}")
    monkeypatch.setattr(ppo_trainer_module, "PPOTrainer", ppo_trainer_module.PPOTrainer)
    monkeypatch.setattr(
        ppo_trainer_async_module, "PPOTrainerAsync", ppo_trainer_async_module.PPOTrainerAsync
    )
    monkeypatch.setattr(launch.sys, "argv", ["launch"])
    with pytest.raises(SystemExit) as exit_info:
        launch.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--tampo.top_p" in out and "--rollout.temperature" in out
