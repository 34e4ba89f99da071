r"""Data-parallel training across MPI ranks: communicators, frame shards, rank-independent sums.

``mpiexec -n K symref train input.json`` runs K copies of the same training.
Every rank loads all the data, builds the same model and runs the same
optimiser; only the loss and gradient of a batch are split:

* **Shards.**  The frames of a batch (all training frames for L-BFGS, the
  minibatch for Adam), numbered system by system, are cut into K contiguous
  ranges balanced by *frame count* (:func:`shard_ranges`: sizes differ by at
  most one, the larger ranges last).  Frames are not weighted by their atom
  counts, so systems of very different sizes balance less well; the sum below
  does not depend on how the frames are cut, so a better balance can be
  substituted without changing any result.
* **Sum.**  The batch mean is ``(1/n) Σ_f [L_f, ∇L_f]`` over per-frame losses and
  gradients, added in one fixed pairwise tree over the frame indices
  ``[0, n)`` (:func:`tree_sum`: a node ``[lo, hi)`` is the sum of
  ``[lo, mid)`` and ``[mid, hi)``, ``mid = (lo + hi) // 2``).  A rank evaluates
  the frames of its shard and the largest tree nodes inside it
  (:func:`tree_nodes`, at most about 2 log₂ n of them); an ``Allgatherv`` gives
  every rank all those node sums, and every rank finishes the same tree.
  Each addition is the same as in a single process, so the loss and gradient
  are *bitwise* the same for any K, on every rank, and equal to the serial
  ones (:func:`sharded_sum`).
* **Optimiser.**  With bitwise-equal gradients, SciPy's L-BFGS-B and Adam make
  the same steps on every rank; :meth:`MpiComm.check_identical` verifies the
  final parameters.  Adam's minibatch is drawn from the same seeded generator
  on every rank before it is split.  Stop decisions (time limit, Ctrl-C) are
  agreed by all ranks (:meth:`MpiComm.any`), files (checkpoints,
  ``lcurve.out``, models) are written and progress is printed by rank 0 only.

A frame whose evaluation raises on one rank makes every rank raise
(:class:`ShardError` on the others) instead of leaving them waiting.

mpi4py is imported only by :class:`MpiComm`, which :func:`get_comm` builds when
asked (``mode="mpi"``) or when the environment says the process is one of
several MPI ranks (:func:`world_size_hint`); ``import symref`` never imports it.
"""
from __future__ import annotations

import os

import numpy as np

# Environment variables the common MPI launchers set to the number of ranks
# (MPICH/Intel MPI hydra and Slurm's PMI2, Open MPI, MVAPICH2).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class ShardError(RuntimeError):
    """Raised on the ranks whose own shard succeeded when another rank's failed."""


class SerialComm:
    """The single-process communicator: every collective is a no-op."""

    rank = 0
    size = 1
    local_size = 1

    @property
    def is_root(self) -> bool:
        return True

    def allgatherv(self, local: np.ndarray, counts) -> np.ndarray:
        """Concatenation over ranks of the flat float64 ``local`` (``counts`` per rank)."""
        return np.asarray(local, dtype=np.float64).reshape(-1)

    def bcast(self, obj):
        """``obj`` of rank 0 (pickled) on every rank."""
        return obj

    def bcast_array(self, a: np.ndarray) -> None:
        """Overwrite the float64 array ``a`` in place with rank 0's."""

    def any(self, *flags) -> tuple:
        """Logical OR over ranks of each flag (one collective for all of them)."""
        return tuple(bool(f) for f in flags)

    def allgather_obj(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        return [obj]

    def check_identical(self, x: np.ndarray, what: str = "parameters") -> float:
        """``RuntimeError`` unless ``x`` is bitwise the same on every rank; returns
        max |x − x_rank0| over ranks (0.0)."""
        return 0.0

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1):
        raise SystemExit(code)


SERIAL = SerialComm()


