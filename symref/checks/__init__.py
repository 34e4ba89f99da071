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
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

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

#: ``calc(coord (natoms, 3) Å, box (3, 3) Å or None) -> {"energy": eV, "forces": (natoms, 3) eV/Å,
#: "virial": (3, 3) eV or None}``
Calculator = Callable[[np.ndarray, Optional[np.ndarray]], Mapping[str, Any]]

_EPS = float(np.finfo(np.float64).eps)
_REAL_TYPES = (int, float, np.integer, np.floating)
# Calculator round-off in E is taken as _ROUNDOFF_FACTOR * eps * |E|
# (sums of many terms, cancellations).
_ROUNDOFF_FACTOR = 100.0


# ============================================================================ result type
@dataclass
class CheckResult:
    """Outcome of one check.

    Attributes
    ----------
    name : str
        What was checked, e.g. ``"forces_fd"`` or ``"rotation/forces"``.
    max_abs_err : float
        Largest absolute error, in the units of the checked quantity (eV, eV/Å, eV).
    max_rel_err : float
        ``max_abs_err`` divided by the scale of the reference quantity (see ``details["scale"]``;
        the scale is 1, i.e. the error is absolute, when the reference quantity is exactly zero).
    tol : float
        Tolerance the relative error was compared with.
    passed : bool
        Verdict.  ``bool(result)`` is ``passed``.
    details : dict
        Check-specific numbers (per-step errors, transformation used, ...).
    order : float or None
        Observed convergence order where it is meaningful (finite-difference and cutoff checks),
        else ``None``.
    """

    name: str
    max_abs_err: float
    max_rel_err: float
    tol: float
    passed: bool
    details: dict = field(default_factory=dict)
    order: Optional[float] = None

    def __bool__(self) -> bool:
        return bool(self.passed)

    def __str__(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        s = (f"[{status}] {self.name}: max abs err {self.max_abs_err:.3e}, "
             f"max rel err {self.max_rel_err:.3e} (tol {self.tol:.1e})")
        if self.order is not None:
            s += f", order {self.order:.2f}"
        return s


def _flatten(results) -> list[CheckResult]:
    if isinstance(results, CheckResult):
        return [results]
    out: list[CheckResult] = []
    try:
        items = list(results)
    except TypeError:
        raise TypeError("expected a CheckResult or an iterable of them, "
                        f"got {type(results).__name__}") from None
    for r in items:
        out.extend(_flatten(r))
    return out


def all_passed(results) -> bool:
    """True when every :class:`CheckResult` in ``results`` (nested lists allowed) passed."""
    return all(r.passed for r in _flatten(results))


def format_table(results) -> str:
    """Aligned text table of check results.

    ``results``: a :class:`CheckResult` or an iterable of them (nested lists, such as the list
    returned by :func:`check_symmetry`, are flattened).  Columns: check name, max abs err,
    max rel err, tolerance, observed order (``-`` where not applicable or not meaningful),
    PASS/FAIL.
    """
    rows = _flatten(results)
    header = ("check", "max abs err", "max rel err", "tol", "order", "status")
    body = [(r.name, f"{r.max_abs_err:.3e}", f"{r.max_rel_err:.3e}", f"{r.tol:.1e}",
             "-" if r.order is None else f"{r.order:.2f}", "PASS" if r.passed else "FAIL")
            for r in rows]
    widths = [max([len(h)] + [len(b[k]) for b in body]) for k, h in enumerate(header)]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest])

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines.extend(line(b) for b in body)
    n_fail = sum(1 for r in rows if not r.passed)
    lines.append(f"{len(rows) - n_fail}/{len(rows)} passed")
    return "\n".join(lines)


# ============================================================================ validation
def _real_array(value, name: str) -> np.ndarray:
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real numeric array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a real numeric array ({exc})") from None
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating)
                                     or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64)  # always a fresh float64 copy


