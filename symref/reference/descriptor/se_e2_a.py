r"""The symmetric core of ``se_e2_a``: embedding G, T = GᵀR / nnei and D = T T<ᵀ.

For one centre atom i of type :math:`t_i` with normalised environment rows
``R`` (nnei x 4, see :mod:`symref.reference.env`) and slot types :math:`t_j` fixed by the
``sel`` layout:

.. math::

    s_j = R_{j0} k_j,\qquad G_j = \mathcal N_{t_i t_j}(s_j)\ (M_1),\qquad
    T = \frac{1}{n_{nei}} \sum_j G_j \otimes (k_j R_j)\ (M_1 \times 4),\qquad
    D_{ab} = \sum_{c=0}^{3} T_{ac} T_{bc},\ a < M_1,\ b < M_2,

where :math:`k_j \in \{0, 1\}` zeroes rows of excluded type pairs and
:math:`n_{nei} = \sum_t sel_t` is the padded count (deepmd-kit divides by it,
not by the number of real neighbours).  ``D`` is flattened row-major to
:math:`M_1 M_2` values.  Backward, with :math:`T_< = T_{:M_2}`:

.. math::

    \bar T = \bar D\, T_< + \big[\bar D^\top T\big]_{\text{rows} < M_2},\qquad
    \bar G_j = \bar T R_j k_j / n_{nei},\qquad
    \bar R_j = k_j\big(\bar T^\top G_j / n_{nei} + e_0\, \mathcal N'^\top \bar G_j\big).

Compressed models (``desc.tables`` set, :mod:`symref.reference.tabulation`) replace
:math:`\mathcal N_{t_i t_j}` by its table and :math:`\mathcal N'` by the table's
derivative; a group whose table is empty contributes nothing (deepmd-kit's
compressed path skips it).  Tables have no trained parameters.

Invariance: rotating the frame multiplies the last three columns of ``R`` and
of ``T`` by :math:`Q^\top`, which cancels in :math:`T T^\top`; permuting the
neighbours of one type permutes the terms of the sum over j.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from symref.reference.core import (cloud_sum_backward, cloud_sum_forward, gram_backward, gram_backward_dual,
                   gram_forward, gram_tangent)
from symref.reference.neighbors import type_pair_table
from symref.reference.descriptor.slots import TypeSlots
from symref.reference.nn import (Layer, mlp_backward, mlp_backward_dual, mlp_forward, mlp_forward_dual,
                                 mlp_hidden_outputs)
from symref.reference.tabulation import EmbeddingTables, tabulated_backward, tabulated_forward


@dataclass
class SeE2A(TypeSlots):
    """Parameters of deepmd-kit's ``se_e2_a`` descriptor.

    ``embeddings`` is a flat list indexed like deepmd-kit's NetworkCollection:
    ``type_one_side``: index = neighbour type ``tj`` (ntypes nets);
    otherwise index = ``ti + tj * ntypes`` (centre ``ti``, neighbour ``tj``; ntypes² nets).
    ``davg``/``dstd``: ntypes x nnei x 4; the environment row of slot j of a
    centre of type t is normalised as ``(R̃ - davg[t, j]) / dstd[t, j]``.
    ``exclude_types``: list of (ti, tj) type pairs whose rows are zeroed (both orders).
    """

    rcut: float
    rcut_smth: float
    sel: list[int]
    neuron: list[int]
    axis_neuron: int
    embeddings: list[list[Layer]]
    davg: np.ndarray
    dstd: np.ndarray
    resnet_dt: bool = False
    type_one_side: bool = True
    exclude_types: list[tuple[int, int]] = field(default_factory=list)
    env_protection: float = 0.0
    set_davg_zero: bool = False
    activation_function: str = "tanh"
    precision: str = "float64"
    trainable: bool = True
    tables: EmbeddingTables | None = None

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron

    def embedding_index(self, ti: int, tj: int) -> int:
        return tj if self.type_one_side else ti + tj * self.ntypes


# --------------------------------------------------------------------------- math
def warn_beyond_table(s: np.ndarray, info: np.ndarray, idx: int, *, stacklevel: int = 4) -> None:
    """RuntimeWarning when a row's s reaches past the table (a neighbour closer than the
    minimum distance the table was built for, with ``extrapolate`` to spare).
    ``stacklevel`` as :func:`warnings.warn`'s, counted from this function."""
    smax = float(np.max(s, initial=-np.inf))
    if smax >= float(info[2]):
        warnings.warn(f"compressed embedding net {idx}: a neighbour has s = {smax:.6g} beyond "
                      f"the table's end {float(info[2]):.6g} (it is closer than the minimum "
                      "neighbour distance the table covers); G is extrapolated linearly there",
                      RuntimeWarning, stacklevel=stacklevel)


@dataclass
class _TableCache:
    """Cache of a tabulated group: dG/ds (nrows x sel x M1), told apart from an MLP's."""

    dG_ds: np.ndarray



def _slot_types(desc: SeE2A) -> np.ndarray:
    """Type of each neighbour slot: nnei ints."""
    return np.repeat(np.arange(desc.ntypes), desc.sel)


