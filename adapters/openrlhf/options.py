"""TAMPO options of the OpenRLHF adapter and their ``--tampo.*`` command-line form.

Every ``TampoConfig`` field is a ``--tampo.<field>`` option (generated from the model, so a new
field is on the command line without an edit here), plus the adapter's ``--tampo.chunk_size``
and ``--tampo.detailed_metrics``.
Values are validated by the pydantic models; a bad value is an argparse-style one-line error.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tampo_core import TampoConfig
from tampo_core.validation import check_optional_int, expected, pydantic_rule

PROG = "python -m tampo_core.adapters.openrlhf.launch"
"""How the launcher is invoked (the program name in its error lines)."""

PREFIX = "tampo."
"""Namespace of the adapter's options on OpenRLHF's command line (``--tampo.top_p``)."""


class TampoOptions(BaseModel):
    """Meta-policy hyper-parameters plus the adapter's own settings.

    Attributes:
        config: the meta-policy's ``TampoConfig`` (defaults: the paper's).
        chunk_size: token rows per fp32 chunk of the likelihood kernel in the policy actors;
            None = its device default (a 64 MiB buffer budget).
        detailed_metrics: log ``TempMetaPolicy.metrics(detail=True)`` (per-temperature keys and
            counters) instead of the compact default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    config: TampoConfig = Field(default_factory=TampoConfig)
    chunk_size: Annotated[int | None, pydantic_rule(check_optional_int, "chunk_size")] = None
    detailed_metrics: bool = Field(default=False, strict=True)

    def flat(self) -> dict[str, Any]:
        """The options as one flat JSON-ready dict (``TampoConfig`` fields plus the adapter's),
        the form recorded in OpenRLHF's args and W&B config."""
        adapter = self.model_dump(mode="json", exclude={"config"})
        return {**self.config.model_dump(mode="json"), **adapter}


def _field_help(name: str) -> str:
    """The first sentence of ``name``'s entry in ``TampoConfig``'s docstring."""
    doc = TampoConfig.__doc__ or ""
    match = re.search(rf"^\s+{name}: (.+?(?:\n\s{{12}}.+?)*)(?:\n\s+\w+:|\n\n|$)", doc, re.M)
    if match is None:
        return "see TampoConfig"
    text = " ".join(match.group(1).split())
    return text.split(". ")[0].rstrip(".")


def _argument_kwargs(annotation: Any) -> dict[str, Any]:
    """argparse ``type``/``nargs``/``choices`` for a ``TampoConfig`` field annotation."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _argument_kwargs(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return {"choices": list(typing.get_args(annotation))}
    if origin is tuple:
        return {"type": typing.get_args(annotation)[0], "nargs": "+"}
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _argument_kwargs(inner)
    return {"type": annotation}


def tampo_argument_parser() -> argparse.ArgumentParser:
    """Parser of the ``--tampo.*`` options (no help flag: OpenRLHF's parser owns ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, add_help=False, allow_abbrev=False, exit_on_error=False
    )
    group = parser.add_argument_group(
        "TAMPO (tampo_core.adapters.openrlhf.launch; every other option goes to OpenRLHF)"
    )
    hints = typing.get_type_hints(TampoConfig, include_extras=True)
    for name, info in TampoConfig.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = " ".join(f"{v:g}" for v in default) if isinstance(default, tuple) else default
        group.add_argument(
            f"--{PREFIX}{name}",
            default=None,
            help=f"{_field_help(name)} (default: {shown})",
            **_argument_kwargs(hints[name]),
        )
    group.add_argument(
        f"--{PREFIX}chunk_size",
        type=int,
        default=None,
        help="kernel token rows per fp32 chunk (default: the kernel's 64 MiB budget)",
    )
    group.add_argument(
        f"--{PREFIX}detailed_metrics",
        action="store_true",
        default=None,
        help="log per-temperature metrics and counters too (default: the compact set)",
    )
    return parser


def _one_line(error: ValidationError) -> str:
    """The first problem of a pydantic error as ``--tampo.<field>: expected <rule>, got <value>``
    (the project's message shape, whether the rule is a shared checker or a pydantic bound)."""
    problem = error.errors()[0]
    field = ".".join(str(part) for part in problem["loc"])
    message = problem["msg"].removeprefix("Value error, ")
    if message.startswith("Input should be "):
        rule = message.removeprefix("Input should be ")
        message = expected(field, rule, repr(problem["input"]))
    elif field and not message.startswith(f"{field}:"):
        message = f"{field}: {message}"
    return f"--{PREFIX}{message}"


def _fail(message: str) -> typing.NoReturn:
    """Exit like argparse (status 2) with a one-line error on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_tampo_args(argv: Sequence[str]) -> tuple[TampoOptions, list[str]]:
    """Split ``argv`` into TAMPO options and the remaining (OpenRLHF) arguments.

    Raises:
        SystemExit: status 2 with a one-line ``--tampo.*`` error on stderr (argparse's usual
            exit), for a malformed, unknown or invalid value.
    """
    parser = tampo_argument_parser()
    try:
        parsed, rest = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as error:
        _fail(str(error))
    unknown = [arg.split("=", 1)[0] for arg in rest if arg.startswith(f"--{PREFIX}")]
    if unknown:
        known = sorted(f"--{name}" for name in vars(parsed))
        _fail(f"unknown TAMPO option(s) {unknown}; known: {', '.join(known)}")
    values = {k.removeprefix(PREFIX): v for k, v in vars(parsed).items() if v is not None}
    adapter = {
        name: values.pop(name) for name in ("chunk_size", "detailed_metrics") if name in values
    }
    try:
        options = TampoOptions(config=TampoConfig(**values), **adapter)
    except ValidationError as error:
        _fail(_one_line(error))
    return options, rest
