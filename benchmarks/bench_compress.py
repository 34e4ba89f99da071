#!/usr/bin/env python
r"""Compressed (tabulated) against uncompressed evaluation on the numba path, and both
against deepmd-kit's PyTorch backend on the CPU (issue 21's speed target).

Run from the repository root::

    python benchmarks/bench_compress.py                  # 192 and 1 536 atoms, 7 repeats
    python benchmarks/bench_compress.py --sizes 192 --repeats 5 --no-deepmd
    python benchmarks/bench_compress.py --json compress.json
    python benchmarks/bench_compress.py --deepmd-tf /path/to/venv_tf/bin/python

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
With ``--deepmd-tf PYTHON`` also deepmd-kit's fastest CPU mode, its TensorFlow backend
with its C++ ops, uncompressed and compressed by ``dp --tf compress`` for the same
smallest neighbour distance (so its tables are symref's): ``PYTHON`` is an interpreter
with ``tensorflow-cpu`` and ``deepmd-kit`` (``pip install "tensorflow-cpu==2.21.*"
"deepmd-kit==3.2.0"`` in a venv of its own), which runs ``deepmd_tf_worker.py`` in a
subprocess after symref's timings (``DeepPot.eval``, its own neighbour search
included); its energies and forces are compared with symref's.
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


def deepmd_tf(python: str, model, frame0, systems: dict, repeats: int, threads: int) -> dict:
    """Run ``deepmd_tf_worker.py`` under ``python`` (module docstring) on ``model`` and the
    ``systems`` ({natoms: (coord, atype, box)}); its report with ``"out"``, the outputs."""
    import subprocess

    import numpy as np

    import symref
    from symref.io.data import System, save_system
    from symref.synthetic import EXAMPLE_CONFIG

    work = Path(tempfile.mkdtemp(prefix="symref-tf-"))
    symref.save_model(model, work / "model.dp")
    c0, t0, b0 = frame0  # the one-frame system dp compress takes r_min from (zero labels)
    save_system(System(EXAMPLE_CONFIG["type_map"], np.asarray(t0), np.asarray(c0)[None],
                       np.asarray(b0).reshape(1, 3, 3), energy=np.zeros(1),
                       force=np.zeros((1, len(t0), 3))), work / "frame0")
    cfg = {"model": EXAMPLE_CONFIG,
           "learning_rate": {"type": "exp", "decay_steps": 5000, "start_lr": 1e-3,
                             "stop_lr": 3.51e-8},
           "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1,
                    "start_pref_f": 1000, "limit_pref_f": 1},
           "training": {"training_data": {"systems": [str(work / "frame0")], "batch_size": 1},
                        "numb_steps": 1, "seed": 1}}
    (work / "input.json").write_text(json.dumps(cfg))
    np.savez(work / "frames.npz", **{f"{k}_{n}": v for n, sysn in systems.items()
                                    for k, v in zip(("coord", "atype", "box"), sysn)})
    env = dict(os.environ, DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
               DP_INTER_OP_PARALLELISM_THREADS="1", OMP_NUM_THREADS=str(threads),
               TF_CPP_MIN_LOG_LEVEL="2")
    log(f"deepmd-kit TensorFlow backend: {python} (workdir {work})")
    with open(work / "worker.log", "w") as fh:
        rc = subprocess.run([python, str(ROOT / "benchmarks" / "deepmd_tf_worker.py"), str(work),
                             "--repeats", str(repeats)], env=env, stdout=fh,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = (work / "worker.log").read_text().splitlines()[-5:]
        raise SystemExit(f"deepmd_tf_worker.py failed (exit {rc}); see {work}/worker.log:\n"
                         + "\n".join(tail))
    rep = json.loads((work / "tf.json").read_text())
    rep["median_ms"] = {int(k): v for k, v in rep["median_ms"].items()}
    rep["out"] = dict(np.load(work / "tf_out.npz"))
    return rep


def tf_rows(tf: dict, n: int, med: dict, a: dict, b: dict, atype) -> dict:
    """Print (and return) deepmd-kit TensorFlow's rows for ``n`` atoms: its medians, the
    speed-ups against symref's numba calls (``med``, seconds) and the differences of its
    outputs from symref's (``a`` uncompressed, ``b`` compressed)."""
    import numpy as np

    ms, out, row = tf["median_ms"][n], tf["out"], {}
    for name, ours, sym in (("deepmd tf", "numba", a), ("deepmd tf compressed",
                                                         "numba compressed", b)):
        key = name.replace(" ", "_")
        f_tf = out[f"{key}_forces_{n}"]
        fdiff = float(np.abs(sym["forces"][0] - f_tf).max() / np.abs(f_tf).max())
        vdiff = float(np.abs(sym["virial"][0].reshape(3, 3) - out[f"{key}_virial_{n}"]).max()
                      / np.abs(out[f"{key}_virial_{n}"]).max())
        # atomic energies less a constant per type (dp --tf compress re-derives bias_atom_e)
        ae_tf, ae = out[f"{key}_atom_energy_{n}"], sym["atom_energy"][0]
        d = ae_tf - ae
        shift = {int(t): float(d[atype == t].mean()) for t in np.unique(atype)}
        resid = d - np.array([shift[int(t)] for t in atype])
        ediff = float(np.abs(resid).max() / np.abs(ae).max())
        row[name] = {"median_ms": ms[name], "speedup_of_symref": ms[name] / (1e3 * med[ours]),
                     "atom_energy_max_rel_diff_after_type_shift": ediff,
                     "type_shift_eV": shift, "forces_max_rel_diff": fdiff,
                     "virial_max_rel_diff": vdiff}
        print(f"  {name:<22} {ms[name]:10.2f} ms   symref {ours}: "
              f"{ms[name] / (1e3 * med[ours]):.2f}x faster; forces max rel diff {fdiff:.1e}, "
              f"virial {vdiff:.1e}, atomic energies {ediff:.1e} after a per-type shift "
              f"({', '.join(f'{v:+.4g}' for v in shift.values())} eV)")
    row["ratio_deepmd_tf"] = ms["deepmd tf"] / ms["deepmd tf compressed"]
    print(f"  speed-up of compression, deepmd-kit tf (TensorFlow {tf['tensorflow']}): "
          f"{row['ratio_deepmd_tf']:.2f}x")
    return row


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
    p.add_argument("--deepmd-tf", metavar="PYTHON",
                   help="a Python with tensorflow-cpu and deepmd-kit: time deepmd-kit's "
                        "TensorFlow backend too (deepmd_tf_worker.py)")
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
    systems = {}
    for n in args.sizes:
        k = max(1, n // len(t0))
        coord, atype, box = replicate(c0, t0, b0, replication_shape(k))
        systems[len(atype)] = (coord, atype, box)
    tf = deepmd_tf(args.deepmd_tf, model, (c0, t0, b0), systems, args.repeats,
                   report["threads"]) if args.deepmd_tf else None
    if tf is not None:
        report["deepmd_tf"] = {k: v for k, v in tf.items() if k != "out"}
    for n, (coord, atype, box) in systems.items():
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
        if tf is not None:
            edict.update(tf_rows(tf, n, med, a, b, atype))
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
