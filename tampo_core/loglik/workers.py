"""CPU chunk scheduling: on the calling thread, or across worker threads on a busy machine.

On CPU every PyTorch op is its own OpenMP parallel region ending in a barrier. The kernels'
chunks are small (a few rows, so they stay in cache) and each costs dozens of ops, so one call
runs thousands of ~0.1 ms regions. On an idle machine that is the fastest schedule; when
another process preempts one thread, every region waits a scheduler time slice (milliseconds)
for it, and a busy machine made the kernel 10-60x slower.

The other schedule runs whole chunks on ``torch.get_num_threads()`` worker threads with
single-threaded ops, each taking the next chunk from a shared counter: a preempted worker delays
only its own chunk, so contention costs about its fair share of the cores
(``benchmarks/kernel_contention.py``). Idle it is ~30% slower than the calling thread (each op's
Python dispatch waits for the GIL), hence not the default.

``run_chunks`` picks between them by racing: a call that finds no recent decision times
``RACE_CHUNKS`` chunks on each (after one warm-up chunk per thread), keeps the faster for the
rest of the call and for every call in the next ``DECISION_SECONDS``. A decision for the
calling thread still watches how much of the wall time that thread got on a CPU and moves to
the workers when a few chunks got less than ``CONTENDED_CPU_SHARE``, so contention that starts
after a race costs at most a few chunks. Timing the schedules against each other, rather than
only measuring CPU time, also catches the contention that libgomp's spinning barrier hides
(spinning counts as CPU time).

The workers are Python threads (torch ops release the GIL) whose own intra-op thread count is
1; that count is thread-local under OpenMP, so the caller's threads keep theirs. Builds with
another ATen parallel backend (one process-wide pool) always run on the calling thread.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from tampo_core.loglik import budget

MIN_PARALLEL_ELEMENTS = 1 << 20
"""Below this many logit elements per call the chunks run on the calling thread (each op
multi-threaded as usual): handing ~a millisecond of work to the workers costs more than it
saves, and a short call loses little to contention."""

SCHEDULE = "auto"
"""``"auto"`` (as above), ``"caller"`` (always the calling thread) or ``"workers"`` (always the
worker threads when more than one is allowed); the benchmark and the tests pin it."""

CONTENDED_CPU_SHARE = 0.8
"""Below this share of wall time on a CPU, over ``PROBE_CHUNKS`` chunks, the calling thread is
being held up by preemption (idle it measures ~1: compute plus barrier spinning)."""

PROBE_CHUNKS = 4
RACE_CHUNKS = 2
"""Timed chunks per thread in a race, each thread's first (warm-up) chunk not counted."""
DECISION_SECONDS = 10.0
"""How long a race's (or the CPU-time probe's) choice of schedule holds before the next race."""

_decision: tuple[str, float] = ("caller", 0.0)
"""The schedule ``"auto"`` uses and the ``time.monotonic()`` until which it holds."""
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
"""Pools by (process id, workers): a forked child has none of its parent's threads."""
_pools_lock = threading.Lock()


def chunk_workers(device: torch.device, num_chunks: int, elements: int, chunk_bytes: int) -> int:
    """Worker threads for ``num_chunks`` chunks of ``chunk_bytes`` buffers each, totalling
    ``elements`` logit values; 1 means the calling thread runs them.

    More than one only on CPU, for calls of at least ``MIN_PARALLEL_ELEMENTS``, with no
    ``TorchDispatchMode`` active (modes are per thread: a probe or fake-tensor mode must see
    every op), and as many as the 64 MiB chunk budget holds buffers for.
    """
    if (
        device.type != "cpu"
        or elements < MIN_PARALLEL_ELEMENTS
        or _get_current_dispatch_mode_stack()
        or not _openmp_backend()
    ):
        return 1
    fit = budget.CHUNK_BUDGET_BYTES // max(chunk_bytes, 1)
    return max(1, min(torch.get_num_threads(), num_chunks, fit))


@functools.cache
def _openmp_backend() -> bool:
    """Whether ATen parallelises with OpenMP, whose thread count is per calling thread."""
    return "ATen parallel backend: OpenMP" in torch.__config__.parallel_info()


