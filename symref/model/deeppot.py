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
from dataclasses import dataclass, field

import numpy as np

from symref.reference.descriptor.se_e2_a import SeE2A, keep_mask, se_e2_a_backward, se_e2_a_forward
from symref.reference.env import env_mat_backward, env_mat_forward
from symref.reference.fitting import (EnergyFitting, TensorFitting, energy_fitting_backward,
                      energy_fitting_forward, tensor_fitting_backward, tensor_fitting_forward)
from symref.reference.neighbors import build_neighbor_list
from symref.reference.nn import init_mlp, mlp_astype

PRECISIONS = {"float64": np.float64, "float32": np.float32, "default": np.float64}
BACKENDS = ("numba", "numpy", "cuda")


@dataclass
class DeepPot:
    """A Deep Potential (se_e2_a + energy fitting) model.

    ``out_bias``: ntypes, the model-level output bias deepmd-kit 3.x adds to
    every atomic energy (its ``@variables.out_bias[0, :, 0]``); ``out_std``
    likewise (stored, not used for energies).  ``atom_exclude_types``: types
    whose atomic energy is zero; ``pair_exclude_types``: type pairs removed
    from the neighbour list (their slots become padding).
    """

    type_map: list[str]
    descriptor: SeE2A
    fitting: EnergyFitting
    out_bias: np.ndarray
    out_std: np.ndarray
    atom_exclude_types: list[int] = field(default_factory=list)
    pair_exclude_types: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ntypes(self) -> int:
        return len(self.type_map)

    @property
    def rcut(self) -> float:
        return self.descriptor.rcut

    @property
    def sel(self) -> list[int]:
        return list(self.descriptor.sel)

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
            path is tested against).  float32 and models the fast path cannot
            evaluate exactly (see :func:`symref.fast.cpu.unsupported_reason`)
            use the reference.  "cuda": the GPU path of :mod:`symref.fast.cuda`
            (numba-cuda; float64 and float32), an ``ImportError``/``RuntimeError``
            saying what to install when numba-cuda or a GPU is missing.

        Returns
        -------
        dict with ``energy`` (nf,), ``forces`` (nf, natoms, 3),
        ``virial`` (nf, 3, 3), ``atom_energy`` (nf, natoms),
        ``atom_virial`` (nf, natoms, 3, 3).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        coord, atype, box = normalize_inputs(coord, atype, box, self.ntypes)
        dtype = _dtype(precision or self.descriptor.precision)
        model = self if dtype == np.float64 else self.astype(dtype)
        frame_fn = model._evaluate_frame
        if backend == "numba" and dtype == np.float64:
            from symref.fast import cpu as fastpath

            reason = fastpath.unsupported_reason(model)
            if reason is None:
                def frame_fn(c, a, b, *, dtype, truncate, frame):
                    return fastpath.evaluate_frame(model, c, a, b, truncate=truncate, frame=frame)
            else:
                fastpath.fallback_warning(reason)
        elif backend == "cuda":
            from symref.fast import cuda as cudapath

            cudapath.require()  # ImportError / RuntimeError with an install hint
            reason = cudapath.unsupported_reason(model)
            if reason is None:
                frame_fn = cudapath.Evaluator(model, dtype)
            else:
                cudapath.fallback_warning(reason)
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

    def environment(self, coord, atype, box, *, dtype=np.float64, truncate=False, frame=None):
        """Neighbours and environment rows of one frame (reference path).

        Returns ``(nlist, mask, rij, R, env_cache)``: nlist (nloc x nnei, -1 where
        padded or removed by ``pair_exclude_types``), its mask, rij (nloc x nnei x 3,
        zero where padded), R (nloc x nnei x 4) and the cache of
        :func:`symref.reference.env.env_mat_forward`.
        """
        desc = self.descriptor
        nl = build_neighbor_list(coord, atype, box, desc.rcut, desc.sel,
                                 truncate=truncate, frame=frame)
        nlist = nl.nlist  # nloc x nnei
        if self.pair_exclude_types:
            tnei = np.where(nlist >= 0, atype[np.maximum(nlist, 0)], -1)  # nloc x nnei
            for a, b in self.pair_exclude_types:
                for ti, tj in ((a, b), (b, a)):
                    nlist = np.where((atype[:, None] == ti) & (tnei == tj), -1, nlist)
        mask = nlist >= 0  # nloc x nnei
        rij = np.where(mask[..., None], nl.rij, 0.0).astype(dtype)  # nloc x nnei x 3
        R, env_cache = env_mat_forward(rij, mask, desc.davg[atype], desc.dstd[atype],
                                       desc.rcut, desc.rcut_smth, desc.env_protection)
        return nlist, mask, rij, R, env_cache

    def _evaluate_frame(self, coord, atype, box, *, dtype, truncate, frame):
        desc, fit = self.descriptor, self.fitting
        nlist, mask, rij, R, env_cache = self.environment(coord, atype, box, dtype=dtype,
                                                          truncate=truncate, frame=frame)
        keep = keep_mask(desc, atype, nlist)
        D, d_cache = se_e2_a_forward(R, atype, keep, desc)  # nloc x M1*M2
        e_fit, f_cache = energy_fitting_forward(D, atype, fit)  # nloc
        alive = ~np.isin(atype, self.atom_exclude_types)  # nloc
        atom_e = np.where(alive, e_fit + self.out_bias[atype], 0.0).astype(dtype)
        # backward: dE/dE_i = 1 for atoms that count
        dD, _ = energy_fitting_backward(alive.astype(dtype), f_cache)
        dR, _ = se_e2_a_backward(dD, d_cache)  # nloc x nnei x 4
        g, _ = env_mat_backward(dR, env_cache)  # nloc x nnei x 3 = dE/dr_ji
        natoms = coord.shape[0]
        forces = g.sum(axis=1)  # F_i = +sum_j g_ij
        np.add.at(forces, nlist[mask], -g[mask])  # F_j -= g_ij
        pair_vir = -g[..., :, None] * rij[..., None, :]  # nloc x nnei x 3 x 3
        atom_virial = np.zeros((natoms, 3, 3), dtype=dtype)
        np.add.at(atom_virial, nlist[mask], pair_vir[mask])
        return {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
                "atom_energy": atom_e, "atom_virial": atom_virial}

    def astype(self, dtype) -> "DeepPot":
        """Copy with every parameter cast to ``dtype`` (e.g. float32)."""
        m = copy.deepcopy(self)
        d = m.descriptor
        d.embeddings = [mlp_astype(net, dtype) for net in d.embeddings]
        d.davg, d.dstd = d.davg.astype(dtype), d.dstd.astype(dtype)
        m.fitting.nets = [mlp_astype(net, dtype) for net in m.fitting.nets]
        m.fitting.bias_atom_e = m.fitting.bias_atom_e.astype(dtype)
        m.out_bias = m.out_bias.astype(dtype)
        return m


