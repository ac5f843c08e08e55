"""ContextualTempMetaPolicy: one TAMPO state per prompt bucket, with a pooled back-off.

The paper shares one temperature distribution across all prompts; a probe measured opposite
signals by prompt group (prompts whose likely answer is wrong favoured T = 1.5, the others
0.6), which a shared distribution averages away. Here every bucket (a label per prompt: task
type, source dataset, or ``DifficultyBucketer``'s online difficulty) holds its own TAMPO
state, updated only from its own trajectories, with the hyper-parameters of one
``TampoConfig``:

- **bucket state** ``b``: ``TempMetaPolicy`` semantics on the counted trajectories of bucket
  ``b``: ``A_B,b^(k) = (1/N_b) sum_{i in b} w_ik A_i``, ``Abar_b <- (1 - alpha) Abar_b +
  alpha A_B,b``, ``pi_b = minmax(Abar_b) / sum``. A bucket without a counted trajectory in a
  batch is left as it is (no EMA decay, no count).
- **pooled state**: the same over every trajectory of the batch (exactly ``TempMetaPolicy`` on
  the whole batch).
- **back-off**: a prompt group of bucket ``b`` draws from ``pi_b`` once bucket ``b`` has
  ``min_bucket_updates`` updates, and from the pooled ``pi`` before that.
- **warm-up**: while the pooled state has fewer than ``warmup_steps`` updates, every draw
  follows ``TampoConfig.warmup`` (uniform or fixed), as in ``TempMetaPolicy``.

The options of ``TampoConfig`` (``likelihood``, ``sparsemax_scale``, ``meta_advantage``) apply
per bucket; with ``"batch_baseline"`` a bucket's baseline is its own batch mean and std.

Distributed: every bucket's ``TemperatureAdvantageSums`` (reward sums included) travel in ONE
packed float64 all-reduce per ``observe`` (``distributed.synchronise``, with ``TempMetaPolicy``'s
fail-together protocol), so every rank holds the same distributions. The bucket set is declared
up front so that the packed vector has the same layout on every rank.
Each rank draws for its own prompts: ranks with different prompts draw different temperatures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tampo_core.advantages import (
    TemperatureAdvantageSums,
    ema_update,
    minmax_distribution,
)
from tampo_core.config import TampoConfig
from tampo_core.contextual_state import (
    BucketState,
    bucket_state_from_json,
    bucket_state_to_json,
    rng_to_json,
)
from tampo_core.distributed import check_same_config, distributed_ready, synchronise
from tampo_core.labels import Label, check_labels
from tampo_core.loglik import TemperatureLoglik, multi_temperature_loglik
from tampo_core.meta_advantage import batch_meta_advantage, meta_advantage_sums, rewards_for
from tampo_core.metrics import policy_metrics
from tampo_core.nucleus import nucleus_sample
from tampo_core.observed_batch import check_observed_batch
from tampo_core.sharpness import sparsemax_input
from tampo_core.stats import ObserveStats
from tampo_core.validation import (
    check_advantages,
    check_float_tensor,
    check_instance,
    check_int,
    check_temperature,
    expected,
)
from tampo_core.warmup import warmup_index

STATE_VERSION = 1
"""The format version of the contextual ``state_dict`` (each bucket entry follows
``tampo_core.state``)."""


@dataclass(frozen=True)
class ContextualObserveStats:
    """What one ``observe`` reports (global across ranks when synchronised).

    Attributes:
        pooled: the pooled state's update over every counted trajectory.
        buckets: each bucket's update, or None where the batch held no counted trajectory of
            that bucket (its state did not change).
    """

    pooled: ObserveStats
    buckets: dict[Label, ObserveStats | None]


class ContextualTempMetaPolicy:
    """Per-bucket TAMPO temperature distributions with a pooled back-off (see the module).

    Per step: ``temps = policy.sample(group_buckets)`` (one temperature per prompt group),
    generate each group at its temperature, then ``policy.observe(logits, advantages,
    tokens=..., mask=..., buckets=row_buckets)`` with one label per trajectory.

    Args:
        buckets: the bucket labels, unique strings or ints, declared up front.
        config: the shared hyper-parameters (default: the paper's).
        min_bucket_updates: updates a bucket needs before its draws use its own distribution
            instead of the pooled one (0: always its own).
    """

    def __init__(
        self,
        buckets: Sequence[Label],
        *,
        config: TampoConfig | None = None,
        min_bucket_updates: int = 10,
    ) -> None:
        if config is not None:
            check_instance("config", config, TampoConfig)
        self._config = TampoConfig() if config is None else config
        self._labels = _check_labels(buckets)
        self._index = {label: i for i, label in enumerate(self._labels)}
        self._min_bucket_updates = check_int("min_bucket_updates", min_bucket_updates)
        num_temperatures = self._config.num_temperatures
        self._pooled = BucketState.fresh(num_temperatures)
        self._buckets = [BucketState.fresh(num_temperatures) for _ in self._labels]
        self._last_temperatures: list[float] | None = None
        self._rng = np.random.Generator(np.random.PCG64(self._config.seed))
        self._config_checked = False

    @property
    def config(self) -> TampoConfig:
        """The shared, validated hyper-parameters."""
        return self._config

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The K candidate temperatures, increasing."""
        return self._config.temperatures

    @property
    def buckets(self) -> tuple[Label, ...]:
        """The declared bucket labels, in order."""
        return self._labels

    @property
    def min_bucket_updates(self) -> int:
        """Updates a bucket needs before it stops backing off to the pooled distribution."""
        return self._min_bucket_updates

    @property
    def in_warmup(self) -> bool:
        """True while draws follow the warm-up rule (pooled updates < ``warmup_steps``)."""
        return self._pooled.num_updates < self._config.warmup_steps

    @property
    def last_temperatures(self) -> list[float] | None:
        """What the last ``sample`` call returned, or None before any."""
        return None if self._last_temperatures is None else list(self._last_temperatures)

    def ema(self, bucket: Label | None = None) -> np.ndarray:
        """float64 ``[K]``: the EMA of ``bucket`` (None: the pooled state), a copy."""
        return self._state(bucket).ema.copy()

    def probs(self, bucket: Label | None = None) -> np.ndarray:
        """float64 ``[K]``: ``minmax(EMA) / sum`` of ``bucket``'s own state (None: pooled)."""
        return minmax_distribution(self._state(bucket).ema)

    def num_updates(self, bucket: Label | None = None) -> int:
        """Updates of ``bucket``'s state (None: the pooled state, i.e. ``observe`` calls)."""
        return self._state(bucket).num_updates

    def last_stats(self, bucket: Label | None = None) -> ObserveStats | None:
        """The last update of ``bucket``'s state (None: pooled), or None before any."""
        return self._state(bucket).last_stats

    def backs_off(self, bucket: Label) -> bool:
        """True while ``bucket`` draws from the pooled distribution."""
        return self._state(bucket).num_updates < self._min_bucket_updates

    def sampling_probs(self, bucket: Label) -> np.ndarray:
        """float64 ``[K]``: the distribution ``bucket``'s draws use after warm-up."""
        return self.probs(None if self.backs_off(bucket) else bucket)

    def sample(self, buckets: Sequence[Label]) -> list[float]:
        """One temperature per prompt group, ``buckets[j]`` naming group ``j``'s bucket.

        During warm-up the ``warmup`` rule, then nucleus sampling (``top_p``) of
        :meth:`sampling_probs`; the draws use the policy's own generator, in order.
        """
        indices = self._bucket_indices("buckets", buckets)
        draw_probs: dict[int, np.ndarray] = {}
        temperatures = []
        for b in indices:
            if self.in_warmup:
                k = warmup_index(self._config, self._rng)
            else:
                if b not in draw_probs:
                    draw_probs[b] = self.sampling_probs(self._labels[b])
                k = nucleus_sample(draw_probs[b], self._config.top_p, self._rng)
            temperatures.append(self.temperatures[k])
        self._last_temperatures = temperatures
        return list(temperatures)

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor | np.ndarray | list[float],
        *,
        tokens: torch.Tensor,
        buckets: Sequence[Label],
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
        sync: bool | None = None,
        chunk_size: int | None = None,
        rewards: torch.Tensor | np.ndarray | list[float] | None = None,
    ) -> ContextualObserveStats:
        """Update every bucket from its own trajectories of one batch.

        As ``TempMetaPolicy.observe`` (same arguments and errors, same fail-together protocol
        across ranks), plus ``buckets``: ``[B]`` labels, one per trajectory. The likelihoods do
        not depend on the temperature each row was sampled at, so rows sampled at different
        temperatures need nothing more.
        """

        def local_sums() -> np.ndarray:
            check_float_tensor("logits_or_logprobs", logits_or_logprobs, 3, "[B, L, V]")
            num_rows = logits_or_logprobs.shape[0]
            check_advantages(advantages, num_rows)
            self._bucket_indices("buckets", buckets, num_rows)
            loglik = multi_temperature_loglik(
                logits_or_logprobs,
                tokens,
                self.temperatures,
                mask=mask,
                source_temperature=source_temperature,
                chunk_size=chunk_size,
            )
            return self._local_sums(loglik, advantages, buckets, None, rewards)

        return self._update(local_sums, sync)

    def observe_loglik(
        self,
        loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
        advantages: torch.Tensor | np.ndarray | list[float],
        *,
        buckets: Sequence[Label],
        num_tokens: torch.Tensor | np.ndarray | list[int] | None = None,
        sync: bool | None = None,
        rewards: torch.Tensor | np.ndarray | list[float] | None = None,
    ) -> ContextualObserveStats:
        """Update from precomputed ``[N, K]`` likelihoods; ``buckets``: ``[N]`` labels.

        Arguments and errors as ``TempMetaPolicy.observe_loglik``; the state is unchanged on
        any error (including a label outside the declared buckets).
        """
        return self._update(
            lambda: self._local_sums(loglik, advantages, buckets, num_tokens, rewards), sync
        )

    def _local_sums(
        self,
        loglik: TemperatureLoglik | torch.Tensor | np.ndarray,
        advantages: torch.Tensor | np.ndarray | list[float],
        buckets: Sequence[Label],
        num_tokens: torch.Tensor | np.ndarray | list[int] | None,
        rewards: torch.Tensor | np.ndarray | list[float] | None,
    ) -> np.ndarray:
        """This rank's checked batch as float64 ``[(M + 1) * S]``: the packed
        ``TemperatureAdvantageSums`` (S slots) of the pooled group, then of each bucket."""
        batch = check_observed_batch(loglik, advantages, num_tokens, self._config.num_temperatures)
        num_rows = batch.loglik.shape[0]
        index = np.asarray(self._bucket_indices("buckets", buckets, num_rows), dtype=np.int64)
        reward_array = rewards_for(self._config, rewards, num_rows)
        scores = sparsemax_input(batch.loglik, batch.num_tokens, self._config)
        groups = [np.ones(num_rows, dtype=bool)] + [index == b for b in range(len(self._labels))]
        return np.concatenate(
            [
                meta_advantage_sums(
                    self._config,
                    scores[rows],
                    batch.advantages[rows],
                    None if reward_array is None else reward_array[rows],
                    batch.valid[rows],
                ).pack()
                for rows in groups
            ]
        )

    def _update(self, local_sums: Callable[[], np.ndarray], sync: object) -> ContextualObserveStats:
        """Run the local checks, reduce across ranks in one collective, apply every update.

        The protocol of ``TempMetaPolicy``: synchronised, a failing rank sends zeros and its
        error through ``distributed.synchronise``, so every rank raises the same error or
        applies the same updates. Nothing is assigned before the last check passed.
        """
        valid_sync = sync is None or isinstance(sync, (bool, np.bool_))
        syncing = distributed_ready() if sync is None or not valid_sync else bool(sync)
        if syncing and not distributed_ready():
            raise RuntimeError(
                expected("sync", "an initialised torch.distributed group with sync=True", "none")
            )
        k, groups = self._config.num_temperatures, len(self._labels) + 1
        error: Exception | None = None
        try:
            if not valid_sync:
                raise TypeError(expected("sync", "None or a bool", repr(sync)))
            packed = local_sums()
        except Exception as caught:
            if not syncing:
                raise
            width = TemperatureAdvantageSums.zeros(k).pack().shape[0]
            packed, error = np.zeros(groups * width), caught
        if syncing:
            if not self._config_checked:
                check_same_config(self._sync_identity())
                self._config_checked = True
            packed = synchronise(packed, error, self._pooled.num_updates)
        sums = [TemperatureAdvantageSums.unpack(chunk, k) for chunk in np.split(packed, groups)]
        if sums[0].count == 0:
            rule = "at least one trajectory with a valid token"
            raise ValueError(expected("batch", rule, f"none ({int(sums[0].skipped)} skipped)"))
        old_states = [self._pooled, *self._buckets]
        new_states = [self._updated(old, s) for old, s in zip(old_states, sums, strict=True)]
        self._pooled = new_states[0] or self._pooled
        self._buckets = [
            old if new is None else new
            for old, new in zip(self._buckets, new_states[1:], strict=True)
        ]
        return ContextualObserveStats(
            pooled=self._pooled.last_stats,  # type: ignore[arg-type]
            buckets={
                label: None if new is None else new.last_stats
                for label, new in zip(self._labels, new_states[1:], strict=True)
            },
        )

    def _updated(self, old: BucketState, sums: TemperatureAdvantageSums) -> BucketState | None:
        """The state after one group's reduced sums, or None if they count no trajectory."""
        if sums.count == 0:
            return None
        batch_advantage = batch_meta_advantage(self._config, sums)
        stats = ObserveStats(
            batch_advantage=batch_advantage,
            support_size=sums.support_sum / sums.count,
            num_trajectories=int(sums.count),
            num_skipped=int(sums.skipped),
            argmax_histogram=sums.argmax_histogram.astype(np.int64),
        )
        ema = ema_update(old.ema, batch_advantage, self._config.ema_alpha)
        return BucketState(ema, old.num_updates + 1, stats)

    def _sync_identity(self) -> dict[str, Any]:
        """What must agree across ranks: the config, the bucket labels, the back-off."""
        return {
            **self._config.model_dump(mode="json"),
            "buckets": list(self._labels),
            "min_bucket_updates": self._min_bucket_updates,
        }

    def metrics(self, detail: bool = False) -> dict[str, float]:
        """A flat ``{key: float}`` dict for a logger.

        ``tampo/in_warmup``, ``tampo/mean_temperature`` (of the last draws) and, per scope
        ``pooled`` or ``bucket/<label>``, the keys of ``tampo_core.metrics.policy_metrics``
        under ``tampo/<scope>/`` (compact, or all of them with ``detail=True``); buckets also
        report ``tampo/bucket/<label>/backs_off`` (1: drawing from the pooled distribution).
        """
        out: dict[str, float] = {"tampo/in_warmup": float(self.in_warmup)}
        if self._last_temperatures:
            out["tampo/mean_temperature"] = float(np.mean(self._last_temperatures))
        scopes: list[tuple[str, Label | None]] = [("pooled", None)]
        scopes += [(f"bucket/{label}", label) for label in self._labels]
        for scope, label in scopes:
            state = self._state(label)
            scoped = policy_metrics(
                self.temperatures,
                self.probs(label),
                state.ema,
                state.num_updates,
                self.in_warmup,
                None,
                state.last_stats,
                detail=detail,
            )
            for key, value in scoped.items():
                out[f"tampo/{scope}/{key.removeprefix('tampo/')}"] = value
            if label is not None:
                out[f"tampo/{scope}/backs_off"] = float(self.backs_off(label))
        return out

    def state_dict(self) -> dict[str, Any]:
        """One JSON document: config, labels, back-off threshold, every state, the RNG."""
        return {
            "version": STATE_VERSION,
            "kind": "ContextualTempMetaPolicy",
            "config": self._config.model_dump(mode="json"),
            "buckets": list(self._labels),
            "min_bucket_updates": self._min_bucket_updates,
            "pooled": bucket_state_to_json(self._config, self._pooled),
            "per_bucket": [bucket_state_to_json(self._config, s) for s in self._buckets],
            "last_temperatures": self._last_temperatures,
            "rng": rng_to_json(self._config, self._rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the following draws repeat exactly.

        Raises:
            ValueError: malformed state, or another config, bucket set or back-off threshold;
                the state is unchanged.
        """
        try:
            restored = self._parse_state(state)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid ContextualTempMetaPolicy state_dict: {error}") from error
        self._pooled, self._buckets, self._last_temperatures, self._rng = restored

    def _parse_state(
        self, state: dict[str, Any]
    ) -> tuple[BucketState, list[BucketState], list[float] | None, np.random.Generator]:
        if not isinstance(state, dict):
            raise TypeError(expected("state", "a dict", type(state).__name__))
        if state["version"] != STATE_VERSION or state["kind"] != "ContextualTempMetaPolicy":
            rule = f"version {STATE_VERSION} of a ContextualTempMetaPolicy"
            raise ValueError(expected("state", rule, f"{state['version']!r} of {state['kind']!r}"))
        saved = TampoConfig(**state["config"])
        if saved != self._config:
            raise ValueError(expected("config", "this policy's config", repr(saved)))
        if tuple(state["buckets"]) != self._labels:
            raise ValueError(expected("buckets", f"this policy's {self._labels}", state["buckets"]))
        if state["min_bucket_updates"] != self._min_bucket_updates:
            rule = f"this policy's {self._min_bucket_updates}"
            raise ValueError(expected("min_bucket_updates", rule, state["min_bucket_updates"]))
        pooled, rng = bucket_state_from_json(self._config, state["pooled"], state["rng"])
        per_bucket = [
            bucket_state_from_json(self._config, raw, state["rng"])[0]
            for raw in state["per_bucket"]
        ]
        if len(per_bucket) != len(self._labels):
            rule = f"{len(self._labels)} bucket states"
            raise ValueError(expected("per_bucket", rule, len(per_bucket)))
        raw_last = state["last_temperatures"]
        last = None
        if raw_last is not None:
            last = [check_temperature(f"last_temperatures[{i}]", t) for i, t in enumerate(raw_last)]
            if not set(last) <= set(self.temperatures):
                raise ValueError(expected("last_temperatures", "candidate temperatures", last))
        return pooled, per_bucket, last, rng

    def _state(self, bucket: Label | None) -> BucketState:
        if bucket is None:
            return self._pooled
        return self._buckets[self._bucket_indices("bucket", [bucket])[0]]

    def _bucket_indices(
        self, name: str, labels: Sequence[Label], num_rows: int | None = None
    ) -> list[int]:
        """Positions of ``labels`` among the declared buckets (``[num_rows]`` when given)."""
        values = check_labels(name, labels)
        if num_rows is not None and len(values) != num_rows:
            rule = f"[{num_rows}] labels (one per trajectory)"
            raise ValueError(expected(name, rule, f"{len(values)} labels"))
        if not values:
            raise ValueError(expected(name, "at least one label", "none"))
        indices = []
        for position, label in enumerate(values):
            if label not in self._index:
                rule = f"labels among the declared buckets {self._labels}"
                raise ValueError(expected(f"{name}[{position}]", rule, repr(label)))
            indices.append(self._index[label])
        return indices

    def __repr__(self) -> str:
        return (
            f"ContextualTempMetaPolicy(buckets={self._labels}, "
            f"updates={self._pooled.num_updates}, min_bucket_updates={self._min_bucket_updates})"
        )


def _check_labels(buckets: object) -> tuple[Label, ...]:
    labels = check_labels("buckets", buckets)
    if not labels:
        raise ValueError(expected("buckets", "at least one bucket label", "none"))
    if len(set(labels)) != len(labels):
        raise ValueError(expected("buckets", "unique labels", labels))
    return tuple(labels)