class MpiComm(SerialComm):
    """mpi4py's ``COMM_WORLD`` (or ``comm``) behind the :class:`SerialComm` interface."""

    def __init__(self, comm=None):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # ranks sharing this node's memory
        self.local_size = node.Get_size()
        node.Free()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allgatherv(self, local, counts):
        local = np.ascontiguousarray(local, dtype=np.float64).reshape(-1)
        counts = np.asarray(counts, dtype=np.int64)
        if local.size != counts[self.rank]:
            raise ValueError(f"rank {self.rank}: {local.size} values, expected {counts[self.rank]}")
        out = np.empty(int(counts.sum()))
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.comm.Allgatherv(local, [out, counts.tolist(), displs.tolist(), self._MPI.DOUBLE])
        return out

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def bcast_array(self, a):
        buf = np.ascontiguousarray(a, dtype=np.float64).copy()
        self.comm.Bcast(buf, root=0)
        a[...] = buf.reshape(a.shape)

    def any(self, *flags):
        f = np.array([1 if x else 0 for x in flags], dtype=np.int32)
        out = np.empty_like(f)
        self.comm.Allreduce(f, out, op=self._MPI.MAX)
        return tuple(bool(v) for v in out)

    def allgather_obj(self, obj):
        return self.comm.allgather(obj)

    def check_identical(self, x, what="parameters"):
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
        ref = x.copy()
        self.comm.Bcast(ref, root=0)
        diff = np.array([float(np.count_nonzero(x.view(np.int64) != ref.view(np.int64))),
                         float(np.max(np.abs(x - ref), initial=0.0))])
        tot = np.empty_like(diff)
        self.comm.Allreduce(diff, tot, op=self._MPI.MAX)
        if tot[0]:
            raise RuntimeError(f"{what} differ across the {self.size} MPI ranks: up to "
                               f"{int(tot[0])} entries, max |x - x_rank0| = {tot[1]:.3e}")
        return float(tot[1])

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        self.comm.Abort(code)


def mpiexec_path() -> str | None:
    """The ``mpiexec`` to launch ranks with: the one beside this Python first (the
    ``mpich`` wheel installs it there, matching the wheel's libmpi that mpi4py and
    LAMMPS load), else the first on ``PATH``; None when there is none."""
    import shutil
    import sys
    from pathlib import Path

    return shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))


def world_size_hint(environ=None) -> int:
    """Number of MPI ranks the launcher announced in the environment (1 if none)."""
    env = os.environ if environ is None else environ
    for var in SIZE_VARIABLES:
        try:
            n = int(env.get(var, ""))
        except ValueError:
            continue
        if n > 0:
            return n
    return 1


def get_comm(mode: str = "auto"):
    """The communicator for this process.

    ``"serial"``: :data:`SERIAL`.  ``"mpi"``: mpi4py's world (``ImportError``
    without mpi4py).  ``"auto"``: mpi4py's world when the launcher announced
    more than one rank (:func:`world_size_hint`; ``ImportError`` saying so
    without mpi4py, rather than K independent runs writing the same files),
    else :data:`SERIAL` without importing mpi4py.  A world of one rank is
    always :data:`SERIAL`.
    """
    if mode not in ("auto", "mpi", "serial"):
        raise ValueError(f"mode must be 'auto', 'mpi' or 'serial', got {mode!r}")
    if mode == "serial" or (mode == "auto" and world_size_hint() <= 1):
        return SERIAL
    try:
        comm = MpiComm()
    except ImportError as e:
        why = (f"launched as one of {world_size_hint()} MPI ranks" if mode == "auto"
               else "MPI was asked for")
        raise ImportError(f"{why} but mpi4py cannot be imported ({e}): "
                          "pip install 'symref[mpi]' (mpi4py), or run a single process") from e
    return comm if comm.size > 1 else SERIAL


# ------------------------------------------------------------------ shards and the sum tree
def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``size`` contiguous ranges ``[a, b)`` covering ``[0, n)``, balanced by count:
    each has ``n // size`` items, the last ``n % size`` one more (so that for 2
    ranks the cut is the first split of :func:`tree_sum`'s tree)."""
    if size < 1 or n < 0:
        raise ValueError(f"shard_ranges needs n >= 0 and size >= 1, got {n}, {size}")
    q, r = divmod(n, size)
    out, a = [], 0
    for k in range(size):
        b = a + q + (1 if k >= size - r else 0)
        out.append((a, b))
        a = b
    return out


def tree_nodes(lo: int, hi: int, a: int, b: int) -> list[tuple[int, int]]:
    """The largest nodes of the pairwise tree over ``[lo, hi)`` that lie inside
    ``[a, b)``, left to right; together they cover ``[a, b) ∩ [lo, hi)``."""
    if a >= b or b <= lo or hi <= a or lo >= hi:
        return []
    if a <= lo and hi <= b:
        return [(lo, hi)]
    mid = (lo + hi) // 2
    return tree_nodes(lo, mid, a, b) + tree_nodes(mid, hi, a, b)


