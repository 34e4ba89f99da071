r"""The numba path of a DeepPot on an se_e3 or se_e2_r descriptor (``backend="numba"``).

The embedding nets on scalars dominate these models (se_e3: sel_p x sel_q scalars per
centre and group pair; se_e2_r: one per slot; both ways), so they run in the kernels of
:mod:`symref.fast.kernels.se_e3` (one centre per thread, the net evaluated one scalar
at a time, never an nloc x sel x sel x M array); the neighbour list is the O(N) one of
:mod:`symref.fast.kernels.neighbors`; the rest of the frame -- environment rows and
their backward, forces -- is the reference's (:meth:`model.environment`,
:func:`symref.reference.neighbors.pair_forces_virial`), whose cost is O(nloc x nnei); the
fitting nets run in blocks of atoms on numba (``fitting``, handed over by
:func:`symref.fast.cpu.frame_evaluator`: :func:`symref.fast.cpu.energy_fitting_blocks`).
Same numbers as the reference to round-off (tests/test_kernels_se_e3.py).  Float64.

:func:`scalar_descriptor_forward` / :func:`scalar_descriptor_backward` are the descriptor
alone (rows in, D out; D̄ in, R̄ out): :mod:`symref.fast.hybrid` runs them on the slots of
a hybrid's se_e2_r and se_e3 members.
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels.neighbors import padded_neighbor_list
from symref.reference.descriptor.se_e2_a import keep_mask
from symref.reference.descriptor.se_e2_r import RES_RESCALE, SeE2R
from symref.reference.env import env_mat_backward
from symref.reference.fitting import energy_fitting_backward, energy_fitting_forward
from symref.reference.neighbors import pair_forces_virial


def scalar_descriptor_forward(desc, R, keep):
    """``(D, ctx)``: the descriptor (nloc x dim_out) of an se_e2_r or se_e3 ``desc`` on its
    rows ``R`` (nloc x nnei x 4) with the exclusion mask ``keep`` (nloc x nnei), by the
    kernels of :mod:`symref.fast.kernels.se_e3`; ``ctx`` for
    :func:`scalar_descriptor_backward`."""
    if getattr(desc, "tables", None) is not None:  # compressed: the tables' kernels
        from symref.fast.se_e3_tabulated import tabulated_descriptor_forward
        return tabulated_descriptor_forward(desc, R, keep)
    nets = ks.pack_nets(desc.embeddings)
    if isinstance(desc, SeE2R):  # radial column only
        x, cols = np.ascontiguousarray(R[..., 0] * keep), 0  # nloc x nnei
        geometry = (ks.group_table(desc.sel), RES_RESCALE / desc.nnei)
        forward, backward = ks.se_e2_r_forward, ks.se_e2_r_backward
    else:  # se_e3: the three spatial columns
        x, cols = np.ascontiguousarray(R[..., 1:] * keep[..., None]), slice(1, 4)  # nloc x nnei x 3
        geometry = ks.pair_table(desc.sel)
        forward, backward = ks.se_e3_forward, ks.se_e3_backward
    D = np.empty((R.shape[0], desc.dim_out))  # nloc x M
    forward(x, *geometry, *nets, D)
    return D, (x, cols, geometry, nets, backward, keep, R.shape)


def scalar_descriptor_backward(dD, ctx):
    """``dR`` (nloc x nnei x 4): the gradient of ``<dD, D>`` with respect to the rows
    (zero on the columns the descriptor does not read and on excluded slots)."""
    x, cols, geometry, nets, backward, keep, shape = ctx
    dx = np.empty_like(x)
    backward(x, *geometry, *nets, np.ascontiguousarray(dD), dx)
    dR = np.zeros(shape)  # nloc x nnei x 4
    dR[..., cols] = dx * (keep if cols == 0 else keep[..., None])
    return dR


def fitting_reference(model, D, atype, weight=None):
    """``(e_fit, dD)`` of the reference's fitting nets (the ``fitting`` argument of
    :func:`evaluate_frame` by default): atomic energies (bias_atom_e included) and
    dD = d(sum_i weight_i e_i)/dD (``weight``: default the alive atoms, 1.0 or 0.0)."""
    e_fit, f_cache = energy_fitting_forward(D, atype, model.fitting)  # nloc
    if weight is None:
        weight = model.alive(atype).astype(np.float64)
    dD, _ = energy_fitting_backward(weight, f_cache)
    return e_fit, dD


def centre_weight(model, atype, ncentre):
    """1.0 for the alive atoms among the centres ``0..ncentre-1`` (None: every atom), else 0.0:
    the atoms whose energies a frame (or a cluster of :mod:`symref.lammps`) adds up."""
    w = model.alive(atype).astype(np.float64)  # n
    if ncentre is not None:
        if not 0 <= int(ncentre) <= len(atype):
            raise ValueError(f"ncentre must be in [0, {len(atype)}], got {ncentre}")
        w[int(ncentre):] = 0.0
    return w


def cluster_pair_list(model, coord, atype, box, ncentre, nvirial, pair_list, truncate, frame):
    """The pair list of a frame (``pair_list`` if given, else the O(N) search with
    ``ncentre``: only atoms ``0..ncentre-1`` get neighbours), after checking ``nvirial``."""
    from symref.fast.kernels.neighbors import build_pair_list

    n = len(atype)
    nc = n if ncentre is None else int(ncentre)
    if nvirial is not None and not 0 <= int(nvirial) <= nc:
        raise ValueError(f"nvirial must be in [0, ncentre={nc}], got {nvirial}")
    d = model.descriptor
    pl = pair_list if pair_list is not None else build_pair_list(
        coord, atype, box, d.rcut, d.sel, truncate=truncate, frame=frame, ncentre=nc)
    if pl.ptr.shape[0] != n + 1:
        raise ValueError(f"pair_list has {pl.ptr.shape[0] - 1} centres, the frame {n} atoms")
    return pl


def rows_virial(g, rij, nrows):
    """The virial of the energies of centres ``0..nrows-1`` alone, -sum g_ij ⊗ r_ji over
    their slots (3 x 3; ``g``, ``rij`` nloc x nnei x 3): a pair's dE/dr belongs to its
    centre's energy."""
    return -np.einsum("isa,isb->ab", g[:nrows], rij[:nrows])


