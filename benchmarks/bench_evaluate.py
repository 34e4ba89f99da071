#!/usr/bin/env python
r"""Energy + forces + virial evaluation speed: symref (numba, numpy) vs deepmd-kit (PyTorch, CPU).

Run from the repository root::

    python benchmarks/bench_evaluate.py            # 192, 1 536, 12 288, 24 576 atoms
    python benchmarks/bench_evaluate.py --quick    # 192 and 1 536 atoms, 3 repeats
    python benchmarks/bench_evaluate.py --help

See benchmarks/README.md for what is measured and what the columns mean.

Every (backend, size) measurement runs in its own worker process (this script
with ``--worker SPEC``), so a peak RSS belongs to one measurement only, an
out-of-memory kill or a hang costs one table cell, and the thread settings
(NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS,
torch's intra-op threads) are fixed before numpy, numba or torch are imported.
Only the standard library is imported at module level for the same reason.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "water" / "data_0"
DEFAULT_SIZES = [192, 1536, 12288, 24576]
QUICK_SIZES = [192, 1536]
SCALING_REF = 1536  # µs/atom scaling is relative to this size (or the smallest measured one)
MARK = "[worker]"

# the model (deepmd-kit's water example size) and the large systems come from
# symref.synthetic, imported where used: the startup worker times `import symref` itself
MODEL_SEED = 1  # = symref.synthetic.EXAMPLE_SEED


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def model_config(two_side: bool) -> dict:
    from symref.synthetic import example_config

    return example_config(type_one_side=not two_side)


def thread_env(threads: int, env=None) -> dict:
    """Environment that pins every library this benchmark uses to ``threads`` threads."""
    env = dict(os.environ if env is None else env)
    n = str(int(threads))
    for key in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS"):
        env[key] = n
    env["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    env["DEVICE"] = "cpu"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


# ============================================================== FLOP count
def flop_count(n_atoms: int, n_pairs: int, neuron=(25, 50, 100), axis_neuron: int = 16,
               fit_neuron=(240, 240, 240)) -> dict:
    r"""Floating-point operations of one energy + forces + virial evaluation of se_e2_a + ener.

    Counts multiply-adds (MACs) of the matrix products only, times 2 flops per
    MAC, over the REAL neighbour pairs (``n_pairs``: pairs with r < rcut, padding
    slots not counted) and the ``n_atoms`` centres.  Activations, the switch
    function, the environment matrix, the neighbour search and the force /
    virial scatter are not counted (they are O(pairs) and small).  With
    M1 = neuron[-1], M2 = axis_neuron, embedding widths e = (1, *neuron) and
    fitting widths f = (M1*M2, *fit_neuron, 1):

    * embedding nets, per pair: forward  sum_l e_l e_{l+1} MACs, the backward
      input gradient the same again                       -> 2 * sum_l e_l e_{l+1}
    * T = G^T R, per pair: forward M1*4; backward dG and dR 2*M1*4  -> 3 * 4 * M1
    * D = T T_<^T, per atom: forward M1*M2*4, backward twice that   -> 3 * 4 * M1 * M2
    * fitting net, per atom: forward sum_l f_l f_{l+1}, backward the same
                                                           -> 2 * sum_l f_l f_{l+1}

    flops = 2 * [n_pairs * (2 * emb + 12 * M1) + n_atoms * (12 * M1 * M2 + 2 * fit)]

    For the default model (neuron 25-50-100, axis 16, fitting 240-240-240):
    27 500 flops per pair and 2 036 160 flops per atom.

    Returns a dict of flop counts: ``embedding``, ``GR``, ``D``, ``fitting``, ``total``.
    """
    m1, m2 = int(neuron[-1]), int(axis_neuron)
    e = [1, *map(int, neuron)]
    f = [m1 * m2, *map(int, fit_neuron), 1]
    emb_mac = sum(a * b for a, b in zip(e[:-1], e[1:]))
    fit_mac = sum(a * b for a, b in zip(f[:-1], f[1:]))
    out = {
        "embedding": 2 * n_pairs * 2 * emb_mac,
        "GR": 2 * n_pairs * 3 * 4 * m1,
        "D": 2 * n_atoms * 3 * 4 * m1 * m2,
        "fitting": 2 * n_atoms * 2 * fit_mac,
    }
    out["total"] = sum(out.values())
    return out


# ============================================================== systems
def base_system(data, frame: int = 0):
    """(coord (n0, 3), atype (n0,), box (3, 3), description) of the frame that gets replicated."""
    import numpy as np

    if data is not None and Path(data).is_dir():
        from symref.io.data import load_system

        s = load_system(data)
        if s.box is None:
            raise SystemExit(f"{data}: not periodic; the benchmark replicates a periodic cell")
        return (np.array(s.coord[frame]), np.array(s.atype), np.array(s.box[frame]),
                f"{data} frame {frame} ({s.natoms} atoms)")
    from symref.synthetic import water_box

    c, atype, b = water_box(1, seed=0)
    coord, box = c[0], b[0]
    why = "--data none" if data is None else f"{data} not found"
    return coord, atype, box, (f"FALLBACK ({why}): 64 randomly placed water molecules "
                               f"in a {box[0, 0]:.2f} Å cube ({len(atype)} atoms, seed 0)")


def system_for(spec):
    from symref.synthetic import replicate

    c0, t0, b0, _ = base_system(spec["data"], spec["frame"])
    return replicate(c0, t0, b0, spec["reps"])


# ============================================================== worker side
def _rss_kib() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _wlog(msg: str) -> None:
    print(f"{MARK} {msg}", file=sys.stderr, flush=True)


def _timed_loop(fn, warmup: int, repeats: int, budget: float, label: str,
                prior=None) -> dict:
    """Warm-up calls, then up to ``repeats`` timed calls that fit in ``budget`` seconds.

    ``prior``: (seconds, output) of a first call already made (it counts as a warm-up).
    """
    t_start = time.perf_counter()
    warm = []
    out = None
    if prior is not None:
        warm.append(prior[0])
        out = prior[1]
        t_start -= prior[0]
        _wlog(f"{label}: first call: {warm[0]:.3f} s")
    for w in range(len(warm), max(1, warmup)):
        if warm and warm[0] * (1 + repeats) > budget:
            break  # a slow one: a single warm-up
        t = time.perf_counter()
        out = fn()
        warm.append(time.perf_counter() - t)
        _wlog(f"{label}: warm-up {w + 1}: {warm[-1]:.3f} s")
    left = budget - (time.perf_counter() - t_start)
    n = repeats
    est = min(warm[-1], warm[0])
    if est * repeats > left:
        n = max(1, min(repeats, int(left // max(est, 1e-9))))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    _wlog(f"{label}: {n} repeats, median {statistics.median(times):.4f} s")
    return {"first_call_s": warm[0], "warmup_s": warm, "times_s": times,
            "median_s": statistics.median(times), "repeats": n,
            "reduced": n < repeats, "out": out}


def _numpy_outputs(res, nat):
    import numpy as np

    return (np.asarray(res["energy"], dtype=np.float64).reshape(-1)[:1],
            np.asarray(res["forces"], dtype=np.float64).reshape(nat, 3),
            np.asarray(res["virial"], dtype=np.float64).reshape(3, 3))


def _symref_evaluator(model, coord, atype, box, backend):
    """A zero-argument evaluate() for ``backend``, or raise RuntimeError saying why not."""
    nat = len(atype)
    c, b = coord[None], box[None]
    note = ""
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = time.perf_counter()
            res = model.evaluate(c, atype, b, backend=backend)
            prior = (time.perf_counter() - t, _numpy_outputs(res, nat))
    except TypeError as e:
        if "backend" not in str(e):
            raise
        if backend == "numba":
            raise RuntimeError(f"numba backend not available: evaluate() has no backend "
                               f"keyword yet ({e})") from None
        note = "evaluate() has no backend keyword yet: called without it (the NumPy reference)"
        return (lambda: _numpy_outputs(model.evaluate(c, atype, b), nat)), note, None
    except Exception as e:
        if backend == "numba":
            raise RuntimeError(f"numba backend not available: {type(e).__name__}: {e}") from None
        raise
    fell_back = [str(w.message) for w in caught if "reference" in str(w.message)]
    if backend == "numba" and fell_back:
        raise RuntimeError(f"numba backend not available for this model: {fell_back[0]}")
    return (lambda: _numpy_outputs(model.evaluate(c, atype, b, backend=backend), nat)), note, \
        prior


def _deepmd_module(spec):
    """deepmd-kit's PyTorch model from the .dp file symref wrote, plus import notes."""
    from symref.deepmd_kit import import_deepmd_pt

    import_deepmd_pt()
    import torch
    from deepmd.dpmodel.utils.serialization import load_dp_model
    from deepmd.pt.model.model import BaseModel as PTBaseModel

    torch.set_num_threads(spec["threads"])
    d = load_dp_model(spec["model_file"])
    m = PTBaseModel.deserialize(d["model"]).to("cpu")
    m.eval()
    notes = []
    if import_deepmd_pt.workaround:
        notes.append("deepmd.pt imported with the cxx_op stub (symref.deepmd_kit)")
    return m, notes


