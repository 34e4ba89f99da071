r"""Fused bias + activation + residual of one dense layer, forward and backward.

The matrix product ``z = x W`` (B x nout) is left to BLAS (``np.matmul`` with
``out=``); these kernels do the element-wise rest of :func:`symref.reference.nn.layer_forward`
in one pass over memory:

.. math::

    h = \phi(z + b),\qquad y = h \odot d + \mathrm{sc}(x),\qquad
    \mathrm{sc}(x) = \{0,\ x,\ [x, x]\}\ \text{for shortcut} = 0, 1, 2,

and backward, for an upstream gradient given as two parts ``dy + dyres``
(the second is the shortcut gradient of the next layer, added here so that no
separate pass is spent on it):

.. math::

    \bar y = dy + dyres,\qquad \bar z = \bar y \odot d \odot \phi'(z),\qquad
    \overline{\mathrm{sc}} = \{0,\ \bar y,\ \bar y_{[:n]} + \bar y_{[n:]}\},

with :math:`\phi = \tanh` (``act = 1``, :math:`\phi' = 1 - h^2`), the
identity (``act = 0``) or another activation (``act >= 2``:
:data:`symref.fast.kernels.activations.ACT_CODES`).  ``b`` and ``d`` (= ``idt``) are
always passed (zeros and ones when the layer has none).  ``h`` overwrites ``z``, except
for codes >= ``KEEP_Z`` (gelu, silu), whose derivatives need z: then ``z + b`` is kept and
h recomputed from it where needed; the backward's ``h`` argument is what the forward
kept.  ``dz`` may be the same array as ``h``.  Every kernel has a NumPy twin with the
same signature (``*_ref``), tested against it in ``tests/test_kernels_dense.py``.
"""
from __future__ import annotations

import numba
import numpy as np

from symref.fast.kernels._jit import kernel
from symref.fast.kernels.activations import (KEEP_Z, act_deriv, act_deriv_ref, act_value,
                                             act_value_ref, tanh_any)



@numba.njit(cache=True, inline="always", error_model="numpy")
def act_rows(z, b, act):
    """Rows ``z`` (n x nout, C-contiguous) <- act(z + b).

    The bias is added row by row, the activation runs over the rows as one flat
    array: a single vectorised loop with no per-row remainder (2x faster than
    row-wise for widths like 50 that are not a multiple of the vector width).
    """
    n, nout = z.shape
    for r in range(n):
        for k in range(nout):
            z[r, k] += b[k]
    if act == 1:
        f = z.reshape(-1)
        for i in range(f.shape[0]):
            f[i] = tanh_any(f[i])  # float32 arrays: float32 arithmetic
    elif act > 1 and act < KEEP_Z:
        f = z.reshape(-1)
        for i in range(f.shape[0]):
            f[i] = act_value(f[i], act)
    # codes >= KEEP_Z keep z + b (their derivatives need z; out_row computes h)


@numba.njit(cache=True, inline="always", error_model="numpy")
def add_shortcut_row(xr, yr, shortcut):
    """``yr`` += sc(x) for one row (0, x or [x, x] by ``shortcut``)."""
    if shortcut == 1:
        for k in range(yr.shape[0]):
            yr[k] += xr[k]
    elif shortcut == 2:
        nin = xr.shape[0]
        for k in range(nin):
            yr[k] += xr[k]
            yr[nin + k] += xr[k]


@numba.njit(cache=True, inline="always", error_model="numpy")
def out_rows(h, x, idt, shortcut, y, act):
    """Rows of a layer's output: ``y`` (n x nout) <- h * idt + sc(x), where ``h`` (n x nout)
    holds h, or z for codes >= KEEP_Z (then h = act_value(z)); ``x`` (n x nin).

    The branches on ``act`` and ``shortcut`` are taken once, outside the row loops: with
    them inside a per-row helper LLVM did not vectorise the rows (a 50-wide layer took
    ~45 ns a row, 5-8x the hoisted loops, and no less in float32 than in float64)."""
    n, nout = h.shape
    nin = x.shape[1]
    if act >= KEEP_Z:
        for r in range(n):
            for k in range(nout):
                y[r, k] = act_value(h[r, k], act) * idt[k]
        if shortcut == 1:
            for r in range(n):
                for k in range(nout):
                    y[r, k] += x[r, k]
        elif shortcut == 2:
            for r in range(n):
                for k in range(nin):
                    y[r, k] += x[r, k]
                for k in range(nin):
                    y[r, nin + k] += x[r, k]
    elif shortcut == 1:
        for r in range(n):
            for k in range(nout):
                y[r, k] = h[r, k] * idt[k] + x[r, k]
    elif shortcut == 2:
        for r in range(n):
            for k in range(nin):
                y[r, k] = h[r, k] * idt[k] + x[r, k]
            for k in range(nin):
                y[r, nin + k] = h[r, nin + k] * idt[nin + k] + x[r, k]
    else:
        for r in range(n):
            for k in range(nout):
                y[r, k] = h[r, k] * idt[k]


