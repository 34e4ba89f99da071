r"""Steady transport on a family of periodic hill channels, and VCNN closures for it.

The seed's second example: a concentration :math:`c` carried by a steady,
incompressible flow :math:`u`, diffusing and reacting,

.. math::  \Delta c - \nabla\cdot(u\,c) + S(c) = 0, \qquad
           S(c) = s(x) - k_1 c - k_2 c^2,

where the production :math:`s = \beta\,|\nabla u|_F^2` is large where the flow is
strained (at the hill).  Because :math:`c` is carried downstream before it decays,
:math:`c(x_0)` depends on the flow in a whole *upstream* region: a closure that
sees a cloud of points around :math:`x_0` can predict it, a local one cannot.

Everything is dimensionless (lengths in hill heights, unit diffusivity; the
Péclet number is the volume flux ``flux`` over the unit diffusivity).

**Geometry** (:class:`HillChannel`).  A channel of length ``L`` (periodic in x)
and height ``H`` over a bottom wall :math:`h(x) = h_0\,((1+\cos 2\pi x/L)/2)^p`,
:math:`p = 4\alpha^2`: one hill with its crest at x = 0, steeper for larger
``alpha`` (the family's geometric parameter).  The defaults ``L = 9``,
``H = 3.036``, ``h0 = 1`` are the proportions of the periodic-hill benchmark.

**Grid.**  A boundary-fitted mapping of the rectangle
:math:`(\xi, \eta) \in [0, L) \times [0, 1]`,

.. math::  x = \xi, \qquad y = h(\xi) + \eta\,a(\xi), \qquad a = H - h,

with Jacobian :math:`J = a` and :math:`\nabla\xi = (1, 0)`,
:math:`\nabla\eta = (-h'(1-\eta), 1)/a`.  A flux vector :math:`q` has the
contravariant components :math:`J\nabla\xi\cdot q` and :math:`J\nabla\eta\cdot q`;
for :math:`q = \nabla c`,

.. math::  J\nabla\xi\cdot\nabla c = g_{11} c_\xi + g_{12} c_\eta, \quad
           J\nabla\eta\cdot\nabla c = g_{12} c_\xi + g_{22} c_\eta, \quad
           g_{11} = a,\; g_{12} = -h'(1-\eta),\; g_{22} = (1 + h'^2(1-\eta)^2)/a.

**Finite volumes** (conservative, second order).  Cells of size
:math:`d\xi \times d\eta`, unknowns at cell centres.  The diffusive flux through
a face is the contravariant flux at the face centre times the face's extent in
the other computational coordinate; :math:`c_\xi, c_\eta` normal to the face by
a two-point difference, the tangential one by averaging central differences of
the two cells (one-sided second-order differences in the wall rows).  The
advective flux uses a stream function :math:`\psi` (:math:`u = \psi_y`,
:math:`v = -\psi_x`) stored at the cell *vertices*: the volume flux through a
face is exactly the difference of :math:`\psi` between its two ends, so the
discrete divergence of every cell is zero to round-off, whatever the solver
tolerance of :math:`\psi`; the face value of :math:`c` is the average of its two
cells (central, second order; cell Péclet numbers stay below 2 on the default
grids).  Walls: zero total flux (no-slip is not imposed; :math:`\psi` is
constant along each wall, so no advective flux crosses them) unless a
manufactured solution prescribes a diffusive flux.  Each face flux is added to
one cell and subtracted from the other, so the discrete equations conserve mass
exactly: :math:`\sum_{cells} V\,S(c) = -\text{(wall fluxes)}`.

**Flow** (:func:`solve_flow`).  Potential flow through the channel: :math:`\Delta\psi
= 0` with :math:`\psi = 0` on the bottom wall and :math:`\psi = Q` (the volume
flux) on the top wall, periodic in x, solved on the vertex grid with the same
diffusion operator (vertex-centred control volumes) and SciPy's sparse direct
solver.  Potential flow speeds up over the crest and slows in the valley; it is
the simplest flow of the family whose streamlines follow the geometry.  It has
no recirculation (unlike the viscous periodic-hill flow); the nonlocality the
study needs comes from advection over a reaction length (``flux / k1``) that is
comparable with the hill, which potential flow exercises as well.

**Transport** (:func:`solve_transport`).  Newton's method on the discrete
residual :math:`R(c) = A c + b + V\,(S(c) + f)` with the exact sparse Jacobian
:math:`A + \mathrm{diag}(V S'(c))`, each step a sparse LU solve.
:func:`verify` checks order of accuracy with manufactured solutions.

**Clouds on arbitrary grids** (:func:`sample_points`, :func:`build_clouds`).
The training data does not live on the solver's grid: points are drawn
uniformly in the fluid (any point set works), the fields are interpolated to
them, and around each query point :math:`x_0` the cloud is drawn from the
points inside an ellipse aligned with the local velocity
:math:`\hat u_0 = u(x_0)/|u(x_0)|`, semi-axes ``a`` (along) and ``b`` (across),
its centre shifted *upstream* by ``shift * a``.  A cloud of size n is the query
point plus n − 1 points drawn at random from the ellipse (all of them when
fewer are inside, e.g. near walls): n = 1 is a local closure.  Features per
point: the relative position :math:`x_i - x_0` (periodic minimum image) and the
velocity :math:`u_i` (vectors that rotate with the frame), and the production
:math:`s_i` (a scalar; the study feeds :math:`\log(1 + s_i/s_{ref})` because s
spans orders of magnitude over the family).  The network adds the invariants :math:`|x_i - x_0|`,
:math:`|u_i|`, :math:`(x_i - x_0)\cdot u_i`.  Nothing in the cloud construction
refers to the coordinate axes (the period is a vector that rotates with the
problem), so rotating or reflecting the whole problem gives the same clouds in
the new frame and the same predictions.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# axis names: nx cells along the channel (ξ, periodic), ny across (η, wall to wall);
# fields on cells are arrays (ny, nx), on vertices (ny + 1, nx).


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class HillChannel:
    """One member of the hill-channel family (lengths in hill heights)."""

    alpha: float = 1.0
    length: float = 9.0
    height: float = 3.036
    hill: float = 1.0

    def __post_init__(self):
        for name in ("alpha", "length", "height", "hill"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"HillChannel.{name} must be a positive finite number, got {v!r}")
        if self.hill >= self.height:
            raise ValueError(f"HillChannel.hill ({self.hill}) must be below the channel height "
                             f"({self.height})")

    @property
    def power(self) -> float:
        return 4.0 * self.alpha ** 2

    def wall(self, x):
        r"""Bottom wall :math:`h(x)` and its slope :math:`h'(x)`.

        :math:`h = h_0 w^p`, :math:`w = (1 + \cos\theta)/2`, :math:`\theta = 2\pi x/L`;
        :math:`h' = -h_0\,p\,w^{p-1}\,\tfrac{1}{2}\sin\theta\,\tfrac{2\pi}{L}`.
        """
        x = np.asarray(x, dtype=np.float64)
        theta = 2.0 * np.pi * x / self.length
        w = 0.5 * (1.0 + np.cos(theta))
        p = self.power
        h = self.hill * w ** p
        dh = -self.hill * p * w ** (p - 1.0) * 0.5 * np.sin(theta) * (2.0 * np.pi / self.length)
        return h, dh

    def to_physical(self, xi, eta):
        h, _ = self.wall(xi)
        return np.asarray(xi, dtype=np.float64), h + np.asarray(eta) * (self.height - h)

    def to_computational(self, x, y):
        """(ξ, η) of physical points; ξ wrapped into [0, L)."""
        xi = np.mod(np.asarray(x, dtype=np.float64), self.length)
        h, _ = self.wall(xi)
        return xi, (np.asarray(y, dtype=np.float64) - h) / (self.height - h)

    def metric(self, xi, eta):
        """(g11, g12, g22) of the diffusion operator at (ξ, η) (module docstring)."""
        h, dh = self.wall(xi)
        a = self.height - h
        t = dh * (1.0 - np.asarray(eta))
        return a, -t, (1.0 + t * t) / a

    def area(self) -> float:
        """Fluid area: L·H − ∫h dx (trapezoid rule on 4096 points, spectrally accurate)."""
        x = np.arange(4096) * (self.length / 4096)
        return self.length * self.height - float(self.wall(x)[0].mean() * self.length)


@dataclass(frozen=True)
class Grid:
    """Cells of the mapped channel: nx along (periodic), ny across."""

    geom: HillChannel
    nx: int
    ny: int

    def __post_init__(self):
        if int(self.nx) != self.nx or self.nx < 4 or int(self.ny) != self.ny or self.ny < 3:
            raise ValueError(f"grid needs nx >= 4 and ny >= 3 cells, got nx={self.nx}, "
                             f"ny={self.ny}")

    @property
    def dxi(self) -> float:
        return self.geom.length / self.nx

    @property
    def deta(self) -> float:
        return 1.0 / self.ny

    def centres(self):
        """(ξ, η) of the cell centres, each (ny, nx)."""
        xi = (np.arange(self.nx) + 0.5) * self.dxi
        eta = (np.arange(self.ny) + 0.5) * self.deta
        shape = (self.ny, self.nx)
        return np.broadcast_to(xi, shape), np.broadcast_to(eta[:, None], shape)

    def vertices(self):
        """(ξ, η) of the cell vertices, each (ny + 1, nx) (ξ = L is ξ = 0)."""
        xi = np.arange(self.nx) * self.dxi
        eta = np.arange(self.ny + 1) * self.deta
        return (np.broadcast_to(xi, (self.ny + 1, self.nx)),
                np.broadcast_to(eta[:, None], (self.ny + 1, self.nx)))

    def volumes(self):
        """Cell areas J dξ dη at the centres (midpoint rule), (ny, nx)."""
        xi, _ = self.centres()
        return (self.geom.height - self.geom.wall(xi)[0]) * (self.dxi * self.deta)


# ----------------------------------------------------------------------------- operators
class _Stencil:
    """Sparse rows being assembled: ``eq[row] += coef * u[node]`` for unknown nodes,
    ``b[row] += coef * known[node]`` for nodes on a Dirichlet boundary row."""

    def __init__(self, nx: int, m: int, lo=None, hi=None):
        self.nx, self.m = nx, m
        self.lo, self.hi = lo, hi  # known values of rows -1 and m (Dirichlet), or None
        self.rows, self.cols, self.vals = [], [], []
        self.b = np.zeros(nx * m)

    def add(self, row_j, row_i, coef, node_j, node_i):
        """Rows and nodes are (j, i) arrays of one shape; i is wrapped periodically."""
        row_i, node_i = np.mod(row_i, self.nx), np.mod(node_i, self.nx)
        row_j, node_j, coef = np.broadcast_arrays(row_j, node_j, coef)
        row_i = np.broadcast_to(row_i, row_j.shape)
        node_i = np.broadcast_to(node_i, row_j.shape)
        keep = (row_j >= 0) & (row_j < self.m)
        inside = keep & (node_j >= 0) & (node_j < self.m)
        row = row_j * self.nx + row_i
        self.rows.append(row[inside])
        self.cols.append((node_j * self.nx + node_i)[inside])
        self.vals.append(coef[inside])
        for j_known, values in ((-1, self.lo), (self.m, self.hi)):
            sel = keep & (node_j == j_known)
            if sel.any():
                if values is None:
                    raise AssertionError("stencil reached a boundary row without known values")
                np.add.at(self.b, row[sel], coef[sel] * values[node_i[sel]])

    def matrix(self) -> sp.csr_matrix:
        n = self.nx * self.m
        return sp.csr_matrix((np.concatenate(self.vals),
                              (np.concatenate(self.rows), np.concatenate(self.cols))), shape=(n, n))


def _deta_stencil(j: int, m: int, deta: float, dirichlet: bool):
    """Offsets and weights of ∂/∂η at row j: central, or one-sided second order
    in the first/last row when the rows beyond are not available (Neumann walls)."""
    if dirichlet or 0 < j < m - 1:
        return (-1, 1), (-0.5 / deta, 0.5 / deta)
    if j == 0:
        return (0, 1, 2), (-1.5 / deta, 2.0 / deta, -0.5 / deta)
    return (0, -1, -2), (1.5 / deta, -2.0 / deta, 0.5 / deta)


def diffusion_operator(geom: HillChannel, nx: int, m: int, *, nodes: str,
                       wall_flux=None, wall_values=None):
    r"""Discrete :math:`\oint \nabla u\cdot n\,dl` of every control volume: ``(A, b)``.

    ``(A u + b)[k]`` is the outward diffusive flux of control volume k.

    nodes : ``"cells"``: unknowns at cell centres of an ``nx x m`` grid
        (η_j = (j + ½)/m); the walls are faces with the prescribed outward
        diffusive fluxes ``wall_flux = (bottom (nx,), top (nx,))`` (zero if None).
        ``"vertices"``: unknowns at the interior vertices of an ``nx x (m + 1)``
        cell grid (η_j = (j + 1)/(m + 1), j = 0..m−1), vertex-centred control
        volumes, ``wall_values = (bottom (nx,), top (nx,))`` on the wall vertices.
    """
    if nodes == "cells":
        ny = m
        sx, sy = 0.5, 0.5
        dirichlet = False
        st = _Stencil(nx, m)
    elif nodes == "vertices":
        ny = m + 1
        sx, sy = 0.0, 1.0
        dirichlet = True
        if wall_values is None:
            raise ValueError("nodes='vertices' needs wall_values=(bottom, top)")
        lo, hi = (np.broadcast_to(np.asarray(v, dtype=np.float64), (nx,)) for v in wall_values)
        st = _Stencil(nx, m, lo, hi)
    else:
        raise ValueError(f"nodes must be 'cells' or 'vertices', got {nodes!r}")
    dxi, deta = geom.length / nx, 1.0 / ny
    i = np.arange(nx)
    xi_n = (i + sx) * dxi  # node ξ
    for j in range(m):
        eta_j = (j + sy) * deta
        # ξ-face between nodes (i, j) and (i+1, j), at (ξ_i + dξ/2, η_j); row extent dη
        g11, g12, _ = geom.metric(xi_n + 0.5 * dxi, eta_j)
        for node_i, w in ((i + 1, 1.0), (i, -1.0)):
            c = deta * g11 * w / dxi
            st.add(j, i, c, j, node_i)
            st.add(j, i + 1, -c, j, node_i)
        offs, wts = _deta_stencil(j, m, deta, dirichlet)
        for cell in (i, i + 1):  # ∂u/∂η averaged over the face's two nodes
            for o, wt in zip(offs, wts):
                c = deta * g12 * 0.5 * wt
                st.add(j, i, c, j + o, cell)
                st.add(j, i + 1, -c, j + o, cell)
    first = -1 if dirichlet else 0
    last = m - 1 if dirichlet else m - 2
    for j in range(first, last + 1):
        # η-face between rows j and j+1 at (ξ_i, η_j + dη/2); extent dξ
        eta_f = (j + sy + 0.5) * deta
        _, g12, g22 = geom.metric(xi_n, eta_f)
        for node_j, w in ((j + 1, 1.0), (j, -1.0)):
            c = dxi * g22 * w / deta
            st.add(j, i, c, node_j, i)
            st.add(j + 1, i, -c, node_j, i)
        for row in (j, j + 1):  # ∂u/∂ξ averaged over the face's two nodes
            for o, wt in ((1, 0.5 / dxi), (-1, -0.5 / dxi)):
                c = dxi * g12 * 0.5 * wt
                st.add(j, i, c, row, i + o)
                st.add(j + 1, i, -c, row, i + o)
    A = st.matrix()
    b = st.b.copy()
    if not dirichlet and wall_flux is not None:
        bottom, top = (np.broadcast_to(np.asarray(v, dtype=np.float64), (nx,)) for v in wall_flux)
        b[:nx] += bottom
        b[(m - 1) * nx:] += top
    return A, b


def advection_operator(psi_v: np.ndarray, grid: Grid):
    r"""Discrete :math:`\oint c\,u\cdot n\,dl` of every cell: the matrix ``C``.

    psi_v : stream function at the vertices, (ny + 1, nx).  The volume flux
    through a ξ-face is ψ(top end) − ψ(bottom end), through an η-face
    −(ψ(right end) − ψ(left end)); face values of c are two-cell averages.
    Also returns the face fluxes ``(F (ny, nx) through the right faces,
    G (ny + 1, nx) through the faces above row j−1)``; ``G[0] = G[ny] = 0``
    when ψ is constant along each wall.
    """
    nx, ny = grid.nx, grid.ny
    if psi_v.shape != (ny + 1, nx):
        raise ValueError(f"psi_v must have shape (ny + 1, nx) = {(ny + 1, nx)}, got {psi_v.shape}")
    right = np.roll(psi_v, -1, axis=1)
    F = psi_v[1:, :] - psi_v[:-1, :]  # ny x nx: through the face at ξ_i (left face of cell i)
    F = np.roll(F, -1, axis=1)  # ny x nx: through the right face of cell i (at ξ_{i+1})
    G = -(right - psi_v)  # (ny+1) x nx: through the η-face at η_j, upward
    st = _Stencil(nx, ny)
    i = np.arange(nx)
    for j in range(ny):
        for cell in (i, i + 1):
            st.add(j, i, 0.5 * F[j], j, cell)
            st.add(j, i + 1, -0.5 * F[j], j, cell)
    for j in range(1, ny):
        for row in (j - 1, j):
            st.add(j - 1, i, 0.5 * G[j], row, i)
            st.add(j, i, -0.5 * G[j], row, i)
    return st.matrix(), F, G


def discrete_divergence(F: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Net volume outflow of every cell from the face fluxes, (ny, nx)."""
    return F - np.roll(F, 1, axis=1) + G[1:] - G[:-1]


