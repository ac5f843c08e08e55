"""AdaptiveGridTempMetaPolicy: TAMPO whose candidate grid moves when its mass sits on an edge.

The paper's grid (0.6..1.5) is set by hand, and with a constant-sign signal TAMPO ramps to one
edge and stays there. This wrapper keeps a ``TempMetaPolicy`` on the current grid and, after
each update, applies one documented rule:

- **edge**: the grid's lowest (highest) candidate holds the largest probability of ``pi``
  (ties: the lower temperature, as ``nucleus_support`` orders them). The wrapper counts how
  many consecutive updates ended with ``pi``'s argmax on the same edge.
- **move**: when that count reaches ``grid_patience``, one candidate is added beyond that edge
  at the edge's own spacing, ``T_1 - (T_2 - T_1)`` (low) or ``T_K + (T_K - T_{K-1})`` (high),
  rounded to 1e-9, if it stays inside ``[min_temperature, max_temperature]``; when the grid
  already holds ``max_candidates``, the candidate at the opposite edge is dropped (the grid
  shifts). The count restarts after every move and whenever the argmax leaves that edge. A
  new candidate that would leave the range changes nothing.
- **EMA of a new candidate**: the EMA value of the edge candidate it extends (its nearest
  neighbour: the best available estimate of its advantage), so it starts with the edge's
  probability; a dropped candidate's EMA is discarded. ``pi`` is then ``minmax`` of the new
  EMA, a probability vector as always.

After a move the inner policy is rebuilt on the new grid through its public state: the EMA is
carried over as above, the update counter and the generator are kept, the last statistics are
dropped (they describe the old grid) and the last temperature is kept only if it is still a
candidate. Warm-up must be ``"uniform"`` (a fixed warm-up temperature could leave the grid).
Likelihoods passed to :meth:`observe_loglik` must be computed at :attr:`temperatures`, the
current grid.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from tampo_core.config import TampoConfig
from tampo_core.loglik import TemperatureLoglik
from tampo_core.meta_policy import TempMetaPolicy
from tampo_core.stats import ObserveStats
from tampo_core.validation import check_instance, check_int, check_temperature, expected

STATE_VERSION = 1
Edge = Literal["low", "high"]


class AdaptiveGridTempMetaPolicy:
    """TAMPO on a candidate grid that extends or shifts toward an edge holding the mass.

    Args:
        config: the starting grid and every other hyper-parameter (``warmup="uniform"``).
        grid_patience: consecutive updates with ``pi``'s argmax on one edge before a move.
        min_temperature: the lowest temperature a move may add (<= the starting grid's).
        max_temperature: the highest temperature a move may add (>= the starting grid's).
        max_candidates: the largest K; beyond it a move drops the opposite edge.
    """

    def __init__(
        self,
        config: TampoConfig | None = None,
        *,
        grid_patience: int = 10,
        min_temperature: float = 0.3,
        max_temperature: float = 2.0,
        max_candidates: int = 16,
    ) -> None:
        if config is not None:
            check_instance("config", config, TampoConfig)
        base = TampoConfig() if config is None else config
        if base.warmup != "uniform":
            rule = "'uniform' (a fixed warm-up temperature could leave the grid)"
            raise ValueError(expected("config.warmup", rule, repr(base.warmup)))
        self._patience = check_int("grid_patience", grid_patience, minimum=1)
        low = check_temperature("min_temperature", min_temperature)
        high = check_temperature("max_temperature", max_temperature)
        if not low <= base.temperatures[0] or not high >= base.temperatures[-1]:
            rule = f"min_temperature <= {base.temperatures[0]} and max_temperature >= "
            raise ValueError(
                expected("range", rule + f"{base.temperatures[-1]}", f"[{low}, {high}]")
            )
        self._range = (low, high)
        self._max_candidates = check_int(
            "max_candidates", max_candidates, minimum=base.num_temperatures
        )
        self._policy = TempMetaPolicy(config=base)
        self._edge: Edge | None = None
        self._edge_run = 0

    @property
    def policy(self) -> TempMetaPolicy:
        """The inner policy on the current grid (replaced after every move)."""
        return self._policy

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The current candidate grid, increasing."""
        return self._policy.temperatures

    @property
    def probs(self) -> np.ndarray:
        """float64 ``[K]`` on the current grid."""
        return self._policy.probs

    @property
    def ema(self) -> np.ndarray:
        """float64 ``[K]`` on the current grid (a copy)."""
        return self._policy.ema

    @property
    def edge_run(self) -> tuple[Edge | None, int]:
        """The edge holding ``pi``'s argmax and for how many consecutive updates."""
        return self._edge, self._edge_run

    def sample(self) -> float:
        """As ``TempMetaPolicy.sample`` on the current grid."""
        return self._policy.sample()

    def observe(self, logits_or_logprobs: torch.Tensor, advantages: Any, **kwargs: Any) -> Any:
        """``TempMetaPolicy.observe`` on the current grid, then the grid rule."""
        stats = self._policy.observe(logits_or_logprobs, advantages, **kwargs)
        self._after_update()
        return stats

    def observe_loglik(
        self, loglik: TemperatureLoglik | torch.Tensor | np.ndarray, advantages: Any, **kwargs: Any
    ) -> ObserveStats:
        """``TempMetaPolicy.observe_loglik`` (``[N, K]`` at the current grid), then the rule."""
        stats = self._policy.observe_loglik(loglik, advantages, **kwargs)
        self._after_update()
        return stats

    def _after_update(self) -> None:
        argmax = int(np.argmax(self._policy.probs))
        k = len(self.temperatures)
        edge: Edge | None = "low" if argmax == 0 else "high" if argmax == k - 1 else None
        self._edge_run = self._edge_run + 1 if edge is not None and edge == self._edge else 1
        self._edge = edge
        if edge is None:
            self._edge_run = 0
        elif self._edge_run >= self._patience:
            self._edge_run = 0
            self._move(edge)

    def _move(self, edge: Edge) -> None:
        grid = list(self.temperatures)
        ema = self._policy.ema.tolist()
        if edge == "low":
            new = round(grid[0] - (grid[1] - grid[0]), 9)
            if new < self._range[0]:
                return
            grid, ema = [new, *grid], [ema[0], *ema]
            if len(grid) > self._max_candidates:
                grid, ema = grid[:-1], ema[:-1]
        else:
            new = round(grid[-1] + (grid[-1] - grid[-2]), 9)
            if new > self._range[1]:
                return
            grid, ema = [*grid, new], [*ema, ema[-1]]
            if len(grid) > self._max_candidates:
                grid, ema = grid[1:], ema[1:]
        self._policy = _rebuilt(self._policy, tuple(grid), ema)

    def metrics(self, detail: bool = False) -> dict[str, float]:
        """The inner policy's metrics plus ``tampo/grid_min``, ``tampo/grid_max``,
        ``tampo/num_candidates``."""
        out = self._policy.metrics(detail=detail)
        out["tampo/grid_min"] = float(self.temperatures[0])
        out["tampo/grid_max"] = float(self.temperatures[-1])
        out["tampo/num_candidates"] = float(len(self.temperatures))
        return out

    def state_dict(self) -> dict[str, Any]:
        """One JSON document: the rule's settings, the edge count and the inner state (whose
        config holds the current grid)."""
        return {
            "version": STATE_VERSION,
            "kind": "AdaptiveGridTempMetaPolicy",
            "settings": self._settings(),
            "edge": self._edge,
            "edge_run": self._edge_run,
            "policy": self._policy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a policy with the same rule settings.

        Raises:
            ValueError: malformed state or other settings; the state is unchanged.
        """
        try:
            if not isinstance(state, dict):
                raise TypeError(expected("state", "a dict", type(state).__name__))
            if state["version"] != STATE_VERSION or state["kind"] != "AdaptiveGridTempMetaPolicy":
                rule = f"version {STATE_VERSION} of an AdaptiveGridTempMetaPolicy"
                raise ValueError(expected("state", rule, f"{state['version']!r}"))
            if state["settings"] != self._settings():
                raise ValueError(expected("settings", repr(self._settings()), state["settings"]))
            edge, run = state["edge"], check_int("edge_run", state["edge_run"])
            if edge not in (None, "low", "high") or (edge is None and run != 0):
                raise ValueError(expected("edge", "None (run 0), 'low' or 'high'", repr(edge)))
            config = TampoConfig(**state["policy"]["config"])
            self._check_grid(config)
            policy = TempMetaPolicy(config=config)
            policy.load_state_dict(state["policy"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid AdaptiveGridTempMetaPolicy state_dict: {error}") from error
        self._policy, self._edge, self._edge_run = policy, edge, run

    def _settings(self) -> dict[str, Any]:
        base = self._policy.config.model_dump(mode="json")
        del base["temperatures"]
        return {
            "config_without_grid": base,
            "grid_patience": self._patience,
            "min_temperature": self._range[0],
            "max_temperature": self._range[1],
            "max_candidates": self._max_candidates,
        }

    def _check_grid(self, config: TampoConfig) -> None:
        grid = config.temperatures
        inside = self._range[0] <= grid[0] and grid[-1] <= self._range[1]
        if not inside or len(grid) > self._max_candidates:
            rule = f"a grid inside {list(self._range)} with at most {self._max_candidates} values"
            raise ValueError(expected("temperatures", rule, grid))


def _rebuilt(policy: TempMetaPolicy, grid: tuple[float, ...], ema: list[float]) -> TempMetaPolicy:
    """A policy on ``grid`` holding ``ema``, ``policy``'s counter and generator (public state)."""
    state = policy.state_dict()
    config = TampoConfig(**{**policy.config.model_dump(), "temperatures": grid})
    last = state["last_temperature"]
    state.update(
        config=config.model_dump(mode="json"),
        ema=ema,
        last_stats=None,
        last_temperature=last if last in grid else None,
    )
    rebuilt = TempMetaPolicy(config=config)
    rebuilt.load_state_dict(state)
    return rebuilt
