"""The cloud-size study: data, training runs, checks, summary, figures; ``symref transport``.

Local (n = 1) against nonlocal VCNN closures of c, trained on some members of
the hill-channel family and tested on unseen ones (:func:`run_study`; the
settings are a :class:`StudyConfig`).  Training runs go to worker processes,
each writing its own result file, so an interrupted study resumes.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from symref.transport.clouds import (FEATURE_SETS, SELECTIONS, CoefficientEllipse, Ellipse, PointSet,
                                     build_clouds, cloud_members, grid_sampler, interpolate,
                                     point_set)
from symref.transport.features import extra_fields
from symref.transport.flow import Grid, HillChannel, solve_flow
from symref.transport.navier_stokes import richardson, solve_navier_stokes, verify_navier_stokes
from symref.transport.solver import Reaction, TransportSolution, _say, solve_transport, verify


@dataclass
class StudyConfig:
    """Settings of the cloud-size study (defaults: the full study, ~6 min on 2 cores).

    The flow: ``flow="navier_stokes"`` (steady viscous flow at ``reynolds``, with its
    recirculation bubble) or ``"potential"``; the hills: ``shape="benchmark"`` (the
    periodic-hill benchmark's hill, ``alpha`` its width factor) or ``"cosine"``
    (``alpha`` the steepness).  The clouds: ``cloud="coefficients"`` (the VCNN paper's
    construction: ellipse sized by the diffusivity, the reaction rate k1 and the local
    speed, ``cloud_upstream`` and ``cloud_spread`` its factors, fixed n with
    replacement) or ``"upstream"`` (the fixed ``ellipse``); ``selection="stencil"``
    (fixed positions in the ellipse, fields interpolated there: predictions continuous
    in the query point; lowest error and smoothest lines in the measurements of the
    README), ``"nearest"`` (the nearest points of the set, deterministic) or ``"random"``
    (``draws`` seeded draws whose predictions are averaged).  The features of a cloud
    point: ``features="symref"`` (relative position, velocity, log-production) or
    ``"paper"`` (the VCNN paper's set, :mod:`symref.transport.features`).
    Train on ``train_alphas``, test on ``test_alphas`` (unseen: inside the
    training range = interpolation, outside = extrapolation).  For every seed a
    new random point set per geometry (``n_points`` points), new query points
    and a new network initialisation.  Grid check: the trained models are also
    tested on point sets of ``grid_check_points`` points drawn with other seeds.
    Production enters the clouds as ``log(1 + s/s_ref)`` (s spans orders of
    magnitude over the family); the default reaction produces where the flow is
    strained (``production_kind="strain"``: β|∇u|² would put most of it in the shear of
    the wall layers, where c is then a local function of the flow).
    """

    train_alphas: tuple = (0.7, 0.9, 1.1, 1.3, 1.5)
    test_alphas: tuple = (0.6, 0.8, 1.2, 1.65)
    nx: int = 144
    ny: int = 48
    flux: float = 30.0
    flow: str = "navier_stokes"
    reynolds: float = 100.0
    shape: str = "benchmark"
    cloud: str = "coefficients"
    cloud_upstream: float = 1.0
    cloud_spread: float = 2.0
    selection: str = "stencil"
    draws: int = 1
    features: str = "symref"
    reaction: Reaction = field(default_factory=lambda: Reaction(beta=0.03, k1=10.0, k2=30.0,
                                                                production_kind="strain"))
    n_points: int = 4000
    grid_check_points: int = 6000
    train_queries: int = 500
    test_queries: int = 1000
    sizes: tuple = (1, 25, 150)
    seeds: tuple = (0, 1, 2)
    ellipse: Ellipse = field(default_factory=Ellipse)
    s_ref: float = 0.01
    embedding: tuple = (16, 32, 32)
    axis_neuron: int = 4
    fitting: tuple = (64, 64)
    maxiter: int = 300
    line_x: float = 1.5
    rotation: float = 0.7318  # radians, with a reflection, for the frame check

    @classmethod
    def quick(cls) -> "StudyConfig":
        """A small version (under a minute on 2 cores) for tests and a first look."""
        return cls(train_alphas=(0.8, 1.0, 1.2), test_alphas=(1.1, 1.4), nx=96, ny=32,
                   n_points=2500, grid_check_points=3500, train_queries=200, test_queries=200,
                   maxiter=100, embedding=(8, 16, 16), fitting=(32, 32))

    def __post_init__(self):
        for name, allowed in (("flow", ("navier_stokes", "potential")),
                              ("shape", ("benchmark", "cosine")),
                              ("cloud", ("coefficients", "upstream")),
                              ("selection", SELECTIONS), ("features", FEATURE_SETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"StudyConfig.{name} must be one of {allowed}, got "
                                 f"{getattr(self, name)!r}")
        if int(self.draws) != self.draws or self.draws < 1:
            raise ValueError(f"StudyConfig.draws must be a positive integer, got {self.draws!r}")
        if self.draws > 1 and self.selection != "random":
            raise ValueError("StudyConfig.draws > 1 averages random draws: it needs "
                             "selection='random'")

    def geometry(self, alpha: float) -> HillChannel:
        """The member ``alpha`` of the configured hill family."""
        return HillChannel.benchmark(alpha) if self.shape == "benchmark" else HillChannel(alpha)

    def region(self):
        """The cloud region: the paper's coefficient ellipse or the fixed one."""
        if self.cloud == "coefficients":
            return CoefficientEllipse(1.0, self.reaction.k1, self.cloud_upstream,
                                      self.cloud_spread)
        return self.ellipse

    def to_dict(self) -> dict:
        d = asdict(self)
        return json.loads(json.dumps(d))


def _verify_viscous(cfg: StudyConfig, verbose) -> dict:
    """Manufactured-solution orders of the Navier–Stokes solver, and the separation and
    reattachment points of the middle training geometry on three grids (Richardson)."""
    ns = verify_navier_stokes((24, 48, 96), flux=cfg.flux, reynolds=cfg.reynolds)
    _say(verbose, "verify: Navier-Stokes observed orders (RMS) "
         + ", ".join(f"{k} {min(ns[k]['order_rms']):.2f}" for k in ("psi", "omega", "u", "v")))
    alpha = sorted(cfg.train_alphas)[len(cfg.train_alphas) // 2]
    grids = [(cfg.nx // 2, cfg.ny // 2), (cfg.nx, cfg.ny), (2 * cfg.nx, 2 * cfg.ny)]
    pts = []
    for nx, ny in grids:
        f = solve_navier_stokes(cfg.geometry(alpha), nx, ny, cfg.flux, cfg.reynolds)
        pts.append((f.separation, f.reattachment))
    bubble = {"alpha": alpha, "grids": grids, "separation": [p[0] for p in pts],
              "reattachment": [p[1] for p in pts]}
    if all(len(p[0]) == 1 and len(p[1]) == 1 for p in pts):
        for key in ("separation", "reattachment"):
            bubble[f"{key}_richardson"] = richardson([v[0] for v in bubble[key]])
        _say(verbose, f"verify: alpha = {alpha:g}, Re_H = {cfg.reynolds:g}: separation "
             f"{pts[-1][0][0]:.3f}, reattachment {pts[-1][1][0]:.3f} (change between the two "
             f"finest grids {bubble['separation_richardson']['change_finest']:.1%}, "
             f"{bubble['reattachment_richardson']['change_finest']:.1%})")
    ns["bubble"] = bubble
    return ns


def _atomic_json(path: Path, obj) -> None:
    from symref.io.model_file import atomic_write

    text = json.dumps(obj, indent=1)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def _atomic_npz(path: Path, **arrays) -> None:
    from symref.io.model_file import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    atomic_write(Path(path), write)


def solve_member(alpha: float, cfg: StudyConfig) -> TransportSolution:
    """Flow and transport of one member of the family on the study's grid."""
    if cfg.flow == "navier_stokes":
        flow = solve_navier_stokes(cfg.geometry(alpha), cfg.nx, cfg.ny, cfg.flux, cfg.reynolds)
    else:
        flow = solve_flow(cfg.geometry(alpha), cfg.nx, cfg.ny, cfg.flux)
    return solve_transport(flow, cfg.reaction)


def _member_data(out: Path, alpha: float, cfg: StudyConfig, n_points: int, seed: int,
                 solutions: dict, verbose) -> PointSet:
    """Point set of one geometry (cached as ``data/alpha{α}_pts{N}_seed{s}.npz``)."""
    path = out / "data" / f"alpha{alpha:g}_pts{n_points}_seed{seed}.npz"
    if path.is_file():
        return _load_points(out, alpha, n_points, seed)
    if alpha not in solutions:
        t0 = time.perf_counter()
        solutions[alpha] = solve_member(alpha, cfg)
        sol = solutions[alpha]
        _say(verbose, f"  solved alpha = {alpha:g}: {cfg.nx} x {cfg.ny} cells, Newton "
                      f"{sol.newton_iterations} steps, mass balance {sol.mass_balance:.1e}, "
                      f"c in [{sol.c.min():.3g}, {sol.c.max():.3g}] "
                      f"({time.perf_counter() - t0:.1f} s)")
    ps = point_set(solutions[alpha], n_points, seed=_member_seed(seed, alpha))
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_npz(path, positions=ps.positions, velocity=ps.velocity, production=ps.production,
                c=ps.c, period=ps.period, extra=ps.extra)
    return ps


def _features(ps: PointSet, cfg: StudyConfig) -> PointSet:
    """Production as log(1 + s/s_ref); s clipped at 0 first (the linear extrapolation of
    :func:`interpolate` in the half cell next to a wall can undershoot a steep wall layer)."""
    return ps.with_production(lambda s: np.log1p(np.maximum(s, 0.0) / cfg.s_ref))


def _member_seed(seed: int, alpha: float) -> int:
    """One random stream per (seed, geometry): point sets, queries and cloud draws of
    different geometries are independent (a shared stream would give the test
    geometries the training geometries' point layouts)."""
    return int(seed) * 100_000 + int(round(alpha * 1000))


def _queries(n_total: int, n_queries: int, seed: int, alpha: float) -> np.ndarray:
    rng = np.random.default_rng((_member_seed(seed, alpha), 7))
    return np.sort(rng.choice(n_total, size=min(n_queries, n_total), replace=False))


def _clouds(ps: PointSet, queries, n: int, cfg: StudyConfig, seed: int, members=None,
            draw: int = 0):
    return build_clouds(_features(ps, cfg), queries, n, cfg.region(), seed=seed, members=members,
                        selection=cfg.selection, replace=cfg.cloud == "coefficients", draw=draw,
                        features=cfg.features)


def _predict(net, ps: PointSet, queries, n: int, cfg: StudyConfig, seed: int, members=None):
    """Predictions at the query points and their targets; with ``cfg.draws > 1`` the mean
    over that many seeded cloud draws (the members are found once)."""
    if members is None and n > 1 and cfg.selection != "stencil":
        members = cloud_members(ps, queries, cfg.region())
    preds = []
    for draw in range(cfg.draws if n > 1 else 1):
        c, y = _clouds(ps, queries, n, cfg, seed, members, draw)
        preds.append(net.predict(c).ravel())
    return np.mean(preds, axis=0), y


def rel_l2(pred, true) -> float:
    """‖pred − true‖₂ / ‖true‖₂."""
    pred, true = np.ravel(pred), np.ravel(true)
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def _train_one(args):
    """One (n, seed) training run in its own process; writes model and result files."""
    from symref.fast.blas import blas_threads

    with blas_threads(1):
        return _train_one_inner(*args)


def _train_one_inner(out, cfg_dict, n, seed, verbose):
    from symref.vcnn import VectorCloudNet

    out = Path(out)
    cfg = _config_from_dict(cfg_dict)
    t0 = time.perf_counter()
    X, Y = [], []
    for alpha in cfg.train_alphas:
        ps = _load_points(out, alpha, cfg.n_points, seed, cfg)
        q = _queries(len(ps.c), cfg.train_queries, seed, alpha)
        c, y = _clouds(ps, q, n, cfg, _member_seed(seed, alpha))
        X += c
        Y.append(y)
    net = VectorCloudNet("scalar", embedding=cfg.embedding, axis_neuron=cfg.axis_neuron,
                         fitting=cfg.fitting, maxiter=cfg.maxiter, seed=seed,
                         verbose=(lambda m: print(f"[n={n} seed={seed}] {m}", file=sys.stderr,
                                                  flush=True)) if verbose else False,
                         print_every=max(1, cfg.maxiter // 5))
    net.fit(X, np.concatenate(Y))
    t_train = time.perf_counter() - t0
    res = {"n": n, "seed": seed, "train_seconds": t_train, "iterations": int(net.n_iter_),
           "train_error": rel_l2(net.predict(X), np.concatenate(Y)), "test": {}, "grid_check": {}}
    for alpha in cfg.test_alphas:
        for key, npts, pseed in (("test", cfg.n_points, seed),
                                 ("grid_check", cfg.grid_check_points, 1000 + seed)):
            ps = _load_points(out, alpha, npts, pseed, cfg)
            q = _queries(len(ps.c), cfg.test_queries, pseed, alpha)
            pred, y = _predict(net, ps, q, n, cfg, _member_seed(pseed, alpha))
            res[key][f"{alpha:g}"] = {"error": rel_l2(pred, y),
                                      "sq_err": float(((pred - y) ** 2).sum()),
                                      "sq_true": float((y ** 2).sum())}
    (out / "models").mkdir(parents=True, exist_ok=True)
    net.save(out / "models" / f"vcnn_n{n}_seed{seed}.json")
    _atomic_json(out / "results" / f"n{n}_seed{seed}.json", res)
    return res


def _load_points(out: Path, alpha: float, n_points: int, seed: int,
                 cfg: StudyConfig | None = None) -> PointSet:
    """A cached point set (with its extra fields); with a ``cfg`` whose selection is
    ``"stencil"`` it gets the sampler of the cached grid fields of its geometry."""
    path = out / "data" / f"alpha{alpha:g}_pts{n_points}_seed{seed}.npz"
    with np.load(path) as z:
        ps = PointSet(z["positions"], z["velocity"], z["production"], z["c"], z["period"],
                      extra=z["extra"])
    if cfg is not None and cfg.selection == "stencil":
        with np.load(out / "data" / f"alpha{alpha:g}_field.npz") as z:
            ps.sampler = grid_sampler(Grid(cfg.geometry(alpha), cfg.nx, cfg.ny), z["velocity"],
                                      z["production"], z["extra"])
    return ps


def _config_from_dict(d: dict) -> StudyConfig:
    d = dict(d)
    d["reaction"] = Reaction(**d["reaction"])
    d["ellipse"] = Ellipse(**d["ellipse"])
    for k in ("train_alphas", "test_alphas", "sizes", "seeds", "embedding", "fitting"):
        d[k] = tuple(d[k])
    return StudyConfig(**d)


def _rotation(theta: float, reflect: bool = True) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    R = np.array([[c, -s], [s, c]])
    return R @ np.diag([1.0, -1.0]) if reflect else R


def frame_check(net, ps: PointSet, queries, n: int, cfg: StudyConfig, seed: int) -> float:
    """max |f(clouds of R·problem + t) − f(clouds)| / max |f(clouds)| for a rotation
    by ``cfg.rotation`` combined with a reflection and a translation."""
    p0, _ = _predict(net, ps, queries, n, cfg, seed)
    ps2 = ps.transformed(_rotation(cfg.rotation), shift=(3.7, -11.2))
    p1, _ = _predict(net, ps2, queries, n, cfg, seed)
    return float(np.abs(p1 - p0).max() / np.abs(p0).max())


def _line_points(geom: HillChannel, x: float, m: int = 80) -> np.ndarray:
    h, _ = geom.wall(x)
    eta = (np.arange(m) + 0.5) / m
    return np.column_stack([np.full(m, x), h + eta * (geom.height - h)])


def run_study(out, cfg: StudyConfig | None = None, *, jobs: int | None = None, verbose=True,
              plots: bool = True) -> dict:
    """The cloud-size study: data, training (n × seeds, resumable), checks, figures.

    Everything is written under ``out``: ``config.json``, ``verify.json``,
    ``data/*.npz`` (point sets, cached), ``models/``, ``results/`` (one file per
    finished training run: an interrupted study resumes where it stopped),
    ``study.json`` (the summary) and the figures ``line.png``,
    ``error_maps.png``, ``errors.png``, ``convergence.png``.
    """
    cfg = cfg or StudyConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != cfg.to_dict():
            raise ValueError(f"{out} holds a study with other settings ({cfg_path}); use another "
                             "output directory or delete it")
    else:
        _atomic_json(cfg_path, cfg.to_dict())
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(cfg.sizes) * len(cfg.seeds)))

    # 1. verification of the solvers
    vpath = out / "verify.json"
    if vpath.is_file():
        ver = json.loads(vpath.read_text())
    else:
        _say(verbose, "[1/5] verifying the solvers with manufactured solutions")
        levels = (24, 48, 96) if cfg.nx < 144 else (24, 48, 96, 192)
        ver = verify(levels, flux=cfg.flux, reaction=cfg.reaction, verbose=verbose)
        if cfg.flow == "navier_stokes":
            ver["navier_stokes"] = _verify_viscous(cfg, verbose)
        _atomic_json(vpath, ver)

    # 2. data
    _say(verbose, "[2/5] flows, transport solutions and point sets")
    solutions: dict = {}
    for seed in cfg.seeds:
        for alpha in cfg.train_alphas + cfg.test_alphas:
            _member_data(out, alpha, cfg, cfg.n_points, seed, solutions, verbose)
        for alpha in cfg.test_alphas:
            _member_data(out, alpha, cfg, cfg.grid_check_points, 1000 + seed, solutions, verbose)
    balance = {}
    for alpha in cfg.train_alphas + cfg.test_alphas:
        fpath = out / "data" / f"alpha{alpha:g}_field.npz"
        if not fpath.is_file():
            sol = solutions.get(alpha) or solve_member(alpha, cfg)
            solutions[alpha] = sol
            _atomic_npz(fpath, c=sol.c, production=sol.production, velocity=sol.flow.velocity,
                        extra=extra_fields(sol.flow.grid, sol.flow.grad), mass_balance=sol.mass_balance, divergence=sol.flow.divergence,
                        newton=sol.newton_iterations)
        with np.load(fpath) as z:
            balance[f"{alpha:g}"] = {"mass_balance": float(z["mass_balance"]),
                                     "divergence": float(z["divergence"]),
                                     "newton": int(z["newton"])}

    # 3. training
    todo = [(n, s) for n in sorted(cfg.sizes, reverse=True) for s in cfg.seeds
            if not (out / "results" / f"n{n}_seed{s}.json").is_file()]
    (out / "results").mkdir(exist_ok=True)
    _say(verbose, f"[3/5] training {len(todo)} of {len(cfg.sizes) * len(cfg.seeds)} VCNN closures "
                  f"({jobs} at a time)" + ("" if todo else ": all done earlier"))
    cfg_dict = cfg.to_dict()
    tasks = [(str(out), cfg_dict, n, s, bool(verbose)) for n, s in todo]

    def done(res, k):
        errs = ", ".join(f"{a}: {v['error']:.3f}" for a, v in res["test"].items())
        _say(verbose, f"  [{k}/{len(tasks)}] n = {res['n']:3d} seed {res['seed']}: "
                      f"{res['train_seconds']:.0f} s, train error {res['train_error']:.3f}, "
                      f"test errors {errs}  (elapsed {time.perf_counter() - t_start:.0f} s)")

    if jobs == 1 or len(tasks) <= 1:
        for k, task in enumerate(tasks, 1):
            done(_train_one(task), k)
    elif tasks:
        import concurrent.futures as cf
        import multiprocessing as mp

        # fork where available (works from notebooks and stdin scripts); workers limit
        # their BLAS to one thread each (_train_one)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context(method)) as ex:
            futs = [ex.submit(_train_one, task) for task in tasks]
            for k, fut in enumerate(cf.as_completed(futs), 1):
                done(fut.result(), k)
    results = [json.loads((out / "results" / f"n{n}_seed{s}.json").read_text())
               for n in cfg.sizes for s in cfg.seeds]

    # 4. checks: frame independence, adaptivity of one net to other cloud sizes
    _say(verbose, "[4/5] frame independence and cloud-size adaptivity")
    from symref.vcnn import VectorCloudNet

    seed0 = cfg.seeds[0]
    a_show = cfg.test_alphas[len(cfg.test_alphas) // 2 - 1] if len(cfg.test_alphas) > 1 \
        else cfg.test_alphas[0]
    ps_show = _load_points(out, a_show, cfg.n_points, seed0, cfg)
    q_show = _queries(len(ps_show.c), cfg.test_queries, seed0, a_show)
    nets = {n: VectorCloudNet.load(out / "models" / f"vcnn_n{n}_seed{seed0}.json")
            for n in cfg.sizes}
    cs = _member_seed(seed0, a_show)  # the cloud draws of the test evaluation
    frame = {str(n): frame_check(nets[n], ps_show, q_show[:200], n, cfg, cs) for n in cfg.sizes}
    lines = _line_predictions(out, cfg, nets, a_show, ps_show, cs)
    line_summary = {f"{x:g}": {"error": {str(n): e for n, e in ln["error"].items()},
                               "roughness": {str(n): t for n, t in ln["roughness"].items()}}
                    for x, ln in lines.items()}
    nmax = max(cfg.sizes)
    adapt = {}
    for n in cfg.sizes:
        pred, y = _predict(nets[nmax], ps_show, q_show, n, cfg, cs)
        adapt[str(n)] = rel_l2(pred, y)

    # 5. summary and figures
    summary = _summarise(cfg, results)
    summary.update({"verify": {k: ver[k] for k in ("levels", "transport", "poisson",
                                                   "flow_divergence", "navier_stokes")
                               if k in ver},
                    "solutions": balance, "frame_check_max_rel": frame,
                    "adaptivity": {"alpha": a_show, "net_n": nmax, "error_by_cloud_size": adapt},
                    "lines": line_summary,
                    "jobs": jobs, "elapsed_seconds": time.perf_counter() - t_start})
    _atomic_json(out / "study.json", summary)
    if plots:
        _say(verbose, "[5/5] figures")
        _plots(out, cfg, summary, nets, a_show, ps_show, q_show, cs, ver, lines)
    _say(verbose, format_summary(summary))
    return summary


def _pooled(entries: list[dict]) -> float:
    return math.sqrt(sum(e["sq_err"] for e in entries) / sum(e["sq_true"] for e in entries))


def _summarise(cfg: StudyConfig, results: list[dict]) -> dict:
    lo, hi = min(cfg.train_alphas), max(cfg.train_alphas)
    interp = [f"{a:g}" for a in cfg.test_alphas if lo <= a <= hi]
    extrap = [f"{a:g}" for a in cfg.test_alphas if not lo <= a <= hi]
    table = {}
    for n in cfg.sizes:
        rs = [r for r in results if r["n"] == n]
        row = {}
        for key, sel in (("all", interp + extrap), ("interpolation", interp),
                         ("extrapolation", extrap)):
            if not sel:
                continue
            for part in ("test", "grid_check"):
                vals = [_pooled([r[part][a] for a in sel]) for r in rs]
                row[f"{part}_{key}"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                                        "values": vals}
        row["by_alpha"] = {a: {"mean": float(np.mean([r["test"][a]["error"] for r in rs])),
                               "std": float(np.std([r["test"][a]["error"] for r in rs]))}
                           for a in interp + extrap}
        row["train_error"] = float(np.mean([r["train_error"] for r in rs]))
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in rs]))
        table[str(n)] = row
    nmin, nmax = str(min(cfg.sizes)), str(max(cfg.sizes))
    ratio = {k: table[nmin][f"test_{k}"]["mean"] / table[nmax][f"test_{k}"]["mean"]
             for k in ("all", "interpolation", "extrapolation") if f"test_{k}" in table[nmin]}
    return {"interpolation_alphas": interp, "extrapolation_alphas": extrap, "errors": table,
            "local_over_nonlocal": ratio}


def format_summary(summary: dict) -> str:
    """The study's table as text."""
    lines = ["", "relative L2 error of c on unseen geometries (mean ± std over seeds)",
             f"{'n':>5} {'all':>16} {'interpolation':>16} {'extrapolation':>16} "
             f"{'other point sets':>17} {'train':>7}"]
    for n, row in summary["errors"].items():
        def cell(k):
            return f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" if k in row else "-"
        lines.append(f"{n:>5} {cell('test_all'):>16} {cell('test_interpolation'):>16} "
                     f"{cell('test_extrapolation'):>16} {cell('grid_check_all'):>17} "
                     f"{row['train_error']:7.3f}")
    r = summary["local_over_nonlocal"]
    lines.append("local / nonlocal error ratio: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    for x, ln in summary.get("lines", {}).items():
        lines.append(f"line x = {x}: error / roughness "
                     + ", ".join(f"n={n}: {ln['error'][n]:.3f} / {ln['roughness'][n]:.1f}"
                                 for n in ln["error"]))
    if "frame_check_max_rel" in summary:
        changes = summary["frame_check_max_rel"].items()
        lines.append("rotated + reflected problem, max relative change of predictions: "
                     + ", ".join(f"n={k}: {v:.1e}" for k, v in changes))
    return "\n".join(lines)


def _line_predictions(out: Path, cfg: StudyConfig, nets, a_show, ps_show, seed) -> dict:
    """Ground truth and every net's predictions along vertical lines through the bubble
    (x = ``line_x`` and ``line_x + 2.5``), with the clouds drawn from the test point set;
    per line and n the relative L2 error and the roughness
    RMS(Δ²prediction)/RMS(Δ²truth) of the second differences along the line (about 1
    for a curve as smooth as the truth, whatever its error; the point-to-point noise of
    per-point cloud draws puts it far above)."""
    geom = cfg.geometry(a_show)
    grid = Grid(geom, cfg.nx, cfg.ny)
    with np.load(out / "data" / f"alpha{a_show:g}_field.npz") as z:
        fields = np.concatenate([z["velocity"], z["production"][..., None], z["c"][..., None],
                                 z["extra"]], axis=-1)
    N = len(ps_show.c)
    res = {}
    for x in (cfg.line_x, cfg.line_x + 2.5):
        lp = _line_points(geom, x)
        v = interpolate(grid, fields, lp[:, 0], lp[:, 1])
        aug = PointSet(np.vstack([ps_show.positions, lp]), np.vstack([ps_show.velocity, v[:, :2]]),
                       np.concatenate([ps_show.production, v[:, 2]]),
                       np.concatenate([ps_show.c, v[:, 3]]), ps_show.period, ps_show.sampler,
                       np.vstack([ps_show.extra, v[:, 4:]]))
        lq = np.arange(N, N + len(lp))
        mem = None if cfg.selection == "stencil" else cloud_members(aug, lq, cfg.region(), pool=N)
        rough = np.sqrt(np.mean(np.diff(v[:, 3], 2) ** 2))
        ln = {"y": lp[:, 1], "truth": v[:, 3], "pred": {}, "error": {}, "roughness": {},
              "reversed": lp[np.flatnonzero(v[:, 0] < 0).max(), 1] if v[:, 0].min() < 0
              else None}
        for n in sorted(nets):
            pred, _ = _predict(nets[n], aug, lq, n, cfg, seed, members=mem if n > 1 else None)
            ln["pred"][n] = pred
            ln["error"][n] = rel_l2(pred, v[:, 3])
            ln["roughness"][n] = float(np.sqrt(np.mean(np.diff(pred, 2) ** 2)) / rough)
        res[float(x)] = ln
    return res


def _plots(out: Path, cfg: StudyConfig, summary, nets, a_show, ps_show, q_show, seed, ver,
           lines):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symref.io.model_file import atomic_write

    def save(fig, name):
        atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)

    colors = {1: "tab:red", 25: "tab:orange", 150: "tab:blue"}
    label = {1: "local (n = 1)", 25: "coarse nonlocal (n = 25)", 150: "nonlocal (n = 150)"}

    # convergence of the solvers
    fig, ax = plt.subplots(figsize=(5, 4))
    h = np.array([1.0 / nx for nx, _ in ver["levels"]]) * HillChannel().length
    for key, name, m in (("transport", "transport (Newton, nonlinear S)", "o"),
                         ("poisson", "stream function (Laplace)", "s")):
        ax.loglog(h, ver[key]["l2"], m + "-", label=f"{name}: order "
                  f"{ver[key]['order_l2'][-1]:.2f}")
    if "navier_stokes" in ver:
        ns = ver["navier_stokes"]
        hn = np.array([1.0 / nx for nx, _ in ns["levels"]]) * HillChannel().length
        for key, m in (("omega", "^"), ("u", "v")):
            ax.loglog(hn, ns[key]["rms"], m + "--", label=f"Navier-Stokes {key} (Re_H "
                      f"{cfg.reynolds:g}): order {ns[key]['order_rms'][-1]:.2f}")
    ax.loglog(h, ver["transport"]["l2"][0] * (h / h[0]) ** 2, "k:", label="slope 2")
    ax.set_xlabel("cell length along the channel, dξ (hill heights)")
    ax.set_ylabel("L2 error vs manufactured solution")
    ax.legend(fontsize=8)
    ax.set_title("Solver verification (manufactured solutions)")
    fig.tight_layout()
    save(fig, "convergence.png")

    # fields of the shown geometry
    geom = cfg.geometry(a_show)
    grid = Grid(geom, cfg.nx, cfg.ny)
    with np.load(out / "data" / f"alpha{a_show:g}_field.npz") as z:
        c_f = z["c"]

    # ground truth and the three closures along vertical lines (the seed's figure)
    fig, axes = plt.subplots(1, len(lines), figsize=(5 * len(lines), 4), sharey=False)
    for ax, (x, ln) in zip(np.atleast_1d(axes), lines.items()):
        ax.plot(ln["truth"], ln["y"], "k-", lw=2.5, label="ground truth (finite volumes)")
        for n in sorted(nets):
            ax.plot(ln["pred"][n], ln["y"], "--", color=colors.get(n),
                    label=f"{label.get(n, f'n = {n}')}: roughness {ln['roughness'][n]:.1f}")
        if ln["reversed"] is not None:  # the reversed flow under the bubble
            ax.axhspan(ln["y"][0], ln["reversed"], color="0.9", label="reversed flow (u < 0)")
        ax.set_xlabel("concentration c (dimensionless)")
        ax.set_ylabel("height y (hill heights)")
        ax.set_title(f"alpha = {a_show:g} (unseen), line x = {x:g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "line.png")

    # error maps
    xv, ev = grid.vertices()
    Xv, Yv = geom.to_physical(np.hstack([xv, xv[:, :1] + geom.length]), np.hstack([ev, ev[:, :1]]))
    ns = sorted(nets)
    fig, axes = plt.subplots(len(ns) + 1, 1, figsize=(8, 2.3 * (len(ns) + 1)))
    im = axes[0].pcolormesh(Xv, Yv, c_f, shading="flat", cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="c")
    axes[0].set_title(f"ground truth c, alpha = {a_show:g} (unseen geometry)")
    pts = ps_show.positions[q_show]
    errs, rel = {}, {}
    for n in ns:
        pred, y = _predict(nets[n], ps_show, q_show, n, cfg, seed)
        errs[n], rel[n] = np.abs(pred - y), rel_l2(pred, y)
    vmax = max(e.max() for e in errs.values())
    for ax, n in zip(axes[1:], ns):
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=errs[n], s=6, cmap="magma_r", vmin=0, vmax=vmax)
        fig.colorbar(sc, ax=ax, label="|error| of c")
        ax.set_title(f"{label.get(n, f'n = {n}')}: relative L2 error {rel[n]:.3f}")
    for ax in axes:
        ax.fill_between(Xv[0], 0, Yv[0], color="0.8")
        ax.set_aspect("equal")
        ax.set_xlim(0, geom.length)
        ax.set_ylim(0, geom.height)
        ax.set_xlabel("x (hill heights)")
        ax.set_ylabel("y")
    fig.tight_layout()
    save(fig, "error_maps.png")

    # errors per unseen geometry
    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = sorted(cfg.test_alphas)
    width = 0.8 / len(ns)
    for k, n in enumerate(ns):
        row = summary["errors"][str(n)]["by_alpha"]
        m = [row[f"{a:g}"]["mean"] for a in alphas]
        s = [row[f"{a:g}"]["std"] for a in alphas]
        ax.bar(np.arange(len(alphas)) + (k - (len(ns) - 1) / 2) * width, m, width, yerr=s,
               color=colors.get(n), label=label.get(n, f"n = {n}"), capsize=3)
    lo, hi = min(cfg.train_alphas), max(cfg.train_alphas)
    ax.set_xticks(np.arange(len(alphas)))
    ax.set_xticklabels([f"{a:g}\n({'interp.' if lo <= a <= hi else 'extrap.'})" for a in alphas])
    ax.set_xlabel(f"hill steepness alpha of the unseen geometry (trained on "
                  f"{', '.join(f'{a:g}' for a in cfg.train_alphas)})")
    ax.set_ylabel("relative L2 error of c")
    ax.set_title(f"mean ± std over {len(cfg.seeds)} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "errors.png")


def cli(args) -> int:
    """``symref transport``: the verification or the whole study."""
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.verify_only:
        levels = (24, 48, 96) if args.quick else (24, 48, 96, 192)
        res = verify(levels)
        res["navier_stokes"] = verify_navier_stokes(levels, flux=StudyConfig.flux,
                                                    reynolds=StudyConfig.reynolds)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(out / "verify.json", res)
        ns = res["navier_stokes"]
        print(f"observed orders (L2): transport {res['transport']['order_l2']}, stream function "
              f"{res['poisson']['order_l2']}; Navier-Stokes (RMS) "
              + ", ".join(f"{k} {ns[k]['order_rms']}" for k in ("psi", "omega", "u", "v"))
              + f"; written {out / 'verify.json'}")
        return 0
    cfg = StudyConfig.quick() if args.quick else StudyConfig()
    opts = {k: getattr(args, k) for k in ("flow", "shape", "cloud", "selection", "draws",
                                          "features")
            if getattr(args, k, None) is not None}
    cfg = replace(cfg, **opts)
    try:
        run_study(args.out, cfg, jobs=args.jobs, plots=not args.no_plots)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {args.out}; run the same command again "
              "to resume", file=sys.stderr)
        return 130
    print(f"results: {Path(args.out) / 'study.json'}, figures: {args.out}/*.png")
    return 0
