r"""Steady incompressible Navier–Stokes flow through the hill channels (stream function–vorticity).

**Equations.**  With :math:`u = \psi_y`, :math:`v = -\psi_x` the continuity equation
holds identically, and the curl of the momentum equation eliminates the pressure
(including the mean pressure gradient that drives the flow):

.. math::  -\Delta\psi = \omega, \qquad u\cdot\nabla\omega = \nu\,\Delta\omega .

Boundary conditions: periodic in x; on each wall :math:`\psi` is constant (no
penetration) and :math:`\partial\psi/\partial n = 0` (no slip).  The volume flux is
prescribed by the wall values, :math:`\psi = 0` on the bottom and :math:`\psi = Q` on
the top wall; the mean pressure gradient is whatever keeps that flux (it is not
needed for u and is not computed).  Two conditions on :math:`\psi` and none on
:math:`\omega` per wall: the no-slip condition determines the wall vorticity.

**Reynolds number** :math:`Re_H = U_b h_0/\nu` on the hill height and the bulk
velocity at the crest, :math:`U_b = Q/(H - h_0)` (the benchmark's definition), so
:math:`\nu = Q/((H - h_0) Re_H)`: the flow is solved in the transport study's units
(unit scalar diffusivity, volume flux ``flux``), and its shape depends on
:math:`Re_H` alone.

**Discretisation** on the vertices of the boundary-fitted grid of
:mod:`~symref.transport.flow` (unknowns: :math:`\psi` at the interior vertices,
:math:`\omega` at all vertices, walls included).

* Interior vertices, both Laplacians: the conservative vertex-centred finite-volume
  operator of :func:`~symref.transport.flow.diffusion_operator` (second order),
  :math:`\oint\nabla\psi\cdot n + V\omega = 0` and
  :math:`\nu\oint\nabla\omega\cdot n - V\,u\cdot\nabla\omega = 0`, with
  :math:`V = a\,d\xi\,d\eta` (:math:`a = H - h` is the Jacobian).
* Advection in computational coordinates: since the mapping has Jacobian a,
  :math:`u\cdot\nabla\omega = \psi_y\omega_x - \psi_x\omega_y = (\psi_\eta\omega_\xi -
  \psi_\xi\omega_\eta)/a`, central differences (second order), so
  :math:`V\,u\cdot\nabla\omega = d\xi\,d\eta\,(\psi_\eta\omega_\xi - \psi_\xi\omega_\eta)`.
* Wall vertices: :math:`\omega = -\Delta\psi` at the wall.  Along a wall ψ is constant
  and :math:`\psi_\eta = 0` (no slip), so :math:`\psi_\xi = \psi_{\xi\xi} = \psi_{\xi\eta} = 0`
  there and :math:`\Delta\psi = (\eta_x^2 + \eta_y^2)\,\psi_{\eta\eta} = (g_{22}/a)\,\psi_{\eta\eta}`,
  with :math:`g_{22}/a = (1 + h'^2)/a^2` on the bottom and :math:`1/a^2` on the top wall.
  :math:`\psi_{\eta\eta}` by Jensen's one-sided formula with :math:`\psi_\eta = 0`,
  :math:`\psi_{\eta\eta} \approx (-7\psi_0 + 8\psi_1 - \psi_2)/(2\,d\eta^2)` (second order;
  Thom's :math:`2(\psi_1 - \psi_0)/d\eta^2` is first order).

**Newton's method** on the whole system :math:`R(\psi, \omega) = 0`: the only nonlinear
term is the bilinear advection, whose exact Jacobian is
:math:`d\xi\,d\eta\,(\mathrm{diag}(\psi_\eta) D_\xi - \mathrm{diag}(\psi_\xi) D_\eta)` in ω and
:math:`d\xi\,d\eta\,(\mathrm{diag}(\omega_\xi) D_\eta - \mathrm{diag}(\omega_\eta) D_\xi)` in ψ;
each step is one SciPy sparse LU solve.  The start is the Stokes flow (one linear
solve); if Newton does not converge at the target Reynolds number it continues in
:math:`Re` from the last converged flow, halving the step on failure.

**Divergence.**  The transport solver's face fluxes are differences of ψ between
vertices (:func:`~symref.transport.flow.advection_operator`), so the discrete
divergence of the viscous flow is zero to round-off, whatever the Newton tolerance.

**Separation.**  On the bottom wall :math:`\omega = -\partial u_t/\partial n` has the
sign of the reversed flow: attached flow has :math:`\omega < 0`; separation and
reattachment points are the zero crossings of the wall vorticity (− to + and + to −),
by linear interpolation between wall vertices (:func:`wall_crossings`).

Verification (:func:`verify_navier_stokes`): manufactured ψ and ω in (ξ, η) with
ψ satisfying the wall conditions, forcing terms added to both equations (and to the
wall rows, which are the ψ equation at the wall), observed orders of ψ, ω and u, v.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from symref.transport.flow import (Flow, Grid, HillChannel, _cell_gradient, advection_operator,
                                   diffusion_operator, discrete_divergence, velocity_from_psi)

# axis names: nx vertices along the channel (ξ, periodic), ny + 1 across (η, wall to wall);
# unknowns z = [ψ at the interior vertices ((ny - 1) nx), ω at all vertices ((ny + 1) nx)].


@dataclass
class NavierStokesFlow(Flow):
    """A steady viscous flow: the :class:`~symref.transport.flow.Flow` fields plus the
    vorticity, the Reynolds number, Newton's record and the separated region."""

    omega_v: np.ndarray  # (ny+1) x nx, vorticity at the vertices
    reynolds: float
    newton_iterations: int  # at the target Re (continuation steps not counted)
    continuation: list  # Reynolds numbers solved on the way
    separation: list  # x of the bottom-wall separation points
    reattachment: list  # x of the bottom-wall reattachment points