def worker_eval(spec) -> dict:
    from symref.synthetic import EXAMPLE_CONFIG

    import numpy as np

    t0 = time.perf_counter()
    coord, atype, box = system_for(spec)
    nat = len(atype)
    backend = spec["backend"]
    res: dict = {"backend": backend, "natoms": nat, "threads": spec["threads"], "notes": []}
    budget = spec["budget"]
    label = f"{backend} {nat} atoms"
    if backend in ("numba", "numpy"):
        sys.path.insert(0, str(ROOT))
        from symref.model.build import demo_model

        model = demo_model(model_config(spec["two_side"]), seed=MODEL_SEED)
        res["setup_s"] = time.perf_counter() - t0
        res["rss_setup_kib"] = _rss_kib()
        try:
            fn, note, prior = _symref_evaluator(model, coord, atype, box, backend)
        except RuntimeError as e:
            res["unavailable"] = str(e)
            return res
        if note:
            res["notes"].append(note)
        r = _timed_loop(fn, spec["warmup"], spec["repeats"], budget, label, prior)
        out = r.pop("out")
        res.update(r)
        res["variant"] = backend
    elif backend == "deepmd":
        import torch

        m, notes = _deepmd_module(spec)
        res["notes"] += notes
        res["torch_threads"] = torch.get_num_threads()
        tc = torch.tensor(coord[None], dtype=torch.float64)
        ta = torch.tensor(atype[None], dtype=torch.int64)
        tb = torch.tensor(box.reshape(1, 9), dtype=torch.float64)

        def runner(mod):
            def fn():
                ret = mod(tc, ta, box=tb)
                return (ret["energy"].detach().numpy().reshape(-1)[:1].copy(),
                        ret["force"].detach().numpy().reshape(nat, 3).copy(),
                        ret["virial"].detach().numpy().reshape(3, 3).copy())
            return fn

        res["setup_s"] = time.perf_counter() - t0
        res["rss_setup_kib"] = _rss_kib()
        eager = _timed_loop(runner(m), spec["warmup"], spec["repeats"], budget, label + " eager")
        out = eager.pop("out")
        res["eager"] = eager
        best, res["variant"] = eager, "eager"
        if spec.get("script", True):
            try:
                t = time.perf_counter()
                ms = torch.jit.script(m)
                res["script_compile_s"] = time.perf_counter() - t
                # the profiling executor optimises during the first calls: 2 warm-ups
                scripted = _timed_loop(runner(ms), max(2, spec["warmup"]), spec["repeats"],
                                       budget, label + " torch.jit.script")
                out_s = scripted.pop("out")
                res["scripted"] = scripted
                if scripted["median_s"] < eager["median_s"]:
                    best, res["variant"], out = scripted, "script", out_s
            except Exception as e:  # noqa: BLE001 - reported, eager numbers stand
                res["script_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                _wlog(f"torch.jit.script failed: {res['script_error']}")
        for k in ("first_call_s", "warmup_s", "times_s", "median_s", "repeats", "reduced"):
            res[k] = best[k]
        # deepmd-kit's own neighbour search (the call forward() makes), for its share
        try:
            from deepmd.pt.utils.nlist import extend_input_and_build_neighbor_list

            def dp_nbr():
                with torch.no_grad():
                    return extend_input_and_build_neighbor_list(
                        tc, ta, m.get_rcut(), m.get_sel(), mixed_types=True, box=tb)

            r = _timed_loop(dp_nbr, 0, min(3, spec["repeats"]), budget / 4,
                            label + " extend_input_and_build_neighbor_list")
            r.pop("out")
            res["nbr"] = r
        except Exception as e:  # noqa: BLE001 - informational only
            res["nbr_error"] = f"{type(e).__name__}: {e}"
    else:
        raise ValueError(f"unknown backend {backend!r}")

    if spec.get("out_npz"):
        e, f, v = out
        np.savez(spec["out_npz"], energy=e, forces=f, virial=v)

    if backend == "numba" and spec.get("time_neighbors"):
        try:
            from symref.fast.kernels.neighbors import build_pair_list
        except Exception as e:  # noqa: BLE001
            res["nbr_error"] = f"cannot import symref.fast.kernels.neighbors.build_pair_list: " \
                               f"{type(e).__name__}: {e}"
        else:
            rcut = EXAMPLE_CONFIG["descriptor"]["rcut"]
            sel = EXAMPLE_CONFIG["descriptor"]["sel"]
            try:
                r = _timed_loop(lambda: build_pair_list(coord, atype, box, rcut, sel),
                                1, max(spec["repeats"], 5), budget, label + " build_pair_list")
                pl = r.pop("out")
                res["nbr"] = r
                try:  # real pairs (r < rcut) from the fast neighbour list, to check the count
                    res["pairs_from_pair_list"] = int(
                        (np.linalg.norm(np.asarray(pl.rij), axis=1) < rcut).sum())
                except Exception:  # noqa: BLE001 - only a cross-check
                    pass
            except Exception as e:  # noqa: BLE001
                res["nbr_error"] = f"build_pair_list(coord, atype, box, rcut, sel) failed: " \
                                   f"{type(e).__name__}: {e}"
    res["peak_rss_kib"] = _rss_kib()
    return res


def worker_startup(spec) -> dict:
    """Process start -> first finished numba evaluation (192-atom system)."""
    t_main = time.time()
    t = time.perf_counter()
    import numpy  # noqa: F401

    sys.path.insert(0, spec.get("symref_path") or str(ROOT))
    import symref
    from symref.model.build import demo_model

    t_import = time.perf_counter() - t
    t = time.perf_counter()
    coord, atype, box = system_for(spec)
    model = demo_model(model_config(spec["two_side"]), seed=MODEL_SEED)
    t_setup = time.perf_counter() - t
    res = {"t_main": t_main, "import_s": t_import, "setup_s": t_setup, "natoms": len(atype),
           "symref_file": symref.__file__}
    t = time.perf_counter()
    try:
        model.evaluate(coord[None], atype, box[None], backend="numba")
    except Exception as e:  # noqa: BLE001
        res["unavailable"] = f"{type(e).__name__}: {e}"
        return res
    res["first_call_s"] = time.perf_counter() - t
    res["t_first_done"] = time.time()
    t = time.perf_counter()
    model.evaluate(coord[None], atype, box[None], backend="numba")
    res["second_call_s"] = time.perf_counter() - t
    return res


def run_worker(spec_json: str) -> int:
    spec = json.loads(spec_json)
    task = spec.get("task", "eval")
    try:
        res = worker_startup(spec) if task == "startup" else worker_eval(spec)
    except Exception as e:  # noqa: BLE001 - the parent reports it
        import traceback

        traceback.print_exc()
        res = {"error": f"{type(e).__name__}: {e}"}
    res.setdefault("peak_rss_kib", _rss_kib())
    import resource

    cpu = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        cpu += ru.ru_utime + ru.ru_stime
    res["cpu_s"] = cpu
    _write_json_atomic(spec["result"], res)
    return 0


# ============================================================== parent side
def _write_json_atomic(path, data) -> None:
    from symref.io.model_file import atomic_write

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, default=_json_default)

    atomic_write(path, write)


