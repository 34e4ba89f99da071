"""Tiny models and frames for the CUDA tests, and the NumPy-twin pipeline of one frame.

The simulator runs every CUDA thread as a Python thread, so everything here is
small: at most 8 atoms, sel at most 8 per type, nets at most 8 wide.
"""
from __future__ import annotations

import numpy as np
from tolerance import assert_allclose_scaled

from symref.io.data import make_crystal, make_molecule
from symref.fast.kernels import cuda_se_e2_a as kc
from symref.model.build import demo_model

TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def config(one_side=False, ntypes=2, sel=(8, 8), rcut=3.2, neuron=(2, 4, 8), fit=(8, 8),
           axis=4, resnet_dt=True, **desc):
    d = {"type": "se_e2_a", "rcut": rcut, "rcut_smth": 0.6, "sel": list(sel),
         "neuron": list(neuron), "axis_neuron": axis, "resnet_dt": resnet_dt,
         "type_one_side": one_side}
    d.update(desc)
    return {"type_map": ["A", "B", "C"][:ntypes], "descriptor": d,
            "fitting_net": {"neuron": list(fit), "resnet_dt": True}}


def small_model(seed=1, **kw):
    return demo_model(config(**kw), seed=seed)


def frame(kind: str, seed: int = 1):
    """(coord (n, 3), atype (n,), box (3, 3) or None): 'molecule' (7 atoms, 2 types) or
    'crystal' (6 atoms in a skewed cell shorter than 2 rcut: atoms see their own images)."""
    if kind == "molecule":
        s = make_molecule(natoms=7, ntypes=2, seed=seed)
        return s.coord[0], s.atype, None
    s = make_crystal(seed=seed, natoms=6, side=4.4)
    return s.coord[0], s.atype, s.box[0]


def assert_close(out, ref, dtype, what=""):
    tol = TOL[np.dtype(dtype)]
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape, f"{what}: shape {out.shape} != {ref.shape}"
    assert_allclose_scaled(out, ref, tol, tol, floor=1.0, err_msg=what)


def max_rel(out, ref) -> float:
    """max |out - ref| / max |ref| (the comparison used for energies, forces, virials)."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(out, dtype=np.float64) - ref).max()
                 / max(np.abs(ref).max(), 1e-300))


def twin_pipeline(model, coord, atype, box, dtype=np.float64):
    """Every kernel's inputs and outputs for one frame, computed by the NumPy twins.

    Returns a dict with the host inputs (as :class:`symref.fast.cuda.Evaluator`
    prepares them) and the intermediate arrays R, T, D, E, dD, dT, g, F, W.
    """
    from symref.fast.cuda import Evaluator

    dt = np.dtype(dtype)
    m = model if dt == np.float64 else model.astype(dt)
    ev = Evaluator(m, dt)  # packs the nets; host arrays only are used below
    d = m.descriptor
    nlist, keep, rij, rev_ptr, rev_idx = ev.host_inputs(coord, atype, box)
    n, nnei = nlist.shape
    M1, M2 = d.neuron[-1], d.axis_neuron
    fit = m.fitting
    c = dict(model=m, nlist=nlist, keep=keep, rij=rij, rev_ptr=rev_ptr, rev_idx=rev_idx,
             atype=np.asarray(atype, dtype=np.int64), nnei=nnei, M2=M2, emb=ev.emb, fit=ev.fit,
             slot_type=ev.slot_type, emb_index=ev.emb_index,
             davg=np.ascontiguousarray(d.davg, dtype=dt),
             dstd=np.ascontiguousarray(d.dstd, dtype=dt),
             bias_atom_e=np.asarray(fit.bias_atom_e, dtype=dt),
             out_bias=np.asarray(m.out_bias, dtype=dt),
             fit_on=np.array([t not in fit.exclude_types for t in range(d.ntypes)], np.int8),
             alive=np.array([t not in m.atom_exclude_types for t in range(d.ntypes)], np.int8),
             rcut=d.rcut, rcut_smth=d.rcut_smth, protection=d.env_protection, dtype=dt)
    c["R"] = np.empty((n, nnei, 4), dt)
    kc.env_mat_ref(rij, nlist, c["atype"], c["davg"], c["dstd"], d.rcut, d.rcut_smth,
                   d.env_protection, c["R"])
    c["T"] = np.empty((n, M1, 4), dt)
    kc.embed_T_forward_ref(c["R"], keep, c["atype"], ev.slot_type, ev.emb_index, ev.emb, nnei,
                           c["T"])
    c["D"] = np.empty((n, M1 * M2), dt)
    kc.descriptor_forward_ref(c["T"], M2, c["D"])
    c["E"], c["dD"] = np.empty(n, dt), np.empty((n, M1 * M2), dt)
    kc.fitting_ref(c["D"], c["atype"], ev.fit, c["bias_atom_e"], c["out_bias"], c["fit_on"],
                   c["alive"], c["E"], c["dD"])
    c["dT"] = np.empty((n, M1, 4), dt)
    kc.descriptor_backward_ref(c["dD"], c["T"], M2, nnei, c["dT"])
    c["g"] = np.empty((n, nnei, 3), dt)
    kc.embed_backward_ref(rij, c["R"], nlist, keep, c["atype"], ev.slot_type, ev.emb_index,
                          ev.emb, c["dstd"], d.rcut, d.rcut_smth, d.env_protection, c["dT"],
                          c["g"])
    c["F"], c["W"] = np.empty((n, 3), dt), np.empty((n, 3, 3), dt)
    kc.forces_virial_ref(c["g"], rij, nlist, rev_ptr, rev_idx, c["F"], c["W"])
    return c
