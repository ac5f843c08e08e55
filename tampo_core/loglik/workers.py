"""CPU chunk workers: parallelise the kernels across chunks instead of inside each op.

On CPU every PyTorch op is its own OpenMP parallel region ending in a barrier. The kernels'
chunks are small (a few rows, so they stay in cache) and each costs dozens of ops, so one call
runs thousands of ~0.1 ms regions; when another process preempts one thread, every region
waits a scheduler time slice (milliseconds) for it, and a busy machine made the kernel 10-60x
slower. Here each of ``torch.get_num_threads()`` worker threads runs whole chunks with
single-threaded ops, taking the next chunk from a shared counter: a preempted worker delays
only its own chunk while the others keep taking work, so contention costs about its fair
share of the cores (``benchmarks/kernel_contention.py``).

The workers are Python threads (torch ops release the GIL) whose own intra-op thread count is
1; that count is thread-local under OpenMP, so the caller's threads keep theirs. Builds with
another ATen parallel backend (one process-wide pool) run the chunks on the calling thread.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from tampo_core.loglik import budget

MIN_PARALLEL_ELEMENTS = 1 << 20
"""Below this many logit elements per call the chunks run on the calling thread (each op
multi-threaded as usual): handing ~a millisecond of work to the workers costs more than it
saves, and a short call loses little to contention."""

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

    ``make_worker()`` is called once per worker thread and returns that worker's ``work``
    (which owns its scratch buffers); chunks are handed out dynamically, so each ``work``
    must touch only its chunk's slice of shared outputs. With ``workers == 1`` everything runs
    on the calling thread.
    """
    if workers <= 1:
        work = make_worker()
        for index in range(num_chunks):
            work(index)
        return
    counter = itertools.count()
    stop = threading.Event()

    def drain() -> None:
        with torch.no_grad():  # grad mode is per thread too
            work = make_worker()
            for index in counter:
                if index >= num_chunks or stop.is_set():
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
