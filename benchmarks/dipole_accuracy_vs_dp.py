"""Held-out accuracy of DeepDipole training: ``symref train`` against ``dp --pt train``,
3 seeds each, the same input.json, data and number of steps.

    python benchmarks/dipole_accuracy_vs_dp.py [--steps 400] [--frames 40] [--test-frames 20]
                                               [--seeds 1 2 3] [--threads 1] [--out dir]

Model and loss: deepmd-kit's water-dipole example (``examples/water_tensor/dipole``, the
input of ``bench_train_dipole.py``: se_e2_a sel [46, 92], rcut 4.0 / 3.8, embedding
25-50-100, axis 6, dipole fitting 100x3 on O, loss ``tensor`` pref 0 / pref_atomic 1,
``exp`` learning rate from 0.01 with deepmd-kit's rule for ``decay_steps`` (5000 >=
numb_steps, so it becomes numb_steps // 100 + 1) down to the default stop_lr, batch
"auto" = 1 frame), with ``numb_steps`` = ``--steps`` (the example's 2000 do not fit the
time budget of the comparison).  The seed ``s`` is ``training.seed``,
``descriptor.seed`` and ``fitting_net.seed`` alike.  Data: the first ``--frames`` frames
of ``../shared/data/water/data_0`` (training) and the first ``--test-frames`` of
``data_3`` (held out), labelled with :func:`symref.synthetic.water_tensor_labels`'
atomic dipoles.  Held-out error: RMSE of the atomic dipole over the oxygens' components
(e·Å), each model evaluated by its own code (deepmd-kit's ``DeepDipole`` on its
checkpoint; symref's model file).  Prints one row per run and mean ± std (sample std,
n - 1) per code; ``--json`` writes them.

The two codes cannot draw the same random numbers (torch's generator against numpy's),
so the initial weights and the frame order differ between them even for the same seed;
only the distribution of the outcome can agree.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_train_dipole import DP_TRAIN, input_json, make_data, run  # noqa: E402


def held_out_rmse(kind: str, model_path: Path, test: str) -> float:
    """Atomic-dipole RMSE on the oxygens of the held-out system."""
    import numpy as np

    from symref.io.data import load_systems
    from symref.train.fit import tensor_labels

    s = load_systems([test], ["O", "H"])[0]
    if kind == "symref":
        import symref

        model = symref.load_model(model_path)
        pred = model.evaluate(s.coord, s.atype, s.box)["atom_dipole"]  # nf x natoms x 3
        _, atom = tensor_labels(model, s)
    else:
        from symref.deepmd_kit import import_deepmd_pt

        import_deepmd_pt()
        from deepmd.infer.deep_dipole import DeepDipole

        pred = np.asarray(DeepDipole(str(model_path)).eval(
            s.coord.reshape(s.nframes, -1), s.box.reshape(s.nframes, 9), s.atype,
            atomic=True)).reshape(s.nframes, -1, 3)
        atom = s.tensors["atom_dipole"]
    o = s.atype == 0
    if pred.shape[1] == s.natoms:
        pred = pred[:, o]
    atom = atom.reshape(s.nframes, -1, 3)
    if atom.shape[1] == s.natoms:
        atom = atom[:, o]
    return float(np.sqrt(np.mean((pred - atom) ** 2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--test-frames", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of each run (torch's stall when the machine is loaded)")
    ap.add_argument("--out", default="dipole-accuracy")
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water"))
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "data_0" / "set.000").is_dir() or not (data / "data_3" / "set.000").is_dir():
        raise SystemExit(f"water frames not found under {data} (needs ../shared/data)")
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
        env[var] = str(args.threads)
    env["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    env["NUM_WORKERS"] = "0"  # deepmd-kit: no data-loader worker processes
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = Path(args.out).resolve()
    train = make_data(out / "train", data / "data_0", args.frames)
    test = make_data(out / "test", data / "data_3", args.test_frames)
    tools = {"symref": ([sys.executable, "-m", "symref.cli", "train", "input.json",
                         "-o", "model.yaml"], "model.yaml"),
             "deepmd-kit": ([sys.executable, "-c", DP_TRAIN], "model.ckpt.pt")}
    rows = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for name, (cmd, model_file) in tools.items():
            wd = out / f"{name}-seed{seed}"
            wd.mkdir(parents=True, exist_ok=True)
            inp = input_json(train, args.steps)
            inp["training"]["seed"] = seed
            inp["model"]["descriptor"]["seed"] = inp["model"]["fitting_net"]["seed"] = seed
            inp["training"]["disp_freq"] = max(1, args.steps // 10)
            (wd / "input.json").write_text(json.dumps(inp, indent=1))
            wall, _ = run(cmd, wd, env)
            rmse = held_out_rmse(name, wd / model_file, test)
            rows.append({"code": name, "seed": seed, "rmse": rmse, "wall_s": wall})
            print(f"{name:10s} seed {seed}: held-out atomic dipole RMSE {rmse:.4f} e·Å "
                  f"({wall:.0f} s)", flush=True)
    summary = {}
    for name in tools:
        r = [x["rmse"] for x in rows if x["code"] == name]
        summary[name] = {"mean": statistics.mean(r),
                         "std": statistics.stdev(r) if len(r) > 1 else float("nan")}
        print(f"{name:10s} {args.steps} steps, {len(r)} seeds: held-out RMSE "
              f"{summary[name]['mean']:.4f} ± {summary[name]['std']:.4f} e·Å")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": rows,
                                               "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
