"""Per-step diagnostics of TAMPO runs: what the meta-policy saw, and their plots.

:class:`RecordingMetaPolicy` wraps a ``TempMetaPolicy``: its ``observe`` computes the
per-temperature likelihoods once and hands them to ``observe_loglik`` (exactly what
``TempMetaPolicy.observe`` does), and keeps what the policy does not return: the preferred
temperature (argmax over T of the likelihood) of each positive- and negative-advantage
trajectory.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tampo_core import TemperaturePolicy, TempMetaPolicy
from tampo_core.loglik import multi_temperature_loglik
from tampo_core.stats import ObserveStats

DIAGNOSTIC_KEYS = (
    "probs",
    "expected_T",
    "support_size",
    "batch_advantage",
    "advantage_slope",
    "preferred_pos",
    "preferred_neg",
)


class RecordingMetaPolicy(TemperaturePolicy):
    """``TempMetaPolicy`` plus a per-step record of the diagnostics in :data:`DIAGNOSTIC_KEYS`."""

    def __init__(self, inner: TempMetaPolicy) -> None:
        self.inner = inner
        self.record: dict[str, list[Any]] = {k: [] for k in DIAGNOSTIC_KEYS}

    def sample(self) -> float:
        return self.inner.sample()

    def observe(
        self,
        logits_or_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        *,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        source_temperature: float = 1.0,
        rewards: torch.Tensor | None = None,
    ) -> ObserveStats:
        temps = np.asarray(self.inner.temperatures)
        ll = multi_temperature_loglik(
            logits_or_logprobs,
            tokens,
            self.inner.temperatures,
            mask=mask,
            source_temperature=source_temperature,
        )
        stats = self.inner.observe_loglik(ll, advantages, rewards=rewards)
        valid = (ll.num_tokens > 0).cpu().numpy()
        preferred = np.nan_to_num(ll.loglik.double().cpu().numpy(), nan=-np.inf).argmax(1)
        adv = advantages.detach().double().cpu().numpy()
        k = len(temps)
        probs = self.inner.probs
        a_b = stats.batch_advantage
        rec = self.record
        rec["probs"].append(probs.tolist())
        rec["expected_T"].append(float(probs @ temps))
        rec["support_size"].append(float(stats.support_size))
        rec["batch_advantage"].append(a_b.tolist())
        rec["advantage_slope"].append(float(np.polyfit(temps, a_b, 1)[0]))
        rec["preferred_pos"].append(np.bincount(preferred[valid & (adv > 0)], minlength=k).tolist())
        rec["preferred_neg"].append(np.bincount(preferred[valid & (adv < 0)], minlength=k).tolist())
        return stats


def _seed_mean(runs: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.mean([np.asarray(r["log"][key], dtype=np.float64) for r in runs], axis=0)


def plot_diagnostics(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``diagnostics_<task>.png`` per task with TAMPO runs: one row per TAMPO method with the
    seed-mean batch temperature advantage A_B(T) per step (heatmap), its least-squares slope
    over T, the preferred-T histograms of A > 0 and A < 0 trajectories (all steps and seeds),
    the sparsemax support size and truncation rate, and the expected and sampled T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["log"].get("batch_advantage"):
            by[r["spec"]["task"]][r["spec"]["method"]].append(r)
    paths = []
    for task, methods in sorted(by.items()):
        names = sorted(methods)
        fig, axes = plt.subplots(len(names), 5, figsize=(24, 3.8 * len(names)), squeeze=False)
        for row, method in enumerate(names):
            rs = methods[method]
            temps = rs[0]["temperatures"]
            ax = axes[row]
            adv = _seed_mean(rs, "batch_advantage").T
            lim = float(np.abs(adv).max()) or 1.0
            im = ax[0].imshow(
                adv,
                aspect="auto",
                origin="lower",
                cmap="coolwarm",
                vmin=-lim,
                vmax=lim,
                extent=(-0.5, adv.shape[1] - 0.5, -0.5, len(temps) - 0.5),
            )
            ax[0].set_yticks(range(len(temps)), [f"{t:.1f}" for t in temps])
            ax[0].set(title=f"{task} {method}: batch advantage A_B(T)", xlabel="step", ylabel="T")
            fig.colorbar(im, ax=ax[0])
            ax[1].plot(_seed_mean(rs, "advantage_slope"), lw=0.8)
            ax[1].axhline(0.0, color="black", lw=0.6)
            ax[1].set(title="slope of A_B over T (>0: hotter preferred)", xlabel="step")
            pos = _seed_mean(rs, "preferred_pos").sum(0)
            neg = _seed_mean(rs, "preferred_neg").sum(0)
            w = 0.035
            ax[2].bar(np.asarray(temps) - w / 2, pos / max(pos.sum(), 1), w, label="A > 0")
            ax[2].bar(np.asarray(temps) + w / 2, neg / max(neg.sum(), 1), w, label="A < 0")
            ax[2].set(title="preferred T (argmax likelihood) of trajectories", xlabel="T")
            ax[2].legend(fontsize=7)
            ax[3].plot(_seed_mean(rs, "support_size"), lw=0.8, label="support size (of K)")
            ax[3].set(title="sparsemax support size; truncation rate", xlabel="step")
            twin = ax[3].twinx()
            twin.plot(_seed_mean(rs, "truncation"), color="tab:red", lw=0.8, label="truncation")
            twin.set_ylim(0.0, 1.0)
            ax[3].legend(loc="upper left", fontsize=7)
            twin.legend(loc="upper right", fontsize=7)
            ax[4].plot(_seed_mean(rs, "expected_T"), lw=1.2, label="expected T of pi")
            ax[4].plot(_seed_mean(rs, "temperature"), lw=0.5, alpha=0.6, label="sampled T")
            ax[4].set(title="temperature (seed mean)", xlabel="step", ylim=(0.55, 1.55))
            ax[4].legend(fontsize=7)
        fig.tight_layout()
        paths.append(out_dir / f"diagnostics_{task}.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths
