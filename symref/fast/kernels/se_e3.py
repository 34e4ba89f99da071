r"""numba kernels of the se_e3 (and se_e2_r) descriptors on the padded rows, with NumPy twins.

The formulas are :mod:`symref.reference.descriptor.se_e3`'s (see its docstring): for
every centre, every neighbour-type pair p <= q and every ordered slot pair (a, b),
:math:`\theta_{ab} = X_a\cdot X_b` and :math:`D \mathrel{+}= c_{pq}\,\theta_{ab}\,
\mathcal N_{pq}(\theta_{ab})`.  The kernels run one centre per ``prange`` iteration and
evaluate the embedding net on the scalars of one row a at a time (the live b of a
group, at most sel_q of them: ``nlayers x width x sel_q`` activations per thread, with
the inner loops over b so that LLVM vectorises them), so nothing of size
sel_p x sel_q x M is ever formed; the backward kernel recomputes the net.  Work skipped
exactly: slots whose row is zero (padded slots under deepmd-kit's statistics, whose
direction columns are 0, and excluded pairs) enter only with :math:`\theta = 0`, so they
are left out; in a block p = q only a <= b is computed (:math:`\theta_{ab} = \theta_{ba}`),
the pairs a < b counted twice.

Packed nets (:func:`pack_nets`): every layer of every net padded to the widest layer,
``W`` (L x nnets x w x w), ``B``, ``IDT`` (L x nnets x w; an absent bias is 0 and an
absent ``idt`` is 1, which leave the numbers unchanged), ``nin``/``nout``/``shortcut``
(L ints, the same for every net: deepmd-kit's nets of one descriptor share widths) and
``act`` (L activation codes of :data:`~symref.fast.kernels.activations.ACT_CODES`: tanh by
the vectorisable :func:`~symref.fast.kernels.activations.tanh_scalar`, the others by
``act_value``/``act_deriv``, scalar libm calls).
Group pairs (:func:`pair_table`): rows ``(a0, a1, b0, b1, net, c)`` as two arrays.

se_e2_r (:func:`se_e2_r_forward` / :func:`se_e2_r_backward`, the same nets on scalars):
the net of each neighbour type on all that type's slots of a centre at once (padded and
excluded slots included: their G enters deepmd-kit's mean), ``D = sum G / (5 nnei)``.

Axis names: ``nloc`` centres, ``nnei`` slots, ``M`` the embedding width.  Each kernel
``k`` has a twin ``k_ref`` with the same signature built on the reference
(tested in ``tests/test_kernels_se_e3.py``); fastmath off.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.activations import (_CODE_NAMES, ACT_TANH, KEEP_Z, act_code, act_deriv,
                                             act_value, tanh_scalar)
from symref.reference.nn import Layer, mlp_forward


def pack_nets(nets):
    """``(W, B, IDT, nin, nout, shortcut, act)`` of a list of nets with equal widths
    (module docstring); unused (None) entries are packed as zeros."""
    ref = next(n for n in nets if n is not None)
    L, width = len(ref), max(max(ly.nin, ly.nout) for ly in ref)
    W = np.zeros((L, len(nets), width, width))
    B = np.zeros((L, len(nets), width))
    IDT = np.ones((L, len(nets), width))
    for k, net in enumerate(nets):
        for li, ly in enumerate(net or []):
            W[li, k, :ly.nin, :ly.nout] = ly.w
            if ly.b is not None:
                B[li, k, :ly.nout] = ly.b
            if ly.idt is not None:
                IDT[li, k, :ly.nout] = ly.idt
    meta = [np.array(v, dtype=np.int64) for v in (
        [ly.nin for ly in ref], [ly.nout for ly in ref], [ly.shortcut for ly in ref],
        [act_code(ly.activation) for ly in ref])]
    return (W, B, IDT, *meta)


def pair_table(sel):
    """``(ranges, c)``: int rows ``(a0, a1, b0, b1, net)`` and ``c = 1/(sel_p sel_q)`` for
    every neighbour-type pair p <= q with slots (the reference's ``_pairs``)."""
    off = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)
    nt = len(sel)
    rows = [(off[p], off[p + 1], off[q], off[q + 1], p + q * nt)
            for p in range(nt) for q in range(p, nt) if sel[p] and sel[q]]
    c = np.array([1.0 / (sel[p] * sel[q]) for p in range(nt) for q in range(p, nt)
                  if sel[p] and sel[q]])
    return np.array(rows, dtype=np.int64).reshape(-1, 5), c


