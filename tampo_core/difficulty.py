"""DifficultyBucketer: a bucket per prompt from its running pass rate (online difficulty).

The temperature signal flips between prompts the model solves and prompts it does not
(``../shared/notes/regime-analysis.md``), so difficulty is a natural bucketing for
``ContextualTempMetaPolicy``. Each prompt key keeps a running pass rate

    p <- pass rate of its first visit;   then   p <- (1 - rate_alpha) p + rate_alpha v,

where ``v`` is the mean of ``passed`` over the prompt's trajectories in one ``update`` call.
A prompt never seen has ``prior_rate``. Bucket ``b`` (0 = hardest) holds the rates in
``(e_{b-1}, e_b]`` for edges ``e_0 < ... < e_{M-2}``:

- ``mode="fixed"``: the edges given (default ``j / M``, equal-width), the same on every rank;
- ``mode="quantile"``: the ``j / M`` quantiles of the rates of every prompt seen so far on
  this rank (ties can leave a bucket empty); the fixed edges until ``M`` prompts are seen.

The bucketer is per process (each rank sees its own prompts); feed its labels to the
contextual policy, whose statistics are synchronised.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from tampo_core.labels import Label, as_list, check_label, check_labels
from tampo_core.validation import (
    check_choice,
    check_in_range,
    check_int,
    check_real,
    expected,
    to_float64,
)

STATE_VERSION = 1
Mode = Literal["fixed", "quantile"]


class DifficultyBucketer:
    """Online difficulty buckets ``0..num_buckets-1`` from running pass rates (see module).

    Args:
        num_buckets: M >= 2 buckets.
        mode: ``"fixed"`` or ``"quantile"`` edges.
        edges: M - 1 strictly increasing fixed edges in (0, 1) (default ``j / M``).
        rate_alpha: EMA weight of a new visit, in (0, 1].
        prior_rate: the pass rate of a prompt never seen, in [0, 1].
    """

    def __init__(
        self,
        num_buckets: int = 2,
        *,
        mode: Mode = "fixed",
        edges: Sequence[float] | None = None,
        rate_alpha: float = 0.5,
        prior_rate: float = 0.5,
    ) -> None:
        self._num_buckets = check_int("num_buckets", num_buckets, minimum=2)
        self._mode = check_choice("mode", mode, ("fixed", "quantile"))
        self._edges = _check_edges(edges, self._num_buckets)
        self._rate_alpha = check_in_range("rate_alpha", rate_alpha, 0.0, 1.0, low_open=True)
        self._prior_rate = check_in_range("prior_rate", prior_rate, 0.0, 1.0)
        self._rates: dict[Label, float] = {}

    @property
    def labels(self) -> tuple[int, ...]:
        """The bucket labels ``0..M-1`` (declare them to ``ContextualTempMetaPolicy``)."""
        return tuple(range(self._num_buckets))

    @property
    def edges(self) -> tuple[float, ...]:
        """The M - 1 edges in use now."""
        if self._mode == "fixed" or len(self._rates) < self._num_buckets:
            return self._edges
        rates = np.fromiter(self._rates.values(), dtype=np.float64)
        levels = np.arange(1, self._num_buckets) / self._num_buckets
        return tuple(float(q) for q in np.quantile(rates, levels))

    def rate(self, key: Label) -> float:
        """The running pass rate of ``key`` (``prior_rate`` if never seen)."""
        return self._rates.get(check_label("key", key), self._prior_rate)

    def buckets(self, keys: Sequence[Label]) -> list[int]:
        """The bucket of each key: the number of edges strictly below its rate."""
        checked = check_labels("keys", keys)
        edges = np.asarray(self.edges, dtype=np.float64)
        rates = np.array([self._rates.get(key, self._prior_rate) for key in checked])
        return np.searchsorted(edges, rates, side="left").astype(int).tolist()

    def update(self, keys: Sequence[Label], passed: object) -> None:
        """Fold one batch into the running rates.

        Args:
            keys: ``[N]`` prompt key of each trajectory (a group repeats its prompt's key).
            passed: ``[N]`` success of each trajectory in [0, 1] (bool, or a reward in [0, 1]).

        Raises:
            ValueError, TypeError: malformed keys or values; the rates are unchanged.
        """
        checked = check_labels("keys", keys)
        values = to_float64("passed", passed)
        if values.shape != (len(checked),):
            rule = f"shape [N] = [{len(checked)}] (one per key)"
            raise ValueError(expected("passed", rule, f"shape {list(values.shape)}"))
        bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
        if bad.size:
            rule = "values in [0, 1]"
            raise ValueError(expected("passed", rule, f"{values[bad[0]]} at index {bad[0]}"))
        totals: dict[Label, list[float]] = {}
        for key, value in zip(checked, values.tolist(), strict=True):
            totals.setdefault(key, []).append(value)
        for key, visit in totals.items():
            rate = sum(visit) / len(visit)
            old = self._rates.get(key)
            self._rates[key] = rate if old is None else old + self._rate_alpha * (rate - old)

    def state_dict(self) -> dict[str, Any]:
        """One JSON document (keys keep their str/int type, rates are exact)."""
        return {
            "version": STATE_VERSION,
            "num_buckets": self._num_buckets,
            "mode": self._mode,
            "edges": list(self._edges),
            "rate_alpha": self._rate_alpha,
            "prior_rate": self._prior_rate,
            "rates": [[key, rate] for key, rate in self._rates.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a bucketer with the same settings.

        Raises:
            ValueError: malformed state or other settings; the rates are unchanged.
        """
        try:
            if state["version"] != STATE_VERSION:
                raise ValueError(f"expected version {STATE_VERSION}, got {state['version']!r}")
            settings = {
                "num_buckets": self._num_buckets,
                "mode": self._mode,
                "edges": list(self._edges),
                "rate_alpha": self._rate_alpha,
                "prior_rate": self._prior_rate,
            }
            saved = {name: state[name] for name in settings}
            if saved != settings:
                raise ValueError(f"settings differ (saved, here): {saved} vs {settings}")
            rates: dict[Label, float] = {}
            for key, rate in state["rates"]:
                rates[check_label("rates[] key", key)] = check_in_range("rates[]", rate, 0.0, 1.0)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid DifficultyBucketer state_dict: {error}") from error
        self._rates = rates


def _check_edges(edges: Sequence[float] | None, num_buckets: int) -> tuple[float, ...]:
    if edges is None:
        return tuple(j / num_buckets for j in range(1, num_buckets))
    values = tuple(check_real(f"edges[{i}]", e) for i, e in enumerate(as_list("edges", edges)))
    rule = f"{num_buckets - 1} strictly increasing edges in (0, 1)"
    if len(values) != num_buckets - 1 or not all(0.0 < e < 1.0 for e in values):
        raise ValueError(expected("edges", rule, values))
    if any(hi <= lo for lo, hi in itertools.pairwise(values)):
        raise ValueError(expected("edges", rule, values))
    return values
