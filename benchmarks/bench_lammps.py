#!/usr/bin/env python
r"""LAMMPS driven by symref (``symref.lammps``, fix external) against a bare ``model.evaluate``.

Run from the repository root::

    python benchmarks/bench_lammps.py                     # 12 288 and 98 304 atoms
    python benchmarks/bench_lammps.py --sizes 12288 --steps 3 --repeats 3

For every size it runs, each in its own process (thread settings fixed before
numpy/numba are imported):

* ``bare``: ``model.evaluate(coord, atype, box)`` (numba path), ``--threads``
  threads; median of ``--repeats`` after a warm-up;
* ``lammps 1 rank (periodic)`` and ``lammps 1 rank (ghost)``: LAMMPS with
  ``fix nve`` and the symref fix, ``--threads`` threads, ``run STEPS`` timed
  ``--repeats`` times after ``run 0``; per-step time = wall / STEPS;
* ``lammps 2 ranks (ghost)``: the same under ``mpiexec -n 2``, 1 thread each.

It prints µs/atom/step, the ratio to ``bare`` (the overhead of LAMMPS + the
callback, and of the first-shell recomputation in ghost mode), the time in
the callback, and the first-shell atoms recomputed per own atom.  The model is
benchmarks/bench_evaluate.py's water model (se_e2_a 25-50-100, fitting
240-240-240, float64) with random weights; the system is frame 0 of
``../shared/data/water/data_0`` replicated (or, without ../shared, 64 random
water molecules at liquid density).  Medians of several runs: the machine is
noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "[result]"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def system(natoms: int):
    import numpy as np

    sys.path.insert(0, str(HERE))
    from bench_evaluate import DEFAULT_DATA

    from symref.synthetic import replicate, replication_shape

    if (DEFAULT_DATA / "set.000" / "coord.npy").is_file():
        from symref.io.data import load_system

        s = load_system(DEFAULT_DATA)
        coord, atype, box = s.coord[0], s.atype, s.box[0].reshape(3, 3)
    else:
        from symref.synthetic import water_box

        log(f"{DEFAULT_DATA} not found: 64 random water molecules instead")
        c, atype, b = water_box(1, 64, seed=0)
        coord, box = c[0], b[0]
    k = natoms // len(atype)
    if k * len(atype) != natoms:
        raise SystemExit(f"--sizes: {natoms} is not a multiple of {len(atype)} atoms")
    c, a, b = replicate(coord, atype, box, replication_shape(k))
    return np.asarray(c), np.asarray(a), np.asarray(b).reshape(3, 3)


def model():
    from symref.synthetic import EXAMPLE_SEED, example_config

    from symref.model.build import demo_model

    return demo_model(example_config(type_one_side=True), seed=EXAMPLE_SEED)


def worker(spec: dict) -> dict:

    coord, atype, box = system(spec["natoms"])
    m = model()
    if spec["kind"] == "bare":
        m.evaluate(coord, atype, box)  # warm-up (compilation cache, pools)
        ts = []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            m.evaluate(coord, atype, box)
            ts.append(time.perf_counter() - t0)
        return {"times": ts}
    from symref.lammps import attach, new_lammps, write_data

    lmp = new_lammps()
    rank = lmp.extract_setting("world_rank")
    comm = lmp.get_mpi_comm()
    data = spec["tmp"] + "/system.data"
    if rank == 0:
        write_data(data, coord, atype, box, m.type_map, masses=[15.9994, 1.00794])
    if comm is not None:
        comm.Barrier()
    lmp.commands_string(f"""
units metal
atom_style atomic
boundary p p p
read_data {data}
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
""")
    fix = attach(lmp, m, mode=spec["mode"])
    lmp.commands_string("""
velocity all create 300.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.0005
thermo 1000
""")
    lmp.command("run 0")
    st = fix.stats
    c0, s0, sh0, l0 = st.calls, st.seconds, st.shell, st.local
    ts = []
    for _ in range(spec["repeats"]):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        lmp.command(f"run {spec['steps']} pre no post no")
        ts.append((time.perf_counter() - t0) / spec["steps"])
    if fix.error is not None:
        raise fix.error
    calls = st.calls - c0
    out = {"times": ts, "callback": (st.seconds - s0) / max(calls, 1),
           "shell_per_own": (st.shell - sh0) / max(st.local - l0, 1),
           "local": st.local // max(st.calls, 1), "modes": sorted(st.modes)}
    if comm is not None:
        allout = comm.gather(out, root=0)
        if rank == 0:
            out = {"times": [max(t) for t in zip(*[o["times"] for o in allout])],
                   "callback": max(o["callback"] for o in allout),
                   "shell_per_own": sum(o["shell_per_own"] for o in allout) / len(allout),
                   "local": [o["local"] for o in allout], "modes": allout[0]["modes"]}
    lmp.close()
    return out if rank == 0 else {}


def run(spec: dict, threads: int, nprocs: int) -> dict:
    env = dict(os.environ)
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    if nprocs > 1:
        from symref.train.parallel import mpiexec_path

        exe = mpiexec_path()
        if exe is None:
            raise SystemExit("mpiexec not found (pip install mpich)")
        cmd = [exe, "-n", str(nprocs)] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"worker failed ({res.returncode}): {res.stderr[-2000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[12288, 98304])
    p.add_argument("--steps", type=int, default=3, help="MD steps per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="threads of the 1-rank runs")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        out = worker(json.loads(a.worker))
        if out:
            print(MARK + json.dumps(out), flush=True)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            base = {"natoms": n, "repeats": a.repeats, "steps": a.steps, "tmp": tmp}
            cases = [("bare evaluate", dict(base, kind="bare"), a.threads, 1),
                     ("lammps 1 rank periodic", dict(base, kind="lammps", mode="periodic"),
                      a.threads, 1),
                     ("lammps 1 rank ghost", dict(base, kind="lammps", mode="ghost"),
                      a.threads, 1),
                     ("lammps 2 ranks ghost", dict(base, kind="lammps", mode="ghost"), 1, 2)]
            bare = None
            for name, spec, threads, nprocs in cases:
                log(f"{n} atoms: {name} ({nprocs} x {threads} threads)")
                r = run(spec, threads, nprocs)
                med = statistics.median(r["times"])
                if bare is None:
                    bare = med
                rows.append({"natoms": n, "case": name, "ranks": nprocs, "threads": threads,
                             "median_s": med, "us_per_atom": med / n * 1e6,
                             "ratio_to_bare": med / bare, "runs": r["times"],
                             "callback_s": r.get("callback"),
                             "shell_per_own": r.get("shell_per_own")})
                log(f"  median {med:.3f} s/step, {med / n * 1e6:.1f} µs/atom, "
                    f"{med / bare:.2f} x bare")
    print(f"\n{'atoms':>7} {'case':<24} {'ranks x thr':>11} {'s/step':>8} {'µs/atom':>8} "
          f"{'x bare':>7} {'recomputed/own':>15}")
    for r in rows:
        shell = "" if r["shell_per_own"] is None else f"{r['shell_per_own']:.2f}"
        print(f"{r['natoms']:>7} {r['case']:<24} {r['ranks']:>5} x {r['threads']:<3} "
              f"{r['median_s']:8.3f} {r['us_per_atom']:8.1f} {r['ratio_to_bare']:7.2f} "
              f"{shell:>15}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
