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

This is O(N² · images) in NumPy: the reference, not the fast path.
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
    cross = np.array([np.cross(box[1], box[2]), np.cross(box[2], box[0]), np.cross(box[0], box[1])])
    return vol / np.linalg.norm(cross, axis=1)


def image_shifts(box: np.ndarray, rcut: float) -> np.ndarray:
    """Integer image vectors n (nimg x 3) that can bring a wrapped atom within ``rcut``.

    Wrapped fractional coordinates differ by less than 1, so
    ``|n_a| <= ceil(rcut / d_a)`` suffices.
    """
    nmax = np.ceil(rcut / cell_heights(box)).astype(int)  # 3
    rng = [np.arange(-n, n + 1) for n in nmax]
    return np.stack(np.meshgrid(*rng, indexing="ij"), axis=-1).reshape(-1, 3)  # nimg x 3


def build_neighbor_list(coord, atype, box, rcut, sel, *, truncate=False, frame=None) -> NeighborList:
    """Neighbour list of one frame in the se_e2_a layout.

    ``coord``: natoms x 3 (Å); ``atype``: natoms ints in [0, len(sel));
    ``box``: 3 x 3 (rows are cell vectors) or None for a molecule.
    Raises ``ValueError`` naming the atom, type and the ``sel`` needed when a
    type's neighbour count exceeds ``sel`` (unless ``truncate``).
    """
    coord = np.asarray(coord, dtype=np.float64)
    natoms = coord.shape[0]
    ntypes = len(sel)
    sel = np.asarray(sel, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sel)])
    nnei = int(offsets[-1])
    where = "" if frame is None else f"frame {frame}: "
    if box is None:
        shifts_cart = np.zeros((1, 3))
        shifts_int = np.zeros((1, 3), dtype=np.int64)
        frac_shift = np.zeros((natoms, 3))
        x0 = coord
    else:
        box = np.asarray(box, dtype=np.float64)
        inv = np.linalg.inv(box)
        frac = coord @ inv  # natoms x 3
        wrap = np.floor(frac)  # natoms x 3: atom i sits at x_i - wrap_i h inside the cell
        frac_shift = wrap
        x0 = coord - wrap @ box  # natoms x 3, wrapped positions
        shifts_int = image_shifts(box, rcut)
        shifts_cart = shifts_int @ box  # nimg x 3
    nlist = np.full((natoms, nnei), -1, dtype=np.int64)
    shift = np.zeros((natoms, nnei, 3))
    rij_out = np.zeros((natoms, nnei, 3))
    for i in range(natoms):
        # images of every atom relative to the wrapped centre: nimg x natoms x 3
        d = x0[None, :, :] + shifts_cart[:, None, :] - x0[i]
        r = np.linalg.norm(d, axis=-1)  # nimg x natoms
        self_img = (shifts_int == 0).all(axis=1)
        r_self = r.copy()
        r_self[self_img, i] = np.inf
        close = r_self < 1e-6
        if close.any():
            k, j = np.argwhere(close)[0]
            what = "an image of atom" if j == i or not self_img[k] else "atom"
            raise ValueError(
                f"{where}atom {i} and {what} {j} are at the same position "
                f"(distance {r_self[k, j]:.3g} Å); atoms must be distinct")
        sel_mask = r_self < rcut
        kk, jj = np.nonzero(sel_mask)
        rr = r_self[kk, jj]
        tj = atype[jj]
        # by distance (rounded to 1e-10 Å so that equal distances of symmetric
        # images tie exactly), ties by atom index, then by the pair vector: an
        # order that does not depend on how the atoms were wrapped
        dvec = x0[jj] + shifts_cart[kk] - x0[i]
        order = np.lexsort((dvec[:, 2], dvec[:, 1], dvec[:, 0], jj, np.round(rr, 10)))
        kk, jj, rr, tj = kk[order], jj[order], rr[order], tj[order]
        if truncate and len(rr) > nnei:
            kk, jj, rr, tj = kk[:nnei], jj[:nnei], rr[:nnei], tj[:nnei]
        for t in range(ntypes):
            pick = np.nonzero(tj == t)[0]
            if len(pick) > sel[t]:
                if not truncate:
                    raise ValueError(
                        f"{where}atom {i} has {len(pick)} neighbours of type {t} within "
                        f"rcut={rcut} but sel[{t}]={sel[t]}; use sel[{t}] >= {len(pick)} "
                        f"(or truncate=True for deepmd-kit's truncation)")
                pick = pick[: sel[t]]
            s0 = offsets[t]
            n = len(pick)
            nlist[i, s0:s0 + n] = jj[pick]
            # total shift from the *unwrapped* coordinates: x_j - x_i + S = x0_j + n h - x0_i
            S = shifts_cart[kk[pick]] - (frac_shift[jj[pick]] - frac_shift[i]) @ (
                box if box is not None else np.eye(3))
            shift[i, s0:s0 + n] = S
            rij_out[i, s0:s0 + n] = coord[jj[pick]] - coord[i] + S
    return NeighborList(nlist, shift, rij_out)
