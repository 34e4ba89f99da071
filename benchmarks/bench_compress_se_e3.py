#!/usr/bin/env python
r"""Compressed se_e3 (tabulated three-body nets) against the uncompressed model, both on
the numba path (issue 21 for the descriptor family).

Run from the repository root::

    python benchmarks/bench_compress_se_e3.py                  # 192 and 1 536 atoms, 5 rounds
    python benchmarks/bench_compress_se_e3.py --sizes 192 --repeats 3

Model: ``bench_se_e3.py``'s se_e3 (deepmd-kit's water se_e3 example size: rcut 5.8 Å,
sel [40, 80], embedding 2-4-8; fitting 240-240-240, ``demo_model(config, seed=1)``),
compressed as ``dp compress`` does (``symref.io.compress.compress_model``: step 0.01,
so se_t strides 0.1 and 1, extrapolate 5) from the smallest neighbour distance of the
data (``min_nbor_dist_of_systems``).  System: frame 0 of ``../shared/data/water/data_0``
(192 atoms) replicated 2x2x2 (1 536 atoms).

Timed in this process after a warm-up call of each, the two calls interleaved
(uncompressed, compressed, uncompressed, ...), ``--repeats`` rounds: both medians, the
ratio of the medians and the median per-round ratio (uncompressed / compressed), and
the compressed forces' and energy's largest relative difference from the uncompressed
model's (the table error as the model sees it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    from bench_se_e3 import config, interleaved

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[192, 1536])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"))
    args = ap.parse_args(argv)
    from symref.io.compress import compress_model, min_nbor_dist_of_systems
    from symref.io.data import load_system
    from symref.model.build import demo_model
    from symref.synthetic import replicate

    model = demo_model(config("se_e3"), seed=1)
    rmin = min_nbor_dist_of_systems([args.data])
    cmodel = compress_model(model, rmin)
    s = load_system(args.data)
    base = (s.coord[0], s.atype, s.box[0].reshape(3, 3))
    print(f"se_e3 compressed for min_nbor_dist {rmin:.4f} Å")
    print(f"{'atoms':>6} {'uncompressed (s)':>17} {'compressed (s)':>15} {'ratio':>6} "
          f"{'per-round':>10} {'max rel dF':>11} {'rel dE':>9}")
    for n in args.sizes:
        k = round((n / len(base[1])) ** (1 / 3))
        coord, atype, box = (base if k == 1 else replicate(*base, (k, k, k)))
        coord, atype, box = np.asarray(coord), np.asarray(atype), np.asarray(box).reshape(3, 3)
        (tu, tc), (ou, oc) = interleaved(
            [lambda: model.evaluate(coord, atype, box, backend="numba"),
             lambda: cmodel.evaluate(coord, atype, box, backend="numba")], args.repeats)
        t_u, t_c = statistics.median(tu), statistics.median(tc)
        per_round = statistics.median(a / b for a, b in zip(tu, tc))
        dF = float(np.abs(oc["forces"] - ou["forces"]).max() / np.abs(ou["forces"]).max())
        dE = float(abs(oc["energy"][0] - ou["energy"][0]) / abs(ou["energy"][0]))
        print(f"{len(atype):>6} {t_u:>17.3f} {t_c:>15.3f} {t_u / t_c:>6.2f} {per_round:>10.2f} "
              f"{dF:>11.1e} {dE:>9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
