"""`symref show`, `symref change-bias`, `symref test --detail-file`: the dp commands people reach for."""
from __future__ import annotations

import numpy as np
import pytest

import symref
from symref import cli
from symref.io.data import System, make_molecule, save_system
from symref.model.build import demo_model

CFG = {"type_map": ["O", "H"],
       "descriptor": {"type": "se_e2_a", "rcut": 3.0, "sel": [20, 20], "neuron": [4, 8],
                      "axis_neuron": 2},
       "fitting_net": {"neuron": [8]}}


def _labelled(tmp_path, model):
    """Two systems of different composition labelled by ``model`` (with virials)."""
    paths = []
    for seed, natoms in ((0, 5), (1, 7)):
        s = make_molecule(natoms=natoms, ntypes=2, seed=seed)
        coord = s.coord + np.random.default_rng(seed).normal(scale=0.05,
                                                             size=(3,) + s.coord.shape[1:])
        box = np.repeat(np.eye(3)[None] * 30.0, 3, axis=0)
        ev = model.evaluate(coord, s.atype, box)
        p = tmp_path / f"sys{seed}"
        save_system(System(type_map=["O", "H"], atype=s.atype, coord=coord, box=box,
                           energy=ev["energy"], force=ev["forces"], virial=ev["virial"],
                           name=str(p)), p)
        paths.append(p)
    return paths


def test_change_bias_recovers_a_shifted_bias(tmp_path, capsys):
    """change: data labelled by the model, then the model's bias shifted by δ per type:
    change-bias finds -δ by least squares (two compositions) and writes MODEL_updated;
    set: the bias of the labels alone (energy_bias)."""
    from symref.train.stats import energy_bias
    from symref.io.data import load_systems

    model = demo_model(CFG, seed=3)
    paths = _labelled(tmp_path, model)
    right = model.out_bias.copy()
    model.out_bias = right + np.array([0.3, -0.2])
    symref.save_model(model, tmp_path / "m.yaml")
    assert cli.main(["change-bias", str(tmp_path / "m.yaml"), "-s", *map(str, paths)]) == 0
    assert "wrote" in capsys.readouterr().out
    fixed = symref.load_model(tmp_path / "m_updated.yaml")
    np.testing.assert_allclose(fixed.out_bias, right, rtol=0, atol=1e-9)
    assert cli.main(["change-bias", str(tmp_path / "m.yaml"), "-s", *map(str, paths),
                     "-m", "set", "-o", str(tmp_path / "set.yaml")]) == 0
    want = energy_bias(load_systems(paths, ["O", "H"]), 2, ["O", "H"]).bias
    np.testing.assert_allclose(symref.load_model(tmp_path / "set.yaml").out_bias.ravel(),
                               np.ravel(want), rtol=1e-12)
    with pytest.raises(SystemExit):
        cli.main(["change-bias", str(tmp_path / "m.yaml"), "-s", str(paths[0]), "-m", "move"])


def test_detail_files_are_dp_tests(tmp_path, capsys):
    """dp test's detail files: .e.out (label, prediction per frame), .e_peratom.out,
    .f.out (per atom), .v.out/.v_peratom.out; header from the first system, rows of all."""
    model = demo_model(CFG, seed=4)
    paths = _labelled(tmp_path, model)
    symref.save_model(model, tmp_path / "m.yaml")
    prefix = tmp_path / "out"
    assert cli.main(["test", "-m", str(tmp_path / "m.yaml"), "-s", *map(str, paths),
                     "--plot", "", "-d", str(prefix)]) == 0
    e = np.loadtxt(tmp_path / "out.e.out")
    assert e.shape == (6, 2)
    np.testing.assert_allclose(e[:, 0], e[:, 1], rtol=1e-12)  # the model labelled the data
    pa = np.loadtxt(tmp_path / "out.e_peratom.out")
    np.testing.assert_allclose(pa, e / np.array([5] * 3 + [7] * 3)[:, None], rtol=1e-14)
    f = np.loadtxt(tmp_path / "out.f.out")
    assert f.shape == (3 * 5 + 3 * 7, 6)
    v = np.loadtxt(tmp_path / "out.v.out")
    assert v.shape == (6, 18)
    head = (tmp_path / "out.f.out").read_text().splitlines()[0]
    assert head == f"# {paths[0]}: data_fx data_fy data_fz pred_fx pred_fy pred_fz"
    assert sum(ln.startswith("#") for ln in (tmp_path / "out.e.out").read_text().splitlines()) == 1


def test_show_prints_type_map_descriptor_fitting_sizes(tmp_path, capsys):
    """`symref show MODEL`: dp show's lines (type map, descriptor and fitting parameters,
    parameter counts) and symref's summary (cutoff, sel, precision)."""
    from symref.model.params import flat_parameters

    model = demo_model(CFG, seed=5)
    symref.save_model(model, tmp_path / "m.dp")
    assert cli.main(["show", str(tmp_path / "m.dp")]) == 0
    out = capsys.readouterr().out
    assert "The type_map is ['O', 'H']" in out
    assert "The descriptor parameter is {'type': 'se_e2_a', 'sel': [20, 20], 'rcut': 3.0" in out
    assert "'neuron': [8]" in out.split("The fitting_net parameter is")[1]
    assert f"Parameters in total: {flat_parameters(model).size:,}" in out
    assert "rcut 3.0 Å (rcut_smth 0.5), sel [20, 20], precision float64" in out
    assert cli.main(["show", str(tmp_path / "m.dp"), "type-map"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["The type_map is ['O', 'H']"]
    assert cli.main(["show", str(tmp_path / "m.dp"), "colour"]) == 2