def tree_sum(lo: int, hi: int, leaf=None, known=None) -> np.ndarray:
    """Σ_{lo ≤ i < hi} ``leaf(i)`` added in the fixed pairwise tree (node ``[lo, hi)`` =
    node ``[lo, mid)`` + node ``[mid, hi)``, ``mid = (lo + hi) // 2``); sums of
    nodes given in ``known`` (``{(lo, hi): array}``, not modified) are used as
    they are.  The result is the same bits however the nodes were obtained."""
    out, owned = _tree_sum(lo, hi, leaf, known or {})
    return out if owned else out.copy()


def _tree_sum(lo, hi, leaf, known):
    if (lo, hi) in known:
        return known[(lo, hi)], False
    if hi - lo == 1:
        if leaf is None:
            raise KeyError(f"tree node [{lo}, {hi}) is neither known nor computable here")
        return np.asarray(leaf(lo), dtype=np.float64), False  # not ours to add into
    if hi <= lo:
        raise ValueError(f"empty tree node [{lo}, {hi})")
    mid = (lo + hi) // 2
    left, lown = _tree_sum(lo, mid, leaf, known)
    right, rown = _tree_sum(mid, hi, leaf, known)
    if lown:
        left += right
        return left, True
    if rown:
        right += left  # IEEE addition is commutative: the same bits as left + right
        return right, True
    return left + right, True


def sharded_sum(n: int, leaf, width: int, comm=SERIAL) -> np.ndarray:
    """Σ_{i<n} ``leaf(i)`` (float64 vectors of length ``width``) in :func:`tree_sum`'s
    order, each rank calling ``leaf`` only for the items of its shard
    (:func:`shard_ranges`).  Bitwise the same on every rank and for any number
    of ranks.  If ``leaf`` raises on some rank, every rank raises (the failing
    rank its own exception, the others :class:`ShardError` with its message)."""
    if n < 1:
        raise ValueError("sharded_sum of no items")
    if comm.size == 1:
        return tree_sum(0, n, leaf)
    nodes = [tree_nodes(0, n, a, b) for a, b in shard_ranges(n, comm.size)]
    error = None
    try:
        mine = [tree_sum(lo, hi, leaf) for lo, hi in nodes[comm.rank]]
        for v in mine:
            if v.shape != (width,):
                raise ValueError(f"leaf vectors have shape {v.shape}, expected ({width},)")
    except Exception as e:  # noqa: BLE001 - re-raised below, after telling the other ranks
        error = e
    if comm.any(error is not None)[0]:
        msgs = comm.allgather_obj(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        r = next(k for k, m in enumerate(msgs) if m is not None)
        raise ShardError(f"MPI rank {r} failed on its shard of the batch: {msgs[r]}")
    local = np.concatenate(mine) if mine else np.empty(0)
    flat = comm.allgatherv(local, [len(nd) * width for nd in nodes])
    known, k = {}, 0
    for nd in nodes:
        for node in nd:
            known[node] = flat[k * width:(k + 1) * width]
            k += 1
    return tree_sum(0, n, None, known)


def model_arrays(model) -> list[np.ndarray]:
    """The arrays that define ``model``'s outputs: trainable parameters and the
    fitting's bias (:func:`symref.model.params.differentiated`) and statistics (``davg``, ``dstd``,
    ``out_bias``, ``out_std`` where present)."""
    from symref.model.params import differentiated

    out = [a for _, a in differentiated(model)]
    descs = getattr(model.descriptor, "members", [model.descriptor])  # a hybrid: each member
    for owner, name in [(d, k) for d in descs for k in ("davg", "dstd")] + [
            (model, "out_bias"), (model, "out_std")]:
        a = getattr(owner, name, None)
        if isinstance(a, np.ndarray) and a.dtype == np.float64:
            out.append(a)
    return out


def sync_model(model, comm=SERIAL) -> None:
    """Overwrite ``model``'s parameters and statistics (:func:`model_arrays`) in place
    with rank 0's, so that every rank starts from the same bits."""
    if comm.size > 1:
        for a in model_arrays(model):
            comm.bcast_array(a)


def default_threads(comm=SERIAL) -> int:
    """Numba threads per rank when ``NUMBA_NUM_THREADS`` is not set: the cores this
    process may use divided among the ranks on this node (at least 1)."""
    try:
        ncores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        ncores = os.cpu_count() or 1
    return max(1, ncores // max(1, comm.local_size))