@dataclass
class _System:
    """The discrete operators of one grid (everything but the advection is linear)."""

    grid: Grid
    L: sp.csr_matrix  # M x N: ∮∇f·n of the interior vertices from all vertex values
    Dxi: sp.csr_matrix  # M x N: central ∂ξ at the interior vertices
    Deta: sp.csr_matrix  # M x N: central ∂η at the interior vertices
    Jw: sp.csr_matrix  # 2nx x N: (g22/a) ψ_ηη (Jensen, ψ_η = 0) at the wall vertices
    area: np.ndarray  # M, control volumes of the interior vertices


def _system(grid: Grid) -> _System:
    nx, ny = grid.nx, grid.ny
    M, N = (ny - 1) * nx, (ny + 1) * nx
    zeros = np.zeros(nx)
    A, _, W = diffusion_operator(grid.geom, nx, ny - 1, nodes="vertices",
                                 wall_values=(zeros, zeros), wall_matrix=True)
    L = sp.hstack([W[:, :nx], A, W[:, nx:]]).tocsr()
    i = np.arange(nx)
    rows = (np.arange(1, ny)[:, None] - 1) * nx + i  # (ny-1) x nx
    jj = np.arange(1, ny)[:, None] + 0 * i
    ii = np.broadcast_to(i, rows.shape)

    def diff(dj, di, h):
        r = np.concatenate([rows.ravel(), rows.ravel()])
        c = np.concatenate([((jj + dj) * nx + (ii + di) % nx).ravel(),
                            ((jj - dj) * nx + (ii - di) % nx).ravel()])
        v = np.concatenate([np.full(M, 0.5 / h), np.full(M, -0.5 / h)])
        return sp.csr_matrix((v, (r, c)), shape=(M, N))

    xi = i * grid.dxi
    h, dh = grid.geom.wall(xi)
    a = grid.geom.height - h
    w = 0.5 / grid.deta ** 2
    kb, kt = (1.0 + dh * dh) / a ** 2, 1.0 / a ** 2
    r = np.concatenate([i] * 3 + [i + nx] * 3)
    c = np.concatenate([i, nx + i, 2 * nx + i, ny * nx + i, (ny - 1) * nx + i, (ny - 2) * nx + i])
    v = np.concatenate([-7 * w * kb, 8 * w * kb, -w * kb, -7 * w * kt, 8 * w * kt, -w * kt])
    Jw = sp.csr_matrix((v, (r, c)), shape=(2 * nx, N))
    area = np.tile(a * (grid.dxi * grid.deta), ny - 1)
    return _System(grid, L, diff(0, 1, grid.dxi), diff(1, 0, grid.deta), Jw, area)


