"""DeepDipole / DeepPolar (symref.model.tensor.DeepTensor): equivariance (rotation, reflection,
translation, permutation, periodic wrapping), the dipole derivative against finite
differences (order 2), the head's backward pass, and agreement with deepmd-kit's
NumPy backend through model dicts and files (1e-10 relative, float64)."""
import copy

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref import checks
from symref.reference.fitting import tensor_fitting_backward, tensor_fitting_forward
from symref.io.model_file import model_from_dict, model_to_dict
from symref.model.build import build_model, demo_model
from symref.model.tensor import DeepTensor

VARIANTS = {
    "dipole": {"type": "dipole"},
    "dipole_sel_type": {"type": "dipole", "sel_type": [0, 2]},
    "polar_diag": {"type": "polar", "fit_diag": True, "scale": [1.0, 2.0, 0.5]},
    "polar_full": {"type": "polar", "fit_diag": False, "shift_diag": True},
    "polar_noshift": {"type": "polar", "shift_diag": False},
}


def _model(variant, seed=3, one_side=False):
    cfg = {"type_map": ["O", "H", "C"],
           "descriptor": {"type": "se_e2_a", "sel": [6, 12, 4], "rcut": 3.5, "rcut_smth": 0.5,
                          "neuron": [4, 8], "axis_neuron": 3, "type_one_side": one_side},
           "fitting_net": dict(neuron=[10, 10], **VARIANTS[variant])}
    return demo_model(cfg, seed=seed)


def _system(rng, nf=2):
    coord = rng.uniform(0, 6, size=(nf, 9, 3))
    atype = np.array([0, 1, 1, 0, 1, 1, 2, 1, 0])
    box = np.tile(np.diag([6.5, 6.1, 6.8]) + 0.3 * np.triu(np.ones((3, 3)), 1), (nf, 1, 1))
    return coord, atype, box


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("periodic", [True, False])
def test_equivariance_to_round_off(variant, periodic):
    m = _model(variant)
    coord, atype, box = _system(np.random.default_rng(0), 1)
    b = box[0] if periodic else None
    out = "vector" if m.kind == "dipole" else "tensor"
    res = checks.check_tensor_symmetry(
        lambda c, bx: m.evaluate(c, atype, bx)[m.var_name][0], coord[0], b, atype, out, rng=1)
    assert len(res) == (5 if periodic else 4)
    assert checks.all_passed(res), checks.format_table(res)


def test_symmetry_check_catches_a_non_equivariant_output():
    coord, atype, box = _system(np.random.default_rng(0), 1)
    res = checks.check_tensor_symmetry(lambda c, b: c.sum(axis=0) * 0 + np.array([1.0, 0, 0]),
                                       coord[0], None, atype, "vector", rng=0)
    assert not res[0].passed and res[2].passed  # a fixed vector does not rotate


@pytest.mark.parametrize("variant", ["dipole", "polar_full"])
def test_position_derivative_matches_finite_differences(variant):
    m = _model(variant)
    coord, atype, box = _system(np.random.default_rng(4), 1)
    ev = m.evaluate(coord, atype, box, derivative=True)
    deriv = ev[f"{m.var_name}_derivative"][0]  # shape x natoms x 3
    assert deriv.shape == m.fitting.out_shape + (9, 3)
    for comp in [(0,), (2,)] if m.kind == "dipole" else [(0, 1), (2, 2)]:
        def fun(x, comp=comp):
            e = m.evaluate(x.reshape(1, 9, 3), atype, box, derivative=True)
            return e[m.var_name][0][comp], e[f"{m.var_name}_derivative"][0][comp].ravel()

        res = checks.check_gradient_fd(fun, coord.ravel(), steps=(2e-3, 1e-3), ncomponents=None,
                                       tol=1e-6, name=f"{variant}{comp}")
        assert res.passed, str(res)
        assert res.details["rel_err_h1"] > 1e-12  # truncation error was measurable
    # translation invariance: every column of the derivative sums to zero over atoms
    assert_allclose_scaled(deriv.sum(axis=-2), 0, 1e-7, 1e-12, scale_of=deriv)


