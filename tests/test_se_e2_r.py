"""The radial-only descriptor se_e2_r (symref.reference.descriptor.se_e2_r) and a DeepPot on it.

* The reference itself: backward and tangent against central differences, the
  descriptor as the padded mean of G times 1/5 written out independently.
* The model: forces, virial and the loss gradient of every parameter group against
  finite differences, symmetry to 1e-12, all through ``symref.checks``.
* deepmd-kit itself (marked ``deepmd``): models built by deepmd-kit with non-trivial
  davg/dstd and biases, read through its own .dp/.yaml writer; energies and atomic
  energies against its NumPy backend, forces, virials and atomic virials against its
  PyTorch backend, 1e-10 relative; a symref-built model read back by deepmd-kit; the
  environment statistics against deepmd-kit's ``compute_or_load_stat``.
* ``symref train`` on an se_e2_r input, and the errors for bad input.

deepmd-kit 3.x implements se_r only with ``type_one_side`` true (its se_r raises
NotImplementedError otherwise); symref refuses false with a ValueError, tested here.
"""
import copy
import json

import numpy as np
import pytest
from fd import num_grad_inplace, num_grad_richardson

import symref
from symref.checks import (all_passed, as_calculator, check_forces_fd, check_gradient_fd,
                           check_symmetry, check_virial_fd, format_table)
from symref.io.data import load_system, make_crystal, make_molecule
from symref.io.model_file import load_model, model_from_dict, save_model
from symref.model.build import demo_model
from symref.model.params import differentiated, flat_vector, set_flat_vector
from symref.reference.descriptor.se_e2_r import (RES_RESCALE, se_e2_r_backward,
                                                 se_e2_r_backward_dual, se_e2_r_forward,
                                                 se_e2_r_forward_dual)
from symref.reference.nn import mlp_forward
from symref.train import stats
from symref.train.loss import LossPrefactors, energy_loss_and_grad

RTOL = 1e-10
CFG = {"type_map": ["A", "B"],
       "descriptor": {"type": "se_e2_r", "rcut": 4.0, "rcut_smth": 0.5, "sel": [60, 60],
                      "neuron": [4, 8, 16], "resnet_dt": True},
       "fitting_net": {"neuron": [12, 12], "resnet_dt": True}}


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


class Reference:
    """``model`` evaluated on the NumPy reference (for symref.checks.as_calculator)."""

    def __init__(self, model):
        self.model = model

    def evaluate(self, *args, **kw):
        return self.model.evaluate(*args, backend="numpy", **kw)


@pytest.fixture(scope="module")
def model():
    return demo_model(CFG, seed=3)


@pytest.fixture(scope="module")
def rows(model):
    return random_rows(model.descriptor, 5)


def random_rows(desc, nloc):
    """Random rows (nloc x nnei x 4), centre types and an exclusion mask (20% excluded)."""
    rng = np.random.default_rng(0)
    R = rng.normal(size=(nloc, desc.nnei, 4))  # nloc x nnei x 4
    keep = rng.random(R.shape[:2]) > 0.2
    return R, np.arange(nloc) % 2, keep


# ------------------------------------------------------------------ the reference
def test_forward_is_the_padded_mean_of_G_over_5(model, rows):
    """D = (1/5) * (1/nnei) * sum over every slot (padded and excluded included) of
    N_{t_j}(k_j R_j0), written out slot by slot."""
    R, atype, keep = rows
    d = model.descriptor
    D, _ = se_e2_r_forward(R, atype, keep, d)
    slot_type = np.repeat(np.arange(d.ntypes), d.sel)
    want = np.zeros_like(D)
    for i in range(R.shape[0]):
        for j in range(d.nnei):
            G, _ = mlp_forward(np.array([[R[i, j, 0] * keep[i, j]]]), d.embeddings[slot_type[j]])
            want[i] += G[0] * RES_RESCALE / d.nnei
    assert rel_err(D, want) <= 1e-14


