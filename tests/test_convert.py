"""symref.io.convert / `symref convert`: extxyz <-> deepmd-kit npy in both directions,
units and the virial sign (W = -stress*V, checked against DeepPot.evaluate's own
virial), round trips, grouping, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

pytest.importorskip("ase", reason="ase is not installed (pip install -e '.[ase]')")
import ase.io  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402

from symref import cli
from symref.io.convert import atoms_to_systems, convert, systems_to_atoms
from symref.io.data import load_system, make_crystal
from symref.model.build import demo_model

CFG = {"type_map": ["O", "H"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40, 40],
                      "neuron": [8, 16], "axis_neuron": 4, "type_one_side": True},
       "fitting_net": {"neuron": [16, 16], "resnet_dt": True}}


@pytest.fixture(scope="module")
def labelled():
    """Three triclinic frames labelled by a symref model through the ASE calculator
    (energy, forces, stress), and the model's own evaluate() output for them."""
    from symref.ase import SymrefCalculator

    model = demo_model(CFG, seed=3)
    c = make_crystal(seed=1)
    rng = np.random.default_rng(0)
    frames, coords, boxes = [], [], []
    for k in range(3):
        box = c.box[0] * (1 + 0.02 * k)
        pos = c.coord[0] * (1 + 0.02 * k) + 0.05 * rng.normal(size=c.coord[0].shape)
        a = Atoms(["O", "H"] * 4, positions=pos, cell=box, pbc=True)
        a.calc = SymrefCalculator(model, backend="numpy")
        a.get_potential_energy(), a.get_stress()
        res = {k2: a.calc.results[k2] for k2 in ("energy", "forces", "stress")}
        a.calc = SinglePointCalculator(a, **res)
        frames.append(a)
        coords.append(pos)
        boxes.append(box)
    ref = model.evaluate(np.stack(coords), np.array([0, 1] * 4), np.stack(boxes), backend="numpy")
    return frames, ref


def test_extxyz_to_npy_keeps_units_and_virial_sign(labelled, tmp_path):
    """virial.npy must be the model's virial W (not +stress*V): independent of the
    converter, evaluate() gives W directly."""
    frames, ref = labelled
    src = tmp_path / "frames.extxyz"
    ase.io.write(src, frames)
    out = tmp_path / "npy"
    assert cli.main(["convert", str(src), str(out)]) == 0
    s = load_system(out)
    assert s.type_map == ["O", "H"] and s.atype.tolist() == [0, 1] * 4 and s.nframes == 3
    np.testing.assert_allclose(s.virial, ref["virial"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(s.energy, ref["energy"], rtol=1e-15)
    np.testing.assert_allclose(s.force, ref["forces"], rtol=0, atol=1e-8)  # extxyz: 8 decimals
    np.testing.assert_allclose(s.box, np.stack([np.array(a.cell) for a in frames]), rtol=1e-15)
    # the sign is not symmetric in the data: a flipped virial would be far off
    assert np.abs(s.virial + ref["virial"]).max() > 0.1 * np.abs(ref["virial"]).max()


def test_round_trip_extxyz_npy_extxyz(labelled, tmp_path):
    frames, _ = labelled
    src = tmp_path / "a.extxyz"
    ase.io.write(src, frames)
    convert(src, tmp_path / "npy")
    convert(tmp_path / "npy", tmp_path / "b.extxyz")
    back = ase.io.read(tmp_path / "b.extxyz", ":")
    assert len(back) == 3
    for a, b in zip(frames, back):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert b.pbc.all()
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-8)
        np.testing.assert_allclose(np.array(b.cell), np.array(a.cell), rtol=1e-15)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), rel=1e-15)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=2e-8)
        assert_allclose_scaled(b.get_stress(), a.get_stress(), 1e-12, 1e-12)


