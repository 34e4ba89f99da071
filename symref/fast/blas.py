"""Temporarily limit the threads of the BLAS behind NumPy (OpenBLAS).

The fast path runs one block of atoms per thread with single-threaded matrix
products; letting OpenBLAS start its own threads on top would oversubscribe
the cores.  Uses ``threadpoolctl`` when installed, else calls OpenBLAS's
``*_set_num_threads`` through ctypes on the libraries loaded in this process
(Linux).  When neither works, :func:`blas_threads` does nothing and
:func:`can_limit` is False.  :func:`openblas_cores` names the kernel set each loaded
OpenBLAS runs (the benchmarks print it: OpenBLAS's AVX-512 ``SkylakeX`` kernels run
the float64 products ~1.7x faster than its AVX2 ``Haswell`` ones on an AVX-512 CPU,
and ``OPENBLAS_CORETYPE`` may force either).
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

_SUFFIXES = ("scipy_openblas_{}_num_threads64_", "openblas_{}_num_threads64_",
             "scipy_openblas_{}_num_threads", "openblas_{}_num_threads")
_LIBS = None
_THREADPOOLCTL = None  # (threadpool_limits or None,) once looked for


def _threadpool_limits():
    """``threadpoolctl.threadpool_limits``, or None when it is not installed; looked up
    once (a failed import is not cached by Python: repeating it cost ~0.15 ms a call)."""
    global _THREADPOOLCTL
    if _THREADPOOLCTL is None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        _THREADPOOLCTL = (threadpool_limits,)
    return _THREADPOOLCTL[0]


def _loaded_openblas() -> list:
    """``[(file, ctypes.CDLL)]`` of the OpenBLAS libraries mapped into this process (Linux;
    else [])."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
    except OSError:
        return []
    out = []
    for path in sorted(p for p in paths if os.path.isfile(p)):
        try:
            out.append((path, ctypes.CDLL(path)))
        except OSError:
            continue
    return out


def _openblas_libs():
    global _LIBS
    if _LIBS is not None:
        return _LIBS
    _LIBS = []
    for _, lib in _loaded_openblas():
        for pat in _SUFFIXES:
            try:
                set_, get = getattr(lib, pat.format("set")), getattr(lib, pat.format("get"))
            except AttributeError:
                continue
            get.restype = ctypes.c_int
            _LIBS.append((set_, get))
            break
    return _LIBS


_CORENAMES = ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
              "scipy_openblas_get_corename", "openblas_get_corename")


def openblas_cores() -> dict:
    """``{library file name: kernel set}`` of the OpenBLAS libraries loaded in this process
    (``"SkylakeX"``, ``"Haswell"``...: what ``OPENBLAS_CORETYPE`` or the CPU chose), for
    benchmarks to print next to their timings; empty where none can be asked."""
    out = {}
    for path, lib in _loaded_openblas():
        for name in _CORENAMES:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                out[os.path.basename(path)] = fn().decode(errors="replace").strip()
                break
    return out


def can_limit() -> bool:
    return _threadpool_limits() is not None or bool(_openblas_libs())


@contextmanager
def blas_threads(n: int):
    """Run the body with at most ``n`` BLAS threads, then restore the previous setting."""
    threadpool_limits = _threadpool_limits()
    if threadpool_limits is not None:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
        return
    libs = _openblas_libs()
    old = [get() for _, get in libs]
    for set_, _ in libs:
        set_(ctypes.c_int(n))
    try:
        yield
    finally:
        for (set_, _), o in zip(libs, old):
            set_(ctypes.c_int(o))
