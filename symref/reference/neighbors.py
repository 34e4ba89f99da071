r"""Reference neighbour search: molecules and periodic triclinic cells of any shape.

For centre i, every atom j (including periodic images of any atom, and images
of i itself) with :math:`0 < |\mathbf r_{ji}| < r_c` is a neighbour, where

.. math::  \mathbf r_{ji} = \mathbf x_j - \mathbf x_i + \mathbf S_{ji}, \qquad
           \mathbf S_{ji} = \mathbf n\, h,\ \mathbf n \in \mathbb Z^3,

``h`` being the cell matrix whose rows are the cell vectors.  Cells shorter
than :math:`2 r_c` are handled: the image range along cell vector a is
:math:`|n_a| \le \lceil r_c / d_a \rceil` once atoms are wrapped into the cell,
where :math:`d_a = V / |b \times c|` is the distance between the lattice
planes spanned by the other two vectors.  Coordinates are *not* modified: the
shift :math:`\mathbf S_{ji}` carries the image (and any wrapping), so forces
and the virial follow from :math:`\partial E/\partial \mathbf r_{ji}` alone.

Layout (deepmd-kit's ``se_e2_a``): slots are grouped by neighbour type,
``sel[0]`` slots for type 0, then ``sel[1]`` for type 1, ...; inside a group
neighbours are sorted by distance (ties by atom index, then pair vector); unused
slots hold index -1.  More than ``sel[t]`` neighbours of type t is an error
unless ``truncate=True``, which reproduces deepmd-kit: keep the nearest
``sum(sel)`` neighbours of any type, then the nearest ``sel[t]`` of each type.

This is O(N² · images) in NumPy: the reference, not the fast path
(:mod:`symref.fast.kernels.neighbors` is the O(N) cell-list twin, bit for bit equal).
The helpers below (:func:`wrap_frame`, :func:`lattice_combination`,
:func:`pair_distance`, :func:`distance_key`) spell out every floating-point
operation whose result the fast path must reproduce exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NeighborList:
    """Neighbours of every atom of one frame.

    ``nlist``: nloc x nnei int64, atom index or -1.
    ``shift``: nloc x nnei x 3, Cartesian image shift S (Å), 0 where padded.
    ``rij``:   nloc x nnei x 3, x_j - x_i + S (Å), 0 where padded.
    """

    nlist: np.ndarray
    shift: np.ndarray
    rij: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.nlist >= 0


def cell_heights(box: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å): ``V / |b x c|`` etc."""
    vol = abs(np.linalg.det(box))
    u, v = box[[1, 2, 0]], box[[2, 0, 1]]  # rows (b, c), (c, a), (a, b)
    cross = u[:, [1, 2, 0]] * v[:, [2, 0, 1]] - u[:, [2, 0, 1]] * v[:, [1, 2, 0]]  # as np.cross
    return vol / np.linalg.norm(cross, axis=1)


def image_shifts(box: np.ndarray, rcut: float) -> np.ndarray:
    """Integer image vectors n (nimg x 3) that can bring a wrapped atom within ``rcut``.

    Wrapped fractional coordinates differ by less than 1, so
    ``|n_a| <= ceil(rcut / d_a)`` suffices.
    """
    nmax = np.ceil(rcut / cell_heights(box)).astype(int)  # 3
    rng = [np.arange(-n, n + 1) for n in nmax]
    return np.stack(np.meshgrid(*rng, indexing="ij"), axis=-1).reshape(-1, 3)  # nimg x 3


#: most (periodic images x atoms) a neighbour search may enumerate when the cell is
#: shorter than rcut: ~1 GB of candidate pair vectors per centre in the reference
MAX_IMAGE_ATOMS = 10_000_000


