"""Continuity of energy and forces as one neighbour crosses the cutoff radius.

:func:`check_cutoff_continuity` and its pair search: periodic images near rcut
(``_image_vectors``), the choice of an isolated pair (``_pick_pair``) and the
other pairs that cross during the move (``_other_crossings``).
"""
from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np

from symref.checks.common import (_REAL_TYPES, Calculator, CheckResult, _as_box, _as_coord,
                                  _check_calc, _evaluate, _positive)


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
