"""Time of one DeepDipole training step: ``symref train`` vs ``dp --pt train``, same
input.json, same data, same run.

    python benchmarks/bench_train_dipole.py [--frames 20] [--steps 10 60] [--repeats 2]
                                            [--threads 2] [--out dipole-bench]

Model: deepmd-kit's water-dipole example (``examples/water_tensor/dipole``): se_e2_a
sel [46, 92], rcut 4.0, rcut_smth 3.8, embedding 25-50-100 (no resnet_dt, type_one_side),
axis 6, dipole fitting 100x3 on O (``sel_type`` [0]); loss ``tensor`` (pref 0,
pref_atomic 1), Adam, batch "auto" (1 frame of 192 atoms).  Data: the first
``--frames`` frames of ``../shared/data/water/data_0`` with the synthetic labels of
:func:`symref.synthetic.water_tensor_labels` (written once as a deepmd-kit npy system).

deepmd-kit runs as ``dp --pt train input.json`` (``deepmd.main.main`` in a subprocess
after :func:`symref.deepmd_kit.import_deepmd_pt`, which works around the wheel's op
library built for another torch).  Per-step times exclude start-up (imports, statistics, JIT caches).  symref: (wall time of
a run of ``steps[1]`` steps - that of ``steps[0]`` steps) / (``steps[1]`` - ``steps[0]``).
deepmd-kit: its own log of a run of ``--dp-steps`` steps ("total wall time" of every
10 steps), median over the intervals after the first 10 steps (start-up here varies by
several seconds from run to run, too much for the difference method).  Each tool is run
``--repeats`` times alternately; the medians are reported with their ratio.  ``--reference`` also times one frame's
``tensor_loss_and_grad`` in process, numba vs the NumPy reference (medians of 5).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DP_DISP = 10  # deepmd-kit's display interval (its timing)
DP_TRAIN = ("from symref.deepmd_kit import import_deepmd_pt; import_deepmd_pt(); "
            "from deepmd.main import main; main(['--pt', 'train', 'input.json'])")


def make_data(out: Path, data: Path, nframes: int) -> str:
    import numpy as np

    from symref.io.data import System, load_system, save_system
    from symref.synthetic import water_tensor_labels

    p = out / "data" / "train"
    if not (p / "set.000").is_dir():
        s = load_system(data)
        k = min(nframes, s.nframes)
        c, b = s.coord[:k], s.box[:k]
        lab = water_tensor_labels(c, s.atype, b)["atom_dipole"].reshape(k, -1, 3)  # O only
        # deepmd-kit 3's pt loader wants atomic labels of every atom (zeros off sel_type);
        # no global label (pref 0)
        atom = np.zeros((k, s.natoms, 3))
        atom[:, s.atype == 0] = lab
        save_system(System(s.type_map or ["O", "H"], s.atype, c, b, name="train",
                           tensors={"atom_dipole": atom.reshape(k, -1)}), p)
    return str(p)


def input_json(system: str, steps: int) -> dict:
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 3.80,
                                 "rcut": 4.00, "neuron": [25, 50, 100], "resnet_dt": False,
                                 "axis_neuron": 6, "type_one_side": True, "seed": 1},
                  "fitting_net": {"type": "dipole", "sel_type": [0],
                                  "neuron": [100, 100, 100], "resnet_dt": True, "seed": 1}},
        "learning_rate": {"type": "exp", "start_lr": 0.01, "decay_steps": 5000},
        "loss": {"type": "tensor", "pref": 0.0, "pref_atomic": 1.0},
        "training": {"training_data": {"systems": [system], "batch_size": "auto"},
                     "numb_steps": steps, "seed": 1, "disp_freq": steps,
                     "save_freq": steps},
    }


def _workdir(out: Path, name: str, system: str, steps: int, disp: int) -> Path:
    """A fresh folder holding the input.json of a run of ``steps`` steps."""
    wd = out / f"{name.split()[0]}-{steps}"
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    inp = input_json(system, steps)
    inp["training"]["disp_freq"] = disp
    (wd / "input.json").write_text(json.dumps(inp, indent=1))
    return wd


def run(cmd, wd: Path, env) -> tuple[float, str]:
    """Wall time and stdout+stderr of ``cmd`` run in ``wd``, raising if it fails."""
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {wd}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return dt, r.stdout + r.stderr


def dp_step_times(log: str) -> list[float]:
    """Seconds per step of each display interval of a ``dp --pt train`` log ("Batch N:
    total wall time = T s": T is the time since the previous display), without the first
    two intervals (batch 1, and the warm-up up to the first ``disp_freq``)."""
    rows = [(int(m.group(1)), float(m.group(2))) for m in
            re.finditer(r"Batch\s+(\d+): total wall time = ([\d.]+) s", log)]
    rates = [t / (b - b0) for (b0, _), (b, t) in zip(rows, rows[1:])]
    if len(rates) < 2:
        raise SystemExit(f"too few timed intervals in the dp log (use more --dp-steps):\n{log[-2000:]}")
    return rates[1:]


def in_process(system: str, repeats: int) -> dict:
    """Median time of one frame's tensor_loss_and_grad, numba and numpy backends."""
    import numpy as np

    from symref.io.data import load_system
    from symref.model.build import build_model
    from symref.train.fit import tensor_labels
    from symref.train.loss import TensorPrefactors, tensor_loss_and_grad

    model = build_model(input_json(system, 1)["model"], seed=1)
    s = load_system(system)
    s.type_map = ["O", "H"]
    _, atom = tensor_labels(model, s)
    out = {}
    for be in ("numba", "numpy"):
        ts = []
        for k in range(repeats + 1):
            f = k % s.nframes
            t = time.perf_counter()
            tensor_loss_and_grad(model, s.coord[f:f + 1], s.atype, s.box[f:f + 1], None,
                                 atom[f:f + 1], TensorPrefactors(0.0, 1.0), backend=be)
            ts.append(time.perf_counter() - t)
        out[be] = float(np.median(ts[1:]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--steps", type=int, nargs=2, default=[10, 110],
                    help="symref: the step counts of the two runs")
    ap.add_argument("--dp-steps", type=int, default=50, help="deepmd-kit: steps of its run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="dipole-bench")
    ap.add_argument("--reference", action="store_true",
                    help="also time one frame's loss+gradient in process, numba vs numpy")
    ap.add_argument("--no-deepmd", action="store_true", help="time symref only")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    args = ap.parse_args()
    if not (Path(args.data) / "set.000").is_dir():
        raise SystemExit(f"water frames not found: {args.data} (needs ../shared/data)")
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env["DP_INTRA_OP_PARALLELISM_THREADS"] = str(args.threads)
    env["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    os.environ.update({k: env[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                           "OPENBLAS_NUM_THREADS")})
    out = Path(args.out).resolve()
    system = make_data(out, Path(args.data), args.frames)
    tools = {"symref": [sys.executable, "-m", "symref.cli", "train", "input.json"]}
    if not args.no_deepmd:
        # ``dp --pt train input.json``, through symref.deepmd_kit.import_deepmd_pt: the
        # wheel's compiled op library does not load with this torch (PT_WORKAROUND there)
        tools["deepmd-kit pt"] = [sys.executable, "-c", DP_TRAIN]
    n0, n1 = args.steps
    per_step = {k: [] for k in tools}
    for r in range(args.repeats):
        for name, cmd in tools.items():
            if name == "symref":
                walls = [run(cmd, _workdir(out, name, system, n, n), env)[0] for n in (n0, n1)]
                per_step[name].append((walls[1] - walls[0]) / (n1 - n0))
                what = f"{n0} steps {walls[0]:6.1f} s, {n1} steps {walls[1]:6.1f} s"
            else:
                wall, log = run(cmd, _workdir(out, name, system, args.dp_steps, DP_DISP), env)
                rates = dp_step_times(log)
                per_step[name].append(statistics.median(rates))
                what = (f"{args.dp_steps} steps {wall:6.1f} s, its log: "
                        + " ".join(f"{x * 1e3:.0f}" for x in rates) + " ms/step")
            print(f"repeat {r}: {name:14s} {what} -> {per_step[name][-1] * 1e3:7.1f} ms/step",
                  flush=True)
    med = {k: statistics.median(v) for k, v in per_step.items()}
    print(f"dipole training step, 192 water atoms, batch auto (1 frame), {args.threads} "
          f"threads, median of {args.repeats}:")
    for k, v in med.items():
        print(f"  {k:14s} {v * 1e3:8.1f} ms/step")
    if "deepmd-kit pt" in med:
        print(f"  deepmd-kit pt / symref: {med['deepmd-kit pt'] / med['symref']:.2f}x")
    if args.reference:
        t = in_process(system, 5)
        print(f"  one frame's loss+gradient in process: numba {t['numba'] * 1e3:.1f} ms, "
              f"numpy {t['numpy'] * 1e3:.1f} ms ({t['numpy'] / t['numba']:.1f}x)")


if __name__ == "__main__":
    main()
