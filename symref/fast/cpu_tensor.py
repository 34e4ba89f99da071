r"""Dipole and polarizability models on the fast CPU path (``DeepTensor``, ``backend="numba"``).

Same mathematics as the reference ``DeepTensor.tensor_forward`` / ``tensor_backward``
(:mod:`symref.model.tensor`); what is fast is the part that costs: the environment rows,
the embedding nets and T, on the real pairs only, in blocks of centres of one type run
on threads, with the kernels of :mod:`symref.fast.cpu` (:func:`~symref.fast.cpu.embed_forward`,
:func:`~symref.fast.cpu.embed_backward`, the padded slots as one constant per type pair).
The head is not re-implemented: the fitting nets and the equivariant head
(:func:`symref.reference.fitting.tensor_fitting_forward` / ``_backward``) run on all
centres at once, in the internal (type-sorted) order, on
:math:`\mathcal R_i = T_{i,:,1:4}` and :math:`D_i` from the fast kernels.  So this module
adds no formula: only the ordering, and the way gradients flow back:

- :func:`tensor_backward` seeds the head with :math:`\bar y` (nloc x 3 or nloc x 3 x 3),
  giving :math:`\bar D` and :math:`\bar{\mathcal R}`; then
  :math:`\bar T = \bar T_D + [0, \bar{\mathcal R}]` per block
  (:func:`~symref.fast.kernels.se_e2_a.descriptor_backward` plus the head's columns, both
  divided by nnei because T is the mean over slots) goes back through the embedding nets:
  either to :math:`\partial y/\partial \mathbf r_{ji}` of every pair (derivatives), or to the
  parameter gradients of the embedding nets (the tensor loss, which involves no forces:
  one ordinary reverse pass, no forward-over-reverse).
- The forward activations are kept (in one :class:`~symref.fast.cpu.Arena` per block,
  given back when the cache is garbage-collected), so the derivative runs one backward
  pass per output component (3 or 9) on one forward pass, as the reference does.
- Derivatives :math:`\partial y_c/\partial\mathbf x_k` are *gathered* per atom
  (:func:`~symref.fast.kernels.se_e2_a.forces_virial_gather`: it returns
  :math:`-\partial y_c/\partial\mathbf x_k` the way it returns forces).

Parameter gradients of the embedding nets: per layer, from the output end,
:func:`~symref.fast.kernels.vcnn.dense_backward_sums` (z̄, the shortcut's share, Σ z̄ for
``b`` and Σ ȳ⊙h for ``idt`` in one pass) and ``xᵀ z̄`` for ``w`` (BLAS).  The last layer's
upstream :math:`\bar G_p = \bar T_a R_p` comes from
:func:`~symref.fast.kernels.se_e2_a.embed_T_backward` run as a plain linear layer
(``idt`` = 1, no activation, no shortcut: then its ``dz`` *is* :math:`\bar G`).  The padded
slots' constant rows contribute :math:`\bar G^{pad} = \sum_i n^{pad}_i \bar T_i R^{pad}`
through the reference MLP backward at :math:`s^{pad}`.  Block results are summed in block
order, so the gradient does not depend on the number of threads.

Float64 only.  Layering as for all of :mod:`symref.fast`: the model hands over its arrays
(``shift``, ``alive``); nothing here imports the model package.
"""
from __future__ import annotations

import weakref
from types import SimpleNamespace

import numpy as np

from symref.fast import cpu as _cpu
from symref.fast.cpu import _FREE_ARENAS, _make_blocks, _frame_setup, run_blocks
from symref.fast.cpu_tables import warn_beyond_tables
from symref.fast.kernels import se_e2_a as ks
from symref.fast.kernels.vcnn import dense_backward_sums
from symref.reference.descriptor.se_e2_a import _add_layer_grads
from symref.reference.fitting import tensor_fitting_backward, tensor_fitting_forward
from symref.reference.nn import mlp_backward, mlp_forward