# ----------------------------------------------------------------------------- flow
@dataclass
class Flow:
    """A solved flow: stream function at the vertices and fields at the cell centres."""

    grid: Grid
    flux: float
    psi_v: np.ndarray  # (ny+1) x nx
    velocity: np.ndarray  # ny x nx x 2, physical components
    grad: np.ndarray  # ny x nx x 2 x 2, ∂u_a/∂x_b
    divergence: float  # max |discrete divergence| / max |face flux|
    residual: float  # relative residual of the ψ solve


def _cell_gradient(f: np.ndarray, grid: Grid) -> np.ndarray:
    """Physical gradient of a cell field (ny, nx, ...) -> (ny, nx, ..., 2).

    ∂/∂x = ∂_ξ + η_x ∂_η, ∂/∂y = η_y ∂_η; central differences (periodic in ξ),
    one-sided second order in the wall rows.
    """
    xi, eta = grid.centres()
    h, dh = grid.geom.wall(xi)
    a = grid.geom.height - h
    f_xi = (np.roll(f, -1, axis=1) - np.roll(f, 1, axis=1)) / (2 * grid.dxi)
    f_eta = np.empty_like(f)
    f_eta[1:-1] = (f[2:] - f[:-2]) / (2 * grid.deta)
    f_eta[0] = (-1.5 * f[0] + 2.0 * f[1] - 0.5 * f[2]) / grid.deta
    f_eta[-1] = (1.5 * f[-1] - 2.0 * f[-2] + 0.5 * f[-3]) / grid.deta
    extra = (slice(None), slice(None)) + (None,) * (f.ndim - 2)
    eta_x = (-dh * (1.0 - eta) / a)[extra]
    eta_y = (1.0 / a)[extra]
    return np.stack([f_xi + eta_x * f_eta, eta_y * f_eta], axis=-1)


