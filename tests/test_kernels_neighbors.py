"""The numba cell-list neighbour search against the NumPy reference: bit for bit, errors included.

``build_neighbor_list_fast`` must reproduce ``build_neighbor_list`` exactly
(every bit of ``nlist``, ``shift`` and ``rij``), and ``build_pair_list`` must be
the same list in CSR form.  Systems stay small (the reference is O(N²)).
"""
import re

import numpy as np
import pytest

from symref.io.data import make_crystal, make_molecule
from symref.fast.kernels.neighbors import (PairList, _sort_candidates, build_neighbor_list_fast,
                                      build_pair_list)
from symref.reference.neighbors import build_neighbor_list, cell_heights


def bits(a):
    """The raw bits of a float64 array (so that 0.0 and -0.0 differ, and NaN equals itself)."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def check_pair_list(pl: PairList, ref, atype, sel):
    """``pl`` is ``ref`` (padded layout) in CSR form, in slot order, with consistent counts."""
    natoms, ntypes = len(atype), len(sel)
    off = np.concatenate([[0], np.cumsum(sel)])
    assert pl.ptr.dtype == pl.j.dtype == pl.slot.dtype == pl.counts.dtype == np.int64
    assert pl.rij.dtype == pl.shift.dtype == np.float64
    assert pl.ptr.shape == (natoms + 1,) and pl.counts.shape == (natoms, ntypes)
    npair = int(pl.ptr[-1])
    assert pl.ptr[0] == 0 and (np.diff(pl.ptr) >= 0).all()
    assert pl.j.shape == pl.slot.shape == (npair,) and pl.rij.shape == pl.shift.shape == (npair, 3)
    np.testing.assert_array_equal(np.diff(pl.ptr), pl.counts.sum(axis=1))
    for t in range(ntypes):
        n_t = (ref.nlist[:, off[t]:off[t + 1]] >= 0).sum(axis=1)
        np.testing.assert_array_equal(pl.counts[:, t], n_t)
        assert (pl.counts[:, t] <= sel[t]).all()
    for i in range(natoms):
        s = slice(pl.ptr[i], pl.ptr[i + 1])
        expect = np.concatenate([off[t] + np.arange(pl.counts[i, t]) for t in range(ntypes)])
        np.testing.assert_array_equal(pl.slot[s], expect)  # slot order, no gaps inside a type group
        np.testing.assert_array_equal(pl.j[s], ref.nlist[i, pl.slot[s]])
        np.testing.assert_array_equal(bits(pl.rij[s]), bits(ref.rij[i, pl.slot[s]]))
        np.testing.assert_array_equal(bits(pl.shift[s]), bits(ref.shift[i, pl.slot[s]]))


def assert_same(coord, atype, box, rcut, sel, **kw):
    """Fast == reference, bit for bit; the pair list is consistent.  Returns the reference."""
    ref = build_neighbor_list(coord, atype, box, rcut, sel, **kw)
    fast = build_neighbor_list_fast(coord, atype, box, rcut, sel, **kw)
    assert fast.nlist.dtype == ref.nlist.dtype and fast.nlist.shape == ref.nlist.shape
    assert fast.shift.shape == ref.shift.shape and fast.rij.shape == ref.rij.shape
    np.testing.assert_array_equal(fast.nlist, ref.nlist)
    np.testing.assert_array_equal(bits(fast.shift), bits(ref.shift))
    np.testing.assert_array_equal(bits(fast.rij), bits(ref.rij))
    assert np.array_equal(fast.rij, ref.rij) and np.array_equal(fast.shift, ref.shift)
    pl = build_pair_list(coord, atype, box, rcut, sel, **kw)
    check_pair_list(pl, ref, np.asarray(atype), sel)
    return ref


def assert_same_error(coord, atype, box, rcut, sel, **kw):
    """Both raise ValueError with the very same message.  Returns it."""
    with pytest.raises(ValueError) as ref:
        build_neighbor_list(coord, atype, box, rcut, sel, **kw)
    msg = str(ref.value)
    with pytest.raises(ValueError, match=re.escape(msg)) as fast:
        build_neighbor_list_fast(coord, atype, box, rcut, sel, **kw)
    assert str(fast.value) == msg
    with pytest.raises(ValueError, match=re.escape(msg)):
        build_pair_list(coord, atype, box, rcut, sel, **kw)
    return msg


def skewed_cell(side, skew, rng, natoms):
    """A triclinic cell with rows a = (L,0,0), b = (s L, L, 0), c = (-0.3 L, s L, 0.8 L)."""
    sysm = make_crystal(seed=int(rng.integers(1 << 30)), skew=skew, natoms=natoms, side=side)
    box = np.array([[side, 0, 0], [skew * side, side, 0], [-0.3 * side, skew * side, 0.8 * side]])
    frac = sysm.coord[0] @ np.linalg.inv(sysm.box[0])
    return frac @ box, sysm.atype, box


# ------------------------------------------------------------------ real data


def test_water_frame(water_frame):
    coord, atype, box, _ = water_frame
    ref = assert_same(coord[0], atype, box[0].reshape(3, 3), 6.0, [46, 92])
    assert (ref.nlist >= 0).sum(axis=1).min() > 50  # a real, dense list


def test_water_frame_float32_and_truncated(water_frame):
    coord, atype, box, _ = water_frame
    c32, b32 = coord[0].astype(np.float32), box[0].reshape(3, 3).astype(np.float32)
    assert_same(c32, atype, b32, 6.0, [46, 92])
    assert_same(coord[0], atype, box[0].reshape(3, 3), 6.0, [20, 30], truncate=True)
    assert_same_error(coord[0], atype, box[0].reshape(3, 3), 6, [20, 92], frame=7)


def test_multithreaded_path(water_frame, monkeypatch):
    """Small frames run on one thread; force numba's threads on (chunks of bins in parallel)."""
    import symref.fast.kernels.neighbors as kn
    monkeypatch.setattr(kn, "_PARALLEL_MIN_ATOMS", 0)
    coord, atype, box, _ = water_frame
    assert_same(coord[0], atype, box[0].reshape(3, 3), 6.0, [46, 92])
    sysm = make_crystal(seed=8, natoms=12, side=5.0, skew=0.8)
    assert_same(sysm.coord[0], sysm.atype, sysm.box[0], 7.0, [40, 40], truncate=True)