BLOCK_PAIRS = _cpu.BLOCK_PAIRS


def unsupported_reason(model) -> str | None:
    """Why the fast path cannot evaluate the tensor model exactly, or None (the reasons of
    :func:`symref.fast.cpu.unsupported_reason`: statistics not constant per neighbour-type
    group, a layer activation without a kernel code)."""
    return _cpu.unsupported_reason(model)


def train_unsupported_reason(model) -> str | None:
    """Why :func:`tensor_backward` cannot give parameter gradients of ``model``, or None:
    :func:`unsupported_reason`'s reasons, compression (a table has no parameters) and
    one-layer embedding nets (the fast forward pads them with an identity layer)."""
    if getattr(model.descriptor, "tables", None) is not None:
        return "a compressed (tabulated) descriptor cannot be trained"
    if any(len(net) < 2 for net in model.descriptor.embeddings):
        return "one-layer embedding nets are trained on the reference"
    return unsupported_reason(model)


class TensorCache(SimpleNamespace):
    """What :func:`tensor_backward` needs of a forward pass (the frame's setup, blocks,
    their scratch arenas and activations, T, the head's cache); its arenas go back to
    the free list of :mod:`symref.fast.cpu` when it is garbage-collected."""


def tensor_forward(model, coord, atype, box, *, shift, alive, truncate=False, frame=None,
                   mode=None, block_pairs: int = BLOCK_PAIRS):
    """Atomic dipoles (n x 3) or polarizabilities (n x 3 x 3) of one frame, original atom
    order, and the cache for :func:`tensor_backward`.

    Fast twin of ``DeepTensor.tensor_forward``: ``shift`` (n x 3 x 3, or 0) is the
    model-level isotropic shift and ``alive`` (n bools) the atoms whose output counts
    (``DeepTensor._atom_shift``, ``DeepTensor.alive``).  ``mode``: see
    :func:`symref.fast.cpu.default_mode` (``"kernels"``: the parallel kernel builds,
    ``"blocks"``: the serial ones, one block per thread)."""
    mode = mode or _cpu.default_mode()
    if mode not in ("blocks", "kernels"):
        raise ValueError(f"mode must be 'blocks' or 'kernels', got {mode!r}")
    desc, fit = model.descriptor, model.fitting
    nt, M1, M2 = desc.ntypes, desc.neuron[-1], desc.axis_neuron
    n = coord.shape[0]
    pl = _cpu._pair_list(coord, atype, box, desc.rcut, desc.sel, truncate, frame)
    groups = [(0, n)]
    S = _frame_setup(model, pl, atype, n, n, groups)
    blocks = _make_blocks(S, groups, nt, mode, block_pairs)
    arenas = _cpu.borrow_arenas(len(blocks))
    T = np.empty((n, 4, M1))  # n x 4 x M1, internal order, divided by nnei
    D = np.empty((n, M1 * M2))  # n x M1*M2
    smax = []

    def fwd(K, item):
        b, (ti, b0, b1) = item
        Tb, segs = _cpu.embed_forward(K, arenas[b], (ti, b0, b1), desc, S, smax)
        T[b0:b1] = Tb
        K.descriptor_forward(Tb, M2, D[b0:b1])
        return segs

    segs = run_blocks(fwd, list(enumerate(blocks)), mode)
    if S.tabs is not None:
        warn_beyond_tables(desc, S.tabs, smax, S.davg_g, S.dstd_g, S.types_int, S.npad)
    gr = np.ascontiguousarray(T[:, 1:].transpose(0, 2, 1))  # n x M1 x 3
    y, f_cache = tensor_fitting_forward(D, gr, S.types_int, fit)  # n x shape
    perm = S.perm
    lead = (-1,) + (1,) * len(fit.out_shape)
    alive_i = np.asarray(alive)[perm].reshape(lead)  # n x 1 (x 1)
    if not np.isscalar(shift):
        y = y + np.asarray(shift)[perm]
    elif shift != 0:
        y = y + shift
    y = np.where(alive_i, y, 0.0)
    out = np.empty_like(y)
    out[perm] = y
    cache = TensorCache(model=model, S=S, blocks=blocks, arenas=arenas, segs=segs, T=T,
                        f_cache=f_cache, alive=alive_i, mode=mode)
    weakref.finalize(cache, _FREE_ARENAS.extend, arenas)  # scratch back to the free list
    return out, cache


