r"""Device code of the se_e2_a + energy GPU path: packed nets, device functions, kernels.

The half of :mod:`symref.fast.kernels.cuda_se_e2_a` that runs on the GPU.  Each kernel
here is launched by the function of the same name (without ``_k``) in
:mod:`symref.fast.kernels.cuda_se_e2_a`, which sits beside its NumPy twin ``*_ref``
(layout, the stages and the test of each kernel against its twin: see there):

==========================  =================================================  ==============
kernel (built by)           launcher and twin in ``cuda_se_e2_a``              one thread per
==========================  =================================================  ==============
``env_mat_k``               ``env_mat`` / ``env_mat_ref``                      slot
``embed_T_forward_k``       ``embed_T_forward`` / ``embed_T_forward_ref``      atom
``descriptor_forward_k``    ``descriptor_forward`` / ``descriptor_forward_ref`` atom
``fitting_k``               ``fitting`` / ``fitting_ref``                      atom
``descriptor_backward_k``   ``descriptor_backward`` / ``descriptor_backward_ref`` atom
``embed_backward_k``        ``embed_backward`` / ``embed_backward_ref``        slot
``forces_virial_k``         ``forces_virial`` / ``forces_virial_ref``          atom
==========================  =================================================  ==============

Networks are packed into flat buffers (:class:`NetPack`): ``params`` (all
weights, biases and timesteps), ``meta`` (one row per layer: offsets, widths,
shortcut, activation, where its input and output live in a per-thread
activation buffer) and ``ptr`` (net k is layers ``ptr[k]:ptr[k+1]``).  The
kernels are built per floating-point type (float64, float32: every constant
and accumulator has that type) and per buffer size by :func:`kernels`, from the
device functions of one dense layer (:func:`_layer_device_functions`, deepmd-kit's
rule of :mod:`symref.reference.nn`), of the activations
(:func:`_activation_device_functions`: one device function per activation, the twins of
:mod:`symref.fast.kernels.activations`, dispatched on the same integer codes) and of one
pair (:func:`_pair_device_functions`: slot index, switch, pair geometry of
:mod:`symref.reference.env`).
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

if importlib.util.find_spec("numba_cuda") is None:  # numba's built-in target is deprecated
    raise ImportError("symref's GPU path needs the numba-cuda package: "
                      "pip install 'symref[cuda]' (or pip install numba-cuda)")

import numba  # noqa: E402
from numba import cuda  # noqa: E402

from symref.fast.kernels.activations import (  # noqa: E402
    ACT_CODES, ACT_GELU, ACT_RELU, ACT_RELU6, ACT_SIGMOID, ACT_SILU, ACT_SILUT, ACT_SOFTPLUS,
    ACT_TANH, KEEP_Z, act_code)
from symref.reference.activation import SILUT_THRESHOLD, silut_constants  # noqa: E402

# meta columns of a packed layer
W_OFF, B_OFF, IDT_OFF, NIN, NOUT, SC, ACT, IN_OFF, OUT_OFF = range(9)
NMETA = 9


# ===================================================================== packing
@dataclass
class NetPack:
    """Networks (lists of :class:`symref.reference.nn.Layer`) packed for the kernels.

    ``params`` (float), ``meta`` (nlayers x 9 int64, columns ``W_OFF`` ...
    ``OUT_OFF``; ``B_OFF``/``IDT_OFF`` = -1 where the layer has none; ``ACT`` the
    activation's code, :data:`symref.fast.kernels.activations.ACT_CODES`, the CPU
    kernels' codes: every activation symref implements), ``ptr``
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
                code = act_code(ly.activation, "the GPU path")
                nin, nout = ly.w.shape
                row = [off, -1, -1, nin, nout, ly.shortcut, code, in_off, cur]
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
                act = _CODE_NAME[int(row[ACT])]
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


#: kernel code -> the activation name a packed layer unpacks to (gelu_tf is gelu, none linear)
_CODE_NAME = {code: name for name, code in reversed(list(ACT_CODES.items()))}


# ===================================================================== activations
@lru_cache(maxsize=None)
def _activation_device_functions(dtname: str):
    """``(act_value, act_deriv)``: device twins of :func:`symref.fast.kernels.activations.
    act_value` and ``act_deriv`` for the codes >= 2 (relu, relu6, softplus, sigmoid, gelu,
    silu, silut with T = 3), one device function per activation, in the kernel's type
    (float32 kernels compute in float32).  A layer keeps, as the CPU kernels do,
    ``h = phi(z)`` for codes 2-5 and ``z`` for codes >= KEEP_Z (gelu, silu, silut), and
    ``act_deriv`` takes what was kept (the formulas of
    :mod:`symref.reference.activation` and :func:`~symref.reference.activation.
    derivatives_from_value`).  tanh (code 1) and the identity (0) stay in the layer
    functions."""
    typ = np.dtype(dtname).type
    ZERO, HALF, ONE, TWO, THREE, SIX = (typ(v) for v in (0.0, 0.5, 1.0, 2.0, 3.0, 6.0))
    GC, GA = typ(math.sqrt(2.0 / math.pi)), typ(0.044715)  # gelu: u = GC (z + GA z^3)
    BIG = typ(40.0 if typ is np.float32 else 350.0)  # sech^2 u < 1e-34 beyond; cosh^2 finite
    ST = typ(SILUT_THRESHOLD)  # silut: T = 3, slope silu'(T), const silu(T)
    SA, SC = (typ(v) for v in silut_constants(SILUT_THRESHOLD))

    @cuda.jit(device=True)
    def sigmoid(x):
        """1/(1+e^{-x}) from e^{-|x|} (no overflow)."""
        e = math.exp(-abs(x))
        return ONE / (ONE + e) if x >= ZERO else e / (ONE + e)

    @cuda.jit(device=True)
    def relu(z):
        """z [z > 0] (-0 below 0, as the reference's z * [z > 0])."""
        return z if z > ZERO else ZERO * z

    @cuda.jit(device=True)
    def relu_deriv(h):
        return ONE if h > ZERO else ZERO

    @cuda.jit(device=True)
    def relu6(z):
        return ZERO if z < ZERO else (SIX if z > SIX else z)

    @cuda.jit(device=True)
    def relu6_deriv(h):
        return ONE if (h > ZERO and h < SIX) else ZERO

    @cuda.jit(device=True)
    def softplus(z):
        return (z if z > ZERO else ZERO) + math.log1p(math.exp(-abs(z)))

    @cuda.jit(device=True)
    def softplus_deriv(h):
        """sigma(z) = 1 - e^{-h}."""
        return -math.expm1(-h)

    @cuda.jit(device=True)
    def sigmoid_deriv(h):
        return h * (ONE - h)

    @cuda.jit(device=True)
    def gelu(z):
        return HALF * z * (ONE + math.tanh(GC * (z + GA * (z * z) * z)))

    @cuda.jit(device=True)
    def sech2(u):
        """1 - tanh(u)^2 as 1/cosh(u)^2 (no cancellation; 0 far out)."""
        if abs(u) > BIG:
            return ZERO
        c = math.cosh(u)
        return ONE / (c * c)

    @cuda.jit(device=True)
    def gelu_deriv(z):
        """From z: (1 + tanh u)/2 + z sech^2(u) u'/2, both factors without cancellation."""
        z2 = z * z
        u = GC * (z + GA * z2 * z)
        if u >= ZERO:
            onept = ONE + math.tanh(u)
        else:
            e = math.exp(TWO * u)
            onept = TWO * e / (ONE + e)
        return HALF * onept + HALF * z * sech2(u) * (GC * (ONE + THREE * GA * z2))

    @cuda.jit(device=True)
    def silu(z):
        return z * sigmoid(z)

    @cuda.jit(device=True)
    def silu_deriv(z):
        sg = sigmoid(z)
        return sg + z * (sg * (ONE - sg))

    @cuda.jit(device=True)
    def silut(z):
        """silu below T = 3, tanh(a (z - T)) + c from T on."""
        if z >= ST:
            return math.tanh(SA * (z - ST)) + SC
        return silu(z)

    @cuda.jit(device=True)
    def silut_deriv(z):
        if z >= ST:
            return SA * sech2(SA * (z - ST))
        return silu_deriv(z)

    @cuda.jit(device=True)
    def act_value(z, act):
        """phi(z) for a code >= 2 (z otherwise)."""
        if act == ACT_RELU:
            return relu(z)
        if act == ACT_RELU6:
            return relu6(z)
        if act == ACT_SOFTPLUS:
            return softplus(z)
        if act == ACT_SIGMOID:
            return sigmoid(z)
        if act == ACT_GELU:
            return gelu(z)
        if act == ACT_SILU:
            return silu(z)
        if act == ACT_SILUT:
            return silut(z)
        return z

    @cuda.jit(device=True)
    def act_deriv(v, act):
        """phi' from the kept value v (h for codes 2-5, z for codes >= KEEP_Z; 1 otherwise)."""
        if act == ACT_RELU:
            return relu_deriv(v)
        if act == ACT_RELU6:
            return relu6_deriv(v)
        if act == ACT_SOFTPLUS:
            return softplus_deriv(v)
        if act == ACT_SIGMOID:
            return sigmoid_deriv(v)
        if act == ACT_GELU:
            return gelu_deriv(v)
        if act == ACT_SILU:
            return silu_deriv(v)
        if act == ACT_SILUT:
            return silut_deriv(v)
        return ONE

    return act_value, act_deriv


@lru_cache(maxsize=None)
def activation_kernel(dtname: str):
    """``act_k(z, act, out)``: out[0, k] <- the kept value, out[1, k] <- phi'(z[k]), by the
    device functions (the harness of their test; one thread per value)."""
    act_value, act_deriv = _activation_device_functions(dtname)

    @cuda.jit
    def act_k(z, act, out):
        k = cuda.grid(1)
        if k >= z.shape[0]:
            return
        h = act_value(z[k], act)
        v = z[k] if act >= KEEP_Z else h
        out[0, k] = h
        out[1, k] = act_deriv(v, act)

    return act_k


# ===================================================================== kernels
@lru_cache(maxsize=None)
def _layer_device_functions(dtname: str):
    """Device functions of one dense layer (deepmd-kit's rule, :mod:`symref.reference.nn`)."""
    ZERO = np.dtype(dtname).type(0.0)
    ONE = np.dtype(dtname).type(1.0)
    act_value, act_deriv = _activation_device_functions(dtname)

    @cuda.jit(device=True)
    def layer_meta(meta, ly):
        """Row ly of a packed net's meta: (w_off, b_off, idt_off, nin, nout, sc, act, out)."""
        return (meta[ly, W_OFF], meta[ly, B_OFF], meta[ly, IDT_OFF], meta[ly, NIN],
                meta[ly, NOUT], meta[ly, SC], meta[ly, ACT], meta[ly, OUT_OFF])

    @cuda.jit(device=True)
    def dense_forward(params, meta, ly, x, xoff, ys, hs):
        """Layer ly on x[xoff : xoff+nin]: y = h*idt + sc(x) -> ys[out:], h = phi(z) -> hs[out:]
        (z itself for gelu, silu and silut, whose derivatives are a function of z, not of h)."""
        w_off, b_off, i_off, nin, nout, sc, act, o = layer_meta(meta, ly)
        for m in range(nout):
            z = ZERO
            for k in range(nin):
                z += x[xoff + k] * params[w_off + k * nout + m]
            if b_off >= 0:
                z += params[b_off + m]
            if act == ACT_TANH:
                h = math.tanh(z)
                hs[o + m] = h
            elif act > ACT_TANH:
                h = act_value(z, act)
                hs[o + m] = z if act >= KEEP_Z else h  # what act_deriv takes
            else:
                h = z
                hs[o + m] = h
            y = h * params[i_off + m] if i_off >= 0 else h
            if sc == 1:
                y += x[xoff + m]
            elif sc == 2:
                y += x[xoff + (m if m < nin else m - nin)]
            ys[o + m] = y

    @cuda.jit(device=True)
    def dense_backward(params, meta, ly, hs, dy, dyoff, dx, dxoff):
        """dx[dxoff : dxoff+nin] <- ∂/∂x of <dy[dyoff : dyoff+nout], y> (needs hs only)."""
        w_off, _, i_off, nin, nout, sc, act, o = layer_meta(meta, ly)
        for k in range(nin):
            dx[dxoff + k] = ZERO
        for m in range(nout):
            dz = dy[dyoff + m]
            if i_off >= 0:
                dz = dz * params[i_off + m]
            if act == ACT_TANH:
                h = hs[o + m]
                dz = dz * (ONE - h * h)
            elif act > ACT_TANH:
                dz = dz * act_deriv(hs[o + m], act)
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