# ------------------------------------------------------------------ molecules


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_molecules(seed):
    sysm = make_molecule(natoms=40, ntypes=3, seed=seed)
    coord, atype = sysm.coord[0], sysm.atype
    for rcut in (2.5, 4.0, 100.0):
        assert_same(coord, atype, None, rcut, [40, 40, 40])


def test_molecule_with_isolated_atom_and_flat_extent():
    rng = np.random.default_rng(5)
    coord = rng.uniform(0, 6, size=(30, 3))
    coord[:, 2] = 0.0  # flat: zero extent along z
    coord[0] = [40.0, 40.0, 0.0]  # isolated
    atype = rng.integers(0, 2, size=30)
    ref = assert_same(coord, atype, None, 3.0, [30, 30])
    assert (ref.nlist[0] == -1).all()
    line = np.zeros((12, 3))
    line[:, 0] = np.arange(12) * 1.3  # a straight line
    assert_same(line, np.arange(12) % 2, None, 3.0, [5, 5])


def test_dilute_molecule_far_apart_clusters():
    """Bounding box of 1e4 Å with a few atoms: the bins are capped, nothing is missed."""
    rng = np.random.default_rng(6)
    a = rng.uniform(0, 4, size=(10, 3))
    coord = np.vstack([a, a[:5] + 1e4, [[-5e3, 2e3, 7e3]]])
    assert_same(coord, np.arange(16) % 2, None, 3.5, [16, 16])


# ------------------------------------------------------------------ cells


