r"""``se_e3``: deepmd-kit's three-body embedding (``se_at``, class ``se_t``), in blocks of centres.

For one centre atom with normalised environment rows ``R`` (nnei x 4, see
:mod:`symref.reference.env`), :math:`X_a = k_a R_{a,1:4}` (the three spatial columns;
:math:`k_a` zeroes rows of excluded type pairs) and neighbour-type groups
:math:`p \le q` (slots :math:`a \in p`, :math:`b \in q`, fixed by ``sel``):

.. math::

    \theta_{ab} = X_a\cdot X_b,\qquad G_{ab} = \mathcal N_{pq}(\theta_{ab})\ (M),\qquad
    D = \sum_{p\le q} c_{pq} \sum_{a\in p,\,b\in q} \theta_{ab}\, G_{ab},\qquad
    c_{pq} = \frac{1}{sel_p\, sel_q}.

Every ordered (a, b) of a block counts (the diagonal a = b and both orders when
p = q), padded slots included (their rows are :math:`-\mathrm{davg}/\mathrm{dstd}`,
whose spatial part is 0 for deepmd-kit's statistics); the net of group pair
(p, q) has index ``p + q * ntypes`` (deepmd-kit's 2-D NetworkCollection; nets with
q < p are stored but never used).  Backward, with :math:`\bar D` (M) given:

.. math::

    \bar G_{ab} = c_{pq}\, \theta_{ab}\, \bar D,\qquad
    \bar\theta_{ab} = c_{pq}\, \bar D\cdot G_{ab} + \mathcal N'(\theta_{ab})^\top \bar G_{ab},\qquad
    \bar X_a = \sum_b \bar\theta_{ab} X_b,\quad \bar X_b = \sum_a \bar\theta_{ab} X_a,\qquad
    \bar R_{a,1:4} = k_a \bar X_a,\ \bar R_{a0} = 0.

Tangent: :math:`\dot\theta_{ab} = \dot X_a\cdot X_b + X_a\cdot\dot X_b`,
:math:`\dot D = \sum c_{pq}\sum(\dot\theta_{ab} G_{ab} + \theta_{ab}\dot G_{ab})`; the
parameter gradient of :math:`\langle\bar D, D\rangle + \langle\bar{\dot D}, \dot D\rangle`
seeds the nets' dual backward with :math:`\bar G = c(\theta\bar D + \dot\theta\bar{\dot D})`,
:math:`\bar{\dot G} = c\,\theta\bar{\dot D}`.

Memory: a block of B centres holds B x sel_p x sel_q values per layer width, so the
centres are processed in blocks (:func:`centre_blocks`, at most :data:`BLOCK_BYTES`
each, never nloc x nnei x nnei x M at once); the backward passes recompute the
embedding of each block instead of keeping it.  A ``sel`` for which one centre
alone needs more memory than the machine has is refused before anything is
allocated (:func:`check_memory`).

Compressed models (``desc.tables`` set, deepmd-kit's ``dp compress``): each net
:math:`\mathcal N_{pq}` is replaced by its table over θ
(:mod:`symref.reference.tabulation_se_t`: its own range rule, strides and
three-segment evaluation) and :math:`\mathcal N'` by the table's slope; tables are
not trained (the tangent pass refuses them).

Invariance: :math:`\theta_{ab}` is a dot product of rotated vectors (rotations and
reflections cancel); permuting the neighbours of one type permutes a and b.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from symref.reference.descriptor.se_e2_a import _add_layer_grads, _TableCache
from symref.reference.descriptor.se_e2_r import embed_backward
from symref.reference.descriptor.slots import EmbeddingSettings
from symref.reference.nn import (mlp_backward_dual, mlp_forward,
                                 mlp_forward_dual)
from symref.reference.tabulation import EmbeddingTables
from symref.reference.tabulation_se_t import tabulated_se_t_forward

#: memory one block of centres may use for its three-body arrays (bytes)
BLOCK_BYTES = 256 * 2 ** 20


@dataclass
class SeE3(EmbeddingSettings):
    """Parameters of deepmd-kit's ``se_e3`` (aliases ``se_at``, ``se_a_3be``) descriptor.

    ``embeddings``: ntypes² nets (1 -> neuron[0] -> ... -> neuron[-1]), index
    ``p + q * ntypes`` for neighbour-type groups p <= q.  ``davg``/``dstd``:
    ntypes x nnei x 4 as for se_e2_a.  ``exclude_types``: (ti, tj) pairs of centre and
    neighbour type whose rows are zeroed (both orders).  ``tables``: deepmd-kit's
    compressed nets (:class:`~symref.reference.tabulation.EmbeddingTables`, one per
    group pair p <= q at its net index, empty otherwise), or None.  Other fields:
    :class:`~.slots.EmbeddingSettings`.
    """

    tables: EmbeddingTables | None = None

    def __post_init__(self):
        super().__post_init__()
        if len(self.embeddings) != self.ntypes ** 2:
            raise ValueError(f"se_e3 has {len(self.embeddings)} embedding nets, expected "
                             f"ntypes² = {self.ntypes ** 2}")
        if self.tables is not None:
            if len(self.tables.data) != self.ntypes ** 2:
                raise ValueError(f"compressed se_e3: {len(self.tables.data)} tables, expected "
                                 f"one per net (ntypes² = {self.ntypes ** 2})")
            for _, _, idx, _ in _pairs(self):
                if not np.size(self.tables.data[idx]):
                    raise ValueError(f"compressed se_e3: compress_data[{idx}] (neighbour types "
                                     f"{idx % self.ntypes}, {idx // self.ntypes}) is empty")

    def embedding_index(self, p: int, q: int) -> int:
        return p + q * self.ntypes


def _pairs(desc: SeE3):
    """(slots of p, slots of q, net index, c_pq) for every neighbour-type pair p <= q."""
    off = desc.sel_offsets
    return [(slice(off[p], off[p + 1]), slice(off[q], off[q + 1]), desc.embedding_index(p, q),
             1.0 / (desc.sel[p] * desc.sel[q]))
            for p in range(desc.ntypes) for q in range(p, desc.ntypes)
            if desc.sel[p] and desc.sel[q]]


def bytes_per_centre(desc: SeE3) -> int:
    """Memory one centre needs at the peak of a backward pass (bytes): the largest
    group pair's sel_p x sel_q values times (4 per layer width + 8), float64."""
    per_value = 4 * sum(desc.neuron) + 8
    return max((desc.sel[p] * desc.sel[q] for p in range(desc.ntypes)
                for q in range(p, desc.ntypes)), default=0) * per_value * 8


