r"""DeepTensor: coordinates -> neighbours -> environment rows -> se_e2_a -> dipole / polarizability.

A sibling of :class:`~symref.model.deeppot.DeepPot`: both are a
:class:`~symref.model.base.SeE2AModel` (input checks, neighbour list, environment
rows, descriptor); this one ends in an equivariant head
(:class:`~symref.reference.fitting.TensorFitting`) instead of the energy fitting.
Float64, on the fast CPU path (:mod:`symref.fast.cpu_tensor`, ``backend="numba"``, the
default) or the NumPy reference (``backend="numpy"``, the ground truth the fast path is
tested against).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symref.model.backends import check_backend
from symref.fast import fallback_warning
from symref.model.base import SeE2AModel, normalize_inputs
from symref.reference.descriptor.se_e2_a import se_e2_a_backward
from symref.reference.env import env_mat_backward
from symref.reference.fitting import tensor_fitting_backward, tensor_fitting_forward


@dataclass
class DeepTensor(SeE2AModel):
    r"""DeepDipole / DeepPolar: se_e2_a + an equivariant head (:class:`~symref.reference.fitting.TensorFitting`).

    Atomic outputs (atom i of type t; zero for ``atom_exclude_types`` and the
    fitting's ``exclude_types``, i.e. atoms outside deepmd-kit's ``sel_type``):

    .. math::

        \boldsymbol\mu_i = \mathcal R_i^\top o_i,\qquad
        \alpha_i = \mathcal R_i^\top P_i \mathcal R_i + c_t s_t I + \bar b_t s_t I,

    with :math:`\mathcal R_i = T_{i,:,1:4}` (M1 x 3) and, for the polarizability
    with ``shift_diag``, :math:`\bar b_t` the mean of the diagonal of the
    model-level ``out_bias[t]`` (3 x 3); the dipole gets no model-level bias
    (deepmd-kit 3.x's ``DPDipoleAtomicModel``/``DPPolarAtomicModel``).  Global
    values are sums over atoms.  ``out_bias``/``out_std``: ntypes x 3 (dipole) or
    ntypes x 9 (polar).  Units are those of the labels (e.g. e·Å, Å³).

    Derivatives with respect to positions (``evaluate(..., derivative=True)``):
    for each output component c the backward pass is seeded with
    :math:`\bar y_i = e_c` for every atom, runs through the head (giving
    :math:`\bar D` and :math:`\bar{\mathcal R}`), the descriptor (``dT`` enters
    :func:`~symref.reference.descriptor.se_e2_a.se_e2_a_backward` directly) and the environment
    rows to :math:`\partial y_c/\partial \mathbf r_{ji}`, then
    :math:`\partial y_c/\partial \mathbf x_k = \sum_{(i,j): j = k} g_{ij} - \sum_{(i,j): i = k} g_{ij}`.
    """

    @property
    def kind(self) -> str:
        return self.fitting.kind

    @property
    def var_name(self) -> str:
        return "dipole" if self.kind == "dipole" else "polarizability"

    def evaluate(self, coord, atype, box=None, *, derivative: bool = False,
                 truncate: bool = False, backend: str = "numba") -> dict:
        """Global and atomic dipoles or polarizabilities of one or more frames (float64).

        Inputs as :meth:`symref.model.deeppot.DeepPot.evaluate`.  Returns ``dipole`` (nf, 3) and
        ``atom_dipole`` (nf, natoms, 3), or ``polarizability`` (nf, 3, 3) and
        ``atom_polarizability`` (nf, natoms, 3, 3); with ``derivative`` also
        ``dipole_derivative`` (nf, 3, natoms, 3) = ∂μ_a/∂x_{k,b} (what IR spectra
        need) or ``polarizability_derivative`` (nf, 3, 3, natoms, 3).

        ``backend``: ``"numba"`` (default; :mod:`symref.fast.cpu_tensor`: compact pair
        lists, blocks on threads; a model it cannot evaluate exactly runs on the reference
        with a warning), ``"numpy"`` (the reference) or ``"cuda"`` (no GPU path for
        tensor models yet: the reference, with a warning).
        """
        fast = self._fast(backend)
        coord, atype, box = normalize_inputs(coord, atype, box, self.ntypes)
        nf, natoms, _ = coord.shape
        shape = self.fitting.out_shape
        name = self.var_name
        out = {name: np.zeros((nf,) + shape), f"atom_{name}": np.zeros((nf, natoms) + shape)}
        if derivative:
            out[f"{name}_derivative"] = np.zeros((nf,) + shape + (natoms, 3))
        for f in range(nf):
            box_f = None if box is None else box[f]
            if fast is None:
                res = self._tensor_frame(coord[f], atype[f], box_f, derivative=derivative,
                                         truncate=truncate, frame=f)
            else:
                atom, deriv = fast.evaluate_frame(
                    self, coord[f], atype[f], box_f, shift=self._atom_shift(atype[f]),
                    alive=self.alive(atype[f]), derivative=derivative, truncate=truncate,
                    frame=f)
                res = {name: atom.sum(axis=0), f"atom_{name}": atom}
                if derivative:
                    res[f"{name}_derivative"] = deriv
            for k, v in res.items():
                out[k][f] = v
        return out

    def _fast(self, backend: str, *, train: bool = False, stacklevel: int = 3):
        """The fast module (:mod:`symref.fast.cpu_tensor`) for ``backend``, or None where the
        reference runs (``"numpy"``; ``"cuda"`` and models the fast path cannot handle
        exactly, with :func:`symref.fast.fallback_warning`).  ``train``: parameter
        gradients are needed too (:func:`symref.fast.cpu_tensor.train_unsupported_reason`)."""
        check_backend(backend)
        if backend == "numpy":
            return None
        if backend == "cuda":
            fallback_warning(backend, "tensor models have no GPU path", stacklevel=stacklevel)
            return None
        from symref.fast import cpu_tensor

        why = (cpu_tensor.train_unsupported_reason if train
               else cpu_tensor.unsupported_reason)(self)
        if why is not None:
            fallback_warning(backend, why, stacklevel=stacklevel)
            return None
        return cpu_tensor

    def _atom_shift(self, atype) -> np.ndarray:
        """Model-level isotropic shift of each atom's polarizability (nloc x 3 x 3)."""
        fit = self.fitting
        if self.kind != "polar" or not fit.shift_diag:
            return 0.0
        b = np.asarray(self.out_bias).reshape(self.ntypes, 3, 3)
        diag = np.trace(b, axis1=1, axis2=2) / 3.0 * np.asarray(fit.scale)  # ntypes
        return diag[atype][:, None, None] * np.eye(3)

    def tensor_forward(self, coord, atype, box, *, truncate=False, frame=None,
                       backend: str = "numpy", train: bool = False):
        """Atomic outputs of one frame (nloc x 3 or nloc x 3 x 3, zero for excluded
        atoms) and the cache for :meth:`tensor_backward`: on the reference a dict holding
        every intermediate (``nlist``, ``mask``, ``rij``, ``env_mat``, ``env_cache``,
        ``d_cache``, ``descriptor``, ``T``, ``f_cache``, ``alive``; the golden stages
        of :mod:`symref.io.golden` read them from here); with ``backend="numba"`` the
        cache of :func:`symref.fast.cpu_tensor.tensor_forward` (``train``: the caller
        wants parameter gradients; models the fast path cannot train use the reference)."""
        fast = self._fast(backend, train=train)
        if fast is not None:
            return fast.tensor_forward(self, coord, atype, box, shift=self._atom_shift(atype),
                                       alive=self.alive(atype), truncate=truncate,
                                       frame=frame)
        fit = self.fitting
        nlist, mask, rij, R, env_cache = self.environment(coord, atype, box,
                                                          truncate=truncate, frame=frame)
        D, d_cache = self.descriptor_forward(R, atype, nlist)
        T = d_cache[2]  # nloc x M1 x 4
        atom, f_cache = tensor_fitting_forward(D, T[:, :, 1:], atype, fit)  # nloc x shape
        atom = atom + self._atom_shift(atype)
        alive = self.alive(atype).reshape((-1,) + (1,) * len(fit.out_shape))  # nloc x 1 (x 1)
        atom = np.where(alive, atom, 0.0)
        return atom, {"alive": alive, "nlist": nlist, "mask": mask, "rij": rij, "env_mat": R,
                      "env_cache": env_cache, "d_cache": d_cache, "descriptor": D, "T": T,
                      "f_cache": f_cache}

    def tensor_backward(self, dy, cache, *, param_grads: bool = False):
        """Backward of :meth:`tensor_forward` for ``<dy, atom outputs>``: ``(g, grads)``,
        ``g`` = d/dr_ji (nloc x nnei x 3); ``grads``, with ``param_grads``,
        ``{"embeddings": {net index: layer grads}, "nets": {type: layer grads},
        "bias_atom": (ntypes x nout)}``, else ``None``.  A cache of the fast path gives
        :func:`symref.fast.cpu_tensor.tensor_backward`'s result instead (``g`` per pair
        without ``param_grads``, None with them; the same ``grads``)."""
        if not isinstance(cache, dict):
            from symref.fast import cpu_tensor

            return cpu_tensor.tensor_backward(dy, cache, param_grads=param_grads)
        c = cache
        (dD, dgr), fgrads = tensor_fitting_backward(dy * c["alive"], c["f_cache"],
                                                    param_grads=param_grads)
        dT = np.zeros_like(c["T"])  # nloc x M1 x 4
        dT[:, :, 1:] = dgr
        dR, emb = se_e2_a_backward(dD, c["d_cache"], param_grads=param_grads,
                                   dT=dT)  # nloc x nnei x 4
        g, _ = env_mat_backward(dR, c["env_cache"])  # nloc x nnei x 3
        return g, ({"embeddings": emb, **fgrads} if param_grads else None)

    def _tensor_frame(self, coord, atype, box, *, derivative, truncate, frame):
        atom, cache = self.tensor_forward(coord, atype, box, truncate=truncate, frame=frame)
        name = self.var_name
        res = {name: atom.sum(axis=0), f"atom_{name}": atom}
        if derivative:
            nlist, mask = cache["nlist"], cache["mask"]
            shape = self.fitting.out_shape
            deriv = np.zeros(shape + (coord.shape[0], 3))
            for comp in np.ndindex(*shape):
                seed = np.zeros_like(atom)  # nloc x shape
                seed[(slice(None),) + comp] = 1.0
                g, _ = self.tensor_backward(seed, cache)  # nloc x nnei x 3 = dy_c/dr_ji
                grad = -g.sum(axis=1)  # r_ji = x_j - x_i
                np.add.at(grad, nlist[mask], g[mask])
                deriv[comp] = grad
            res[f"{name}_derivative"] = deriv
        return res
