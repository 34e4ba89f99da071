r"""Energy/force/virial loss of a DeepPot and its exact gradient with respect to every parameter.

Loss of one frame with N atoms (deepmd-kit's ``ener`` loss, ``intensive_ener_virial``
false, ``loss_func`` "mse"), averaged over frames:

.. math::

    L = \frac{p_e}{N}(E - E^*)^2
        + \frac{p_f}{3N}\sum_k \frac{|\mathbf F_k - \mathbf F_k^*|^2}{s_k^2}
        + \frac{p_v}{9N}\sum_{ab} (W_{ab} - W^*_{ab})^2
        + \frac{p_{ae}}{N}\sum_k (e_k - e_k^*)^2
        + \frac{p_{pf}}{3N}\sum_k q_k \frac{|\mathbf F_k - \mathbf F_k^*|^2}{s_k^2},

over the N atoms whose type is not in ``atom_exclude_types`` (deepmd-kit's atom mask:
excluded atoms' forces and energies are not in the loss; N counts only the others),
with the atomic energies :math:`e_k` (labels ``atom_ener.npy``), the force weights
:math:`q_k` (``atom_pref.npy``; per atom, or per force component: then
:math:`q_k|\cdot|^2` is :math:`\sum_a q_{ka}(\cdot)_a^2`) and
:math:`s_k = |\mathbf F_k^*| + \rho` when
``relative_f`` ρ is set (else 1): deepmd-kit divides the force difference by it before
both force terms (``deepmd/pt/loss/ener.py``).  deepmd-kit's displayed errors
(``lcurve.out``) are the roots of the batch means of these squares:
``rmse_e`` = rms ΔE / N, ``rmse_f`` (of ΔF/s), ``rmse_v`` = rms ΔW / N, ``rmse_ae``,
``rmse_pf`` = sqrt(mean q ΔF²/s²), ``rmse`` = √L (:func:`energy_errors`).  Two float32
roundings of ``dp --pt train`` are reproduced, so that the loss is its loss to
round-off: the 1/N of the energy and virial terms (:func:`dp_inv_natoms`) and the
prefactors (:func:`dp_weights`, applied by the Adam loop).

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
:math:`a = 2p_e(E - E^*)/N`.  The atomic-energy, prefactor-force and relative terms
change only the seeds: per atom :math:`a_k = 2[p_e(E - E^*) + p_{ae}(e_k - e_k^*)]/N`,
and :math:`\Delta\mathbf F_k` replaced by :math:`(p_f + p_{pf} q_k)\Delta\mathbf F_k/s_k^2`
(:func:`_seeds`: the same frame-gradient functions, called with ``pref_e = pref_f = 1``;
N the count of atoms not excluded, 1/N rounded to float32 as deepmd-kit rounds it,
:func:`dp_inv_natoms`).  :math:`\dot E` comes from a tangent carried through the
forward pass (``*_forward_dual``: environment rows, embedding
nets, the descriptor (se_e2_a: T, D; se_e2_r: the mean of G), fitting nets;
the rows and their tangent do not depend on θ), and
its θ-gradient from the reverse pass over that dual computation
(``*_backward_dual``), seeded with :math:`\bar E_i = a`, :math:`\bar{\dot E}_i = -1`.
One pass serves forces and virial together; the cost is about twice a
force evaluation.  ΔF and ΔW come from an ordinary evaluation first.

This is the NumPy reference; parameters are the embedding and fitting layers
(``w``, ``b``, ``idt``) and ``bias_atom_e`` (:mod:`symref.model.params`);
``davg``/``dstd`` and ``out_bias`` are statistics, not trained.

Organisation: :func:`energy_loss_and_grad` computes each frame's loss and
residuals once (:func:`_residuals`, one evaluation on the chosen backend) and
hands ΔE, ΔF, ΔW to a frame-gradient function -- the reference :func:`_frame`
or its fast twins :func:`symref.fast.cpu_loss.frame_grad` (se_e2_a) and
:func:`symref.fast.family_loss.frame_grad` (se_e2_r, se_e3, hybrid) -- which return the
per-net layer gradients; :func:`symref.model.params.grad_arrays` names them.
So the fast path needs neither this module nor the parameter layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.fitting import energy_fitting_backward_dual, energy_fitting_forward_dual
from symref.model.base import normalize_inputs
from symref.model.params import grad_arrays


@dataclass
class LossPrefactors:
    """Prefactors p_e, p_f, p_v, p_ae, p_pf of the energy, force, virial, atomic-energy and
    prefactor-force terms, and the force options of deepmd-kit's ``ener`` loss:
    ``relative_f`` (None: absolute force errors) and ``use_default_pf`` (q = 1 for a
    system without ``atom_pref.npy``; otherwise such a system has no pf term)."""

    pref_e: float = 1.0
    pref_f: float = 1.0
    pref_v: float = 0.0
    pref_ae: float = 0.0
    pref_pf: float = 0.0
    relative_f: float | None = None
    use_default_pf: bool = False


#: the scheduled prefactors of :class:`LossPrefactors` (deepmd-kit's start/limit pairs)
PREF_TERMS = ("pref_e", "pref_f", "pref_v", "pref_ae", "pref_pf")


def scheduled_prefactors(start: LossPrefactors, limit: LossPrefactors, lr: float,
                         start_lr: float) -> LossPrefactors:
    """deepmd-kit's prefactors at learning rate ``lr``: each term
    ``limit + (start - limit) lr / start_lr`` (:func:`symref.train.optim.prefactor`); the
    options (``relative_f``, ``use_default_pf``) are ``start``'s."""
    from dataclasses import replace

    from symref.train.optim import prefactor

    return replace(start, **{k: prefactor(getattr(start, k), getattr(limit, k), lr, start_lr)
                             for k in PREF_TERMS})


