"""TempMetaPolicy: the state of TAMPO's temperature meta-policy and its two methods."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tampo_core.advantages import (
    TemperatureAdvantageSums,
    ema_update,
    minmax_distribution,
    temperature_advantage_sums,
)
from tampo_core.config import TampoConfig
from tampo_core.distributed import all_reduce_sum, distributed_ready
from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik
from tampo_core.nucleus import nucleus_sample
from tampo_core.protocol import TemperaturePolicy
from tampo_core.stats import ObserveStats
from tampo_core.validation import (
    check_advantages,
    check_float_tensor,
    check_instance,
    check_loglik,
    check_num_tokens,
    expected,
)

STATE_VERSION = 1


class TempMetaPolicy(TemperaturePolicy):
    """A distribution over K candidate temperatures, learned from the rollouts already made.

    Per step: ``T = policy.sample()``, generate the batch at ``T``, compute advantages, then
    ``policy.observe(logits, advantages, tokens=..., mask=...)`` (or ``observe_loglik`` with
    precomputed ``[N, K]`` likelihoods). The state is the EMA of the temperature advantages, the
    update counter and the policy's own random generator; ``probs`` derives from the EMA.

    Construct from keyword arguments (``TempMetaPolicy(top_p=0.7)``) or from a validated
    ``TampoConfig`` (``TempMetaPolicy(config=cfg)``), not both.

    Distributed: when ``torch.distributed`` is initialised, each ``observe`` all-reduces the
    per-batch sums and counts (float64) before the EMA update, so every rank holds the same
    distribution and, with the same seed, draws the same temperatures. Pass ``sync=False`` when
    the caller already gathered the whole batch on every rank.
    """

    def __init__(
        self,
        temperatures: tuple[float, ...] | list[float] | None = None,
        ema_alpha: float | None = None,
        top_p: float | None = None,
        warmup_steps: int | None = None,
        seed: int | None = None,
        *,
        config: TampoConfig | None = None,
    ) -> None:
        overrides = {
            name: value
            for name, value in (
                ("temperatures", temperatures),
                ("ema_alpha", ema_alpha),
                ("top_p", top_p),
                ("warmup_steps", warmup_steps),
                ("seed", seed),
            )
            if value is not None
        }
        if config is not None:
            check_instance("config", config, TampoConfig)
            if overrides:
                raise ValueError(
                    "TempMetaPolicy: expected either config= or keyword hyper-parameters, got "
                    f"both (config and {sorted(overrides)})"
                )
        self._config = config if config is not None else TampoConfig(**overrides)
        num_temperatures = self._config.num_temperatures
        self._ema = np.zeros(num_temperatures, dtype=np.float64)
        self._num_updates = 0
        self._last_temperature: float | None = None
        self._last_stats: ObserveStats | None = None
        self._rng = np.random.Generator(np.random.PCG64(self._config.seed))

    @property
    def config(self) -> TampoConfig:
        """The validated hyper-parameters."""
        return self._config

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The K candidate temperatures, increasing."""
        return self._config.temperatures

    @property
    def ema(self) -> np.ndarray:
        """float64 ``[K]``: the EMA of the batch temperature advantages (a copy)."""
        return self._ema.copy()

    @property
    def probs(self) -> np.ndarray:
        """float64 ``[K]``: the meta-policy pi(T_k) = minmax(EMA) / sum (uniform if flat)."""
        return minmax_distribution(self._ema)

    @property
    def num_updates(self) -> int:
        """How many ``observe``/``observe_loglik`` calls updated the EMA."""
        return self._num_updates

    @property
    def in_warmup(self) -> bool:
        """True while ``sample`` is uniform over the candidates."""
        return self._num_updates < self._config.warmup_steps

    @property
    def last_temperature(self) -> float | None:
        """The value the last ``sample`` call returned, or None before any."""
        return self._last_temperature

    @property
    def last_stats(self) -> ObserveStats | None:
        """Statistics of the last update, or None before any."""
        return self._last_stats

    def sample(self) -> float:
        """Draw the temperature for the next rollout batch.

        Uniform over the candidates during warm-up, then nucleus sampling of ``probs`` with
        ``top_p`` (``top_p = 0``: the argmax, ties to the lower temperature).
        """
        if self.in_warmup:
            index = int(self._rng.integers(self._config.num_temperatures))
        else:
            index = nucleus_sample(self.probs, self._config.top_p, self._rng)
        self._last_temperature = self.temperatures[index]
        return self._last_temperature

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor | np.ndarray | list[float],
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
        sync: bool | None = None,
        chunk_size: int | None = None,
    ) -> ObserveStats:
        """Update the meta-policy from one batch of scored rollouts.

        Exactly ``observe_loglik`` applied to ``multi_temperature_loglik``'s output.

        Args:
            logits_or_logprobs: ``[B, L, V]`` fp32/bf16/fp16 logits, or full-vocabulary
                log-probs, of the completion positions; position ``t`` scores ``tokens[:, t]``.
                Never modified.
            advantages: ``[B]`` trajectory advantages (any critic-free estimator).
            tokens: int64 ``[B, L]`` sampled completion tokens.
            mask: ``[B, L]`` bool/int, True on valid completion tokens (None: all valid).
                Trajectories with no valid token are skipped and counted as such.
            source_temperature: the temperature the given values are already divided by
                (vLLM/OpenRLHF hand out tempered logits); raw logits = given * this.
            sync: all-reduce across ranks (default: whenever torch.distributed is initialised).
            chunk_size: rows per kernel chunk (default: the kernel's choice).

        Returns:
            The update's statistics (global across ranks when synchronised).

        Raises:
            ValueError, TypeError: on malformed or non-finite input (a NaN/inf logit in a valid
                row makes that trajectory's likelihood non-finite); the state is unchanged.
        """
        check_float_tensor("logits_or_logprobs", logits_or_logprobs, 3, "[B, L, V]")
        check_advantages(advantages, logits_or_logprobs.shape[0])
        loglik = multi_temperature_loglik(
            logits_or_logprobs,
            tokens,
            self.temperatures,
            mask=mask,
            source_temperature=source_temperature,
            chunk_size=chunk_size,
        )
        return self.observe_loglik(loglik, advantages, sync=sync)

    def observe_loglik(
        self,
        loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
        advantages: torch.Tensor | np.ndarray | list[float],
        *,
        num_tokens: torch.Tensor | np.ndarray | list[int] | None = None,
        sync: bool | None = None,
    ) -> ObserveStats:
        """Update the meta-policy from precomputed per-temperature likelihoods.

        Args:
            loglik: ``[N, K]`` mean log-likelihood of each trajectory at each candidate
                temperature, or a kernel's ``TemperatureLoglik`` (which carries its counts).
            advantages: ``[N]`` finite trajectory advantages.
            num_tokens: ``[N]`` valid tokens per trajectory; rows with 0 are skipped and
                counted (their likelihoods are ignored, NaN or not). None: every row has tokens.
            sync: as in :meth:`observe`.

        Raises:
            ValueError, TypeError: on malformed input or a non-finite likelihood in a row with
                tokens; the state is unchanged.
        """
        if isinstance(loglik, TemperatureLoglik):
            if num_tokens is not None:
                raise ValueError(
                    "num_tokens: expected None when loglik is a TemperatureLoglik (it carries "
                    "its own counts), got both"
                )
            loglik, num_tokens = loglik
        loglik_array = check_loglik(loglik, self._config.num_temperatures)
        counts = check_num_tokens(num_tokens, loglik_array.shape[0])
        valid = counts > 0
        advantages_array = check_advantages(advantages, loglik_array.shape[0])
        bad = np.flatnonzero(valid & ~np.isfinite(loglik_array).all(axis=1))
        if bad.size:
            row = int(bad[0])
            raise ValueError(
                f"loglik[{row}]: expected finite likelihoods for a trajectory with "
                f"{int(counts[row])} valid token(s) (NaN/inf logits, or a sampled token whose "
                f"logit is -inf, make them non-finite), got {loglik_array[row].tolist()} "
                f"({bad.size} such rows)"
            )
        return self._update(loglik_array, advantages_array, valid, sync)

    def _update(
        self, loglik: np.ndarray, advantages: np.ndarray, valid: np.ndarray, sync: bool | None
    ) -> ObserveStats:
        sums = temperature_advantage_sums(loglik, advantages, valid)
        if distributed_ready() if sync is None else sync:
            if not distributed_ready():
                raise RuntimeError(
                    expected(
                        "sync", "an initialised torch.distributed group with sync=True", "none"
                    )
                )
            sums = TemperatureAdvantageSums.unpack(
                all_reduce_sum(sums.pack()), self._config.num_temperatures
            )
        if sums.count == 0:
            raise ValueError(
                expected(
                    "batch",
                    "at least one trajectory with a valid token",
                    f"none ({int(sums.skipped)} skipped)",
                )
            )
        batch_advantage = sums.advantage_sum / sums.count
        self._ema = ema_update(self._ema, batch_advantage, self._config.ema_alpha)
        self._num_updates += 1
        self._last_stats = ObserveStats(
            batch_advantage=batch_advantage,
            support_size=sums.support_sum / sums.count,
            num_trajectories=int(sums.count),
            num_skipped=int(sums.skipped),
            argmax_histogram=sums.argmax_histogram.astype(np.int64),
        )
        return self._last_stats

    def metrics(self) -> dict[str, float]:
        """A flat dict for a logger: ``tampo/temperature``, ``tampo/prob/<T>``, ``tampo/entropy``,
        ``tampo/expected_temperature``, ``tampo/ema/<T>`` and, after an update,
        ``tampo/adv/<T>``, ``tampo/preferred/<T>`` (argmax fractions), ``tampo/support_size``,
        ``tampo/edge_fraction`` (T* on a grid edge), ``tampo/num_trajectories``,
        ``tampo/num_skipped``."""
        probs = self.probs
        positive = probs[probs > 0]
        out: dict[str, float] = {
            "tampo/entropy": float(-(positive * np.log(positive)).sum()),
            "tampo/expected_temperature": float(np.dot(probs, self.temperatures)),
            "tampo/num_updates": float(self._num_updates),
            "tampo/in_warmup": float(self.in_warmup),
        }
        if self._last_temperature is not None:
            out["tampo/temperature"] = self._last_temperature
        for name, value in zip(self._labels(), probs, strict=True):
            out[f"tampo/prob/{name}"] = float(value)
        for name, value in zip(self._labels(), self._ema, strict=True):
            out[f"tampo/ema/{name}"] = float(value)
        stats = self._last_stats
        if stats is not None:
            histogram = stats.argmax_histogram / max(stats.num_trajectories, 1)
            for name, adv, frac in zip(
                self._labels(), stats.batch_advantage, histogram, strict=True
            ):
                out[f"tampo/adv/{name}"] = float(adv)
                out[f"tampo/preferred/{name}"] = float(frac)
            out["tampo/edge_fraction"] = float(histogram[0] + histogram[-1])
            out["tampo/support_size"] = stats.support_size
            out["tampo/num_trajectories"] = float(stats.num_trajectories)
            out["tampo/num_skipped"] = float(stats.num_skipped)
        return out

    def _labels(self) -> list[str]:
        return [f"{t:g}" for t in self.temperatures]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (config, EMA, counters, last stats, RNG state)."""
        rng_state = self._rng.bit_generator.state
        stats = self._last_stats
        return {
            "version": STATE_VERSION,
            "config": self._config.model_dump(mode="json"),
            "ema": self._ema.tolist(),
            "num_updates": self._num_updates,
            "last_temperature": self._last_temperature,
            "last_stats": None
            if stats is None
            else {
                "batch_advantage": stats.batch_advantage.tolist(),
                "support_size": stats.support_size,
                "num_trajectories": stats.num_trajectories,
                "num_skipped": stats.num_skipped,
                "argmax_histogram": stats.argmax_histogram.tolist(),
            },
            "rng": {
                "bit_generator": rng_state["bit_generator"],
                "state": str(rng_state["state"]["state"]),
                "inc": str(rng_state["state"]["inc"]),
                "has_uint32": int(rng_state["has_uint32"]),
                "uinteger": int(rng_state["uinteger"]),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the following samples repeat exactly.

        Raises:
            ValueError: malformed state or a different config; the state is unchanged.
        """
        try:
            restored = _parse_state(state, self._config)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid TempMetaPolicy state_dict: {error}") from error
        (
            self._ema,
            self._num_updates,
            self._last_temperature,
            self._last_stats,
            self._rng,
        ) = restored

    def __repr__(self) -> str:
        probs = ", ".join(
            f"{t:g}: {p:.3f}" for t, p in zip(self.temperatures, self.probs, strict=True)
        )
        return f"TempMetaPolicy(updates={self._num_updates}, probs={{{probs}}})"


