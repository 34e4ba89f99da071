"""se_e2_r vs se_e2_a vs se_e3 vs hybrid(se_e2_a, se_e3) on water, same optimiser and the
same number of iterations (issue 20's measured comparison), with the wall time each took.

Setup (as ``benchmarks/lbfgs_water.py``): 12 training frames spread over
``../shared/data/water/data_0..2`` (4 each), deepmd-kit's statistics
(:func:`symref.train.stats.compute_statistics`), energy + force loss (p_e = p_f = 1),
:func:`symref.train.fit.fit_lbfgs` with ``standardize=True`` for ``--iterations``
iterations each (L-BFGS may stop earlier when its line search fails: the table gives
the count), from the same seed; then every model is tested on *all* 80 frames of
``data_3``: force RMSE (eV/Å) and energy RMSE (meV/atom).  Fitting net 32-32 (resnet_dt)
for every descriptor:

==============  ==========================================================================
``se_e2_r``     rcut 6.0, rcut_smth 0.5, sel [46, 92], embedding 8-16 (radial only)
``se_e2_a``     the same with axis_neuron 4 (tutorial 04's model)
``se_e3``       rcut 4.5, rcut_smth 0.5, sel [20, 40], embedding 2-4-8 (three-body)
``hybrid``      hybrid(se_e2_a, se_e3) of the two above
==============  ==========================================================================

Every loss gradient runs on numba (:mod:`symref.fast.cpu_loss` for se_e2_a,
:mod:`symref.fast.family_loss` for the others; a fallback to the reference would be an
error here).  The wall time of each fit is reported (machine shared with other jobs:
the load average is recorded).

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/descriptor_family_water.py --iterations 40 \\
        --json benchmarks/figures/descriptor_family_water.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import symref
from symref.io.data import load_systems, select_frames
from symref.model.params import flat_parameters
from symref.train.fit import fit_lbfgs
from symref.train.loss import LossPrefactors
from symref.train.report import errors_table
from symref.train.stats import compute_statistics

WATER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "water"
SE_E2_A = {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
           "neuron": [8, 16], "axis_neuron": 4}
SE_E2_R = {"type": "se_e2_r", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
           "neuron": [8, 16]}
SE_E3 = {"type": "se_e3", "rcut": 4.5, "rcut_smth": 0.5, "sel": [20, 40], "neuron": [2, 4, 8]}
DESCRIPTORS = {"se_e2_r": SE_E2_R, "se_e2_a": SE_E2_A, "se_e3": SE_E3,
               "hybrid": {"type": "hybrid", "list": [SE_E2_A, SE_E3]}}


def config(name: str) -> dict:
    """The model configuration of descriptor ``name`` (a key of DESCRIPTORS)."""
    return {"type_map": ["O", "H"], "descriptor": DESCRIPTORS[name],
            "fitting_net": {"neuron": [32, 32], "resnet_dt": True}}


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=40, help="L-BFGS iterations per model")
    ap.add_argument("--runs", nargs="+", default=list(DESCRIPTORS), choices=list(DESCRIPTORS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args()
    if not (WATER / "data_3" / "type.raw").is_file():
        raise SystemExit(f"{WATER} not found: this benchmark needs ../shared/data/water")
    pool = load_systems([WATER / f"data_{k}" for k in range(3)], ["O", "H"])
    train = [select_frames(s, np.linspace(0, s.nframes - 1, 4).round().astype(int)) for s in pool]
    test = load_systems([WATER / "data_3"], ["O", "H"])
    print(f"{sum(s.nframes for s in train)} training frames, {test[0].nframes} test frames "
          f"(data_3), L-BFGS (standardize=True) for {args.iterations} iterations per model, "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    results = {"iterations": args.iterations, "seed": args.seed, "load_start": os.getloadavg()[0],
               "runs": {}}
    for name in args.runs:
        model = symref.build_model(config(name), seed=args.seed)
        compute_statistics(model, train)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback to the reference
            model, res = fit_lbfgs(model, train, LossPrefactors(1.0, 1.0, 0.0),
                                   maxiter=args.iterations, standardize=True, progress=None)
        wall = time.perf_counter() - t0
        t = errors_table(model, test)
        row = {"iterations": int(res.nit), "evaluations": int(res.nfev), "wall_s": wall,
               "load": os.getloadavg()[0], "force_rmse": float(t["force"][1]),
               "energy_rmse_mev_atom": 1000 * float(t["energy/atom"][1]),
               "parameters": int(flat_parameters(model).size)}
        results["runs"][name] = row
        print(f"{name:8s} {row['parameters']:6d} parameters {row['iterations']:6d} iterations "
              f"{wall:7.1f} s   data_3 force RMSE "
              f"{row['force_rmse']:.4f} eV/Å   energy RMSE {row['energy_rmse_mev_atom']:.2f} "
              f"meV/atom", flush=True)
    results["load_end"] = os.getloadavg()[0]
    if args.json is not None:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
