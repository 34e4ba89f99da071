"""symref.transport.navier_stokes: the steady viscous flow over the hills is verified.

What is proven here:
* the benchmark hill is the ERCOFTAC piecewise cubic (crest 1, foot 0 at 54/28 hill heights
  times alpha, continuous with a continuous slope at the knots) and h', h'' of both shapes
  are the derivatives of h (finite differences);
* Newton's Jacobian is the derivative of the discrete residual (finite differences);
* manufactured solutions at Re_H = 100 converge at second order in ψ, ω, u and v;
* the flow is divergence-free to round-off and no-slip (u → 0 at the walls);
* the hill separates the flow: a recirculation bubble whose separation and reattachment
  points converge (three grids, Richardson) to better than 2 % between the two finest;
* the transport solver runs on the viscous flow, with the production from its gradient;
* a Reynolds number the continuation cannot reach is reported, not returned.
"""
from __future__ import annotations

import numpy as np
import pytest

from symref import transport as tr
from symref.transport import navier_stokes as ns


def test_benchmark_hill_is_the_piecewise_cubic():
    """Crest, foot, knots: the benchmark's spline, stretched by alpha."""
    for alpha in (0.8, 1.0, 1.5):
        g = tr.HillChannel.benchmark(alpha)
        assert g.length == pytest.approx(3.858 * alpha + 5.142)
        foot = 54.0 / 28.0 * alpha
        x = np.array([0.0, foot, g.length - foot, 0.5 * g.length, g.length - 1e-12])
        h, dh = g.wall(x)
        assert h[0] == 1.0 and abs(h[-1] - 1.0) < 1e-9
        assert np.abs(h[1:4]).max() < 1e-9  # flat floor between the hills
        # the ERCOFTAC points (mm) on the hill: 9 -> 27, 20 -> 19, 40 -> 4 (rounded spline)
        hk, _ = g.wall(np.array([9.0, 20.0, 40.0]) / 28.0 * alpha)
        np.testing.assert_allclose(hk * 28.0, [27.0, 19.0, 4.0], atol=0.01)
        knots = np.array([9.0, 14.0, 20.0, 30.0, 40.0]) / 28.0 * alpha
        for e in (1e-9,):
            lo, hi = g.wall_derivatives(knots - e), g.wall_derivatives(knots + e)
            assert np.abs(lo[0] - hi[0]).max() < 1e-6  # continuous
            assert np.abs(lo[1] - hi[1]).max() < 2e-3  # slope continuous (spline fit)
        # mirror hill: h(L - x) = h(x), h'(L - x) = -h'(x)
        xs = np.linspace(0.01, foot, 40)
        h1, d1 = g.wall(xs)
        h2, d2 = g.wall(g.length - xs)
        np.testing.assert_allclose(h1, h2, atol=1e-12)
        np.testing.assert_allclose(d1, -d2, atol=1e-12)


@pytest.mark.parametrize("geom", [tr.HillChannel(1.0), tr.HillChannel(1.4),
                                  tr.HillChannel.benchmark(1.2)])
def test_wall_derivatives_are_derivatives(geom):
    """h' and h'' against central differences of h and h' (away from kinks)."""
    x = np.linspace(0.013, geom.length - 0.013, 701)
    e = 1e-6
    h, dh, d2 = geom.wall_derivatives(x)
    hp, dp, _ = geom.wall_derivatives(x + e)
    hm, dm, _ = geom.wall_derivatives(x - e)
    ok = np.ones_like(x, dtype=bool)
    if geom.shape == "benchmark":  # the spline's knots and the clip near the crest
        X = 28.0 * np.minimum(x, geom.length - x) / geom.alpha
        kinks = np.array([3.19, 9.0, 14.0, 20.0, 30.0, 40.0, 54.0])
        ok = np.abs(X[:, None] - kinks).min(axis=1) > 0.05
    np.testing.assert_allclose(((hp - hm) / (2 * e))[ok], dh[ok], atol=1e-7)
    np.testing.assert_allclose(((dp - dm) / (2 * e))[ok], d2[ok], atol=1e-6)


def test_shape_and_flow_inputs_are_checked():
    with pytest.raises(ValueError, match="shape"):
        tr.HillChannel(1.0, shape="gaussian")
    with pytest.raises(ValueError, match="shorter than the benchmark hill"):
        tr.HillChannel(3.0, shape="benchmark")
    with pytest.raises(ValueError, match="reynolds"):
        ns.solve_navier_stokes(tr.HillChannel(1.0), 24, 8, reynolds=-1.0)
    with pytest.raises(ValueError, match="flux"):
        ns.solve_navier_stokes(tr.HillChannel(1.0), 24, 8, flux=float("nan"))


