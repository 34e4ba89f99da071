"""symref.train.lcurve: fixed columns in deepmd-kit's layout, nan for missing labels, restarts."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_train import CFG, _teacher_data

from symref.io.data import System, make_molecule
from symref.model.build import demo_model
from symref.train.fit import fit_adam
from symref.train.lcurve import lcurve_keys
from symref.train.loss import LossPrefactors, TensorPrefactors
from symref.train.optim import ExpDecayLR
from symref.train.report import read_lcurve


def test_columns_follow_the_loss_as_in_deepmd_kit():
    """rmse always; rmse_e/f/v only when start and limit prefactors are both nonzero;
    tensor: global/local by pref/pref_atomic."""
    assert lcurve_keys(LossPrefactors(0.02, 1000, 0), LossPrefactors(1, 1, 0)) == \
        ["rmse", "rmse_e", "rmse_f"]
    assert lcurve_keys(LossPrefactors(0.02, 1000, 1), LossPrefactors(1, 1, 0.5)) == \
        ["rmse", "rmse_e", "rmse_f", "rmse_v"]
    assert lcurve_keys(LossPrefactors(0.02, 1000, 1), LossPrefactors(0, 1, 0)) == ["rmse", "rmse_f"]
    assert lcurve_keys(TensorPrefactors(1, 1), None, "dipole") == \
        ["rmse_global_dipole", "rmse_local_dipole"]
    assert lcurve_keys(TensorPrefactors(0, 1), None, "polarizability") == \
        ["rmse_local_polar"]  # deepmd-kit's tensor_name of a polarizability


def _dipole_systems():
    """Two molecules labelled by a dipole teacher: one with the global label only,
    one with the atomic label only (deepmd-kit's dipole examples mix both)."""
    cfg = dict(CFG, fitting_net={"type": "dipole", "neuron": [8]})
    teacher = demo_model(cfg, seed=3)
    out = []
    for seed, key in ((0, "dipole"), (1, "atom_dipole")):
        s = make_molecule(natoms=6, ntypes=3, seed=seed)
        coord = s.coord + np.random.default_rng(seed).normal(scale=0.05, size=(3,) + s.coord.shape[1:])
        ev = teacher.evaluate(coord, s.atype)
        out.append(System(type_map=["C", "H", "O"], atype=s.atype, coord=coord, box=None,
                          tensors={key: ev[key]}, name=key))
    return cfg, out


def test_mixed_tensor_labels_give_fixed_columns_with_nan(tmp_path):
    """Training on systems with only global or only atomic dipoles: every row has the
    header's columns, nan where the batch lacks the label, and np.loadtxt reads it."""
    cfg, data = _dipole_systems()
    model = demo_model(cfg, seed=5)
    lr = ExpDecayLR(start_lr=1e-3, num_steps=12, stop_lr=1e-4, decay_steps=4)
    fit_adam(model, data, data, numb_steps=12, lr=lr, pref_start=TensorPrefactors(1, 1),
             pref_limit=TensorPrefactors(1, 1), batch_size=1, seed=2, disp_freq=1,
             lcurve=tmp_path / "lcurve.out", progress=None, valid_frames=2)
    lines = (tmp_path / "lcurve.out").read_text().splitlines()
    assert lines[0].split() == ["#", "step", "rmse_global_dipole_val", "rmse_global_dipole_trn",
                                "rmse_local_dipole_val", "rmse_local_dipole_trn", "lr"]
    assert lines[1].startswith("# If there is no available reference data")
    assert {len(ln.split()) for ln in lines[2:]} == {6}
    names, rows = read_lcurve(tmp_path / "lcurve.out")
    assert rows.shape == (12, 6)
    g, a = rows[:, names.index("rmse_global_dipole_trn")], rows[:, names.index("rmse_local_dipole_trn")]
    assert np.all(np.isnan(g) != np.isnan(a))  # each batch has exactly one of the two labels
    assert np.isnan(g).any() and np.isnan(a).any()
    data_np = np.loadtxt(tmp_path / "lcurve.out")
    assert data_np.shape == (12, 6)


def _adam(tmp_path, numb_steps, **kw):
    lr = ExpDecayLR(start_lr=3e-3, num_steps=8, stop_lr=1e-4, decay_steps=2)
    return dict(numb_steps=numb_steps, lr=lr, pref_start=LossPrefactors(0.02, 100.0, 0.0),
                pref_limit=LossPrefactors(1.0, 1.0, 0.0), batch_size=2, seed=11, disp_freq=1,
                progress=None, **kw)


def test_restart_after_a_kill_repeats_no_row(tmp_path):
    """A run killed after its step-4 checkpoint had already written rows 5 and 6; the
    restart from that checkpoint drops them, and the file equals an uninterrupted run's."""
    data = [_teacher_data(4, seed=0), _teacher_data(3, seed=1)]
    fit_adam(demo_model(CFG, seed=7), data, data[:1], checkpoint=tmp_path / "a.json",
             lcurve=tmp_path / "a.out", **_adam(tmp_path, 8))
    fit_adam(demo_model(CFG, seed=7), data, data[:1], checkpoint=tmp_path / "b.json",
             lcurve=tmp_path / "b.out", **_adam(tmp_path, 4))
    shutil.copy(tmp_path / "b.json", tmp_path / "b4.json")  # the checkpoint the kill left
    fit_adam(None, data, data[:1], checkpoint=tmp_path / "b.json", lcurve=tmp_path / "b.out",
             restart=tmp_path / "b.json", **_adam(tmp_path, 6))  # rows 5, 6 then "killed"
    fit_adam(None, data, data[:1], checkpoint=tmp_path / "b.json", lcurve=tmp_path / "b.out",
             restart=tmp_path / "b4.json", **_adam(tmp_path, 8))
    steps = [int(ln.split()[0]) for ln in (tmp_path / "b.out").read_text().splitlines()
             if not ln.startswith("#")]
    assert steps == list(range(1, 9))
    assert (tmp_path / "b.out").read_text() == (tmp_path / "a.out").read_text()


def test_restart_with_other_columns_is_refused(tmp_path):
    """Restarting into an lcurve.out whose header has other columns (another loss or
    no validation) is an error naming both headers, not a file with mixed rows."""
    from symref.train.lcurve import Lcurve

    log = Lcurve(tmp_path / "l.out", ["rmse", "rmse_e", "rmse_f"], validation=True)
    log.write(1, 1e-3, {"rmse": 1.0, "rmse_e": 0.1, "rmse_f": 0.5},
              {"rmse": 1.0, "rmse_e": 0.1, "rmse_f": 0.5})
    log.close()
    Lcurve(tmp_path / "l.out", ["rmse", "rmse_e", "rmse_f"], validation=True,
           restart_step=1).close()
    with pytest.raises(ValueError, match="its columns .* are not the restarted run's"):
        Lcurve(tmp_path / "l.out", ["rmse", "rmse_f"], validation=True, restart_step=1)