def evaluate_frame(model, coord, atype, box, *, truncate=False, frame=None,
                   fitting=fitting_reference, ncentre=None, nvirial=None, pair_list=None):
    """Energy, forces, virial, atomic energies and virials of one frame (keys as
    :meth:`symref.model.deeppot.DeepPot.evaluate`'s, without the frame axis).
    ``fitting(model, D, atype, weight) -> (e_fit, dD)``: :func:`fitting_reference` or its
    numba twin :func:`symref.fast.cpu.energy_fitting_blocks`.

    Clusters (:mod:`symref.lammps`'s ghost mode), as :func:`symref.fast.cpu.evaluate_frame`:
    with ``ncentre`` only atoms ``0..ncentre-1`` are centres (the others' atomic energies
    are 0) and ``forces`` = -d(energy)/dx for every atom; with ``nvirial`` the result
    also has ``centre_virial``, the virial of the energies of atoms ``0..nvirial-1``;
    ``pair_list``: the frame's :class:`~symref.fast.kernels.neighbors.PairList` (built with
    the model's rcut and sel, and ``ncentre``)."""
    desc = model.descriptor
    pl = cluster_pair_list(model, coord, atype, box, ncentre, nvirial, pair_list, truncate,
                           frame)
    nlist, mask, rij, R, env_cache = model.environment(
        coord, atype, box, truncate=truncate, frame=frame,
        neighbor_list=lambda *a, **kw: padded_neighbor_list(pl, desc.sel))  # O(N)
    D, ctx = scalar_descriptor_forward(desc, R, keep_mask(desc, atype, nlist))
    weight = centre_weight(model, atype, ncentre)  # n
    e_fit, dD = fitting(model, D, atype, weight)  # nloc, nloc x M
    atom_e = np.where(weight > 0, e_fit + model.out_bias[atype], 0.0)
    g, _ = env_mat_backward(scalar_descriptor_backward(dD, ctx), env_cache)  # nloc x nnei x 3
    forces, atom_virial = pair_forces_virial(g, nlist, mask, rij, coord.shape[0])
    out = {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
           "atom_energy": atom_e, "atom_virial": atom_virial}
    if nvirial is not None:
        out["centre_virial"] = rows_virial(g, rij, int(nvirial))
    return out
