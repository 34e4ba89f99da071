"""What the descriptors share: the ``sel`` slot layout and deepmd-kit's common settings.

Slots are grouped by neighbour type in type order (:mod:`symref.reference.neighbors`);
:class:`TypeSlots` gives a descriptor dataclass with a ``sel`` field the counts and
offsets of that layout.  :class:`EmbeddingSettings` holds the fields se_e2_r and se_e3
have in common with deepmd-kit's constructors (se_e2_a keeps its own, older, field order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class TypeSlots:
    """Mixin for descriptor dataclasses with a ``sel`` field (one count per type)."""

    sel: list[int]

    @property
    def ntypes(self) -> int:
        return len(self.sel)

    @property
    def nnei(self) -> int:
        return int(sum(self.sel))

    @property
    def sel_offsets(self) -> np.ndarray:
        """ntypes + 1 ints: the slots of neighbour type t are ``off[t]:off[t+1]``."""
        return np.concatenate([[0], np.cumsum(self.sel)]).astype(np.int64)


@dataclass
class EmbeddingSettings(TypeSlots):
    """Fields of an embedding descriptor: cutoffs (Å), ``sel``, the nets' widths
    ``neuron`` and the nets themselves, statistics ``davg``/``dstd`` (ntypes x nnei x
    ncol), and deepmd-kit's settings.  ``rcut_smth >= rcut`` is refused naming the keys."""

    rcut: float
    rcut_smth: float
    sel: list[int]
    neuron: list[int]
    embeddings: list
    davg: np.ndarray
    dstd: np.ndarray
    resnet_dt: bool = False
    exclude_types: list[tuple[int, int]] = field(default_factory=list)
    env_protection: float = 0.0
    set_davg_zero: bool = False
    activation_function: str = "tanh"
    precision: str = "float64"
    trainable: bool = True

    def __post_init__(self):
        if not self.rcut_smth < self.rcut:
            raise ValueError(f"descriptor.rcut_smth ({self.rcut_smth}) must be smaller than "
                             f"descriptor.rcut ({self.rcut})")

    @property
    def dim_out(self) -> int:
        return self.neuron[-1]
