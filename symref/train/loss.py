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
from symref.reference.fitting import energy_fitting_backward_dual, energy_fitting_forward_dual
from symref.model.base import normalize_inputs
from symref.model.params import grad_arrays


@dataclass
class LossPrefactors:
    """Prefactors p_e, p_f, p_v of the energy, force and virial terms."""

    pref_e: float = 1.0
    pref_f: float = 1.0
    pref_v: float = 0.0


def energy_loss(model, coord, atype, box, energy, forces, virial=None,
                pref: LossPrefactors = LossPrefactors(), *, backend: str = "numpy") -> float:
    """The loss (module docstring) of a batch of frames, averaged over frames."""
    return energy_loss_and_grad(model, coord, atype, box, energy, forces, virial, pref,
                                grad=False, backend=backend)[0]


def energy_loss_and_grad(model, coord, atype, box, energy, forces, virial=None,
                         pref: LossPrefactors = LossPrefactors(), *, grad: bool = True,
                         backend: str = "numpy"):
    """Loss and ``{name: dL/dparam}`` of a batch of frames (names of
    :func:`symref.model.params.parameters`).

    ``coord`` (nf, natoms, 3), ``atype`` (natoms,), ``box`` (nf, 3, 3) or None,
    ``energy`` (nf,), ``forces`` (nf, natoms, 3), ``virial`` (nf, 3, 3) or None
    (then ``pref.pref_v`` must be 0).  Units: eV, Å.  ``backend="numba"`` uses
    the fast path (:func:`symref.fast.cpu_loss.frame_grad` or
    :func:`symref.fast.family_loss.frame_grad`: compact pairs, blocks on threads; a model
    neither covers runs the reference with a ``RuntimeWarning``); ``"numpy"`` is the reference.
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
    total, grads = 0.0, None
    for f in range(nf):
        box_f = None if box is None else box[f]
        lf, dE, dF, dW = _residuals(model, coord[f], atype[f], box_f, energy[f], forces[f],
                                    None if virial is None else virial[f], pref, backend)
        total += lf / nf
        if grad:
            gf = grad_arrays(model, *frame_grad(model, coord[f], atype[f], box_f, dE, dF, dW,
                                                pref))
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

    fast = family_loss if type(model.descriptor).__name__ != "SeE2A" else cpu_loss
    reason = fast.unsupported_reason(model)
    if reason is None:
        return fast.frame_grad, "numba"
    fallback_warning("numba", f"loss gradient: {reason}", stacklevel=3)
    return _frame, "numpy"


def _residuals(model, coord, atype, box, e_ref, f_ref, w_ref, pref, backend):
    """Loss of one frame and the residuals dE, dF (N x 3), dW (3 x 3, None without ``w_ref``),
    from one evaluation on ``backend``."""
    N = coord.shape[0]
    ev = model.evaluate(coord[None], atype, None if box is None else box[None], backend=backend)
    dE = float(ev["energy"][0] - e_ref)
    dF = ev["forces"][0] - f_ref  # N x 3
    dW = ev["virial"][0] - w_ref if w_ref is not None else None  # 3 x 3
    loss = pref.pref_e * dE * dE / N + pref.pref_f * np.mean(dF * dF)
    if w_ref is not None:
        loss += pref.pref_v * np.mean(dW * dW) / N
    return loss, dE, dF, dW


def _frame(model, coord, atype, box, dE, dF, dW, pref):
    """Reference gradient of one frame's loss from its residuals (:func:`_residuals`):
    ``(emb_grads, fit_grads, dbias)`` for :func:`symref.model.params.grad_arrays`.

    ``dE`` (float), ``dF`` (N x 3), ``dW`` (3 x 3, or None: no virial term).
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
    a = 2.0 * pref.pref_e * dE / N
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
