#!/usr/bin/env python
r"""Molecular dynamics of liquid water with the symref ASE calculator: energy
conservation (NVE, float64 and float32), zero net force, Langevin NVT stability
and the O-O radial distribution function against the DFT frames.

Run from the repository root::

    python benchmarks/md_water.py --model /path/to/water.dp          # the measured run
    python benchmarks/md_water.py                                    # built-in smooth random model
    python benchmarks/md_water.py --nve-ps 1 --nvt-ps 1 --f32-ps 0.2  # a quick look

Without ``--model`` the model is a *smooth random* se_e2_a model of deepmd-kit's
water-example size (``symref.model.build.demo_model``, the configuration of
``bench_evaluate.py``, seed 1): its dynamics are not water's, but energy
conservation, zero net force and numerical stability are measured just the
same.  The start is frame 0 of ``../shared/data/water/data_0`` (192 atoms) with
Maxwell-Boltzmann velocities at ``--temperature`` (zero total momentum); without
``../shared`` a built-in box of 64 randomly placed water molecules.

Runs (ASE's integrators, ``--dt-fs`` 0.5 fs):

1. NVE, velocity Verlet, float64, numba backend, ``--nve-ps`` (10 ps);
2. NVE from the same state in float32 (``precision="float32"``, numba backend:
   float32 kernels, energies/forces/virials summed in float64), ``--f32-ps`` (2 ps);
3. Langevin NVT at ``--temperature`` (300 K, friction ``--friction`` 0.01/fs),
   float64, ``--nvt-ps`` (10 ps); O positions every 20 steps after the first ps
   give g_OO(r), plotted next to the g_OO(r) of every frame of
   ``../shared/data/water/data_*``.

Reported: drift of the total energy (slope of a least-squares line, meV/atom/ps)
and its fluctuation (standard deviation about the line, meV/atom)
(:func:`symref.md.energy_drift`), the float64 drift over the float32 run's
window too, the largest |sum_i F_i| component over all steps (and relative to
the largest force), for NVT the mean/std temperature of the second half and
the potential energy range.  Ctrl-C (SIGINT) ends the current run early: it is reported
over the steps done and the next run starts.  A run whose temperature passes
``--max-temperature`` (default 3 x ``--temperature``), or whose atoms come closer than
the model's neighbour limit allows (``sel`` overflows), has left the region the model
was trained on: it stops there, says when, and is reported over the steps done and
over its *physical window*, which ends :data:`PHYSICAL_MARGIN_PS` before the stop (an
O-O pair collapsing into an unlearned distance heats the system within ~0.1 ps).
Progress lines go to stderr; the summary and the time series (every 10th step) to
``--json``; figures to ``--figures``.  ``--plot-from A.json B.json ...`` redraws the NVE
figure from runs made in separate processes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "water"


#: the physical window of a run stopped for leaving the trained region ends this long before
#: the stop (ps)
PHYSICAL_MARGIN_PS = 0.5


class LeftTrainedRegion(RuntimeError):
    """A run's temperature passed ``--max-temperature``."""