@dataclass
class DeepTensor(DeepPot):
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
                 truncate: bool = False, backend: str = "numpy") -> dict:
        """Global and atomic dipoles or polarizabilities of one or more frames (float64).

        Inputs as :meth:`DeepPot.evaluate`.  Returns ``dipole`` (nf, 3) and
        ``atom_dipole`` (nf, natoms, 3), or ``polarizability`` (nf, 3, 3) and
        ``atom_polarizability`` (nf, natoms, 3, 3); with ``derivative`` also
        ``dipole_derivative`` (nf, 3, natoms, 3) = ∂μ_a/∂x_{k,b} (what IR spectra
        need) or ``polarizability_derivative`` (nf, 3, 3, natoms, 3).  Both
        backends run the NumPy reference (tensor models have no fast or GPU path yet).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        coord, atype, box = normalize_inputs(coord, atype, box, self.ntypes)
        nf, natoms, _ = coord.shape
        shape = self.fitting.out_shape
        name = self.var_name
        out = {name: np.zeros((nf,) + shape), f"atom_{name}": np.zeros((nf, natoms) + shape)}
        if derivative:
            out[f"{name}_derivative"] = np.zeros((nf,) + shape + (natoms, 3))
        for f in range(nf):
            res = self._tensor_frame(coord[f], atype[f], None if box is None else box[f],
                                     derivative=derivative, truncate=truncate, frame=f)
            for k, v in res.items():
                out[k][f] = v
        return out

    def _atom_shift(self, atype) -> np.ndarray:
        """Model-level isotropic shift of each atom's polarizability (nloc x 3 x 3)."""
        fit = self.fitting
        if self.kind != "polar" or not fit.shift_diag:
            return 0.0
        b = np.asarray(self.out_bias).reshape(self.ntypes, 3, 3)
        diag = np.trace(b, axis1=1, axis2=2) / 3.0 * np.asarray(fit.scale)  # ntypes
        return diag[atype][:, None, None] * np.eye(3)

    def tensor_forward(self, coord, atype, box, *, truncate=False, frame=None):
        """Atomic outputs of one frame (nloc x 3 or nloc x 3 x 3, zero for excluded
        atoms) and the cache for :meth:`tensor_backward`."""
        desc, fit = self.descriptor, self.fitting
        nlist, mask, rij, R, env_cache = self.environment(coord, atype, box,
                                                          truncate=truncate, frame=frame)
        D, d_cache = se_e2_a_forward(R, atype, keep_mask(desc, atype, nlist), desc)
        T = d_cache[2]  # nloc x M1 x 4
        atom, f_cache = tensor_fitting_forward(D, T[:, :, 1:], atype, fit)  # nloc x shape
        atom = atom + self._atom_shift(atype)
        alive = (~np.isin(atype, self.atom_exclude_types)).reshape(
            (-1,) + (1,) * len(fit.out_shape))  # nloc x 1 (x 1)
        atom = np.where(alive, atom, 0.0)
        return atom, (alive, nlist, mask, env_cache, d_cache, f_cache, T)

    def tensor_backward(self, dy, cache, *, param_grads: bool = False):
        """Backward of :meth:`tensor_forward` for ``<dy, atom outputs>``: ``(g, grads)``,
        ``g`` = d/dr_ji (nloc x nnei x 3); ``grads``, with ``param_grads``,
        ``{"embeddings": {net index: layer grads}, "nets": {type: layer grads},
        "bias_atom": (ntypes x nout)}``, else ``None``."""
        alive, nlist, mask, env_cache, d_cache, f_cache, T = cache
        (dD, dgr), fgrads = tensor_fitting_backward(dy * alive, f_cache, param_grads=param_grads)
        dT = np.zeros_like(T)
        dT[:, :, 1:] = dgr
        dR, emb = se_e2_a_backward(dD, d_cache, param_grads=param_grads, dT=dT)
        g, _ = env_mat_backward(dR, env_cache)
        return g, ({"embeddings": emb, **fgrads} if param_grads else None)

    def _tensor_frame(self, coord, atype, box, *, derivative, truncate, frame):
        atom, cache = self.tensor_forward(coord, atype, box, truncate=truncate, frame=frame)
        name = self.var_name
        res = {name: atom.sum(axis=0), f"atom_{name}": atom}
        if derivative:
            nlist, mask = cache[1], cache[2]
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

    def _evaluate_frame(self, *args, **kwargs):  # pragma: no cover - guard
        raise TypeError("DeepTensor models have no energy; use evaluate()")

    def astype(self, dtype) -> "DeepTensor":
        raise NotImplementedError("DeepTensor models evaluate in float64 only")


