"""Shared pytest fixtures and paths for symref's tests.

* ``SHARED_DATA``: the real DFT data in deepmd-kit npy format, ``../shared/data``
  relative to the repository root (it is not part of the repository).  Tests
  that need it use the ``shared_data`` / ``water_frame`` fixtures, which skip
  with a clear reason when it is absent.
* ``tests/deepmd_ref.py`` (importable as ``deepmd_ref`` from test modules) runs
  deepmd-kit itself as the reference; tests that use it call
  ``pytest.importorskip("deepmd")`` first, or take the ``dp`` fixture (the module,
  skipping without deepmd-kit).

* ``tests/cuda/`` (numba-cuda kernels, ``backend="cuda"``) is collected only in
  a process that can run CUDA kernels: ``NUMBA_ENABLE_CUDASIM=1`` set before
  numba was imported (the simulator), or a real GPU.  ``tests/test_cuda_sim.py``
  runs it in a simulator subprocess, so a plain ``python -m pytest`` covers it.

Keep this file small: fixtures used by more than one test module only
(``shared_data``, ``water_frame``, ``pt``, ``dp``) and the ``tests/cuda`` switch.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from cuda_support import cuda_kernels_runnable

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
WATER_SYSTEM = SHARED_DATA / "water" / "data_0"


CUDA_TESTS = REPO_ROOT / "tests" / "cuda"


@functools.lru_cache(maxsize=None)
def _cuda_runnable() -> bool:
    return cuda_kernels_runnable()  # imports numba.cuda: only when tests/cuda is reached


def pytest_ignore_collect(collection_path, config):
    """tests/cuda only where CUDA kernels can run (see the module docstring), also
    when the directory is named on the command line (a file so named skips itself)."""
    inside = collection_path == CUDA_TESTS or CUDA_TESTS in collection_path.parents
    return True if inside and not _cuda_runnable() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data directory not found: {SHARED_DATA} "
                    "(the real-data tests need ../shared/data next to the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def water_frame(shared_data):
    """First frame of ``water/data_0/set.000`` as float64.

    Returns ``(coord (1, 192, 3), atype (192,), box (1, 9), type_map)``; the
    files are float32, cast to float64 here.
    """
    system = shared_data / "water" / "data_0"
    if not (system / "set.000" / "coord.npy").is_file():
        pytest.skip(f"water system not found: {system}")
    atype = np.loadtxt(system / "type.raw", dtype=np.int64, ndmin=1)
    type_map = (system / "type_map.raw").read_text().split()
    coord = np.load(system / "set.000" / "coord.npy")[:1].astype(np.float64)
    box = np.load(system / "set.000" / "box.npy")[:1].astype(np.float64).reshape(1, 9)
    return coord.reshape(1, -1, 3), atype, box, type_map


@pytest.fixture(scope="session")
def dp():
    """``tests/deepmd_ref`` (deepmd-kit as the reference); skips without deepmd-kit."""
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")
    import deepmd_ref

    return deepmd_ref


@pytest.fixture(scope="session")
def pt():
    """deepmd-kit's PyTorch backend (``tests/deepmd_ref.import_deepmd_pt``).

    Skips, saying why, without deepmd-kit or torch, unless SYMREF_REQUIRE_PT=1
    (set by .ci/run after installing torch), which makes a missing torch a failure.
    """
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("SYMREF_REQUIRE_PT") == "1":
            pytest.fail("SYMREF_REQUIRE_PT=1 but torch is not importable")
        pytest.skip("torch not installed: deepmd-kit's PyTorch backend (forces, virials) "
                    "needs `pip install torch==2.13.0 e3nn` (a CPU build)")
    import deepmd_ref

    return deepmd_ref.import_deepmd_pt()
