r"""Fitting heads on the descriptor: per-type energy nets and the equivariant heads.

.. math::

    E_i = m_{t_i}\,\big(\mathcal F_{t_i}(D_i) + b^{e}_{t_i}\big),\qquad
    \frac{\partial E_i}{\partial D_i} = m_{t_i}\, \mathcal F_{t_i}'(D_i)

with :math:`\mathcal F_t` the fitting MLP of type t (tanh hidden layers with
the residual rule, a linear width-1 output), :math:`b^e` = ``bias_atom_e`` and
:math:`m_t = 0` for ``exclude_types``, else 1.  The model-level ``out_bias``
is added by :mod:`symref.model.deeppot`.  Atoms of one type are batched so each layer
is one matrix-matrix product.

Equivariant heads (shared by :class:`TensorFitting` and :mod:`symref.vcnn`), for rows
:math:`\mathbf w_r` of W (r x d) that rotate like positions (:math:`W \mapsto W Q^\top`)
and invariant weights:

.. math::

    \text{vector: } \mathbf y = W^\top o = \sum_r o_r \mathbf w_r,\qquad
    \bar o = W \bar{\mathbf y},\quad \bar W = o \otimes \bar{\mathbf y};

    \text{tensor: } Y = W^\top P\, W,\qquad \bar P = W \bar Y W^\top,\quad
    \bar W = P W \bar Y^\top + P^\top W \bar Y,

with P either a full r x r matrix or ``diag(p)`` given as the vector p (then
:math:`\bar p_r = \mathbf w_r^\top \bar Y \mathbf w_r`,
:math:`\bar W_r = p_r (\bar Y + \bar Y^\top) \mathbf w_r`).  Hence
:math:`\mathbf y \mapsto Q \mathbf y` and :math:`Y \mapsto Q Y Q^\top`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symref.reference.nn import (Layer, mlp_backward, mlp_backward_dual, mlp_forward, mlp_forward_dual,
                                 mlp_hidden_outputs)


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
    """Backward of :func:`energy_fitting_forward`: ``dE`` (nloc,) -> ``(dD, grads)``.

    ``dD``: nloc x M1*M2.  ``grads``: with ``param_grads`` the dict
    ``{"nets": {type: [layer grads]}, "bias_atom_e": (ntypes,)}``, else ``None``.
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
    return dD, ({"nets": grads, "bias_atom_e": dbias} if param_grads else None)