def test_backward_is_the_gradient_of_forward(model, rows):
    """dR (column 0; columns 1..3 zero) and one weight of each net against central
    differences of <W, D>."""
    R, atype, keep = rows
    d = model.descriptor
    W = np.random.default_rng(1).normal(size=(R.shape[0], d.dim_out))
    D, cache = se_e2_r_forward(R, atype, keep, d)
    dR, grads = se_e2_r_backward(W, cache, param_grads=True)
    f = lambda x: float(np.sum(W * se_e2_r_forward(x, atype, keep, d)[0]))  # noqa: E731
    assert rel_err(dR, num_grad_richardson(f, R, 1e-3)) <= 1e-9
    assert not dR[..., 1:].any()
    for t in range(d.ntypes):
        w = d.embeddings[t][1].w
        g = num_grad_inplace(lambda: f(R), w, 1e-6)
        assert rel_err(grads[t][1]["w"], g) <= 1e-7


def test_tangent_and_its_backward(model, rows):
    """Dd is the directional derivative of D along Rd; the dual backward's parameter
    gradients are those of <Dbar, D> + <Ddbar, Dd>."""
    R, atype, keep = rows
    d = model.descriptor
    rng = np.random.default_rng(2)
    Rd = rng.normal(size=R.shape)
    D, Dd, cache = se_e2_r_forward_dual(R, Rd, atype, keep, d)
    h = 1e-5
    fd = (se_e2_r_forward(R + h * Rd, atype, keep, d)[0]
          - se_e2_r_forward(R - h * Rd, atype, keep, d)[0]) / (2 * h)
    assert rel_err(Dd, fd) <= 1e-8
    Dbar, Ddbar = rng.normal(size=D.shape), rng.normal(size=D.shape)
    _, grads = se_e2_r_backward_dual(Dbar, Ddbar, cache)

    def obj():
        a, ad, _ = se_e2_r_forward_dual(R, Rd, atype, keep, d)
        return float(np.sum(Dbar * a) + np.sum(Ddbar * ad))

    for t in range(d.ntypes):
        for li, key in ((0, "w"), (0, "b"), (1, "idt")):
            arr = getattr(d.embeddings[t][li], key)
            assert rel_err(grads[t][li][key], num_grad_inplace(obj, arr, 1e-6)) <= 1e-7


# ------------------------------------------------------------------ the model
def crystal_frames(nframes=2):
    s = make_crystal(seed=1)
    rng = np.random.default_rng(0)
    coord = np.stack([s.coord[0] + 0.05 * k * rng.normal(size=s.coord[0].shape)
                      for k in range(nframes)])
    return coord, s.atype, np.repeat(s.box, nframes, axis=0)


def test_checks_forces_virial_symmetry(model):
    """symref.checks on a small skewed periodic cell and a molecule: forces and virial
    against order-2 finite differences (Richardson <= 1e-6), rotation, reflection,
    translation, permutation and image wrapping <= 1e-12."""
    check_model(model)


def check_model(model):
    """symref.checks (FD and symmetry) on the crystal and a molecule (shared with
    tests/test_hybrid.py)."""
    coord, atype, box = crystal_frames(1)
    calc = as_calculator(Reference(model), atype)
    res = [check_forces_fd(calc, coord[0], box[0]), check_virial_fd(calc, coord[0], box[0])]
    res += check_symmetry(calc, coord[0], box[0], atype=atype, rng=0)
    mol = make_molecule(natoms=7, ntypes=2, seed=4)
    mcalc = as_calculator(Reference(model), mol.atype)
    res += [check_forces_fd(mcalc, mol.coord[0], None)]
    res += check_symmetry(mcalc, mol.coord[0], None, atype=mol.atype, rng=0)
    assert all_passed(res), format_table(res)
    assert np.abs(model.evaluate(coord, atype, box, backend="numpy")["forces"]).max() > 1e-3


def test_loss_gradient_every_parameter_group(model):
    """energy + force + virial loss: the gradient of every parameter group (embedding and
    fitting w, b, idt, bias_atom_e) against check_gradient_fd (order 2, Richardson)."""
    check_loss_gradient(model)


