r"""numba-cuda kernels of one se_e2_a + energy evaluation, each with a NumPy twin.

The GPU counterpart of :mod:`symref.fast.kernels.se_e2_a`, driven by
:mod:`symref.fast.cuda` (``DeepPot.evaluate(..., backend="cuda")``).  It needs
the ``numba-cuda`` package (``pip install "symref[cuda]"``), which provides
``numba.cuda`` (numba's own CUDA target is deprecated); without a GPU every
kernel runs, slowly, on numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` set
before numba is imported).

Layout: deepmd-kit's padded one (the NumPy reference's, ``DeepPot.environment``):
``nloc`` centre atoms, ``nnei = sum(sel)`` neighbour slots each, grouped by
neighbour type (``slot_type[j]``), ``nlist[i, j] = -1`` for padded slots.  The
neighbour list, ``rij`` and the reverse index used for the forces are computed
on the host by symref's numba CPU neighbour search and copied to the device
once per frame (the simplest correct choice; the search is 2-5% of a CPU
evaluation).  Padded slots are computed like real ones (row ``-davg/dstd``), so
statistics may vary slot by slot.  Axis names: ``M1`` embedding width, ``M2``
axis_neuron, ``P = nloc * nnei`` slots.

The stages, one kernel each (math as in :mod:`symref.reference.env`,
:mod:`symref.reference.descriptor.se_e2_a`, :mod:`symref.reference.nn`, ``DeepPot._evaluate_frame``):

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

The kernels themselves, the packed nets (:class:`~symref.fast.kernels.cuda_se_e2_a_device.NetPack`)
and the device functions they are built from are in
:mod:`symref.fast.kernels.cuda_se_e2_a_device` (built per floating-point type and
buffer size by its :func:`~symref.fast.kernels.cuda_se_e2_a_device.kernels`); this
module holds what the host calls: one launcher per kernel, its NumPy twin, the
reverse index and the PTX check.

Every launcher has a NumPy twin ``*_ref`` with the same signature, tested
against it in ``tests/cuda/test_cuda_kernels.py``; the twins call symref's
reference functions (:func:`symref.reference.env.env_mat_forward`,
:func:`symref.reference.nn.mlp_forward`, :func:`symref.reference.core.gram_forward`, ...).  The
simulator runs the kernels as Python; :func:`compile_ptx_all` compiles them
with the real CUDA compiler (NVVM) for a GPU that need not be present.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

# the device half first: it raises ImportError (with the install hint) without numba-cuda
from symref.fast.kernels.cuda_se_e2_a_device import NetPack, activation_kernel, kernels

import numba  # noqa: E402,I001  (after the numba-cuda check)
from numba import cuda  # noqa: E402

THREADS_PER_BLOCK = 128

# "grid too small" / "host array copied" warnings (numba-cuda has its own warning class)
_PERF_WARNINGS = [numba.NumbaPerformanceWarning]
try:
    from numba.cuda.core.errors import NumbaPerformanceWarning as _CudaPerfWarning

    _PERF_WARNINGS.append(_CudaPerfWarning)
except ImportError:  # pragma: no cover - older numba-cuda
    pass


# ===================================================================== launching
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
    """NumPy twin of :func:`forces_virial` (scatter with ``np.add.at``, as the reference ``DeepPot``)."""
    mask = nlist >= 0
    F[...] = g.sum(axis=1)
    np.add.at(F, nlist[mask], -g[mask])
    W[...] = 0.0
    np.add.at(W, nlist[mask], -g[mask][:, :, None] * rij[mask][:, None, :])


def activation_values(z, act, out):
    """``out[0]`` <- phi(z), ``out[1]`` <- phi'(z) (``out`` 2 x n) by the GPU's activation
    device functions for kernel code ``act`` >= 2 (relu, relu6, softplus, sigmoid, gelu,
    silu; :data:`symref.fast.kernels.activations.ACT_CODES`), the derivative taken from
    what a layer keeps (h or z), as the kernels do; one thread per value."""
    dt = _np_dtype(out)
    _launch(activation_kernel(dt.name), z.shape[0], z, int(act), out)


def activation_values_ref(z, act, out):
    """NumPy twin of :func:`activation_values`: the reference table
    (:data:`symref.reference.activation.ACTIVATIONS`) at ``z``."""
    from symref.fast.kernels.activations import act_deriv_ref, act_value_ref, KEEP_Z

    h = act_value_ref(z, act)
    out[0] = h
    out[1] = act_deriv_ref(np.asarray(z, dtype=np.float64) if act >= KEEP_Z else h, act)


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
            activation_values(np.zeros(n, dtype), 6, np.zeros((2, n), dtype))
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
