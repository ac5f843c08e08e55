"""The meta-policy as logger scalars: a compact default and opt-in per-temperature detail."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tampo_core.stats import ObserveStats

PREFIX = "tampo/"


def temperature_label(temperature: float) -> str:
    """The one label of a temperature in metric keys: Python's shortest round-trip ``repr``
    of the float (``1.0``, ``0.6``, ``0.0001``), so distinct temperatures never share a label."""
    return repr(float(temperature))


def policy_metrics(
    temperatures: Sequence[float],
    probs: np.ndarray,
    ema: np.ndarray,
    num_updates: int,
    in_warmup: bool,
    last_temperature: float | None,
    stats: ObserveStats | None,
    *,
    detail: bool = False,
) -> dict[str, float]:
    """A flat ``{key: float}`` dict for a logger.

    Always (compact, five keys at most): ``tampo/temperature`` (the last draw, once there is
    one), ``tampo/expected_temperature`` (sum_k pi_k T_k), ``tampo/entropy`` (of pi, nats)
    and, after an update, ``tampo/support_size`` (mean sparsemax support) and
    ``tampo/edge_fraction`` (share of trajectories whose most likely temperature is a grid
    edge).

    With ``detail=True`` also ``tampo/num_updates``, ``tampo/in_warmup`` and, per candidate
    ``T`` (labelled by :func:`temperature_label`), ``tampo/prob/<T>``, ``tampo/ema/<T>`` and,
    after an update, ``tampo/adv/<T>`` (batch temperature advantage), ``tampo/preferred/<T>``
    (argmax fraction), ``tampo/num_trajectories``, ``tampo/num_skipped``.

    Args:
        temperatures: the K candidates.
        probs: float64 ``[K]``, the meta-policy.
        ema: float64 ``[K]``, the smoothed temperature advantages.
        num_updates: updates so far.
        in_warmup: whether ``sample`` still follows the warm-up rule.
        last_temperature: the last drawn temperature, or None.
        stats: the last update's statistics, or None.
        detail: add the per-temperature and counter keys.
    """
    positive = probs[probs > 0]
    out: dict[str, float] = {}
    if last_temperature is not None:
        out[PREFIX + "temperature"] = float(last_temperature)
    out[PREFIX + "expected_temperature"] = float(np.dot(probs, temperatures))
    out[PREFIX + "entropy"] = float(-(positive * np.log(positive)).sum())
    histogram = None
    if stats is not None:
        histogram = stats.argmax_histogram / max(stats.num_trajectories, 1)
        out[PREFIX + "support_size"] = float(stats.support_size)
        out[PREFIX + "edge_fraction"] = float(histogram[0] + histogram[-1])
    if not detail:
        return out
    out[PREFIX + "num_updates"] = float(num_updates)
    out[PREFIX + "in_warmup"] = float(in_warmup)
    labels = [temperature_label(t) for t in temperatures]
    for label, prob, smoothed in zip(labels, probs, ema, strict=True):
        out[f"{PREFIX}prob/{label}"] = float(prob)
        out[f"{PREFIX}ema/{label}"] = float(smoothed)
    if stats is not None and histogram is not None:
        for label, adv, frac in zip(labels, stats.batch_advantage, histogram, strict=True):
            out[f"{PREFIX}adv/{label}"] = float(adv)
            out[f"{PREFIX}preferred/{label}"] = float(frac)
        out[PREFIX + "num_trajectories"] = float(stats.num_trajectories)
        out[PREFIX + "num_skipped"] = float(stats.num_skipped)
    return out
