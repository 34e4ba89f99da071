"""Accuracy race on water: symref against deepmd-kit (PyTorch backend, CPU), same model,
same data, same wall-clock budget.

    python benchmarks/race_water.py [--budget 1800] [--out DIR] [--only symref|deepmd]
                                    [--model example|small] [--threads 2]

Both train with Adam on ``../shared/data/water/data_0..2`` (batch 1, deepmd-kit's
loss prefactors 0.02→1 and 1000→1, exponential learning rate 1e-3 → ``--stop-lr``)
and are scored on *all* frames of ``data_3`` by the same code: symref's
``report.errors_table`` (deepmd-kit's model is read from its checkpoint with
deepmd-kit's own ``serialize_from_file``; symref's evaluation matches
deepmd-kit's to ~1e-14, tests/test_deepmd_crosscheck.py).

Fair budget: each trainer first runs a short calibration (``--calib`` steps of
its own training step in this process), and gets ``numb_steps`` = the steps
that fit the budget at that speed, so both learning-rate schedules end at
the budget.  The wall clock counts the whole training process (imports, data,
statistics).  At the budget a trainer still running gets SIGINT: symref
writes its checkpoint and exits (its Ctrl-C path); deepmd-kit is scored on
its last periodic checkpoint (``save_freq`` chosen so at most ~20 s of its
training are lost).  Results: a table, ``race.json`` and ``race.png``
(validation force RMSE against wall-clock time) in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "example": {"neuron": [25, 50, 100], "axis_neuron": 16, "fitting": [240, 240, 240]},
    "small": {"neuron": [16, 32, 64], "axis_neuron": 8, "fitting": [128, 128, 128]},
}


def config(model: str, data: Path, numb_steps: int, stop_lr: float, save_freq: int,
           disp_freq: int) -> dict:
    m = MODELS[model]
    return {
        "model": {"type_map": ["O", "H"],
                  "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5,
                                 "rcut": 6.0, "neuron": m["neuron"], "resnet_dt": False,
                                 "axis_neuron": m["axis_neuron"], "type_one_side": True,
                                 "seed": 1},
                  "fitting_net": {"neuron": m["fitting"], "resnet_dt": True, "seed": 1}},
        "learning_rate": {"type": "exp", "decay_steps": max(1, numb_steps // 100),
                          "start_lr": 1e-3, "stop_lr": stop_lr},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1,
                 "start_pref_f": 1000, "limit_pref_f": 1, "start_pref_v": 0,
                 "limit_pref_v": 0},
        "training": {"training_data": {"systems": [str(data / f"data_{k}") for k in range(3)],
                                       "batch_size": 1},
                     "validation_data": {"systems": [str(data / "data_3")], "batch_size": 1,
                                         "numb_btch": 1},
                     "numb_steps": numb_steps, "seed": 10, "disp_file": "lcurve.out",
                     "disp_freq": disp_freq, "save_freq": save_freq},
    }


def calibrate_symref(cfg: dict, steps: int) -> float:
    """Median seconds of one symref Adam step (loss-and-gradient on one frame)."""
    import numpy as np

    from symref.io.data import load_systems, select_frames
    from symref.train.loss import LossPrefactors
    from symref.model.build import build_model
    from symref.train.fit import batch_loss_and_grad

    model = build_model(cfg["model"], seed=1)
    s = load_systems(cfg["training"]["training_data"]["systems"][:1], model.type_map)[0]
    ts = []
    for k in range(steps + 1):
        t = time.perf_counter()
        batch_loss_and_grad(model, [select_frames(s, [k % s.nframes])],
                            LossPrefactors(0.02, 1000.0, 0.0))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts[1:]))


def calibrate_deepmd(cfg: dict, steps: int) -> float:
    """Median seconds of one deepmd-kit PyTorch training step (forward, loss, backward, Adam)."""
    import numpy as np

    from symref.deepmd_kit import import_deepmd_pt

    import_deepmd_pt()
    import torch
    from deepmd.pt.loss.ener import EnergyStdLoss
    from deepmd.pt.model.model import get_model

    from symref.io.data import load_systems

    d = cfg["model"]
    pm = get_model(json.loads(json.dumps(d)))
    pm.train()
    s = load_systems(cfg["training"]["training_data"]["systems"][:1], d["type_map"])[0]
    loss = EnergyStdLoss(starter_learning_rate=1e-3, start_pref_e=0.02, limit_pref_e=1.0,
                         start_pref_f=1000.0, limit_pref_f=1.0, start_pref_v=0.0,
                         limit_pref_v=0.0)
    opt = torch.optim.Adam(pm.parameters(), lr=1e-3)
    ts = []
    for k in range(steps + 1):
        i = k % s.nframes
        inp = {"coord": torch.tensor(s.coord[i:i + 1]), "atype": torch.tensor(s.atype[None]),
               "box": torch.tensor(s.box[i:i + 1].reshape(1, 9))}
        lab = {"energy": torch.tensor(s.energy[i:i + 1].reshape(1, 1)),
               "force": torch.tensor(s.force[i:i + 1]), "find_energy": 1.0, "find_force": 1.0}
        t = time.perf_counter()
        opt.zero_grad()
        _, lval, _ = loss(inp, pm, lab, s.natoms, 1e-3)
        lval.backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts[1:]))


DEEPMD_MAIN = ("from symref.deepmd_kit import import_deepmd_pt; "
               "import_deepmd_pt(); from deepmd.main import main; "
               "main(['--pt', 'train', 'input.json'])")


def run_trainer(name: str, cfg: dict, workdir: Path, budget: float, threads: int) -> dict:
    """Run one trainer in ``workdir`` for at most ``budget`` seconds of wall clock."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "input.json").write_text(json.dumps(cfg, indent=1))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               DP_INTRA_OP_PARALLELISM_THREADS=str(threads),
               DP_INTER_OP_PARALLELISM_THREADS="1")
    if name == "symref":
        cmd = [sys.executable, "-m", "symref.cli", "train", "input.json", "-o", "model.json"]
    else:
        cmd = [sys.executable, "-c", DEEPMD_MAIN]
    t0 = time.perf_counter()
    with open(workdir / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=budget)
            stopped = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            stopped = True
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "stopped_at_budget": stopped, "returncode": proc.returncode}


