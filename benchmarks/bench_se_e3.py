#!/usr/bin/env python
r"""se_e3, se_e2_r and hybrid on the numba path against deepmd-kit's PyTorch backend on
the CPU (issue 20).

Run from the repository root::

    python benchmarks/bench_se_e3.py                      # se_e3, 192 and 1 536 atoms, 5 repeats
    python benchmarks/bench_se_e3.py --descriptor se_e2_r --sizes 192 --repeats 5
    python benchmarks/bench_se_e3.py --descriptor hybrid
    python benchmarks/bench_se_e3.py --descriptor se_e2_r --reference-fitting

Models (``--descriptor``), all with fitting 240-240-240 (resnet_dt) and
``demo_model(config, seed=1)``:

- ``se_e3``: deepmd-kit's water se_e3 example size (rcut 5.8 Å, rcut_smth 0.5,
  sel [40, 80], embedding 2-4-8);
- ``se_e2_r``: deepmd-kit's water se_e2_r example size (rcut 6.0, rcut_smth 0.5,
  sel [46, 92], embedding 5-10-20);
- ``hybrid``: hybrid(se_e2_a, se_e3): deepmd-kit's water se_e2_a example size (rcut 6.0,
  rcut_smth 0.5, sel [46, 92], embedding 25-50-100, axis_neuron 16) and an se_e3 at
  rcut 4.5, rcut_smth 0.5, sel [20, 40], embedding 2-4-8.

deepmd-kit gets the same weights through a ``.dp`` file
(:func:`symref.deepmd_kit.pt_model`).  System: frame 0 of
``../shared/data/water/data_0`` (192 atoms) replicated 2x2x2 (1 536 atoms).

Timed in this process after a warm-up call of each, the two calls *interleaved*
(symref, deepmd-kit, symref, ...) so that the load of a shared machine hits both alike;
medians of ``--repeats`` calls of each, and the median of the per-round ratios (with ``--reference-fitting`` a third call per round: the
same numba path with the fitting nets on the reference,
:func:`symref.fast.se_e3.fitting_reference`, instead of
:func:`symref.fast.cpu.energy_fitting_blocks`, and its per-round ratio to the numba path):
``model.evaluate(coord, atype, box, backend="numba")`` (energy, forces, virial, atomic
energies and virials; O(N) neighbour list) and deepmd-kit's PyTorch model (eager, CPU)
through ``forward_lower`` on the extended system built from symref's neighbour list
(:func:`symref.deepmd_kit.forward_lower_inputs`; deepmd-kit's neighbour search is not
in its time).  Printed: both medians, the ratio of the medians deepmd-kit / symref, the
median per-round ratio, and the forces' max relative difference (the two compute the
same thing).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SE_E3 = {"type": "se_e3", "rcut": 5.8, "rcut_smth": 0.5, "sel": [40, 80],
         "neuron": [2, 4, 8], "resnet_dt": False}
SE_E2_R = {"type": "se_e2_r", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
           "neuron": [5, 10, 20], "resnet_dt": False}
SE_E2_A = {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
           "neuron": [25, 50, 100], "axis_neuron": 16, "resnet_dt": False}
DESCRIPTORS = {"se_e3": SE_E3, "se_e2_r": SE_E2_R,
               "hybrid": {"type": "hybrid", "list": [
                   SE_E2_A, dict(SE_E3, rcut=4.5, sel=[20, 40])]}}


def config(descriptor: str) -> dict:
    """The benchmark's model configuration for ``descriptor`` (a key of DESCRIPTORS)."""
    return {"type_map": ["O", "H"], "descriptor": DESCRIPTORS[descriptor],
            "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}}


def interleaved(fns, repeats):
    """Each function once for warm-up, then ``repeats`` rounds calling each in turn:
    ``(times per function, last outputs)``."""
    outs = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
    return times, outs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--descriptor", choices=sorted(DESCRIPTORS), default="se_e3")
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 1536])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    ap.add_argument("--reference-fitting", action="store_true",
                    help="also time the numba path with the reference's fitting nets")
    args = ap.parse_args(argv)
    from symref.deepmd_kit import forward_lower_eval, forward_lower_inputs, pt_model
    from symref.io.data import load_system
    from symref.model.build import demo_model
    from symref.synthetic import replicate

    model = demo_model(config(args.descriptor), seed=1)
    s = load_system(args.data)
    base = (s.coord[0], s.atype, s.box[0].reshape(3, 3))
    with tempfile.TemporaryDirectory() as tmp:
        dp = pt_model(model, tmp, device="cpu")
    print(f"descriptor {args.descriptor}")
    print(f"{'atoms':>6} {'symref numba (s)':>17} {'deepmd-kit pt (s)':>18} {'pt/numba':>9} "
          f"{'per-round':>10} {'max rel dF':>11}"
          + (f" {'ref fitting (s)':>16} {'ref-fit/numba':>14}" if args.reference_fitting else ""))
    for n in args.sizes:
        k = round((n / len(base[1])) ** (1 / 3))
        coord, atype, box = (base if k == 1 else replicate(*base, (k, k, k)))
        coord, atype, box = np.asarray(coord), np.asarray(atype), np.asarray(box).reshape(3, 3)
        run = forward_lower_eval(dp, forward_lower_inputs(model, coord, atype, box), "cpu")
        fns = [lambda: model.evaluate(coord, atype, box, backend="numba"), run]
        if args.reference_fitting:  # the same path, fitting nets on the reference
            from symref.fast.cpu import family_evaluator
            from symref.fast.se_e3 import fitting_reference

            ev, kw = family_evaluator(model)
            kw = {**kw, "fitting": fitting_reference}
            fns.append(lambda: ev(model, coord, atype, box, **kw))
        (ts, tp, *tr), (ours, (e, f, v), *_) = interleaved(fns, args.repeats)
        t_sym, t_pt = statistics.median(ts), statistics.median(tp)
        per_round = statistics.median(b / a for a, b in zip(ts, tp))
        dF = float(np.abs(ours["forces"][0] - f).max() / np.abs(f).max())
        extra = (f" {statistics.median(tr[0]):>16.3f} "
                 f"{statistics.median(b / a for a, b in zip(ts, tr[0])):>14.2f}" if tr else "")
        print(f"{len(atype):>6} {t_sym:>17.3f} {t_pt:>18.3f} {t_pt / t_sym:>9.2f} "
              f"{per_round:>10.2f} {dF:>11.1e}" + extra, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
