r"""The gradient of the training loss (``train.loss``) on the fast path (``backend="numba"``).

Same mathematics as the reference ``train.loss._frame`` (forward-over-reverse, see the
docstring of ``train.loss``), same arguments (the frame's residuals ΔE, ΔF, ΔW, which
the caller computes once) and same result (per-net layer gradients, which the caller
names with ``model.params.grad_arrays``).  Layering: like all of :mod:`symref.fast`
this module imports only the reference and ``symref.fast``, never the training
package or the model package, so its references to them are plain text.  What
changes is the organisation:

1. **Real pairs only.**  The O(N) neighbour search gives the compact pair
   list; padded slots are never computed pair by pair.  They enter once per
   (centre type, neighbour type) as ``n_pad`` copies of the constant row
   ``R_pad = -davg/dstd`` (zero tangent, but the embedding net at
   ``R_pad0`` depends on θ, so ``Σ_i n_pad,i T̄_i R_pad`` is back-propagated
   too).  Needs statistics constant per neighbour-type group
   (:func:`symref.fast.cpu.unsupported_reason`).
2. **Stacked tangents.**  Every layer carries ``[x; ẋ]`` as one 2 x B x n
   array, so each layer is one BLAS product forward and two backward
   (:mod:`symref.fast.kernels.dual` does everything element-wise in one pass).
3. **Blocks of pairs on threads.**  Pairs are ordered by (neighbour type,
   centre) and cut into blocks of at most :data:`BLOCK_PAIRS` pairs at
   centre boundaries, so two blocks never add into the same row of T.  The
   blocks (and blocks of fitting-net rows) run on a pool of
   ``numba.get_num_threads()`` threads with single-threaded BLAS and the
   kernels' GIL-free builds; parameter gradients are summed block by block
   in block order, so the result does not depend on the number of threads.

The forward caches of every block are kept for the backward pass (T̄ needs
the whole forward pass first): about 4 kB per pair for the 25-50-100
embedding net.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast import blas as _blas
from symref.reference.descriptor.se_e2_a import _add_layer_grads
from symref.fast import cpu as _cpu
from symref.fast.cpu import FreshArrays, _layer_arrays, borrowed_arena, pair_rules, thread_pool
from symref.fast.kernels import dual as kdual

BLOCK_PAIRS = 2048  # pairs per block of the embedding nets
BLOCK_ATOMS = 64  # atoms per block of the fitting nets


def unsupported_reason(model) -> str | None:
    """Why :func:`frame_grad` cannot give ``model``'s loss gradient exactly, or None:
    :func:`symref.fast.cpu.unsupported_reason`'s reasons, and compression (a table has
    no parameters: the reference then names the problem)."""
    if getattr(model.descriptor, "tables", None) is not None:
        return "a compressed (tabulated) descriptor cannot be trained"
    if type(model.descriptor).__name__ != "SeE2A":  # se_e2_r, se_e3, hybrid: fast.family_loss
        return (f"descriptor {type(model.descriptor).__name__} is not se_e2_a (its fast loss "
                "gradient is symref.fast.family_loss)")
    return _cpu.unsupported_reason(model)


def _stack(a, b, out=None):
    """``[a; b]`` as a C-contiguous 2 x ... array (``out`` if given)."""
    out = np.empty((2,) + a.shape) if out is None else out
    out[0], out[1] = a, b
    return out


def mlp_forward_dual_stacked(X, layers, ws=FreshArrays, key=()):
    """``X`` (2 x B x nin) = [x; ẋ] through ``layers``: ``(Y, cache)`` with ``Y`` =
    [y; ẏ] (2 x B x nout).  Stacked twin of :func:`symref.reference.nn.mlp_forward_dual`.
    Scratch arrays come from ``ws`` (a :class:`symref.fast.cpu.Arena`) under
    ``key + (layer, name)``."""
    cache = []
    for k, ly in enumerate(layers):
        w, b, idt, sc, act = _layer_arrays(ly)
        _, B, nin = X.shape
        Z = ws.get(key + (k, "Z"), (2, B, ly.nout))  # 2 x B x nout: [z; ż]
        np.matmul(X.reshape(2 * B, nin), w, out=Z.reshape(2 * B, ly.nout))
        Y = ws.get(key + (k, "Y"), (2, B, ly.nout))
        kdual.dual_act_forward(Z, b, idt, X, sc, act, Y)  # Z <- [h; ż]
        cache.append((X, Z, ly, w, idt, sc, act))
        X = Y
    return X, cache


def mlp_backward_dual_stacked(Ybar, cache, input_grad: bool = True, ws=FreshArrays, key=()):
    """Backward of :func:`mlp_forward_dual_stacked` for ``<ȳ, y> + <ẏ̄, ẏ>`` with
    ``Ybar`` = [ȳ; ẏ̄]: ``(Xbar or None, [layer grads])`` as
    :func:`symref.reference.nn.mlp_backward_dual` returns them (``Xbar`` may be a buffer of ``ws``)."""
    grads = [None] * len(cache)
    for k in range(len(cache) - 1, -1, -1):
        X, Z, ly, w, idt, sc, act = cache[k]
        _, B, nin = X.shape
        nout = ly.nout
        Zbar = ws.get(key + (k, "Zbar"), Z.shape)  # 2 x B x nout: [z̄; ż̄]
        Xres = ws.get(key + (k, "Xres"), (2, B, nin)) if sc else np.empty((2, 0, 0))
        gb, gidt = np.zeros(nout), np.zeros(nout)
        kdual.dual_act_backward(Ybar, Z, idt, sc, act, Zbar, Xres, gb, gidt)
        Z2 = Zbar.reshape(2 * B, nout)
        grads[k] = {"w": X.reshape(2 * B, nin).T @ Z2,  # x^T z̄ + ẋ^T ż̄
                    "b": gb if ly.b is not None else None,
                    "idt": gidt if ly.idt is not None else None}
        if k > 0 or input_grad:
            Ybar = ws.get(key + (k, "Xbar"), (2, B, nin))
            np.matmul(Z2, w.T, out=Ybar.reshape(2 * B, nin))
            if sc:
                Ybar += Xres
    return (Ybar if input_grad else None), grads


def _sum_grads(a, b):
    """Layer gradients ``a + b`` (``a`` None: nothing yet)."""
    return b if a is None else _add_layer_grads(a, b)


def _cut(keys, lo, hi, size):
    """Ranges [s, e) covering [lo, hi) of the sorted ``keys``, at most ``size`` long
    where a run of equal keys allows, never splitting a run of equal keys."""
    out = []
    s = lo
    while s < hi:
        e = min(hi, s + size)
        if e < hi:
            e = int(np.searchsorted(keys[s:hi], keys[e], side="left")) + s
            if e == s:  # one run longer than size
                e = int(np.searchsorted(keys[s:hi], keys[s], side="right")) + s
        out.append((s, e))
        s = e
    return out


def frame_grad(model, coord, atype, box, dE, dF, dW, pref):
    """Gradient of one frame's loss from its residuals: ``(emb_grads, fit_grads, dbias)``.

    Fast twin of the reference ``train.loss._frame``, with the same arguments
    (``dE`` float or N per-atom seeds, ``dF`` N x 3, ``dW`` 3 x 3 or None, ``pref`` the
    prefactors p_e, p_f, p_v) and the same result: per embedding net a list of per-layer
    ``{"w", "b", "idt"}`` gradients (None for nets no pair used), ``{type: [...]}`` for the
    fitting nets, and the gradient of ``bias_atom_e``.  The caller (``train.loss.energy_loss_and_grad``)
    computes the residuals once and names the gradients (``model.params.grad_arrays``);
    nothing here knows the parameter layout.  Three steps, each reused by
    :mod:`symref.fast.family_loss` (se_e2_r, se_e3, hybrid): :func:`se_e2_a_dual_forward`,
    :func:`fitting_dual`, :func:`se_e2_a_dual_backward`.
    """
    from symref.fast.kernels.neighbors import build_pair_list

    desc = model.descriptor
    pl = build_pair_list(coord, atype, box, desc.rcut, desc.sel)
    with borrowed_arena() as ws, _blas.blas_threads(1):
        run = runner()
        D, Dd, ctx = se_e2_a_dual_forward(desc, pair_rules(model), pl, atype, dF, dW, pref,
                                          ws, run)
        Dbar, Ddbar, fit_grads, dbias = fitting_dual(model, ws, D, Dd, atype, dE, pref, run)
        return se_e2_a_dual_backward(Dbar, Ddbar, ctx), fit_grads, dbias


def runner():
    """``map`` over blocks: a pool of ``numba.get_num_threads()`` threads (call it with
    single-threaded BLAS), or the built-in ``map`` on one thread."""
    nthreads = numba.get_num_threads()
    return thread_pool(nthreads).map if nthreads > 1 else map


def pair_tangent(c, j, rij, dF, dW, pref, natoms):
    r"""The pair tangent :math:`\dot{\mathbf r}_p = c_f(\Delta F_j - \Delta F_i) + c_v\,\Delta W
    \mathbf r_p` (P x 3) of pairs (centre ``c``, neighbour ``j``, vector ``rij``) of a
    frame of ``natoms`` atoms (``train.loss``'s docstring)."""
    rdot = 2.0 * pref.pref_f / (3 * natoms) * (dF[j] - dF[c])  # P x 3
    if dW is not None:
        rdot += 2.0 * pref.pref_v / (9 * natoms) * rij @ dW.T
    return rdot


def se_e2_a_dual_forward(desc, rule, pl, atype, dF, dW, pref, ws=FreshArrays, run=map,
                         key=()):
    """``(D, Dd, ctx)``: the se_e2_a descriptor ``desc`` (nloc x M1 M2) of a frame and its
    tangent along the pair tangent of the residuals (:func:`pair_tangent`), from the
    frame's compact pairs ``pl`` (built with ``desc``'s rcut and sel, or a hybrid
    member's pairs, :func:`symref.fast.hybrid.member_pair_list`).  ``rule``:
    :func:`symref.fast.cpu.pair_rules` for ``desc``.  ``ws``/``run``/``key``: scratch
    arena, block map (:func:`runner`) and key prefix; ``ctx`` for
    :func:`se_e2_a_dual_backward`."""
    from symref.reference.env import env_mat_forward, env_mat_tangent

    N = len(atype)
    nt, off = desc.ntypes, desc.sel_offsets
    # ---- real pairs, ordered by (embedding group, centre)
    c = np.repeat(np.arange(N), np.diff(pl.ptr))  # P: centre of each pair
    tj = atype[pl.j]
    rule = rule[atype[c], tj]  # P: see symref.fast.cpu.pair_rules
    real = rule != 0
    nreal = np.zeros((N, nt), dtype=np.int64)
    np.add.at(nreal, (c[real], tj[real]), 1)
    npad = np.asarray(desc.sel)[None, :] - nreal  # N x nt
    keep = real & (rule != 2)
    c, j, tj, rij = c[keep], pl.j[keep], tj[keep], pl.rij[keep]
    gkey = tj if desc.type_one_side else atype[c] * nt + tj  # P: embedding group of each pair
    order = np.argsort(gkey * N + c, kind="stable")
    c, j, tj, rij, gkey = c[order], j[order], tj[order], rij[order], gkey[order]
    P = len(c)
    slot0 = off[tj]  # first slot of each pair's group (statistics are constant in it)
    davg, dstd = desc.davg[atype[c], slot0], desc.dstd[atype[c], slot0]  # P x 4
    R, env_cache = env_mat_forward(rij[None], np.ones((1, P), dtype=bool), davg[None],
                                   dstd[None], desc.rcut, desc.rcut_smth, desc.env_protection)
    rdot = pair_tangent(c, j, rij, dF, dW, pref, N)  # P x 3
    Rd = np.ascontiguousarray(env_mat_tangent(rdot[None], env_cache)[0])  # P x 4
    R = np.ascontiguousarray(R[0])  # P x 4
    # ---- blocks: (net index, neighbour type, start, end); one T accumulator per neighbour type
    gstart = np.searchsorted(gkey, np.arange(nt * nt + 1))
    blocks = []
    for g in range(nt if desc.type_one_side else nt * nt):
        g_ti, g_tj = (0, g) if desc.type_one_side else divmod(g, nt)
        for s, e in _cut(c, int(gstart[g]), int(gstart[g + 1]), BLOCK_PAIRS):
            blocks.append((desc.embedding_index(g_ti, g_tj), g_tj, s, e))
    return _se_e2_a_forward(desc, ws, run, key, atype, c, R, Rd, npad, blocks)


def _se_e2_a_forward(desc, ws, run, key, atype, c, R, Rd, npad, blocks):
    """:func:`se_e2_a_dual_forward` from the pair rows ``R`` and their tangents ``Rd``."""
    from symref.reference.nn import mlp_forward_dual

    N = len(atype)
    nt, M1, M2, nnei = desc.ntypes, desc.neuron[-1], desc.axis_neuron, desc.nnei
    off = desc.sel_offsets
    Tg = np.zeros((nt, N, 4, M1))  # per neighbour type: N x 4 x M1
    Tdg = np.zeros_like(Tg)

    def embed_forward(ib):
        b, (idx, g_tj, s, e) = ib
        X = _stack(R[s:e, :1], Rd[s:e, :1], ws.get(key + ("e", b, "X"), (2, e - s, 1)))
        G, cache = mlp_forward_dual_stacked(X, desc.embeddings[idx], ws, key + ("e", b))
        kdual.pair_outer_dual(c[s:e], R[s:e], Rd[s:e], G, Tg[g_tj], Tdg[g_tj])  # 2 x Pb x M1
        return cache

    caches = list(run(embed_forward, enumerate(blocks)))
    T, Td = Tg.sum(axis=0), Tdg.sum(axis=0)  # N x 4 x M1
    # padded slots: n_pad copies of the constant row of each (centre type, neighbour type)
    pads = []
    for t in range(nt):
        rows = np.nonzero(atype == t)[0]
        for g_tj in range(nt):
            if off[g_tj] == off[g_tj + 1] or len(rows) == 0:
                continue
            rp = -desc.davg[t, off[g_tj]] / desc.dstd[t, off[g_tj]]  # 4
            if np.any(rp != 0):
                idx = desc.embedding_index(t, g_tj)
                Gp, _, pc = mlp_forward_dual(rp[None, :1], np.zeros((1, 1)),
                                             desc.embeddings[idx])
                T[rows] += npad[rows, g_tj][:, None, None] * np.outer(rp, Gp[0])
                pads.append((rows, rp, pc, idx, g_tj))
    T = np.ascontiguousarray(T.transpose(0, 2, 1)) / nnei  # N x M1 x 4
    Td = np.ascontiguousarray(Td.transpose(0, 2, 1)) / nnei
    T2t = T[:, :M2].transpose(0, 2, 1)  # N x 4 x M2
    D = np.matmul(T, T2t)  # N x M1 x M2
    Dd = np.matmul(Td, T2t) + np.matmul(T, Td[:, :M2].transpose(0, 2, 1))
    ctx = (desc, ws, run, key, c, R, Rd, npad, blocks, caches, pads, T, Td)
    return D.reshape(N, M1 * M2), Dd.reshape(N, M1 * M2), ctx


def fitting_dual(model, ws, D, Dd, atype, dE, pref, run=map):
    """The fitting nets of ``model`` on the descriptor ``D`` and its tangent ``Dd`` (N x
    dim), in blocks of :data:`BLOCK_ATOMS` atoms of one type, and back:
    ``(Dbar, Ddbar, fit_grads, dbias)`` for the seed :math:`\\bar E_i = a`,
    :math:`\\bar{\\dot E}_i = -1` of every alive atom (``train.loss``'s docstring;
    ``a = 2 p_e ΔE / N``, or per atom when ``dE`` holds N per-atom seeds)."""
    fit = model.fitting
    N, dim = D.shape
    alive = (~np.isin(atype, model.atom_exclude_types)).astype(np.float64)  # N
    a = 2.0 * pref.pref_e * np.asarray(dE) / N  # scalar, or N (atomic-energy term)
    a_rows = (lambda rows: a) if a.ndim == 0 else (lambda rows: a[rows, None])
    fblocks = []
    for t in range(fit.ntypes):
        rows = np.nonzero(atype == t)[0]
        if t in fit.exclude_types:
            continue
        fblocks += [(t, rows[s:s + BLOCK_ATOMS]) for s in range(0, len(rows), BLOCK_ATOMS)]

    def one_block(ib):
        b, (t, rows) = ib
        X = _stack(D[rows], Dd[rows], ws.get(("f", b, "X"), (2, len(rows), dim)))
        _, cache = mlp_forward_dual_stacked(X, fit.nets[t], ws, ("f", b))
        ybar = _stack(a_rows(rows) * alive[rows, None], -alive[rows, None])  # 2 x nb x 1
        return mlp_backward_dual_stacked(ybar, cache, ws=ws, key=("f", b))

    Dbar, Ddbar = np.zeros((N, dim)), np.zeros((N, dim))
    fit_grads, dbias = {}, np.zeros(fit.ntypes)
    for (t, rows), (xbar, g) in zip(fblocks, run(one_block, enumerate(fblocks))):
        Dbar[rows], Ddbar[rows] = xbar[0], xbar[1]
        fit_grads[t] = _sum_grads(fit_grads.get(t), g)
        dbias[t] += a * alive[rows].sum() if a.ndim == 0 else (a[rows] * alive[rows]).sum()
    return Dbar, Ddbar, fit_grads, dbias


def se_e2_a_dual_backward(Dbar, Ddbar, ctx):
    """Per-net layer gradients of ``<Dbar, D> + <Ddbar, Dd>`` (both N x M1 M2) for the
    ``ctx`` of :func:`se_e2_a_dual_forward` (None for nets no pair used)."""
    from symref.reference.nn import mlp_backward_dual

    desc, ws, run, key, c, R, Rd, npad, blocks, caches, pads, T, Td = ctx
    N, M1, M2, nnei = len(npad), desc.neuron[-1], desc.axis_neuron, desc.nnei
    # ---- back through D = T T<^T to T̄, Ṫ̄ (N x M1 x 4)
    Dbar, Ddbar = Dbar.reshape(N, M1, M2), Ddbar.reshape(N, M1, M2)
    Tbar = np.matmul(Dbar, T[:, :M2]) + np.matmul(Ddbar, Td[:, :M2])
    Tdbar = np.matmul(Ddbar, T[:, :M2])
    Tbar[:, :M2] += np.matmul(Dbar.transpose(0, 2, 1), T) + \
        np.matmul(Ddbar.transpose(0, 2, 1), Td)
    Tdbar[:, :M2] += np.matmul(Ddbar.transpose(0, 2, 1), T)
    Tbar /= nnei
    Tdbar /= nnei

    def embed_backward(item):
        b, ((idx, g_tj, s, e), cache) = item
        Gbar = ws.get(key + ("e", b, "Gbar"), (2, e - s, M1))  # [Ḡ; Ġ̄]
        kdual.pair_contract_dual(c[s:e], Tbar, Tdbar, R[s:e], Rd[s:e], Gbar)
        return mlp_backward_dual_stacked(Gbar, cache, False, ws, key + ("e", b))[1]

    emb_grads = [None] * len(desc.embeddings)
    for (idx, *_), g in zip(blocks, run(embed_backward, enumerate(zip(blocks, caches)))):
        emb_grads[idx] = _sum_grads(emb_grads[idx], g)
    for rows, rp, pc, idx, g_tj in pads:
        gbar = np.einsum("i,imc,c->m", npad[rows, g_tj].astype(np.float64), Tbar[rows], rp)
        emb_grads[idx] = _sum_grads(emb_grads[idx],
                                    mlp_backward_dual(gbar[None], np.zeros((1, M1)), pc)[1])
    return emb_grads