def test_round_trip_npy_extxyz_npy_water(shared_data, tmp_path):
    """Real DFT frames (water/data_3, 80 frames, float32 files): npy -> extxyz -> npy
    keeps everything to extxyz's 8 decimals; .traj is exact."""
    src = shared_data / "water" / "data_3"
    ref = load_system(src)
    assert cli.main(["convert", str(src), str(tmp_path / "w.extxyz")]) == 0
    assert cli.main(["convert", str(tmp_path / "w.extxyz"), str(tmp_path / "w")]) == 0
    s = load_system(tmp_path / "w")
    assert s.type_map == ref.type_map and np.array_equal(s.atype, ref.atype)
    np.testing.assert_allclose(s.coord, ref.coord, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(s.box, ref.box)
    np.testing.assert_array_equal(s.energy, ref.energy)
    np.testing.assert_allclose(s.force, ref.force, rtol=0, atol=1e-8)
    assert s.virial is None and ref.virial is None
    convert(src, tmp_path / "w.traj")
    convert(tmp_path / "w.traj", tmp_path / "t")
    t = load_system(tmp_path / "t")
    for key in ("coord", "box", "energy", "force"):
        np.testing.assert_array_equal(getattr(t, key), getattr(ref, key))


def test_deepmd_kit_reads_the_written_system(labelled, tmp_path):
    """deepmd-kit's own DeepmdData loads the folder with the same coordinates, cells,
    labels and virial."""
    pytest.importorskip("deepmd", reason="deepmd-kit not installed")
    from deepmd.utils.data import DeepmdData

    frames, ref = labelled
    convert_frames = tmp_path / "f.traj"
    ase.io.write(convert_frames, frames)
    convert(convert_frames, tmp_path / "npy")
    d = DeepmdData(str(tmp_path / "npy"), "set", type_map=["O", "H"], sort_atoms=False)
    d.add("energy", 1, atomic=False, must=True, high_prec=True)
    d.add("force", 3, atomic=True, must=True, high_prec=False)
    d.add("virial", 9, atomic=False, must=True, high_prec=False)
    data = d._load_set(d.dirs[0])
    np.testing.assert_allclose(data["virial"].reshape(-1, 3, 3), ref["virial"], rtol=1e-12)
    np.testing.assert_allclose(data["energy"].ravel(), ref["energy"], rtol=1e-15)
    np.testing.assert_allclose(data["force"].reshape(3, 8, 3), ref["forces"], rtol=1e-12)
    np.testing.assert_allclose(data["coord"].reshape(3, 8, 3),
                               np.stack([a.positions for a in frames]), rtol=1e-15)


def test_molecules_keys_groups_and_info_virial(tmp_path):
    """Molecules (pbc False) become nopbc systems; custom label keys; a virial in
    atoms.info is copied unchanged; different compositions become sub-systems."""
    rng = np.random.default_rng(1)
    frames = []
    for k in range(4):
        syms = ["C", "H", "H", "O"] if k % 2 == 0 else ["O", "H", "H"]
        a = Atoms(syms, positions=rng.normal(size=(len(syms), 3)))
        a.info["REF_energy"] = -10.0 - k
        a.arrays["REF_forces"] = rng.normal(size=(len(syms), 3))
        a.info["virial"] = rng.normal(size=(3, 3))  # not symmetric: a transpose would show
        frames.append(a)
    src = tmp_path / "m.extxyz"
    ase.io.write(src, frames)
    out = tmp_path / "npy"
    assert cli.main(["convert", str(src), str(out), "--energy-key", "REF_energy",
                     "--forces-key", "REF_forces", "--type-map", "H", "C", "O"]) == 0
    subs = sorted(p.name for p in out.iterdir())
    assert subs == ["CH2O_nopbc", "H2O_nopbc"]
    s = load_system(out / "CH2O_nopbc")
    assert s.box is None and s.type_map == ["H", "C", "O"] and s.atype.tolist() == [1, 0, 0, 2]
    np.testing.assert_array_equal(s.energy, [-10.0, -12.0])
    np.testing.assert_allclose(s.force[1], frames[2].arrays["REF_forces"], atol=1e-8)
    np.testing.assert_allclose(s.virial[1], frames[2].info["virial"], rtol=1e-15)
    convert(out / "CH2O_nopbc", tmp_path / "back.extxyz")  # a molecule's virial goes to info
    back = ase.io.read(tmp_path / "back.extxyz", ":")
    assert not back[1].pbc.any()
    np.testing.assert_allclose(back[1].info["virial"], frames[2].info["virial"], rtol=1e-15)
    assert len(systems_to_atoms([s])) == 2


def test_conversion_errors(tmp_path, capsys):
    a = Atoms("OH", positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 5, pbc=[True, True, False])
    with pytest.raises(ValueError, match=r"frame 0: pbc \[True, True, False\] is a mixture"):
        atoms_to_systems([a])
    (_, s), = atoms_to_systems([a], mixed_pbc="periodic")
    assert s.box is not None
    with pytest.raises(ValueError, match=r"frame 0: atom 1 is 'H', not in type_map \['O'\]"):
        atoms_to_systems([a], type_map=["O"], mixed_pbc="periodic")
    b = Atoms("OH", positions=[[0, 0, 0], [1, 0, 0]])
    b.calc = SinglePointCalculator(b, energy=1.0)
    c = Atoms("OH", positions=[[0, 0, 0], [1.1, 0, 0]])
    with pytest.raises(ValueError, match="frame 1 has no 'energy'"):
        atoms_to_systems([b, c])
    src = tmp_path / "x.extxyz"
    ase.io.write(src, [b])
    (tmp_path / "exists").mkdir()
    assert cli.main(["convert", str(src), str(tmp_path / "exists")]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.extxyz"), str(tmp_path / "o")]) == 2
    assert "missing.extxyz" in capsys.readouterr().err


@pytest.mark.parametrize("text,what", [
    ('3\nProperties=species:S:1:pos:R:3 energy=1.0 pbc="F F F"\nO 0 0 0\nH 1 0\n',
     "Frame has 2 atoms, expected 3"),
    ("2\n\nO 0 0 0\nH 1 0 zero\n", "could not read it"),
])
def test_a_broken_extxyz_is_a_clear_error(tmp_path, capsys, text, what):
    """`symref convert` on a broken extxyz: exit status 2 and one line naming the file
    and ASE's complaint, no traceback (before: a raw ASE traceback)."""
    (tmp_path / "bad.extxyz").write_text(text)
    assert cli.main(["convert", str(tmp_path / "bad.extxyz"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"symref: error: {tmp_path / 'bad.extxyz'}: ase.io.read could not read")
    assert what in err and "Traceback" not in err and not (tmp_path / "o").exists()
