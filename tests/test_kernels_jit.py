"""Where compiled kernels are cached (symref.fast.kernels._jit).

An installed symref must never write numba cache files into site-packages: pip does
not own them, so ``pip install -e`` (README's test command after its main command)
leaves a bare ``site-packages/symref`` folder that Python then imports, outside the
checkout, as an empty namespace package.  These tests prove the locator sends an
installed copy's caches to numba's user-wide directory and leaves a checkout's
beside its sources.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from checkout import REPO_ROOT, checkout_env
from symref.fast.kernels._jit import install_cache_locator, is_installed_copy


def test_checkout_and_installed_copies_are_told_apart(tmp_path):
    """The checkout (pyproject.toml beside the package) is not an installed copy; the
    same files under a folder without pyproject.toml are; files outside symref never are."""
    assert not is_installed_copy(REPO_ROOT / "symref" / "fast" / "kernels" / "dense.py",
                                 parent=REPO_ROOT)
    site = tmp_path / "site-packages"
    (site / "symref" / "fast").mkdir(parents=True)
    assert is_installed_copy(site / "symref" / "fast" / "cpu.py", parent=site)
    assert not is_installed_copy(tmp_path / "other.py", parent=site)


def test_locator_is_installed_once_and_first():
    from numba.core import caching

    assert install_cache_locator() and install_cache_locator()
    classes = caching.CacheImpl._locator_classes
    assert sum(getattr(c, "_symref_installed", False) for c in classes) == 3
    assert all(getattr(c, "_symref_installed", False) for c in classes[:3])


def test_an_edit_to_a_sibling_kernel_file_invalidates_the_cache(tmp_path):
    """numba keys a cache entry on the kernel's own file only, but kernels inline helpers
    from their sibling modules: editing activations.py alone used to leave stale kernels
    elsewhere.  In a checkout copy, a cached kernel (activations.tanh_inplace) is reused
    when nothing changed (its index file untouched) and recompiled (index rewritten with
    a new stamp) after an edit to a *different* file of the folder (dense.py)."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT / "symref", root / "symref",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (root / "pyproject.toml").write_text("[project]\nname = 'symref'\n")
    env = checkout_env(NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    env["PYTHONPATH"] = str(root)
    code = ("import numpy as np, symref\n"
            f"assert symref.__file__.startswith({str(root)!r}), symref.__file__\n"
            "from symref.fast.kernels.activations import tanh_inplace\n"
            "a = np.linspace(-2, 2, 7); tanh_inplace(a)\n")
    kernels = root / "symref" / "fast" / "kernels"

    def run_and_read_index():
        r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        (index,) = [p for p in kernels.rglob("*.nbi") if p.name.startswith(
            "activations.tanh_inplace-")]
        return index.read_bytes()

    first = run_and_read_index()
    assert run_and_read_index() == first  # nothing changed: the cache is reused
    with open(kernels / "dense.py", "a") as f:
        f.write("\n# an edit in a sibling file\n")
    assert run_and_read_index() != first  # recompiled under the folder's new stamp


def test_installed_copy_caches_outside_site_packages(tmp_path):
    """A copy of the package in a folder without pyproject.toml (as pip installs it)
    compiles a cached kernel: the cache files land in the user-wide directory
    (XDG_CACHE_HOME here), none in the package's own __pycache__."""
    site = tmp_path / "site-packages"
    shutil.copytree(REPO_ROOT / "symref", site / "symref",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    cache = tmp_path / "cache"
    env = checkout_env(XDG_CACHE_HOME=str(cache), NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CACHE_DIR", None)
    env["PYTHONPATH"] = str(site)  # the installed copy only, not the checkout
    code = ("import numpy as np, symref\n"
            f"assert symref.__file__.startswith({str(site)!r}), symref.__file__\n"
            "from symref.fast.kernels.activations import tanh_inplace\n"
            "a = np.linspace(-2, 2, 7); tanh_inplace(a)\n"
            "assert np.allclose(a, np.tanh(np.linspace(-2, 2, 7)))\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    in_package = sorted(p.name for p in (site / "symref").rglob("*.nbi"))
    in_user_cache = sorted(p.name for p in Path(cache).rglob("*.nbi"))
    assert not in_package, f"numba wrote into the installed package: {in_package}"
    assert any(n.startswith("activations.tanh_inplace") for n in in_user_cache), in_user_cache


def test_noalias_serial_build_matches_and_pickles():
    """``@kernel(noalias=True)``: the serial build (numba's noalias flag where numba has
    it) gives the parallel build's numbers bit for bit and pickles like any dispatcher."""
    import pickle

    import numpy as np

    from symref.fast.kernels import _jit
    from symref.fast.kernels import tabulated as kt

    serial = kt.env_table_T_forward.serial
    if _jit._NOALIAS_DISPATCHER is not None:
        assert isinstance(serial, _jit._NOALIAS_DISPATCHER)
    assert pickle.loads(pickle.dumps(serial)) is serial
    rng = np.random.default_rng(3)
    ptr = np.array([0, 5, 5, 14], dtype=np.int64)  # 5, 0 and 9 pairs (four at a time + rest)
    d = rng.normal(size=(14, 3))
    rij = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.9, 5.9, size=(14, 1))
    types = np.array([0, 1, 0], dtype=np.int64)
    davg, dstd = np.zeros((2, 4)), rng.uniform(0.5, 2.0, size=(2, 4))
    coef = rng.normal(size=(40, 6, 9))
    info = np.array([0.0, 1.0, 2.0, 0.05, 0.1, -1.0])  # some s extrapolate past 2.0
    out = []
    for build in (kt.env_table_T_forward, serial):
        R, T = np.empty((14, 4)), np.zeros((3, 4, 9))
        build(rij, ptr, types, davg, dstd, 6.0, 0.5, 0.0, coef, info, R, T)
        out.append(T)
    np.testing.assert_array_equal(out[0], out[1])
