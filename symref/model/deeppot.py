r"""DeepPot: coordinates -> neighbours -> environment rows -> se_e2_a -> energy fitting.

Energy, forces and virial of one frame (eV, eV/Å, eV):

.. math::

    E = \sum_i \big(E^{fit}_i + b^{out}_{t_i}\big),\qquad
    \mathbf F_k = -\frac{\partial E}{\partial \mathbf x_k}
        = \sum_{j} \mathbf g_{kj} - \sum_{i} \mathbf g_{ik},\qquad
    W_{ab} = -\sum_{(i,j)} g_{ij,a}\, r_{ji,b}

where :math:`\mathbf g_{ij} = \partial E / \partial \mathbf r_{ji}` is the
gradient with respect to the pair vector of centre i and neighbour slot j,
obtained by the hand-written backward pass (fitting -> D -> T -> G -> R ->
r_ji).  Because :math:`\mathbf r_{ji} = \mathbf x_j - \mathbf x_i + \mathbf n h`,
the virial equals :math:`-(\partial E/\partial h)^\top h` for the cell ``h``
(rows are cell vectors); ASE's stress is :math:`-W/V`.  The per-atom virial
follows deepmd-kit: pair (i, j) is assigned to the neighbour atom,
:math:`W^{(j)}_{ab} = -\sum_i g_{ij,a} r_{ji,b}` (images are folded onto their
atom); its sum over atoms is W.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from symref.model.backends import check_backend, frame_function
from symref.model.base import SeE2AModel, dtype_of, normalize_inputs
from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.fitting import energy_fitting_backward, energy_fitting_forward
from symref.reference.neighbors import pair_forces_virial
from symref.reference.nn import mlp_astype


@dataclass
class DeepPot(SeE2AModel):
    """A Deep Potential (se_e2_a, se_e2_r or a hybrid of them + energy fitting) model.

    ``fitting``: an :class:`~symref.reference.fitting.EnergyFitting`.
    ``out_bias``: ntypes, the model-level output bias deepmd-kit 3.x adds to
    every atomic energy (its ``@variables.out_bias[0, :, 0]``); ``out_std``
    likewise (stored, not used for energies).  ``atom_exclude_types``: types
    whose atomic energy is zero; ``pair_exclude_types``: type pairs removed
    from the neighbour list (their slots become padding).  Input checks,
    neighbour list, environment rows and descriptor: :class:`~symref.model.base.SeE2AModel`.
    """

    # ------------------------------------------------------------------ API
    def evaluate(self, coord, atype, box=None, *, precision: str | None = None,
                 truncate: bool = False, backend: str = "numba") -> dict:
        """Energy, forces and virial of one or more frames.

        Parameters
        ----------
        coord : (nframes, natoms, 3) or (nframes, 3*natoms) Å; a single frame
            without the leading axis is accepted.
        atype : (natoms,) ints indexing ``type_map`` (or (nframes, natoms)).
        box : None for molecules, else (nframes, 9) or (nframes, 3, 3) (rows
            are cell vectors, Å; a single (9,) or (3, 3) cell is accepted).
        precision : "float64" (default: the model's) or "float32".
        truncate : keep only the nearest ``sel`` neighbours (deepmd-kit's
            behaviour) instead of raising when ``sel`` is exceeded.
        backend : "numba" (default: the fast CPU path of :mod:`symref.fast.cpu`,
            O(N) neighbour search and fused multi-threaded kernels) or "numpy"
            (the reference, O(N²) neighbour search; the ground truth the fast
            path is tested against).  Both precisions run on the fast path
            (float32: float32 kernels and BLAS, energies, forces and virials
            summed in float64, returned as float32); models it cannot evaluate
            exactly (see :func:`symref.fast.cpu.unsupported_reason`) use the
            reference, with a warning.  "cuda": the GPU path of :mod:`symref.fast.cuda`
            (numba-cuda; float64 and float32), an ``ImportError``/``RuntimeError``
            saying what to install when numba-cuda or a GPU is missing.

        Returns
        -------
        dict with ``energy`` (nf,), ``forces`` (nf, natoms, 3),
        ``virial`` (nf, 3, 3), ``atom_energy`` (nf, natoms),
        ``atom_virial`` (nf, natoms, 3, 3).
        """
        check_backend(backend)
        coord, atype, box = normalize_inputs(coord, atype, box, self.ntypes)
        dtype = dtype_of(precision or self.descriptor.precision)
        model = self if dtype == np.float64 else self.astype(dtype)
        # the backend's frame function (symref.model.backends), else the reference's
        frame_fn = frame_function(model, backend, dtype) or model._evaluate_frame
        nf, natoms, _ = coord.shape
        out = {
            "energy": np.zeros(nf, dtype=dtype),
            "forces": np.zeros((nf, natoms, 3), dtype=dtype),
            "virial": np.zeros((nf, 3, 3), dtype=dtype),
            "atom_energy": np.zeros((nf, natoms), dtype=dtype),
            "atom_virial": np.zeros((nf, natoms, 3, 3), dtype=dtype),
        }
        for f in range(nf):
            res = frame_fn(coord[f], atype[f], None if box is None else box[f],
                           dtype=dtype, truncate=truncate, frame=f)
            for k, v in res.items():
                out[k][f] = v
        return out

    def _evaluate_frame(self, coord, atype, box, *, dtype, truncate, frame):
        s = self.trace_frame(coord, atype, box, dtype=dtype, truncate=truncate, frame=frame)
        return {k: s[k] for k in ("energy", "forces", "virial", "atom_energy", "atom_virial")}

    def trace_frame(self, coord, atype, box, *, dtype=np.float64, truncate=False, frame=None):
        """One frame on the reference path, keeping every intermediate (the golden stages
        of :mod:`symref.io.golden` read them from here).

        Returns a dict: ``nlist``, ``mask`` (nloc x nnei), ``rij`` (nloc x nnei x 3),
        ``env_mat`` (nloc x nnei x 4), ``d_cache`` (of
        the descriptor's forward), ``T`` (se_e2_a: nloc x M1 x 4; None for se_e2_r),
        ``descriptor`` (nloc x M1*M2), ``f_cache`` (of the energy fitting), ``fitting_out``
        (nloc, fitting net + ``bias_atom_e``), ``atom_energy``, ``energy``, ``dE_dD``
        (nloc x M1*M2), ``dE_denv_mat`` (nloc x nnei x 4), ``dE_drij`` (nloc x nnei x 3),
        ``forces``, ``virial``, ``atom_virial``.
        """
        nlist, mask, rij, R, env_cache = self.environment(coord, atype, box, dtype=dtype,
                                                          truncate=truncate, frame=frame)
        D, d_cache = self.descriptor_forward(R, atype, nlist)  # nloc x M1*M2
        e_fit, f_cache = energy_fitting_forward(D, atype, self.fitting)  # nloc
        alive = self.alive(atype)  # nloc
        atom_e = np.where(alive, e_fit + self.out_bias[atype], 0.0).astype(dtype)
        # backward: dE/dE_i = 1 for atoms that count
        dD, _ = energy_fitting_backward(alive.astype(dtype), f_cache)
        ops = descriptor_ops(self.descriptor)
        dR, _ = ops.backward(dD, d_cache)  # nloc x nnei x 4 (a hybrid: one per member)
        g, _ = ops.env_backward(dR, env_cache)  # nloc x nnei x 3 = dE/dr_ji
        forces, atom_virial = pair_forces_virial(g, nlist, mask, rij, coord.shape[0])
        return {"nlist": nlist, "mask": mask, "rij": rij, "env_mat": R, "d_cache": d_cache,
                "T": d_cache[2] if isinstance(self.descriptor, SeE2A) else None,
                "descriptor": D, "f_cache": f_cache, "fitting_out": e_fit,
                "atom_energy": atom_e, "energy": atom_e.sum(), "dE_dD": dD, "dE_denv_mat": dR,
                "dE_drij": g, "forces": forces, "virial": atom_virial.sum(axis=0),
                "atom_virial": atom_virial}

    def astype(self, dtype) -> "DeepPot":
        """Copy with every parameter cast to ``dtype`` (e.g. float32)."""
        m = copy.deepcopy(self)
        for d in getattr(m.descriptor, "members", [m.descriptor]):  # a hybrid: each member
            d.embeddings = [mlp_astype(net, dtype) for net in d.embeddings]
            d.davg, d.dstd = d.davg.astype(dtype), d.dstd.astype(dtype)
        m.fitting.nets = [mlp_astype(net, dtype) for net in m.fitting.nets]
        m.fitting.bias_atom_e = m.fitting.bias_atom_e.astype(dtype)
        m.out_bias = m.out_bias.astype(dtype)
        return m
