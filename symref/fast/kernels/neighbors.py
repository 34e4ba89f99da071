r"""O(N) cell-list neighbour search, bit for bit equal to the reference ``build_neighbor_list``.

Algorithm (one frame):

1. **Shared preparation** (NumPy, :func:`symref.reference.neighbors.wrap_frame`, the very
   function the reference calls): wrapped positions ``x0 = coord - wrap h``
   and the reference's image range :math:`|n_a| \le n^{max}_a`.
2. **Ghosts.**  Every image :math:`x0_j + n h` (:math:`|n_a| \le n^{max}_a`)
   whose fractional coordinates :math:`u = f_j + n` fall in
   :math:`[\mathrm{lo}_a, \mathrm{hi}_a)`, with
   :math:`\mathrm{lo}_a = \min(0, \min_i f_{i,a}) - \delta_a`,
   :math:`\mathrm{hi}_a = \max(1, \max_i f_{i,a}) + \delta_a` and
   :math:`\delta_a = r_c / d_a` (+ a 1e-8 relative margin; :math:`r_c` taken
   at least 2e-6 Å so that coincident atoms are always found), :math:`d_a` the
   face distance of :func:`~symref.reference.neighbors.cell_heights`.  A displacement of
   length r changes :math:`u_a` by at most :math:`r / d_a`, so every image
   within :math:`r_c` of a centre is a ghost, whatever the cell's shape, and a
   cell shorter than :math:`2 r_c` simply gives several ghosts of one atom.
   For a molecule the ghosts are the atoms and u is Cartesian
   (:math:`\delta = r_c`).
3. **Bins.**  The box :math:`[\mathrm{lo}, \mathrm{hi})` in u is cut into
   bins at least :math:`\delta_a` wide along each axis (fewer when that would
   give many more bins than ghosts), and the ghosts are counting-sorted by
   bin (the last axis fastest), together with everything a pair's output
   needs (image shift, ``coord_j``, ``wrap_j``).  Everything within
   :math:`r_c` of a point of a bin lies in the 3 x 3 x 3 bins around it.
4. **Search pass** (``prange`` over chunks of bins, each chunk with its own
   scratch).  The centres are the ghosts with n = 0; for each bin holding
   centres, the ghosts of its 27 neighbouring bins (9 contiguous runs) are
   gathered once into contiguous arrays; per centre, squared distances are
   computed in a vectorised loop and the few below :math:`r_c^2` kept by a
   branch-free compaction, then ``r`` decides.  The neighbours are sorted by
   the reference's key (``rint(r 1e10)``, then atom index, then pair
   vector: a bucket sort on the key, buckets sorted by comparison),
   truncated like the reference, and recorded as ghost indices.  The pass
   also counts all neighbours of each type and flags distances below 1e-6 Å.
   O(N) for a fixed density.
5. **Errors** are raised in Python from those counts and flags, for the first
   offending centre as the reference would (coincidence before ``sel``); the
   message text comes from the reference's own helpers.
6. **Write pass** (``prange`` over centres): CSR offsets are the cumsum of
   the kept counts, and each centre's pairs are written in slot order.  No
   kernel writes out of bounds: every scratch and output array is sized
   from counts taken before it is written.

Bit identity: every float that reaches the output or decides membership or
order is produced by the same IEEE operations in the same order as in the
reference: the ghost position ``x0_j + ((n0 h0 + n1 h1) + n2 h2)``, the pair
vector ``ghost - x0_i``, ``r = sqrt((dx dx + dy dy) + dz dz)``, the key
``rint(r * 1e10)``, ``S = n h - (wrap_j - wrap_i) h`` and
``rij = (coord_j - coord_i) + S``.  The kernels are compiled without fastmath,
so LLVM neither reassociates nor contracts ``a*b + c`` into an FMA.
Everything that is only geometry (the fractional coordinates u used for the
ghost region and the bins) carries safety margins and needs no exactness.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from symref.reference.neighbors import (NeighborList, cell_heights, centre_images, check_distinct,
                         lattice_combination, sel_error, wrap_frame)

_COINCIDENT = 1e-6  # Å, the reference's "same position" threshold
_MARGIN_REL = 1e-8  # safety margins of the ghost region and bin widths (geometry only)
_MARGIN_ABS = 1e-9
# Below this many atoms the kernels run on one thread: a frame takes ~1 ms, less than waking
# the thread pool can cost (up to a scheduler tick per parallel region on a busy machine).
_PARALLEL_MIN_ATOMS = 2048


@dataclass
class PairList:
    """Neighbours of one frame as a CSR list of pairs (real neighbours only).

    ``ptr``:    (natoms+1,) int64, pairs of centre i are ``ptr[i]:ptr[i+1]``.
    ``j``:      (P,) int64, neighbour atom index (original indexing).
    ``slot``:   (P,) int64, slot in the padded se_e2_a layout (0..sum(sel)-1).
    ``rij``:    (P, 3) float64, x_j - x_i + S (Å), bit-identical to the reference's.
    ``shift``:  (P, 3) float64, the image shift S (Å), bit-identical to the reference's.
    ``counts``: (natoms, ntypes) int64, neighbours of each type kept (<= sel[t]).

    Pairs of one centre are in slot order: type groups in order, inside a group
    by distance (ties by atom index, then pair vector), as in the reference.
    ``rij``, ``shift``, ``j`` and ``slot`` are views of one buffer (a single
    allocation: fresh memory is costly to fault in).
    """

    ptr: np.ndarray
    j: np.ndarray
    slot: np.ndarray
    rij: np.ndarray
    shift: np.ndarray
    counts: np.ndarray

    @property
    def natoms(self) -> int:
        return self.ptr.shape[0] - 1

    @property
    def centre(self) -> np.ndarray:
        """(P,) int64: the centre atom of each pair."""
        return np.repeat(np.arange(self.natoms, dtype=np.int64), np.diff(self.ptr))


# --------------------------------------------------------------------------- ghosts and bins


@numba.njit(cache=True)
def _build_ghosts(x0, u, ok, lo, hi, nmax, lattice):
    """All images x0_j + n h with |n_a| <= nmax_a and u_j + n in [lo, hi) (atoms with ok[j]).

    Returns ``(gpos (ng, 3), gsc (ng, 3), gu (ng, 3), gj (ng,), gn (ng, 3))``.
    The image shift ``gsc = (n0 h0 + n1 h1) + n2 h2`` and the ghost position
    ``gpos = x0_j + gsc`` are the reference's ``shifts_cart[k]`` and
    ``x0[j] + shifts_cart[k]``, operation for operation.
    """
    natoms = x0.shape[0]
    nlo = np.zeros((natoms, 3), dtype=np.int64)
    nhi = np.full((natoms, 3), -1, dtype=np.int64)
    total = 0
    for j in range(natoms):
        if not ok[j]:
            continue
        cnt = 1
        for a in range(3):
            first = nmax[a] + 1
            last = -nmax[a] - 1
            for n in range(-nmax[a], nmax[a] + 1):
                v = u[j, a] + n
                if v >= lo[a] and v < hi[a]:
                    if n < first:
                        first = n
                    last = n
            if last < first:
                cnt = 0
                first = 0
                last = -1
            nlo[j, a] = first
            nhi[j, a] = last
            cnt *= last - first + 1
        total += cnt
    gpos = np.empty((total, 3))
    gsc = np.empty((total, 3))
    gu = np.empty((total, 3))
    gj = np.empty(total, dtype=np.int64)
    gn = np.empty((total, 3), dtype=np.int64)
    g = 0
    for j in range(natoms):
        for n0 in range(nlo[j, 0], nhi[j, 0] + 1):
            for n1 in range(nlo[j, 1], nhi[j, 1] + 1):
                for n2 in range(nlo[j, 2], nhi[j, 2] + 1):
                    f0 = np.float64(n0)
                    f1 = np.float64(n1)
                    f2 = np.float64(n2)
                    for c in range(3):
                        sc = (f0 * lattice[0, c] + f1 * lattice[1, c]) + f2 * lattice[2, c]
                        gsc[g, c] = sc
                        gpos[g, c] = x0[j, c] + sc
                    gu[g, 0] = u[j, 0] + n0
                    gu[g, 1] = u[j, 1] + n1
                    gu[g, 2] = u[j, 2] + n2
                    gj[g] = j
                    gn[g, 0] = n0
                    gn[g, 1] = n1
                    gn[g, 2] = n2
                    g += 1
    return gpos, gsc, gu, gj, gn


@numba.njit(cache=True, inline="always")
def _bin_of(v, lo, w, nb):
    b = math.floor((v - lo) / w)
    if b < 0:
        return 0
    if b > nb - 1:
        return nb - 1
    return int(b)


@numba.njit(cache=True)
def _sort_into_bins(gpos, gsc, gu, gj, gn, coord, wrap, atype, lo, w, nb):
    """Counting sort of the ghosts by bin (axis 2 fastest).

    Returns, in bin order: positions ``sx, sy, sz``; atom ``sj``; type ``st``;
    ``shome`` (the ghost is the atom itself, n = 0); ``sdat`` (ng x 9): the
    image shift n h, then ``coord_j`` and ``wrap_j``, so that a pair's output
    needs no access outside the ghost arrays; and ``bstart`` (nbins+1,): the
    ghosts of bin b are ``bstart[b]:bstart[b+1]``.
    """
    ng = gpos.shape[0]
    nbins = nb[0] * nb[1] * nb[2]
    gbin = np.empty(ng, dtype=np.int64)
    bstart = np.zeros(nbins + 1, dtype=np.int64)
    for g in range(ng):
        b0 = _bin_of(gu[g, 0], lo[0], w[0], nb[0])
        b1 = _bin_of(gu[g, 1], lo[1], w[1], nb[1])
        b2 = _bin_of(gu[g, 2], lo[2], w[2], nb[2])
        b = (b0 * nb[1] + b1) * nb[2] + b2
        gbin[g] = b
        bstart[b + 1] += 1
    for b in range(nbins):
        bstart[b + 1] += bstart[b]
    fill = bstart[:-1].copy()
    sx = np.empty(ng)
    sy = np.empty(ng)
    sz = np.empty(ng)
    sj = np.empty(ng, dtype=np.int64)
    st = np.empty(ng, dtype=np.int64)
    shome = np.empty(ng, dtype=np.bool_)
    sdat = np.empty((ng, 9))
    for g in range(ng):
        p = fill[gbin[g]]
        fill[gbin[g]] += 1
        j = gj[g]
        sx[p] = gpos[g, 0]
        sy[p] = gpos[g, 1]
        sz[p] = gpos[g, 2]
        sj[p] = j
        st[p] = atype[j]
        shome[p] = gn[g, 0] == 0 and gn[g, 1] == 0 and gn[g, 2] == 0
        for c in range(3):
            sdat[p, c] = gsc[g, c]
            sdat[p, 3 + c] = coord[j, c]
            sdat[p, 6 + c] = wrap[j, c]
    return sx, sy, sz, sj, st, shome, sdat, bstart


# --------------------------------------------------------------------------- the two passes


@numba.njit(cache=True, inline="always")
def _bin_window(b, nb0, nb1, nb2):
    """Ranges of the 3 x 3 x 3 bins around flat bin b, clipped to the grid:
    a0 in [lo0, hi0), a1 in [lo1, hi1), a2 in [lo2, hi2] (inclusive, contiguous in memory)."""
    b2 = b % nb2
    b1 = (b // nb2) % nb1
    b0 = b // (nb1 * nb2)
    return (max(b0 - 1, 0), min(b0 + 2, nb0), max(b1 - 1, 0), min(b1 + 2, nb1),
            max(b2 - 1, 0), min(b2 + 1, nb2 - 1))


@numba.njit(cache=True)
def _neighbourhood_sizes(nb, bstart, shome):
    """Largest number of ghosts in the 3 x 3 x 3 bins around a bin that holds a centre."""
    nb0, nb1, nb2 = nb[0], nb[1], nb[2]
    best = 0
    for b in range(nb0 * nb1 * nb2):
        has = False
        for g in range(bstart[b], bstart[b + 1]):
            if shome[g]:
                has = True
                break
        if not has:
            continue
        lo0, hi0, lo1, hi1, lo2, hi2 = _bin_window(b, nb0, nb1, nb2)
        n = 0
        for a0 in range(lo0, hi0):
            for a1 in range(lo1, hi1):
                base = (a0 * nb1 + a1) * nb2
                n += bstart[base + hi2 + 1] - bstart[base + lo2]
        best = max(best, n)
    return best


@numba.njit(cache=True)
def _gather_neighbourhood(b, nb, bstart, sx, sy, sz, px, py, pz, pg):
    """Copy the ghosts of the 3 x 3 x 3 bins around bin b: positions px, py, pz, index pg."""
    nb0, nb1, nb2 = nb[0], nb[1], nb[2]
    lo0, hi0, lo1, hi1, lo2, hi2 = _bin_window(b, nb0, nb1, nb2)
    n = 0
    for a0 in range(lo0, hi0):
        for a1 in range(lo1, hi1):
            base = (a0 * nb1 + a1) * nb2
            for g in range(bstart[base + lo2], bstart[base + hi2 + 1]):
                px[n] = sx[g]
                py[n] = sy[g]
                pz[n] = sz[g]
                pg[n] = g
                n += 1
    return n


@numba.njit(cache=True)
def _close_ghosts(n, px, py, pz, xi, yi, zi, r2max, r2b, hit):
    """Squared distances ``(dx dx + dy dy) + dz dz`` (vectorised) and the indices with r2 < r2max.

    ``r2max`` > rc²: every ghost with ``sqrt(r2) < rc`` is among the hits.
    """
    for q in range(n):
        dx = px[q] - xi
        dy = py[q] - yi
        dz = pz[q] - zi
        r2b[q] = (dx * dx + dy * dy) + dz * dz
    m = 0
    for q in range(n):  # branch-free compaction
        hit[m] = q
        m += r2b[q] < r2max
    return m


@numba.njit(cache=True, inline="always")
def _less(a, b, key, cj, cdx, cdy, cdz):
    """The reference's order: key, then atom index, then pair vector x, y, z."""
    if key[a] != key[b]:
        return key[a] < key[b]
    if cj[a] != cj[b]:
        return cj[a] < cj[b]
    if cdx[a] != cdx[b]:
        return cdx[a] < cdx[b]
    if cdy[a] != cdy[b]:
        return cdy[a] < cdy[b]
    return cdz[a] < cdz[b]


