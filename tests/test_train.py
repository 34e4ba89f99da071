"""L-BFGS fitting on the exact loss gradient, flat parameter vectors, and training-set helpers."""
import numpy as np
import pytest

from symref.io.data import System, make_molecule, map_types, split_frames
from symref.train.loss import LossPrefactors
from symref.model.build import demo_model
from symref.model.params import flat_parameters, set_flat_parameters
from symref.train.fit import batch_loss_and_grad, fit_lbfgs

CFG = {"type_map": ["C", "H", "O"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [12, 12, 12],
                      "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": False,
                      "type_one_side": True},
       "fitting_net": {"neuron": [8, 8], "resnet_dt": True}}


def _teacher_data(nframes=4, seed=0):
    """Frames of a small molecule labelled by a 'teacher' model of the same architecture."""
    teacher = demo_model(CFG, seed=100)
    s = make_molecule(natoms=7, ntypes=3, seed=seed)
    rng = np.random.default_rng(seed)
    coord = s.coord + rng.normal(scale=0.08, size=(nframes,) + s.coord.shape[1:])
    ev = teacher.evaluate(coord, s.atype)
    return System(type_map=["C", "H", "O"], atype=s.atype, coord=coord, box=None,
                  energy=ev["energy"], force=ev["forces"], name="teacher")


def test_flat_parameter_roundtrip_and_shape_error():
    model = demo_model(CFG, seed=1)
    x = flat_parameters(model)
    set_flat_parameters(model, x + 1.0)
    np.testing.assert_array_equal(flat_parameters(model), x + 1.0)
    with pytest.raises(ValueError, match="parameter vector"):
        set_flat_parameters(model, x[:-1])


