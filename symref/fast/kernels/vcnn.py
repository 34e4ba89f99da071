r"""Segment sums of the Vector Cloud Neural Network over ragged clouds, forward and backward.

The points of all clouds are stacked (P rows, cloud b owning rows
``ptr[b]:ptr[b+1]``, no padding); these kernels are the cloud sum of
:func:`symref.reference.core.cloud_sum_forward` and its backward on that layout:

.. math::

    L_b = s_b \sum_{j=p_b}^{p_{b+1}-1} G_j \otimes X_j \quad (M_1 \times c),\qquad
    \bar G_j = s_b\, \bar L_b X_j \quad (j \in [p_b, p_{b+1})),

with :math:`s_b = 1/n_b` for the VCNN.  Both run ``prange`` over clouds: cloud b
writes only ``L[b]`` or its own rows of ``Ḡ`` (no races, no reduction across
threads), so the parallel and the serial builds give the same bits.  Each kernel has
a NumPy twin with the same signature (``*_ref``), tested against it in
``tests/test_kernels_vcnn.py``.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel


@kernel
def cloud_sum(G, X, ptr, scale, L):
    """``L`` (B x M1 x c) <- ``L_b = scale_b Σ_j G_j ⊗ X_j`` over rows ``ptr[b]:ptr[b+1]``
    of ``G`` (P x M1) and ``X`` (P x c); ``ptr`` (B + 1), ``scale`` (B)."""
    B = ptr.shape[0] - 1
    M1 = G.shape[1]
    c = X.shape[1]
    for b in numba.prange(B):
        Lb = L[b]  # M1 x c
        for m in range(M1):
            for k in range(c):
                Lb[m, k] = 0.0
        for j in range(ptr[b], ptr[b + 1]):
            Gj = G[j]  # M1
            Xj = X[j]  # c
            for m in range(M1):
                g = Gj[m]
                for k in range(c):
                    Lb[m, k] += g * Xj[k]
        s = scale[b]
        for m in range(M1):
            for k in range(c):
                Lb[m, k] *= s


def cloud_sum_ref(G, X, ptr, scale, L):
    """NumPy twin of :func:`cloud_sum`."""
    for b in range(ptr.shape[0] - 1):
        rows = slice(ptr[b], ptr[b + 1])
        L[b] = scale[b] * (G[rows].T @ X[rows])  # M1 x c


@kernel
def cloud_sum_backward(dL, X, ptr, scale, dG):
    """``dG`` (P x M1) <- ``Ḡ_j = scale_b L̄_b X_j`` for the rows ``ptr[b]:ptr[b+1]``;
    ``dL`` (B x M1 x c), ``X`` (P x c)."""
    B = ptr.shape[0] - 1
    M1 = dL.shape[1]
    c = X.shape[1]
    for b in numba.prange(B):
        dLb = dL[b]  # M1 x c
        s = scale[b]
        for j in range(ptr[b], ptr[b + 1]):
            Xj = X[j]  # c
            dGj = dG[j]  # M1
            for m in range(M1):
                acc = 0.0
                for k in range(c):
                    acc += dLb[m, k] * Xj[k]
                dGj[m] = s * acc


def cloud_sum_backward_ref(dL, X, ptr, scale, dG):
    """NumPy twin of :func:`cloud_sum_backward`."""
    for b in range(ptr.shape[0] - 1):
        rows = slice(ptr[b], ptr[b + 1])
        dG[rows] = X[rows] @ (scale[b] * dL[b]).T  # n_b x M1
