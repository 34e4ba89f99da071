#!/usr/bin/env python
r"""The symref ASE calculator: overhead over a bare ``model.evaluate``, ASE's numerical
forces and stress against the analytic ones, and BFGS geometry optimisation of the
molecules in ``../shared/data/molecules``.

Run from the repository root::

    python benchmarks/bench_calculator.py --model /path/to/water.dp
    python benchmarks/bench_calculator.py --parts overhead fd          # no training
    python benchmarks/bench_calculator.py --parts bfgs --molecule-model mol.yaml

Parts (``--parts``, default all three):

* ``overhead``: on the 192-atom water frame 0 of ``../shared/data/water/data_0``
  (or the built-in box of 64 random water molecules), numba backend: ``--repeats``
  (20) pairs of (a) ``model.evaluate(coord, atype, box)`` and (b) the
  calculator's ``atoms.get_forces()`` + ``get_potential_energy()`` +
  ``get_stress()`` after the positions changed (so it really evaluates), run
  alternately (ABAB...) so that a load change on the machine hits both.  Reports
  both medians and the ratio b/a, plus the median of the paired ratios.  As
  these are noisy on a shared machine, the calculator's own work is also timed
  alone (the same calls with ``evaluate`` answered from a cache, 10 x
  ``--repeats`` calls) and given as a fraction of the bare evaluate.
* ``fd``: ASE's ``calculate_numerical_forces`` (atoms ``--fd-atoms``) and
  ``calculate_numerical_stress`` against ``get_forces``/``get_stress`` on the
  same frame, for central-difference steps 1e-3, 1e-4 and 1e-5 (Å, strain):
  relative error = max |numerical − analytic| / max |analytic|.
* ``bfgs``: ASE's BFGS (``--fmax`` 1e-3 eV/Å) from frame 0 of each molecule
  with a C/H/O model: ``--molecule-model`` or, without it, one trained here for
  ``--train-steps`` Adam steps (the model and schedule of
  ``train_molecules.py``; ``--save-molecule-model`` keeps it).  Reports steps,
  final fmax, energy change and the shortest interatomic distance before/after.

Model for the first two parts: ``--model`` or the built-in smooth random model
of deepmd-kit's water-example size (``symref.synthetic.EXAMPLE_CONFIG``).
Threads: ``--threads`` sets ``NUMBA_NUM_THREADS`` (default: all cores).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def log(msg: str) -> None:
    print(f"[calc {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def overhead(model, atoms, repeats: int) -> dict:
    import numpy as np

    from symref.ase import SymrefCalculator

    atype = SymrefCalculator(model).atom_types(atoms)
    coord, box = atoms.positions[None].copy(), np.array(atoms.cell)[None]
    calc = SymrefCalculator(model)
    atoms = atoms.copy()
    atoms.calc = calc
    x0 = atoms.positions.copy()
    model.evaluate(coord, atype, box)  # warm-up (compiles or loads the kernels)
    atoms.get_forces()
    bare, wrapped = [], []
    for k in range(repeats):
        t = time.perf_counter()
        model.evaluate(coord, atype, box)
        bare.append(time.perf_counter() - t)
        atoms.positions = x0 + (1e-6 if k % 2 == 0 else 0.0)  # a change: the calculator evaluates
        t = time.perf_counter()
        atoms.get_forces()
        atoms.get_potential_energy()
        atoms.get_stress()
        wrapped.append(time.perf_counter() - t)
    assert calc.ncalls == repeats + 1, calc.ncalls
    bare, wrapped = np.array(bare), np.array(wrapped)
    res = {"bare_ms": 1000 * float(np.median(bare)), "calc_ms": 1000 * float(np.median(wrapped)),
           "paired_ratio_median": float(np.median(wrapped / bare)), "repeats": repeats,
           "bare_all_ms": (1000 * bare).round(2).tolist(),
           "calc_all_ms": (1000 * wrapped).round(2).tolist()}
    res["ratio_of_medians"] = res["calc_ms"] / res["bare_ms"]
    # the calculator's own work alone: the same calls with evaluate() answered from a cache
    cached = model.evaluate(coord, atype, box)
    stub = copy.copy(model)
    stub.evaluate = lambda *a, **k: cached
    calc = SymrefCalculator(stub)
    atoms.calc = calc
    own = []
    for k in range(10 * repeats):
        atoms.positions = x0 + (1e-6 if k % 2 == 0 else 0.0)
        t = time.perf_counter()
        atoms.get_forces()
        atoms.get_potential_energy()
        atoms.get_stress()
        own.append(time.perf_counter() - t)
    res["own_ms"] = 1000 * float(np.median(own))
    res["own_over_bare"] = res["own_ms"] / res["bare_ms"]
    return res


def finite_differences(model, atoms, natoms_fd: int) -> list[dict]:
    import numpy as np
    from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

    from symref.ase import SymrefCalculator

    atoms = atoms.copy()
    atoms.calc = SymrefCalculator(model)
    f, s = atoms.get_forces(), atoms.get_stress()
    idx = np.linspace(0, len(atoms) - 1, natoms_fd).round().astype(int)
    rows = []
    for eps in (1e-3, 1e-4, 1e-5):
        t = time.perf_counter()
        fn = calculate_numerical_forces(atoms, eps=eps, iatoms=idx)
        sn = calculate_numerical_stress(atoms, eps=eps)
        rows.append({"eps": eps,
                     "forces_rel": float(np.abs(fn - f[idx]).max() / np.abs(f[idx]).max()),
                     "stress_rel": float(np.abs(sn - s).max() / np.abs(s).max()),
                     "max_abs_force": float(np.abs(f[idx]).max()),
                     "max_abs_stress": float(np.abs(s).max()), "seconds": time.perf_counter() - t})
        log(f"fd eps {eps:g}: forces rel {rows[-1]['forces_rel']:.2e}, "
            f"stress rel {rows[-1]['stress_rel']:.2e}")
    return rows


def train_molecule_model(paths, steps: int):
    """The model and schedule of benchmarks/train_molecules.py, trained in-process."""
    from symref.io.data import load_systems
    from symref.train.loss import LossPrefactors
    from symref.model.build import build_model
    from symref.train.optim import ExpDecayLR
    from symref.train.stats import compute_statistics, stat_frames
    from symref.train.fit import fit_adam

    cfg = {"type_map": ["C", "H", "O"],
           "descriptor": {"type": "se_e2_a", "sel": [8, 8, 8], "rcut_smth": 0.5, "rcut": 6.0,
                          "neuron": [16, 32, 64], "resnet_dt": False, "axis_neuron": 8,
                          "type_one_side": True},
           "fitting_net": {"neuron": [120, 120, 120], "resnet_dt": True}}
    model = build_model(cfg, seed=1)
    systems = load_systems(paths, cfg["type_map"])
    compute_statistics(model, stat_frames(systems))
    lr = ExpDecayLR(start_lr=1e-3, num_steps=steps, stop_lr=1e-5, decay_steps=max(1, steps // 100))
    return fit_adam(model, systems, numb_steps=steps, lr=lr,
                    pref_start=LossPrefactors(0.02, 1000, 0), pref_limit=LossPrefactors(1, 1, 0),
                    batch_size=5, seed=1, disp_freq=max(1, steps // 10),
                    progress=lambda line: log(f"train: {line}"))


def bfgs(model, mol_dirs, fmax: float) -> list[dict]:
    import numpy as np
    from ase import Atoms
    from ase.optimize import BFGS

    from symref.ase import SymrefCalculator
    from symref.io.data import load_system

    rows = []
    for d in mol_dirs:
        s = load_system(d)
        atoms = Atoms([s.type_map[t] for t in s.atype], positions=s.coord[0])
        atoms.calc = SymrefCalculator(model)
        e0, f0 = atoms.get_potential_energy(), np.linalg.norm(atoms.get_forces(), axis=1).max()
        dmin0 = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)].min()
        opt = BFGS(atoms, logfile=None)
        t = time.perf_counter()
        ok = opt.run(fmax=fmax, steps=2000)
        f1 = np.linalg.norm(atoms.get_forces(), axis=1).max()
        dist = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        rows.append({"molecule": Path(d).name, "natoms": len(atoms), "converged": bool(ok),
                     "steps": opt.nsteps, "fmax_start": float(f0), "fmax_end": float(f1),
                     "energy_change": float(atoms.get_potential_energy() - e0),
                     "dmin_start": float(dmin0), "dmin_end": float(dist.min()),
                     "seconds": time.perf_counter() - t})
        log(f"BFGS {rows[-1]['molecule']}: converged {ok} in {opt.nsteps} steps, fmax "
            f"{f0:.3g} -> {f1:.2e} eV/Å, dE {rows[-1]['energy_change']:.3f} eV, shortest "
            f"distance {dmin0:.3f} -> {dist.min():.3f} Å")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="water model file (default: built-in random)")
    ap.add_argument("--parts", nargs="+", default=["overhead", "fd", "bfgs"],
                    choices=["overhead", "fd", "bfgs"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--fd-atoms", type=int, default=8)
    ap.add_argument("--molecule-model", default=None)
    ap.add_argument("--save-molecule-model", default=None)
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--fmax", type=float, default=1e-3)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    from symref.io.model_file import load_model, save_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from symref.synthetic import EXAMPLE_CONFIG
    from md_water import initial_atoms

    if args.model:
        model, label = load_model(args.model), f"model {Path(args.model).name}"
    else:
        from symref.model.build import demo_model

        model, label = demo_model(EXAMPLE_CONFIG, seed=1), "built-in smooth random model (seed 1)"
    data = Path(args.data)
    atoms, desc = initial_atoms(data / "water")
    print(f"{label}; system: {desc}; NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'all')}")
    if "overhead" in args.parts:
        r = overhead(model, atoms, args.repeats)
        print(f"\noverhead ({r['repeats']} alternating pairs, numba backend): bare evaluate median "
              f"{r['bare_ms']:.2f} ms, calculator (forces+energy+stress) median {r['calc_ms']:.2f} ms,"
              f" ratio of medians {r['ratio_of_medians']:.3f}, median of paired ratios "
              f"{r['paired_ratio_median']:.3f}")
        print(f"   bare ms: {r['bare_all_ms']}\n   calc ms: {r['calc_all_ms']}")
        print(f"   the calculator's own work (evaluate answered from a cache, median of "
              f"{10 * r['repeats']}): {r['own_ms']:.3f} ms = {100 * r['own_over_bare']:.2f}% "
              f"of the bare evaluate median")
    if "fd" in args.parts:
        print(f"\nASE finite differences vs analytic ({args.fd_atoms} atoms' forces, full stress):")
        print(f"   {'eps':>8s} {'forces rel':>12s} {'stress rel':>12s}")
        for r in finite_differences(model, atoms, args.fd_atoms):
            print(f"   {r['eps']:8.0e} {r['forces_rel']:12.2e} {r['stress_rel']:12.2e}   "
                  f"(max |F| {r['max_abs_force']:.3g} eV/Å, max |σ| {r['max_abs_stress']:.3g} eV/Å³)")
    if "bfgs" in args.parts:
        mols = sorted(p for p in (data / "molecules").glob("*") if (p / "type.raw").is_file())
        if not mols:
            print(f"\nbfgs: skipped, no molecules under {data / 'molecules'}")
            return 0
        if args.molecule_model:
            mm, mlabel = load_model(args.molecule_model), Path(args.molecule_model).name
        else:
            t = time.perf_counter()
            mm = train_molecule_model([str(p) for p in mols], args.train_steps)
            mlabel = (f"trained here: {args.train_steps} Adam steps on all frames of "
                      f"{', '.join(p.name for p in mols)} ({time.perf_counter() - t:.0f} s)")
            if args.save_molecule_model:
                save_model(mm, args.save_molecule_model)
        print(f"\nBFGS (fmax {args.fmax} eV/Å, from frame 0), molecule model: {mlabel}")
        for r in bfgs(mm, mols, args.fmax):
            print(f"   {r['molecule']:8s} {r['natoms']:2d} atoms: converged {r['converged']} in "
                  f"{r['steps']} steps, fmax {r['fmax_start']:.3g} -> {r['fmax_end']:.2e} eV/Å, "
                  f"ΔE {r['energy_change']:+.3f} eV, shortest distance {r['dmin_start']:.3f} -> "
                  f"{r['dmin_end']:.3f} Å ({r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