@numba.njit(cache=True, inline="always")
def _insertion_sort(s, e, idx, key, cj, cdx, cdy, cdz):
    """Stable in-place insertion sort of ``idx[s:e]`` by :func:`_less`."""
    for p in range(s + 1, e):
        v = idx[p]
        q = p - 1
        while q >= s and _less(v, idx[q], key, cj, cdx, cdy, cdz):
            idx[q + 1] = idx[q]
            q -= 1
        idx[q + 1] = v


@numba.njit(cache=True)
def _merge_sort(s, e, idx, tmp, key, cj, cdx, cdy, cdz):
    """Stable sort of ``idx[s:e]`` by :func:`_less` (insertion sort of runs of 16, then merges)."""
    run = 16
    for p0 in range(s, e, run):
        _insertion_sort(p0, min(p0 + run, e), idx, key, cj, cdx, cdy, cdz)
    src = idx
    dst = tmp
    in_tmp = False
    width = run
    while width < e - s:
        for a in range(s, e, 2 * width):
            mid = min(a + width, e)
            b = min(a + 2 * width, e)
            p = a
            q = mid
            o = a
            while p < mid and q < b:
                if _less(src[q], src[p], key, cj, cdx, cdy, cdz):
                    dst[o] = src[q]
                    q += 1
                else:
                    dst[o] = src[p]
                    p += 1
                o += 1
            while p < mid:
                dst[o] = src[p]
                p += 1
                o += 1
            while q < b:
                dst[o] = src[q]
                q += 1
                o += 1
        src, dst = dst, src
        in_tmp = not in_tmp
        width *= 2
    if in_tmp:  # the result ended in tmp
        for p in range(s, e):
            idx[p] = tmp[p]


