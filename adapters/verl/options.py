"""TAMPO options of the verl adapter and their Hydra-style ``tampo.<field>=<value>`` form."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tampo_core import TampoConfig
from tampo_core.validation import check_instance, check_optional_int

CHUNK_SIZE_FIELD = "chunk_size"
"""Adapter option (not a ``TampoConfig`` field): the kernel's rows per fp32 chunk."""

DETAILED_METRICS_FIELD = "detailed_metrics"
"""Adapter option (not a ``TampoConfig`` field): log the per-temperature metrics too."""

_OVERRIDE = re.compile(r"^\+{0,2}tampo\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", re.S)


@dataclass(frozen=True)
class TampoOptions:
    """Meta-policy hyper-parameters plus the kernel's chunk size in the policy engine.

    Attributes:
        config: the meta-policy's ``TampoConfig`` (defaults: the paper's).
        chunk_size: token rows per fp32 chunk of the likelihood kernel; None = its device
            default (a 64 MiB buffer budget).
        detailed_metrics: log ``TempMetaPolicy.metrics(detail=True)`` (counters and the
            per-temperature ``tampo/{prob,ema,adv,preferred}/<T>``) instead of the summary.
    """

    config: TampoConfig = field(default_factory=TampoConfig)
    chunk_size: int | None = None
    detailed_metrics: bool = False

    def __post_init__(self) -> None:
        check_instance("config", self.config, TampoConfig)
        check_optional_int("chunk_size", self.chunk_size)
        check_instance("detailed_metrics", self.detailed_metrics, bool)


def option_names() -> tuple[str, ...]:
    """Every ``tampo.<name>`` the entry point accepts: each ``TampoConfig`` field,
    ``chunk_size`` and ``detailed_metrics``."""
    return (*TampoConfig.model_fields, CHUNK_SIZE_FIELD, DETAILED_METRICS_FIELD)


def tampo_help() -> str:
    """One line per TAMPO option, for ``--help``."""
    lines = ["TAMPO options (tampo_core.adapters.verl.main), as tampo.<name>=<value>:"]
    for name, info in TampoConfig.model_fields.items():
        lines.append(f"  tampo.{name}=...  (default {info.default!r})")
    lines.append(f"  tampo.{CHUNK_SIZE_FIELD}=...  (default None: the kernel's device default)")
    lines.append(f"  tampo.{DETAILED_METRICS_FIELD}=true  (default false: summary metrics only)")
    return "\n".join(lines)


def parse_tampo_overrides(argv: Sequence[str]) -> tuple[TampoOptions, list[str]]:
    """Split ``argv`` into TAMPO options and the remaining (verl Hydra) overrides.

    Values are parsed as Hydra/OmegaConf parses them (``tampo.temperatures=[0.7,1.0,1.3]``,
    ``tampo.top_p=0.5``, ``tampo.chunk_size=null``).

    Raises:
        SystemExit: an unknown ``tampo.*`` name.
        pydantic.ValidationError, ValueError, TypeError: the values do not make valid options.
    """
    from omegaconf import OmegaConf

    values: dict[str, object] = {}
    rest: list[str] = []
    for arg in argv:
        match = _OVERRIDE.match(arg)
        if match is None:
            rest.append(arg)
            continue
        name = match["name"]
        if name not in option_names():
            raise SystemExit(f"unknown TAMPO option tampo.{name}; known: {list(option_names())}")
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={match['value']}"]))
        values[name] = parsed["v"]  # type: ignore[index]
    adapter = {
        name: values.pop(name)
        for name in (CHUNK_SIZE_FIELD, DETAILED_METRICS_FIELD)
        if name in values
    }
    return TampoOptions(config=TampoConfig(**values), **adapter), rest  # type: ignore[arg-type]