def check_loss_gradient(model):
    """One component of every parameter array of ``model`` through check_gradient_fd, on
    two frames of the skewed crystal with energy, force and virial labels (shared with
    tests/test_hybrid.py)."""
    coord, atype, box = crystal_frames(2)
    ev = model.evaluate(coord, atype, box, backend="numpy")
    rng = np.random.default_rng(5)
    labels = (ev["energy"] + 0.3, ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape),
              ev["virial"] + 0.2 * rng.normal(size=(2, 3, 3)))
    pref = LossPrefactors(pref_e=1.0, pref_f=10.0, pref_v=0.5)
    m = copy.deepcopy(model)
    arrays = differentiated(m)  # the trained parameters and the fitting bias
    names = [n for n, _ in arrays]
    sizes = [a.size for _, a in arrays]
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def fun(theta):
        set_flat_vector([a for _, a in arrays], theta)
        loss, g = energy_loss_and_grad(m, coord, atype, box, *labels, pref)
        return loss, np.concatenate([g[n].ravel() for n in names])

    pick = [int(starts[k] + rng.integers(0, sizes[k])) for k in range(len(names))]
    res = check_gradient_fd(fun, flat_vector(a for _, a in arrays), steps=(1e-2, 5e-3),
                            components=pick)
    assert res.passed, format_table([res])
    groups = {n.split("[")[0] + "/" + n.split(".")[-1] for n in names}
    assert {"embedding/w", "embedding/b", "embedding/idt", "fitting/w", "fitting/idt",
            "bias_atom_e/bias_atom_e"} <= groups
    return names


def test_file_roundtrip(tmp_path, model):
    """.dp and .yaml written by symref read back to the same numbers; the type is se_r."""
    coord, atype, box = crystal_frames(1)
    ref = model.evaluate(coord, atype, box, backend="numpy")
    for suffix in (".dp", ".yaml"):
        save_model(model, tmp_path / f"m{suffix}")
        back = load_model(tmp_path / f"m{suffix}")
        assert type(back.descriptor).__name__ == "SeE2R"
        out = back.evaluate(coord, atype, box, backend="numpy")
        for k in ref:
            np.testing.assert_array_equal(out[k], ref[k])


def test_statistics_are_the_radial_column_of_se_e2_a(model):
    """env_stat of an se_e2_r descriptor is se_e2_a's column 0 (deepmd-kit's radial-only
    EnvMatStatSe uses the same items r_t), shape ntypes x nnei x 1; apply_statistics
    takes it."""
    coord, atype, box = crystal_frames(2)
    sys_ = symref.io.data.System(type_map=None, coord=coord, atype=atype, box=box)
    davg, dstd = stats.env_stat(model, [sys_])
    cfg_a = copy.deepcopy(CFG)
    cfg_a["descriptor"].update(type="se_e2_a", axis_neuron=4)
    a_davg, a_dstd = stats.env_stat(demo_model(cfg_a), [sys_])
    assert davg.shape == dstd.shape == (2, 120, 1)
    np.testing.assert_array_equal(davg[..., 0], a_davg[..., 0])
    np.testing.assert_array_equal(dstd[..., 0], a_dstd[..., 0])
    m = copy.deepcopy(model)
    stats.apply_statistics(m, davg, dstd)
    np.testing.assert_array_equal(m.descriptor.dstd, dstd)
    with pytest.raises(ValueError, match=r"davg has shape \(2, 120, 4\), expected \(2, 120, 1\)"):
        stats.apply_statistics(m, a_davg)


def test_train_command(tmp_path, monkeypatch, capsys):
    """`symref train` on an se_e2_r input.json: statistics, a few Adam steps, the model
    written as deepmd-kit's se_r and read back."""
    trained = train_with(tmp_path, monkeypatch, capsys, {
        "type": "se_r", "rcut": 3.5, "rcut_smth": 0.5, "sel": [40, 40], "neuron": [4, 8]})
    assert type(trained.descriptor).__name__ == "SeE2R"
    assert trained.descriptor.dstd.shape == (2, 80, 1) and (trained.descriptor.dstd != 1).any()