@numba.njit(cache=True)
def _sort_candidates(m, idx, tmp, bucket, bfill, key, kscale, cj, cdx, cdy, cdz):
    """Sort candidates ``0..m-1`` into ``idx`` by :func:`_less` (the reference's lexsort order).

    Bucket sort on the key (m buckets, bucket ``floor((key kscale)^3 m)``,
    about uniform for a uniform density since ``key ~ r``), then each bucket by
    comparison.  The bucket is a non-decreasing function of the key and equal
    keys share a bucket, so the concatenated sorted buckets are sorted.
    """
    if m == 0:
        return
    for b in range(m + 1):
        bfill[b] = 0
    for p in range(m):
        x = key[p] * kscale
        fb = math.floor(x * x * x * m)
        b = m - 1 if fb > m - 1 else (0 if fb < 0 else int(fb))
        bucket[p] = b
        bfill[b + 1] += 1
    for b in range(m):
        bfill[b + 1] += bfill[b]
    for p in range(m):
        b = bucket[p]
        tmp[bfill[b]] = p
        bfill[b] += 1
    # bfill[b] is now the end of bucket b; tmp holds the candidates bucket by bucket
    s = 0
    for b in range(m):
        e = bfill[b]
        for p in range(s, e):
            idx[p] = tmp[p]
        if 1 < e - s <= 24:
            _insertion_sort(s, e, idx, key, cj, cdx, cdy, cdz)
        elif e - s > 24:
            _merge_sort(s, e, idx, tmp, key, cj, cdx, cdy, cdz)
        s = e


