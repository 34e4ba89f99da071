"""symref.transport: the PDE data generator is verified, the clouds are frame-independent.

What is proven here:
* both solvers converge at second order on manufactured solutions (transport with the
  nonlinear reaction and wall fluxes; the stream-function Laplace solve);
* the discrete equations conserve mass: every column of the assembled operator sums to
  zero, the potential flow's discrete divergence is zero to round-off, and the production
  problem's sources balance to solver tolerance;
* interpolation to arbitrary points is exact for fields linear in (ξ, η), periodic wrap
  included;
* clouds built from a rotated, reflected and shifted copy of the whole problem are the
  rotated clouds, and a VCNN gives the same predictions to round-off;
* the quick study runs, resumes without retraining, and its nonlocal closure beats the
  local one (slow).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from symref import transport as tr
from symref.cli import main


@pytest.fixture(scope="module")
def solved():
    flow = tr.solve_flow(tr.HillChannel(1.1), nx=72, ny=24, flux=30.0)
    return tr.solve_transport(flow)


def test_manufactured_solutions_converge_at_second_order():
    res = tr.verify(levels=(24, 48, 96), verbose=False)
    assert min(res["transport"]["order_l2"]) > 1.9, res["transport"]
    assert min(res["transport"]["order_max"]) > 1.8, res["transport"]
    assert min(res["poisson"]["order_l2"]) > 1.9, res["poisson"]
    # errors really decrease (not a flat error that happens to give a ratio)
    assert res["transport"]["l2"][-1] < 2e-4 and res["poisson"]["l2"][-1] < 2e-4
    assert max(res["transport"]["mass_balance"]) < 1e-12


def test_operators_are_conservative():
    """Each face flux is added to one cell and removed from the other: 1ᵀA = 0."""
    grid = tr.Grid(tr.HillChannel(1.4), 40, 14)
    D, _ = tr.diffusion_operator(grid.geom, grid.nx, grid.ny, nodes="cells")
    flow = tr.solve_flow(grid.geom, grid.nx, grid.ny, flux=25.0)
    C, F, G = tr.advection_operator(flow.psi_v, grid)
    for A in (D, C):
        cols = np.asarray(A.sum(axis=0)).ravel()
        assert np.abs(cols).max() < 1e-12 * abs(A).max()
    # impermeable walls, divergence-free to round-off whatever the ψ solver's accuracy
    assert np.abs(G[0]).max() == 0 and np.abs(G[-1]).max() == 0
    assert flow.divergence < 1e-13
    assert flow.residual < 1e-12


def test_production_problem_balances_and_is_physical(solved):
    assert solved.residual <= 1e-12
    assert solved.mass_balance < 1e-12
    assert solved.c.min() > 0  # produced, never negative
    # production sits at the hill crest (x = 0), c is carried downstream of it
    col = int(np.unravel_index(solved.production.argmax(), solved.production.shape)[1])
    assert min(col, solved.production.shape[1] - 1 - col) <= 3
    u = solved.flow.velocity
    assert u[..., 0].min() > 0  # flow to +x everywhere


def test_strain_production_is_okubo_weiss(solved):
    """β max(|S|² − |Ω|², 0) from the explicit split of ∇u; equal to β|∇u|² for the
    (irrotational) potential flow up to its discretisation error (0.2 %); zero in pure shear."""
    g = np.random.default_rng(0).normal(size=(50, 2, 2))
    S, W = 0.5 * (g + g.transpose(0, 2, 1)), 0.5 * (g - g.transpose(0, 2, 1))
    want = 0.3 * np.maximum((S ** 2).sum((1, 2)) - (W ** 2).sum((1, 2)), 0)
    r = tr.Reaction(beta=0.3, production_kind="strain")
    np.testing.assert_allclose(r.production(g), want, rtol=1e-13, atol=1e-15)
    assert r.production(np.array([[0.0, 5.0], [0.0, 0.0]])) == 0.0
    grad = solved.flow.grad  # the discrete potential flow: vorticity = discretisation error
    full = tr.Reaction(beta=0.3).production(grad)
    assert np.abs(r.production(grad) - full).max() < 5e-3 * full.max()
    with pytest.raises(ValueError, match="production_kind"):
        tr.Reaction(production_kind="vorticity")


def test_newton_failure_is_reported(solved):
    with pytest.raises(RuntimeError, match="did not converge"):
        tr.solve_transport(solved.flow, max_iter=1)


def test_interpolation_is_exact_for_linear_fields_and_periodic():
    geom = tr.HillChannel(0.9)
    grid = tr.Grid(geom, 36, 12)
    xi, eta = grid.centres()
    field = np.stack([3.0 * eta - 1.0, np.cos(2 * np.pi * xi / geom.length)], axis=-1)
    pts = tr.sample_points(geom, 500, seed=3)
    v = tr.interpolate(grid, field, pts[:, 0], pts[:, 1])
    xi_p, eta_p = geom.to_computational(pts[:, 0], pts[:, 1])
    np.testing.assert_allclose(v[:, 0], 3.0 * eta_p - 1.0, atol=1e-12)  # exact, walls included
    # periodic: x and x + L give the same value
    v2 = tr.interpolate(grid, field, pts[:, 0] + geom.length, pts[:, 1])
    np.testing.assert_allclose(v2, v, atol=1e-14)
    np.testing.assert_allclose(v[:, 1], np.cos(2 * np.pi * xi_p / geom.length), atol=2e-2)
    with pytest.raises(ValueError, match="outside the fluid"):
        tr.interpolate(grid, field, np.array([0.0]), np.array([0.2]))  # inside the hill


def test_sample_points_fill_the_fluid_uniformly():
    geom = tr.HillChannel(1.2)
    p = tr.sample_points(geom, 20000, seed=0)
    h, _ = geom.wall(p[:, 0])
    assert np.all(p[:, 1] > h) and np.all(p[:, 1] <= geom.height)
    assert np.all((p[:, 0] >= 0) & (p[:, 0] < geom.length))
    # density uniform: the fraction above y = 2 matches its share of the fluid area
    frac = np.mean(p[:, 1] > 2.0)
    assert abs(frac - geom.length * (geom.height - 2.0) / geom.area()) < 0.015


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="alpha"):
        tr.HillChannel(alpha=-1.0)
    with pytest.raises(ValueError, match="below the channel height"):
        tr.HillChannel(hill=4.0)
    with pytest.raises(ValueError, match="nx >= 4"):
        tr.Grid(tr.HillChannel(), 2, 10)
    with pytest.raises(ValueError, match="flux"):
        tr.solve_flow(tr.HillChannel(), 16, 6, flux=-1.0)
    with pytest.raises(ValueError, match="shift"):
        tr.Ellipse(shift=1.5)


def _rotated(ps, theta=0.9):
    c, s = np.cos(theta), np.sin(theta)
    R = np.array([[c, -s], [s, c]]) @ np.diag([1.0, -1.0])  # rotation and reflection
    return R, ps.transformed(R, shift=(5.0, -2.0))


def test_clouds_wrap_periodically_and_follow_the_velocity(solved):
    ps = tr.point_set(solved, 3000, seed=2)
    ell = tr.Ellipse(a=1.5, b=0.5, shift=0.6)
    near_inlet = np.flatnonzero(ps.positions[:, 0] < 0.3)[:20]
    members = tr.cloud_members(ps, near_inlet, ell)
    for q, (idx, rel) in zip(near_inlet, members):
        assert len(idx) > 0
        # every member is inside the ellipse in the velocity frame: an independent check
        e = ps.velocity[q] / np.linalg.norm(ps.velocity[q])
        along = rel @ e
        across = rel @ np.array([-e[1], e[0]])
        assert np.all(((along + ell.shift * ell.a) / ell.a) ** 2 + (across / ell.b) ** 2 <= 1 + 1e-12)
        # upstream of x ≈ 0 is x ≈ L: members come through the periodic wrap
        assert np.any(ps.positions[idx, 0] > 7.0)
        np.testing.assert_allclose(ps.positions[idx] - ps.positions[q] - rel,
                                   np.outer(np.rint((ps.positions[idx] - ps.positions[q] - rel)[:, 0]
                                                    / 9.0), [9.0, 0.0]), atol=1e-12)


def test_clouds_and_predictions_are_frame_independent(solved):
    import symref

    ps = tr.point_set(solved, 3000, seed=4)
    q = np.arange(0, 3000, 50)
    R, ps2 = _rotated(ps)
    for n in (1, 25, 150):
        c1, y1 = tr.build_clouds(ps, q, n, seed=7)
        c2, y2 = tr.build_clouds(ps2, q, n, seed=7)
        np.testing.assert_array_equal(y1, y2)
        for a, b in zip(c1, c2):
            assert len(a["positions"]) == len(b["positions"]) <= n
            np.testing.assert_allclose(a["positions"] @ R.T, b["positions"], atol=1e-12)
            np.testing.assert_allclose(a["vectors"] @ R.T, b["vectors"], atol=1e-12)
    net = symref.VectorCloudNet("scalar", embedding=(8, 16), axis_neuron=2, fitting=(16,),
                                maxiter=5, verbose=False, seed=1)
    c1, y1 = tr.build_clouds(ps, q, 150, seed=7)
    net.fit(c1, y1)
    c2, _ = tr.build_clouds(ps2, q, 150, seed=7)
    p1, p2 = net.predict(c1).ravel(), net.predict(c2).ravel()
    assert np.abs(p2 - p1).max() <= 1e-12 * np.abs(p1).max()


def test_coefficient_ellipse_reaches_the_advection_and_diffusion_lengths():
    """a, b, shift from ℓ_a = |u|/k and ℓ_d = sqrt(D/k): the ellipse spans exactly
    ℓ_a + 2ℓ_d upstream, 2ℓ_d downstream and 2ℓ_d across (upstream=1, spread=2)."""
    ell = tr.CoefficientEllipse(diffusivity=0.5, rate=4.0, upstream=1.0, spread=2.0)
    speed = np.array([0.0, 3.0, 20.0])
    a, b, shift = ell.axes(speed)
    ld = np.sqrt(0.5 / 4.0)
    np.testing.assert_allclose(a * (1 + shift), speed / 4.0 + 2 * ld, rtol=1e-14)  # upstream
    np.testing.assert_allclose(a * (1 - shift), 2 * ld, rtol=1e-14)  # downstream
    np.testing.assert_allclose(b, 2 * ld, rtol=1e-14)
    assert shift[0] == 0.0  # no flow: the diffusion disc
    with pytest.raises(ValueError, match="rate"):
        tr.CoefficientEllipse(rate=0.0)


def test_long_clouds_see_periodic_copies_and_fill_to_a_fixed_n(solved):
    """An ellipse longer than the channel finds the same point at positions one period
    apart; the nearest selection is deterministic, nearest first, and with replace=True
    every cloud has exactly n points."""
    ps = tr.point_set(solved, 1500, seed=5)
    L = solved.flow.grid.geom.length
    q = np.flatnonzero(ps.velocity[:, 0] > 5)[:10]
    long = tr.CoefficientEllipse(rate=1.0, upstream=1.2, spread=0.5)  # reach > L upstream
    members = tr.cloud_members(ps, q, long)
    twice = 0
    for idx, rel in members:
        vals, counts = np.unique(idx, return_counts=True)
        for v in vals[counts > 1]:
            r = rel[idx == v]
            d = r[:, None, :] - r[None, :, :]
            assert np.any(np.isclose(np.abs(d[..., 0]), L, atol=1e-9))
            twice += 1
    assert twice > 0
    small = tr.Ellipse(a=0.3, b=0.1, shift=0.5)
    mem = tr.cloud_members(ps, q, small)
    assert min(len(m[0]) for m in mem) < 149  # too few points: needs filling
    for sel in ("nearest", "random"):
        c, _ = tr.build_clouds(ps, q, 150, small, members=mem, selection=sel, replace=True)
        assert all(len(x["positions"]) == 150 for x in c)
        c2, _ = tr.build_clouds(ps, q, 150, small, members=mem, selection=sel, replace=True)
        for x, y in zip(c, c2):  # reproducible: seeded or deterministic
            np.testing.assert_array_equal(x["positions"], y["positions"])
    c, _ = tr.build_clouds(ps, q, 4, members=tr.cloud_members(ps, q), selection="nearest")
    for x, q0 in zip(c, q):  # the three nearest in the normalised ellipse radius
        e = ps.velocity[q0] / np.linalg.norm(ps.velocity[q0])
        ell = tr.Ellipse()
        def rho(r):
            al = r @ e
            return ((al + ell.shift * ell.a) / ell.a) ** 2 + (r @ r - al ** 2) / ell.b ** 2
        idx, rel = tr.cloud_members(ps, [q0])[0]
        radii = sorted(rho(r) for r in rel)
        np.testing.assert_allclose(sorted(rho(r) for r in x["positions"][1:]), radii[:3])
    with pytest.raises(ValueError, match="selection"):
        tr.build_clouds(ps, q, 4, selection="farthest")


def test_paper_clouds_are_frame_independent(solved):
    """The coefficient ellipse, periodic copies, nearest and random-with-replacement
    selections: the rotated, reflected, shifted problem gives the rotated clouds."""
    ps = tr.point_set(solved, 2000, seed=6)
    q = np.arange(0, 2000, 40)
    R, ps2 = _rotated(ps)
    ell = tr.CoefficientEllipse(rate=2.0)
    for sel in ("nearest", "random"):
        c1, _ = tr.build_clouds(ps, q, 150, ell, seed=3, selection=sel, replace=True)
        c2, _ = tr.build_clouds(ps2, q, 150, ell, seed=3, selection=sel, replace=True)
        for a, b in zip(c1, c2):
            np.testing.assert_allclose(a["positions"] @ R.T, b["positions"], atol=1e-12)
            np.testing.assert_allclose(a["vectors"] @ R.T, b["vectors"], atol=1e-12)


def test_stencil_is_symmetric_continuous_and_frame_independent(solved):
    """The stencil: m points in the unit disc, mirror-symmetric; stencil clouds of the
    rotated, reflected, shifted problem are the rotated clouds (as sets: a reflection swaps
    mirror pairs) and a VCNN predicts the same to round-off; moving the query point by δ
    moves every cloud point and field continuously (O(δ)), and points below the wall are
    moved onto it."""
    import symref
    from scipy.spatial.distance import cdist

    for m in (1, 24, 149):
        off = tr.stencil_offsets(m)
        assert off.shape == (m, 2) and np.all(np.hypot(*off.T) <= 1 + 1e-15)
        mirrored = off * [1.0, -1.0]
        assert cdist(off, mirrored).min(axis=1).max() < 1e-15
    ps = tr.point_set(solved, 500, seed=8)
    q = np.arange(0, 500, 25)
    R, ps2 = _rotated(ps)
    ell = tr.CoefficientEllipse(rate=6.0)
    c1, _ = tr.build_clouds(ps, q, 150, ell, selection="stencil")
    c2, _ = tr.build_clouds(ps2, q, 150, ell, selection="stencil")
    for a, b in zip(c1, c2):
        assert len(a["positions"]) == 150
        d = cdist(a["positions"] @ R.T, b["positions"])
        k = d.argmin(axis=1)
        assert d.min(axis=1).max() < 1e-12
        np.testing.assert_allclose(a["vectors"][:, 0] @ R.T, b["vectors"][k, 0], atol=1e-12)
        np.testing.assert_allclose(a["scalars"], b["scalars"][k], atol=1e-14)
    net = symref.VectorCloudNet("scalar", embedding=(8, 16), axis_neuron=2, fitting=(16,),
                                maxiter=5, verbose=False, seed=1)
    net.fit(c1, ps.c[q])
    p1, p2 = net.predict(c1).ravel(), net.predict(c2).ravel()
    assert np.abs(p2 - p1).max() <= 1e-12 * np.abs(p1).max()
    # continuity: the same query moved by δ
    delta = 1e-7
    moved = tr.PointSet(ps.positions + [delta, 0.0], ps.velocity, ps.production, ps.c,
                        ps.period, ps.sampler)
    c3, _ = tr.build_clouds(moved, q, 150, ell, selection="stencil")
    for a, b in zip(c1, c3):
        assert np.abs(a["positions"] - b["positions"]).max() < 1e3 * delta
    # near the wall: stencil points below it are moved onto the wall (η = 0)
    geom = solved.flow.grid.geom
    low = np.flatnonzero(ps.positions[:, 1] - geom.wall(ps.positions[:, 0])[0] < 0.05)[:5]
    c4, _ = tr.build_clouds(ps, low, 150, ell, selection="stencil")
    for x, q0 in zip(c4, low):
        pts = x["positions"] + ps.positions[q0]
        assert np.all(pts[:, 1] >= geom.wall(pts[:, 0])[0] - 1e-12)
    with pytest.raises(ValueError, match="sampler"):
        tr.build_clouds(tr.PointSet(ps.positions, ps.velocity, ps.production, ps.c, ps.period),
                        q, 10, selection="stencil")


def test_study_config_refuses_unknown_choices():
    for kw, word in (({"flow": "stokes"}, "flow"), ({"shape": "box"}, "shape"),
                     ({"cloud": "disc"}, "cloud"), ({"selection": "all"}, "selection"),
                     ({"draws": 0}, "draws"), ({"draws": 4, "selection": "nearest"}, "draws")):
        with pytest.raises(ValueError, match=word):
            tr.StudyConfig(**kw)


def test_cli_verify_only(tmp_path, capsys):
    assert main(["transport", "--verify-only", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "verify.json").read_text())
    assert min(res["transport"]["order_l2"]) > 1.9
    assert min(res["navier_stokes"]["omega"]["order_rms"]) > 1.9
    assert main(["transport", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert "--jobs" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_study_runs_resumes_and_nonlocal_wins(tmp_path):
    cfg = tr.StudyConfig.quick()
    s = tr.run_study(tmp_path, cfg, jobs=2, verbose=False)
    for name in ("study.json", "line.png", "error_maps.png", "errors.png", "convergence.png"):
        assert (tmp_path / name).is_file(), name
    err = s["errors"]
    for n in ("1", "25", "150"):
        assert len(err[n]["test_all"]["values"]) == len(cfg.seeds)
    assert err["150"]["test_all"]["mean"] < err["1"]["test_all"]["mean"] / 1.5
    assert max(s["frame_check_max_rel"].values()) <= 1e-12
    # a second run finds every training run done: nothing is retrained
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").iterdir()}
    s2 = tr.run_study(tmp_path, cfg, jobs=1, verbose=False, plots=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "results").iterdir()} == stamps
    assert s2["errors"]["150"]["test_all"] == err["150"]["test_all"]
    # another configuration in the same folder is refused, not mixed in
    with pytest.raises(ValueError, match="other settings"):
        tr.run_study(tmp_path, tr.StudyConfig(maxiter=7), verbose=False)
