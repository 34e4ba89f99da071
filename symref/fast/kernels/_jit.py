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

When a cached kernel is stale: numba keys a cache entry on the source of the file
that defines the kernel only, but the kernels inline helpers from their sibling
modules (``activations.tanh_scalar``, ``dense``'s layer loops...): an edit to
``activations.py`` alone left every other kernel's cache valid, running the old
formula.  The locators installed here key every kernel of this folder on the
contents of *all* its ``*.py`` files (:func:`kernels_stamp`), so any edit in the
folder recompiles its kernels.

``@kernel(noalias=True)``: the serial build is compiled with numba's ``noalias``
flag (:func:`noalias_njit`; numba sets it itself on the ``prange`` bodies it proves
alias-free): every array argument is taken not to share memory with another that
the kernel *writes*, so LLVM drops the run-time overlap checks it otherwise puts in
front of every vectorised inner loop (one check per pair of a written and a read
row; measured ~20 ns per pair in the table kernels, a quarter of their time).  The
callers must pass written arrays that overlap no other argument (views of one
read-only array may overlap each other).  Numerics are unchanged: the same
operations in the same order, fastmath off.
"""
from __future__ import annotations

import hashlib
import types
from pathlib import Path

import numba

OPTIONS = dict(cache=True, error_model="numpy")


def kernel(fn=None, *, noalias: bool = False):
    """``@kernel`` or ``@kernel(noalias=True)`` (module docstring)."""
    if fn is None:
        return lambda f: kernel(f, noalias=noalias)
    par = numba.njit(parallel=True, **OPTIONS)(fn)
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__module__ = fn.__module__
    twin.__doc__ = fn.__doc__
    par.serial = (noalias_njit if noalias else numba.njit)(nogil=True, **OPTIONS)(twin)
    return par


try:  # numba's internals: a dispatcher whose compilations set the ``noalias`` flag
    from numba.core import compiler as _compiler
    from numba.core import cpu as _cpu
    from numba.core import registry as _registry

    class NoAliasOptions(_cpu.CPUTargetOptions):
        """numba's CPU options, plus the ``noalias`` flag (module docstring)."""

        def finalize(self, flags, options):
            super().finalize(flags, options)
            flags.noalias = True

    class NoAliasTarget(_registry.CPUTarget):
        """The CPU target with :class:`NoAliasOptions`; the same typing and target
        contexts as plain ``njit`` (so the kernels call and inline each other)."""

        options = NoAliasOptions

        @property
        def target_context(self):
            return _registry.cpu_target.target_context

        @property
        def typing_context(self):
            return _registry.cpu_target.typing_context

    class NoAliasDispatcher(_registry.CPUDispatcher):
        """``CPUDispatcher`` compiling with :class:`NoAliasTarget`."""

        targetdescr = NoAliasTarget("cpu")

    _NOALIAS_DISPATCHER = NoAliasDispatcher if hasattr(_compiler.Flags, "noalias") else None
except (ImportError, AttributeError, TypeError):  # pragma: no cover - other numba
    _NOALIAS_DISPATCHER = None


def noalias_njit(**options):
    """``numba.njit(**options)`` with the ``noalias`` flag (module docstring); plain
    ``numba.njit`` where numba offers no way to set it."""
    if _NOALIAS_DISPATCHER is None:  # pragma: no cover - other numba
        return numba.njit(**options)
    cache = options.pop("cache", False)

    def wrap(fn):
        disp = _NOALIAS_DISPATCHER(fn, targetoptions=dict(nopython=True, **options))
        if cache:
            disp.enable_caching()
        return disp

    return wrap


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


#: the folder whose kernels inline each other's helpers (this module's)
KERNELS_DIR = Path(__file__).resolve().parent
_STAMPS: dict = {}


def kernels_stamp(folder: Path = KERNELS_DIR) -> str:
    """A hash of the contents of every ``*.py`` file of ``folder`` (memoised on their
    names, sizes and modification times): part of the cache key of its kernels."""
    files = sorted(Path(folder).glob("*.py"))
    key = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _STAMPS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        _STAMPS[key] = h.hexdigest()
    return _STAMPS[key]


def _in_kernels_dir(py_file) -> bool:
    try:
        return Path(py_file).resolve().parent == KERNELS_DIR
    except OSError:
        return False


def install_cache_locator() -> bool:
    """Send the numba caches of an installed symref to numba's user-wide cache
    directory, and key every kernel of this folder on the whole folder's sources
    (module docstring).  Idempotent; returns whether the locators are in place
    (False on a numba whose caching internals differ: numba's default then applies)."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba without its caching module
        return False
    user_wide = (getattr(caching, "UserWideCacheLocator", None)
                 or getattr(caching, "_UserWideCacheLocator", None))
    in_tree = (getattr(caching, "InTreeCacheLocator", None)
               or getattr(caching, "_InTreeCacheLocator", None))
    provided = (getattr(caching, "UserProvidedCacheLocator", None)
                or getattr(caching, "_UserProvidedCacheLocator", None))
    impl = getattr(caching, "CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if None in (user_wide, in_tree, provided) or not isinstance(classes, list):
        return False
    if any(getattr(c, "_symref_installed", False) for c in classes):
        return True

    class _FolderStamp:
        """The source stamp of a kernel here: numba's (its own file) and the folder's."""
        _symref_installed = True

        def get_source_stamp(self):
            return (super().get_source_stamp(), kernels_stamp())

    class ProvidedSymrefCacheLocator(_FolderStamp, provided):  # NUMBA_CACHE_DIR set
        @classmethod
        def from_function(cls, py_func, py_file):
            if not (numba.config.CACHE_DIR and _in_kernels_dir(py_file)):
                return None
            return super().from_function(py_func, py_file)

    class InstalledSymrefCacheLocator(_FolderStamp, user_wide):
        @classmethod
        def from_function(cls, py_func, py_file):
            if numba.config.CACHE_DIR or not is_installed_copy(py_file):
                return None  # NUMBA_CACHE_DIR's locator, or the checkout's below
            if not _in_kernels_dir(py_file):  # symref's other numba code: user-wide too
                return user_wide.from_function(py_func, py_file)
            return super().from_function(py_func, py_file)

    class CheckoutSymrefCacheLocator(_FolderStamp, in_tree):
        @classmethod
        def from_function(cls, py_func, py_file):
            if numba.config.CACHE_DIR or not _in_kernels_dir(py_file):
                return None  # numba's own locators
            return super().from_function(py_func, py_file)

    classes[0:0] = [ProvidedSymrefCacheLocator, InstalledSymrefCacheLocator,
                    CheckoutSymrefCacheLocator]
    return True
