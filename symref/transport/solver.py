r"""The transport solver, its manufactured-solution verification and the reaction term.

**Transport** (:func:`solve_transport`).  Newton's method on the discrete
residual :math:`R(c) = A c + b + V\,(S(c) + f)` with the exact sparse Jacobian
:math:`A + \mathrm{diag}(V S'(c))`, each step a sparse LU solve.
:func:`verify` checks order of accuracy with manufactured solutions.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from symref.transport.flow import (Flow, Grid, HillChannel, advection_operator, diffusion_operator,
                                   solve_flow, solve_poisson_vertices)

# axis names: nx cells along the channel (ξ, periodic), ny across (η, wall to wall);
# fields on cells are arrays (ny, nx), on vertices (ny + 1, nx).


# ----------------------------------------------------------------------------- transport
@dataclass(frozen=True)
class Reaction:
    r""":math:`S(c) = s(x) - k_1 c - k_2 c^2` with a production s from the velocity gradient.

    ``production="gradient"``: :math:`s = \beta|\nabla u|_F^2`.
    ``production="strain"``: :math:`s = \beta\max(|S|_F^2 - |\Omega|_F^2, 0)` with
    :math:`S, \Omega` the symmetric and antisymmetric parts of :math:`\nabla u` (the
    Okubo–Weiss parameter: produced where the flow is strained more than rotated, at
    the crest, the separation and the reattachment, not in the shear of every wall
    layer, where :math:`|S| = |\Omega|`).  For a potential flow (:math:`\Omega = 0`) the two
    are the same.  :math:`|S|^2 - |\Omega|^2 = \sum_{ab} \partial_b u_a\,\partial_a u_b`.
    """

    beta: float = 0.002
    k1: float = 6.0
    k2: float = 20.0
    production_kind: str = "gradient"

    def __post_init__(self):
        for name in ("beta", "k1", "k2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"Reaction.{name} must be a non-negative number, got {v!r}")
        if self.production_kind not in ("gradient", "strain"):
            raise ValueError(f"Reaction.production_kind must be 'gradient' or 'strain', got "
                             f"{self.production_kind!r}")

    def production(self, grad: np.ndarray) -> np.ndarray:
        """s from a velocity gradient (..., 2, 2), ``grad[..., a, b] = ∂u_a/∂x_b``."""
        if self.production_kind == "strain":
            return self.beta * np.maximum(np.einsum("...ab,...ba->...", grad, grad), 0.0)
        return self.beta * np.einsum("...ab,...ab->...", grad, grad)

    def source(self, c, s):
        """S(c) and dS/dc together."""
        return s - self.k1 * c - self.k2 * c * c, -self.k1 - 2.0 * self.k2 * c


@dataclass
class TransportSolution:
    flow: Flow
    reaction: Reaction
    c: np.ndarray  # ny x nx, cell centres
    production: np.ndarray  # ny x nx
    newton_iterations: int
    residual: float  # max |R| / max |V S| at the end
    mass_balance: float  # |Σ V S(c) + wall fluxes| / Σ V |S(c)|


def solve_transport(flow: Flow, reaction: Reaction = Reaction(), *, production=None,
                    forcing=None, wall_flux=None, c0=None, tol: float = 1e-12,
                    max_iter: int = 30) -> TransportSolution:
    r"""Solve :math:`\Delta c - \nabla\cdot(u c) + S(c) + f = 0` by Newton's method.

    production : s at the cells (ny, nx); default β|∇u|² of the flow.
    forcing : f at the cells (a manufactured source), default 0.
    wall_flux : outward diffusive fluxes through the wall faces (bottom, top),
        default 0 (impermeable walls).
    Newton stops when max|R| ≤ tol · max|V S(c)|; raises RuntimeError (with the
    residual history) when it does not converge in ``max_iter`` steps.
    """
    grid = flow.grid
    nx, ny = grid.nx, grid.ny
    s = reaction.production(flow.grad) if production is None else np.asarray(production, float)
    if s.shape != (ny, nx):
        raise ValueError(f"production must have shape (ny, nx) = {(ny, nx)}, got {s.shape}")
    f = np.zeros((ny, nx)) if forcing is None else np.asarray(forcing, float)
    if f.shape != (ny, nx):
        raise ValueError(f"forcing must have shape (ny, nx) = {(ny, nx)}, got {f.shape}")
    D, b = diffusion_operator(grid.geom, nx, ny, nodes="cells", wall_flux=wall_flux)
    C, _, _ = advection_operator(flow.psi_v, grid)
    A = (D - C).tocsr()
    V = grid.volumes().ravel()
    s, f = s.ravel(), f.ravel()
    c = np.zeros(nx * ny) if c0 is None else np.array(c0, dtype=np.float64).ravel()
    history = []
    for it in range(1, max_iter + 1):
        S, dS = reaction.source(c, s)
        R = A @ c + b + V * (S + f)
        scale = max(np.abs(V * S).max(), np.abs(V * f).max(), np.abs(b).max(), 1e-300)
        history.append(float(np.abs(R).max() / scale))
        if history[-1] <= tol:
            break
        J = (A + sp.diags(V * dS)).tocsc()
        c = c - spla.spsolve(J, R)
        if not np.all(np.isfinite(c)):
            raise RuntimeError(f"Newton iteration {it} produced non-finite values "
                               f"(residual history {history})")
    else:
        raise RuntimeError(f"Newton did not converge in {max_iter} iterations: relative "
                           f"residuals {history}")
    wall = 0.0 if wall_flux is None else float(np.sum(wall_flux[0]) + np.sum(wall_flux[1]))
    total = V * (S + f)
    balance = abs(total.sum() + wall) / max(np.abs(total).sum(), 1e-300)
    return TransportSolution(flow, reaction, c.reshape(ny, nx), s.reshape(ny, nx), it - 1,
                             history[-1], float(balance))


# ----------------------------------------------------------------------------- verification
def manufactured(x, y, geom: HillChannel):
    r"""A smooth periodic test function and its derivatives: ``(c, c_x, c_y, Δc)``.

    :math:`c = 1 + \tfrac12\sin(kx + 0.3)\cos(\pi y/H) + 0.2\cos(2kx)\,y/H`,
    :math:`k = 2\pi/L`; its normal derivative on the walls is not zero, so the
    wall-flux path is exercised too.
    """
    k, ky, H = 2 * np.pi / geom.length, np.pi / geom.height, geom.height
    s1, c1 = np.sin(k * x + 0.3), np.cos(k * x + 0.3)
    sy, cy = np.sin(ky * y), np.cos(ky * y)
    s2, c2 = np.sin(2 * k * x), np.cos(2 * k * x)
    c = 1.0 + 0.5 * s1 * cy + 0.2 * c2 * y / H
    cx = 0.5 * k * c1 * cy - 0.4 * k * s2 * y / H
    cyy = -0.5 * ky * s1 * sy + 0.2 * c2 / H
    lap = -0.5 * (k * k + ky * ky) * s1 * cy - 0.2 * 4 * k * k * c2 * y / H
    return c, cx, cyy, lap


def _mms_transport(geom: HillChannel, nx: int, ny: int, flux: float, reaction: Reaction):
    """Max and volume-weighted L2 errors of the transport solver on a manufactured solution."""
    grid = Grid(geom, nx, ny)
    _, eta_v = grid.vertices()
    psi_v = flux * eta_v  # ψ = Q η: constant on each wall, analytic velocity below
    xi, eta = grid.centres()
    h, dh = geom.wall(xi)
    a = geom.height - h
    velocity = np.stack([flux / a, flux * dh * (1 - eta) / a], axis=-1)
    flow = Flow(grid, flux, psi_v, velocity, np.zeros(velocity.shape + (2,)), 0.0, 0.0)
    x, y = geom.to_physical(xi, eta)
    c, cx, cy, lap = manufactured(x, y, geom)
    S, _ = reaction.source(c, 0.0)
    forcing = -(lap - (velocity[..., 0] * cx + velocity[..., 1] * cy) + S)
    xw = (np.arange(nx) + 0.5) * grid.dxi
    hw, dhw = geom.wall(xw)
    _, bx, by, _ = manufactured(xw, hw, geom)
    _, _, ty, _ = manufactured(xw, np.full(nx, geom.height), geom)
    wall_flux = (-(-dhw * bx + by) * grid.dxi, ty * grid.dxi)
    sol = solve_transport(flow, reaction, production=np.zeros((ny, nx)), forcing=forcing,
                          wall_flux=wall_flux, c0=np.ones((ny, nx)))
    err = sol.c - c
    V = grid.volumes()
    return (float(np.abs(err).max()), float(np.sqrt((V * err ** 2).sum() / V.sum())),
            sol.mass_balance, sol.newton_iterations)


def _mms_poisson(geom: HillChannel, nx: int, ny: int):
    grid = Grid(geom, nx, ny)
    xi, eta = grid.vertices()
    x, y = geom.to_physical(xi, eta)
    c, _, _, lap = manufactured(x, y, geom)
    psi, _ = solve_poisson_vertices(grid, (c[0], c[-1]), forcing=-lap[1:-1])
    err = psi - c[1:-1]
    return float(np.abs(err).max()), float(np.sqrt((err ** 2).mean()))


def observed_orders(h, err):
    """log(e_k / e_{k+1}) / log(h_k / h_{k+1}) for successive levels."""
    h, err = np.asarray(h, float), np.asarray(err, float)
    return np.log(err[:-1] / err[1:]) / np.log(h[:-1] / h[1:])


def verify(levels=(24, 48, 96, 192), alpha: float = 1.0, flux: float = 30.0,
           reaction: Reaction = Reaction(), verbose=True) -> dict:
    """Order of accuracy by manufactured solutions, and the flow's discrete divergence.

    Grids ``nx x nx/3`` for each level.  Returns a dict (JSON-ready) with the
    max and L2 errors and observed orders of the transport solver (nonlinear
    reaction, flux ``flux``, wall fluxes) and of the Poisson (stream function)
    solver, the mass balance and Newton iterations of each solve, and the
    discrete divergence of the potential flow on the finest grid.
    """
    geom = HillChannel(alpha)
    out = {"levels": [], "transport": {"max": [], "l2": [], "mass_balance": [], "newton": []},
           "poisson": {"max": [], "l2": []}}
    for nx in levels:
        ny = max(3, nx // 3)
        e_max, e_l2, mb, nit = _mms_transport(geom, nx, ny, flux, reaction)
        p_max, p_l2 = _mms_poisson(geom, nx, ny)
        out["levels"].append([nx, ny])
        for k, v in (("max", e_max), ("l2", e_l2), ("mass_balance", mb), ("newton", nit)):
            out["transport"][k].append(v)
        out["poisson"]["max"].append(p_max)
        out["poisson"]["l2"].append(p_l2)
        _say(verbose, f"verify: grid {nx:4d} x {ny:3d}  transport L2 error {e_l2:.3e} "
                      f"(max {e_max:.3e}, Newton {nit}, mass balance {mb:.1e})  "
                      f"stream function L2 error {p_l2:.3e}")
    h = [1.0 / nx for nx, _ in out["levels"]]
    for key in ("transport", "poisson"):
        for norm in ("max", "l2"):
            out[key][f"order_{norm}"] = observed_orders(h, out[key][norm]).tolist()
    flow = solve_flow(geom, *out["levels"][-1], flux=flux)
    out["flow_divergence"] = flow.divergence
    out["flow_residual"] = flow.residual
    _say(verbose, "verify: observed orders (L2) transport "
         + ", ".join(f"{o:.2f}" for o in out["transport"]["order_l2"]) + "; stream function "
         + ", ".join(f"{o:.2f}" for o in out["poisson"]["order_l2"])
         + f"; flow divergence {flow.divergence:.1e} of the largest face flux")
    return out


def _say(verbose, msg):
    if callable(verbose):
        verbose(msg)
    elif verbose:
        print(msg, file=sys.stderr, flush=True)