def dp_weights(pref):
    """``pref`` (:class:`LossPrefactors` or :class:`TensorPrefactors`) with every weight
    rounded to float32, as ``dp --pt train``'s losses see them: deepmd-kit multiplies
    each prefactor by its label's ``find_*`` flag, a ``numpy.float32``, and under
    numpy 2's promotion rules (NEP 50) a Python float times a float32 scalar is a
    float32 (``0.14677992676 * np.float32(1)`` is 0.14677992463), so its loss is the
    one with these weights (tests/test_loss_terms.py: equal to 1e-13; with float64
    weights 9e-9 apart)."""
    from dataclasses import fields, replace

    names = PREF_TERMS if isinstance(pref, LossPrefactors) else \
        [f.name for f in fields(pref)]
    return replace(pref, **{k: float(np.float32(getattr(pref, k))) for k in names})


def energy_labels(system, pref: LossPrefactors):
    """``(atom_ener or None, atom_pref or None, pref)`` of ``system`` for the loss: as
    deepmd-kit's ``find_atom_ener``/``find_atom_pref``, a system without the label file
    has no such term (its prefactor set to 0 in the returned ``pref``), except that
    ``use_default_pf`` gives it q = 1."""
    from dataclasses import replace

    ae = system.tensors.get("atom_ener") if pref.pref_ae else None
    q = system.tensors.get("atom_pref") if pref.pref_pf else None
    if pref.pref_pf and q is None and pref.use_default_pf:
        q = np.ones((system.nframes, system.natoms))
    off = {k: 0.0 for k, a in (("pref_ae", ae), ("pref_pf", q)) if getattr(pref, k) and a is None}
    return ae, q, (replace(pref, **off) if off else pref)


def energy_loss(model, coord, atype, box, energy, forces, virial=None,
                pref: LossPrefactors = LossPrefactors(), *, backend: str = "numpy",
                atom_ener=None, atom_pref=None) -> float:
    """The loss (module docstring) of a batch of frames, averaged over frames."""
    return energy_loss_and_grad(model, coord, atype, box, energy, forces, virial, pref,
                                grad=False, backend=backend, atom_ener=atom_ener,
                                atom_pref=atom_pref)[0]


