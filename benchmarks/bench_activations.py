"""Activations on the numba path: time of each against tanh (and tanh against another checkout).

    python benchmarks/bench_activations.py [--repeats 7] [--threads 2]
    python benchmarks/bench_activations.py --baseline-tree /path/to/other/checkout

Model: deepmd-kit's water example size (:data:`symref.synthetic.EXAMPLE_CONFIG`,
``demo_model`` seed 1) with ``activation_function`` set in the descriptor and the fitting
net; frame 0 of ``../shared/data/water/data_0`` (192 atoms).  Timed, ``backend="numba"``:
one energy + forces + virial evaluation, and one loss-and-gradient evaluation
(``energy_loss_and_grad``, energy + force terms).  In one process, after one warm-up each,
the activations are timed alternately, medians of ``--repeats``; printed with the ratio of
each median to tanh's.

``--baseline-tree DIR``: tanh only, this checkout against ``DIR`` (another symref
checkout, e.g. the main branch): child processes with ``PYTHONPATH`` set to each tree,
alternated for ``--rounds`` rounds; prints the median of each tree's medians and their
ratio (a check that the tanh kernels did not slow down).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_ACTS = ["tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "silu"]


def measure(acts, repeats, data):
    """{act: (median evaluate s, median loss-and-grad s)} for the acts, timed alternately."""
    import numpy as np

    from symref.io.data import load_system
    from symref.model.build import demo_model
    from symref.synthetic import EXAMPLE_CONFIG
    from symref.train.loss import LossPrefactors, energy_loss_and_grad

    if not (Path(data) / "set.000").is_dir():
        raise SystemExit(f"water frames not found: {data} (needs ../shared/data)")
    s = load_system(data)
    c, t, b = s.coord[:1], s.atype, s.box[:1]
    pref = LossPrefactors(1.0, 100.0, 0.0)
    runs = {}
    for act in acts:
        cfg = {**EXAMPLE_CONFIG,
               "descriptor": {**EXAMPLE_CONFIG["descriptor"], "activation_function": act},
               "fitting_net": {**EXAMPLE_CONFIG["fitting_net"], "activation_function": act}}
        model = demo_model(cfg, seed=1)
        ev = model.evaluate(c, t, b)  # warm-up (and compilation)
        labels = (ev["energy"] + 1.0, ev["forces"] * 0.9)
        runs[act] = (lambda m=model: m.evaluate(c, t, b),
                     lambda m=model, lb=labels: energy_loss_and_grad(
                         m, c, t, b, *lb, pref=pref, backend="numba"))
        runs[act][1]()
    times = {a: ([], []) for a in acts}
    for _ in range(repeats):
        for a, fs in runs.items():
            for k, f in enumerate(fs):
                t1 = time.perf_counter()
                f()
                times[a][k].append(time.perf_counter() - t1)
    assert np.isfinite(ev["energy"]).all()
    return {a: tuple(statistics.median(v) for v in times[a]) for a in acts}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    ap.add_argument("--baseline-tree", default=None)
    ap.add_argument("--json-tanh", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.json_tanh:
        print(json.dumps(measure(["tanh"], args.repeats, args.data)["tanh"]))
        return
    if args.baseline_tree:
        trees = {"baseline": Path(args.baseline_tree).resolve(), "this": ROOT}
        meds = {k: ([], []) for k in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                env = dict(os.environ, PYTHONPATH=str(tree))
                out = subprocess.run([sys.executable, __file__, "--json-tanh", "--repeats",
                                      str(args.repeats), "--threads", str(args.threads),
                                      "--data", args.data], env=env, check=True,
                                     capture_output=True, text=True, cwd=tree).stdout
                for k, v in enumerate(json.loads(out.strip().splitlines()[-1])):
                    meds[name][k].append(v)
        print(f"tanh, 192 atoms, {args.threads} threads, median of {args.rounds} rounds x "
              f"median of {args.repeats}")
        for k, what in enumerate(("evaluate", "loss+grad")):
            mb, mt = (statistics.median(meds[n][k]) for n in ("baseline", "this"))
            print(f"  {what:9s}: baseline {mb * 1e3:7.1f} ms, this tree {mt * 1e3:7.1f} ms, "
                  f"this/baseline = {mt / mb:.3f}")
        return
    res = measure(KERNEL_ACTS, args.repeats, args.data)
    print(f"numba backend, water example model size, 192 atoms, {args.threads} threads, "
          f"median of {args.repeats}")
    e0, g0 = res["tanh"]
    for a, (e, g) in res.items():
        print(f"  {a:9s} evaluate {e * 1e3:7.1f} ms ({e / e0:.2f}x tanh), "
              f"loss+grad {g * 1e3:7.1f} ms ({g / g0:.2f}x tanh)", flush=True)


if __name__ == "__main__":
    main()
