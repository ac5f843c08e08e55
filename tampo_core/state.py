"""The meta-policy's saved state: one schema for ``state_dict`` and ``load_state_dict``.

``PolicyState`` (pydantic) checks every field of a saved state with the rules of
``tampo_core.validation``, including the ones that relate fields (lengths equal K, the
histogram sums to the trajectory count, the last temperature is a candidate), and
:func:`parse_state` turns any failure into one ``ValueError`` whose message lists each bad field
as ``<field>: expected <rule>, got <value>``. Nothing is assigned before everything passed, so
a refused state leaves the policy as it was. Bounds: the EMA and the batch advantages are
within ``2 * MAX_ABS_ADVANTAGE`` (the EMA is a running mean of means of advantages bounded by
``MAX_ABS_ADVANTAGE``; the factor 2 leaves room for rounding), so a loaded state cannot make
``probs`` non-finite.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tampo_core.config import TampoConfig
from tampo_core.stats import ObserveStats
from tampo_core.validation import (
    MAX_ABS_ADVANTAGE,
    check_choice,
    check_in_range,
    check_instance,
    check_int,
    check_real,
    expected,
    pydantic_rule,
)

STATE_VERSION = 1
"""The format version ``state_dict`` writes and ``load_state_dict`` reads (an int)."""

MAX_ABS_STATE_VALUE = 2 * MAX_ABS_ADVANTAGE
"""Largest ``|value|`` accepted in the saved EMA and batch advantages."""

_UINT128 = 2**128
_UINT32 = 2**32


def _check_version(name: str, value: object) -> int:
    version = check_int(name, value)
    if version != STATE_VERSION:
        raise ValueError(expected(name, f"the int {STATE_VERSION} (this format)", version))
    return version


def _check_bounded_floats(name: str, value: object) -> tuple[float, ...]:
    check_instance(name, value, (list, tuple), "a list of floats")
    values = tuple(check_real(f"{name}[{i}]", v) for i, v in enumerate(value))
    for i, v in enumerate(values):
        if abs(v) > MAX_ABS_STATE_VALUE:
            rule = f"a value with |x| <= {MAX_ABS_STATE_VALUE:g}"
            raise ValueError(expected(f"{name}[{i}]", rule, v))
    return values


def _check_counts(name: str, value: object) -> tuple[int, ...]:
    check_instance(name, value, (list, tuple), "a list of ints")
    return tuple(check_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _check_optional_real(name: str, value: object) -> float | None:
    return None if value is None else check_real(name, value)


def _check_uint128_text(name: str, value: object) -> str:
    rule = "a decimal string of an int in [0, 2**128)"
    if not isinstance(value, str) or not value.isdigit() or not value.isascii():
        raise ValueError(expected(name, rule, repr(value)))
    if int(value) >= _UINT128:
        raise ValueError(expected(name, rule, value))
    return value


def _check_increment(name: str, value: object) -> str:
    text = _check_uint128_text(name, value)
    if int(text) % 2 == 0:
        raise ValueError(expected(name, "an odd increment (PCG64 increments are odd)", text))
    return text


def _check_flag(name: str, value: object) -> int:
    flag = check_int(name, value)
    if flag > 1:
        raise ValueError(expected(name, "0 or 1", flag))
    return flag


def _check_uint32(name: str, value: object) -> int:
    result = check_int(name, value)
    if result >= _UINT32:
        raise ValueError(expected(name, "an int in [0, 2**32)", result))
    return result


class RngState(BaseModel):
    """The policy generator's PCG64 state (the 128-bit integers as decimal strings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bit_generator: Annotated[
        Any, pydantic_rule(lambda n, v: check_choice(n, v, ("PCG64",)), "rng.bit_generator")
    ]
    state: Annotated[Any, pydantic_rule(_check_uint128_text, "rng.state")]
    inc: Annotated[Any, pydantic_rule(_check_increment, "rng.inc")]
    has_uint32: Annotated[Any, pydantic_rule(_check_flag, "rng.has_uint32")]
    uinteger: Annotated[Any, pydantic_rule(_check_uint32, "rng.uinteger")]