def energy_loss_and_grad(model, coord, atype, box, energy, forces, virial=None,
                         pref: LossPrefactors = LossPrefactors(), *, grad: bool = True,
                         backend: str = "numpy", atom_ener=None, atom_pref=None,
                         terms: list | None = None):
    """Loss and ``{name: dL/dparam}`` of a batch of frames (names of
    :func:`symref.model.params.parameters`).

    ``coord`` (nf, natoms, 3), ``atype`` (natoms,), ``box`` (nf, 3, 3) or None,
    ``energy`` (nf,), ``forces`` (nf, natoms, 3), ``virial`` (nf, 3, 3) or None
    (then ``pref.pref_v`` must be 0), ``atom_ener`` (nf, natoms; needed when
    ``pref.pref_ae`` is nonzero), ``atom_pref`` (nf, natoms, or nf x natoms x 3 per
    component; needed when ``pref.pref_pf`` is nonzero).  Units: eV, Å.  ``backend="numba"``
    uses the fast path (:func:`symref.fast.cpu_loss.frame_grad` or
    :func:`symref.fast.family_loss.frame_grad`: compact pairs, blocks on threads; a model
    neither covers runs the reference with a ``RuntimeWarning``); ``"numpy"`` is the
    reference.  ``terms``: a list that gets each frame's mean squares (:func:`_residuals`)
    for :func:`energy_errors`.
    """
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    frame_grad = _frame  # the gradient of one frame from its residuals
    if backend == "numba":
        frame_grad, backend = _fast_frame_grad(model)
    coord, atype, box = normalize_inputs(coord, atype, box, model.ntypes)
    nf, natoms, _ = coord.shape
    energy = np.asarray(energy, dtype=np.float64).reshape(nf)
    forces = np.asarray(forces, dtype=np.float64).reshape(nf, natoms, 3)
    if virial is None:
        if pref.pref_v != 0:
            raise ValueError("pref_v is nonzero but no virial labels were given")
    else:
        virial = np.asarray(virial, dtype=np.float64).reshape(nf, 3, 3)
    atomic = {}
    for key, a, p in (("atom_ener", atom_ener, pref.pref_ae), ("atom_pref", atom_pref,
                                                             pref.pref_pf)):
        if p and a is None:
            raise ValueError(f"pref_{'ae' if key == 'atom_ener' else 'pf'} is nonzero but no "
                             f"{key} labels were given")
        if p:
            a = np.asarray(a, dtype=np.float64)
            if a.size not in (nf * natoms, 3 * nf * natoms if key == "atom_pref" else -1):
                raise ValueError(f"{key}: shape {a.shape}, expected ({nf}, {natoms})"
                                 + (f" or ({nf}, {natoms}, 3)" if key == "atom_pref" else ""))
            atomic[key] = a.reshape(nf, natoms, -1)[..., 0] if key == "atom_ener" \
                else a.reshape(nf, natoms, -1)
    total, grads = 0.0, None
    for f in range(nf):
        box_f = None if box is None else box[f]
        lf, t, dE, dF, dW, gpref = _residuals(
            model, coord[f], atype[f], box_f, energy[f], forces[f],
            None if virial is None else virial[f], pref, backend,
            *(atomic[k][f] if k in atomic else None for k in ("atom_ener", "atom_pref")))
        total += lf / nf
        if terms is not None:
            terms.append(t)
        if grad:
            gf = grad_arrays(model, *frame_grad(model, coord[f], atype[f], box_f, dE, dF, dW,
                                                gpref))
            if grads is None:
                grads = {k: v / nf for k, v in gf.items()}
            else:
                for k, v in gf.items():
                    grads[k] += v / nf
    return total, grads


def _fast_frame_grad(model):
    """``(frame_grad, backend)`` of ``backend="numba"``: :func:`symref.fast.cpu_loss.frame_grad`
    (se_e2_a) or :func:`symref.fast.family_loss.frame_grad` (se_e2_r, se_e3, hybrid) and
    "numba"; where neither covers the model, the reference :func:`_frame` and "numpy",
    with a ``RuntimeWarning`` naming the reason."""
    from symref.fast import cpu_loss, fallback_warning, family_loss

    fast = cpu_loss if isinstance(model.descriptor, SeE2A) else family_loss
    reason = fast.unsupported_reason(model)
    if reason is None:
        return fast.frame_grad, "numba"
    fallback_warning("numba", f"loss gradient: {reason}", stacklevel=3)
    return _frame, "numpy"


