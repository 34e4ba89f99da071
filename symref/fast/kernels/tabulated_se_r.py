r"""numba kernels of the compressed se_e2_r descriptor (tabulated radial nets), with NumPy twins.

The formulas are :mod:`symref.reference.descriptor.se_e2_r`'s with each net
:math:`\mathcal N_t` replaced by its table (the se_e2_a rules of
:func:`symref.reference.tabulation.tabulated_forward`, located by
:func:`symref.fast.kernels.tabulated.table_locate`, evaluated by its ``table_g`` /
``table_column``): for every centre i and slot j of a neighbour type with a table,

.. math::  D_i = \frac{1}{5\,n_{nei}} \sum_j G(s_{ij}),\qquad
           \bar s_{ij} = \frac{1}{5\,n_{nei}}\, G'(s_{ij})\cdot\bar D_i,

padded and excluded slots included (their G enters deepmd-kit's mean); a type whose table
is empty contributes nothing and gets :math:`\bar s = 0` (deepmd-kit skips it).  One centre
per ``prange`` iteration.

Packed tables (:func:`pack_tables`): ``COEF`` (nnets x nspline_max x 6 x M, the
``table_coefficients`` layout, zero-padded), ``INFO`` (nnets x 6), ``NSPL`` (nnets).
Groups (:func:`table_groups`): rows ``(j0, j1, net)`` of the neighbour types with a
table.  ``SMAX`` (nloc x ngroups, written by the forward kernel): the largest s of every
centre and group, for the beyond-the-table warning.

Axis names: ``nloc`` centres, ``nnei`` slots, ``M`` the embedding width.  Each kernel
``k`` has a twin ``k_ref`` with the same signature built on the reference
(tests/test_kernels_tabulated_se_t.py); fastmath off.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.tabulated import (table_coefficients, table_column, table_data,
                                           table_g, table_locate)
from symref.reference.tabulation import tabulated_forward


def pack_tables(tables):
    """``(COEF, INFO, NSPL)`` of an :class:`~symref.reference.tabulation.EmbeddingTables`
    (module docstring); unused nets are zero with ``NSPL = 1``."""
    coefs = [table_coefficients(d) for d in tables.data]
    n = len(coefs)
    nmax = max(c.shape[0] for c in coefs)
    m = max(c.shape[2] for c in coefs)
    COEF = np.zeros((n, nmax, 6, m))
    INFO = np.zeros((n, 6))
    NSPL = np.ones(n, dtype=np.int64)
    for k, (c, i) in enumerate(zip(coefs, tables.info)):
        if c.shape[0]:
            COEF[k, :c.shape[0]] = c
            INFO[k] = np.asarray(i, dtype=np.float64).reshape(6)
            NSPL[k] = c.shape[0]
    return COEF, INFO, NSPL


def table_groups(sel, tables):
    """Rows ``(j0, j1, net)`` of every neighbour type with slots and a table."""
    off = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)
    return np.array([(off[t], off[t + 1], t) for t in range(len(sel))
                     if sel[t] and np.size(tables.data[t])], dtype=np.int64).reshape(-1, 3)


@kernel
def se_e2_r_tabulated_forward(s, groups, scale, COEF, INFO, NSPL, D, SMAX):
    """``D[i] = scale * sum_j G(s[i, j])`` (nloc x M, zeroed here) from the masked radial
    rows ``s`` (nloc x nnei); ``SMAX`` (nloc x ngroups) the largest s."""
    M = D.shape[1]
    for i in numba.prange(s.shape[0]):
        for m in range(M):
            D[i, m] = 0.0
        for g in range(groups.shape[0]):
            j0, j1, k = groups[g, 0], groups[g, 1], groups[g, 2]
            big = -np.inf
            for j in range(j0, j1):
                x = s[i, j]
                big = max(big, x)
                kk, t, e = table_locate(x, INFO[k, 0], INFO[k, 1], INFO[k, 2], INFO[k, 3],
                                        INFO[k, 4], NSPL[k])
                for m in range(M):
                    D[i, m] += table_g(COEF[k, kk], m, t, e)
            SMAX[i, g] = big
        for m in range(M):
            D[i, m] *= scale


@kernel
def se_e2_r_tabulated_backward(s, groups, scale, COEF, INFO, NSPL, dD, ds):
    """``ds`` (nloc x nnei, every slot written: 0 outside the groups) = dL/ds for ``dD``
    (nloc x M) of :func:`se_e2_r_tabulated_forward`."""
    M = dD.shape[1]
    for i in numba.prange(s.shape[0]):
        for j in range(s.shape[1]):
            ds[i, j] = 0.0
        for g in range(groups.shape[0]):
            j0, j1, k = groups[g, 0], groups[g, 1], groups[g, 2]
            for j in range(j0, j1):
                kk, t, e = table_locate(s[i, j], INFO[k, 0], INFO[k, 1], INFO[k, 2],
                                        INFO[k, 3], INFO[k, 4], NSPL[k])
                acc = 0.0
                for m in range(M):
                    acc += dD[i, m] * table_column(COEF[k, kk], m, t, e)[1]
                ds[i, j] = scale * acc


def se_e2_r_tabulated_forward_ref(s, groups, scale, COEF, INFO, NSPL, D, SMAX):
    """NumPy twin of :func:`se_e2_r_tabulated_forward` (the reference's table on each group)."""
    D[...] = 0.0
    for g, (j0, j1, k) in enumerate(groups):
        G, _ = tabulated_forward(s[:, j0:j1, None], table_data(COEF[k, :NSPL[k]]), INFO[k])
        D += G.sum(axis=1)
        SMAX[:, g] = s[:, j0:j1].max(axis=1)
    D *= scale


def se_e2_r_tabulated_backward_ref(s, groups, scale, COEF, INFO, NSPL, dD, ds):
    """NumPy twin of :func:`se_e2_r_tabulated_backward`."""
    ds[...] = 0.0
    for j0, j1, k in groups:
        _, slope = tabulated_forward(s[:, j0:j1, None], table_data(COEF[k, :NSPL[k]]), INFO[k])
        ds[:, j0:j1] = scale * np.einsum("ijm,im->ij", slope, dD)
