"""The memory budget every kernel chunk is sized against."""

from __future__ import annotations

CHUNK_BUDGET_BYTES = 64 * 2**20
"""Target for the extra memory of one call's chunk buffers (64 MiB), independent of N."""


def rows_within_budget(preferred: int, bytes_per_row: int, fixed_bytes: int = 0) -> int:
    """Largest row count <= ``preferred`` whose buffers fit ``CHUNK_BUDGET_BYTES`` (at least 1)."""
    free = CHUNK_BUDGET_BYTES - fixed_bytes
    return max(1, min(preferred, free // max(bytes_per_row, 1)))
