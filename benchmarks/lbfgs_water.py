"""L-BFGS against Adam on water at the same wall-clock budget (issue 23's target).

Setup (tutorial 04's): 12 training frames spread over ``../shared/data/water/data_0..2``
(4 each), the model of tutorial 04 (se_e2_a rcut 6, sel [46, 92], embedding 8-16,
axis_neuron 4, fitting 32-32 with resnet_dt; 6 724 parameters), deepmd-kit's statistics
(:func:`symref.train.stats.compute_statistics`), energy + force loss.  Each optimiser
gets ``--seconds`` of training (``time_limit``); the model is then tested on *all* 80
frames of ``data_3``: force RMSE (eV/Å) and energy RMSE (meV/atom).  The L-BFGS runs
write ``lcurve_<run>.out`` in the working directory (training errors and validation
on the first 8 frames of data_3 every ``--disp-freq`` iterations).

Optimisers (``--runs``, any subset, run one after the other in this process):

``lbfgs``        :func:`symref.train.fit.fit_lbfgs`, standardize=True (``symref train``'s
                 default for ``"optimizer": {"type": "lbfgs"}``), p_e = p_f = 1
``lbfgs-plain``  the same without the standardised coordinates (the tutorial's one-time
                 fold of D's standardisation into the initial weights only)
``adam``         :func:`symref.train.fit.fit_adam`, deepmd-kit's defaults (batch "auto" = 1
                 frame, start_lr 1e-3, exp decay to 5e-8 over the steps that fit the budget
                 as measured by a 50-step probe after 5 warm-up steps, prefactors
                 0.02 -> 1 and 1000 -> 1; ``time_limit`` stops it if the probe was optimistic)

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/lbfgs_water.py --seconds 600 --runs lbfgs adam
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import symref
from symref.io.data import load_systems, select_frames
from symref.train.fit import fit_adam, fit_lbfgs
from symref.train.loss import LossPrefactors
from symref.train.optim import ExpDecayLR
from symref.train.report import errors_table
from symref.train.stats import compute_statistics

WATER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "water"
CFG = {"type_map": ["O", "H"],
       "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                      "neuron": [8, 16], "axis_neuron": 4},
       "fitting_net": {"neuron": [32, 32], "resnet_dt": True}}


def fold_standardisation(model, systems):
    """Tutorial 04's one-time fold (initial weights only): W <- W/σ_D, b <- b - μ_D W/σ_D."""
    from symref.train.fit import standardized_coordinates

    standardized_coordinates(model, systems, fold=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--runs", nargs="+", default=["lbfgs", "adam"],
                    choices=["lbfgs", "lbfgs-plain", "adam"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--maxcor", type=int, default=50, help="L-BFGS memory (curvature pairs)")
    ap.add_argument("--disp-freq", type=int, default=100,
                    help="L-BFGS: errors on the 12 frames and on 8 data_3 frames every this "
                         "many iterations, into lcurve_<run>.out (counted in the budget)")
    args = ap.parse_args()
    if not (WATER / "data_3" / "type.raw").is_file():
        raise SystemExit(f"{WATER} not found: this benchmark needs ../shared/data/water")
    pool = load_systems([WATER / f"data_{k}" for k in range(3)], CFG["type_map"])
    train = [select_frames(s, np.linspace(0, s.nframes - 1, 4).round().astype(int)) for s in pool]
    test = load_systems([WATER / "data_3"], CFG["type_map"])
    print(f"{sum(s.nframes for s in train)} training frames, {test[0].nframes} test frames "
          f"(data_3), budget {args.seconds:.0f} s per optimiser")
    results = {}
    for run in args.runs:
        model = symref.build_model(CFG, seed=args.seed)
        compute_statistics(model, train)
        t0 = time.perf_counter()
        if run.startswith("lbfgs"):
            std = run == "lbfgs"
            if not std:
                fold_standardisation(model, train)
            model, res = fit_lbfgs(model, train, LossPrefactors(1.0, 1.0, 0.0), maxiter=10**6,
                                   time_limit=args.seconds, standardize=std, progress=None,
                                   maxcor=args.maxcor, valid=test, valid_frames=8,
                                   disp_freq=args.disp_freq, lcurve=f"lcurve_{run}.out")
            steps = res.nit
        else:
            probe = symref.build_model(CFG, seed=args.seed)
            compute_statistics(probe, train)
            kw = dict(pref_start=LossPrefactors(0.02, 1000, 0), pref_limit=LossPrefactors(1, 1, 0),
                      batch_size=1, seed=args.seed, disp_freq=0, progress=None)
            lr = ExpDecayLR(start_lr=1e-3, num_steps=50, stop_lr=5e-8)
            fit_adam(probe, train, numb_steps=5, lr=lr, **kw)  # warm-up (compilation, caches)
            tp = time.perf_counter()
            fit_adam(probe, train, numb_steps=50, lr=lr, **kw)
            per_step = (time.perf_counter() - tp) / 50
            steps = max(10, int(args.seconds / per_step))
            t0 = time.perf_counter()
            lr = ExpDecayLR(start_lr=1e-3, num_steps=steps, stop_lr=5e-8)
            model = fit_adam(model, train, numb_steps=steps, lr=lr,
                             pref_start=LossPrefactors(0.02, 1000, 0),
                             pref_limit=LossPrefactors(1, 1, 0), batch_size=1, seed=args.seed,
                             disp_freq=0, progress=None, time_limit=args.seconds)
        wall = time.perf_counter() - t0
        t = errors_table(model, test)
        results[run] = (steps, wall, t["force"][1], 1000 * t["energy/atom"][1])
        print(f"{run:12s} {steps:7d} steps/iterations  {wall:7.1f} s   data_3 force RMSE "
              f"{t['force'][1]:.4f} eV/Å   energy RMSE {1000 * t['energy/atom'][1]:.2f} meV/atom",
              flush=True)


if __name__ == "__main__":
    main()