@numba.njit(cache=True, error_model="numpy")
def _net_rows(n, k, W, B, IDT, nin, nout, sc, act, Y, H):
    """The net k on the n scalars ``Y[0, 0, :n]``: ``Y[l, :, :n]`` the input of layer l
    (``Y[L]`` the output), ``H[l, :, :n]`` its activation derivative phi'(z) (1 - tanh²,
    1 for a linear layer).  The inner loops run over the n scalars (contiguous), so LLVM vectorises them
    (``tanh_scalar`` is inlined arithmetic); each scalar sees the same operations in the
    same order as a scalar evaluation."""
    for li in range(nin.shape[0]):
        for o in range(nout[li]):
            z = Y[li + 1, o]
            bo = B[li, k, o]
            for j in range(n):
                z[j] = bo
            for q in range(nin[li]):
                w = W[li, k, q, o]
                x = Y[li, q]
                for j in range(n):
                    z[j] += x[j] * w
            io = IDT[li, k, o]
            h_out = H[li, o]
            a = act[li]
            if a == ACT_TANH:
                for j in range(n):
                    h = tanh_scalar(z[j])  # within 3 ulp of np.tanh
                    h_out[j] = 1.0 - h * h
                    z[j] = h * io
            elif a > ACT_TANH:  # relu, softplus, gelu, ...: act_deriv takes h (z from KEEP_Z on)
                for j in range(n):
                    h = act_value(z[j], a)
                    h_out[j] = act_deriv(z[j] if a >= KEEP_Z else h, a)
                    z[j] = h * io
            else:
                for j in range(n):
                    h_out[j] = 1.0
                    z[j] = z[j] * io
            if sc[li] == 1:
                x = Y[li, o]
                for j in range(n):
                    z[j] += x[j]
            elif sc[li] == 2:
                x = Y[li, o % nin[li]]
                for j in range(n):
                    z[j] += x[j]


@numba.njit(cache=True, error_model="numpy")
def _net_rows_backward(n, k, W, IDT, nin, nout, sc, H, dy, dx):
    """Backward of :func:`_net_rows` to its input: ``dy[:, :n]`` holds dL/d(output) on
    entry and dL/d(input) in ``dy[0, :n]`` on return (``dx``: workspace); the activation
    factors ``H`` are :func:`_net_rows`'s."""
    for li in range(nin.shape[0] - 1, -1, -1):
        for q in range(nin[li]):
            for j in range(n):
                dx[q, j] = 0.0
        for o in range(nout[li]):
            s_o = IDT[li, k, o]
            for q in range(nin[li]):
                w = W[li, k, q, o]
                for j in range(n):
                    dx[q, j] += w * (dy[o, j] * s_o * H[li, o, j])
            if sc[li] == 1:
                for j in range(n):
                    dx[o, j] += dy[o, j]
            elif sc[li] == 2:
                for j in range(n):
                    dx[o % nin[li], j] += dy[o, j]
        for q in range(nin[li]):
            for j in range(n):
                dy[q, j] = dx[q, j]


@numba.njit(cache=True, error_model="numpy")
def _gather(X, i, a, b_lo, b1, live, cg, twice, idx, th, f):
    """The live slots b of [b_lo, b1) (into ``idx``), theta_ab = X[i, a] . X[i, b] (into
    ``th``) and their weights c (2c where ``twice`` and a != b; into ``f``); returns n."""
    n = 0
    for b in range(b_lo, b1):
        if live[b]:
            idx[n] = b
            th[n] = X[i, a, 0] * X[i, b, 0] + X[i, a, 1] * X[i, b, 1] + X[i, a, 2] * X[i, b, 2]
            f[n] = cg * (2.0 if twice and a != b else 1.0)
            n += 1
    return n


@numba.njit(cache=True, error_model="numpy")
def _live_slots(X, i):
    """Slots of centre i whose row X[i, a] is not exactly zero (padded slots with
    deepmd-kit's statistics and excluded pairs are zero: every theta they enter is 0)."""
    live = np.empty(X.shape[1], dtype=np.bool_)
    for a in range(X.shape[1]):
        live[a] = X[i, a, 0] != 0.0 or X[i, a, 1] != 0.0 or X[i, a, 2] != 0.0
    return live


