r"""Segment sums of the Vector Cloud Neural Network over ragged clouds, forward and backward.

The points of all clouds are stacked (P rows, cloud b owning rows
``ptr[b]:ptr[b+1]``, no padding); these kernels are the cloud sum of
:func:`symref.reference.core.cloud_sum_forward` and its backward on that layout:

.. math::

    L_b = s_b \sum_{j=p_b}^{p_{b+1}-1} G_j \otimes X_j \quad (M_1 \times c),\qquad
    \bar G_j = s_b\, \bar L_b X_j \quad (j \in [p_b, p_{b+1})),

with :math:`s_b = 1/n_b` for the VCNN.  Both run ``prange`` over clouds: cloud b
writes only ``L[b]`` or its own rows of ``Ḡ`` (no races, no reduction across
threads), so the parallel and the serial builds give the same bits.
:func:`gram` and :func:`gram_backward` are :math:`D_b = L_b L_{b,<}^\top` and its
backward, ``prange`` over clouds.  :func:`dense_backward_sums` is the element-wise part of a dense layer's backward with
its parameter sums, in one pass over one block of rows.  Each kernel has
a NumPy twin with the same signature (``*_ref``), tested against it in
``tests/test_kernels_vcnn.py``.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel, serial_kernel
from symref.fast.kernels.activations import act_deriv_ref, act_kept, act_kept_ref
from symref.fast.kernels.dense import grad_rows
from symref.reference.core import gram_backward as ref_gram_backward
from symref.reference.core import gram_forward


@kernel
def cloud_sum(G, X, ptr, scale, L):
    """``L`` (B x M1 x c) <- ``L_b = scale_b Σ_j G_j ⊗ X_j`` over rows ``ptr[b]:ptr[b+1]``
    of ``G`` (P x M1) and ``X`` (P x c); ``ptr`` (B + 1), ``scale`` (B).

    Accumulated transposed (c x M1, the inner loop runs along a row of G: vectorised;
    c is only 1 + V d), then written out scaled."""
    B = ptr.shape[0] - 1
    M1 = G.shape[1]
    c = X.shape[1]
    for b in numba.prange(B):
        Lt = np.zeros((c, M1))  # c x M1
        for j in range(ptr[b], ptr[b + 1]):
            Gj = G[j]  # M1
            for k in range(c):
                x = X[j, k]
                Ltk = Lt[k]
                for m in range(M1):
                    Ltk[m] += x * Gj[m]
        s = scale[b]
        Lb = L[b]  # M1 x c
        for m in range(M1):
            for k in range(c):
                Lb[m, k] = Lt[k, m] * s


def cloud_sum_ref(G, X, ptr, scale, L):
    """NumPy twin of :func:`cloud_sum`."""
    for b in range(ptr.shape[0] - 1):
        rows = slice(ptr[b], ptr[b + 1])
        L[b] = scale[b] * (G[rows].T @ X[rows])  # M1 x c


@kernel
def cloud_sum_backward(dL, X, ptr, scale, dG):
    """``dG`` (P x M1) <- ``Ḡ_j = scale_b L̄_b X_j`` for the rows ``ptr[b]:ptr[b+1]``;
    ``dL`` (B x M1 x c), ``X`` (P x c).  ``scale_b L̄_b`` is transposed first (c x M1)
    so that the inner loop runs along a row of Ḡ."""
    B = ptr.shape[0] - 1
    M1 = dL.shape[1]
    c = X.shape[1]
    for b in numba.prange(B):
        s = scale[b]
        dLt = np.empty((c, M1))  # c x M1
        for m in range(M1):
            for k in range(c):
                dLt[k, m] = dL[b, m, k] * s
        for j in range(ptr[b], ptr[b + 1]):
            dGj = dG[j]  # M1
            x0 = X[j, 0]
            for m in range(M1):
                dGj[m] = x0 * dLt[0, m]
            for k in range(1, c):
                x = X[j, k]
                dLtk = dLt[k]
                for m in range(M1):
                    dGj[m] += x * dLtk[m]


def cloud_sum_backward_ref(dL, X, ptr, scale, dG):
    """NumPy twin of :func:`cloud_sum_backward`."""
    for b in range(ptr.shape[0] - 1):
        rows = slice(ptr[b], ptr[b + 1])
        dG[rows] = X[rows] @ (scale[b] * dL[b]).T  # n_b x M1


@serial_kernel
def dense_backward_sums(dy, dyres, h, idt, shortcut, act, dz, dxres, gb, gidt):
    """A dense layer's backward (:func:`symref.reference.nn.layer_backward`)
    for an upstream gradient given in two parts, ``ȳ = dy + dyres`` (P x nout; ``dyres``
    of shape (0, 0) means none: it is the shortcut gradient of the layer above, added
    here instead of in a separate pass):

    ``dz`` (P x nout) <- ȳ ⊙ idt ⊙ φ'(z) with φ' = 1 - h² (``act = 1``), 1 (``act = 0``)
    or :func:`symref.fast.kernels.activations.act_deriv` of h (``act >= 2``);
    ``dxres`` (P x nin) <- sc'(ȳ) (untouched when ``shortcut == 0``);
    ``gb`` (nout) += Σ_rows dz;  ``gidt`` (nout) += Σ_rows ȳ ⊙ h.  ``dz`` and ``dxres`` are
    :func:`symref.fast.kernels.dense.grad_rows` (the layer backward of the se_e2_a path), the
    sums two more passes over the rows.

    Serial (it reduces over rows): run one block of rows per thread, as
    :mod:`symref.fast.vcnn` does."""
    grad_rows(dy, dyres, h, idt, shortcut, act, dz, dxres)  # dz, dxres
    nrow, nout = dy.shape
    for r in range(nrow):
        for k in range(nout):
            gb[k] += dz[r, k]
    has_res = dyres.shape[0] > 0
    # gidt: branches outside the row loops (inside them LLVM did not vectorise the rows)
    if act > 1:  # h holds z for act >= KEEP_Z (act_kept gives phi(z) then)
        for r in range(nrow):
            for k in range(nout):
                d = dy[r, k] + dyres[r, k] if has_res else dy[r, k]
                gidt[k] += d * act_kept(h[r, k], act)
    elif has_res:
        for r in range(nrow):
            for k in range(nout):
                gidt[k] += (dy[r, k] + dyres[r, k]) * h[r, k]
    else:
        for r in range(nrow):
            for k in range(nout):
                gidt[k] += dy[r, k] * h[r, k]


def dense_backward_sums_ref(dy, dyres, h, idt, shortcut, act, dz, dxres, gb, gidt):
    """NumPy twin of :func:`dense_backward_sums`."""
    d = dy + dyres if dyres.shape[0] > 0 else dy
    gidt += (d * (act_kept_ref(h, act) if act > 1 else h)).sum(axis=0)
    dz[...] = d * idt * (1.0 - h * h) if act == 1 else \
        (d * idt * act_deriv_ref(h, act) if act > 1 else d * idt)
    gb += dz.sum(axis=0)
    if shortcut == 1:
        dxres[...] = d
    elif shortcut == 2:
        n = dxres.shape[1]
        dxres[...] = d[:, :n] + d[:, n:]


@kernel
def gram(L, M2, D):
    """``D`` (B x M1 x M2) <- ``D_b = L_b L_{b,<}ᵀ`` (:func:`symref.reference.core.gram_forward`);
    ``L`` (B x M1 x c)."""
    B, M1, c = L.shape
    for b in numba.prange(B):
        Lb = L[b]
        for a in range(M1):
            for e in range(M2):
                acc = 0.0
                for k in range(c):
                    acc += Lb[a, k] * Lb[e, k]
                D[b, a, e] = acc


def gram_ref(L, M2, D):
    """NumPy twin of :func:`gram`."""
    D[...] = gram_forward(L, M2)[0]


@kernel
def gram_backward(dD, L, M2, dL):
    """``dL`` (B x M1 x c) <- ``D̄_b L_{b,<} + [D̄_bᵀ L_b]_{rows < M2}``
    (:func:`symref.reference.core.gram_backward`); ``dD`` (B x M1 x M2)."""
    B, M1, c = L.shape
    for b in numba.prange(B):
        Lb, dDb, dLb = L[b], dD[b], dL[b]
        for a in range(M1):
            for k in range(c):
                acc = 0.0
                for e in range(M2):
                    acc += dDb[a, e] * Lb[e, k]
                dLb[a, k] = acc
        for e in range(M2):
            for k in range(c):
                acc = 0.0
                for a in range(M1):
                    acc += dDb[a, e] * Lb[a, k]
                dLb[e, k] += acc


def gram_backward_ref(dD, L, M2, dL):
    """NumPy twin of :func:`gram_backward`."""
    dL[...] = ref_gram_backward(dD, (L, M2))[0]