def _residual_and_jacobian(sysm: _System, z, flux: float, nu: float, forcing=None,
                           advection: float = 1.0):
    """R(z) and dR/dz of the discrete system (module docstring); forcing = (fψ, fω)
    at all vertices (manufactured solutions) or None."""
    grid = sysm.grid
    nx, ny = grid.nx, grid.ny
    M, N = (ny - 1) * nx, (ny + 1) * nx
    psi = np.concatenate([np.zeros(nx), z[:M], np.full(nx, flux)])  # N
    om = z[M:]  # N
    inner = slice(nx, ny * nx)
    walls = np.r_[0:nx, ny * nx:N]
    dd = grid.dxi * grid.deta * advection
    psi_xi, psi_eta = sysm.Dxi @ psi, sysm.Deta @ psi  # M
    om_xi, om_eta = sysm.Dxi @ om, sysm.Deta @ om  # M
    r_psi = sysm.L @ psi + sysm.area * om[inner]
    r_om = nu * (sysm.L @ om) - dd * (psi_eta * om_xi - psi_xi * om_eta)
    r_w = om[walls] + sysm.Jw @ psi
    if forcing is not None:
        f_psi, f_om = (np.asarray(f, dtype=np.float64).ravel() for f in forcing)
        r_psi = r_psi + sysm.area * f_psi[inner]
        r_om = r_om + sysm.area * f_om[inner]
        r_w = r_w + f_psi[walls]
    R = np.concatenate([r_psi, r_om, r_w])
    sel_inner = sp.eye(N, format="csr")[inner]
    sel_walls = sp.eye(N, format="csr")[walls]
    cols = slice(nx, ny * nx)  # ψ unknowns among all vertices
    adv_om = sp.diags(psi_eta) @ sysm.Dxi - sp.diags(psi_xi) @ sysm.Deta
    adv_psi = sp.diags(om_xi) @ sysm.Deta - sp.diags(om_eta) @ sysm.Dxi
    J = sp.bmat([[sysm.L[:, cols], sp.diags(sysm.area) @ sel_inner],
                 [-dd * adv_psi[:, cols], nu * sysm.L - dd * adv_om],
                 [sysm.Jw[:, cols], sel_walls]], format="csc")
    return R, J


def _newton(sysm: _System, z, flux, nu, forcing=None, tol=1e-11, max_iter=25):
    """Newton steps until the update is below ``tol`` relative to the solution; returns
    (z, iterations) or raises RuntimeError with the history of update sizes."""
    history = []
    for it in range(1, max_iter + 1):
        R, J = _residual_and_jacobian(sysm, z, flux, nu, forcing)
        dz = spla.spsolve(J, -R)
        if not np.all(np.isfinite(dz)):
            raise RuntimeError(f"Newton step {it} is not finite (update history {history})")
        z = z + dz
        history.append(float(np.abs(dz).max() / max(np.abs(z).max(), 1e-300)))
        if history[-1] <= tol:
            return z, it
        if it >= 4 and history[-1] > 0.5 * history[-2] and history[-1] > 1e-3:
            break  # not converging (quadratic convergence would have set in)
    raise RuntimeError(f"Newton did not converge in {it} iterations (relative updates {history})")


