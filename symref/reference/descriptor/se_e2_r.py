r"""``se_e2_r``: deepmd-kit's radial-only two-body embedding (``se_r``), D = mean of G / 5.

For one centre atom i with normalised environment rows ``R`` (nloc x nnei x 4, see
:mod:`symref.reference.env`; only the radial column 0 is read) and slot types
:math:`t_j` fixed by the ``sel`` layout:

.. math::

    s_j = R_{j0}\, k_j,\qquad G_j = \mathcal N_{t_j}(s_j)\ (M),\qquad
    D = \frac{c}{n_{nei}} \sum_j G_j\ (M),\qquad c = \tfrac15,

where :math:`k_j \in \{0, 1\}` zeroes the row of an excluded type pair (its
:math:`G_j = \mathcal N(0)` still enters the sum, as in deepmd-kit), padded slots
have the constant row :math:`s_j = -\mathrm{davg}/\mathrm{dstd}` and are summed too,
:math:`n_{nei} = \sum_t sel_t` (deepmd-kit divides by the padded count) and
:math:`c = 1/5` is deepmd-kit's ``res_rescale``.  One embedding net per neighbour
type (``type_one_side``; deepmd-kit 3.x implements no other layout for ``se_r``).
The statistics ``davg``/``dstd`` have one column, ntypes x nnei x 1: broadcast
against the four columns of :func:`~symref.reference.env.env_mat_forward`, they
normalise column 0 as deepmd-kit's radial-only environment matrix does (the three
direction columns are formed there but never read here, and their gradient is 0).

Backward, with :math:`\bar D` (M) given:

.. math::

    \bar G_j = \frac{c}{n_{nei}}\,\bar D,\qquad
    \bar R_{j0} = k_j\, \mathcal N_{t_j}'(s_j)^\top \bar G_j,\qquad \bar R_{j,1:4} = 0.

Tangent (forward mode, for the force/virial loss): :math:`\dot D = \frac{c}{n_{nei}}
\sum_j \dot G_j` with :math:`\dot G_j = \mathcal N'(s_j)\, k_j \dot R_{j0}`.

Compressed models (``desc.tables`` set, deepmd-kit's ``dp compress``): each net
:math:`\mathcal N_t` is replaced by its table (:func:`~symref.reference.tabulation.build_tables`
builds it, with se_e2_a's range rule, knots and evaluation,
:func:`~symref.reference.tabulation.tabulated_forward`) and :math:`\mathcal N'` by the
table's slope; a type whose table is empty contributes nothing (deepmd-kit skips it).
Tables are not trained (the tangent pass refuses them).

Invariance: :math:`s_j` depends on :math:`|\mathbf r_{ji}|` only (rotations and
reflections leave it unchanged); permuting the neighbours of one type permutes the
terms of the sum.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symref.reference.descriptor.se_e2_a import _TableCache, warn_beyond_table
from symref.reference.descriptor.slots import EmbeddingSettings
from symref.reference.nn import (mlp_backward, mlp_backward_dual, mlp_forward,
                                 mlp_forward_dual, mlp_hidden_outputs)
from symref.reference.tabulation import EmbeddingTables, tabulated_backward, tabulated_forward

#: deepmd-kit's ``res_rescale`` of se_r: the descriptor is the mean of G times 1/5
RES_RESCALE = 0.2


@dataclass
class SeE2R(EmbeddingSettings):
    """Parameters of deepmd-kit's ``se_e2_r`` (alias ``se_r``) descriptor.

    ``embeddings``: one net per neighbour type (1 -> neuron[0] -> ... -> neuron[-1]).
    ``davg``/``dstd``: ntypes x nnei x 1, the radial row of slot j of a centre of type
    t is normalised as ``(w/r - davg[t, j, 0]) / dstd[t, j, 0]``.  ``exclude_types``:
    (ti, tj) pairs whose rows are zeroed (both orders).  ``type_one_side`` must be True
    (deepmd-kit 3.x raises ``NotImplementedError`` otherwise; so does symref, with a
    ``ValueError``).  ``tables``: deepmd-kit's compressed nets (one table per neighbour
    type, :class:`~symref.reference.tabulation.EmbeddingTables`), or None.  Other fields:
    :class:`~.slots.EmbeddingSettings`.
    """

    type_one_side: bool = True
    tables: EmbeddingTables | None = None

    def __post_init__(self):
        super().__post_init__()
        if not self.type_one_side:
            raise ValueError("descriptor.type_one_side = false is not implemented for se_e2_r "
                             "(deepmd-kit 3.x implements only type_one_side = true for se_r)")
        if len(self.embeddings) != self.ntypes:
            raise ValueError(f"se_e2_r has {len(self.embeddings)} embedding nets, expected one "
                             f"per neighbour type ({self.ntypes})")

    def embedding_index(self, ti: int, tj: int) -> int:
        return tj


def _groups(desc: SeE2R):
    """(slot range, net index) of every non-empty neighbour-type group."""
    off = desc.sel_offsets
    return [(slice(off[t], off[t + 1]), t) for t in range(desc.ntypes) if off[t] < off[t + 1]]


def _embed(s, desc: SeE2R, idx: int):
    """``(G, cache)`` of net ``idx`` at ``s`` (... x 1): the net, or its table when the
    descriptor is compressed; ``(None, None)`` for an empty table."""
    if desc.tables is None:
        return mlp_forward(s, desc.embeddings[idx])
    data, info = desc.tables.data[idx], desc.tables.info[idx]
    if not np.size(data):
        return None, None
    warn_beyond_table(s[..., 0], info, idx, stacklevel=5)
    G, slope = tabulated_forward(s, data, info)
    return G, _TableCache(slope)


def embed_backward(dG, cache):
    """Backward of an embedding net or of its table (se_e2_r's and se_e3's): ``dG``
    (... x M) -> ``(ds (... x 1), layer grads, None for a table)``."""
    if isinstance(cache, _TableCache):
        return tabulated_backward(dG, cache.dG_ds)
    return mlp_backward(dG, cache)


def se_e2_r_forward(R: np.ndarray, atype_loc: np.ndarray, keep: np.ndarray, desc: SeE2R):
    """``R`` (nloc x nnei x 4, column 0 read) -> ``D`` (nloc x M); returns ``(D, cache)``."""
    nloc, nnei, _ = R.shape
    scale = RES_RESCALE / nnei
    s = R[..., :1] * keep[..., None]  # nloc x nnei x 1
    D = np.zeros((nloc, desc.dim_out), dtype=R.dtype)  # nloc x M
    caches = []
    for sl, idx in _groups(desc):
        G, c = _embed(s[:, sl], desc, idx)  # nloc x sel_t x M
        if G is None:
            continue
        D += G.sum(axis=1)
        caches.append((sl, c, idx))
    return D * scale, (R.shape, keep, caches, scale)


def se_e2_r_backward(dD: np.ndarray, cache, *, param_grads: bool = False):
    """Backward of :func:`se_e2_r_forward`: ``dD`` (nloc x M) -> ``(dR, grads)``.

    ``dR``: nloc x nnei x 4 (columns 1..3 zero).  ``grads``: with ``param_grads`` a
    dict ``{net index: layer grads}`` (none for tables), else ``None``."""
    shape, keep, caches, scale = cache
    dR = np.zeros(shape, dtype=dD.dtype)  # nloc x nnei x 4
    grads = {}
    for sl, c, idx in caches:
        nsel = sl.stop - sl.start
        dG = np.broadcast_to((dD * scale)[:, None, :], (shape[0], nsel, dD.shape[1]))
        ds, g = embed_backward(dG, c)  # nloc x sel_t x 1
        dR[:, sl, 0] = ds[..., 0]
        if g is not None:
            grads[idx] = g
    dR[..., 0] *= keep
    return dR, (grads if param_grads else None)


def se_e2_r_slot_outputs(R: np.ndarray, keep: np.ndarray, desc: SeE2R) -> list[np.ndarray]:
    """Every embedding layer's output at every (centre, slot), the golden stages of
    :mod:`symref.io.golden`: one nloc x nnei x width_k array per layer, the last one
    ``G`` (nloc x nnei x M), ``G[i, j] = N_{t_j}(s_ij)``, ``s_ij = R[i, j, 0] k_ij`` (a
    compressed descriptor: ``[G]`` from its tables; slots of an empty table stay 0)."""
    s = R[..., :1] * keep[..., None]  # nloc x nnei x 1
    nloc, nnei = keep.shape
    width = desc.neuron if desc.tables is None else desc.neuron[-1:]
    out = [np.zeros((nloc, nnei, w), dtype=R.dtype) for w in width]
    for sl, idx in _groups(desc):
        G, c = _embed(s[:, sl], desc, idx)
        if G is None:
            continue
        hidden = [] if isinstance(c, _TableCache) else mlp_hidden_outputs(c)
        for full, y in zip(out, hidden + [G]):
            full[:, sl] = y
    return out


def se_e2_r_forward_dual(R, Rd, atype_loc, keep, desc: SeE2R):
    r"""``D`` and its tangent ``Dd`` for rows ``R`` moving along ``Rd`` (both nloc x nnei x 4).

    :math:`\dot D = \frac{c}{n_{nei}} \sum_j \dot G_j`, :math:`\dot G_j` the tangent of the
    net at :math:`s_j` along :math:`\dot s_j = k_j \dot R_{j0}`.  Returns ``(D, Dd, cache)``.
    A compressed descriptor is refused (tables are not trained)."""
    if desc.tables is not None:
        raise ValueError("a compressed (tabulated) se_e2_r descriptor cannot be trained; train "
                         "the uncompressed model and compress it afterwards")
    nloc, nnei, _ = R.shape
    scale = RES_RESCALE / nnei
    k = keep[..., None]
    s, sd = R[..., :1] * k, Rd[..., :1] * k  # nloc x nnei x 1
    D = np.zeros((nloc, desc.dim_out), dtype=R.dtype)  # nloc x M
    Dd = np.zeros_like(D)
    caches = []
    for sl, idx in _groups(desc):
        G, Gd, c = mlp_forward_dual(s[:, sl], sd[:, sl], desc.embeddings[idx])
        D += G.sum(axis=1)
        Dd += Gd.sum(axis=1)
        caches.append((sl, c, idx))
    return D * scale, Dd * scale, (nloc, caches, scale, len(desc.embeddings))


def se_e2_r_backward_dual(Dbar, Ddbar, cache):
    """Parameter gradients of ``<Dbar, D> + <Ddbar, Dd>``: ``(None, grads)``, ``grads`` a
    list with one list of layer gradients per embedding net (``None`` for unused nets)."""
    nloc, caches, scale, nnets = cache
    grads = [None] * nnets
    for sl, c, idx in caches:
        shape = (nloc, sl.stop - sl.start, Dbar.shape[1])
        Gbar = np.broadcast_to((Dbar * scale)[:, None, :], shape)
        Gdbar = np.broadcast_to((Ddbar * scale)[:, None, :], shape)
        _, grads[idx] = mlp_backward_dual(Gbar, Gdbar, c)
    return None, grads
