import math

import pytest
from pydantic import ValidationError

import tampo_core as tc


def test_defaults_are_the_papers() -> None:
    cfg = tc.TampoConfig()
    assert cfg.temperatures == (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
    assert (cfg.ema_alpha, cfg.top_p, cfg.num_temperatures) == (0.05, 0.7, 10)


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"temperatures": (1.0,)}, ["temperatures", "K >= 2", "K = 1"]),
        ({"temperatures": (0.5, 0.5)}, ["temperatures", "strictly increasing", "0.5"]),
        ({"temperatures": (1.0, 0.9)}, ["temperatures", "strictly increasing", "0.9 after 1.0"]),
        ({"temperatures": (0.0, 1.0)}, ["temperatures", "finite and > 0", "0.0"]),
        ({"temperatures": (-1.0, 1.0)}, ["temperatures", "finite and > 0", "-1.0"]),
        ({"temperatures": (1.0, math.inf)}, ["temperatures", "finite", "inf"]),
        ({"temperatures": (1.0, math.nan)}, ["temperatures", "finite", "nan"]),
        ({"temperatures": "0.6,0.7"}, ["temperatures", "sequence", "str"]),
        ({"ema_alpha": 0.0}, ["ema_alpha", "greater than 0", "0.0"]),
        ({"ema_alpha": 1.5}, ["ema_alpha", "less than or equal to 1", "1.5"]),
        ({"ema_alpha": math.nan}, ["ema_alpha", "nan"]),
        ({"top_p": -0.1}, ["top_p", "greater than or equal to 0", "-0.1"]),
        ({"top_p": 1.01}, ["top_p", "less than or equal to 1", "1.01"]),
        ({"warmup_steps": -1}, ["warmup_steps", "greater than or equal to 0", "-1"]),
        ({"warmup_steps": 2.5}, ["warmup_steps", "integer", "2.5"]),
        ({"seed": -3}, ["seed", "greater than or equal to 0", "-3"]),
        ({"bogus": 1}, ["bogus", "Extra inputs are not permitted"]),
    ],
)
def test_invalid_config_names_field_value_and_rule(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        tc.TampoConfig(**kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_config_is_frozen_and_keyword_policy_matches_config() -> None:
    cfg = tc.TampoConfig(top_p=0.5, warmup_steps=0)
    with pytest.raises(ValidationError):
        cfg.top_p = 0.9  # type: ignore[misc]
    assert tc.TempMetaPolicy(top_p=0.5, warmup_steps=0).config == cfg
    assert tc.TempMetaPolicy(config=cfg).config == cfg


def test_config_and_keywords_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either config= or keyword"):
        tc.TempMetaPolicy(top_p=0.5, config=tc.TampoConfig())
    with pytest.raises(TypeError, match="TampoConfig"):
        tc.TempMetaPolicy(config={"top_p": 0.5})  # type: ignore[arg-type]
