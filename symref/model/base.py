"""What :class:`~symref.model.deeppot.DeepPot` and :class:`~symref.model.tensor.DeepTensor` share.

Both are a descriptor (se_e2_a; a DeepPot also se_e2_r, se_e3 or a hybrid) followed by a
head; up to the descriptor they are the same model.  :class:`SeE2AModel` holds the common fields and the common steps of one
frame, each a thin composition of reference functions:

1. :func:`normalize_inputs`: coordinates, types and cells checked and reshaped;
2. :meth:`SeE2AModel.environment`: neighbour list
   (:func:`symref.reference.neighbors.build_neighbor_list`) less the model's
   ``pair_exclude_types`` (:func:`symref.reference.neighbors.exclude_type_pairs`),
   pair vectors and environment rows (:func:`symref.reference.env.env_mat_forward`);
3. :meth:`SeE2AModel.descriptor_forward`: ``D`` and its cache (the descriptor's forward
   from :func:`symref.reference.descriptor.dispatch.descriptor_ops`, e.g.
   :func:`~symref.reference.descriptor.se_e2_a.se_e2_a_forward`, with the descriptor's
   ``exclude_types`` as :func:`~symref.reference.descriptor.se_e2_a.keep_mask`).

The descriptor is an :class:`~symref.reference.descriptor.se_e2_a.SeE2A` or (energy
models only) an :class:`~symref.reference.descriptor.se_e2_r.SeE2R` or a
:class:`~symref.reference.descriptor.hybrid.Hybrid` of them (then ``R`` and the
environment cache are lists, one per member).

The heads (energy or tensor fitting, forward and backward) are the subclasses' own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.neighbors import build_neighbor_list, exclude_type_pairs

PRECISIONS = {"float64": np.float64, "float32": np.float32, "default": np.float64}


def dtype_of(precision: str):
    """NumPy dtype of a deepmd-kit precision name (``ValueError`` for an unknown one)."""
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}") from None


@dataclass
class SeE2AModel:
    """se_e2_a descriptor + a fitting head + model-level statistics and exclusions.

    ``fitting``: :class:`~symref.reference.fitting.EnergyFitting` (:class:`DeepPot`) or
    :class:`~symref.reference.fitting.TensorFitting` (:class:`DeepTensor`).
    ``out_bias``/``out_std``: deepmd-kit 3.x's model-level output statistics (shape set by
    the head).  ``atom_exclude_types``: types whose atomic outputs are zero;
    ``pair_exclude_types``: type pairs removed from the neighbour list (their slots
    become padding).
    """

    type_map: list[str]
    descriptor: SeE2A | SeE2R | Hybrid
    fitting: object
    out_bias: np.ndarray
    out_std: np.ndarray
    atom_exclude_types: list[int] = field(default_factory=list)
    pair_exclude_types: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ntypes(self) -> int:
        return len(self.type_map)

    @property
    def rcut(self) -> float:
        return self.descriptor.rcut

    @property
    def sel(self) -> list[int]:
        return list(self.descriptor.sel)

    def alive(self, atype) -> np.ndarray:
        """nloc bools: False for atoms of ``atom_exclude_types`` (their outputs are zero)."""
        return ~np.isin(atype, self.atom_exclude_types)

    def environment(self, coord, atype, box, *, dtype=np.float64, truncate=False, frame=None,
                    neighbor_list=build_neighbor_list):
        """Neighbours and environment rows of one frame (reference path).

        Returns ``(nlist, mask, rij, R, env_cache)``: nlist (nloc x nnei, -1 where
        padded or removed by ``pair_exclude_types``), its mask, rij (nloc x nnei x 3,
        zero where padded), R (nloc x nnei x 4) and the cache of
        :func:`symref.reference.env.env_mat_forward`.  ``neighbor_list``: the search (a
        function with :func:`~symref.reference.neighbors.build_neighbor_list`'s signature
        and result; symref.fast.se_e3 passes the O(N) ``build_neighbor_list_fast``).
        """
        desc = self.descriptor
        nl = neighbor_list(coord, atype, box, desc.rcut, desc.sel,
                           truncate=truncate, frame=frame)
        nlist = exclude_type_pairs(nl.nlist, atype, self.ntypes,
                                   self.pair_exclude_types)  # nloc x nnei
        mask = nlist >= 0  # nloc x nnei
        rij = np.where(mask[..., None], nl.rij, 0.0).astype(dtype)  # nloc x nnei x 3
        # env_mat_forward with the descriptor's statistics (a hybrid: a list, one per member)
        R, env_cache = descriptor_ops(desc).env_forward(rij, mask, atype, desc)
        return nlist, mask, rij, R, env_cache

    def descriptor_forward(self, R, atype, nlist):
        """``D`` (nloc x dim_out) of the rows ``R`` (nloc x nnei x 4) and the cache of the
        descriptor's forward (se_e2_a: ``cache[2]`` is T, nloc x M1 x 4); the descriptor's
        ``exclude_types`` zero their rows."""
        desc = self.descriptor
        ops = descriptor_ops(desc)
        return ops.forward(R, atype, ops.keep(desc, atype, nlist), desc)


# ---------------------------------------------------------------- input checks
def normalize_inputs(coord, atype, box, ntypes: int | None = None):
    """Validate and reshape to ``coord`` (nf, natoms, 3) float64, ``atype`` (nf, natoms)
    int64 and ``box`` (nf, 3, 3) float64 or None.  Raises ``ValueError``/``TypeError``
    naming the offending frame, atom and expected shape."""
    atype_arr = np.asarray(atype)
    if atype_arr.dtype.kind not in "iu":
        if atype_arr.dtype.kind == "f" and atype_arr.size and np.all(atype_arr == np.round(atype_arr)):
            atype_arr = atype_arr.astype(np.int64)
        else:
            raise TypeError(f"atype must be an integer array, got dtype {atype_arr.dtype}")
    if atype_arr.ndim not in (1, 2):
        raise ValueError(f"atype must have shape (natoms,) or (nframes, natoms), got {atype_arr.shape}")
    natoms = atype_arr.shape[-1]
    if natoms == 0:
        raise ValueError("empty system: atype has no atoms")
    coord = np.asarray(coord)
    if coord.dtype.kind not in "fiu":
        raise TypeError(f"coord must be a real array, got dtype {coord.dtype}")
    coord = coord.astype(np.float64)
    if coord.ndim == 1:
        if coord.size != 3 * natoms:
            raise ValueError(f"coord has {coord.size} values but atype has {natoms} atoms "
                             f"(expected 3*natoms = {3 * natoms})")
        coord = coord.reshape(1, natoms, 3)
    elif coord.ndim == 2:
        if coord.shape[1] == 3 * natoms:
            coord = coord.reshape(coord.shape[0], natoms, 3)
        elif coord.shape == (natoms, 3):
            coord = coord[None]
        else:
            raise ValueError(f"coord has shape {coord.shape}; expected (natoms, 3) = ({natoms}, 3) "
                             f"or (nframes, 3*natoms) = (nframes, {3 * natoms}) for {natoms} atoms")
    elif coord.ndim == 3:
        if coord.shape[1:] != (natoms, 3):
            raise ValueError(f"coord has shape {coord.shape}; expected (nframes, {natoms}, 3)")
    else:
        raise ValueError(f"coord must be 1-, 2- or 3-D, got shape {coord.shape}")
    nf = coord.shape[0]
    if nf == 0:
        raise ValueError("coord has zero frames")
    bad = ~np.isfinite(coord)
    if bad.any():
        f, i, _ = np.argwhere(bad)[0]
        raise ValueError(f"coord of frame {f}, atom {i} is not finite: {coord[f, i]}")
    if atype_arr.ndim == 1:
        atype_arr = np.broadcast_to(atype_arr, (nf, natoms))
    elif atype_arr.shape[0] != nf:
        raise ValueError(f"atype has {atype_arr.shape[0]} frames but coord has {nf}")
    if (atype_arr < 0).any():
        f, i = np.argwhere(atype_arr < 0)[0]
        raise ValueError(f"atom {i} (frame {f}) has negative type {atype_arr[f, i]}")
    if ntypes is not None and (atype_arr >= ntypes).any():
        f, i = np.argwhere(atype_arr >= ntypes)[0]
        raise ValueError(f"atom {i} (frame {f}) has type {atype_arr[f, i]} but the model has "
                         f"only {ntypes} types (0..{ntypes - 1})")
    atype_arr = atype_arr.astype(np.int64)
    if box is not None:
        box = np.asarray(box)
        if box.dtype.kind not in "fiu":
            raise TypeError(f"box must be a real array, got dtype {box.dtype}")
        box = box.astype(np.float64)
        if box.shape in ((9,), (3, 3)):
            box = np.broadcast_to(box.reshape(1, 3, 3), (nf, 3, 3))
        elif box.shape in ((nf, 9), (nf, 3, 3)):
            box = box.reshape(nf, 3, 3)
        else:
            raise ValueError(f"box has shape {box.shape}; expected (nframes, 9) or (nframes, 3, 3) "
                             f"with nframes = {nf}, or None for a molecule")
        for f in range(nf):
            if not np.isfinite(box[f]).all():
                raise ValueError(f"box of frame {f} is not finite")
            vol = abs(np.linalg.det(box[f]))
            scale = np.prod(np.linalg.norm(box[f], axis=1))
            if not vol > 1e-10 * max(scale, 1e-300):
                raise ValueError(f"box of frame {f} is singular (volume {vol:.3g} Å^3): "
                                 f"its cell vectors must be linearly independent")
    return coord, atype_arr, box
