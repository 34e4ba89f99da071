#!/usr/bin/env python
r"""GPU evaluation speed: symref ``backend="cuda"`` (float64, float32) vs the numba CPU path
and deepmd-kit's PyTorch backend, on replicated water.

Run from the repository root on a machine with an NVIDIA GPU and numba-cuda
(``pip install -e ".[cuda]"``; ``numba-cuda[cu12]``/``[cu13]`` bring the CUDA
toolkit libraries when the system has none)::

    python benchmarks/bench_cuda.py                      # 192 ... 98 304 atoms
    python benchmarks/bench_cuda.py --sizes 192 1536 --repeats 3
    python benchmarks/bench_cuda.py --json gpu.json

Without a GPU it exits with status 2 and says why (the CUDA simulator gives
meaningless timings; ``--smoke`` runs a tiny model once on it, to check this
script).  Same model and system as ``bench_evaluate.py``: deepmd-kit's water
example size (se_e2_a, rcut 6 Å, sel [46, 92], embedding 25-50-100, axis 16,
fitting 240-240-240), ``demo_model(symref.synthetic.EXAMPLE_CONFIG, seed=1)``, frame 0 of
``../shared/data/water/data_0`` (or a built-in 64-molecule box) replicated.

What is timed (median of ``--repeats`` after ``--warmup`` calls; the first call
includes the CUDA compilation): ``model.evaluate(coord, atype, box,
backend=...)`` returning energy, forces, virial, atomic energies and virials
as NumPy arrays (host neighbour search, copies to and from the device and the
kernels included); for deepmd-kit, ``m.forward_lower`` of its PyTorch model
on the GPU, fed the extended system built from symref's neighbour list
(:func:`symref.deepmd_kit.forward_lower_inputs`, as LAMMPS feeds deepmd-kit: its own ``forward``
needs an nloc x nall distance matrix, 121 GiB at 12 288 atoms), forces folded
onto the local atoms on the GPU and copied to the host with energy and virial
(no atomic virial; the neighbour search is *not* in deepmd-kit's time, while
it is in symref's).  The
host part of the GPU path (neighbour list, reverse index) is timed on its own
too.  ``max rel diff`` = max over energy/forces/virial of ``max|x - ref| /
max|ref|`` against the numba float64 result (the cuda float64 one where the
CPU path was not run).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_SIZES = [192, 1536, 12288, 24576, 49152, 98304]
SMOKE_CONFIG = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "rcut": 2.2, "rcut_smth": 0.5, "sel": [4, 8],
                   "neuron": [2, 4], "axis_neuron": 2, "resnet_dt": False, "type_one_side": True},
    "fitting_net": {"neuron": [4, 4], "resnet_dt": True},
}


def log(msg: str) -> None:
    print(f"[bench_cuda {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gpu_status(smoke: bool) -> tuple[str | None, str]:
    """(why the benchmark cannot run or None, device description)."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (pip install 'symref[cuda]')", ""
    import numba

    if numba.config.ENABLE_CUDASIM:
        if smoke:
            return None, "numba CUDA simulator (smoke run: timings are meaningless)"
        return ("NUMBA_ENABLE_CUDASIM=1: the simulator runs kernels in Python, its timings mean "
                "nothing (use --smoke to check this script on it)"), ""
    from numba import cuda

    try:
        if not cuda.is_available():
            return "no CUDA GPU or driver found (numba.cuda.is_available() is False)", ""
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        free, total = cuda.current_context().get_memory_info()
        return None, (f"{name}, compute capability {dev.compute_capability}, "
                      f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)")
    except Exception as e:  # noqa: BLE001 - reported
        return f"CUDA could not be initialised: {type(e).__name__}: {e}", ""


def timed(fn, warmup: int, repeats: int, budget: float) -> dict:
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    t_start = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - t_start > budget:
            break
    return {"first_call_s": first, "times_s": times, "median_s": statistics.median(times),
            "out": out}


