#!/usr/bin/env python
r"""Energy conservation of NVE in LAMMPS driven by symref (1 and 2 MPI ranks) against ASE.

Run from the repository root::

    python benchmarks/md_lammps.py                        # 2 ps, smooth random model
    python benchmarks/md_lammps.py --model water.dp --ps 10

One starting state (frame 0 of ``../shared/data/water/data_0``, 192 atoms, or
the built-in 64-molecule box without ``../shared``; Maxwell-Boltzmann
velocities at 300 K, zero total momentum) is integrated with velocity Verlet,
``--dt-fs`` 0.5 fs, for ``--ps`` picoseconds three times:

* ASE's ``VelocityVerlet`` with :class:`symref.ase.SymrefCalculator`
  (``benchmarks/md_water.py``'s run, checked every step);
* LAMMPS ``fix nve`` with the symref fix on 1 rank (``mode auto`` = periodic);
* the same under ``mpiexec -n 2`` (ghost mode: first-shell recomputation and
  folding, the multi-rank code path).

LAMMPS runs through ``tests/lammps_worker.py`` (total energy every 10 steps).
Reported for each: drift (slope of a least-squares line, meV/atom/ps) and
fluctuation (meV/atom) of the total energy (:func:`symref.md.energy_drift`)
from ``--skip-ps`` on (the random model's start is far from equilibrium and its
first few hundred steps have the largest integration errors) and over the whole run,
and the largest difference of the LAMMPS total energies from ASE's and between
1 and 2 ranks over the run (meV/atom; after removing the constant offset of
the kinetic-energy unit constants, ~1e-7 relative).  Trajectories of a
chaotic system separate in time, so late differences measure chaos as well as
the code.  The model is ``--model`` or, by default, tutorial 05's small water
model trained here (``--train-steps`` Adam steps on ``water/data_0..2``, about
1.5 minutes); a random model's NVE runs heat up to thousands of kelvin within
a picosecond, which says nothing about the integrators.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
MASSES = {"O": 15.9994, "H": 1.00794}


def log(msg: str) -> None:
    print(f"[md_lammps {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mpiexec() -> str:
    from symref.train.parallel import mpiexec_path

    exe = mpiexec_path()
    if exe is None:
        raise SystemExit("mpiexec not found (pip install mpich)")
    return exe


def lammps_nve(model_path, frame_npz, out, nsteps, dt_fs, nprocs, threads) -> dict:
    cmd = [sys.executable, str(ROOT / "tests" / "lammps_worker.py"), "--model", str(model_path),
           "--frame", str(frame_npz), "--out", str(out), "--steps", str(nsteps), "--dt-fs",
           str(dt_fs), "--velocities", "--thermo-every", "10"]
    if nprocs > 1:
        cmd = [mpiexec(), "-n", str(nprocs)] + cmd
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    if res.returncode:
        raise SystemExit(f"LAMMPS run on {nprocs} rank(s) failed ({res.returncode})")
    with np.load(out) as z:
        r = {k: z[k] for k in z.files}
    r["wall_s"] = time.perf_counter() - t0
    return r


SMALL = {"type_map": ["O", "H"],
         "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [64, 128],
                        "neuron": [8, 16], "axis_neuron": 4},
         "fitting_net": {"neuron": [32, 32], "resnet_dt": True}}


def train_small_model(path: Path, steps: int) -> str:
    """Tutorial 05's model: the small se_e2_a above, ``steps`` Adam steps on water data_0..2
    (deepmd-kit's schedules in miniature, seeded); written to ``path``.  Without
    ``../shared`` the smooth random model of ``bench_evaluate.py`` (its dynamics heat
    up: a warning says so).  Returns a label."""
    import symref
    from symref.io.data import load_systems
    from symref.train.loss import LossPrefactors
    from symref.train.optim import ExpDecayLR
    from symref.train.stats import compute_statistics
    from symref.train.fit import fit_adam

    water = ROOT.parent / "shared" / "data" / "water"
    if not all((water / f"data_{k}" / "type.raw").is_file() for k in range(3)):
        from symref.synthetic import EXAMPLE_CONFIG, EXAMPLE_SEED

        from symref.model.build import demo_model

        log(f"WARNING: {water} not found: a random model, whose NVE runs can heat up")
        symref.save_model(demo_model(EXAMPLE_CONFIG, seed=EXAMPLE_SEED), str(path))
        return "smooth random model (symref.synthetic.EXAMPLE_CONFIG, seed 1)"
    train = load_systems([water / f"data_{k}" for k in range(3)], SMALL["type_map"])
    model = symref.build_model(SMALL, seed=1)
    compute_statistics(model, train)
    t0 = time.perf_counter()
    log(f"training the small water model: {steps} Adam steps")
    model = fit_adam(model, train, numb_steps=steps,
                     lr=ExpDecayLR(start_lr=1e-2, num_steps=steps, stop_lr=1e-4),
                     pref_start=LossPrefactors(pref_e=0.02, pref_f=1000.0),
                     pref_limit=LossPrefactors(pref_e=1.0, pref_f=1.0), seed=0,
                     disp_freq=max(1, steps // 4), progress=lambda line: log(line[:90]))
    symref.save_model(model, str(path))
    return f"small DP (tutorial 05), {steps} Adam steps on DFT water, {time.perf_counter() - t0:.0f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model file (default: smooth random water-size model)")
    p.add_argument("--ps", type=float, default=2.0)
    p.add_argument("--train-steps", type=int, default=2000,
                   help="Adam steps of the built-in small model (when no --model)")
    p.add_argument("--dt-fs", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--skip-ps", type=float, default=0.25,
                   help="drift and fluctuation from this time on (equilibration before; the "
                        "whole run is reported too)")
    p.add_argument("--threads", type=int, default=2, help="numba threads of 1-rank runs")
    p.add_argument("--json", help="write the summary here")
    a = p.parse_args(argv)

    from ase.md import velocitydistribution as vd
    from md_water import initial_atoms, nve

    from symref.ase import SymrefCalculator
    from symref.md import energy_drift

    tmp = Path(tempfile.mkdtemp(prefix="symref_md_lammps_"))
    if a.model:
        model_path, label = Path(a.model), a.model
    else:
        model_path = tmp / "model.yaml"
        label = train_small_model(model_path, a.train_steps)
    atoms, desc = initial_atoms(ROOT.parent / "shared" / "data" / "water")
    atoms.set_masses([MASSES[s] for s in atoms.get_chemical_symbols()])
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=a.temperature, rng=np.random.default_rng(0))
    vd.Stationary(atoms)
    from ase import units

    vel = atoms.get_velocities() * units.fs * 1000.0  # Å/ps
    from symref.io.model_file import load_model

    model = load_model(model_path)
    frame = tmp / "frame.npz"
    np.savez(frame, coord=atoms.positions, atype=np.array(
        [model.type_map.index(s) for s in atoms.get_chemical_symbols()]),
        cell=np.array(atoms.cell), vel=vel,
        masses=[MASSES[t] for t in model.type_map])
    nsteps = int(round(a.ps * 1000 / a.dt_fs))
    n = len(atoms)
    log(f"{desc}; {label}; {nsteps} steps of {a.dt_fs} fs")

    ase_res = nve(atoms, SymrefCalculator(str(model_path)), a.dt_fs, a.ps, "ASE")
    runs = {}
    for nprocs, threads in ((1, a.threads), (2, 1)):
        log(f"LAMMPS, {nprocs} rank(s) x {threads} thread(s) ...")
        runs[nprocs] = lammps_nve(model_path, frame, tmp / f"lmp{nprocs}.npz", nsteps, a.dt_fs,
                                  nprocs, threads)
    t_ase, e_ase = ase_res["t_ps"], ase_res["etot"]

    def drifts(t, e):
        late = t >= a.skip_ps
        whole = energy_drift(t, e, n)
        return {**energy_drift(t[late], e[late], n), "drift_whole": whole["drift"],
                "fluct_whole": whole["fluct"]}
    series = {"ase": {"t_ps": t_ase, "etot": e_ase}}
    rows = [{"run": "ASE VelocityVerlet", "ms_per_step": ase_res["ms_per_step"],
             **drifts(t_ase, e_ase)}]
    for nprocs, r in runs.items():
        t = r["step"] * a.dt_fs / 1000
        e = r["etotal"]
        on_ase = np.interp(t, t_ase, e_ase)  # same steps (every 10th) in both records
        d = (e - e[0]) - (on_ase - on_ase[0])
        rows.append({"run": f"LAMMPS {nprocs} rank{'s' if nprocs > 1 else ''}",
                     "ms_per_step": 1000 * r["wall_s"] / nsteps,
                     "max_diff_from_ase": float(np.abs(d).max() / n * 1000),
                     **drifts(t, e)})
        series[f"lammps{nprocs}"] = {"t_ps": t, "etot": e}
    e1, e2 = runs[1]["etotal"], runs[2]["etotal"]
    rank_diff = float(np.abs(e1 - e2).max() / n * 1000)
    print(f"\nNVE, {n} atoms, {nsteps} steps of {a.dt_fs} fs ({a.ps} ps); {label}")
    print(f"drift and fluctuation from t = {a.skip_ps} ps on (whole run in brackets); "
          "meV/atom(/ps)")
    print(f"{'run':<20} {'drift':>22} {'fluct':>20} {'max |ΔE| vs ASE':>16} {'ms/step':>8}")
    for r in rows:
        diff = f"{r['max_diff_from_ase']:.2e}" if "max_diff_from_ase" in r else ""
        print(f"{r['run']:<20} {r['drift']:+10.2e} ({r['drift_whole']:+9.2e}) "
              f"{r['fluct']:9.2e} ({r['fluct_whole']:8.2e}) {diff:>16} "
              f"{r['ms_per_step']:8.1f}")
    print(f"max |E(1 rank) - E(2 ranks)|: {rank_diff:.2e} meV/atom")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "rank_diff_mev_atom": rank_diff,
                                            "natoms": n, "nsteps": nsteps, "model": label,
                                            "skip_ps": a.skip_ps,
                                            "series": {k: {q: v.tolist() for q, v in d.items()}
                                                       for k, d in series.items()}},
                                           indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
