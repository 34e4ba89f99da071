"""symref against deepmd-kit itself: models built in deepmd-kit, moved through model files.

Energies and atomic energies are compared with deepmd-kit's NumPy backend;
forces, virials and atomic virials with its PyTorch backend (tests/deepmd_ref.py,
which documents the op-library workaround).  Tolerance: 1e-10 relative to the
largest magnitude of each reference quantity, float64.

The PyTorch comparisons skip (saying why) when torch is not installed, unless
SYMREF_REQUIRE_PT=1 (set by .ci/run once it installed torch), which makes the
absence a failure.  A deepmd.pt import that fails for another reason is an error.
"""

import numpy as np
import pytest

pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")

import deepmd_ref  # noqa: E402
from deepmd.dpmodel.utils.serialization import save_dp_model  # noqa: E402

import symref  # noqa: E402
import symref.io.model_file  # noqa: E402,F401  (symref.io.model_file.model_from_dict below)
from symref.io.data import load_system, make_crystal

pytestmark = [pytest.mark.deepmd]
RTOL = 1e-10
#: largest relative deviation seen per (case, quantity); printed at the end of the module
DEVIATIONS = {}


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def compare(case, ours, ref, keys):
    for k in keys:
        e = rel_err(ours[k], ref[k])
        DEVIATIONS[(case, k)] = max(e, DEVIATIONS.get((case, k), 0.0))
        assert e <= RTOL, f"{case}: {k} relative deviation {e:.2e} > {RTOL:.0e}"


def through_file(tmp_path, model_dict, suffix):
    """Write the deepmd-kit model with deepmd-kit's own writer, read it with symref."""
    path = tmp_path / f"model{suffix}"
    save_dp_model(str(path), {"backend": "DP", "model": model_dict, "model_def_script": {},
                              "@variables": {}, "software": "deepmd-kit"})
    return symref.load_model(path)


def water(shared_data, nframes=2):
    s = load_system(shared_data / "water" / "data_3")
    return s.coord[:nframes], s.atype, s.box[:nframes].reshape(nframes, 9)


WATER = dict(sel=[46, 92], neuron=[25, 50, 100], axis_neuron=16, fitting_neuron=[240, 240, 240],
             rcut=6.0, rcut_smth=0.5)


@pytest.mark.parametrize("type_one_side", [True, False])
def test_water_periodic(tmp_path, shared_data, pt, type_one_side):
    """64 H2O, cubic cell, deepmd-kit's example model size; .dp file written by deepmd-kit."""
    d = deepmd_ref.make_deepmd_model_dict(type_one_side, 11, type_map=["O", "H"], **WATER)
    model = through_file(tmp_path, d, ".dp")
    coord, atype, box = water(shared_data)
    # per-slot statistics: the fast path falls back to the reference, so ask for it
    ours = model.evaluate(coord, atype, box, backend="numpy")
    case = f"water/one_side={type_one_side}"
    compare(case, ours, deepmd_ref.dp_eval(d, coord, atype, box), ["energy", "atom_energy"])
    compare(case, ours, deepmd_ref.pt_eval(d, coord, atype, box),
            ["energy", "atom_energy", "forces", "virial", "atom_virial"])