def _residuals(model, coord, atype, box, e_ref, f_ref, w_ref, pref, backend, ae_ref=None,
               q=None):
    """One frame from one evaluation on ``backend``: ``(loss, terms, dE, dF, dW, gpref)``.

    ``terms``: the frame's mean squares ``{"e": ΔE², "f": mean (ΔF/s)², "v": mean ΔW²,
    "ae": mean Δe², "pf": mean q (ΔF/s)²}`` (those with labels; the atomic means over
    the N_s atoms not in ``model.atom_exclude_types``, deepmd-kit's atom mask), ``loss``
    the module docstring's with N_s for N.  ``dE``, ``dF`` (N x 3), ``dW`` (3 x 3, None
    without ``w_ref``) and the prefactors ``gpref`` seed the frame gradient (which divides
    by N): the residuals themselves for the plain loss on all atoms, else the seeds of
    :func:`_seeds`."""
    N = coord.shape[0]
    ev = model.evaluate(coord[None], atype, None if box is None else box[None], backend=backend)
    dE = float(ev["energy"][0] - e_ref)
    dF = ev["forces"][0] - f_ref  # N x 3
    dW = ev["virial"][0] - w_ref if w_ref is not None else None  # 3 x 3
    mask = (~np.isin(atype, list(model.atom_exclude_types))).astype(np.float64)  # N
    Ns = max(int(mask.sum()), 1)
    inv_s = None if pref.relative_f is None else \
        1.0 / (np.linalg.norm(f_ref, axis=1) + pref.relative_f)  # N: 1/s_k
    dFs = dF if inv_s is None else dF * inv_s[:, None]  # N x 3
    dFs2 = dFs * dFs if Ns == N else dFs * dFs * mask[:, None]  # N x 3
    terms = {"e": dE * dE, "f": float(np.sum(dFs2)) / (3 * Ns)}
    if w_ref is not None:
        terms["v"] = float(np.mean(dW * dW))
    de = None
    if pref.pref_ae:
        de = ev["atom_energy"][0] - ae_ref  # N
        terms["ae"] = float(np.sum(de * de * mask)) / Ns
    if pref.pref_pf:
        q = np.broadcast_to(q.reshape(N, -1), (N, 3))  # N x 3: per atom or per component
        terms["pf"] = float(np.sum(dFs2 * q)) / (3 * Ns)
    loss = _frame_loss(terms, pref, Ns)
    r = N * dp_inv_natoms(Ns)  # the frame gradient's 1/N times r: deepmd-kit's 1/N_s
    if not _extended(pref) and Ns == N:  # the plain e/f/v loss: the residuals themselves
        return loss, terms, dE, dF, dW, LossPrefactors(pref.pref_e * r, pref.pref_f,
                                                       pref.pref_v * r)
    return (loss, terms, *_seeds(pref, dE, dF, dW, de, np.ones(N) if inv_s is None else inv_s,
                                 q, r, mask * (N / Ns)), LossPrefactors(1.0, 1.0, pref.pref_v * r))


def _extended(pref) -> bool:
    """Whether the ae, pf or relative_f terms are on (else the plain e/f/v loss)."""
    return bool(pref.pref_ae or pref.pref_pf or pref.relative_f is not None)


def dp_inv_natoms(N: int) -> float:
    """1/N as deepmd-kit's ``ener`` loss computes it: ``1.0 / sum(mask)`` of the model's
    integer atom mask, a float32 division (torch's default dtype), so 1/N rounded to
    float32 (for N = 192: 2^-25 = 3.0e-8 relative) weighs the energy and virial terms
    and the displayed rmse_e, rmse_v (as its square, also in float32)."""
    return float(np.float32(1.0) / np.float32(N))


def _frame_loss(terms: dict, pref, N: int) -> float:
    """One frame's loss from its mean squares (:func:`_residuals`); 1/N as deepmd-kit
    rounds it (:func:`dp_inv_natoms`)."""
    inv = dp_inv_natoms(N)
    return (pref.pref_e * terms["e"] * inv + pref.pref_f * terms["f"]
            + pref.pref_v * terms.get("v", 0.0) * inv + pref.pref_ae * terms.get("ae", 0.0)
            + pref.pref_pf * terms.get("pf", 0.0))


