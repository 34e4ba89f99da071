"""Symmetry checks of whole systems: energy, forces and virial, or a vector/tensor property.

Random orthogonal matrices (:func:`_random_orthogonal`) and the comparison row
(:func:`_compare`) are shared with the point-cloud checks.
"""
from __future__ import annotations

import numpy as np

from symref.checks.common import (Calculator, CheckResult, _as_atype, _as_box, _as_coord, _as_rng,
                                  _check_calc, _evaluate, _positive, _scale)


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
