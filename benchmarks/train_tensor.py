"""DeepDipole and DeepPolar trained on a polarisable point-charge water model.

Labels: :func:`symref.synthetic.water_tensor_labels` (SPC/E charges, permanent +
field-induced dipole on each oxygen, anisotropic + field-dependent
polarizability; Wannier-centroid-like atomic labels on O, ``sel_type`` [O]) on
the water frames of ``../shared/data/water`` (data_0-2 train, data_3
validation), or, without ``../shared``, on randomly packed water boxes made by
:func:`symref.synthetic.water_box` (the output says which).  Both models are
trained with ``symref train`` (loss ``tensor``, Adam) and scored with the same
code on the validation frames: RMSE of the atomic and global labels against the
labels' spread (standard deviation; for the polarizability also the spread of
its anisotropic part).  Writes ``train_tensor.json`` in ``--out``.

    python benchmarks/train_tensor.py --steps 3000 --out tensor-out
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_data(out: Path, data: Path | None):
    from symref.io.data import System, load_system, save_system
    from symref.synthetic import water_box, water_tensor_labels

    if data is not None and (data / "data_3").is_dir():
        parts = {"train": [data / f"data_{i}" for i in range(3)], "valid": [data / "data_3"]}
        source = f"water frames of {data} with synthetic labels"
        systems = {k: [load_system(p) for p in v] for k, v in parts.items()}
    else:
        source = "FALLBACK (no ../shared data): random water boxes with synthetic labels"
        systems = {}
        for k, (n, seed) in {"train": (60, 1), "valid": (20, 2)}.items():
            c, a, b = water_box(n, seed=seed)
            systems[k] = [System(["O", "H"], a, c, b, name=f"box-{k}")]
    paths = {}
    for k, ss in systems.items():
        paths[k] = []
        for i, s in enumerate(ss):
            lab = water_tensor_labels(s.coord, s.atype, s.box)
            t = System(s.type_map or ["O", "H"], s.atype, s.coord, s.box, name=s.name,
                       tensors=lab)
            p = out / "data" / f"{k}_{i}"
            if not p.exists():
                save_system(t, p)
            paths[k].append(str(p))
    return paths, source


def input_json(kind: str, paths: dict, steps: int, start_lr: float = 1e-2,
               fit_diag: bool = False, pref: float = 0.0) -> dict:
    fit = {"type": kind, "neuron": [100, 100, 100], "resnet_dt": True, "seed": 1,
           "sel_type": [0]}
    if kind == "polar":
        fit.update(fit_diag=fit_diag, shift_diag=True)
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0,
                                 "rcut_smth": 0.5, "neuron": [16, 32, 64], "axis_neuron": 8,
                                 "type_one_side": True, "seed": 1},
                  "fitting_net": fit},
        "learning_rate": {"type": "exp", "start_lr": start_lr, "stop_lr": start_lr / 100,
                          "decay_steps": max(1, steps // 50)},
        "loss": {"type": "tensor", "pref": pref, "pref_atomic": 1.0},
        "training": {"training_data": {"systems": paths["train"], "batch_size": 1},
                     "validation_data": {"systems": paths["valid"], "batch_size": 1,
                                         "numb_btch": 1},
                     "numb_steps": steps, "seed": 1, "disp_freq": max(1, steps // 20),
                     "save_freq": max(1, steps // 5)},
    }


def score(model, paths):
    from symref.io.data import load_systems
    from symref.train.fit import tensor_labels

    name = model.var_name
    pred_a, lab_a, pred_g, lab_g = [], [], [], []
    for s in load_systems(paths, model.type_map):
        ev = model.evaluate(s.coord, s.atype, s.box)
        g, a = tensor_labels(model, s)
        o = s.atype == 0
        pred_a.append(ev[f"atom_{name}"][:, o])
        lab_a.append(a[:, o])
        pred_g.append(ev[name])
        lab_g.append(g)
    pa, la, pg, lg = (np.concatenate(x) for x in (pred_a, lab_a, pred_g, lab_g))
    res = {"atomic_rmse": float(np.sqrt(np.mean((pa - la) ** 2))),
           "atomic_label_std": float(np.std(la)),
           "global_rmse": float(np.sqrt(np.mean((pg - lg) ** 2))),
           "global_label_std": float(np.std(lg)),
           "frames": int(len(lg)), "oxygens_per_frame": int(pa.shape[1])}
    if name == "polarizability":
        def aniso(a):
            return a - np.trace(a, axis1=-2, axis2=-1)[..., None, None] / 3 * np.eye(3)

        res["atomic_anisotropic_label_std"] = float(np.std(aniso(la)))
        res["atomic_anisotropic_rmse"] = float(np.sqrt(np.mean((aniso(pa) - aniso(la)) ** 2)))
        res["global_anisotropic_label_std"] = float(np.std(aniso(lg)))
        res["global_anisotropic_rmse"] = float(np.sqrt(np.mean((aniso(pg) - aniso(lg)) ** 2)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tensor-out")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--kinds", nargs="+", default=["dipole", "polar"])
    ap.add_argument("--start-lr", type=float, default=1e-2, help="Adam, decays 100x")
    ap.add_argument("--fit-diag", action="store_true", help="polar: diagonal fitting")
    ap.add_argument("--pref", type=float, default=0.0,
                    help="weight of the global label (pref_atomic is 1); with atomic labels "
                         "a global term of the same weight dominates the loss and its "
                         "gradient carries no per-atom information")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water"))
    args = ap.parse_args()
    from symref import cli
    from symref.io.model_file import load_model

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths, source = make_data(out, Path(args.data) if args.data != "none" else None)
    print(f"data: {source}", flush=True)
    results = {"source": source, "args": vars(args)}
    for kind in args.kinds:
        wd = out / kind
        wd.mkdir(exist_ok=True)
        (wd / "input.json").write_text(json.dumps(input_json(kind, paths, args.steps, args.start_lr,
                                                              args.fit_diag, args.pref), indent=1))
        t0 = time.perf_counter()
        cwd = os.getcwd()
        os.chdir(wd)
        try:
            rc = cli.main(["train", "input.json"])
        finally:
            os.chdir(cwd)
        if rc:
            raise SystemExit(f"symref train failed for {kind} (exit {rc})")
        results[kind] = {"train_s": time.perf_counter() - t0,
                         **score(load_model(wd / "model.yaml"), paths["valid"])}
        print(json.dumps({kind: results[kind]}), flush=True)
    tmp = out / ".train_tensor.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "train_tensor.json")


if __name__ == "__main__":
    main()
