r"""Statistics before training, computed as deepmd-kit 3.2 does for ``se_e2_a`` + ``ener``.

Two sets of numbers are fixed from the training data before the first step
(deepmd-kit: ``model.compute_or_load_stat``, called once by the trainer on a
sample of every training system):

1. the normalisation ``davg``/``dstd`` (ntypes x nnei x 4) of the environment
   rows of the descriptor (:func:`env_stat`), and
2. the per-type atomic energy bias (:func:`energy_bias`), which deepmd-kit 3.x
   stores in the atomic model's ``out_bias`` (``@variables.out_bias[0, :, 0]``,
   symref's ``DeepPot.out_bias``) together with ``out_std``; the fitting's
   ``bias_atom_e`` is *not* touched (it stays 0 in a new model).

:func:`apply_statistics` writes them where deepmd-kit does;
:func:`compute_statistics` does all three for a :class:`~symref.model.deeppot.DeepPot`.

Environment statistics (deepmd-kit: ``EnvMatStatSe`` in
``deepmd/dpmodel/utils/env_mat_stat.py``, re-exported by
``deepmd/pt/utils/env_mat_stat.py``; sums in ``StatItem`` of
``deepmd/utils/env_mat_stat.py``; called from ``DescrptBlockSeA.compute_input_stats``
in ``deepmd/pt/model/descriptor/se_a.py`` and ``DescrptSeA.compute_input_stats``
in ``deepmd/dpmodel/descriptor/se_e2_a.py``)
-------------------------------------------------------------------------------

Each sampled frame's neighbour list is built as for an evaluation (deepmd-kit's
silent truncation to ``sel``; model-level ``pair_exclude_types`` remove pairs
*after* the truncation), and the raw rows :math:`\tilde R` are computed with
``davg = 0``, ``dstd = 1`` (:func:`symref.reference.env.env_mat_forward`):

.. math::

    \tilde R_{ij} = w(r)\Big(\frac{1}{r+p},\ \frac{x}{(r+p)^2},\ \frac{y}{(r+p)^2},\
                              \frac{z}{(r+p)^2}\Big)
    \quad [\text{Å}^{-1}]

with ``p`` = ``env_protection``.  Padded slots, pairs of descriptor
``exclude_types`` and pairs of model ``pair_exclude_types`` have
:math:`\tilde R = 0` **and are counted**: every atom contributes all its
:math:`n_{nei} = \sum_t sel_t` slots.  For centre type t, over all sampled
frames f and atoms i of type t (:math:`n_t` of them in all):

.. math::

    N^r_t = n_t\, n_{nei},\quad S^r_t = \sum_{f,i,j} \tilde R_{ij,0},\quad
    Q^r_t = \sum \tilde R_{ij,0}^2

    N^a_t = 3\, n_t\, n_{nei},\quad S^a_t = \sum_{f,i,j}\sum_{c=1}^{3} \tilde R_{ij,c},\quad
    Q^a_t = \sum\sum_c \tilde R_{ij,c}^2

(the three direction components are pooled: one mean and one spread for x, y, z).  Then

.. math::

    \mathrm{davg}[t, j] = (S^r_t / N^r_t,\ 0,\ 0,\ 0),\qquad
    \mathrm{dstd}[t, j] = (\sigma^r_t,\ \sigma^a_t,\ \sigma^a_t,\ \sigma^a_t)
    \quad\text{for every slot } j,

    \sigma = \max\Big(\sqrt{\max(Q/N - (S/N)^2,\ 0)},\ 10^{-2}\Big)\ \text{Å}^{-1}

(``StatItem.compute_std``: the one-pass population variance, clipped at 0,
then the protection 1e-2 for a tiny spread); a type with no atoms in the
sample (N = 0) gets ``davg`` 0 and ``dstd`` 0.1 (``compute_avg(default=0)``,
``compute_std(default=1e-1)``).  The angular mean is *not* subtracted
(``davg[..., 1:] = 0``), but it does enter :math:`\sigma^a`.  With the
descriptor's ``set_davg_zero`` the computed mean is not written (deepmd-kit
keeps the descriptor's current ``davg``, zero for a new model); ``dstd`` is
always written.  The values are the same for every slot, whatever its type
group, which is the structure symref's fast path needs.  The model's
``data_stat_protect`` (1e-2) is *not* used here (deepmd-kit passes it only to
the fitting's ``fparam``/``aparam`` statistics); the 1e-2 above is
``EnvMatStatSe``'s own default.

Energy bias (deepmd-kit: ``BaseAtomicModel.compute_or_load_out_stat`` ->
``change_out_bias(..., "set-by-statistic")`` in
``deepmd/pt/model/atomic_model/base_atomic_model.py`` -> ``compute_output_stats`` /
``_compute_output_stats_global`` in ``deepmd/pt/utils/stat.py`` ->
``compute_stats_from_redu`` in ``deepmd/utils/out_stat.py``)
-------------------------------------------------------------------------------

With :math:`n_{ft}` the number of atoms of type t in frame f (columns of
``atom_exclude_types`` set to 0) and :math:`E_f` the frame energies (eV) of all
sampled frames of all systems that have energies (systems without energy
labels are skipped, as deepmd-kit skips systems with ``find_energy = 0``):

.. math::

    b = \operatorname{lstsq}(n, E, \mathrm{rcond}) \ [\text{eV/atom}],\qquad
    \mathrm{out\_std}_t = \operatorname{std}_f\big(E_f - \textstyle\sum_t n_{ft} b_t\big)
    \ [\text{eV}]

``numpy.linalg.lstsq`` (SVD, minimum-norm solution when the compositions do
not determine every type, e.g. one water composition gives b_H = 2 b_O;
excluded and absent types get 0); the std is the population std (ddof 0) of
the residuals, the same value for every type.  ``rcond``: deepmd-kit's
atomic model is built with ``rcond=None`` (numpy's default cut
``eps * max(nframes, ntypes)``); the ``fitting_net.rcond`` input key is stored
on the fitting but not passed on by the pt/dp backends.  ``preset_out_bias``
(``preset_bias`` here) fixes some types: their atoms' energies are subtracted
first and their columns zeroed before the regression.

Which frames (deepmd-kit: ``make_stat_input`` in ``deepmd/pt/utils/stat.py``,
``DpLoaderSet`` in ``deepmd/pt/utils/dataloader.py``)
-------------------------------------------------------------------------------

The trainer takes ``min(data_stat_nbatch, nbatches)`` batches (default
``model.data_stat_nbatch = 10``) from each training system's data loader,
i.e. ``min(nframes, data_stat_nbatch * batch_size)`` distinct frames, where
``batch_size = "auto"`` (the default) means ``ceil(32 / natoms)`` frames.  The
loaders shuffle (``dp --pt train`` builds them with ``shuffle=True``), so *which*
frames is random: torch's global generator, seeded from ``training.seed``
(``deepmd.pt.utils.dataloader.setup_seed``), draws the permutation; with
``shuffle=False`` they are the first ones.  :func:`stat_frames` selects the same
number of frames: the first ones, or a seeded random subset.  ``symref train`` takes
the first ones unless told ``symref train --stat-frames random`` (then a
subset drawn with ``numpy.random.default_rng(training.seed)``: deepmd-kit's rule, not
its frames).  Why not random by default: torch's permutation cannot be reproduced
without torch, so no choice reproduces deepmd-kit's subset, and the first frames keep
the statistics a function of the data alone (a different ``training.seed`` then
changes the order of the training batches only, as the issue-25 seed rule wants).
When the sample covers every frame of a system (``nframes <= data_stat_nbatch x
batch_size``), both rules take the same frames as deepmd-kit and the statistics are
its own (``tests/test_train_vs_dp.py``: davg, dstd and the energy bias of a
``dp --pt train`` run).  :func:`env_stat` and :func:`energy_bias` use every frame they
are given.

Systems (all functions): a :class:`symref.io.data.System`, a path of a deepmd-kit
npy system, or a list of them.  When a ``type_map`` is known (the model's) and
a system carries its own, its types are re-indexed by element name
(:func:`symref.io.data.map_types`, as deepmd-kit's ``DeepmdData`` does);
otherwise atom types must already be the model's indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from symref.io.data import System, load_system, map_types, select_frames
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3
from symref.reference.env import env_mat_forward
from symref.reference.neighbors import type_pair_table
from symref.model.base import SeE2AModel, normalize_inputs

#: deepmd-kit's default ``model.data_stat_nbatch``
DATA_STAT_NBATCH = 10
#: ``training.batch_size = "auto"``: ``ceil(32 / natoms)`` frames per batch
AUTO_BATCH_ATOMS = 32
#: ``StatItem.compute_std``: smallest std (protection) and the value for a type never seen
STD_PROTECTION = 1e-2
STD_DEFAULT = 1e-1
#: ``StatItem.compute_avg``: mean of a type never seen
AVG_DEFAULT = 0.0

__all__ = ["EnergyBias", "EnvStatSums", "env_stat", "env_stat_sums", "energy_bias",
           "apply_statistics", "compute_statistics", "stat_batch_size", "stat_frames",
           "DATA_STAT_NBATCH", "STD_PROTECTION", "STD_DEFAULT"]


# ----------------------------------------------------------------------------- inputs
def _as_systems(systems, type_map=None) -> list[System]:
    """A list of :class:`System` (types mapped onto ``type_map`` by name when both are known)."""
    if systems is None:
        raise ValueError("no systems given (got None)")
    if isinstance(systems, (System, str, Path)):
        systems = [systems]
    try:
        systems = list(systems)
    except TypeError:
        raise TypeError(f"systems must be a System, a path or a list of them, "
                        f"got {type(systems).__name__}") from None
    if not systems:
        raise ValueError("no systems given: statistics need at least one frame")
    out = []
    for k, s in enumerate(systems):
        if isinstance(s, (str, Path)):
            s = load_system(s)
        if not isinstance(s, System):
            raise TypeError(f"systems[{k}] must be a symref.io.data.System or a path, "
                            f"got {type(s).__name__}")
        if s.coord is None or np.asarray(s.coord).ndim != 3 or np.asarray(s.coord).shape[0] == 0:
            shape = None if s.coord is None else np.asarray(s.coord).shape
            raise ValueError(f"{_name(s, k)}: no frames (coord shape {shape}, "
                             f"expected (nframes >= 1, natoms, 3))")
        if type_map is not None and s.type_map is not None:
            s = map_types(s, list(type_map))
        out.append(s)
    return out


def _name(s: System, k: int) -> str:
    return f"system {k}" + (f" ({s.name})" if s.name else "")


def _frames(s: System, k: int, ntypes: int):
    """Validated ``coord`` (nf, natoms, 3), ``atype`` (nf, natoms), ``box`` (nf, 3, 3) or None."""
    try:
        return normalize_inputs(s.coord, s.atype, s.box, ntypes)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{_name(s, k)}: {exc}") from None


# ----------------------------------------------------------------------------- frames
def stat_batch_size(natoms: int, batch_size="auto") -> int:
    """Frames per batch for ``natoms`` atoms under deepmd-kit's ``training.batch_size``.

    ``"auto"`` = ``"auto:32"``; ``"auto:N"``: ``ceil(N / natoms)``; ``"max:N"``
    and ``"filter:N"``: ``max(N // natoms, 1)``; an int: itself
    (``DpLoaderSet.__init__``).
    """
    if natoms < 1:
        raise ValueError(f"natoms must be >= 1, got {natoms}")
    if isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    if not isinstance(batch_size, str):
        raise TypeError(f"batch_size must be an int or a deepmd-kit rule string, "
                        f"got {batch_size!r}")
    rule, _, num = batch_size.partition(":")
    if rule == "auto" and not num:
        num = str(AUTO_BATCH_ATOMS)
    if rule not in ("auto", "max", "filter") or not num.isdigit() or int(num) < 1:
        raise ValueError(f"unsupported batch_size rule {batch_size!r} "
                         f"(expected an int, 'auto', 'auto:N', 'max:N' or 'filter:N')")
    n = int(num)
    if rule == "auto":
        return -(-n // natoms)
    return max(n // natoms, 1)


def stat_frames(systems, data_stat_nbatch: int = DATA_STAT_NBATCH, batch_size="auto",
                seed: int | None = None) -> list[System]:
    """The frames deepmd-kit's trainer samples for its statistics, one System per system.

    ``min(nframes, data_stat_nbatch * stat_batch_size(natoms, batch_size))``
    frames of each system: the first ones when ``seed`` is None (deepmd-kit
    with ``shuffle=False``), else a random subset drawn with
    ``numpy.random.default_rng(seed)`` (deepmd-kit shuffles with torch's global
    generator, so its subset cannot be reproduced; only the count is the
    same).  ``batch_size="filter:N"`` drops systems with more than N atoms, as
    deepmd-kit does.  ``batch_size`` may also be a list (one int per system).
    """
    if isinstance(data_stat_nbatch, bool) or not isinstance(data_stat_nbatch, (int, np.integer)) \
            or data_stat_nbatch < 1:
        raise ValueError(f"data_stat_nbatch must be an int >= 1, got {data_stat_nbatch!r}")
    systems = _as_systems(systems)
    if isinstance(batch_size, (list, tuple)):
        if len(batch_size) != len(systems):
            raise ValueError(f"batch_size list has {len(batch_size)} entries for "
                             f"{len(systems)} systems")
        sizes = list(batch_size)
    else:
        sizes = [batch_size] * len(systems)
    rng = None if seed is None else np.random.default_rng(seed)
    out = []
    for s, bs in zip(systems, sizes):
        if isinstance(bs, str) and bs.startswith("filter:") and bs[7:].isdigit() \
                and s.natoms > int(bs[7:]):
            continue
        n = min(s.nframes, int(data_stat_nbatch) * stat_batch_size(s.natoms, bs))
        frames = np.arange(n) if rng is None else np.sort(rng.permutation(s.nframes)[:n])
        out.append(select_frames(s, frames))
    if not out:
        raise ValueError(f"no system left: every system has more atoms than {batch_size!r} allows")
    return out


# ----------------------------------------------------------------------------- env stats
@dataclass
class EnvStatSums:
    """Sums of the raw environment rows per centre type (deepmd-kit's ``StatItem``s).

    Column 0 is deepmd-kit's ``r_{t}`` item (radial component), column 1 its
    ``a_{t}`` item (the three direction components pooled).  ``number``
    counts every slot (padded ones included); ``sum`` in Å⁻¹, ``squared_sum``
    in Å⁻².  Sums of disjoint samples add (``+``).
    """

    number: np.ndarray  # ntypes x 2
    sum: np.ndarray  # ntypes x 2
    squared_sum: np.ndarray  # ntypes x 2

    @classmethod
    def zeros(cls, ntypes: int) -> EnvStatSums:
        return cls(np.zeros((ntypes, 2)), np.zeros((ntypes, 2)), np.zeros((ntypes, 2)))

    def __add__(self, other: EnvStatSums) -> EnvStatSums:
        return EnvStatSums(self.number + other.number, self.sum + other.sum,
                           self.squared_sum + other.squared_sum)

    def mean(self) -> np.ndarray:
        """ntypes x 2: S/N, or 0 where N = 0."""
        n = np.where(self.number > 0, self.number, 1.0)
        return np.where(self.number > 0, self.sum / n, AVG_DEFAULT)

    def std(self) -> np.ndarray:
        """ntypes x 2: max(sqrt(max(Q/N - (S/N)², 0)), 1e-2), or 0.1 where N = 0."""
        n = np.where(self.number > 0, self.number, 1.0)
        mean = self.sum / n
        val = np.sqrt(np.clip(self.squared_sum / n - mean * mean, 0.0, None))
        val = np.where(np.abs(val) < STD_PROTECTION, STD_PROTECTION, val)
        return np.where(self.number > 0, val, STD_DEFAULT)

    def davg_dstd(self, nnei: int, set_davg_zero: bool = False, ncol: int = 4):
        """``(davg, dstd)``, each ntypes x nnei x 4, laid out as ``EnvMatStatSe.__call__``;
        ``ncol=1`` (radial-only ``se_e2_r``, deepmd-kit's ``last_dim == 1``): the radial
        column alone, ntypes x nnei x 1."""
        if ncol not in (1, 4):
            raise ValueError(f"ncol must be 4 (se_e2_a) or 1 (se_e2_r), got {ncol}")
        ntypes = self.number.shape[0]
        mean, std = self.mean(), self.std()
        davg = np.zeros((ntypes, nnei, 4))
        if not set_davg_zero:
            davg[:, :, 0] = mean[:, 0, None]
        dstd = np.empty((ntypes, nnei, 4))
        dstd[:, :, 0] = std[:, 0, None]
        dstd[:, :, 1:] = std[:, 1, None, None]
        return davg[..., :ncol].copy(), dstd[..., :ncol].copy()

    def as_deepmd(self) -> dict[str, np.ndarray]:
        """deepmd-kit's stat-file items: ``{"r_t"/"a_t": [number, sum, squared_sum]}``."""
        out = {}
        for t in range(self.number.shape[0]):
            for c, key in enumerate(("r", "a")):
                out[f"{key}_{t}"] = np.array([self.number[t, c], self.sum[t, c],
                                              self.squared_sum[t, c]])
        return out


def _unpack_model(model_or_descriptor):
    if isinstance(model_or_descriptor, SeE2AModel):  # DeepPot or DeepTensor
        m = model_or_descriptor
        return m.descriptor, list(m.pair_exclude_types), list(m.type_map)
    if isinstance(model_or_descriptor, (SeE2A, SeE2R, SeE3, Hybrid)):
        return model_or_descriptor, [], None
    raise TypeError(f"expected a symref DeepPot or SeE2A/SeE2R/SeE3/Hybrid descriptor, "
                    f"got {type(model_or_descriptor).__name__}")


def _pairs(coord, atype, box, desc: SeE2A, truncate: bool, backend: str, frame: int):
    """Real neighbour pairs of one frame: (centre index, neighbour atom index, r_ji)."""
    if backend == "numba":
        from symref.fast.kernels.neighbors import build_pair_list

        pl = build_pair_list(coord, atype, box, desc.rcut, desc.sel, truncate=truncate, frame=frame)
        return pl.centre, pl.j, pl.rij
    from symref.reference.neighbors import build_neighbor_list

    nl = build_neighbor_list(coord, atype, box, desc.rcut, desc.sel, truncate=truncate, frame=frame)
    centre, slot = np.nonzero(nl.mask)
    return centre, nl.nlist[centre, slot], nl.rij[centre, slot]


def env_stat_sums(model_or_descriptor, systems, *, type_map=None, pair_exclude_types=None,
                  truncate: bool = True, backend: str = "numba") -> EnvStatSums:
    """The per-type sums behind :func:`env_stat` (see the module docstring).

    Same arguments as :func:`env_stat`.  One frame at a time, so memory stays
    O(natoms · nnei) whatever the number of frames.
    """
    if backend not in ("numba", "numpy"):
        raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    desc, model_pairs, model_type_map = _unpack_model(model_or_descriptor)
    if pair_exclude_types is None:
        pair_exclude_types = model_pairs
    if type_map is None:
        type_map = model_type_map
    ntypes, nnei = desc.ntypes, desc.nnei
    if type_map is not None and len(type_map) != ntypes:
        raise ValueError(f"type_map {list(type_map)} has {len(type_map)} types but the "
                         f"descriptor has {ntypes} (len(sel))")
    excluded = type_pair_table(ntypes, list(desc.exclude_types)
                               + [tuple(p) for p in pair_exclude_types])  # (centre, neighbour type)
    total = EnvStatSums.zeros(ntypes)
    for k, s in enumerate(_as_systems(systems, type_map)):
        coord, atype, box = _frames(s, k, ntypes)
        for f in range(coord.shape[0]):
            where = f"{_name(s, k)}, frame {f}: "
            try:
                ci, cj, rij = _pairs(coord[f], atype[f], None if box is None else box[f], desc,
                                     truncate, backend, f)
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None
            ti, tj = atype[f][ci], atype[f][cj]
            keep = ~excluded[ti, tj]
            ti, rij = ti[keep], rij[keep]
            raw, _ = env_mat_forward(rij[None], np.ones((1, len(ti)), dtype=bool), 0.0, 1.0,
                                     desc.rcut, desc.rcut_smth, desc.env_protection)
            raw = raw[0]  # npairs x 4, Å⁻¹
            nt = np.bincount(atype[f], minlength=ntypes).astype(np.float64)  # atoms per type
            s_r = np.bincount(ti, weights=raw[:, 0], minlength=ntypes)
            q_r = np.bincount(ti, weights=raw[:, 0] ** 2, minlength=ntypes)
            s_a = np.bincount(ti, weights=raw[:, 1:].sum(axis=1), minlength=ntypes)
            q_a = np.bincount(ti, weights=(raw[:, 1:] ** 2).sum(axis=1), minlength=ntypes)
            total = total + EnvStatSums(
                number=np.stack([nt * nnei, 3.0 * nt * nnei], axis=1),
                sum=np.stack([s_r, s_a], axis=1),
                squared_sum=np.stack([q_r, q_a], axis=1))
    return total


def env_stat(model_or_descriptor, systems, *, type_map=None, pair_exclude_types=None,
             set_davg_zero: bool | None = None, truncate: bool = True, backend: str = "numba",
             return_sums: bool = False):
    """``(davg, dstd)``, each ntypes x nnei x 4 (Å⁻¹), of the se_e2_a environment rows
    (ntypes x nnei x 1 for an se_e2_r descriptor: the radial column, as deepmd-kit's
    ``EnvMatStatSe`` with ``last_dim == 1``; the same numbers as se_e2_a's column 0).

    Mirrors deepmd-kit 3.2's ``EnvMatStatSe`` + ``DescrptSeA.compute_input_stats``
    (formulas in the module docstring) on every frame of ``systems``; use
    :func:`stat_frames` first to take the frames deepmd-kit's trainer would.

    Parameters
    ----------
    model_or_descriptor : :class:`~symref.model.deeppot.DeepPot` (its descriptor,
        ``pair_exclude_types`` and ``type_map`` are used) or
        :class:`~symref.reference.descriptor.se_e2_a.SeE2A`.
    systems : System, path or list of them; types are mapped onto ``type_map``
        by name when the system has its own type map.
    type_map : overrides the model's (default: the model's; None for a bare descriptor).
    pair_exclude_types : model-level excluded type pairs (default: the model's;
        none for a bare descriptor).  The descriptor's ``exclude_types`` always apply.
    set_davg_zero : return ``davg = 0`` (default: the descriptor's flag).
    truncate : keep only the nearest ``sel`` neighbours, as deepmd-kit does
        silently (default); False raises when ``sel`` is exceeded.
    backend : "numba" (O(N) cell-list search) or "numpy" (reference search).
    return_sums : also return the :class:`EnvStatSums`.

    A :class:`~symref.reference.descriptor.hybrid.Hybrid`: lists, one entry per member,
    each computed as for that member alone (its own rcut, sel and exclusions), as
    deepmd-kit's ``DescrptHybrid.compute_input_stats`` does.
    """
    desc, pairs, tmap = _unpack_model(model_or_descriptor)
    if isinstance(desc, Hybrid):  # deepmd-kit: every member computes its own, on its own nlist
        outs = [env_stat(m, systems, type_map=tmap if type_map is None else type_map,
                         pair_exclude_types=pairs if pair_exclude_types is None
                         else pair_exclude_types, set_davg_zero=set_davg_zero,
                         truncate=truncate, backend=backend, return_sums=return_sums)
                for m in desc.members]
        return tuple(list(x) for x in zip(*outs))
    sums = env_stat_sums(model_or_descriptor, systems, type_map=type_map,
                         pair_exclude_types=pair_exclude_types, truncate=truncate,
                         backend=backend)
    if set_davg_zero is None:
        set_davg_zero = desc.set_davg_zero
    davg, dstd = sums.davg_dstd(desc.nnei, bool(set_davg_zero),
                                ncol=1 if isinstance(desc, SeE2R) else 4)
    return (davg, dstd, sums) if return_sums else (davg, dstd)


# ----------------------------------------------------------------------------- energy bias
class EnergyBias(NamedTuple):
    """Result of :func:`energy_bias`: unpacks as ``bias, std``; pass it whole as the
    ``bias`` of :func:`apply_statistics` to write both."""

    bias: np.ndarray  # ntypes, eV/atom: deepmd-kit's out_bias[0, :, 0]
    std: np.ndarray  # ntypes, eV: deepmd-kit's out_std[0, :, 0] (one value repeated)


def energy_bias(systems, ntypes: int, type_map=None, rcond: float | None = None, *,
                atom_exclude_types=(), preset_bias=None):
    """Per-type atomic energy bias by least squares: ``EnergyBias(bias, std)``, each (ntypes,).

    Mirrors deepmd-kit 3.2's ``compute_output_stats`` -> ``compute_stats_from_redu``
    for the ``ener`` model (module docstring): ``out_bias`` (eV/atom) solves
    ``min ||n b - E||`` over all frames with energies (minimum-norm
    ``numpy.linalg.lstsq`` with ``rcond``; deepmd-kit's default is None);
    ``out_std`` (eV) is the population std of the residuals, the same for every type.
    deepmd-kit puts both in the atomic model's ``out_bias``/``out_std``
    (see :func:`apply_statistics`, which takes the result as is).

    Parameters
    ----------
    systems : System, path or list of them.  Systems without energies are
        skipped, as deepmd-kit does; ``ValueError`` if none has energies.
    ntypes : number of model types.
    type_map : the model's type names; systems with their own type map are re-indexed by name.
    rcond : see ``numpy.linalg.lstsq``.
    atom_exclude_types : the model's ``atom_exclude_types``: their atoms are not counted.
    preset_bias : deepmd-kit's ``preset_out_bias["energy"]``: a list of ntypes
        values (eV/atom), None for the types to fit.
    """
    if isinstance(ntypes, bool) or not isinstance(ntypes, (int, np.integer)) or ntypes < 1:
        raise ValueError(f"ntypes must be an int >= 1, got {ntypes!r}")
    ntypes = int(ntypes)
    if type_map is not None and len(type_map) != ntypes:
        raise ValueError(f"type_map {list(type_map)} has {len(type_map)} types, ntypes is {ntypes}")
    systems = _as_systems(systems, type_map)
    counts, energies = [], []
    for k, s in enumerate(systems):
        _, atype, _ = _frames(s, k, ntypes)
        if s.energy is None:
            continue
        e = np.asarray(s.energy, dtype=np.float64)
        if e.size != s.nframes:
            raise ValueError(f"{_name(s, k)}: energy has {e.size} values for {s.nframes} frames")
        e = e.reshape(s.nframes, 1)
        if not np.isfinite(e).all():
            f = int(np.argmax(~np.isfinite(e[:, 0])))
            raise ValueError(f"{_name(s, k)}: energy of frame {f} is not finite ({e[f, 0]})")
        counts.append((atype[:, :, None] == np.arange(ntypes)).sum(axis=1))  # nf x ntypes
        energies.append(e)
    if not energies:
        raise ValueError(f"none of the {len(systems)} system(s) has energies: the energy bias "
                         f"needs frame energies (energy.npy)")
    natoms = np.concatenate(counts).astype(np.float64)  # nframes x ntypes
    energy = np.concatenate(energies)  # nframes x 1, eV
    for t in atom_exclude_types:
        if not 0 <= t < ntypes:
            raise ValueError(f"atom_exclude_types entry {t} is outside 0..{ntypes - 1}")
        natoms[:, t] = 0.0
    fixed = np.zeros(ntypes, dtype=bool)
    fixed_val = np.zeros(ntypes)
    if preset_bias is not None:
        if len(preset_bias) != ntypes:
            raise ValueError(f"preset_bias has {len(preset_bias)} entries, "
                             f"expected ntypes = {ntypes}")
        for t, v in enumerate(preset_bias):
            if v is not None:
                v = np.asarray(v, dtype=np.float64).reshape(-1)
                if v.size != 1 or not np.isfinite(v[0]):
                    raise ValueError(f"preset_bias[{t}] must be one finite number, "
                                     f"got {preset_bias[t]!r}")
                fixed[t], fixed_val[t] = True, v[0]
        if fixed.any():
            energy = energy - np.einsum("ij,jk->ik", natoms[:, fixed], fixed_val[fixed, None])
            natoms[:, fixed] = 0.0
    bias, *_ = np.linalg.lstsq(natoms, energy, rcond=rcond)  # ntypes x 1
    bias[fixed, 0] = fixed_val[fixed]
    resid = energy - np.einsum("ij,jk->ik", natoms, bias)  # nframes x 1
    std = np.full(ntypes, resid.std(axis=0)[0])
    return EnergyBias(bias[:, 0].copy(), std)


# ----------------------------------------------------------------------------- apply
def apply_statistics(model: SeE2AModel, davg=None, dstd=None, bias=None,
                     std=None) -> SeE2AModel:
    """Write statistics into ``model`` (in place) where deepmd-kit 3.2 puts them; returns it.

    ``dstd`` -> ``model.descriptor.dstd``; ``davg`` -> ``model.descriptor.davg``
    unless the descriptor has ``set_davg_zero`` (then, as in deepmd-kit, the
    current ``davg`` is kept); ``bias`` -> ``model.out_bias`` and ``std`` ->
    ``model.out_std`` (deepmd-kit's atomic-model ``out_bias``/``out_std``; the
    fitting's ``bias_atom_e`` is left alone).  ``bias`` may be the
    :class:`EnergyBias` returned by :func:`energy_bias`: then its ``std`` is
    written too (unless ``std`` is given).  Arrays keep the model's dtype.
    Any argument left None is not written.  ``davg``/``dstd`` must be
    ntypes x nnei x 4 (x 1 for se_e2_r; a hybrid: lists, one per member);
    ``bias``/``std`` may be (ntypes,), (ntypes, 1) or
    deepmd-kit's (1, ntypes, 1).
    """
    if not isinstance(model, SeE2AModel):
        raise TypeError(f"model must be a symref DeepPot, got {type(model).__name__}")
    if isinstance(bias, EnergyBias):
        bias, std = bias.bias, (bias.std if std is None else std)

    def check(name, a, shape, exact):
        a = np.asarray(a, dtype=np.float64)
        if (a.shape != shape) if exact else (a.size != int(np.prod(shape))):
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        a = a.reshape(shape)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} is not finite")
        return a

    members = getattr(model.descriptor, "members", None)  # a hybrid: lists, one per member
    descs = members or [model.descriptor]
    davgs = [None] * len(descs) if davg is None else (davg if members else [davg])
    dstds = [None] * len(descs) if dstd is None else (dstd if members else [dstd])
    if len(davgs) != len(descs) or len(dstds) != len(descs):
        raise ValueError(f"the hybrid descriptor has {len(descs)} members: davg and dstd must "
                         "be lists of as many arrays")
    for k, (d, davg, dstd) in enumerate(zip(descs, davgs, dstds)):
        name = f"descriptor.list[{k}]." if members else ""
        shape = (d.ntypes, d.nnei, np.shape(d.davg)[-1])  # 4, or 1 for se_e2_r
        davgs[k] = None if davg is None else check(f"{name}davg", davg, shape, True)
        dstds[k] = None if dstd is None else check(f"{name}dstd", dstd, shape, True)
        if dstd is not None and (dstds[k] <= 0).any():
            raise ValueError(f"{name}dstd must be positive")
    if bias is not None:
        bias = check("bias", bias, (model.ntypes,), False)
    if std is not None:
        std = check("std", std, (model.ntypes,), False)
    for d, davg, dstd in zip(descs, davgs, dstds):
        if davg is not None and not d.set_davg_zero:
            d.davg = davg.astype(np.asarray(d.davg).dtype)
        if dstd is not None:
            d.dstd = dstd.astype(np.asarray(d.dstd).dtype)
    if bias is not None:
        model.out_bias = bias.astype(np.asarray(model.out_bias).dtype)
    if std is not None:
        model.out_std = std.astype(np.asarray(model.out_std).dtype)
    return model


def compute_statistics(model: SeE2AModel, systems, *, apply: bool = True, truncate: bool = True,
                       rcond: float | None = None, preset_bias=None,
                       backend: str = "numba") -> dict:
    """deepmd-kit's ``model.compute_or_load_stat`` for a symref model, on every frame given.

    Environment statistics (:func:`env_stat`) from all systems; the energy bias
    (:func:`energy_bias`, with the model's ``atom_exclude_types``) from those
    with energies; ``ValueError`` when none has (deepmd-kit raises too).
    With ``apply`` the results are
    written by :func:`apply_statistics`.  Returns ``{"davg", "dstd",
    "out_bias", "out_std"}``.
    """
    if not isinstance(model, SeE2AModel):
        raise TypeError(f"model must be a symref DeepPot, got {type(model).__name__}")
    systems = _as_systems(systems, model.type_map)
    davg, dstd = env_stat(model, systems, truncate=truncate, backend=backend)
    bias, std = energy_bias(systems, model.ntypes, model.type_map, rcond,
                            atom_exclude_types=model.atom_exclude_types, preset_bias=preset_bias)
    if apply:
        apply_statistics(model, davg, dstd, bias, std)
    return {"davg": davg, "dstd": dstd, "out_bias": bias, "out_std": std}


def tensor_shift(model, systems) -> np.ndarray:
    r"""The polarizability model's ``out_bias`` (ntypes x 9) for ``shift_diag``.

    Per selected type t, the isotropic part :math:`b_t` of the polarizability
    by least squares over every label available: an atomic label gives
    :math:`b_t \approx \operatorname{tr}\alpha_i/3` for each atom of type t, a
    global label :math:`\sum_t n_t b_t \approx \operatorname{tr}\alpha/3`.  The
    model adds :math:`\bar b_t s_t I` with :math:`\bar b_t` the mean of the
    diagonal of ``out_bias[t]`` and :math:`s_t` the fitting's ``scale``
    (deepmd-kit's rule), so ``out_bias[t] = (b_t/s_t) I``.  Types outside the
    selection get 0.
    """
    nt = model.ntypes
    sel = np.array([t not in model.atom_exclude_types for t in range(nt)])
    rows, rhs = [], []
    for s in _as_systems(systems, model.type_map):
        tens = s.tensors
        if "atom_polarizability" in tens:
            from symref.io.data import atomic_labels

            a = atomic_labels(s, "atom_polarizability", np.nonzero(sel)[0])  # nf x natoms x 3 x 3
            keep = sel[s.atype]  # natoms
            rows.append(np.tile(np.eye(nt)[s.atype[keep]], (s.nframes, 1)))  # one row per atom
            rhs.append((np.trace(a, axis1=2, axis2=3)[:, keep] / 3.0).ravel())
        elif "polarizability" in tens:
            counts = (np.bincount(s.atype, minlength=nt) * sel).astype(float)
            rows.append(np.tile(counts, (s.nframes, 1)))
            rhs.append(np.trace(tens["polarizability"], axis1=1, axis2=2) / 3.0)
    if not rows:
        raise ValueError("no polarizability labels to compute the diagonal shift from")
    A = np.concatenate(rows)[:, sel]
    b = np.zeros(nt)
    b[sel] = np.linalg.lstsq(A, np.concatenate(rhs), rcond=None)[0]
    scale = np.asarray(model.fitting.scale, dtype=np.float64)
    out = (b / np.where(scale != 0, scale, 1.0))[:, None] * np.eye(3).reshape(1, 9)
    return out


def change_bias(model, systems, mode: str = "change", nframes: int = 0,
                rcond: float | None = None):
    """deepmd-kit's ``dp change-bias``: refit ``model.out_bias`` (in place) on ``systems``.

    ``mode="change"``: the least-squares per-type shift of the model's energy errors,
    ``min_δ ||n δ - (E - E_model)||`` over the frames (:func:`energy_bias` on the
    residuals), added to the bias; ``mode="set"``: the bias from the labels alone,
    :func:`energy_bias` as before training.  ``nframes``: the first frames of each
    system (0: all).  Returns ``(old bias, new bias)``.
    """
    from dataclasses import replace

    from symref.io.data import select_frames

    if mode not in ("change", "set"):
        raise ValueError(f"mode must be 'change' or 'set', got {mode!r}")
    if nframes < 0:
        raise ValueError(f"nframes must be >= 0 (0: all frames), got {nframes}")
    systems = _as_systems(systems, model.type_map)
    if nframes:
        systems = [select_frames(s, np.arange(min(nframes, s.nframes))) for s in systems]
    old = np.asarray(model.out_bias, dtype=np.float64).reshape(model.ntypes).copy()
    if mode == "change":
        resid = []
        for s in systems:
            if s.energy is None:
                continue
            pred = model.evaluate(s.coord, s.atype, s.box)["energy"]
            resid.append(replace(s, energy=np.asarray(s.energy) - pred))
        if not resid:
            raise ValueError("change-bias: no system has energy labels")
        delta = energy_bias(resid, model.ntypes, model.type_map, rcond,
                            atom_exclude_types=model.atom_exclude_types).bias
        new = old + np.asarray(delta).reshape(model.ntypes)
    else:
        new = np.asarray(energy_bias(systems, model.ntypes, model.type_map, rcond,
                                     atom_exclude_types=model.atom_exclude_types).bias
                         ).reshape(model.ntypes)
    model.out_bias = np.asarray(new, dtype=np.asarray(model.out_bias).dtype).reshape(
        np.shape(model.out_bias))
    return old, new
