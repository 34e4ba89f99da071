#!/usr/bin/env python
r"""Compressed (tabulated) against uncompressed evaluation on the numba path, and both
against deepmd-kit's PyTorch backend on the CPU (issue 21's speed target).

Run from the repository root::

    python benchmarks/bench_compress.py                  # 192 and 1 536 atoms, 7 repeats
    python benchmarks/bench_compress.py --sizes 192 --repeats 5 --no-deepmd
    python benchmarks/bench_compress.py --json compress.json

Model: deepmd-kit's water example size (se_e2_a, rcut 6 Å, sel [46, 92], embedding
25-50-100, axis 16, fitting 240-240-240), ``demo_model(EXAMPLE_CONFIG,
seed=EXAMPLE_SEED)``, compressed with :func:`symref.io.compress.compress_model`
(deepmd-kit's defaults: stride 0.01, second stride 0.1, extrapolate 5) for the
smallest neighbour distance of the frame (:func:`symref.io.compress.min_neighbor_distance`).
System: frame 0 of ``../shared/data/water/data_0`` (192 atoms) replicated
(:func:`symref.synthetic.replicate`), or the built-in 64-molecule box.

Timed (all in this process, after a warm-up call; medians of ``--repeats`` calls;
symref's two calls interleaved call by call so that load changes hit both alike, then
deepmd-kit's apart: a numba call right after a PyTorch one runs while PyTorch's OpenMP
workers still spin on the cores, which slowed whichever symref call came next):
``model.evaluate(coord, atype, box, backend="numba")`` returning energy, forces,
virial, atomic energies and virials, uncompressed and compressed; deepmd-kit's
PyTorch model (eager, CPU) through ``forward_lower`` on the extended system built
from symref's neighbour list (:func:`symref.deepmd_kit.forward_lower_inputs`, as
``bench_cuda.py`` does; the neighbour search is not in deepmd-kit's time, it is in
symref's), uncompressed and, where deepmd-kit can evaluate it, compressed.
Printed: the medians, the **ratios** (uncompressed/compressed time, i.e. the
speed-up of compression), and the forces' max relative difference compressed vs
uncompressed (``max|F_c - F| / max|F|``, the table's error).  ``--profile``
also times the kernels of one compressed call on one thread (where the time goes), and
both calls' totals on one thread, in the CPU time of the calling thread
(``time.thread_time``: on one thread every kernel, BLAS call and the neighbour search
run in it), which other processes' load barely changes (wall-clock times on the shared
2-core machine doubled or tripled under a load average of 10).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[bench_compress {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def frame(data: str):
    """(coord natoms x 3, atype, box 3 x 3, source) of the frame to replicate."""
    from symref.synthetic import water_box

    p = Path(data)
    if data != "none" and (p / "type.raw").is_file():
        from symref.io.data import load_system

        s = load_system(p)
        return s.coord[0], s.atype, s.box[0].reshape(3, 3), f"{p} frame 0"
    coord, atype, box = water_box()
    return coord[0], atype, box[0].reshape(3, 3), "symref.synthetic.water_box (64 molecules)"


def medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each function over ``repeats`` interleaved calls (after one warm-up)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def deepmd_functions(model, rmin, coord, atype, box, workdir) -> tuple[dict, dict]:
    """``({name: timed function}, {name: why it is missing})`` for deepmd-kit's PyTorch
    model, uncompressed and compressed (its own ``enable_compression`` for ``rmin``, with
    the same defaults)."""
    fns, why = {}, {}
    try:
        from symref.deepmd_kit import forward_lower_eval, forward_lower_inputs, pt_model

        inputs = forward_lower_inputs(model, coord, atype, box)
        dp = pt_model(model, workdir, "cpu")
        fns["deepmd pt"] = forward_lower_eval(dp, inputs, "cpu")
    except Exception as e:  # noqa: BLE001 - reported
        why["deepmd pt"] = f"{type(e).__name__}: {e}"
        return fns, why
    try:
        import torch

        dpc = pt_model(model, workdir, "cpu")
        dpc.min_nbor_dist = torch.tensor(rmin, dtype=torch.float64)
        dpc.enable_compression(5.0, 0.01, 0.1, -1)
        run = forward_lower_eval(dpc, inputs, "cpu")
        run()
        fns["deepmd pt compressed"] = run
    except Exception as e:  # noqa: BLE001 - reported
        why["deepmd pt compressed"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return fns, why


def profile(model, cmodel, coord, atype, box) -> dict:
    """Milliseconds of the calling thread's CPU time per compressed evaluation on one
    thread, by kernel (serial builds), with the uncompressed evaluation's total
    (``"uncompressed total"``) and the ratio of the two (``"ratio, one thread"``)."""
    import collections

    import numba
    import numpy as np

    from symref.fast import cpu

    acc = collections.defaultdict(float)

    clock = time.thread_time

    def wrap(f, name):
        def g(*a, **k):
            t = clock()
            r = f(*a, **k)
            acc[name] += clock() - t
            return r
        return g

    saved = dict(vars(cpu._SERIAL)), cpu._pair_list, np.matmul
    nthreads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for name, f in saved[0].items():
            setattr(cpu._SERIAL, name, wrap(f, name))
        cpu._pair_list = wrap(saved[1], "neighbour list")
        np.matmul = wrap(saved[2], "fitting-net matmul")  # the only matmuls left
        cpu.evaluate_frame(cmodel, coord, atype, box)
        cpu.evaluate_frame(model, coord, atype, box)
        acc.clear()
        reps = 5
        tc, tu = [], []
        for _ in range(reps):  # interleaved; the kernels' sums are over the compressed calls
            t = clock()
            cpu.evaluate_frame(cmodel, coord, atype, box)
            tc.append(clock() - t)
            saved_acc = dict(acc)
            t = clock()
            cpu.evaluate_frame(model, coord, atype, box)
            tu.append(clock() - t)
            acc.clear()
            acc.update(saved_acc)
        total = sum(tc) / reps
    finally:
        np.matmul = saved[2]
        cpu._pair_list = saved[1]
        for name, f in saved[0].items():
            setattr(cpu._SERIAL, name, f)
        numba.set_num_threads(nthreads)
    out = {k: 1e3 * v / reps for k, v in sorted(acc.items(), key=lambda kv: -kv[1])}
    out["rest (bookkeeping, gather, Python)"] = 1e3 * total - sum(out.values())
    out["total"] = 1e3 * total
    out["uncompressed total"] = 1e3 * sum(tu) / reps
    out["ratio, one thread"] = sum(tu) / sum(tc)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[192, 1536])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"),
                   help="deepmd-kit system whose frame 0 is replicated ('none': built-in box)")
    p.add_argument("--no-deepmd", action="store_true", help="skip deepmd-kit's PyTorch backend")
    p.add_argument("--profile", action="store_true", help="kernel times of one compressed call")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import numba
    import numpy as np

    from symref.io.compress import compress_model, min_neighbor_distance
    from symref.model.build import demo_model
    from symref.synthetic import EXAMPLE_CONFIG, EXAMPLE_SEED, replicate, replication_shape

    c0, t0, b0, source = frame(args.data)
    rmin = min_neighbor_distance(c0[None], b0[None])
    model = demo_model(EXAMPLE_CONFIG, seed=EXAMPLE_SEED)
    cmodel = compress_model(model, rmin)
    report = {"system": source, "min_nbor_dist": rmin, "threads": numba.get_num_threads(),
              "repeats": args.repeats, "sizes": {}}
    print(f"system: {source}, replicated; r_min = {rmin:.4f} Å; numba threads "
          f"{report['threads']}; medians of {args.repeats}")
    from symref.fast.blas import openblas_cores

    report["openblas"] = openblas_cores()
    print(f"OpenBLAS kernels: {', '.join(sorted(set(report['openblas'].values()))) or 'unknown'}"
          f" (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})")
    for n in args.sizes:
        k = max(1, n // len(t0))
        coord, atype, box = replicate(c0, t0, b0, replication_shape(k))
        n = len(atype)
        fns = {"numba": lambda: model.evaluate(coord[None], atype, box[None]),
               "numba compressed": lambda: cmodel.evaluate(coord[None], atype, box[None])}
        dfns, why = {}, {}
        if not args.no_deepmd:
            with tempfile.TemporaryDirectory() as tmp:
                dfns, why = deepmd_functions(model, rmin, coord, atype, box, tmp)
        log(f"{n} atoms: timing {', '.join(fns)}, then {', '.join(dfns) or 'nothing else'}")
        # deepmd-kit apart: interleaved, the call after its PyTorch one (always "numba")
        # ran on cores still held by PyTorch's spinning OpenMP workers, 2-5 ms slower at
        # 192 atoms, which inflated the ratio
        med = medians(fns, args.repeats)
        med.update(medians(dfns, args.repeats) if dfns else {})
        a = model.evaluate(coord[None], atype, box[None])
        b = cmodel.evaluate(coord[None], atype, box[None])
        fdiff = float(np.abs(b["forces"] - a["forces"]).max() / np.abs(a["forces"]).max())
        edict = {"median_ms": {k: 1e3 * v for k, v in med.items()}, "missing": why,
                 "forces_max_rel_diff_compressed": fdiff,
                 "ratio_numba": med["numba"] / med["numba compressed"]}
        print(f"\n{n} atoms")
        for k, v in med.items():
            print(f"  {k:<22} {1e3 * v:10.2f} ms")
        for k, v in why.items():
            print(f"  {k:<22} not timed: {v}")
        print(f"  speed-up of compression, numba: {edict['ratio_numba']:.2f}x "
              f"(uncompressed / compressed)")
        if "deepmd pt" in med:
            edict["numba_compressed_vs_deepmd_pt"] = med["deepmd pt"] / med["numba compressed"]
            print(f"  numba compressed vs deepmd-kit pt: {edict['numba_compressed_vs_deepmd_pt']:.2f}x"
                  f" faster; numba uncompressed: {med['deepmd pt'] / med['numba']:.2f}x")
        if "deepmd pt compressed" in med:
            edict["ratio_deepmd_pt"] = med["deepmd pt"] / med["deepmd pt compressed"]
            print(f"  speed-up of compression, deepmd-kit pt: {edict['ratio_deepmd_pt']:.2f}x")
        print(f"  forces, compressed vs uncompressed: max relative difference {fdiff:.2e}")
        if args.profile:
            edict["profile_ms_1_thread"] = prof = profile(model, cmodel, coord, atype, box)
            print("  one compressed call on 1 thread, ms of CPU time: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in prof.items()))
        report["sizes"][n] = edict
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
