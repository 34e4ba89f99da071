r"""Element-wise parts of a dense layer in *dual* (tangent-carrying) mode, forward and backward.

The loss gradient (``train.loss``) carries a tangent :math:`\dot x` through
every layer next to :math:`x`.  Both live in one stacked array ``X`` of shape
2 x B x nin (``X[0] = x``, ``X[1] = ẋ``), so one BLAS product
``Z = X.reshape(2B, nin) @ W`` gives :math:`z = xW` and :math:`\dot z = \dot x W`
together, and in the backward pass one product gives
:math:`\bar W = x^\top\bar z + \dot x^\top\bar{\dot z}` (``X.reshape(2B, nin).T @ Zbar.reshape(2B, nout)``)
and another :math:`[\bar x; \bar{\dot x}] = [\bar z; \bar{\dot z}] W^\top`.
These kernels do everything in between in one pass over memory
(:func:`symref.reference.nn.layer_forward_dual` / :func:`symref.reference.nn.layer_backward_dual`
are the mathematics):

Forward, with :math:`\phi = \tanh` (``act = 1``), the identity (``act = 0``) or
an activation whose derivatives are functions of :math:`h` (``act >= 2``,
:data:`symref.fast.kernels.activations.ACT_CODES`: there :math:`\phi'` and the
second-derivative term :math:`\bar z \mathrel{+}= \bar{\dot y}\odot d\odot\dot z\odot\phi''`
replace the tanh forms below) and :math:`d` = ``idt`` (ones when the layer has none):

.. math::

    h = \phi(z + b),\quad y = h\odot d + \mathrm{sc}(x),\quad
    \dot y = \phi'(z)\odot\dot z\odot d + \mathrm{sc}(\dot x),\quad \phi' = 1 - h^2 .

Backward, for upstream :math:`\bar y, \bar{\dot y}`:

.. math::

    \bar{\dot z} = \bar{\dot y}\odot d\odot\phi',\qquad
    \bar z = (\bar y\odot d - 2h\,\dot z\odot\bar{\dot y}\odot d)\odot\phi',\\
    \bar b = \textstyle\sum_{rows}\bar z,\qquad
    \bar d = \textstyle\sum_{rows}(\bar y\odot h + \bar{\dot y}\odot\phi'\odot\dot z),\qquad
    [\bar x; \bar{\dot x}] \mathrel{+}= [\mathrm{sc}'(\bar y); \mathrm{sc}'(\bar{\dot y})].

``Z`` holds :math:`[z; \dot z]` on entry to the forward kernel and
:math:`[h; \dot z]` on exit (what the backward kernel needs; for codes >= ``KEEP_Z``,
gelu and silu, :math:`[z; \dot z]`, h being recomputed from z).  The pair
kernels move the tangent through T = Σ_p R_p ⊗ G_p and back.  The kernels
reduce over rows (``gb``, ``gidt``), so they are serial ``nogil`` builds,
run one block of pairs per thread by :mod:`symref.fast.cpu_loss`.  Each has a
NumPy twin ``*_ref`` with the same signature (``tests/test_kernels_dual.py``).
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels._jit import serial_kernel
from symref.fast.kernels.activations import (KEEP_Z, act_deriv, act_deriv_ref, act_kept,
                                             act_kept_ref, act_second, act_second_ref,
                                             act_value_ref)
from symref.fast.kernels.dense import act_rows, add_shortcut_row


@serial_kernel
def dual_act_forward(Z, b, idt, X, shortcut, act, Y):
    """``Z`` (2 x B x nout): [z; ż] -> [h; ż]; ``Y`` (2 x B x nout) <- [y; ẏ] (module docstring)."""
    B, nout = Z.shape[1], Z.shape[2]
    act_rows(Z[0], b, act)
    for r in range(B):
        h, zd = Z[0, r], Z[1, r]
        y, yd = Y[0, r], Y[1, r]
        if act == 1:
            for k in range(nout):
                y[k] = h[k] * idt[k]
                yd[k] = (1.0 - h[k] * h[k]) * zd[k] * idt[k]
        elif act > 1:  # h holds z for act >= KEEP_Z (act_kept gives phi(z) then)
            for k in range(nout):
                y[k] = act_kept(h[k], act) * idt[k]
                yd[k] = act_deriv(h[k], act) * zd[k] * idt[k]
        else:
            for k in range(nout):
                y[k] = h[k] * idt[k]
                yd[k] = zd[k] * idt[k]
        for s in range(2):
            add_shortcut_row(X[s, r], Y[s, r], shortcut)


def dual_act_forward_ref(Z, b, idt, X, shortcut, act, Y):
    """NumPy twin of :func:`dual_act_forward`."""
    Z[0] += b
    if act == 1:
        np.tanh(Z[0], out=Z[0])
        dphi = 1.0 - Z[0] * Z[0]
    elif act > 1:
        if act < KEEP_Z:
            Z[0] = act_value_ref(Z[0], act)
        dphi = act_deriv_ref(Z[0], act)
    else:
        dphi = 1.0
    Y[0] = (act_kept_ref(Z[0], act) if act > 1 else Z[0]) * idt
    Y[1] = dphi * Z[1] * idt
    if shortcut == 1:
        Y += X
    elif shortcut == 2:
        Y += np.concatenate([X, X], axis=2)


@serial_kernel
def dual_act_backward(Ybar, Z, idt, shortcut, act, Zbar, Xres, gb, gidt):
    """``Zbar`` (2 x B x nout) <- [z̄; ż̄]; ``Xres`` (2 x B x nin) <- [sc'(ȳ); sc'(ẏ̄)]
    (untouched when ``shortcut == 0``); ``gb``, ``gidt`` (nout) += their row sums."""
    B, nout = Z.shape[1], Z.shape[2]
    nin = Xres.shape[2]
    for r in range(B):
        h, zd = Z[0, r], Z[1, r]
        yb, ydb = Ybar[0, r], Ybar[1, r]
        zb, zdb = Zbar[0, r], Zbar[1, r]
        if act == 1:
            for k in range(nout):
                dphi = 1.0 - h[k] * h[k]
                hdb = ydb[k] * idt[k]
                zdb[k] = hdb * dphi
                zb[k] = (yb[k] * idt[k] - 2.0 * h[k] * zd[k] * hdb) * dphi
                gidt[k] += yb[k] * h[k] + ydb[k] * dphi * zd[k]
                gb[k] += zb[k]
        elif act > 1:
            for k in range(nout):
                dphi = act_deriv(h[k], act)
                hdb = ydb[k] * idt[k]
                zdb[k] = hdb * dphi
                zb[k] = yb[k] * idt[k] * dphi + hdb * zd[k] * act_second(h[k], act)
                gidt[k] += yb[k] * act_kept(h[k], act) + ydb[k] * dphi * zd[k]
                gb[k] += zb[k]
        else:
            for k in range(nout):
                zdb[k] = ydb[k] * idt[k]
                zb[k] = yb[k] * idt[k]
                gidt[k] += yb[k] * h[k] + ydb[k] * zd[k]
                gb[k] += zb[k]
        for s in range(2):
            ybr = Ybar[s, r]
            if shortcut == 1:
                xr = Xres[s, r]
                for k in range(nout):
                    xr[k] = ybr[k]
            elif shortcut == 2:
                xr = Xres[s, r]
                for k in range(nin):
                    xr[k] = ybr[k] + ybr[nin + k]


def dual_act_backward_ref(Ybar, Z, idt, shortcut, act, Zbar, Xres, gb, gidt):
    """NumPy twin of :func:`dual_act_backward`."""
    h, zd = Z[0], Z[1]
    dphi = 1.0 - h * h if act == 1 else (act_deriv_ref(h, act) if act > 1 else np.ones_like(h))
    hdb = Ybar[1] * idt
    Zbar[1] = hdb * dphi
    hb = Ybar[0] * idt - (2.0 * h * zd * hdb if act == 1 else 0.0)
    Zbar[0] = hb * dphi
    if act > 1:
        Zbar[0] += hdb * zd * act_second_ref(h, act)
    hv = act_kept_ref(h, act) if act > 1 else h  # h holds z for act >= KEEP_Z
    gidt += (Ybar[0] * hv + Ybar[1] * dphi * zd).sum(axis=0)
    gb += Zbar[0].sum(axis=0)
    if shortcut == 1:
        Xres[...] = Ybar
    elif shortcut == 2:
        n = Xres.shape[2]
        Xres[...] = Ybar[:, :, :n] + Ybar[:, :, n:]


@serial_kernel
def pair_outer_dual(c, R, Rd, G, T, Td):
    """``T[c[p]] += R[p] ⊗ G[0, p]``, ``Td[c[p]] += Ṙ[p] ⊗ G[0, p] + R[p] ⊗ G[1, p]``
    (T, Td: n x 4 x M1; R, Ṙ: P x 4; G: 2 x P x M1 = [G; Ġ])."""
    P = c.shape[0]
    M1 = G.shape[2]
    for p in range(P):
        Ta, Tda = T[c[p]], Td[c[p]]
        g, gd = G[0, p], G[1, p]
        for q in range(4):
            r, rd = R[p, q], Rd[p, q]
            ta, tda = Ta[q], Tda[q]
            for m in range(M1):
                ta[m] += r * g[m]
                tda[m] += rd * g[m] + r * gd[m]


def pair_outer_dual_ref(c, R, Rd, G, T, Td):
    """NumPy twin of :func:`pair_outer_dual`."""
    np.add.at(T, c, R[:, :, None] * G[0][:, None, :])
    np.add.at(Td, c, Rd[:, :, None] * G[0][:, None, :] + R[:, :, None] * G[1][:, None, :])


@serial_kernel
def pair_contract_dual(c, Tbar, Tdbar, R, Rd, Gbar):
    """Transpose of :func:`pair_outer_dual`: ``Gbar[0, p] = T̄[c] R[p] + Ṫ̄[c] Ṙ[p]``,
    ``Gbar[1, p] = Ṫ̄[c] R[p]`` (T̄, Ṫ̄: n x M1 x 4; Gbar: 2 x P x M1)."""
    P = c.shape[0]
    M1 = Gbar.shape[2]
    for p in range(P):
        Ta, Tda = Tbar[c[p]], Tdbar[c[p]]
        r0, r1, r2, r3 = R[p, 0], R[p, 1], R[p, 2], R[p, 3]
        s0, s1, s2, s3 = Rd[p, 0], Rd[p, 1], Rd[p, 2], Rd[p, 3]
        g, gd = Gbar[0, p], Gbar[1, p]
        for m in range(M1):
            td = Tda[m]
            ta = Ta[m]
            g[m] = (ta[0] * r0 + ta[1] * r1 + ta[2] * r2 + ta[3] * r3
                    + td[0] * s0 + td[1] * s1 + td[2] * s2 + td[3] * s3)
            gd[m] = td[0] * r0 + td[1] * r1 + td[2] * r2 + td[3] * r3


def pair_contract_dual_ref(c, Tbar, Tdbar, R, Rd, Gbar):
    """NumPy twin of :func:`pair_contract_dual`."""
    Gbar[0] = np.einsum("pmc,pc->pm", Tbar[c], R) + np.einsum("pmc,pc->pm", Tdbar[c], Rd)
    Gbar[1] = np.einsum("pmc,pc->pm", Tdbar[c], R)


__all__ = [n for n in dir() if n.startswith(("dual_", "pair_"))]
