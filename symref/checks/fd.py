r"""Finite-difference checks: forces, virial, and any gradient of a parameter vector.

Each compares an analytic derivative with central differences at two step
sizes; the observed order (≈ 2) and the Richardson-extrapolated error decide
(:func:`_fd_result`, shared by the three).
"""
from __future__ import annotations

import math

import numpy as np

from symref.checks.common import (_EPS, _ROUNDOFF_FACTOR, Calculator, CheckResult, _as_box,
                                  _as_coord, _as_rng, _as_steps, _check_calc, _evaluate,
                                  _positive, _scale)


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


def _fd_inputs(calc, coord, box, steps, tol, roundoff):
    """Validated inputs of the calculator FD checks: ``(coord, box, (h1, h2), tol, roundoff)``."""
    _check_calc(calc)
    coord = _as_coord(coord)
    box = _as_box(box)
    steps = _as_steps(steps, "steps")
    return coord, box, steps, _positive(tol, "tol"), _positive(roundoff, "roundoff")


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
    calc : calculator ``calc(coord, box) -> dict`` (see :mod:`symref.checks`).
    coord : (natoms, 3) Å.  box : (3, 3) rows are cell vectors, or None (molecule).
    steps : (h1, h2) in Å, h1 > h2 > 0.
    natoms_sample : int or None; FD on this many randomly chosen atoms (all atoms if None).
    rng : None, int seed or numpy Generator (used for the atom sample).
    tol : relative tolerance on the Richardson error.
    roundoff : relative error level treated as converged (order not tested below it).

    Cost: ``2 · 2 · 3 · n_sampled`` energy evaluations.
    """
    coord, box, (h1, h2), tol, roundoff = _fd_inputs(calc, coord, box, steps, tol, roundoff)
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
    coord, box, (s1, s2), tol, roundoff = _fd_inputs(calc, coord, box, steps, tol, roundoff)
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