def solve_flow(geom: HillChannel, nx: int = 144, ny: int = 48, flux: float = 30.0) -> Flow:
    r"""Potential flow with volume flux ``flux`` through the channel.

    :math:`\Delta\psi = 0`, :math:`\psi = 0` on the bottom wall, ``flux`` on the
    top wall, on the vertices of an ``nx x ny`` cell grid; velocity at the cell
    centres from ψ by the chain rule (:math:`u = \psi_\eta/a`,
    :math:`v = -(\psi_\xi - \psi_\eta h'(1-\eta)/a)`).
    """
    grid = Grid(geom, nx, ny)
    if not (math.isfinite(flux) and flux > 0):
        raise ValueError(f"flux must be a positive finite number, got {flux!r}")
    psi, residual = solve_poisson_vertices(grid, (0.0, float(flux)))
    psi_v = np.vstack([np.zeros(nx), psi, np.full(nx, float(flux))])
    _, F, G = advection_operator(psi_v, grid)
    div = np.abs(discrete_divergence(F, G)).max() / max(np.abs(F).max(), np.abs(G).max())
    velocity = velocity_from_psi(psi_v, grid)
    return Flow(grid, float(flux), psi_v, velocity, _cell_gradient(velocity, grid), float(div),
                residual)


def solve_poisson_vertices(grid: Grid, wall_values, forcing=None):
    r"""Solve :math:`\Delta\psi + f = 0` on the interior vertices, ψ given on the walls.

    wall_values : (bottom, top), scalars or (nx,) arrays.  forcing : f at the
    interior vertices, (ny − 1, nx), default 0.  Returns (ψ (ny − 1, nx), relative
    residual of the sparse direct solve).
    """
    nx, ny = grid.nx, grid.ny
    A, b = diffusion_operator(grid.geom, nx, ny - 1, nodes="vertices", wall_values=wall_values)
    if forcing is not None:
        xi, _ = grid.vertices()
        area = (grid.geom.height - grid.geom.wall(xi[1:-1])[0]) * (grid.dxi * grid.deta)
        b = b + (area * np.asarray(forcing, dtype=np.float64)).ravel()
    psi = spla.spsolve(A.tocsc(), -b)
    residual = float(np.linalg.norm(A @ psi + b) / max(np.linalg.norm(b), 1e-300))
    return psi.reshape(ny - 1, nx), residual


