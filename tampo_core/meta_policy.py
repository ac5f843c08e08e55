"""TempMetaPolicy: the state of TAMPO's temperature meta-policy and its two methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tampo_core.advantages import (
    TemperatureAdvantageSums,
    ema_update,
    minmax_distribution,
)
from tampo_core.config import TampoConfig
from tampo_core.distributed import (
    check_same_config,
    distributed_ready,
    synchronise,
)
from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik
from tampo_core.meta_advantage import batch_meta_advantage, meta_advantage_sums
from tampo_core.metrics import policy_metrics
from tampo_core.nucleus import nucleus_sample
from tampo_core.observed_batch import check_observed_batch
from tampo_core.protocol import TemperaturePolicy
from tampo_core.sharpness import sparsemax_input
from tampo_core.state import dump_state, parse_state
from tampo_core.stats import ObserveStats
from tampo_core.validation import (
    check_advantages,
    check_float_tensor,
    check_instance,
    expected,
)
from tampo_core.warmup import warmup_index


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
    the caller already gathered the whole batch on every rank. All ranks succeed together or
    fail together (``tampo_core.distributed``): a bad batch on any rank makes every rank raise
    the same error in the same call, states unchanged; the first synchronised update checks
    that every rank holds the same config (seed included); an update made by one rank alone
    (``sync=False`` on that rank only) is detected at the next synchronised update.

    Numerics: advantages beyond ``|A| <= 1e100`` (``validation.MAX_ABS_ADVANTAGE``) are
    refused, not rescaled, so no sum, EMA or spread can overflow and nothing non-finite enters
    the state.
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
        self._config_checked = False  # across ranks, at the first synchronised update

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

        During warm-up the ``warmup`` rule (uniform over the candidates, or the fixed
        ``warmup_temperature``), then nucleus sampling of ``probs`` with ``top_p``
        (``top_p = 0``: the argmax, ties to the lower temperature).
        """
        if self.in_warmup:
            index = warmup_index(self._config, self._rng)
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
        rewards: torch.Tensor | np.ndarray | list[float] | None = None,
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
            sync: all-reduce across ranks (default: whenever torch.distributed is initialised);
                None or a bool.
            chunk_size: rows per kernel chunk (default: the kernel's choice).
            rewards: ``[B]`` rewards, required with ``meta_advantage="batch_baseline"`` (and
                refused otherwise); see :meth:`observe_loglik`.

        Returns:
            The update's statistics (global across ranks when synchronised).

        Raises:
            ValueError, TypeError: on malformed or non-finite input (a NaN/inf logit in a valid
                row makes that trajectory's likelihood non-finite); the state is unchanged.
                Synchronised, a bad input on any rank raises on every rank, the message naming
                the failing ranks and their errors (``distributed.synchronise``); a config that
                differs across ranks raises ValueError naming the field.
            RuntimeError: ``sync=True`` without a process group; ranks out of step (their
                update counters differ).
        """

        def batch_sums() -> TemperatureAdvantageSums:
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
            return self._batch_sums(loglik, advantages, None, rewards)

        return self._update(batch_sums, sync)

    def observe_loglik(
        self,
        loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
        advantages: torch.Tensor | np.ndarray | list[float],
        *,
        num_tokens: torch.Tensor | np.ndarray | list[int] | None = None,
        sync: bool | None = None,
        rewards: torch.Tensor | np.ndarray | list[float] | None = None,
    ) -> ObserveStats:
        """Update the meta-policy from precomputed per-temperature likelihoods.

        The options change two inputs of the paper's update (defaults: unchanged): sparsemax
        sees ``tampo_core.sharpness.sparsemax_input`` (``likelihood``, ``sparsemax_scale``) and
        weights ``tampo_core.meta_advantage`` advantages (``meta_advantage``).

        Args:
            loglik: ``[N, K]`` mean log-likelihood of each trajectory at each candidate
                temperature, or a kernel's ``TemperatureLoglik`` (which carries its counts).
            advantages: ``[N]`` finite trajectory advantages.
            num_tokens: ``[N]`` valid tokens per trajectory; rows with 0 are skipped and
                counted (their likelihoods are ignored, NaN or not). None: every row has tokens
                (refused with ``likelihood="sum"``, which needs the counts).
            sync: as in :meth:`observe`.
            rewards: ``[N]`` rewards for ``meta_advantage="batch_baseline"`` (None otherwise);
                their batch sums travel in the same all-reduce as the rest.

        Raises:
            ValueError, TypeError: on malformed input or a non-finite likelihood in a row with
                tokens; the state is unchanged.
        """
        return self._update(lambda: self._batch_sums(loglik, advantages, num_tokens, rewards), sync)

    def _batch_sums(
        self,
        loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
        advantages: torch.Tensor | np.ndarray | list[float],
        num_tokens: torch.Tensor | np.ndarray | list[int] | None,
        rewards: torch.Tensor | np.ndarray | list[float] | None,
    ) -> TemperatureAdvantageSums:
        """This rank's batch, every check passed, as additive sums; raises on bad input."""
        batch = check_observed_batch(loglik, advantages, num_tokens, self._config.num_temperatures)
        scores = sparsemax_input(batch.loglik, batch.num_tokens, self._config)
        return meta_advantage_sums(self._config, scores, batch.advantages, rewards, batch.valid)

    def _update(
        self, batch_sums: Callable[[], TemperatureAdvantageSums], sync: object
    ) -> ObserveStats:
        """Check this rank's batch, reduce across ranks when synchronising, apply the EMA step.

        Synchronised, every rank runs the same collectives whatever its input (see
        ``tampo_core.distributed``): ``batch_sums`` runs inside a guard, and its error (if any)
        travels in the one packed all-reduce, so every rank raises the same error in the same
        call, or applies the same update. Nothing is assigned before the last check passed.
        """
        valid_sync = sync is None or isinstance(sync, (bool, np.bool_))
        syncing = distributed_ready() if sync is None or not valid_sync else bool(sync)
        if syncing and not distributed_ready():
            raise RuntimeError(
                expected("sync", "an initialised torch.distributed group with sync=True", "none")
            )
        k = self._config.num_temperatures
        error: Exception | None = None
        try:
            if not valid_sync:
                raise TypeError(expected("sync", "None or a bool", repr(sync)))
            sums = batch_sums()
        except Exception as caught:
            if not syncing:
                raise
            sums, error = TemperatureAdvantageSums.zeros(k), caught
        if syncing:
            if not self._config_checked:
                check_same_config(self._config.model_dump(mode="json"))
                self._config_checked = True
            reduced = synchronise(sums.pack(), error, self._num_updates)
            sums = TemperatureAdvantageSums.unpack(reduced, k)
        if sums.count == 0:
            raise ValueError(
                expected(
                    "batch",
                    "at least one trajectory with a valid token",
                    f"none ({int(sums.skipped)} skipped)",
                )
            )
        batch_advantage = batch_meta_advantage(self._config, sums)
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

    def metrics(self, detail: bool = False) -> dict[str, float]:
        """A flat ``{key: float}`` dict for a logger (``tampo_core.metrics.policy_metrics``).

        By default five keys at most: ``tampo/temperature``, ``tampo/expected_temperature``,
        ``tampo/entropy`` and, after an update, ``tampo/support_size``,
        ``tampo/edge_fraction``. ``detail=True`` adds the counters and the per-temperature
        keys ``tampo/{prob,ema,adv,preferred}/<T>``, ``T`` labelled as ``repr(float(T))``
        (``tampo/prob/1.0``, ``tampo/prob/0.6``).
        """
        return policy_metrics(
            self.temperatures,
            self.probs,
            self._ema,
            self._num_updates,
            self.in_warmup,
            self._last_temperature,
            self._last_stats,
            detail=detail,
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (config, EMA, counters, last stats, RNG state); the format
        is ``tampo_core.state.PolicyState``."""
        return dump_state(
            self._config,
            self._ema,
            self._num_updates,
            self._last_temperature,
            self._last_stats,
            self._rng,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the following samples repeat exactly.

        Every field is validated by one schema (``tampo_core.state.PolicyState``) against this
        policy's config before anything is assigned.

        Raises:
            ValueError: the only error type, for a malformed state or a different config; the
                message lists each bad field as ``<field>: expected <rule>, got <value>``. The
                state is unchanged.
        """
        (
            self._ema,
            self._num_updates,
            self._last_temperature,
            self._last_stats,
            self._rng,
        ) = parse_state(state, self._config)

    def __repr__(self) -> str:
        probs = ", ".join(
            f"{t:g}: {p:.3f}" for t, p in zip(self.temperatures, self.probs, strict=True)
        )
        return f"TempMetaPolicy(updates={self._num_updates}, probs={{{probs}}})"
