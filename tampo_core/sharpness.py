"""The sparsemax input: the paper's per-token mean likelihood, or a sharper one (an option).

While sparsemax keeps (almost) every temperature, TAMPO's update is affine in the likelihoods
and min-max erases every scale (``../shared/notes/regime-analysis.md``). Summing instead of
averaging over tokens, or scaling before sparsemax, shrinks the support and keeps the sign.
"""

from __future__ import annotations

import numpy as np

from tampo_core.config import TampoConfig
from tampo_core.validation import expected


def sparsemax_input(
    loglik: np.ndarray, num_tokens: np.ndarray | None, config: TampoConfig
) -> np.ndarray:
    """What sparsemax sees per trajectory: ``s_ik = c * l_ik`` or ``s_ik = c * n_i * l_ik``.

    ``l_ik`` is the per-token mean log-likelihood of trajectory i at T_k, ``n_i`` its valid
    token count and ``c = config.sparsemax_scale``; the second form is used with
    ``config.likelihood == "sum"`` (the trajectory's total log-likelihood). At the defaults
    (``"mean"``, ``c = 1``) the input is returned unchanged: the paper's ``sparsemax(l_i)``.

    Args:
        loglik: float64 ``[N, K]`` mean log-likelihoods (rows with ``n_i = 0`` may hold NaN;
            they stay ignored downstream).
        num_tokens: int64 ``[N]`` valid tokens per trajectory, or None when the caller gave no
            counts (refused with ``"sum"``).
        config: the validated hyper-parameters.

    Returns:
        float64 ``[N, K]``, a new array unless the defaults make it the input itself.

    Raises:
        ValueError: ``"sum"`` without counts, or a finite row whose scaled input overflows.
    """
    if config.likelihood == "mean" and config.sparsemax_scale == 1.0:
        return loglik
    factor = config.sparsemax_scale
    if config.likelihood == "sum":
        if num_tokens is None:
            raise ValueError(
                expected(
                    "num_tokens",
                    "the [N] valid-token counts with likelihood='sum' (the kernels' "
                    "TemperatureLoglik carries them)",
                    "None",
                )
            )
        factor = factor * num_tokens.astype(np.float64)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        scores = loglik * factor
    overflow = np.flatnonzero(np.isfinite(loglik).all(axis=1) & ~np.isfinite(scores).all(axis=1))
    if overflow.size:
        row = int(overflow[0])
        raise ValueError(
            expected(f"sparsemax input[{row}]", "finite values after scaling", scores[row])
        )
    return scores