def fitting_hidden_outputs(cache, fit, nloc: int) -> list[np.ndarray]:
    """The hidden layers' outputs of the fitting nets, one nloc x neuron[k] array per
    hidden layer (zero rows for atoms without a net: ``exclude_types``), read from the
    cache of :func:`energy_fitting_forward` or :func:`tensor_fitting_forward` (``fit``:
    the head, for the widths)."""
    dtype = cache[1]
    out = [np.zeros((nloc, layer.nout), dtype=dtype) for layer in fit.nets[0][:-1]]
    for _, rows, c, *_ in cache[-1]:
        for full, y in zip(out, mlp_hidden_outputs(c)):  # nrows x neuron[k]
            full[rows] = y
    return out


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
    ``((Dbar, Ddbar), {"nets": {type: layer grads}, "bias_atom_e": (ntypes,)})``."""
    shape, dtype, ntypes, caches = cache
    Dbar = np.zeros(shape, dtype=dtype)
    Ddbar = np.zeros(shape, dtype=dtype)
    grads, dbias = {}, np.zeros(ntypes, dtype=dtype)
    for t, rows, c in caches:
        (xb, xdb), g = mlp_backward_dual(Ebar[rows][:, None], Edbar[rows][:, None], c)
        Dbar[rows], Ddbar[rows] = xb, xdb
        grads[t] = g
        dbias[t] = Ebar[rows].sum()
    return (Dbar, Ddbar), {"nets": grads, "bias_atom_e": dbias}


# --------------------------------------------------------- equivariant heads
def vector_head_forward(o: np.ndarray, W: np.ndarray):
    """``y = Wᵀ o``: ``o`` (B x r), ``W`` (B x r x d) -> ``(y (B x d), cache)``."""
    return np.einsum("br,brd->bd", o, W), (o, W)


def vector_head_backward(dy: np.ndarray, cache):
    """Backward of :func:`vector_head_forward`: ``((do (B x r), dW (B x r x d)), None)``."""
    o, W = cache
    do = np.einsum("brd,bd->br", W, dy)  # B x r
    dW = o[:, :, None] * dy[:, None, :]  # B x r x d
    return (do, dW), None


def tensor_head_forward(P: np.ndarray, W: np.ndarray):
    """``Y = Wᵀ P W``: ``P`` (B x r, the diagonal) or (B x r x r), ``W`` (B x r x d)
    -> ``(Y (B x d x d), cache)``."""
    if P.ndim == 2:
        Y = np.einsum("br,brd,bre->bde", P, W, W)
    else:
        Y = np.einsum("brd,brs,bse->bde", W, P, W)
    return Y, (P, W)


def tensor_head_backward(dY: np.ndarray, cache):
    """Backward of :func:`tensor_head_forward`: ``((dP (like P), dW (B x r x d)), None)``."""
    P, W = cache
    if P.ndim == 2:
        dP = np.einsum("brd,bde,bre->br", W, dY, W)  # B x r
        dW = P[:, :, None] * np.einsum("bre,bde->brd", W, dY + dY.transpose(0, 2, 1))
    else:
        dP = np.einsum("brd,bde,bse->brs", W, dY, W)  # B x r x r
        dW = (np.einsum("brs,bse,bde->brd", P, W, dY)  # P W Ȳᵀ
              + np.einsum("bsr,bsd,bde->bre", P, W, dY))  # Pᵀ W Ȳ
    return (dP, dW), None


@dataclass
class TensorFitting:
    r"""Per-type dipole or polarizability fitting nets (deepmd-kit ``dipole`` / ``polar``).

    With ``gr`` = :math:`\mathcal R_i = T_{i,:,1:4}` (M1 x 3, rows rotate as vectors),
    :math:`o_i = \mathcal F_{t_i}(D_i) + b_{t_i}` and :math:`m_{t}` = 0 for ``exclude_types``:

    - ``kind="dipole"``: :math:`o_i \in \mathbb R^{M_1}`,
      :math:`\boldsymbol\mu_i = m_{t_i}\, \mathcal R_i^\top o_i`;
    - ``kind="polar"``, ``fit_diag``: :math:`p_i = s_{t_i} o_i \in \mathbb R^{M_1}`,
      :math:`\alpha_i = m_{t_i}\big(\mathcal R_i^\top \operatorname{diag}(p_i)\, \mathcal R_i
      + [\text{shift\_diag}]\; c_{t_i} s_{t_i} I\big)`;
    - ``kind="polar"``, not ``fit_diag``: :math:`o_i` is M1 x M1,
      :math:`P_i = s_{t_i}(o_i + o_i^\top)/2`, :math:`\alpha_i = m_{t_i}(\mathcal R_i^\top P_i \mathcal R_i + \dots)`.

    ``s`` = ``scale`` (ntypes), ``c`` = ``constant_matrix`` (ntypes), ``b`` =
    ``bias_atom`` (ntypes x nout).  Rotating the frame by Q maps
    :math:`\mathcal R_i \mapsto \mathcal R_i Q^\top`, hence
    :math:`\boldsymbol\mu \mapsto Q\boldsymbol\mu` and :math:`\alpha \mapsto Q\alpha Q^\top`.
    Backward (:func:`tensor_fitting_backward`), for the dipole
    :math:`\bar o_i = \mathcal R_i \bar{\boldsymbol\mu}_i`, :math:`\bar{\mathcal R}_i = o_i \otimes \bar{\boldsymbol\mu}_i`;
    for the polarizability :math:`\bar P = \mathcal R \bar\alpha \mathcal R^\top`,
    :math:`\bar{\mathcal R} = P\mathcal R(\bar\alpha + \bar\alpha^\top)` (P symmetric), and
    :math:`\bar p_m = \mathbf g_m^\top \bar\alpha\, \mathbf g_m` in the diagonal case.
    """

    kind: str
    neuron: list[int]
    nets: list[list[Layer]]
    bias_atom: np.ndarray  # ntypes x nout
    embedding_width: int  # M1
    resnet_dt: bool = True
    exclude_types: list[int] = field(default_factory=list)
    fit_diag: bool = True
    scale: np.ndarray | None = None  # ntypes (polar)
    shift_diag: bool = True
    constant_matrix: np.ndarray | None = None  # ntypes (polar)
    activation_function: str = "tanh"
    precision: str = "float64"
    rcond: float | None = None
    trainable: list[bool] | bool = True
    r_differentiable: bool = True
    c_differentiable: bool = True

    def __post_init__(self):
        if self.kind not in ("dipole", "polar"):
            raise ValueError(f"kind must be 'dipole' or 'polar', got {self.kind!r}")
        nt = len(self.nets)
        if self.scale is None:
            self.scale = np.ones(nt)
        if self.constant_matrix is None:
            self.constant_matrix = np.zeros(nt)

    @property
    def ntypes(self) -> int:
        return len(self.nets)

    @property
    def nout(self) -> int:
        M1 = self.embedding_width
        return M1 if (self.kind == "dipole" or self.fit_diag) else M1 * M1

    @property
    def out_shape(self) -> tuple:
        return (3,) if self.kind == "dipole" else (3, 3)


def tensor_fitting_forward(D: np.ndarray, gr: np.ndarray, atype_loc: np.ndarray,
                           fit: TensorFitting):
    """``D`` (nloc x M1*M2), ``gr`` (nloc x M1 x 3) -> atomic dipoles (nloc x 3) or
    polarizabilities (nloc x 3 x 3); returns ``(out, cache)``.  The isotropic shift
    ``c_t s_t I`` is included (``shift_diag``); the model-level bias is not."""
    nloc, M1 = D.shape[0], fit.embedding_width
    out = np.zeros((nloc,) + fit.out_shape, dtype=D.dtype)
    caches = []
    for t in range(fit.ntypes):
        rows = np.nonzero(atype_loc == t)[0]
        if len(rows) == 0 or t in fit.exclude_types:
            continue
        o, c = mlp_forward(D[rows], fit.nets[t])  # nrows x nout
        o = o + fit.bias_atom[t]
        g = gr[rows]  # nrows x M1 x 3
        if fit.kind == "dipole":
            out[rows], hc = vector_head_forward(o, g)
        elif fit.fit_diag:
            out[rows], hc = tensor_head_forward(fit.scale[t] * o, g)  # p: nrows x M1
        else:
            o2 = o.reshape(-1, M1, M1)
            p = fit.scale[t] * 0.5 * (o2 + o2.transpose(0, 2, 1))  # nrows x M1 x M1
            out[rows], hc = tensor_head_forward(p, g)
        if fit.kind == "polar" and fit.shift_diag:
            out[rows] += fit.constant_matrix[t] * fit.scale[t] * np.eye(3)
        caches.append((t, rows, c, hc))
    return out, (D.shape, D.dtype, gr.shape, fit, caches)


def tensor_head_weights(cache) -> np.ndarray:
    """The invariant weights the head applies to ``gr`` for every atom, read from the cache
    of :func:`tensor_fitting_forward`: ``o_i`` (dipole, nloc x M1), ``p_i = s_t o_i``
    (``fit_diag`` polar, nloc x M1) or ``P_i = s_t (o_i + o_iᵀ) / 2`` (nloc x M1 x M1);
    zero rows for ``exclude_types``."""
    shape, dtype, gshape, fit, caches = cache
    M1 = fit.embedding_width
    full = (M1, M1) if fit.kind == "polar" and not fit.fit_diag else (M1,)
    out = np.zeros((shape[0],) + full, dtype=dtype)  # nloc x M1 (x M1)
    for _, rows, _, hc in caches:
        out[rows] = hc[0]
    return out


def tensor_fitting_backward(dout: np.ndarray, cache, *, param_grads: bool = False):
    """Backward of :func:`tensor_fitting_forward` for ``dout`` (like out): ``((dD, dgr), grads)``.

    ``dD``: nloc x M1*M2, ``dgr``: nloc x M1 x 3.  ``grads``: with ``param_grads`` the
    dict ``{"nets": {type: layer grads}, "bias_atom": (ntypes x nout)}``, else ``None``."""
    shape, dtype, gshape, fit, caches = cache
    M1 = fit.embedding_width
    dD = np.zeros(shape, dtype=dtype)  # nloc x M1*M2
    dgr = np.zeros(gshape, dtype=dtype)  # nloc x M1 x 3
    grads, dbias = {}, np.zeros((fit.ntypes, fit.nout), dtype=dtype)
    for t, rows, c, hc in caches:
        dy = dout[rows]
        if fit.kind == "dipole":
            (do, dgr[rows]), _ = vector_head_backward(dy, hc)  # do: nrows x M1
        else:
            (dP, dgr[rows]), _ = tensor_head_backward(dy, hc)  # dP: nrows x M1 (x M1)
            if fit.fit_diag:
                do = fit.scale[t] * dP
            else:
                do = (fit.scale[t] * 0.5 * (dP + dP.transpose(0, 2, 1))).reshape(-1, M1 * M1)
        dx, gl = mlp_backward(do, c)
        dD[rows] = dx
        if param_grads:
            grads[t] = gl
            dbias[t] = do.sum(axis=0)
    return (dD, dgr), ({"nets": grads, "bias_atom": dbias} if param_grads else None)