def _single_threaded_ops() -> None:
    """Pool initializer: this worker's ops run on one thread (OpenMP's count is per thread)."""
    torch.get_num_threads()  # initialise this thread's count before overriding it
    torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A persistent pool of ``workers`` threads whose ops are single-threaded."""
    key = (os.getpid(), workers)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            caller_threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, "tampo-loglik", initializer=_single_threaded_ops)
            # Start every thread now: set_num_threads also writes process-wide defaults
            # (MKL's count, the count new threads start with), restored right after.
            barrier = threading.Barrier(workers)
            for future in [pool.submit(barrier.wait) for _ in range(workers)]:
                future.result()
            torch.set_num_threads(caller_threads)
            _pools[key] = pool
        return pool


def run_chunks(
    num_chunks: int, workers: int, make_worker: Callable[[], Callable[[int], None]]
) -> None:
    """Run ``work(i)`` for every chunk ``i`` in ``range(num_chunks)``.

    ``make_worker()`` is called once per thread that runs chunks and returns that thread's
    ``work`` (which owns its scratch buffers); chunks may run in any order, so each ``work``
    must touch only its chunk's slice of shared outputs. ``workers``: what ``chunk_workers``
    allows (1: everything on the calling thread).
    """
    caller = _Caller(make_worker)
    if workers <= 1 or SCHEDULE == "caller":
        caller.run(range(num_chunks))
        return
    pool = _Workers(workers, make_worker)
    if SCHEDULE == "workers":
        pool.run(range(num_chunks))
        return
    schedule, until = _decision
    first = 0
    if time.monotonic() >= until:
        first, schedule = _race(num_chunks, caller, pool)
    if schedule == "caller":
        first = caller.run(range(first, num_chunks), probe=True)
    pool.run(range(first, num_chunks))


def _decide(schedule: str) -> None:
    global _decision
    _decision = (schedule, time.monotonic() + DECISION_SECONDS)


def _race(num_chunks: int, caller: _Caller, pool: _Workers) -> tuple[int, str]:
    """Time ``RACE_CHUNKS`` chunks per thread on the caller, then on the workers; decide.

    Returns the first chunk not run and the faster schedule (per chunk, the caller's mean
    against the workers' mean divided by their number). A call too short to race a fair
    sample runs on the calling thread with its CPU-time probe and decides nothing.
    """
    per_thread = 1 + RACE_CHUNKS
    workers_end = per_thread * (1 + pool.workers)
    if num_chunks < 2 * workers_end:
        return 0, "caller"
    caller_seconds = caller.timed(range(per_thread))[1:]
    worker_seconds = pool.timed(range(per_thread, workers_end)) or [math.inf]
    worker_chunk = statistics.fmean(worker_seconds) / pool.workers
    schedule = "caller" if statistics.fmean(caller_seconds) <= worker_chunk else "workers"
    _decide(schedule)
    return workers_end, schedule


class _Caller:
    """The calling thread's ``work``, made on first use."""

    def __init__(self, make_worker: Callable[[], Callable[[int], None]]) -> None:
        self.make_worker = make_worker
        self._work: Callable[[int], None] | None = None

    def work(self) -> Callable[[int], None]:
        if self._work is None:
            self._work = self.make_worker()
        return self._work

    def timed(self, chunks: range) -> list[float]:
        """Run ``chunks`` in order; the wall seconds of each."""
        work, seconds = self.work(), []
        for index in chunks:
            start = time.perf_counter()
            work(index)
            seconds.append(time.perf_counter() - start)
        return seconds

    def run(self, chunks: range, probe: bool = False) -> int:
        """Run ``chunks`` in order; with ``probe``, stop once contention is seen (and decide
        for the workers). Returns the first chunk not run (``chunks.stop`` when all ran)."""
        work = self.work()
        cpu: deque[float] = deque(maxlen=PROBE_CHUNKS)
        wall: deque[float] = deque(maxlen=PROBE_CHUNKS)
        for index in chunks:
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            work(index)
            if not probe:
                continue
            cpu.append(time.thread_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
            if len(wall) == PROBE_CHUNKS and sum(cpu) < CONTENDED_CPU_SHARE * sum(wall):
                _decide("workers")
                return index + 1
        return chunks.stop


class _Workers:
    """``workers`` pool threads for one call, each with its own ``work``, made on first use."""

    def __init__(self, workers: int, make_worker: Callable[[], Callable[[int], None]]) -> None:
        self.workers = workers
        self.make_worker = make_worker
        self._works: dict[int, Callable[[int], None]] = {}

    def run(self, chunks: range) -> None:
        """Run ``chunks``, each worker taking the next chunk when free."""
        self._drain(chunks, warmup=0)

    def timed(self, chunks: range) -> list[float]:
        """Run ``chunks``; the wall seconds of every chunk but each worker's first."""
        return self._drain(chunks, warmup=1)

    def _drain(self, chunks: range, warmup: int) -> list[float]:
        queue = iter(chunks)
        lock = threading.Lock()
        stop = threading.Event()
        seconds: list[float] = []

        def drain() -> None:
            with torch.no_grad():  # grad mode is per thread too
                ident = threading.get_ident()
                work = self._works.get(ident) or self._works.setdefault(ident, self.make_worker())
                done = 0
                while not stop.is_set():
                    with lock:
                        index = next(queue, None)
                    if index is None:
                        return
                    start = time.perf_counter()
                    try:
                        work(index)
                    except BaseException:
                        stop.set()
                        raise
                    if done >= warmup:
                        seconds.append(time.perf_counter() - start)
                    done += 1

        pool = _pool(self.workers)
        futures = [pool.submit(drain) for _ in range(self.workers)]
        wait(futures)  # every worker is done with the outputs before any error propagates
        for future in futures:
            future.result()
        return seconds
