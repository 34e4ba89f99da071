"""The ``symref`` command.

``symref check [MODEL_FILE] [--system DIR]`` runs the verification toolkit
(:mod:`symref.checks`) on a model and prints one table per system:
forces and virial against finite differences (two step sizes, observed order,
Richardson extrapolation), rotation/reflection/translation/permutation/image
invariance, and continuity across rcut.  Without MODEL_FILE a built-in random
model is used; without ``--system`` a generated molecule and a small skewed
periodic crystal (cell shorter than 2·rcut).  Exit status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEMO_CONFIG = {
    "type_map": ["C", "H", "O"],
    "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40, 40, 40],
                   "neuron": [8, 16, 32], "axis_neuron": 4, "resnet_dt": True,
                   "type_one_side": False},
    "fitting_net": {"neuron": [32, 32, 32], "resnet_dt": True},
}


def demo_model(seed: int = 0):
    """The built-in random model: :data:`DEMO_CONFIG` via :func:`symref.model.build.demo_model`."""
    from symref.model.build import demo_model as make

    return make(DEMO_CONFIG, seed=seed)


def _systems(args, model):
    from symref.io.data import load_system, make_crystal, make_molecule

    if args.system:
        from symref.io.data import map_types

        out = []
        for path in args.system:
            s = map_types(load_system(path), model.type_map)  # by element name, not index
            if not 0 <= args.frame < s.nframes:
                raise SystemExit(f"symref: --frame {args.frame} out of range: {path} has {s.nframes} frames")
            out.append((f"{path} (frame {args.frame})", s.coord[args.frame], s.atype,
                        None if s.box is None else s.box[args.frame]))
        return out
    mol = make_molecule(natoms=9, ntypes=min(3, model.ntypes), seed=args.seed)
    cry = make_crystal(seed=args.seed)
    return [("built-in molecule (9 atoms, no cell)", mol.coord[0], mol.atype % model.ntypes, None),
            ("built-in triclinic crystal (8 atoms, cell ~4.2 Å < 2·rcut)", cry.coord[0],
             cry.atype % model.ntypes, cry.box[0])]


class _Backend:
    """``model`` with ``evaluate`` bound to one backend (what :func:`checks.as_calculator` calls)."""

    def __init__(self, model, backend):
        self.model, self.backend = model, backend

    def evaluate(self, coord, atype, box=None):
        return self.model.evaluate(coord, atype, box, backend=self.backend)


def backend_agreement(model, coord, atype, box) -> list:
    """The fast path against the reference on one frame: one CheckResult per quantity
    (relative to the largest reference entry; tolerances 1e-12 energy, 1e-10 the rest)."""
    from symref.checks import CheckResult

    b = None if box is None else box[None]
    ref = model.evaluate(coord[None], atype, b, backend="numpy")
    out = model.evaluate(coord[None], atype, b, backend="numba")
    results = []
    for key, tol in (("energy", 1e-12), ("forces", 1e-10), ("virial", 1e-10),
                     ("atom_virial", 1e-10)):
        err = float(np.abs(out[key] - ref[key]).max())
        scale = float(np.abs(ref[key]).max()) or 1.0
        results.append(CheckResult(f"numba vs numpy/{key}", err, err / scale, tol, err / scale <= tol,
                                   {"scale": scale}))
    return results


def cmd_check(args) -> int:
    from symref import checks

    if args.model:
        from symref.io.model_file import load_model

        model = load_model(args.model)
        label = args.model
    else:
        model = demo_model(args.seed)
        label = "built-in random se_e2_a model (3 types, rcut 4 Å, type_one_side false)"
    print(f"symref check: {label}")
    print(f"  rcut {model.rcut} Å, sel {model.sel}, precision float64, backend {args.backend}")
    from symref.io.compress import table_errors

    for where, name, errs in table_errors(model.descriptor):  # each compressed (member) part
        seg = ("fine segment", "coarse segments") if name == "se_e3" else ("first stride",
                                                                           "second stride")
        label = "compressed" if where == "descriptor" else f"compressed {where} ({name})"
        print(f"  {label}: {len(errs)} tabulated embedding nets; max |G_table - G_net| "
              f"{max(e.value_first for e in errs):.2e} ({seg[0]}), "
              f"{max(e.value_second for e in errs):.2e} ({seg[1]}); "
              f"max |dG/ds table - net| {max(e.slope_first for e in errs):.2e}, "
              f"{max(e.slope_second for e in errs):.2e}")
        kinked = sorted({ly.activation for net in model.descriptor.embeddings for ly in net}
                        & {"relu", "relu6"})
        if kinked:
            print(f"  ({'/'.join(kinked)} embedding nets have kinks; deepmd-kit tabulates them "
                  "all the same, and the table misses the net on each interval holding one)")
    if args.backend == "numba":
        print("  (the first run compiles the numba kernels, ~20 s; later runs load them from cache)")
    print()
    ok = True
    from symref.model.tensor import DeepTensor

    tensor = isinstance(model, DeepTensor)  # dipole / polarizability model
    for name, coord, atype, box in _systems(args, model):
        t0 = time.perf_counter()
        if tensor:
            results = _tensor_checks(model, coord, atype, box, args.seed)
        else:
            calc = checks.as_calculator(_Backend(model, args.backend), atype)
            results = checks.run_all_checks(calc, coord, box, atype=atype, rcut=model.rcut,
                                            rng=np.random.default_rng(args.seed),
                                            natoms_sample=args.sample)
            if args.backend == "numba":
                results += backend_agreement(model, coord, atype, box)
        print(f"== {name}: {len(atype)} atoms ({time.perf_counter() - t0:.1f} s)")
        print(checks.format_table(results))
        print()
        ok &= checks.all_passed(results)
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


def _tensor_checks(model, coord, atype, box, seed) -> list:
    """Equivariance of the global output and, for each of its components, its
    position derivative against finite differences (order 2)."""
    from symref import checks

    name = model.var_name
    out = "vector" if model.kind == "dipole" else "tensor"
    results = checks.check_tensor_symmetry(
        lambda c, b: model.evaluate(c, atype, b)[name][0], coord, box, atype, out,
        rng=np.random.default_rng(seed))
    n = len(atype)
    for comp in np.ndindex(*model.fitting.out_shape):
        def fun(x, comp=comp):
            e = model.evaluate(x.reshape(1, n, 3), atype, box, derivative=True)
            return e[name][0][comp], e[f"{name}_derivative"][0][comp].ravel()

        results.append(checks.check_gradient_fd(
            fun, coord.ravel(), steps=(1e-3, 5e-4), ncomponents=min(3 * n, 24),
            rng=np.random.default_rng(seed), name=f"{name}{list(comp)}_derivative_fd"))
    return results


def cmd_train(args) -> int:
    """``symref train input.json``: :func:`symref.train.run.train_from_input`."""
    from symref.train.run import train_from_input

    return train_from_input(args.input, args.output, restart=args.restart,
                            init_model=args.init_model, init_frz_model=args.init_frz_model,
                            valid_fraction=args.valid_fraction, mpi=getattr(args, "mpi", False),
                            stat_frames=getattr(args, "stat_frames", "first"))


def cmd_test(args) -> int:
    """``symref test -m MODEL -s SYSTEM...``: MAE/RMSE like ``dp test`` and a parity plot."""
    from symref.io.data import load_systems
    from symref.io.model_file import load_model
    from symref.train.report import errors_table, format_errors, parity_plot

    model = load_model(args.model)
    systems = load_systems(args.system, model.type_map)
    from symref.model.tensor import DeepTensor

    if isinstance(model, DeepTensor):  # dipole / polarizability model
        return _test_tensor(args, model, systems)
    table = errors_table(model, systems, args.numb_test)
    print(f"symref test: {args.model} on {len(systems)} system(s)")
    print(format_errors(table))
    if args.detail_file:
        from symref.train.report import detail_files

        for path in detail_files(model, systems, args.detail_file, args.numb_test):
            print(f"detail file: {path}")
    if args.plot:
        parity_plot(table, args.plot)
        print(f"parity plot: {args.plot}")
    return 0


def _test_tensor(args, model, systems) -> int:
    """``symref test`` for a dipole/polarizability model: RMSE of the global and the
    atomic labels (atoms of the selected types) per system, each beside the labels'
    standard deviation for scale."""
    from symref.io.data import select_frames
    from symref.train.fit import tensor_errors, tensor_labels

    name = model.var_name
    print(f"symref test: {args.model} ({name} model) on {len(systems)} system(s)")
    print(f"  {'system':40s} {'frames':>6s} {'RMSE global':>12s} {'(label std)':>12s} "
          f"{'RMSE atomic':>12s} {'(label std)':>12s}")
    for s in systems:
        if args.numb_test:
            s = select_frames(s, np.arange(min(args.numb_test, s.nframes)))
        e = tensor_errors(model, s)
        label, atom = tensor_labels(model, s)
        sel = ~np.isin(s.atype, model.atom_exclude_types)

        def fmt(key, ref):
            return (f"{e[key]:12.4e} {float(np.std(ref)):12.4e}" if key in e
                    else f"{'-':>12s} {'-':>12s}")

        print(f"  {str(s.name)[-40:]:40s} {s.nframes:6d} {fmt('rmse_gl_total', label)} "
              f"{fmt('rmse_lc', None if atom is None else atom[:, sel])}")
    return 0


def cmd_plot(args) -> int:
    from symref.train.report import plot_lcurve

    out = args.output or str(Path(args.lcurve).with_suffix(".png"))
    plot_lcurve(args.lcurve, out)
    print(f"learning curves: {out}")
    return 0


def _cmd_convert(args) -> int:
    from symref.io.convert import cli

    return cli(args)


def _cmd_golden(args) -> int:
    from symref.io.golden import cli

    return cli(args)


def _cmd_model_devi(args) -> int:
    from symref.modeldevi import cli

    return cli(args)


def _cmd_lammps(args) -> int:
    from symref.lammps import cli

    return cli(args)


def _cmd_transport(args) -> int:
    from symref.transport import cli

    return cli(args)


def _cmd_neighbor_stat(args) -> int:
    from symref.io.neighbor_stat import cli

    return cli(args)


def _cmd_show(args) -> int:
    from symref.io.show import cli

    return cli(args)


def _cmd_change_bias(args) -> int:
    """``symref change-bias MODEL -s SYSTEM...``: :func:`symref.train.stats.change_bias`."""
    from symref.io.data import find_systems, load_systems
    from symref.io.model_file import load_model, save_model
    from symref.train.stats import change_bias

    model = load_model(args.model)
    if not hasattr(model.fitting, "bias_atom_e"):
        raise ValueError(f"{args.model}: change-bias needs an energy model")
    paths = [p for s in args.system for p in find_systems(s)]
    old, new = change_bias(model, load_systems(paths, model.type_map), args.mode,
                           args.numb_batch)
    src = Path(args.model)
    out = Path(args.output) if args.output else src.with_name(f"{src.stem}_updated{src.suffix}")
    save_model(model, out)
    for t, name in enumerate(model.type_map):
        print(f"  {name}: energy bias {old[t]:.6f} -> {new[t]:.6f} eV")
    print(f"symref change-bias ({args.mode}, {len(paths)} system(s)): wrote {out}")
    return 0


def _cmd_compress(args) -> int:
    from symref.io.compress import compress_file

    res = compress_file(args.model, args.output, min_nbor_dist=args.min_nbor_dist,
                        systems=args.system or (), stride=args.step, extrapolate=args.extrapolate)
    n = sum(1 for _, _, t in res["parts"] for d in t.data if np.size(d))
    print(f"min_nbor_dist {res['min_nbor_dist']:.6f} Å (from the {res['source']}); "
          f"{n} embedding nets tabulated; written {args.output}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1 (``-n -1`` would silently drop the last frame)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="symref", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="verify forces, virial, symmetries and smoothness of a model")
    p.add_argument("model", nargs="?", help="deepmd-kit model file (.dp, .yaml); default: built-in random model")
    p.add_argument("--system", action="append", help="deepmd-kit npy system folder (repeatable)")
    p.add_argument("--frame", type=int, default=0, help="frame of each system to check (default 0)")
    p.add_argument("--sample", type=int, default=None,
                   help="finite-difference forces on this many random atoms only (large systems)")
    p.add_argument("--seed", type=int, default=0, help="random seed (built-in model, rotations)")
    p.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                   help="evaluation backend for the checks (default numba: the fast path, "
                        "also compared with the NumPy reference)")
    p.set_defaults(func=cmd_check)
    t = sub.add_parser("train", help="fit a model to deepmd-kit npy data from a deepmd-kit input.json")
    t.add_argument("input", help="deepmd-kit input.json (model, learning_rate, loss, training, "
                                 "optional optimizer)")
    t.add_argument("--restart", default=None, help="checkpoint to continue from")
    t.add_argument("--init-model", default=None,
                   help="model file or symref checkpoint to start from (its parameters and "
                        "statistics; step 0, a fresh optimiser), as dp train --init-model")
    t.add_argument("-f", "--init-frz-model", default=None,
                   help="frozen model file (.dp, .yaml, .json) to start from: its weights, "
                        "statistics and output bias as they are, step 0, a fresh optimiser, "
                        "as dp --pt train --init-frz-model")
    t.add_argument("--valid-fraction", type=float, default=0.0,
                   help="hold out this fraction of every training system's frames for "
                        "validation (seeded by training.seed; instead of validation_data)")
    t.add_argument("--stat-frames", choices=("first", "random"), default="first",
                   help="frames of the statistics (davg/dstd, energy bias): as many as "
                        "deepmd-kit samples per system, the first ones (default) or a random "
                        "subset seeded by training.seed (deepmd-kit's rule; its torch-drawn "
                        "frames cannot be reproduced)")
    t.add_argument("-o", "--output", default="model.yaml",
                   help="final model file (.yaml, .json, or .dp for deepmd-kit; default model.yaml)")
    t.add_argument("--mpi", action="store_true",
                   help="use MPI (mpi4py) even if the launcher is not recognised; by default "
                        "MPI is used when mpiexec/srun announce more than one rank")
    t.set_defaults(func=cmd_train)
    q = sub.add_parser("test", help="errors of a model on labelled deepmd-kit npy systems")
    q.add_argument("-m", "--model", required=True, help="model file (.dp, .yaml, .json)")
    q.add_argument("-s", "--system", required=True, nargs="+", help="deepmd-kit npy system folders")
    q.add_argument("-n", "--numb-test", type=_positive_int, default=None,
                   help="frames per system (default: all)")
    q.add_argument("--plot", default="parity.png", help="parity plot PNG ('' for none)")
    q.add_argument("-d", "--detail-file", default=None,
                   help="write dp test's per-frame/per-atom files PREFIX.e.out, "
                        ".e_peratom.out, .f.out (.v.out, .v_peratom.out with virials)")
    q.set_defaults(func=cmd_test)
    pl = sub.add_parser("plot", help="learning curves of an lcurve.out as PNG")
    pl.add_argument("lcurve", help="lcurve.out written by symref train or deepmd-kit")
    pl.add_argument("-o", "--output", default=None, help="PNG file (default: lcurve.png)")
    pl.set_defaults(func=cmd_plot)
    cv = sub.add_parser("convert", help="convert between ASE files (extxyz, ...) and deepmd-kit "
                                        "npy systems, either way (needs ase)")
    cv.add_argument("input", help="a file ase.io reads (-> npy) or an npy system folder (-> ASE)")
    cv.add_argument("output", help="new npy folder, or an ASE file (format from the suffix)")
    cv.add_argument("--type-map", nargs="+", default=None,
                    help="element names in type order (default: order of first appearance)")
    cv.add_argument("--format", default=None, help="ase.io format of the ASE side")
    cv.add_argument("--index", default=":", help="frames of the ASE input (ase.io index, default all)")
    cv.add_argument("--set-size", type=int, default=None, help="frames per set.NNN (default: one set)")
    cv.add_argument("--energy-key", default="energy")
    cv.add_argument("--forces-key", default="forces")
    cv.add_argument("--stress-key", default="stress", help="ASE stress (eV/Å^3; virial = -stress*V)")
    cv.add_argument("--virial-key", default="virial",
                    help="info key of a virial in eV (deepmd-kit's sign); preferred over the stress")
    cv.add_argument("--mixed-pbc", choices=("error", "periodic"), default="error",
                    help="frames periodic along some axes only: refuse (default) or write the "
                         "cell as a fully periodic box")
    cv.set_defaults(func=_cmd_convert)
    md = sub.add_parser("model-devi", help="model deviation of an ensemble on npy systems "
                                           "(dp model-devi's file)")
    md.add_argument("-m", "--models", required=True, nargs="+", help="two or more model files")
    md.add_argument("-s", "--system", required=True, nargs="+",
                    help="npy system folders (or folders containing systems)")
    md.add_argument("-o", "--output", default="model_devi.out", help="output file")
    md.add_argument("-f", "--frequency", type=int, default=1,
                    help="steps between frames (the step column is frame x frequency)")
    md.add_argument("-a", "--atomic", action="store_true", help="also the force deviation per atom")
    md.add_argument("-r", "--relative", type=float, default=None,
                    help="relative force deviation with this level (eV/Å)")
    md.add_argument("--relative-v", type=float, default=None,
                    help="relative virial deviation with this level (eV/atom)")
    md.add_argument("--backend", choices=("numba", "numpy"), default="numba")
    md.set_defaults(func=_cmd_model_devi)
    gd = sub.add_parser("golden", help="golden vectors: every stage of one frame for porters "
                                       "(dump), or stage-by-stage comparison of two dumps")
    gd.add_argument("model", nargs="?", help="model file (.dp, .yaml, .json) to dump")
    gd.add_argument("--system", default=None, help="deepmd-kit npy system folder")
    gd.add_argument("--frame", type=int, default=0, help="frame of the system (default 0)")
    gd.add_argument("-o", "--output", default=None, help="output folder of the dump")
    gd.add_argument("--truncate", action="store_true",
                    help="deepmd-kit's neighbour truncation when sel is exceeded "
                         "(default: an error naming the atom)")
    gd.add_argument("--compare", nargs=2, metavar=("DIR_A", "DIR_B"), default=None,
                    help="compare dump DIR_B (e.g. a port's) with the reference dump DIR_A; "
                         "exit status 1 when a stage is beyond tolerance")
    gd.add_argument("--rtol", type=float, default=None,
                    help="relative tolerance, times max|a| of each stage (default 1e-10)")
    gd.add_argument("--atol", type=float, default=None, help="absolute tolerance (default 1e-12)")
    gd.set_defaults(func=_cmd_golden)
    tr = sub.add_parser("transport", help="transport-equation study: verified PDE data, VCNN "
                                          "closures with clouds of n = 1, 25, 150 points")
    tr.add_argument("--out", default="transport_study",
                    help="output folder (cached data, models, results, figures; a rerun resumes)")
    tr.add_argument("--quick", action="store_true",
                    help="small study (under a minute) instead of the full one (~6 minutes)")
    tr.add_argument("--jobs", type=int, default=None,
                    help="training runs at a time (default: number of cores)")
    tr.add_argument("--verify-only", action="store_true",
                    help="only the manufactured-solution convergence checks of the solvers "
                         "(transport, stream function, Navier-Stokes)")
    tr.add_argument("--no-plots", action="store_true", help="skip the figures")
    tr.add_argument("--flow", choices=("navier_stokes", "potential"), default="navier_stokes",
                    help="steady viscous flow with a recirculation bubble (default) or "
                         "potential flow")
    tr.add_argument("--shape", choices=("benchmark", "cosine"), default="benchmark",
                    help="hill family: the benchmark's piecewise-cubic hill, alpha its width "
                         "(default), or the cosine hill, alpha its steepness")
    tr.add_argument("--cloud", choices=("coefficients", "upstream"), default="coefficients",
                    help="cloud region: the VCNN paper's ellipse sized by the equation's "
                         "coefficients (default) or a fixed upstream ellipse")
    tr.add_argument("--selection", choices=("stencil", "nearest", "random"), default="stencil",
                    help="cloud points: a fixed stencil in the ellipse with the fields "
                         "interpolated to it (default: smooth predictions), the nearest points "
                         "of the point set, or seeded random draws from it")
    tr.add_argument("--draws", type=int, default=1,
                    help="with --selection random: predictions averaged over this many draws")
    tr.add_argument("--features", choices=("symref", "paper"), default="symref",
                    help="per-point features: relative position, velocity, log-production "
                         "(default) or the VCNN paper's set (direction, velocity, strain rate, "
                         "cell area, speed, wall distance, proximity, upstream weight)")
    tr.set_defaults(func=_cmd_transport)
    lm = sub.add_parser("lammps", help="run a LAMMPS input with a symref model as the force "
                                       "field (fix external; mpiexec -n K for K ranks)")
    lm.add_argument("input", help="LAMMPS input (units metal, no pair style, and the line "
                                  "'fix symref all external pf/callback 1 1')")
    lm.add_argument("--model", "-m", required=True, help="symref or deepmd-kit model file")
    lm.add_argument("--type-map", nargs="+", default=None,
                    help="element of each LAMMPS type, type 1 first (default: the model's)")
    lm.add_argument("--mode", choices=("auto", "ghost", "periodic"), default="auto",
                    help="how ranks get exact forces (docstring of symref/lammps.py)")
    lm.add_argument("--fix-id", default="symref", help="ID of the fix external line")
    lm.add_argument("--log", default=None, help="LAMMPS log file (default: none)")
    lm.add_argument("--quiet", action="store_true", help="no LAMMPS screen output (thermo)")
    lm.set_defaults(func=_cmd_lammps)
    cp = sub.add_parser("compress", help="tabulate the embedding nets as deepmd-kit's dp compress does")
    cp.add_argument("model", help="deepmd-kit / symref model file (.dp, .yaml, .json)")
    cp.add_argument("-o", "--output", required=True, help="compressed model file to write")
    src = cp.add_mutually_exclusive_group()
    src.add_argument("--min-nbor-dist", type=float, default=None,
                     help="minimum neighbour distance (Å) the tables start from")
    src.add_argument("-s", "--system", nargs="+", default=None,
                     help="npy systems to take the minimum neighbour distance from")
    cp.add_argument("--step", type=float, default=0.01, help="first table stride (default 0.01; "
                    "the second is 10x)")
    cp.add_argument("--extrapolate", type=float, default=5.0,
                    help="table range as a multiple of the upper bound (default 5)")
    cp.set_defaults(func=_cmd_compress)
    sh = sub.add_parser("show", help="type map, descriptor, fitting net, sizes, cutoff and "
                                     "precision of a model file (dp show)")
    sh.add_argument("model", help="model file (.dp, .yaml, .json)")
    sh.add_argument("attributes", nargs="*",
                    help="any of type-map descriptor fitting-net size summary (default: all)")
    sh.set_defaults(func=_cmd_show)
    cb = sub.add_parser("change-bias", help="refit the energy bias of a model on npy systems "
                                            "(dp change-bias)")
    cb.add_argument("model", help="model file (.dp, .yaml, .json)")
    cb.add_argument("-s", "--system", required=True, nargs="+",
                    help="npy system folders (or folders containing systems)")
    cb.add_argument("-n", "--numb-batch", type=int, default=0,
                    help="frames of each system used (0, the default: all)")
    cb.add_argument("-m", "--mode", choices=("change", "set"), default="change",
                    help="change: least-squares shift of the model's energy errors added to "
                         "the bias (default); set: the bias from the labels alone")
    cb.add_argument("-o", "--output", default=None,
                    help="model file to write (default: MODEL_updated with the same suffix)")
    cb.set_defaults(func=_cmd_change_bias)
    ns = sub.add_parser("neighbor-stat", help="minimum neighbour distance and the largest "
                                              "neighbour count per type (dp neighbor-stat)")
    ns.add_argument("-s", "--system", required=True, nargs="+",
                    help="npy system folders (or folders containing systems)")
    ns.add_argument("-r", "--rcut", required=True, type=float, help="cutoff radius (Å)")
    ns.add_argument("-t", "--type-map", nargs="+", default=None,
                    help="element names in type order (default: the systems' type_map.raw)")
    ns.set_defaults(func=_cmd_neighbor_stat)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError, TypeError) as exc:
        print(f"symref: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