def check_image_count(box: np.ndarray, rcut: float, natoms: int) -> None:
    """Refuse a cell so much smaller than ``rcut`` that enumerating its images would
    exhaust memory: more than 27 images (some face distance below rcut) and more than
    :data:`MAX_IMAGE_ATOMS` image atoms.  The message gives the expected neighbour
    count per atom, n (4/3) π rcut³ with the density n = natoms / V, which
    ``sum(sel)`` would have to hold, and the cell needed."""
    h = cell_heights(box)  # 3
    if not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"the cell is degenerate (face distances {h} Å)")
    nmax = np.ceil(rcut / h)  # 3, floats: no overflow for any finite ratio
    nimg = float(np.prod(2 * nmax + 1))
    if nimg > 27 and nimg * natoms > MAX_IMAGE_ATOMS:
        vol = abs(float(np.linalg.det(box)))
        per_atom = natoms / vol * 4.0 / 3.0 * np.pi * rcut ** 3
        raise ValueError(
            f"the cell (face distances {', '.join(f'{x:.3g}' for x in h)} Å) is far smaller "
            f"than rcut = {rcut} Å: the neighbour search would enumerate {nimg:.3g} periodic "
            f"images of {natoms} atom(s) ({nimg * natoms:.3g} image atoms, bound "
            f"{MAX_IMAGE_ATOMS:.0e}); each atom has about {per_atom:.3g} neighbours within "
            f"rcut, so sum(sel) would have to be >= {int(np.ceil(per_atom))}.  Use a cell at "
            f"least ~{2 * rcut:.3g} Å across (replicate it) or a smaller rcut")