def keep_mask(desc: SeE2A, atype_loc: np.ndarray, nlist: np.ndarray) -> np.ndarray:
    """k_j: nloc x nnei, 0 for real neighbours of an excluded (t_i, t_j) pair, else 1.

    Padded slots are kept (their rows are the constant -davg/dstd), as in deepmd-kit.
    """
    if not desc.exclude_types:
        return np.ones(nlist.shape, dtype=bool)
    excluded = type_pair_table(desc.ntypes, desc.exclude_types)  # ntypes x ntypes
    return ~(excluded[atype_loc[:, None], _slot_types(desc)[None, :]] & (nlist >= 0))


def _embedding_groups(desc: SeE2A, atype_loc: np.ndarray):
    """(centre rows, slot range, embedding index) of every non-empty net/slot group."""
    off = desc.sel_offsets
    nloc = len(atype_loc)
    groups = [(0, np.arange(nloc))] if desc.type_one_side else \
        [(ti, np.nonzero(atype_loc == ti)[0]) for ti in range(desc.ntypes)]
    for ti, rows in groups:
        if len(rows) == 0:
            continue
        for tj in range(desc.ntypes):
            if off[tj] < off[tj + 1]:
                yield rows, slice(off[tj], off[tj + 1]), desc.embedding_index(ti, tj)


def se_e2_a_forward(R: np.ndarray, atype_loc: np.ndarray, keep: np.ndarray, desc: SeE2A):
    """``R`` (nloc x nnei x 4) -> ``D`` (nloc x M1*M2); returns ``(D, cache)``."""
    nloc, nnei, _ = R.shape
    M1, M2 = desc.neuron[-1], desc.axis_neuron
    Rk = R * keep[..., None]  # nloc x nnei x 4
    T = np.zeros((nloc, M1, 4), dtype=R.dtype)  # nloc x M1 x 4
    emb_caches = []
    for rows, sl, idx in _embedding_groups(desc, atype_loc):
        Rg = Rk[rows, sl]  # nrows x sel_tj x 4
        if desc.tables is None:
            G, cache = mlp_forward(Rg[..., :1], desc.embeddings[idx])  # nrows x sel_tj x M1
        elif np.size(desc.tables.data[idx]):
            warn_beyond_table(Rg[..., 0], desc.tables.info[idx], idx)
            G, cache = tabulated_forward(Rg[..., :1], desc.tables.data[idx],
                                         desc.tables.info[idx])  # nrows x sel_tj x M1
            cache = _TableCache(cache)
        else:  # no table: the group contributes nothing, as in deepmd-kit
            continue
        T[rows] += cloud_sum_forward(G, Rg)[0]
        emb_caches.append((rows, sl, G, cache, idx))
    T /= nnei
    D, _ = gram_forward(T, M2)  # nloc x M1 x M2 (symref.reference.core)
    return D.reshape(nloc, M1 * M2), (Rk, keep, T, emb_caches, M1, M2)


def se_e2_a_slot_outputs(cache) -> list[np.ndarray]:
    """Every embedding layer's output at every (centre, slot), read from the cache of
    :func:`se_e2_a_forward`: one nloc x nnei x width_k array per layer, the last one
    ``G`` (nloc x nnei x M1): ``G[i, j] = N_{t_i t_j}(s_ij)``, ``s_ij = R[i, j, 0] k_ij``.
    A compressed descriptor has no hidden layers: ``[G]`` alone (the table's value)."""
    Rk, keep, T, emb_caches, M1, M2 = cache
    nloc, nnei, _ = Rk.shape
    out = []
    for rows, sl, G, cache_e, _ in emb_caches:
        hidden = [] if isinstance(cache_e, _TableCache) else mlp_hidden_outputs(cache_e)
        layers = hidden + [G]  # nrows x sel_tj x width_k each
        if not out:
            out = [np.zeros((nloc, nnei, y.shape[-1]), dtype=y.dtype) for y in layers]
        for full, y in zip(out, layers):
            full[rows, sl] = y
    return out