def final_model(name: str, workdir: Path):
    """The trainer's last saved model as a symref DeepPot."""
    from symref.io.model_file import load_model, model_from_dict
    from symref.train.fit import load_checkpoint

    if name == "symref":
        for f in ("model.json", "model.ckpt.json"):
            if (workdir / f).exists():
                return (load_model(workdir / f) if f == "model.json"
                        else load_checkpoint(workdir / f)[0]), f
        raise FileNotFoundError(f"{workdir}: symref wrote no model")
    from symref.deepmd_kit import import_deepmd_pt

    import_deepmd_pt()
    from deepmd.pt.utils.serialization import serialize_from_file

    ckpt = workdir / "model.ckpt.pt"  # deepmd-kit's link to the latest checkpoint
    if not ckpt.exists():
        raise FileNotFoundError(f"{workdir}: deepmd-kit wrote no checkpoint")
    return model_from_dict(serialize_from_file(str(ckpt))), ckpt.resolve().name


def steps_done(name: str, workdir: Path) -> int:
    """Steps behind the scored model: symref's checkpoint records them; deepmd-kit's
    checkpoint file is named by its step (``model.ckpt-<step>.pt``)."""
    if name == "symref" and (workdir / "model.ckpt.json").exists():
        from symref.train.fit import load_checkpoint

        return int(load_checkpoint(workdir / "model.ckpt.json")[1])
    ck = workdir / "model.ckpt.pt"
    if name == "deepmd" and ck.exists():
        stem = ck.resolve().stem  # model.ckpt-<step>
        if "-" in stem and stem.rsplit("-", 1)[1].isdigit():
            return int(stem.rsplit("-", 1)[1])
    lc = workdir / "lcurve.out"
    rows = [ln.split() for ln in lc.read_text().splitlines() if ln.strip() and ln[0] != "#"] \
        if lc.exists() else []
    return int(rows[-1][0]) if rows else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds per trainer")
    ap.add_argument("--out", default="race-out")
    ap.add_argument("--only", choices=("symref", "deepmd"), default=None)
    ap.add_argument("--model", choices=sorted(MODELS), default="example")
    ap.add_argument("--stop-lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib", type=int, default=12, help="calibration steps per trainer")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water"))
    args = ap.parse_args()
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    if not (data / "data_3").is_dir():
        raise SystemExit(f"race_water: water data not found at {data}")
    out.mkdir(parents=True, exist_ok=True)
    from symref.io.data import load_systems
    from symref.train.report import errors_table

    valid = load_systems([str(data / "data_3")], ["O", "H"])
    names = [args.only] if args.only else ["symref", "deepmd"]
    results = {}
    prev = out / "race.json"
    if args.only and prev.exists():  # keep the other trainer's result from an earlier run
        old = json.loads(prev.read_text())
        if (old.get("budget_s"), old.get("model"), old.get("stop_lr", args.stop_lr)) == \
                (args.budget, args.model, args.stop_lr):
            results = {k: v for k, v in old.get("results", {}).items() if k != args.only}
    for name in names:
        probe = config(args.model, data, 1000, args.stop_lr, 1000, 100)
        t_step = (calibrate_symref if name == "symref" else calibrate_deepmd)(probe, args.calib)
        # start-up (imports, statistics) takes ~5% of a 30-minute budget; leave it out
        numb_steps = max(100, int(0.95 * args.budget / t_step))
        # deepmd-kit is scored on its last periodic checkpoint: save often; symref
        # writes one at the budget (SIGINT), so its periodic ones are only for safety
        save_freq = max(10, int((60.0 if name == "symref" else 20.0) / t_step))
        disp_freq = max(10, numb_steps // 60)
        cfg = config(args.model, data, numb_steps, args.stop_lr, save_freq, disp_freq)
        print(f"{name}: {t_step * 1e3:.0f} ms/step in calibration -> numb_steps {numb_steps}",
              flush=True)
        run = run_trainer(name, cfg, out / name, args.budget, args.threads)
        model, source = final_model(name, out / name)
        table = errors_table(model, valid)
        results[name] = {**run, "ms_per_step_calibration": t_step * 1e3,
                         "numb_steps": numb_steps, "steps_done": steps_done(name, out / name),
                         "scored": source, "natoms": int(valid[0].natoms),
                         "frames": int(valid[0].nframes),
                         "rmse_e_meV_per_atom": table["energy/atom"][1] * 1e3,
                         "rmse_f_meV_per_A": table["force"][1] * 1e3}
        print(json.dumps(results[name], indent=1), flush=True)
    (out / "race.json").write_text(json.dumps({"budget_s": args.budget, "model": args.model,
                                               "threads": args.threads, "stop_lr": args.stop_lr,
                                               "results": results},
                                              indent=1))
    print(f"\nwater race, budget {args.budget:.0f} s, model {args.model}, "
          f"{args.threads} threads; validation = all {valid[0].nframes} frames of data_3")
    print(f"  {'trainer':8s} {'steps':>7s} {'wall s':>7s} {'E meV/atom':>11s} {'F meV/Å':>8s}")
    for name, r in results.items():
        print(f"  {name:8s} {r['steps_done']:7d} {r['wall_s']:7.0f} "
              f"{r['rmse_e_meV_per_atom']:11.2f} {r['rmse_f_meV_per_A']:8.1f}")
    plot(out, results)


def plot(out: Path, results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symref.train.report import read_lcurve

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        path = out / name / "lcurve.out"
        if not path.exists() or not r["steps_done"]:
            continue
        cols, lc = read_lcurve(path)
        if "rmse_f_val" not in cols:
            continue
        t = lc[:, cols.index("step")] * r["wall_s"] / r["steps_done"]
        ax.semilogy(t / 60, lc[:, cols.index("rmse_f_val")] * 1e3,
                    label=f"{name} (validation, 1 frame)")
    ax.set_xlabel("wall-clock time (min)")
    ax.set_ylabel("force RMSE (meV/Å)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "race.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