@numba.njit(parallel=True, cache=True)
def _search_pass(x0, nb, bstart, sx, sy, sz, sj, st, shome, rcut, r2max, sel, offsets, truncate,
                 cap, nchunk, ncentre, cnt, kept, coinc, gslot):
    """Find, sort and truncate the neighbours of every centre; record them as ghost indices.

    Centres are the ghosts with n = 0 of atoms below ``ncentre``, taken bin by bin: the 3 x 3 x 3
    neighbourhood of a bin is gathered once into contiguous scratch for all its
    centres.  Per centre i it fills ``cnt[i, t]`` (all neighbours of type t
    within rcut), ``coinc[i]`` (something closer than 1e-6 Å), ``kept[i, t]``
    and row i of ``gslot``: the kept ghosts, type after type, nearest first
    (``sum_t kept[i, t] <= min(sum(sel), neighbourhood size)`` = its width:
    never out of bounds).
    """
    nbins = nb[0] * nb[1] * nb[2]
    ntypes = sel.shape[0]
    nnei = offsets[ntypes]
    kscale = 1.0 / (rcut * 1e10) if rcut > 0 else 0.0
    for c in prange(nchunk):
        px = np.empty(cap)
        py = np.empty(cap)
        pz = np.empty(cap)
        pg = np.empty(cap, dtype=np.int64)
        r2b = np.empty(cap)
        hit = np.empty(cap + 1, dtype=np.int64)
        key = np.empty(cap)
        cdx = np.empty(cap)
        cdy = np.empty(cap)
        cdz = np.empty(cap)
        cj = np.empty(cap, dtype=np.int64)
        cg = np.empty(cap, dtype=np.int64)
        ct = np.empty(cap, dtype=np.int64)
        idx = np.empty(cap, dtype=np.int64)
        tmp = np.empty(cap, dtype=np.int64)
        bucket = np.empty(cap, dtype=np.int64)
        bfill = np.empty(cap + 1, dtype=np.int64)
        rank = np.zeros(ntypes, dtype=np.int64)
        tstart = np.zeros(ntypes, dtype=np.int64)
        for b in range(c * nbins // nchunk, (c + 1) * nbins // nchunk):
            n = -1
            for gc in range(bstart[b], bstart[b + 1]):
                if not shome[gc] or sj[gc] >= ncentre:
                    continue
                if n < 0:
                    n = _gather_neighbourhood(b, nb, bstart, sx, sy, sz, px, py, pz, pg)
                i = sj[gc]
                xi = x0[i, 0]
                yi = x0[i, 1]
                zi = x0[i, 2]
                m = _close_ghosts(n, px, py, pz, xi, yi, zi, r2max, r2b, hit)
                close = False
                k = 0
                for h in range(m):
                    q = hit[h]
                    g = pg[q]
                    if g == gc:
                        continue  # the centre itself
                    r = math.sqrt(r2b[q])  # r2b[q] is (dx dx + dy dy) + dz dz
                    if r < _COINCIDENT:
                        close = True
                    if r < rcut:
                        t = st[g]
                        if t >= 0 and t < ntypes:
                            cnt[i, t] += 1
                        key[k] = np.rint(r * 1e10)
                        cdx[k] = px[q] - xi
                        cdy[k] = py[q] - yi
                        cdz[k] = pz[q] - zi
                        cj[k] = sj[g]
                        cg[k] = g
                        ct[k] = t
                        k += 1
                coinc[i] = close
                _sort_candidates(k, idx, tmp, bucket, bfill, key, kscale, cj, cdx, cdy, cdz)
                # the reference: nearest sum(sel) of any type if truncating, then per type in order
                limit = min(k, nnei) if truncate else k
                for t in range(ntypes):
                    rank[t] = 0
                for p_ in range(limit):
                    t = ct[idx[p_]]
                    if t >= 0 and t < ntypes and rank[t] < sel[t]:
                        rank[t] += 1
                start = 0
                for t in range(ntypes):
                    kept[i, t] = rank[t]
                    tstart[t] = start
                    start += rank[t]
                    rank[t] = 0
                # the row of centre i holds the kept ghosts, type after type, nearest first
                for p_ in range(limit):
                    p = idx[p_]
                    t = ct[p]
                    if t >= 0 and t < ntypes and rank[t] < sel[t]:
                        gslot[i, tstart[t] + rank[t]] = np.int32(cg[p])
                        rank[t] += 1


@numba.njit(parallel=True, cache=True)
def _write_pass(coord, wrap, lattice, sj, sdat, offsets, kept, gslot, ptr,
                out_j, out_slot, out_rij, out_shift):
    """Expand the kept ghosts into the CSR arrays, centre by centre (``ptr`` from ``kept``).

    ``S = n h - (wrap_j - wrap_i) h`` and ``rij = (coord_j - coord_i) + S``,
    operation for operation as in the reference.
    """
    natoms = coord.shape[0]
    ntypes = kept.shape[1]
    h00, h01, h02 = lattice[0, 0], lattice[0, 1], lattice[0, 2]
    h10, h11, h12 = lattice[1, 0], lattice[1, 1], lattice[1, 2]
    h20, h21, h22 = lattice[2, 0], lattice[2, 1], lattice[2, 2]
    for i in prange(natoms):
        wi0 = wrap[i, 0]
        wi1 = wrap[i, 1]
        wi2 = wrap[i, 2]
        ci0 = coord[i, 0]
        ci1 = coord[i, 1]
        ci2 = coord[i, 2]
        pos = ptr[i]
        for t in range(ntypes):
            for r in range(kept[i, t]):
                g = gslot[i, pos - ptr[i]]
                out_j[pos] = sj[g]
                out_slot[pos] = offsets[t] + r
                m0 = sdat[g, 6] - wi0
                m1 = sdat[g, 7] - wi1
                m2 = sdat[g, 8] - wi2
                s0 = sdat[g, 0] - ((m0 * h00 + m1 * h10) + m2 * h20)
                s1 = sdat[g, 1] - ((m0 * h01 + m1 * h11) + m2 * h21)
                s2 = sdat[g, 2] - ((m0 * h02 + m1 * h12) + m2 * h22)
                out_shift[pos, 0] = s0
                out_shift[pos, 1] = s1
                out_shift[pos, 2] = s2
                out_rij[pos, 0] = (sdat[g, 3] - ci0) + s0
                out_rij[pos, 1] = (sdat[g, 4] - ci1) + s1
                out_rij[pos, 2] = (sdat[g, 5] - ci2) + s2
                pos += 1


# --------------------------------------------------------------------------- Python drivers


@contextmanager
def _threads_for(natoms):
    """Numba's thread count for a frame of ``natoms``: 1 for small frames, else unchanged."""
    n = numba.get_num_threads()
    if natoms >= _PARALLEL_MIN_ATOMS or n == 1:
        yield n
        return
    numba.set_num_threads(1)  # thread-local setting, restored below
    try:
        yield 1
    finally:
        numba.set_num_threads(n)


def _grid(lo, hi, delta, nghost):
    """Bins per axis (each >= delta wide) and their widths; coarser if far more bins than ghosts."""
    span = hi - lo
    nb = np.clip(np.floor(span / delta), 1, 2**20).astype(np.int64)
    limit = max(64, 2 * nghost)
    while int(np.prod(nb)) > limit:
        factor = (float(np.prod(nb)) / limit) ** (1.0 / 3.0)
        nb = np.maximum(1, np.floor(nb / max(factor, 1.01))).astype(np.int64)
    w = span / nb
    return nb, w


def build_pair_list(coord, atype, box, rcut, sel, *, truncate=False, frame=None,
                    ncentre=None) -> PairList:
    """Neighbours of one frame as a :class:`PairList`, O(N) by cell lists.

    Same arguments, same neighbours, order, truncation and errors as
    :func:`symref.reference.neighbors.build_neighbor_list` (see there; ``ncentre``: only
    atoms ``0..ncentre-1`` get pairs, the others' rows are empty).
    """
    coord = np.ascontiguousarray(coord, dtype=np.float64)
    atype = np.ascontiguousarray(atype, dtype=np.int64)
    natoms = coord.shape[0]
    ntypes = len(sel)
    sel = np.asarray(sel, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)
    where = "" if frame is None else f"frame {frame}: "
    ncentre = natoms if ncentre is None else int(ncentre)
    if not 0 <= ncentre <= natoms:
        raise ValueError(f"ncentre must be in [0, {natoms}], got {ncentre}")
    if coord.ndim != 2 or coord.shape[1] != 3 or atype.shape != (natoms,):
        # the kernels index atype by atom: check what the reference leaves to numpy indexing
        raise ValueError(f"{where}coord must be natoms x 3 and atype natoms long; "
                         f"got {coord.shape} and {atype.shape}")
    x0, wrap, shifts_int, shifts_cart, lattice = wrap_frame(coord, box, rcut)
    if natoms == 0:
        return PairList(np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, ntypes), np.int64))
    x0 = np.ascontiguousarray(x0)
    wrap = np.ascontiguousarray(wrap)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    rc = float(rcut)
    reach = max(rc, 2 * _COINCIDENT)  # geometry radius: neighbours and coincident atoms
    ok = np.isfinite(x0).all(axis=1)
    if box is None:
        nmax = np.zeros(3, dtype=np.int64)
        u = x0
        delta = np.full(3, reach * (1 + _MARGIN_REL) + _MARGIN_ABS)
        umin = u[ok].min(axis=0) if ok.any() else np.zeros(3)
        umax = u[ok].max(axis=0) if ok.any() else np.zeros(3)
    else:
        nmax = np.abs(shifts_int).max(axis=0).astype(np.int64)
        u = lattice_combination(x0, np.linalg.inv(lattice))  # fractional, geometry only
        delta = reach / cell_heights(lattice) * (1 + _MARGIN_REL) + _MARGIN_ABS
        umin = np.minimum(0.0, u[ok].min(axis=0)) if ok.any() else np.zeros(3)
        umax = np.maximum(1.0, u[ok].max(axis=0)) if ok.any() else np.ones(3)
    u = np.where(ok[:, None], u, 0.0)
    lo = umin - delta
    hi = umax + delta
    gpos, gsc, gu, gj, gn = _build_ghosts(x0, u, ok, lo, hi, nmax, lattice)
    nb, w = _grid(lo, hi, delta, gpos.shape[0])
    sx, sy, sz, sj, st, shome, sdat, bstart = _sort_into_bins(gpos, gsc, gu, gj, gn, coord, wrap,
                                                              atype, lo, w, nb)
    cap = max(int(_neighbourhood_sizes(nb, bstart, shome)), 1)
    nbins = int(np.prod(nb))
    r2max = reach * reach * (1 + 1e-9)  # > rcut², so sqrt(r2) < rcut implies r2 < r2max

    cnt = np.zeros((natoms, ntypes), dtype=np.int64)
    kept = np.zeros((natoms, ntypes), dtype=np.int64)
    coinc = np.zeros(natoms, dtype=np.bool_)
    if sx.shape[0] >= 2**31:
        raise ValueError(f"{where}{sx.shape[0]} periodic images: too many for the neighbour search")
    # ghosts kept per centre; a centre has at most `cap` candidates
    gslot = np.empty((natoms, min(int(offsets[-1]), cap)), dtype=np.int32)
    with _threads_for(natoms) as nthreads:
        nchunk = max(1, min(nbins, 16 * nthreads))  # chunks of bins, each with its own scratch
        _search_pass(x0, nb, bstart, sx, sy, sz, sj, st, shome, rc, r2max, sel, offsets,
                     bool(truncate), cap, nchunk, ncentre, cnt, kept, coinc, gslot)

    # the reference's errors, for the first offending centre: coincidence, then sel by type
    over = (cnt > sel[None, :]) if not truncate else np.zeros_like(cnt, dtype=bool)
    bad = coinc | over.any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        if coinc[i]:
            _, r = centre_images(x0, shifts_int, shifts_cart, i)
            check_distinct(i, r, shifts_int, where)  # raises the reference's error
            raise RuntimeError(f"internal error: atom {i} flagged coincident but not confirmed")
        t = int(np.argmax(over[i]))
        raise sel_error(where, i, int(cnt[i, t]), t, rcut, sel[t])

    ptr = np.zeros(natoms + 1, dtype=np.int64)
    np.cumsum(kept.sum(axis=1), out=ptr[1:])
    npair = int(ptr[-1])
    # one allocation for the four outputs (64 bytes a pair): fewer, larger fresh mappings,
    # which the kernel can back with huge pages; first-touch page faults dominate otherwise
    buf = np.empty(64 * npair, dtype=np.uint8)
    out_rij = buf[:24 * npair].view(np.float64).reshape(npair, 3)
    out_shift = buf[24 * npair:48 * npair].view(np.float64).reshape(npair, 3)
    out_j = buf[48 * npair:56 * npair].view(np.int64)
    out_slot = buf[56 * npair:].view(np.int64)
    with _threads_for(natoms):
        _write_pass(coord, wrap, lattice, sj, sdat, offsets, kept, gslot, ptr,
                    out_j, out_slot, out_rij, out_shift)
    return PairList(ptr, out_j, out_slot, out_rij, out_shift, kept)