def available_memory() -> int | None:
    """Bytes of physical memory available now (``os.sysconf``), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(desc: SeE3, available: int | None = None) -> int:
    """``bytes_per_centre(desc)``; ``MemoryError`` naming ``descriptor.sel``, the bytes
    needed and those available when one centre alone needs more than is available
    (``available``: default :func:`available_memory`)."""
    need = bytes_per_centre(desc)
    avail = available_memory() if available is None else available
    if avail is not None and need > avail:
        raise MemoryError(f"se_e3 with descriptor.sel {list(desc.sel)} needs {need / 2**30:.2f} "
                          f"GiB per centre atom (sel_p x sel_q x (4 * sum(neuron) + 8) x 8 "
                          f"bytes) but {avail / 2**30:.2f} GiB are available; reduce sel")
    return need


def centre_blocks(desc: SeE3, nloc: int):
    """Slices of at most ``BLOCK_BYTES // bytes_per_centre`` centres (at least one) covering
    0..nloc; :func:`check_memory` first."""
    size = max(1, BLOCK_BYTES // max(check_memory(desc), 1))
    return [slice(i, min(i + size, nloc)) for i in range(0, nloc, size)]


def _theta(X, rows, sp, sq):
    return np.einsum("iad,ibd->iab", X[rows, sp], X[rows, sq])  # B x n_p x n_q


def warn_beyond_se_t_table(big: float, info, idx: int, *, stacklevel: int = 2) -> None:
    """RuntimeWarning naming net ``idx`` when ``big`` = max |θ| reaches the end of its
    table ``info`` (``stacklevel`` as :func:`warnings.warn`'s, from this function)."""
    if big >= float(info[2]):
        warnings.warn(f"compressed se_e3 embedding net {idx}: |theta| = {big:.6g} beyond the "
                      f"table's end {float(info[2]):.6g} (a neighbour closer than the minimum "
                      "neighbour distance the table covers); G is extrapolated linearly there",
                      RuntimeWarning, stacklevel=stacklevel)


def _embed(th, desc: SeE3, idx: int):
    """``(G, cache)`` of net ``idx`` at θ (... x 1): the net, or its table when the
    descriptor is compressed (a RuntimeWarning naming the net when a θ lies beyond the
    table, which extrapolates linearly there)."""
    if desc.tables is None:
        return mlp_forward(th, desc.embeddings[idx])
    data, info = desc.tables.data[idx], desc.tables.info[idx]  # filled (SeE3 checks)
    warn_beyond_se_t_table(float(np.max(np.abs(th), initial=0.0)), info, idx, stacklevel=5)
    G, slope = tabulated_se_t_forward(th, data, info)
    return G, _TableCache(slope)


def se_e3_forward(R: np.ndarray, atype_loc: np.ndarray, keep: np.ndarray, desc: SeE3):
    """``R`` (nloc x nnei x 4, columns 1..3 read) -> ``D`` (nloc x M); ``(D, cache)``.
    The cache keeps the inputs only (the backward recomputes each block)."""
    nloc = R.shape[0]
    X = R[..., 1:] * keep[..., None]  # nloc x nnei x 3
    D = np.zeros((nloc, desc.dim_out), dtype=R.dtype)  # nloc x M
    for rows in centre_blocks(desc, nloc):
        for sp, sq, idx, c in _pairs(desc):
            th = _theta(X, rows, sp, sq)  # B x n_p x n_q
            G, _ = _embed(th[..., None], desc, idx)  # B x n_p x n_q x M
            D[rows] += c * np.einsum("iab,iabm->im", th, G)
    return D, (R.shape, X, keep, desc)


def _accumulate(grads, idx, g):
    grads[idx] = g if grads.get(idx) is None else _add_layer_grads(grads[idx], g)


def se_e3_backward(dD: np.ndarray, cache, *, param_grads: bool = False):
    """Backward of :func:`se_e3_forward`: ``dD`` (nloc x M) -> ``(dR, grads)``; ``dR``
    nloc x nnei x 4 (column 0 zero), ``grads`` ``{net index: layer grads}`` with
    ``param_grads``, else None."""
    shape, X, keep, desc = cache
    dX = np.zeros_like(X)  # nloc x nnei x 3
    grads = {}
    for rows in centre_blocks(desc, shape[0]):
        dDb = dD[rows]  # B x M
        for sp, sq, idx, c in _pairs(desc):
            th = _theta(X, rows, sp, sq)  # B x n_p x n_q
            G, gc = _embed(th[..., None], desc, idx)  # B x n_p x n_q x M
            dth, g = embed_backward(c * th[..., None] * dDb[:, None, None, :], gc)
            dth = dth[..., 0] + c * np.einsum("iabm,im->iab", G, dDb)  # B x n_p x n_q
            dX[rows, sp] += np.einsum("iab,ibd->iad", dth, X[rows, sq])
            dX[rows, sq] += np.einsum("iab,iad->ibd", dth, X[rows, sp])
            if param_grads and g is not None:
                _accumulate(grads, idx, g)
    dR = np.zeros(shape, dtype=dD.dtype)  # nloc x nnei x 4
    dR[..., 1:] = dX * keep[..., None]
    return dR, (grads if param_grads else None)


def se_e3_forward_dual(R, Rd, atype_loc, keep, desc: SeE3):
    """``D``, its tangent ``Dd`` along ``Rd`` (both nloc x M) and a cache of the inputs.
    A compressed descriptor is refused (tables are not trained)."""
    if desc.tables is not None:
        raise ValueError("a compressed (tabulated) se_e3 descriptor cannot be trained; train "
                         "the uncompressed model and compress it afterwards")
    nloc = R.shape[0]
    X, Xd = R[..., 1:] * keep[..., None], Rd[..., 1:] * keep[..., None]  # nloc x nnei x 3
    D = np.zeros((nloc, desc.dim_out), dtype=R.dtype)  # nloc x M
    Dd = np.zeros_like(D)
    for rows in centre_blocks(desc, nloc):
        for sp, sq, idx, c in _pairs(desc):
            th = _theta(X, rows, sp, sq)  # B x n_p x n_q
            thd = _theta_dot(X, Xd, rows, sp, sq)  # B x n_p x n_q
            G, Gd, _ = mlp_forward_dual(th[..., None], thd[..., None], desc.embeddings[idx])
            D[rows] += c * np.einsum("iab,iabm->im", th, G)
            Dd[rows] += c * (np.einsum("iab,iabm->im", thd, G)
                             + np.einsum("iab,iabm->im", th, Gd))
    return D, Dd, (X, Xd, desc)


def _theta_dot(X, Xd, rows, sp, sq):
    return (np.einsum("iad,ibd->iab", Xd[rows, sp], X[rows, sq])
            + np.einsum("iad,ibd->iab", X[rows, sp], Xd[rows, sq]))  # B x n_p x n_q


def se_e3_backward_dual(Dbar, Ddbar, cache):
    """Parameter gradients of ``<Dbar, D> + <Ddbar, Dd>``: ``(None, grads)``, one entry per
    net (``None`` for unused nets); each block's nets are recomputed."""
    X, Xd, desc = cache
    grads = {}
    for rows in centre_blocks(desc, X.shape[0]):
        b, bd = Dbar[rows, None, None, :], Ddbar[rows, None, None, :]  # B x 1 x 1 x M
        for sp, sq, idx, c in _pairs(desc):
            th = _theta(X, rows, sp, sq)[..., None]  # B x n_p x n_q x 1
            thd = _theta_dot(X, Xd, rows, sp, sq)[..., None]
            _, _, gc = mlp_forward_dual(th, thd, desc.embeddings[idx])
            _, g = mlp_backward_dual(c * (th * b + thd * bd), c * th * bd, gc)
            _accumulate(grads, idx, g)
    return None, [grads.get(i) for i in range(len(desc.embeddings))]


def se_e3_pair_outputs(R: np.ndarray, keep: np.ndarray, desc: SeE3) -> list[tuple]:
    """The golden stages of :mod:`symref.io.golden`, per neighbour-type pair p <= q:
    ``(p, q, θ (nloc x sel_p x sel_q), G (nloc x sel_p x sel_q x M), block (nloc x M))``
    with ``block = c_pq Σ_ab θ_ab G_ab`` (D is the sum of the blocks).  All centres at
    once: for dumps of small frames (nloc x sel_p x sel_q x M values per pair)."""
    X = R[..., 1:] * keep[..., None]  # nloc x nnei x 3
    rows = slice(0, R.shape[0])
    out = []
    for sp, sq, idx, c in _pairs(desc):
        th = _theta(X, rows, sp, sq)  # nloc x n_p x n_q
        G, _ = _embed(th[..., None], desc, idx)  # nloc x n_p x n_q x M
        p, q = idx % desc.ntypes, idx // desc.ntypes
        out.append((p, q, th, G, c * np.einsum("iab,iabm->im", th, G)))
    return out