def _stokes(sysm: _System, flux, nu, forcing=None):
    """The Stokes flow (advection off): one linear solve."""
    grid = sysm.grid
    n = 2 * grid.ny * grid.nx
    R, J = _residual_and_jacobian(sysm, np.zeros(n), flux, nu, forcing, advection=0.0)
    return spla.spsolve(J, -R)


def _continuation(sysm: _System, flux, nu, reynolds, forcing=None, tol=1e-11):
    """Newton at ``reynolds`` from the Stokes flow, continuing in Re (from the last
    converged flow, step halved on failure) when it does not converge; ``nu(re)``
    gives the viscosity.  Returns (z, Newton iterations at the target, Re path)."""
    z = _stokes(sysm, flux, nu(reynolds), forcing)
    done, step, path = 0.0, float(reynolds), []
    while True:
        target = min(reynolds, done + step)
        try:
            z_new, its = _newton(sysm, z, flux, nu(target), forcing, tol=tol)
        except RuntimeError:
            step *= 0.5
            if step < reynolds / 64:
                grid = sysm.grid
                raise RuntimeError(f"no steady flow reached at Re_H = {reynolds:g} on {grid.nx} x "
                                   f"{grid.ny}: continuation stalled after Re_H = {done:g} "
                                   f"(path {path})") from None
            continue
        z, done = z_new, target
        path.append(target)
        if done >= reynolds:
            return z, its, path
        step *= 1.5


def wall_crossings(omega_wall: np.ndarray, dx: float):
    """Separation (ω: − to +) and reattachment (+ to −) points along a periodic wall,
    linear interpolation between vertices at x = i dx; two sorted lists."""
    w = np.asarray(omega_wall, dtype=np.float64)
    nxt = np.roll(w, -1)
    sep, rea = [], []
    for i in np.flatnonzero(np.sign(w) != np.sign(nxt)):
        if w[i] == 0 and nxt[i] == 0:
            continue
        x = (i + w[i] / (w[i] - nxt[i])) * dx
        (sep if nxt[i] > w[i] else rea).append(float(x % (len(w) * dx)))
    return sorted(sep), sorted(rea)