@pytest.mark.parametrize("rcut", [3.0, 6.0, 9.0])  # 6 and 9 exceed the ~4.2 Å cell: self-images
def test_small_triclinic_cell(rcut):
    sysm = make_crystal(seed=3)
    assert_same(sysm.coord[0], sysm.atype, sysm.box[0], rcut, [500, 500])


@pytest.mark.parametrize("side,skew,rcut", [(5.0, 0.9, 4.0), (3.0, 1.7, 5.0), (2.2, 0.5, 6.0),
                                            (7.0, 2.5, 5.5)])
def test_skewed_cells_shorter_than_rcut(side, skew, rcut):
    """Face distances from ~rcut down to below rcut/2: many images of every atom, itself too."""
    rng = np.random.default_rng(int(side * 10 + skew * 100))
    natoms = 6 if side < 4 else 10
    coord, atype, box = skewed_cell(side, skew, rng, natoms)
    assert cell_heights(box).min() < rcut
    ref = assert_same(coord, atype, box, rcut, [1000, 1000])
    # some atom sees several images of one neighbour
    js = ref.nlist[0][ref.nlist[0] >= 0]
    assert np.bincount(js).max() > 1


def test_cell_with_face_distance_below_half_rcut():
    box = np.array([[2.0, 0.0, 0.0], [1.5, 1.2, 0.0], [0.7, -0.4, 6.0]])
    assert cell_heights(box).min() < 5.0 / 2
    coord = np.array([[0.1, 0.2, 0.3], [1.4, 0.5, 2.0], [0.3, 0.9, 4.5]])
    assert_same(coord, np.array([0, 1, 1]), box, 5.0, [400, 400])


def test_atoms_far_outside_the_cell_and_on_its_faces():
    sysm = make_crystal(seed=4, natoms=10)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    rng = np.random.default_rng(0)
    moved = coord + rng.integers(-50, 51, size=(len(coord), 3)) @ box
    ref_moved = assert_same(moved, atype, box, 5.0, [300, 300])
    ref = assert_same(coord, atype, box, 5.0, [300, 300])
    np.testing.assert_array_equal(ref.nlist, ref_moved.nlist)
    # exactly on the faces, or a hair outside: the wrap sends them to 0 or to 1
    face = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.25], [-1e-17, 0.3, 0.6],
                     [0.5, 1.0 - 1e-17, -0.0], [0.25, 0.75, 1.0]]) @ box
    assert_same(face, np.array([0, 1, 0, 1, 0]), box, 5.0, [300, 300])


def test_exact_ties_in_a_symmetric_lattice():
    """A simple cubic lattice: whole shells at one distance, ties broken by j then pair vector.

    One atom in a 1 Å cube with rcut 4 has ~270 neighbours, shells of up to 48
    equal distances (the merge-sort path of the per-centre sort).
    """
    assert_same(np.array([[0.3, 0.3, 0.3]]), np.array([0]), np.eye(3), 4.0, [300])
    box = np.eye(3) * 4.0
    coord = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2], [2, 2, 0], [2, 0, 2],
                      [0, 2, 2], [2, 2, 2]], dtype=float) + 0.5
    assert_same(coord, np.arange(8) % 2, box, 6.5, [200, 200])
    assert_same(coord, np.arange(8) % 2, box, 6.5, [9, 13], truncate=True)


def test_dilute_cell_and_zero_atoms_of_a_type():
    box = np.diag([30.0, 28.0, 33.0])
    coord = np.array([[1.0, 1.0, 1.0], [3.0, 1.5, 1.0], [15.0, 15.0, 15.0], [29.5, 27.5, 32.5]])
    atype = np.array([0, 0, 0, 0])  # no atom of type 1
    ref = assert_same(coord, atype, box, 6.0, [5, 5])
    assert (ref.nlist[2] == -1).all()  # zero neighbours
    pl = build_pair_list(coord, atype, box, 6.0, [5, 5])
    assert pl.counts[2].sum() == 0 and (pl.counts[:, 1] == 0).all()