def log(msg: str) -> None:
    print(f"[md {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def initial_atoms(data_dir: Path):
    """(ase.Atoms, description): frame 0 of data_0, or the built-in water box."""
    import numpy as np
    from ase import Atoms

    sysdir = data_dir / "data_0"
    if (sysdir / "type.raw").is_file():
        from symref.io.data import load_system

        s = load_system(sysdir)
        symbols = [s.type_map[t] for t in s.atype]
        return (Atoms(symbols, positions=s.coord[0], cell=s.box[0], pbc=True),
                f"{sysdir} frame 0 ({s.natoms} atoms)")
    from symref.synthetic import water_box

    c, atype, b = water_box(1, seed=0)
    coord, box = c[0], b[0]
    symbols = np.array(["O", "H"])[atype]
    return (Atoms(list(symbols), positions=coord, cell=box, pbc=True),
            f"FALLBACK ({sysdir} not found): 64 random water molecules")


def run(atoms, dyn, nsteps: int, label: str, rdf_from: int | None = None,
        rdf_every: int = 20, o_index=None, max_T: float | None = None) -> dict:
    """Run ``dyn`` for ``nsteps`` steps, checking every step: net force, largest force,
    finite energies, and the temperature against ``max_T`` (K; None: no limit).
    Energies are recorded every 10th step (every step of short runs).
    Returns the recorded series and checks; ``stopped`` says why a run ended early
    (None: it did not), ``left_region`` whether that was leaving the trained region."""
    import numpy as np

    record_every = max(1, min(10, nsteps // 20))
    n = len(atoms)
    rec = {"step": [], "epot": [], "ekin": []}
    state = {"fsum": 0.0, "fmax": 0.0, "t0": time.perf_counter(), "o_pos": [],
             "cells": []}
    every = max(1, nsteps // 20)

    def observe():
        k = dyn.nsteps  # ASE calls observers at step 0 and after every step
        f = atoms.get_forces()
        state["fsum"] = max(state["fsum"], float(np.abs(f.sum(axis=0)).max()))
        state["fmax"] = max(state["fmax"], float(np.abs(f).max()))
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        if not (np.isfinite(epot) and np.isfinite(f).all()):
            raise RuntimeError(f"{label}: non-finite energy or forces at step {k}")
        T = 2 * ekin / (3 * n * 8.617333262e-5)
        if max_T is not None and T > max_T:
            raise LeftTrainedRegion(f"T {T:.0f} K > {max_T:.0f} K at step {k}")
        if k % record_every == 0 or k == nsteps:
            rec["step"].append(k)
            rec["epot"].append(float(epot))
            rec["ekin"].append(float(ekin))
        if rdf_from is not None and k >= rdf_from and k % rdf_every == 0:
            state["o_pos"].append(atoms.positions[o_index].copy())
            state["cells"].append(np.array(atoms.cell))
        if k and k % every == 0:
            el = time.perf_counter() - state["t0"]
            log(f"{label}: step {k}/{nsteps}  Epot {epot:.4f} eV  Etot {epot + ekin:.5f} eV  "
                f"T {T:.1f} K  |sum F| {state['fsum']:.2e}  {el:.0f} s, "
                f"ETA {el / k * (nsteps - k):.0f} s")

    dyn.attach(observe, interval=1)
    interrupted, left_region, stopped = False, False, None
    try:
        dyn.run(nsteps)
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: keep the steps done (the last record's)
        interrupted, stopped = True, "interrupted (SIGINT)"
    except (LeftTrainedRegion, ValueError) as e:  # ValueError: sel overflow (atoms too close)
        left_region, stopped = True, f"left the trained region: {e}"
    if stopped:
        nsteps = rec["step"][-1] if rec["step"] else 0
        log(f"{label}: {stopped}; reporting the first {nsteps} steps")
    wall = time.perf_counter() - state["t0"]
    out = {k: np.asarray(v) for k, v in rec.items()}
    out.update(fsum_max=state["fsum"], fmax=state["fmax"], wall_s=wall,
               nsteps=max(nsteps, 1), interrupted=interrupted, stopped=stopped,
               left_region=left_region, o_pos=state["o_pos"],
               cells=state["cells"])
    return out


def nve(atoms0, calc, dt_fs: float, ps: float, label: str, dtmd=None,
        max_T: float | None = None) -> dict:
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from symref.md import energy_drift

    atoms = atoms0.copy()
    atoms.calc = calc
    nsteps = int(round(ps * 1000 / dt_fs))
    log(f"{label}: NVE, {nsteps} steps of {dt_fs} fs ({ps} ps), {len(atoms)} atoms")
    res = run(atoms, VelocityVerlet(atoms, timestep=dt_fs * units.fs), nsteps, label,
              max_T=max_T)
    t_ps = res["step"] * dt_fs / 1000
    etot = res["epot"] + res["ekin"]
    res["t_ps"], res["etot"] = t_ps, etot
    res["stats"] = energy_drift(t_ps, etot, len(atoms))
    if res["left_region"] and len(t_ps):
        w = t_ps <= t_ps[-1] - PHYSICAL_MARGIN_PS  # the physical window
        if w.sum() >= 3:
            res["stats_physical"] = energy_drift(t_ps[w], etot[w], len(atoms))
            sp = res["stats_physical"]
            log(f"{label}: physical window 0-{t_ps[w][-1]:.2f} ps: drift "
                f"{sp['drift']:+.3e} meV/atom/ps, fluctuation {sp['fluct']:.3e} meV/atom")
    res["ms_per_step"] = 1000 * res["wall_s"] / res["nsteps"]  # steps done
    s = res["stats"]
    log(f"{label}: drift {s['drift']:+.3e} meV/atom/ps, fluctuation {s['fluct']:.3e} meV/atom, "
        f"max |sum F| {res['fsum_max']:.2e} eV/Å, {res['ms_per_step']:.1f} ms/step")
    return res


def nvt(atoms0, calc, dt_fs, ps, temperature, friction_fs, seed, o_index) -> dict:
    import numpy as np
    from ase import units
    from ase.md.langevin import Langevin

    atoms = atoms0.copy()
    atoms.calc = calc
    nsteps = int(round(ps * 1000 / dt_fs))
    log(f"NVT: Langevin {temperature} K, friction {friction_fs}/fs, {nsteps} steps ({ps} ps)")
    dyn = Langevin(atoms, timestep=dt_fs * units.fs, temperature_K=temperature,
                   friction=friction_fs / units.fs, rng=np.random.default_rng(seed))
    res = run(atoms, dyn, nsteps, "NVT", rdf_from=min(nsteps, int(round(1000 / dt_fs))),
              o_index=o_index)
    kB = units.kB
    T = 2 * res["ekin"] / (3 * len(atoms) * kB)
    half = T[len(T) // 2:]
    res["T"] = T
    res["stats"] = {"T_mean_2nd_half": float(half.mean()), "T_std_2nd_half": float(half.std()),
                    "epot_min": float(res["epot"].min()), "epot_max": float(res["epot"].max()),
                    "rdf_frames": len(res["o_pos"])}
    log(f"NVT: T (2nd half) {half.mean():.1f} ± {half.std():.1f} K, Epot range "
        f"{res['epot'].min():.3f} .. {res['epot'].max():.3f} eV, {len(res['o_pos'])} RDF frames")
    return res


def plots(results, rdf_md, rdf_dft, figdir: Path, model_label: str) -> list[str]:
    """The NVE energy traces and the g_OO(r) comparison as PNGs (written atomically)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symref.io.model_file import atomic_write

    written = []
    figdir.mkdir(parents=True, exist_ok=True)

    def finish(fig, ax, xlabel, ylabel, title, name):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = figdir / name
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        written.append(str(path))

    nves = [(k, r) for k, r in results.items() if k.startswith("NVE")]
    if nves:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for k, r in nves:
            st = r.get("stats_physical") or r["stats"]
            note = f", left the trained region at {r['t_ps'][-1]:.1f} ps" \
                if r.get("left_region") else ""
            ax.plot(np.asarray(r["t_ps"]),
                    (np.asarray(r["etot"]) - r["etot"][0]) * 1000 / r["natoms"], lw=0.8,
                    label=f"{k}: drift {st['drift']:+.2e} meV/atom/ps{note}")
        finish(fig, ax, "t (ps)", "E_tot − E_tot(0) (meV/atom)",
               f"NVE, dt 0.5 fs, {model_label}", "water_nve_energy.png")
    if rdf_md is not None:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        if rdf_dft is not None:
            ax.plot(*rdf_dft[:2], "k-", lw=1.2, label=f"DFT frames ({rdf_dft[2]})")
        ax.plot(*rdf_md[:2], "C1--", lw=1.2, label=f"symref NVT 300 K ({rdf_md[2]})")
        finish(fig, ax, "r (Å)", "g_OO(r)", model_label, "water_rdf_oo.png")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model file (.dp/.yaml); default: built-in "
                                                  "smooth random model")
    ap.add_argument("--data", default=str(DATA), help="folder with data_0.. (default ../shared/data/water)")
    ap.add_argument("--dt-fs", type=float, default=0.5)
    ap.add_argument("--nve-ps", type=float, default=10.0)
    ap.add_argument("--f32-ps", type=float, default=2.0, help="float32 NVE length (0: skip)")
    ap.add_argument("--nvt-ps", type=float, default=10.0, help="Langevin length (0: skip)")
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    ap.add_argument("--max-temperature", type=float, default=None,
                    help="an NVE run hotter than this (K) has left the trained region and "
                         "stops (default 3 x --temperature; 0: no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS (default: all)")
    ap.add_argument("--json", default="md_water.json", help="results file ('' for none)")
    ap.add_argument("--figures", default=str(ROOT / "benchmarks" / "figures"))
    ap.add_argument("--plot-from", nargs="+", metavar="JSON",
                    help="only redraw the NVE figure from earlier runs' --json files (runs "
                         "made in separate processes, e.g. float64 and float32 side by side)")
    args = ap.parse_args(argv)
    if args.plot_from:
        results, label = {}, None
        for f in args.plot_from:
            d = json.loads(Path(f).read_text())
            label = label or d["model"]
            seed = d["args"].get("seed", 0)
            for k, r in d["results"].items():
                if k.startswith("NVE"):
                    results[f"{k}, seed {seed}"] = r
        print("figures: " + ", ".join(plots(results, None, None, Path(args.figures), label)))
        return 0
    if args.threads:
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from ase.md import velocitydistribution as vd

    from symref.ase import SymrefCalculator
    from symref.io.model_file import atomic_write, load_model
    from symref.md import frames_rdf, rdf

    if args.model:
        model = load_model(args.model)
        model_label = f"model {Path(args.model).name}"
    else:
        from symref.model.build import demo_model

        from symref.synthetic import EXAMPLE_CONFIG

        model = demo_model(EXAMPLE_CONFIG, seed=1)
        model_label = "built-in smooth random model (demo_model, seed 1)"
    data = Path(args.data)
    atoms0, desc = initial_atoms(data)
    log(f"{model_label}; start: {desc}")
    # ASE >= 3.29 names it thermalize_momenta (MaxwellBoltzmannDistribution is deprecated)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms0, temperature_K=args.temperature, rng=np.random.default_rng(args.seed))
    vd.Stationary(atoms0)
    natoms = len(atoms0)
    results = {}
    max_T = (3 * args.temperature if args.max_temperature is None else args.max_temperature) \
        or None
    if args.nve_ps > 0:
        calc = SymrefCalculator(model)
        results["NVE float64"] = nve(atoms0, calc, args.dt_fs, args.nve_ps, "NVE float64",
                                     max_T=max_T)
    if args.f32_ps > 0:
        calc = SymrefCalculator(model, precision="float32")
        results["NVE float32"] = nve(atoms0, calc, args.dt_fs, args.f32_ps, "NVE float32",
                                     max_T=max_T)
        if "NVE float64" in results:  # float64 over the same window, for comparison
            r = results["NVE float64"]
            w = r["t_ps"] <= args.f32_ps + 1e-9
            from symref.md import energy_drift

            r["stats_f32_window"] = energy_drift(r["t_ps"][w], r["etot"][w], natoms)
    o_index = np.flatnonzero(atoms0.numbers == 8)
    rdf_md = rdf_dft = None
    rmax = min(6.0, 0.5 * float(np.min(np.linalg.norm(np.array(atoms0.cell), axis=1))))
    if args.nvt_ps > 0:
        results["NVT"] = nvt(atoms0, SymrefCalculator(model), args.dt_fs, args.nvt_ps,
                             args.temperature, args.friction, args.seed, o_index)
        pos = results["NVT"].pop("o_pos")
        cells = results["NVT"].pop("cells")
        if pos:
            r, g = rdf(np.asarray(pos), np.asarray(cells), np.arange(len(o_index)),
                       np.arange(len(o_index)), rmax)
            rdf_md = (r, g, f"{len(pos)} frames, last {args.nvt_ps - 1:g} ps")
    dft_dirs = sorted(p for p in data.glob("data_*") if (p / "type.raw").is_file())
    if dft_dirs and rdf_md is not None:
        from symref.io.data import load_system

        systems = [load_system(p) for p in dft_dirs]
        r, g = frames_rdf(systems, "O", "O", rmax)
        rdf_dft = (r, g, f"{sum(s.nframes for s in systems)} frames")
    for r in results.values():
        r["natoms"] = natoms
        r.pop("o_pos", None)
        r.pop("cells", None)
    figs = plots(results, rdf_md, rdf_dft, Path(args.figures), model_label)
    print(f"\nmodel: {model_label}; start: {desc}; dt {args.dt_fs} fs")
    for k, r in results.items():
        print(f"{k}: {r['nsteps']} steps ({r['nsteps'] * args.dt_fs / 1000:g} ps), "
              f"{1000 * r['wall_s'] / r['nsteps']:.1f} ms/step")
        if r.get("stopped"):
            print(f"   stopped early: {r['stopped']}")
        for name, s in (("", r["stats"]), (" (float32 window)", r.get("stats_f32_window")),
                        (f" (physical window, to {PHYSICAL_MARGIN_PS} ps before the stop)",
                         r.get("stats_physical"))):
            if s:
                print(f"   stats{name}: " + ", ".join(f"{a} {b:.4g}" for a, b in s.items()))
        print(f"   max |sum_i F_i| component {r['fsum_max']:.3e} eV/Å "
              f"(largest |F| component {r['fmax']:.3g} eV/Å, ratio {r['fsum_max'] / r['fmax']:.2e})")
    if rdf_md is not None and rdf_dft is not None:
        i_md, i_dft = int(np.argmax(rdf_md[1])), int(np.argmax(rdf_dft[1]))
        diff = float(np.sqrt(np.mean((rdf_md[1] - rdf_dft[1]) ** 2)))
        print(f"g_OO first peak: MD {rdf_md[1][i_md]:.2f} at {rdf_md[0][i_md]:.2f} Å, "
              f"DFT {rdf_dft[1][i_dft]:.2f} at {rdf_dft[0][i_dft]:.2f} Å; RMS difference {diff:.3f}")
    print("figures: " + ", ".join(figs))
    if args.json:
        def native(x):
            if isinstance(x, dict):
                return {k: native(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [native(v) for v in x]
            if isinstance(x, np.ndarray):
                return x.tolist()
            return x

        summary = {"model": model_label, "start": desc, "dt_fs": args.dt_fs, "args": vars(args),
                   "results": native(results),
                   "rdf": {"md": native(list(rdf_md[:2])) if rdf_md else None,
                           "dft": native(list(rdf_dft[:2])) if rdf_dft else None}}
        atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(json.dumps(summary)))
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
