"""Whether this process can run numba-cuda kernels (used by conftest.py and test_cuda_sim.py)."""
from __future__ import annotations

import importlib.util
import os
import sys


def cuda_kernels_runnable() -> bool:
    """True where numba-cuda can run kernels: its simulator (NUMBA_ENABLE_CUDASIM=1 set
    before numba was imported) or a real GPU."""
    if importlib.util.find_spec("numba_cuda") is None:
        return False
    if "numba" in sys.modules:
        import numba

        if numba.config.ENABLE_CUDASIM:
            return True
    elif os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - no driver: no GPU
        return False
