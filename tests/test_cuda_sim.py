"""The GPU path (numba-cuda) from the ordinary test run: no GPU needed.

* ``tests/cuda`` runs in a subprocess with numba's CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, hence the
  subprocess); it must pass and must have run tests.
* Without a GPU and without the simulator, ``backend="cuda"`` says what to install
  or set instead of failing obscurely.
* Where NVIDIA's NVVM library is installed (``pip install "numba-cuda[cu13]"``),
  every kernel, float64 and float32, is compiled to PTX (and, with nvJitLink, to a
  cubin) for an H100 (sm_90): the real CUDA compiler's type checks, which the
  simulator (plain Python) cannot do.  Skipped otherwise, except where
  ``SYMREF_REQUIRE_NVVM=1`` (set by ``.ci/run``, which installs the libraries).
"""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cuda_support import cuda_kernels_runnable
from checkout import checkout_env

REPO_ROOT = Path(__file__).resolve().parents[1]

HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(
    not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install 'symref[cuda]')")


def _env(**extra):
    env = checkout_env(OPENBLAS_NUM_THREADS="1", **extra)
    env.pop("PYTEST_ADDOPTS", None)
    return env


@needs_numba_cuda
def test_cuda_suite_passes_on_the_simulator():
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "tests/cuda", "-q", "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True,
                       text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode != 5, f"tests/cuda collected no tests under the simulator:\n{out[-3000:]}"
    assert r.returncode == 0, f"tests/cuda failed under the simulator:\n{out[-6000:]}"
    assert " passed" in r.stdout
    print(f"tests/cuda on the simulator: {time.perf_counter() - t:.1f} s; "
          f"{r.stdout.strip().splitlines()[-1]}")


def _bench_cuda_smoke(tmp_path, data: str) -> dict:
    """Rows of ``benchmarks/bench_cuda.py --smoke --data DATA`` on the simulator."""
    import json

    out = tmp_path / "smoke.json"
    r = subprocess.run([sys.executable, "benchmarks/bench_cuda.py", "--smoke", "--data", data,
                        "--json", str(out)],
                       cwd=REPO_ROOT, env=_env(NUMBA_ENABLE_CUDASIM="1"), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rows = {(x["backend"], x["precision"]): x for x in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("numba CPU", "float64"), ("cuda", "float64"), ("cuda", "float32")}
    return rows


@needs_numba_cuda
def test_gpu_benchmark_runs_on_the_simulator(tmp_path):
    """benchmarks/bench_cuda.py --smoke (tiny model, 192 atoms, the built-in water box:
    no ../shared needed) runs end to end on the simulator, so a session with a GPU does
    not spend its device time on a broken script.  Its float64 result agrees with the
    numba CPU path to 1e-12; float32 within 1e-4 of the largest value (the float32
    target).  The box of rigid molecules gives this tiny random model small forces
    (max|F| 0.29 eV/Å), so float32's relative error is larger here (1.3e-5 measured)
    than on the DFT frame below."""
    rows = _bench_cuda_smoke(tmp_path, "none")
    assert rows[("cuda", "float64")]["max_rel_diff"] <= 1e-12
    assert rows[("cuda", "float32")]["max_rel_diff"] <= 1e-4


@needs_numba_cuda
def test_gpu_benchmark_on_dft_water_float32_within_1e5(tmp_path, shared_data):
    """The same smoke run on frame 0 of ../shared/data/water/data_0: float64 to 1e-12,
    float32 within 1e-5 (1.2e-6 measured)."""
    rows = _bench_cuda_smoke(tmp_path, str(shared_data / "water" / "data_0"))
    assert rows[("cuda", "float64")]["max_rel_diff"] <= 1e-12
    assert rows[("cuda", "float32")]["max_rel_diff"] <= 1e-5


def test_cuda_backend_without_a_gpu_says_what_to_do():
    if cuda_kernels_runnable():
        pytest.skip("this process can run CUDA kernels (GPU or simulator)")
    from symref.model.build import demo_model

    cfg = {"type_map": ["A"], "descriptor": {"type": "se_e2_a", "rcut": 3.0, "sel": [4],
                                             "neuron": [2], "axis_neuron": 1},
           "fitting_net": {"neuron": [2]}}
    m = demo_model(cfg)
    err = ImportError if not HAS_NUMBA_CUDA else RuntimeError
    with pytest.raises(err, match="numba-cuda" if not HAS_NUMBA_CUDA else "NUMBA_ENABLE_CUDASIM"):
        m.evaluate(np.zeros((1, 3)), [0], backend="cuda")


PTX_SCRIPT = r"""
import sys
from symref.fast.kernels import cuda_se_e2_a as kc
try:
    out = kc.compile_ptx_all(cc=(9, 0))
except Exception as e:
    text = f"{type(e).__name__}: {e}"
    if "DynamicLibNotFound" in text or "nvvm" in text.lower() or "nvrtc" in text.lower():
        print("NO-TOOLKIT", text.splitlines()[0])
        sys.exit(77)
    raise
f64 = [k for k, v in out.items() if k.endswith("float32") and ".f64" in v]
assert not f64, f"float64 instructions in float32 kernels: {f64}"
try:
    from cuda.bindings import nvjitlink
except ImportError:
    nvjitlink = None
for k, ptx in out.items():
    if nvjitlink is None:
        break
    h = nvjitlink.create(1, ["-arch=sm_90"])
    data = ptx.encode()
    nvjitlink.add_data(h, nvjitlink.InputType.PTX, data, len(data), k)
    nvjitlink.complete(h)
    assert nvjitlink.get_linked_cubin_size(h) > 0, k
    nvjitlink.destroy(h)
print("OK", len(out), "kernels", "(ptx + cubin)" if nvjitlink else "(ptx)")
"""


@needs_numba_cuda
def test_kernels_compile_for_a_real_gpu():
    r = subprocess.run([sys.executable, "-c", PTX_SCRIPT], cwd=REPO_ROOT,
                       env=_env(NUMBA_ENABLE_CUDASIM="0"), capture_output=True, text=True,
                       timeout=600)
    if r.returncode == 77:
        if os.environ.get("SYMREF_REQUIRE_NVVM") == "1":  # set by .ci/run once installed
            pytest.fail("SYMREF_REQUIRE_NVVM=1 but NVVM/NVRTC are missing: " + r.stdout.strip())
        pytest.skip("NVIDIA's NVVM/NVRTC libraries are not installed "
                    "(pip install 'numba-cuda[cu13]' to compile the kernels without a GPU): "
                    + r.stdout.strip())
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    assert r.stdout.startswith("OK 16 kernels"), r.stdout  # 7 kernels + activations, x2 dtypes


def test_cuda_backend_without_numba_cuda_says_what_to_install(monkeypatch):
    from symref.fast import cuda as cudapath

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install .symref\[cuda\]"):
        cudapath.require()
