"""Contract with the installed verl, the entry point and the TAMPO options (no Ray started)."""

from __future__ import annotations

import pytest

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")

import verl.trainer.main_ppo as main_ppo_module
import verl.trainer.main_ppo_v0 as runner_module

from tampo_core import TampoConfig
from tampo_core.adapters.verl import _seam, main
from tampo_core.adapters.verl.options import (
    TampoOptions,
    option_names,
    parse_tampo_overrides,
)

SMALL_RUN = [
    "algorithm.adv_estimator=grpo",
    "data.train_batch_size=4",
    "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.actor.ppo_mini_batch_size=2",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1",
    "trainer.n_gpus_per_node=1",
]


def test_installed_verl_meets_the_contract():
    _seam.check_contract()
    _seam.check_launcher_contract()


def test_version_check_refuses_other_versions():
    assert str(_seam.check_verl_version("0.9.1")) == "0.9.1"
    for version in ("0.8.2", "0.10.0"):
        with pytest.raises(ImportError, match=r">=0.9,<0.10"):
            _seam.check_verl_version(version)


def test_contract_check_fails_loudly_on_a_changed_internal(monkeypatch):
    changed = (
        ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._update_actor", ("a renamed call(",)),
        ("verl.trainer.ppo.ray_trainer", "RayPPOTrainer.renamed_method", ("x",)),
    )
    monkeypatch.setattr(_seam, "_SOURCE_CONTRACT", changed)
    with pytest.raises(RuntimeError, match="changed") as error:
        _seam.check_contract()
    assert "no longer contains" in str(error.value) and "renamed_method" in str(error.value)
    monkeypatch.setattr(
        _seam,
        "_METHOD_PARAMS",
        (("verl.trainer.ppo.ray_trainer", "RayPPOTrainer._update_actor", ("self", "data")),),
    )
    monkeypatch.setattr(_seam, "_SOURCE_CONTRACT", ())
    with pytest.raises(RuntimeError, match="expected parameters"):
        _seam.check_contract()


def test_worker_init_model_stays_a_registered_worker_method():
    from verl.single_controller.base.decorator import MAGIC_ATTR, Dispatch

    from tampo_core.adapters.verl.worker import TampoActorRolloutRefWorker

    attrs = getattr(TampoActorRolloutRefWorker.init_model, MAGIC_ATTR)
    assert attrs["dispatch_mode"] == Dispatch.ONE_TO_ALL
    assert issubclass(TampoActorRolloutRefWorker, _seam.worker_base_class())


def test_every_tampo_config_field_is_an_option():
    assert set(TampoConfig.model_fields) <= set(option_names())
    options, rest = parse_tampo_overrides(
        [
            "tampo.temperatures=[0.7,1.0,1.3]",
            "tampo.ema_alpha=0.2",
            "tampo.top_p=0.5",
            "tampo.warmup_steps=3",
            "++tampo.seed=11",
            "tampo.chunk_size=16",
            "tampo.detailed_metrics=true",
            "data.train_batch_size=4",
        ]
    )
    assert options.config == TampoConfig(
        temperatures=(0.7, 1.0, 1.3), ema_alpha=0.2, top_p=0.5, warmup_steps=3, seed=11
    )
    assert options.chunk_size == 16 and options.detailed_metrics is True
    assert rest == ["data.train_batch_size=4"]
    assert parse_tampo_overrides([])[0] == TampoOptions()
    with pytest.raises(SystemExit, match="unknown TAMPO option"):
        parse_tampo_overrides(["tampo.topp=0.5"])
    with pytest.raises(ValueError, match="top_p"):
        parse_tampo_overrides(["tampo.top_p=1.5"])
    with pytest.raises(ValueError, match="chunk_size"):
        TampoOptions(chunk_size=0)


def _run_main(monkeypatch, argv: list[str]) -> dict:
    seen: dict = {}

    def capture(config, task_runner_class):
        seen["config"], seen["runner"] = config, task_runner_class

    monkeypatch.setattr(main_ppo_module, "run_ppo", capture)
    monkeypatch.setattr(runner_module, "TaskRunner", runner_module.TaskRunner)
    monkeypatch.setattr(main.sys, "argv", ["main"])
    main.main(argv)
    return seen


def test_entry_point_runs_verls_hydra_main_with_the_tampo_task_runner(monkeypatch, tmp_path):
    from tests.adapters.verl.testkit import write_model_dir

    monkeypatch.chdir(tmp_path)
    model = f"actor_rollout_ref.model.path={write_model_dir(tmp_path / 'model')}"
    seen = _run_main(monkeypatch, ["tampo.top_p=0.4", "tampo.chunk_size=8", model, *SMALL_RUN])
    from tampo_core.adapters.verl.task_runner import BoundTampoTaskRunner

    runner = seen["runner"]
    assert isinstance(runner, BoundTampoTaskRunner)
    assert runner.tampo_options.config.top_p == 0.4 and runner.tampo_options.chunk_size == 8
    config = seen["config"]
    assert config.trainer.use_v1 is False and config.data.train_batch_size == 4
    assert _seam.unsupported_features(config) == []
    assert runner.options(num_cpus=1).actor_options == {"num_cpus": 1}


def test_entry_point_refuses_the_v1_trainer_and_lists_tampo_options(monkeypatch, capsys):
    with pytest.raises(SystemExit, match="TransferQueue"):
        main.main(["trainer.use_v1=true", *SMALL_RUN])
    assert main.verl_overrides(["trainer.use_v1=false"]) == ["trainer.use_v1=false"]
    monkeypatch.setattr(main.sys, "argv", ["main"])
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "tampo.top_p" in out and "actor_rollout_ref" in out


def test_unsupported_features_are_named():
    from tests.adapters.verl.testkit import compose_config

    config = compose_config(
        [
            "trainer.use_v1=true",
            "algorithm.adv_estimator=remax",
            "actor_rollout_ref.actor.strategy=megatron",
            "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2",
            "actor_rollout_ref.rollout.multi_turn.enable=true",
            "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=my.Manager",
        ]
    )
    reasons = " ".join(_seam.unsupported_features(config))
    for part in ("use_v1", "remax", "megatron", "ulysses", "multi_turn", "my.Manager"):
        assert part in reasons
    _seam.use_tampo_agent_loop(config)
    assert config.actor_rollout_ref.rollout.agent.agent_loop_manager_class == (
        _seam.AGENT_LOOP_MANAGER
    )
