"""symref train is dp --pt train, step for step (issue 25): from one frozen model, on one
system whose frames all form the batch (no sampling), 12 Adam steps of both codes give the
same lcurve.out (every value to deepmd-kit's printed precision) and the same final model
(outputs to 1e-12 relative), while training moves the outputs by far more than that.

Cases: an energy model with e/f/v prefactors (exp schedule; cosine after a warm-up;
with the atomic-energy and prefactor-force terms and relative_f); dipole (atomic +
global labels, global only), full (shift_diag) and diagonal (scale) polarizability
models with ``atom_exclude_types`` (the loss's atomic term a mean over the selected
atoms only).  And the statistics: when the sample covers every frame, symref train's
davg/dstd/energy bias/diagonal shift are dp --pt train's.
The atomic labels are written with one row per atom (zeros on excluded atoms):
deepmd-kit 3.2's PyTorch tensor loss reads ``atomic_dipole.npy`` without its
selected-types layout (a file of 3 x nsel values per frame is reshaped to whole frames
and broadcast)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from symref import cli

pytestmark = [pytest.mark.deepmd, pytest.mark.data, pytest.mark.slow]

NFRAMES = 3
_NETS = {"descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 60],
                        "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
         "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "seed": 1}}
_TRAINING = {"training_data": {"systems": None, "batch_size": NFRAMES}, "numb_steps": 12,
             "seed": 10, "disp_file": "lcurve.out", "disp_freq": 1, "save_freq": 100}

#: energy model: e/f/v prefactors moving with the learning rate (exp decay every 5 steps)
ENERGY_INPUT = {
    "model": {"type_map": ["O", "H"], **_NETS},
    "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 5},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1, "start_pref_v": 0.5, "limit_pref_v": 2},
    "training": _TRAINING}

#: the energy loss's other terms: atomic energy (atom_ener.npy), prefactor force
#: (atom_pref.npy), relative force errors; e/f/v as above
ENERGY_TERMS_INPUT = {
    **ENERGY_INPUT,
    "loss": {**ENERGY_INPUT["loss"], "start_pref_ae": 2.0, "limit_pref_ae": 0.5,
             "start_pref_pf": 50.0, "limit_pref_pf": 1.0, "relative_f": 0.5}}


def _tensor_input(fitting: dict, pref: float, pref_atomic: float) -> dict:
    """A tensor model on the oxygens (H excluded by atom_exclude_types)."""
    return {"model": {"type_map": ["O", "H"], "atom_exclude_types": [1], **_NETS,
                      "fitting_net": {**_NETS["fitting_net"], **fitting}},
            "learning_rate": {"type": "exp", "start_lr": 1e-2, "stop_lr": 1e-4,
                              "decay_steps": 5},
            "loss": {"type": "tensor", "pref": pref, "pref_atomic": pref_atomic},
            "training": _TRAINING}


#: tensor cases: (input, labels written: "global", "atomic" or both)
TENSOR_CASES = {
    "atomic+global dipole": (_tensor_input({"type": "dipole"}, 1.0, 1.0), ("global", "atomic")),
    "global dipole": (_tensor_input({"type": "dipole"}, 1.0, 0.0), ("global",)),
    "polarizability (full, shift_diag)": (
        _tensor_input({"type": "polar", "fit_diag": False, "shift_diag": True}, 1.0, 1.0),
        ("global", "atomic")),
    "polarizability (diagonal, scale)": (
        _tensor_input({"type": "polar", "fit_diag": True, "scale": [2.0, 1.0]}, 1.0, 1.0),
        ("global", "atomic")),
}


def _water_system(shared_data, path, kind, labels=()):
    """The first 3 frames of water/data_0 (64 H2O).  ``"ener"``: energy, force and a
    symmetric synthetic virial (the data has none), so that all three loss terms train;
    with ``labels`` ("atom_ener", "atom_pref"): synthetic atomic energies (E/N plus
    noise) and force weights (uniform in [0.5, 2]; written 3 per atom, the layout
    deepmd-kit 3.2's PyTorch loader trains with: it reads atom_pref.npy frame by frame
    without the 3-fold repeat its loss needs, so a file of natoms values per frame fails);
    ``"dipole"`` / ``"polarizability"``: symref.synthetic's water tensors, the
    ``labels`` ("global", "atomic": a row per atom, zeros on H)."""
    from symref.io.data import System, load_systems, save_system

    src = load_systems([shared_data / "water" / "data_0"], ["O", "H"])[0]
    coord, box = src.coord[:NFRAMES], src.box[:NFRAMES]
    if kind == "ener":
        vir = np.random.default_rng(0).normal(scale=2.0, size=(NFRAMES, 3, 3))
        rng = np.random.default_rng(1)
        shape = (NFRAMES, src.natoms)
        extra = {"atom_ener": src.energy[:NFRAMES, None] / src.natoms
                 + rng.normal(scale=0.05, size=shape),
                 "atom_pref": np.repeat(rng.uniform(0.5, 2.0, size=shape)[..., None], 3, -1)}
        save_system(System(type_map=["O", "H"], atype=src.atype, coord=coord, box=box,
                           energy=src.energy[:NFRAMES], force=src.force[:NFRAMES],
                           virial=vir + vir.transpose(0, 2, 1), name=str(path),
                           tensors={k: extra[k] for k in labels}), path)
        return
    from symref.synthetic import water_tensor_labels

    lab = water_tensor_labels(coord, src.atype, box)
    save_system(System(["O", "H"], src.atype, coord, box, name=str(path),
                       tensors={kind: lab[kind]} if "global" in labels else {}), path)
    if "atomic" in labels:
        full = np.zeros((NFRAMES, src.natoms) + lab[kind].shape[1:])  # a row per atom
        full[:, src.atype == 0] = lab[f"atom_{kind}"]
        np.save(path / "set.000" / f"atomic_{kind}.npy", full.reshape(NFRAMES, -1))


def _frozen_start(input_file, system, folder, dp):
    """The starting model: built from the input's model section by symref, statistics of
    the system (davg/dstd; the energy bias), written as .dp and converted to deepmd-kit's
    frozen .pth by ``dp convert-backend``."""
    import symref
    from symref.io.data import load_systems
    from symref.io.inputfile import read_input
    from symref.model.build import build_model
    from symref.model.tensor import DeepTensor
    from symref.train.stats import (apply_statistics, compute_statistics, env_stat,
                                    stat_frames, tensor_shift)

    mc = read_input(input_file)[0]["model"]
    model = build_model(mc, seed=1)
    frames = stat_frames(load_systems([system], mc["type_map"]), data_stat_nbatch=10,
                         batch_size=NFRAMES)
    if isinstance(model, DeepTensor):
        apply_statistics(model, *env_stat(model, frames))
        if model.kind == "polar" and model.fitting.shift_diag:
            model.out_bias = tensor_shift(model, frames)
    else:
        compute_statistics(model, frames)
    symref.save_model(model, folder / "init.dp")
    dp.run_dp(["convert-backend", "init.dp", "init.pth"], cwd=folder)
    return model


def _rows(path):
    return [ln.split() for ln in path.read_text().splitlines() if not ln.startswith("#")]


def _train_both(tmp_path, shared_data, dp, monkeypatch, capsys, template, kind, labels=()):
    """Both trainings from one frozen model; returns (start model, symref's final model,
    deepmd-kit's checkpoint path, the system), after checking lcurve.out line for line."""
    import symref
    from symref.io.data import load_systems

    _water_system(shared_data, tmp_path / "sys", kind, labels)
    cfg = json.loads(json.dumps(template))
    cfg["training"]["training_data"]["systems"] = [str(tmp_path / "sys")]
    for d in ("dp", "sr"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "input.json").write_text(json.dumps(cfg))
    start = _frozen_start(tmp_path / "sr" / "input.json", tmp_path / "sys", tmp_path, dp)
    dp.run_dp(["--pt", "train", "input.json", "--init-frz-model", "../init.pth",
               "--skip-neighbor-stat"], cwd=tmp_path / "dp")
    monkeypatch.chdir(tmp_path / "sr")
    assert cli.main(["train", "input.json", "--init-frz-model", "../init.dp",
                     "-o", "final.yaml"]) == 0
    capsys.readouterr()
    want, got = _rows(tmp_path / "dp" / "lcurve.out"), _rows(tmp_path / "sr" / "lcurve.out")
    assert len(want) == 12 and got == want
    heads = [(tmp_path / d / "lcurve.out").read_text().splitlines()[0] for d in ("dp", "sr")]
    assert heads[0] == heads[1]
    system = load_systems([tmp_path / "sys"], ["O", "H"])[0]
    return start, symref.load_model(tmp_path / "sr" / "final.yaml"), \
        str(tmp_path / "dp" / "model.ckpt.pt"), system


def _compare(key, ours, ref, before):
    """max |ours - ref| / max |ref| <= 1e-12 (the issue asks 1e-8; measured 1.5e-14 at
    most), and training moved the output by > 1e-5 of that scale (printed: the measured
    numbers)."""
    ref = np.asarray(ref).reshape(np.shape(ours))
    dev = np.abs(ours - ref).max() / np.abs(ref).max()
    moved = np.abs(before - ref).max() / np.abs(ref).max()
    print(f"{key}: max deviation from dp {dev:.2e} (relative), moved by training {moved:.2e}")
    assert dev <= 1e-12, (key, dev)
    assert moved > 1e-5, (key, moved)


#: learning-rate sections of the energy case: exp decay every 5 steps; cosine after a
#: 3-step linear warm-up
SCHEDULES = {
    "exp": ENERGY_INPUT["learning_rate"],
    "cosine+warmup": {"type": "cosine", "start_lr": 1e-3, "stop_lr": 1e-5,
                      "warmup_steps": 3, "warmup_start_factor": 0.1},
}
#: energy cases: (input, per-atom label files written)
ENERGY_CASES = {
    "exp": (ENERGY_INPUT, ()),
    "cosine+warmup": ({**ENERGY_INPUT, "learning_rate": SCHEDULES["cosine+warmup"]}, ()),
    "ae+pf+relative_f": (ENERGY_TERMS_INPUT, ("atom_ener", "atom_pref")),
}


@pytest.mark.parametrize("case", list(ENERGY_CASES))
def test_energy_model_trains_as_dp_step_for_step(case, tmp_path, shared_data, dp, pt,
                                                 monkeypatch, capsys):
    """Energy (e/f/v): dp --pt train --init-frz-model init.pth and symref train
    --init-frz-model init.dp: lcurve.out identical as text (all 12 rows, every column),
    final energies, forces and virials on the 3 frames within 1e-12 of deepmd-kit's
    (max |difference| / max |value|), and each moved by more than 1e-5 from the start;
    with the exp schedule, with cosine after a warm-up (prefactors follow lr), and with
    the atomic-energy and prefactor-force terms and relative force errors (columns
    rmse_ae, rmse_pf; atom energies compared too)."""
    template, labels = ENERGY_CASES[case]
    start, final, ckpt, s = _train_both(tmp_path, shared_data, dp, monkeypatch, capsys,
                                        template, "ener", labels)
    from deepmd.infer import DeepPot

    e, f, v, ae = DeepPot(ckpt).eval(s.coord.reshape(NFRAMES, -1), s.box.reshape(NFRAMES, 9),
                                     s.atype, atomic=True)[:4]
    ours, before = (m.evaluate(s.coord, s.atype, s.box) for m in (final, start))
    for key, ref in (("energy", e), ("forces", f), ("virial", v), ("atom_energy", ae)):
        _compare(key, ours[key], ref, before[key])


@pytest.mark.parametrize("case", list(TENSOR_CASES))
def test_tensor_model_with_excluded_atoms_trains_as_dp_step_for_step(
        case, tmp_path, shared_data, dp, pt, monkeypatch, capsys):
    """Dipole / polarizability on O (atom_exclude_types [1]): lcurve.out identical as
    text (rmse_global_* per selected atom, rmse_local_* over the selected atoms; deepmd-kit's
    column names), final global and atomic tensors within 1e-12 of deepmd-kit's, each moved
    by more than 1e-5 (the fitting's bias_atom is not trained, as in dp).  Cases: atomic +
    global dipole labels, global dipole only, full polarizability with shift_diag, diagonal
    polarizability with scale."""
    template, labels = TENSOR_CASES[case]
    kind = "dipole" if template["model"]["fitting_net"]["type"] == "dipole" else "polarizability"
    start, final, ckpt, s = _train_both(tmp_path, shared_data, dp, monkeypatch, capsys,
                                        template, kind, labels)
    if kind == "dipole":
        from deepmd.infer.deep_dipole import DeepDipole as Deep
    else:
        from deepmd.infer.deep_polar import DeepPolar as Deep
    model = Deep(ckpt)
    args = (s.coord.reshape(NFRAMES, -1), s.box.reshape(NFRAMES, 9), s.atype)
    glob, atom = model.eval(*args, atomic=False), model.eval(*args, atomic=True)
    ours, before = (m.evaluate(s.coord, s.atype, s.box) for m in (final, start))
    _compare(kind, ours[kind], glob, before[kind])
    sel = s.atype == 0
    width = int(np.prod(ours[kind].shape[1:]))
    atom = np.asarray(atom).reshape(NFRAMES, -1, width)
    atom = atom[:, sel] if atom.shape[1] == s.natoms else atom
    key = f"atom_{kind}"
    _compare(key, ours[key][:, sel].reshape(atom.shape), atom,
             before[key][:, sel].reshape(atom.shape))


@pytest.mark.parametrize("case", ["energy", "polarizability (full, shift_diag)"])
def test_statistics_are_dps_when_the_sample_covers_every_frame(case, tmp_path, shared_data, dp,
                                                               pt, monkeypatch, capsys):
    """Statistics frames (issue 25, item 5): with data_stat_nbatch x batch_size >= the
    system's frames, deepmd-kit's shuffled sample is every frame, so ``symref train``'s
    statistics must be those ``dp --pt train`` computes from the same input (compared after
    1 step: none of them is trained), to 1e-10 relative, with --stat-frames "first" (the
    default) and "random": davg, dstd, the energy bias (out_bias), out_std;
    for a polarizability with shift_diag the diagonal shift the model adds (the mean of
    out_bias[t]'s diagonal times scale[t]: deepmd-kit stores the whole per-type mean
    tensor in out_bias, symref its isotropic part; only that part is used)."""
    import symref

    from test_stats import compare_models, rel_err

    if case == "energy":
        template, kind, labels = ENERGY_INPUT, "ener", ()
    else:
        (template, labels), kind = TENSOR_CASES[case], "polarizability"
    _water_system(shared_data, tmp_path / "sys", kind, labels)
    cfg = json.loads(json.dumps(template))
    cfg["training"].update(numb_steps=1, training_data={"systems": [str(tmp_path / "sys")],
                                                        "batch_size": 1})
    cfg["model"]["data_stat_nbatch"] = NFRAMES  # 3 batches of 1 frame: every frame
    for name in ("dp", "first", "random"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "input.json").write_text(json.dumps(cfg))
    dp.run_dp(["--pt", "train", "input.json", "--skip-neighbor-stat"], cwd=tmp_path / "dp")
    dp.run_dp(["--pt", "freeze", "-o", "frozen.pth"], cwd=tmp_path / "dp")
    dp.run_dp(["convert-backend", "frozen.pth", "frozen.dp"], cwd=tmp_path / "dp")
    from symref.io.model_file import read_model_file

    ref = read_model_file(tmp_path / "dp" / "frozen.dp")["model"]
    for name in ("first", "random"):
        monkeypatch.chdir(tmp_path / name)
        assert cli.main(["train", "input.json", "-o", "final.yaml", "--stat-frames", name]) == 0
        capsys.readouterr()
        ours = symref.load_model(tmp_path / name / "final.yaml")
        if kind == "ener":
            with capsys.disabled():  # the measured deviations, for every rule
                compare_models(ours, ref, name)
            continue
        theirs = symref.io.model_file.model_from_dict(ref)

        def shift(m):  # what shift_diag adds: mean of out_bias[t]'s diagonal x scale[t]
            diag = np.diagonal(np.asarray(m.out_bias).reshape(-1, 3, 3), axis1=1, axis2=2)
            return diag.mean(axis=1) * np.asarray(m.fitting.scale).reshape(-1)

        assert np.abs(shift(theirs)).max() > 0  # the shift is there
        for key, a, b in (("davg", ours.descriptor.davg, theirs.descriptor.davg),
                          ("dstd", ours.descriptor.dstd, theirs.descriptor.dstd),
                          ("diagonal shift", shift(ours), shift(theirs))):
            e = rel_err(a, b)
            with capsys.disabled():
                print(f"{name}: {key} relative deviation {e:.1e}")
            assert e <= 1e-10, (name, key, e)