def se_e2_a_backward(dD: np.ndarray, cache, *, param_grads: bool = False,
                     dT: np.ndarray | None = None):
    """Backward of :func:`se_e2_a_forward`: ``dD`` (nloc x M1*M2) -> ``(dR, grads)``.

    ``dR``: nloc x nnei x 4.  ``dT`` (nloc x M1 x 4, optional): a gradient with
    respect to T itself (the equivariant heads read T's last three columns), added
    to the one from D.  ``grads``: with ``param_grads`` a dict ``{net index: layer
    grads}`` (index as in ``desc.embeddings``; nets no centre/slot group used are
    absent), else ``None``.
    """
    Rk, keep, T, emb_caches, M1, M2 = cache
    nloc, nnei, _ = Rk.shape
    dT_D, _ = gram_backward(dD.reshape(nloc, M1, M2), (T, M2))  # nloc x M1 x 4
    dT = (dT_D if dT is None else dT_D + dT) / nnei
    dR = np.zeros_like(Rk)  # nloc x nnei x 4
    grads = {}
    for rows, sl, G, cache_e, idx in emb_caches:
        Rg = Rk[rows, sl]  # nrows x sel x 4
        dTg = dT[rows]  # nrows x M1 x 4
        (dG, dRg), _ = cloud_sum_backward(dTg, (G, Rg, np.float64(1.0)), need_dX=True)
        if isinstance(cache_e, _TableCache):
            if param_grads:
                raise ValueError("a compressed (tabulated) descriptor has no trainable "
                                 "embedding parameters")
            ds, g = tabulated_backward(dG, cache_e.dG_ds)  # nrows x sel x 1
        else:
            ds, g = mlp_backward(dG, cache_e)  # nrows x sel x 1
        dRg[..., 0] += ds[..., 0]
        dR[rows, sl] += dRg
        if param_grads:
            if idx in grads:
                grads[idx] = [{k: (a[k] + b[k] if a[k] is not None else None) for k in a}
                              for a, b in zip(grads[idx], g)]
            else:
                grads[idx] = g
    dR *= keep[..., None]
    return dR, (grads if param_grads else None)


# ------------------------------------------------------------------ dual mode
def se_e2_a_forward_dual(R, Rd, atype_loc, keep, desc: SeE2A):
    r"""``D`` and its tangent ``Dd`` for rows ``R`` moving along ``Rd`` (both nloc x nnei x 4).

    .. math::  \dot T = \frac{1}{n_{nei}}\sum_j \big(\dot G_j \otimes R_j + G_j \otimes \dot R_j\big),
               \qquad \dot D = \dot T T_<^\top + T \dot T_<^\top,

    with :math:`\dot G_j` the tangent of the embedding net at :math:`s_j` along :math:`\dot s_j = \dot R_{j0}`.
    Returns ``(D, Dd, cache)``.
    """
    if desc.tables is not None:
        raise ValueError("a compressed (tabulated) descriptor cannot be trained; train the "
                         "uncompressed model and compress it afterwards")
    nloc, nnei, _ = R.shape
    M1, M2 = desc.neuron[-1], desc.axis_neuron
    Rk = R * keep[..., None]  # nloc x nnei x 4
    Rdk = Rd * keep[..., None]
    T = np.zeros((nloc, M1, 4), dtype=R.dtype)  # nloc x M1 x 4
    Td = np.zeros_like(T)
    emb = []
    for rows, sl, idx in _embedding_groups(desc, atype_loc):
        Rg, Rdg = Rk[rows, sl], Rdk[rows, sl]  # nrows x sel x 4
        G, Gd, c = mlp_forward_dual(Rg[..., :1], Rdg[..., :1], desc.embeddings[idx])
        T[rows] += cloud_sum_forward(G, Rg)[0]
        Td[rows] += cloud_sum_forward(Gd, Rg)[0] + cloud_sum_forward(G, Rdg)[0]
        emb.append((rows, sl, c, idx))
    T /= nnei
    Td /= nnei
    D, _ = gram_forward(T, M2)  # nloc x M1 x M2
    Dd = gram_tangent(T, Td, M2)
    return (D.reshape(nloc, M1 * M2), Dd.reshape(nloc, M1 * M2),
            (Rk, Rdk, T, Td, emb, M1, M2, len(desc.embeddings)))


def se_e2_a_backward_dual(Dbar, Ddbar, cache):
    """Parameter gradients of ``<Dbar, D> + <Ddbar, Dd>``: ``(None, grads)``.

    ``grads``: a list with one list of layer gradients per embedding net (``None``
    for unused nets).  ``d_input`` is ``None``: training needs only the parameter
    gradients, so ``(R̄, Ṙ̄)`` are not formed."""
    Rk, Rdk, T, Td, emb, M1, M2, nnets = cache
    nloc, nnei, _ = Rk.shape
    Dbar = Dbar.reshape(nloc, M1, M2)
    Ddbar = Ddbar.reshape(nloc, M1, M2)
    (Tbar, Tdbar), _ = gram_backward_dual(Dbar, Ddbar, T, Td, M2)  # nloc x M1 x 4
    Tbar /= nnei
    Tdbar /= nnei
    grads = [None] * nnets
    for rows, sl, c, idx in emb:
        Rg, Rdg = Rk[rows, sl], Rdk[rows, sl]
        one = np.float64(1.0)
        Gbar = cloud_sum_backward(Tbar[rows], (None, Rg, one))[0][0] + \
            cloud_sum_backward(Tdbar[rows], (None, Rdg, one))[0][0]
        Gdbar = cloud_sum_backward(Tdbar[rows], (None, Rg, one))[0][0]
        _, g = mlp_backward_dual(Gbar, Gdbar, c)
        grads[idx] = g if grads[idx] is None else _add_layer_grads(grads[idx], g)
    return None, grads


def _add_layer_grads(a, b):
    return [{k: (x[k] + y[k] if x[k] is not None else None) for k in x} for x, y in zip(a, b)]