def velocity_from_psi(psi_v: np.ndarray, grid: Grid) -> np.ndarray:
    """Cell-centre velocity (ny, nx, 2) from vertex values of the stream function."""
    right = np.roll(psi_v, -1, axis=1)
    psi_eta = 0.5 * ((psi_v[1:] - psi_v[:-1]) + (right[1:] - right[:-1])) / grid.deta
    psi_xi = 0.5 * ((right[:-1] - psi_v[:-1]) + (right[1:] - psi_v[1:])) / grid.dxi
    xi, eta = grid.centres()
    h, dh = grid.geom.wall(xi)
    a = grid.geom.height - h
    u = psi_eta / a
    v = -(psi_xi - psi_eta * dh * (1.0 - eta) / a)
    return np.stack([u, v], axis=-1)


# ----------------------------------------------------------------------------- transport
@dataclass(frozen=True)
class Reaction:
    r""":math:`S(c) = s(x) - k_1 c - k_2 c^2` with production :math:`s = \beta|\nabla u|_F^2`."""

    beta: float = 0.002
    k1: float = 6.0
    k2: float = 20.0

    def __post_init__(self):
        for name in ("beta", "k1", "k2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"Reaction.{name} must be a non-negative number, got {v!r}")

    def production(self, grad: np.ndarray) -> np.ndarray:
        """s = β Σ_ab (∂u_a/∂x_b)² from a velocity gradient (..., 2, 2)."""
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


# ----------------------------------------------------------------------------- clouds
def interpolate(grid: Grid, field: np.ndarray, x, y) -> np.ndarray:
    """Bilinear interpolation (in ξ, η) of a cell field (ny, nx, ...) to physical points.

    Periodic along the channel; within half a cell of a wall the two nearest rows
    are extrapolated linearly.  Points outside the fluid raise ValueError.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xi, eta = grid.geom.to_computational(x, y)
    tol = 1e-9
    bad = np.flatnonzero((eta < -tol) | (eta > 1 + tol) | ~np.isfinite(eta))
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"point {k} at ({float(x.flat[k])}, {float(y.flat[k])}) lies outside the "
                         f"fluid of {grid.geom} ({bad.size} such points)")
    fi = xi / grid.dxi - 0.5
    i0 = np.floor(fi).astype(np.int64)
    ti = fi - i0
    i0 %= grid.nx
    i1 = (i0 + 1) % grid.nx
    fj = eta / grid.deta - 0.5
    j0 = np.clip(np.floor(fj).astype(np.int64), 0, grid.ny - 2)
    tj = fj - j0
    extra = (slice(None),) * x.ndim + (None,) * (field.ndim - 2)
    ti, tj = ti[extra], tj[extra]
    return ((1 - ti) * (1 - tj) * field[j0, i0] + ti * (1 - tj) * field[j0, i1]
            + (1 - ti) * tj * field[j0 + 1, i0] + ti * tj * field[j0 + 1, i1])


def sample_points(geom: HillChannel, n: int, seed: int = 0) -> np.ndarray:
    """n points uniformly distributed in the fluid (rejection sampling), (n, 2)."""
    if int(n) != n or n < 1:
        raise ValueError(f"number of points must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    out, have = [], 0
    while have < n:
        m = int(1.3 * (n - have)) + 16
        p = rng.uniform((0.0, 0.0), (geom.length, geom.height), size=(m, 2))
        p = p[p[:, 1] > geom.wall(p[:, 0])[0]]
        out.append(p)
        have += len(p)
    return np.concatenate(out)[:n]


@dataclass
class PointSet:
    """Points of one flow with the fields attached to them (any frame).

    positions (N, 2), velocity (N, 2) and the period vector (2,) rotate with the
    frame; production (N,) and c (N,) are scalars.
    """

    positions: np.ndarray
    velocity: np.ndarray
    production: np.ndarray
    c: np.ndarray
    period: np.ndarray

    def transformed(self, R: np.ndarray, shift=(0.0, 0.0)) -> "PointSet":
        """The same problem in another frame: x -> R x + shift, u -> R u (R orthogonal)."""
        R = np.asarray(R, dtype=np.float64)
        return PointSet(self.positions @ R.T + np.asarray(shift), self.velocity @ R.T,
                        self.production.copy(), self.c.copy(), R @ self.period)


def point_set(sol: TransportSolution, n_points: int, seed: int = 0) -> PointSet:
    """A random point set in the fluid of a solved problem, fields interpolated to it."""
    geom = sol.flow.grid.geom
    p = sample_points(geom, n_points, seed)
    fields = np.concatenate([sol.flow.velocity, sol.production[..., None], sol.c[..., None]],
                            axis=-1)
    v = interpolate(sol.flow.grid, fields, p[:, 0], p[:, 1])
    return PointSet(p, v[:, :2], v[:, 2], v[:, 3], np.array([geom.length, 0.0]))


@dataclass(frozen=True)
class Ellipse:
    """Cloud region: semi-axes ``a`` along the local velocity and ``b`` across it,
    centre ``shift * a`` upstream of the query point."""

    a: float = 1.5
    b: float = 0.5
    shift: float = 0.6

    def __post_init__(self):
        if not (self.a > 0 and self.b > 0 and 0 <= self.shift < 1):
            raise ValueError(f"Ellipse needs a > 0, b > 0, 0 <= shift < 1 (the query point "
                             f"inside), got {self}")


def cloud_members(ps: PointSet, queries, ellipse: Ellipse = Ellipse(), chunk: int = 256,
                  pool: int | None = None):
    """For each query index, the indices of the other points inside its ellipse and
    their relative positions (periodic minimum image); a list of (idx, rel) pairs.
    Only the first ``pool`` points (default all) may be members."""
    P, U = ps.positions, ps.velocity
    pool = len(P) if pool is None else int(pool)
    per = np.asarray(ps.period, dtype=np.float64)
    per2 = float(per @ per)
    queries = np.asarray(queries, dtype=np.int64)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        r = P[None, :pool, :] - P[q, None, :]  # nq x N x 2
        r -= np.rint((r @ per) / per2)[..., None] * per
        u0 = U[q]
        speed = np.linalg.norm(u0, axis=1)
        e = np.where(speed[:, None] > 0, u0 / np.where(speed > 0, speed, 1.0)[:, None], 0.0)
        along = np.einsum("qnd,qd->qn", r, e)
        across2 = np.einsum("qnd,qnd->qn", r, r) - along ** 2
        inside = (((along + ellipse.shift * ellipse.a) / ellipse.a) ** 2
                  + across2 / ellipse.b ** 2 <= 1)
        # a stagnant query point (u = 0) has no direction: a disc of radius b around it
        inside[speed == 0] = (np.einsum("qnd,qnd->qn", r, r) <= ellipse.b ** 2)[speed == 0]
        own = q < pool
        inside[np.arange(len(q))[own], q[own]] = False
        for k in range(len(q)):
            idx = np.flatnonzero(inside[k])
            out.append((idx, r[k, idx]))
    return out


def build_clouds(ps: PointSet, queries, n: int, ellipse: Ellipse = Ellipse(), seed: int = 0,
                 members=None):
    """VCNN clouds of (up to) n points for the query points; returns (clouds, targets).

    Each cloud is the query point (relative position 0) plus n − 1 points drawn
    without replacement from those inside its ellipse (all of them if fewer);
    the draw for query q uses the generator ``default_rng((seed, q))``, so it
    does not depend on the frame or on which other queries are built.
    Features: ``positions`` x_i − x_0 (n, 2), ``vectors`` u_i (n, 1, 2),
    ``scalars`` production s_i (n, 1).  Targets: c at the query points.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"cloud size n must be a positive integer, got {n!r}")
    queries = np.asarray(queries, dtype=np.int64)
    if members is None and n == 1:
        members = [(np.zeros(0, np.int64), np.zeros((0, 2)))] * len(queries)
    elif members is None:
        members = cloud_members(ps, queries, ellipse)
    clouds = []
    for q, (idx, rel) in zip(queries, members):
        if n - 1 < len(idx):
            pick = np.sort(np.random.default_rng((seed, int(q))).choice(len(idx), n - 1,
                                                                        replace=False))
            idx, rel = idx[pick], rel[pick]
        sel = np.concatenate([[q], idx])
        clouds.append({"positions": np.vstack([np.zeros((1, 2)), rel]),
                       "vectors": ps.velocity[sel][:, None, :],
                       "scalars": ps.production[sel][:, None]})
    return clouds, ps.c[queries].copy()


