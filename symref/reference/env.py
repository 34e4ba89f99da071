r"""Smooth switch and environment rows with their derivatives (deepmd-kit ``se_e2_a``).

For a centre i and neighbour slot j with :math:`\mathbf r = \mathbf r_{ji} = \mathbf x_j - \mathbf x_i`
(Å), :math:`r = |\mathbf r|` and protection :math:`p` (0 by default):

.. math::

    u = \mathrm{clip}\!\left(\frac{r - r_s}{r_c - r_s}, 0, 1\right),\qquad
    w(r) = u^3(-6u^2 + 15u - 10) + 1,\qquad
    \frac{dw}{dr} = \frac{-30\,u^2 (u-1)^2}{r_c - r_s}

    \tilde R_j = w(r)\left(\frac{1}{r+p},\ \frac{x}{(r+p)^2},\ \frac{y}{(r+p)^2},\ \frac{z}{(r+p)^2}\right),
    \qquad R_j = (\tilde R_j - \mathrm{davg}[t_i, j]) / \mathrm{dstd}[t_i, j].

Padded slots (no neighbour) have :math:`\tilde R_j = 0`, so :math:`R_j = -\mathrm{davg}/\mathrm{dstd}`
(a constant: it carries no derivative).  With :math:`q = r + p` and
:math:`\bar{\tilde R} = \bar R / \mathrm{dstd}`, the chain rule gives

.. math::

    \frac{\partial L}{\partial \mathbf r} =
    \frac{\mathbf r}{r}\Big[\bar{\tilde R}_0\big(w' q^{-1} - w q^{-2}\big)
      + (\bar{\tilde R}_{1:4}\cdot\mathbf r)\big(w' q^{-2} - 2 w q^{-3}\big)\Big]
      + \bar{\tilde R}_{1:4}\, w\, q^{-2}.
"""
from __future__ import annotations

import numpy as np


def smooth_switch(r: np.ndarray, rcut_smth: float, rcut: float):
    """Quintic switch ``w(r)`` and its slope ``dw/dr`` (1/Å), returned together.

    ``w = 1`` for ``r <= rcut_smth``, ``0`` for ``r >= rcut``, C² at both ends.
    """
    if not rcut_smth < rcut:
        raise ValueError(f"rcut_smth ({rcut_smth}) must be smaller than rcut ({rcut})")
    span = rcut - rcut_smth
    u = np.clip((r - rcut_smth) / span, 0.0, 1.0)
    u2 = u * u
    w = u2 * u * (-6.0 * u2 + 15.0 * u - 10.0) + 1.0
    dw = -30.0 * u2 * (u - 1.0) ** 2 / span  # zero outside (0, 1) automatically
    return w, dw


def env_mat_forward(rij, mask, davg, dstd, rcut, rcut_smth, protection=0.0):
    """Normalised environment rows.

    Parameters
    ----------
    rij : nloc x nnei x 3, neighbour minus centre position (Å); ignored where ``mask`` is false.
    mask : nloc x nnei bool, true for real neighbours.
    davg, dstd : nloc x nnei x 4, statistics already gathered for each centre's type.

    Returns ``(R, cache)``, ``R`` : nloc x nnei x 4.
    """
    r = np.linalg.norm(rij, axis=-1)  # nloc x nnei
    r = np.where(mask, r, 1.0)  # padded slots: harmless length, zeroed below
    q = r + protection  # nloc x nnei
    w, dw = smooth_switch(r, rcut_smth, rcut)  # nloc x nnei
    w = np.where(mask, w, 0.0)
    dw = np.where(mask, dw, 0.0)
    inv_q = 1.0 / q
    raw = np.empty(rij.shape[:-1] + (4,), dtype=rij.dtype)  # nloc x nnei x 4
    raw[..., 0] = w * inv_q
    raw[..., 1:] = (w * inv_q * inv_q)[..., None] * np.where(mask[..., None], rij, 0.0)
    R = (raw - davg) / dstd  # nloc x nnei x 4
    return R, (rij, mask, r, inv_q, w, dw, dstd)


def env_mat_backward(dR, cache):
    """Backward of :func:`env_mat_forward`: ``dL/dR`` (nloc x nnei x 4) -> ``(dL/drij, None)``,
    ``dL/drij`` nloc x nnei x 3 (zero for padded slots); ``None``: no trained parameters
    (davg/dstd are statistics)."""
    rij, mask, r, inv_q, w, dw, dstd = cache
    draw = dR / dstd  # nloc x nnei x 4
    inv_q2 = inv_q * inv_q
    rvec = np.where(mask[..., None], rij, 0.0)  # nloc x nnei x 3
    d_xyz = draw[..., 1:]  # nloc x nnei x 3
    radial = (draw[..., 0] * (dw * inv_q - w * inv_q2)
              + np.einsum("ijk,ijk->ij", d_xyz, rvec) * (dw * inv_q2 - 2.0 * w * inv_q2 * inv_q))
    drij = (radial / r)[..., None] * rvec + (w * inv_q2)[..., None] * d_xyz
    return np.where(mask[..., None], drij, 0.0), None


def env_mat_tangent(rdot: np.ndarray, cache) -> np.ndarray:
    r"""Forward-mode derivative of :func:`env_mat_forward`: :math:`\dot R = (\partial R/\partial \mathbf r)\,\dot{\mathbf r}`.

    ``rdot``: nloc x nnei x 3, a direction for every pair vector; returns
    nloc x nnei x 4 (zero for padded slots).  With :math:`\hat{\mathbf r}\cdot\dot{\mathbf r} = \dot r`:

    .. math::

        \dot R_0 = (w' q^{-1} - w q^{-2})\,\dot r / \mathrm{dstd}_0,\qquad
        \dot R_{1:4} = \big[(w' q^{-2} - 2 w q^{-3})\,\dot r\,\mathbf r + w q^{-2}\,\dot{\mathbf r}\big] / \mathrm{dstd}_{1:4}.

    (The transpose of this map is :func:`env_mat_backward`.)
    """
    rij, mask, r, inv_q, w, dw, dstd = cache
    inv_q2 = inv_q * inv_q
    rvec = np.where(mask[..., None], rij, 0.0)  # nloc x nnei x 3
    rd = np.where(mask[..., None], rdot, 0.0)  # nloc x nnei x 3
    rdot_r = np.einsum("ijk,ijk->ij", rvec, rd) / r  # nloc x nnei
    out = np.empty(rij.shape[:-1] + (4,), dtype=rij.dtype)  # nloc x nnei x 4
    out[..., 0] = (dw * inv_q - w * inv_q2) * rdot_r
    out[..., 1:] = (((dw * inv_q2 - 2.0 * w * inv_q2 * inv_q) * rdot_r)[..., None] * rvec
                    + (w * inv_q2)[..., None] * rd)
    return np.where(mask[..., None], out / dstd, 0.0)