def _json_default(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:
        pass
    return str(x)


def spawn_worker(spec: dict, tmpdir: Path, threads: int, timeout: float, env_extra=None) -> dict:
    """Run ``spec`` in a fresh ``python bench_evaluate.py --worker`` process; its result dict.

    Lines the worker marks with ``[worker]`` are forwarded to stderr as progress; the
    rest (library noise, tracebacks) is kept and shown only when the worker fails.
    """
    result = tmpdir / f"result_{next(_COUNTER)}.json"
    spec = {**spec, "result": str(result), "threads": threads}
    env = thread_env(threads)
    env.update(env_extra or {})
    busy0 = cpu_busy_seconds()
    t_spawn = time.time()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                             json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=str(ROOT))
    killed = []

    def kill():
        killed.append(True)
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    tail: deque = deque(maxlen=40)
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(MARK):
                print("    " + line[len(MARK):].strip(), file=sys.stderr, flush=True)
            else:
                tail.append(line)
        rc = proc.wait()
    finally:
        timer.cancel()
    wall = time.time() - t_spawn
    if killed:
        return {"error": f"killed after the {timeout:.0f} s time limit", "wall_s": wall}
    if rc != 0 or not result.exists():
        why = "killed by signal %d (out of memory?)" % -rc if rc < 0 else f"exit status {rc}"
        return {"error": f"worker failed: {why}", "stderr_tail": "\n".join(tail), "wall_s": wall}
    res = json.loads(result.read_text())
    res["t_spawn"] = t_spawn
    res["wall_s"] = wall
    busy1 = cpu_busy_seconds()
    if busy0 is not None and busy1 is not None and "cpu_s" in res and wall > 0:
        # average number of cores kept busy by OTHER processes while the worker ran
        res["other_load"] = max(0.0, (busy1 - busy0 - res["cpu_s"]) / wall)
    if "error" in res:
        res["stderr_tail"] = "\n".join(tail)
    return res


