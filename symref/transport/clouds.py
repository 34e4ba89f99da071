r"""Point sets in the fluid, fields interpolated to them, and the VCNN clouds around query points.

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
the new frame and the same predictions.  ``build_clouds(features="paper")`` gives the
VCNN paper's per-point features instead (:mod:`symref.transport.features`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from symref.transport.features import FEATURE_SETS, extra_fields, paper_cloud
from symref.transport.flow import Grid, HillChannel
from symref.transport.solver import TransportSolution


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
    frame; production (N,) and c (N,) are scalars.  ``sampler`` (optional, for the
    stencil clouds): ``sampler(points (m, 2)) -> (points moved into the fluid (m, 2),
    velocity (m, 2), production (m,), extra (m, k))`` at any points of the same frame
    (:func:`grid_sampler`).  ``extra`` (optional, (N, k)): more scalar fields at the
    points, the :data:`~symref.transport.features.EXTRA_FIELDS` for the paper's features.
    """

    positions: np.ndarray
    velocity: np.ndarray
    production: np.ndarray
    c: np.ndarray
    period: np.ndarray
    sampler: Callable | None = None
    extra: np.ndarray | None = None

    def transformed(self, R: np.ndarray, shift=(0.0, 0.0)) -> "PointSet":
        """The same problem in another frame: x -> R x + shift, u -> R u (R orthogonal)."""
        R = np.asarray(R, dtype=np.float64)
        t = np.asarray(shift, dtype=np.float64)
        sampler = None
        if self.sampler is not None:
            inner = self.sampler

            def sampler(points):  # the original frame's sampler, seen from the new one
                q, u, s, e = inner((np.asarray(points) - t) @ R)
                return q @ R.T + t, u @ R.T, s, e
        return PointSet(self.positions @ R.T + t, self.velocity @ R.T,
                        self.production.copy(), self.c.copy(), R @ self.period, sampler,
                        None if self.extra is None else self.extra.copy())

    def with_production(self, f: Callable) -> "PointSet":
        """The same points with production replaced by f(production), the sampler's too."""
        sampler = None
        if self.sampler is not None:
            inner = self.sampler

            def sampler(points):
                q, u, s, e = inner(points)
                return q, u, f(s), e
        return PointSet(self.positions, self.velocity, f(self.production), self.c, self.period,
                        sampler, self.extra)


def grid_sampler(grid: Grid, velocity: np.ndarray, production: np.ndarray,
                 extra: np.ndarray | None = None) -> Callable:
    """Fields of a solved problem at any points: points outside the fluid are first moved
    into it along the grid line ξ = x (η clipped to [0, 1]: onto the wall below or
    above), so the sampled fields are continuous in the points; x is periodic.
    ``extra`` (ny, nx, k): more cell fields, returned as the fourth value (m, k)."""
    extra = np.zeros(production.shape + (0,)) if extra is None else extra
    fields = np.concatenate([velocity, production[..., None], extra], axis=-1)

    def sampler(points):
        points = np.asarray(points, dtype=np.float64)
        x = points[..., 0]
        _, eta = grid.geom.to_computational(x, points[..., 1])
        h, _ = grid.geom.wall(np.mod(x, grid.geom.length))
        y = h + np.clip(eta, 0.0, 1.0) * (grid.geom.height - h)
        v = interpolate(grid, fields, x, y)
        return np.stack([x, y], axis=-1), v[..., :2], v[..., 2], v[..., 3:]

    return sampler


def point_set(sol: TransportSolution, n_points: int, seed: int = 0) -> PointSet:
    """A random point set in the fluid of a solved problem, fields interpolated to it
    (with the :data:`~symref.transport.features.EXTRA_FIELDS` as ``extra``)."""
    geom = sol.flow.grid.geom
    p = sample_points(geom, n_points, seed)
    extra = extra_fields(sol.flow.grid, sol.flow.grad)  # ny x nx x 3
    fields = np.concatenate([sol.flow.velocity, sol.production[..., None], sol.c[..., None],
                             extra], axis=-1)
    v = interpolate(sol.flow.grid, fields, p[:, 0], p[:, 1])
    return PointSet(p, v[:, :2], v[:, 2], v[:, 3], np.array([geom.length, 0.0]),
                    grid_sampler(sol.flow.grid, sol.flow.velocity, sol.production, extra),
                    v[:, 4:])


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

    def axes(self, speed: np.ndarray):
        """(a, b, shift) for query points of local speeds ``speed`` (nq,): constants."""
        one = np.ones_like(np.asarray(speed, dtype=np.float64))
        return self.a * one, self.b * one, self.shift * one


