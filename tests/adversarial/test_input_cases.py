"""Adversarial inputs to the kernels, ``observe``, ``sparsemax`` and the config (issue 10,
items 4, 6-9 and 17): one case per bad input, each asserting the clear error and that the
inputs (and the policy's state) are unchanged."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from tampo_core import (
    TampoConfig,
    TempMetaPolicy,
    multi_temperature_loglik,
    multi_temperature_loglik_from_hidden,
    sparsemax,
)

TEMPS = (0.5, 1.0, 2.0)
B, L, V, H = 2, 4, 9, 5
TEMPERATURE_RULE = r"temperatures\[0\]: expected a temperature in \[0.0001, 10000\]"
META = "expected .*with data\\)?, got a tensor on 'meta'"


def _logits() -> torch.Tensor:
    return torch.randn(B, L, V, generator=torch.Generator().manual_seed(0))


def _tokens() -> torch.Tensor:
    return torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(1))


def _hidden() -> torch.Tensor:
    return torch.randn(B, L, H, generator=torch.Generator().manual_seed(2))


def _weight() -> torch.Tensor:
    return torch.randn(V, H, generator=torch.Generator().manual_seed(3))


def _meta(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


@dataclass
class Case:
    """One bad input: ``target(**kwargs)`` must raise ``error`` matching ``pattern``."""

    id: str
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: type[Exception] = ValueError
    pattern: str = ""


def logits_case(id: str, error: type[Exception], pattern: str, **changes: Any) -> Case:
    kwargs = {"logits": _logits(), "tokens": _tokens(), "temperatures": TEMPS, **changes}
    return Case(id, "logits", kwargs, error, pattern)


def hidden_case(id: str, error: type[Exception], pattern: str, **changes: Any) -> Case:
    kwargs = {
        "hidden": _hidden(),
        "lm_head_weight": _weight(),
        "tokens": _tokens(),
        "temperatures": TEMPS,
        **changes,
    }
    return Case(id, "hidden", kwargs, error, pattern)


def observe_case(id: str, error: type[Exception], pattern: str, **changes: Any) -> Case:
    kwargs = {
        "logits_or_logprobs": _logits(),
        "advantages": torch.tensor([1.0, -1.0]),
        "tokens": _tokens(),
        **changes,
    }
    return Case(id, "observe", kwargs, error, pattern)


def sparsemax_case(id: str, error: type[Exception], pattern: str, x: Any) -> Case:
    return Case(id, "sparsemax", {"x": x}, error, pattern)


def config_case(id: str, temperatures: tuple[float, ...]) -> Case:
    finite = all(math.isfinite(t) for t in temperatures)
    rule = TEMPERATURE_RULE if finite else r"temperatures\[0\]: expected a finite real number"
    return Case(id, "config", {"temperatures": temperatures}, ValueError, rule)


FLOAT_MASK = r"mask: expected dtype bool .*pass mask\.bool\(\)"
SHIFT_HINT = r"position t of {0} must score tokens\[:, t\], so pass {0}\[:, :-1\]"
NOT_FINITE = r"x: expected finite scores .*no NaN or \+inf\), got {}"
SPARSE_ROWS = np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0]])

CASES = [
    # 4: an empty batch (L = 0) reaches observe as "no valid token", not a storage crash.
    observe_case(
        "observe-L0",
        ValueError,
        "batch: expected at least one trajectory with a valid token, got none",
        logits_or_logprobs=torch.zeros(B, 0, V),
        tokens=torch.zeros(B, 0, dtype=torch.long),
    ),
    # 6: temperatures fp32 cannot represent as 1 / T, in the config and both kernels.
    *(
        config_case(f"config-T={t:g}", (t, 1.0))
        for t in (0.99e-4, 1.01e4, 3e-39, 1e-45, 0.0, -1.0, math.inf, math.nan)
    ),
    *(
        logits_case(f"logits-T={t:g}", ValueError, TEMPERATURE_RULE, temperatures=(t, 1.0))
        for t in (0.99e-4, 1.01e4, 3e-39, 0.0)
    ),
    *(
        hidden_case(f"hidden-T={t:g}", ValueError, TEMPERATURE_RULE, temperatures=(t, 1.0))
        for t in (0.99e-4, 1.01e4, 3e-39, 0.0)
    ),
    # 7: sparsemax refuses NaN / +inf / all -inf rows alike in numpy and torch.
    *(
        sparsemax_case(f"sparsemax-{kind}-{name}", ValueError, NOT_FINITE.format(shown), x)
        for name, row, shown in (
            ("nan", [1.0, math.nan, 0.0], "nan"),
            ("posinf", [1.0, math.inf, 0.0], "inf"),
            ("all-neginf", [-math.inf, -math.inf, -math.inf], "-inf"),
        )
        for kind, x in (
            ("numpy", np.array([[0.0, 1.0, 2.0], row])),
            ("torch", torch.tensor([[0.0, 1.0, 2.0], row])),
        )
    ),
    sparsemax_case("sparsemax-list", TypeError, "x: expected a numpy array", [1.0, 2.0]),
    sparsemax_case("sparsemax-int", TypeError, "x: expected a floating", np.array([1, 2])),
    sparsemax_case("sparsemax-K0", ValueError, "K >= 1", torch.zeros(2, 0)),
    # 8: meta tensors everywhere a tensor enters.
    logits_case("logits-meta-logits", ValueError, "logits: " + META, logits=_meta((B, L, V))),
    logits_case(
        "logits-meta-tokens", ValueError, "tokens: " + META, tokens=_meta((B, L), torch.long)
    ),
    logits_case("logits-meta-mask", ValueError, "mask: " + META, mask=_meta((B, L), torch.bool)),
    logits_case(
        "logits-meta-temperatures", ValueError, "temperatures: " + META, temperatures=_meta((3,))
    ),
    logits_case(
        "logits-meta-source-temperature",
        ValueError,
        "source_temperature: " + META,
        source_temperature=_meta(()),
    ),
    logits_case(
        "logits-meta-chunk-size", ValueError, "chunk_size: ", chunk_size=_meta((), torch.long)
    ),
    hidden_case("hidden-meta-hidden", ValueError, "hidden: " + META, hidden=_meta((B, L, H))),
    hidden_case(
        "hidden-meta-weight", ValueError, "lm_head_weight: " + META, lm_head_weight=_meta((V, H))
    ),
    hidden_case("hidden-meta-bias", ValueError, "bias: " + META, bias=_meta((V,))),
    hidden_case(
        "hidden-meta-tokens", ValueError, "tokens: " + META, tokens=_meta((B, L), torch.long)
    ),
    hidden_case("hidden-meta-scale", ValueError, "logit_scale: " + META, logit_scale=_meta(())),
    observe_case(
        "observe-meta-logits",
        ValueError,
        "logits_or_logprobs: " + META,
        logits_or_logprobs=_meta((B, L, V)),
    ),
    observe_case("observe-meta-advantages", ValueError, "advantages: ", advantages=_meta((B,))),
    observe_case(
        "observe-meta-tokens", ValueError, "tokens: " + META, tokens=_meta((B, L), torch.long)
    ),
    sparsemax_case("sparsemax-meta", ValueError, "x: " + META, _meta((2, 3))),
    # 9: float masks name the fix; ambiguous scalars are still refused.
    *(
        logits_case(
            f"logits-mask-{dtype}", TypeError, FLOAT_MASK, mask=torch.ones(B, L, dtype=dtype)
        )
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    ),
    hidden_case("hidden-mask-float", TypeError, FLOAT_MASK, mask=torch.ones(B, L)),
    observe_case("observe-mask-float", TypeError, FLOAT_MASK, mask=torch.ones(B, L)),
    logits_case(
        "logits-mask-2",
        ValueError,
        r"mask: expected values in \{0, 1\}",
        mask=torch.full((B, L), 2),
    ),
    logits_case(
        "logits-chunk-float-tensor", TypeError, "chunk_size: ", chunk_size=torch.tensor(2.0)
    ),
    logits_case("logits-chunk-bool", TypeError, "chunk_size: ", chunk_size=True),
    logits_case("logits-chunk-zero", ValueError, "chunk_size: ", chunk_size=np.int64(0)),
    logits_case(
        "logits-source-T-vector",
        TypeError,
        "source_temperature: ",
        source_temperature=torch.tensor([1.0]),
    ),
    logits_case(
        "logits-source-T-nan", ValueError, "source_temperature: ", source_temperature=np.nan
    ),
    logits_case("logits-source-T-bool", TypeError, "source_temperature: ", source_temperature=True),
    hidden_case("hidden-scale-zero", ValueError, "logit_scale: ", logit_scale=np.float32(0.0)),
    hidden_case("hidden-block-zero", ValueError, "vocab_block: ", vocab_block=torch.tensor(0)),
    hidden_case("hidden-block-float", TypeError, "vocab_block: ", vocab_block=2.5),
    # 17: unshifted [B, L + 1, V] scores: the message names the alignment and the shift.
    logits_case(
        "logits-unshifted",
        ValueError,
        SHIFT_HINT.format("logits"),
        logits=torch.randn(B, L + 1, V),
    ),
    hidden_case(
        "hidden-unshifted",
        ValueError,
        SHIFT_HINT.format("hidden"),
        hidden=torch.randn(B, L + 1, H),
    ),
    observe_case(
        "observe-unshifted",
        ValueError,
        SHIFT_HINT.format("logits"),
        logits_or_logprobs=torch.randn(B, L + 1, V),
    ),
]


def _policy() -> TempMetaPolicy:
    policy = TempMetaPolicy(temperatures=TEMPS, warmup_steps=0)
    policy.observe(_logits(), [1.0, -1.0], tokens=_tokens())
    return policy


def _call(case: Case, policy: TempMetaPolicy) -> Callable[[], object]:
    kwargs = case.kwargs
    return {
        "logits": lambda: multi_temperature_loglik(**kwargs),
        "hidden": lambda: multi_temperature_loglik_from_hidden(**kwargs),
        "observe": lambda: policy.observe(**kwargs),
        "sparsemax": lambda: sparsemax(**kwargs),
        "config": lambda: TampoConfig(**kwargs),
    }[case.target]


def _same(a: object, b: object) -> bool:
    """Equal values, NaN equal to NaN; tensors on 'meta' (no data) compare by metadata."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        if a.device.type == "meta":
            return a.shape == b.shape and a.dtype == b.dtype
        return (
            a.dtype == b.dtype
            and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
            and (not a.is_floating_point() or torch.equal(a.isnan(), b.isnan()))
        )
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_a_clear_error_and_changes_nothing(case: Case) -> None:
    policy = _policy()
    state = policy.state_dict()
    inputs = {name: copy.deepcopy(value) for name, value in case.kwargs.items()}
    with pytest.raises(case.error, match=case.pattern):
        _call(case, policy)()
    for name, value in case.kwargs.items():
        assert _same(value, inputs[name]), f"{name} was modified"
    assert policy.state_dict() == state


