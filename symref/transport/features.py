r"""Per-point features of the clouds: the fields they need and the VCNN paper's feature set.

Two feature sets (``StudyConfig.features``, ``symref transport --features``):

``"symref"`` (the default)
    relative position :math:`x_i - x_0`, velocity :math:`u_i` and the (log-)production
    :math:`s_i` (:func:`symref.transport.clouds.build_clouds`).

``"paper"``
    the feature set of Zhou, Han & Xiao, "Frame-independent vector-cloud neural network
    for nonlocal constitutive modeling on arbitrary grids", CMAME 388 (2022) 114211,
    arXiv:2103.06685, as the authors' code builds it (github.com/ZhouXH-git/
    VCNN-nonlocal-constitutive-model: ``scalar-transport/read-raw-data.py`` assembles
    the columns (Cx, Cy, u, v, strain, boundary, cellVolume, |U|, wallinfo, rD, rfinal),
    ``scalar-transport/get-training-data.py`` divides (Cx, Cy) by rD and maps rD to
    0.01/(0.01 + rD), ``Training-VCNN.ipynb`` feeds columns 4-10 to the embedding
    network; the strain rate is ``sqrt(2) mag(symm(grad U))`` of
    ``myTFoam/createFields.H``).  The paper's text (its feature table) was not among
    the sources that could be searched; the list below is the code's.  With
    :math:`r_i = x_i - x_0`, :math:`r = |r_i|`, :math:`|u_i|`:

    * positions :math:`r_i/(r + 10^{-5})` (the direction to the point) and vectors
      :math:`u_i` (both rotate with the frame);
    * invariant scalars, in this order:

      ======================  =========================================================
      strain rate             :math:`|S| = \sqrt{2\,S{:}S}`, :math:`S = \tfrac12(\nabla u +
                              \nabla u^\top)` (:func:`strain_rate_magnitude`)
      cell volume             the area of the solver cell the point lies in
                              (:meth:`Grid.volumes`, sampled like the other fields)
      speed                   :math:`|u_i|`
      wall information        :math:`\min(d_w/(1.5\,b), 1)`, :math:`d_w` the distance to
                              the nearest wall (:func:`wall_distance`), b the across
                              semi-axis of the cloud ellipse (the authors' ``1.5 Ly``,
                              Ly their ellipse's across semi-axis)
      proximity               :math:`0.01/(0.01 + r)` (lengths in hill heights, as in
                              the authors' data)
      upstream weight         :math:`\tfrac12(\cos\theta + 1.05)\,|u_i|\,0.01/(r + 0.01)`,
                              :math:`\cos\theta = -r_i\cdot u_i/(r\,|u_i| + 10^{-10})`
                              (large for points upstream of the query point whose
                              velocity points at it)
      ======================  =========================================================

    Differences, stated: the authors' *boundary* column (1 for the first and last
    cell rows of their 200-row mesh) is left out — it marks a band of the mesh, not of
    the flow, is not defined for points off a grid, and jumps where a stencil cloud
    moves continuously; the wall information carries the same fact.  The production
    of *our* reaction is not in the set (the paper's source is a function of |S| and
    the wall distance, both in the set; ours, :math:`\beta\max(|S|^2 - |\Omega|^2, 0)`,
    also needs the vorticity, which the paper's set does not carry).  The network
    (:class:`symref.VectorCloudNet`) adds its own invariants (norms and dot products
    of the positions and velocities) to these scalars, as it does for ours.

The three new fields (wall distance, strain rate, cell area; :data:`EXTRA_FIELDS`) are
computed once on the solver's cells (:func:`extra_fields`) and interpolated to the points
like velocity and production.  All are scalars: rotating or reflecting the problem leaves
them unchanged.
"""
from __future__ import annotations

import numpy as np

from symref.transport.flow import Grid, HillChannel

FEATURE_SETS = ("symref", "paper")
EXTRA_FIELDS = ("wall_distance", "strain_rate", "cell_area")