def _dT_blocks(dy, cache, param_grads):
    """The head's backward for ``dy`` (original order): ``(dT, fgrads)`` with ``dT`` the
    head's part of T̄ (n x M1 x 4, internal order, already divided by nnei) and the D̄
    (n x M1*M2) to add per block."""
    c = cache
    nnei = c.model.descriptor.nnei
    dy_i = np.asarray(dy, dtype=np.float64)[c.S.perm] * c.alive  # n x shape
    (dD, dgr), fgrads = tensor_fitting_backward(dy_i, c.f_cache, param_grads=param_grads)
    dT = np.zeros((c.T.shape[0], c.T.shape[2], 4))  # n x M1 x 4
    dT[:, :, 1:] = dgr / nnei
    return dT, np.ascontiguousarray(dD), fgrads


def tensor_backward(dy, cache, *, param_grads: bool = False):
    """Backward of :func:`tensor_forward` for ``<dy, atomic outputs>`` (``dy`` like them):
    ``(g, grads)``.

    Without ``param_grads``: ``g`` (P x 3) = dL/dr of every pair in the internal order
    (see :func:`pair_derivative`), ``grads`` None; the cache can be used again.  With
    ``param_grads``: ``g`` None and ``grads`` as the reference's
    ``DeepTensor.tensor_backward`` gives them: ``{"embeddings": {net index: layer grads},
    "nets": {type: layer grads}, "bias_atom": (ntypes x nout)}``."""
    c = cache
    desc, S, M2 = c.model.descriptor, c.S, c.model.descriptor.axis_neuron
    dT_head, dD, fgrads = _dT_blocks(dy, c, param_grads)
    g_all = None if param_grads else np.zeros((S.P, 3))

    def bwd(K, item):
        b, blk = item
        _, b0, b1 = blk
        dT = np.empty((b1 - b0, desc.neuron[-1], 4))
        K.descriptor_backward(dD[b0:b1], c.T[b0:b1], M2, 1.0 / desc.nnei, dT)
        dT += dT_head[b0:b1]
        if not param_grads:
            _cpu.embed_backward(K, c.arenas[b], blk, desc, S, c.segs[b], dT, g_all, keep=True,
                                key="b")
            return None
        return _embed_param_grads(c.arenas[b], blk, desc, S, c.segs[b], dT)

    res = run_blocks(bwd, list(enumerate(c.blocks)), c.mode)
    if not param_grads:
        return g_all, None
    emb = {}
    for r in res:  # block order: independent of the number of threads
        for idx, g in r.items():
            emb[idx] = _add_layer_grads(emb[idx], g) if idx in emb else g
    return None, {"embeddings": emb, **fgrads}