# ----------------------------------------------------------------------------- the study
@dataclass
class StudyConfig:
    """Settings of the cloud-size study (defaults: the full study, ~20 min on 2 cores).

    Train on ``train_alphas``, test on ``test_alphas`` (unseen: inside the
    training range = interpolation, outside = extrapolation).  For every seed a
    new random point set per geometry (``n_points`` points), new query points
    and a new network initialisation.  Grid check: the trained models are also
    tested on point sets of ``grid_check_points`` points drawn with other seeds.
    Production enters the clouds as ``log(1 + s/s_ref)`` (s spans orders of
    magnitude over the family).
    """

    train_alphas: tuple = (0.7, 0.9, 1.1, 1.3, 1.5)
    test_alphas: tuple = (0.6, 0.8, 1.2, 1.65)
    nx: int = 144
    ny: int = 48
    flux: float = 30.0
    reaction: Reaction = field(default_factory=Reaction)
    n_points: int = 4000
    grid_check_points: int = 6000
    train_queries: int = 500
    test_queries: int = 1000
    sizes: tuple = (1, 25, 150)
    seeds: tuple = (0, 1, 2)
    ellipse: Ellipse = field(default_factory=Ellipse)
    s_ref: float = 0.01
    embedding: tuple = (16, 32, 32)
    axis_neuron: int = 4
    fitting: tuple = (64, 64)
    maxiter: int = 300
    line_x: float = 1.5
    rotation: float = 0.7318  # radians, with a reflection, for the frame check

    @classmethod
    def quick(cls) -> "StudyConfig":
        """A small version (well under 2 minutes) for tests and a first look."""
        return cls(train_alphas=(0.9, 1.2), test_alphas=(1.05, 1.4), nx=96, ny=32,
                   n_points=2500, grid_check_points=3500, train_queries=120, test_queries=150,
                   maxiter=40, embedding=(8, 16, 16), fitting=(32, 32))

    def to_dict(self) -> dict:
        d = asdict(self)
        return json.loads(json.dumps(d))


def _atomic_json(path: Path, obj) -> None:
    from symref.io.model_file import atomic_write

    text = json.dumps(obj, indent=1)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def _atomic_npz(path: Path, **arrays) -> None:
    from symref.io.model_file import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    atomic_write(Path(path), write)


def solve_member(alpha: float, cfg: StudyConfig) -> TransportSolution:
    """Flow and transport of one member of the family on the study's grid."""
    flow = solve_flow(HillChannel(alpha), cfg.nx, cfg.ny, cfg.flux)
    return solve_transport(flow, cfg.reaction)


def _member_data(out: Path, alpha: float, cfg: StudyConfig, n_points: int, seed: int,
                 solutions: dict, verbose) -> PointSet:
    """Point set of one geometry (cached as ``data/alpha{α}_pts{N}_seed{s}.npz``)."""
    path = out / "data" / f"alpha{alpha:g}_pts{n_points}_seed{seed}.npz"
    if path.is_file():
        return _load_points(out, alpha, n_points, seed)
    if alpha not in solutions:
        t0 = time.perf_counter()
        solutions[alpha] = solve_member(alpha, cfg)
        sol = solutions[alpha]
        _say(verbose, f"  solved alpha = {alpha:g}: {cfg.nx} x {cfg.ny} cells, Newton "
                      f"{sol.newton_iterations} steps, mass balance {sol.mass_balance:.1e}, "
                      f"c in [{sol.c.min():.3g}, {sol.c.max():.3g}] "
                      f"({time.perf_counter() - t0:.1f} s)")
    ps = point_set(solutions[alpha], n_points, seed=_member_seed(seed, alpha))
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_npz(path, positions=ps.positions, velocity=ps.velocity, production=ps.production,
                c=ps.c, period=ps.period)
    return ps


def _features(ps: PointSet, cfg: StudyConfig) -> PointSet:
    return PointSet(ps.positions, ps.velocity, np.log1p(ps.production / cfg.s_ref), ps.c,
                    ps.period)