@pytest.mark.parametrize("variant", ["dipole", "polar_diag", "polar_full"])
def test_head_backward_matches_finite_differences(variant):
    """tensor_fitting_backward: <dout, out> differentiated w.r.t. D and gr."""
    m = _model(variant)
    rng = np.random.default_rng(5)
    M1, nd = m.fitting.embedding_width, m.descriptor.dim_out
    atype = np.array([0, 1, 2, 1])
    D, gr = rng.normal(size=(4, nd)), rng.normal(size=(4, M1, 3))
    out, cache = tensor_fitting_forward(D, gr, atype, m.fitting)
    w = rng.normal(size=out.shape)
    (dD, dgr), _ = tensor_fitting_backward(w, cache)
    theta = np.concatenate([D.ravel(), gr.ravel()])

    def fun(th):
        o, c = tensor_fitting_forward(th[:D.size].reshape(D.shape), th[D.size:].reshape(gr.shape),
                                      atype, m.fitting)
        (a, b), _ = tensor_fitting_backward(w, c)
        return float(np.sum(w * o)), np.concatenate([a.ravel(), b.ravel()])

    res = checks.check_gradient_fd(fun, theta, steps=(1e-3, 5e-4), ncomponents=80, rng=0)
    assert res.passed, str(res)


def test_excluded_types_carry_nothing():
    m = _model("dipole_sel_type")
    coord, atype, box = _system(np.random.default_rng(6), 1)
    ev = m.evaluate(coord, atype, box)
    assert m.atom_exclude_types == [1]
    np.testing.assert_array_equal(ev["atom_dipole"][0][atype == 1], 0.0)
    assert np.abs(ev["atom_dipole"][0][atype != 1]).min() > 0


