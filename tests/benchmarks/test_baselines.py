"""Temperature baselines: protocol, schedule values, the E3 controller's direction."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from benchmarks.baselines import (
    EntropyTargetController,
    FixedTemperature,
    LinearSchedule,
    UniformRandom,
    mean_token_entropy,
)
from tampo_core import PAPER_TEMPERATURES
from tampo_core.adapters.torch_loop import TemperaturePolicy

TOKENS = torch.zeros(4, 5, dtype=torch.long)


def _observe(p: TemperaturePolicy, logits: torch.Tensor) -> None:
    p.observe(logits, torch.zeros(4), tokens=TOKENS, mask=torch.ones(4, 5, dtype=torch.bool))


def test_all_follow_the_protocol() -> None:
    for p in (
        FixedTemperature(1.2),
        LinearSchedule(0.9, 1.5, 10),
        UniformRandom(seed=0),
        EntropyTargetController(16),
    ):
        assert isinstance(p, TemperaturePolicy)
        assert isinstance(p.sample(), float)


def test_linear_schedule_runs_from_start_to_end_then_holds() -> None:
    p = LinearSchedule(0.9, 1.5, 7)
    got = [p.sample() for _ in range(9)]
    assert got[0] == pytest.approx(0.9) and got[6] == pytest.approx(1.5)
    assert got[3] == pytest.approx(1.2) and got[7:] == pytest.approx([1.5, 1.5])


def test_uniform_draws_only_grid_values_and_all_of_them() -> None:
    p = UniformRandom(seed=3)
    draws = {p.sample() for _ in range(400)}
    assert draws == set(PAPER_TEMPERATURES)


def test_mean_token_entropy_matches_the_closed_form() -> None:
    logits = torch.zeros(2, 3, 8)
    assert mean_token_entropy(logits, None, 1.0) == pytest.approx(math.log(8))
    mask = torch.tensor([[True, False, False], [False, False, False]])
    peaked = torch.zeros(2, 3, 8)
    peaked[..., 0] = 50.0
    peaked[0, 0] = 0.0
    assert mean_token_entropy(peaked, mask, 1.0) == pytest.approx(math.log(8))


def test_e3_sets_its_target_then_raises_t_when_entropy_drops_and_lowers_it_when_it_rises() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 5, 16, generator=g)
    c = EntropyTargetController(16, t_init=1.0)
    _observe(c, base)
    assert c.target == pytest.approx(mean_token_entropy(base, None, 1.0))
    assert c.sample() == 1.0
    _observe(c, base * 3.0)  # sharper policy: lower entropy -> heat up
    hotter = c.sample()
    assert hotter > 1.0
    _observe(c, base * 0.1)  # near-uniform: higher entropy -> cool down
    assert c.sample() < hotter
    for _ in range(50):
        _observe(c, base * 0.01)
    assert c.sample() == pytest.approx(0.6)  # clipped at t_min


def test_e3_update_is_the_closed_form() -> None:
    c = EntropyTargetController(16, t_init=1.2, target_entropy=2.0)
    logits = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(1))
    h = mean_token_entropy(logits, None, 1.2)
    _observe(c, logits)
    want = 1.2 * (1 + 1.2 * math.log(2.0 / h) / (math.log(16) + math.log(math.log(16))))
    assert c.sample() == pytest.approx(min(max(want, 0.6), 1.5))


def test_e3_reads_tempered_inputs_through_source_temperature() -> None:
    logits = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(2))
    a, b = EntropyTargetController(16), EntropyTargetController(16)
    a.observe(logits, torch.zeros(4), tokens=TOKENS)
    b.observe(logits / 0.8, torch.zeros(4), tokens=TOKENS, source_temperature=0.8)
    assert a.target == pytest.approx(b.target, rel=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedTemperature(0.0),
        lambda: LinearSchedule(0.9, 1.5, 0),
        lambda: UniformRandom(()),
        lambda: EntropyTargetController(2),
        lambda: EntropyTargetController(16, t_init=2.0),
    ],
)
def test_bad_construction_raises(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_e3_rejects_non_finite_logits_and_keeps_its_state() -> None:
    c = EntropyTargetController(16, target_entropy=2.0)
    bad = torch.zeros(4, 5, 16)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _observe(c, bad)
    assert c.sample() == 1.0 and c.last_entropy is None