@pytest.mark.parametrize("kernel", ["logits", "hidden"])
@pytest.mark.parametrize("masked", [False, True])
def test_zero_length_sequences_give_no_valid_token_in_both_kernels(kernel: str, masked: bool):
    tokens = torch.zeros(B, 0, dtype=torch.long)
    mask = torch.zeros(B, 0, dtype=torch.bool) if masked else None
    if kernel == "logits":
        result = multi_temperature_loglik(torch.zeros(B, 0, V), tokens, TEMPS, mask)
    else:
        result = multi_temperature_loglik_from_hidden(
            torch.zeros(B, 0, H), _weight(), tokens, TEMPS, mask
        )
    assert result.num_tokens.tolist() == [0] * B
    assert result.loglik.shape == (B, len(TEMPS)) and result.loglik.isnan().all()


def test_sparsemax_numpy_and_torch_refuse_the_same_rows_with_the_same_message() -> None:
    for row in ([1.0, math.nan], [1.0, math.inf], [-math.inf, -math.inf]):
        messages = []
        for x in (np.array(row), torch.tensor(row)):
            with pytest.raises(ValueError) as caught:
                sparsemax(x)
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
    np.testing.assert_allclose(sparsemax(SPARSE_ROWS), sparsemax(torch.tensor(SPARSE_ROWS)))
