"""The compressed (tabulated) se_e2_a models' part of :mod:`symref.fast.cpu`.

The tables in the kernels' layout, converted once per model (:func:`tables`); the
blocks of centres a compressed model runs in (:func:`table_blocks`: taller than an
uncompressed model's, which keep per-pair activations in cache); the reference's
warning for neighbours beyond a table's end (:func:`warn_beyond_tables`).
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np

from symref.fast.kernels import tabulated as kt
from symref.reference.descriptor.se_e2_a import warn_beyond_table

TABLE_BLOCK_PAIRS = 32768  # compressed models: upper bound on pairs per block (table_blocks)


def table_blocks(S, groups, nt, mode, block_pairs):
    """:func:`symref.fast.cpu._make_blocks` for a compressed model: the centres of each
    type cut into equal blocks, as few as allowed — one per thread in ``"blocks"`` mode
    (one in ``"kernels"`` mode), more only where a block would exceed ``block_pairs``
    pairs, and then a multiple of the threads.

    A compressed block keeps no per-pair activations (only R, P x 4), so the cache bound
    of :data:`symref.fast.cpu.BLOCK_PAIRS` does not apply; what the block size sets is
    the height of the fitting nets' matrix products, which OpenBLAS runs at 29 GFLOP/s
    for 16 rows against 46 for 48 and 57 for 192 (1600 x 240, one thread).  Equal blocks
    per type keep the threads equally loaded (each type's blocks are submitted one after
    another)."""
    ppa = max(1.0, S.P / S.n)  # pairs per atom
    nthreads = numba.get_num_threads() if mode == "blocks" else 1
    blocks = []
    for g0, g1 in groups:
        tstart = g0 + np.searchsorted(S.types_int[g0:g1], np.arange(nt + 1))  # centres by type
        for ti in range(nt):
            a0, a1 = int(tstart[ti]), int(tstart[ti + 1])
            if a1 == a0:
                continue
            # a multiple of the threads: every thread gets as many of the type's blocks
            nblk = min(a1 - a0, nthreads * math.ceil((a1 - a0) * ppa / (nthreads * block_pairs)))
            edges = a0 + ((a1 - a0) * np.arange(nblk + 1)) // nblk  # nblk+1, equal sizes
            blocks += [(ti, int(b0), int(b1)) for b0, b1 in zip(edges[:-1], edges[1:])]
    return blocks


_TABLES: dict = {}  # ids of a descriptor's table arrays -> (the arrays, tables' result)
_TABLES_KEPT = 8  # the most recent descriptors' converted tables kept
_TABLES_LOCK = threading.Lock()


def tables(desc):
    """``None`` (no compression) or ``[(coef, info)]`` per embedding index: the tables in
    the layout of :mod:`symref.fast.kernels.tabulated` (n_spline x 6 x M1; n_spline = 0:
    no table).

    Converted once per set of table arrays (the transposed copy of a 380-interval,
    M1 = 100 table costs ~30 µs, 0.13 ms a call for deepmd-kit's water model): the
    cache holds the arrays themselves, so their ids stay theirs; tables are treated as
    immutable (a table changed in place is not noticed)."""
    if desc.tables is None:
        return None
    arrays = tuple(desc.tables.data) + tuple(desc.tables.info)
    key = tuple(id(a) for a in arrays)
    hit = _TABLES.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], arrays)):
        return hit[1]
    tabs = [(kt.table_coefficients(d), np.ascontiguousarray(i, dtype=np.float64).reshape(-1))
            for d, i in zip(desc.tables.data, desc.tables.info)]
    with _TABLES_LOCK:
        while len(_TABLES) >= _TABLES_KEPT:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = (arrays, tabs)
    return tabs


def warn_beyond_tables(desc, tabs, smax, davg_g, dstd_g, types_c, npad_c):
    """The reference's warning (:func:`~symref.reference.descriptor.se_e2_a.warn_beyond_table`)
    for every table some s reaches past: the blocks' largest s of real pairs (``smax``)
    and the padded rows' s of the centres ``types_c`` with padded slots (``npad_c``,
    ncentre x nt)."""
    best = {}
    for idx, s in smax:
        best[idx] = max(best.get(idx, -np.inf), s)
    for ti in np.unique(types_c):
        for tj in range(desc.ntypes):
            if (npad_c[types_c == ti, tj] > 0).any():
                idx = desc.embedding_index(int(ti), tj)
                s = float(-davg_g[tj, ti, 0] / dstd_g[tj, ti, 0])
                best[idx] = max(best.get(idx, -np.inf), s)
    for idx in sorted(best):
        if tabs[idx][0].size:
            warn_beyond_table(np.array([best[idx]]), tabs[idx][1], idx, stacklevel=5)
