"""symref.transport.features: the VCNN paper's per-point features are what the docstring says.

What is proven here:
* the wall distance is exact where it is known in closed form (the flat stretch between
  the hills, above the crest, under the top wall) and agrees with an independent brute-force
  minimum over a dense sampling of the wall everywhere else;
* the strain-rate magnitude is γ for a simple shear and 0 for a rigid rotation;
* the extra fields are interpolated to the points like the others (exact where the field
  is linear in the cell coordinates);
* each paper feature of a hand-built cloud equals its formula, computed independently;
* rotating, reflecting and shifting the whole problem rotates the positions and vectors of
  paper clouds and leaves their scalars unchanged (every selection), and a VCNN on them
  gives the same predictions to round-off;
* the option reaches the study config and the CLI, and bad choices are refused.
"""
from __future__ import annotations

import numpy as np
import pytest

from symref import transport as tr


@pytest.fixture(scope="module")
def solved():
    flow = tr.solve_flow(tr.HillChannel.benchmark(1.0), nx=72, ny=24, flux=30.0)
    return tr.solve_transport(flow)


def _rotated(ps):
    c, s = np.cos(0.7318), np.sin(0.7318)
    R = np.array([[c, -s], [s, c]]) @ np.diag([1.0, -1.0])
    return R, ps.transformed(R, shift=(3.7, -11.2))


def test_wall_distance_closed_forms_and_brute_force():
    """Flat stretch (alpha = 1: flat for |x - L/2| < 2.57 > H/2): d = min(y, H - y) exactly;
    just above the crest (x = 0, h = 1, h' = 0): d = y - 1; elsewhere the minimum over
    400 000 wall samples (no k-d tree, no segments) agrees to the polyline's error bound."""
    g = tr.HillChannel.benchmark(1.0)
    y = np.linspace(0.0, g.height, 41)
    x = np.full_like(y, 0.5 * g.length)
    np.testing.assert_allclose(tr.wall_distance(g, x, y), np.minimum(y, g.height - y),
                               atol=1e-14)
    np.testing.assert_allclose(tr.wall_distance(g, x + 1.0, y), np.minimum(y, g.height - y),
                               atol=1e-14)
    yc = np.array([1.0, 1.01, 1.05])
    for xc in (0.0, g.length, -g.length):  # the crest, periodic
        np.testing.assert_allclose(tr.wall_distance(g, np.full(3, xc), yc), yc - 1.0,
                                   atol=1e-9)
    p = tr.sample_points(g, 300, seed=3)
    xs = np.linspace(-g.length, 2 * g.length, 400_001)
    W = np.column_stack([xs, g.wall(xs)[0]])
    brute = np.array([min(np.sqrt(((W - q) ** 2).sum(1)).min(), g.height - q[1]) for q in p])
    d = tr.wall_distance(g, p[:, 0], p[:, 1])
    # the docstring's bound Δx² max|h''|/8 = 1.7e-6 (Δx = L/4096, max|h''| = 2.83), plus
    # the brute force's own sampling error (< 1e-7 at these distances)
    assert np.abs(d - brute).max() < 2e-6
    # shape kept, bad shapes named
    assert tr.wall_distance(g, p[:6, 0].reshape(2, 3), p[:6, 1].reshape(2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="shape"):
        tr.wall_distance(g, p[:, 0], p[:5, 1])


def test_strain_rate_magnitude_of_shear_and_rotation():
    """√2|sym ∇u|: simple shear u = (γ y, 0) gives γ, rigid rotation gives 0, and a
    pure strain diag(e, -e) gives 2e."""
    shear = np.array([[0.0, 3.0], [0.0, 0.0]])
    rot = np.array([[0.0, -2.0], [2.0, 0.0]])
    strain = np.diag([0.5, -0.5])
    np.testing.assert_allclose(tr.strain_rate_magnitude(np.stack([shear, rot, strain])),
                               [3.0, 0.0, 1.0], atol=1e-15)


def test_extra_fields_are_sampled_like_the_others(solved):
    """point_set's extra columns are (wall distance, strain rate, cell area) interpolated
    from the cells: in the flat stretch below mid-height the wall distance is y exactly
    and the cell area is the flat columns' (H/ny)(L/nx); everywhere the strain rate
    equals the interpolated √2|sym ∇u| field."""
    grid = solved.flow.grid
    g = grid.geom
    ps = tr.point_set(solved, 3000, seed=2)
    assert ps.extra.shape == (3000, 3)
    x, y = ps.positions.T
    flat = (np.abs(x - 0.5 * g.length) < 1.0) & (y < 1.2)
    assert flat.sum() > 50
    np.testing.assert_allclose(ps.extra[flat, 0], y[flat], atol=1e-12)
    np.testing.assert_allclose(ps.extra[flat, 2], g.height / grid.ny * g.length / grid.nx,
                               rtol=1e-12)
    strain = tr.interpolate(grid, tr.strain_rate_magnitude(solved.flow.grad), x, y)
    np.testing.assert_allclose(ps.extra[:, 1], strain, rtol=1e-12, atol=1e-12)


def test_paper_cloud_features_follow_their_formulas():
    """Three points, checked feature by feature against the formulas written out by hand."""
    rel = np.array([[0.0, 0.0], [-0.3, 0.4], [0.0, 0.2]])
    u = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, -1.0]])
    extra = np.array([[0.05, 7.0, 0.01], [1.0, 2.0, 0.02], [0.3, 0.0, 0.03]])
    b = 0.4
    c = tr.paper_cloud(rel, u, extra, b)
    np.testing.assert_allclose(c["positions"], [[0, 0], [-0.3 / 0.50001, 0.4 / 0.50001],
                                                [0.0, 1.0 / 1.00005]], rtol=1e-15)
    np.testing.assert_array_equal(c["vectors"][:, 0], u)
    s = c["scalars"]
    np.testing.assert_array_equal(s[:, 0], [7.0, 2.0, 0.0])  # strain rate
    np.testing.assert_array_equal(s[:, 1], [0.01, 0.02, 0.03])  # cell area
    np.testing.assert_allclose(s[:, 2], [1.0, 2.0, 1.0])  # speed
    np.testing.assert_allclose(s[:, 3], [0.05 / 0.6, 1.0, 0.5])  # wall: min(d/(1.5 b), 1)
    near = [1.0, 0.01 / 0.51, 0.01 / 0.21]
    np.testing.assert_allclose(s[:, 4], near)
    # cos = -r·u/(|r||u|): 0 at the query point; point 1 upstream-ish (0.6); point 2
    # above the query point moving down towards it (+1)
    cos = np.array([0.0, 0.6 / (1 + 1e-10), 0.2 / (0.2 + 1e-10)])
    np.testing.assert_allclose(s[:, 5], 0.5 * (cos + 1.05) * np.array([1.0, 2.0, 1.0]) * near,
                               rtol=1e-14)