def test_single_atom():
    assert_same(np.array([[0.5, 0.5, 0.5]]), np.array([1]), None, 6.0, [4, 4])
    box = np.array([[3.0, 0.0, 0.0], [0.8, 2.9, 0.0], [0.3, 0.4, 3.1]])
    ref = assert_same(np.array([[0.5, 0.5, 0.5]]), np.array([0]), box, 6.0, [100])
    assert (ref.nlist[0] >= 0).sum() > 10  # only its own images


def test_no_atoms():
    ref = assert_same(np.zeros((0, 3)), np.zeros(0, dtype=int), np.eye(3) * 5, 3.0, [4, 4])
    assert ref.nlist.shape == (0, 8)


def test_types_outside_sel_are_ignored_like_the_reference():
    """Not a supported input, but the kernels must stay in bounds: the reference drops them."""
    sysm = make_crystal(seed=5, natoms=8)
    atype = np.array([0, 1, 2, 0, 1, 5, 0, 1])
    assert_same(sysm.coord[0], atype, sysm.box[0], 5.0, [200, 200])
    assert_same(sysm.coord[0], atype, sysm.box[0], 5.0, [10, 10], truncate=True)


def test_bad_shapes_are_refused_before_the_kernels():
    with pytest.raises(ValueError, match="atype natoms long"):
        build_pair_list(np.zeros((4, 3)), np.zeros(3, dtype=int), None, 3.0, [10])
    with pytest.raises(ValueError, match="coord must be natoms x 3"):
        build_pair_list(np.zeros((4, 2)), np.zeros(4, dtype=int), None, 3.0, [10])


def test_non_finite_coordinates_are_nobodys_neighbour():
    sysm = make_crystal(seed=6, natoms=6)
    coord = sysm.coord[0].copy()
    coord[2] = np.nan
    assert_same(coord, sysm.atype, sysm.box[0], 5.0, [200, 200])
    assert_same(coord, sysm.atype, None, 5.0, [200, 200])


# ------------------------------------------------------------------ truncation and errors


def test_truncation_like_the_reference():
    """sum(sel) smaller than the neighbour count: the global cut matters, then per type."""
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    for sel in ([5, 7], [1, 30], [30, 1], [0, 12]):
        assert_same(coord, atype, box, 6.0, sel, truncate=True)
    mol = make_molecule(natoms=30, seed=4)
    assert_same(mol.coord[0], mol.atype, None, 4.0, [3, 2, 4], truncate=True)


def test_sel_exceeded_same_error():
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    msg = assert_same_error(coord, atype, box, 6.0, [3, 400], frame=2)
    assert re.match(r"frame 2: atom 0 has \d+ neighbours of type 0 .* sel\[0\]=3", msg)
    # the first offending atom and type, as in the reference
    full = build_neighbor_list(coord, atype, box, 6.0, [400, 400])
    n1 = (full.nlist[:, 400:] >= 0).sum(axis=1)
    sel1 = int(n1[3]) - 1
    msg = assert_same_error(coord, atype, box, 6.0, [400, sel1])
    with pytest.raises(ValueError, match=rf"atom {int(np.argmax(n1 > sel1))} has .* of type 1 .*"
                                         rf"sel\[1\]={sel1}"):
        build_neighbor_list_fast(coord, atype, box, 6.0, [400, sel1])
    mol = make_molecule(natoms=20, seed=2)
    assert_same_error(mol.coord[0], mol.atype, None, 5, [2, 2, 2])


