r"""numba kernels of the compressed se_e3 descriptor (tabulated three-body nets), with NumPy twins.

The formulas are :mod:`symref.reference.descriptor.se_e3`'s with each net replaced by
its table (:mod:`symref.reference.tabulation_se_t`: the look-up rules of deepmd-kit's
``tabulate_fusion_se_t``): for every centre, neighbour-type pair p <= q and ordered slot
pair (a, b), :math:`\theta_{ab} = X_a\cdot X_b` and

.. math::

    D \mathrel{+}= c_{pq}\,\theta_{ab}\,G(\theta_{ab}),\qquad
    \bar\theta_{ab} = c_{pq}\,\big(G(\theta_{ab}) + \theta_{ab}\,G'(\theta_{ab})\big)\cdot\bar D,\qquad
    \bar X_a \mathrel{+}= \bar\theta_{ab} X_b,\ \bar X_b \mathrel{+}= \bar\theta_{ab} X_a,

:math:`G = p(t) + p'(t)\,e` and :math:`G' = p'(t)` with the interval, :math:`t` and the
extrapolation distance :math:`e` of :func:`_locate` (the reference's rules, one scalar
at a time).  One centre per ``prange`` iteration, gathering only its own slots (no
scatter to neighbours); nothing of size sel_p x sel_q x M is formed.  Rows of ``X``
that are exactly zero (padded slots under deepmd-kit's statistics, excluded pairs) are
left out: every θ they enter is 0, so D is unchanged, and their gradient is 0 here
(every caller discards it, as for :mod:`symref.fast.kernels.se_e3`).

Packed tables (:func:`pack_tables`): ``DATA`` (nnets x nspline_max x 6M, zero-padded),
``INFO`` (nnets x 6, deepmd-kit's ``[l, u, m, h0, h1, check_frequency]``) and ``NSPL``
(nnets ints); unused nets are zero rows with ``NSPL = 1``.  Group pairs: the
``(ranges, c)`` of :func:`symref.fast.kernels.se_e3.pair_table`.  ``THMAX`` (nloc x
ngroups, written by the forward kernel): max |θ| of every centre and group pair, for
the beyond-the-table warning.

Axis names: ``nloc`` centres, ``nnei`` slots, ``M`` the embedding width.  Each kernel
``k`` has a twin ``k_ref`` with the same signature built on the reference
(tests/test_kernels_tabulated_se_t.py); fastmath off.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.se_e3 import _live_slots
from symref.reference.tabulation_se_t import tabulated_se_t_forward


def pack_tables(tables):
    """``(DATA, INFO, NSPL)`` of an :class:`~symref.reference.tabulation.EmbeddingTables`
    (module docstring)."""
    filled = [np.asarray(d) for d in tables.data if np.size(d)]
    width = filled[0].shape[1]
    nmax = max(d.shape[0] for d in filled)
    n = len(tables.data)
    DATA = np.zeros((n, nmax, width))
    INFO = np.zeros((n, 6))
    NSPL = np.ones(n, dtype=np.int64)
    for k, (d, i) in enumerate(zip(tables.data, tables.info)):
        if np.size(d):
            DATA[k, :d.shape[0]] = d
            INFO[k] = np.asarray(i, dtype=np.float64).reshape(6)
            NSPL[k] = d.shape[0]
    return DATA, INFO, NSPL


@numba.njit(cache=True, error_model="numpy")
def _locate(x, info, nspl):
    """``(k, t, e)``: interval, offset in it and extrapolation distance of θ = ``x`` in a
    table ``info`` of ``nspl`` intervals (:func:`~symref.reference.tabulation_se_t.
    tabulated_se_t_forward`'s rules)."""
    lower, upper, tmax, s0, s1 = info[0], info[1], info[2], info[3], info[4]
    tmin = -tmax
    n_a = int((lower - tmin) / s1)
    n_b = n_a + int((upper - lower) / s0)
    last = n_b + int((tmax - upper) / s1) - 1
    if x < tmin:
        raw = 0.0
    elif x < lower:
        raw = np.floor((x - tmin) / s1)
    elif x < upper:
        raw = n_a + np.floor((x - lower) / s0)
    elif x < tmax:
        raw = n_b + np.floor((x - upper) / s1)
    else:
        raw = float(last)
    k = int(min(max(raw, 0.0), nspl - 1.0))
    fk = float(k)
    e = 0.0
    if x < tmin:
        t = 0.0
        e = x - tmin
    elif x < lower:
        t = x - (fk * s1 + tmin)
    elif x < upper:
        t = x - ((fk - n_a) * s0 + lower)
    elif x < tmax:
        t = x - ((fk - n_b) * s1 + upper)
    else:
        t = tmax - ((last - n_b) * s1 + upper)
        e = x - tmax
    return k, t, e


@numba.njit(cache=True, inline="always", error_model="numpy")
def _value(row, m, t):
    """:math:`p(t)` of output m from one interval's coefficients ``row`` (6M, deepmd-kit's
    layout: ``row[6m + j]`` = :math:`c_j`), Horner's scheme."""
    j = 6 * m
    return row[j] + (row[j + 1] + (row[j + 2] + (row[j + 3] + (row[j + 4] + row[j + 5] * t)
                                                 * t) * t) * t) * t


@numba.njit(cache=True, inline="always", error_model="numpy")
def _column(row, m, t, e):
    """``(G, G')`` of output m: :math:`p(t) + p'(t)e` and :math:`p'(t)` (:func:`_value`)."""
    j = 6 * m
    grad = row[j + 1] + (2 * row[j + 2] + (3 * row[j + 3] + (4 * row[j + 4] + 5 * row[j + 5] * t)
                                           * t) * t) * t
    return _value(row, m, t) + grad * e, grad


@kernel
def se_e3_tabulated_forward(X, ranges, c, DATA, INFO, NSPL, D, THMAX):
    """``D[i] = sum c theta G(theta)`` (nloc x M, zeroed here) from ``X`` (nloc x nnei x 3,
    the masked spatial columns); ``THMAX`` (nloc x ngroups) max |theta|."""
    M = D.shape[1]
    for i in numba.prange(X.shape[0]):
        live = _live_slots(X, i)
        for m in range(M):
            D[i, m] = 0.0
        for g in range(ranges.shape[0]):
            a0, a1, b0, b1, k = ranges[g, 0], ranges[g, 1], ranges[g, 2], ranges[g, 3], ranges[g, 4]
            big = 0.0
            for a in range(a0, a1):
                if not live[a]:
                    continue
                for b in range(b0, b1):
                    if not live[b]:
                        continue
                    th = X[i, a, 0] * X[i, b, 0] + X[i, a, 1] * X[i, b, 1] + X[i, a, 2] * X[i, b, 2]
                    big = max(big, abs(th))
                    kk, t, e = _locate(th, INFO[k], NSPL[k])
                    f = c[g] * th
                    row = DATA[k, kk]
                    if e == 0.0:  # inside the table: p(t) alone
                        for m in range(M):
                            D[i, m] += f * _value(row, m, t)
                    else:
                        for m in range(M):
                            G, _ = _column(row, m, t, e)
                            D[i, m] += f * G
            THMAX[i, g] = big


@kernel
def se_e3_tabulated_backward(X, ranges, c, DATA, INFO, NSPL, dD, dX):
    """``dX`` (nloc x nnei x 3, zeroed here) = dL/dX for ``dD`` = dL/dD (nloc x M); zero rows
    of ``X`` get 0 (module docstring)."""
    M = dD.shape[1]
    for i in numba.prange(X.shape[0]):
        live = _live_slots(X, i)
        for a in range(X.shape[1]):
            for d in range(3):
                dX[i, a, d] = 0.0
        for g in range(ranges.shape[0]):
            a0, a1, b0, b1, k = ranges[g, 0], ranges[g, 1], ranges[g, 2], ranges[g, 3], ranges[g, 4]
            for a in range(a0, a1):
                if not live[a]:
                    continue
                for b in range(b0, b1):
                    if not live[b]:
                        continue
                    th = X[i, a, 0] * X[i, b, 0] + X[i, a, 1] * X[i, b, 1] + X[i, a, 2] * X[i, b, 2]
                    kk, t, e = _locate(th, INFO[k], NSPL[k])
                    s = 0.0
                    for m in range(M):
                        G, slope = _column(DATA[k, kk], m, t, e)
                        s += dD[i, m] * (G + th * slope)
                    dth = c[g] * s
                    for d in range(3):
                        dX[i, a, d] += dth * X[i, b, d]
                        dX[i, b, d] += dth * X[i, a, d]


def _theta_and_table(X, a0, a1, b0, b1, k, DATA, INFO, NSPL):
    th = np.einsum("iad,ibd->iab", X[:, a0:a1], X[:, b0:b1])  # nloc x n_p x n_q
    G, dG = tabulated_se_t_forward(th[..., None], DATA[k, :NSPL[k]], INFO[k])  # ... x M
    return th, G, dG


def se_e3_tabulated_forward_ref(X, ranges, c, DATA, INFO, NSPL, D, THMAX):
    """NumPy twin of :func:`se_e3_tabulated_forward` (the reference's per-group sums)."""
    D[...] = 0.0
    for g, ((a0, a1, b0, b1, k), cg) in enumerate(zip(ranges, c)):
        th, G, _ = _theta_and_table(X, a0, a1, b0, b1, k, DATA, INFO, NSPL)
        D += cg * np.einsum("iab,iabm->im", th, G)
        THMAX[:, g] = np.max(np.abs(th), axis=(1, 2), initial=0.0)


def se_e3_tabulated_backward_ref(X, ranges, c, DATA, INFO, NSPL, dD, dX):
    """NumPy twin of :func:`se_e3_tabulated_backward` (the reference's backward formula
    with the table's slope)."""
    dX[...] = 0.0
    for (a0, a1, b0, b1, k), cg in zip(ranges, c):
        th, G, dG = _theta_and_table(X, a0, a1, b0, b1, k, DATA, INFO, NSPL)
        dth = cg * (np.einsum("iabm,im->iab", G, dD)
                    + th * np.einsum("iabm,im->iab", dG, dD))  # nloc x n_p x n_q
        dX[:, a0:a1] += np.einsum("iab,ibd->iad", dth, X[:, b0:b1])
        dX[:, b0:b1] += np.einsum("iab,iad->ibd", dth, X[:, a0:a1])
    dX[~np.any(X != 0.0, axis=-1)] = 0.0  # zero rows: left out (module docstring)
