"""float32 against float64 on the numba path: speed and accuracy of energy, forces, virial.

    python benchmarks/bench_float32.py [--sizes 192 1536] [--repeats 7] [--threads 2]

Model: deepmd-kit's water example size (:data:`symref.synthetic.EXAMPLE_CONFIG`,
``demo_model`` seed 1: embedding 25-50-100, axis 16, fitting 240x3, rcut 6).  Frames:
frame 0 of ``../shared/data/water/data_0`` (192 atoms), replicated
(:func:`symref.synthetic.replicate`) to each size.  In one process, after one warm-up
each, the two precisions are timed alternately (``model.evaluate(...,
precision="float32")`` and the float64 default, ``backend="numba"``), medians of
``--repeats``; the ratio of the medians is printed.  Accuracy of the float32 result
against float64: the largest force-component error over max|F|, the energy error per
atom, the virial error over max|W|.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 1536])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    args = ap.parse_args()
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    from symref.io.data import load_system
    from symref.model.build import demo_model
    from symref.synthetic import EXAMPLE_CONFIG, replicate, replication_shape

    if not (Path(args.data) / "set.000").is_dir():
        raise SystemExit(f"water frames not found: {args.data} (needs ../shared/data)")
    s = load_system(args.data)
    model = demo_model(EXAMPLE_CONFIG, seed=1)
    c0, t0, b0 = s.coord[0], s.atype, s.box[0]
    print(f"deepmd-kit water example model size, numba backend, {args.threads} threads, "
          f"median of {args.repeats}")
    for n in args.sizes:
        c, t, b = replicate(c0, t0, b0, replication_shape(n // len(t0)))
        runs = {"float64": lambda: model.evaluate(c, t, b),
                "float32": lambda: model.evaluate(c, t, b, precision="float32")}
        res = {k: f() for k, f in runs.items()}  # warm-up (and compilation)
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, f in runs.items():
                t1 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t1)
        med = {k: statistics.median(v) for k, v in times.items()}
        r64, r32 = res["float64"], res["float32"]
        fmax = float(np.abs(r64["forces"]).max())
        ferr = float(np.abs(r32["forces"].astype(np.float64) - r64["forces"]).max())
        eerr = float(abs(float(r32["energy"][0]) - float(r64["energy"][0]))) / len(t)
        wmax = float(np.abs(r64["virial"]).max())
        werr = float(np.abs(r32["virial"].astype(np.float64) - r64["virial"]).max())
        print(f"{len(t):6d} atoms: float64 {med['float64'] * 1e3:8.1f} ms, float32 "
              f"{med['float32'] * 1e3:8.1f} ms, float64/float32 = "
              f"{med['float64'] / med['float32']:.2f}x; float32 errors: forces "
              f"{ferr / fmax:.1e} of max|F| ({fmax:.2f} eV/Å), energy {eerr:.1e} eV/atom, "
              f"virial {werr / wmax:.1e} of max|W|", flush=True)


if __name__ == "__main__":
    main()