def test_coincident_atoms_same_error():
    coord = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    with pytest.raises(ValueError, match="atom 1 and atom 2 are at the same position"):
        build_neighbor_list_fast(coord, np.zeros(3, dtype=int), None, 3.0, [10])
    assert_same_error(coord, np.zeros(3, dtype=int), None, 3.0, [10])
    box = np.eye(3) * 5
    coord = np.array([[0.0, 0, 0], [5.0, 0, 0]])  # atom 1 sits on an image of atom 0
    with pytest.raises(ValueError, match="atom 0 and atom 1 are at the same position"):
        build_neighbor_list_fast(coord, np.zeros(2, dtype=int), box, 3.0, [10])
    assert_same_error(coord, np.zeros(2, dtype=int), box, 3.0, [10], frame=0)
    coord = np.array([[0.0, 0, 0], [5.0 - 1e-7, 0, 0]])  # not wrapped onto it: an image
    with pytest.raises(ValueError, match=r"atom 0 and an image of atom 1 are at the same "
                                         r"position \(distance 1e-07"):
        build_neighbor_list_fast(coord, np.zeros(2, dtype=int), box, 3.0, [10])
    assert_same_error(coord, np.zeros(2, dtype=int), box, 3.0, [10])
    # almost coincident (5e-7 Å) in a skewed cell, found through an image
    sysm = make_crystal(seed=7, natoms=6)
    coord = sysm.coord[0].copy()
    coord[4] = coord[1] + sysm.box[0][2] - sysm.box[0][0] + 5e-7
    assert_same_error(coord, sysm.atype, sysm.box[0], 5.0, [200, 200])


def test_error_precedence_first_centre_then_coincidence_before_sel():
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0].copy(), sysm.box[0], sysm.atype
    coord[6] = coord[5]  # coincidence at atoms 5 and 6 ...
    msg = assert_same_error(coord, atype, box, 6.0, [3, 400])  # ... but atom 0 overflows sel first
    assert msg.startswith("atom 0 has")
    msg = assert_same_error(coord, atype, box, 6.0, [400, 400])
    assert "atom 5 and atom 6" in msg
    coord[0] = coord[5]  # atom 0 both coincides and overflows: coincidence wins
    msg = assert_same_error(coord, atype, box, 6.0, [3, 400])
    assert msg.startswith("atom 0 and atom 5")
    # truncation does not hide a coincidence
    assert_same_error(coord, atype, box, 6.0, [3, 4], truncate=True)


# ------------------------------------------------------------------ the per-centre sort


def test_candidate_sort_is_the_reference_lexsort():
    """Keys with many ties (equal keys, equal j, pair vectors differing in x, y or z only)."""
    rng = np.random.default_rng(11)
    for m in (0, 1, 2, 17, 60, 300):
        key = rng.integers(0, max(m // 6, 1), size=m).astype(np.float64) * 1e9
        key[: m // 3] = 3e10  # one big bucket (merge-sort path)
        cj = rng.integers(0, 4, size=m)
        d = rng.integers(-2, 3, size=(3, m)).astype(np.float64)
        d[:, ::7] *= -0.0  # signed zeros compare equal
        idx = np.empty(m, np.int64)
        scratch = [np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m + 1, np.int64)]
        _sort_candidates(m, idx, *scratch, key, 1 / 6e10, cj, d[0], d[1], d[2])
        np.testing.assert_array_equal(idx, np.lexsort((d[2], d[1], d[0], cj, key)))


@pytest.mark.parametrize("box", [False, True])
def test_only_the_first_ncentre_atoms_are_centres(box):
    """``ncentre``: rows of the first ncentre atoms equal the full list's, the others are
    empty; fast == reference bit for bit; out-of-range values are refused."""
    c = make_crystal(seed=2, natoms=8, side=4.2) if box else make_molecule(natoms=12, seed=4)
    coord, atype = c.coord[0], c.atype
    b = c.box[0] if box else None
    sel = [30] * (int(atype.max()) + 1)
    full = build_neighbor_list(coord, atype, b, 4.0, sel)
    for nc in (0, 5, len(atype)):
        ref = assert_same(coord, atype, b, 4.0, sel, ncentre=nc)
        np.testing.assert_array_equal(ref.nlist[:nc], full.nlist[:nc])
        assert (ref.nlist[nc:] == -1).all()
    for bad in (-1, len(atype) + 1):
        with pytest.raises(ValueError, match="ncentre"):
            build_pair_list(coord, atype, b, 4.0, sel, ncentre=bad)
        with pytest.raises(ValueError, match="ncentre"):
            build_neighbor_list(coord, atype, b, 4.0, sel, ncentre=bad)
