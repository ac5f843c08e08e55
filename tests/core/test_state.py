"""The state schema: every state a policy writes is accepted and restores it exactly; a bad one
is refused with one error type, naming each bad field, before anything is assigned."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tampo_core as tc
from tampo_core.state import STATE_VERSION, PolicyState, dump_state, parse_state

K = 10


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            arrays(np.float64, (3, K), elements=st.floats(-20, 0)),
            arrays(np.float64, (3,), elements=st.floats(-1e100, 1e100)),
            st.lists(st.integers(0, 4), min_size=3, max_size=3).filter(any),
        ),
        max_size=5,
    ),
    st.integers(0, 2**63),
    st.integers(0, 7),
)
def test_every_written_state_is_valid_and_restores_the_policy(
    batches: list, seed: int, draws: int
) -> None:
    policy = tc.TempMetaPolicy(seed=seed, warmup_steps=2)
    for loglik, advantages, num_tokens in batches:
        for _ in range(draws):
            policy.sample()
        policy.observe_loglik(loglik, advantages, num_tokens=num_tokens)
    state = json.loads(json.dumps(policy.state_dict(), allow_nan=False))
    assert PolicyState.model_validate(state).version == STATE_VERSION
    restored = tc.TempMetaPolicy(seed=seed, warmup_steps=2)
    restored.load_state_dict(state)
    assert restored.state_dict() == policy.state_dict()
    assert [restored.sample() for _ in range(10)] == [policy.sample() for _ in range(10)]


def test_dump_and_parse_are_inverse_on_a_fresh_policy() -> None:
    policy = tc.TempMetaPolicy()
    state = policy.state_dict()
    assert state["version"] == 1 and type(state["version"]) is int
    assert state["last_stats"] is None and state["last_temperature"] is None
    restored = parse_state(state, policy.config)
    assert restored.num_updates == 0 and restored.last_stats is None
    np.testing.assert_array_equal(restored.ema, np.zeros(K))
    again = dump_state(
        policy.config,
        restored.ema,
        restored.num_updates,
        restored.last_temperature,
        restored.last_stats,
        restored.rng,
    )
    assert again == state


def test_every_bad_field_is_named_in_one_value_error() -> None:
    policy = tc.TempMetaPolicy()
    state = policy.state_dict()
    bad = {**state, "num_updates": -2, "rng": {**state["rng"], "has_uint32": 7}, "x": 0}
    with pytest.raises(ValueError) as caught:
        policy.load_state_dict(bad)
    message = str(caught.value)
    assert message.startswith("invalid TempMetaPolicy state_dict: ")
    for part in (
        "num_updates: expected an int >= 0, got -2",
        "rng.has_uint32: expected 0 or 1, got 7",
        "x: expected no such field, got 0",
    ):
        assert part in message, message
    assert caught.value.__cause__ is None  # no pydantic traceback chained


def test_a_refused_state_assigns_nothing_even_when_only_the_last_field_is_bad() -> None:
    policy = tc.TempMetaPolicy(warmup_steps=0)
    policy.observe_loglik(np.linspace(-2, -1, K)[None, :], [1.0])
    donor = tc.TempMetaPolicy(warmup_steps=0)
    donor.observe_loglik(np.linspace(-1, -2, K)[None, :], [1.0])
    donor.sample()
    before = policy.state_dict()
    bad = donor.state_dict()
    bad["rng"]["uinteger"] = -1
    with pytest.raises(ValueError, match=r"rng\.uinteger: expected an int >= 0, got -1"):
        policy.load_state_dict(bad)
    assert policy.state_dict() == before