def train_with(tmp_path, monkeypatch, capsys, descriptor):
    """`symref train` for 3 Adam steps on labels of another model, with this
    ``descriptor`` section; returns the trained model read back from out.yaml.  The error
    tables' backend="numba" evaluations and the loss gradient must run on the numba path
    (a fallback warning is an error: se_e2_r, se_e3 and hybrid all have one;
    symref.fast.family_loss for the gradient)."""
    import warnings

    from test_cli import _write_npy_system

    from symref import cli

    coord, atype, box = crystal_frames(3)
    ev = model_for_labels().evaluate(coord, atype, box, backend="numpy")
    _write_npy_system(tmp_path / "sys", coord, atype, box, ev["energy"], ev["forces"],
                      ["A", "B"])
    inp = {"model": {"type_map": ["A", "B"],
                     "descriptor": descriptor,
                     "fitting_net": {"neuron": [8]}},
           "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-4, "decay_steps": 1},
           "loss": {"start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_f": 10.0,
                    "limit_pref_f": 10.0},
           "training": {"training_data": {"systems": ["sys"], "batch_size": 2},
                        "numb_steps": 3, "seed": 1, "disp_freq": 1, "save_freq": 3}}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend='numba' cannot evaluate",
                                category=RuntimeWarning)
        assert cli.main(["train", "input.json", "-o", "out.yaml"]) == 0
    assert "step       3" in capsys.readouterr().out
    return load_model(tmp_path / "out.yaml")


def model_for_labels():
    return demo_model({**CFG, "descriptor": {**CFG["descriptor"], "rcut": 3.5}}, seed=9)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("change,words", [
    ({"rcut_smth": 4.0}, "rcut_smth"),
    ({"type": "se_e3_tebd"}, "'se_e3_tebd' is not supported; symref implements hybrid, se_a, "
                             "se_a_3be, se_at, se_e2_a, se_e2_r, se_e3, se_r"),
])
def test_bad_config(change, words):
    """build_model names the offending key / the supported descriptor types."""
    cfg = copy.deepcopy(CFG)
    cfg["descriptor"].update(change)
    with pytest.raises(ValueError, match=words):
        symref.build_model(cfg)


def test_type_one_side_false_builds_one_side_nets_as_deepmd_kit_pt():
    """dp train's input default for se_r is type_one_side = false, which deepmd-kit 3.x's
    PyTorch backend ignores (one net per neighbour type): build_model does the same, and
    says so."""
    cfg = copy.deepcopy(CFG)
    cfg["descriptor"]["type_one_side"] = False
    with pytest.warns(UserWarning, match="type_one_side = false: se_e2_r is built with one"):
        model = symref.build_model(cfg)
    assert model.descriptor.type_one_side and len(model.descriptor.embeddings) == 2


def test_tensor_fitting_on_se_e2_r_is_refused():
    """A dipole head needs se_e2_a's T: build_model says so."""
    cfg = copy.deepcopy(CFG)
    cfg["fitting_net"]["type"] = "dipole"
    with pytest.raises(ValueError, match="needs the equivariant T of an se_e2_a"):
        symref.build_model(cfg)


def test_bad_model_dict(model):
    """Model dicts: se_r with type_one_side false, a davg of the se_e2_a shape, a
    compressed se_r without its tables, each named."""
    from symref.io.model_dict import model_to_dict

    d = model_to_dict(model)
    bad = copy.deepcopy(d)
    bad["descriptor"]["type_one_side"] = False
    with pytest.raises(ValueError, match="se_r with type_one_side false"):
        model_from_dict(bad)
    bad = copy.deepcopy(d)
    bad["descriptor"]["@variables"]["davg"] = np.zeros((2, 120, 4))
    with pytest.raises(ValueError, match=r"model.descriptor: variable 'davg' has shape"):
        model_from_dict(bad)
    bad = copy.deepcopy(d)
    bad["descriptor"]["compress"] = {"@variables": {}}  # compressed, its tables missing
    with pytest.raises(ValueError, match=r"model.descriptor.compress: missing key 'compress_data'"):
        model_from_dict(bad)


# ------------------------------------------------------------------ deepmd-kit itself
def make_deepmd_se_r(seed, sel, neuron, fitting_neuron, rcut, rcut_smth, type_map,
                     exclude_types=(), atom_exclude_types=(), pair_exclude_types=(),
                     resnet_dt=True, stats="slot"):
    """An se_r + ener model built by deepmd-kit with non-trivial statistics and biases
    (``deepmd_ref.make_deepmd_descriptor_model``); returns ``model.serialize()``."""
    import deepmd_ref

    return deepmd_ref.make_deepmd_descriptor_model(
        seed, {"type": "se_r", "sel": list(sel), "rcut": rcut, "rcut_smth": rcut_smth,
               "neuron": list(neuron), "resnet_dt": resnet_dt,
               "exclude_types": [list(p) for p in exclude_types]},
        fitting_neuron, type_map, atom_exclude_types=atom_exclude_types,
        pair_exclude_types=pair_exclude_types, stats=stats)


