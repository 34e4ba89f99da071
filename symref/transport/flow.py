r"""Geometry, grid, finite-volume operators and the potential flow of the hill channels.

**Geometry** (:class:`HillChannel`).  A channel of length ``L`` (periodic in x)
and height ``H`` over a bottom wall with one hill, its crest at x = 0.  Two shapes:

* ``shape="cosine"`` (the steepness family): :math:`h(x) = h_0\,((1+\cos 2\pi x/L)/2)^p`,
  :math:`p = 4\alpha^2`, steeper for larger ``alpha``.
* ``shape="benchmark"``: the piecewise-cubic hill of the periodic-hill benchmark
  (ERCOFTAC case 81: six cubics through the crest at 28 mm and the foot at 54 mm,
  height 28 mm = 1 hill height), stretched in x by ``alpha`` (the width family of
  Xiao et al. 2020 that the VCNN paper trains on): the hill occupies
  :math:`|x| \le 1.929\alpha` (and its periodic copy), the floor between is flat, and
  the channel length is :math:`L = 3.858\alpha + 5.142` (:meth:`HillChannel.benchmark`).

The defaults ``L = 9``, ``H = 3.036``, ``h0 = 1`` are the proportions of the benchmark.

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
    shape: str = "cosine"

    def __post_init__(self):
        for name in ("alpha", "length", "height", "hill"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"HillChannel.{name} must be a positive finite number, got {v!r}")
        if self.hill >= self.height:
            raise ValueError(f"HillChannel.hill ({self.hill}) must be below the channel height "
                             f"({self.height})")
        if self.shape not in ("cosine", "benchmark"):
            raise ValueError(f"HillChannel.shape must be 'cosine' or 'benchmark', got "
                             f"{self.shape!r}")
        if self.shape == "benchmark" and 2 * _BENCH_FOOT * self.alpha > self.length:
            raise ValueError(f"HillChannel.length ({self.length}) is shorter than the benchmark "
                             f"hill of width factor alpha = {self.alpha} "
                             f"({2 * _BENCH_FOOT * self.alpha:.4g}); use HillChannel.benchmark")

    @classmethod
    def benchmark(cls, alpha: float = 1.0, **kw) -> "HillChannel":
        """The benchmark hill stretched by ``alpha``, channel length 3.858 α + 5.142."""
        return cls(alpha=alpha, length=3.858 * alpha + 5.142, shape="benchmark", **kw)

    @property
    def power(self) -> float:
        return 4.0 * self.alpha ** 2

    def wall(self, x):
        r"""Bottom wall :math:`h(x)` and its slope :math:`h'(x)`.

        Cosine: :math:`h = h_0 w^p`, :math:`w = (1 + \cos\theta)/2`, :math:`\theta = 2\pi x/L`;
        :math:`h' = -h_0\,p\,w^{p-1}\,\tfrac{1}{2}\sin\theta\,\tfrac{2\pi}{L}`.
        Benchmark: :func:`_benchmark_wall`.
        """
        return self.wall_derivatives(x)[:2]

    def wall_derivatives(self, x):
        r""":math:`(h, h', h'')` of the bottom wall.

        Cosine, with :math:`w' = -\tfrac12 k\sin\theta`, :math:`w'' = -\tfrac12 k^2\cos\theta`,
        :math:`k = 2\pi/L`: :math:`h' = h_0 p w^{p-1} w'`,
        :math:`h'' = h_0 p\,((p-1) w^{p-2} w'^2 + w^{p-1} w'')`.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.shape == "benchmark":
            return _benchmark_wall(x, self.alpha, self.length, self.hill)
        k = 2.0 * np.pi / self.length
        theta = k * x
        w = 0.5 * (1.0 + np.cos(theta))
        w1, w2 = -0.5 * k * np.sin(theta), -0.5 * k * k * np.cos(theta)
        p = self.power
        h = self.hill * w ** p
        dh = self.hill * p * w ** (p - 1.0) * w1
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = self.hill * p * ((p - 1.0) * w ** (p - 2.0) * w1 * w1 + w ** (p - 1.0) * w2)
        return h, dh, np.where(w > 0, d2, 0.0)

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


# the benchmark hill (ERCOFTAC case 81, lengths in mm, crest 28 mm at x = 0, foot at
# 54 mm): cubic coefficients (c0, c1, c2, c3) on [knot_k, knot_k+1)
_BENCH_KNOTS = np.array([0.0, 9.0, 14.0, 20.0, 30.0, 40.0, 54.0])
_BENCH_COEF = np.array([
    [2.800000000000e+01, 0.000000000000e+00, 6.775070969851e-03, -2.124527775800e-03],
    [2.507355893131e+01, 9.754803562315e-01, -1.016116352781e-01, 1.889794677828e-03],
    [2.579601052357e+01, 8.206693007457e-01, -9.055370274339e-02, 1.626510569859e-03],
    [4.046435022819e+01, -1.379581654948e+00, 1.945884504128e-02, -2.070318932190e-04],
    [1.792461334664e+01, 8.743920332081e-01, -5.567361123058e-02, 6.277731764683e-04],
    [5.639011190988e+01, -2.010520359035e+00, 1.644919857549e-02, 2.674976141766e-05]])