@pytest.mark.parametrize("type_one_side", [True, False])
def test_water_fast_path(tmp_path, shared_data, pt, type_one_side):
    """The numba backend directly against deepmd-kit (statistics per type block, as
    deepmd-kit computes them, so the fast path runs without falling back)."""
    import warnings

    d = deepmd_ref.make_deepmd_model_dict(type_one_side, 15, type_map=["O", "H"], stats="type",
                                          **WATER)
    model = through_file(tmp_path, d, ".dp")
    coord, atype, box = water(shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ours = model.evaluate(coord, atype, box, backend="numba")
    compare(f"water-numba/one_side={type_one_side}", ours, deepmd_ref.pt_eval(d, coord, atype, box),
            ["energy", "atom_energy", "forces", "virial", "atom_virial"])


def test_forward_lower_fed_symref_neighbours(tmp_path, shared_data, pt):
    """symref.deepmd_kit (what benchmarks/bench_cuda.py times deepmd-kit with, up to
    98 304 atoms) runs deepmd-kit through ``forward_lower`` on an extended system built
    from symref's neighbour list (deepmd-kit's own ``forward`` needs an O(N²) distance
    matrix).  On the CPU, that path, with the model moved through symref's .dp writer,
    reproduces symref's energy, forces and virial: 192 atoms and a 2x2x2 replica
    (1 536 atoms, many atoms seen through several images), a skewed cell too."""
    from symref.deepmd_kit import forward_lower_eval, forward_lower_inputs, pt_model
    from symref.model.build import demo_model
    from symref.synthetic import EXAMPLE_CONFIG, EXAMPLE_SEED, replicate

    model = demo_model(EXAMPLE_CONFIG, seed=EXAMPLE_SEED)
    dp = pt_model(model, tmp_path, device="cpu")
    c, a, b = water(shared_data, 1)
    cases = {"192": (c[0], a, b.reshape(3, 3)),
             "1536": replicate(c[0], a, b.reshape(3, 3), (2, 2, 2))}
    skew = b.reshape(3, 3) + np.array([[0, 0, 0], [2.5, 0, 0], [-1.5, 3.0, 0]])
    cases["192-skewed"] = (c[0], a, skew)
    for name, (coord, atype, box) in cases.items():
        coord, atype, box = np.asarray(coord), np.asarray(atype), np.asarray(box).reshape(3, 3)
        inputs = forward_lower_inputs(model, coord, atype, box)
        assert inputs["extended_coord"].shape[0] == len(np.unique(inputs["nlist"][
            inputs["nlist"] >= len(atype)])) + len(atype)  # every image once, all used
        e, f, v = forward_lower_eval(dp, inputs, "cpu")()
        ours = model.evaluate(coord, atype, box)
        compare(f"forward_lower/{name}", {"energy": ours["energy"], "forces": ours["forces"][0],
                                          "virial": ours["virial"][0]},
                {"energy": e, "forces": f, "virial": v}, ["energy", "forces", "virial"])


@pytest.mark.parametrize("type_one_side", [True, False])
def test_molecules_no_cell(tmp_path, shared_data, pt, type_one_side):
    """C/H/O molecules without a cell; .yaml file written by deepmd-kit."""
    d = deepmd_ref.make_deepmd_model_dict(type_one_side, 12, sel=[6, 6, 6], neuron=[8, 16, 32],
                                          axis_neuron=8, fitting_neuron=[32, 32], rcut=5.0,
                                          rcut_smth=1.0, type_map=["C", "H", "O"], resnet_dt=True)
    model = through_file(tmp_path, d, ".yaml")
    case = f"molecules/one_side={type_one_side}"
    for name in ("C1H4O2", "C3H3O4", "C4H3O1"):
        s = load_system(shared_data / "molecules" / name)
        coord = s.coord[:3]
        ours = model.evaluate(coord, s.atype, backend="numpy")  # per-slot statistics
        compare(case, ours, deepmd_ref.dp_eval(d, coord, s.atype), ["energy", "atom_energy"])
        compare(case, ours, deepmd_ref.pt_eval(d, coord, s.atype),
                ["energy", "atom_energy", "forces", "virial", "atom_virial"])


@pytest.mark.parametrize("type_one_side", [True, False])
def test_small_skewed_cell(pt, type_one_side):
    """Triclinic cell of side ~4.2 Å with rcut 5 > half the cell: several images of each atom."""
    d = deepmd_ref.make_deepmd_model_dict(type_one_side, 13, sel=[80, 80], neuron=[8, 16],
                                          axis_neuron=4, fitting_neuron=[16, 16], rcut=5.0,
                                          rcut_smth=1.0, type_map=["A", "B"], stats="type")
    model = symref.io.model_file.model_from_dict(d)
    s = make_crystal(seed=5)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * np.random.default_rng(0).normal(size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0).reshape(2, 9)
    ours = model.evaluate(coord, s.atype, box)
    case = f"skewed_cell/one_side={type_one_side}"
    compare(case, ours, deepmd_ref.dp_eval(d, coord, s.atype, box), ["energy", "atom_energy"])
    compare(case, ours, deepmd_ref.pt_eval(d, coord, s.atype, box),
            ["energy", "atom_energy", "forces", "virial", "atom_virial"])


def test_exclusions(shared_data, pt):
    """Descriptor exclude_types, model pair_exclude_types and atom_exclude_types together,
    leaving real interactions (O-O excluded in the descriptor, H-H pairs removed)."""
    d = deepmd_ref.make_deepmd_model_dict(False, 14, type_map=["O", "H"], exclude_types=[(0, 0)],
                                          pair_exclude_types=[(1, 1)], stats="type",
                                          **dict(WATER, neuron=[8, 16, 32], fitting_neuron=[32, 32]))
    model = symref.io.model_file.model_from_dict(d)
    coord, atype, box = water(shared_data, 1)
    ours = model.evaluate(coord, atype, box)
    assert np.abs(ours["forces"]).max() > 1e-3
    compare("exclusions", ours, deepmd_ref.pt_eval(d, coord, atype, box),
            ["energy", "atom_energy", "forces", "virial", "atom_virial"])


@pytest.mark.parametrize("desc_act,fit_act", [("gelu", "softplus"), ("relu", "sigmoid"),
                                              ("silu", "relu6"), ("gelu_tf", "tanh"),
                                              ("softplus", "relu6")])
def test_activations(tmp_path, shared_data, pt, desc_act, fit_act):
    """Non-tanh activations (descriptor and fitting nets differ, to catch a swap) through a
    .dp file written by deepmd-kit: energies, forces and virials to 1e-10 of deepmd-kit's on
    the reference and on the numba path, and the file written back by symref reads into
    deepmd-kit with the same activations."""
    from deepmd.dpmodel.utils.serialization import load_dp_model

    d = deepmd_ref.make_deepmd_model_dict(
        False, 16, type_map=["O", "H"], stats="type", activation_function=desc_act,
        fitting_activation_function=fit_act,
        **dict(WATER, neuron=[8, 16, 32], fitting_neuron=[32, 32]))
    model = through_file(tmp_path, d, ".dp")
    assert model.descriptor.embeddings[0][0].activation == desc_act
    assert model.fitting.nets[0][0].activation == fit_act
    coord, atype, box = water(shared_data, 1)
    ours = model.evaluate(coord, atype, box, backend="numpy")
    case = f"activation/{desc_act}+{fit_act}"
    compare(case, ours, deepmd_ref.dp_eval(d, coord, atype, box), ["energy", "atom_energy"])
    ref = deepmd_ref.pt_eval(d, coord, atype, box)
    compare(case, ours, ref, ["energy", "atom_energy", "forces", "virial"])
    # the numba path runs every activation (no fallback to the reference)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast = model.evaluate(coord, atype, box, backend="numba")
    compare(case + "/numba", fast, ref, ["energy", "atom_energy", "forces", "virial"])
    path = tmp_path / "back.dp"
    symref.save_model(model, path)
    back = load_dp_model(str(path))["model"]
    assert back["descriptor"]["activation_function"] == desc_act
    assert back["fitting"]["activation_function"] == fit_act
    compare(case + "/written", ours, deepmd_ref.dp_eval(back, coord, atype, box), ["energy"])


def test_zz_report_deviations():
    """Prints the largest deviations seen (run with -s to see them); always passes if any ran."""
    for (case, key), e in sorted(DEVIATIONS.items()):
        print(f"deepmd-kit vs symref  {case:32s} {key:12s} max rel dev {e:.2e}")


def test_loss_value_matches_deepmd_energy_std_loss(pt):
    """symref.train.loss follows deepmd-kit's `ener` loss convention (per-atom-normalised energy
    and virial terms, mean over force components, mean over frames): same value as
    deepmd.pt's EnergyStdLoss on the same model, frames and labels."""
    import torch
    from deepmd.pt.loss.ener import EnergyStdLoss
    from deepmd.pt.model.model import BaseModel

    from symref.train.loss import LossPrefactors, energy_loss

    d = deepmd_ref.make_deepmd_model_dict(False, 13, sel=[80, 80], neuron=[8, 16], axis_neuron=4,
                                          fitting_neuron=[16, 16], rcut=5.0, rcut_smth=1.0,
                                          type_map=["A", "B"], stats="type")
    model = symref.io.model_file.model_from_dict(d)
    s = make_crystal(seed=5)
    rng = np.random.default_rng(0)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * rng.normal(size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0)
    ev = model.evaluate(coord, s.atype, box)
    E = ev["energy"] + rng.normal(size=2)
    F = ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape)
    W = ev["virial"] + 0.3 * rng.normal(size=(2, 3, 3))
    pref = LossPrefactors(0.7, 3.0, 0.4)
    ours = energy_loss(model, coord, s.atype, box, E, F, W, pref)
    loss = EnergyStdLoss(starter_learning_rate=1.0, start_pref_e=pref.pref_e,
                         limit_pref_e=pref.pref_e, start_pref_f=pref.pref_f,
                         limit_pref_f=pref.pref_f, start_pref_v=pref.pref_v,
                         limit_pref_v=pref.pref_v)
    inp = {"coord": torch.tensor(coord), "atype": torch.tensor(np.tile(s.atype, (2, 1))),
           "box": torch.tensor(box.reshape(2, 9))}
    lab = {"energy": torch.tensor(E.reshape(2, 1)), "force": torch.tensor(F),
           "virial": torch.tensor(W.reshape(2, 9)), "find_energy": 1.0, "find_force": 1.0,
           "find_virial": 1.0}
    _, ref, _ = loss(inp, BaseModel.deserialize(deepmd_ref.as_model_dict(d)), lab,
                     len(s.atype), 1.0)
    compare("loss/ener", {"loss": np.array([ours])}, {"loss": np.array([float(ref.detach())])},
            ["loss"])