def _parse_state(
    state: dict[str, Any], config: TampoConfig
) -> tuple[np.ndarray, int, float | None, ObserveStats | None, np.random.Generator]:
    if not isinstance(state, dict):
        raise TypeError(f"expected a dict, got {type(state).__name__}")
    if state["version"] != STATE_VERSION:
        raise ValueError(f"expected version {STATE_VERSION}, got {state['version']!r}")
    saved = TampoConfig(**state["config"])
    if saved != config:
        differing = {
            name: (getattr(saved, name), getattr(config, name))
            for name in TampoConfig.model_fields
            if getattr(saved, name) != getattr(config, name)
        }
        raise ValueError(f"config differs from this policy's (saved, current): {differing}")
    ema = np.asarray(state["ema"], dtype=np.float64)
    if ema.shape != (config.num_temperatures,) or not np.isfinite(ema).all():
        raise ValueError(
            f"ema must be {config.num_temperatures} finite floats, got {state['ema']!r}"
        )
    num_updates = state["num_updates"]
    if isinstance(num_updates, bool) or not isinstance(num_updates, int) or num_updates < 0:
        raise ValueError(f"num_updates must be an int >= 0, got {num_updates!r}")
    last = state["last_temperature"]
    if last is not None and (
        isinstance(last, bool) or not isinstance(last, (int, float)) or not math.isfinite(last)
    ):
        raise ValueError(f"last_temperature must be a finite float or None, got {last!r}")
    raw_stats = state["last_stats"]
    stats = None
    if raw_stats is not None:
        stats = ObserveStats(
            batch_advantage=np.asarray(raw_stats["batch_advantage"], dtype=np.float64),
            support_size=float(raw_stats["support_size"]),
            num_trajectories=int(raw_stats["num_trajectories"]),
            num_skipped=int(raw_stats["num_skipped"]),
            argmax_histogram=np.asarray(raw_stats["argmax_histogram"], dtype=np.int64),
        )
    rng_state = state["rng"]
    if rng_state["bit_generator"] != "PCG64":
        raise ValueError(f"rng must be a PCG64 state, got {rng_state['bit_generator']!r}")
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(rng_state["state"]), "inc": int(rng_state["inc"])},
        "has_uint32": int(rng_state["has_uint32"]),
        "uinteger": int(rng_state["uinteger"]),
    }
    return ema, num_updates, None if last is None else float(last), stats, rng
