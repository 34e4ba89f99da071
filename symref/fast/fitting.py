r"""A fitting net of the numba path on a block of atoms: one BLAS product and one fused
kernel per layer, forward and backward.

:func:`fitting_forward` runs ``layers`` (each :func:`symref.fast.cpu._layer_arrays` of a
:class:`~symref.reference.nn.Layer`: transposed weights, bias, ``idt``, shortcut code and
activation code) on the rows ``x``: each layer is ``z = x W`` (``np.matmul``) followed by
:func:`~symref.fast.kernels.dense.dense_act_forward` (bias, activation, ``idt``, residual
shortcut), the same formula as :func:`symref.reference.nn.mlp_forward`;
:func:`fitting_backward` is the backward pass to the input,
:func:`~symref.fast.kernels.dense.dense_act_backward` and ``dy Wᵀ`` per layer.  ``K`` is
a kernel set of :mod:`symref.fast.cpu` (serial or parallel builds), ``ws`` a scratch
arena (:class:`symref.fast.cpu.Arena`).  Used by the se_e2_a blocks of
:func:`symref.fast.cpu.evaluate_frame` and by :func:`symref.fast.cpu.energy_fitting_blocks`
(the se_e2_r, se_e3 and hybrid paths).  Any float dtype (the arrays' own).
"""
from __future__ import annotations

import numpy as np


def fitting_forward(K, ws, layers, x):
    """One fitting net (``layers``: :func:`_layer_arrays` of each layer) on the rows ``x``
    (nb x nin): ``(y, fhs)``, ``y`` nb x nout and ``fhs`` what :func:`fitting_backward`
    needs (each layer's kept activation, in ``ws``).  Each layer is one BLAS product and
    one :func:`~symref.fast.kernels.dense.dense_act_forward` (kernel set ``K``)."""
    nb, dt = x.shape[0], x.dtype
    fhs = []
    for k, (Wt, b, idt, sc, act) in enumerate(layers):
        z = ws.get(f"fz{k}", (nb, Wt.shape[1]), dt)
        np.matmul(x, Wt, out=z)
        y = ws.get(f"fy{k}", (nb, Wt.shape[1]), dt)
        K.dense_act_forward(z, b, idt, x, sc, act, y)
        fhs.append(z)
        x = y
    return x, fhs


def fitting_backward(K, ws, layers, fhs, dy):
    """Backward of :func:`fitting_forward`: ``dx`` (nb x nin) for ``dy`` = dL/dy (nb x nout)."""
    nb, dt = dy.shape[0], dy.dtype
    none = dyres = np.empty((0, 0), dtype=dt)
    for k in range(len(layers) - 1, -1, -1):
        Wt, b, idt, sc, act = layers[k]
        h = fhs[k]
        dxres = ws.get(f"fdxr{k}", (nb, Wt.shape[0]), dt) if sc else none
        K.dense_act_backward(dy, dyres, h, idt, sc, act, h, dxres)
        dx = ws.get(f"fdx{k}", (nb, Wt.shape[0]), dt)
        np.matmul(h, Wt.T, out=dx)
        dy, dyres = dx, (dxres if sc else none)
    return dy if dyres.shape[0] == 0 else dy + dyres
