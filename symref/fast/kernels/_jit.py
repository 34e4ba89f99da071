"""The one place kernels get compiled: a parallel and a serial (GIL-free) build of each.

``@kernel`` compiles ``fn`` with ``parallel=True`` (``prange`` over atoms or
rows) and attaches ``fn.serial``: the same code compiled without threads and
with ``nogil=True``, for callers that already run one block of atoms per
thread (see :mod:`symref.fast.cpu`).  The serial build is compiled from a copy
of the function with its own ``__qualname__`` so the two never share an
on-disk cache entry.  Both: ``cache=True``, ``error_model="numpy"`` (no
division-by-zero branches, so loops vectorise), fastmath off.

Where the compiled kernels are cached (:func:`install_cache_locator`, run by
``symref/fast/kernels/__init__`` before any kernel is decorated): in a source
checkout, beside the sources (numba's default, ``__pycache__``); in an
*installed* copy (``pip install .``), in numba's user-wide cache directory
(``~/.cache/numba``, one folder per installed path), never inside
site-packages.  Files numba writes into an installed package are not pip's:
``pip uninstall`` and ``pip install -e`` leave them behind, and the bare
``site-packages/symref`` folder that remains is then imported, from anywhere
outside the checkout, as an empty namespace package (no ``symref.cli``, no
``symref`` command).  ``NUMBA_CACHE_DIR``, when set, still wins.
"""
from __future__ import annotations

import types
from pathlib import Path

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


#: the directory holding the ``symref`` package (a checkout's root, or site-packages)
_PACKAGE_PARENT = Path(__file__).resolve().parents[3]


def is_installed_copy(py_file, parent: Path = _PACKAGE_PARENT) -> bool:
    """Whether ``py_file`` belongs to an installed symref (its package's parent
    directory is not a source checkout: no ``pyproject.toml`` beside the package)."""
    try:
        Path(py_file).resolve().relative_to(parent / "symref")
    except ValueError:
        return False
    return not (parent / "pyproject.toml").is_file()


def install_cache_locator() -> bool:
    """Send the numba caches of an installed symref to numba's user-wide cache
    directory (module docstring).  Idempotent; returns whether the locator is in place
    (False on a numba whose caching internals differ: numba's default then applies)."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba without its caching module
        return False
    user_wide = (getattr(caching, "UserWideCacheLocator", None)
                 or getattr(caching, "_UserWideCacheLocator", None))
    impl = getattr(caching, "CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if user_wide is None or not isinstance(classes, list):
        return False
    if any(getattr(c, "_symref_installed", False) for c in classes):
        return True

    class InstalledSymrefCacheLocator(user_wide):
        _symref_installed = True

        @classmethod
        def from_function(cls, py_func, py_file):
            if numba.config.CACHE_DIR or not is_installed_copy(py_file):
                return None  # NUMBA_CACHE_DIR's locator, or numba's in-tree default
            return super().from_function(py_func, py_file)

    classes.insert(0, InstalledSymrefCacheLocator)
    return True
