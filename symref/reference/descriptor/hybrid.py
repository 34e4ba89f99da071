r"""``hybrid``: the concatenation of member descriptors, each with its own rcut, sel and statistics.

deepmd-kit's ``DescrptHybrid``: one neighbour list is built for the hybrid, at
:math:`r_c = \max_m r_c^{(m)}` with :math:`sel_t = \max_m sel^{(m)}_t` slots per
neighbour type (nearest first inside each type block).  Member m reads the first
:math:`sel^{(m)}_t` slots of every type block (:func:`member_slots`), computes its own
environment rows there with its own ``rcut``/``rcut_smth``/``davg``/``dstd``
(:func:`symref.reference.env.env_mat_forward`) and its own descriptor
:math:`D^{(m)}`; the hybrid's descriptor is

.. math::  D = [D^{(1)}, D^{(2)}, \dots, D^{(n)}]\quad(\textstyle\sum_m \dim D^{(m)}).

A neighbour beyond a member's rcut that still sits in one of its slots has switch
:math:`w = 0`, so its row is a padded slot's (the member alone would see the same
rows); the member's ``exclude_types`` act on its own slots.

Backward: :math:`\bar D` is split by columns, each member's backward gives
:math:`\bar R^{(m)}`, :func:`~symref.reference.env.env_mat_backward` turns it into
:math:`\partial L/\partial \mathbf r_{ji}` on the member's slots, and the members'
contributions add on the hybrid's slots (:func:`hybrid_env_backward`).  The tangent
pass is the same composition in forward mode.

Members may be any descriptor of :mod:`symref.reference.descriptor.dispatch` except a
hybrid; they must agree on the number of types (``sel`` lengths) and on precision.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symref.reference.descriptor.slots import TypeSlots
from symref.reference.env import env_mat_backward, env_mat_forward, env_mat_tangent


@dataclass
class Hybrid(TypeSlots):
    """A list of member descriptors (``SeE2A`` / ``SeE2R``), concatenated.

    ``sel`` (per type, the largest of the members'), ``rcut`` (the largest) and
    ``embeddings`` (the members' nets in member order, the flat index of
    :func:`symref.model.params.parameters`) are derived from the members.
    """

    members: list

    def __post_init__(self):
        if not self.members:
            raise ValueError("descriptor.list: a hybrid descriptor needs at least one member")
        for k, m in enumerate(self.members):
            if isinstance(m, Hybrid):
                raise ValueError(f"descriptor.list[{k}]: a hybrid cannot contain a hybrid")
            if len(m.sel) != len(self.members[0].sel):
                raise ValueError(f"descriptor.list[{k}].sel has {len(m.sel)} types, "
                                 f"descriptor.list[0].sel has {len(self.members[0].sel)}")
            if m.precision != self.members[0].precision:
                raise ValueError(f"descriptor.list[{k}].precision {m.precision!r} differs from "
                                 f"descriptor.list[0].precision {self.members[0].precision!r}")

    @property
    def sel(self) -> list[int]:
        return [int(s) for s in np.max([m.sel for m in self.members], axis=0)]

    @property
    def rcut(self) -> float:
        return max(float(m.rcut) for m in self.members)

    @property
    def precision(self) -> str:
        return self.members[0].precision

    @property
    def dim_out(self) -> int:
        return sum(m.dim_out for m in self.members)

    @property
    def embeddings(self) -> list:
        return [net for m in self.members for net in m.embeddings]


def member_slots(h: Hybrid) -> list[np.ndarray]:
    """For each member, the hybrid slots it reads (nnei_m ints): the first ``sel_m[t]``
    slots of every type block of the hybrid's layout."""
    off = h.sel_offsets
    return [np.concatenate([off[t] + np.arange(s) for t, s in enumerate(m.sel)]).astype(np.int64)
            for m in h.members]


def hybrid_env_forward(rij, mask, atype_loc, h: Hybrid):
    """Every member's environment rows: ``(R list, cache)``; ``R[m]`` nloc x nnei_m x 4.

    ``rij`` nloc x nnei x 3 and ``mask`` nloc x nnei in the hybrid's slot layout."""
    Rs, caches = [], []
    for m, idx in zip(h.members, member_slots(h)):
        R, c = env_mat_forward(rij[:, idx], mask[:, idx], m.davg[atype_loc], m.dstd[atype_loc],
                               m.rcut, m.rcut_smth, m.env_protection)  # nloc x nnei_m x 4
        Rs.append(R)
        caches.append(c)
    return Rs, (rij.shape, member_slots(h), caches)


def hybrid_env_backward(dRs, cache):
    """Backward of :func:`hybrid_env_forward`: ``(dL/drij (nloc x nnei x 3), None)``."""
    shape, slots, caches = cache
    drij = np.zeros(shape, dtype=dRs[0].dtype)  # nloc x nnei x 3
    for dR, idx, c in zip(dRs, slots, caches):
        drij[:, idx] += env_mat_backward(dR, c)[0]
    return drij, None


def hybrid_env_tangent(rdot, cache):
    """Tangent of :func:`hybrid_env_forward` along ``rdot`` (nloc x nnei x 3): the list of
    every member's row tangents."""
    _, slots, caches = cache
    return [env_mat_tangent(rdot[:, idx], c) for idx, c in zip(slots, caches)]


def hybrid_keep(h: Hybrid, atype_loc, nlist, keep_fn):
    """Every member's exclusion mask on its own slots (``keep_fn(member, atype, nlist_m)``)."""
    return [keep_fn(m, atype_loc, nlist[:, idx]) for m, idx in zip(h.members, member_slots(h))]


def hybrid_forward(Rs, atype_loc, keeps, h: Hybrid, ops_of):
    """``D`` (nloc x dim_out) = the members' descriptors side by side; ``(D, cache)``.

    ``ops_of(member)`` gives the member's functions
    (:func:`symref.reference.descriptor.dispatch.descriptor_ops`)."""
    outs = [ops_of(m).forward(R, atype_loc, k, m) for m, R, k in zip(h.members, Rs, keeps)]
    widths = [D.shape[1] for D, _ in outs]
    ops = [ops_of(m) for m in h.members]
    counts = [len(m.embeddings) for m in h.members]
    return (np.concatenate([D for D, _ in outs], axis=1),
            (ops, widths, [c for _, c in outs], counts))


def _split(a, widths):
    return np.split(a, np.cumsum(widths)[:-1], axis=1)


def hybrid_backward(dD, cache, *, param_grads: bool = False):
    """Backward of :func:`hybrid_forward`: ``(dR list, grads)``; ``grads`` (with
    ``param_grads``) a dict keyed by the flat net index of ``Hybrid.embeddings``."""
    ops, widths, caches, counts = cache
    dRs, grads, base = [], {}, 0
    for op, dDm, c, n in zip(ops, _split(dD, widths), caches, counts):
        dR, g = op.backward(dDm, c, param_grads=param_grads)
        dRs.append(dR)
        for k, v in (g or {}).items():
            grads[base + k] = v
        base += n
    return dRs, (grads if param_grads else None)


def hybrid_forward_dual(Rs, Rds, atype_loc, keeps, h: Hybrid, ops_of):
    """``(D, Dd, cache)``: the members' descriptors and tangents side by side."""
    outs = [ops_of(m).forward_dual(R, Rd, atype_loc, k, m)
            for m, R, Rd, k in zip(h.members, Rs, Rds, keeps)]
    ops = [ops_of(m) for m in h.members]
    widths = [o[0].shape[1] for o in outs]
    return (np.concatenate([o[0] for o in outs], axis=1),
            np.concatenate([o[1] for o in outs], axis=1), (ops, widths, [o[2] for o in outs]))


def hybrid_backward_dual(Dbar, Ddbar, cache):
    """Parameter gradients of ``<Dbar, D> + <Ddbar, Dd>``: ``(None, grads)``, one entry per
    net of ``Hybrid.embeddings`` (``None`` for unused nets)."""
    ops, widths, caches = cache
    grads = []
    for op, b, bd, c in zip(ops, _split(Dbar, widths), _split(Ddbar, widths), caches):
        grads += op.backward_dual(b, bd, c)[1]
    return None, grads