def test_paper_clouds_are_frame_independent(solved):
    """Every selection: rotated, reflected, shifted problem -> rotated positions and
    velocities, identical scalars; VCNN predictions agree to 1e-12 relative."""
    from scipy.spatial.distance import cdist

    import symref

    ps = tr.point_set(solved, 2000, seed=6)
    q = np.arange(0, 2000, 40)
    R, ps2 = _rotated(ps)
    ell = tr.CoefficientEllipse(rate=6.0)
    for sel in ("stencil", "nearest", "random"):
        c1, _ = tr.build_clouds(ps, q, 25, ell, seed=3, selection=sel, replace=True,
                                features="paper")
        c2, _ = tr.build_clouds(ps2, q, 25, ell, seed=3, selection=sel, replace=True,
                                features="paper")
        for a, b in zip(c1, c2):
            assert a["scalars"].shape == (25, 6)
            # the reflection mirrors the stencil: the same points in another order
            fa = np.hstack([a["positions"] @ R.T, a["scalars"]])
            k = cdist(fa, np.hstack([b["positions"], b["scalars"]])).argmin(axis=1)
            assert sorted(k) == list(range(25)) or sel != "stencil"
            k = k if sel == "stencil" else np.arange(25)
            np.testing.assert_allclose(a["positions"] @ R.T, b["positions"][k], atol=1e-12)
            np.testing.assert_allclose(a["vectors"] @ R.T, b["vectors"][k], atol=1e-12)
            np.testing.assert_allclose(a["scalars"], b["scalars"][k], rtol=1e-12, atol=1e-13)
    net = symref.VectorCloudNet("scalar", embedding=(8, 16), axis_neuron=2, fitting=(16,),
                                maxiter=5, verbose=False, seed=1)
    c1, y = tr.build_clouds(ps, q, 25, ell, selection="stencil", features="paper")
    net.fit(c1, y)
    c2, _ = tr.build_clouds(ps2, q, 25, ell, selection="stencil", features="paper")
    p1, p2 = net.predict(c1).ravel(), net.predict(c2).ravel()
    assert np.abs(p2 - p1).max() <= 1e-12 * np.abs(p1).max()


def test_feature_option_is_checked_and_reaches_the_cli(solved, monkeypatch):
    """Unknown feature sets and paper features without the extra fields are refused
    by name; --features sets StudyConfig.features (default unchanged: 'symref')."""
    from symref.cli import main

    ps = tr.point_set(solved, 200, seed=1)
    with pytest.raises(ValueError, match="features"):
        tr.build_clouds(ps, [0], 4, features="mine")
    bare = tr.PointSet(ps.positions, ps.velocity, ps.production, ps.c, ps.period)
    with pytest.raises(ValueError, match="extra fields"):
        tr.build_clouds(bare, [0], 4, features="paper")
    with pytest.raises(ValueError, match="features"):
        tr.StudyConfig(features="all")
    assert tr.StudyConfig().features == "symref"
    seen = {}
    monkeypatch.setattr("symref.transport.study.run_study",
                        lambda out, cfg, **kw: seen.setdefault("cfg", cfg))
    assert main(["transport", "--quick", "--features", "paper", "--out", "unused"]) == 0
    assert seen["cfg"].features == "paper"
    seen.clear()
    assert main(["transport", "--quick", "--out", "unused"]) == 0
    assert seen["cfg"].features == "symref"
