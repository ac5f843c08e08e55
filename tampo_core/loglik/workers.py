"""CPU chunk scheduling: on the calling thread, or across worker threads on a busy machine.

On CPU every PyTorch op is its own OpenMP parallel region ending in a barrier. The kernels'
chunks are small (a few rows, so they stay in cache) and each costs dozens of ops, so one call
runs thousands of ~0.1 ms regions. On an idle machine that is the fastest schedule; when
another process preempts one thread, every region waits a scheduler time slice (milliseconds)
for it, and a busy machine made the kernel 10-60x slower.

``run_chunks`` therefore starts on the calling thread and watches how much of the wall time
that thread got on a CPU: with the team running freely it computes or spins at each barrier
(both CPU time); a preempted team member makes it sleep there. When a few consecutive chunks
got less than ``CONTENDED_CPU_SHARE`` of the wall time, the remaining chunks (and every call
for the next ``CONTENDED_SECONDS``) go to ``torch.get_num_threads()`` worker threads that run
whole chunks with single-threaded ops, each taking the next chunk from a shared counter: a
preempted worker delays only its own chunk, so contention costs about its fair share of the
cores (``benchmarks/kernel_contention.py``). Idle, the workers are ~30% slower than the
calling thread (each op's Python dispatch waits for the GIL), hence not the default. The
probe can miss contention while libgomp spins at a barrier (spinning is CPU time).

The workers are Python threads (torch ops release the GIL) whose own intra-op thread count is
1; that count is thread-local under OpenMP, so the caller's threads keep theirs. Builds with
another ATen parallel backend (one process-wide pool) always run on the calling thread.
"""

from __future__ import annotations

import functools
import os
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
CONTENDED_SECONDS = 10.0
"""How long calls start on the workers after contention was seen, before probing again."""

_contended_until = 0.0
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
    first = 0
    if workers <= 1 or SCHEDULE == "caller":
        _run_on_caller(range(num_chunks), make_worker, probe=False)
        return
    if SCHEDULE == "auto" and time.monotonic() >= _contended_until:
        first = _run_on_caller(range(num_chunks), make_worker, probe=True)
    if first < num_chunks:
        _run_on_workers(range(first, num_chunks), workers, make_worker)


def _run_on_caller(
    chunks: range, make_worker: Callable[[], Callable[[int], None]], probe: bool
) -> int:
    """Run ``chunks`` in order on this thread; with ``probe``, stop once contention is seen.

    Returns the first chunk not run (``chunks.stop`` when all ran).
    """
    global _contended_until
    work = make_worker()
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
            _contended_until = time.monotonic() + CONTENDED_SECONDS
            return index + 1
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
