"""Time of one energy+force loss-and-gradient evaluation: symref vs a deepmd-kit PyTorch
training step (CPU), same model, same batch of water frames, same run.

    python benchmarks/bench_train_step.py [--batch 1] [--repeats 5] [--threads 2]
    python benchmarks/bench_train_step.py --descriptor se_e3 --reference   # issue 20

``--descriptor``: ``se_e2_a`` (default: deepmd-kit's water se_e2_a example, fitting
240-240-240), or ``se_e2_r``, ``se_e3``, ``hybrid``: the models of
``benchmarks/bench_se_e3.py`` (its ``config``), whose fast loss gradient is
:mod:`symref.fast.family_loss`.

symref: ``symref.train.loss.energy_loss_and_grad`` with backend "numba" (compact pairs) and
"numpy" (the reference, first repeat only with --reference).  deepmd-kit: forward,
``EnergyStdLoss``, ``backward()`` and an Adam step of ``deepmd.pt`` on the model moved
through symref's serialisation (``model_to_dict``).  Prefactors: deepmd-kit's water
example at the start of training (pref_e 0.02, pref_f 1000).  Medians after one warm-up.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1, help="frames per step (default 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference", action="store_true", help="also time the NumPy reference")
    ap.add_argument("--descriptor", choices=["se_e2_a", "se_e2_r", "se_e3", "hybrid"],
                    default="se_e2_a")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    args = ap.parse_args()
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    from symref.io.data import load_system
    from symref.train.loss import LossPrefactors, energy_loss_and_grad
    from symref.model.build import demo_model

    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                          "neuron": [25, 50, 100], "axis_neuron": 16, "resnet_dt": False,
                          "type_one_side": True},
           "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}}
    if args.descriptor != "se_e2_a":  # the models of bench_se_e3.py
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_se_e3 import config

        cfg = config(args.descriptor)
    model = demo_model(cfg, seed=1)
    s = load_system(args.data)
    b = args.batch
    pref = LossPrefactors(0.02, 1000.0, 0.0)

    def batch(k):
        i = (k * b) % (s.nframes - b)
        return s.coord[i:i + b], s.box[i:i + b], s.energy[i:i + b], s.force[i:i + b]

    def timed(fn):
        fn(0)
        ts = []
        for k in range(1, args.repeats + 1):
            t = time.perf_counter()
            fn(k)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    res = {}
    for backend in (["numba", "numpy"] if args.reference else ["numba"]):
        res[f"symref {backend}"] = timed(lambda k, be=backend: energy_loss_and_grad(
            model, batch(k)[0], s.atype, batch(k)[1], batch(k)[2], batch(k)[3], None, pref,
            backend=be))
    try:
        from symref.deepmd_kit import import_deepmd_pt

        import_deepmd_pt()
        import torch
        from deepmd.pt.loss.ener import EnergyStdLoss
        from deepmd.pt.model.model import BaseModel

        from symref.io.model_file import model_to_dict

        torch.set_num_threads(args.threads)
        pm = BaseModel.deserialize(model_to_dict(model))
        pm.train()
        loss = EnergyStdLoss(starter_learning_rate=1e-3, start_pref_e=0.02, limit_pref_e=1.0,
                             start_pref_f=1000.0, limit_pref_f=1.0, start_pref_v=0.0,
                             limit_pref_v=0.0)
        opt = torch.optim.Adam(pm.parameters(), lr=1e-3)

        def dp_step(k):
            c, bx, e, f = batch(k)
            inp = {"coord": torch.tensor(c), "atype": torch.tensor(np.tile(s.atype, (b, 1))),
                   "box": torch.tensor(bx.reshape(b, 9))}
            lab = {"energy": torch.tensor(e.reshape(b, 1)), "force": torch.tensor(f),
                   "find_energy": 1.0, "find_force": 1.0}
            opt.zero_grad()
            _, lval, _ = loss(inp, pm, lab, s.natoms, 1e-3)
            lval.backward()
            opt.step()

        res["deepmd-kit pt step"] = timed(dp_step)
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"deepmd-kit not measured: {exc}", file=sys.stderr)
    print(f"{args.descriptor}, water {s.natoms} atoms, batch {b} frame(s), {args.threads} "
          f"threads, median of {args.repeats}")
    for k, v in res.items():
        print(f"  {k:22s} {v * 1e3:9.1f} ms  ({v / b * 1e3:.1f} ms/frame)")
    if "symref numpy" in res:
        print(f"  numpy / numba: {res['symref numpy'] / res['symref numba']:.2f}x")
    if "deepmd-kit pt step" in res:
        print(f"  deepmd / symref numba: {res['deepmd-kit pt step'] / res['symref numba']:.2f}x")


if __name__ == "__main__":
    main()