def _through_file(tmp_path, d, suffix):
    from deepmd.dpmodel.utils.serialization import save_dp_model

    path = tmp_path / f"model{suffix}"
    save_dp_model(str(path), {"backend": "DP", "model": d, "model_def_script": {},
                              "@variables": {}, "software": "deepmd-kit"})
    return load_model(path)


#: largest relative deviation from deepmd-kit per (case, backend, quantity), all modules
DEVIATIONS = {}


def _compare(case, dp, d, ours, coord, atype, box):
    """symref's outputs against deepmd-kit's NumPy (energies) and PyTorch (everything)
    backends, each <= RTOL relative to the reference's largest magnitude; recorded in
    DEVIATIONS (printed by test_zz_report_deviations with -s)."""
    for backend, ref, keys in (
            ("dp", dp.dp_eval(d, coord, atype, box), ("energy", "atom_energy")),
            ("pt", dp.pt_eval(d, coord, atype, box),
             ("energy", "atom_energy", "forces", "virial", "atom_virial"))):
        for k in keys:
            e = rel_err(ours[k], ref[k])
            DEVIATIONS[(case, backend, k)] = max(e, DEVIATIONS.get((case, backend, k), 0.0))
            assert e <= RTOL, (case, backend, k, e)


@pytest.mark.deepmd
def test_deepmd_small_skewed_cell(tmp_path, dp, pt):
    """Triclinic cell of side ~4.2 Å, rcut 5 (several images of each atom), .dp file
    written by deepmd-kit; descriptor exclude_types and model pair_exclude_types too.
    Statistics per neighbour-type block: an atom's own images at ±a tie in distance."""
    s = make_crystal(seed=5)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * np.random.default_rng(0).normal(
        size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0).reshape(2, 9)
    for case, kw in (("plain", {}), ("exclusions", dict(exclude_types=[(0, 1)],
                                                      pair_exclude_types=[(1, 1)],
                                                      atom_exclude_types=[1]))):
        d = make_deepmd_se_r(13, [80, 80], [8, 16], [16, 16], 5.0, 1.0, ["A", "B"], stats="type",
                             **kw)
        ours = _through_file(tmp_path, d, ".dp").evaluate(coord, s.atype, box, backend="numpy")
        _compare(f"skewed/{case}", dp, d, ours, coord, s.atype, box)


@pytest.mark.deepmd
@pytest.mark.data
def test_deepmd_molecules(tmp_path, dp, pt, shared_data):
    """C/H/O molecules without a cell, .yaml written by deepmd-kit; sel small enough to
    matter (6 per type)."""
    d = make_deepmd_se_r(12, [6, 6, 6], [8, 16, 32], [32, 32], 5.0, 1.0, ["C", "H", "O"])
    model = _through_file(tmp_path, d, ".yaml")
    for name in ("C1H4O2", "C3H3O4", "C4H3O1"):
        s = load_system(shared_data / "molecules" / name)
        ours = model.evaluate(s.coord[:3], s.atype, backend="numpy")
        _compare(f"molecules/{name}", dp, d, ours, s.coord[:3], s.atype, None)


@pytest.mark.deepmd
@pytest.mark.data
def test_deepmd_water(tmp_path, dp, pt, shared_data):
    """64 H2O, periodic, water-sized se_r (sel 46/92, rcut 6)."""
    d = make_deepmd_se_r(11, [46, 92], [10, 20, 40], [32, 32], 6.0, 0.5, ["O", "H"])
    compare_water("water", tmp_path, dp, d, shared_data, 2)


def compare_water(case, tmp_path, dp, d, shared_data, nframes):
    """The deepmd-kit model dict ``d`` through its own .dp writer, on the first frames of
    water/data_3, against deepmd-kit (shared with tests/test_hybrid.py)."""
    s = load_system(shared_data / "water" / "data_3")
    coord, box = s.coord[:nframes], s.box[:nframes].reshape(nframes, 9)
    ours = _through_file(tmp_path, d, ".dp").evaluate(coord, s.atype, box, backend="numpy")
    _compare(case, dp, d, ours, coord, s.atype, box)


