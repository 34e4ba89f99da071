r"""numba-cuda kernels of one se_e2_a + energy evaluation, each with a NumPy twin.

The GPU counterpart of :mod:`symref.fast.kernels.se_e2_a`, driven by
:mod:`symref.fast.cuda` (``DeepPot.evaluate(..., backend="cuda")``).  It needs
the ``numba-cuda`` package (``pip install "symref[cuda]"``), which provides
``numba.cuda`` (numba's own CUDA target is deprecated); without a GPU every
kernel runs, slowly, on numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set
before numba is imported).

Layout: deepmd-kit's padded one (the NumPy reference's, :mod:`symref.model.deeppot`):
``nloc`` centre atoms, ``nnei = sum(sel)`` neighbour slots each, grouped by
neighbour type (``slot_type[j]``), ``nlist[i, j] = -1`` for padded slots.  The
neighbour list, ``rij`` and the reverse index used for the forces are computed
on the host by symref's numba CPU neighbour search and copied to the device
once per frame (the simplest correct choice; the search is 2-5% of a CPU
evaluation).  Padded slots are computed like real ones (row ``-davg/dstd``), so
statistics may vary slot by slot.  Axis names: ``M1`` embedding width, ``M2``
axis_neuron, ``P = nloc * nnei`` slots.

The stages, one kernel each (math as in :mod:`symref.reference.env`,
:mod:`symref.reference.descriptor.se_e2_a`, :mod:`symref.reference.nn`, :mod:`symref.model.deeppot`):

* :func:`env_mat` (one thread per slot): ``R`` (nloc x nnei x 4), the
  normalised environment rows;
* :func:`embed_T_forward` (one per atom):
  ``T = (1/nnei) Σ_j N(R_j0 k_j) ⊗ R_j k_j`` (nloc x M1 x 4);
* :func:`descriptor_forward` (one per atom): ``D = T T<ᵀ`` (nloc x M1*M2);
* :func:`fitting` (one per atom): atomic energy and ``dD = ∂E/∂D``, forward
  and backward of the atom's fitting net;
* :func:`descriptor_backward` (one per atom): ``dT = ∂E/∂T`` (divided by nnei);
* :func:`embed_backward` (one per slot): ``g = ∂E/∂r_ji``; recomputes the
  slot's embedding net forward, then goes back through it and the row;
* :func:`forces_virial` (one per atom): forces and per-atom virials by
  *gathering*.

Nothing is written by two threads (no atomics, no races): every output row
belongs to one thread, and forces gather the pairs an atom takes part in
through a reverse index (``rev_ptr``, ``rev_idx``: slots whose neighbour is
atom a, in ascending slot order).  The embedding activations are never stored
per slot (they would need ``P x Σ widths`` values): the backward kernel
recomputes them.

Networks are packed into flat buffers (:class:`NetPack`): ``params`` (all
weights, biases and timesteps), ``meta`` (one row per layer: offsets, widths,
shortcut, activation, where its input and output live in a per-thread
activation buffer) and ``ptr`` (net k is layers ``ptr[k]:ptr[k+1]``).  The
kernels are built per floating-point type (float64, float32: every constant
and accumulator has that type) and per buffer size by :func:`kernels`.

Every launcher has a NumPy twin ``*_ref`` with the same signature, tested
against it in ``tests/cuda/test_cuda_kernels.py``; the twins call symref's
reference functions (:func:`symref.reference.env.env_mat_forward`,
:func:`symref.reference.nn.mlp_forward`, :func:`symref.reference.core.gram_forward`, ...).  The
simulator runs the kernels as Python; :func:`compile_ptx_all` compiles them
with the real CUDA compiler (NVVM) for a GPU that need not be present.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

if importlib.util.find_spec("numba_cuda") is None:  # numba's built-in target is deprecated
    raise ImportError("symref's GPU path needs the numba-cuda package: "
                      "pip install 'symref[cuda]' (or pip install numba-cuda)")

import numba  # noqa: E402
from numba import cuda  # noqa: E402

THREADS_PER_BLOCK = 128

# "grid too small" / "host array copied" warnings (numba-cuda has its own warning class)
_PERF_WARNINGS = [numba.NumbaPerformanceWarning]
try:
    from numba.cuda.core.errors import NumbaPerformanceWarning as _CudaPerfWarning

    _PERF_WARNINGS.append(_CudaPerfWarning)
except ImportError:  # pragma: no cover - older numba-cuda
    pass

# meta columns of a packed layer
W_OFF, B_OFF, IDT_OFF, NIN, NOUT, SC, ACT, IN_OFF, OUT_OFF = range(9)
NMETA = 9


# ===================================================================== packing
@dataclass
class NetPack:
    """Networks (lists of :class:`symref.reference.nn.Layer`) packed for the kernels.

    ``params`` (float), ``meta`` (nlayers x 9 int64, columns ``W_OFF`` ...
    ``OUT_OFF``; ``B_OFF``/``IDT_OFF`` = -1 where the layer has none), ``ptr``
    (nnets + 1 int64).  A thread keeps the outputs ``y`` and activations ``h``
    of one net in two buffers of ``act_size`` values: layer ly reads its input at
    ``meta[ly, IN_OFF]`` and writes at ``meta[ly, OUT_OFF]``; with
    ``input_in_buffer`` the net's input occupies the first ``nin`` values (the
    embedding nets' scalar s), otherwise layer 0 reads from a global array (the
    fitting nets' D).  ``max_width``: the widest layer output or (buffered) input.
    ``dev``: device copies, made by :meth:`to_device`.
    """

    params: np.ndarray
    meta: np.ndarray
    ptr: np.ndarray
    act_size: int
    max_width: int
    dev: SimpleNamespace | None = field(default=None, repr=False)

    @classmethod
    def pack(cls, nets, dtype, input_in_buffer: bool) -> "NetPack":
        params, meta, ptr = [], [], [0]
        off = 0
        act_size, max_width = 1, 1
        for net in nets:
            nin0 = net[0].nin
            cur = nin0 if input_in_buffer else 0
            in_off = 0
            if input_in_buffer:
                max_width = max(max_width, nin0)
            for ly in net:
                nin, nout = ly.w.shape
                row = [off, -1, -1, nin, nout, ly.shortcut, 1 if ly.activation == "tanh" else 0,
                       in_off, cur]
                params.append(np.asarray(ly.w, dtype=dtype).reshape(-1))
                off += nin * nout
                if ly.b is not None:
                    row[B_OFF] = off
                    params.append(np.asarray(ly.b, dtype=dtype))
                    off += nout
                if ly.idt is not None:
                    row[IDT_OFF] = off
                    params.append(np.asarray(ly.idt, dtype=dtype))
                    off += nout
                meta.append(row)
                in_off = cur
                cur += nout
                max_width = max(max_width, nout)
            act_size = max(act_size, cur)
            ptr.append(len(meta))
        return cls(params=np.concatenate(params) if params else np.zeros(1, dtype),
                   meta=np.asarray(meta, dtype=np.int64).reshape(-1, NMETA),
                   ptr=np.asarray(ptr, dtype=np.int64), act_size=int(act_size),
                   max_width=int(max_width))

    def unpack(self):
        """The nets as lists of :class:`symref.reference.nn.Layer` again (for the NumPy twins)."""
        from symref.reference.nn import Layer

        nets = []
        for k in range(len(self.ptr) - 1):
            net = []
            for row in self.meta[self.ptr[k]:self.ptr[k + 1]]:
                nin, nout = int(row[NIN]), int(row[NOUT])
                w = self.params[row[W_OFF]:row[W_OFF] + nin * nout].reshape(nin, nout)
                b = None if row[B_OFF] < 0 else self.params[row[B_OFF]:row[B_OFF] + nout]
                idt = None if row[IDT_OFF] < 0 else self.params[row[IDT_OFF]:row[IDT_OFF] + nout]
                act = "tanh" if row[ACT] == 1 else "linear"
                ly = Layer(w.copy(), None if b is None else b.copy(),
                           None if idt is None else idt.copy(), act, resnet=row[SC] != 0)
                if ly.shortcut != row[SC]:
                    raise ValueError(f"packed layer {row} has an impossible shortcut")
                net.append(ly)
            nets.append(net)
        return nets

    def to_device(self) -> "NetPack":
        if self.dev is None:
            self.dev = SimpleNamespace(params=cuda.to_device(self.params),
                                       meta=cuda.to_device(self.meta),
                                       ptr=cuda.to_device(self.ptr))
        return self

    def arrays(self):
        """(params, meta, ptr): the device copies when made, else the host arrays."""
        d = self.dev or self
        return d.params, d.meta, d.ptr


# ===================================================================== kernels
def _grid(n: int):
    tpb = max(1, min(THREADS_PER_BLOCK, n))
    return (n + tpb - 1) // tpb, tpb


# PTX check hook: a list collects (kernel, args) instead of launching (see compile_ptx_all)
_COLLECT: list | None = None


def _launch(kern, n: int, *args):
    if _COLLECT is not None:
        _COLLECT.append((kern, args))
        return
    if n <= 0:
        return
    blocks, tpb = _grid(n)
    with warnings.catch_warnings():  # small grids (tests) are fine
        for w in _PERF_WARNINGS:
            warnings.simplefilter("ignore", w)
        kern[blocks, tpb](*args)


def _np_dtype(a) -> np.dtype:
    dt = np.dtype(a.dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"the CUDA kernels exist for float64 and float32, got {dt}")
    return dt


@lru_cache(maxsize=None)
def _layer_device_functions(dtname: str):
    """Device functions of one dense layer (deepmd-kit's rule, :mod:`symref.reference.nn`)."""
    ZERO = np.dtype(dtname).type(0.0)
    ONE = np.dtype(dtname).type(1.0)

    @cuda.jit(device=True)
    def layer_meta(meta, ly):
        """Row ly of a packed net's meta: (w_off, b_off, idt_off, nin, nout, sc, act, out)."""
        return (meta[ly, W_OFF], meta[ly, B_OFF], meta[ly, IDT_OFF], meta[ly, NIN],
                meta[ly, NOUT], meta[ly, SC], meta[ly, ACT], meta[ly, OUT_OFF])

    @cuda.jit(device=True)
    def dense_forward(params, meta, ly, x, xoff, ys, hs):
        """Layer ly on x[xoff : xoff+nin]: h -> hs[out:], y = h*idt + sc(x) -> ys[out:]."""
        w_off, b_off, i_off, nin, nout, sc, act, o = layer_meta(meta, ly)
        for m in range(nout):
            z = ZERO
            for k in range(nin):
                z += x[xoff + k] * params[w_off + k * nout + m]
            if b_off >= 0:
                z += params[b_off + m]
            h = math.tanh(z) if act == 1 else z
            hs[o + m] = h
            y = h * params[i_off + m] if i_off >= 0 else h
            if sc == 1:
                y += x[xoff + m]
            elif sc == 2:
                y += x[xoff + (m if m < nin else m - nin)]
            ys[o + m] = y

    @cuda.jit(device=True)
    def dense_backward(params, meta, ly, hs, dy, dyoff, dx, dxoff):
        """dx[dxoff : dxoff+nin] <- ∂/∂x of <dy[dyoff : dyoff+nout], y> (needs h only)."""
        w_off, _, i_off, nin, nout, sc, act, o = layer_meta(meta, ly)
        for k in range(nin):
            dx[dxoff + k] = ZERO
        for m in range(nout):
            dz = dy[dyoff + m]
            if i_off >= 0:
                dz = dz * params[i_off + m]
            if act == 1:
                h = hs[o + m]
                dz = dz * (ONE - h * h)
            for k in range(nin):
                dx[dxoff + k] += dz * params[w_off + k * nout + m]
        if sc == 1:
            for m in range(nout):
                dx[dxoff + m] += dy[dyoff + m]
        elif sc == 2:
            for m in range(nout):
                dx[dxoff + (m if m < nin else m - nin)] += dy[dyoff + m]

    @cuda.jit(device=True)
    def net_forward(params, meta, l0, l1, ys, hs):
        """Layers l0:l1 on the input already in ys[0:nin]; returns the output offset."""
        for ly in range(l0, l1):
            dense_forward(params, meta, ly, ys, meta[ly, IN_OFF], ys, hs)
        return meta[l1 - 1, OUT_OFF]

    return dense_forward, dense_backward, net_forward


@lru_cache(maxsize=None)
def _pair_device_functions(dtname: str):
    """Device functions of one neighbour slot: its index, the switch and the pair geometry."""
    typ = np.dtype(dtname).type
    ZERO, ONE = typ(0.0), typ(1.0)
    C6, C15, C10, C30 = typ(6.0), typ(15.0), typ(10.0), typ(30.0)

    @cuda.jit(device=True)
    def switch(r, rcut_smth, rcut):
        """Quintic switch w(r) and dw/dr (:func:`symref.reference.env.smooth_switch`)."""
        span = rcut - rcut_smth
        u = (r - rcut_smth) / span
        if u < ZERO:
            u = ZERO
        elif u > ONE:
            u = ONE
        u2 = u * u
        w = u2 * u * (-C6 * u2 + C15 * u - C10) + ONE
        um = u - ONE
        dw = -C30 * u2 * (um * um) / span
        return w, dw

    @cuda.jit(device=True)
    def slot_index(nlist):
        """(centre i, slot j) of this thread's slot in the nloc x nnei layout; i = -1 past
        the end."""
        p = cuda.grid(1)
        nnei = nlist.shape[1]
        if p >= nlist.shape[0] * nnei:
            return -1, 0
        i = p // nnei
        return i, p - i * nnei

    @cuda.jit(device=True)
    def pair_geometry(rij, i, j, rcut_smth, rcut, protection):
        """(x, y, z, r, w(r), dw/dr, 1/(r + protection)) of the pair in slot (i, j)."""
        x = rij[i, j, 0]
        y = rij[i, j, 1]
        z = rij[i, j, 2]
        r = math.sqrt(x * x + y * y + z * z)
        w, dw = switch(r, rcut_smth, rcut)
        return x, y, z, r, w, dw, ONE / (r + protection)

    return slot_index, pair_geometry


@lru_cache(maxsize=None)
def _plain_kernels(dtname: str) -> SimpleNamespace:
    """Kernels without per-thread buffers: env_mat, D = T T<ᵀ and back, forces."""
    typ = np.dtype(dtname).type
    ZERO = typ(0.0)
    slot_index, pair_geometry = _pair_device_functions(dtname)

    @cuda.jit
    def env_mat_k(rij, nlist, atype, davg, dstd, rcut, rcut_smth, protection, R):
        i, j = slot_index(nlist)
        if i < 0:
            return
        t = atype[i]
        r0 = ZERO
        r1 = ZERO
        r2 = ZERO
        r3 = ZERO
        if nlist[i, j] >= 0:
            x, y, z, r, w, dw, iq = pair_geometry(rij, i, j, rcut_smth, rcut, protection)
            r0 = w * iq
            w2 = r0 * iq
            r1 = w2 * x
            r2 = w2 * y
            r3 = w2 * z
        R[i, j, 0] = (r0 - davg[t, j, 0]) / dstd[t, j, 0]
        R[i, j, 1] = (r1 - davg[t, j, 1]) / dstd[t, j, 1]
        R[i, j, 2] = (r2 - davg[t, j, 2]) / dstd[t, j, 2]
        R[i, j, 3] = (r3 - davg[t, j, 3]) / dstd[t, j, 3]

    @cuda.jit
    def descriptor_forward_k(T, M2, D):
        i = cuda.grid(1)
        if i >= T.shape[0]:
            return
        M1 = T.shape[1]
        for k in range(M1):
            t0 = T[i, k, 0]
            t1 = T[i, k, 1]
            t2 = T[i, k, 2]
            t3 = T[i, k, 3]
            for m in range(M2):
                D[i, k * M2 + m] = t0 * T[i, m, 0] + t1 * T[i, m, 1] + t2 * T[i, m, 2] \
                    + t3 * T[i, m, 3]

    @cuda.jit
    def descriptor_backward_k(dD, T, M2, nnei, dT):
        i = cuda.grid(1)
        if i >= T.shape[0]:
            return
        M1 = T.shape[1]
        for k in range(M1):
            for c in range(4):
                s = ZERO
                for m in range(M2):
                    s += dD[i, k * M2 + m] * T[i, m, c]
                if k < M2:
                    for q in range(M1):
                        s += dD[i, q * M2 + k] * T[i, q, c]
                dT[i, k, c] = s / nnei

    @cuda.jit
    def forces_virial_k(g, rij, nlist, rev_ptr, rev_idx, F, W):
        a = cuda.grid(1)
        if a >= F.shape[0]:
            return
        nnei = nlist.shape[1]
        f0 = ZERO
        f1 = ZERO
        f2 = ZERO
        for j in range(nnei):
            f0 += g[a, j, 0]
            f1 += g[a, j, 1]
            f2 += g[a, j, 2]
        w00 = ZERO
        w01 = ZERO
        w02 = ZERO
        w10 = ZERO
        w11 = ZERO
        w12 = ZERO
        w20 = ZERO
        w21 = ZERO
        w22 = ZERO
        for q in range(rev_ptr[a], rev_ptr[a + 1]):
            p = rev_idx[q]
            i = p // nnei
            j = p - i * nnei
            g0 = g[i, j, 0]
            g1 = g[i, j, 1]
            g2 = g[i, j, 2]
            x = rij[i, j, 0]
            y = rij[i, j, 1]
            z = rij[i, j, 2]
            f0 -= g0
            f1 -= g1
            f2 -= g2
            w00 -= g0 * x
            w01 -= g0 * y
            w02 -= g0 * z
            w10 -= g1 * x
            w11 -= g1 * y
            w12 -= g1 * z
            w20 -= g2 * x
            w21 -= g2 * y
            w22 -= g2 * z
        F[a, 0] = f0
        F[a, 1] = f1
        F[a, 2] = f2
        W[a, 0, 0] = w00
        W[a, 0, 1] = w01
        W[a, 0, 2] = w02
        W[a, 1, 0] = w10
        W[a, 1, 1] = w11
        W[a, 1, 2] = w12
        W[a, 2, 0] = w20
        W[a, 2, 1] = w21
        W[a, 2, 2] = w22

    return SimpleNamespace(env_mat=env_mat_k, descriptor_forward=descriptor_forward_k,
                           descriptor_backward=descriptor_backward_k,
                           forces_virial=forces_virial_k)


@lru_cache(maxsize=None)
def _embedding_kernels(dtname: str, ACT_SIZE: int, MAXW: int) -> SimpleNamespace:
    """Kernels that run embedding nets: per-thread buffers of ACT_SIZE and 2*MAXW values."""
    typ = np.dtype(dtname).type
    ZERO = typ(0.0)
    TWO = typ(2.0)
    NT = numba.from_dtype(np.dtype(dtname))
    BUF = 2 * MAXW  # two gradient vectors of at most MAXW values
    _, dense_backward, net_forward = _layer_device_functions(dtname)
    slot_index, pair_geometry = _pair_device_functions(dtname)

    @cuda.jit
    def embed_T_forward_k(R, keep, atype, slot_type, emb_index, params, meta, ptr, nnei, T):
        i = cuda.grid(1)
        if i >= R.shape[0]:
            return
        ys = cuda.local.array(ACT_SIZE, NT)
        hs = cuda.local.array(ACT_SIZE, NT)
        M1 = T.shape[1]
        for m in range(M1):
            for c in range(4):
                T[i, m, c] = ZERO
        ti = atype[i]
        for j in range(R.shape[1]):
            if keep[i, j] == 0:
                continue  # excluded neighbour: its row (and term) is zero
            net = emb_index[ti, slot_type[j]]
            ys[0] = R[i, j, 0]
            go = net_forward(params, meta, ptr[net], ptr[net + 1], ys, hs)
            r0 = R[i, j, 0]
            r1 = R[i, j, 1]
            r2 = R[i, j, 2]
            r3 = R[i, j, 3]
            for m in range(M1):
                gm = ys[go + m]
                T[i, m, 0] += gm * r0
                T[i, m, 1] += gm * r1
                T[i, m, 2] += gm * r2
                T[i, m, 3] += gm * r3
        for m in range(M1):
            for c in range(4):
                T[i, m, c] = T[i, m, c] / nnei

    @cuda.jit
    def embed_backward_k(rij, R, nlist, keep, atype, slot_type, emb_index, params, meta, ptr,
                         dstd, rcut, rcut_smth, protection, dT, g):
        i, j = slot_index(nlist)
        if i < 0:
            return
        if nlist[i, j] < 0 or keep[i, j] == 0:  # padding carries no derivative
            g[i, j, 0] = ZERO
            g[i, j, 1] = ZERO
            g[i, j, 2] = ZERO
            return
        ys = cuda.local.array(ACT_SIZE, NT)
        hs = cuda.local.array(ACT_SIZE, NT)
        buf = cuda.local.array(BUF, NT)
        ti = atype[i]
        net = emb_index[ti, slot_type[j]]
        l0 = ptr[net]
        l1 = ptr[net + 1]
        ys[0] = R[i, j, 0]
        go = net_forward(params, meta, l0, l1, ys, hs)
        M1 = dT.shape[1]
        r0 = R[i, j, 0]
        r1 = R[i, j, 1]
        r2 = R[i, j, 2]
        r3 = R[i, j, 3]
        d0 = ZERO
        d1 = ZERO
        d2 = ZERO
        d3 = ZERO
        for m in range(M1):  # dG = dT R_j, dR_j = dTᵀ G
            t0 = dT[i, m, 0]
            t1 = dT[i, m, 1]
            t2 = dT[i, m, 2]
            t3 = dT[i, m, 3]
            buf[m] = t0 * r0 + t1 * r1 + t2 * r2 + t3 * r3
            gm = ys[go + m]
            d0 += gm * t0
            d1 += gm * t1
            d2 += gm * t2
            d3 += gm * t3
        a = 0
        b = MAXW
        for ly in range(l1 - 1, l0 - 1, -1):
            dense_backward(params, meta, ly, hs, buf, a, buf, b)
            a, b = b, a
        d0 += buf[a]  # ds: the embedding input is R_j0
        # the row's backward (symref.reference.env.env_mat_backward)
        x, y, z, r, w, dw, iq = pair_geometry(rij, i, j, rcut_smth, rcut, protection)
        iq2 = iq * iq
        e0 = d0 / dstd[ti, j, 0]
        ex = d1 / dstd[ti, j, 1]
        ey = d2 / dstd[ti, j, 2]
        ez = d3 / dstd[ti, j, 3]
        radial = (e0 * (dw * iq - w * iq2)
                  + (ex * x + ey * y + ez * z) * (dw * iq2 - TWO * w * iq2 * iq))
        rr = radial / r
        wq2 = w * iq2
        g[i, j, 0] = rr * x + wq2 * ex
        g[i, j, 1] = rr * y + wq2 * ey
        g[i, j, 2] = rr * z + wq2 * ez

    return SimpleNamespace(embed_T_forward=embed_T_forward_k, embed_backward=embed_backward_k)


@lru_cache(maxsize=None)
def _fitting_kernel(dtname: str, ACT_SIZE: int, MAXW: int):
    """The fitting kernel: per-thread buffers of ACT_SIZE and 2*MAXW values."""
    typ = np.dtype(dtname).type
    ZERO, ONE = typ(0.0), typ(1.0)
    NT = numba.from_dtype(np.dtype(dtname))
    BUF = 2 * MAXW  # two gradient vectors of at most MAXW values
    dense_forward, dense_backward, _ = _layer_device_functions(dtname)

    @cuda.jit
    def fitting_k(D, atype, params, meta, ptr, bias_atom_e, out_bias, fit_on, alive, E, dD):
        i = cuda.grid(1)
        if i >= D.shape[0]:
            return
        t = atype[i]
        Di = D[i]
        dDi = dD[i]
        if alive[t] == 0 or fit_on[t] == 0:
            E[i] = out_bias[t] if alive[t] != 0 else ZERO
            for k in range(D.shape[1]):
                dDi[k] = ZERO
            return
        ys = cuda.local.array(ACT_SIZE, NT)
        hs = cuda.local.array(ACT_SIZE, NT)
        buf = cuda.local.array(BUF, NT)
        l0 = ptr[t]
        l1 = ptr[t + 1]
        dense_forward(params, meta, l0, Di, 0, ys, hs)
        for ly in range(l0 + 1, l1):
            dense_forward(params, meta, ly, ys, meta[ly, IN_OFF], ys, hs)
        E[i] = (ys[meta[l1 - 1, OUT_OFF]] + bias_atom_e[t]) + out_bias[t]
        a = 0
        b = MAXW
        buf[a] = ONE  # dE_i/dE_i (width-1 output layer)
        for ly in range(l1 - 1, l0, -1):
            dense_backward(params, meta, ly, hs, buf, a, buf, b)
            a, b = b, a
        dense_backward(params, meta, l0, hs, buf, a, dDi, 0)

    return fitting_k


def kernels(dtype, emb: NetPack | None = None, fit: NetPack | None = None) -> SimpleNamespace:
    """The kernels for ``dtype`` (float64 or float32) and the buffer sizes of ``emb``/``fit``."""
    name = np.dtype(dtype).name
    ns = SimpleNamespace(**vars(_plain_kernels(name)))
    if emb is not None:
        ns.__dict__.update(vars(_embedding_kernels(name, emb.act_size, emb.max_width)))
    if fit is not None:
        ns.fitting = _fitting_kernel(name, fit.act_size, fit.max_width)
    return ns


# ===================================================================== launchers + twins
def env_mat(rij, nlist, atype, davg, dstd, rcut, rcut_smth, protection, R):
    """``R`` (nloc x nnei x 4) <- normalised environment rows; ``rij`` (nloc x nnei x 3, Å),
    ``nlist`` (nloc x nnei, -1 padded), ``davg``/``dstd`` (ntypes x nnei x 4)."""
    dt = _np_dtype(R)
    typ = dt.type
    _launch(kernels(dt).env_mat, nlist.shape[0] * nlist.shape[1], rij, nlist, atype, davg, dstd,
            typ(rcut), typ(rcut_smth), typ(protection), R)


def env_mat_ref(rij, nlist, atype, davg, dstd, rcut, rcut_smth, protection, R):
    """NumPy twin of :func:`env_mat` (:func:`symref.reference.env.env_mat_forward`)."""
    from symref.reference.env import env_mat_forward

    mask = nlist >= 0
    rij = np.where(mask[..., None], rij, 0.0).astype(R.dtype)
    R[...] = env_mat_forward(rij, mask, davg[atype], dstd[atype], rcut, rcut_smth, protection)[0]


def embed_T_forward(R, keep, atype, slot_type, emb_index, emb: NetPack, nnei, T):
    """``T`` (nloc x M1 x 4) <- Σ_j N_{t_i t_j}(R_j0 k_j) ⊗ (R_j k_j) / nnei.

    ``keep`` (nloc x nnei int8): 0 for excluded neighbours (descriptor
    ``exclude_types``); ``slot_type`` (nnei); ``emb_index`` (ntypes x ntypes):
    embedding net of (centre type, neighbour type)."""
    dt = _np_dtype(T)
    p, m, ptr = emb.arrays()
    _launch(kernels(dt, emb=emb).embed_T_forward, R.shape[0], R, keep, atype, slot_type,
            emb_index, p, m, ptr, dt.type(nnei), T)


def _slot_groups(atype, slot_type):
    """(centre type, slot type, centre rows, slot columns) of each block of one embedding net."""
    for ti in np.unique(atype):
        rows = np.nonzero(atype == ti)[0]
        for tj in np.unique(slot_type):
            yield ti, tj, rows, np.nonzero(slot_type == tj)[0]


def embed_T_forward_ref(R, keep, atype, slot_type, emb_index, emb: NetPack, nnei, T):
    """NumPy twin of :func:`embed_T_forward` (:func:`symref.reference.nn.mlp_forward`, per slot group)."""
    from symref.reference.nn import mlp_astype, mlp_forward

    nets = [mlp_astype(n, T.dtype) for n in emb.unpack()]
    Rk = R * keep[..., None]
    out = np.zeros(T.shape, dtype=T.dtype)
    for ti, tj, rows, cols in _slot_groups(atype, slot_type):
        Rg = Rk[np.ix_(rows, cols)]  # nrows x sel x 4
        G = mlp_forward(Rg[..., :1], nets[emb_index[ti, tj]])[0]  # nrows x sel x M1
        out[rows] += np.einsum("bjm,bjc->bmc", G, Rg)
    T[...] = out / nnei


def descriptor_forward(T, M2, D):
    """``D`` (nloc x M1*M2) <- T T<ᵀ flattened row-major; ``T``: nloc x M1 x 4."""
    _launch(kernels(_np_dtype(D)).descriptor_forward, T.shape[0], T, np.int64(M2), D)


def descriptor_forward_ref(T, M2, D):
    """NumPy twin of :func:`descriptor_forward` (:func:`symref.reference.core.gram_forward`)."""
    from symref.reference.core import gram_forward

    D[...] = gram_forward(T, M2)[0].reshape(D.shape)


def descriptor_backward(dD, T, M2, nnei, dT):
    """``dT`` (nloc x M1 x 4) <- (∂/∂T of <dD, D>) / nnei."""
    dt = _np_dtype(dT)
    _launch(kernels(dt).descriptor_backward, T.shape[0], dD, T, np.int64(M2), dt.type(nnei), dT)


def descriptor_backward_ref(dD, T, M2, nnei, dT):
    """NumPy twin of :func:`descriptor_backward` (:func:`symref.reference.core.gram_backward`)."""
    from symref.reference.core import gram_backward

    n, M1, _ = T.shape
    dT[...] = gram_backward(dD.reshape(n, M1, M2), (T, M2))[0] / nnei


def fitting(D, atype, fit: NetPack, bias_atom_e, out_bias, fit_on, alive, E, dD):
    """Atomic energies ``E`` (nloc) and ``dD`` = ∂E_i/∂D_i (nloc x M1*M2).

    ``E_i = alive ? (fit_on ? F_t(D_i) + bias_atom_e[t] : 0) + out_bias[t] : 0``
    with ``t`` the atom's type; ``fit_on``/``alive`` (ntypes int8): the fitting's
    ``exclude_types`` and the model's ``atom_exclude_types``."""
    dt = _np_dtype(E)
    p, m, ptr = fit.arrays()
    _launch(kernels(dt, fit=fit).fitting, D.shape[0], D, atype, p, m, ptr, bias_atom_e, out_bias,
            fit_on, alive, E, dD)


def fitting_ref(D, atype, fit: NetPack, bias_atom_e, out_bias, fit_on, alive, E, dD):
    """NumPy twin of :func:`fitting` (:func:`symref.reference.nn.mlp_forward` / ``mlp_backward``)."""
    from symref.reference.nn import mlp_astype, mlp_backward, mlp_forward

    nets = [mlp_astype(n, E.dtype) for n in fit.unpack()]
    E[...] = 0.0
    dD[...] = 0.0
    for t in np.unique(atype):
        rows = np.nonzero(atype == t)[0]
        if not alive[t]:
            continue
        if not fit_on[t]:
            E[rows] = out_bias[t]
            continue
        out, cache = mlp_forward(D[rows], nets[t])
        E[rows] = (out[:, 0] + bias_atom_e[t]) + out_bias[t]
        dD[rows] = mlp_backward(np.ones((len(rows), 1), dtype=E.dtype), cache)[0]


def embed_backward(rij, R, nlist, keep, atype, slot_type, emb_index, emb: NetPack, dstd,
                   rcut, rcut_smth, protection, dT, g):
    """``g`` (nloc x nnei x 3) <- ∂E/∂r_ji for upstream ``dT`` (nloc x M1 x 4, already / nnei).

    Zero for padded slots and excluded neighbours."""
    dt = _np_dtype(g)
    typ = dt.type
    p, m, ptr = emb.arrays()
    _launch(kernels(dt, emb=emb).embed_backward, nlist.shape[0] * nlist.shape[1], rij, R, nlist,
            keep, atype, slot_type, emb_index, p, m, ptr, dstd, typ(rcut), typ(rcut_smth),
            typ(protection), dT, g)


def embed_backward_ref(rij, R, nlist, keep, atype, slot_type, emb_index, emb: NetPack, dstd,
                       rcut, rcut_smth, protection, dT, g):
    """NumPy twin of :func:`embed_backward` (``cloud_sum_backward``, ``mlp_backward``,
    :func:`symref.reference.env.env_mat_backward`)."""
    from symref.reference.env import env_mat_backward, env_mat_forward
    from symref.reference.nn import mlp_astype, mlp_backward, mlp_forward

    nets = [mlp_astype(n, g.dtype) for n in emb.unpack()]
    mask = nlist >= 0
    Rk = R * keep[..., None]
    dR = np.zeros(R.shape, dtype=g.dtype)
    for ti, tj, rows, cols in _slot_groups(atype, slot_type):
        Rg = Rk[np.ix_(rows, cols)]  # nrows x sel x 4
        G, cache = mlp_forward(Rg[..., :1], nets[emb_index[ti, tj]])
        dTg = dT[rows]  # nrows x M1 x 4
        dG = np.einsum("bmc,bjc->bjm", dTg, Rg)
        dRg = np.einsum("bmc,bjm->bjc", dTg, G)
        dRg[..., 0] += mlp_backward(dG, cache)[0][..., 0]
        dR[np.ix_(rows, cols)] = dRg
    dR *= keep[..., None]
    rij = np.where(mask[..., None], rij, 0.0).astype(g.dtype)
    zeros = np.zeros(dstd[atype].shape, dtype=g.dtype)
    _, cache = env_mat_forward(rij, mask, zeros, dstd[atype], rcut, rcut_smth, protection)
    g[...] = env_mat_backward(dR, cache)[0]


def forces_virial(g, rij, nlist, rev_ptr, rev_idx, F, W):
    """Forces ``F`` (natoms x 3) and per-atom virials ``W`` (natoms x 3 x 3), gathered.

    F_a = Σ_j g[a, j] - Σ_{(i,j): nlist[i,j] = a} g[i, j];
    W_a = -Σ_{(i,j): nlist[i,j] = a} g[i, j] ⊗ rij[i, j].  The slots whose
    neighbour is a are ``rev_idx[rev_ptr[a]:rev_ptr[a+1]]`` (flat ``i*nnei + j``),
    from :func:`reverse_index`."""
    _launch(kernels(_np_dtype(F)).forces_virial, F.shape[0], g, rij, nlist, rev_ptr, rev_idx,
            F, W)


def forces_virial_ref(g, rij, nlist, rev_ptr, rev_idx, F, W):
    """NumPy twin of :func:`forces_virial` (scatter with ``np.add.at``, as :mod:`symref.model.deeppot`)."""
    mask = nlist >= 0
    F[...] = g.sum(axis=1)
    np.add.at(F, nlist[mask], -g[mask])
    W[...] = 0.0
    np.add.at(W, nlist[mask], -g[mask][:, :, None] * rij[mask][:, None, :])


def reverse_index(nlist, natoms):
    """(rev_ptr (natoms+1), rev_idx (P)): flat slots ``i*nnei + j`` grouped by neighbour
    ``nlist[i, j]``, ascending inside each group (host, NumPy)."""
    flat = nlist.reshape(-1)
    slots = np.nonzero(flat >= 0)[0]
    order = np.argsort(flat[slots], kind="stable")
    rev_idx = slots[order].astype(np.int64)
    counts = np.bincount(flat[slots], minlength=natoms)
    rev_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return rev_ptr, rev_idx


# ===================================================================== PTX check
def compile_ptx_all(cc=(8, 0)) -> dict:
    """Compile every kernel, float64 and float32, to PTX for compute capability ``cc``.

    Needs no GPU, only NVIDIA's NVVM library (``pip install "numba-cuda[cu13]"``
    or ``[cu12]``); not available under the simulator.  Returns
    ``{"<kernel> <dtype>": ptx}``.  This type-checks and compiles the kernels
    exactly as a real GPU run would, which the simulator (plain Python) cannot.
    """
    global _COLLECT
    if numba.config.ENABLE_CUDASIM:
        raise RuntimeError("compile_ptx_all needs the real CUDA target "
                           "(NUMBA_ENABLE_CUDASIM unset)")
    from symref.reference.nn import init_mlp

    out = {}
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        emb = NetPack.pack([init_mlp(rng, 1, [2, 4, 8], resnet_dt=True)], dtype, True)
        fit = NetPack.pack([init_mlp(rng, 16, [8, 8], resnet_dt=True, out_dim=1)], dtype, False)
        n, nnei, M1, M2 = 3, 4, 8, 2
        i64 = np.zeros((n, nnei), np.int64)
        f = np.zeros((n, nnei, 3), dtype)
        R = np.zeros((n, nnei, 4), dtype)
        keep = np.ones((n, nnei), np.int8)
        at = np.zeros(n, np.int64)
        st = np.zeros(nnei, np.int64)
        ei = np.zeros((1, 1), np.int64)
        stats = np.ones((1, nnei, 4), dtype)
        T = np.zeros((n, M1, 4), dtype)
        D = np.zeros((n, M1 * M2), dtype)
        v1 = np.zeros(1, dtype)
        flag = np.ones(1, np.int8)
        _COLLECT = []
        try:
            env_mat(f, i64, at, stats, stats, 6.0, 0.5, 0.0, R)
            embed_T_forward(R, keep, at, st, ei, emb, nnei, T)
            descriptor_forward(T, M2, D)
            fitting(D, at, fit, v1, v1, flag, flag, np.zeros(n, dtype), D)
            descriptor_backward(D, T, M2, nnei, T)
            embed_backward(f, R, i64, keep, at, st, ei, emb, stats, 6.0, 0.5, 0.0, T, f)
            forces_virial(f, f, i64, np.zeros(n + 1, np.int64), np.zeros(1, np.int64),
                          np.zeros((n, 3), dtype), np.zeros((n, 3, 3), dtype))
            calls = _COLLECT
        finally:
            _COLLECT = None
        # device functions are compiled for the current device's compute capability;
        # without a GPU, say which one (only for this check)
        from unittest import mock

        fake = SimpleNamespace(compute_capability=tuple(cc))
        with mock.patch("numba.cuda.dispatcher.get_current_device", lambda: fake):
            for kern, args in calls:
                sig = tuple(numba.typeof(a) for a in args)
                ptx, _ = cuda.compile_ptx(kern.py_func, sig, cc=cc)
                out[f"{kern.py_func.__name__} {np.dtype(dtype).name}"] = ptx
    return out
