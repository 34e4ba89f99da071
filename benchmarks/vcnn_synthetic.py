"""VectorCloudNet on a synthetic nonlocal target: accuracy, transfer across cloud sizes and frames.

For each head (scalar, vector, tensor) and dimension (2-D, 3-D): train with
L-BFGS on clouds of 20–40 points (``symref.synthetic.nonlocal_clouds``: a
velocity-weighted average of a field over the unit ball), then report the test
RMSE, relative to the spread (standard deviation) of the labels, on unseen
problems sampled with clouds of 25 and of 150 points, and on the 150-point
clouds after a random rotation/reflection of every cloud (labels transformed
accordingly).  Writes ``vcnn_synthetic.json`` and ``vcnn_synthetic.png``
(prediction against label) into ``--out``.

    python benchmarks/vcnn_synthetic.py --out vcnn-out          # ~5 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _rotate(clouds, labels, output, rng):
    from symref.checks.symmetry import _random_orthogonal

    out_c, out_y = [], []
    for c, y in zip(clouds, labels):
        d = c["positions"].shape[1]
        q = _random_orthogonal(rng, int(rng.choice([-1, 1])), d)
        out_c.append({"positions": c["positions"] @ q.T, "vectors": c["vectors"] @ q.T,
                      "scalars": c["scalars"]})
        out_y.append(y if output == "scalar" else (q @ y if output == "vector" else q @ y @ q.T))
    return out_c, np.array(out_y)


def _rel_rmse(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2)) / np.std(y))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="vcnn-out")
    ap.add_argument("--train", type=int, default=600, help="training clouds")
    ap.add_argument("--test", type=int, default=300, help="test clouds")
    ap.add_argument("--maxiter", type=int, default=400, help="L-BFGS iterations")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--outputs", nargs="+", default=["scalar", "vector", "tensor"])
    args = ap.parse_args()
    import symref
    from symref.synthetic import nonlocal_clouds

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, plots = [], []
    for d in args.dims:
        for output in args.outputs:
            train_c, train_y = nonlocal_clouds(args.train, (20, 40), d, output, seed=1)
            net = symref.VectorCloudNet(output, embedding=(16, 32, 32), axis_neuron=4,
                                        fitting=(64, 64), maxiter=args.maxiter, print_every=100)
            t0 = time.perf_counter()
            net.fit(train_c, train_y)
            wall = time.perf_counter() - t0
            row = {"dim": d, "output": output, "train_s": wall, "iterations": net.n_iter_,
                   "train_rel_rmse": _rel_rmse(net.predict(train_c), train_y)}
            for n in (25, 150):
                tc, ty = nonlocal_clouds(args.test, n, d, output, seed=2)  # same problems
                row[f"test_n{n}_rel_rmse"] = _rel_rmse(net.predict(tc), ty)
            rc, ry = _rotate(tc, ty, output, rng)
            pr = net.predict(rc)
            row["test_n150_rotated_rel_rmse"] = _rel_rmse(pr, ry)
            rows.append(row)
            plots.append((d, output, ty.ravel(), net.predict(tc).ravel()))
            print(json.dumps(row), flush=True)
    tmp = out / ".vcnn_synthetic.json.tmp"
    tmp.write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1))
    os.replace(tmp, out / "vcnn_synthetic.json")
    print("\nrelative test RMSE (RMSE / std of the labels); trained on clouds of 20-40 points")
    print(f"  {'d':>2s} {'head':7s} {'train':>7s} {'n=25':>7s} {'n=150':>7s} {'rotated':>8s} "
          f"{'time s':>7s}")
    for r in rows:
        print(f"  {r['dim']:2d} {r['output']:7s} {r['train_rel_rmse']:7.3f} "
              f"{r['test_n25_rel_rmse']:7.3f} {r['test_n150_rel_rmse']:7.3f} "
              f"{r['test_n150_rotated_rel_rmse']:8.3f} {r['train_s']:7.1f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(plots), figsize=(3 * len(plots), 3.2), squeeze=False)
    for ax, (d, output, y, p) in zip(axes[0], plots):
        ax.plot(y, p, ".", ms=2)
        lim = [min(y.min(), p.min()), max(y.max(), p.max())]
        ax.plot(lim, lim, "k-", lw=0.5)
        ax.set_title(f"{d}-D {output}, n=150", fontsize=9)
        ax.set_xlabel("label")
    axes[0][0].set_ylabel("prediction")
    fig.tight_layout()
    fig.savefig(out / "vcnn_synthetic.png", dpi=110)


if __name__ == "__main__":
    main()