def test_build_model_rejects_bad_tensor_configs():
    base = {"type_map": ["O", "H"], "descriptor": {"sel": [4, 4], "rcut": 3.0}}
    with pytest.raises(ValueError, match="sel_type"):
        build_model(dict(base, fitting_net={"type": "dipole", "sel_type": [5]}))
    with pytest.raises(ValueError, match="scale"):
        build_model(dict(base, fitting_net={"type": "polar", "scale": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="not implemented"):
        build_model(dict(base, fitting_net={"type": "dos"}))
    m = build_model(dict(base, fitting_net={"type": "polar"}))
    assert isinstance(m, DeepTensor) and m.out_bias.shape == (2, 9)


# ------------------------------------------------------------------ deepmd-kit
@pytest.mark.deepmd
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("one_side", [True, False])
def test_matches_deepmd_numpy_backend(variant, one_side):
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")
    import deepmd.dpmodel.model.model  # noqa: F401  (registers the model classes)
    from deepmd.dpmodel.model.base_model import BaseModel

    m = _model(variant, one_side=one_side)
    coord, atype, box = _system(np.random.default_rng(7))
    d = model_to_dict(m)
    dm = BaseModel.deserialize(copy.deepcopy(d))
    for b in (box, None):
        ref = dm.call(coord.reshape(2, -1), np.tile(atype, (2, 1)),
                      None if b is None else b.reshape(2, 9))
        ours = m.evaluate(coord, atype, b)
        key = "dipole" if m.kind == "dipole" else "polar"
        for mine, theirs in ((f"atom_{m.var_name}", key), (m.var_name, f"global_{key}")):
            r = np.asarray(ref[theirs]).reshape(ours[mine].shape)
            err = np.abs(ours[mine] - r).max() / np.abs(r).max()
            assert err <= 1e-10, f"{variant}/{mine}: {err:.2e}"
    # and back: deepmd-kit's own serialization of that model reads into the same numbers
    back = model_from_dict(dm.serialize())
    np.testing.assert_array_equal(back.evaluate(coord, atype, box)[m.var_name],
                                  m.evaluate(coord, atype, box)[m.var_name])


@pytest.mark.deepmd
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_model_files_round_trip_through_deepmd(tmp_path, suffix):
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")
    if suffix == ".dp":
        pytest.importorskip("h5py")
    from deepmd.dpmodel.utils.serialization import load_dp_model, save_dp_model

    import symref

    m = _model("polar_diag")
    coord, atype, box = _system(np.random.default_rng(8))
    symref.save_model(m, tmp_path / f"ours{suffix}")
    theirs = load_dp_model(str(tmp_path / f"ours{suffix}"))
    save_dp_model(str(tmp_path / f"again{suffix}"), theirs)
    again = symref.load_model(tmp_path / f"again{suffix}")
    assert isinstance(again, DeepTensor) and again.kind == "polar"
    np.testing.assert_array_equal(again.evaluate(coord, atype, box)["polarizability"],
                                  m.evaluate(coord, atype, box)["polarizability"])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("variant", ["dipole_sel_type", "polar_diag", "polar_full"])
def test_tensor_loss_gradient_matches_finite_differences(variant, backend):
    """Exact parameter gradient of deepmd-kit's tensor loss (atomic + global terms),
    every parameter group (embedding, fitting, idt, bias_atom) sampled; on the reference
    and on the fast path (symref.fast.cpu_tensor)."""
    from symref.model.params import differentiated, flat_vector, set_flat_vector
    from symref.train.loss import TensorPrefactors, tensor_loss_and_grad

    m = _model(variant)
    coord, atype, box = _system(np.random.default_rng(9))
    rng = np.random.default_rng(10)
    shape = m.fitting.out_shape
    label = rng.normal(size=(2,) + shape)
    atom_label = rng.normal(size=(2, 9) + shape) * (atype != 1).reshape((1, 9) + (1,) * len(shape))
    if len(shape) == 2:
        label, atom_label = label + np.swapaxes(label, -1, -2), atom_label + np.swapaxes(
            atom_label, -1, -2)
    pref = TensorPrefactors(pref=0.7, pref_atomic=1.3)
    arrays = differentiated(m)  # the trained parameters and the fitting bias
    names = [n for n, _ in arrays]
    assert "bias_atom" in names and any(".idt" in n for n in names)

    def fun(theta):
        set_flat_vector([a for _, a in arrays], theta)
        loss, g = tensor_loss_and_grad(m, coord, atype, box, label, atom_label, pref,
                                       backend=backend)
        return loss, np.concatenate([g[n].ravel() for n in names])

    # four components of every parameter array
    sizes = [a.size for _, a in arrays]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    comps = np.concatenate([s0 + rng.choice(n, size=min(4, n), replace=False)
                            for s0, n in zip(starts, sizes)])
    res = checks.check_gradient_fd(fun, flat_vector(a for _, a in arrays), steps=(1e-4, 5e-5),
                                   components=comps, tol=1e-6)
    assert res.passed, str(res)


def test_atomic_tensor_loss_is_a_mean_over_the_selected_atoms():
    """deepmd-kit's tensor loss (its atom mask includes atom_exclude_types): the atomic
    term is sum of squares / (nf x atoms of the selected types x 3), not / all atoms; the
    displayed rmse_local and the per-atom rmse_global use the same count (4 of 9 here)."""
    from symref.io.data import System
    from symref.train.fit import tensor_errors
    from symref.train.loss import TensorPrefactors, tensor_loss_and_grad

    m = _model("dipole_sel_type")  # type 1 excluded: 4 of the 9 atoms selected
    coord, atype, box = _system(np.random.default_rng(4))
    rng = np.random.default_rng(5)
    sel = atype != 1
    atom_label = rng.normal(size=(2, 9, 3)) * sel[None, :, None]
    y = m.evaluate(coord, atype, box)["atom_dipole"]
    assert sel.sum() == 4
    want = np.sum((y - atom_label) ** 2) / (2 * 4 * 3)
    loss, _ = tensor_loss_and_grad(m, coord, atype, box, None, atom_label,
                                   TensorPrefactors(pref=0.0, pref_atomic=1.0), grad=False)
    np.testing.assert_allclose(loss, want, rtol=1e-14)
    label = rng.normal(size=(2, 3))
    s = System(["O", "H", "C"], atype, coord, box,
               tensors={"atom_dipole": atom_label[:, sel], "dipole": label})
    err = tensor_errors(m, s)
    np.testing.assert_allclose(err["rmse_lc"], np.sqrt(want), rtol=1e-14)
    np.testing.assert_allclose(err["rmse_gl"], np.sqrt(np.mean(
        (m.evaluate(coord, atype, box)["dipole"] - label) ** 2)) / 4, rtol=1e-14)


# ------------------------------------------------------------------ training
def _labelled_water(tmp_path, nframes, seed, name):
    from symref.io.data import System, save_system
    from symref.synthetic import water_box, water_tensor_labels

    c, a, b = water_box(nframes, nmol=8, side=6.4, seed=seed)
    lab = water_tensor_labels(c, a, b, rc=3.0, rc_smth=2.5)
    save_system(System(["O", "H"], a, c, b, name=name, tensors=lab), tmp_path / name)
    return str(tmp_path / name)


@pytest.mark.parametrize("kind", ["dipole", "polar"])
def test_symref_train_and_test_tensor_models(tmp_path, kind, capsys):
    """`symref train` with loss type tensor (L-BFGS), then `symref test`: the model
    learns (validation RMSE below the label spread) and is readable by symref."""
    import json

    import symref
    from symref import cli
    from symref.io.data import load_system
    from symref.train.fit import tensor_errors

    tr, va = _labelled_water(tmp_path, 6, 1, "train"), _labelled_water(tmp_path, 3, 2, "valid")
    fit = {"type": kind, "neuron": [16, 16], "sel_type": [0], "seed": 1}
    inp = {"model": {"type_map": ["O", "H"],
                     "descriptor": {"type": "se_e2_a", "sel": [10, 20], "rcut": 3.2,
                                    "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 4},
                     "fitting_net": fit},
           "loss": {"type": "tensor", "pref": 0.1, "pref_atomic": 1.0},
           "optimizer": {"type": "lbfgs", "maxiter": 40},
           "training": {"training_data": {"systems": [tr]}, "validation_data": {"systems": [va]},
                        "numb_steps": 40, "seed": 3, "save_freq": 1000}}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    cwd = tmp_path
    import os
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert cli.main(["train", "input.json"]) == 0
        model = symref.load_model("model.yaml")
        assert isinstance(model, DeepTensor) and model.atom_exclude_types == [1]
        assert cli.main(["test", "-m", "model.yaml", "-s", va]) == 0
    finally:
        os.chdir(old)
    out = capsys.readouterr().out
    assert "RMSE atomic" in out
    v = load_system(va)
    v.type_map = ["O", "H"]
    err = tensor_errors(model, v)
    key = "atom_" + model.var_name
    spread = float(np.std(v.tensors[key] - (np.eye(3) * 1.47 if kind == "polar" else 0)))
    assert err["rmse_lc"] < spread, (err, spread)
    if kind == "polar":  # the isotropic shift came from the labels (1.47 Å³ per O)
        assert np.allclose(model.out_bias.reshape(2, 3, 3)[0], np.eye(3) * 1.47, atol=0.2)


def test_tensor_loss_input_checks(tmp_path):
    import json

    from symref.io.inputfile import read_input

    base = {"model": {"type_map": ["O"], "descriptor": {"type": "se_e2_a"},
                      "fitting_net": {"type": "dipole"}},
            "learning_rate": {"start_lr": 1e-3},
            "training": {"training_data": {"systems": ["x"]}, "numb_steps": 1}}
    for loss, msg in (({"type": "ener"}, "tensor"), ({"type": "tensor", "pref": -1, "pref_atomic": 1}, "pref")):
        (tmp_path / "in.json").write_text(json.dumps(dict(base, loss=loss)))
        with pytest.raises(ValueError, match=msg):
            read_input(tmp_path / "in.json")


def test_symref_check_on_a_dipole_model_file(tmp_path, capsys):
    import symref
    from symref import cli

    cfg = {"type_map": ["O", "H", "C"],
           "descriptor": {"type": "se_e2_a", "sel": [30, 30, 30], "rcut": 3.5, "neuron": [4, 8],
                          "axis_neuron": 3},
           "fitting_net": {"type": "dipole", "neuron": [8]}}
    symref.save_model(demo_model(cfg, seed=2), tmp_path / "d.yaml")
    assert cli.main(["check", str(tmp_path / "d.yaml")]) == 0
    out = capsys.readouterr().out
    assert "dipole[2]_derivative_fd" in out and "wrapping/vector" in out
