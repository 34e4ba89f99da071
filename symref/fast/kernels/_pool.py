"""The process's worker threads for GIL-free (``nogil``) serial kernel builds.

One pool of ``n`` Python threads per thread count, made on first use and reused by every
caller (:mod:`symref.fast.cpu` runs its blocks of atoms there, :mod:`.neighbors` its
small frames' search ranges), so the process never holds more idle workers than that.
Unlike numba's own (OpenMP) threads, these workers do not spin after their work is done,
so a short threaded region does not steal the cores from the next one.  A forked child
(multiprocessing's "fork" start method) inherits the pools but not their worker threads:
work submitted there would wait forever, so the child starts without pools.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[int, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_POOLS.clear)
_LOCAL = threading.local()  # .worker: set in the pools' threads


def _mark_worker():
    _LOCAL.worker = True


def in_worker() -> bool:
    """Whether the calling thread is one of the pools' workers (which must not wait on
    work submitted to a pool: all of them could be waiting)."""
    return getattr(_LOCAL, "worker", False)


def thread_pool(nthreads: int) -> ThreadPoolExecutor:
    """The process's pool of ``nthreads`` worker threads (made on first use, then reused;
    a forked child makes its own)."""
    pool = _POOLS.get(nthreads)
    if pool is None:
        pool = _POOLS[nthreads] = ThreadPoolExecutor(nthreads, thread_name_prefix="symref",
                                                      initializer=_mark_worker)
    return pool


def run_ranges(fn, nitems: int, nthreads: int, *args) -> None:
    """``fn(i0, i1, *args)`` over ``nthreads`` contiguous ranges covering ``0..nitems-1``:
    the first on the calling thread, the others on :func:`thread_pool` (``fn`` a nogil
    kernel whose ranges write disjoint memory).  On one range, or when called from a pool
    worker, ``fn(0, nitems, *args)`` on the calling thread.  Exceptions propagate."""
    nthreads = max(1, min(int(nthreads), int(nitems)))
    if nthreads == 1 or in_worker():
        fn(0, nitems, *args)
        return
    cuts = [nitems * k // nthreads for k in range(nthreads + 1)]
    pool = thread_pool(nthreads)
    futures = [pool.submit(fn, cuts[k], cuts[k + 1], *args) for k in range(1, nthreads)]
    try:
        fn(cuts[0], cuts[1], *args)
    finally:
        for f in futures:
            f.result()