def _seeds(pref, dE, dF, dW, de, inv_s, q, r, w):
    """``(dE, dF, dW)`` that seed the frame gradient with ``pref_e = pref_f = 1``:
    ``r p_e ΔE + w_k p_ae Δe_k`` per atom (a float without the ae term) and
    ``w_k (p_f + p_pf q_k) ΔF_k / s_k²``, with r = N × deepmd-kit's float32 1/N_s and
    ``w`` (N) = N/N_s on the selected atoms, 0 on the excluded ones (module docstring)."""
    dE_seed = r * pref.pref_e * dE if de is None else r * pref.pref_e * dE + pref.pref_ae * w * de
    ws = w * inv_s * inv_s  # N
    wf = (pref.pref_f * ws)[:, None]  # N x 1
    if pref.pref_pf:
        wf = wf + pref.pref_pf * q * ws[:, None]  # N x 3
    return dE_seed, dF * wf, dW


def energy_errors(model, system, pref: LossPrefactors, backend: str = "numba") -> dict:
    """deepmd-kit's displayed errors of the energy loss on the frames of ``system`` (one
    batch): ``rmse`` = √L, and ``rmse_e`` (eV/atom), ``rmse_f``, ``rmse_v`` (eV/atom),
    ``rmse_ae``, ``rmse_pf`` for the labels the system has (module docstring)."""
    ae, q, pref = energy_labels(system, pref)
    terms: list = []
    loss, _ = energy_loss_and_grad(model, system.coord, system.atype, system.box,
                                   system.energy, system.force,
                                   system.virial if pref.pref_v else None,
                                   pref, grad=False, backend=backend, atom_ener=ae,
                                   atom_pref=q, terms=terms)
    ns = int(selected_atoms(model, system.atype)[0])
    inv2 = float(np.float32(dp_inv_natoms(ns)) ** 2)  # deepmd-kit: inv**2, in float32
    out = {"rmse": float(np.sqrt(loss))}
    for k, w in (("e", inv2), ("f", 1.0), ("v", inv2), ("ae", 1.0), ("pf", 1.0)):
        if k in terms[0]:
            out[f"rmse_{k}"] = float(np.sqrt(np.mean([t[k] * w for t in terms])))
    return out


def _frame(model, coord, atype, box, dE, dF, dW, pref):
    """Reference gradient of one frame's loss from its residuals (:func:`_residuals`):
    ``(emb_grads, fit_grads, dbias)`` for :func:`symref.model.params.grad_arrays`.

    ``dE`` (float, or N: per-atom seeds of the atomic-energy term), ``dF`` (N x 3),
    ``dW`` (3 x 3, or None: no virial term).
    :func:`symref.fast.cpu_loss.frame_grad` is its fast twin (same arguments and result).
    """
    desc = model.descriptor
    N = coord.shape[0]
    # ---- the same neighbours and rows as the evaluation
    nlist, mask, rij, R, env_cache = model.environment(coord, atype, box)
    # ---- pair tangent r_dot (module docstring)
    c_f = 2.0 * pref.pref_f / (3 * N)
    rdot = c_f * (dF[np.maximum(nlist, 0)] - dF[:, None, :])  # nloc x nnei x 3
    if dW is not None:
        c_v = 2.0 * pref.pref_v / (9 * N)
        rdot += c_v * np.einsum("ab,ijb->ija", dW, rij)
    rdot = np.where(mask[..., None], rdot, 0.0)
    ops = descriptor_ops(desc)  # se_e2_a, se_e2_r, hybrid (symref.reference.descriptor.dispatch)
    Rd = ops.env_tangent(rdot, env_cache)  # nloc x nnei x 4 (a hybrid: one per member)
    keep = ops.keep(desc, atype, nlist)
    D, Dd, d_cache = ops.forward_dual(R, Rd, atype, keep, desc)
    _, _, f_cache = energy_fitting_forward_dual(D, Dd, atype, model.fitting)
    alive = (~np.isin(atype, model.atom_exclude_types)).astype(np.float64)  # N
    a = 2.0 * pref.pref_e * np.asarray(dE) / N  # scalar or N
    (Dbar, Ddbar), fg = energy_fitting_backward_dual(a * alive, -alive, f_cache)
    _, emb_grads = ops.backward_dual(Dbar, Ddbar, d_cache)
    return emb_grads, fg["nets"], fg["bias_atom_e"]