@dataclass(frozen=True)
class CoefficientEllipse:
    r"""The VCNN paper's cloud region: an ellipse aligned with the local velocity whose
    size comes from the transport equation's coefficients.

    Over the reaction time :math:`1/k` a particle is carried :math:`\ell_a = |u_0|/k`
    and diffuses :math:`\ell_d = \sqrt{D/k}`.  The ellipse reaches
    ``upstream * ℓ_a + spread * ℓ_d`` upstream of the query point, ``spread * ℓ_d``
    downstream and ``spread * ℓ_d`` across: semi-axes
    :math:`a = (	ext{up} + 	ext{down})/2`, :math:`b = 	ext{spread}\,\ell_d`, centre
    :math:`(	ext{up} - 	ext{down})/2` upstream.  Where the flow stands still
    (recirculation cores) it shrinks to the diffusion disc.
    """

    diffusivity: float = 1.0
    rate: float = 6.0
    upstream: float = 1.0
    spread: float = 2.0

    def __post_init__(self):
        for name in ("diffusivity", "rate", "upstream", "spread"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"CoefficientEllipse.{name} must be a positive number, got {v!r}")

    def axes(self, speed: np.ndarray):
        """(a, b, shift) arrays for query points of local speeds ``speed`` (nq,)."""
        speed = np.asarray(speed, dtype=np.float64)
        ld = np.sqrt(self.diffusivity / self.rate)
        up = self.upstream * speed / self.rate + self.spread * ld  # nq
        down = self.spread * ld
        a = 0.5 * (up + down)
        return a, np.full_like(a, self.spread * ld), (up - down) / (2 * a)


def cloud_members(ps: PointSet, queries, ellipse=Ellipse(), chunk: int = 256,
                  pool: int | None = None):
    """For each query index, the indices of the other points inside its ellipse and
    their relative positions, nearest first; a list of (idx, rel) pairs.

    ``ellipse``: an :class:`Ellipse` or :class:`CoefficientEllipse`.  Relative positions
    are periodic: the minimum image and its copies one period either way, so an ellipse
    longer than half the channel sees a point (a different position) more than once.
    "Nearest" is the normalised ellipse radius
    ((along + shift a)/a)² + (across/b)² (ties by index).  Only the first ``pool``
    points (default all) may be members."""
    P, U = ps.positions, ps.velocity
    pool = len(P) if pool is None else int(pool)
    per = np.asarray(ps.period, dtype=np.float64)
    per2 = float(per @ per)
    queries = np.asarray(queries, dtype=np.int64)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        r0 = P[None, :pool, :] - P[q, None, :]  # nq x N x 2
        r0 -= np.rint((r0 @ per) / per2)[..., None] * per
        u0 = U[q]
        speed = np.linalg.norm(u0, axis=1)
        a, b, shift = (v[:, None] for v in ellipse.axes(speed))  # nq x 1 each
        e = np.where(speed[:, None] > 0, u0 / np.where(speed > 0, speed, 1.0)[:, None], 0.0)
        found = [[] for _ in q]
        for m in (0, -1, 1):
            r = r0 + m * per
            along = np.einsum("qnd,qd->qn", r, e)
            rr = np.einsum("qnd,qnd->qn", r, r)
            rho = ((along + shift * a) / a) ** 2 + (rr - along ** 2) / b ** 2
            # a stagnant query point (u = 0) has no direction: a disc of radius b around it
            rho = np.where(speed[:, None] == 0, rr / b ** 2, rho)
            if m == 0:
                own = q < pool
                rho[np.arange(len(q))[own], q[own]] = np.inf
            for k in range(len(q)):
                idx = np.flatnonzero(rho[k] <= 1)
                found[k].append((idx, r[k, idx], rho[k, idx]))
        for parts in found:
            idx = np.concatenate([p[0] for p in parts])
            rel = np.concatenate([p[1] for p in parts])
            order = np.lexsort((idx, np.concatenate([p[2] for p in parts])))
            out.append((idx[order], rel[order]))
    return out


SELECTIONS = ("random", "nearest", "stencil")


def stencil_offsets(m: int) -> np.ndarray:
    """m fixed points in the unit disc, mirror-symmetric about the first axis, (m, 2).

    Pairs (r cos θ, ±r sin θ) with r_k = sqrt((k + ½)/p), θ_k = (k + ½)·golden angle mod π
    (a sunflower pattern, k = 0..p−1, p = ⌊m/2⌋), plus the centre when m is odd.  The
    mirror symmetry makes the stencil independent of which way the across-axis points,
    so a reflected problem has the reflected stencil."""
    p = m // 2
    k = np.arange(p)
    r = np.sqrt((k + 0.5) / max(p, 1))
    th = np.mod((k + 0.5) * np.pi * (3.0 - np.sqrt(5.0)), np.pi)
    half = np.column_stack([r * np.cos(th), r * np.sin(th)])
    out = np.vstack([half, half * [1.0, -1.0]])
    return np.vstack([np.zeros((1, 2)), out]) if m % 2 else out


