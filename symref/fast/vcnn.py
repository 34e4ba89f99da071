r"""The Vector Cloud Neural Network's per-point part on stacked ragged clouds (``backend="numba"``).

Twin of the embedding and cloud-sum steps of :func:`symref.vcnn.vcnn_forward` /
``vcnn_backward`` (the math is :mod:`symref.reference.nn` and
:mod:`symref.reference.core`): for the P points of all clouds stacked without padding
(cloud b owns rows ``ptr[b]:ptr[b+1]``),

.. math::

    G = \phi(q)\ (P \times M_1),\qquad L_b = \frac1{n_b}\sum_{j\in b} G_j\otimes X_j
    \ (B \times M_1 \times c),

and backward :math:`\bar L \to \bar G_j = \bar L_b X_j / n_b \to` the embedding's
parameter gradients.  Each layer is one BLAS product ``z = x W`` (``np.matmul`` into
a scratch buffer) and the fused bias + tanh + residual kernel of
:mod:`symref.fast.kernels.dense`; the segment sums are :mod:`symref.fast.kernels.vcnn`.
The Gram matrix D and its backward run in the same blocks (kernels of
:mod:`symref.fast.kernels.vcnn`); the fitting net on B rows and the heads are small and
stay with the reference functions in the caller.

Threads: the clouds are cut into blocks of consecutive clouds of about
:data:`BLOCK_ROWS` points (whole clouds; the cut depends on the cloud sizes only),
and each block runs on one worker thread with the serial kernels and single-threaded
BLAS (:func:`symref.fast.blas.blas_threads`).  Multi-threaded BLAS next to numba's
threads oversubscribed the 2 cores this was measured on (OpenBLAS's workers spin
between calls): 208 ms per loss and gradient against 113 ms with one BLAS thread.
Every block writes only its own clouds' rows of L; the per-block parameter gradients
are added in block order, so 1 or 2 threads give the same bits.

Scratch arrays come from ``ws`` (:class:`symref.fast.cpu.Arena` or ``FreshArrays``)
under keys of their block: the forward's cache points into it, so a forward's cache is
valid until the next forward with the same arena.
"""
from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np

from symref.fast import blas as _blas
from symref.fast.cpu import FreshArrays, _layer_arrays, borrowed_arena, thread_pool
from symref.fast.kernels import dense as kd
from symref.fast.kernels import vcnn as kv
from symref.reference.descriptor.se_e2_a import _add_layer_grads

_NORES = np.empty((0, 0))
#: points per block of clouds (module docstring)
BLOCK_ROWS = 4096


def mlp_forward_rows(x, layers, ws=FreshArrays, key=()):
    """``x`` (P x nin) through ``layers``: ``(y (P x nout), cache)``, the twin of
    :func:`symref.reference.nn.mlp_forward` on rows (serial kernels: one block's part)."""
    cache = []
    for k, ly in enumerate(layers):
        w, b, idt, sc, act = _layer_arrays(ly)
        P = x.shape[0]
        z = ws.get(key + (k, "z"), (P, ly.nout))  # P x nout, becomes h
        np.matmul(x, w, out=z)
        y = ws.get(key + (k, "y"), (P, ly.nout))
        kd.dense_act_forward.serial(z, b, idt, x, sc, act, y)  # z <- h = act(z + b)
        cache.append((x, z, ly, w, idt, sc, act))
        x = y
    return x, cache


def mlp_backward_rows(dy, cache, ws=FreshArrays, key=()):
    """Parameter gradients of ``<dy, y>`` for :func:`mlp_forward_rows` (``dy`` P x nout):
    ``[{"w", "b", "idt"}]`` per layer, as :func:`symref.reference.nn.mlp_backward`
    (the input gradient of the first layer is not formed).  A layer's shortcut gradient
    is handed to the layer below as the second part of its upstream gradient
    (:func:`symref.fast.kernels.vcnn.dense_backward_sums`)."""
    grads = [None] * len(cache)
    dyres = _NORES
    for k in range(len(cache) - 1, -1, -1):
        x, h, ly, w, idt, sc, act = cache[k]
        P, nin = x.shape
        dz = ws.get(key + (k, "dz"), h.shape)  # P x nout
        dxres = ws.get(key + (k, "dxres"), (P, nin)) if sc else _NORES
        gb, gidt = np.zeros(ly.nout), np.zeros(ly.nout)
        kv.dense_backward_sums(dy, dyres, h, idt, sc, act, dz, dxres, gb, gidt)
        grads[k] = {"w": x.T @ dz, "b": gb if ly.b is not None else None,
                    "idt": gidt if ly.idt is not None else None}
        if k > 0:
            dy = ws.get(key + (k, "dx"), (P, nin))  # the layer below's ȳ, less dyres
            np.matmul(dz, w.T, out=dy)
            dyres = dxres
    return grads


