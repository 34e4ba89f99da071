"""What users hold: models assembled from the reference math.

``base``      :class:`SeE2AModel`, what both models share (input checks, neighbour list
              with the model's exclusions, environment rows, descriptor), ``normalize_inputs``
``deeppot``   :class:`DeepPot` (energy, forces, virials) with ``evaluate(backend=...)``
``tensor``    :class:`DeepTensor` (dipole / polarizability), a sibling of DeepPot
``backends``  the backend table of ``DeepPot.evaluate``: name -> module of ``symref.fast``
``build``     ``build_model`` from a deepmd-kit-style config, ``randomize_statistics``,
              ``demo_model``

May import: ``symref.reference`` and ``symref.fast`` (the evaluation backends).
Never ``symref.train``, ``symref.io`` or the applications.
"""

from symref.model.backends import BACKENDS
from symref.model.base import SeE2AModel, normalize_inputs
from symref.model.build import build_model, demo_model, randomize_statistics
from symref.model.deeppot import DeepPot
from symref.model.tensor import DeepTensor

__all__ = ["BACKENDS", "DeepPot", "DeepTensor", "SeE2AModel", "build_model", "demo_model",
           "normalize_inputs", "randomize_statistics"]