def efv(res) -> tuple:
    import numpy as np

    return (np.asarray(res["energy"], np.float64).reshape(-1)[:1],
            np.asarray(res["forces"], np.float64).reshape(-1, 3),
            np.asarray(res["virial"], np.float64).reshape(3, 3))


def max_rel_diff(a, b) -> float:
    import numpy as np

    return max(float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-300)) for x, y in zip(a, b))


def deepmd_on_gpu(model, workdir: Path, device: str = "cuda"):
    """deepmd-kit's PyTorch model with the same weights on ``device`` (the GPU by default),
    or (None, reason)."""
    import importlib.util

    for mod, pkg in (("torch", "torch"), ("deepmd", "deepmd-kit"), ("h5py", "h5py")):
        if importlib.util.find_spec(mod) is None:
            return None, f"{pkg} is not installed"
    try:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            return None, "torch has no CUDA device (a CPU build of torch?)"
        from symref.deepmd_kit import pt_model

        return pt_model(model, workdir, device), None
    except Exception as e:  # noqa: BLE001 - reported, the rest of the benchmark goes on
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help=f"atom counts, multiples of the base cell (default {DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2, help="untimed calls (the first compiles)")
    p.add_argument("--budget", type=float, default=120.0, help="seconds of timed runs per cell")
    p.add_argument("--precisions", nargs="+", default=["float64", "float32"],
                   choices=["float64", "float32"])
    p.add_argument("--cpu-max-atoms", type=int, default=24576,
                   help="run the numba CPU path up to this size (default 24 576)")
    p.add_argument("--deepmd-max-atoms", type=int, default=98304,
                   help="run deepmd-kit up to this size (through forward_lower: its "
                        "activations hold ~nloc·nnei·M1·8 bytes each, 10.8 GB at 98 304 "
                        "atoms; out-of-memory is reported, not fatal)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "water" / "data_0"),
                   help="deepmd-kit system whose frame 0 is replicated ('none': built-in box)")
    p.add_argument("--json", default=None, help="write all numbers to this file")
    p.add_argument("--smoke", action="store_true",
                   help="tiny model, 192 atoms, 1 repeat; allowed on the simulator")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes = args.sizes or [192]
        args.repeats, args.warmup = 1, 1
        args.cpu_max_atoms = max(args.sizes)
        args.deepmd_max_atoms = 0
    args.sizes = sorted(set(args.sizes or DEFAULT_SIZES))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    why, device = gpu_status(args.smoke)
    if why is not None:
        print(f"bench_cuda: cannot benchmark the GPU path: {why}", file=sys.stderr)
        return 2
    import tempfile

    import numpy as np
    from bench_evaluate import base_system

    from symref.deepmd_kit import forward_lower_eval, forward_lower_inputs
    from symref.fast.cuda import Evaluator
    from symref.model.build import demo_model
    from symref.synthetic import EXAMPLE_CONFIG, EXAMPLE_SEED, replicate, replication_shape

    cfg = SMOKE_CONFIG if args.smoke else EXAMPLE_CONFIG
    model = demo_model(cfg, seed=EXAMPLE_SEED)
    data = None if args.data.lower() == "none" else args.data
    c0, t0, b0, sysdesc = base_system(data)
    n0 = len(t0)
    bad = [n for n in args.sizes if n % n0]
    if bad:
        raise SystemExit(f"sizes {bad} are not multiples of the base cell's {n0} atoms")
    log(f"device: {device}")
    log(f"system: {sysdesc}")
    report = {"device": device, "system": sysdesc, "config": cfg, "args": vars(args), "rows": []}
    tmp = Path(tempfile.mkdtemp(prefix="symref_bench_cuda_"))
    dp, dp_why = (None, "--smoke") if args.smoke else deepmd_on_gpu(model, tmp)
    if dp is None:
        log(f"deepmd-kit not measured: {dp_why}")
        report["deepmd_skipped"] = dp_why
    rows = []
    for n in args.sizes:
        coord, atype, box = replicate(c0, t0, b0, replication_shape(n // n0))
        c, b = coord[None], box[None]
        ref = None
        cells = []
        if n <= args.cpu_max_atoms:
            log(f"numba CPU, {n} atoms ...")
            r = timed(lambda: efv(model.evaluate(c, atype, b, backend="numba")), args.warmup,
                      args.repeats, args.budget)
            ref = r.pop("out")
            cells.append(("numba CPU", "float64", r, 0.0))
        for prec in args.precisions:
            log(f"cuda {prec}, {n} atoms ...")
            try:
                r = timed(lambda: efv(model.evaluate(c, atype, b, backend="cuda", precision=prec)),
                          args.warmup, args.repeats, args.budget)
            except Exception as e:  # noqa: BLE001 - e.g. out of device memory: reported
                log(f"  failed: {type(e).__name__}: {e}")
                rows.append({"natoms": n, "backend": "cuda", "precision": prec,
                             "error": f"{type(e).__name__}: {e}"})
                continue
            out = r.pop("out")
            if ref is None:
                ref = out
            cells.append(("cuda", prec, r, max_rel_diff(out, ref)))
        if cells and cells[-1][0] == "cuda":
            ev = Evaluator(model, np.float64)
            h = timed(lambda: ev.host_inputs(coord, atype, box), 1, args.repeats, args.budget)
            h.pop("out")
            report.setdefault("host_part", {})[n] = h
        if dp is not None and n <= args.deepmd_max_atoms:
            import torch

            log(f"deepmd-kit pt (GPU, forward_lower), {n} atoms ...")
            try:
                run_dp = forward_lower_eval(dp, forward_lower_inputs(model, coord, atype, box), "cuda")
                r = timed(run_dp, args.warmup, args.repeats, args.budget)
                out = r.pop("out")
                cells.append(("deepmd-kit pt", "float64", r,
                              max_rel_diff(out, ref) if ref is not None else float("nan")))
            except Exception as e:  # noqa: BLE001 - e.g. out of memory
                log(f"  deepmd-kit failed: {type(e).__name__}: {str(e)[:200]}")
                rows.append({"natoms": n, "backend": "deepmd-kit pt", "precision": "float64",
                             "error": f"{type(e).__name__}: {str(e)[:200]}"})
                torch.cuda.empty_cache()
        for name, prec, r, diff in cells:
            rows.append({"natoms": n, "backend": name, "precision": prec, **r,
                         "us_per_atom": r["median_s"] / n * 1e6, "max_rel_diff": diff})
            # each size as soon as it is done, so a run cut short still leaves its numbers
            log(f"  {n} atoms {name} {prec}: median {r['median_s'] * 1e3:.2f} ms "
                f"({r['median_s'] / n * 1e6:.3f} µs/atom), first call {r['first_call_s']:.2f} s, "
                f"max rel diff {diff:.1e}")
    report["rows"] = rows
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


def render(report) -> str:
    lines = ["symref backend='cuda' benchmark: energy + forces + virial, one frame",
             f"device : {report['device']}", f"system : {report['system']}, replicated",
             "", f"{'atoms':>7} {'backend':<14} {'precision':<9} {'time/eval':>11} "
                 f"{'µs/atom':>9} {'1st call':>9} {'runs':>4} {'max rel diff':>12}"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"{r['natoms']:>7} {r['backend']:<14} {r['precision']:<9} "
                         f"failed: {r['error']}")
            continue
        lines.append(f"{r['natoms']:>7} {r['backend']:<14} {r['precision']:<9} "
                     f"{r['median_s'] * 1e3:>9.2f}ms {r['us_per_atom']:>9.2f} "
                     f"{r['first_call_s']:>8.2f}s {len(r['times_s']):>4} "
                     f"{r['max_rel_diff']:>12.1e}")
    host = report.get("host_part")
    if host:
        lines.append("")
        lines.append("host part of backend='cuda' (neighbour list + reverse index, numba CPU):")
        for n, h in host.items():
            lines.append(f"  {n:>7} atoms: {h['median_s'] * 1e3:.2f} ms")
    if report.get("deepmd_skipped"):
        lines.append(f"deepmd-kit not measured: {report['deepmd_skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
