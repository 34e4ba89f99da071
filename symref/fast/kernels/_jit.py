"""The one place kernels get compiled: a parallel and a serial (GIL-free) build of each.

``@kernel`` compiles ``fn`` with ``parallel=True`` (``prange`` over atoms or
rows) and attaches ``fn.serial``: the same code compiled without threads and
with ``nogil=True``, for callers that already run one block of atoms per
thread (see :mod:`symref.fast.cpu`).  The serial build is compiled from a copy
of the function with its own ``__qualname__`` so the two never share an
on-disk cache entry.  Both: ``cache=True``, ``error_model="numpy"`` (no
division-by-zero branches, so loops vectorise), fastmath off.
"""
from __future__ import annotations

import types

import numba

OPTIONS = dict(cache=True, error_model="numpy")


def kernel(fn):
    par = numba.njit(parallel=True, **OPTIONS)(fn)
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__module__ = fn.__module__
    twin.__doc__ = fn.__doc__
    par.serial = numba.njit(nogil=True, **OPTIONS)(twin)
    return par


def serial_kernel(fn):
    """A serial, GIL-free build only (``nogil=True``), for kernels that reduce over
    rows and are run one block per thread by their callers (:mod:`symref.fast.cpu_loss`)."""
    return numba.njit(nogil=True, **OPTIONS)(fn)
