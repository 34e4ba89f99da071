r"""The numba path of a DeepPot on a hybrid descriptor (``backend="numba"``).

No new formula: each member runs its own fast path on its own slots and the
descriptors are concatenated before the fitting, as in
:mod:`symref.reference.descriptor.hybrid`:

1. **One neighbour search** at the hybrid's rcut and sel (the largest of the members'),
   :func:`~symref.fast.kernels.neighbors.build_pair_list` (O(N), bit for bit the
   reference's list).  Member m reads the first ``sel_m[t]`` slots of every type block
   (:func:`symref.reference.descriptor.hybrid.member_slots`).
2. **se_e2_a members** on the compact pairs of those slots (:func:`member_pair_list`):
   the blocks of :mod:`symref.fast.cpu` (:func:`~symref.fast.cpu.embed_forward`,
   ``descriptor_forward``), their activations kept until the backward pass, as
   :mod:`symref.fast.cpu_tensor` does.  A neighbour of a member's slots beyond the member's
   rcut has switch 0: its row is a padded slot's, as in the reference.
3. **se_e2_r and se_e3 members** on their padded rows (:meth:`model.environment`, the
   hybrid's :func:`~symref.reference.descriptor.hybrid.hybrid_env_forward`) with the
   kernels of :mod:`symref.fast.kernels.se_e3`
   (:func:`symref.fast.se_e3.scalar_descriptor_forward`).  The environment rows are
   computed only when the hybrid has such a member.
4. The fitting and its backward run on :math:`D = [D^{(1)},\dots,D^{(n)}]` (``fitting``:
   :func:`symref.fast.cpu.energy_fitting_blocks` on numba from
   :func:`~symref.fast.cpu.frame_evaluator`, the reference's by default), seeded with the
   alive atoms;
   :math:`\bar D` is split by columns.  Each se_e2_a member's :math:`\bar D^{(m)}` goes back
   through its blocks to :math:`\partial E/\partial\mathbf r_{ji}` of its pairs and is
   gathered into forces and atomic virials
   (:func:`~symref.fast.cpu.gather_forces_virial`); the scalar members' row gradients
   go through ``env_mat_backward`` onto the hybrid's slots and
   :func:`~symref.reference.neighbors.pair_forces_virial`.  Forces and virials add.

Float64 (``symref.fast.cpu.frame_evaluator`` falls back to the reference for float32).
Same numbers as the reference to round-off (tests/test_hybrid_numba.py).
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels.neighbors import PairList, padded_neighbor_list
from symref.fast.se_e3 import (centre_weight, cluster_pair_list, fitting_reference,
                              rows_virial, scalar_descriptor_backward,
                              scalar_descriptor_forward)
from symref.reference.descriptor.hybrid import member_slots
from symref.reference.descriptor.se_e2_a import SeE2A, keep_mask
from symref.reference.env import env_mat_backward
from symref.reference.neighbors import pair_forces_virial


def member_pair_list(pl: PairList, sel, member_sel) -> PairList:
    """The pairs of ``pl`` (built with the hybrid's ``sel``) in a member's slots: the first
    ``member_sel[t]`` slots of every type block, renumbered in the member's layout."""
    off = np.concatenate([[0], np.cumsum(sel)]).astype(np.int64)  # ntypes+1
    t = np.searchsorted(off, pl.slot, side="right") - 1  # P: the slot's neighbour type
    within = pl.slot - off[t]  # P: position inside the type block
    m_sel = np.asarray(member_sel, dtype=np.int64)
    keep = within < m_sel[t]  # P
    csum = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    m_off = np.concatenate([[0], np.cumsum(m_sel)]).astype(np.int64)
    return PairList(ptr=csum[pl.ptr], j=pl.j[keep], slot=(m_off[t] + within)[keep],
                    rij=np.ascontiguousarray(pl.rij[keep]), shift=pl.shift[keep],
                    counts=np.minimum(pl.counts, m_sel[None, :]))


def evaluate_frame(model, coord, atype, box, *, se_e2_a_forward, se_e2_a_backward,
                   truncate=False, frame=None, fitting=fitting_reference, ncentre=None,
                   nvirial=None, pair_list=None):
    """Energy, forces, virial, atomic energies and virials of one frame (keys as
    :meth:`symref.model.deeppot.DeepPot.evaluate`'s, without the frame axis).

    ``se_e2_a_forward(model, member, pair_list, atype) -> (D, ctx)`` and
    ``se_e2_a_backward(dD, ctx) -> (forces, atom_virial)``: the se_e2_a members' fast path
    (:func:`symref.fast.cpu.se_e2_a_member_forward` / ``_backward``, handed over by
    :func:`symref.fast.cpu.frame_evaluator`: this module does not import the blocks'
    module, which dispatches to it); ``fitting(model, D, atype, weight) -> (e_fit, dD)``
    likewise (:func:`symref.fast.se_e3.fitting_reference` by default).  Clusters
    (``ncentre``, ``nvirial``, ``pair_list``): as :func:`symref.fast.se_e3.evaluate_frame`;
    with ``nvirial``, ``se_e2_a_backward(dD, ctx, nvirial)`` also returns the virial of
    the energies of atoms ``0..nvirial-1``."""
    h = model.descriptor
    n = coord.shape[0]
    pl = cluster_pair_list(model, coord, atype, box, ncentre, nvirial, pair_list, truncate,
                           frame)
    slots = member_slots(h)
    scalar = [k for k, m in enumerate(h.members) if not isinstance(m, SeE2A)]
    if scalar:  # padded rows of every member (the hybrid's environment), from the same list
        nlist, mask, rij, Rs, env_cache = model.environment(
            coord, atype, box, truncate=truncate, frame=frame,
            neighbor_list=lambda *a, **kw: padded_neighbor_list(pl, h.sel))
        env_caches = env_cache[2]  # hybrid_env_forward's cache: (shape, slots, caches)
    Ds, ctxs = [], []
    for k, m in enumerate(h.members):
        if k in scalar:
            D, ctx = scalar_descriptor_forward(m, Rs[k], keep_mask(m, atype, nlist[:, slots[k]]))
        else:
            D, ctx = se_e2_a_forward(model, m, member_pair_list(pl, h.sel, m.sel), atype)
        Ds.append(D)
        ctxs.append(ctx)
    weight = centre_weight(model, atype, ncentre)  # n
    e_fit, dD = fitting(model, np.concatenate(Ds, axis=1), atype, weight)  # nloc, nloc x dim
    atom_e = np.where(weight > 0, e_fit + model.out_bias[atype], 0.0)
    centre_virial = np.zeros((3, 3))
    dDs = np.split(dD, np.cumsum([D.shape[1] for D in Ds])[:-1], axis=1)
    forces, atom_virial = np.zeros((n, 3)), np.zeros((n, 3, 3))
    g = np.zeros((n, h.nnei, 3)) if scalar else None  # nloc x nnei x 3, the hybrid's slots
    for k, (dDm, ctx) in enumerate(zip(dDs, ctxs)):
        if k in scalar:
            dR = scalar_descriptor_backward(dDm, ctx)  # nloc x nnei_m x 4
            g[:, slots[k]] += env_mat_backward(dR, env_caches[k])[0]
        elif nvirial is None:
            F, W = se_e2_a_backward(dDm, ctx)
            forces += F
            atom_virial += W
        else:
            F, W, Wc = se_e2_a_backward(dDm, ctx, int(nvirial))
            forces += F
            atom_virial += W
            centre_virial += Wc
    if scalar:
        F, W = pair_forces_virial(g, nlist, mask, rij, n)
        forces += F
        atom_virial += W
        if nvirial is not None:
            centre_virial += rows_virial(g, rij, int(nvirial))
    out = {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
           "atom_energy": atom_e, "atom_virial": atom_virial}
    if nvirial is not None:
        out["centre_virial"] = centre_virial
    return out
