r"""The numba path of a DeepPot on an se_e3 descriptor (``backend="numba"``).

The three-body sums dominate an se_e3 model (sel_p x sel_q scalars through a net per
centre and group pair, both ways), so they run in the kernels of
:mod:`symref.fast.kernels.se_e3` (one centre per thread, the net evaluated one scalar
at a time, never an nloc x sel x sel x M array); the neighbour list is the O(N) one of
:mod:`symref.fast.kernels.neighbors`; the rest of the frame -- environment rows and
their backward, fitting nets, forces -- is the reference's
(:meth:`model.environment`, :mod:`symref.reference.fitting`,
:func:`symref.reference.neighbors.pair_forces_virial`), whose cost is O(nloc x nnei).
Same numbers as the reference to round-off (tests/test_kernels_se_e3.py).  Float64.
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels.neighbors import build_neighbor_list_fast
from symref.reference.descriptor.se_e2_a import keep_mask
from symref.reference.env import env_mat_backward
from symref.reference.fitting import energy_fitting_backward, energy_fitting_forward
from symref.reference.neighbors import pair_forces_virial


def evaluate_frame(model, coord, atype, box, *, truncate=False, frame=None):
    """Energy, forces, virial, atomic energies and virials of one frame (keys as
    :meth:`symref.model.deeppot.DeepPot.evaluate`'s, without the frame axis)."""
    desc = model.descriptor
    nlist, mask, rij, R, env_cache = model.environment(
        coord, atype, box, truncate=truncate, frame=frame,
        neighbor_list=build_neighbor_list_fast)  # O(N), bit for bit the reference's
    keep = keep_mask(desc, atype, nlist)  # nloc x nnei
    X = np.ascontiguousarray(R[..., 1:] * keep[..., None])  # nloc x nnei x 3
    nets = ks.pack_nets(desc.embeddings)
    ranges, c = ks.pair_table(desc.sel)
    D = np.empty((X.shape[0], desc.dim_out))  # nloc x M
    ks.se_e3_forward(X, ranges, c, *nets, D)
    e_fit, f_cache = energy_fitting_forward(D, atype, model.fitting)  # nloc
    alive = model.alive(atype)
    atom_e = np.where(alive, e_fit + model.out_bias[atype], 0.0)
    dD, _ = energy_fitting_backward(alive.astype(np.float64), f_cache)  # nloc x M
    dX = np.empty_like(X)
    ks.se_e3_backward(X, ranges, c, *nets, np.ascontiguousarray(dD), dX)
    dR = np.zeros_like(R)  # nloc x nnei x 4
    dR[..., 1:] = dX * keep[..., None]
    g, _ = env_mat_backward(dR, env_cache)  # nloc x nnei x 3
    forces, atom_virial = pair_forces_virial(g, nlist, mask, rij, coord.shape[0])
    return {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
            "atom_energy": atom_e, "atom_virial": atom_virial}
