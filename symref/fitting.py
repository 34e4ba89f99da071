r"""Energy fitting head: per-type nets on the descriptor, forward and backward.

.. math::

    E_i = m_{t_i}\,\big(\mathcal F_{t_i}(D_i) + b^{e}_{t_i}\big),\qquad
    \frac{\partial E_i}{\partial D_i} = m_{t_i}\, \mathcal F_{t_i}'(D_i)

with :math:`\mathcal F_t` the fitting MLP of type t (tanh hidden layers with
the residual rule, a linear width-1 output), :math:`b^e` = ``bias_atom_e`` and
:math:`m_t = 0` for ``exclude_types``, else 1.  The model-level ``out_bias``
is added by :mod:`symref.models`.  Atoms of one type are batched so each layer
is one matrix-matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn import Layer, mlp_backward, mlp_backward_dual, mlp_forward, mlp_forward_dual


@dataclass
class EnergyFitting:
    """Per-type energy fitting nets (deepmd-kit ``ener`` fitting, ``mixed_types`` false).

    ``nets[t]``: layers for centre type t; hidden tanh layers then a linear
    width-1 output layer.  ``bias_atom_e``: ntypes, added to each atomic energy.
    ``exclude_types``: centre types whose atomic energy is zero.
    """

    neuron: list[int]
    nets: list[list[Layer]]
    bias_atom_e: np.ndarray
    resnet_dt: bool = True
    exclude_types: list[int] = field(default_factory=list)
    activation_function: str = "tanh"
    precision: str = "float64"
    rcond: float | None = None
    trainable: list[bool] | bool = True
    atom_ener: list | None = None

    @property
    def ntypes(self) -> int:
        return len(self.nets)


def energy_fitting_forward(D: np.ndarray, atype_loc: np.ndarray, fit: EnergyFitting):
    """``D`` (nloc x M1*M2) -> atomic energies (nloc,); returns ``(E, cache)``."""
    nloc = D.shape[0]
    E = np.zeros(nloc, dtype=D.dtype)  # nloc
    caches = []
    for t in range(fit.ntypes):
        rows = np.nonzero(atype_loc == t)[0]
        if len(rows) == 0 or t in fit.exclude_types:
            continue
        out, cache = mlp_forward(D[rows], fit.nets[t])  # nrows x 1
        E[rows] = out[:, 0] + fit.bias_atom_e[t]
        caches.append((t, rows, cache))
    return E, (D.shape, D.dtype, fit.ntypes, caches)


def energy_fitting_backward(dE: np.ndarray, cache, *, param_grads: bool = False):
    """Backward of :func:`energy_fitting_forward`: ``dE`` (nloc,) -> ``dD`` (nloc x M1*M2).

    With ``param_grads`` also returns ``{type: [layer grads]}`` and
    ``d bias_atom_e`` (ntypes,).
    """
    shape, dtype, ntypes, caches = cache
    dD = np.zeros(shape, dtype=dtype)  # nloc x M1*M2
    grads, dbias = {}, np.zeros(ntypes, dtype=dtype)
    for t, rows, c in caches:
        dx, g = mlp_backward(dE[rows][:, None], c)
        dD[rows] = dx
        if param_grads:
            grads[t] = g
            dbias[t] = dE[rows].sum()
    if param_grads:
        return dD, grads, dbias
    return dD


def energy_fitting_forward_dual(D, Dd, atype_loc, fit: EnergyFitting):
    """Atomic energies and their tangents along ``Dd``: ``(E, Ed, cache)`` (nloc each)."""
    nloc = D.shape[0]
    E = np.zeros(nloc, dtype=D.dtype)
    Ed = np.zeros(nloc, dtype=D.dtype)
    caches = []
    for t in range(fit.ntypes):
        rows = np.nonzero(atype_loc == t)[0]
        if len(rows) == 0 or t in fit.exclude_types:
            continue
        out, outd, c = mlp_forward_dual(D[rows], Dd[rows], fit.nets[t])  # nrows x 1
        E[rows] = out[:, 0] + fit.bias_atom_e[t]
        Ed[rows] = outd[:, 0]
        caches.append((t, rows, c))
    return E, Ed, (D.shape, D.dtype, fit.ntypes, caches)


def energy_fitting_backward_dual(Ebar, Edbar, cache):
    """Backward of :func:`energy_fitting_forward_dual` for ``<Ebar, E> + <Edbar, Ed>``:
    ``(Dbar, Ddbar, {type: layer grads}, d bias_atom_e)``."""
    shape, dtype, ntypes, caches = cache
    Dbar = np.zeros(shape, dtype=dtype)
    Ddbar = np.zeros(shape, dtype=dtype)
    grads, dbias = {}, np.zeros(ntypes, dtype=dtype)
    for t, rows, c in caches:
        xb, xdb, g = mlp_backward_dual(Ebar[rows][:, None], Edbar[rows][:, None], c)
        Dbar[rows], Ddbar[rows] = xb, xdb
        grads[t] = g
        dbias[t] = Ebar[rows].sum()
    return Dbar, Ddbar, grads, dbias
