"""What one ``observe`` call reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObserveStats:
    """Statistics of one meta-policy update (global across ranks when synchronised).

    Attributes:
        batch_advantage: float64 ``[K]``, the batch temperature advantage A_B^(k).
        support_size: mean sparsemax support size per counted trajectory (between 1 and K).
        num_trajectories: N, the trajectories that entered the update.
        num_skipped: trajectories skipped for having no valid token.
        argmax_histogram: int64 ``[K]``, counts of each trajectory's most likely temperature.
    """

    batch_advantage: np.ndarray
    support_size: float
    num_trajectories: int
    num_skipped: int
    argmax_histogram: np.ndarray
