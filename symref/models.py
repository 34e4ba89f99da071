"""DeepPot: composes neighbours -> environment -> descriptor -> fitting (stub, being written)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .descriptor import SeE2A
from .fitting import EnergyFitting


@dataclass
class DeepPot:
    """A Deep Potential (se_e2_a + energy fitting) model.

    ``out_bias``: ntypes, the model-level output bias deepmd-kit 3.x adds to
    every atomic energy (its ``@variables.out_bias[0, :, 0]``); ``out_std``
    likewise (stored, not used for energies).
    """

    type_map: list[str]
    descriptor: SeE2A
    fitting: EnergyFitting
    out_bias: np.ndarray
    out_std: np.ndarray
    atom_exclude_types: list[int] = field(default_factory=list)
    pair_exclude_types: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ntypes(self) -> int:
        return len(self.type_map)
