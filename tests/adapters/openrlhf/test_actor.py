"""The policy hook on OpenRLHF's real ``Actor`` (tiny local Llama, CPU, padded and packed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

from openrlhf.trainer.ppo_utils.experience import (
    Experience,
    split_experience_batch,
)

from tampo_core.adapters.openrlhf.action_loglik import sequence_key
from tampo_core.adapters.openrlhf.policy_hook import PolicyLoglikHook
from tampo_core.adapters.openrlhf.reference import reference_action_loglik
from tests.adapters.openrlhf.testkit import TEMPERATURES, ragged_batch, tiny_actor


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("source", [0.8, 1.3])
def test_hook_gives_the_definition_and_equals_action_log_probs(packed: bool, source: float):
    sequences, attention_mask, action_mask = ragged_batch()
    actor = tiny_actor(packed)
    actor.temperature = source
    calls = []
    actor.model.register_forward_hook(lambda *_: calls.append(1))
    hook = PolicyLoglikHook(actor, TEMPERATURES, chunk_size=3)
    with torch.no_grad():
        log_probs, output = actor(sequences, action_mask, attention_mask, return_output=True)
    assert len(calls) == 1, "the model must run once per forward"
    stash = hook.pop()
    loglik, num_tokens = stash[sequence_key(sequences)]
    assert loglik.shape == (4, len(TEMPERATURES)) and loglik.dtype == torch.float32
    assert num_tokens.dtype == torch.int64
    assert num_tokens.tolist() == action_mask.sum(1).tolist(), "counts are the action tokens"
    assert num_tokens[3] == 0, "a sample without action tokens has count 0"
    assert torch.isnan(loglik[3]).all(), "whose row holds the kernel's 0 / 0"
    expected = reference_action_loglik(
        output.logits, sequences, attention_mask, action_mask, packed, source, TEMPERATURES
    )
    torch.testing.assert_close(loglik[:3], expected[:3].float(), atol=2e-5, rtol=1e-5)
    mask = action_mask.float()
    action_mean = (log_probs * mask).sum(1)[:3] / mask.sum(1)[:3]
    column = loglik[:3, TEMPERATURES.index(source)]
    torch.testing.assert_close(column, action_mean, atol=2e-5, rtol=1e-5)
    assert hook.pop() == {}, "pop clears the stash"


def test_hook_passes_training_forward_through():
    sequences, attention_mask, action_mask = ragged_batch()
    plain = tiny_actor()
    hooked = tiny_actor()
    for actor in (plain, hooked):
        actor.temperature = 0.8
    hook = PolicyLoglikHook(hooked, TEMPERATURES, chunk_size=None)
    expected = plain(sequences, action_mask, attention_mask)
    got = hooked(sequences, action_mask, attention_mask)
    assert got.requires_grad
    torch.testing.assert_close(got, expected)
    assert hook.pop() == {}, "nothing is computed under grad"


def test_actor_temperature_divides_logits_on_the_next_call():
    sequences, attention_mask, action_mask = ragged_batch()
    actor = tiny_actor()
    with torch.no_grad():
        actor.temperature = 1.0
        _, cold = actor(sequences, action_mask, attention_mask, return_output=True)
        raw = cold.logits.clone()
        actor.temperature = 0.6
        _, hot = actor(sequences, action_mask, attention_mask, return_output=True)
    torch.testing.assert_close(hot.logits, raw / 0.6)


def test_self_check_fails_when_output_logits_are_not_the_tempered_ones():
    # As if Actor.forward divided a copy of the logits (returning the raw ones in its output)
    # while computing the log-probs from the tempered copy.
    sequences, attention_mask, action_mask = ragged_batch()
    actor = tiny_actor()
    actor.temperature = 0.6
    tempered_forward = actor.forward

    def forward_returning_raw_logits(*args, **kwargs):
        log_probs, output = tempered_forward(*args, **kwargs)
        output["logits"] = output["logits"] * actor.temperature
        return log_probs, output

    actor.forward = forward_returning_raw_logits
    PolicyLoglikHook(actor, TEMPERATURES, chunk_size=None)
    with torch.no_grad(), pytest.raises(RuntimeError, match="self-check failed"):
        actor(sequences, action_mask, attention_mask)


def test_hook_refuses_a_temperature_off_the_grid():
    sequences, attention_mask, action_mask = ragged_batch()
    actor = tiny_actor()
    actor.temperature = 0.9
    PolicyLoglikHook(actor, TEMPERATURES, chunk_size=None)
    with torch.no_grad(), pytest.raises(ValueError, match=r"not one of the candidate"):
        actor(sequences, action_mask, attention_mask)


def test_sequence_key_is_content_based():
    sequences, _, _ = ragged_batch()
    assert sequence_key(sequences) == sequence_key(sequences.clone().to(torch.int32))
    other = sequences.clone()
    other[0, 0] += 1
    assert sequence_key(other) != sequence_key(sequences)
    assert sequence_key(sequences[:2]) != sequence_key(sequences[:2].reshape(1, -1))


def test_the_temperature_tag_must_be_a_per_sample_tensor():
    sequences, attention_mask, action_mask = ragged_batch()
    experience = Experience(
        sequences=sequences, attention_mask=attention_mask, action_mask=action_mask
    )
    experience.info["tampo_temperature"] = 0.8
    with pytest.raises(TypeError):
        split_experience_batch(experience)
    experience.info["tampo_temperature"] = torch.full((4,), 0.8, dtype=torch.float64)
    items = split_experience_batch(experience)
    assert [float(item.info["tampo_temperature"]) for item in items] == [0.8] * 4


def test_install_is_idempotent_and_follows_a_new_actor():
    from tampo_core.adapters.openrlhf.policy_hook import install_policy_hook, pop_policy_loglik

    sequences, attention_mask, action_mask = ragged_batch()
    process = SimpleNamespace(actor=tiny_actor())
    with pytest.raises(RuntimeError, match="no TAMPO hook"):
        pop_policy_loglik(process)
    assert install_policy_hook(process, TEMPERATURES, None) == TEMPERATURES
    first = process._tampo_loglik_hook
    install_policy_hook(process, TEMPERATURES, None)
    assert process._tampo_loglik_hook is first
    with pytest.raises(ValueError, match="already installed"):
        install_policy_hook(process, (0.5, 1.0), None)
    process.actor = tiny_actor()
    process.actor.temperature = 1.0
    install_policy_hook(process, TEMPERATURES, None)
    with torch.no_grad():
        process.actor(sequences, action_mask, attention_mask)
    assert list(pop_policy_loglik(process)) == [sequence_key(sequences)]
