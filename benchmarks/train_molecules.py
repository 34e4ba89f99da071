"""Train one model on the frames of all three molecules in ``../shared/data/molecules``
(non-periodic C/H/O, forces up to ~150 eV/Å) and report validation errors per molecule.

    python benchmarks/train_molecules.py [--steps 4000] [--out molecules-out] [--valid 0.1]

Runs ``symref train input.json --valid-fraction F`` (Adam, deepmd-kit's schedules)
in ``--out``, then scores the final model on the held-out frames (the same seeded
split) with ``symref.train.report.errors_table`` and checks every prediction is finite.
Writes ``input.json``, ``lcurve.out``, ``lcurve.png``, ``model.yaml``/``model.dp``
and ``molecules.json`` there.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--valid", type=float, default=0.1, help="validation fraction of each molecule")
    ap.add_argument("--out", default="molecules-out")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "molecules"))
    args = ap.parse_args()
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    systems = sorted(str(p) for p in data.iterdir() if (p / "type.raw").exists())
    if not systems:
        raise SystemExit(f"train_molecules: no deepmd-kit systems under {data}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model": {"type_map": ["C", "H", "O"],
                  "descriptor": {"type": "se_e2_a", "sel": [8, 8, 8], "rcut_smth": 0.5,
                                 "rcut": 6.0, "neuron": [16, 32, 64], "resnet_dt": False,
                                 "axis_neuron": 8, "type_one_side": True},
                  "fitting_net": {"neuron": [120, 120, 120], "resnet_dt": True}},
        "learning_rate": {"type": "exp", "decay_steps": max(1, args.steps // 100),
                          "start_lr": 1e-3, "stop_lr": 1e-5},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1,
                 "start_pref_f": 1000, "limit_pref_f": 1},
        "training": {"training_data": {"systems": systems, "batch_size": "auto"},
                     "numb_steps": args.steps, "seed": 1, "disp_file": "lcurve.out",
                     "disp_freq": max(1, args.steps // 40), "save_freq": 1000},
    }
    (out / "input.json").write_text(json.dumps(cfg, indent=1))
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "symref.cli", "train", "input.json",
                          "--valid-fraction", str(args.valid)], cwd=out)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"train_molecules: symref train failed (exit {rc})")
    subprocess.call([sys.executable, "-m", "symref.cli", "plot", "lcurve.out"], cwd=out)

    import numpy as np

    from symref.io.data import load_systems, split_frames
    from symref.io.model_file import load_model
    from symref.train.report import errors_table

    model = load_model(out / "model.yaml")
    _, valid = split_frames(load_systems(systems, model.type_map), args.valid, seed=1)
    res = {"steps": args.steps, "wall_s": wall, "molecules": {}}
    print(f"\nvalidation ({args.valid:.0%} of the frames of each molecule), "
          f"{args.steps} Adam steps, {wall:.0f} s")
    print(f"  {'molecule':10s} {'frames':>6s} {'E meV/atom':>11s} {'F meV/Å':>9s} "
          f"{'max|F| label':>12s} {'finite':>6s}")
    for s in valid:
        ev = model.evaluate(s.coord, s.atype, None)
        finite = bool(np.isfinite(ev["energy"]).all() and np.isfinite(ev["forces"]).all())
        t = errors_table(model, [s])
        name = Path(s.name).name if s.name else "?"
        row = {"frames": int(s.nframes), "rmse_e_meV_per_atom": t["energy/atom"][1] * 1e3,
               "rmse_f_meV_per_A": t["force"][1] * 1e3,
               "max_abs_force_label": float(np.abs(s.force).max()), "finite": finite}
        res["molecules"][name] = row
        print(f"  {name:10s} {row['frames']:6d} {row['rmse_e_meV_per_atom']:11.2f} "
              f"{row['rmse_f_meV_per_A']:9.1f} {row['max_abs_force_label']:12.1f} "
              f"{str(finite):>6s}")
    (out / "molecules.json").write_text(json.dumps(res, indent=1))
    if not all(r["finite"] for r in res["molecules"].values()):
        raise SystemExit("train_molecules: non-finite predictions")


if __name__ == "__main__":
    main()