@pytest.mark.deepmd
def test_deepmd_reads_symref_files(tmp_path, dp, pt, model):
    """The other way: a model built by symref, written by symref as .dp and .yaml, is
    evaluated by deepmd-kit to the same numbers."""
    compare_symref_files("symref", dp, model, tmp_path)


def compare_symref_files(case, dp, model, tmp_path):
    """``model`` written by symref as .dp and .yaml and evaluated by deepmd-kit: the same
    numbers as symref's reference (:func:`_compare`, on two frames of the skewed crystal)."""
    coord, atype, box = crystal_frames(2)
    ours = model.evaluate(coord, atype, box, backend="numpy")
    for suffix in (".dp", ".yaml"):
        save_model(model, tmp_path / f"s{suffix}")
        _compare(f"{case}{suffix}", dp, dp.as_model_dict(tmp_path / f"s{suffix}"), ours,
                 coord, atype, box.reshape(2, 9))


def stats_system():
    """Three jittered frames of the skewed crystal with energies (statistics tests)."""
    s = make_crystal(seed=5)
    rng = np.random.default_rng(3)
    coord = np.stack([s.coord[0] + 0.05 * rng.normal(size=s.coord[0].shape) for _ in range(3)])
    return symref.io.data.System(type_map=None, coord=coord, atype=s.atype,
                                 box=np.repeat(s.box, 3, axis=0), energy=rng.normal(size=3))


@pytest.mark.deepmd
@pytest.mark.parametrize("backend", ["numpy", "pt"])
def test_deepmd_statistics(dp, backend, request):
    """davg/dstd of an se_r model from deepmd-kit's compute_or_load_stat (NumPy and
    PyTorch backends) equal symref's env_stat on the same frames (skewed cell: images)."""
    if backend == "pt":
        request.getfixturevalue("pt")
    from test_stats import dp_reference

    sys_ = stats_system()
    d = make_deepmd_se_r(21, [80, 80], [4, 8], [8], 5.0, 1.0, ["A", "B"],
                         exclude_types=[(0, 1)])
    ref = model_from_dict(dp_reference(dp, d, [sys_], backend))
    ours = model_from_dict(d)
    davg, dstd = stats.env_stat(ours, [sys_])
    assert rel_err(davg, ref.descriptor.davg) <= RTOL
    assert rel_err(dstd, ref.descriptor.dstd) <= RTOL
    assert np.abs(davg).max() > 1e-3  # the mean is not trivially zero


# ------------------------------------------------------------------ other entry points
def test_ase_calculator_lammps_and_golden(model):
    """The ASE calculator takes an se_e2_r DeepPot (energy, forces and stress as
    model.evaluate's); golden vectors give se_e2_r's own stages
    (tests/test_golden_family.py); LAMMPS ghost mode takes it (tests/test_lammps_family.py)."""
    pytest.importorskip("ase", reason="ase is not installed")
    from ase import Atoms

    from symref.ase import SymrefCalculator
    from symref.io.golden import stages

    coord, atype, box = crystal_frames(1)
    atoms = Atoms(numbers=[1 + t for t in atype], positions=coord[0], cell=box[0], pbc=True)
    atoms.calc = SymrefCalculator(model, type_map=["H", "He"], backend="numpy")
    ref = model.evaluate(coord, atype, box, backend="numpy")
    assert abs(atoms.get_potential_energy() - ref["energy"][0]) <= 1e-12 * abs(ref["energy"][0])
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"][0], rtol=0, atol=1e-13)
    names = [name for name, _, _ in stages(model, coord[0], atype, box[0])]
    assert "s" in names and "T" not in names


def test_zz_report_deviations():
    """Prints the largest deviations from deepmd-kit seen so far in this session (run
    tests/test_hybrid.py, test_se_e3.py and then this module with -s; it is the last test
    here); always passes."""
    for (case, backend, k), e in sorted(DEVIATIONS.items()):
        print(f"{case:32s} {backend} {k:12s} {e:.1e}")
