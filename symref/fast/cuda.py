r"""The GPU path of :meth:`symref.DeepPot.evaluate` (``backend="cuda"``), with numba-cuda.

Same mathematics and outputs as the NumPy reference (``backend="numpy"``),
float64 or float32; the kernels' launchers, each with a NumPy twin, are in
:mod:`symref.fast.kernels.cuda_se_e2_a`, the kernels themselves and the packed
nets in :mod:`symref.fast.kernels.cuda_se_e2_a_device`.  Per frame:

1. *Host*: neighbour list in the padded se_e2_a layout by symref's numba CPU
   cell-list search (:func:`symref.fast.kernels.neighbors.build_neighbor_list_fast`,
   bit for bit the reference's), model ``pair_exclude_types`` applied, the
   descriptor's ``exclude_types`` mask and the reverse index for the force
   gather.  These are copied to the device once per frame (the simplest
   correct design; a device-side neighbour search is future work).
2. *Device*: environment rows, embedding nets and T, D = T T<ᵀ, the fitting
   nets forward and backward, dT, the embedding nets backward to
   ∂E/∂r_ji, then forces and per-atom virials gathered per atom (no atomics).
3. *Host*: atomic energies, forces and per-atom virials copied back; the
   energy and the virial are their sums.

The network parameters are packed and copied to the device once per
:class:`Evaluator` (one per ``evaluate`` call).  Requirements: the
``numba-cuda`` package (``pip install "symref[cuda]"``) and either a CUDA GPU
with its driver or numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` in the
environment before numba is first imported: plain Python, for tests only).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

INSTALL_HINT = ('pip install "symref[cuda]" (the numba-cuda package; add its CUDA-toolkit '
                'wheels with pip install "numba-cuda[cu12]" or "[cu13]" if the system has none)')


def availability() -> str | None:
    """Why ``backend="cuda"`` cannot run in this process, or None when it can."""
    if importlib.util.find_spec("numba_cuda") is None:
        return f"numba-cuda is not installed: {INSTALL_HINT}"
    import numba

    if numba.config.ENABLE_CUDASIM:
        return None
    from numba import cuda

    try:
        ok = cuda.is_available()
    except Exception as e:  # noqa: BLE001 - reported
        return f"the CUDA driver could not be initialised ({type(e).__name__}: {e})"
    if not ok:
        sim = ("NUMBA_ENABLE_CUDASIM=1 is set but numba was imported before it"
               if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else
               "set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the (slow) simulator")
        return f"no CUDA GPU (or driver) is available; {sim}"
    return None


def require() -> None:
    """Raise ``ImportError`` (numba-cuda missing) or ``RuntimeError`` (no GPU, simulator off)."""
    why = availability()
    if why is None:
        return
    if why.startswith("numba-cuda is not installed"):
        raise ImportError(f"backend='cuda' needs numba-cuda: {why}")
    raise RuntimeError(f"backend='cuda' cannot run: {why}")


def unsupported_reason(model) -> str | None:
    """Why the GPU path cannot evaluate ``model`` exactly, or None.

    Everything the CPU fast path supports is supported, and more (statistics
    may vary slot by slot: padded slots are computed like real ones).
    """
    from symref.reference.fitting import EnergyFitting

    if not isinstance(getattr(model, "fitting", None), EnergyFitting):
        return "only energy models (DeepPot) have a GPU path"
    d = model.descriptor
    if type(d).__name__ != "SeE2A":  # se_e2_r: the reference
        return f"descriptor {type(d).__name__} has no GPU path"
    if getattr(d, "tables", None) is not None:
        return "a compressed (tabulated) embedding is not implemented in the GPU path"
    from symref.fast.kernels.activations import ACT_CODES

    for net in list(d.embeddings) + list(model.fitting.nets):
        for ly in net:
            if ly.activation not in ACT_CODES:
                return (f"activation {ly.activation!r} is not implemented in the GPU path "
                        f"(it has {sorted(ACT_CODES)})")
    for net in d.embeddings:
        if net and net[0].nin != 1:
            return f"embedding net input width {net[0].nin} (must be 1)"
    for t, net in enumerate(model.fitting.nets):
        if t in model.fitting.exclude_types:
            continue
        if not net or net[-1].nout != 1 or net[0].nin != d.dim_out:
            return f"fitting net of type {t} is not D -> ... -> 1"
    return None


def frame_evaluator(model, dtype=np.float64) -> "Evaluator":
    """``(coord, atype, box, *, truncate, frame) -> dict`` for one frame of ``model`` on the
    GPU: an :class:`Evaluator` (the backend protocol of :mod:`symref.fast`)."""
    return Evaluator(model, dtype)


class Evaluator:
    """``backend="cuda"`` for one model and dtype: parameters packed and copied once.

    Call it like the reference's frame function: ``ev(coord, atype, box, truncate=...,
    frame=...)`` -> dict of energy, forces, virial, atom_energy, atom_virial
    (NumPy arrays of ``dtype``).
    """

    def __init__(self, model, dtype=np.float64):
        require()
        from numba import cuda

        from symref.fast.kernels import cuda_se_e2_a as kc
        from symref.fast.kernels.cuda_se_e2_a_device import NetPack

        self.kc, self.cuda = kc, cuda
        self.model = model
        self.dtype = np.dtype(dtype)
        d, fit = model.descriptor, model.fitting
        nt = d.ntypes
        dt = self.dtype
        self.emb = NetPack.pack(d.embeddings, dt, input_in_buffer=True).to_device()
        fnets = [net if t not in fit.exclude_types else _placeholder_net(d.dim_out)
                 for t, net in enumerate(fit.nets)]  # excluded types' nets never run
        self.fit = NetPack.pack(fnets, dt, input_in_buffer=False).to_device()
        self.emb_index = np.array([[d.embedding_index(ti, tj) for tj in range(nt)]
                                   for ti in range(nt)], dtype=np.int64)
        self.slot_type = np.repeat(np.arange(nt, dtype=np.int64), d.sel)
        fit_on = np.array([t not in fit.exclude_types for t in range(nt)], dtype=np.int8)
        alive = np.array([t not in model.atom_exclude_types for t in range(nt)], dtype=np.int8)
        to = cuda.to_device
        self.dev = dict(
            emb_index=to(self.emb_index), slot_type=to(self.slot_type),
            davg=to(np.ascontiguousarray(d.davg, dtype=dt)),
            dstd=to(np.ascontiguousarray(d.dstd, dtype=dt)),
            bias_atom_e=to(np.ascontiguousarray(fit.bias_atom_e, dtype=dt)),
            out_bias=to(np.ascontiguousarray(model.out_bias, dtype=dt)),
            fit_on=to(fit_on), alive=to(alive))

    def host_inputs(self, coord, atype, box, *, truncate=False, frame=None):
        """Host side of one frame: ``(nlist, keep, rij, rev_ptr, rev_idx)``."""
        from symref.fast.kernels.neighbors import build_neighbor_list_fast
        from symref.reference.descriptor.se_e2_a import keep_mask
        from symref.reference.neighbors import exclude_type_pairs

        model, d = self.model, self.model.descriptor
        nl = build_neighbor_list_fast(coord, atype, box, d.rcut, d.sel, truncate=truncate,
                                      frame=frame)
        # removed pairs become padding, as in the reference
        nlist = exclude_type_pairs(nl.nlist, atype, d.ntypes, model.pair_exclude_types)
        nlist = np.ascontiguousarray(nlist, dtype=np.int64)
        mask = nlist >= 0
        rij = np.ascontiguousarray(np.where(mask[..., None], nl.rij, 0.0), dtype=self.dtype)
        keep = np.ascontiguousarray(keep_mask(d, atype, nlist), dtype=np.int8)
        rev_ptr, rev_idx = self.kc.reverse_index(nlist, len(atype))
        return nlist, keep, rij, rev_ptr, rev_idx

    def __call__(self, coord, atype, box, *, truncate=False, frame=None, **_):
        kc, cuda, dev, dt = self.kc, self.cuda, self.dev, self.dtype
        d = self.model.descriptor
        nlist, keep, rij, rev_ptr, rev_idx = self.host_inputs(coord, atype, box,
                                                              truncate=truncate, frame=frame)
        n, nnei = nlist.shape
        M1, M2 = d.neuron[-1], d.axis_neuron
        to, empty = cuda.to_device, cuda.device_array
        d_nlist, d_keep, d_rij = to(nlist), to(keep), to(rij)
        d_atype = to(np.ascontiguousarray(atype, dtype=np.int64))
        R = empty((n, nnei, 4), dt)
        T = empty((n, M1, 4), dt)
        D = empty((n, M1 * M2), dt)
        E = empty(n, dt)
        dD = empty((n, M1 * M2), dt)
        dT = empty((n, M1, 4), dt)
        g = empty((n, nnei, 3), dt)
        F = empty((n, 3), dt)
        W = empty((n, 3, 3), dt)
        kc.env_mat(d_rij, d_nlist, d_atype, dev["davg"], dev["dstd"], d.rcut, d.rcut_smth,
                   d.env_protection, R)
        kc.embed_T_forward(R, d_keep, d_atype, dev["slot_type"], dev["emb_index"], self.emb,
                           nnei, T)
        kc.descriptor_forward(T, M2, D)
        kc.fitting(D, d_atype, self.fit, dev["bias_atom_e"], dev["out_bias"], dev["fit_on"],
                   dev["alive"], E, dD)
        kc.descriptor_backward(dD, T, M2, nnei, dT)
        kc.embed_backward(d_rij, R, d_nlist, d_keep, d_atype, dev["slot_type"], dev["emb_index"],
                          self.emb, dev["dstd"], d.rcut, d.rcut_smth, d.env_protection, dT, g)
        kc.forces_virial(g, d_rij, d_nlist, to(rev_ptr), to(_nonempty(rev_idx)), F, W)
        atom_e = E.copy_to_host()
        forces = F.copy_to_host()
        atom_virial = W.copy_to_host()
        return {"energy": atom_e.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
                "atom_energy": atom_e, "atom_virial": atom_virial}


def _placeholder_net(nin):
    """A linear nin -> 1 layer standing for the net of a type excluded from the fitting."""
    from symref.reference.nn import Layer

    return [Layer(np.zeros((nin, 1)), None, None, "linear", False)]


def _nonempty(a):
    """Zero-length device arrays are not allowed everywhere: pad with one unused entry."""
    return a if len(a) else np.zeros(1, dtype=a.dtype)
