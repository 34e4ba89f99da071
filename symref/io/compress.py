r"""``symref compress``: deepmd-kit's model compression (``dp compress``) on model files.

The tables themselves are :mod:`symref.reference.tabulation`'s; this module decides
the minimum neighbour distance :math:`r_{min}` they start from and moves models
between files:

* ``--min-nbor-dist D``: as given;
* ``-s SYSTEM...``: the smallest distance between two atoms (periodic images in the
  26 neighbouring cells included) over every frame of the systems, as deepmd-kit's
  ``NeighborStat`` computes it for ``dp compress -t`` (no wrapping into the cell,
  one shell of images, float64);
* neither: the ``min_nbor_dist`` deepmd-kit stored in the file's ``@variables``
  (``dp train`` records it), else an error.

The written file keeps ``min_nbor_dist`` in its ``@variables`` and holds the tables in
the descriptor's ``compress`` section (deepmd-kit's descriptor ``@version`` 3; a
hybrid: in each member's).  se_e2_a and se_e2_r are tabulated over the first
environment column with strides ``--step`` and ``10·step``; se_e3 over θ with
deepmd-kit's se_t strides ``10·step`` and ``100·step``
(:mod:`symref.reference.tabulation_se_t`).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from symref.io.data import load_system
from symref.io.model_file import read_model_file, save_model
from symref.io.model_dict import model_from_dict
from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3
from symref.reference.tabulation import (DEFAULT_EXTRAPOLATE, DEFAULT_STRIDE, build_tables,
                                         table_error)
from symref.reference.tabulation_se_t import STRIDE_SCALE, build_se_t_tables, table_error_se_t


#: pair distances held at once by :func:`min_neighbor_distance` (bounds its memory, ~50 MB)
_PAIR_BLOCK = 1 << 21


def min_neighbor_distance(coord: np.ndarray, box: np.ndarray | None) -> float:
    """Smallest distance (Å) between two atoms of the frames ``coord`` (nf x natoms x 3),
    images by ``n·box``, ``n ∈ {-1, 0, 1}³``, included when ``box`` (nf x 3 x 3) is given.
    All pairs, in blocks of centre atoms (memory bounded; time O(natoms²) per frame)."""
    coord = np.asarray(coord, dtype=np.float64)
    shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)],
                      dtype=np.float64)  # 27 x 3
    best = np.inf
    for f in range(coord.shape[0]):
        x = coord[f]  # natoms x 3
        n = len(x)
        rows = max(1, _PAIR_BLOCK // max(n, 1))  # centre atoms per block
        imgs = np.zeros((1, 3)) if box is None else shifts @ np.asarray(box[f])  # nimg x 3
        for img in imgs:
            for i0 in range(0, n, rows):
                d = x[None, :, :] + img - x[i0:i0 + rows, None, :]  # rows x natoms x 3
                r2 = np.sum(d * d, axis=-1)  # rows x natoms
                if not img.any():
                    k = np.arange(r2.shape[0])
                    r2[k, i0 + k] = np.inf  # an atom is not its own neighbour
                best = min(best, float(np.min(r2)))
    if best == 0.0:
        raise ValueError("two atoms overlap (zero distance): check the data")
    return float(np.sqrt(best))


def min_nbor_dist_of_systems(paths) -> float:
    """:func:`min_neighbor_distance` over every frame of the npy systems ``paths``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ValueError("no systems given")
    out = np.inf
    for p in paths:
        s = load_system(p)
        try:
            out = min(out, min_neighbor_distance(s.coord, s.box))
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
    return out


def compress_descriptor(desc, min_nbor_dist: float, *, stride: float = DEFAULT_STRIDE,
                        extrapolate: float = DEFAULT_EXTRAPOLATE, check_frequency: int = -1,
                        where: str = "descriptor"):
    """A copy of the descriptor ``desc`` carrying deepmd-kit's tables: se_e2_a and se_e2_r
    with strides ``stride`` and ``10·stride`` (:func:`~symref.reference.tabulation.build_tables`),
    se_e3 with deepmd-kit's se_t strides ``10·stride`` and ``100·stride``
    (:func:`~symref.reference.tabulation_se_t.build_se_t_tables`), a hybrid member by
    member.  Refuses a descriptor that is already compressed, as deepmd-kit does."""
    if isinstance(desc, Hybrid):
        members = [compress_descriptor(m, min_nbor_dist, stride=stride, extrapolate=extrapolate,
                                       check_frequency=check_frequency,
                                       where=f"descriptor.list[{k}]")
                   for k, m in enumerate(desc.members)]
        return dataclasses.replace(desc, members=members)
    if not isinstance(desc, (SeE2A, SeE2R, SeE3)):
        raise ValueError(f"compression is implemented for se_e2_a, se_e2_r, se_e3 and hybrid "
                         f"descriptors, not {type(desc).__name__}")
    if desc.tables is not None:
        raise ValueError(f"the model is already compressed ({where} has tables)")
    if isinstance(desc, SeE3):
        s0 = STRIDE_SCALE * stride
        tables = build_se_t_tables(desc, min_nbor_dist, extrapolate, s0, 10 * s0,
                                   check_frequency)
    else:
        tables = build_tables(desc, min_nbor_dist, extrapolate, stride, 10 * stride,
                              check_frequency)
    return dataclasses.replace(desc, tables=tables)