def _as_coord(coord, natoms: Optional[int] = None, name: str = "coord") -> np.ndarray:
    arr = _real_array(coord, name)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (natoms, 3) with natoms >= 1, "
                         f"got shape {arr.shape}")
    if natoms is not None and arr.shape[0] != natoms:
        raise ValueError(f"{name} has {arr.shape[0]} atoms, expected {natoms}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _as_box(box) -> Optional[np.ndarray]:
    if box is None:
        return None
    arr = _real_array(box, "box")
    if arr.shape == (9,):
        arr = arr.reshape(3, 3)
    if arr.shape != (3, 3):
        raise ValueError("box must be None (molecule) or a 3x3 array whose rows are the cell "
                         f"vectors (9 values also accepted), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("box contains NaN or inf")
    det = float(np.linalg.det(arr))
    if not abs(det) > 1e-10 * max(float(np.prod(np.linalg.norm(arr, axis=1))), 1e-300):
        raise ValueError(f"box is singular or degenerate (det = {det:.3e}); "
                         "rows must be 3 independent cell vectors")
    return arr


def _as_atype(atype, natoms: int) -> np.ndarray:
    if atype is None or isinstance(atype, (str, bytes)):
        raise TypeError("atype must be an integer array of length natoms, "
                        f"got {type(atype).__name__}")
    arr = np.asarray(atype)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"atype must hold integers (type indices), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"atype must be 1-D (natoms,), got shape {arr.shape}")
    if arr.shape[0] != natoms:
        raise ValueError(f"atype has length {arr.shape[0]} but coord has {natoms} atoms")
    if np.any(arr < 0):
        raise ValueError("atype must be non-negative type indices")
    return arr.astype(np.int64)


def _check_calc(calc) -> None:
    if not callable(calc):
        raise TypeError("calc must be a callable calc(coord, box) -> dict, "
                        f"got {type(calc).__name__}")


def _positive(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _REAL_TYPES):
        raise TypeError(f"{name} must be a positive real number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _as_steps(steps, name: str) -> tuple[float, float]:
    try:
        vals = list(steps)
    except TypeError:
        raise TypeError(f"{name} must be a pair (h1, h2) of step sizes, "
                        f"got {type(steps).__name__}") from None
    if len(vals) != 2:
        raise ValueError(f"{name} must hold exactly two step sizes (h1, h2), got {len(vals)}")
    h1, h2 = (_positive(v, name) for v in vals)
    if not h1 > h2:
        raise ValueError(f"{name} must satisfy h1 > h2 > 0, got {vals}")
    return h1, h2


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError("rng must be None, an int seed or a numpy.random.Generator, "
                    f"got {type(rng).__name__}")


def _evaluate(calc, coord: np.ndarray, box: Optional[np.ndarray], *, need_virial: bool = False):
    """Call ``calc`` on copies of the inputs and validate its answer -> (E, F, W or None)."""
    natoms = coord.shape[0]
    out = calc(coord.copy(), None if box is None else box.copy())
    if not isinstance(out, Mapping):
        raise TypeError("calculator must return a dict with 'energy', 'forces' "
                        f"(and optionally 'virial'), got {type(out).__name__}")
    missing = [k for k in ("energy", "forces") if k not in out]
    if missing:
        raise ValueError(f"calculator result lacks {missing}; "
                         f"keys present: {sorted(map(str, out))}")
    e = _real_array(out["energy"], "calculator 'energy'")
    if e.size != 1:
        raise ValueError(f"calculator 'energy' must be a single value, got shape {e.shape}")
    f = _real_array(out["forces"], "calculator 'forces'")
    if f.shape != (natoms, 3):
        raise ValueError(f"calculator 'forces' must have shape ({natoms}, 3), got {f.shape}")
    w = out.get("virial")
    if w is not None:
        w = _real_array(w, "calculator 'virial'")
        if w.shape != (3, 3):
            raise ValueError(f"calculator 'virial' must have shape (3, 3), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("calculator returned a non-finite virial")
    elif need_virial:
        raise ValueError("calculator returned no 'virial' (absent or None) but this check needs it")
    energy = float(e.reshape(()))
    if not math.isfinite(energy):
        raise ValueError("calculator returned a non-finite energy")
    if not np.all(np.isfinite(f)):
        raise ValueError("calculator returned non-finite forces")
    return energy, f, w


def _scale(ref: np.ndarray) -> tuple[float, bool]:
    """max |ref|, or 1 (absolute errors) when ref is identically zero."""
    s = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    return (s, False) if s > 0.0 else (1.0, True)


# ============================================================================ adapter
def as_calculator(model, atype) -> Calculator:
    """Wrap a symref-style model into a calculator ``calc(coord, box) -> dict``.

    ``model.evaluate(coord[None], atype, box=None | box[None])`` must return a mapping with
    ``"energy"`` (nf,) or (nf, 1), ``"forces"`` (nf, natoms, 3) (``"force"`` accepted) and
    optionally ``"virial"`` (nf, 3, 3) or (nf, 9), with nf = 1 here.  ``atype``: (natoms,) integer
    type indices, fixed for the calculator's lifetime (so permutation checks permute atoms within a
    type only).
    """
    evaluate = getattr(model, "evaluate", None)
    if not callable(evaluate):
        raise TypeError("model must have a callable evaluate(coord, atype, box=...), "
                        f"got {type(model).__name__}")
    at = np.asarray(atype)
    if at.dtype == np.bool_ or not np.issubdtype(at.dtype, np.integer) or at.ndim != 1:
        raise TypeError(f"atype must be a 1-D integer array, got dtype {at.dtype} "
                        f"and shape {at.shape}")
    natoms = at.shape[0]

    def calc(coord, box=None):
        c = _as_coord(coord, natoms)
        b = _as_box(box)
        out = evaluate(c[None], at, box=None if b is None else b[None])
        if not isinstance(out, Mapping):
            raise TypeError(f"model.evaluate must return a dict, got {type(out).__name__}")
        fkey = "forces" if "forces" in out else "force"
        if "energy" not in out or fkey not in out:
            raise ValueError("model.evaluate result lacks 'energy'/'forces'; "
                             f"keys present: {sorted(map(str, out))}")
        e = _real_array(out["energy"], "model 'energy'")
        if e.size != 1:
            raise ValueError(f"model 'energy' must hold one frame's value, got shape {e.shape}")
        f = _real_array(out[fkey], "model 'forces'")
        if f.size != 3 * natoms:
            raise ValueError(f"model 'forces' must have shape (1, {natoms}, 3), got {f.shape}")
        res = {"energy": float(e.reshape(())), "forces": f.reshape(natoms, 3)}
        v = out.get("virial")
        if v is not None:
            v = _real_array(v, "model 'virial'")
            if v.size != 9:
                raise ValueError(f"model 'virial' must have shape (1, 3, 3), got {v.shape}")
            res["virial"] = v.reshape(3, 3)
        return res

    calc.__doc__ = f"Calculator wrapping {type(model).__name__}.evaluate for {natoms} atoms."
    return calc


# ============================================================================ finite differences
def _fd_result(name, analytic, fd, h1, h2, tol, roundoff, emag, details) -> CheckResult:
    """Compare analytic derivatives with FD estimates fd[0] (step h1), fd[1] (step h2)."""
    r = h1 / h2
    rich = (r * r * fd[1] - fd[0]) / (r * r - 1.0)
    err1 = float(np.max(np.abs(fd[0] - analytic)))
    err2 = float(np.max(np.abs(fd[1] - analytic)))
    err_r = float(np.max(np.abs(rich - analytic)))
    scale, absolute = _scale(analytic)
    # round-off floor of the FD estimates: relative level, or E's own rounding amplified by 1/h
    floor1 = max(roundoff * scale, _ROUNDOFF_FACTOR * _EPS * emag / h1)
    floor2 = max(roundoff * scale, _ROUNDOFF_FACTOR * _EPS * emag / h2)
    p_obs = math.log(err1 / err2) / math.log(r) if err1 > 0.0 and err2 > 0.0 else float("nan")
    if err2 <= floor2:
        meaningful = False
        note = ("both FD errors at round-off; order not meaningful" if err1 <= floor1 else
                "FD error at the smaller step is at round-off; order not meaningful")
        order_ok = True
    else:
        meaningful = True
        note = "order measured"
        order_ok = bool(1.6 <= p_obs <= 2.4)
    rel_r = err_r / scale
    passed = bool(rel_r <= tol and order_ok)
    worst = np.unravel_index(int(np.argmax(np.abs(rich - analytic))), analytic.shape)
    details = dict(details)
    details.update(
        steps=(h1, h2), err_h1=err1, err_h2=err2, rel_err_h1=err1 / scale, rel_err_h2=err2 / scale,
        richardson_abs_err=err_r, richardson_rel_err=rel_r, order_observed=p_obs,
        order_meaningful=meaningful, order_ok=order_ok, order_note=note,
        roundoff_floor=(floor1, floor2),
        scale=scale, scale_is_absolute=absolute, worst_index=tuple(int(i) for i in worst),
        fd_richardson=rich, analytic=np.array(analytic, copy=True),
    )
    return CheckResult(name=name, max_abs_err=err_r, max_rel_err=rel_r, tol=tol, passed=passed,
                       details=details, order=p_obs if meaningful else None)


def check_forces_fd(calc: Calculator, coord, box=None, steps=(1e-2, 5e-3), natoms_sample=None,
                    rng=None, tol: float = 1e-6, *, roundoff: float = 1e-10) -> CheckResult:
    r"""Forces against central finite differences of the energy.

    For each sampled atom k and direction a, with actual steps :math:`h` (Å),

    .. math::

        D_{ka}(h) = -\frac{E(x + h e_{ka}) - E(x - h e_{ka})}{2h}
                  = F_{ka} + O(h^2),

    evaluated at ``steps = (h1, h2)``, ``h1 > h2``.  Reported:

    - ``details["err_h1"]``, ``["err_h2"]``: :math:`\max |D(h) - F|` (eV/Å);
    - the observed order :math:`p = \log(e_1/e_2)/\log(h_1/h_2)` (``order``), which must lie in
      [1.6, 2.4] — unless the error at ``h2`` is already at round-off (below
      ``max(roundoff·max|F|, 100·eps·|E|/h2)``), where the order is not meaningful and not tested;
    - Richardson extrapolation with :math:`r = h_1/h_2`:
      :math:`D_R = (r^2 D(h_2) - D(h_1))/(r^2 - 1)` (``(4 D(h2) - D(h1))/3`` for h1 = 2 h2),
      whose error vs the analytic forces is ``max_abs_err``; ``max_rel_err`` divides it by
      max |F| over the sampled atoms.

    Passes when ``max_rel_err <= tol`` and the order test passes.  Energies that are only C²
    (deepmd-kit's switch) have a third-derivative jump at ``rcut_smth`` and ``rcut``; a pair
    within ``h`` of those radii limits Richardson's gain to O(h²) — use smaller ``steps`` if a
    correct model fails marginally there.

    Parameters
    ----------
    calc : calculator ``calc(coord, box) -> dict`` (see module docstring).
    coord : (natoms, 3) Å.  box : (3, 3) rows are cell vectors, or None (molecule).
    steps : (h1, h2) in Å, h1 > h2 > 0.
    natoms_sample : int or None; FD on this many randomly chosen atoms (all atoms if None).
    rng : None, int seed or numpy Generator (used for the atom sample).
    tol : relative tolerance on the Richardson error.
    roundoff : relative error level treated as converged (order not tested below it).

    Cost: ``2 · 2 · 3 · n_sampled`` energy evaluations.
    """
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    h1, h2 = _as_steps(steps, "steps")
    tol = _positive(tol, "tol")
    roundoff = _positive(roundoff, "roundoff")
    natoms = coord.shape[0]
    if natoms_sample is None:
        atoms = np.arange(natoms)
    else:
        if isinstance(natoms_sample, bool) or not isinstance(natoms_sample, (int, np.integer)):
            raise TypeError("natoms_sample must be an int or None, "
                            f"got {type(natoms_sample).__name__}")
        if natoms_sample < 1:
            raise ValueError(f"natoms_sample must be >= 1, got {natoms_sample}")
        if natoms_sample >= natoms:
            atoms = np.arange(natoms)
        else:
            atoms = np.sort(_as_rng(rng).choice(natoms, size=int(natoms_sample), replace=False))
    e0, f0, _ = _evaluate(calc, coord, box)
    emag = abs(e0)
    fd = np.empty((2, atoms.size, 3))
    for k, h in enumerate((h1, h2)):
        for ia, a in enumerate(atoms):
            for d in range(3):
                xp = coord.copy()
                xm = coord.copy()
                xp[a, d] = coord[a, d] + h
                xm[a, d] = coord[a, d] - h
                ep = _evaluate(calc, xp, box)[0]
                em = _evaluate(calc, xm, box)[0]
                emag = max(emag, abs(ep), abs(em))
                fd[k, ia, d] = -(ep - em) / (xp[a, d] - xm[a, d])  # actual (rounded) step
    return _fd_result("forces_fd", f0[atoms], fd, h1, h2, tol, roundoff, emag,
                      {"atoms": atoms.tolist(), "energy": e0})


def check_virial_fd(calc: Calculator, coord, box=None, steps=(1e-3, 5e-4), tol: float = 1e-6, *,
                    roundoff: float = 1e-10) -> CheckResult:
    r"""Virial against central finite differences of the energy in the 9 strain components.

    With :math:`x' = x(I+\varepsilon)` for all atoms and :math:`h' = h(I+\varepsilon)` for the cell
    (molecules, ``box=None``: coordinates only), and :math:`\varepsilon = \pm s\, e_a e_b^\top`,

    .. math::

        D_{ab}(s) = -\frac{E(+s) - E(-s)}{2s} = W_{ab} + O(s^2),

    at ``steps = (s1, s2)`` (dimensionless strains).  Order, Richardson extrapolation and the pass
    rule are those of :func:`check_forces_fd`, with the scale max |W| (eV).  ``details`` also
    holds ``max_abs_err_transposed``, the Richardson error against Wᵀ, which is small when the
    calculator uses the transposed layout :math:`W_{ab} = -\sum g_a r_b` (indistinguishable for a
    symmetric virial).  The calculator must return a virial (ValueError otherwise).

    Cost: ``2 · 2 · 9`` energy evaluations.
    """
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    s1, s2 = _as_steps(steps, "steps")
    tol = _positive(tol, "tol")
    roundoff = _positive(roundoff, "roundoff")
    e0, _, w0 = _evaluate(calc, coord, box, need_virial=True)
    emag = abs(e0)
    fd = np.empty((2, 3, 3))
    eye = np.eye(3)
    for k, s in enumerate((s1, s2)):
        for a in range(3):
            for b in range(3):
                vals = []
                for sign in (1.0, -1.0):
                    strain = eye.copy()
                    strain[a, b] += sign * s
                    xs = coord @ strain
                    bs = None if box is None else box @ strain
                    vals.append(_evaluate(calc, xs, bs)[0])
                emag = max(emag, abs(vals[0]), abs(vals[1]))
                fd[k, a, b] = -(vals[0] - vals[1]) / (2.0 * s)
    res = _fd_result("virial_fd", w0, fd, s1, s2, tol, roundoff, emag,
                     {"energy": e0, "periodic": box is not None})
    rich = res.details["fd_richardson"]
    res.details["max_abs_err_transposed"] = float(np.max(np.abs(rich - w0.T)))
    res.details["virial_asymmetry"] = float(np.max(np.abs(w0 - w0.T)))
    return res


# ============================================================================ symmetry
def _random_orthogonal(rng: np.random.Generator, det_sign: int, dim: int = 3) -> np.ndarray:
    """Haar-random orthogonal dim x dim matrix (QR of a Gaussian matrix) with determinant det_sign."""
    a = rng.standard_normal((dim, dim))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the distribution uniform
    if np.linalg.det(q) * det_sign < 0:
        q[:, 0] = -q[:, 0]
    return q


def _compare(name, value, expect, ref_for_scale, tol, details) -> CheckResult:
    value = np.asarray(value, dtype=np.float64)
    expect = np.asarray(expect, dtype=np.float64)
    err = float(np.max(np.abs(value - expect)))
    scale, absolute = _scale(np.asarray(ref_for_scale, dtype=np.float64))
    rel = err / scale
    d = dict(details)
    d.update(scale=scale, scale_is_absolute=absolute)
    return CheckResult(name=name, max_abs_err=err, max_rel_err=rel, tol=tol,
                       passed=bool(rel <= tol), details=d)


def check_symmetry(calc: Calculator, coord, box=None, atype=None, rng=None, tol: float = 1e-12, *,
                   translation_scale: float = 2.0, max_image_shift: int = 2) -> list[CheckResult]:
    r"""Invariance / equivariance of energy, forces and virial under the symmetries of physics.

    For each transformation the calculator is evaluated on the transformed input and compared with
    the transformed reference (one :class:`CheckResult` per transformation and quantity, named
    ``"<transformation>/<energy|forces|virial>"``; virial rows only if the calculator returns one):

    ``rotation`` / ``reflection``
        Q random orthogonal (QR of a Gaussian matrix) with det Q = +1 / -1;
        coord' = coord Qᵀ, box' = box Qᵀ.  Expect E' = E, F' = F Qᵀ, W' = Q W Qᵀ.
    ``translation``
        coord' = coord + t, t ~ N(0, translation_scale²) Å per component (periodic systems too;
        the box is unchanged).  Expect E, F, W unchanged.
    ``permutation``
        only when ``atype`` is given: a random permutation P within each type (non-trivial where a
        type has ≥ 2 atoms), coord' = coord[P].  Expect E' = E, F' = F[P], W' = W.
    ``image_wrap``
        periodic only: coord' = coord + n h with random integers n ∈ [-max_image_shift,
        max_image_shift] per atom and cell vector.  Expect E, F, W unchanged.

    Relative errors are taken against max |reference quantity| (|E|, max |F|, max |W|; 1 when that
    is zero).  A row passes when its relative error ≤ ``tol``.  ``details`` records the
    transformation (Q, t, permutation, integer shifts).
    """
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    natoms = coord.shape[0]
    at = None if atype is None else _as_atype(atype, natoms)
    tol = _positive(tol, "tol")
    translation_scale = _positive(translation_scale, "translation_scale")
    if (isinstance(max_image_shift, bool) or not isinstance(max_image_shift, (int, np.integer))
            or max_image_shift < 1):
        raise ValueError(f"max_image_shift must be an int >= 1, got {max_image_shift!r}")
    gen = _as_rng(rng)
    e0, f0, w0 = _evaluate(calc, coord, box)
    has_w = w0 is not None
    results: list[CheckResult] = []

    def add(label, c2, b2, f_expect, w_expect, info):
        e, f, w = _evaluate(calc, c2, b2, need_virial=has_w)
        results.append(_compare(f"{label}/energy", e, e0, e0, tol, info))
        results.append(_compare(f"{label}/forces", f, f_expect, f0, tol, info))
        if has_w:
            results.append(_compare(f"{label}/virial", w, w_expect, w0, tol, info))

    for det_sign, label in ((1, "rotation"), (-1, "reflection")):
        q = _random_orthogonal(gen, det_sign)
        add(label, coord @ q.T, None if box is None else box @ q.T, f0 @ q.T,
            None if not has_w else q @ w0 @ q.T, {"Q": q, "det": float(np.linalg.det(q))})

    t = gen.normal(scale=translation_scale, size=3)
    add("translation", coord + t, box, f0, w0, {"shift": t})

    if at is not None:
        perm = np.arange(natoms)
        groups = [np.flatnonzero(at == ty) for ty in np.unique(at)]
        if any(g.size >= 2 for g in groups):
            for _ in range(100):  # avoid the identity
                perm = np.arange(natoms)
                for g in groups:
                    perm[g] = gen.permutation(g)
                if np.any(perm != np.arange(natoms)):
                    break
        add("permutation", coord[perm], box, f0[perm], w0,
            {"perm": perm.tolist(), "trivial": bool(np.all(perm == np.arange(natoms)))})

    if box is not None:
        n = gen.integers(-max_image_shift, max_image_shift + 1, size=(natoms, 3))
        if not np.any(n):
            n[0, 0] = 1
        add("image_wrap", coord + n @ box, box, f0, w0, {"lattice_shifts": n})
    return results


# ============================================================================ cutoff continuity
def _image_vectors(coord: np.ndarray, box: Optional[np.ndarray], i: int, reach: float):
    """All vectors x_j + n h - x_i with 0 < |.| < reach.

    Returns (j (k,), n (k, 3) int, d (k, 3), |d| (k,)); for a molecule n is zero and ``reach`` may
    be inf.
    """
    natoms = coord.shape[0]
    if box is None:
        d = coord - coord[i]
        dist = np.linalg.norm(d, axis=1)
        keep = (np.arange(natoms) != i) & (dist < reach)
        j = np.flatnonzero(keep)
        return j, np.zeros((j.size, 3), dtype=np.int64), d[keep], dist[keep]
    hinv = np.linalg.inv(box)
    frac = (coord - coord[i]) @ hinv  # natoms x 3
    n0 = -np.round(frac)  # bring to [-1/2, 1/2]
    base = coord - coord[i] + n0 @ box
    # |frac_a(v)| <= |v| * ||hinv[:, a]||, and base's fractional part lies in [-1/2, 1/2]
    m = np.ceil(reach * np.linalg.norm(hinv, axis=0) + 0.5).astype(np.int64)
    shifts = np.array(list(itertools.product(*(range(-k, k + 1) for k in m))), dtype=np.float64)
    d = base[:, None, :] + (shifts @ box)[None, :, :]  # natoms x nshift x 3
    nn = n0[:, None, :] + shifts[None, :, :]
    dist = np.linalg.norm(d, axis=-1)
    self_zero = (np.arange(natoms)[:, None] == i) & np.all(nn == 0, axis=-1)
    keep = (dist < reach) & ~self_zero & (dist > 0.0)
    jj, ss = np.nonzero(keep)
    return jj, nn[jj, ss].astype(np.int64), d[jj, ss], dist[jj, ss]


def _placed(coord, j, u, dist0, s):
    """coord with atom j moved along unit vector u so that the chosen pair distance becomes s."""
    c = coord.copy()
    c[j] = coord[j] + u * (s - dist0)
    return c


def _other_crossings(coord, box, i, j, n_pair, window, rcut):
    """Pairs of atom j (other than (j -> i, -n_pair)) whose distance lies within rcut ± window."""
    jj, nn, _, dist = _image_vectors(coord, box, j, rcut + window)
    near = np.abs(dist - rcut) < window
    chosen = (jj == i) & np.all(nn == -np.asarray(n_pair), axis=-1)
    sel = near & ~chosen
    return [(int(a), tuple(int(x) for x in b), float(c))
            for a, b, c in zip(jj[sel], nn[sel], dist[sel])]


def _pick_pair(coord, box, rcut, atom, neighbor, window):
    """Choose (i, j, image n, d = x_j + n h - x_i) for the cutoff-continuity check."""
    natoms = coord.shape[0]
    reach = math.inf if box is None else rcut + max(2.0, 0.5 * rcut)
    cands = []  # (| |d| - rcut |, i, j, n, d)
    dmin_global = math.inf
    for i in range(natoms):
        jj, nn, dd, dist = _image_vectors(coord, box, i, reach)
        if dist.size:
            dmin_global = min(dmin_global, float(dist.min()))
        if atom is not None and i != atom:
            continue
        for k in range(jj.size):
            if neighbor is not None and jj[k] != neighbor:
                continue
            cands.append((abs(float(dist[k]) - rcut), i, int(jj[k]), nn[k], dd[k]))
    if not cands:
        raise ValueError("no candidate pair found for the cutoff-continuity check "
                         "(give atom= and neighbor= explicitly, or check the structure)")
    cands.sort(key=lambda c: c[0])
    if atom is not None and neighbor is not None:
        _, i, j, n, d = cands[0]  # the image of j closest to rcut
        return i, j, n, d, {"selection": "given pair; image of the neighbour closest to rcut"}
    for _, i, j, n, d in cands[:500]:
        dist0 = float(np.linalg.norm(d))
        u = d / dist0
        moved = _placed(coord, j, u, dist0, rcut)
        if _other_crossings(moved, box, i, j, n, window, rcut):
            continue
        _, _, _, dj = _image_vectors(moved, box, j, max(rcut, 1.0) if box is not None else math.inf)
        if dj.size and math.isfinite(dmin_global) and dj.min() < 0.8 * dmin_global:
            continue  # moving j would crowd another atom
        return i, j, n, d, {"selection": "automatic: isolated pair closest to rcut"}
    raise ValueError("could not find an isolated pair near rcut (every candidate has another "
                     "pair of the moved atom within the crossing window or would overlap "
                     "another atom); give atom= and neighbor= explicitly")


def check_cutoff_continuity(calc: Calculator, coord, box=None, rcut=None, atom=None, neighbor=None,
                            deltas=(1e-3, 1e-4, 1e-5), tol: float = 1e-8, *,
                            roundoff: float = 1e-12, min_order: float = 1.0) -> list[CheckResult]:
    r"""Continuity of energy and forces as one neighbour crosses the cutoff radius.

    What it measures.  Atom j (``neighbor``) is moved along the direction of the pair vector
    :math:`\mathbf d = \mathbf x_j + \mathbf n h - \mathbf x_i` (i = ``atom``) so that
    :math:`|\mathbf d| = s`; nothing else moves.  For each δ in ``deltas`` the calculator is
    evaluated at :math:`s = r_c \mp k\delta`, k = 1, 2, 3, and the one-sided limits at
    :math:`s = r_c` are extrapolated quadratically from each side,

    .. math::

        E^{\mp}(r_c) \approx 3E(r_c \mp \delta) - 3E(r_c \mp 2\delta) + E(r_c \mp 3\delta),

    (the same for every force component).  The *jump* is
    :math:`J_E(\delta) = |E^+ - E^-|` (eV) and :math:`J_F(\delta) = \max|F^+ - F^-|` (eV/Å).
    Extrapolation removes the smooth O(δ) change caused by moving j relative to its other
    neighbours, so for a smooth calculator J is O(δ³) (a switched pair term itself is O(δ³) in
    energy, O(δ²) in forces, which quadratic extrapolation reduces further), while a hard cutoff
    gives J_E ≈ |E_pair(r_c)| and J_F ≈ |F_pair(r_c)| for every δ, and an energy-shifted but
    not force-shifted cutoff gives a constant J_F.

    Returns two :class:`CheckResult`: ``"cutoff/energy"`` and ``"cutoff/forces"``.  Each passes
    when (a) the jump at the smallest δ, relative to max |E| (resp. max |F|) over the evaluated
    configurations, is ≤ ``tol``, and (b) the jumps decrease: between successive δ the observed
    order :math:`\log(J_k/J_{k+1})/\log(\delta_k/\delta_{k+1})` is ≥ ``min_order`` unless
    :math:`J_{k+1}` is at the round-off floor (``roundoff`` × scale).  ``order`` is the last
    order measured above round-off (None if every jump after the first is at round-off);
    ``details["orders"]`` lists them all (≈ 3 for deepmd-kit's C² switch, ≈ 0 for a jump).

    Pair choice.  With ``atom`` and ``neighbor`` given, the periodic image of ``neighbor`` whose
    distance to ``atom`` is closest to ``rcut`` is used.  Otherwise (either or both omitted) the
    pair (and image) closest to ``rcut`` is picked among those whose moved atom has no other pair
    within ±max(30·max δ, 0.01 Å) of rcut and would not come closer to another atom than 0.8 × the
    structure's smallest interatomic distance.  ``details`` records the pair, image, original
    distance, per-δ jumps, and any other pairs of j crossing rcut during the move.

    For a symref model: ``check_cutoff_continuity(as_calculator(model, atype), coord, box,
    rcut=model.rcut)``.  The move changes the neighbour count of i and j by one, which must fit in
    ``sel``.

    Parameters
    ----------
    calc : calculator.  coord : (natoms, 3) Å.  box : (3, 3) or None.
    rcut : cutoff radius (Å) of the calculator; required.
    atom, neighbor : atom indices (optional, see above).
    deltas : ≥ 2 strictly decreasing positive distances (Å), 3·max(deltas) < rcut.
    tol : relative tolerance on the jumps at the smallest δ.
    """
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    natoms = coord.shape[0]
    if rcut is None:
        raise ValueError("rcut (the calculator's cutoff radius, Å) is required")
    rcut = _positive(rcut, "rcut")
    tol = _positive(tol, "tol")
    roundoff = _positive(roundoff, "roundoff")
    if isinstance(min_order, bool) or not isinstance(min_order, _REAL_TYPES):
        raise TypeError("min_order must be a number")
    if natoms < 2:
        raise ValueError("cutoff continuity needs at least 2 atoms")
    for label, idx in (("atom", atom), ("neighbor", neighbor)):
        if idx is not None:
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
                raise TypeError(f"{label} must be an int atom index or None, "
                                f"got {type(idx).__name__}")
            if not 0 <= idx < natoms:
                raise ValueError(f"{label}={idx} out of range for {natoms} atoms")
    if atom is not None and neighbor is not None and atom == neighbor:
        raise ValueError("atom and neighbor must be different atoms")
    try:
        dl = [float(_positive(x, "deltas")) for x in deltas]
    except TypeError as exc:
        raise TypeError(f"deltas must be a sequence of positive numbers ({exc})") from None
    if len(dl) < 2:
        raise ValueError("deltas needs at least two values to judge convergence")
    if any(b >= a for a, b in zip(dl, dl[1:])):
        raise ValueError(f"deltas must be strictly decreasing, got {dl}")
    if 3.0 * dl[0] >= rcut:
        raise ValueError(f"3 * max(deltas) = {3 * dl[0]} must be smaller than rcut = {rcut}")
    window = max(30.0 * dl[0], 1e-2)

    i, j, n_pair, d, info = _pick_pair(coord, box, rcut, atom, neighbor, window)
    dist0 = float(np.linalg.norm(d))
    u = d / dist0
    crossings = _other_crossings(_placed(coord, j, u, dist0, rcut), box, i, j, n_pair,
                                 3.0 * dl[0], rcut)

    evals = []  # per delta: (E_in[3], E_out[3], F_in[3], F_out[3])
    emax, fmax = 0.0, 0.0
    for dlt in dl:
        e_in, e_out, f_in, f_out = [], [], [], []
        for k in (1, 2, 3):
            for sign, es, fs in ((-1.0, e_in, f_in), (1.0, e_out, f_out)):
                e, f, _ = _evaluate(calc, _placed(coord, j, u, dist0, rcut + sign * k * dlt), box)
                es.append(e)
                fs.append(f)
                emax = max(emax, abs(e))
                fmax = max(fmax, float(np.max(np.abs(f))))
        evals.append((e_in, e_out, f_in, f_out))
    escale, e_abs = (emax, False) if emax > 0 else (1.0, True)
    fscale, f_abs = (fmax, False) if fmax > 0 else (1.0, True)

    def extrap(v):
        return 3.0 * v[0] - 3.0 * v[1] + v[2]

    jumps_e = [abs(extrap(eo) - extrap(ei)) for ei, eo, _, _ in evals]
    jumps_f = [float(np.max(np.abs(extrap(fo) - extrap(fi)))) for _, _, fi, fo in evals]

    common = {
        "atom": i, "neighbor": j, "image": tuple(int(x) for x in n_pair), "distance0": dist0,
        "direction": u, "deltas": tuple(dl), "other_crossings": crossings, **info,
    }

    def judge(name, jumps, scale, absolute):
        floor = roundoff * scale
        orders = []
        decreasing = True
        for k in range(len(dl) - 1):
            a, b = jumps[k], jumps[k + 1]
            if b <= floor:
                orders.append(None)
                continue
            p = math.log(a / b) / math.log(dl[k] / dl[k + 1]) if a > 0 else -math.inf
            orders.append(p)
            if p < min_order:
                decreasing = False
        rel = jumps[-1] / scale
        passed = bool(rel <= tol and decreasing)
        det = dict(common)
        det.update(jumps=list(jumps), rel_jumps=[x / scale for x in jumps], orders=orders,
                   decreasing=decreasing, scale=scale, scale_is_absolute=absolute,
                   roundoff_floor=floor)
        measured = [p for p in orders if p is not None]
        return CheckResult(name=name, max_abs_err=float(jumps[-1]), max_rel_err=float(rel), tol=tol,
                           passed=passed, details=det, order=measured[-1] if measured else None)

    return [judge("cutoff/energy", jumps_e, escale, e_abs),
            judge("cutoff/forces", jumps_f, fscale, f_abs)]


# ============================================================================ point clouds
def _transform_clouds(clouds, fn):
    out = []
    for c in clouds:
        get = (c.get if isinstance(c, dict) else (lambda k, c=c: getattr(c, k, None)))
        x, u, s = (None if get(k) is None else np.asarray(get(k), dtype=np.float64)
                   for k in ("positions", "vectors", "scalars"))
        x, u, s = fn(x, u, s)
        out.append({"positions": x, "vectors": u, "scalars": s})
    return out


def check_cloud_symmetry(predict, clouds, output: str = "scalar", rng=None,
                         tol: float = 1e-12, *, translation_scale: float = 10.0) -> list[CheckResult]:
    r"""Symmetries of a point-cloud model ``predict(clouds) -> y`` (one row per cloud).

    ``clouds``: a list of ``{"positions": (n, d), "vectors": (n, k, d) or None,
    "scalars": (n, s) or None}`` (positions relative to each cloud's query point).
    ``output``: ``"scalar"`` (y invariant), ``"vector"`` (y (N, d) ↦ y Qᵀ, i.e.
    :math:`\mathbf y \mapsto Q\mathbf y`) or ``"tensor"`` (Y (N, d, d) ↦ Q Y Qᵀ).
    Checks: ``rotation`` (Haar-random Q, det +1) and ``reflection`` (det −1) applied to
    positions and vectors; ``permutation`` (points of every cloud shuffled);
    ``translation`` (positions made absolute with a random query point, everything
    shifted by a random vector of length ~``translation_scale``, then made relative
    again: checks that rounding in the relative coordinates stays at round-off).
    Relative error = max |difference| / max |y|.
    """
    if output not in ("scalar", "vector", "tensor"):
        raise ValueError(f"output must be 'scalar', 'vector' or 'tensor', got {output!r}")
    gen = _as_rng(rng)
    y = np.asarray(predict(clouds), dtype=np.float64)
    d = np.asarray(clouds[0]["positions"] if isinstance(clouds[0], dict)
                   else clouds[0].positions).shape[1]
    results = []
    for name, det in (("rotation", 1), ("reflection", -1)):
        q = _random_orthogonal(gen, det, d)

        def rot(x, u, s, q=q):
            return x @ q.T, (None if u is None else u @ q.T), s

        yq = np.asarray(predict(_transform_clouds(clouds, rot)), dtype=np.float64)
        expect = y if output == "scalar" else (y @ q.T if output == "vector" else
                                               np.einsum("ab,nbc,dc->nad", q, y, q))
        results.append(_compare(f"{name}/{output}", yq, expect, y, tol, {"Q": q, "dim": d}))
    perms = []

    def perm(x, u, s):
        p = gen.permutation(len(x))
        perms.append(p)
        return x[p], (None if u is None else u[p]), (None if s is None else s[p])

    yp = predict(_transform_clouds(clouds, perm))
    results.append(_compare(f"permutation/{output}", yp, y, y, tol, {"dim": d}))
    x0 = gen.standard_normal(d) * translation_scale
    shift = gen.standard_normal(d) * translation_scale

    def trans(x, u, s):
        return ((x + x0) + shift) - (x0 + shift), u, s

    yt = predict(_transform_clouds(clouds, trans))
    results.append(_compare(f"translation/{output}", yt, y, y, tol,
                            {"query_point": x0, "shift": shift}))
    return results


def check_cloud_adaptivity(predict, sample, sizes=(25, 150, 600), tol: float = 0.1) -> CheckResult:
    """Predictions for the same problems sampled with clouds of different sizes.

    ``sample(n)`` returns the clouds of a fixed set of problems, each sampled with
    n points (e.g. ``lambda n: symref.synthetic.nonlocal_clouds(100, n, seed=3)[0]``);
    ``predict(clouds)`` the model's outputs.  The predictions at each size are
    compared with those at the largest one: relative difference = RMS difference /
    standard deviation of the largest-size predictions.  Passes when the
    difference at the second-largest size is ≤ ``tol`` (a model that averages over
    its cloud converges like n^-1/2; one that sums, or depends on n, does not).
    ``details["rel_diff"]`` lists the difference at every size.
    """
    sizes = sorted(int(n) for n in sizes)
    if len(sizes) < 2 or sizes[0] < 1:
        raise ValueError(f"sizes must hold at least two positive cloud sizes, got {sizes}")
    preds = [np.asarray(predict(sample(n)), dtype=np.float64) for n in sizes]
    ref = preds[-1]
    spread = float(np.std(ref)) or 1.0
    diffs = [float(np.sqrt(np.mean((p - ref) ** 2))) / spread for p in preds[:-1]]
    rel = diffs[-1]
    return CheckResult(name="cloud_adaptivity", max_abs_err=rel * spread, max_rel_err=rel, tol=tol,
                       passed=bool(rel <= tol),
                       details={"sizes": sizes, "rel_diff": dict(zip(sizes[:-1], diffs)),
                                "spread": spread})


def check_tensor_symmetry(fn, coord, box=None, atype=None, output: str = "vector", rng=None,
                          tol: float = 1e-12) -> list[CheckResult]:
    """Equivariance of a system property ``fn(coord (natoms, 3), box or None) -> y``
    with y a vector (3,) (``output="vector"``: y ↦ Q y) or a 3 x 3 tensor
    (``"tensor"``: Y ↦ Q Y Qᵀ); invariant under translation, permutation of atoms
    of equal type (``atype``; all atoms alike when None) and, with a cell,
    wrapping atoms by lattice vectors.  Q: Haar-random, det +1 and det −1."""
    if output not in ("vector", "tensor"):
        raise ValueError(f"output must be 'vector' or 'tensor', got {output!r}")
    gen = _as_rng(rng)
    coord = _as_coord(coord)
    box = _as_box(box)
    atype = np.zeros(len(coord), dtype=int) if atype is None else _as_atype(atype, len(coord))
    y = np.asarray(fn(coord, box), dtype=np.float64)
    results = []
    for name, det in (("rotation", 1), ("reflection", -1)):
        q = _random_orthogonal(gen, det)
        yq = np.asarray(fn(coord @ q.T, None if box is None else box @ q.T), dtype=np.float64)
        expect = q @ y if output == "vector" else q @ y @ q.T
        results.append(_compare(f"{name}/{output}", yq, expect, y, tol, {"Q": q}))
    shift = gen.standard_normal(3) * 2.0
    results.append(_compare(f"translation/{output}", fn(coord + shift, box), y, y, tol,
                            {"shift": shift}))
    perm = np.arange(len(coord))
    for t in np.unique(atype):
        idx = np.nonzero(atype == t)[0]
        perm[idx] = gen.permutation(idx)
    results.append(_compare(f"permutation/{output}", fn(coord[perm], box), y, y, tol,
                            {"permutation": perm}))
    if box is not None:
        n = gen.integers(-2, 3, size=(len(coord), 3))
        results.append(_compare(f"wrapping/{output}", fn(coord + n @ box, box), y, y, tol,
                                {"image_shifts": n}))
    return results


def check_gradient_fd(fun, theta, steps=(1e-4, 5e-5), ncomponents: int | None = 40, rng=None,
                      tol: float = 1e-6, *, roundoff: float = 1e-10,
                      name: str = "gradient_fd", components=None) -> CheckResult:
    r"""``fun(theta) -> (value, gradient)`` against central finite differences.

    ``components`` (indices), or else ``ncomponents`` random components of ``theta``
    (all when None), are perturbed by
    each of the two ``steps``; the result holds both errors, the observed order
    (≈ 2 for a correct gradient unless both errors are at round-off) and the
    Richardson-extrapolated relative error (compared with ``tol``), relative to
    max |gradient|.  ``fun`` is left evaluated at ``theta`` on return.
    """
    h1, h2 = _as_steps(steps, "steps")
    theta = np.array(theta, dtype=np.float64)
    val, grad = fun(theta)
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != theta.shape:
        raise ValueError(f"gradient has shape {grad.shape}, parameters {theta.shape}")
    gen = _as_rng(rng)
    if components is not None:
        idx = np.unique(np.asarray(components, dtype=np.int64))
        if idx.size == 0 or idx[0] < 0 or idx[-1] >= theta.size:
            raise ValueError(f"components must be indices in [0, {theta.size})")
    elif ncomponents is None or ncomponents >= theta.size:
        idx = np.arange(theta.size)
    else:
        idx = np.sort(gen.choice(theta.size, size=int(ncomponents), replace=False))
    fd = np.empty((2, len(idx)))
    emag = abs(float(val))
    for k, h in enumerate((h1, h2)):
        for m, i in enumerate(idx):
            tp, tm = theta.copy(), theta.copy()
            tp[i] += h
            tm[i] -= h
            vp, vm = float(fun(tp)[0]), float(fun(tm)[0])
            emag = max(emag, abs(vp), abs(vm))
            fd[k, m] = (vp - vm) / (2.0 * h)
    fun(theta)
    # errors are relative to the whole gradient's size, not the sampled components'
    res = _fd_result(name, grad[idx], fd, h1, h2, tol, roundoff, emag,
                     {"components": idx, "n_parameters": theta.size})
    scale, _ = _scale(grad)
    res.max_rel_err = res.max_abs_err / scale
    res.details["scale"] = scale
    res.passed = bool(res.max_rel_err <= tol and res.details["order_ok"])
    return res


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