def lattice_combination(n: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Rows of ``n @ h`` evaluated as ``(n_0 h_0 + n_1 h_1) + n_2 h_2``, elementwise.

    A BLAS matmul may fuse or reorder these operations; written out, every
    element comes from the same IEEE operations in the same order, which the
    fast kernels (:mod:`symref.fast.kernels.neighbors`) repeat bit for bit.
    """
    n = np.asarray(n, dtype=np.float64)
    return (n[:, 0:1] * h[0] + n[:, 1:2] * h[1]) + n[:, 2:3] * h[2]


def pair_distance(d: np.ndarray) -> np.ndarray:
    """``|d|`` over the last axis as ``sqrt((dx dx + dy dy) + dz dz)``, left to right.

    ``np.linalg.norm(d, axis=-1)`` gives the same numbers today (numpy adds the
    three squares left to right); spelled out so that the fast kernels provably
    evaluate the very same expression, whatever numpy's reduction order.
    """
    return np.sqrt((d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) + d[..., 2] * d[..., 2])


def distance_key(r):
    """Sort key of a distance: ``rint(r * 1e10)``, i.e. r rounded to 1e-10 Å (as an integer count).

    It orders exactly like ``np.round(r, 10)``, which numpy computes as
    ``rint(r * 1e10) / 1e10``: dividing by the positive constant 1e10 is
    monotone, and two different integers K1 < K2 (exact in float64 below
    2**53) have quotients at least 1e-10 apart, more than one ulp of the
    quotient while it is below ~4e5 Å, so they stay different after rounding:
    the same order and the same ties for any sensible cutoff.
    """
    return np.rint(r * 1e10)


def wrap_frame(coord: np.ndarray, box, rcut: float):
    """Wrapped positions and candidate images of one frame (shared with the fast kernels).

    Returns ``(x0, wrap, shifts_int, shifts_cart, lattice)``:
    ``wrap`` (natoms x 3, integer-valued floats) is ``floor`` of the
    fractional coordinates, ``x0 = coord - wrap h`` the positions wrapped into
    the cell, ``shifts_int`` (nimg x 3) the image vectors n of
    :func:`image_shifts`, ``shifts_cart = n h`` and ``lattice = h``.  For a
    molecule (``box`` None): ``x0 = coord``, ``wrap = 0``, the single image
    n = 0 and ``lattice`` the identity.
    """
    natoms = coord.shape[0]
    rc = float(rcut)
    if not (np.isfinite(rc) and rc > 0):
        raise ValueError(f"rcut must be a finite number > 0, got {rcut!r}")
    if box is None:
        return (coord, np.zeros((natoms, 3)), np.zeros((1, 3), dtype=np.int64),
                np.zeros((1, 3)), np.eye(3))
    box = np.asarray(box, dtype=np.float64)
    check_image_count(box, rcut, natoms)
    inv = np.linalg.inv(box)
    frac = lattice_combination(coord, inv)  # natoms x 3, coord @ inv
    wrap = np.floor(frac)  # natoms x 3: atom i sits at x_i - wrap_i h inside the cell
    x0 = coord - lattice_combination(wrap, box)  # natoms x 3, wrapped positions
    shifts_int = image_shifts(box, rcut)
    shifts_cart = lattice_combination(shifts_int, box)  # nimg x 3
    return x0, wrap, shifts_int, shifts_cart, box


def centre_images(x0: np.ndarray, shifts_int: np.ndarray, shifts_cart: np.ndarray, i: int):
    """Pair vectors and distances from wrapped centre i to every image of every atom.

    Returns ``d`` (nimg x natoms x 3, ``x0_j + n_k h - x0_i``) and ``r``
    (nimg x natoms), with ``r = inf`` for the centre itself (n = 0, j = i).
    """
    d = x0[None, :, :] + shifts_cart[:, None, :] - x0[i]
    r = pair_distance(d)
    r[(shifts_int == 0).all(axis=1), i] = np.inf
    return d, r


def check_distinct(i: int, r: np.ndarray, shifts_int: np.ndarray, where: str) -> None:
    """Raise if centre i is within 1e-6 Å of an atom or an image (``r``: :func:`centre_images`)."""
    close = r < 1e-6
    if close.any():
        k, j = np.argwhere(close)[0]
        what = "an image of atom" if j == i or not (shifts_int[k] == 0).all() else "atom"
        raise ValueError(
            f"{where}atom {i} and {what} {j} are at the same position "
            f"(distance {r[k, j]:.3g} Å); atoms must be distinct")


def sel_error(where: str, i: int, count: int, t: int, rcut, sel_t) -> ValueError:
    """The error for ``count`` > ``sel[t]`` neighbours of type t around atom i."""
    return ValueError(
        f"{where}atom {i} has {count} neighbours of type {t} within "
        f"rcut={rcut} but sel[{t}]={sel_t}; use sel[{t}] >= {count} "
        f"(or truncate=True for deepmd-kit's truncation)")


def build_neighbor_list(coord, atype, box, rcut, sel, *, truncate=False, frame=None,
                        ncentre=None) -> NeighborList:
    """Neighbour list of one frame in the se_e2_a layout.

    ``coord``: natoms x 3 (Å); ``atype``: natoms ints in [0, len(sel));
    ``box``: 3 x 3 (rows are cell vectors) or None for a molecule.
    Raises ``ValueError`` naming the atom, type and the ``sel`` needed when a
    type's neighbour count exceeds ``sel`` (unless ``truncate``).
    ``ncentre``: only atoms ``0..ncentre-1`` get neighbours (the other rows
    stay empty; every atom is still a neighbour), e.g. a rank's own atoms
    among ghosts in :mod:`symref.lammps`.
    """
    coord = np.asarray(coord, dtype=np.float64)
    natoms = coord.shape[0]
    ntypes = len(sel)
    sel = np.asarray(sel, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sel)])
    nnei = int(offsets[-1])
    where = "" if frame is None else f"frame {frame}: "
    x0, wrap, shifts_int, shifts_cart, lattice = wrap_frame(coord, box, rcut)
    nlist = np.full((natoms, nnei), -1, dtype=np.int64)
    shift = np.zeros((natoms, nnei, 3))
    rij_out = np.zeros((natoms, nnei, 3))
    ncentre = natoms if ncentre is None else int(ncentre)
    if not 0 <= ncentre <= natoms:
        raise ValueError(f"ncentre must be in [0, {natoms}], got {ncentre}")
    for i in range(ncentre):
        # images of every atom relative to the wrapped centre: nimg x natoms (x 3)
        d, r = centre_images(x0, shifts_int, shifts_cart, i)
        check_distinct(i, r, shifts_int, where)
        kk, jj = np.nonzero(r < rcut)
        rr = r[kk, jj]
        tj = atype[jj]
        # by distance (rounded to 1e-10 Å so that equal distances of symmetric
        # images tie exactly), ties by atom index, then by the pair vector: an
        # order that does not depend on how the atoms were wrapped
        dvec = d[kk, jj]
        order = np.lexsort((dvec[:, 2], dvec[:, 1], dvec[:, 0], jj, distance_key(rr)))
        kk, jj, rr, tj = kk[order], jj[order], rr[order], tj[order]
        if truncate and len(rr) > nnei:
            kk, jj, rr, tj = kk[:nnei], jj[:nnei], rr[:nnei], tj[:nnei]
        for t in range(ntypes):
            pick = np.nonzero(tj == t)[0]
            if len(pick) > sel[t]:
                if not truncate:
                    raise sel_error(where, i, len(pick), t, rcut, sel[t])
                pick = pick[: sel[t]]
            s0 = offsets[t]
            n = len(pick)
            nlist[i, s0:s0 + n] = jj[pick]
            # total shift from the *unwrapped* coordinates: x_j - x_i + S = x0_j + n h - x0_i
            S = shifts_cart[kk[pick]] - lattice_combination(wrap[jj[pick]] - wrap[i], lattice)
            shift[i, s0:s0 + n] = S
            rij_out[i, s0:s0 + n] = coord[jj[pick]] - coord[i] + S
    return NeighborList(nlist, shift, rij_out)


# --------------------------------------------------------------------------- excluded type pairs
def type_pair_table(ntypes: int, pairs) -> np.ndarray:
    """``table[ti, tj]`` (ntypes x ntypes bool, symmetric): True when the unordered type
    pair ``(ti, tj)`` is one of ``pairs`` (a list of ``(a, b)``; both orders are meant).

    The one statement of deepmd-kit's type-pair exclusion rule; it serves the model's
    ``pair_exclude_types`` (:func:`exclude_type_pairs`) and the descriptor's
    ``exclude_types`` (:func:`symref.reference.descriptor.se_e2_a.keep_mask`) alike.
    ``ValueError`` for a type outside ``0..ntypes-1``.
    """
    table = np.zeros((ntypes, ntypes), dtype=bool)  # (centre type, neighbour type)
    for a, b in pairs:
        if not (0 <= a < ntypes and 0 <= b < ntypes):
            raise ValueError(f"excluded type pair ({a}, {b}) is outside 0..{ntypes - 1}")
        table[a, b] = table[b, a] = True
    return table


def exclude_type_pairs(nlist: np.ndarray, atype: np.ndarray, ntypes: int, pairs) -> np.ndarray:
    """``nlist`` (nloc x nnei) with the neighbours of excluded type pairs removed (-1).

    deepmd-kit's model-level ``pair_exclude_types``: slot j of centre i is emptied when
    ``(atype[i], atype[nlist[i, j]])`` is in ``pairs`` (either order); the emptied slot
    then counts as padding.  ``atype``: types of all atoms ``nlist`` indexes (its first
    nloc entries are the centres').  Returns a new array (``nlist`` itself when
    ``pairs`` is empty).
    """
    if not len(pairs):
        return nlist
    table = type_pair_table(ntypes, pairs)
    real = nlist >= 0  # nloc x nnei
    tnei = atype[np.where(real, nlist, 0)]  # nloc x nnei, neighbour types (0 where padded)
    removed = real & table[atype[:nlist.shape[0], None], tnei]
    return np.where(removed, -1, nlist)


def pair_forces_virial(g: np.ndarray, nlist: np.ndarray, mask: np.ndarray, rij: np.ndarray,
                       natoms: int):
    r"""Forces and per-atom virials from the pair gradients :math:`\mathbf g_{ij} = \partial E/
    \partial \mathbf r_{ji}` (nloc x nnei x 3) of a padded neighbour list.

    :math:`\mathbf F_i \mathrel{+}= \sum_j \mathbf g_{ij}`, :math:`\mathbf F_j \mathrel{-}=
    \mathbf g_{ij}`; the pair virial :math:`-\mathbf g_{ij} \otimes \mathbf r_{ji}` goes to the
    neighbour atom j (deepmd-kit's convention; images folded onto their atom).  Returns
    ``(forces (natoms x 3), atom_virial (natoms x 3 x 3))``."""
    forces = g.sum(axis=1)  # F_i = +sum_j g_ij
    np.add.at(forces, nlist[mask], -g[mask])  # F_j -= g_ij
    pair_vir = -g[..., :, None] * rij[..., None, :]  # nloc x nnei x 3 x 3
    atom_virial = np.zeros((natoms, 3, 3), dtype=g.dtype)
    np.add.at(atom_virial, nlist[mask], pair_vir[mask])
    return forces, atom_virial