@kernel
def se_e3_forward(X, ranges, c, W, B, IDT, nin, nout, sc, act, D):
    """``D[i] = sum c theta N(theta)`` (nloc x M, zeroed here) from ``X`` (nloc x nnei x 3,
    the masked spatial columns)."""
    L = nin.shape[0]
    width = W.shape[2]
    M = D.shape[1]
    nb = X.shape[1]
    for i in numba.prange(X.shape[0]):
        Y = np.empty((L + 1, width, nb))
        H = np.empty((L, width, nb))
        idx = np.empty(nb, dtype=np.int64)
        f = np.empty(nb)
        live = _live_slots(X, i)
        for m in range(M):
            D[i, m] = 0.0
        for g in range(ranges.shape[0]):
            a0, a1, b0, b1, k = ranges[g, 0], ranges[g, 1], ranges[g, 2], ranges[g, 3], ranges[g, 4]
            for a in range(a0, a1):
                if not live[a]:
                    continue
                # p == q: only b >= a, the pairs a < b counted twice
                n = _gather(X, i, a, b0 if a0 != b0 else a, b1, live, c[g], a0 == b0, idx,
                            Y[0, 0], f)
                for j in range(n):
                    f[j] *= Y[0, 0, j]  # c theta
                _net_rows(n, k, W, B, IDT, nin, nout, sc, act, Y, H)
                for j in range(n):
                    for m in range(M):
                        D[i, m] += f[j] * Y[L, m, j]


@kernel
def se_e3_backward(X, ranges, c, W, B, IDT, nin, nout, sc, act, dD, dX):
    """``dX`` (nloc x nnei x 3, zeroed here) = dL/dX for ``dD`` = dL/dD (nloc x M); the net
    is recomputed for every scalar and back-propagated on it.  Rows of ``X`` that are
    exactly zero get ``dX = 0`` (their gradient is discarded by every caller: padded
    slots carry no derivative, excluded ones are masked)."""
    L = nin.shape[0]
    width = W.shape[2]
    M = dD.shape[1]
    nb = X.shape[1]
    for i in numba.prange(X.shape[0]):
        Y = np.empty((L + 1, width, nb))
        H = np.empty((L, width, nb))
        dy = np.empty((width, nb))
        dx = np.empty((width, nb))
        idx = np.empty(nb, dtype=np.int64)
        th = np.empty(nb)
        cg = np.empty(nb)
        direct = np.empty(nb)
        live = _live_slots(X, i)
        for a in range(X.shape[1]):
            for d in range(3):
                dX[i, a, d] = 0.0
        for g in range(ranges.shape[0]):
            a0, a1, b0, b1, k = ranges[g, 0], ranges[g, 1], ranges[g, 2], ranges[g, 3], ranges[g, 4]
            for a in range(a0, a1):
                if not live[a]:
                    continue
                n = _gather(X, i, a, b0 if a0 != b0 else a, b1, live, c[g], a0 == b0, idx,
                            th, cg)
                for j in range(n):
                    Y[0, 0, j] = th[j]
                _net_rows(n, k, W, B, IDT, nin, nout, sc, act, Y, H)
                for j in range(n):
                    direct[j] = 0.0
                for m in range(M):
                    for j in range(n):
                        direct[j] += dD[i, m] * Y[L, m, j]
                        dy[m, j] = cg[j] * th[j] * dD[i, m]
                _net_rows_backward(n, k, W, IDT, nin, nout, sc, H, dy, dx)
                for j in range(n):
                    dth = dy[0, j] + cg[j] * direct[j]
                    b = idx[j]
                    for d in range(3):
                        dX[i, a, d] += dth * X[i, b, d]
                        dX[i, b, d] += dth * X[i, a, d]


def _unpack(W, B, IDT, nin, nout, sc, act, k):
    return [Layer(W[li, k, :nin[li], :nout[li]].copy(), B[li, k, :nout[li]].copy(),
                  IDT[li, k, :nout[li]].copy(), _CODE_NAMES[int(act[li])],
                  bool(sc[li]))
            for li in range(len(nin))]


def se_e3_forward_ref(X, ranges, c, W, B, IDT, nin, nout, sc, act, D):
    """NumPy twin of :func:`se_e3_forward` (the reference's per-group sums)."""
    D[...] = 0.0
    for (a0, a1, b0, b1, k), cg in zip(ranges, c):
        th = np.einsum("iad,ibd->iab", X[:, a0:a1], X[:, b0:b1])  # nloc x n_p x n_q
        G, _ = mlp_forward(th[..., None], _unpack(W, B, IDT, nin, nout, sc, act, k))
        D += cg * np.einsum("iab,iabm->im", th, G)