def solve_navier_stokes(geom: HillChannel, nx: int = 144, ny: int = 48, flux: float = 30.0,
                        reynolds: float = 100.0, tol: float = 1e-11) -> NavierStokesFlow:
    r"""Steady viscous flow with volume flux ``flux`` at :math:`Re_H` = ``reynolds``.

    Returns a :class:`NavierStokesFlow` usable wherever a potential
    :class:`~symref.transport.flow.Flow` is (the transport solver, the clouds).
    Raises RuntimeError when the continuation in Re stalls (a Reynolds number
    without a steady solution on this grid).
    """
    grid = Grid(geom, nx, ny)
    for name, v in (("flux", flux), ("reynolds", reynolds)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    flux, reynolds = float(flux), float(reynolds)
    bulk = flux / (geom.height - geom.hill)

    def nu(re):
        return bulk * geom.hill / re

    sysm = _system(grid)
    z, its, path = _continuation(sysm, flux, nu, reynolds, tol=tol)
    M = (ny - 1) * nx
    psi_v = np.vstack([np.zeros(nx), z[:M].reshape(ny - 1, nx), np.full(nx, flux)])
    omega_v = z[M:].reshape(ny + 1, nx)
    R, _ = _residual_and_jacobian(sysm, z, flux, nu(reynolds))
    _, F, G = advection_operator(psi_v, grid)
    div = np.abs(discrete_divergence(F, G)).max() / max(np.abs(F).max(), np.abs(G).max())
    velocity = velocity_from_psi(psi_v, grid)
    sep, rea = wall_crossings(omega_v[0], grid.dxi)
    scale = max(np.abs(sysm.L @ np.concatenate([np.zeros(nx), z[:M], np.full(nx, flux)])).max(),
                1e-300)
    return NavierStokesFlow(grid, flux, psi_v, velocity, _cell_gradient(velocity, grid),
                            float(div), float(np.abs(R).max() / scale), omega_v, reynolds, its,
                            path, sep, rea)


# ----------------------------------------------------------------------------- verification
def _mapped_laplacian(geom: HillChannel, xi, eta, F):
    r""":math:`\Delta f` of :math:`f(x, y) = F(\xi, \eta)` from F's derivatives
    ``F = (F_ξ, F_η, F_ξξ, F_ξη, F_ηη)``:
    :math:`\Delta f = F_{\xi\xi} + 2\eta_x F_{\xi\eta} + (\eta_x^2 + \eta_y^2) F_{\eta\eta}
    + \eta_{xx} F_\eta`, :math:`\eta_x = -h'(1-\eta)/a`, :math:`\eta_y = 1/a`,
    :math:`\eta_{xx} = -h''(1-\eta)/a - 2h'^2(1-\eta)/a^2`."""
    h, dh, d2h = geom.wall_derivatives(xi)
    a = geom.height - h
    ex, ey = -dh * (1 - eta) / a, 1.0 / a
    exx = -d2h * (1 - eta) / a - 2 * dh * dh * (1 - eta) / a ** 2
    f_xi, f_eta, f_xixi, f_xieta, f_etaeta = F
    return f_xixi + 2 * ex * f_xieta + (ex * ex + ey * ey) * f_etaeta + exx * f_eta


def manufactured_flow(xi, eta, geom: HillChannel, flux: float):
    r"""Manufactured ψ and ω in computational coordinates and their derivatives.

    :math:`\psi = Q(3\eta^2 - 2\eta^3) + 0.3\,Q\,\eta^2(1-\eta)^2\sin(k\xi + 0.3)`
    (ψ = 0 and Q on the walls, :math:`\psi_\eta = 0` there: the no-slip conditions),
    :math:`\omega = \Omega\,(\cos(k\xi + 0.5)(1 - 2\eta) + 2\eta^2)`, :math:`\Omega = Q`,
    :math:`k = 2\pi/L`.  Returns ``(psi, omega, dpsi, domega)`` with ``d* = (f_ξ, f_η,
    f_ξξ, f_ξη, f_ηη)``.
    """
    k, Q = 2 * np.pi / geom.length, float(flux)
    s, c = np.sin(k * xi + 0.3), np.cos(k * xi + 0.3)
    B = eta ** 2 * (1 - eta) ** 2
    dB = 2 * eta * (1 - eta) ** 2 - 2 * eta ** 2 * (1 - eta)
    d2B = 2 * (1 - eta) ** 2 - 8 * eta * (1 - eta) + 2 * eta ** 2
    A = 0.3 * Q
    psi = Q * (3 * eta ** 2 - 2 * eta ** 3) + A * B * s
    dpsi = (A * B * k * c, Q * (6 * eta - 6 * eta ** 2) + A * dB * s, -A * B * k * k * s,
            A * dB * k * c, Q * (6 - 12 * eta) + A * d2B * s)
    s2, c2 = np.sin(k * xi + 0.5), np.cos(k * xi + 0.5)
    om = Q * (c2 * (1 - 2 * eta) + 2 * eta ** 2)
    dom = (-Q * k * s2 * (1 - 2 * eta), Q * (-2 * c2 + 4 * eta), -Q * k * k * c2 * (1 - 2 * eta),
           2 * Q * k * s2, np.full_like(eta, 4 * Q))
    return psi, om, dpsi, dom


def _mms_navier_stokes(geom: HillChannel, nx: int, ny: int, flux: float, reynolds: float):
    """Errors (max, RMS) of ψ, ω (vertices) and u, v (cell centres) on a manufactured flow."""
    nu = nu_ref = flux / (geom.height - geom.hill) * geom.hill / reynolds
    grid = Grid(geom, nx, ny)
    xi, eta = grid.vertices()
    psi_e, om_e, dpsi, dom = manufactured_flow(xi, eta, geom, flux)
    a = geom.height - geom.wall(xi)[0]
    lap_psi = _mapped_laplacian(geom, xi, eta, dpsi)
    lap_om = _mapped_laplacian(geom, xi, eta, dom)
    adv = (dpsi[1] * dom[0] - dpsi[0] * dom[1]) / a
    forcing = (-lap_psi - om_e, adv - nu * lap_om)
    sysm = _system(grid)
    z, its, _ = _continuation(sysm, flux, lambda re: nu_ref * reynolds / re, reynolds, forcing)
    M = (ny - 1) * nx
    psi = np.vstack([np.zeros(nx), z[:M].reshape(ny - 1, nx), np.full(nx, flux)])
    om = z[M:].reshape(ny + 1, nx)
    xc, ec = grid.centres()
    _, _, dpc, _ = manufactured_flow(xc, ec, geom, flux)
    hc, dhc = geom.wall(xc)
    ac = geom.height - hc
    vel_e = np.stack([dpc[1] / ac, -(dpc[0] - dhc * (1 - ec) / ac * dpc[1])], axis=-1)
    vel = velocity_from_psi(psi, grid)
    out = {}
    for name, err in (("psi", psi - psi_e), ("omega", om - om_e),
                      ("u", vel[..., 0] - vel_e[..., 0]), ("v", vel[..., 1] - vel_e[..., 1])):
        out[name] = (float(np.abs(err).max()), float(np.sqrt((err ** 2).mean())))
    out["newton"] = its
    return out


def verify_navier_stokes(levels=(24, 48, 96), alpha: float = 1.0, flux: float = 30.0,
                         reynolds: float = 100.0) -> dict:
    """Observed orders of ψ, ω, u, v on manufactured solutions (grids ``nx x nx/3``,
    the cosine hill ``alpha``, ν of ``reynolds``); a JSON-ready dict."""
    from symref.transport.solver import observed_orders

    geom = HillChannel(alpha)
    out = {"levels": [], "newton": []}
    errs = {k: {"max": [], "rms": []} for k in ("psi", "omega", "u", "v")}
    for nx in levels:
        ny = max(3, nx // 3)
        r = _mms_navier_stokes(geom, nx, ny, flux, reynolds)
        out["levels"].append([nx, ny])
        out["newton"].append(r["newton"])
        for k in errs:
            errs[k]["max"].append(r[k][0])
            errs[k]["rms"].append(r[k][1])
    h = [1.0 / nx for nx, _ in out["levels"]]
    for k, e in errs.items():
        e["order_max"] = observed_orders(h, e["max"]).tolist()
        e["order_rms"] = observed_orders(h, e["rms"]).tolist()
    out.update(errs)
    return out


def richardson(values, ratio: float = 2.0) -> dict:
    r"""Richardson extrapolation of a quantity on three grids refined by ``ratio``.

    values f1, f2, f3 (coarse to fine): observed order
    :math:`p = \log(|f_1 - f_2|/|f_2 - f_3|)/\log r`, extrapolated value
    :math:`f_3 + (f_3 - f_2)/(r^p - 1)`, the relative change between the two finest
    grids, and whether convergence is monotone (the two differences have one sign).
    """
    f1, f2, f3 = (float(v) for v in values)
    d12, d23 = f1 - f2, f2 - f3
    if d23 == 0:
        return {"order": math.inf, "extrapolated": f3, "change_finest": 0.0, "monotone": True}
    p = math.log(abs(d12 / d23)) / math.log(ratio) if d12 != 0 else math.inf
    ext = f3 + (f3 - f2) / (ratio ** p - 1) if math.isfinite(p) and p > 0 else f3
    return {"order": p, "extrapolated": ext, "change_finest": abs(d23) / abs(f3),
            "monotone": d12 * d23 > 0}