def _member_seed(seed: int, alpha: float) -> int:
    """One random stream per (seed, geometry): point sets, queries and cloud draws of
    different geometries are independent (a shared stream would give the test
    geometries the training geometries' point layouts)."""
    return int(seed) * 100_000 + int(round(alpha * 1000))


def _queries(n_total: int, n_queries: int, seed: int, alpha: float) -> np.ndarray:
    rng = np.random.default_rng((_member_seed(seed, alpha), 7))
    return np.sort(rng.choice(n_total, size=min(n_queries, n_total), replace=False))


def _clouds(ps: PointSet, queries, n: int, cfg: StudyConfig, seed: int, members=None):
    return build_clouds(_features(ps, cfg), queries, n, cfg.ellipse, seed=seed, members=members)


def rel_l2(pred, true) -> float:
    """‖pred − true‖₂ / ‖true‖₂."""
    pred, true = np.ravel(pred), np.ravel(true)
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def _train_one(args):
    """One (n, seed) training run in its own process; writes model and result files."""
    from symref.fast.blas import blas_threads

    with blas_threads(1):
        return _train_one_inner(*args)


def _train_one_inner(out, cfg_dict, n, seed, verbose):
    from symref.vcnn import VectorCloudNet

    out = Path(out)
    cfg = _config_from_dict(cfg_dict)
    t0 = time.perf_counter()
    X, Y = [], []
    for alpha in cfg.train_alphas:
        ps = _load_points(out, alpha, cfg.n_points, seed)
        q = _queries(len(ps.c), cfg.train_queries, seed, alpha)
        c, y = _clouds(ps, q, n, cfg, _member_seed(seed, alpha))
        X += c
        Y.append(y)
    net = VectorCloudNet("scalar", embedding=cfg.embedding, axis_neuron=cfg.axis_neuron,
                         fitting=cfg.fitting, maxiter=cfg.maxiter, seed=seed,
                         verbose=(lambda m: print(f"[n={n} seed={seed}] {m}", file=sys.stderr,
                                                  flush=True)) if verbose else False,
                         print_every=max(1, cfg.maxiter // 5))
    net.fit(X, np.concatenate(Y))
    t_train = time.perf_counter() - t0
    res = {"n": n, "seed": seed, "train_seconds": t_train, "iterations": int(net.n_iter_),
           "train_error": rel_l2(net.predict(X), np.concatenate(Y)), "test": {}, "grid_check": {}}
    for alpha in cfg.test_alphas:
        for key, npts, pseed in (("test", cfg.n_points, seed),
                                 ("grid_check", cfg.grid_check_points, 1000 + seed)):
            ps = _load_points(out, alpha, npts, pseed)
            q = _queries(len(ps.c), cfg.test_queries, pseed, alpha)
            c, y = _clouds(ps, q, n, cfg, _member_seed(pseed, alpha))
            pred = net.predict(c).ravel()
            res[key][f"{alpha:g}"] = {"error": rel_l2(pred, y),
                                      "sq_err": float(((pred - y) ** 2).sum()),
                                      "sq_true": float((y ** 2).sum())}
    (out / "models").mkdir(parents=True, exist_ok=True)
    net.save(out / "models" / f"vcnn_n{n}_seed{seed}.json")
    _atomic_json(out / "results" / f"n{n}_seed{seed}.json", res)
    return res


def _load_points(out: Path, alpha: float, n_points: int, seed: int) -> PointSet:
    path = out / "data" / f"alpha{alpha:g}_pts{n_points}_seed{seed}.npz"
    with np.load(path) as z:
        return PointSet(z["positions"], z["velocity"], z["production"], z["c"], z["period"])


def _config_from_dict(d: dict) -> StudyConfig:
    d = dict(d)
    d["reaction"] = Reaction(**d["reaction"])
    d["ellipse"] = Ellipse(**d["ellipse"])
    for k in ("train_alphas", "test_alphas", "sizes", "seeds", "embedding", "fitting"):
        d[k] = tuple(d[k])
    return StudyConfig(**d)


def _rotation(theta: float, reflect: bool = True) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    R = np.array([[c, -s], [s, c]])
    return R @ np.diag([1.0, -1.0]) if reflect else R


def frame_check(net, ps: PointSet, queries, n: int, cfg: StudyConfig, seed: int) -> float:
    """max |f(clouds of R·problem + t) − f(clouds)| / max |f(clouds)| for a rotation
    by ``cfg.rotation`` combined with a reflection and a translation."""
    c0, _ = _clouds(ps, queries, n, cfg, seed)
    ps2 = ps.transformed(_rotation(cfg.rotation), shift=(3.7, -11.2))
    c1, _ = _clouds(ps2, queries, n, cfg, seed)
    p0, p1 = net.predict(c0).ravel(), net.predict(c1).ravel()
    return float(np.abs(p1 - p0).max() / np.abs(p0).max())


def _line_points(geom: HillChannel, x: float, m: int = 80) -> np.ndarray:
    h, _ = geom.wall(x)
    eta = (np.arange(m) + 0.5) / m
    return np.column_stack([np.full(m, x), h + eta * (geom.height - h)])


def run_study(out, cfg: StudyConfig | None = None, *, jobs: int | None = None, verbose=True,
              plots: bool = True) -> dict:
    """The cloud-size study: data, training (n × seeds, resumable), checks, figures.

    Everything is written under ``out``: ``config.json``, ``verify.json``,
    ``data/*.npz`` (point sets, cached), ``models/``, ``results/`` (one file per
    finished training run: an interrupted study resumes where it stopped),
    ``study.json`` (the summary) and the figures ``line.png``,
    ``error_maps.png``, ``errors.png``, ``convergence.png``.
    """
    cfg = cfg or StudyConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != cfg.to_dict():
            raise ValueError(f"{out} holds a study with other settings ({cfg_path}); use another "
                             "output directory or delete it")
    else:
        _atomic_json(cfg_path, cfg.to_dict())
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(cfg.sizes) * len(cfg.seeds)))

    # 1. verification of the solvers
    vpath = out / "verify.json"
    if vpath.is_file():
        ver = json.loads(vpath.read_text())
    else:
        _say(verbose, "[1/5] verifying the solvers with manufactured solutions")
        levels = (24, 48, 96) if cfg.nx < 144 else (24, 48, 96, 192)
        ver = verify(levels, flux=cfg.flux, reaction=cfg.reaction, verbose=verbose)
        _atomic_json(vpath, ver)

    # 2. data
    _say(verbose, "[2/5] flows, transport solutions and point sets")
    solutions: dict = {}
    for seed in cfg.seeds:
        for alpha in cfg.train_alphas + cfg.test_alphas:
            _member_data(out, alpha, cfg, cfg.n_points, seed, solutions, verbose)
        for alpha in cfg.test_alphas:
            _member_data(out, alpha, cfg, cfg.grid_check_points, 1000 + seed, solutions, verbose)
    balance = {}
    for alpha in cfg.train_alphas + cfg.test_alphas:
        fpath = out / "data" / f"alpha{alpha:g}_field.npz"
        if not fpath.is_file():
            sol = solutions.get(alpha) or solve_member(alpha, cfg)
            solutions[alpha] = sol
            _atomic_npz(fpath, c=sol.c, production=sol.production, velocity=sol.flow.velocity,
                        mass_balance=sol.mass_balance, divergence=sol.flow.divergence,
                        newton=sol.newton_iterations)
        with np.load(fpath) as z:
            balance[f"{alpha:g}"] = {"mass_balance": float(z["mass_balance"]),
                                     "divergence": float(z["divergence"]),
                                     "newton": int(z["newton"])}

    # 3. training
    todo = [(n, s) for n in sorted(cfg.sizes, reverse=True) for s in cfg.seeds
            if not (out / "results" / f"n{n}_seed{s}.json").is_file()]
    (out / "results").mkdir(exist_ok=True)
    _say(verbose, f"[3/5] training {len(todo)} of {len(cfg.sizes) * len(cfg.seeds)} VCNN closures "
                  f"({jobs} at a time)" + ("" if todo else ": all done earlier"))
    cfg_dict = cfg.to_dict()
    tasks = [(str(out), cfg_dict, n, s, bool(verbose)) for n, s in todo]

    def done(res, k):
        errs = ", ".join(f"{a}: {v['error']:.3f}" for a, v in res["test"].items())
        _say(verbose, f"  [{k}/{len(tasks)}] n = {res['n']:3d} seed {res['seed']}: "
                      f"{res['train_seconds']:.0f} s, train error {res['train_error']:.3f}, "
                      f"test errors {errs}  (elapsed {time.perf_counter() - t_start:.0f} s)")

    if jobs == 1 or len(tasks) <= 1:
        for k, task in enumerate(tasks, 1):
            done(_train_one(task), k)
    elif tasks:
        import concurrent.futures as cf
        import multiprocessing as mp

        # fork where available (works from notebooks and stdin scripts); workers limit
        # their BLAS to one thread each (_train_one)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context(method)) as ex:
            futs = [ex.submit(_train_one, task) for task in tasks]
            for k, fut in enumerate(cf.as_completed(futs), 1):
                done(fut.result(), k)
    results = [json.loads((out / "results" / f"n{n}_seed{s}.json").read_text())
               for n in cfg.sizes for s in cfg.seeds]

    # 4. checks: frame independence, adaptivity of one net to other cloud sizes
    _say(verbose, "[4/5] frame independence and cloud-size adaptivity")
    from symref.vcnn import VectorCloudNet

    seed0 = cfg.seeds[0]
    a_show = cfg.test_alphas[len(cfg.test_alphas) // 2 - 1] if len(cfg.test_alphas) > 1 \
        else cfg.test_alphas[0]
    ps_show = _load_points(out, a_show, cfg.n_points, seed0)
    q_show = _queries(len(ps_show.c), cfg.test_queries, seed0, a_show)
    nets = {n: VectorCloudNet.load(out / "models" / f"vcnn_n{n}_seed{seed0}.json")
            for n in cfg.sizes}
    cs = _member_seed(seed0, a_show)  # the cloud draws of the test evaluation
    frame = {str(n): frame_check(nets[n], ps_show, q_show[:200], n, cfg, cs) for n in cfg.sizes}
    nmax = max(cfg.sizes)
    adapt = {}
    for n in cfg.sizes:
        c, y = _clouds(ps_show, q_show, n, cfg, cs)
        adapt[str(n)] = rel_l2(nets[nmax].predict(c), y)

    # 5. summary and figures
    summary = _summarise(cfg, results)
    summary.update({"verify": {k: ver[k] for k in ("levels", "transport", "poisson",
                                                   "flow_divergence")},
                    "solutions": balance, "frame_check_max_rel": frame,
                    "adaptivity": {"alpha": a_show, "net_n": nmax, "error_by_cloud_size": adapt},
                    "jobs": jobs, "elapsed_seconds": time.perf_counter() - t_start})
    _atomic_json(out / "study.json", summary)
    if plots:
        _say(verbose, "[5/5] figures")
        _plots(out, cfg, summary, nets, a_show, ps_show, q_show, cs, ver)
    _say(verbose, format_summary(summary))
    return summary


def _pooled(entries: list[dict]) -> float:
    return math.sqrt(sum(e["sq_err"] for e in entries) / sum(e["sq_true"] for e in entries))


def _summarise(cfg: StudyConfig, results: list[dict]) -> dict:
    lo, hi = min(cfg.train_alphas), max(cfg.train_alphas)
    interp = [f"{a:g}" for a in cfg.test_alphas if lo <= a <= hi]
    extrap = [f"{a:g}" for a in cfg.test_alphas if not lo <= a <= hi]
    table = {}
    for n in cfg.sizes:
        rs = [r for r in results if r["n"] == n]
        row = {}
        for key, sel in (("all", interp + extrap), ("interpolation", interp),
                         ("extrapolation", extrap)):
            if not sel:
                continue
            for part in ("test", "grid_check"):
                vals = [_pooled([r[part][a] for a in sel]) for r in rs]
                row[f"{part}_{key}"] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                                        "values": vals}
        row["by_alpha"] = {a: {"mean": float(np.mean([r["test"][a]["error"] for r in rs])),
                               "std": float(np.std([r["test"][a]["error"] for r in rs]))}
                           for a in interp + extrap}
        row["train_error"] = float(np.mean([r["train_error"] for r in rs]))
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in rs]))
        table[str(n)] = row
    nmin, nmax = str(min(cfg.sizes)), str(max(cfg.sizes))
    ratio = {k: table[nmin][f"test_{k}"]["mean"] / table[nmax][f"test_{k}"]["mean"]
             for k in ("all", "interpolation", "extrapolation") if f"test_{k}" in table[nmin]}
    return {"interpolation_alphas": interp, "extrapolation_alphas": extrap, "errors": table,
            "local_over_nonlocal": ratio}


