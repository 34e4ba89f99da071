r"""numba kernels of the se_e2_a pipeline on compact pair lists, with NumPy twins.

Layout ("segment"): a run of centre atoms ``a = 0 .. na-1`` (already sorted by
type inside symref's fast path) and their *real* neighbours of one type
``t_j``, stored contiguously: pairs of atom ``a`` are ``ptr[a]:ptr[a+1]``.
Padded slots are not stored: their rows are the constant
:math:`-\mathrm{davg}/\mathrm{dstd}` and their contribution to ``T`` is a
constant per (centre type, neighbour type), added once per atom by the caller.

Axis names: ``na`` atoms of the segment, ``P`` pairs, ``M1`` embedding width,
``M2`` axis_neuron, ``nt`` types.  The formulas are those of
:mod:`symref.reference.env` and :mod:`symref.reference.descriptor.se_e2_a` (see their docstrings):

* :func:`env_embed_forward`: :math:`R_p = (w(r)(1/q, \mathbf r/q^2) - \mathrm{davg}_{t_a})/\mathrm{dstd}_{t_a}`
  and the first embedding layer on ``s_p = R_p0`` (input width 1: no matrix product);
* :func:`embed_T_forward`: last embedding layer fused with the sum
  :math:`T_a \mathrel{+}= \sum_p G_p \otimes R_p`;
* :func:`descriptor_forward` / :func:`descriptor_backward`: ``D = T T<ᵀ``;
* :func:`embed_T_backward`: :math:`\bar G_p = \bar T_a R_p`, :math:`\bar R_p = \bar T_a^\top G_p`
  and the last layer's activation backward;
* :func:`env_embed_backward`: the first layer's backward, then
  :math:`\bar{\mathbf r}_p` from :math:`\bar R_p`;
* :func:`forces_virial_gather`: forces and per-atom virials by *gathering*
  (each atom sums the pairs it takes part in: no scatter, no race, and the
  same result for any number of threads).

Every kernel has a NumPy twin ``*_ref`` with the same signature, tested against
it in ``tests/test_kernels_se_e2_a.py``; fastmath is off everywhere.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.activations import (KEEP_Z, act_deriv, act_deriv_ref, act_kept_ref,
                                             act_value_ref)
from symref.fast.kernels.dense import (act_rows, dense_act_backward_ref, dense_act_forward_ref,
                                       grad_rows, out_rows)



def pair_atoms(ptr):
    """Centre atom of every pair: P ints (NumPy helper)."""
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


# ------------------------------------------------------------------ environment
@numba.njit(cache=True, inline="always", error_model="numpy")
def _switch(r, rcut_smth, rcut):
    span = rcut - rcut_smth
    u = (r - rcut_smth) / span
    u = 0.0 if u < 0.0 else (1.0 if u > 1.0 else u)
    u2 = u * u
    w = u2 * u * (-6.0 * u2 + 15.0 * u - 10.0) + 1.0
    dw = -30.0 * u2 * (u - 1.0) * (u - 1.0) / span
    return w, dw


@numba.njit(cache=True, inline="always", error_model="numpy")
def _pair_geometry(rij, p, rcut_smth, rcut, protection):
    """x, y, z, r, switch w, dw/dr and 1/(r + protection) of pair p."""
    x, y, z = rij[p, 0], rij[p, 1], rij[p, 2]
    r = math.sqrt(x * x + y * y + z * z)
    w, dw = _switch(r, rcut_smth, rcut)
    return x, y, z, r, w, dw, 1.0 / (r + protection)


@numba.njit(cache=True, inline="always", error_model="numpy")
def env_row(rij, p, t, davg, dstd, rcut_smth, rcut, protection, R):
    r"""``R[p]`` (4) <- the normalised row of pair p for centre type t:
    :math:`(w(r)(1/q, \mathbf r/q^2) - \mathrm{davg}_t)/\mathrm{dstd}_t`, q = r + protection."""
    x, yy, z, r, sw, dsw, iq = _pair_geometry(rij, p, rcut_smth, rcut, protection)
    w1 = sw * iq
    w2 = w1 * iq
    R[p, 0] = (w1 - davg[t, 0]) / dstd[t, 0]
    R[p, 1] = (w2 * x - davg[t, 1]) / dstd[t, 1]
    R[p, 2] = (w2 * yy - davg[t, 2]) / dstd[t, 2]
    R[p, 3] = (w2 * z - davg[t, 3]) / dstd[t, 3]


@numba.njit(cache=True, inline="always", error_model="numpy")
def env_row_backward(rij, p, t, dstd, rcut_smth, rcut, protection, dR0, dR1, dR2, dR3, g):
    """``g[p]`` (3) <- dL/drij of pair p from dL/dR[p] = (dR0, dR1, dR2, dR3)
    (:func:`symref.reference.env.env_mat_backward`'s formula)."""
    x, yy, z, r, sw, dsw, iq = _pair_geometry(rij, p, rcut_smth, rcut, protection)
    iq2 = iq * iq
    d0 = dR0 / dstd[t, 0]
    dx = dR1 / dstd[t, 1]
    dy_ = dR2 / dstd[t, 2]
    dz_ = dR3 / dstd[t, 3]
    radial = (d0 * (dsw * iq - sw * iq2)
              + (dx * x + dy_ * yy + dz_ * z) * (dsw * iq2 - 2.0 * sw * iq2 * iq)) / r
    wq2 = sw * iq2
    g[p, 0] = radial * x + wq2 * dx
    g[p, 1] = radial * yy + wq2 * dy_
    g[p, 2] = radial * z + wq2 * dz_


def env_rows_ref(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection, R):
    """NumPy twin of :func:`env_row` over a segment: ``R`` (P x 4) <-
    :func:`symref.reference.env.env_mat_forward` of every pair."""
    from symref.reference.env import env_mat_forward

    t = types[pair_atoms(ptr)]  # P
    mask = np.ones((1, len(rij)), dtype=bool)
    R[...] = env_mat_forward(rij[None], mask, davg[t][None], dstd[t][None], rcut, rcut_smth,
                             protection)[0][0]


def env_rows_backward_ref(rij, ptr, types, dstd, rcut, rcut_smth, protection, dR, g):
    """NumPy twin of :func:`env_row_backward` over a segment: ``g`` (P x 3) <- dL/drij
    for ``dR`` (P x 4) (:func:`symref.reference.env.env_mat_backward`)."""
    from symref.reference.env import env_mat_backward, env_mat_forward

    P = len(rij)
    t = types[pair_atoms(ptr)]  # P
    mask = np.ones((1, P), dtype=bool)
    zeros = np.zeros((1, P, 4))
    _, cache = env_mat_forward(rij[None], mask, zeros, dstd[t][None], rcut, rcut_smth, protection)
    g[...] = env_mat_backward(dR[None], cache)[0][0]


@kernel
def env_embed_forward(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection,
                      w, b, idt, shortcut, act, R, h, y):
    """Environment rows fused with the first embedding layer (input width 1).

    ``R`` (P x 4) <- normalised rows; with ``s = R[:, 0]``, ``h`` (P x n1) <-
    act(s w + b) and ``y`` (P x n1) <- h * idt + sc(s).  ``rij``: P x 3 (Å);
    ``ptr``: na+1; ``types``: na centre types; ``davg``, ``dstd``: nt x 4, the
    statistics of this neighbour type for each centre type; ``w``: 1 x n1.
    """
    na = ptr.shape[0] - 1
    n1 = w.shape[1]
    for a in numba.prange(na):
        t = types[a]
        for p in range(ptr[a], ptr[a + 1]):
            env_row(rij, p, t, davg, dstd, rcut_smth, rcut, protection, R)
            s = R[p, 0]
            for k in range(n1):
                h[p, k] = s * w[0, k]
        p0, p1 = ptr[a], ptr[a + 1]
        act_rows(h[p0:p1], b, act)
        out_rows(h[p0:p1], R[p0:p1, :1], idt, shortcut, y[p0:p1], act)


def env_embed_forward_ref(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection,
                          w, b, idt, shortcut, act, R, h, y):
    """NumPy twin of :func:`env_embed_forward` (:func:`symref.reference.env.env_mat_forward`, then a layer)."""
    env_rows_ref(rij, ptr, types, davg, dstd, rcut, rcut_smth, protection, R)
    s = R[:, :1].copy()  # P x 1
    h[...] = s @ w
    dense_act_forward_ref(h, b, idt, s, shortcut, act, y)


@kernel
def env_embed_backward(rij, ptr, types, dstd, rcut, rcut_smth, protection,
                       w, idt, shortcut, act, h, dy, dyres, dR, g):
    """Backward of :func:`env_embed_forward`: ``g`` (P x 3) = dL/drij.

    Upstream: ``dy + dyres`` (P x n1; ``dyres`` of shape (0, 0) means none)
    for the first layer's output and ``dR`` (P x 4) for the rows; the layer
    gives ds = sum_k dz_k w_k + sc'(dy), added to dR[:, 0].
    """
    na = ptr.shape[0] - 1
    n1 = w.shape[1]
    has_res = dyres.shape[0] > 0
    for a in numba.prange(na):
        t = types[a]
        for p in range(ptr[a], ptr[a + 1]):
            ds = 0.0
            for k in range(n1):
                d = dy[p, k] + dyres[p, k] if has_res else dy[p, k]
                dz = d * idt[k]
                if act == 1:
                    dz *= 1.0 - h[p, k] * h[p, k]
                elif act > 1:
                    dz *= act_deriv(h[p, k], act)
                ds += dz * w[0, k]
                if shortcut != 0:
                    ds += d
            env_row_backward(rij, p, t, dstd, rcut_smth, rcut, protection,
                             dR[p, 0] + ds, dR[p, 1], dR[p, 2], dR[p, 3], g)


def env_embed_backward_ref(rij, ptr, types, dstd, rcut, rcut_smth, protection,
                           w, idt, shortcut, act, h, dy, dyres, dR, g):
    """NumPy twin of :func:`env_embed_backward` (a layer backward, then
    :func:`symref.reference.env.env_mat_backward`)."""
    P, n1 = h.shape
    dz, dsres = np.empty((P, n1)), np.zeros((P, 1))
    dense_act_backward_ref(dy, dyres, h, idt, shortcut, act, dz, dsres)
    dRt = dR.copy()
    dRt[:, 0] += (dz @ w.T)[:, 0] + dsres[:, 0]
    env_rows_backward_ref(rij, ptr, types, dstd, rcut, rcut_smth, protection, dRt, g)


# ------------------------------------------------------------- last layer + T
@kernel
def embed_T_forward(z, b, idt, x, shortcut, act, R, ptr, T):
    """Last embedding layer fused with T.

    ``z`` (P x M1, = x W) <- h = act(z + b); ``G = h*idt + sc(x)`` is not
    stored; ``T`` (na x 4 x M1, transposed so the k loop is contiguous)
    += sum over the atom's pairs of ``R_c G_k``.
    """
    na = ptr.shape[0] - 1
    M1 = z.shape[1]
    for a in numba.prange(na):
        Ta = T[a]  # 4 x M1
        p0, p1 = ptr[a], ptr[a + 1]
        G = np.empty((p1 - p0, M1), dtype=z.dtype)  # the working dtype (float32 stays float32)
        act_rows(z[p0:p1], b, act)
        out_rows(z[p0:p1], x[p0:p1], idt, shortcut, G, act)
        for p in range(p0, p1):
            Gp = G[p - p0]  # M1
            r0, r1, r2, r3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
            for k in range(M1):
                g = Gp[k]
                Ta[0, k] += g * r0
                Ta[1, k] += g * r1
                Ta[2, k] += g * r2
                Ta[3, k] += g * r3


def _sc_ref(x, shortcut):
    if shortcut == 1:
        return x
    if shortcut == 2:
        return np.concatenate([x, x], axis=1)
    return 0.0


def embed_T_forward_ref(z, b, idt, x, shortcut, act, R, ptr, T):
    """NumPy twin of :func:`embed_T_forward`."""
    z += b
    if act == 1:
        np.tanh(z, out=z)
    elif act > 1 and act < KEEP_Z:
        z[...] = act_value_ref(z, act)
    G = act_kept_ref(z, act) * idt + _sc_ref(x, shortcut)  # P x M1 (z kept for act >= KEEP_Z)
    np.add.at(T, pair_atoms(ptr), R[:, :, None] * G[:, None, :])


@kernel
def embed_T_backward(h, x, idt, shortcut, act, R, ptr, dT, dz, dxres, dR):
    """Backward of :func:`embed_T_forward` for upstream ``dT`` (na x M1 x 4).

    ``dR`` (P x 4) <- Gᵀ dT_a; ``dz`` (P x M1, may be ``h``) <- (dT_a R) * idt * act'(h);
    ``dxres`` (P x nin) <- shortcut part of dG (untouched when shortcut = 0).

    Per atom: G of its pairs by :func:`~symref.fast.kernels.dense.out_rows`, ``dR`` as one
    small BLAS product G dT_a (the M1-term sums; as scalar loops they were sequential
    reductions, no faster in float32 than in float64), dG from a transposed copy of dT_a,
    then ``dz``/``dxres`` by :func:`~symref.fast.kernels.dense.grad_rows`.
    """
    na = ptr.shape[0] - 1
    M1 = h.shape[1]
    none = np.empty((0, 0), dtype=h.dtype)
    for a in numba.prange(na):
        p0, p1 = ptr[a], ptr[a + 1]
        if p1 == p0:
            continue
        dTa = dT[a]  # M1 x 4
        dTt = np.ascontiguousarray(dTa.T)  # 4 x M1: contiguous rows for the dG loop
        G = np.empty((p1 - p0, M1), dtype=h.dtype)  # G of the atom's pairs
        dG = np.empty((p1 - p0, M1), dtype=h.dtype)
        out_rows(h[p0:p1], x[p0:p1], idt, shortcut, G, act)
        np.dot(G, dTa, dR[p0:p1])  # the M1 sums as one small BLAS product, working dtype
        for p in range(p0, p1):
            dGp = dG[p - p0]  # M1
            r0, r1, r2, r3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
            for k in range(M1):
                dGp[k] = dTt[0, k] * r0 + dTt[1, k] * r1 + dTt[2, k] * r2 + dTt[3, k] * r3
        # dz (may be h: read before written) and the shortcut part, as a layer's backward
        grad_rows(dG, none, h[p0:p1], idt, shortcut, act, dz[p0:p1],
                  dxres[p0:p1] if shortcut != 0 else dxres)


def embed_T_backward_ref(h, x, idt, shortcut, act, R, ptr, dT, dz, dxres, dR):
    """NumPy twin of :func:`embed_T_backward`."""
    pa = pair_atoms(ptr)
    G = act_kept_ref(h, act) * idt + _sc_ref(x, shortcut)  # P x M1
    dTp = dT[pa]  # P x M1 x 4
    dG = np.einsum("pkc,pc->pk", dTp, R)  # P x M1
    dR[...] = np.einsum("pk,pkc->pc", G, dTp)
    if shortcut == 1:
        dxres[...] = dG
    elif shortcut == 2:
        n = x.shape[1]
        dxres[...] = dG[:, :n] + dG[:, n:]
    d = dG * idt
    if act == 1:
        d = d * (1.0 - h * h)
    elif act > 1:
        d = d * act_deriv_ref(h, act)
    dz[...] = d


# ------------------------------------------------------------------- D = T T<ᵀ
@kernel
def descriptor_forward(T, M2, D):
    """``D`` (na x M1*M2) with D[a, k*M2 + m] = sum_c T[a,c,k] T[a,c,m]; ``T``: na x 4 x M1."""
    na, _, M1 = T.shape
    for a in numba.prange(na):
        Ta = T[a]
        Da = D[a]
        for k in range(M1):
            t0, t1, t2, t3 = Ta[0, k], Ta[1, k], Ta[2, k], Ta[3, k]
            for m in range(M2):
                Da[k * M2 + m] = t0 * Ta[0, m] + t1 * Ta[1, m] + t2 * Ta[2, m] + t3 * Ta[3, m]


def descriptor_forward_ref(T, M2, D):
    """NumPy twin of :func:`descriptor_forward`."""
    D[...] = np.einsum("ack,acm->akm", T, T[:, :, :M2]).reshape(D.shape)


@kernel
def descriptor_backward(dD, T, M2, scale, dT):
    """``dT`` (na x M1 x 4) = scale * dL/dT for ``dD`` (na x M1*M2); ``T``: na x 4 x M1.

    dT[k, c] = sum_m dD[k, m] T[c, m] + [k < M2] sum_k' dD[k', k] T[c, k'].

    Both sums run in that order (m, then k' = 0..M1-1), vectorised over the free index
    (k, then the M2 values of k < M2) through an M2 x M1 transposed copy of dD[a] and a
    4 x M1 buffer: no sum is reordered.
    """
    na, _, M1 = T.shape
    for a in numba.prange(na):
        Ta = T[a]
        dTa = dT[a]
        Da = dD[a]
        Dt = np.empty((M2, M1))  # Dt[m, k] = dD[a, k*M2 + m]
        for k in range(M1):
            for m in range(M2):
                Dt[m, k] = Da[k * M2 + m]
        S = np.zeros((4, M1))  # S[c, k]: dT[a, k, c] / scale
        S0, S1, S2, S3 = S[0], S[1], S[2], S[3]
        for m in range(M2):
            t0, t1, t2, t3 = Ta[0, m], Ta[1, m], Ta[2, m], Ta[3, m]
            Dm = Dt[m]
            for k in range(M1):
                d = Dm[k]
                S0[k] += d * t0
                S1[k] += d * t1
                S2[k] += d * t2
                S3[k] += d * t3
        for k in range(M1):
            t0, t1, t2, t3 = Ta[0, k], Ta[1, k], Ta[2, k], Ta[3, k]
            for m in range(M2):
                d = Da[k * M2 + m]
                S0[m] += d * t0
                S1[m] += d * t1
                S2[m] += d * t2
                S3[m] += d * t3
        for k in range(M1):
            for c in range(4):
                dTa[k, c] = S[c, k] * scale


def descriptor_backward_ref(dD, T, M2, scale, dT):
    """NumPy twin of :func:`descriptor_backward`."""
    na, _, M1 = T.shape
    d = dD.reshape(na, M1, M2)
    out = np.einsum("akm,acm->akc", d, T[:, :, :M2])
    out[:, :M2] += np.einsum("akm,ack->amc", d, T)
    dT[...] = out * scale


# ------------------------------------------------------------ forces and virial
@kernel
def forces_virial_gather(g, rij, cptr, rev_ptr, rev_idx, F, W):
    """Forces ``F`` (n x 3) and per-atom virials ``W`` (n x 3 x 3) by gathering.

    ``g``, ``rij``: P x 3 over all pairs; pairs with centre ``a`` are the ranges
    ``cptr[t, a]:cptr[t, a+1]`` for every neighbour type t (``cptr``: nt x n+1);
    pairs with neighbour ``a`` are ``rev_idx[rev_ptr[a]:rev_ptr[a+1]]``.
    F_a = sum_{centre a} g - sum_{neighbour a} g;  W_a = -sum_{neighbour a} g ⊗ r.
    """
    n = F.shape[0]
    nt = cptr.shape[0]
    for a in numba.prange(n):
        f0 = 0.0
        f1 = 0.0
        f2 = 0.0
        for t in range(nt):
            for p in range(cptr[t, a], cptr[t, a + 1]):
                f0 += g[p, 0]
                f1 += g[p, 1]
                f2 += g[p, 2]
        w = np.zeros((3, 3))
        for q in range(rev_ptr[a], rev_ptr[a + 1]):
            p = rev_idx[q]
            f0 -= g[p, 0]
            f1 -= g[p, 1]
            f2 -= g[p, 2]
            for u in range(3):
                for v in range(3):
                    w[u, v] -= g[p, u] * rij[p, v]
        F[a, 0] = f0
        F[a, 1] = f1
        F[a, 2] = f2
        for u in range(3):
            for v in range(3):
                W[a, u, v] = w[u, v]


def forces_virial_gather_ref(g, rij, cptr, rev_ptr, rev_idx, F, W):
    """NumPy twin of :func:`forces_virial_gather` (scatter with ``np.add.at``)."""
    n = F.shape[0]
    F[...] = 0.0
    W[...] = 0.0
    for t in range(cptr.shape[0]):
        pa = np.repeat(np.arange(n), np.diff(cptr[t]))  # centre of pairs cptr[t, 0]:cptr[t, n]
        np.add.at(F, pa, g[cptr[t, 0]:cptr[t, n]])
    nb = np.repeat(np.arange(n), np.diff(rev_ptr))  # neighbour atom of rev_idx entries
    np.add.at(F, nb, -g[rev_idx])
    np.add.at(W, nb, -g[rev_idx][:, :, None] * rij[rev_idx][:, None, :])


@numba.njit(cache=True, error_model="numpy")
def centre_virial(g, rij, cptr, weight, W):
    """Virial of a weighted set of centres: ``W = -sum_a weight[a] sum_{p: centre a} g_p ⊗ r_p``.

    ``g``, ``rij``, ``cptr`` as in :func:`forces_virial_gather` (``cptr``: nt x n+1);
    ``weight``: n, internal atom order; ``W``: 3 x 3, overwritten.  With every weight
    1 this is the total virial; with weight 1 on a subset of centres it is the virial
    of their atomic energies alone (``g`` of a pair belongs to its centre's energy
    only), which :mod:`symref.lammps` needs for the atoms a rank owns.  Serial: the
    sum is in a fixed order (O(P), a small share of an evaluation).
    """
    n = weight.shape[0]
    for u in range(3):
        for v in range(3):
            W[u, v] = 0.0
    for t in range(cptr.shape[0]):
        for a in range(n):
            w = weight[a]
            if w == 0.0:
                continue
            for p in range(cptr[t, a], cptr[t, a + 1]):
                for u in range(3):
                    for v in range(3):
                        W[u, v] -= w * g[p, u] * rij[p, v]


def centre_virial_ref(g, rij, cptr, weight, W):
    """NumPy twin of :func:`centre_virial`."""
    W[...] = 0.0
    n = weight.shape[0]
    for t in range(cptr.shape[0]):
        pa = np.repeat(np.arange(n), np.diff(cptr[t]))  # centre of pairs cptr[t, 0]:cptr[t, n]
        sl = slice(cptr[t, 0], cptr[t, n])
        W -= np.einsum("p,pu,pv->uv", weight[pa], g[sl], rij[sl])


@numba.njit(cache=True, error_model="numpy")
def fold_neighbours(j_int, cptr, fold, nown):
    """Redirect the pairs of the first ``nown`` centres (internal order) to ``fold[j]``.

    For a cluster of own atoms plus periodic images of them: a pair (own centre
    c, image j) then counts towards the force on the atom j is an image of, as
    in the periodic system.  ``j_int``: P, internal neighbour index, changed in
    place; ``cptr``: nt x n+1; ``fold``: n, internal index each atom folds onto
    (itself when it is no image).
    """
    for t in range(cptr.shape[0]):
        for p in range(cptr[t, 0], cptr[t, nown]):
            j_int[p] = fold[j_int[p]]


def fold_neighbours_ref(j_int, cptr, fold, nown):
    """NumPy twin of :func:`fold_neighbours`."""
    for t in range(cptr.shape[0]):
        sl = slice(cptr[t, 0], cptr[t, nown])
        j_int[sl] = fold[j_int[sl]]


# ------------------------------------------------------------------ pair regrouping
@kernel
def group_pairs(ptr, j, rij, atype, inv_perm, rule, ntypes, cptr, j_out, rij_out):
    """Regroup a pair list (centres in original order, slot order) by neighbour type.

    Internal atom ``a = inv_perm[i]``.  ``rule[ti, tj]``: 1 keep the pair,
    0 remove it and count its slot as padding (model ``pair_exclude_types``),
    2 remove it but count it as a real neighbour (descriptor ``exclude_types``:
    its row is zero).  ``cptr`` (nt x n+1): global offsets of the output, pairs
    of neighbour type t and internal centre a go to ``cptr[t, a]:cptr[t, a+1]``
    (from the counts of :func:`count_pairs`).  Fills ``j_out`` (internal
    neighbour index) and ``rij_out``; the slot order inside each range is kept.
    """
    n = ptr.shape[0] - 1
    for i in numba.prange(n):
        a = inv_perm[i]
        ti = atype[i]
        cur = np.zeros(ntypes, dtype=np.int64)
        for p in range(ptr[i], ptr[i + 1]):
            tj = atype[j[p]]
            if rule[ti, tj] == 1:
                q = cptr[tj, a] + cur[tj]
                cur[tj] += 1
                j_out[q] = inv_perm[j[p]]
                rij_out[q, 0] = rij[p, 0]
                rij_out[q, 1] = rij[p, 1]
                rij_out[q, 2] = rij[p, 2]


@kernel
def count_pairs(ptr, j, atype, inv_perm, rule, ntypes, nkeep, nreal):
    """Per internal atom and neighbour type: kept pairs ``nkeep`` and real neighbours ``nreal``."""
    n = ptr.shape[0] - 1
    for i in numba.prange(n):
        a = inv_perm[i]
        ti = atype[i]
        for t in range(ntypes):
            nkeep[a, t] = 0
            nreal[a, t] = 0
        for p in range(ptr[i], ptr[i + 1]):
            tj = atype[j[p]]
            rl = rule[ti, tj]
            if rl == 1:
                nkeep[a, tj] += 1
            if rl != 0:
                nreal[a, tj] += 1


@numba.njit(cache=True)
def reverse_index(j_out, n):
    """CSR of pairs by neighbour: ``rev_ptr`` (n+1), ``rev_idx`` (P), ascending pair ids."""
    P = j_out.shape[0]
    rev_ptr = np.zeros(n + 1, dtype=np.int64)
    for p in range(P):
        rev_ptr[j_out[p] + 1] += 1
    for a in range(n):
        rev_ptr[a + 1] += rev_ptr[a]
    cur = rev_ptr[:-1].copy()
    rev_idx = np.empty(P, dtype=np.int64)
    for p in range(P):
        q = cur[j_out[p]]
        rev_idx[q] = p
        cur[j_out[p]] = q + 1
    return rev_ptr, rev_idx


def count_pairs_ref(ptr, j, atype, inv_perm, rule, ntypes, nkeep, nreal):
    """NumPy twin of :func:`count_pairs`."""
    c = pair_atoms(ptr)  # P
    r = rule[atype[c], atype[j]]  # P
    nkeep[...] = 0
    nreal[...] = 0
    np.add.at(nkeep, (inv_perm[c[r == 1]], atype[j[r == 1]]), 1)
    np.add.at(nreal, (inv_perm[c[r != 0]], atype[j[r != 0]]), 1)


def group_pairs_ref(ptr, j, rij, atype, inv_perm, rule, ntypes, cptr, j_out, rij_out):
    """NumPy twin of :func:`group_pairs` (a stable sort by neighbour type, then internal centre)."""
    c = pair_atoms(ptr)
    keep = rule[atype[c], atype[j]] == 1
    c, jj, rr = c[keep], j[keep], rij[keep]
    order = np.lexsort((np.arange(len(c)), inv_perm[c], atype[jj]))
    j_out[...] = inv_perm[jj[order]]
    rij_out[...] = rr[order]


def reverse_index_ref(j_out, n):
    """NumPy twin of :func:`reverse_index`."""
    rev_idx = np.argsort(j_out, kind="stable")
    rev_ptr = np.concatenate([[0], np.cumsum(np.bincount(j_out, minlength=n))])
    return rev_ptr, rev_idx