_COUNTER = itertools.count()


def cpu_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (/proc/stat), or None."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, _idle, _iow, irq, softirq = map(int, f[1:8])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def matmul_rate(n: int = 2048, repeats: int = 5) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"n": n, "median_s": med, "gflops": 2 * n ** 3 / med / 1e9, "times_s": times}


def machine_info(threads: int) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "threads": threads}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["ram_gib"] = round(pages / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    from importlib import metadata

    for pkg in ("numpy", "numba", "torch", "deepmd-kit"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    return info


def max_rel_diff(a: dict, b: dict) -> dict:
    """max |a - b| / max |b| for energy, forces and virial."""
    import numpy as np

    out = {}
    for k in ("energy", "forces", "virial"):
        x, y = np.asarray(a[k]), np.asarray(b[k])
        out[k] = float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300))
    return out


def load_npz(path):
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def count_pairs(coord, atype, box, rcut, sel) -> int:
    """Real neighbour pairs (0 < r < rcut, all periodic images) from symref's reference search."""
    from symref.reference.neighbors import build_neighbor_list

    nl = build_neighbor_list(coord, atype, box, rcut, sel, truncate=True)
    r = __import__("numpy").linalg.norm(nl.rij, axis=-1)
    return int(((nl.nlist >= 0) & (r < rcut)).sum())


# ------------------------------------------------------------- formatting
def fmt_time(s) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_mib(kib) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def fmt_ratio(x) -> str:
    return "-" if x is None else (f"{x:.1f}×" if x < 100 else f"{x:.0f}×")


