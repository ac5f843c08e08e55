"""The version gate every adapter seam calls before touching its framework's internals."""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version


def install_hint(extra: str) -> str:
    """How to install ``tampo-core`` with ``extra``: from a checkout today, by name once a
    release is published on the package index."""
    return (
        f'`pip install ".[{extra}]"` in a tampo-core checkout (a published release will also '
        f'support `pip install "tampo-core[{extra}]"`)'
    )


def require_version(distribution: str, pin: str, extra: str, version: str | None = None) -> Version:
    """Raise ImportError unless ``distribution`` (installed, or ``version``) satisfies ``pin``.

    Args:
        distribution: the framework's PyPI name, e.g. ``"trl"``.
        pin: the versions the adapter is tested against, e.g. ``">=1.15,<1.17"``.
        extra: the ``tampo-core`` extra that installs a supported release (``install_hint``).
        version: check this version string instead of the installed one.

    Returns:
        The parsed version.
    """
    if version is None:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError as error:
            raise ImportError(
                f"tampo_core.adapters.{extra} needs {distribution}{pin}, which is not installed: "
                f"install it with {install_hint(extra)}"
            ) from error
    parsed = Version(version)
    if parsed not in SpecifierSet(pin):
        raise ImportError(
            f"tampo_core.adapters.{extra} supports {distribution}{pin} (the versions it is tested "
            f"against), got {distribution} {version}. Install a supported release with "
            f"{install_hint(extra)}; the framework internals the adapter reaches change between "
            "releases, so other versions are refused rather than silently mis-trained."
        )
    return parsed