class StatsState(BaseModel):
    """``ObserveStats`` of the last update; lengths are checked against K by ``PolicyState``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_advantage: Annotated[
        Any, pydantic_rule(_check_bounded_floats, "last_stats.batch_advantage")
    ]
    support_size: Annotated[Any, pydantic_rule(check_real, "last_stats.support_size")]
    num_trajectories: Annotated[
        Any, pydantic_rule(lambda n, v: check_int(n, v, minimum=1), "last_stats.num_trajectories")
    ]
    num_skipped: Annotated[Any, pydantic_rule(check_int, "last_stats.num_skipped")]
    argmax_histogram: Annotated[Any, pydantic_rule(_check_counts, "last_stats.argmax_histogram")]


class PolicyState(BaseModel):
    """Every field of a ``TempMetaPolicy.state_dict()``, validated (``extra`` fields refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Annotated[Any, pydantic_rule(_check_version, "version")]
    config: TampoConfig
    ema: Annotated[Any, pydantic_rule(_check_bounded_floats, "ema")]
    num_updates: Annotated[Any, pydantic_rule(check_int, "num_updates")]
    last_temperature: Annotated[Any, pydantic_rule(_check_optional_real, "last_temperature")]
    last_stats: StatsState | None
    rng: RngState

    @model_validator(mode="after")
    def _fields_agree(self) -> PolicyState:
        k = self.config.num_temperatures
        if len(self.ema) != k:
            raise ValueError(expected("ema", f"{k} finite floats (K)", f"{len(self.ema)}"))
        candidates = self.config.temperatures
        if self.last_temperature is not None and self.last_temperature not in candidates:
            rule = f"None or one of the candidate temperatures {candidates}"
            raise ValueError(expected("last_temperature", rule, self.last_temperature))
        stats = self.last_stats
        if stats is not None:
            for name in ("batch_advantage", "argmax_histogram"):
                length = len(getattr(stats, name))
                if length != k:
                    raise ValueError(expected(f"last_stats.{name}", f"{k} entries (K)", length))
            check_in_range("last_stats.support_size", stats.support_size, 1.0, float(k))
            total = sum(stats.argmax_histogram)
            if total != stats.num_trajectories:
                rule = f"counts summing to num_trajectories = {stats.num_trajectories}"
                raise ValueError(expected("last_stats.argmax_histogram", rule, total))
        return self


class RestoredState(NamedTuple):
    """What ``load_state_dict`` assigns, all at once."""

    ema: np.ndarray
    num_updates: int
    last_temperature: float | None
    last_stats: ObserveStats | None
    rng: np.random.Generator


def dump_state(
    config: TampoConfig,
    ema: np.ndarray,
    num_updates: int,
    last_temperature: float | None,
    last_stats: ObserveStats | None,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The JSON-serialisable state (plain dicts, lists, ints, floats and strings)."""
    rng_state = rng.bit_generator.state
    return {
        "version": STATE_VERSION,
        "config": config.model_dump(mode="json"),
        "ema": ema.tolist(),
        "num_updates": num_updates,
        "last_temperature": last_temperature,
        "last_stats": None
        if last_stats is None
        else {
            "batch_advantage": last_stats.batch_advantage.tolist(),
            "support_size": last_stats.support_size,
            "num_trajectories": last_stats.num_trajectories,
            "num_skipped": last_stats.num_skipped,
            "argmax_histogram": last_stats.argmax_histogram.tolist(),
        },
        "rng": {
            "bit_generator": rng_state["bit_generator"],
            "state": str(rng_state["state"]["state"]),
            "inc": str(rng_state["state"]["inc"]),
            "has_uint32": int(rng_state["has_uint32"]),
            "uinteger": int(rng_state["uinteger"]),
        },
    }


def parse_state(state: object, config: TampoConfig) -> RestoredState:
    """Validate a saved state against the schema and the current ``config``.

    Args:
        state: what :func:`dump_state` wrote (possibly through JSON).
        config: the restoring policy's config; the saved one must be equal.

    Raises:
        ValueError: the only error type; the message lists every bad field.
    """
    if not isinstance(state, dict):
        raise ValueError(_invalid(expected("state", "a dict", type(state).__name__)))
    try:
        parsed = PolicyState.model_validate(state)
    except ValidationError as error:
        raise ValueError(_invalid(_describe_errors(error))) from None
    if parsed.config != config:
        differing = {
            name: (getattr(parsed.config, name), getattr(config, name))
            for name in TampoConfig.model_fields
            if getattr(parsed.config, name) != getattr(config, name)
        }
        rule = "this policy's config"
        raise ValueError(_invalid(expected("config", rule, f"(saved, current) {differing}")))
    return RestoredState(
        ema=np.asarray(parsed.ema, dtype=np.float64),
        num_updates=parsed.num_updates,
        last_temperature=parsed.last_temperature,
        last_stats=_stats(parsed.last_stats),
        rng=_generator(parsed.rng),
    )


def _stats(stats: StatsState | None) -> ObserveStats | None:
    if stats is None:
        return None
    return ObserveStats(
        batch_advantage=np.asarray(stats.batch_advantage, dtype=np.float64),
        support_size=stats.support_size,
        num_trajectories=stats.num_trajectories,
        num_skipped=stats.num_skipped,
        argmax_histogram=np.asarray(stats.argmax_histogram, dtype=np.int64),
    )


def _generator(rng: RngState) -> np.random.Generator:
    generator = np.random.Generator(np.random.PCG64())
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(rng.state), "inc": int(rng.inc)},
        "has_uint32": rng.has_uint32,
        "uinteger": rng.uinteger,
    }
    return generator


def _invalid(detail: str) -> str:
    return f"invalid TempMetaPolicy state_dict: {detail}"


def _describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if item["type"] == "value_error" and cause is not None:
            parent, text = _location(item["loc"][:-1]), str(cause)
            parts.append(text if not parent or text.startswith(parent) else f"{parent}.{text}")
            continue
        name = _location(item["loc"]) or "state"
        if item["type"] == "missing":
            parts.append(expected(name, "this field", "nothing (missing)"))
        elif item["type"] == "extra_forbidden":
            parts.append(expected(name, "no such field", repr(item["input"])))
        else:
            parts.append(expected(name, f"a valid value ({item['msg']})", repr(item["input"])))
    return "; ".join(parts)


def _location(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
