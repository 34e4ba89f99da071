"""symref.modeldevi and `symref model-devi`: the deviation statistics equal deepmd-kit's
own functions (calc_model_devi_f/_v/_e and its calc_model_devi pipeline driven by symref
models), the file is byte-identical to deepmd-kit's write_model_devi_out, and the CLI."""
from __future__ import annotations

import numpy as np
import pytest

from symref import cli
from symref.io.data import System, make_crystal, save_system
from symref.io.model_file import save_model
from symref.modeldevi import (COLUMNS, deviations, format_model_devi, model_deviation,
                              write_model_devi)
from symref.model.build import demo_model

CFG = {"type_map": ["O", "H"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40, 40],
                      "neuron": [8, 16], "axis_neuron": 4, "type_one_side": True},
       "fitting_net": {"neuron": [16, 16], "resnet_dt": True}}


@pytest.fixture(scope="module")
def models():
    return [demo_model(CFG, seed=s) for s in (0, 1, 2)]


@pytest.fixture(scope="module")
def frames():
    """Four frames of a small triclinic crystal (shifted atoms), atype, boxes."""
    c = make_crystal(seed=2)
    rng = np.random.default_rng(0)
    coord = c.coord[0] + 0.1 * rng.normal(size=(4,) + c.coord[0].shape)
    return coord, c.atype, np.repeat(c.box, 4, axis=0)


def _deepmd_model_devi():
    pytest.importorskip("deepmd", reason="deepmd-kit not installed")
    from deepmd.infer import model_devi

    return model_devi


def test_statistics_equal_deepmd_kit_functions():
    md = _deepmd_model_devi()
    rng = np.random.default_rng(1)
    M, nf, n = 4, 5, 7
    f = rng.normal(size=(M, nf, n, 3))
    v = rng.normal(size=(M, nf, 9))
    e = rng.normal(size=(M, nf))
    d = deviations(e, f, v)
    ref_f = md.calc_model_devi_f(f, atomic=True)
    for key, r in zip(("max_devi_f", "min_devi_f", "avg_devi_f", "atom_devi_f"), ref_f):
        np.testing.assert_allclose(d[key], r, rtol=1e-14)
    for key, r in zip(("max_devi_v", "min_devi_v", "avg_devi_v"), md.calc_model_devi_v(v)):
        np.testing.assert_allclose(d[key], r, rtol=1e-14)
    np.testing.assert_allclose(d["devi_e"], md.calc_model_devi_e(e[..., None]), rtol=1e-14)
    # relative deviations (deepmd-kit's relative_v only broadcasts for a single frame)
    dr = deviations(e, f, v, relative=0.5)
    np.testing.assert_allclose(dr["max_devi_f"], md.calc_model_devi_f(f, relative=0.5)[0],
                               rtol=1e-14)
    d1 = deviations(e[:, :1], f[:, :1], v[:, :1], relative_v=0.3)
    np.testing.assert_allclose(d1["max_devi_v"], md.calc_model_devi_v(v[:, :1], relative=0.3)[0],
                               rtol=1e-14)
    # identical models: zero deviation (to the round-off of a mean of 3 equal numbers)
    z = deviations(np.repeat(e[:1], 3, 0), np.repeat(f[:1], 3, 0), np.repeat(v[:1], 3, 0))
    assert all(np.abs(z[k]).max() < 1e-15 for k in COLUMNS)


def test_pipeline_equals_deepmd_calc_model_devi(models, frames, tmp_path):
    """deepmd-kit's calc_model_devi (its per-atom normalisation, step column, file) driven
    by the same symref models through a DeepPot-like adapter gives the same table and,
    via its write_model_devi_out, the same bytes."""
    md = _deepmd_model_devi()
    coord, atype, box = frames

    class Adapter:
        def __init__(self, m):
            self.m = m

        def eval(self, coord, box, atype, **kwargs):
            n = len(atype)
            o = self.m.evaluate(coord.reshape(-1, n, 3), atype,
                                None if box is None else box.reshape(-1, 3, 3))
            return (o["energy"][:, None], o["forces"], o["virial"].reshape(-1, 9))

    ref = md.calc_model_devi(coord.reshape(4, -1), box.reshape(4, 9), atype,
                             [Adapter(m) for m in models], frequency=10, atomic=True)
    ours = model_deviation(models, coord, atype, box, frequency=10, atomic=True)
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)
    assert ours[:, 0].tolist() == [0, 10, 20, 30]
    assert (ours[:, 4] >= ours[:, 6]).all() and (ours[:, 6] >= ours[:, 5]).all()
    md.write_model_devi_out(ref, str(tmp_path / "dp.out"), header="sys", atomic=True)
    write_model_devi(tmp_path / "symref.out", [("sys", ours)], atomic=True)
    assert (tmp_path / "symref.out").read_text() == (tmp_path / "dp.out").read_text()


def test_cli_writes_dp_layout(models, frames, tmp_path, capsys):
    coord, atype, box = frames
    paths = []
    for k, m in enumerate(models):
        paths.append(str(tmp_path / f"m{k}.yaml"))
        save_model(m, paths[-1])
    root = tmp_path / "systems"
    save_system(System(type_map=["O", "H"], atype=atype, coord=coord, box=box), root / "a")
    # a second system whose type_map lists the elements in the other order
    save_system(System(type_map=["H", "O"], atype=1 - atype, coord=coord[:2], box=box[:2]),
                root / "b")
    out = tmp_path / "md.out"
    assert cli.main(["model-devi", "-m", *paths, "-s", str(root), "-o", str(out), "-f", "5"]) == 0
    assert "2 system(s), 6 frames" in capsys.readouterr().out
    text = out.read_text().splitlines()
    assert text[0] == f"# {root / 'a'}"
    assert text[1].split() == ["#", "step", *COLUMNS]
    table = np.loadtxt(out)
    assert table.shape == (6, 8)
    assert table[:, 0].tolist() == [0, 5, 10, 15, 0, 5]
    expect = model_deviation(models, coord, atype, box)
    np.testing.assert_allclose(table[:4, 1:], expect[:, 1:], rtol=1e-6)
    np.testing.assert_allclose(table[4:, 1:], expect[:2, 1:], rtol=1e-6)  # mapped by name
    # errors: a single model, a missing system
    assert cli.main(["model-devi", "-m", paths[0], "-s", str(root), "-o", str(out)]) == 2
    assert "at least 2 models" in capsys.readouterr().err
    assert cli.main(["model-devi", "-m", *paths, "-s", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_input_checks(models):
    with pytest.raises(ValueError, match="forces must have shape"):
        deviations(np.zeros((2, 1)), np.zeros((2, 1, 3)), np.zeros((2, 1, 9)))
    with pytest.raises(ValueError, match="virials must have shape"):
        deviations(np.zeros((2, 1)), np.zeros((2, 1, 4, 3)), np.zeros((2, 1, 6)))
    other = demo_model({**CFG, "type_map": ["H", "O"]}, seed=0)
    with pytest.raises(ValueError, match="share one type_map"):
        model_deviation([models[0], other], np.zeros((1, 3)) + [[0, 0, 0]], [0])
    with pytest.raises(ValueError, match="expected"):
        format_model_devi([("x", np.zeros((2, 5)))])
