r"""The fast CPU path of :meth:`symref.DeepPot.evaluate` (``backend="numba"``).

Same mathematics as the NumPy reference (``backend="numpy"``), reorganised for
speed; the kernels are in :mod:`symref.fast.kernels`, each tested against a NumPy
twin, and the whole path is tested against the reference.

1. O(N) neighbour search (:func:`symref.fast.kernels.neighbors.build_pair_list`):
   real pairs only, in the se_e2_a slot order.
2. Atoms are sorted by type (stable) and pairs regrouped by neighbour type,
   so that every embedding net sees one contiguous array of pairs and every
   fitting net one contiguous block of atoms.
3. Padded slots are never computed pair by pair: for centre type :math:`t_i`
   and neighbour type :math:`t_j` the padded row is the constant
   :math:`R^{pad} = -\mathrm{davg}/\mathrm{dstd}`, so its contribution to T is
   :math:`n^{pad}_{i,t_j}\, \mathcal N_{t_i t_j}(R^{pad}_0) \otimes R^{pad}`, computed once
   per type pair.  This needs ``davg``/``dstd`` constant inside each neighbour-type
   group of slots, which is how deepmd-kit computes them; other models fall back
   to the reference (with a warning).
4. Atoms are processed in blocks of about ``block_pairs`` pairs so that the
   per-pair activations (P x 25, 50, 100) stay in cache; inside a block each
   layer is one BLAS matrix product (``np.matmul``) followed by a fused numba
   kernel (bias, activation, residual; the last embedding layer fused with the sum
   T = Σ G ⊗ R).  The fitting nets run on the block's atoms (one type) as
   matrix-matrix products.  The backward pass mirrors it and ends with
   dE/dr for every pair.
5. Forces and per-atom virials are *gathered* per atom (no scatter races), so
   results do not depend on the number of threads beyond BLAS's own
   summation order.

Threading (``mode``, see :func:`default_mode`).  Every block kernel exists in
two builds (:mod:`symref.fast.kernels._jit`): ``parallel=True`` with ``prange`` over
atoms or rows, and a serial ``nogil`` one.  The default ``"blocks"`` mode runs
one block per thread (a thread pool of ``numba.get_num_threads()`` workers)
with the serial builds and single-threaded BLAS, so no thread pool ever waits
on another.  ``"kernels"`` runs blocks one after another with the parallel
builds and BLAS's own threads; on the 2-core development machine it was 8-13x
slower at 192 atoms with numba's default OpenMP layer (412 ms against 30-39 ms:
OpenMP and OpenBLAS workers spin-wait for each other's cores) and about 1.5x
slower with ``NUMBA_THREADING_LAYER=workqueue``.  Both modes give the same
numbers (tested).

Compressed models (``descriptor.tables`` set): the embedding nets are replaced by
their tables (:mod:`symref.fast.kernels.tabulated`): per segment one kernel computes
the environment rows, looks up G and dG/ds and adds G ⊗ R into T, and one kernel
goes back from T̄ to dE/dr (G and dG/ds recomputed, not stored); the padded
slots' constant uses the table too, an empty table contributes nothing, and a
neighbour beyond a table's end warns as in the reference.

Precision: float64, or float32 (``precision="float32"``; the model's parameters cast by
``DeepPot.astype``): the pair rows, activations, T, D and the pair gradients are float32
(float32 BLAS, the float32 ``tanh`` of :mod:`symref.fast.kernels.activations`), the
sums that need it are float64: atomic energies are added in float64, forces and virials
are gathered into float64 accumulators (:func:`~symref.fast.kernels.se_e2_a.forces_virial_gather`),
and the neighbour search stays float64.  Compressed models are float64 only.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import numba
import numpy as np

from symref.fast import blas as _blas
from symref.fast.cpu_tables import TABLE_BLOCK_PAIRS
from symref.fast.cpu_tables import table_blocks as _table_blocks
from symref.fast.cpu_tables import tables as _tables
from symref.fast.cpu_tables import warn_beyond_tables as _warn_beyond_tables
from symref.fast.fitting import fitting_backward, fitting_forward
from symref.fast.kernels import dense as kd
from symref.fast.kernels import se_e2_a as ks
from symref.fast.kernels import tabulated as kt
from symref.fast.kernels.activations import ACT_CODES, act_code
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3
from symref.reference.neighbors import type_pair_table
from symref.reference.nn import mlp_forward

BLOCK_PAIRS = 8192  # upper bound on pairs per block (cache-sized working set)
PARALLEL_BOOKKEEPING_ATOMS = 1024  # below this, pair bookkeeping runs on one thread
MIN_BLOCK_PAIRS = 4096  # lower bound: keeps the matrix products efficient (the fitting
# nets' weights, 3 MB for a 1600 x 240 layer, are streamed once per block)

_BLOCK_KERNELS = ("dense_act_forward", "dense_act_backward", "env_embed_forward",
                  "env_embed_backward", "embed_T_forward", "embed_T_backward",
                  "descriptor_forward", "descriptor_backward", "env_table_T_forward",
                  "env_table_T_backward")


def _kernel_set(serial: bool) -> SimpleNamespace:
    ks_ = {}
    for name in _BLOCK_KERNELS:
        f = getattr(kd, name, None) or getattr(ks, name, None) or getattr(kt, name)
        ks_[name] = f.serial if serial else f
    return SimpleNamespace(**ks_)


_PARALLEL = _kernel_set(False)
_SERIAL = _kernel_set(True)
_POOLS: dict[int, ThreadPoolExecutor] = {}
# A forked child (multiprocessing's "fork" start method) inherits the pools but not their
# worker threads: work submitted there would wait forever.  The child starts without pools.
os.register_at_fork(after_in_child=_POOLS.clear)


def thread_pool(nthreads: int) -> ThreadPoolExecutor:
    """The process's pool of ``nthreads`` worker threads (made on first use, then reused;
    a forked child makes its own)."""
    pool = _POOLS.get(nthreads)
    if pool is None:
        pool = _POOLS[nthreads] = ThreadPoolExecutor(nthreads, thread_name_prefix="symref")
    return pool


def default_mode() -> str:
    """``"blocks"`` (one block of atoms per thread, single-threaded BLAS and kernels)
    or ``"kernels"`` (blocks one after another, every kernel and BLAS call
    multi-threaded).  ``SYMREF_NUMBA_MODE`` overrides; "blocks" needs a way to
    limit BLAS threads (:mod:`symref.fast.blas`)."""
    env = os.environ.get("SYMREF_NUMBA_MODE")
    if env in ("blocks", "kernels"):
        return env
    return "blocks" if _blas.can_limit() else "kernels"


def require() -> None:
    """Nothing to check: numba is one of symref's dependencies (the backend protocol of
    :mod:`symref.fast`)."""


def frame_evaluator(model, dtype=np.float64):
    """``(coord, atype, box, *, truncate, frame) -> dict`` evaluating one frame of ``model``
    (already cast to ``dtype``: float64 or float32) with :func:`evaluate_frame`."""
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"the numba path evaluates float64 and float32, got {np.dtype(dtype)}")

    evaluate, kw = evaluate_frame, {"dtype": dtype}
    if isinstance(model.descriptor, (SeE2R, SeE3, Hybrid)):  # symref.fast.se_e3 / .hybrid
        if np.dtype(dtype) != np.float64:
            from symref.fast import fallback_warning

            fallback_warning("numba", f"{type(model.descriptor).__name__} runs float64 only "
                             "on numba", stacklevel=4)
            return None  # the reference runs (symref.model.backends.frame_function)
        evaluate, kw = family_evaluator(model)

    def frame_fn(coord, atype, box, *, truncate=False, frame=None, **_):
        return evaluate(model, coord, atype, box, truncate=truncate, frame=frame, **kw)

    return frame_fn


def family_evaluator(model):
    """``(evaluate_frame, kwargs)`` of an se_e2_r, se_e3 or hybrid model: the frame function
    of :mod:`symref.fast.se_e3` or :mod:`symref.fast.hybrid` and the numba pieces handed to it
    (fitting in blocks; a hybrid's se_e2_a members)."""
    kw = {"fitting": energy_fitting_blocks}
    if isinstance(model.descriptor, Hybrid):
        from symref.fast.hybrid import evaluate_frame
        return evaluate_frame, {"se_e2_a_forward": se_e2_a_member_forward,
                                "se_e2_a_backward": se_e2_a_member_backward, **kw}
    from symref.fast.se_e3 import evaluate_frame
    return evaluate_frame, kw


def unsupported_reason(model) -> str | None:
    """Why the fast path cannot evaluate ``model`` exactly, or None."""
    d = model.descriptor
    if isinstance(d, Hybrid):  # symref.fast.hybrid: each member on its own path
        for k, m in enumerate(d.members):
            if isinstance(m, SeE2A) and getattr(m, "tables", None) is not None:
                return f"descriptor.list[{k}] is compressed (tabulated)"
            reason = _descriptor_reason(m)
            if reason is not None:
                return f"descriptor.list[{k}]: {reason}"
    else:
        reason = _descriptor_reason(d)
        if reason is not None:
            return reason
    # a compressed descriptor's tables replace its embedding nets
    compressed = getattr(d, "tables", None) is not None
    if compressed and np.asarray(d.davg).dtype != np.float64:
        return "compressed (tabulated) models run in float64 only on the numba path"
    for net in model.fitting.nets:  # the numba fitting kernels (every descriptor)
        for ly in net or []:
            if ly.activation not in ACT_CODES:
                return (f"activation {ly.activation!r} is not implemented in the numba fast "
                        f"path (it has {sorted(ACT_CODES)})")
    return None


def _descriptor_reason(d) -> str | None:
    """Why the numba kernels cannot evaluate the descriptor ``d`` (se_e2_a, se_e2_r or se_e3)
    exactly, or None."""
    tabulated = getattr(d, "tables", None) is not None  # tables replace the nets
    # the kernels of se_e2_a and of symref.fast.se_e3 (se_e2_r, se_e3) take every activation code
    allowed = sorted(ACT_CODES)
    for net in ([] if tabulated else d.embeddings):
        for ly in net:
            if ly.activation not in allowed:
                return (f"activation {ly.activation!r} is not implemented in the numba fast "
                        f"path of {type(d).__name__} (it has {allowed})")
    if not isinstance(d, SeE2A):  # se_e2_r, se_e3: symref.fast.se_e3
        return None
    off = d.sel_offsets
    for ti in range(d.ntypes):
        for tj in range(d.ntypes):
            sl = slice(off[tj], off[tj + 1])
            for name, arr in (("davg", d.davg), ("dstd", d.dstd)):
                blk = arr[ti, sl]
                if len(blk) and not (blk == blk[0]).all():
                    return (f"{name}[{ti}] varies inside the slots of neighbour type {tj}; "
                            "the fast path needs statistics constant per type group")
    return None


def pair_rules(model, desc=None) -> np.ndarray:
    """``rule[ti, tj]`` (ntypes x ntypes ints) for a pair of centre type ti and neighbour type tj:
    1 a real neighbour, 0 removed and counted as padding (model ``pair_exclude_types``),
    2 removed but counted as a real neighbour whose row is zero (descriptor ``exclude_types``;
    ``desc``: a hybrid's member instead of ``model.descriptor``)."""
    desc = model.descriptor if desc is None else desc
    nt = desc.ntypes
    rule = np.ones((nt, nt), dtype=np.int64)
    rule[type_pair_table(nt, desc.exclude_types)] = 2
    rule[type_pair_table(nt, model.pair_exclude_types)] = 0
    return rule


def _layer_arrays(ly, dtype=np.float64):
    """(W, b, idt, shortcut, act) of a :class:`symref.reference.nn.Layer` for the kernels
    (``act``: :data:`~symref.fast.kernels.activations.ACT_CODES`; ValueError naming an
    activation the kernels lack)."""
    nout = ly.nout
    b = ly.b if ly.b is not None else np.zeros(nout)
    idt = ly.idt if ly.idt is not None else np.ones(nout)
    return (np.ascontiguousarray(ly.w, dtype=dtype), np.ascontiguousarray(b, dtype=dtype),
            np.ascontiguousarray(idt, dtype=dtype), ly.shortcut,
            act_code(ly.activation))


# ------------------------------------------------------------ scratch buffers
class Arena:
    """Grow-only scratch buffers by key, reused from one call to the next.

    Fresh arrays of the per-pair sizes here (the P x 25, 50, 100 activations; the dual
    pass of :mod:`symref.fast.cpu_loss` keeps ~4 kB per pair alive until its backward
    pass) come from ``mmap`` and are page-faulted and zeroed by the kernel on every
    call, which cost a third of the single-thread time at 192 water atoms.  Callers
    borrow an arena with :func:`borrowed_arena` (so concurrent users never share one):
    :func:`evaluate_frame` one per block of atoms, :func:`symref.fast.cpu_loss.frame_grad`
    one per frame, whose blocks then use disjoint keys.
    """

    def __init__(self):
        self.buf = {}

    def get(self, key, shape, dtype=np.float64):
        """An uninitialised array of ``shape`` and ``dtype`` owned by ``key`` (valid until
        the next ``get`` of the same key and dtype)."""
        n = math.prod(shape)
        k = (key, np.dtype(dtype).char)
        a = self.buf.get(k)
        if a is None or a.size < n:
            a = self.buf[k] = np.empty(max(n, 1), dtype=dtype)
        return a[:n].reshape(shape)


class FreshArrays:
    """The :class:`Arena` interface without reuse: every ``get`` is a new array."""

    @staticmethod
    def get(key, shape, dtype=np.float64):
        return np.empty(shape, dtype=dtype)


_FREE_ARENAS: list[Arena] = []


@contextmanager
def borrowed_arena():
    """An :class:`Arena` from the process's free list (a new one if none is free),
    given back when the ``with`` block ends."""
    try:
        ws = _FREE_ARENAS.pop()  # atomic: two threads never get the same arena
    except IndexError:
        ws = Arena()
    try:
        yield ws
    finally:
        _FREE_ARENAS.append(ws)


def borrow_arenas(n: int) -> list:
    """``n`` arenas from the process's free list (new ones if none is free), for work whose
    scratch arrays must outlive one block (activations kept for a later backward pass);
    the caller gives them back with ``_FREE_ARENAS.extend``."""
    arenas = []
    for _ in range(n):
        try:
            arenas.append(_FREE_ARENAS.pop())
        except IndexError:
            arenas.append(Arena())
    return arenas


def _pair_list(coord, atype, box, rcut, sel, truncate, frame):
    from symref.fast.kernels.neighbors import build_pair_list

    return build_pair_list(coord, atype, box, rcut, sel, truncate=truncate, frame=frame)


def _frame_setup(model, pl, atype, nc, nv, groups, dtype=np.float64) -> SimpleNamespace:
    """The frame's internal order and per-type-pair constants, shared by every fast pass
    (energy here, dipole/polarizability in :mod:`symref.fast.cpu_tensor`).

    ``pl``: the frame's :class:`~symref.fast.kernels.neighbors.PairList`; centres are the
    atoms ``0..nc-1``; ``groups``: ranges of centres sorted by type separately (see
    :func:`evaluate_frame`).  Returns a namespace: ``n``, ``P``, ``perm`` (internal ->
    original), ``inv_perm``, ``types_int`` (n), ``cptr`` (nt x n+1), ``j_int`` (P),
    ``rij`` (P x 3), ``npad`` (n x nt padded slots), ``davg_g``/``dstd_g`` (tj x ti x 4),
    ``cpad`` (ti x tj x 4 x M1), ``tabs``, ``emb``/``fnets`` (layer arrays), ``par``
    (thread the O(P) bookkeeping), ``dt`` (the working dtype of the per-pair and per-atom
    arrays: the model's, float64 or float32; pair offsets stay int64)."""
    desc, fit = model.descriptor, model.fitting
    nt, off, M1 = desc.ntypes, desc.sel_offsets, desc.neuron[-1]
    n = atype.shape[0]
    ptr = pl.ptr  # n+1
    if nc < n:  # non-centres keep no pairs of their own
        ptr = ptr.copy()
        ptr[nc + 1:] = ptr[nc]

    perm = np.concatenate([g0 + np.argsort(atype[g0:g1], kind="stable") for g0, g1 in groups]
                          + [np.arange(nc, n)]).astype(np.int64)  # internal -> original
    inv_perm = np.empty(n, dtype=np.int64)
    inv_perm[perm] = np.arange(n)
    types_int = np.ascontiguousarray(atype[perm])  # n
    rule = pair_rules(model)
    nkeep = np.empty((n, nt), dtype=np.int64)
    nreal = np.empty((n, nt), dtype=np.int64)
    # O(P) bookkeeping: threaded only for large frames.  OpenMP workers spin for a
    # while after a parallel region and would steal the cores from the blocks.
    par = n >= PARALLEL_BOOKKEEPING_ATOMS
    count_pairs = ks.count_pairs if par else ks.count_pairs.serial
    group_pairs = ks.group_pairs if par else ks.group_pairs.serial
    count_pairs(ptr, pl.j, atype, inv_perm, rule, nt, nkeep, nreal)
    cptr = np.zeros((nt, n + 1), dtype=np.int64)  # nt x n+1, global pair offsets
    base = 0
    for t in range(nt):
        cptr[t, 1:] = np.cumsum(nkeep[:, t])
        cptr[t] += base
        base = int(cptr[t, n])
    P = base
    j_int = np.empty(P, dtype=np.int64)
    rij = np.empty((P, 3), dtype=dtype)  # P x 3
    group_pairs(ptr, pl.j, pl.rij, atype, inv_perm, rule, nt, cptr, j_int, rij)
    npad = (np.asarray(desc.sel)[None, :] - nreal).astype(dtype)  # n x nt

    # ---- per (centre type, neighbour type) constants
    tabs = _tables(desc)  # None, or (data, info) per embedding index
    davg_g = np.empty((nt, nt, 4), dtype=dtype)  # tj x ti x 4
    dstd_g = np.empty((nt, nt, 4), dtype=dtype)
    cpad = np.zeros((nt, nt, 4, M1), dtype=dtype)  # ti x tj x 4 x M1: one padded slot's R ⊗ G
    for ti in range(nt):
        for tj in range(nt):
            if off[tj] == off[tj + 1]:
                davg_g[tj, ti], dstd_g[tj, ti] = 0.0, 1.0
                continue
            davg_g[tj, ti] = desc.davg[ti, off[tj]]
            dstd_g[tj, ti] = desc.dstd[ti, off[tj]]
            r_pad = -davg_g[tj, ti] / dstd_g[tj, ti]  # 4
            if np.any(r_pad != 0.0):
                idx = desc.embedding_index(ti, tj)
                if tabs is None:
                    G = mlp_forward(r_pad[None, :1], desc.embeddings[idx])[0][0]  # M1
                elif tabs[idx][0].size:
                    G = np.empty((1, M1))
                    kt.table_rows.serial(*tabs[idx], r_pad[:1], G)
                    G = G[0]  # M1
                else:  # no table: the group contributes nothing
                    continue
                cpad[ti, tj] = np.outer(r_pad, G)
    emb = ([[_layer_arrays(ly, dtype) for ly in net] for net in desc.embeddings]
           if tabs is None else tabs)
    fnets = [[_layer_arrays(ly, dtype) for ly in net] for net in fit.nets]

    return SimpleNamespace(n=n, P=P, perm=perm, inv_perm=inv_perm, types_int=types_int,
                           cptr=cptr, j_int=j_int, rij=rij, npad=npad, davg_g=davg_g,
                           dstd_g=dstd_g, cpad=cpad, tabs=tabs, emb=emb, fnets=fnets, par=par,
                           dt=np.dtype(dtype))


def _make_blocks(S, groups, nt, mode, block_pairs):
    """Blocks ``(ti, b0, b1)`` of centres of one type (internal order) of about
    ``block_pairs`` pairs; in ``"blocks"`` mode enough of them to keep every thread busy.
    Compressed models (``S.tabs``): :func:`symref.fast.cpu_tables.table_blocks`."""
    if S.tabs is not None:
        return _table_blocks(S, groups, nt, mode, block_pairs)
    ppa = max(1.0, S.P / S.n)  # pairs per atom
    target = block_pairs
    if mode == "blocks":
        target = min(block_pairs, max(MIN_BLOCK_PAIRS, S.P // (2 * numba.get_num_threads())))
    nb_max = max(1, int(target / ppa))
    blocks = []
    for g0, g1 in groups:
        tstart = g0 + np.searchsorted(S.types_int[g0:g1], np.arange(nt + 1))  # centres by type
        blocks += [(ti, b0, min(b0 + nb_max, int(tstart[ti + 1]))) for ti in range(nt)
                   for b0 in range(int(tstart[ti]), int(tstart[ti + 1]), nb_max)]
    return blocks


def run_blocks(fn, items, mode):
    """``[fn(K, item) for item in items]`` with ``K`` the kernel set of ``mode``: in
    ``"blocks"`` mode the items run on the thread pool with the serial builds and
    single-threaded BLAS, in ``"kernels"`` mode one after another with the parallel builds."""
    if mode == "kernels":
        return [fn(_PARALLEL, it) for it in items]
    with _blas.blas_threads(1):
        if numba.get_num_threads() > 1 and len(items) > 1:
            pool = thread_pool(numba.get_num_threads())
            return [f.result() for f in [pool.submit(fn, _SERIAL, it) for it in items]]
        return [fn(_SERIAL, it) for it in items]


def evaluate_frame(model, coord, atype, box, *, truncate=False, frame=None,
                   block_pairs: int | None = None, mode: str | None = None,
                   ncentre: int | None = None, nvirial: int | None = None,
                   fold: np.ndarray | None = None, pair_list=None, dtype=np.float64) -> dict:
    """Energy, forces, virial, atom_energy and atom_virial of one frame.

    Same inputs and outputs as the reference's frame function (``DeepPot._evaluate_frame``).
    ``mode``: see :func:`default_mode`.  Results do not depend on the mode or
    the number of threads except through BLAS summation order.

    Clusters (used by :mod:`symref.lammps` for a rank's atoms plus ghost images):
    with ``ncentre`` only atoms ``0..ncentre-1`` are centres, i.e. only their
    atomic energies are computed (the others are zero); the rest are
    neighbours only.  ``energy`` is the sum of the centres' energies and
    ``forces`` = -∂energy/∂x for *every* atom (exact for an atom only when all
    the centres whose energy depends on it are included).  With ``nvirial``
    the result also has ``centre_virial`` (3 x 3): the virial of the energies
    of atoms ``0..nvirial-1`` alone (``nvirial <= ncentre``).  ``fold`` (n ints,
    needs ``nvirial``): atom x is a periodic image of atom ``fold[x]``
    (``fold[x] = x`` for the others); the pairs of centres ``0..nvirial-1``
    then act on ``fold[j]`` instead of j, so the forces on the atoms the images
    stand for include them (:func:`symref.fast.kernels.se_e2_a.fold_neighbours`).
    ``pair_list``: a :class:`symref.fast.kernels.neighbors.PairList` of the frame
    already built with the model's rcut and sel (saves the search).  ``block_pairs``:
    the most pairs per block of atoms (default :data:`BLOCK_PAIRS`, compressed models
    :data:`~symref.fast.cpu_tables.TABLE_BLOCK_PAIRS`:
    :func:`~symref.fast.cpu_tables.table_blocks`).
    """
    mode = mode or default_mode()
    if mode not in ("blocks", "kernels"):
        raise ValueError(f"mode must be 'blocks' or 'kernels', got {mode!r}")
    desc = model.descriptor
    nt = desc.ntypes
    n = coord.shape[0]
    nc = n if ncentre is None else int(ncentre)
    if not 0 <= nc <= n:
        raise ValueError(f"ncentre must be in [0, {n}], got {ncentre}")
    if nvirial is not None and not 0 <= int(nvirial) <= nc:
        raise ValueError(f"nvirial must be in [0, ncentre={nc}], got {nvirial}")
    if fold is not None:
        if nvirial is None:
            raise ValueError("fold needs nvirial (the centres whose pairs are folded)")
        fold = np.asarray(fold, dtype=np.int64)
        if fold.shape != (n,) or fold.min(initial=0) < 0 or fold.max(initial=0) >= n:
            raise ValueError(f"fold must be {n} atom indices")
    pl = pair_list if pair_list is not None else _pair_list(coord, atype, box, desc.rcut,
                                                            desc.sel, truncate, frame)
    if pl.ptr.shape[0] != n + 1:
        raise ValueError(f"pair_list has {pl.ptr.shape[0] - 1} centres, the frame {n} atoms")
    # ---- internal order: centres sorted by type, then the non-centres; pairs grouped
    # by neighbour type
    # (own centres 0..nvirial-1 by type, then the other centres by type: the pairs of own
    # centres stay a prefix, for ``fold``)
    nv = nc if nvirial is None else int(nvirial)
    groups = [(0, nv), (nv, nc)] if 0 < nv < nc else [(0, nc)]
    S = _frame_setup(model, pl, atype, nc, nv, groups, dtype)
    perm, inv_perm, cptr, j_int, rij = S.perm, S.inv_perm, S.cptr, S.j_int, S.rij
    g_all = np.zeros((S.P, 3), dtype=S.dt)  # dE/dr_ji of every pair
    atom_e = np.zeros(n)  # float64 whatever the dtype: the energy is summed in float64
    if block_pairs is None:
        block_pairs = BLOCK_PAIRS if S.tabs is None else TABLE_BLOCK_PAIRS
    blocks = _make_blocks(S, groups, nt, mode, block_pairs)
    smax = []  # (embedding index, largest s of a block's pairs) of compressed models
    args = (model, S, g_all, atom_e, smax)
    run_blocks(lambda K, blk: _block(K, blk, *args), blocks, mode)

    if S.tabs is not None:
        _warn_beyond_tables(desc, S.tabs, smax, S.davg_g, S.dstd_g, S.types_int[:nc],
                            S.npad[:nc])

    # ---- forces and virials by gathering, back to the original order
    if fold is not None:
        ks.fold_neighbours(j_int, cptr, inv_perm[fold[perm]], nv)  # own centres: a prefix
    forces, atom_virial = gather_forces_virial(S, g_all)
    atom_energy = np.empty(n)
    atom_energy[perm] = atom_e
    out = {"energy": atom_energy.sum(), "forces": forces, "virial": atom_virial.sum(axis=0),
           "atom_energy": atom_energy, "atom_virial": atom_virial}
    if nvirial is not None:
        weight = (perm < int(nvirial)).astype(np.float64)  # n, internal order
        out["centre_virial"] = np.empty((3, 3))
        ks.centre_virial(g_all, rij, cptr, weight, out["centre_virial"])
    return out


def gather_forces_virial(S, g_all):
    """``(forces, atom_virial)`` (n x 3, n x 3 x 3, float64, original order) from
    ``g_all`` (P x 3) = dE/dr_ji of every pair of the frame setup ``S`` (internal order):
    gathered per atom by :func:`~symref.fast.kernels.se_e2_a.forces_virial_gather`."""
    n = S.n
    rev_ptr, rev_idx = ks.reverse_index(S.j_int, n)
    F = np.empty((n, 3))
    W = np.empty((n, 3, 3))
    gather = ks.forces_virial_gather if S.par else ks.forces_virial_gather.serial
    gather(g_all, S.rij, S.cptr, rev_ptr, rev_idx, F, W)
    forces = np.empty_like(F)
    forces[S.perm] = F
    atom_virial = np.empty_like(W)
    atom_virial[S.perm] = W
    return forces, atom_virial


def _block(K, blk, *args):
    """Forward and backward of the atoms ``b0:b1`` of ``blk = (ti, b0, b1)`` (all of type ti).

    ``K``: the kernel set (parallel or serial builds).  Writes ``atom_e[b0:b1]``
    and ``g_all`` of the block's pairs only, so blocks can run concurrently
    (each with its own scratch :class:`Arena`).
    """
    with borrowed_arena() as ws:
        _block_in(K, ws, blk, *args)


def _block_in(K, ws, blk, model, S, g_all, atom_e, smax):
    """:func:`_block` with the scratch arrays taken from ``ws``."""
    ti, b0, b1 = blk
    desc, fit = model.descriptor, model.fitting
    M1, M2, nnei = desc.neuron[-1], desc.axis_neuron, desc.nnei
    nb = b1 - b0
    T, segs = embed_forward(K, ws, blk, desc, S, smax)
    D = ws.get("D", (nb, M1 * M2), S.dt)
    K.descriptor_forward(T, M2, D)

    alive = ti not in model.atom_exclude_types
    if ti in fit.exclude_types:
        e_fit = np.zeros(nb, dtype=S.dt)
        alive_grad = False
    else:
        y, fhs = fitting_forward(K, ws, S.fnets[ti], D)
        e_fit = y[:, 0] + fit.bias_atom_e[ti]
        alive_grad = alive
    atom_e[b0:b1] = e_fit + model.out_bias[ti] if alive else 0.0
    if not alive_grad:
        return

    # ---- backward: dE_i/dE_i = 1
    dD = fitting_backward(K, ws, S.fnets[ti], fhs, np.ones((nb, 1), dtype=S.dt))  # nb x M1*M2
    dT = np.empty((nb, M1, 4), dtype=S.dt)
    K.descriptor_backward(dD, T, M2, 1.0 / nnei, dT)
    embed_backward(K, ws, blk, desc, S, segs, dT, g_all)


def energy_fitting_blocks(model, D, atype, weight=None, block_atoms: int = 256):
    """``(e_fit, dD)``: the fitting nets' atomic energies (bias_atom_e included; 0 for an
    excluded type) and dD = d(sum_i weight_i e_i)/dD (nloc x dim; ``weight`` default: the
    alive atoms) of a float64 ``D``, in blocks of at most ``block_atoms`` atoms of one type
    (:func:`run_blocks`): numba twin of :func:`symref.fast.se_e3.fitting_reference`, for
    the se_e2_r, se_e3 and hybrid paths."""
    fit = model.fitting
    weight = model.alive(atype).astype(np.float64) if weight is None else weight
    e_fit, dD = np.zeros(len(atype)), np.zeros(D.shape)
    blocks = []
    for t in range(fit.ntypes):
        rows = np.nonzero(atype == t)[0]
        if t not in fit.exclude_types:
            blocks += [(t, rows[s:s + block_atoms]) for s in range(0, len(rows), block_atoms)]
    layers = [[_layer_arrays(ly) for ly in net or []] for net in fit.nets]

    def one(K, blk):
        t, rows = blk
        with borrowed_arena() as ws:
            y, fhs = fitting_forward(K, ws, layers[t], np.ascontiguousarray(D[rows]))
            e = y[:, 0] + fit.bias_atom_e[t]
            dy = np.ascontiguousarray(weight[rows], dtype=np.float64)[:, None]  # nb x 1
            return e, fitting_backward(K, ws, layers[t], fhs, dy).copy()

    for (t, rows), (e, d) in zip(blocks, run_blocks(one, blocks, default_mode())):
        e_fit[rows], dD[rows] = e, d
    return e_fit, dD


def embed_forward(K, ws, blk, desc, S, smax, key=""):
    """The embedding nets and T of the block ``blk = (ti, b0, b1)``: ``(T, segs)``.

    ``T`` (nb x 4 x M1, transposed: contiguous k loops) is already divided by nnei and
    includes the padded slots (``S.cpad``); ``segs``: per neighbour type with pairs, what
    :func:`embed_backward` needs (rows, activations).  Scratch arrays come from ``ws``
    under names prefixed by ``key``; compressed descriptors record their largest s in
    ``smax``."""
    ti, b0, b1 = blk
    nt, M1 = desc.ntypes, desc.neuron[-1]
    cptr, emb, types_b = S.cptr, S.emb, S.types_int[b0:b1]
    nb = b1 - b0
    dt = S.dt
    T = np.zeros((nb, 4, M1), dtype=dt)  # nb x 4 x M1 (transposed: contiguous k loops)
    segs = []
    for tj in range(nt):
        p0, p1 = int(cptr[tj, b0]), int(cptr[tj, b1])
        padded = S.npad[b0:b1, tj].any()
        if padded and (desc.tables is None or p1 == p0):
            T += S.npad[b0:b1, tj][:, None, None] * S.cpad[ti, tj]  # padded slots
        if p1 == p0:
            continue
        P = p1 - p0
        ptr = cptr[tj, b0:b1 + 1] - p0  # nb+1
        rij_s = S.rij[p0:p1]  # P x 3
        R = ws.get(f"{key}R{tj}", (P, 4), dt)
        if desc.tables is not None:  # compressed: rows, table look-up and T in one kernel
            coef, info = emb[desc.embedding_index(ti, tj)]
            pad = ((np.ascontiguousarray(S.npad[b0:b1, tj]), S.cpad[ti, tj]) if padded
                   else ())  # padded slots: added in the kernel
            K.env_table_T_forward(rij_s, ptr, types_b, S.davg_g[tj], S.dstd_g[tj], desc.rcut,
                                  desc.rcut_smth, desc.env_protection, coef, info, R, T, *pad)
            smax.append((desc.embedding_index(ti, tj), float(R[:, 0].max())))
            segs.append((tj, p0, p1, ptr, rij_s, R, (coef, info), None, None))
            continue
        layers = emb[desc.embedding_index(ti, tj)]
        W1, b, idt, sc, act = layers[0]
        h = ws.get(f"{key}z{tj}_0", (P, W1.shape[1]), dt)
        x = ws.get(f"{key}y{tj}_0", (P, W1.shape[1]), dt)
        K.env_embed_forward(rij_s, ptr, types_b, S.davg_g[tj], S.dstd_g[tj], desc.rcut,
                            desc.rcut_smth, desc.env_protection, W1, b, idt, sc, act, R, h, x)
        layers = layers if len(layers) > 1 else layers + [_identity_layer(W1.shape[1], dt)]
        acts, hs = [None, x], [h]  # inputs and activations of each layer
        for k in range(1, len(layers)):
            Wt, b, idt, sc, act = layers[k]
            z = ws.get(f"{key}z{tj}_{k}", (P, Wt.shape[1]), dt)
            np.matmul(x, Wt, out=z)
            if k == len(layers) - 1:
                K.embed_T_forward(z, b, idt, x, sc, act, R, ptr, T)
            else:
                y = ws.get(f"{key}y{tj}_{k}", (P, Wt.shape[1]), dt)
                K.dense_act_forward(z, b, idt, x, sc, act, y)
                acts.append(y)
                x = y
            hs.append(z)
        segs.append((tj, p0, p1, ptr, rij_s, R, layers, acts, hs))
    T *= dt.type(1.0 / desc.nnei)
    return T, segs


def embed_backward(K, ws, blk, desc, S, segs, dT, g_all, keep=False, key=""):
    """Backward of :func:`embed_forward` for ``dT`` (nb x M1 x 4, the gradient of the
    un-normalised sum, i.e. already divided by nnei): writes ``g_all`` (dL/dr_ji) of the
    block's pairs.  ``keep``: leave the forward activations intact (gradients go to
    scratch arrays of ``ws`` under ``key``), so that the pass can be repeated with
    another ``dT``; else they are overwritten."""
    ti, b0, b1 = blk
    types_b = S.types_int[b0:b1]
    dstd_g, dt = S.dstd_g, S.dt
    none = np.empty((0, 0), dtype=dt)
    for tj, p0, p1, ptr, rij_s, R, layers, acts, hs in segs:
        if acts is None:  # a table: layers = (coef, info)
            K.env_table_T_backward(rij_s, ptr, types_b, dstd_g[tj], desc.rcut, desc.rcut_smth,
                                   desc.env_protection, *layers, R, dT, g_all[p0:p1])
            continue
        P = p1 - p0
        dR = ws.get(f"{key}dR{tj}", (P, 4), dt)
        k = len(layers) - 1
        Wt, b, idt, sc, act = layers[k]
        dz = ws.get(f"{key}dz{tj}_{k}", hs[k].shape, dt) if keep else hs[k]
        dxres = ws.get(f"{key}dxr{tj}_{k}", (P, Wt.shape[0]), dt) if sc else none
        K.embed_T_backward(hs[k], acts[k], idt, sc, act, R, ptr, dT, dz, dxres, dR)
        dx = ws.get(f"{key}dx{tj}_{k}", (P, Wt.shape[0]), dt)
        np.matmul(dz, Wt.T, out=dx)
        dyres = dxres if sc else none
        for k in range(len(layers) - 2, 0, -1):
            Wt, b, idt, sc, act = layers[k]
            dz = ws.get(f"{key}dz{tj}_{k}", hs[k].shape, dt) if keep else hs[k]
            dxres = ws.get(f"{key}dxr{tj}_{k}", (P, Wt.shape[0]), dt) if sc else none
            K.dense_act_backward(dx, dyres, hs[k], idt, sc, act, dz, dxres)
            dx = ws.get(f"{key}dx{tj}_{k}", (P, Wt.shape[0]), dt)
            np.matmul(dz, Wt.T, out=dx)
            dyres = dxres if sc else none
        W1, b, idt, sc, act = layers[0]
        K.env_embed_backward(rij_s, ptr, types_b, dstd_g[tj], desc.rcut, desc.rcut_smth,
                             desc.env_protection, W1, idt, sc, act, hs[0], dx, dyres, dR,
                             g_all[p0:p1])


def _identity_layer(n, dtype=np.float64):
    """A linear n -> n layer without bias: lets a one-layer embedding net use the
    fused first-layer and last-layer kernels."""
    return (np.eye(n, dtype=dtype), np.zeros(n, dtype=dtype), np.ones(n, dtype=dtype), 0, 0)


# ------------------------------------------------ an se_e2_a member of a hybrid
def se_e2_a_member_forward(model, member, pl, atype, mode=None,
                           block_pairs=BLOCK_PAIRS):
    """``(D, ctx)``: the se_e2_a ``member``'s descriptor (n x M1*M2, original order) of a
    hybrid (:mod:`symref.fast.hybrid`) on the pairs ``pl`` of its slots
    (:func:`symref.fast.hybrid.member_pair_list`), in the blocks of :func:`evaluate_frame`
    (``mode``: :func:`default_mode`); ``ctx`` keeps the blocks' activations (in borrowed
    arenas) for :func:`se_e2_a_member_backward`, which gives the arenas back."""
    mode = mode or default_mode()
    n = atype.shape[0]
    M1, M2 = member.neuron[-1], member.axis_neuron
    # the frame setup reads the descriptor, the model's pair exclusions and fitting nets
    view = SimpleNamespace(descriptor=member, fitting=model.fitting,
                           pair_exclude_types=model.pair_exclude_types)
    groups = [(0, n)]
    S = _frame_setup(view, pl, atype, n, n, groups)
    blocks = _make_blocks(S, groups, member.ntypes, mode, block_pairs)
    arenas = borrow_arenas(len(blocks))
    T = np.empty((n, 4, M1))  # n x 4 x M1, internal order, divided by nnei
    D = np.empty((n, M1 * M2))  # n x M1*M2, internal order

    def fwd(K, item):
        b, (ti, b0, b1) = item
        Tb, segs = embed_forward(K, arenas[b], (ti, b0, b1), member, S, [])
        T[b0:b1] = Tb
        K.descriptor_forward(Tb, M2, D[b0:b1])
        return segs

    segs = run_blocks(fwd, list(enumerate(blocks)), mode)
    out = np.empty_like(D)
    out[S.perm] = D
    ctx = SimpleNamespace(member=member, S=S, blocks=blocks, arenas=arenas, segs=segs, T=T,
                          mode=mode)
    return out, ctx


def se_e2_a_member_backward(dD, ctx, nvirial=None):
    """``(forces, atom_virial)`` of ``<dD, D>`` (``dD`` n x M1*M2, original order):
    -d/dx per atom and the atomic virials, original order; with ``nvirial`` also the
    virial of the pairs of centres ``0..nvirial-1``
    (:func:`~symref.fast.kernels.se_e2_a.centre_virial`)."""
    m, S = ctx.member, ctx.S
    dD_i = np.ascontiguousarray(dD[S.perm])  # n x M1*M2, internal order
    g_all = np.zeros((S.P, 3))  # P x 3

    def bwd(K, item):
        b, blk = item
        _, b0, b1 = blk
        dT = np.empty((b1 - b0, m.neuron[-1], 4))  # nb x M1 x 4
        K.descriptor_backward(dD_i[b0:b1], ctx.T[b0:b1], m.axis_neuron, 1.0 / m.nnei, dT)
        embed_backward(K, ctx.arenas[b], blk, m, S, ctx.segs[b], dT, g_all)

    run_blocks(bwd, list(enumerate(ctx.blocks)), ctx.mode)
    _FREE_ARENAS.extend(ctx.arenas)  # the activations are no longer needed
    ctx.arenas = None
    if nvirial is None:
        return gather_forces_virial(S, g_all)
    Wc = np.empty((3, 3))
    ks.centre_virial(g_all, S.rij, S.cptr, (S.perm < int(nvirial)).astype(np.float64), Wc)
    return (*gather_forces_virial(S, g_all), Wc)
