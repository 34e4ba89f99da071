"""Energy fitting head parameters (the math follows below in this module)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn import Layer


@dataclass
class EnergyFitting:
    """Per-type energy fitting nets (deepmd-kit ``ener`` fitting, ``mixed_types`` false).

    ``nets[t]``: layers for centre type t; hidden tanh layers then a linear
    width-1 output layer.  ``bias_atom_e``: ntypes, added to each atomic energy.
    ``exclude_types``: centre types whose atomic energy is zero.
    """

    neuron: list[int]
    nets: list[list[Layer]]
    bias_atom_e: np.ndarray
    resnet_dt: bool = True
    exclude_types: list[int] = field(default_factory=list)
    activation_function: str = "tanh"
    precision: str = "float64"
    rcond: float | None = None
    trainable: list[bool] | bool = True
    atom_ener: list | None = None

    @property
    def ntypes(self) -> int:
        return len(self.nets)
