r"""The gradient of the training loss on the fast path for se_e2_r, se_e3 and hybrid descriptors.

Fast twin of the reference ``train.loss._frame`` (forward-over-reverse, see the docstring
of ``train.loss``) for the descriptors :mod:`symref.fast.cpu_loss` does not take, with the
same arguments and result.  Three parts, the same as :func:`symref.fast.cpu_loss.frame_grad`'s:
the descriptor and its tangent :math:`(D, \dot D)`, the fitting nets' dual pass
(:func:`symref.fast.cpu_loss.fitting_dual`, whatever the descriptor), and the descriptor's
parameter gradients from :math:`(\bar D, \bar{\dot D})`.

* **One neighbour search** (:func:`~symref.fast.kernels.neighbors.build_pair_list`, O(N),
  bit for bit the reference's list) at the descriptor's (a hybrid's: the largest) rcut and
  sel.  The padded rows of the se_e2_r and se_e3 descriptors (a hybrid's members: each on
  its own slots) and their tangents come from the reference's environment functions
  (``model.environment`` with that list, ``env_tangent`` of
  :func:`symref.reference.descriptor.dispatch.descriptor_ops`), O(nloc x nnei).
* **se_e2_r** (:func:`se_e2_r_dual_forward`): the net of neighbour type t runs on the
  scalars :math:`s_j = k_j R_{j0}` and tangents :math:`\dot s_j = k_j\dot R_{j0}` of that
  type's slots of a block of centres, as one stacked 2 x B x 1 input
  (:func:`symref.fast.cpu_loss.mlp_forward_dual_stacked`: one BLAS product and one
  :mod:`~symref.fast.kernels.dual` kernel per layer); :math:`D = \frac{c}{n_{nei}}\sum_j G_j`,
  :math:`\dot D = \frac{c}{n_{nei}}\sum_j \dot G_j`.  The backward seeds every slot with
  :math:`[\bar G; \bar{\dot G}] = \frac{c}{n_{nei}}[\bar D; \bar{\dot D}]`.
* **se_e3** (:func:`se_e3_dual_forward`): for a block of centres and a group pair p <= q,
  :math:`\theta_{ab} = X_a\cdot X_b` and :math:`\dot\theta_{ab} = \dot X_a\cdot X_b +
  X_a\cdot\dot X_b` (:mod:`symref.reference.descriptor.se_e3`), kept only where both rows
  are live (a row whose :math:`X` and :math:`\dot X` are exactly zero -- padded slots under
  deepmd-kit's statistics, excluded pairs -- enters only with :math:`\theta = \dot\theta =
  0`, contributing nothing) and, for p = q, only for a <= b with weight 2c off the
  diagonal (:math:`\theta_{ab} = \theta_{ba}`).  The compact scalars go through the net as
  above; :math:`D = \sum w\theta G`, :math:`\dot D = \sum w(\dot\theta G + \theta\dot G)`
  summed per centre; backward seed :math:`\bar G = w(\theta\bar D + \dot\theta\bar{\dot D})`,
  :math:`\bar{\dot G} = w\theta\bar{\dot D}`.
* **hybrid**: each member on its own slots (se_e2_a members on their compact pairs,
  :func:`symref.fast.hybrid.member_pair_list` and
  :func:`symref.fast.cpu_loss.se_e2_a_dual_forward`), the descriptors side by side, the
  members' gradients in the order of ``Hybrid.embeddings``.

Blocks run on a pool of ``numba.get_num_threads()`` threads with single-threaded BLAS
(:func:`symref.fast.cpu_loss.runner`); their results are added in block order, so the
gradient does not depend on the number of threads.  The nets are recomputed in the
backward pass (nothing of size nloc x nnei x width is kept).  Float64.
"""
from __future__ import annotations

import numpy as np

from symref.fast import blas as _blas
from symref.fast.cpu import FreshArrays, _descriptor_reason, borrowed_arena, pair_rules
from symref.fast.cpu_loss import (_sum_grads, fitting_dual, mlp_backward_dual_stacked,
                                  mlp_forward_dual_stacked, pair_tangent, runner,
                                  se_e2_a_dual_backward, se_e2_a_dual_forward)
