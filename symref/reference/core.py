r"""The symmetric core shared by ``se_e2_a`` and the Vector Cloud Neural Network.

For a cloud b of points j (a centre atom's neighbours, or the points around a
VCNN query point) with embedding rows :math:`G_{bj}` (M1 invariant features
per point) and rows :math:`X_{bj}` (c columns that transform with the frame):

.. math::

    L_b = s_b \sum_j G_{bj} \otimes X_{bj} \quad (M_1 \times c), \qquad
    D_b = L_b\, L_{b,<}^\top \quad (M_1 \times M_2),\ \ L_{b,<} = L_{b,:M_2}.

``L`` is the DeepPot-SE ``T`` (``s_b = 1/n_{nei}``) and the VCNN's
``GᵀX/n`` (``s_b = 1/n_b``).  If a rotation or reflection ``Q`` acts on the
columns of X as an orthogonal matrix ``O(Q)`` (the identity on invariant
columns, ``Q`` on each block of d coordinates), ``L ↦ L O`` and
``D = L Oᵀ... `` is unchanged: :math:`L O (L_< O)^\top = L L_<^\top`.  A
permutation of the points permutes the terms of the sum.  Rows with
``X_bj = 0`` (padding of ragged clouds) contribute exactly nothing to ``L``
and receive exactly zero ``Ḡ``.

Backward (``Ā`` the gradient of the loss with respect to ``A``):

.. math::

    \bar G_{bj} = s_b\, \bar L_b X_{bj},\qquad \bar X_{bj} = s_b\, \bar L_b^\top G_{bj},\qquad
    \bar L_b = \bar D_b L_{b,<} + \big[\bar D_b^\top L_b\big]_{\text{rows} < M_2}.

The backward functions follow the package convention ``(d_input, grads)``
(:mod:`symref.reference`); nothing here has trained parameters, so ``grads`` is
always ``None`` and ``d_input`` is a tuple where the forward has two array inputs.

Shapes: ``B`` clouds (centres), ``n`` points per cloud (padded), ``M1``
embedding width, ``M2`` axis width, ``c`` columns of X.  Batched over any
number of leading axes through ``einsum`` ellipses where noted.
"""
from __future__ import annotations

import numpy as np


def cloud_sum_forward(G: np.ndarray, X: np.ndarray, scale=1.0):
    """``L = s Σ_j G_j ⊗ X_j``: ``G`` (B x n x M1), ``X`` (B x n x c), ``scale`` a
    number or (B,) -> ``(L (B x M1 x c), cache)``."""
    L = np.einsum("bjm,bjc->bmc", G, X)  # B x M1 x c
    s = np.asarray(scale, dtype=L.dtype)
    if s.ndim:
        L *= s[:, None, None]
    elif s != 1.0:
        L *= s
    return L, (G, X, s)


def cloud_sum_backward(dL: np.ndarray, cache, need_dX: bool = False):
    """Backward of :func:`cloud_sum_forward`: ``((dG (B x n x M1), dX (B x n x c) or None), None)``.

    ``dX`` is computed only with ``need_dX`` (the VCNN never differentiates its inputs);
    ``cache`` may then hold ``None`` for G."""
    G, X, s = cache
    dLs = dL * s[:, None, None] if s.ndim else dL * s  # B x M1 x c
    dG = np.einsum("bmc,bjc->bjm", dLs, X)  # B x n x M1
    dX = np.einsum("bmc,bjm->bjc", dLs, G) if need_dX else None  # B x n x c
    return (dG, dX), None


def gram_forward(L: np.ndarray, M2: int):
    """``D = L L<ᵀ``: ``L`` (B x M1 x c) -> ``(D (B x M1 x M2), cache)``."""
    if not 0 < M2 <= L.shape[-2]:
        raise ValueError(f"axis width M2={M2} must be in [1, M1={L.shape[-2]}]")
    D = np.einsum("bac,bdc->bad", L, L[:, :M2])  # B x M1 x M2
    return D, (L, M2)


def _bilinear_vjp(Dbar: np.ndarray, A: np.ndarray, C: np.ndarray, M2: int):
    """For ``D = A C<ᵀ`` (per cloud): ``(Ā, C̄)``, ``C̄`` nonzero in its first M2 rows."""
    Abar = np.einsum("bad,bdc->bac", Dbar, C[:, :M2])  # B x M1 x c
    Cbar = np.zeros_like(C)
    Cbar[:, :M2] = np.einsum("bad,bac->bdc", Dbar, A)
    return Abar, Cbar


def gram_backward(dD: np.ndarray, cache):
    """Backward of :func:`gram_forward`: ``(dL (B x M1 x c), None)``."""
    L, M2 = cache
    a, c = _bilinear_vjp(dD, L, L, M2)
    return a + c, None


def gram_tangent(L: np.ndarray, Ld: np.ndarray, M2: int) -> np.ndarray:
    """Tangent of :func:`gram_forward`: ``Ḋ = L̇ L<ᵀ + L L̇<ᵀ`` (B x M1 x M2)."""
    return (np.einsum("bac,bdc->bad", Ld, L[:, :M2])
            + np.einsum("bac,bdc->bad", L, Ld[:, :M2]))


def gram_backward_dual(Dbar: np.ndarray, Ddbar: np.ndarray, L: np.ndarray, Ld: np.ndarray,
                       M2: int):
    """Reverse pass over ``(D, Ḋ)`` (:func:`gram_forward` and :func:`gram_tangent`):
    ``((L̄, L̇̄), None)``, the gradients of ``<D̄, D> + <Ḋ̄, Ḋ>`` (B x M1 x c each)."""
    a1, c1 = _bilinear_vjp(Dbar, L, L, M2)  # D = L L<
    a2, c2 = _bilinear_vjp(Ddbar, Ld, L, M2)  # Ḋ = L̇ L< + ...
    a3, c3 = _bilinear_vjp(Ddbar, L, Ld, M2)  # ... + L L̇<
    return (a1 + c1 + c2 + a3, a2 + c3), None