def test_newton_jacobian_is_the_derivative_of_the_residual():
    grid = tr.Grid(tr.HillChannel.benchmark(1.0), 8, 5)
    sysm = ns._system(grid)
    z = np.random.default_rng(0).normal(size=2 * grid.nx * grid.ny)
    forcing = tuple(np.random.default_rng(1).normal(size=(2, grid.ny + 1, grid.nx)))
    R, J = ns._residual_and_jacobian(sysm, z, 3.0, 0.1, forcing)
    J = J.toarray()
    e = 1e-6
    fd = np.empty_like(J)
    for k in range(len(z)):
        d = np.zeros_like(z)
        d[k] = e
        fd[:, k] = (ns._residual_and_jacobian(sysm, z + d, 3.0, 0.1, forcing)[0]
                    - ns._residual_and_jacobian(sysm, z - d, 3.0, 0.1, forcing)[0]) / (2 * e)
    assert np.abs(J - fd).max() < 1e-7 * np.abs(J).max()


def test_manufactured_solutions_converge_at_second_order():
    """ψ, ω at the vertices and u, v at the cell centres, Re_H = 100, grids 24..96."""
    res = ns.verify_navier_stokes((24, 48, 96), reynolds=100.0)
    for k in ("psi", "omega", "u", "v"):
        assert min(res[k]["order_rms"]) >= 1.9, (k, res[k])
        assert res[k]["order_max"][-1] >= 1.9, (k, res[k])
        assert res[k]["rms"][-1] < res[k]["rms"][0] / 12  # really converging
    assert max(res["newton"]) <= 8


@pytest.fixture(scope="module")
def viscous():
    return ns.solve_navier_stokes(tr.HillChannel.benchmark(1.0), 96, 32, flux=30.0,
                                  reynolds=100.0)


def test_flow_is_divergence_free_no_slip_and_separated(viscous):
    f = viscous
    assert f.divergence <= 1e-12
    assert f.residual < 1e-9
    # no slip: the velocity extrapolated to the walls from the first two cell rows is
    # small (it is ~1 of the largest for the potential flow of the same channel), and
    # the flow near the bottom wall is reversed under the bubble
    u = f.velocity
    for a, b in ((0, 1), (-1, -2)):
        assert np.abs(1.5 * u[a] - 0.5 * u[b]).max() < 0.1 * np.abs(u).max()
    assert u[0, :, 0].min() < 0
    assert len(f.separation) == 1 and len(f.reattachment) == 1
    xs, xr = f.separation[0], f.reattachment[0]
    assert 0.2 < xs < 1.0 and xs + 2.0 < xr < f.grid.geom.length  # a bubble behind the crest
    # ψ at the bubble's core is below the bottom wall's 0 (closed streamlines)
    assert f.psi_v.min() < 0


def test_separation_points_converge_on_three_grids():
    """Separation and reattachment on 48, 96, 192 cells along; the two finest agree to 2 %
    and Richardson extrapolation from the three lies within 2 % of the finest."""
    geom = tr.HillChannel.benchmark(1.0)
    pts = []
    for nx in (48, 96, 192):
        f = ns.solve_navier_stokes(geom, nx, nx // 3, reynolds=100.0)
        pts.append([f.separation[0], f.reattachment[0]])
    pts = np.array(pts)
    rich = ns.richardson(pts[:, 0]), ns.richardson(pts[:, 1])
    for k in range(2):
        assert abs(pts[2, k] - pts[1, k]) <= 0.02 * pts[2, k], pts
        assert abs(rich[k]["extrapolated"] - pts[2, k]) <= 0.02 * pts[2, k], rich


def test_transport_on_the_viscous_flow(viscous):
    sol = tr.solve_transport(viscous)
    assert sol.residual <= 1e-12 and sol.mass_balance < 1e-12
    assert sol.c.min() > 0
    # the potential flow of the same channel has no reversed flow and another c
    pot = tr.solve_transport(tr.solve_flow(viscous.grid.geom, 96, 32, 30.0))
    assert pot.flow.velocity[..., 0].min() > 0
    assert np.abs(sol.c - pot.c).max() > 0.1 * np.abs(pot.c).max()


def test_stalled_continuation_is_reported(monkeypatch):
    """When Newton fails at every step size, solve_navier_stokes raises and says where."""
    def never(*args, **kwargs):
        raise RuntimeError("Newton did not converge")

    monkeypatch.setattr(ns, "_newton", never)
    with pytest.raises(RuntimeError, match="continuation stalled after Re_H = 0"):
        ns.solve_navier_stokes(tr.HillChannel(1.0), 24, 8, reynolds=80.0)


def test_richardson_recovers_a_known_order():
    """f(h) = 3 + 0.5 h² on h = 4, 2, 1: order 2 and the limit 3 exactly."""
    r = ns.richardson([3 + 0.5 * 16, 3 + 0.5 * 4, 3 + 0.5])
    assert r["order"] == pytest.approx(2.0, abs=1e-12)
    assert r["extrapolated"] == pytest.approx(3.0, abs=1e-12) and r["monotone"]
