"""What every check shares: the result type, the table, input coercion, the model adapter.

:class:`CheckResult` and :func:`format_table` / :func:`all_passed`; the coercion
helpers that turn user input into fresh float64 arrays with clear errors
(``_as_coord``, ``_as_box``, ``_as_atype``, ``_as_steps``, ``_as_rng``, ...);
``_evaluate``, which calls a calculator and validates its answer; and
:func:`as_calculator`, which wraps a symref-style model into a calculator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np

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
