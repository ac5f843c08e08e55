"""Source-level contract checks the framework seams share.

A seam lists ``(module, qualified name, snippets)``: the framework code it relies on must still
contain each snippet, or the adapter refuses to run (and the contract tests fail loudly).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any

SourceContract = Iterable[tuple[str, str, tuple[str, ...]]]


def resolve(module: str, qualname: str) -> Any:
    """The object ``module.qualname`` (a Ray actor class resolves to the class it wraps)."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "__ray_actor_class__", target)


def source_problems(contract: SourceContract) -> list[str]:
    """One line per snippet missing from (or object missing in) the installed framework."""
    problems = []
    for module, qualname, snippets in contract:
        try:
            source = inspect.getsource(resolve(module, qualname))
        except (AttributeError, ImportError, OSError, TypeError) as error:
            problems.append(f"{module}.{qualname}: cannot read it ({error})")
            continue
        problems.extend(
            f"{module}.{qualname} no longer contains {snippet!r}"
            for snippet in snippets
            if snippet not in source
        )
    return problems
