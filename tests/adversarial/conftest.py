"""The adversarial suite: every test collected under ``tests/adversarial`` is one bad-input case.

Each case feeds the public API one bad input (or fault) and asserts the clear error (message
shape ``<name>: expected <rule>, got <value>``) and that state and inputs are unchanged. At the
end of the run pytest prints ``adversarial: N tried, M handled``: N cases collected here, M of
them passed (a case that fails in setup, call or teardown, or is skipped, is not handled).
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent
_collected: set[str] = set()
_failed: set[str] = set()
_passed: set[str] = set()


def _in_suite(path: object) -> bool:
    resolved = Path(str(path)).resolve()
    return SUITE in resolved.parents


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every case that will run (after ``-m``/``-k`` deselection) counts as tried."""
    _collected.update(item.nodeid for item in session.items if _in_suite(item.path))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _in_suite(report.fspath):
        return
    if report.failed:
        _failed.add(report.nodeid)
    elif report.when == "call" and report.passed:
        _passed.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _collected:
        return
    handled = len((_passed - _failed) & _collected)
    terminalreporter.write_line(f"adversarial: {len(_collected)} tried, {handled} handled")
