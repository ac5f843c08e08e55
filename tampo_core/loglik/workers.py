"""CPU chunk scheduling: on the calling thread, or across worker threads on a busy machine.

On CPU every PyTorch op is its own OpenMP parallel region ending in a barrier. The kernels'
chunks are small (a few rows, so they stay in cache) and each costs dozens of ops, so one call
runs thousands of ~0.1 ms regions. On an idle machine that is the fastest schedule; when
another process preempts one thread, every region waits for it (single chunks stalled for
150-270 ms), and a busy machine made the kernel 10-60x slower.

The other schedule runs whole chunks on ``torch.get_num_threads()`` worker threads with
single-threaded ops, each taking the next chunk from a shared counter: a preempted worker delays
only its own chunk, so contention costs about its fair share of the cores
(``benchmarks/kernel_contention.py``). Idle it is ~25% slower than the calling thread (two
cache-sized working sets instead of one, and each op's Python dispatch takes the GIL), hence
not the default.

``run_chunks`` ("auto") measures the share of wall time the process loses to other work
(``contention.LostTime``: run-queue waits on Linux) while it runs. On the calling thread it
checks every ``CHECK_CHUNKS`` chunks and, once that window lost more than
``contention.LOST_SHARE``, runs the rest on the workers; the workers keep the following calls
for as long as their calls still lose that much, and the first call that does not hands the
next one back to the calling thread. Where only the calling thread's loss is measurable, the
workers keep the calls of the next ``DECISION_SECONDS`` instead.

The workers are Python threads (torch ops release the GIL) whose own intra-op thread count is
1; that count is thread-local under OpenMP, so the caller's threads keep theirs. Builds with
another ATen parallel backend (one process-wide pool) always run on the calling thread.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from tampo_core.loglik import budget
from tampo_core.loglik.contention import LostTime

MIN_PARALLEL_ELEMENTS = 1 << 20
"""Below this many logit elements per call the chunks run on the calling thread (each op
multi-threaded as usual): handing ~a millisecond of work to the workers costs more than it
saves, and a short call loses little to contention."""

SCHEDULE = "auto"
"""``"auto"`` (as above), ``"caller"`` (always the calling thread) or ``"workers"`` (always the
worker threads when more than one is allowed); the benchmark and the tests pin it."""

CHECK_CHUNKS = 16
"""Chunks per contention check on the calling thread (~16 ms at V = 152k; a read of the
run-queue counters costs ~30 us). Idle, 8-chunk windows lost up to 28% now and then (other
processes waking), 16-chunk windows at most 16%."""
DECISION_SECONDS = 10.0
"""Without process-wide counters: how long the workers keep the calls after contention."""

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
    if workers <= 1 or SCHEDULE == "caller":
        _run_on_caller(range(num_chunks), make_worker, None)
        return
    if SCHEDULE == "workers":
        _run_on_workers(range(num_chunks), workers, make_worker)
        return
    lost = LostTime()
    schedule, until = _decision
    first = 0
    if schedule == "caller" or time.monotonic() >= until:
        first = _run_on_caller(range(num_chunks), make_worker, lost)
        if first == num_chunks:
            _decide("caller", lost)
            return
        _decide("workers", lost)
        lost.restart()
    _run_on_workers(range(first, num_chunks), workers, make_worker)
    if lost.process_wide and not lost.contended():
        _decide("caller", lost)


def _decide(schedule: str, lost: LostTime) -> None:
    """Use ``schedule`` for the next calls: until a call measures otherwise, or (workers,
    without process-wide counters) for ``DECISION_SECONDS``."""
    global _decision
    timed = schedule == "workers" and not lost.process_wide
    _decision = (schedule, time.monotonic() + DECISION_SECONDS if timed else math.inf)


def _run_on_caller(
    chunks: range, make_worker: Callable[[], Callable[[int], None]], lost: LostTime | None
) -> int:
    """Run ``chunks`` in order on this thread; with ``lost``, stop after the first window of
    ``CHECK_CHUNKS`` chunks that lost more than ``LOST_SHARE`` of its wall time.

    Returns the first chunk not run (``chunks.stop`` when all ran).
    """
    work = make_worker()
    for count, index in enumerate(chunks, 1):
        work(index)
        if lost is not None and count % CHECK_CHUNKS == 0:
            if lost.contended():
                return index + 1
            lost.restart()
    return chunks.stop


def _run_on_workers(
    chunks: range, workers: int, make_worker: Callable[[], Callable[[int], None]]
) -> None:
    """Run ``chunks`` on ``workers`` pool threads, each taking the next chunk when free."""
    queue = iter(chunks)
    lock = threading.Lock()
    stop = threading.Event()

    def drain() -> None:
        with torch.no_grad():  # grad mode is per thread too
            work = make_worker()
            while not stop.is_set():
                with lock:
                    index = next(queue, None)
                if index is None:
                    return
                try:
                    work(index)
                except BaseException:
                    stop.set()
                    raise

    pool = _pool(workers)
    futures = [pool.submit(drain) for _ in range(workers)]
    wait(futures)  # every worker is done with the outputs before any error propagates
    for future in futures:
        future.result()