def wall_distance(geom: HillChannel, x, y, samples: int = 4096) -> np.ndarray:
    r"""Distance from points (x, y) to the nearest wall: the flat top :math:`y = H` or the
    periodic hill wall :math:`y = h(x)`.

    The hill wall is the polyline through ``samples`` points per period (and the periodic
    copies either side); each point's distance is the smallest over the segments next to
    its 4 nearest polyline vertices (a k-d tree).  The polyline is within
    :math:`\Delta x^2 \max|h''|/8` of the wall (Δx = L/samples: ~1e-6 hill heights).
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"wall_distance needs x and y of one shape, got {x.shape} and {y.shape}")
    L = geom.length
    xs = np.arange(-samples, 2 * samples + 1) * (L / samples)  # 3 periods, ends included
    W = np.column_stack([xs, geom.wall(xs)[0]])  # m x 2
    P = np.column_stack([np.mod(x.ravel(), L), y.ravel()])  # p x 2
    _, near = cKDTree(W).query(P, k=4)  # p x 4
    best = np.full(len(P), np.inf)
    for k in near.T:
        for a in (np.maximum(k - 1, 0), k):  # the segments a -> a + 1 around vertex k
            b = np.minimum(a + 1, len(W) - 1)
            seg = W[b] - W[a]  # p x 2
            t = np.clip(np.einsum("pd,pd->p", P - W[a], seg)
                        / np.maximum(np.einsum("pd,pd->p", seg, seg), 1e-300), 0.0, 1.0)
            d = np.linalg.norm(P - W[a] - t[:, None] * seg, axis=1)
            best = np.minimum(best, d)
    return np.minimum(best, geom.height - P[:, 1]).reshape(x.shape)


def strain_rate_magnitude(grad: np.ndarray) -> np.ndarray:
    r""":math:`|S| = \sqrt{2\,S{:}S}`, :math:`S = \tfrac12(G + G^\top)`, of velocity gradients
    ``grad`` (..., 2, 2), ``grad[..., a, b] = ∂u_a/∂x_b`` (OpenFOAM's
    ``sqrt(2) mag(symm(grad U))``): γ for a simple shear of rate γ, 0 for a rigid rotation."""
    S = 0.5 * (grad + np.swapaxes(grad, -1, -2))  # ... x 2 x 2
    return np.sqrt(2.0 * np.einsum("...ab,...ab->...", S, S))


def extra_fields(grid: Grid, grad: np.ndarray) -> np.ndarray:
    """The :data:`EXTRA_FIELDS` at the cell centres, (ny, nx, 3): wall distance, strain
    rate magnitude of the velocity gradient ``grad`` (ny, nx, 2, 2), cell area."""
    xi, eta = grid.centres()
    x, y = grid.geom.to_physical(xi, eta)
    return np.stack([wall_distance(grid.geom, x, y), strain_rate_magnitude(grad),
                     grid.volumes()], axis=-1)


def paper_cloud(rel: np.ndarray, velocity: np.ndarray, extra: np.ndarray, b: float) -> dict:
    """One cloud with the paper's features (module docstring) from the relative positions
    ``rel`` (n, 2), velocities (n, 2), the :data:`EXTRA_FIELDS` at the points ``extra``
    (n, 3) and the across semi-axis ``b`` of the cloud's ellipse."""
    r = np.linalg.norm(rel, axis=1)  # n
    speed = np.linalg.norm(velocity, axis=1)  # n
    cos = -np.einsum("nd,nd->n", rel, velocity) / (r * speed + 1e-10)  # n
    near = 0.01 / (0.01 + r)  # n
    scalars = np.column_stack([extra[:, 1], extra[:, 2], speed,
                               np.minimum(extra[:, 0] / (1.5 * b), 1.0), near,
                               0.5 * (cos + 1.05) * speed * near])  # n x 6
    return {"positions": rel / (r + 1e-5)[:, None], "vectors": velocity[:, None, :],
            "scalars": scalars}
