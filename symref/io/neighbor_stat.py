r"""``symref neighbor-stat`` and ``sel: "auto"``: neighbour counts of npy systems.

For every frame, centre atom i and neighbour type t, the count
:math:`n_{it} = \#\{(j, \mathbf n) : 0 < |\mathbf x_j + \mathbf n h - \mathbf x_i| < r_c,
t_j = t\}`
(periodic images included, as the neighbour search sees them); deepmd-kit's
``max_nbor_size[t]`` is the maximum over centres and frames, and
``min_nbor_dist`` the smallest distance between two atoms (or images).
``sel: "auto:r"`` (``"auto"`` = ``"auto:1.1"``) becomes, per type,
:math:`4\lceil \lfloor r\, n_t \rfloor / 4 \rceil` (deepmd-kit's
``BaseUpdateSel.wrap_up_4``: the ratio-scaled count rounded up to a multiple of 4).

The counts use the reference's wrapping and image range
(:func:`symref.reference.neighbors.wrap_frame`), in blocks of centre atoms so
that memory stays bounded.
"""
from __future__ import annotations

import numpy as np

from symref.reference.neighbors import pair_distance, wrap_frame

#: candidate pair distances held at once (bounds the memory, ~50 MB)
_PAIR_BLOCK = 1 << 21


def frame_neighbor_stat(coord, atype, box, rcut: float, ntypes: int):
    """``(min squared distance, max count per type (ntypes ints))`` of one frame
    (``coord`` natoms x 3, ``box`` 3 x 3 or None)."""
    x0, _, shifts_int, shifts_cart, _ = wrap_frame(np.asarray(coord, np.float64), box, rcut)
    n = x0.shape[0]
    home = np.flatnonzero((shifts_int == 0).all(axis=1))  # the n = 0 image
    imgs = (x0[None, :, :] + shifts_cart[:, None, :]).reshape(-1, 3)  # nimg·natoms x 3
    jtype = np.tile(atype, len(shifts_cart))  # nimg·natoms
    rows = max(1, _PAIR_BLOCK // max(len(imgs), 1))
    best, most = np.inf, np.zeros(ntypes, dtype=np.int64)
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        r = pair_distance(imgs[None, :, :] - x0[i0:i1, None, :])  # rows x nimg·natoms
        k = np.arange(i1 - i0)
        r[k, home[0] * n + i0 + k] = np.inf  # an atom is not its own neighbour
        best = min(best, float(np.min(r)) ** 2 if r.size else np.inf)
        inside = r < rcut  # rows x nimg·natoms
        for t in range(ntypes):
            cnt = np.count_nonzero(inside[:, jtype == t], axis=1)  # rows
            if cnt.size:
                most[t] = max(most[t], int(cnt.max()))
    return best, most


def neighbor_stat(systems, rcut: float, ntypes: int):
    """``(min_nbor_dist, max_nbor_size)`` over every frame of ``systems``
    (:class:`symref.io.data.System` with types already mapped to the model's)."""
    rcut = float(rcut)
    if not np.isfinite(rcut) or rcut <= 0:
        raise ValueError(f"rcut must be a finite number > 0, got {rcut}")
    best, most = np.inf, np.zeros(ntypes, dtype=np.int64)
    for s in systems:
        if s.natoms and int(s.atype.max()) >= ntypes:
            raise ValueError(f"{s.name}: atom type {int(s.atype.max())} but only {ntypes} types")
        for f in range(s.nframes):
            b, m = frame_neighbor_stat(s.coord[f], s.atype, None if s.box is None else s.box[f],
                                       rcut, ntypes)
            best = min(best, b)
            most = np.maximum(most, m)
    return float(np.sqrt(best)), [int(x) for x in most]


def auto_sel(max_nbor_size, sel="auto") -> list[int]:
    """deepmd-kit's ``sel`` for ``"auto"`` / ``"auto:RATIO"``: each count times the ratio
    (1.1 by default), floored, rounded up to a multiple of 4."""
    words = str(sel).split(":")
    if words[0] != "auto" or len(words) > 2:
        raise ValueError(f"sel {sel!r}: expected 'auto' or 'auto:RATIO'")
    ratio = 1.1 if len(words) == 1 else float(words[1])
    return [4 * ((int(n * ratio) + 3) // 4) for n in max_nbor_size]


def resolve_sel(descriptor: dict, systems, ntypes: int, say=print) -> dict:
    """``descriptor`` with ``sel`` "auto"/"auto:RATIO" replaced by :func:`auto_sel` of the
    training systems' counts (a copy; unchanged when ``sel`` is a list); a hybrid's
    members each at their own ``rcut``."""
    if descriptor.get("type") == "hybrid":
        return {**descriptor, "list": [resolve_sel(m, systems, ntypes, say)
                                       for m in descriptor["list"]]}
    sel = descriptor.get("sel")
    if not isinstance(sel, str):
        return descriptor
    dist, most = neighbor_stat(systems, descriptor["rcut"], ntypes)
    new = auto_sel(most, sel)
    say(f"neighbor statistics (rcut {descriptor['rcut']}): min_nbor_dist {dist:f}, "
        f"max_nbor_size {most}; sel {sel!r} -> {new}")
    return {**descriptor, "sel": new}


def cli(args) -> int:
    """``symref neighbor-stat -s SYSTEM... -r RCUT [-t TYPE...]``: deepmd-kit's two lines."""
    from symref.io.data import find_systems, load_system, map_types

    paths = [p for s in args.system for p in find_systems(s)]
    if not paths:
        raise ValueError(f"no npy systems found under {args.system}")
    systems = [load_system(p) for p in paths]
    type_map = args.type_map
    if type_map is None:  # the systems' own names, first appearance first
        type_map = []
        for s in systems:
            names = s.type_map or [str(t) for t in range(int(s.atype.max()) + 1)]
            type_map += [t for t in names if t not in type_map]
    systems = [map_types(s, type_map) for s in systems]
    dist, most = neighbor_stat(systems, args.rcut, len(type_map))
    print(f"type_map: {type_map}")
    print(f"min_nbor_dist: {dist:f}")
    print(f"max_nbor_size: {np.array(most)!s}")  # deepmd-kit prints the numpy array
    return 0
