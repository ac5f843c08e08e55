"""The likelihood hook inside verl's real worker and engine path, on CPU (no Ray, no FSDP).

Real: ``ActorRolloutRefWorker.compute_log_prob`` / ``compute_ref_log_prob`` ->
``TrainingWorker.infer_batch`` -> ``FSDPEngine.forward_backward_batch`` (micro-batching) ->
``FSDPEngineWithLMHead.forward_step`` / ``prepare_model_inputs`` / ``prepare_model_outputs`` ->
``postprocess_batch_func`` -> ``_postprocess_output``, on ``DataProto.to_tensordict`` and
``left_right_2_no_padding`` batches, as ``RayPPOTrainer._compute_old_log_prob`` builds them.
Stand-ins (``testkit``): the engine object is built without FSDP wrapping, device helpers say
"cpu", a gloo world of one.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("verl", reason="verl is not installed (scripts/ci/install-verl.sh installs it)")

import tests.adapters.verl.testkit as kit
from tampo_core.adapters.verl import _seam

TEMPERATURES = (0.6, 0.8, 1.0, 1.3)
BATCH, MICRO_BATCH = 8, 2


@pytest.fixture(scope="module", autouse=True)
def cpu_verl():
    torch.set_num_threads(1)
    kit.use_cpu_devices()
    kit.single_process_group()


def _tensordict(tensors: dict, temperature, request: bool):
    from verl.protocol import DataProto
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    batch = DataProto.from_single_dict(dict(tensors))
    batch.meta_info["global_token_num"] = tensors["attention_mask"].sum(-1).tolist()
    if isinstance(temperature, torch.Tensor):
        batch.batch["temperature"] = temperature
    else:
        _seam.set_batch_temperature(batch, temperature)
    if request:
        _seam.request_loglik(batch, TEMPERATURES, 3)
    data = left_right_2_no_padding(batch.to_tensordict())
    tu.assign_non_tensor(data, calculate_entropy=True, compute_loss=False)
    return data


def _log_probs(output, data):
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding

    return no_padding_2_padding(tu.get(output, "log_probs"), data)


@pytest.mark.parametrize("remove_padding", [True, False], ids=["packed", "padded"])
def test_old_log_prob_pass_returns_the_likelihoods(remove_padding):
    policy, reference = kit.tiny_model(), kit.tiny_model(seed=7)
    counter = kit.CallCounter(policy)
    worker = kit.local_actor_worker(policy, reference, MICRO_BATCH, remove_padding)
    tensors = kit.random_batch(BATCH)
    temperature = 0.8
    data = _tensordict(tensors, temperature, request=True)
    output = worker.compute_log_prob(data)
    assert counter.calls == BATCH // MICRO_BATCH, "one model call per micro-batch forward"

    found = _seam.pop_loglik(output)
    assert found is not None
    loglik, num_tokens = found
    assert loglik.shape == (BATCH, len(TEMPERATURES)) and loglik.dtype == torch.float32
    assert num_tokens.tolist() == tensors["response_mask"].sum(1).tolist()
    expected = kit.reference_loglik(policy, tensors, TEMPERATURES)
    torch.testing.assert_close(loglik.double(), expected, atol=2e-5, rtol=1e-5)
    own = kit.verl_response_mean(_log_probs(output, data), tensors["response_mask"])
    torch.testing.assert_close(loglik[:, TEMPERATURES.index(temperature)], own, atol=2e-5, rtol=0)

    # Without the request (reference, training passes) nothing is added and the model runs once.
    before = counter.calls
    plain = worker.compute_log_prob(_tensordict(tensors, temperature, request=False))
    assert _seam.pop_loglik(plain) is None
    assert counter.calls - before == BATCH // MICRO_BATCH
    torch.testing.assert_close(_log_probs(plain, data), _log_probs(output, data))


def test_per_sample_temperatures_flow_through_engine_and_hook():
    policy = kit.tiny_model()
    worker = kit.local_actor_worker(policy, kit.tiny_model(seed=7), MICRO_BATCH, True)
    tensors = kit.random_batch(BATCH, seed=5)
    indices = [i % len(TEMPERATURES) for i in range(BATCH)]
    per_sample = torch.tensor([TEMPERATURES[i] for i in indices])
    data = _tensordict(tensors, per_sample, request=True)
    output = worker.compute_log_prob(data)
    loglik, _ = _seam.pop_loglik(output)
    torch.testing.assert_close(
        loglik.double(), kit.reference_loglik(policy, tensors, TEMPERATURES), atol=2e-5, rtol=1e-5
    )
    own = kit.verl_response_mean(_log_probs(output, data), tensors["response_mask"])
    at_t = loglik.gather(1, torch.tensor(indices)[:, None]).squeeze(1)
    torch.testing.assert_close(at_t, own, atol=2e-5, rtol=0)


def test_reference_pass_is_untouched_and_at_the_given_temperature():
    policy, reference = kit.tiny_model(), kit.tiny_model(seed=7)
    worker = kit.local_actor_worker(policy, reference, MICRO_BATCH, True)
    tensors = kit.random_batch(BATCH)
    data = _tensordict(tensors, 1.3, request=True)
    output = worker.compute_ref_log_prob(data)
    assert _seam.pop_loglik(output) is None, "only the policy engine is hooked"
    expected = kit.reference_loglik(reference, tensors, (1.3,))[:, 0]
    own = kit.verl_response_mean(_log_probs(output, data), tensors["response_mask"])
    torch.testing.assert_close(own.double(), expected, atol=2e-5, rtol=1e-5)


def test_hook_refuses_what_it_cannot_score():
    worker = kit.local_actor_worker(kit.tiny_model(), kit.tiny_model(seed=7), MICRO_BATCH, True)
    tensors = kit.random_batch(BATCH)
    with pytest.raises(ValueError, match="not one of the candidate temperatures"):
        worker.compute_log_prob(_tensordict(tensors, 0.7, request=True))
    worker.actor.engine.use_ulysses_sp = True
    with pytest.raises(RuntimeError, match="Ulysses"):
        worker.compute_log_prob(_tensordict(tensors, 0.8, request=True))


def test_dynamic_batch_sizing_keeps_each_sample_with_its_likelihoods():
    """verl regroups samples into token-budget micro-batches and restores the order of every
    model-output key; the likelihood rows travel the same way."""
    policy = kit.tiny_model()
    counter = kit.CallCounter(policy)
    worker = kit.local_actor_worker(policy, kit.tiny_model(seed=7), MICRO_BATCH, True)
    worker.actor.engine = kit.local_engine(policy, MICRO_BATCH, True, max_token_len=12)
    worker.actor.engine_config = worker.actor.engine.engine_config
    from tampo_core.adapters.verl.engine_hook import install_engine_hook

    assert install_engine_hook(worker)
    tensors = kit.random_batch(BATCH, seed=11)
    data = _tensordict(tensors, 1.0, request=True)
    output = worker.compute_log_prob(data)
    assert counter.calls > 1, "several micro-batches"
    loglik, num_tokens = _seam.pop_loglik(output)
    assert num_tokens.tolist() == tensors["response_mask"].sum(1).tolist()
    torch.testing.assert_close(
        loglik.double(), kit.reference_loglik(policy, tensors, TEMPERATURES), atol=2e-5, rtol=1e-5
    )
