"""Validated fast twins of the reference: numba CPU-parallel and numba-cuda.

``cpu``       evaluation of an energy model on compact pair lists (``backend="numba"``)
``cpu_tables`` compressed (tabulated) se_e2_a models' tables, blocks and warning for ``cpu``
``cpu_loss``  the training-loss gradient on the same kernels
``family_loss`` the training-loss gradient of se_e2_r, se_e3 and hybrid energy models
``fitting``   a fitting net on a block of atoms (BLAS + fused kernels), forward and backward
``cpu_tensor`` dipole/polarizability models (``DeepTensor``, ``backend="numba"``) and
              their tensor-loss gradient, on the same kernels
``cuda``      evaluation on an NVIDIA GPU (``backend="cuda"``)
``se_e3``     se_e3 and se_e2_r energy models on their scalar-net kernels
``hybrid``    hybrid energy models: each member's fast path on its own slots
``vcnn``      the VectorCloudNet's embedding, cloud sums and Gram matrix on stacked
              ragged clouds (``VectorCloudNet(backend="numba")``)
``blas``      a context manager limiting the BLAS threads behind NumPy; which kernels
              each loaded OpenBLAS runs (``openblas_cores``, for the benchmarks)
``kernels/``  the kernels themselves, each a twin of a NumPy function with the same
              signature and a test comparing them (``atol + |ref|·eps(dtype)``)

An evaluation backend (``cpu``, ``cuda``) offers the model three functions:
``require()`` (raise when it cannot run in this process), ``unsupported_reason(model)``
(why it cannot evaluate this model exactly, or None) and ``frame_evaluator(model, dtype)``
(a callable ``(coord, atype, box, *, truncate, frame) -> dict`` for one frame).  Where a
model is unsupported the model falls back to the NumPy reference and says so with
:func:`fallback_warning`, the one warning every backend uses.

May import: numpy, numba, numba-cuda and ``symref.reference``.  Never the models'
subpackage (``model/``): a model hands its arrays to these functions, which do not
know the model classes.
"""
from __future__ import annotations

import warnings


def fallback_warning(backend: str, reason: str, *, stacklevel: int = 2) -> None:
    """``RuntimeWarning``: ``backend`` cannot evaluate the model exactly (``reason``), so the
    NumPy reference runs instead.  ``stacklevel`` as :func:`warnings.warn`'s, counted from
    the caller of this function (2: the caller's caller)."""
    warnings.warn(f"backend={backend!r} cannot evaluate this model exactly ({reason}); "
                  "using the NumPy reference", RuntimeWarning, stacklevel=stacklevel + 1)