def cloud_blocks(ptr, rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """Consecutive clouds ``(c0, c1)`` of about ``rows`` points each (at least one cloud),
    covering all ``len(ptr) - 1`` clouds."""
    B = len(ptr) - 1
    out, c0 = [], 0
    while c0 < B:
        c1 = int(np.searchsorted(ptr, ptr[c0] + rows, side="right")) - 1
        c1 = min(B, max(c1, c0 + 1))
        out.append((c0, c1))
        c0 = c1
    return out


def _run_blocks(fn, nblocks):
    """``[fn(i) for i in range(nblocks)]`` on numba's thread count, BLAS single-threaded."""
    nthreads = min(numba.get_num_threads(), nblocks)
    with _blas.blas_threads(1):
        run = thread_pool(nthreads).map if nthreads > 1 else map
        return list(run(fn, range(nblocks)))


def core_forward(q, X, ptr, scale, embedding, M2, ws=FreshArrays):
    """``L`` (B x M1 x c) and ``D`` (B x M1 x M2) from stacked invariants ``q`` (P x nq)
    and rows ``X`` (P x c); ``ptr`` (B + 1) int64, ``scale`` (B) = 1/n_b.  Returns
    ``(L, D, cache)``."""
    B, M1 = ptr.shape[0] - 1, embedding[-1].nout
    L = np.empty((B, M1, X.shape[1]))  # B x M1 x c
    D = np.empty((B, M1, M2))  # B x M1 x M2
    blocks = cloud_blocks(ptr)

    def block(i):
        c0, c1 = blocks[i]
        r0, r1 = ptr[c0], ptr[c1]
        G, e_cache = mlp_forward_rows(q[r0:r1], embedding, ws, ("emb", i))  # n x M1
        kv.cloud_sum.serial(G, X[r0:r1], ptr[c0:c1 + 1] - r0, scale[c0:c1], L[c0:c1])
        kv.gram.serial(L[c0:c1], M2, D[c0:c1])
        return e_cache

    caches = _run_blocks(block, len(blocks))
    return L, D, (X, ptr, scale, L, M2, blocks, caches, ws)


def core_backward(dD, dW, cache):
    """Embedding parameter gradients for ``D̄`` (B x M1 x M2) and ``W̄`` (B x M1 x (c - 1),
    the heads' gradient of the vector columns of L, or None): layer grads as
    :func:`symref.reference.nn.mlp_backward` returns them (block sums added in block order).

    ``L̄ = D̄ L< + [D̄ᵀ L]_{rows < M2}`` (+ W̄ in columns 1..), then ``Ḡ``, then the
    embedding backward, block by block."""
    X, ptr, scale, L, M2, blocks, caches, ws = cache
    dD = np.ascontiguousarray(dD)
    dL = np.empty_like(L)  # B x M1 x c

    def block(i):
        c0, c1 = blocks[i]
        r0, r1 = ptr[c0], ptr[c1]
        kv.gram_backward.serial(dD[c0:c1], L[c0:c1], M2, dL[c0:c1])
        if dW is not None:
            dL[c0:c1, :, 1:] += dW[c0:c1]
        dG = ws.get(("emb", i, "dG"), (r1 - r0, L.shape[1]))  # n x M1
        kv.cloud_sum_backward.serial(dL[c0:c1], X[r0:r1], ptr[c0:c1 + 1] - r0, scale[c0:c1], dG)
        return mlp_backward_rows(dG, caches[i], ws, ("emb", i))

    grads = _run_blocks(block, len(blocks))
    total = grads[0]
    for g in grads[1:]:
        total = _add_layer_grads(total, g)
    return total


@contextmanager
def session():
    """Scratch arena for a run of forwards/backwards (:func:`symref.fast.cpu.borrowed_arena`),
    with single-threaded BLAS throughout: the small products after L (Gram matrix,
    fitting net on B rows) ran slower next to OpenBLAS's spinning workers too
    (108 ms against 77 ms per loss and gradient on the benchmark problem)."""
    with borrowed_arena() as ws, _blas.blas_threads(1):
        yield ws