def _dtype(precision: str):
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}") from None


# ---------------------------------------------------------------- input checks
def normalize_inputs(coord, atype, box, ntypes: int | None = None):
    """Validate and reshape to ``coord`` (nf, natoms, 3) float64, ``atype`` (nf, natoms)
    int64 and ``box`` (nf, 3, 3) float64 or None.  Raises ``ValueError``/``TypeError``
    naming the offending frame, atom and expected shape."""
    atype_arr = np.asarray(atype)
    if atype_arr.dtype.kind not in "iu":
        if atype_arr.dtype.kind == "f" and atype_arr.size and np.all(atype_arr == np.round(atype_arr)):
            atype_arr = atype_arr.astype(np.int64)
        else:
            raise TypeError(f"atype must be an integer array, got dtype {atype_arr.dtype}")
    if atype_arr.ndim not in (1, 2):
        raise ValueError(f"atype must have shape (natoms,) or (nframes, natoms), got {atype_arr.shape}")
    natoms = atype_arr.shape[-1]
    if natoms == 0:
        raise ValueError("empty system: atype has no atoms")
    coord = np.asarray(coord)
    if coord.dtype.kind not in "fiu":
        raise TypeError(f"coord must be a real array, got dtype {coord.dtype}")
    coord = coord.astype(np.float64)
    if coord.ndim == 1:
        if coord.size != 3 * natoms:
            raise ValueError(f"coord has {coord.size} values but atype has {natoms} atoms "
                             f"(expected 3*natoms = {3 * natoms})")
        coord = coord.reshape(1, natoms, 3)
    elif coord.ndim == 2:
        if coord.shape[1] == 3 * natoms:
            coord = coord.reshape(coord.shape[0], natoms, 3)
        elif coord.shape == (natoms, 3):
            coord = coord[None]
        else:
            raise ValueError(f"coord has shape {coord.shape}; expected (natoms, 3) = ({natoms}, 3) "
                             f"or (nframes, 3*natoms) = (nframes, {3 * natoms}) for {natoms} atoms")
    elif coord.ndim == 3:
        if coord.shape[1:] != (natoms, 3):
            raise ValueError(f"coord has shape {coord.shape}; expected (nframes, {natoms}, 3)")
    else:
        raise ValueError(f"coord must be 1-, 2- or 3-D, got shape {coord.shape}")
    nf = coord.shape[0]
    if nf == 0:
        raise ValueError("coord has zero frames")
    bad = ~np.isfinite(coord)
    if bad.any():
        f, i, _ = np.argwhere(bad)[0]
        raise ValueError(f"coord of frame {f}, atom {i} is not finite: {coord[f, i]}")
    if atype_arr.ndim == 1:
        atype_arr = np.broadcast_to(atype_arr, (nf, natoms))
    elif atype_arr.shape[0] != nf:
        raise ValueError(f"atype has {atype_arr.shape[0]} frames but coord has {nf}")
    if (atype_arr < 0).any():
        f, i = np.argwhere(atype_arr < 0)[0]
        raise ValueError(f"atom {i} (frame {f}) has negative type {atype_arr[f, i]}")
    if ntypes is not None and (atype_arr >= ntypes).any():
        f, i = np.argwhere(atype_arr >= ntypes)[0]
        raise ValueError(f"atom {i} (frame {f}) has type {atype_arr[f, i]} but the model has "
                         f"only {ntypes} types (0..{ntypes - 1})")
    atype_arr = atype_arr.astype(np.int64)
    if box is not None:
        box = np.asarray(box)
        if box.dtype.kind not in "fiu":
            raise TypeError(f"box must be a real array, got dtype {box.dtype}")
        box = box.astype(np.float64)
        if box.shape in ((9,), (3, 3)):
            box = np.broadcast_to(box.reshape(1, 3, 3), (nf, 3, 3))
        elif box.shape in ((nf, 9), (nf, 3, 3)):
            box = box.reshape(nf, 3, 3)
        else:
            raise ValueError(f"box has shape {box.shape}; expected (nframes, 9) or (nframes, 3, 3) "
                             f"with nframes = {nf}, or None for a molecule")
        for f in range(nf):
            if not np.isfinite(box[f]).all():
                raise ValueError(f"box of frame {f} is not finite")
            vol = abs(np.linalg.det(box[f]))
            scale = np.prod(np.linalg.norm(box[f], axis=1))
            if not vol > 1e-10 * max(scale, 1e-300):
                raise ValueError(f"box of frame {f} is singular (volume {vol:.3g} Å^3): "
                                 f"its cell vectors must be linearly independent")
    return coord, atype_arr, box


