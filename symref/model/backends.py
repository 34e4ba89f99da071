"""The evaluation backends of :meth:`symref.model.deeppot.DeepPot.evaluate`.

``"numpy"`` is the reference (the model's own frame function).  Every other backend
is a module of :mod:`symref.fast`, imported on first use, offering ``require()``,
``unsupported_reason(model)`` and ``frame_evaluator(model, dtype)`` (see
:mod:`symref.fast`), and the dtypes it evaluates:

==========  ==========================  =================  ==============================
backend     module                      dtypes             outside them
==========  ==========================  =================  ==============================
``numpy``   (the reference)             float64, float32
``numba``   :mod:`symref.fast.cpu`      float64, float32
``cuda``    :mod:`symref.fast.cuda`     float64, float32
==========  ==========================  =================  ==============================

A model the backend cannot evaluate exactly runs on the reference with
:func:`symref.fast.fallback_warning`; a backend that cannot run in this process at
all (``cuda`` without numba-cuda or a GPU) raises from ``require()``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FastBackend:
    """A backend of :mod:`symref.fast`: its module (imported on first use) and dtypes."""

    module: str
    dtypes: tuple

    def load(self):
        return importlib.import_module(self.module)


#: backend name -> its fast module, or None for the NumPy reference
BACKEND_TABLE: dict[str, FastBackend | None] = {
    "numba": FastBackend("symref.fast.cpu", (np.float64, np.float32)),
    "numpy": None,
    "cuda": FastBackend("symref.fast.cuda", (np.float64, np.float32)),
}
BACKENDS = tuple(BACKEND_TABLE)


def check_backend(backend: str) -> None:
    """``ValueError`` unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKEND_TABLE:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def frame_function(model, backend: str, dtype):
    """The fast frame function ``(coord, atype, box, *, truncate, frame) -> dict`` of
    ``backend`` for ``model`` (already cast to ``dtype``), or None where the reference
    runs: backend ``"numpy"``, a dtype the backend lacks, or a model it cannot evaluate
    exactly (then with :func:`symref.fast.fallback_warning`, pointing at the caller of
    ``evaluate``).  ``ImportError``/``RuntimeError`` from the backend's ``require()``."""
    check_backend(backend)
    spec = BACKEND_TABLE[backend]
    if spec is None:
        return None
    fast = spec.load()
    fast.require()  # ImportError / RuntimeError with an install hint
    if np.dtype(dtype) not in [np.dtype(t) for t in spec.dtypes]:
        return None
    reason = fast.unsupported_reason(model)
    if reason is not None:
        from symref.fast import fallback_warning

        fallback_warning(backend, reason, stacklevel=3)  # -> evaluate -> its caller
        return None
    return fast.frame_evaluator(model, dtype)
