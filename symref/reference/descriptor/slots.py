"""The neighbour-slot layout every descriptor shares: ``sel[t]`` slots per neighbour type.

Slots are grouped by neighbour type in type order (:mod:`symref.reference.neighbors`);
:class:`TypeSlots` gives a descriptor dataclass with a ``sel`` field the counts and
offsets of that layout.
"""
from __future__ import annotations

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
