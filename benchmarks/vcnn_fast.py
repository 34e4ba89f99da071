"""VectorCloudNet: ``fit`` with ``backend="numba"`` against the NumPy reference.

The problem of issue 19: ``symref.synthetic.nonlocal_clouds(600, (100, 150), dim=2)``
(2-D, one vector and one scalar per point, 600 clouds of 100–150 points), the default
net (embedding 32-64-64, axis 4, fitting 128-128), L-BFGS with the same seed and a
fixed ``--maxiter``.  Each backend's ``fit`` is timed ``--repeats`` times (median;
one untimed warm-up fit of 1 iteration first, which loads the compiled kernels), and
so is one loss-and-gradient evaluation.  The numba backend is timed first, in the
fresh process, as a user meets it, and again after the NumPy runs (row ``numba*``).
The NumPy backend is timed as a user meets it (OpenBLAS's default threads) and again
with single-threaded BLAS (row ``numpy/1``, :func:`symref.fast.blas.blas_threads`):
on 2 cores OpenBLAS's spinning workers slow the reference's fit (L-BFGS-B runs
between its products), so the second row is its faster configuration and the
fairer baseline; both ratios are printed.

    python benchmarks/vcnn_fast.py                      # ~2 min on 2 cores
    python benchmarks/vcnn_fast.py --maxiter 20 --repeats 5 --json vcnn_fast.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import numpy as np


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clouds", type=int, default=600)
    ap.add_argument("--points", type=int, nargs=2, default=[100, 150])
    ap.add_argument("--maxiter", type=int, default=10, help="L-BFGS iterations per fit")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    import numba

    import symref
    from symref import vcnn
    from symref.synthetic import nonlocal_clouds

    clouds, y = nonlocal_clouds(args.clouds, tuple(args.points), dim=2)
    res = {"clouds": args.clouds, "points": args.points, "maxiter": args.maxiter,
           "repeats": args.repeats, "numba_threads": numba.get_num_threads(),
           "cpus": os.cpu_count(), "fit_s": {}, "loss_grad_s": {}, "n_iter": {}}
    nets = {}
    import scipy.optimize  # noqa: F401  (SciPy's OpenBLAS loaded, so blas_threads limits it)

    from symref.fast.blas import blas_threads, openblas_cores

    for name in ("numba", "numpy", "numpy/1", "numba*"):
        backend = name.rstrip("*").split("/")[0]
        with blas_threads(1) if name == "numpy/1" else contextlib.nullcontext():
            symref.VectorCloudNet(maxiter=1, verbose=False, backend=backend).fit(clouds, y)
            times = []
            for _ in range(args.repeats):
                net = symref.VectorCloudNet(maxiter=args.maxiter, verbose=False, seed=0,
                                            backend=backend)
                t0 = time.perf_counter()
                net.fit(clouds, y)
                times.append(time.perf_counter() - t0)
            nets[name] = net
            res["fit_s"][name] = times
            res["n_iter"][name] = net.n_iter_
            batches, _, t = net._prepare(clouds, y)
            lt = []
            for _ in range(args.repeats + 2):
                t0 = time.perf_counter()
                vcnn.loss_and_grad(net.params_, batches, t, backend=backend)
                lt.append(time.perf_counter() - t0)
            res["loss_grad_s"][name] = lt
    a, b = nets["numba"], nets["numpy"]
    res["pred_rel_diff_fits"] = _rel(a.predict(clouds), b.predict(clouds))
    y1 = a.predict(clouds)
    a.backend = "numpy"
    res["pred_rel_diff_switch"] = _rel(y1, a.predict(clouds))
    batches, _, t = a._prepare(clouds, y)
    g1 = vcnn.loss_and_grad(a.params_, batches, t, backend="numba")[1]
    g0 = vcnn.loss_and_grad(a.params_, batches, t, backend="numpy")[1]
    res["grad_rel_diff"] = _rel(g1, g0)
    med = {k: float(np.median(v)) for k, v in res["fit_s"].items()}
    lmed = {k: float(np.median(v)) for k, v in res["loss_grad_s"].items()}
    print(f"{args.clouds} clouds of {args.points[0]}-{args.points[1]} points, 2-D, "
          f"maxiter {args.maxiter}, {res['numba_threads']} numba threads, "
          f"median of {args.repeats}")
    res["openblas"] = blas_cores = openblas_cores()
    print(f"OpenBLAS kernels: {', '.join(sorted(set(blas_cores.values()))) or 'unknown'} "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})")
    print(f"{'backend':8s} {'fit (s)':>9s} {'loss+grad (ms)':>15s} {'iters':>6s}")
    for k in ("numpy", "numpy/1", "numba", "numba*"):
        print(f"{k:8s} {med[k]:9.2f} {1e3 * lmed[k]:15.1f} {res['n_iter'][k]:6d}")
    print(f"speed-up: fit {med['numpy'] / med['numba']:.2f}x, loss+grad "
          f"{lmed['numpy'] / lmed['numba']:.2f}x (against numpy/1: fit "
          f"{med['numpy/1'] / med['numba']:.2f}x, loss+grad "
          f"{lmed['numpy/1'] / lmed['numba']:.2f}x)")
    print(f"predictions, fitted with each backend: max rel diff {res['pred_rel_diff_fits']:.2e}")
    print(f"predictions, one net on both backends: max rel diff {res['pred_rel_diff_switch']:.2e}")
    print(f"loss gradient numba vs numpy:          max rel diff {res['grad_rel_diff']:.2e}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
