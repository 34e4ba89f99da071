#!/usr/bin/env bash
# One-shot GPU check for backend="cuda" (issue 7): the real-GPU test run, then the benchmark.
#
#   bash benchmarks/gpu_check.sh [OUTDIR [BENCH_CUDA_ARGS...]]   # on a machine with an NVIDIA GPU
#
# BENCH_CUDA_ARGS replace the benchmark's defaults (--repeats 5 --budget 60); the time limits
# of the two steps are GPU_CHECK_TEST_S (400) and GPU_CHECK_BENCH_S (500) seconds.
#
# Needs python3 with numpy, scipy, numba, numba-cuda and a CUDA driver. For the deepmd-kit
# column also torch (with CUDA), h5py and deepmd-kit. On a machine that cannot reach PyPI,
# bring deepmd-kit and the pure-Python packages it needs as wheels in .whl/ beside this repo
# (matching that machine's Python):
#   pip download --no-deps -d .whl deepmd-kit dargs typeguard wcmatch bracex \
#       array-api-compat pyyaml ase lmdb numpy==2.4.6
# (lmdb: deepmd.dpmodel.utils imports it; numpy 2.4: numba-cuda 0.30.4 fails to import
# under numpy 2.5, which lacks np.row_stack. The 2026-12-04 H200 image had numpy 2.5.2.)
# This script installs .whl/*.whl into /tmp/site when the folder exists.
# What it does, in order (each step's log in OUTDIR; a failing step does not stop the next):
#   1. nvidia-smi and the versions of the packages used;
#   2. tests/cuda on the real GPU (float64 to 1e-12/1e-10, float32 within 1e-5, and the
#      tests marked gpu), then tests/test_cuda_sim.py (PTX compile);
#   3. benchmarks/bench_cuda.py over 192 ... 98 304 atoms (float64, float32, numba CPU up
#      to 24 576 atoms, deepmd-kit through forward_lower), JSON in OUTDIR/bench_cuda.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu-out}}
shift || true
BENCH_ARGS=("$@")
[ "${#BENCH_ARGS[@]}" -gt 0 ] || BENCH_ARGS=(--repeats 5 --budget 60)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi; python3 -c "import numpy, numba, numba_cuda; print('numpy', numpy.__version__,
'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)";
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())";
  python3 -c "import deepmd; print('deepmd-kit', deepmd.__version__)"; } > "$OUT/env.txt" 2>&1
rc=0
timeout "${GPU_CHECK_TEST_S:-400}" python3 -m pytest tests/cuda tests/test_cuda_sim.py -q -p no:cacheprovider -s \
  > "$OUT/tests_gpu.log" 2>&1 || rc=1
tail -3 "$OUT/tests_gpu.log"
timeout "${GPU_CHECK_BENCH_S:-500}" python3 benchmarks/bench_cuda.py --json "$OUT/bench_cuda.json" \
  "${BENCH_ARGS[@]}" > "$OUT/bench_cuda.txt" 2> "$OUT/bench_cuda.log" || rc=1
cat "$OUT/bench_cuda.txt"
exit $rc
