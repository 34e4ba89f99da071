"""Data-parallel loss+gradient speed: one full-batch L-BFGS evaluation
(``symref.train.fit.batch_loss_and_grad``) of water frames with 1 rank x 1 numba thread,
2 MPI ranks x 1 thread each, and 1 rank x 2 threads.

    python benchmarks/bench_parallel_train.py [--frames 8] [--repeats 5] [--rounds 3]

Model: deepmd-kit's water example size (se_e2_a, rcut 6 Å, sel [46, 92], embedding
25-50-100 type_one_side, axis_neuron 16, fitting 240-240-240 resnet_dt; ~1M parameters,
``demo_model(config, seed=1)``), energy+force loss with prefactors 1, 1.  Frames: the
first ``--frames`` of ``../shared/data/water/data_0`` (192 atoms each).

Each configuration runs in its own process(es) (``NUMBA_NUM_THREADS`` must be set
before numba starts; OpenBLAS is single-threaded everywhere), does one untimed
evaluation, then ``--repeats`` timed ones, each started after a barrier; a round
runs the three configurations one after the other, and ``--rounds`` rounds
interleave them so that load from other users of the machine spreads over all.
Reported: the median over all timed evaluations per configuration and the
speed-ups against 1 rank x 1 thread.  The loss and gradient norm of every
configuration are printed too: the frame sum is rank- and thread-independent,
so they are bitwise equal.  ``exchange`` is the time of the rank-to-rank part
alone (Allgatherv of one gradient-sized vector per rank and the final adds);
``shard alone`` the slowest rank's time for its own frames without any exchange
(all ranks running at once; last round), so that load imbalance, exchange and
cores slowed by other users of the machine can be told apart.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("1 rank x 1 thread", 1, 1), ("2 ranks x 1 thread", 2, 1),
           ("1 rank x 2 threads", 1, 2)]
MODEL = {"type_map": ["O", "H"],
         "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                        "neuron": [25, 50, 100], "axis_neuron": 16, "resnet_dt": False,
                        "type_one_side": True},
         "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}}


def worker(args) -> int:
    import numba
    import numpy as np

    from symref.io.data import load_system, select_frames
    from symref.train.loss import LossPrefactors
    from symref.model.build import demo_model
    from symref.train.parallel import get_comm, sharded_sum
    from symref.model.params import flat_parameters
    from symref.train.fit import batch_loss_and_grad

    comm = get_comm()
    model = demo_model(MODEL, seed=1)
    s = load_system(args.data)
    s = select_frames(s, np.arange(min(args.frames, s.nframes)))
    pref = LossPrefactors(1.0, 1.0, 0.0)
    loss, g = batch_loss_and_grad(model, [s], pref, comm=comm)  # warm-up: caches, arenas
    times = []
    for _ in range(args.repeats):
        comm.barrier()
        t = time.perf_counter()
        loss, g = batch_loss_and_grad(model, [s], pref, comm=comm)
        times.append(time.perf_counter() - t)
    from symref.train.parallel import SERIAL, shard_ranges

    a, b = shard_ranges(s.nframes, comm.size)[comm.rank]
    own = []  # this rank's frames alone, no exchange (all ranks at once, as in the runs)
    for _ in range(2):
        comm.barrier()
        t = time.perf_counter()
        batch_loss_and_grad(model, [select_frames(s, np.arange(a, b))], pref, comm=SERIAL)
        own.append(time.perf_counter() - t)
    own = max(comm.allgather_obj(float(np.median(own))))
    width = 1 + flat_parameters(model).size
    exch = []
    for _ in range(3):
        comm.barrier()
        t = time.perf_counter()
        sharded_sum(comm.size, lambda i: np.zeros(width), width, comm)
        exch.append(time.perf_counter() - t)
    if comm.is_root:
        print(json.dumps({"ranks": comm.size, "threads": numba.get_num_threads(),
                          "frames": s.nframes, "natoms": s.natoms, "nparams": width - 1,
                          "times": times, "loss": loss.hex(), "gsq": float(g @ g).hex(),
                          "exchange": float(np.median(exch)), "shard_alone": own}))
    return 0


def run(label, ranks, threads, args) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", "--frames", str(args.frames),
           "--repeats", str(args.repeats), "--data", args.data]
    if ranks > 1:
        from symref.train.parallel import mpiexec_path

        mpiexec = mpiexec_path()
        if mpiexec is None:
            raise SystemExit("mpiexec not found (pip install mpich mpi4py)")
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"{label} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=8, help="frames in the batch (default 8)")
    ap.add_argument("--repeats", type=int, default=5, help="timed evaluations per process")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not (Path(args.data) / "type.raw").is_file():
        raise SystemExit(f"water data not found: {args.data} (see --data)")
    import numpy as np

    load0 = os.getloadavg()
    res = {label: [] for label, _, _ in CONFIGS}
    info = {}
    for k in range(args.rounds):
        for label, ranks, threads in CONFIGS:
            out = run(label, ranks, threads, args)
            res[label] += out["times"]
            info[label] = out
            print(f"round {k + 1}/{args.rounds}  {label:20s} median "
                  f"{np.median(out['times']):.3f} s", flush=True)
    load1 = os.getloadavg()
    base = float(np.median(res[CONFIGS[0][0]]))
    first = info[CONFIGS[0][0]]
    print(f"\nbatch_loss_and_grad: {first['frames']} water frames x {first['natoms']} atoms, "
          f"{first['nparams']} parameters, median of {args.rounds} x {args.repeats} runs")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} ({os.cpu_count()} cores)")
    print(f"{'configuration':22s} {'median':>9s} {'min':>9s} {'speed-up':>9s} {'exchange':>9s} "
          f"{'shard alone':>12s}")
    summary = {}
    for label, ranks, threads in CONFIGS:
        t = np.asarray(res[label])
        med = float(np.median(t))
        summary[label] = {"median_s": med, "min_s": float(t.min()), "speedup": base / med,
                          "exchange_s": info[label]["exchange"],
                          "shard_alone_s": info[label]["shard_alone"], "times": t.tolist()}
        print(f"{label:22s} {med:8.3f}s {t.min():8.3f}s {base / med:8.2f}x "
              f"{info[label]['exchange'] * 1e3:7.1f}ms {info[label]['shard_alone']:11.3f}s")
    same = len({(v["loss"], v["gsq"]) for v in info.values()}) == 1
    print(f"loss {float.fromhex(first['loss']):.15e} and |g|^2 bitwise equal in all "
          f"configurations: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "load_before": load0,
                                               "load_after": load1, "bitwise_equal": same,
                                               "frames": first["frames"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
