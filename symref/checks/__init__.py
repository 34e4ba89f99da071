r"""Public verification toolkit: derivative, symmetry and smoothness checks for *any* calculator.

symref is meant to be the ground truth for other implementations, so every
check here works on a plain Python callable, not only on symref's models.

Calculator interface
--------------------
A *calculator* is a callable ``calc(coord, box) -> dict`` with

``coord``
    float64 array, shape ``(natoms, 3)``, Cartesian positions in Å.
``box``
    float64 array, shape ``(3, 3)``, rows are the cell vectors in Å
    (deepmd-kit's ``box.npy`` layout, ``h``), or ``None`` for a molecule
    (no periodic boundary conditions).

and the returned mapping holds

``"energy"``
    the total energy, one float (eV);
``"forces"``
    shape ``(natoms, 3)`` (eV/Å), :math:`\mathbf F_k = -\partial E/\partial \mathbf x_k`;
``"virial"``
    shape ``(3, 3)`` (eV), optional (absent or ``None`` is allowed; the virial
    checks are then skipped or, for :func:`check_virial_fd`, refused).

Virial convention.  For pair vectors
:math:`\mathbf r_{ji} = \mathbf x_j - \mathbf x_i + \mathbf n h`,

.. math::

    W = -\sum_{\text{pairs}} \mathbf r_{ji} \otimes \frac{\partial E}{\partial \mathbf r_{ji}},
    \qquad W_{ab} = -\frac{\partial E}{\partial \varepsilon_{ab}}\Big|_{\varepsilon=0},

where the homogeneous strain acts on row vectors: :math:`x' = x\,(I+\varepsilon)` for every
atom and :math:`h' = h\,(I+\varepsilon)` for the cell (for a molecule only the coordinates are
strained).  In cell form this is :math:`W = -h^\top\,\partial E/\partial h`, the transpose of
:math:`-(\partial E/\partial h)^\top h`; the two coincide whenever :math:`W` is symmetric, which
is the case for every rotation-invariant energy.  :func:`check_virial_fd` also reports the error
of the transposed convention (``details["max_abs_err_transposed"]``) to diagnose a layout mismatch.

Use :func:`as_calculator` to wrap a symref model (any object with
``model.evaluate(coord[None], atype, box=None | box[None])`` returning arrays with a leading frame
axis) into a calculator.

Checks
------
- :func:`check_forces_fd`: forces against central finite differences of the energy, two step
  sizes, observed order (must be ≈ 2) and the Richardson-extrapolated derivative.
- :func:`check_virial_fd`: the virial against central finite differences in the 9 strain
  components.
- :func:`check_symmetry`: rotation (det = +1), reflection (det = -1), translation, permutation
  within each atom type, periodic-image wrapping.
- :func:`check_cutoff_continuity`: continuity of energy and forces as one neighbour crosses rcut.

For point-cloud models (any ``predict(clouds) -> array``, e.g. :class:`symref.VectorCloudNet`)
and any differentiable scalar of a parameter vector:

- :func:`check_cloud_symmetry`: rotation and reflection in 2-D or 3-D (scalar outputs
  invariant, vectors ``Q y``, tensors ``Q Y Qᵀ``), permutation of the points of every
  cloud, translation of the whole problem (positions recomputed relative to a moved
  query point).
- :func:`check_cloud_adaptivity`: the same problems sampled with clouds of increasing
  size give converging predictions (a model that averages over its cloud).
- :func:`check_tensor_symmetry`: a vector or tensor property of a whole system
  (dipole, polarizability) under rotation/reflection (``Q y``, ``Q Y Qᵀ``),
  translation, permutation within each type and periodic wrapping.
- :func:`check_gradient_fd`: an analytic gradient against central finite differences at
  two step sizes (observed order ≈ 2), on all or a random subset of the components.

Every check returns :class:`CheckResult` objects (``check_symmetry`` and
``check_cutoff_continuity`` return lists of them); :func:`format_table` prints them.  All
arithmetic is float64.

Modules
-------
=============  ==================================================================
``common``     :class:`CheckResult`, :func:`format_table`, :func:`all_passed`,
               :func:`as_calculator`, input coercion and calculator validation
``fd``         :func:`check_forces_fd`, :func:`check_virial_fd`, :func:`check_gradient_fd`
``symmetry``   :func:`check_symmetry`, :func:`check_tensor_symmetry`
``cutoff``     :func:`check_cutoff_continuity`
``clouds``     :func:`check_cloud_symmetry`, :func:`check_cloud_adaptivity`
=============  ==================================================================

:func:`run_all_checks` (below) runs the system checks together.  Every public name
is re-exported here; import from ``symref.checks``.

May import: numpy and the standard library only.  The checks know symref's
models only through the calculator interface (:func:`as_calculator` calls
``model.evaluate``), so they can judge any implementation, symref's included.
"""
from __future__ import annotations

from symref.checks.clouds import check_cloud_adaptivity, check_cloud_symmetry
from symref.checks.common import (Calculator, CheckResult, _as_box, _as_coord, _as_rng,
                                  _check_calc, _evaluate, all_passed, as_calculator, format_table)
from symref.checks.cutoff import check_cutoff_continuity
from symref.checks.fd import check_forces_fd, check_gradient_fd, check_virial_fd
from symref.checks.symmetry import check_symmetry, check_tensor_symmetry

__all__ = [
    "Calculator",
    "CheckResult",
    "as_calculator",
    "check_forces_fd",
    "check_virial_fd",
    "check_symmetry",
    "check_cutoff_continuity",
    "run_all_checks",
    "check_cloud_symmetry",
    "check_tensor_symmetry",
    "check_cloud_adaptivity",
    "check_gradient_fd",
    "format_table",
    "all_passed",
]


# ============================================================================ everything at once
def run_all_checks(calc: Calculator, coord, box=None, atype=None, rcut=None, rng=None,
                   natoms_sample=None) -> list[CheckResult]:
    """All checks with default tolerances: forces FD, virial FD (if the calculator returns a
    virial), symmetry (permutation only with ``atype``), cutoff continuity (only with ``rcut``).
    Returns a flat list; print it with :func:`format_table`."""
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    gen = _as_rng(rng)
    results = [check_forces_fd(calc, coord, box, natoms_sample=natoms_sample, rng=gen)]
    if _evaluate(calc, coord, box)[2] is not None:
        results.append(check_virial_fd(calc, coord, box))
    results.extend(check_symmetry(calc, coord, box, atype=atype, rng=gen))
    if rcut is not None:
        results.extend(check_cutoff_continuity(calc, coord, box, rcut=rcut))
    return results
