"""How much of a stretch of wall time this process lost to other work on the machine.

On Linux ``/proc/self/task/<tid>/schedstat`` counts, per thread, the nanoseconds it spent
runnable on a run queue while another task held the CPU. Summed over the process's threads,
its growth over a stretch of wall time is the time lost to preemption, whatever the threads
were doing: a thread spinning at an OpenMP barrier is running, and one waiting for the GIL or
sleeping at a barrier is not runnable, so neither counts. Measured on 2 vCPUs (V = 152k,
N = 512, K = 10, 2 threads), whole calls: 0.1-4% of the wall on either chunk schedule when
idle, 50-92% beside one busy-looping process.

Where that file is missing the fallback is the calling thread's own loss, its wall time minus
its CPU time: it sees only the calling thread and misses contention while libgomp spins at a
barrier (spinning is CPU time).
"""

from __future__ import annotations

import functools
import os
import time

LOST_SHARE = 0.3
"""Above this share of the wall time lost to preemption the machine counts as contended
(measured: at most 16% idle over 16-chunk windows, at least 50% beside a busy process)."""


def _runqueue_seconds() -> float | None:
    """Seconds this process's threads have waited on a run queue, or None where unknown."""
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return None
    total, seen = 0, False
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as handle:
                total += int(handle.read().split()[1])
        except (OSError, ValueError, IndexError):  # e.g. a thread that exited meanwhile
            continue
        seen = True
    return total * 1e-9 if seen else None


@functools.cache
def process_wide() -> bool:
    """Whether run-queue waits are readable (the whole process's loss, not one thread's)."""
    return _runqueue_seconds() is not None


class LostTime:
    """Share of the wall time since the last :meth:`restart` lost to other work.

    ``process_wide``: from the run-queue waits of every thread; otherwise from the calling
    thread's wall time minus its CPU time, which is meaningful only while that thread computes.
    """

    def __init__(self) -> None:
        self.process_wide = process_wide()
        self._last = 0.0
        self.restart()

    def _lost(self) -> float:
        if self.process_wide:
            waited = _runqueue_seconds()
            self._last = self._last if waited is None else waited
            return self._last
        return time.perf_counter() - time.thread_time()

    def restart(self) -> None:
        self._wall, self._start = time.perf_counter(), self._lost()

    def share(self) -> float:
        wall = time.perf_counter() - self._wall
        return (self._lost() - self._start) / wall if wall > 0 else 0.0

    def contended(self) -> bool:
        return self.share() > LOST_SHARE