def _embed_param_grads(ws, blk, desc, S, segs, dT):
    """Parameter gradients of the embedding nets of one block for T̄ = ``dT``
    (nb x M1 x 4, already divided by nnei): ``{net index: layer grads}`` (module docstring)."""
    ti, b0, b1 = blk
    M1 = desc.neuron[-1]
    out = {}
    for tj, p0, p1, ptr, rij_s, R, layers, acts, hs in segs:
        idx = desc.embedding_index(ti, tj)
        net = desc.embeddings[idx]
        P = p1 - p0
        k = len(layers) - 1
        dG = ws.get(f"pG{tj}", (P, M1))
        ones = np.ones(M1)
        K = _cpu._SERIAL
        # T̄_a R_p through the last layer's kernel run as a plain linear layer: dz = Ḡ
        K.embed_T_backward(hs[k], hs[k], ones, 0, 0, R, ptr, dT, dG,
                           np.empty((0, 0)), ws.get(f"pR{tj}", (P, 4)))
        dy, dyres = dG, np.empty((0, 0))
        grads = [None] * len(net)
        for k in range(len(net) - 1, -1, -1):
            Wt, b, idt, sc, act = layers[k]
            ly = net[k]
            nin = Wt.shape[0]
            dz = ws.get(f"pz{tj}_{k}", hs[k].shape)
            dxres = ws.get(f"pxr{tj}_{k}", (P, nin)) if sc else np.empty((0, 0))
            gb, gidt = np.zeros(ly.nout), np.zeros(ly.nout)
            dense_backward_sums(dy, dyres, hs[k], idt, sc, act, dz, dxres, gb, gidt)
            x = acts[k] if k > 0 else R[:, :1]  # the layer's input (P x nin)
            grads[k] = {"w": x.T @ dz, "b": gb if ly.b is not None else None,
                        "idt": gidt if ly.idt is not None else None}
            if k > 0:
                dy = ws.get(f"px{tj}_{k}", (P, nin))
                np.matmul(dz, Wt.T, out=dy)
                dyres = dxres if sc else np.empty((0, 0))
        out[idx] = _add_layer_grads(out[idx], grads) if idx in out else grads
    # padded slots: n_pad copies of the constant row R_pad of each neighbour type
    npad = S.npad[b0:b1]  # nb x nt
    for tj in range(desc.ntypes):
        r_pad = -S.davg_g[tj, ti] / S.dstd_g[tj, ti]  # 4
        if not npad[:, tj].any() or not np.any(r_pad != 0.0):
            continue
        idx = desc.embedding_index(ti, tj)
        gbar = np.einsum("a,akc,c->k", npad[:, tj], dT, r_pad)  # M1
        _, pc = mlp_forward(r_pad[None, :1], desc.embeddings[idx])
        grads = mlp_backward(gbar[None], pc)[1]
        out[idx] = _add_layer_grads(out[idx], grads) if idx in out else grads
    return out


def pair_derivative(g_all, cache) -> np.ndarray:
    """∂L/∂x_k (n x 3, original order) from the pair gradients ``g_all`` of
    :func:`tensor_backward`, gathered per atom."""
    S = cache.S
    n = S.n
    rev_ptr, rev_idx = ks.reverse_index(S.j_int, n)
    F = np.empty((n, 3))
    W = np.empty((n, 3, 3))
    gather = ks.forces_virial_gather if S.par else ks.forces_virial_gather.serial
    gather(g_all, S.rij, S.cptr, rev_ptr, rev_idx, F, W)  # F = -dL/dx
    out = np.empty_like(F)
    out[S.perm] = -F
    return out


def evaluate_frame(model, coord, atype, box, *, shift, alive, derivative=False,
                   truncate=False, frame=None, mode=None, block_pairs: int = BLOCK_PAIRS):
    """``(atom, deriv)``: the atomic outputs (n x shape) of one frame and, with
    ``derivative``, ∂y_c/∂x (shape x n x 3) of the global output (None otherwise): one
    forward pass, one backward pass per component c seeded with ``e_c`` for every atom."""
    atom, cache = tensor_forward(model, coord, atype, box, shift=shift, alive=alive,
                                 truncate=truncate, frame=frame, mode=mode,
                                 block_pairs=block_pairs)
    if not derivative:
        return atom, None
    shape = model.fitting.out_shape
    deriv = np.zeros(shape + (coord.shape[0], 3))
    for comp in np.ndindex(*shape):
        seed = np.zeros_like(atom)  # n x shape
        seed[(slice(None),) + comp] = 1.0
        g, _ = tensor_backward(seed, cache)
        deriv[comp] = pair_derivative(g, cache)
    return atom, deriv