def compress_model(model, min_nbor_dist: float, *, stride: float = DEFAULT_STRIDE,
                   extrapolate: float = DEFAULT_EXTRAPOLATE, check_frequency: int = -1):
    """A copy of ``model`` whose descriptor carries deepmd-kit's tables (``dp compress
    -s stride -e extrapolate``; :func:`compress_descriptor`)."""
    out = copy.copy(model)
    out.descriptor = compress_descriptor(model.descriptor, min_nbor_dist, stride=stride,
                                         extrapolate=extrapolate,
                                         check_frequency=check_frequency)
    return out


def descriptor_tables(desc) -> list:
    """``[(where, descriptor, tables)]`` of the compressed parts of ``desc`` (a hybrid: its
    compressed members, ``where`` = ``descriptor.list[k]``); empty when none is."""
    if isinstance(desc, Hybrid):
        return [(f"descriptor.list[{k}]", m, m.tables) for k, m in enumerate(desc.members)
                if getattr(m, "tables", None) is not None]
    tables = getattr(desc, "tables", None)
    return [] if tables is None else [("descriptor", desc, tables)]


def table_errors(desc) -> list:
    """``[(where, descriptor type, [TableError per tabulated net])]`` for every compressed part
    of ``desc`` (:func:`descriptor_tables`; :class:`~symref.reference.tabulation.TableError`):
    se_e3's three-segment tables through
    :func:`~symref.reference.tabulation_se_t.table_error_se_t` (``*_first``: the fine
    segment, ``*_second``: the two coarse ones), the others through
    :func:`~symref.reference.tabulation.table_error` (the two strides)."""
    out = []
    for where, d, tables in descriptor_tables(desc):
        fn = table_error_se_t if isinstance(d, SeE3) else table_error
        out.append((where, descriptor_ops(d).name, list(fn(d, tables).values())))
    return out


def compress_file(model_path, out_path, *, min_nbor_dist: float | None = None, systems=(),
                  stride: float = DEFAULT_STRIDE, extrapolate: float = DEFAULT_EXTRAPOLATE) -> dict:
    """Read ``model_path``, tabulate, write ``out_path``; returns ``{"min_nbor_dist", "source",
    "tables", "parts"}``: where r_min came from (``"option"``, ``"systems"`` or ``"model
    file"``), the descriptor's tables (None for a hybrid) and :func:`descriptor_tables` of
    the written model (every compressed member of a hybrid)."""
    if min_nbor_dist is not None and systems:
        raise ValueError("give either min_nbor_dist or systems, not both")
    wrapper = read_model_file(model_path)
    try:
        model = model_from_dict(wrapper)
    except ValueError as e:
        raise ValueError(f"{model_path}: {e}") from e
    if min_nbor_dist is not None:
        source = "option"
    elif systems:
        min_nbor_dist, source = min_nbor_dist_of_systems(systems), "systems"
    else:
        stored = (wrapper.get("@variables") or {}).get("min_nbor_dist")
        if stored is None:
            raise ValueError(f"{model_path}: the model file holds no min_nbor_dist; give "
                             "--min-nbor-dist D or the training data (-s SYSTEM...)")
        min_nbor_dist, source = float(np.asarray(stored)), "model file"
    out = compress_model(model, float(min_nbor_dist), stride=stride, extrapolate=extrapolate)
    save_model(out, out_path, variables={"min_nbor_dist": float(min_nbor_dist)})
    parts = descriptor_tables(out.descriptor)
    return {"min_nbor_dist": float(min_nbor_dist), "source": source,
            "tables": parts[0][2] if len(parts) == 1 else None,
            "parts": parts}