def test_batch_gradient_is_the_derivative_of_the_batch_loss():
    model = demo_model(CFG, seed=2)
    data = [_teacher_data(2, seed=0), _teacher_data(3, seed=1)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    f0, g = batch_loss_and_grad(model, data, pref)
    x = flat_parameters(model)
    d = np.random.default_rng(3).normal(size=x.size)
    h = 1e-5
    set_flat_parameters(model, x + h * d)
    fp, _ = batch_loss_and_grad(model, data, pref)
    set_flat_parameters(model, x - h * d)
    fm, _ = batch_loss_and_grad(model, data, pref)
    set_flat_parameters(model, x)
    np.testing.assert_allclose((fp - fm) / (2 * h), g @ d, rtol=1e-6)


def test_lbfgs_reduces_the_loss_and_is_deterministic():
    data = [_teacher_data(4)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    runs = []
    for _ in range(2):
        model = demo_model(CFG, seed=7)
        f0, _ = batch_loss_and_grad(model, data, pref)
        lines = []
        model, res = fit_lbfgs(model, data, pref, maxiter=25, progress=lines.append)
        runs.append((f0, res.fun, flat_parameters(model), lines))
    f0, f1, x, lines = runs[0]
    assert f1 < 0.1 * f0, (f0, f1)
    assert len(lines) >= 5 and "loss" in lines[0]
    np.testing.assert_array_equal(x, runs[1][2])


def test_lbfgs_restart_continues_from_the_checkpoint(tmp_path):
    """The documented L-BFGS restart: the iteration count and parameters continue from
    the checkpoint, the curvature memory starts empty, so the final loss is comparable
    to (not equal to) an uninterrupted run's and never above the loss at the restart."""
    from symref.train.fit import load_checkpoint

    data = [_teacher_data(4)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    _, full = fit_lbfgs(demo_model(CFG, seed=7), data, pref, maxiter=30, progress=None)
    ck = tmp_path / "l.json"
    _, half = fit_lbfgs(demo_model(CFG, seed=7), data, pref, maxiter=15, progress=None,
                        checkpoint=ck, save_freq=5)
    assert load_checkpoint(ck)[1] == 15
    lines = []
    model, res = fit_lbfgs(None, data, pref, maxiter=30, progress=lines.append, restart=ck)
    assert lines[0].startswith("lbfgs iter    16")
    assert res.fun <= half.fun
    assert res.fun <= 3.0 * full.fun, (res.fun, full.fun)
    np.testing.assert_allclose(batch_loss_and_grad(model, data, pref)[0], res.fun, rtol=1e-12)


def test_map_types_and_split():
    s = _teacher_data(5)
    s.type_map = ["O", "C", "H"]  # the system's own naming: type 0 is O, ...
    mapped = map_types(s, ["C", "H", "O"])
    np.testing.assert_array_equal(mapped.atype, np.array([2, 0, 1])[s.atype])
    with pytest.raises(ValueError, match="not in the model's type_map"):
        map_types(s, ["C", "H"])
    train, valid = split_frames([mapped], 0.4, seed=1)
    assert train[0].nframes == 3 and valid[0].nframes == 2
    both = np.concatenate([train[0].energy, valid[0].energy])
    np.testing.assert_array_equal(np.sort(both), np.sort(mapped.energy))
    train2, _ = split_frames([mapped], 0.4, seed=1)
    np.testing.assert_array_equal(train2[0].coord, train[0].coord)


def _adam_args(tmp_path, numb_steps):
    from symref.train.optim import ExpDecayLR
    return dict(numb_steps=numb_steps, lr=ExpDecayLR(start_lr=3e-3, num_steps=8, stop_lr=1e-4,
                                                     decay_steps=2),
                pref_start=LossPrefactors(0.02, 100.0, 0.0), pref_limit=LossPrefactors(1.0, 1.0, 0.0),
                batch_size=2, seed=11, disp_freq=2, progress=None)


def test_adam_restart_is_identical_to_an_uninterrupted_run(tmp_path):
    from symref.train.fit import fit_adam, load_checkpoint
    data = [_teacher_data(4, seed=0), _teacher_data(3, seed=1)]
    full = fit_adam(demo_model(CFG, seed=7), data, data[:1], checkpoint=tmp_path / "a.json",
                    lcurve=tmp_path / "a.out", **_adam_args(tmp_path, 8))
    fit_adam(demo_model(CFG, seed=7), data, data[:1], checkpoint=tmp_path / "b.json",
             lcurve=tmp_path / "b.out", **_adam_args(tmp_path, 4))
    resumed = fit_adam(None, data, data[:1], checkpoint=tmp_path / "b.json",
                       lcurve=tmp_path / "b.out", restart=tmp_path / "b.json",
                       **_adam_args(tmp_path, 8))
    np.testing.assert_array_equal(flat_parameters(resumed), flat_parameters(full))
    assert load_checkpoint(tmp_path / "b.json")[1] == 8
    a = (tmp_path / "a.out").read_text().splitlines()
    b = (tmp_path / "b.out").read_text().splitlines()
    # rows at steps 1 (always, as dp), 2, 4, 6, 8
    assert a == b and a[0].startswith("# step") and "rmse_f_val" in a[0] and len(a) == 7


def test_adam_sigint_writes_a_checkpoint(tmp_path, monkeypatch):
    import signal

    from symref.train import fit as tr
    data = [_teacher_data(3, seed=0)]
    calls = {"n": 0}
    orig = tr.batch_loss_and_grad

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGINT)
        return orig(*a, **k)
    monkeypatch.setattr(tr, "batch_loss_and_grad", interrupting)
    with pytest.raises(KeyboardInterrupt, match="after step 3"):
        tr.fit_adam(demo_model(CFG, seed=7), data, checkpoint=tmp_path / "c.json",
                    **_adam_args(tmp_path, 8))
    assert tr.load_checkpoint(tmp_path / "c.json")[1] == 3


def test_errors_table_zero_on_own_labels_and_scaled_per_atom():
    from symref.train.report import errors_table
    teacher = demo_model(CFG, seed=100)
    s = _teacher_data(3)
    t0 = errors_table(teacher, [s])
    assert t0["energy"][1] < 1e-12 and t0["force"][1] < 1e-12
    shifted = System(type_map=s.type_map, atype=s.atype, coord=s.coord, box=None,
                     energy=s.energy + 0.7, force=s.force)
    t1 = errors_table(teacher, [shifted])
    np.testing.assert_allclose(t1["energy"], (0.7, 0.7))
    np.testing.assert_allclose(t1["energy/atom"], (0.7 / s.natoms, 0.7 / s.natoms))


@pytest.mark.parametrize("scaled", [False, True])
def test_standardized_coordinates_are_an_exact_change_of_variables(scaled):
    """to_model(to_opt(x)) = x, and grad_to_opt is the chain rule: the gradient of
    y -> L(to_model(y)) against central differences, with and without the per-array
    scaling (pref given); fold=True makes the first fitting layer see D with mean 0 and
    spread 1 on the training atoms."""
    from symref.train.fit import standardized_coordinates

    model = demo_model(CFG, seed=2)
    data = [_teacher_data(2, seed=0), _teacher_data(3, seed=1)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    to_model, to_opt, grad_to_opt = standardized_coordinates(model, data,
                                                             pref=pref if scaled else None)
    x = flat_parameters(model)
    np.testing.assert_allclose(to_model(to_opt(x)), x, rtol=1e-12, atol=1e-13)
    assert not np.allclose(to_opt(x), x)
    y = to_opt(x)
    set_flat_parameters(model, to_model(y))
    _, g = batch_loss_and_grad(model, data, pref)
    gy = grad_to_opt(g)
    d = np.random.default_rng(5).normal(size=y.size)
    h = 1e-6
    vals = []
    for sgn in (1, -1):
        set_flat_parameters(model, to_model(y + sgn * h * d))
        vals.append(batch_loss_and_grad(model, data, pref)[0])
    fd = (vals[0] - vals[1]) / (2 * h)
    assert abs(fd - gy @ d) <= 1e-6 * abs(fd)
    # a bare identity (or the gradient not transformed) would fail the line above
    assert abs(fd - g @ d) > 1e-3 * abs(fd)
    # the fold: standardised first-layer inputs, i.e. W D + b = W' (D - mu)/sd + b'
    from symref.train.fit import standardized_coordinates as sc

    m2 = demo_model(CFG, seed=2)
    w0, b0 = m2.fitting.nets[0][0].w.copy(), m2.fitting.nets[0][0].b.copy()
    sc(m2, data, fold=True)
    s0 = data[0]
    nlist, _, _, R, _ = m2.environment(s0.coord[0], s0.atype, None)
    D, _ = m2.descriptor_forward(R, s0.atype, nlist)
    allD = []
    for s in data:
        for f in range(s.nframes):
            nl, _, _, RR, _ = m2.environment(s.coord[f], s.atype, None)
            allD.append(m2.descriptor_forward(RR, s.atype, nl)[0][s.atype == 0])
    allD = np.concatenate(allD)
    mu, sd = allD.mean(axis=0), allD.std(axis=0)
    z = D[s0.atype == 0] @ m2.fitting.nets[0][0].w + m2.fitting.nets[0][0].b
    np.testing.assert_allclose(z, ((D[s0.atype == 0] - mu) / sd) @ w0 + b0, rtol=1e-9,
                               atol=1e-9)


def test_lbfgs_is_first_class_lcurve_validation_eta(tmp_path):
    """L-BFGS writes lcurve.out with Adam's fixed columns (training and validation, lr nan)
    and its progress lines carry the errors, validation and ETA every disp_freq iterations;
    rmse_trn is the root of the loss L-BFGS reports (to lcurve's 3 digits)."""
    from symref.train.report import read_lcurve

    data = [_teacher_data(4, seed=0), _teacher_data(3, seed=1)]
    valid = [_teacher_data(2, seed=3)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    lines = []
    _, res = fit_lbfgs(demo_model(CFG, seed=7), data, pref, maxiter=6, progress=lines.append,
                       valid=valid, disp_freq=2, lcurve=tmp_path / "l.out", standardize=True)
    names, rows = read_lcurve(tmp_path / "l.out")
    assert names == ["step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val",
                     "rmse_f_trn", "lr"]
    assert list(rows[:, 0]) == [2, 4, 6] and np.isnan(rows[:, -1]).all()
    assert np.isfinite(rows[:, 1:-1]).all()
    assert "trn rmse" in lines[1] and "val rmse" in lines[1] and "eta" in lines[1]
    assert lines[0].startswith("lbfgs iter     1  loss") and "trn" not in lines[0]
    np.testing.assert_allclose(rows[-1, 2], np.sqrt(res.fun), rtol=5e-3)
    from symref import cli

    assert cli.main(["plot", str(tmp_path / "l.out"), "-o", str(tmp_path / "l.png")]) == 0
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"  # the nan lr column too
