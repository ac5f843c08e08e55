"""Shared pytest configuration.

The tests exercise the *installed* package (``pip install -e .``, done by scripts/setup.sh):
``tampo_core`` and ``tampo_core.adapters``, which setup.py maps from the ``adapters/`` folder.
Nothing here edits ``sys.path``; shared helpers are modules under ``tests/`` imported as
``tests.<dir>.<module>`` (``python -m pytest`` from the checkout makes ``tests`` importable).
"""

import importlib.util

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("tampo_core.adapters") is None:
        raise pytest.UsageError(
            "tampo-core is not installed: expected `pip install -e .` (scripts/setup.sh), "
            "got no importable tampo_core.adapters"
        )