def table(headers, rows, align=None) -> str:
    cols = list(zip(*([headers] + rows))) if rows else [[h] for h in headers]
    widths = [max(len(str(c)) for c in col) for col in cols]
    align = align or ["r"] * len(headers)

    def line(cells):
        return "  ".join((str(c).rjust(w) if a == "r" else str(c).ljust(w))
                         for c, w, a in zip(cells, widths, align))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="energy+forces+virial speed of symref's numba and numpy backends and "
                    "deepmd-kit's PyTorch backend (CPU) on replicated water",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help=f"atom counts (multiples of the base cell's; default {DEFAULT_SIZES})")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: sizes {QUICK_SIZES}, 3 repeats")
    p.add_argument("--backends", nargs="+", default=["numba", "numpy", "deepmd"],
                   choices=["numba", "numpy", "deepmd"])
    p.add_argument("--threads", type=int, default=2,
                   help="threads for numba, OpenMP, OpenBLAS/MKL and torch")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell (default 5, "
                   "3 with --quick); fewer when they do not fit in --budget")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (1-2)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="seconds per (backend, size) for warm-ups + timed runs (deepmd: "
                        "each of eager and scripted)")
    p.add_argument("--two-side", action="store_true", help="type_one_side = False")
    p.add_argument("--numpy-max-atoms", type=int, default=1536,
                   help="skip the NumPy reference above this size (O(N^2) neighbour search)")
    p.add_argument("--deepmd-max-atoms", type=int, default=12288,
                   help="skip deepmd-kit above this size (memory, time)")
    p.add_argument("--no-script", action="store_true", help="do not try torch.jit.script")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="deepmd npy system (frame --frame is replicated); 'none' = "
                        "built-in water-like box")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--compare-threads", action="store_true",
                   help="also run numba at 1 and 2 threads on --compare-size atoms")
    p.add_argument("--compare-size", type=int, default=1536)
    p.add_argument("--no-compile-time", action="store_true",
                   help="skip the fresh-process compile / start-up measurement")
    p.add_argument("--json", default=None, help="write all numbers to this file (atomically)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    args.sizes = sorted(set(args.sizes))
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--threads and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv=None) -> int:
    from symref.synthetic import EXAMPLE_CONFIG, replicate, replication_shape

    args = parse_args(argv)
    if args.worker is not None:
        return run_worker(args.worker)
    os.environ.update(thread_env(args.threads))  # before numpy is imported
    sys.path.insert(0, str(ROOT))

    data = None if args.data.lower() == "none" else args.data
    c0, t0, b0, sysdesc = base_system(data, args.frame)
    n0 = len(t0)
    bad = [n for n in args.sizes if n % n0]
    if bad:
        raise SystemExit(f"sizes {bad} are not multiples of the base cell's {n0} atoms")
    reps = {n: replication_shape(n // n0) for n in args.sizes}
    desc = EXAMPLE_CONFIG["descriptor"]
    rcut, sel = desc["rcut"], desc["sel"]
    info = machine_info(args.threads)
    report: dict = {"machine": info, "system": sysdesc, "config": model_config(args.two_side),
                    "model_seed": MODEL_SEED, "args": {k: v for k, v in vars(args).items()
                                                       if k != "worker"},
                    "sizes": {}, "notes": []}

    # real pairs: the replicated crystal is the same infinite crystal, so every atom has
    # the neighbours of its original in the base cell: pairs(n) = (n / n0) * pairs(n0)
    base_pairs = count_pairs(c0, t0, b0, rcut, sel)
    report["pairs_per_atom"] = base_pairs / n0
    chk = [n for n in args.sizes if n0 < n <= 1536]
    if chk:
        c, t, b = replicate(c0, t0, b0, reps[chk[0]])
        got = count_pairs(c, t, b, rcut, sel)
        assert got == base_pairs * chk[0] // n0, (got, base_pairs, chk[0])
        report["notes"].append(f"pair count n/{n0}·pairs({n0}) checked by a direct search "
                               f"at {chk[0]} atoms")
    log(f"{sysdesc}; {base_pairs / n0:.2f} neighbours (r < rcut) per atom")

    log(f"float64 matmul 2048x2048 with {args.threads} thread(s) ...")
    mm = matmul_rate()
    report["matmul"] = mm
    log(f"  {mm['gflops']:.1f} GFLOP/s")

    tmp = Path(tempfile.mkdtemp(prefix="symref_bench_"))
    try:
        return _run(args, report, tmp, data, reps, n0, base_pairs, b0)
    finally:
        for p in sorted(tmp.rglob("*"), reverse=True):
            try:
                p.rmdir() if p.is_dir() else p.unlink()
            except OSError:
                pass
        try:
            tmp.rmdir()
        except OSError:
            pass


def deepmd_nlist_bytes(natoms: int, box, rcut: float) -> tuple[int, int]:
    """Bytes of the two dense arrays deepmd-kit's PyTorch neighbour search allocates.

    ``deepmd.pt.utils.nlist``: the coordinates are extended by whole periodic
    copies of the cell, ``nbuff = ceil(rcut / face distance)`` each way, so
    ``nall = natoms * prod(2 nbuff + 1)``; then ``diff`` (nloc, nall, 3) and
    ``rr = |diff|`` (nloc, nall), float64, exist at the same time.
    Returns (bytes, number of cell copies).
    """
    from symref.reference.neighbors import cell_heights

    nbuff = [math.ceil(rcut / h) for h in cell_heights(box)]
    ncopy = math.prod(2 * k + 1 for k in nbuff)
    return natoms * natoms * ncopy * 4 * 8, ncopy


def mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _deepmd_status() -> str | None:
    """None when deepmd-kit + torch look importable, else the reason to skip."""
    import importlib.util

    for mod, pkg in (("torch", "torch"), ("deepmd", "deepmd-kit"), ("h5py", "h5py")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed"
    return None


def _run(args, report, tmp: Path, data, reps, n0, base_pairs, b0) -> int:
    from symref.synthetic import EXAMPLE_CONFIG

    import numpy as np

    base_spec = {"data": data, "frame": args.frame, "two_side": args.two_side,
                 "repeats": args.repeats, "warmup": args.warmup, "budget": args.budget,
                 "script": not args.no_script}
    timeout_for = {"numba": 3 * args.budget + 600, "numpy": 3 * args.budget + 600,
                   "deepmd": 6 * args.budget + 900}
    skip: dict = {}  # backend -> reason (for all remaining sizes)
    if "deepmd" in args.backends:
        why = _deepmd_status()
        if why:
            skip["deepmd"] = f"deepmd-kit PyTorch backend skipped: {why}"
        else:
            import symref

            model_file = tmp / "model.dp"
            from symref.model.build import demo_model

            symref.save_model(demo_model(model_config(args.two_side), seed=MODEL_SEED),
                              model_file)
            base_spec["model_file"] = str(model_file)
    for b, why in skip.items():
        log(why)
    results = report["sizes"]
    for n in args.sizes:
        results[str(n)] = cell = {"reps": list(reps[n]), "pairs": base_pairs * n // n0,
                                  "backends": {}}
        for backend in ("numba", "numpy", "deepmd"):
            if backend not in args.backends:
                continue
            if backend in skip:
                cell["backends"][backend] = {"skipped": skip[backend]}
                continue
            limit = {"numpy": args.numpy_max_atoms, "deepmd": args.deepmd_max_atoms}.get(backend)
            if limit is not None and n > limit:
                cell["backends"][backend] = {
                    "skipped": f"skipped above --{backend}-max-atoms={limit}"}
                continue
            if backend == "deepmd":
                need, ncopy = deepmd_nlist_bytes(n, b0 * np.array(reps[n])[:, None],
                                                 EXAMPLE_CONFIG["descriptor"]["rcut"])
                avail = mem_available()
                if avail is not None and need > 0.9 * avail:
                    cell["backends"][backend] = {"skipped": (
                        f"would not fit: deepmd-kit's dense neighbour search needs "
                        f"{need / 2**30:.1f} GiB (nloc x nall distance matrix, nall = "
                        f"natoms x {ncopy} periodic copies of the cell) > "
                        f"{avail / 2**30:.1f} GiB available")}
                    log(cell["backends"][backend]["skipped"])
                    continue
            log(f"{backend}: {n} atoms ({'x'.join(map(str, reps[n]))} cells) ...")
            spec = {**base_spec, "task": "eval", "backend": backend, "reps": list(reps[n]),
                    "out_npz": str(tmp / f"out_{backend}_{n}.npz"),
                    "time_neighbors": backend == "numba"}
            r = spawn_worker(spec, tmp, args.threads, timeout_for[backend])
            cell["backends"][backend] = r
            if "pairs_from_pair_list" in r and r["pairs_from_pair_list"] != cell["pairs"]:
                report["notes"].append(
                    f"{n} atoms: build_pair_list gives {r['pairs_from_pair_list']} pairs with "
                    f"r < rcut, the reference count {cell['pairs']}")
            if "unavailable" in r:
                log(r["unavailable"] + "; going on without it")
                skip[backend] = r["unavailable"]
            elif "error" in r:
                log(f"{backend} at {n} atoms FAILED: {r['error']}")
                if r.get("stderr_tail"):
                    print("\n".join("    | " + ln for ln in r["stderr_tail"].splitlines()[-15:]),
                          file=sys.stderr)
                if backend == "deepmd" or "killed" in r["error"]:
                    skip[backend] = f"skipped after failing at {n} atoms: {r['error']}"
        # agreement of the outputs at this size
        ref = next((b for b in ("numpy", "numba", "deepmd")
                    if (tmp / f"out_{b}_{n}.npz").exists()), None)
        if ref:
            cell["reference_for_diff"] = ref
            ro = load_npz(tmp / f"out_{ref}_{n}.npz")
            cell["energy"] = float(ro["energy"][0])
            for b in ("numba", "numpy", "deepmd"):
                f = tmp / f"out_{b}_{n}.npz"
                if b != ref and f.exists():
                    cell["backends"][b]["max_rel_diff"] = max_rel_diff(load_npz(f), ro)

    numba_ok = "numba" in args.backends and "numba" not in skip
    if numba_ok and not args.no_compile_time:
        report["compile"] = compile_time(args, base_spec, tmp)
    if args.compare_threads:
        if not numba_ok:
            report["compare_threads"] = {"skipped": skip.get("numba", "numba not selected")}
        else:
            report["compare_threads"] = compare_threads(args, base_spec, tmp, n0)

    text = render(report, args)
    print(text, flush=True)
    if args.json:
        _write_json_atomic(args.json, report)
        log(f"wrote {args.json}")
    return 0


def compile_time(args, base_spec, tmp: Path) -> dict:
    """numba: first call in a fresh process with an empty cache; then start-up with a warm cache."""
    cache = tmp / "numba_cache"
    cache.mkdir()
    env = {"NUMBA_CACHE_DIR": str(cache)}
    # a snapshot of the sources: others editing symref/ meanwhile would invalidate the cache
    import shutil

    snap = tmp / "snapshot"
    shutil.copytree(ROOT / "symref", snap / "symref",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    spec = {**base_spec, "task": "startup", "reps": [1, 1, 1], "symref_path": str(snap)}
    out = {"numba_cache_dir": "fresh temporary NUMBA_CACHE_DIR",
           "sources": "a snapshot of symref/ copied at the start of this measurement"}
    for key in ("cold", "warm"):
        log(f"numba compile time: fresh process, {key} cache ...")
        r = spawn_worker(spec, tmp, args.threads, 1200, env)
        if "t_first_done" in r:
            r["start_to_first_eval_s"] = r["t_first_done"] - r["t_spawn"]
            r["interpreter_start_s"] = r["t_main"] - r["t_spawn"]
        if r.get("symref_file") and not r["symref_file"].startswith(str(snap)):
            r["error"] = f"the worker imported symref from {r['symref_file']}, not the snapshot"
        out[key] = r
        if "error" in r or "unavailable" in r:
            break
    return out


def compare_threads(args, base_spec, tmp: Path, n0) -> dict:
    from symref.synthetic import replication_shape

    n = args.compare_size
    if n % n0:
        return {"skipped": f"--compare-size {n} is not a multiple of {n0}"}
    spec = {**base_spec, "task": "eval", "backend": "numba",
            "reps": list(replication_shape(n // n0)), "time_neighbors": False}
    runs = {}
    for th in (1, 2):
        log(f"numba at {th} thread(s), {n} atoms ...")
        runs[th] = spawn_worker({**spec, "out_npz": str(tmp / f"threads_{th}.npz")}, tmp, th,
                                3 * args.budget + 600)
        if "median_s" not in runs[th]:
            return {"natoms": n, "error": runs[th].get("error") or runs[th].get("unavailable")}
    return {"natoms": n, "runs": runs, "speedup": runs[1]["median_s"] / runs[2]["median_s"],
            "max_rel_diff": max_rel_diff(load_npz(tmp / "threads_2.npz"),
                                         load_npz(tmp / "threads_1.npz"))}


def render(report, args) -> str:
    info, mm = report["machine"], report["matmul"]
    sizes = [int(s) for s in report["sizes"]]
    lines = []
    side = "two-side" if args.two_side else "one-side"
    lines.append("symref evaluate benchmark: energy + forces + virial, float64, CPU")
    lines.append(f"system : {report['system']}, replicated; "
                 f"{report['pairs_per_atom']:.2f} neighbours (r < rcut) per atom")
    lines.append(f"model  : se_e2_a rcut 6.0 sel [46, 92] neuron [25, 50, 100] axis 16 "
                 f"({side}), fitting [240, 240, 240], demo_model seed {MODEL_SEED}")
    lines.append(f"machine: {info.get('cpu', '?')}, {info['cpu_count']} CPUs, "
                 f"{info.get('ram_gib', '?')} GiB; {args.threads} thread(s); numpy "
                 f"{info['numpy']}, numba {info['numba']}, torch {info['torch']}, "
                 f"deepmd-kit {info['deepmd-kit']}")
    lines.append(f"float64 matmul 2048³ (numpy @, median of 5): {mm['gflops']:.1f} GFLOP/s")
    lines.append("")

    # scaling reference size
    def us_atom(r, n):
        return r["median_s"] / n * 1e6

    rows, skipped = [], []
    for b in ("numba", "numpy", "deepmd"):
        meas = [n for n in sizes if "median_s" in report["sizes"][str(n)]["backends"].get(b, {})]
        ref_n = SCALING_REF if SCALING_REF in meas else (meas[0] if meas else None)
        for n in sizes:
            r = report["sizes"][str(n)]["backends"].get(b)
            if r is None:
                continue
            if "median_s" not in r:
                why = r.get("skipped") or r.get("unavailable") or r.get("error")
                skipped.append(f"  {b:6s} {n:>6d} atoms: {why}")
                continue
            name = b if b != "deepmd" else f"deepmd-pt {r['variant']}"
            scal = us_atom(r, n) / us_atom(report["sizes"][str(ref_n)]["backends"][b], ref_n)
            diff = r.get("max_rel_diff")
            dtxt = "ref" if report["sizes"][str(n)].get("reference_for_diff") == b else (
                "-" if diff is None else f"{max(diff.values()):.0e}")
            reps = f"{r['repeats']}" + ("*" if r.get("reduced") else "")
            rows.append([n, name, fmt_time(r["median_s"]), f"{us_atom(r, n):.2f}",
                         f"{scal:.2f}" + ("" if ref_n == SCALING_REF else f" (vs {ref_n})"),
                         reps, fmt_time(r["first_call_s"]), fmt_mib(r.get("peak_rss_kib")),
                         dtxt, "-" if r.get("other_load") is None else f"{r['other_load']:.1f}"])
    rows.sort(key=lambda r: r[0])
    lines.append(table(["atoms", "backend", "time/eval", "µs/atom", "scaling", "runs",
                        "1st call", "peak RSS", "max rel diff", "other load"], rows,
                       ["r", "l", "r", "r", "r", "r", "r", "r", "r", "r"]))
    lines.append("  time/eval: median of the timed runs; scaling: µs/atom relative to "
                 f"{SCALING_REF} atoms; runs* = fewer than {args.repeats} (time budget)")
    lines.append("  max rel diff: max over energy/forces/virial of max|x - ref| / max|ref|, "
                 "ref = numpy reference (else numba)")
    lines.append("  other load: cores kept busy by other processes during the measurement "
                 "(/proc/stat minus the worker's CPU time); > 0.2 means the timing is suspect")
    for n in sizes:
        d = report["sizes"][str(n)]["backends"].get("deepmd", {})
        if "eager" in d:
            s = d.get("scripted")
            lines.append(f"  deepmd {n} atoms: eager {fmt_time(d['eager']['median_s'])}, "
                         + (f"torch.jit.script {fmt_time(s['median_s'])} "
                            f"(script compile {d['script_compile_s']:.1f} s)" if s else
                            f"torch.jit.script failed: {d['script_error']}"
                            if d.get("script_error") else "torch.jit.script not tried")
                         + f" -> reported: {d['variant']}"
                         + (f"; its neighbour search (extend_input_and_build_neighbor_list) "
                            f"{fmt_time(d['nbr']['median_s'])} = "
                            f"{100 * d['nbr']['median_s'] / d['median_s']:.0f}% of it"
                            if "nbr" in d else ""))
    if skipped:
        lines.append("not measured:")
        lines += skipped
    lines.append("")

    # ratios
    rows = []
    for n in sizes:
        bk = report["sizes"][str(n)]["backends"]
        nb = bk.get("numba", {}).get("median_s")
        r1 = bk.get("deepmd", {}).get("median_s")
        r2 = bk.get("numpy", {}).get("median_s")
        rows.append([n, fmt_ratio(r1 / nb) if nb and r1 else "-",
                     fmt_ratio(r2 / nb) if nb and r2 else "-"])
    lines.append("ratios (time / numba time; > 1 means numba is faster)")
    lines.append(table(["atoms", "deepmd/numba", "numpy/numba"], rows))
    lines.append("")

    # numba details
    rows = []
    for n in sizes:
        cell = report["sizes"][str(n)]
        r = cell["backends"].get("numba", {})
        fl = flop_count(n, cell["pairs"])
        cell["flops"] = fl
        if "median_s" not in r:
            rows.append([n, cell["pairs"], f"{fl['total'] / 1e9:.2f}", "-", "-", "-", "-"])
            continue
        gfs = fl["total"] / r["median_s"] / 1e9
        r["gflops"] = gfs
        nbr = r.get("nbr")
        share = f"{100 * nbr['median_s'] / r['median_s']:.1f}%" if nbr else "-"
        if nbr:
            r["nbr_share"] = nbr["median_s"] / r["median_s"]
        rows.append([n, cell["pairs"], f"{fl['total'] / 1e9:.2f}", f"{gfs:.1f}",
                     f"{100 * gfs / mm['gflops']:.0f}%",
                     fmt_time(nbr["median_s"]) if nbr else "-", share])
    lines.append("numba path: FLOP rate and neighbour search (build_pair_list)")
    lines.append(table(["atoms", "pairs", "GFLOP/eval", "GFLOP/s", "of matmul", "nbr search",
                        "nbr share"], rows))
    lines.append("  GFLOP/eval: flop_count() (matrix products, real pairs, forward + backward); "
                 "of matmul: GFLOP/s / float64 matmul rate")
    errs = {r.get("nbr_error") for c in report["sizes"].values()
            for r in [c["backends"].get("numba", {})] if r.get("nbr_error")}
    for e in errs:
        lines.append(f"  neighbour search not timed: {e}")
    if "numba" in args.backends and all("median_s" not in c["backends"].get("numba", {})
                                        for c in report["sizes"].values()):
        why = next((c["backends"].get("numba", {}).get("unavailable") or
                    c["backends"].get("numba", {}).get("error")
                    for c in report["sizes"].values()), None)
        why = str(why).removeprefix("numba backend not available: ")
        lines.append(f"  numba backend not available ({why})")
    lines.append("")

    comp = report.get("compile")
    if comp:
        cold, warm = comp.get("cold", {}), comp.get("warm", {})
        lines.append(f"numba compile / start-up (fresh processes, {comp['numba_cache_dir']}, "
                     f"snapshot of symref/, {cold.get('natoms', '?')} atoms)")
        if "first_call_s" in cold:
            lines.append(f"  empty cache: first evaluate() {cold['first_call_s']:.2f} s "
                         f"(second {cold['second_call_s'] * 1e3:.1f} ms)")
        else:
            lines.append(f"  empty cache: failed: {cold.get('error') or cold.get('unavailable')}")
        if "start_to_first_eval_s" in warm:
            ok = "OK" if warm["start_to_first_eval_s"] < 2 else "ABOVE the 2 s target"
            lines.append(f"  warm cache : process start -> first finished evaluation "
                         f"{warm['start_to_first_eval_s']:.2f} s ({ok}; interpreter "
                         f"{warm['interpreter_start_s']:.2f} s, imports {warm['import_s']:.2f} s,"
                         f" data+model {warm['setup_s']:.2f} s, first evaluate() "
                         f"{warm['first_call_s']:.2f} s)")
        elif warm:
            lines.append(f"  warm cache : failed: {warm.get('error') or warm.get('unavailable')}")
        lines.append("")
    ct = report.get("compare_threads")
    if ct:
        if "speedup" in ct:
            d = ct["max_rel_diff"]
            lines.append(f"numba 1 vs 2 threads, {ct['natoms']} atoms: speed-up "
                         f"{ct['speedup']:.2f}× ({fmt_time(ct['runs'][1]['median_s'])} -> "
                         f"{fmt_time(ct['runs'][2]['median_s'])}); max rel diff energy "
                         f"{d['energy']:.1e}, forces {d['forces']:.1e}, virial {d['virial']:.1e}"
                         f" (other load {ct['runs'][1].get('other_load', float('nan')):.1f} / "
                         f"{ct['runs'][2].get('other_load', float('nan')):.1f})")
        else:
            lines.append(f"numba 1 vs 2 threads: {ct.get('skipped') or ct.get('error')}")
        lines.append("")
    notes = list(report["notes"])
    for c in report["sizes"].values():
        for r in c["backends"].values():
            notes += r.get("notes", [])
    for nt in dict.fromkeys(notes):
        lines.append(f"note: {nt}")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