def format_summary(summary: dict) -> str:
    """The study's table as text."""
    lines = ["", "relative L2 error of c on unseen geometries (mean ± std over seeds)",
             f"{'n':>5} {'all':>16} {'interpolation':>16} {'extrapolation':>16} "
             f"{'other point sets':>17} {'train':>7}"]
    for n, row in summary["errors"].items():
        def cell(k):
            return f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" if k in row else "-"
        lines.append(f"{n:>5} {cell('test_all'):>16} {cell('test_interpolation'):>16} "
                     f"{cell('test_extrapolation'):>16} {cell('grid_check_all'):>17} "
                     f"{row['train_error']:7.3f}")
    r = summary["local_over_nonlocal"]
    lines.append("local / nonlocal error ratio: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    if "frame_check_max_rel" in summary:
        changes = summary["frame_check_max_rel"].items()
        lines.append("rotated + reflected problem, max relative change of predictions: "
                     + ", ".join(f"n={k}: {v:.1e}" for k, v in changes))
    return "\n".join(lines)


def _plots(out: Path, cfg: StudyConfig, summary, nets, a_show, ps_show, q_show, seed, ver):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from symref.io.model_file import atomic_write

    def save(fig, name):
        atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)

    colors = {1: "tab:red", 25: "tab:orange", 150: "tab:blue"}
    label = {1: "local (n = 1)", 25: "coarse nonlocal (n = 25)", 150: "nonlocal (n = 150)"}

    # convergence of the solvers
    fig, ax = plt.subplots(figsize=(5, 4))
    h = np.array([1.0 / nx for nx, _ in ver["levels"]]) * HillChannel().length
    for key, name, m in (("transport", "transport (Newton, nonlinear S)", "o"),
                         ("poisson", "stream function (Laplace)", "s")):
        ax.loglog(h, ver[key]["l2"], m + "-", label=f"{name}: order "
                  f"{ver[key]['order_l2'][-1]:.2f}")
    ax.loglog(h, ver["transport"]["l2"][0] * (h / h[0]) ** 2, "k:", label="slope 2")
    ax.set_xlabel("cell length along the channel, dξ (hill heights)")
    ax.set_ylabel("L2 error vs manufactured solution")
    ax.legend(fontsize=8)
    ax.set_title("Solver verification (manufactured solutions)")
    fig.tight_layout()
    save(fig, "convergence.png")

    # fields of the shown geometry
    geom = HillChannel(a_show)
    grid = Grid(geom, cfg.nx, cfg.ny)
    with np.load(out / "data" / f"alpha{a_show:g}_field.npz") as z:
        c_f, s_f, u_f = z["c"], z["production"], z["velocity"]
    fields = np.concatenate([u_f, s_f[..., None], c_f[..., None]], axis=-1)

    # ground truth and the three closures along vertical lines (the seed's figure)
    xs = (cfg.line_x, cfg.line_x + 2.5)
    fig, axes = plt.subplots(1, len(xs), figsize=(5 * len(xs), 4), sharey=False)
    for ax, x in zip(np.atleast_1d(axes), xs):
        lp = _line_points(geom, x)
        v = interpolate(grid, fields, lp[:, 0], lp[:, 1])
        N = len(ps_show.c)
        aug = PointSet(np.vstack([ps_show.positions, lp]), np.vstack([ps_show.velocity, v[:, :2]]),
                       np.concatenate([ps_show.production, v[:, 2]]),
                       np.concatenate([ps_show.c, v[:, 3]]), ps_show.period)
        lq = np.arange(N, N + len(lp))
        mem = cloud_members(aug, lq, cfg.ellipse, pool=N)
        ax.plot(v[:, 3], lp[:, 1], "k-", lw=2.5, label="ground truth (finite volumes)")
        for n in sorted(nets):
            c, _ = _clouds(aug, lq, n, cfg, seed, members=mem if n > 1 else None)
            ax.plot(nets[n].predict(c).ravel(), lp[:, 1], "--", color=colors.get(n),
                    label=label.get(n, f"n = {n}"))
        ax.set_xlabel("concentration c (dimensionless)")
        ax.set_ylabel("height y (hill heights)")
        ax.set_title(f"alpha = {a_show:g} (unseen), line x = {x:g}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "line.png")

    # error maps
    xv, ev = grid.vertices()
    Xv, Yv = geom.to_physical(np.hstack([xv, xv[:, :1] + geom.length]), np.hstack([ev, ev[:, :1]]))
    ns = sorted(nets)
    fig, axes = plt.subplots(len(ns) + 1, 1, figsize=(8, 2.3 * (len(ns) + 1)))
    im = axes[0].pcolormesh(Xv, Yv, c_f, shading="flat", cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="c")
    axes[0].set_title(f"ground truth c, alpha = {a_show:g} (unseen geometry)")
    pts = ps_show.positions[q_show]
    errs, rel = {}, {}
    for n in ns:
        c, y = _clouds(ps_show, q_show, n, cfg, seed)
        pred = nets[n].predict(c).ravel()
        errs[n], rel[n] = np.abs(pred - y), rel_l2(pred, y)
    vmax = max(e.max() for e in errs.values())
    for ax, n in zip(axes[1:], ns):
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=errs[n], s=6, cmap="magma_r", vmin=0, vmax=vmax)
        fig.colorbar(sc, ax=ax, label="|error| of c")
        ax.set_title(f"{label.get(n, f'n = {n}')}: relative L2 error {rel[n]:.3f}")
    for ax in axes:
        ax.fill_between(Xv[0], 0, Yv[0], color="0.8")
        ax.set_aspect("equal")
        ax.set_xlim(0, geom.length)
        ax.set_ylim(0, geom.height)
        ax.set_xlabel("x (hill heights)")
        ax.set_ylabel("y")
    fig.tight_layout()
    save(fig, "error_maps.png")

    # errors per unseen geometry
    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = sorted(cfg.test_alphas)
    width = 0.8 / len(ns)
    for k, n in enumerate(ns):
        row = summary["errors"][str(n)]["by_alpha"]
        m = [row[f"{a:g}"]["mean"] for a in alphas]
        s = [row[f"{a:g}"]["std"] for a in alphas]
        ax.bar(np.arange(len(alphas)) + (k - (len(ns) - 1) / 2) * width, m, width, yerr=s,
               color=colors.get(n), label=label.get(n, f"n = {n}"), capsize=3)
    lo, hi = min(cfg.train_alphas), max(cfg.train_alphas)
    ax.set_xticks(np.arange(len(alphas)))
    ax.set_xticklabels([f"{a:g}\n({'interp.' if lo <= a <= hi else 'extrap.'})" for a in alphas])
    ax.set_xlabel(f"hill steepness alpha of the unseen geometry (trained on "
                  f"{', '.join(f'{a:g}' for a in cfg.train_alphas)})")
    ax.set_ylabel("relative L2 error of c")
    ax.set_title(f"mean ± std over {len(cfg.seeds)} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "errors.png")


def cli(args) -> int:
    """``symref transport``: the verification or the whole study."""
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.verify_only:
        levels = (24, 48, 96) if args.quick else (24, 48, 96, 192)
        res = verify(levels)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(out / "verify.json", res)
        print(f"observed orders (L2): transport {res['transport']['order_l2']}, stream function "
              f"{res['poisson']['order_l2']}; written {out / 'verify.json'}")
        return 0
    cfg = StudyConfig.quick() if args.quick else StudyConfig()
    try:
        run_study(args.out, cfg, jobs=args.jobs, plots=not args.no_plots)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {args.out}; run the same command again "
              "to resume", file=sys.stderr)
        return 130
    print(f"results: {Path(args.out) / 'study.json'}, figures: {args.out}/*.png")
    return 0