# ------------------------------------------------------------ tensor (dipole/polar) loss
@dataclass
class TensorPrefactors:
    """deepmd-kit's ``tensor`` loss weights: ``pref`` (global label), ``pref_atomic``."""

    pref: float = 1.0
    pref_atomic: float = 1.0


def tensor_loss_and_grad(model, coord, atype, box, label=None, atom_label=None,
                         pref: TensorPrefactors = TensorPrefactors(), *, grad: bool = True,
                         backend: str = "numpy"):
    r"""deepmd-kit's ``tensor`` loss of a :class:`~symref.model.tensor.DeepTensor` and its gradient.

    For frames f with :math:`N_s` atoms not in ``model.atom_exclude_types`` and
    c = 3 (dipole) or 9 (polarizability) components,

    .. math::

        L = p_a \frac{1}{n_f N_s c}\sum_{f,i,k}(y_{fik} - y^*_{fik})^2
          + p_g \frac{1}{n_f c}\sum_{f,k}(Y_{fk} - Y^*_{fk})^2,\qquad Y_f = \sum_i y_{fi},

    (``atom_label`` (nf, natoms, ...) holds zeros for atoms outside the selected
    types, as deepmd-kit's data loader fills them; the model gives 0 there too).  The
    atomic term is a mean over the selected atoms only, as deepmd-kit's (its atom mask
    includes the atom exclusion: ``masked_atom_mean``).  No forces are involved, so
    the gradient is one ordinary backward pass seeded with
    :math:`\bar y_{fi} = 2p_a(y_{fi}-y^*_{fi})/(n_f N_s c) + 2p_g(Y_f - Y^*_f)/(n_f c)`
    through the head (:func:`~symref.reference.fitting.tensor_fitting_backward`: D̄, R̄ = T̄[:, :, 1:]),
    the descriptor and the embedding nets.  Returns ``(loss, {name: dL/dparam} or None)``.
    ``backend="numba"``: forward and backward on the fast path
    (:mod:`symref.fast.cpu_tensor`; models it cannot train use the reference, with a
    warning); ``"numpy"``: the reference.
    """
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    coord, atype, box = normalize_inputs(coord, atype, box, model.ntypes)
    nf, N, _ = coord.shape
    shape = model.fitting.out_shape
    c = int(np.prod(shape))
    if label is None and atom_label is None:
        raise ValueError("tensor loss needs a global label, an atomic label or both")
    if label is not None:
        label = np.asarray(label, dtype=np.float64).reshape((nf,) + shape)
    if atom_label is not None:
        atom_label = np.asarray(atom_label, dtype=np.float64).reshape((nf, N) + shape)
    total, grads = 0.0, None
    nsel = selected_atoms(model, atype)  # nf
    for f in range(nf):
        y, cache = model.tensor_forward(coord[f], atype[f], None if box is None else box[f],
                                        backend=backend, train=grad)
        dy = np.zeros_like(y)  # nloc x shape
        if atom_label is not None and pref.pref_atomic:
            r = y - atom_label[f]
            total += pref.pref_atomic * float(np.sum(r * r)) / (nf * nsel[f] * c)
            dy += 2.0 * pref.pref_atomic * r / (nf * nsel[f] * c)
        if label is not None and pref.pref:
            r = y.sum(axis=0) - label[f]
            total += pref.pref * float(np.sum(r * r)) / (nf * c)
            dy += 2.0 * pref.pref * r / (nf * c)
        if not grad:
            continue
        _, g = model.tensor_backward(dy, cache, param_grads=True)
        emb_list = [g["embeddings"].get(i) for i in range(len(model.descriptor.embeddings))]
        gf = grad_arrays(model, emb_list, g["nets"], g["bias_atom"])
        if grads is None:
            grads = gf
        else:
            for k, v in gf.items():
                grads[k] += v
    return total, grads


def selected_atoms(model, atype) -> np.ndarray:
    """Per frame, the number of atoms whose type is not in ``model.atom_exclude_types``
    (deepmd-kit's atom mask): the count the tensor loss's atomic term and the displayed
    per-atom global error divide by.  ``atype`` (natoms,) or (nf, natoms); at least 1."""
    atype = np.atleast_2d(np.asarray(atype))
    excl = np.isin(atype, np.asarray(sorted(model.atom_exclude_types), dtype=np.int64))
    return np.maximum((~excl).sum(axis=1), 1)  # nf