_BENCH_FOOT = 54.0 / 28.0  # hill half-width in hill heights


def _benchmark_wall(x, alpha: float, length: float, hill: float):
    r""":math:`(h, h', h'')` of the benchmark hill, crest at x = 0 and x = L.

    With d the distance to the nearest crest and :math:`X = 28\,d/\alpha` (mm),
    :math:`h = h_0\,P(X)/28`, P the benchmark's cubic on X's interval clipped to
    [0, 28] (as the benchmark specifies); :math:`h' = \pm h_0 P'(X)/\alpha`,
    :math:`h'' = 28\,h_0 P''(X)/\alpha^2` (zero where clipped).
    """
    x = np.mod(x, length)
    right = x > 0.5 * length
    X = 28.0 * np.where(right, length - x, x) / alpha
    k = np.clip(np.searchsorted(_BENCH_KNOTS, X, side="right") - 1, 0, 5)
    c0, c1, c2, c3 = np.moveaxis(_BENCH_COEF[k], -1, 0)
    P = c0 + X * (c1 + X * (c2 + X * c3))
    dP = c1 + X * (2 * c2 + 3 * X * c3)
    d2P = 2 * c2 + 6 * X * c3
    flat = (X >= 54.0) | (P <= 0.0) | (P >= 28.0)
    h = np.clip(np.where(X >= 54.0, 0.0, P), 0.0, 28.0) * (hill / 28.0)
    sign = np.where(right, -1.0, 1.0)
    dh = np.where(flat, 0.0, sign * dP * hill / alpha)
    d2h = np.where(flat, 0.0, 28.0 * d2P * hill / alpha ** 2)
    return h, dh, d2h


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
        self.wall = ([], [], [])  # rows, wall node (0..nx-1 bottom, nx..2nx-1 top), coefs

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
                self.wall[0].append(row[sel])
                self.wall[1].append(node_i[sel] + (0 if j_known == -1 else self.nx))
                self.wall[2].append(coef[sel])

    def matrix(self) -> sp.csr_matrix:
        n = self.nx * self.m
        return sp.csr_matrix((np.concatenate(self.vals),
                              (np.concatenate(self.rows), np.concatenate(self.cols))), shape=(n, n))

    def wall_matrix(self) -> sp.csr_matrix:
        """W with ``b = W @ concat(bottom, top)``: the rows' dependence on the wall values."""
        rows, cols, vals = (np.concatenate(v) if v else np.zeros(0) for v in self.wall)
        return sp.csr_matrix((vals, (rows.astype(np.int64), cols.astype(np.int64))),
                             shape=(self.nx * self.m, 2 * self.nx))


def _deta_stencil(j: int, m: int, deta: float, dirichlet: bool):
    """Offsets and weights of ∂/∂η at row j: central, or one-sided second order
    in the first/last row when the rows beyond are not available (Neumann walls)."""
    if dirichlet or 0 < j < m - 1:
        return (-1, 1), (-0.5 / deta, 0.5 / deta)
    if j == 0:
        return (0, 1, 2), (-1.5 / deta, 2.0 / deta, -0.5 / deta)
    return (0, -1, -2), (1.5 / deta, -2.0 / deta, 0.5 / deta)


def diffusion_operator(geom: HillChannel, nx: int, m: int, *, nodes: str,
                       wall_flux=None, wall_values=None, wall_matrix: bool = False):
    r"""Discrete :math:`\oint \nabla u\cdot n\,dl` of every control volume: ``(A, b)``.

    ``(A u + b)[k]`` is the outward diffusive flux of control volume k.

    nodes : ``"cells"``: unknowns at cell centres of an ``nx x m`` grid
        (η_j = (j + ½)/m); the walls are faces with the prescribed outward
        diffusive fluxes ``wall_flux = (bottom (nx,), top (nx,))`` (zero if None).
        ``"vertices"``: unknowns at the interior vertices of an ``nx x (m + 1)``
        cell grid (η_j = (j + 1)/(m + 1), j = 0..m−1), vertex-centred control
        volumes, ``wall_values = (bottom (nx,), top (nx,))`` on the wall vertices.
        With ``wall_matrix=True`` also returns W (sparse, ``nx m x 2 nx``) with
        ``b = W @ concat(bottom, top)``: the coupling to wall values that are unknowns
        of a larger system (the wall vorticity of :mod:`~symref.transport.navier_stokes`).
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
    if wall_matrix:
        if not dirichlet:
            raise ValueError("wall_matrix=True needs nodes='vertices'")
        return A, b, st.wall_matrix()
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
