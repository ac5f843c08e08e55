"""Temperature baselines: protocol, schedule values, the E3 controller's direction."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch

from benchmarks.baselines import (
    CosineSchedule,
    EntropyTargetController,
    FixedTemperature,
    LinearSchedule,
    StagedSchedule,
    UniformRandom,
    group_diversity,
    mean_token_entropy,
)
from benchmarks.methods import check_method, make_temperature_policy
from tampo_core import PAPER_TEMPERATURES, TempMetaPolicy
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
        CosineSchedule(0.9, 1.5, 10),
        StagedSchedule(4),
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
        lambda: EntropyTargetController(16, anneal_steps=0),
        lambda: CosineSchedule(0.9, 1.5, 0),
        lambda: CosineSchedule(0.0, 1.5, 10),
        lambda: StagedSchedule(0),
        lambda: StagedSchedule(4, t_init=1.2, t_max=1.0),
        lambda: StagedSchedule(4, raise_by=0.0),
    ],
)
def test_bad_construction_raises(make: Callable[[], object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        make()


def test_e3_rejects_non_finite_logits_and_keeps_its_state() -> None:
    c = EntropyTargetController(16, target_entropy=2.0)
    bad = torch.zeros(4, 5, 16)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _observe(c, bad)
    assert c.sample() == 1.0 and c.last_entropy is None


def test_cosine_schedule_follows_the_closed_form_then_holds() -> None:
    p = CosineSchedule(0.9, 1.5, 5)
    got = [p.sample() for _ in range(7)]
    want = [1.5 + (0.9 - 1.5) * (1 + math.cos(math.pi * s / 4)) / 2 for s in range(5)]
    assert got[:5] == pytest.approx(want)
    assert got[0] == pytest.approx(0.9) and got[2] == pytest.approx(1.2)
    assert got[4:] == pytest.approx([1.5, 1.5, 1.5])
    assert got[1] - got[0] < got[2] - got[1]  # slow start, unlike the linear ramp


def _groups(distinct: int, group_size: int = 4, groups: int = 2) -> torch.Tensor:
    """Token rows in groups of ``group_size`` with ``distinct`` different completions each."""
    rows = [[g * 10 + min(i, distinct - 1), 0] for g in range(groups) for i in range(group_size)]
    return torch.tensor(rows)


def test_group_diversity_counts_distinct_valid_completions_per_group() -> None:
    assert group_diversity(_groups(4), None, 4) == pytest.approx(1.0)
    assert group_diversity(_groups(1), None, 4) == pytest.approx(0.25)
    tokens = torch.tensor([[1, 2], [1, 3], [5, 5], [5, 5]])
    mask = torch.tensor([[True, False], [True, False], [True, True], [True, True]])
    assert group_diversity(tokens, mask, 2) == pytest.approx(0.5)  # masked tails do not count
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_diversity(tokens, mask, 3)


def _staged_observe(p: StagedSchedule, distinct: int) -> None:
    p.observe(torch.zeros(8, 2, 4), torch.zeros(8), tokens=_groups(distinct))


def test_staged_raises_t_when_diversity_falls_below_its_start_at_most_once_per_stage() -> None:
    p = StagedSchedule(4, t_init=0.9, raise_by=0.1, t_max=1.1, min_stage_steps=3)
    _staged_observe(p, 3)  # reference diversity 0.75
    assert p.reference == pytest.approx(0.75) and p.sample() == 0.9
    temps = []
    for distinct in (4, 2, 2, 2, 2, 2, 2, 2, 2, 2):
        _staged_observe(p, distinct)
        temps.append(p.sample())
    # stage 1 ends after 3 steps (the first falls below 0.75 at step 3), then every 3 steps
    assert temps == pytest.approx([0.9, 1.0, 1.0, 1.0, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1])
    q = StagedSchedule(4, min_stage_steps=1)
    for distinct in (2, 2, 3, 4):  # never below the start value: never raised
        _staged_observe(q, distinct)
    assert q.sample() == 0.9


def test_e3_annealing_lowers_the_target_over_the_last_40_percent_to_0_9() -> None:
    c = EntropyTargetController(16, target_entropy=2.0, anneal_steps=10)
    logits = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(4))
    targets = []
    for _ in range(10):
        targets.append(c.current_target())
        _observe(c, logits)
    assert targets[:7] == pytest.approx([2.0] * 7)  # steps 0..6 <= 0.6 * 10
    assert targets[8] == pytest.approx(2.0 * (0.9 + 0.1 * (1 + math.cos(math.pi * 0.5)) / 2))
    assert c.current_target() == pytest.approx(1.8)
    assert all(a >= b for a, b in itertools.pairwise(targets))
    plain = EntropyTargetController(16, target_entropy=2.0)
    for _ in range(10):
        _observe(plain, logits)
    assert plain.current_target() == 2.0


def test_e3_annealed_update_uses_the_annealed_target() -> None:
    logits = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(5))
    c = EntropyTargetController(16, t_init=1.0, target_entropy=2.0, anneal_steps=2)
    _observe(c, logits)  # progress 0 at step 0: target 2.0
    t1 = c.sample()
    target = c.current_target()  # step 1 of 2: progress (1 - 1.2) / 0.8 -> clipped to 0
    h = mean_token_entropy(logits, None, t1)
    _observe(c, logits)
    want = t1 * (1 + t1 * math.log(target / h) / (math.log(16) + math.log(math.log(16))))
    assert c.sample() == pytest.approx(min(max(want, 0.6), 1.5))


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("fixed-0.7", FixedTemperature),
        ("linear-0.9-1.5", LinearSchedule),
        ("cosine-1.5-0.9", CosineSchedule),
        ("staged", StagedSchedule),
        ("uniform", UniformRandom),
        ("e3", EntropyTargetController),
        ("e3-anneal", EntropyTargetController),
    ],
)
def test_method_names_build_their_baseline(name: str, cls: type) -> None:
    p = make_temperature_policy(name, steps=20, group_size=4, vocab_size=16, seed=0)
    assert type(p) is cls and isinstance(p, TemperaturePolicy)
    if name == "e3-anneal":
        assert p.anneal_steps == 20  # type: ignore[attr-defined]


def test_tampo_method_names_set_warmup_top_p_and_alpha() -> None:
    def config(name: str) -> tuple[int, float, float]:
        p = make_temperature_policy(name, steps=20, group_size=4, vocab_size=16, seed=0)
        assert isinstance(p, TempMetaPolicy)
        return p.config.warmup_steps, p.config.top_p, p.config.ema_alpha

    assert config("tampo-w0") == (0, 0.7, 0.05)
    assert config("tampo-w10-p0.5-a0.1") == (10, 0.5, 0.1)


@pytest.mark.parametrize("bad", ["tampo", "fixed-", "fixed-abc", "linear-0.9", "e4", "tampo-w1-p2"])
def test_unknown_or_invalid_method_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_method(bad)
    assert check_method("sft") == "sft"
