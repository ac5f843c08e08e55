"""TAMPO options of the OpenRLHF adapter and their ``--tampo.*`` command-line form."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from tampo_core import TampoConfig


@dataclass(frozen=True)
class TampoOptions:
    """Meta-policy hyper-parameters plus the kernel's chunk size in the policy actors.

    Attributes:
        config: the meta-policy's ``TampoConfig`` (defaults: the paper's).
        chunk_size: token rows per fp32 chunk of the likelihood kernel; None = its device
            default (a 64 MiB buffer budget).
    """

    config: TampoConfig = field(default_factory=TampoConfig)
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, TampoConfig):
            raise TypeError(f"config: expected a TampoConfig, got {type(self.config).__name__}")
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool)
            or not isinstance(self.chunk_size, int)
            or self.chunk_size < 1
        ):
            raise ValueError(f"chunk_size: expected None or an int >= 1, got {self.chunk_size!r}")


def tampo_argument_parser() -> argparse.ArgumentParser:
    """Parser of the ``--tampo.*`` options (no help flag: OpenRLHF's parser owns ``--help``)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parser.add_argument_group("TAMPO (tampo_core.adapters.openrlhf.launch)")
    group.add_argument(
        "--tampo.temperatures",
        type=float,
        nargs="+",
        default=None,
        help="candidate sampling temperatures, increasing (default: 0.6 0.7 ... 1.5)",
    )
    group.add_argument("--tampo.ema_alpha", type=float, default=None, help="EMA coefficient")
    group.add_argument("--tampo.top_p", type=float, default=None, help="nucleus mass (0: greedy)")
    group.add_argument(
        "--tampo.warmup_steps", type=int, default=None, help="steps of uniform temperatures"
    )
    group.add_argument("--tampo.seed", type=int, default=None, help="meta-policy RNG seed")
    group.add_argument(
        "--tampo.chunk_size", type=int, default=None, help="kernel rows per fp32 chunk"
    )
    return parser


def parse_tampo_args(argv: Sequence[str]) -> tuple[TampoOptions, list[str]]:
    """Split ``argv`` into TAMPO options and the remaining (OpenRLHF) arguments.

    Raises:
        SystemExit: a ``--tampo.*`` value is malformed (argparse's usual exit, status 2).
        pydantic.ValidationError: the values do not make a valid ``TampoConfig``.
    """
    parsed, rest = tampo_argument_parser().parse_known_args(list(argv))
    values = {k.removeprefix("tampo."): v for k, v in vars(parsed).items() if v is not None}
    chunk_size = values.pop("chunk_size", None)
    unknown = [arg for arg in rest if arg.startswith("--tampo.")]
    if unknown:
        raise SystemExit(f"unknown TAMPO option(s) {unknown}; known: {sorted(vars(parsed))}")
    return TampoOptions(config=TampoConfig(**values), chunk_size=chunk_size), rest