@numba.njit(cache=True, inline="always", error_model="numpy")
def out_row(hr, xr, idt, shortcut, yr, act):
    """One row of :func:`out_rows` (``hr``, ``xr``, ``yr`` contiguous 1-D)."""
    out_rows(hr.reshape((1, hr.shape[0])), xr.reshape((1, xr.shape[0])), idt, shortcut,
             yr.reshape((1, yr.shape[0])), act)


@numba.njit(cache=True, inline="always", error_model="numpy")
def grad_rows(dy, dyres, h, idt, shortcut, act, dz, dxres):
    """Rows of a layer's backward (the formula of :func:`dense_act_backward`): ``dz``
    (n x nout) <- (dy + dyres) * idt * act'(h), ``dxres`` (n x nin) <- sc'(dy + dyres);
    ``dyres`` of shape (0, 0) means none.  Branches outside the row loops (see
    :func:`out_rows`); ``dz`` may be ``h`` (each element of h is read before its dz is
    written)."""
    nrow, nout = dy.shape
    has_res = dyres.shape[0] > 0
    nin = dxres.shape[1]
    one = np.ones(1, dtype=h.dtype)[0]  # 1 in the working dtype (float32 stays float32)
    if shortcut == 1:
        if has_res:
            for r in range(nrow):
                for k in range(nout):
                    dxres[r, k] = dy[r, k] + dyres[r, k]
        else:
            for r in range(nrow):
                for k in range(nout):
                    dxres[r, k] = dy[r, k]
    elif shortcut == 2:
        if has_res:
            for r in range(nrow):
                for k in range(nin):
                    dxres[r, k] = (dy[r, k] + dyres[r, k]) + (dy[r, nin + k] + dyres[r, nin + k])
        else:
            for r in range(nrow):
                for k in range(nin):
                    dxres[r, k] = dy[r, k] + dy[r, nin + k]
    if act == 1:
        if has_res:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = (dy[r, k] + dyres[r, k]) * idt[k] * (one - h[r, k] * h[r, k])
        else:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = dy[r, k] * idt[k] * (one - h[r, k] * h[r, k])
    elif act > 1:
        if has_res:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = (dy[r, k] + dyres[r, k]) * idt[k] * act_deriv(h[r, k], act)
        else:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = dy[r, k] * idt[k] * act_deriv(h[r, k], act)
    else:
        if has_res:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = (dy[r, k] + dyres[r, k]) * idt[k]
        else:
            for r in range(nrow):
                for k in range(nout):
                    dz[r, k] = dy[r, k] * idt[k]


CHUNK = 64  # rows per parallel task


@kernel
def dense_act_forward(z, b, idt, x, shortcut, act, y):
    """``z`` (B x nout) <- h = act(z + b); ``y`` (B x nout) <- h * idt + sc(x)."""
    nrow = z.shape[0]
    for c in numba.prange((nrow + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(nrow, r0 + CHUNK)
        act_rows(z[r0:r1], b, act)
        out_rows(z[r0:r1], x[r0:r1], idt, shortcut, y[r0:r1], act)


def dense_act_forward_ref(z, b, idt, x, shortcut, act, y):
    """NumPy twin of :func:`dense_act_forward`."""
    z += b
    if act == 1:
        np.tanh(z, out=z)
    elif act >= KEEP_Z:  # z stays; y from h
        y[...] = act_value_ref(z, act) * idt
    elif act > 1:
        z[...] = act_value_ref(z, act)
    if act < KEEP_Z:
        y[...] = z * idt
    if shortcut == 1:
        y += x
    elif shortcut == 2:
        y += np.concatenate([x, x], axis=1)


@kernel
def dense_act_backward(dy, dyres, h, idt, shortcut, act, dz, dxres):
    """``dz`` (B x nout) <- (dy + dyres) * idt * act'(h); ``dxres`` (B x nin) <- sc'(dy + dyres).

    ``dyres`` of shape (0, 0) means no second part; ``dxres`` is not touched
    when ``shortcut == 0``.
    """
    nrow = dy.shape[0]
    has_res = dyres.shape[0] > 0
    for c in numba.prange((nrow + CHUNK - 1) // CHUNK):
        r0 = c * CHUNK
        r1 = min(nrow, r0 + CHUNK)
        grad_rows(dy[r0:r1], dyres[r0:r1] if has_res else dyres, h[r0:r1], idt, shortcut, act,
                  dz[r0:r1], dxres[r0:r1] if shortcut != 0 else dxres)


def dense_act_backward_ref(dy, dyres, h, idt, shortcut, act, dz, dxres):
    """NumPy twin of :func:`dense_act_backward`."""
    d = dy + dyres if dyres.shape[0] > 0 else dy.copy()
    if shortcut == 1:
        dxres[...] = d
    elif shortcut == 2:
        n = dxres.shape[1]
        dxres[...] = d[:, :n] + d[:, n:]
    dzv = d * idt
    if act == 1:
        dzv *= 1.0 - h * h
    elif act > 1:
        dzv *= act_deriv_ref(h, act)
    dz[...] = dzv