def build_neighbor_list_fast(coord, atype, box, rcut, sel, *, truncate=False,
                             frame=None, ncentre=None) -> NeighborList:
    """:func:`build_pair_list` expanded into the padded se_e2_a layout.

    Bit for bit equal to :func:`symref.reference.neighbors.build_neighbor_list` (same
    signature, same errors).
    """
    pl = build_pair_list(coord, atype, box, rcut, sel, truncate=truncate, frame=frame,
                         ncentre=ncentre)
    return padded_neighbor_list(pl, sel)


def padded_neighbor_list(pl: PairList, sel) -> NeighborList:
    """The :class:`PairList` ``pl`` (built with ``sel``) in the padded se_e2_a layout of
    :func:`symref.reference.neighbors.build_neighbor_list` (nlist -1, rij and shift zero
    on padded slots)."""
    natoms = pl.natoms
    nnei = int(np.sum(np.asarray(sel, dtype=np.int64)))
    nlist = np.full((natoms, nnei), -1, dtype=np.int64)
    shift = np.zeros((natoms, nnei, 3))
    rij = np.zeros((natoms, nnei, 3))
    rows = pl.centre
    nlist[rows, pl.slot] = pl.j
    shift[rows, pl.slot] = pl.shift
    rij[rows, pl.slot] = pl.rij
    return NeighborList(nlist, shift, rij)
