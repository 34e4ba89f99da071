"""Reference neighbour search against an independent brute force over an explicit supercell."""
import itertools

import numpy as np
import pytest

from symref.io.data import make_crystal, make_molecule
from symref.reference.neighbors import build_neighbor_list


def brute_force(coord, atype, box, rcut, nrep=4):
    """Per atom, per type: sorted list of (distance, j) over images n in [-nrep, nrep]^3 (plain loops)."""
    out = []
    shifts = [np.zeros(3)] if box is None else \
        [np.array(n) @ box for n in itertools.product(range(-nrep, nrep + 1), repeat=3)]
    for i in range(len(coord)):
        per_type = {}
        for j in range(len(coord)):
            for S in shifts:
                d = np.linalg.norm(coord[j] + S - coord[i])
                if 0 < d < rcut:
                    per_type.setdefault(int(atype[j]), []).append((round(d, 9), j))
        out.append({t: sorted(v) for t, v in per_type.items()})
    return out


def as_lists(nl, atype, sel):
    off = np.concatenate([[0], np.cumsum(sel)])
    res = []
    for i in range(nl.nlist.shape[0]):
        per_type = {}
        for t in range(len(sel)):
            sl = slice(off[t], off[t + 1])
            js = nl.nlist[i, sl]
            d = np.linalg.norm(nl.rij[i, sl], axis=-1)
            got = [(round(float(dd), 9), int(j)) for dd, j in zip(d, js) if j >= 0]
            if got:
                assert [g[0] for g in got] == sorted(g[0] for g in got), "not sorted by distance"
                assert all(atype[j] == t for _, j in got), "neighbour in the wrong type group"
                per_type[t] = sorted(got)
            assert np.all(js[len(got):] == -1), "padding must follow the real neighbours"
        res.append(per_type)
    return res


@pytest.mark.parametrize("rcut", [3.0, 6.0, 9.0])  # 6 and 9 exceed the ~4.2 Å cell: self-images
def test_triclinic_matches_brute_force(rcut):
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    sel = [400, 400]
    nl = build_neighbor_list(coord, atype, box, rcut, sel)
    assert as_lists(nl, atype, sel) == brute_force(coord, atype, box, rcut, nrep=5)
    # rij is x_j - x_i + shift, shift an integer combination of cell vectors
    m = nl.mask
    np.testing.assert_allclose(nl.rij[m], coord[nl.nlist[m]] - coord[np.nonzero(m)[0]] + nl.shift[m], atol=1e-12)
    n = nl.shift[m] @ np.linalg.inv(box)
    np.testing.assert_allclose(n, np.round(n), atol=1e-9)


def test_atoms_far_outside_the_cell():
    """Wrapping by lattice vectors changes nothing but the shifts."""
    sysm = make_crystal(seed=4)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    rng = np.random.default_rng(0)
    moved = coord + rng.integers(-7, 8, size=(len(coord), 3)) @ box
    a = build_neighbor_list(coord, atype, box, 5.0, [200, 200])
    b = build_neighbor_list(moved, atype, box, 5.0, [200, 200])
    assert as_lists(a, atype, [200, 200]) == as_lists(b, atype, [200, 200])
    np.testing.assert_array_equal(a.nlist, b.nlist)
    np.testing.assert_allclose(a.rij, b.rij, atol=1e-9)


def test_molecule_has_no_images():
    sysm = make_molecule(natoms=7, seed=1)
    coord, atype = sysm.coord[0], sysm.atype
    nl = build_neighbor_list(coord, atype, None, 100.0, [10, 10, 10])
    assert (nl.mask.sum(axis=1) == 6).all()
    assert as_lists(nl, atype, [10, 10, 10]) == brute_force(coord, atype, None, 100.0)


def test_sel_exceeded_is_an_error_naming_atom_and_sel():
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    with pytest.raises(ValueError, match=r"frame 2: atom 0 has \d+ neighbours of type 0 .* sel\[0\]=3"):
        build_neighbor_list(coord, atype, box, 6.0, [3, 400], frame=2)


def test_truncation_keeps_the_nearest_like_deepmd():
    """deepmd-kit: nearest sum(sel) of any type first, then the nearest sel[t] of each type."""
    sysm = make_crystal(seed=3)
    coord, box, atype = sysm.coord[0], sysm.box[0], sysm.atype
    full = as_lists(build_neighbor_list(coord, atype, box, 6.0, [400, 400]), atype, [400, 400])
    sel = [5, 7]
    trunc = as_lists(build_neighbor_list(coord, atype, box, 6.0, sel, truncate=True), atype, sel)
    for i in range(len(coord)):
        merged = sorted(full[i][0] + full[i][1])[: sum(sel)]
        for t in range(2):
            expect = [x for x in merged if atype[x[1]] == t][: sel[t]]
            assert trunc[i].get(t, []) == expect


def test_coincident_atoms_are_an_error():
    coord = np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    with pytest.raises(ValueError, match="atom 1 and atom 2 are at the same position"):
        build_neighbor_list(coord, np.zeros(3, dtype=int), None, 3.0, [10])
    box = np.eye(3) * 5
    coord = np.array([[0.0, 0, 0], [5.0, 0, 0]])  # atom 1 sits on an image of atom 0
    with pytest.raises(ValueError, match="same position"):
        build_neighbor_list(coord, np.zeros(2, dtype=int), box, 3.0, [10])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_cell_far_smaller_than_rcut_is_refused_with_the_sel_needed(backend):
    """A 0.07 Å cubic cell with rcut 6 would need 5e6 images of each atom: both
    neighbour searches refuse it before allocating, naming the bound, the expected
    neighbour count (the sel needed) and the cell needed; rcut = inf is refused too."""
    from symref.fast.kernels.neighbors import build_neighbor_list_fast

    build = build_neighbor_list if backend == "numpy" else build_neighbor_list_fast
    L = 0.07
    coord = np.array([[0.0, 0, 0], [L / 2, L / 2, L / 2]])
    box = np.eye(3) * L
    with pytest.raises(ValueError, match=r"far smaller than rcut = 6.0.*5.18e\+06 periodic images"
                                         r".*sum\(sel\) would have to be >= 5275678.*12 Å"):
        build(coord, np.array([0, 1]), box, 6.0, [40, 40])
    for rc in (np.inf, np.nan, -1.0):
        with pytest.raises(ValueError, match="rcut must be a finite number > 0"):
            build(coord, np.array([0, 1]), box * 100, rc, [40, 40])
        with pytest.raises(ValueError, match="rcut must be a finite number > 0"):
            build(coord, np.array([0, 1]), None, rc, [40, 40])