from symref.fast.hybrid import member_pair_list
from symref.fast.kernels.activations import ACT_CODES
from symref.fast.kernels.neighbors import build_pair_list, padded_neighbor_list
from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import RES_RESCALE, SeE2R, _groups
from symref.reference.descriptor.se_e3 import SeE3, _pairs

BLOCK_SCALARS = 4096  # embedding-net inputs per block (se_e2_r; se_e3 before compaction x 8)


def unsupported_reason(model) -> str | None:
    """Why :func:`frame_grad` cannot give ``model``'s loss gradient exactly, or None:
    a descriptor other than se_e2_r, se_e3 or hybrid, a compressed member, an activation
    the kernels lack (:data:`~symref.fast.kernels.activations.ACT_CODES`), or an se_e2_a
    member whose statistics vary inside a neighbour-type group."""
    d = model.descriptor
    if not isinstance(d, (SeE2R, SeE3, Hybrid)):
        return f"descriptor {type(d).__name__} is not se_e2_r, se_e3 or hybrid"
    members = d.members if isinstance(d, Hybrid) else [d]
    for k, m in enumerate(members):
        where = f"descriptor.list[{k}]" if isinstance(d, Hybrid) else "descriptor"
        if getattr(m, "tables", None) is not None:
            return f"{where} is compressed (tabulated): a table cannot be trained"
        if isinstance(m, SeE2A) and _descriptor_reason(m) is not None:
            return f"{where}: {_descriptor_reason(m)}"
        for net in m.embeddings:
            for ly in net or []:
                if ly.activation not in ACT_CODES:
                    return (f"{where}: activation {ly.activation!r} is not implemented in "
                            f"the numba kernels (they have {sorted(ACT_CODES)})")
    for net in model.fitting.nets:
        for ly in net or []:
            if ly.activation not in ACT_CODES:
                return (f"fitting_net: activation {ly.activation!r} is not implemented in "
                        f"the numba kernels (they have {sorted(ACT_CODES)})")
    return None


def frame_grad(model, coord, atype, box, dE, dF, dW, pref):
    """Gradient of one frame's loss from its residuals: ``(emb_grads, fit_grads, dbias)``,
    as the reference ``train.loss._frame`` and :func:`symref.fast.cpu_loss.frame_grad`
    (same arguments and result) for an se_e2_r, se_e3 or hybrid ``model``."""
    h = model.descriptor
    hybrid = isinstance(h, Hybrid)
    members = h.members if hybrid else [h]
    pl = build_pair_list(coord, atype, box, h.rcut, h.sel)
    if any(not isinstance(m, SeE2A) for m in members):  # padded rows and their tangents
        nlist, mask, rij, R, env_cache = model.environment(
            coord, atype, box, neighbor_list=lambda *a, **kw: padded_neighbor_list(pl, h.sel))
        ops = descriptor_ops(h)
        rdot = pair_tangent(np.arange(len(atype))[:, None], np.maximum(nlist, 0), rij, dF, dW,
                            pref, len(atype))  # nloc x nnei x 3
        rdot = np.where(mask[..., None], rdot, 0.0)
        Rd, keep = ops.env_tangent(rdot, env_cache), ops.keep(h, atype, nlist)
        if not hybrid:
            R, Rd, keep = [R], [Rd], [keep]
    with borrowed_arena() as ws, _blas.blas_threads(1):
        run = runner()
        Ds, Dds, ctxs = [], [], []
        for k, m in enumerate(members):
            key = ("m", k)
            if isinstance(m, SeE2A):
                mpl = member_pair_list(pl, h.sel, m.sel) if hybrid else pl
                out = se_e2_a_dual_forward(m, pair_rules(model, m), mpl, atype, dF, dW, pref,
                                           ws, run, key)
            elif isinstance(m, SeE2R):
                out = se_e2_r_dual_forward(m, R[k], Rd[k], keep[k], ws, run, key)
            else:
                out = se_e3_dual_forward(m, R[k], Rd[k], keep[k], ws, run, key)
            for lst, v in zip((Ds, Dds, ctxs), out):
                lst.append(v)
        Dbar, Ddbar, fit_grads, dbias = fitting_dual(
            model, ws, np.concatenate(Ds, axis=1), np.concatenate(Dds, axis=1), atype, dE,
            pref, run)
        cuts = np.cumsum([D.shape[1] for D in Ds])[:-1]
        emb_grads = []
        for m, b, bd, ctx in zip(members, np.split(Dbar, cuts, axis=1),
                                 np.split(Ddbar, cuts, axis=1), ctxs):
            back = se_e2_a_dual_backward if isinstance(m, SeE2A) else _scalar_dual_backward
            emb_grads += back(np.ascontiguousarray(b), np.ascontiguousarray(bd), ctx)
    return emb_grads, fit_grads, dbias


