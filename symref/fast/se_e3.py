r"""The numba path of a DeepPot on an se_e3 or se_e2_r descriptor (``backend="numba"``).

The embedding nets on scalars dominate these models (se_e3: sel_p x sel_q scalars per
centre and group pair; se_e2_r: one per slot; both ways), so they run in the kernels of
:mod:`symref.fast.kernels.se_e3` (one centre per thread, the net evaluated one scalar
at a time, never an nloc x sel x sel x M array); the neighbour list is the O(N) one of
:mod:`symref.fast.kernels.neighbors`; the rest of the frame -- environment rows and
their backward, fitting nets, forces -- is the reference's
(:meth:`model.environment`, :mod:`symref.reference.fitting`,
:func:`symref.reference.neighbors.pair_forces_virial`), whose cost is O(nloc x nnei).
Same numbers as the reference to round-off (tests/test_kernels_se_e3.py).  Float64.

:func:`scalar_descriptor_forward` / :func:`scalar_descriptor_backward` are the descriptor
alone (rows in, D out; D̄ in, R̄ out): :mod:`symref.fast.hybrid` runs them on the slots of
a hybrid's se_e2_r and se_e3 members.
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels.neighbors import build_neighbor_list_fast
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


def evaluate_frame(model, coord, atype, box, *, truncate=False, frame=None):
    """Energy, forces, virial, atomic energies and virials of one frame (keys as
    :meth:`symref.model.deeppot.DeepPot.evaluate`'s, without the frame axis)."""
    desc = model.descriptor
    nlist, mask, rij, R, env_cache = model.environment(
        coord, atype, box, truncate=truncate, frame=frame,
        neighbor_list=build_neighbor_list_fast)  # O(N), bit for bit the reference's
    D, ctx = scalar_descriptor_forward(desc, R, keep_mask(desc, atype, nlist))
    e_fit, f_cache = energy_fitting_forward(D, atype, model.fitting)  # nloc
    alive = model.alive(atype)
    atom_e = np.where(alive, e_fit + model.out_bias[atype], 0.0)
    dD, _ = energy_fitting_backward(alive.astype(np.float64), f_cache)  # nloc x M
    g, _ = env_mat_backward(scalar_descriptor_backward(dD, ctx), env_cache)  # nloc x nnei x 3
    forces, atom_virial = pair_forces_virial(g, nlist, mask, rij, coord.shape[0])
    return {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
            "atom_energy": atom_e, "atom_virial": atom_virial}