# --------------------------------------------------------------- construction
def build_model(config: dict, seed: int = 0) -> DeepPot:
    """A new randomly initialised model from a deepmd-kit-style ``model`` config.

    ``config = {"type_map": [...], "descriptor": {"type": "se_e2_a", "rcut",
    "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
    "exclude_types", "precision"}, "fitting_net": {"neuron", "resnet_dt",
    "precision"}}``.  Statistics start neutral (``davg`` 0, ``dstd`` 1, biases 0).
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    for key in ("type_map", "descriptor", "fitting_net"):
        if key not in config:
            raise ValueError(f"model config is missing {key!r}")
    type_map = list(config["type_map"])
    ntypes = len(type_map)
    dc = dict(config["descriptor"])
    fc = dict(config["fitting_net"])
    dtype_name = dc.get("type", "se_e2_a")
    if dtype_name not in ("se_e2_a", "se_a"):
        raise ValueError(f"descriptor type {dtype_name!r} is not implemented (only se_e2_a)")
    ftype = fc.get("type", "ener")
    if ftype not in ("ener", "dipole", "polar"):
        raise ValueError(f"fitting_net type {ftype!r} is not implemented "
                         "(ener, dipole, polar)")
    sel = dc.get("sel")
    if not isinstance(sel, (list, tuple)) or len(sel) != ntypes or \
            any(not isinstance(s, (int, np.integer)) or s < 0 for s in sel):
        raise ValueError(f"descriptor.sel must be a list of {ntypes} non-negative ints "
                         f"(one per type in type_map), got {sel!r}")
    rcut, rcut_smth = float(dc["rcut"]), float(dc.get("rcut_smth", 0.5))
    if not 0 <= rcut_smth < rcut:
        raise ValueError(f"need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, rcut={rcut}")
    neuron = list(dc.get("neuron", [24, 48, 96]))
    axis = int(dc.get("axis_neuron", 8))
    if not 0 < axis <= neuron[-1]:
        raise ValueError(f"axis_neuron must be in 1..neuron[-1]={neuron[-1]}, got {axis}")
    one_side = bool(dc.get("type_one_side", True))
    resnet_dt = bool(dc.get("resnet_dt", False))
    precision = dc.get("precision", "float64")
    _dtype(precision)
    rng = np.random.default_rng(seed)
    nnets = ntypes if one_side else ntypes * ntypes
    embeddings = [init_mlp(rng, 1, neuron, resnet_dt=resnet_dt) for _ in range(nnets)]
    nnei = int(sum(sel))
    desc = SeE2A(rcut=rcut, rcut_smth=rcut_smth, sel=[int(s) for s in sel], neuron=neuron,
                 axis_neuron=axis, embeddings=embeddings,
                 davg=np.zeros((ntypes, nnei, 4)), dstd=np.ones((ntypes, nnei, 4)),
                 resnet_dt=resnet_dt, type_one_side=one_side,
                 exclude_types=[tuple(p) for p in dc.get("exclude_types", [])],
                 precision=precision)
    fneuron = list(fc.get("neuron", [240, 240, 240]))
    if ftype != "ener":
        return _build_tensor_model(config, fc, ftype, type_map, desc, fneuron, rng)
    nets = [init_mlp(rng, desc.dim_out, fneuron, resnet_dt=bool(fc.get("resnet_dt", True)),
                     out_dim=1) for _ in range(ntypes)]
    fit = EnergyFitting(neuron=fneuron, nets=nets, bias_atom_e=np.zeros(ntypes),
                        resnet_dt=bool(fc.get("resnet_dt", True)),
                        exclude_types=list(fc.get("exclude_types", [])),
                        precision=fc.get("precision", precision))
    return DeepPot(type_map=type_map, descriptor=desc, fitting=fit,
                   out_bias=np.zeros(ntypes), out_std=np.ones(ntypes),
                   atom_exclude_types=list(config.get("atom_exclude_types", [])),
                   pair_exclude_types=[tuple(p) for p in config.get("pair_exclude_types", [])])


def _build_tensor_model(config, fc, ftype, type_map, desc, fneuron, rng) -> DeepTensor:
    """The dipole/polar part of :func:`build_model`: ``sel_type`` (types that carry
    the output; deepmd-kit 2.x's key) or ``exclude_types`` (its complement),
    ``fit_diag``, ``scale`` (number or one per type), ``shift_diag``."""
    ntypes = len(type_map)
    if "sel_type" in fc and fc.get("exclude_types"):
        raise ValueError("fitting_net: give sel_type or exclude_types, not both")
    if "sel_type" in fc:
        sel_type = [int(t) for t in fc["sel_type"]]
        if any(not 0 <= t < ntypes for t in sel_type):
            raise ValueError(f"fitting_net.sel_type {sel_type} has types outside 0..{ntypes - 1}")
        exclude = [t for t in range(ntypes) if t not in sel_type]
    else:
        exclude = [int(t) for t in fc.get("exclude_types", [])]
    # deepmd-kit 3.x keeps the exclusion at model level (atom_exclude_types) and
    # copies it into the fitting; sel_type is its complement
    exclude = sorted(set(exclude) | {int(t) for t in config.get("atom_exclude_types", [])})
    M1 = desc.neuron[-1]
    fit_diag = bool(fc.get("fit_diag", True))
    nout = M1 if ftype == "dipole" or fit_diag else M1 * M1
    resnet_dt = bool(fc.get("resnet_dt", True))
    nets = [init_mlp(rng, desc.dim_out, fneuron, resnet_dt=resnet_dt, out_dim=nout)
            for _ in range(ntypes)]
    scale = fc.get("scale", 1.0)
    scale = np.full(ntypes, float(scale)) if np.ndim(scale) == 0 else np.asarray(scale, float)
    if scale.shape != (ntypes,):
        raise ValueError(f"fitting_net.scale must be a number or {ntypes} numbers, got {scale}")
    fit = TensorFitting(kind=ftype, neuron=fneuron, nets=nets, bias_atom=np.zeros((ntypes, nout)),
                        embedding_width=M1, resnet_dt=resnet_dt, exclude_types=exclude,
                        fit_diag=fit_diag, scale=scale, shift_diag=bool(fc.get("shift_diag", True)),
                        precision=fc.get("precision", desc.precision))
    odim = 3 if ftype == "dipole" else 9
    return DeepTensor(type_map=type_map, descriptor=desc, fitting=fit,
                      out_bias=np.zeros((ntypes, odim)), out_std=np.ones((ntypes, odim)),
                      atom_exclude_types=list(exclude),
                      pair_exclude_types=[tuple(p) for p in config.get("pair_exclude_types", [])])


def randomize_statistics(model: DeepPot, seed: int = 0) -> DeepPot:
    """Give ``model`` non-trivial statistics and biases in place (for tests and demos).

    The structure deepmd-kit's statistics have is kept, because the symmetries
    depend on it: for centre type t and neighbour-type group g,
    ``davg[t, slots of g] = (a_tg, 0, 0, 0)`` and ``dstd[t, slots of g] =
    (s_tg, σ_tg, σ_tg, σ_tg)`` (a nonzero mean or unequal scales of the x, y, z
    columns would break rotation invariance; values varying inside a group
    would make the energy jump when two neighbours swap order).
    ``a`` ~ N(0, 0.05²), ``s``, ``σ`` ~ U(0.5, 2), ``bias_atom_e`` and
    ``out_bias`` ~ N(0, 1) per type (a :class:`DeepTensor`: ``bias_atom`` ~
    N(0, 0.1²) per coefficient, ``constant_matrix`` and ``out_bias`` ~ N(0, 1)).
    Returns ``model``.
    """
    rng = np.random.default_rng(seed)
    d = model.descriptor
    off = d.sel_offsets
    davg = np.zeros_like(d.davg)
    dstd = np.ones_like(d.dstd)
    for t in range(d.ntypes):
        for g in range(d.ntypes):
            sl = slice(off[g], off[g + 1])
            davg[t, sl, 0] = 0.05 * rng.normal()
            dstd[t, sl, 0] = rng.uniform(0.5, 2.0)
            dstd[t, sl, 1:] = rng.uniform(0.5, 2.0)
    d.davg, d.dstd = davg, dstd
    if isinstance(model, DeepTensor):  # bias per output coefficient; polar: also c_t
        fit = model.fitting
        fit.bias_atom = 0.1 * rng.normal(size=fit.bias_atom.shape)
        fit.constant_matrix = rng.normal(size=model.ntypes)
        model.out_bias = rng.normal(size=model.out_bias.shape)
        return model
    model.fitting.bias_atom_e = rng.normal(size=model.ntypes)
    model.out_bias = rng.normal(size=model.ntypes)
    return model


def demo_model(config: dict, seed: int = 0, fitting_gain: float = 30.0) -> DeepPot:
    """A random model that behaves like a trained one, for demos and tests.

    :func:`build_model` + :func:`randomize_statistics`, then the first layer of
    every fitting net is multiplied by ``fitting_gain``: a random net on a
    normalised descriptor (entries O(1e-3)) gives a very flat energy, while the
    gain brings forces to O(0.1-1) eV/Å as in a trained model.
    """
    model = randomize_statistics(build_model(config, seed=seed), seed=seed + 1)
    for net in model.fitting.nets:
        net[0].w = net[0].w * fitting_gain
    return model