def _stencil_clouds(ps: PointSet, queries, n: int, ellipse):
    """Stencil clouds: n − 1 fixed offsets (:func:`stencil_offsets`) in each query's
    ellipse frame, fields from ``ps.sampler`` (moved into the fluid where they fall out)."""
    if ps.sampler is None:
        raise ValueError("selection='stencil' needs a PointSet with a sampler (point_set "
                         "attaches one; grid_sampler makes one)")
    P0, U0 = ps.positions[queries], ps.velocity[queries]  # nq x 2
    speed = np.linalg.norm(U0, axis=1)
    e = np.where(speed[:, None] > 0, U0 / np.where(speed > 0, speed, 1.0)[:, None], [1.0, 0.0])
    e_perp = np.column_stack([-e[:, 1], e[:, 0]])
    a, b, shift = ellipse.axes(speed)  # nq each
    off = stencil_offsets(n - 1)  # (n-1) x 2
    pts = (P0[:, None, :] + ((off[None, :, 0] - shift[:, None]) * a[:, None])[..., None]
           * e[:, None, :] + (off[None, :, 1] * b[:, None])[..., None] * e_perp[:, None, :])
    q, u, s, e = ps.sampler(pts.reshape(-1, 2))  # nq (n-1) x ...
    q = q.reshape(pts.shape)
    return (q - P0[:, None, :], u.reshape(pts.shape), s.reshape(pts.shape[:2]),
            e.reshape(pts.shape[:2] + e.shape[-1:]))



def build_clouds(ps: PointSet, queries, n: int, ellipse=Ellipse(), seed: int = 0,
                 members=None, *, selection: str = "random", replace: bool = False,
                 draw: int = 0, features: str = "symref"):
    """VCNN clouds of (up to) n points for the query points; returns (clouds, targets).

    Each cloud is the query point (relative position 0) plus n − 1 of the points
    inside its ellipse (:func:`cloud_members`).  ``selection``:

    * ``"random"``: drawn without replacement; the draw for query q uses the
      generator ``default_rng((seed, q))`` (``(seed, q, draw)`` for ``draw > 0``: other
      draws to average over), so it does not depend on the frame or on which other
      queries are built;
    * ``"nearest"``: the n − 1 nearest in the ellipse's normalised radius, no draw at
      all (neighbouring query points share most of it);
    * ``"stencil"``: no points of the set at all but n − 1 fixed positions in the
      ellipse's frame (:func:`stencil_offsets` scaled by a, b, centre shifted upstream),
      the fields there from ``ps.sampler``: a cloud that moves continuously with the
      query point, so predictions along a line are as smooth as the fields
      (``members`` and ``replace`` do not apply: every cloud has n points).

    Where fewer than n − 1 points are inside: all of them, or with ``replace=True``
    (the paper's fixed n) topped up to n − 1 by drawing with replacement (random) or
    repeating the nearest in order (nearest); the query point itself stands in for an
    empty ellipse.  Features (``features="symref"``): ``positions`` x_i − x_0 (n, 2),
    ``vectors`` u_i (n, 1, 2), ``scalars`` production s_i (n, 1); ``features="paper"``: the
    VCNN paper's (:func:`~symref.transport.features.paper_cloud`, from ``ps.extra``, with
    the ellipse's across semi-axis).  Targets: c at the query points.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"cloud size n must be a positive integer, got {n!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    if features == "paper" and ps.extra is None:
        raise ValueError("features='paper' needs a PointSet with the extra fields (wall "
                         "distance, strain rate, cell area; point_set attaches them)")
    queries = np.asarray(queries, dtype=np.int64)

    def cloud(rel, u, s, e):
        if features == "paper":
            return paper_cloud(rel, u, e, float(ellipse.axes(np.zeros(1))[1][0]))
        return {"positions": rel, "vectors": u[:, None, :], "scalars": s[:, None]}

    extra = np.zeros((len(ps.c), 0)) if ps.extra is None else ps.extra
    if selection == "stencil" and n > 1:
        rel, u, s, e = _stencil_clouds(ps, queries, n, ellipse)
        e = e[..., :extra.shape[1]]  # a set without extra fields: none from the sampler either
        clouds = [cloud(np.vstack([np.zeros((1, 2)), rel[k]]),  # n x 2 each
                        np.vstack([ps.velocity[q], u[k]]),
                        np.concatenate([[ps.production[q]], s[k]]),  # n
                        np.vstack([extra[q], e[k]]))  # n x k
                  for k, q in enumerate(queries)]
        return clouds, ps.c[queries].copy()
    if members is None and n == 1:
        members = [(np.zeros(0, np.int64), np.zeros((0, 2)))] * len(queries)
    elif members is None:
        members = cloud_members(ps, queries, ellipse)
    clouds = []
    for q, (idx, rel) in zip(queries, members):
        m = n - 1
        if m > 0 and len(idx) == 0 and replace:
            idx, rel = np.array([q]), np.zeros((1, 2))
        if m < len(idx) or (replace and m > len(idx)):
            if selection == "nearest":
                pick = np.resize(np.arange(len(idx)), m)
            else:
                rng = np.random.default_rng((seed, int(q)) if draw == 0 else (seed, int(q), draw))
                if m < len(idx):
                    pick = np.sort(rng.choice(len(idx), m, replace=False))
                else:
                    pick = np.concatenate([np.arange(len(idx)),
                                           rng.choice(len(idx), m - len(idx), replace=True)])
            idx, rel = idx[pick], rel[pick]
        sel = np.concatenate([[q], idx])
        clouds.append(cloud(np.vstack([np.zeros((1, 2)), rel]), ps.velocity[sel],
                            ps.production[sel], extra[sel]))
    return clouds, ps.c[queries].copy()
