r"""numba kernels of a compressed (tabulated) se_e2_a embedding on compact pair lists.

The layout is :mod:`symref.fast.kernels.se_e2_a`'s: a segment of ``na`` centre
atoms and their ``P`` real neighbours of one type, pairs of atom ``a`` at
``ptr[a]:ptr[a+1]``.  A compressed descriptor replaces the embedding net
:math:`\mathcal N_{t_i t_j}` by deepmd-kit's quintic table (``data``: n_spline x
6·M1, ``info``: ``[lower, upper, table_max, stride0, stride1, check_freq]``;
:mod:`symref.reference.tabulation` builds and evaluates it), so the whole
embedding of a pair is one table look-up:

* :func:`env_table_T_forward`: the environment row :math:`R_p`, then with
  :math:`s_p = R_{p0}`

  .. math::  G_p = p_k(t) + p_k'(t)\,e,\qquad T_a \mathrel{+}= \sum_p G_p \otimes R_p,

  :math:`p_k(t) = \sum_{m=0}^{5} c_{k,m} t^m` the quintic of interval k (M1 columns
  at once), k, t and the extrapolation distance e located by :func:`table_locate`;
* :func:`env_table_T_backward`: for upstream :math:`\bar T_a` (M1 x 4), recomputing
  :math:`G_p` and :math:`G_p' = p_k'(t)` from :math:`s_p` (cheaper than storing P x M1
  of each),

  .. math::  \bar G_p = \bar T_a R_p,\qquad
             \bar R_p = \bar T_a^\top G_p + e_0 \sum_c \bar G_{pc} G'_{pc},

  then :math:`\bar{\mathbf r}_p` from :math:`\bar R_p`
  (:func:`symref.fast.kernels.se_e2_a.env_row_backward`).

An empty table (a net deepmd-kit does not tabulate) contributes nothing: T is
left unchanged and the pairs' gradient is zero, as in the reference.

:func:`table_locate` follows :func:`symref.reference.tabulation.tabulated_forward`'s
rules to the operation: below ``lower`` the first interval at t = 0 and
e = s - lower; in ``[lower, upper)`` stride0 intervals; in ``[upper,
table_max)`` stride1 intervals after the ``floor((upper-lower)/stride0)`` first
ones; from ``table_max`` on the last interval at its end and e = s - table_max;
the interval index clipped to ``[0, n_spline-1]``.  Horner's scheme in the same
order as there, each step a fused multiply-add (:func:`~symref.fast.kernels.activations.fma`,
one rounding), as are the T sums and the backward's sums: fastmath stays off (LLVM then
never contracts ``a * b + c`` itself), so the kernels ran on separate multiplies and adds;
the explicit FMAs cut the 1 536-atom table backward from 15.8 to 13.5 ms (one thread).
The values differ from the reference's in the last bits only (the twins' tests).

:func:`table_rows` evaluates G at single values (the padded slots' rows).

Each kernel has a NumPy twin ``*_ref`` with the same signature that calls the
reference's evaluation (one copy of the formula), tested in
``tests/test_kernels_se_e2_a.py``; fastmath is off.  The forward kernel's serial
build is compiled ``noalias`` (:mod:`symref.fast.kernels._jit`): its written arrays
must not overlap its other arguments.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.activations import fma
from symref.fast.kernels.se_e2_a import (env_row, env_row_backward, env_rows_backward_ref,
                                         env_rows_ref, pair_atoms)
from symref.reference.tabulation import tabulated_backward, tabulated_forward


@numba.njit(cache=True, inline="always", error_model="numpy")
def table_locate(s, lower, upper, table_max, stride0, stride1, nspline):
    """Interval ``k`` (int), offset ``t`` and extrapolation distance ``e`` of ``s`` in a
    table (the rules of the module docstring)."""
    last = nspline - 1
    n0 = np.floor((upper - lower) / stride0)
    if s < lower:
        fidx = 0.0
    elif s < upper:
        fidx = np.floor((s - lower) / stride0)
    elif s < table_max:
        fidx = n0 + np.floor((s - upper) / stride1)
    else:
        fidx = float(last)
    fidx = min(max(fidx, 0.0), float(last))
    k = int(fidx)
    fidx = float(k)
    if s < lower:
        t = 0.0
    elif s < upper:
        t = s - (fidx * stride0 + lower)
    elif s < table_max:
        t = s - ((fidx - n0) * stride1 + upper)
    else:
        t = table_max - ((last - n0) * stride1 + upper)
    if s < lower:
        e = s - lower
    elif s >= table_max:
        e = s - table_max
    else:
        e = 0.0
    return k, t, e


@numba.njit(cache=True, inline="always", error_model="numpy")
def table_value(ck, c, t):
    """:math:`p(t)` of column ``c`` of interval ``ck`` (6 x M1: ``ck[m, c]`` = :math:`c_m`
    of column c), Horner's scheme."""
    c0, c1, c2, c3, c4, c5 = ck[0, c], ck[1, c], ck[2, c], ck[3, c], ck[4, c], ck[5, c]
    return fma(fma(fma(fma(fma(c5, t, c4), t, c3), t, c2), t, c1), t, c0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def table_slope(ck, c, t):
    """:math:`p'(t)` of column ``c`` of interval ``ck``, Horner's scheme."""
    c1, c2, c3, c4, c5 = ck[1, c], ck[2, c], ck[3, c], ck[4, c], ck[5, c]
    return fma(fma(fma(fma(5 * c5, t, 4 * c4), t, 3 * c3), t, 2 * c2), t, c1)


@numba.njit(cache=True, inline="always", error_model="numpy")
def table_column(ck, c, t, e):
    """Value :math:`p(t) + p'(t)e` and slope :math:`p'(t)` of column ``c`` of interval
    ``ck`` (:func:`table_value`, :func:`table_slope`)."""
    val = table_value(ck, c, t)
    grad = table_slope(ck, c, t)
    return fma(grad, e, val), grad


def table_coefficients(data):
    """deepmd-kit's ``data`` (n_spline x 6·M1, column 6c+m = :math:`c_m` of column c) ->
    the kernels' ``coef`` (n_spline x 6 x M1, contiguous over columns: the loops over
    M1 vectorise); an empty table -> a 0 x 6 x 0 array."""
    data = np.asarray(data, dtype=np.float64)
    if data.size == 0:
        return np.empty((0, 6, 0))
    n = data.shape[0]
    return np.ascontiguousarray(data.reshape(n, -1, 6).transpose(0, 2, 1))  # n x 6 x M1


def table_data(coef):
    """Inverse of :func:`table_coefficients` (the twins hand the reference its layout)."""
    return coef.transpose(0, 2, 1).reshape(coef.shape[0], -1)  # n x 6*M1


@numba.njit(cache=True, inline="always", error_model="numpy")
def table_g(ck, c, t, e):
    """:math:`G = p(t) + p'(t)e` of column ``c`` (:func:`table_column`'s value); inside the
    table (e = 0) the slope is skipped: p(t) + p'(t)·0 = p(t)."""
    return table_value(ck, c, t) if e == 0.0 else table_column(ck, c, t, e)[0]


@kernel(noalias=True)
def env_table_T_forward(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection,
                        coef, info, R, T, npad=None, cpad=None):
    """Environment rows and the tabulated embedding fused with T.

    ``R`` (P x 4) <- normalised rows; ``T`` (na x 4 x M1, transposed as in
    :func:`symref.fast.kernels.se_e2_a.embed_T_forward`) += Σ_p R_p ⊗ G(s_p).
    With ``npad`` (na: each centre's padded slots of this neighbour type) and ``cpad``
    (4 x M1: one padded slot's R ⊗ G), first ``T[a] += npad[a] * cpad`` (what
    :mod:`symref.fast.cpu` added with a NumPy temporary before; the same sums).
    ``rij``: P x 3 (Å); ``ptr``: na+1; ``types``: na centre types; ``davg``,
    ``dstd``: nt x 4; ``coef``: n_spline x 6 x M1 (:func:`table_coefficients`;
    n_spline = 0: no table); ``info``: 6.  ``R`` and ``T`` overlap no other argument
    (the serial build is compiled ``noalias``: :mod:`symref.fast.kernels._jit`).

    Pairs go four at a time through one loop over the columns (T loaded and stored
    once per four pairs, not once per pair); each T element still receives its
    pairs' terms one after another in pair order, so the sums are those of a loop
    pair by pair, bit for bit.  A centre's environment rows are computed on local copies
    first (:func:`_env_rows_local`: vectorised over its pairs, ~12% of the kernel's time
    at deepmd-kit's water model size), then its table loop (:func:`_table_T_atom`).
    """
    na = ptr.shape[0] - 1
    M1 = T.shape[2]
    nspline = coef.shape[0]
    if nspline == 0:  # no table: nothing enters T (cpad is zero)
        for a in numba.prange(na):
            for p in range(ptr[a], ptr[a + 1]):
                env_row(rij, p, types[a], davg, dstd, rcut_smth, rcut, protection, R)
        return
    lower, upper, table_max, stride0, stride1 = info[0], info[1], info[2], info[3], info[4]
    nchunk, maxp = _chunks(ptr)
    for ch in numba.prange(nchunk):
        X = np.empty((maxp, 3))  # the atom's rij rows: local, so the row loop vectorises
        Rl = np.empty((maxp, 4))  # ... and its R rows
        for a in range(ch * na // nchunk, (ch + 1) * na // nchunk):
            if npad is not None and npad[a] != 0.0:
                for q in range(4):
                    for c in range(M1):
                        T[a, q, c] = T[a, q, c] + npad[a] * cpad[q, c]
            _env_rows_local(rij, ptr[a], ptr[a + 1], types[a], davg, dstd, rcut_smth, rcut,
                            protection, X, Rl, R)
            _table_T_atom(a, ptr[a], ptr[a + 1], R, coef, T, lower, upper, table_max, stride0,
                          stride1, nspline, M1)


#: chunks of centres per table kernel call (scratch allocated once per chunk; a constant:
#: ``numba.get_num_threads()`` inside a kernel stops numba from caching it).  The parallel
#: build (``"kernels"`` mode of :mod:`symref.fast.cpu`) therefore uses at most 32 threads
#: in :func:`env_table_T_forward`; the default ``"blocks"`` mode runs the serial build.
CHUNKS = 32


@numba.njit(cache=True, inline="always", error_model="numpy")
def _chunks(ptr):
    """``(nchunk, maxp)``: the chunks of centres the table kernels' ``prange`` runs over
    (each allocates its scratch once; at most :data:`CHUNKS`) and the most pairs of one
    centre."""
    na = ptr.shape[0] - 1
    maxp = 1
    for a in range(na):
        maxp = max(maxp, ptr[a + 1] - ptr[a])
    return max(1, min(na, CHUNKS)), maxp


@numba.njit(cache=True, inline="always", error_model="numpy")
def _env_rows_local(rij, p0, p1, t, davg, dstd, rcut_smth, rcut, protection, X, Rl, R):
    """``R[p0:p1]`` <- :func:`~symref.fast.kernels.se_e2_a.env_row` of the pairs p0..p1-1
    (centre type t), computed on the local copies ``X`` and ``Rl`` (maxp x 3, maxp x 4):
    LLVM vectorises :func:`env_row` over the pairs of local arrays, not over ``rij`` and
    ``R`` (strides it does not know); the same operations, the same values."""
    n = p1 - p0
    for j in range(n):
        X[j, 0] = rij[p0 + j, 0]
        X[j, 1] = rij[p0 + j, 1]
        X[j, 2] = rij[p0 + j, 2]
    for j in range(n):
        env_row(X, j, t, davg, dstd, rcut_smth, rcut, protection, Rl)
    for j in range(n):
        R[p0 + j, 0] = Rl[j, 0]
        R[p0 + j, 1] = Rl[j, 1]
        R[p0 + j, 2] = Rl[j, 2]
        R[p0 + j, 3] = Rl[j, 3]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _table_T_atom(a, p0, p1, R, coef, T, lower, upper, table_max, stride0, stride1, nspline, M1):
    """``T[a]`` += Σ_p R_p ⊗ G(s_p) over the pairs p0..p1-1 of centre a (the table loop of
    :func:`env_table_T_forward`)."""
    T0, T1, T2, T3 = T[a, 0], T[a, 1], T[a, 2], T[a, 3]  # M1 each
    p = p0
    while p + 4 <= p1:  # four pairs: A, B, C, D
        kA, tA, eA = table_locate(R[p, 0], lower, upper, table_max, stride0, stride1, nspline)
        kB, tB, eB = table_locate(R[p + 1, 0], lower, upper, table_max, stride0, stride1,
                                  nspline)
        kC, tC, eC = table_locate(R[p + 2, 0], lower, upper, table_max, stride0, stride1,
                                  nspline)
        kD, tD, eD = table_locate(R[p + 3, 0], lower, upper, table_max, stride0, stride1,
                                  nspline)
        cA, cB, cC, cD = coef[kA], coef[kB], coef[kC], coef[kD]  # 6 x M1 each
        A0, A1, A2, A3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
        B0, B1, B2, B3 = R[p + 1, 0], R[p + 1, 1], R[p + 1, 2], R[p + 1, 3]
        C0, C1, C2, C3 = R[p + 2, 0], R[p + 2, 1], R[p + 2, 2], R[p + 2, 3]
        D0, D1, D2, D3 = R[p + 3, 0], R[p + 3, 1], R[p + 3, 2], R[p + 3, 3]
        if eA == 0.0 and eB == 0.0 and eC == 0.0 and eD == 0.0:  # all inside the table
            for c in range(M1):
                gA = table_value(cA, c, tA)
                gB = table_value(cB, c, tB)
                gC = table_value(cC, c, tC)
                gD = table_value(cD, c, tD)
                T0[c] = fma(gD, D0, fma(gC, C0, fma(gB, B0, fma(gA, A0, T0[c]))))
                T1[c] = fma(gD, D1, fma(gC, C1, fma(gB, B1, fma(gA, A1, T1[c]))))
                T2[c] = fma(gD, D2, fma(gC, C2, fma(gB, B2, fma(gA, A2, T2[c]))))
                T3[c] = fma(gD, D3, fma(gC, C3, fma(gB, B3, fma(gA, A3, T3[c]))))
        else:
            for c in range(M1):
                gA = table_g(cA, c, tA, eA)
                gB = table_g(cB, c, tB, eB)
                gC = table_g(cC, c, tC, eC)
                gD = table_g(cD, c, tD, eD)
                T0[c] = fma(gD, D0, fma(gC, C0, fma(gB, B0, fma(gA, A0, T0[c]))))
                T1[c] = fma(gD, D1, fma(gC, C1, fma(gB, B1, fma(gA, A1, T1[c]))))
                T2[c] = fma(gD, D2, fma(gC, C2, fma(gB, B2, fma(gA, A2, T2[c]))))
                T3[c] = fma(gD, D3, fma(gC, C3, fma(gB, B3, fma(gA, A3, T3[c]))))
        p += 4
    for p in range(p, p1):  # the last 0-3 pairs one by one
        k, t, e = table_locate(R[p, 0], lower, upper, table_max, stride0, stride1, nspline)
        ck = coef[k]  # 6 x M1
        r0, r1, r2, r3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
        for c in range(M1):
            g = table_g(ck, c, t, e)
            T0[c] = fma(g, r0, T0[c])
            T1[c] = fma(g, r1, T1[c])
            T2[c] = fma(g, r2, T2[c])
            T3[c] = fma(g, r3, T3[c])


def env_table_T_forward_ref(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection,
                            coef, info, R, T, npad=None, cpad=None):
    """NumPy twin of :func:`env_table_T_forward` (:func:`symref.reference.tabulation.tabulated_forward`)."""
    env_rows_ref(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection, R)
    if coef.shape[0] == 0:
        return
    if npad is not None:
        T += npad[:, None, None] * cpad  # na x 4 x M1
    G, _ = tabulated_forward(R[:, :1], table_data(coef), info)  # P x M1
    np.add.at(T, pair_atoms(ptr), R[:, :, None] * G[:, None, :])


@kernel
def table_rows(coef, info, s, G):
    """``G`` (n x M1) <- the table's G at the n values ``s`` (the padded slots' rows in
    :mod:`symref.fast.cpu`; ``coef``: n_spline >= 1 x 6 x M1, ``info``: 6)."""
    nspline = coef.shape[0]
    lower, upper, table_max, stride0, stride1 = info[0], info[1], info[2], info[3], info[4]
    for i in numba.prange(s.shape[0]):
        k, t, e = table_locate(s[i], lower, upper, table_max, stride0, stride1, nspline)
        ck = coef[k]
        for c in range(G.shape[1]):
            G[i, c] = table_g(ck, c, t, e)


def table_rows_ref(coef, info, s, G):
    """NumPy twin of :func:`table_rows` (:func:`symref.reference.tabulation.tabulated_forward`)."""
    G[...] = tabulated_forward(s[:, None], table_data(coef), info)[0]


#: partial sums per reduction in the backward pass (column c goes to lane c % LANES):
#: independent lanes let the loop over columns vectorise without reordering any sum
#: (:func:`_lane_sum` adds exactly 16; 8 lanes measured 3x slower)
LANES = 16


@numba.njit(cache=True, inline="always", error_model="numpy")
def _backward_terms(gc, slope, c, r0, r1, r2, r3, dTt, acc, lane):
    r"""Column c's terms of the backward sums, added to lane ``lane`` of ``acc`` (5 x LANES):
    :math:`G_c \bar T_{cq}` (q = 0..3) and :math:`(\bar T_c \cdot R)\, G'_c`."""
    d0, d1, d2, d3 = dTt[0, c], dTt[1, c], dTt[2, c], dTt[3, c]
    acc[0, lane] = fma(gc, d0, acc[0, lane])
    acc[1, lane] = fma(gc, d1, acc[1, lane])
    acc[2, lane] = fma(gc, d2, acc[2, lane])
    acc[3, lane] = fma(gc, d3, acc[3, lane])
    acc[4, lane] = fma(fma(d3, r3, fma(d2, r2, fma(d1, r1, d0 * r0))), slope, acc[4, lane])


@numba.njit(cache=True, inline="always", error_model="numpy")
def _table_backward_column(ck, c, t, e, r0, r1, r2, r3, dTt, acc, lane):
    """:func:`_backward_terms` of column c of a pair at (t, e) (:func:`table_column`)."""
    gc, slope = table_column(ck, c, t, e)
    _backward_terms(gc, slope, c, r0, r1, r2, r3, dTt, acc, lane)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _table_backward_column_inside(ck, c, t, r0, r1, r2, r3, dTt, acc, lane):
    """:func:`_table_backward_column` for a pair inside the table (e = 0: G is
    :func:`table_value`, no p'(t)·e term to add)."""
    _backward_terms(table_value(ck, c, t), table_slope(ck, c, t), c, r0, r1, r2, r3, dTt,
                    acc, lane)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _lane_sum(acc, j):
    """Sum of the :data:`LANES` (16) partial sums of row ``j`` of ``acc``, pairwise (a tree of
    depth 4: four dependent additions instead of sixteen)."""
    a0 = acc[j, 0] + acc[j, 8]
    a1 = acc[j, 1] + acc[j, 9]
    a2 = acc[j, 2] + acc[j, 10]
    a3 = acc[j, 3] + acc[j, 11]
    a4 = acc[j, 4] + acc[j, 12]
    a5 = acc[j, 5] + acc[j, 13]
    a6 = acc[j, 6] + acc[j, 14]
    a7 = acc[j, 7] + acc[j, 15]
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


@kernel
def env_table_T_backward(rij, ptr, types, dstd, rcut, rcut_smth, protection, coef, info,
                         R, dT, g):
    r"""Backward of :func:`env_table_T_forward` for upstream ``dT`` (na x M1 x 4):
    ``g`` (P x 3) <- dL/drij.  ``R``: the rows the forward pass wrote.

    The five sums over columns (:math:`\bar T^\top G` and :math:`\sum_c \bar G_c G'_c`)
    are kept in :data:`LANES` partial sums each, added pairwise at the end
    (:func:`_lane_sum`): a fixed order, so the result does not depend on the build or
    the threads.  Pairs inside the table (e = 0, nearly all) take a column loop without
    the extrapolation term (:func:`_table_backward_column_inside`).
    """
    na = ptr.shape[0] - 1
    M1 = dT.shape[1]
    nspline = coef.shape[0]
    if nspline == 0:  # no table: R does not enter T
        g[ptr[0]:ptr[na]] = 0.0
        return
    lower, upper, table_max, stride0, stride1 = info[0], info[1], info[2], info[3], info[4]
    nfull = M1 - M1 % LANES
    for a in numba.prange(na):
        dTt = np.empty((4, M1))  # 4 x M1: dT[a] transposed (contiguous column loops)
        for c in range(M1):
            for q in range(4):
                dTt[q, c] = dT[a, c, q]
        acc = np.empty((5, LANES))  # 5 sums x LANES partial sums
        for p in range(ptr[a], ptr[a + 1]):
            k, t, e = table_locate(R[p, 0], lower, upper, table_max, stride0, stride1, nspline)
            ck = coef[k]  # 6 x M1
            r0, r1, r2, r3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
            acc[:] = 0.0
            if e == 0.0:
                for cb in range(0, nfull, LANES):
                    for l in range(LANES):  # unrolled and vectorised: no sum crosses lanes
                        _table_backward_column_inside(ck, cb + l, t, r0, r1, r2, r3, dTt, acc, l)
            else:
                for cb in range(0, nfull, LANES):
                    for l in range(LANES):
                        _table_backward_column(ck, cb + l, t, e, r0, r1, r2, r3, dTt, acc, l)
            for c in range(nfull, M1):
                _table_backward_column(ck, c, t, e, r0, r1, r2, r3, dTt, acc, c - nfull)
            s0 = _lane_sum(acc, 0)
            s1 = _lane_sum(acc, 1)
            s2 = _lane_sum(acc, 2)
            s3 = _lane_sum(acc, 3)
            ds = _lane_sum(acc, 4)
            env_row_backward(rij, p, types[a], dstd, rcut_smth, rcut, protection,
                             s0 + ds, s1, s2, s3, g)


def env_table_T_backward_ref(rij, ptr, types, dstd, rcut, rcut_smth, protection, coef, info,
                             R, dT, g):
    """NumPy twin of :func:`env_table_T_backward` (:func:`symref.reference.tabulation.tabulated_forward`
    and :func:`~symref.reference.tabulation.tabulated_backward`)."""
    if coef.shape[0] == 0:
        g[...] = 0.0
        return
    G, dG_ds = tabulated_forward(R[:, :1], table_data(coef), info)  # P x M1 each
    dTp = dT[pair_atoms(ptr)]  # P x M1 x 4
    dG = np.einsum("pkc,pc->pk", dTp, R)  # P x M1
    dR = np.einsum("pk,pkc->pc", G, dTp)  # P x 4
    ds, _ = tabulated_backward(dG, dG_ds)  # P x 1
    dR[:, 0] += ds[:, 0]
    env_rows_backward_ref(rij, ptr, types, dstd, rcut, rcut_smth, protection, dR, g)
