r"""Energy/force/virial loss of a DeepPot and its exact gradient with respect to every parameter.

Loss of one frame with N atoms (deepmd-kit's ``ener`` loss, ``intensive_ener_virial``
false), averaged over frames:

.. math::

    L = \frac{p_e}{N}(E - E^*)^2 + \frac{p_f}{3N}\sum_k |\mathbf F_k - \mathbf F_k^*|^2
        + \frac{p_v}{9N}\sum_{ab} (W_{ab} - W^*_{ab})^2 .

Gradient (forward-over-reverse).  With :math:`\mathbf g_p = \partial E/\partial \mathbf r_p`
for pair p = (centre i, neighbour j), :math:`\mathbf F_k = -\sum_p \mathbf g_p(\delta_{kj} - \delta_{ki})`
and :math:`W = -\sum_p \mathbf g_p \otimes \mathbf r_p`, so for any parameter θ

.. math::

    \sum_k \Delta\mathbf F_k \cdot \frac{\partial \mathbf F_k}{\partial\theta}
      = -\frac{\partial}{\partial\theta}\sum_p \mathbf g_p\cdot(\Delta\mathbf F_j - \Delta\mathbf F_i),
    \qquad
    \sum_{ab}\Delta W_{ab}\frac{\partial W_{ab}}{\partial\theta}
      = -\frac{\partial}{\partial\theta}\sum_p \mathbf g_p\cdot(\Delta W\,\mathbf r_p)

(ΔF, ΔW held fixed).  Both right-hand sides are θ-derivatives of one directional
derivative :math:`\dot E = \sum_p \mathbf g_p\cdot\dot{\mathbf r}_p = \frac{d}{d\varepsilon}E(\mathbf r + \varepsilon\dot{\mathbf r})`
with the pair tangent

.. math::  \dot{\mathbf r}_p = c_f(\Delta\mathbf F_j - \Delta\mathbf F_i) + c_v\,\Delta W\,\mathbf r_p,
           \qquad c_f = \frac{2p_f}{3N},\ c_v = \frac{2p_v}{9N},

hence :math:`\partial L/\partial\theta = \partial(aE - \dot E)/\partial\theta` with
:math:`a = 2p_e(E - E^*)/N`.  :math:`\dot E` comes from a tangent carried
through the forward pass (``*_forward_dual``: environment rows, embedding
nets, T, D, fitting nets; the rows and their tangent do not depend on θ), and
its θ-gradient from the reverse pass over that dual computation
(``*_backward_dual``), seeded with :math:`\bar E_i = a`, :math:`\bar{\dot E}_i = -1`.
One pass serves forces and virial together; the cost is about twice a
force evaluation.  ΔF and ΔW come from an ordinary evaluation first.

This is the NumPy reference; parameters are the embedding and fitting layers
(``w``, ``b``, ``idt``) and ``bias_atom_e``; ``davg``/``dstd`` and ``out_bias``
are statistics, not trained.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .descriptor import keep_mask, se_e2_a_backward_dual, se_e2_a_forward_dual
from .env import env_mat_forward, env_mat_tangent
from .fitting import energy_fitting_backward_dual, energy_fitting_forward_dual
from .models import normalize_inputs


@dataclass
class LossPrefactors:
    """Prefactors p_e, p_f, p_v of the energy, force and virial terms."""

    pref_e: float = 1.0
    pref_f: float = 1.0
    pref_v: float = 0.0


def parameters(model) -> list[tuple[str, np.ndarray]]:
    """The trainable arrays of ``model`` (references, not copies), named, in a fixed order."""
    out = []
    for i, net in enumerate(model.descriptor.embeddings):
        for li, ly in enumerate(net):
            for k in ("w", "b", "idt"):
                if getattr(ly, k) is not None:
                    out.append((f"embedding[{i}].layer[{li}].{k}", getattr(ly, k)))
    for t, net in enumerate(model.fitting.nets):
        for li, ly in enumerate(net):
            for k in ("w", "b", "idt"):
                if getattr(ly, k) is not None:
                    out.append((f"fitting[{t}].layer[{li}].{k}", getattr(ly, k)))
    out.append(("bias_atom_e", model.fitting.bias_atom_e))
    return out


def _grad_arrays(model, emb_grads, fit_grads, dbias) -> dict[str, np.ndarray]:
    """Gradients keyed like :func:`parameters` (zeros for parameters that did not enter)."""
    out = {}
    for name, arr in parameters(model):
        out[name] = np.zeros_like(arr)
    for i, g in enumerate(emb_grads):
        if g is not None:
            for li, d in enumerate(g):
                for k, v in d.items():
                    if v is not None:
                        out[f"embedding[{i}].layer[{li}].{k}"] += v
    for t, g in fit_grads.items():
        for li, d in enumerate(g):
            for k, v in d.items():
                if v is not None:
                    out[f"fitting[{t}].layer[{li}].{k}"] += v
    out["bias_atom_e"] += dbias
    return out


def energy_loss(model, coord, atype, box, energy, forces, virial=None,
                pref: LossPrefactors = LossPrefactors(), *, backend: str = "numpy") -> float:
    """The loss (module docstring) of a batch of frames, averaged over frames."""
    return energy_loss_and_grad(model, coord, atype, box, energy, forces, virial, pref,
                                grad=False, backend=backend)[0]


def energy_loss_and_grad(model, coord, atype, box, energy, forces, virial=None,
                         pref: LossPrefactors = LossPrefactors(), *, grad: bool = True,
                         backend: str = "numpy"):
    """Loss and ``{name: dL/dparam}`` (keys of :func:`parameters`) of a batch of frames.

    ``coord`` (nf, natoms, 3), ``atype`` (natoms,), ``box`` (nf, 3, 3) or None,
    ``energy`` (nf,), ``forces`` (nf, natoms, 3), ``virial`` (nf, 3, 3) or None
    (then ``pref.pref_v`` must be 0).  Units: eV, Å.  ``backend="numba"`` uses
    the fast evaluation and neighbour search and compact pair arrays (no padded
    slots; see :func:`_frame_compact`); ``"numpy"`` is the reference.
    """
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    if backend == "numba":
        from .fastpath import unsupported_reason

        if unsupported_reason(model) is not None:
            backend = "numpy"
    coord, atype, box = normalize_inputs(coord, atype, box, model.ntypes)
    nf, natoms, _ = coord.shape
    energy = np.asarray(energy, dtype=np.float64).reshape(nf)
    forces = np.asarray(forces, dtype=np.float64).reshape(nf, natoms, 3)
    if virial is None:
        if pref.pref_v != 0:
            raise ValueError("pref_v is nonzero but no virial labels were given")
    else:
        virial = np.asarray(virial, dtype=np.float64).reshape(nf, 3, 3)
    total, grads = 0.0, None
    for f in range(nf):
        frame_fn = _frame_compact if backend == "numba" else _frame
        lf, gf = frame_fn(model, coord[f], atype[f], None if box is None else box[f], energy[f],
                          forces[f], None if virial is None else virial[f], pref, grad)
        total += lf / nf
        if grad:
            if grads is None:
                grads = {k: v / nf for k, v in gf.items()}
            else:
                for k, v in gf.items():
                    grads[k] += v / nf
    return total, grads


def _residuals(model, coord, atype, box, e_ref, f_ref, w_ref, pref, backend):
    """Loss of one frame and the residuals dE, dF (N x 3), dW (3 x 3)."""
    N = coord.shape[0]
    ev = model.evaluate(coord[None], atype, None if box is None else box[None], backend=backend)
    dE = float(ev["energy"][0] - e_ref)
    dF = ev["forces"][0] - f_ref  # N x 3
    dW = ev["virial"][0] - w_ref if w_ref is not None else np.zeros((3, 3))
    loss = pref.pref_e * dE * dE / N + pref.pref_f * np.mean(dF * dF)
    if w_ref is not None:
        loss += pref.pref_v * np.mean(dW * dW) / N
    return loss, dE, dF, dW


def _frame(model, coord, atype, box, e_ref, f_ref, w_ref, pref, grad):
    desc = model.descriptor
    N = coord.shape[0]
    loss, dE, dF, dW = _residuals(model, coord, atype, box, e_ref, f_ref, w_ref, pref, "numpy")
    if not grad:
        return loss, None
    # ---- the same neighbours and rows as the evaluation
    nlist, mask, rij, R, env_cache = model.environment(coord, atype, box)
    # ---- pair tangent r_dot (module docstring)
    c_f = 2.0 * pref.pref_f / (3 * N)
    c_v = 2.0 * pref.pref_v / (9 * N) if w_ref is not None else 0.0
    rdot = c_f * (dF[np.maximum(nlist, 0)] - dF[:, None, :])  # nloc x nnei x 3
    rdot += c_v * np.einsum("ab,ijb->ija", dW, rij)
    rdot = np.where(mask[..., None], rdot, 0.0)
    Rd = env_mat_tangent(rdot, env_cache)  # nloc x nnei x 4
    keep = keep_mask(desc, atype, nlist)
    D, Dd, d_cache = se_e2_a_forward_dual(R, Rd, atype, keep, desc)
    _, _, f_cache = energy_fitting_forward_dual(D, Dd, atype, model.fitting)
    alive = (~np.isin(atype, model.atom_exclude_types)).astype(np.float64)  # N
    a = 2.0 * pref.pref_e * dE / N
    Dbar, Ddbar, fit_grads, dbias = energy_fitting_backward_dual(a * alive, -alive, f_cache)
    emb_grads = se_e2_a_backward_dual(Dbar, Ddbar, d_cache)
    return loss, _grad_arrays(model, emb_grads, fit_grads, dbias)


def _frame_compact(model, coord, atype, box, e_ref, f_ref, w_ref, pref, grad):
    """:func:`_frame` on real pairs only (O(N) neighbour search, no padded slots).

    Same mathematics; padded slots enter once per (centre type, neighbour type)
    as ``n_pad`` copies of the constant row ``R_pad = -davg/dstd`` (their
    tangent is zero, but the embedding net at ``R_pad0`` depends on θ, so its
    gradient ``Σ_i n_pad,i T̄_i R_pad`` is back-propagated too).  Needs
    statistics constant per neighbour-type group (:func:`symref.fastpath.unsupported_reason`).
    """
    from .descriptor import _add_layer_grads, _bilinear_backward
    from .fastpath import pair_rules
    from .kernels.se_e2_a import pair_contract, pair_outer_accumulate
    from .kernels.neighbors import build_pair_list
    from .nn import mlp_backward_dual, mlp_forward_dual

    desc, fit = model.descriptor, model.fitting
    N = coord.shape[0]
    nt, M1, M2, nnei = desc.ntypes, desc.neuron[-1], desc.axis_neuron, desc.nnei
    off = desc.sel_offsets
    loss, dE, dF, dW = _residuals(model, coord, atype, box, e_ref, f_ref, w_ref, pref, "numba")
    if not grad:
        return loss, None
    pl = build_pair_list(coord, atype, box, desc.rcut, desc.sel)
    c = np.repeat(np.arange(N), np.diff(pl.ptr))  # P: centre of each pair
    tj = atype[pl.j]
    rule = pair_rules(model)[atype[c], tj]  # P: see symref.fastpath.pair_rules
    real = rule != 0
    zeroed = rule == 2
    nreal = np.zeros((N, nt), dtype=np.int64)
    np.add.at(nreal, (c[real], tj[real]), 1)
    npad = np.asarray(desc.sel)[None, :] - nreal  # N x nt
    keep = real & ~zeroed
    c, j, tj, rij = c[keep], pl.j[keep], tj[keep], pl.rij[keep]
    P = len(c)
    slot0 = off[tj]  # first slot of each pair's group (statistics are constant in it)
    davg, dstd = desc.davg[atype[c], slot0], desc.dstd[atype[c], slot0]  # P x 4
    R, env_cache = env_mat_forward(rij[None], np.ones((1, P), dtype=bool), davg[None],
                                   dstd[None], desc.rcut, desc.rcut_smth, desc.env_protection)
    c_f = 2.0 * pref.pref_f / (3 * N)
    c_v = 2.0 * pref.pref_v / (9 * N) if w_ref is not None else 0.0
    rdot = c_f * (dF[j] - dF[c]) + c_v * rij @ dW.T  # P x 3
    Rd = env_mat_tangent(rdot[None], env_cache)[0]  # P x 4
    R = R[0]
    T = np.zeros((N, 4, M1))  # N x 4 x M1 (transposed below)
    Td = np.zeros_like(T)
    groups = []
    for g_ti in ([None] if desc.type_one_side else range(nt)):
        for g_tj in range(nt):
            if off[g_tj] == off[g_tj + 1]:
                continue
            sel_p = (tj == g_tj) if g_ti is None else (tj == g_tj) & (atype[c] == g_ti)
            idx = desc.embedding_index(0 if g_ti is None else g_ti, g_tj)
            net = desc.embeddings[idx]
            p = np.nonzero(sel_p)[0]
            if len(p):
                G, Gd, cache = mlp_forward_dual(R[p, :1], Rd[p, :1], net)  # Pg x M1
                cp, Rp, Rdp = c[p], np.ascontiguousarray(R[p]), np.ascontiguousarray(Rd[p])
                pair_outer_accumulate(cp, Rp, G, T)
                pair_outer_accumulate(cp, Rdp, G, Td)
                pair_outer_accumulate(cp, Rp, np.ascontiguousarray(Gd), Td)
            else:
                cache = None
            # padded slots of this group: n_pad copies of the constant row of each centre type
            pad = []
            for t in (range(nt) if g_ti is None else [g_ti]):
                rows = np.nonzero(atype == t)[0]
                rp = -desc.davg[t, off[g_tj]] / desc.dstd[t, off[g_tj]]  # 4
                if len(rows) and np.any(rp != 0):
                    Gp, _, pc = mlp_forward_dual(rp[None, :1], np.zeros((1, 1)), net)
                    T[rows] += npad[rows, g_tj][:, None, None] * np.outer(rp, Gp[0])
                    pad.append((rows, rp, pc))
            groups.append((idx, p, cache, g_tj, pad))
    T = T.transpose(0, 2, 1) / nnei  # N x M1 x 4
    Td = Td.transpose(0, 2, 1) / nnei
    D = np.einsum("iac,ibc->iab", T, T[:, :M2]).reshape(N, M1 * M2)
    Dd = (np.einsum("iac,ibc->iab", Td, T[:, :M2])
          + np.einsum("iac,ibc->iab", T, Td[:, :M2])).reshape(N, M1 * M2)
    _, _, f_cache = energy_fitting_forward_dual(D, Dd, atype, fit)
    alive = (~np.isin(atype, model.atom_exclude_types)).astype(np.float64)
    a = 2.0 * pref.pref_e * dE / N
    Dbar, Ddbar, fit_grads, dbias = energy_fitting_backward_dual(a * alive, -alive, f_cache)
    Dbar, Ddbar = Dbar.reshape(N, M1, M2), Ddbar.reshape(N, M1, M2)
    a1, c1 = _bilinear_backward(Dbar, T, T, M2)
    a2, c2 = _bilinear_backward(Ddbar, Td, T, M2)
    a3, c3 = _bilinear_backward(Ddbar, T, Td, M2)
    Tbar = np.ascontiguousarray((a1 + c1 + c2 + a3) / nnei)  # N x M1 x 4
    Tdbar = np.ascontiguousarray((a2 + c3) / nnei)
    emb_grads = [None] * len(desc.embeddings)

    def add(idx, g):
        emb_grads[idx] = g if emb_grads[idx] is None else _add_layer_grads(emb_grads[idx], g)

    for idx, p, cache, g_tj, pad in groups:
        if cache is not None:
            cp, Rp, Rdp = c[p], np.ascontiguousarray(R[p]), np.ascontiguousarray(Rd[p])
            Gbar, Gdbar, tmp = (np.empty((len(p), M1)) for _ in range(3))
            pair_contract(cp, Tbar, Rp, Gbar)
            pair_contract(cp, Tdbar, Rdp, tmp)
            Gbar += tmp
            pair_contract(cp, Tdbar, Rp, Gdbar)
            add(idx, mlp_backward_dual(Gbar, Gdbar, cache)[2])
        for rows, rp, pc in pad:
            gbar = np.einsum("i,imc,c->m", npad[rows, g_tj].astype(np.float64), Tbar[rows], rp)
            add(idx, mlp_backward_dual(gbar[None], np.zeros((1, M1)), pc)[2])
    return loss, _grad_arrays(model, emb_grads, fit_grads, dbias)
