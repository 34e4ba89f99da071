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
the new frame and the same predictions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
