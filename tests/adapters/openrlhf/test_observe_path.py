"""The OpenRLHF observe path (policy hook -> join -> meta-update) agrees with
``TempMetaPolicy.observe``: a NaN logit at a valid action position is the same ValueError with the
state unchanged, and a sample without action tokens is skipped and counted the same way."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "openrlhf", reason="openrlhf is not installed (scripts/ci/install-openrlhf.sh installs it)"
)

from openrlhf.trainer.ppo_utils.experience import Experience

from tampo_core import TempMetaPolicy
from tampo_core.adapters.openrlhf.join import join_loglik
from tampo_core.adapters.openrlhf.meta_update import MetaUpdater
from tampo_core.adapters.openrlhf.policy_hook import PolicyLoglikHook
from tests.adapters.openrlhf.testkit import TEMPERATURES, ragged_batch, tiny_actor

SOURCE = 0.8
ADVANTAGES = torch.tensor([1.0, -0.5, 0.25, 0.7])


def _paths(packed: bool, poison: tuple[int, int] | None):
    """Run the hooked forward on the fixture batch (row 3 has no action token), optionally with
    one NaN logit at (sample, action column); return what each path is fed."""
    sequences, attention_mask, action_mask = ragged_batch()
    seqlen, actions = sequences.shape[1], action_mask.shape[1]
    actor = tiny_actor(packed)
    actor.temperature = SOURCE
    if poison is not None:
        row, column = poison
        assert action_mask[row, column], "the poisoned position is a valid action token"
        position = seqlen - 1 - actions + column
        if packed:
            position = int(attention_mask.flatten()[: row * seqlen].sum()) + position
            row = 0

        def put_nan(module, inputs, output):
            output.logits[row, position, 5] = float("nan")

        actor.model.register_forward_hook(put_nan)
    hook = PolicyLoglikHook(actor, TEMPERATURES, chunk_size=3)
    with torch.no_grad():
        _, output = actor(sequences, action_mask, attention_mask, return_output=True)
    experience = Experience(
        sequences=sequences, attention_mask=attention_mask, action_mask=action_mask
    )
    joined = join_loglik([experience], hook.pop(), len(TEMPERATURES))
    if packed:
        from tampo_core.adapters.openrlhf._seam import pad_packed

        logits = pad_packed(output["logits"], attention_mask)
    else:
        logits = output["logits"]
    direct = {
        "logits_or_logprobs": logits[:, seqlen - 1 - actions : seqlen - 1],
        "tokens": sequences[:, seqlen - actions :],
        "mask": action_mask,
        "source_temperature": SOURCE,
    }
    return joined, direct


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_nan_logit_in_a_valid_action_is_the_same_error_as_observe(packed):
    joined, direct = _paths(packed, poison=(1, 3))
    assert joined.num_tokens[1] > 0 and not torch.isfinite(joined.loglik[1]).any()

    adapter_policy = TempMetaPolicy(temperatures=TEMPERATURES, seed=3)
    updater = MetaUpdater(adapter_policy)
    before = adapter_policy.state_dict()
    with pytest.raises(ValueError) as through_adapter:
        updater.update(joined, ADVANTAGES.clone())
    assert adapter_policy.state_dict() == before, "state unchanged"
    assert updater.metrics()["tampo/skipped_update"] == 0.0, "an error, not a skipped batch"

    core_policy = TempMetaPolicy(temperatures=TEMPERATURES, seed=3)
    with pytest.raises(ValueError) as through_observe:
        core_policy.observe(advantages=ADVANTAGES.clone(), sync=False, **direct)
    assert str(through_adapter.value) == str(through_observe.value)
    assert "loglik[1]: expected finite likelihoods" in str(through_observe.value)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_a_sample_without_action_tokens_is_skipped_and_counted_alike(packed):
    joined, direct = _paths(packed, poison=None)
    assert joined.num_tokens.tolist()[3] == 0

    adapter_policy = TempMetaPolicy(temperatures=TEMPERATURES)
    stats = MetaUpdater(adapter_policy).update(joined, ADVANTAGES.clone())
    core_policy = TempMetaPolicy(temperatures=TEMPERATURES)
    expected = core_policy.observe(advantages=ADVANTAGES.clone(), sync=False, **direct)

    assert (stats.num_trajectories, stats.num_skipped) == (3, 1)
    assert (expected.num_trajectories, expected.num_skipped) == (3, 1)
    assert stats.argmax_histogram.tolist() == expected.argmax_histogram.tolist()
    torch.testing.assert_close(
        torch.from_numpy(stats.batch_advantage),
        torch.from_numpy(expected.batch_advantage),
        atol=1e-6,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        torch.from_numpy(adapter_policy.ema),
        torch.from_numpy(core_policy.ema),
        atol=1e-6,
        rtol=1e-5,
    )
