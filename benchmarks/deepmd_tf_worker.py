#!/usr/bin/env python
"""deepmd-kit's TensorFlow backend (C++ ops), uncompressed and compressed, timed in a
Python that has ``tensorflow-cpu`` and ``deepmd-kit`` (run by ``bench_compress.py
--deepmd-tf PYTHON``; TensorFlow stays out of the process that holds symref, numba and
PyTorch).

    PYTHON benchmarks/deepmd_tf_worker.py WORKDIR --repeats 9

``WORKDIR`` holds what ``bench_compress.py`` wrote: ``model.dp`` (the model, deepmd-kit's
format), ``input.json`` (its configuration and a one-frame training system, from which
``dp --tf compress`` takes the smallest neighbour distance, as symref's compression
does) and ``frames.npz`` (``coord_N``, ``atype_N``, ``box_N`` for each size N).  The
worker runs ``dp convert-backend model.dp model.pb`` and ``dp --tf compress -i
model.pb -o model_compressed.pb -t input.json`` (deepmd-kit's defaults: step 0.01,
extrapolate 5), then times ``DeepPot.eval(coord, box, atype, atomic=True)`` of both
(energy, forces, virial, atomic energies and virials; deepmd-kit's own neighbour search
included, as it is in symref's time): two untimed calls, then the median of
``--repeats``.  Writes ``WORKDIR/tf.json`` (medians in ms, TensorFlow's version) and
``WORKDIR/tf_out.npz`` (the outputs, for the comparison with symref's).

``dp --tf compress -t input.json`` re-derives the fitting net's per-type energy bias
(``bias_atom_e``) from the training script's data, so the compressed file's energies
differ from the input model's by a per-type constant per atom; forces and virials do
not see it (``bench_compress.py`` compares atomic energies after that shift).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def dp(*args: str) -> None:
    """``dp ARGS`` in this process (deepmd-kit's command line)."""
    from deepmd.main import main

    main(list(args))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    work = Path(args.workdir).resolve()
    os.chdir(work)
    import numpy as np
    import tensorflow as tf

    dp("convert-backend", "model.dp", "model.pb")
    dp("--tf", "compress", "-i", "model.pb", "-o", "model_compressed.pb", "-t", "input.json")
    from deepmd.infer import DeepPot

    frames = np.load("frames.npz")
    sizes = sorted(int(k.split("_")[1]) for k in frames.files if k.startswith("coord_"))
    models = {"deepmd tf": DeepPot("model.pb"), "deepmd tf compressed": DeepPot("model_compressed.pb")}
    report = {"tensorflow": tf.__version__, "median_ms": {}}
    outputs = {}
    for n in sizes:
        coord = frames[f"coord_{n}"].reshape(1, -1)  # 1 x 3n
        box, atype = frames[f"box_{n}"].reshape(1, 9), frames[f"atype_{n}"]
        report["median_ms"][n] = {}
        for name, m in models.items():
            for _ in range(2):
                out = m.eval(coord, box, atype, atomic=True)
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = m.eval(coord, box, atype, atomic=True)
                ts.append(time.perf_counter() - t0)
            report["median_ms"][n][name] = 1e3 * statistics.median(ts)
            key = name.replace(" ", "_")
            outputs[f"{key}_energy_{n}"] = np.asarray(out[0]).reshape(())
            outputs[f"{key}_forces_{n}"] = np.asarray(out[1]).reshape(n, 3)
            outputs[f"{key}_virial_{n}"] = np.asarray(out[2]).reshape(3, 3)
            outputs[f"{key}_atom_energy_{n}"] = np.asarray(out[3]).reshape(n)
            print(f"[deepmd_tf_worker] {n} atoms, {name}: "
                  f"{report['median_ms'][n][name]:.2f} ms", file=sys.stderr, flush=True)
    np.savez("tf_out.npz", **outputs)
    Path("tf.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
