"""se_e2_a descriptor parameters (the math follows below in this module)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn import Layer


@dataclass
class SeE2A:
    """Parameters of deepmd-kit's ``se_e2_a`` descriptor.

    ``embeddings`` is a flat list indexed like deepmd-kit's NetworkCollection:
    ``type_one_side``: index = neighbour type ``tj`` (ntypes nets);
    otherwise index = ``ti + tj * ntypes`` (centre ``ti``, neighbour ``tj``; ntypes² nets).
    ``davg``/``dstd``: ntypes x nnei x 4; the environment row of slot j of a
    centre of type t is normalised as ``(R̃ - davg[t, j]) / dstd[t, j]``.
    ``exclude_types``: list of (ti, tj) type pairs whose rows are zeroed (both orders).
    """

    rcut: float
    rcut_smth: float
    sel: list[int]
    neuron: list[int]
    axis_neuron: int
    embeddings: list[list[Layer]]
    davg: np.ndarray
    dstd: np.ndarray
    resnet_dt: bool = False
    type_one_side: bool = True
    exclude_types: list[tuple[int, int]] = field(default_factory=list)
    env_protection: float = 0.0
    set_davg_zero: bool = False
    activation_function: str = "tanh"
    precision: str = "float64"
    trainable: bool = True

    @property
    def ntypes(self) -> int:
        return len(self.sel)

    @property
    def nnei(self) -> int:
        return int(sum(self.sel))

    @property
    def sel_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sel)]).astype(np.int64)

    @property
    def dim_out(self) -> int:
        return self.neuron[-1] * self.axis_neuron

    def embedding_index(self, ti: int, tj: int) -> int:
        return tj if self.type_one_side else ti + tj * self.ntypes
