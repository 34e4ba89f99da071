"""deepmd-kit npy systems: reading the real data, and clear errors naming the bad file."""
from pathlib import Path

import numpy as np
import pytest

from symref.io.data import load_system, make_crystal, make_molecule

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")


@needs_data
def test_reads_water_and_molecules():
    w = load_system(SHARED / "water" / "data_1")  # two sets, concatenated
    assert w.natoms == 192 and w.nframes == 160 and w.box.shape == (160, 3, 3)
    assert w.type_map == ["O", "H"] and w.force.shape == (160, 192, 3)
    raw = np.load(SHARED / "water" / "data_1" / "set.001" / "coord.npy")
    np.testing.assert_array_equal(w.coord[80:].reshape(80, -1), raw.astype(np.float64))
    m = load_system(SHARED / "molecules" / "C4H3O1")
    assert m.box is None and m.natoms == 8 and m.type_map == ["C", "H", "O"]


def write_system(root, natoms=3, nframes=2, box=True):
    (root / "set.000").mkdir(parents=True)
    (root / "type.raw").write_text(" ".join("0" for _ in range(natoms)))
    np.save(root / "set.000" / "coord.npy", np.random.default_rng(0).normal(size=(nframes, 3 * natoms)))
    if box:
        np.save(root / "set.000" / "box.npy", np.tile(np.eye(3).ravel() * 10, (nframes, 1)))
    else:
        (root / "nopbc").touch()
    np.save(root / "set.000" / "energy.npy", np.zeros(nframes))
    return root


def test_errors_name_the_file(tmp_path):
    ok = write_system(tmp_path / "ok")
    s = load_system(ok)
    assert s.coord.shape == (2, 3, 3) and s.force is None
    with pytest.raises(FileNotFoundError, match="not a system folder"):
        load_system(tmp_path / "missing")
    bad = write_system(tmp_path / "bad_shape")
    np.save(bad / "set.000" / "coord.npy", np.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"coord\.npy: shape \(2, 7\), expected \(nframes, 9\)"):
        load_system(bad)
    nan = write_system(tmp_path / "nan")
    c = np.zeros((2, 9))
    c[1, 4] = np.nan
    np.save(nan / "set.000" / "coord.npy", c)
    with pytest.raises(ValueError, match="coord.npy: frame 1, column 4 is not finite"):
        load_system(nan)
    nobox = write_system(tmp_path / "nobox")
    (nobox / "set.000" / "box.npy").unlink()
    with pytest.raises(FileNotFoundError, match="box.npy: missing .*nopbc"):
        load_system(nobox)
    sing = write_system(tmp_path / "singular")
    np.save(sing / "set.000" / "box.npy", np.zeros((2, 9)))
    with pytest.raises(ValueError, match="frame 0 has a singular cell"):
        load_system(sing)
    trunc = write_system(tmp_path / "trunc")
    (trunc / "set.000" / "energy.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="energy.npy: cannot read"):
        load_system(trunc)


def test_builtin_systems_are_valid():
    for seed in range(3):
        m = make_molecule(seed=seed)
        d = np.linalg.norm(m.coord[0][:, None] - m.coord[0][None], axis=-1)
        assert d[np.triu_indices(9, 1)].min() >= 1.0
        c = make_crystal(seed=seed)
        assert np.linalg.det(c.box[0]) > 0 and c.box[0][0, 0] < 2 * 4.0  # shorter than 2 rcut


def test_tensor_labels_round_trip_and_sel_type_layout(tmp_path):
    """save_system/load_system keep tensor labels; atomic labels given only for the
    selected atoms (deepmd-kit's sel_type files) expand to zeros elsewhere."""
    from symref.io.data import System, atomic_labels, load_system, save_system

    rng = np.random.default_rng(0)
    atype = np.array([0, 1, 1, 0])
    sel_only = rng.normal(size=(3, 2, 3))  # two oxygens per frame
    s = System(["O", "H"], atype, rng.normal(size=(3, 4, 3)), None, name="m",
               tensors={"dipole": rng.normal(size=(3, 3)), "atom_dipole": sel_only})
    save_system(s, tmp_path / "sys", set_size=2)
    assert sorted(p.name for p in (tmp_path / "sys").glob("set.*")) == ["set.000", "set.001"]
    back = load_system(tmp_path / "sys")
    np.testing.assert_array_equal(back.tensors["dipole"], s.tensors["dipole"])
    full = atomic_labels(back, "atom_dipole", [0])
    np.testing.assert_array_equal(full[:, [0, 3]], sel_only)
    np.testing.assert_array_equal(full[:, [1, 2]], 0.0)
    with pytest.raises(ValueError, match="selected types"):
        atomic_labels(back, "atom_dipole", [0, 1])
    with pytest.raises(FileExistsError):
        save_system(s, tmp_path / "sys")
    np.save(tmp_path / "sys" / "set.000" / "atomic_dipole.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="atomic_dipole.npy"):
        load_system(tmp_path / "sys")