def _centre_blocks(nloc, per_centre, size):
    """Ranges [r0, r1) of at most ``size // per_centre`` centres (at least one)."""
    nb = max(1, size // max(per_centre, 1))
    return [(r0, min(r0 + nb, nloc)) for r0 in range(0, nloc, nb)]


def _net_dual(desc, net, X, ws, key, Ybar_fn=None):
    """The net ``desc.embeddings[net]`` on ``X`` (2 x n x 1): ``G`` (2 x n x M); with
    ``Ybar_fn(G) -> [Ḡ; Ġ̄]`` its layer gradients instead."""
    G, cache = mlp_forward_dual_stacked(X, desc.embeddings[net], ws, key)
    if Ybar_fn is None:
        return G
    return mlp_backward_dual_stacked(Ybar_fn(G), cache, False, ws, key)[1]


# ------------------------------------------------------------------------- se_e2_r
def se_e2_r_dual_forward(desc, R, Rd, keep, ws=FreshArrays, run=map, key=()):
    """``(D, Dd, ctx)`` of an se_e2_r ``desc`` on its padded rows ``R`` and tangents ``Rd``
    (nloc x nnei x 4) with the exclusion mask ``keep`` (nloc x nnei): fast twin of
    :func:`symref.reference.descriptor.se_e2_r.se_e2_r_forward_dual`; ``ctx`` for
    :func:`_scalar_dual_backward`."""
    nloc, nnei = keep.shape
    scale = RES_RESCALE / nnei
    s, sd = R[..., 0] * keep, Rd[..., 0] * keep  # nloc x nnei
    blocks = [(net, sl.start, sl.stop, r0, r1) for sl, net in _groups(desc)
              for r0, r1 in _centre_blocks(nloc, sl.stop - sl.start, BLOCK_SCALARS)]

    def inputs(b, net, j0, j1, r0, r1):
        X = ws.get(key + ("r", b, "X"), (2, (r1 - r0) * (j1 - j0), 1))  # 2 x n x 1
        X[0, :, 0], X[1, :, 0] = s[r0:r1, j0:j1].ravel(), sd[r0:r1, j0:j1].ravel()
        return X

    def forward(ib):
        b, (net, j0, j1, r0, r1) = ib
        G = _net_dual(desc, net, inputs(b, *ib[1]), ws, key + ("r", b))  # 2 x n x M
        return G.reshape(2, r1 - r0, j1 - j0, -1).sum(axis=2)  # 2 x B x M

    def backward(ib, Dbar, Ddbar):
        b, (net, j0, j1, r0, r1) = ib

        def seed(G):
            Yb = ws.get(key + ("r", b, "Ybar"), G.shape).reshape(2, r1 - r0, j1 - j0, -1)
            Yb[0], Yb[1] = scale * Dbar[r0:r1, None], scale * Ddbar[r0:r1, None]
            return Yb.reshape(G.shape)
        return _net_dual(desc, net, inputs(b, *ib[1]), ws, key + ("r", b), seed)

    D, Dd = np.zeros((nloc, desc.dim_out)), np.zeros((nloc, desc.dim_out))  # nloc x M
    for (_, _, _, r0, r1), part in zip(blocks, run(forward, enumerate(blocks))):
        D[r0:r1] += part[0]
        Dd[r0:r1] += part[1]
    return D * scale, Dd * scale, (desc, blocks, backward, run)


def _scalar_dual_backward(Dbar, Ddbar, ctx):
    """Per-net layer gradients of ``<Dbar, D> + <Ddbar, Dd>`` (None for unused nets) for the
    ``ctx`` of :func:`se_e2_r_dual_forward` or :func:`se_e3_dual_forward`: every block's
    net recomputed and run backward, the gradients added in block order."""
    desc, blocks, backward, run = ctx
    grads = [None] * len(desc.embeddings)
    for blk, g in zip(blocks, run(lambda ib: backward(ib, Dbar, Ddbar), enumerate(blocks))):
        if g is not None:  # None: a block without live pairs
            grads[blk[0]] = _sum_grads(grads[blk[0]], g)
    return grads


# --------------------------------------------------------------------------- se_e3
def se_e3_dual_forward(desc, R, Rd, keep, ws=FreshArrays, run=map, key=()):
    """``(D, Dd, ctx)`` of an se_e3 ``desc`` on its padded rows ``R`` and tangents ``Rd``
    (nloc x nnei x 4) with the exclusion mask ``keep``: fast twin of
    :func:`symref.reference.descriptor.se_e3.se_e3_forward_dual` (live pairs only, p = q
    halved; module docstring); ``ctx`` for :func:`_scalar_dual_backward`."""
    nloc = keep.shape[0]
    X, Xd = R[..., 1:] * keep[..., None], Rd[..., 1:] * keep[..., None]  # nloc x nnei x 3
    live = np.any(X != 0.0, axis=-1) | np.any(Xd != 0.0, axis=-1)  # nloc x nnei
    blocks = []
    for sp, sq, net, c in _pairs(desc):
        w = np.full((sp.stop - sp.start, sq.stop - sq.start), c)  # n_p x n_q: weight of (a, b)
        if sp == sq:
            w = np.triu(2.0 * w, 1) + np.diag(np.diag(w))  # a <= b, the pairs a < b twice
        blocks += [(net, sp, sq, w, r0, r1)
                   for r0, r1 in _centre_blocks(nloc, w.size, 8 * BLOCK_SCALARS)]

    def gather(b, net, sp, sq, w, r0, r1):
        """The block's live pairs: centre (within the block), weight, [θ; θ̇] (2 x n x 1)."""
        m = (live[r0:r1, sp, None] & live[r0:r1, None, sq]) & (w != 0.0)  # B x n_p x n_q
        ci, a, bq = np.nonzero(m)  # n, sorted by centre
        Xa, Xb = X[r0:r1][ci, a + sp.start], X[r0:r1][ci, bq + sq.start]  # n x 3
        Xda, Xdb = Xd[r0:r1][ci, a + sp.start], Xd[r0:r1][ci, bq + sq.start]
        T = ws.get(key + ("t", b, "X"), (2, len(ci), 1))  # 2 x n x 1: [θ; θ̇]
        T[0, :, 0] = np.einsum("nd,nd->n", Xa, Xb)
        T[1, :, 0] = np.einsum("nd,nd->n", Xda, Xb) + np.einsum("nd,nd->n", Xa, Xdb)
        return ci, w[a, bq][:, None], T

    def forward(ib):
        b, (net, sp, sq, w, r0, r1) = ib
        ci, wn, T = gather(b, *ib[1])
        out = np.zeros((2, r1 - r0, desc.dim_out))  # 2 x B x M
        if len(ci):
            G = _net_dual(desc, net, T, ws, key + ("t", b))  # 2 x n x M
            vals = np.stack([wn * T[0] * G[0], wn * (T[1] * G[0] + T[0] * G[1])])  # 2 x n x M
            starts = np.flatnonzero(np.r_[True, ci[1:] != ci[:-1]])
            out[:, ci[starts]] = np.add.reduceat(vals, starts, axis=1)
        return out

    def backward(ib, Dbar, Ddbar):
        b, (net, sp, sq, w, r0, r1) = ib
        ci, wn, T = gather(b, *ib[1])
        if not len(ci):
            return None

        def seed(G):
            db, ddb = Dbar[r0:r1][ci], Ddbar[r0:r1][ci]  # n x M
            Yb = ws.get(key + ("t", b, "Ybar"), G.shape)  # 2 x n x M: [Ḡ; Ġ̄]
            Yb[0] = wn * (T[0] * db + T[1] * ddb)
            Yb[1] = wn * T[0] * ddb
            return Yb
        return _net_dual(desc, net, T, ws, key + ("t", b), seed)

    D, Dd = np.zeros((nloc, desc.dim_out)), np.zeros((nloc, desc.dim_out))  # nloc x M
    for (_, _, _, _, r0, r1), part in zip(blocks, run(forward, enumerate(blocks))):
        D[r0:r1] += part[0]
        Dd[r0:r1] += part[1]
    return D, Dd, (desc, blocks, backward, run)