def se_e3_backward_ref(X, ranges, c, W, B, IDT, nin, nout, sc, act, dD, dX):
    """NumPy twin of :func:`se_e3_backward` (the reference's backward formula)."""
    from symref.reference.nn import mlp_backward

    dX[...] = 0.0
    for (a0, a1, b0, b1, k), cg in zip(ranges, c):
        Xp, Xq = X[:, a0:a1], X[:, b0:b1]
        th = np.einsum("iad,ibd->iab", Xp, Xq)  # nloc x n_p x n_q
        G, gc = mlp_forward(th[..., None], _unpack(W, B, IDT, nin, nout, sc, act, k))
        dth, _ = mlp_backward(cg * th[..., None] * dD[:, None, None, :], gc)
        dth = dth[..., 0] + cg * np.einsum("iabm,im->iab", G, dD)
        dX[:, a0:a1] += np.einsum("iab,ibd->iad", dth, Xq)
        dX[:, b0:b1] += np.einsum("iab,iad->ibd", dth, Xp)
    dX[~np.any(X != 0.0, axis=-1)] = 0.0  # zero rows: left out (kernel docstring)


# ----------------------------------------------------------------------- se_e2_r
@kernel
def se_e2_r_forward(s, groups, scale, W, B, IDT, nin, nout, sc, act, D):
    """se_e2_r: ``D[i] = scale * sum_j N_{t_j}(s[i, j])`` (nloc x M, zeroed here) from the
    masked radial rows ``s`` (nloc x nnei, padded slots included); ``groups``: rows
    ``(j0, j1, net)`` of neighbour-type slot ranges (:mod:`symref.reference.descriptor.se_e2_r`,
    ``scale = 1/(5 nnei)``).  The net runs on a group's slots at once (:func:`_net_rows`)."""
    L = nin.shape[0]
    width = W.shape[2]
    M = D.shape[1]
    nb = s.shape[1]
    for i in numba.prange(s.shape[0]):
        Y = np.empty((L + 1, width, nb))
        H = np.empty((L, width, nb))
        for m in range(M):
            D[i, m] = 0.0
        for g in range(groups.shape[0]):
            j0, j1, k = groups[g, 0], groups[g, 1], groups[g, 2]
            n = j1 - j0
            for j in range(n):
                Y[0, 0, j] = s[i, j0 + j]
            _net_rows(n, k, W, B, IDT, nin, nout, sc, act, Y, H)
            for j in range(n):
                for m in range(M):
                    D[i, m] += Y[L, m, j]
        for m in range(M):
            D[i, m] *= scale


@kernel
def se_e2_r_backward(s, groups, scale, W, B, IDT, nin, nout, sc, act, dD, ds):
    """``ds`` (nloc x nnei, every slot written) = dL/ds for ``dD`` = dL/dD (nloc x M) of
    :func:`se_e2_r_forward`; the nets are recomputed."""
    L = nin.shape[0]
    width = W.shape[2]
    nb = s.shape[1]
    for i in numba.prange(s.shape[0]):
        Y = np.empty((L + 1, width, nb))
        H = np.empty((L, width, nb))
        dy = np.empty((width, nb))
        dx = np.empty((width, nb))
        for g in range(groups.shape[0]):
            j0, j1, k = groups[g, 0], groups[g, 1], groups[g, 2]
            n = j1 - j0
            for j in range(n):
                Y[0, 0, j] = s[i, j0 + j]
            _net_rows(n, k, W, B, IDT, nin, nout, sc, act, Y, H)
            for m in range(dD.shape[1]):
                for j in range(n):
                    dy[m, j] = scale * dD[i, m]
            _net_rows_backward(n, k, W, IDT, nin, nout, sc, H, dy, dx)
            for j in range(n):
                ds[i, j0 + j] = dy[0, j]


def group_table(sel):
    """se_e2_r's groups: int rows ``(j0, j1, net)`` for every neighbour type with slots."""
    off = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)
    return np.array([(off[t], off[t + 1], t) for t in range(len(sel)) if sel[t]],
                    dtype=np.int64).reshape(-1, 3)


def se_e2_r_forward_ref(s, groups, scale, W, B, IDT, nin, nout, sc, act, D):
    """NumPy twin of :func:`se_e2_r_forward` (the reference nets on each group)."""
    D[...] = 0.0
    for j0, j1, k in groups:
        G, _ = mlp_forward(s[:, j0:j1, None], _unpack(W, B, IDT, nin, nout, sc, act, k))
        D += G.sum(axis=1)
    D *= scale


def se_e2_r_backward_ref(s, groups, scale, W, B, IDT, nin, nout, sc, act, dD, ds):
    """NumPy twin of :func:`se_e2_r_backward`."""
    from symref.reference.nn import mlp_backward

    for j0, j1, k in groups:
        _, c = mlp_forward(s[:, j0:j1, None], _unpack(W, B, IDT, nin, nout, sc, act, k))
        dG = np.broadcast_to(scale * dD[:, None, :], (s.shape[0], j1 - j0, dD.shape[1]))
        ds[:, j0:j1] = mlp_backward(dG, c)[0][..., 0]
