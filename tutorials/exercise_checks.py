"""Checks for the tutorials' exercises: call ``check_…(your_answer)``; it returns quietly
when the answer is right and raises ``AssertionError`` saying what is wrong otherwise.

Each tutorial ends with an "Exercises" cell that names the check to call. Worked solutions:
``tutorials/solutions/NN_exercises.py`` (run by CI in quick mode, with each check also
shown a wrong answer that it must reject).  The checks test *behaviour* — values against
an independent computation (finite differences, a closed form) on random inputs, and the
symmetry the answer must have — not the way the answer is written.
"""
from __future__ import annotations

import numpy as np


def _orthogonal(rng, dim=3, det=+1):
    """Haar-random orthogonal matrix with determinant ``det``."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


def _close(got, want, what, rtol=1e-10, atol=1e-12):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    assert not bad.any(), (f"{what}: wrong at {int(bad.sum())} of {bad.size} entries, "
                           f"largest error {err.max():.3g} (value {want.flat[int(err.argmax())]:.6g})")


# ---------------------------------------------------------------- tutorial 1: Deep Sets

def check_sum_decomposition(phi, rho, target, set_sizes=(2, 3, 5), trials=200, seed=0):
    """``rho(sum_i phi(z_i))`` equals ``target(z)`` for random sets ``z`` (rows of a
    ``trials x n`` array, entries in [-1, 1]) of every size in ``set_sizes``.

    ``phi(z)``: ``(..., n) -> (..., n, N)``; ``rho(S)``: ``(..., N) -> (...)``;
    ``target(z)``: ``(trials, n) -> (trials,)``.
    """
    rng = np.random.default_rng(seed)
    for n in set_sizes:
        z = rng.uniform(-1, 1, size=(trials, n))
        P = np.asarray(phi(z), dtype=float)
        assert P.ndim == 3 and P.shape[:2] == (trials, n), (
            f"phi(z) for z of shape {z.shape} has shape {P.shape}; expected ({trials}, {n}, N)")
        _close(rho(P.sum(axis=1)), target(z), f"rho(sum phi) vs the target for sets of {n}",
               rtol=1e-9, atol=1e-9)


def check_gyration_spectrum(spectrum, seed=0):
    """``spectrum(X)`` (X: n x 3 points) returns the 3 eigenvalues, ascending, of the
    gyration tensor ``S = (1/n) sum_i (x_i - xbar)(x_i - xbar)^T``; it is invariant under
    translations, rotations, reflections and permutations, and it tells tutorial 1's
    hexagon from its octahedron (both with six atoms 1.1 Å from the centre)."""
    rng = np.random.default_rng(seed)
    for n in (4, 6, 9):
        X = rng.normal(size=(n, 3))
        Xc = X - X.mean(axis=0)
        want = np.linalg.eigvalsh(Xc.T @ Xc / n)
        got = np.asarray(spectrum(X), dtype=float)
        _close(got, want, f"the spectrum of a random {n}-point cloud")
        for name, Y in (("translation", X + rng.normal(size=3)),
                        ("rotation", X @ _orthogonal(rng, det=+1).T),
                        ("reflection", X @ _orthogonal(rng, det=-1).T),
                        ("permutation", X[rng.permutation(n)])):
            _close(spectrum(Y), got, f"the spectrum after a {name}", rtol=1e-9, atol=1e-12)
    ang = np.arange(6) * np.pi / 3
    hexagon = 1.1 * np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1)
    octahedron = 1.1 * np.vstack([np.eye(3), -np.eye(3)])
    gap = np.abs(np.asarray(spectrum(hexagon)) - np.asarray(spectrum(octahedron))).max()
    assert gap > 0.1, f"the spectra of the hexagon and the octahedron differ by only {gap:.3g}"


# ---------------------------------------------------------------- tutorial 2: D = L L^T

def check_descriptor_matrix(descriptor, M=5, M2=3, seed=0):
    """``descriptor(G, R, M2)`` returns ``D = L L_<^T`` (M x M2) with ``L = G^T R / n``
    (G: n x M embedding rows, R: n x 4 rows, ``L_<`` the first M2 rows of L); D is
    unchanged by a rotation of R's last three columns and by a permutation of the rows."""
    rng = np.random.default_rng(seed)
    for n in (3, 7):
        G, R = rng.normal(size=(n, M)), rng.normal(size=(n, 4))
        L = G.T @ R / n
        got = np.asarray(descriptor(G, R, M2), dtype=float)
        _close(got, L @ L[:M2].T, f"D for n = {n} neighbours")
        Q = np.eye(4)
        Q[1:, 1:] = _orthogonal(rng, det=-1)
        _close(descriptor(G, R @ Q.T, M2), got, "D after rotating R's vector columns", rtol=1e-9)
        p = rng.permutation(n)
        _close(descriptor(G[p], R[p], M2), got, "D after permuting the neighbours", rtol=1e-9)


def check_tells_hexagon_from_octahedron(descriptor, seed=0):
    """``descriptor(points)`` (points: n x 3, positions relative to a centre atom at the
    origin) returns an array that is invariant under rotations, reflections and
    permutations of the points and differs between tutorial 1's hexagon and octahedron
    (six neighbours, all 1.1 Å from the centre) by more than 1 % of its size (the largest
    entry over the two shapes and a random cloud)."""
    rng = np.random.default_rng(seed)
    ang = np.arange(6) * np.pi / 3
    hexagon = 1.1 * np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1)
    octahedron = 1.1 * np.vstack([np.eye(3), -np.eye(3)])
    sizes = []
    for name, cloud in (("hexagon", hexagon), ("octahedron", octahedron),
                        ("random cloud", rng.normal(size=(7, 3)))):
        d = np.asarray(descriptor(cloud), dtype=float)
        sizes.append(np.abs(d).max())
        for tname, T in (("rotation", lambda X: X @ _orthogonal(rng, det=+1).T),
                         ("reflection", lambda X: X @ _orthogonal(rng, det=-1).T),
                         ("permutation", lambda X: X[rng.permutation(len(X))])):
            _close(descriptor(T(cloud)), d, f"the descriptor of the {name} after a {tname}",
                   rtol=1e-9, atol=1e-12)
    da, db = (np.asarray(descriptor(c), dtype=float) for c in (hexagon, octahedron))
    # relative to the largest of the three descriptors, so that two round-off zeros do not count
    gap = np.abs(da - db).max() / max(max(sizes), 1e-300)
    assert gap > 1e-2, (f"hexagon and octahedron differ by {gap:.2g} of the descriptor's size "
                        f"(largest entries: hexagon {sizes[0]:.2g}, octahedron {sizes[1]:.2g}, "
                        f"a random cloud {sizes[2]:.2g})")


# ---------------------------------------------------------------- tutorial 3: backward passes

def _switch(r, rs, rc):
    """deepmd-kit's smooth switch w(r) (1 below rs, 0 beyond rc), the one of tutorial 3."""
    u = np.clip((r - rs) / (rc - rs), 0.0, 1.0)
    return u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1


def check_radial_row_backward(row_backward, rs=1.0, rc=4.0, seed=0):
    """``row_backward(ds, rvec, rs, rc)``: se_e2_r's rows are ``s_j = w(r_j)/r_j`` of the
    pair vectors ``rvec`` (nnei x 3, r_j = |rvec_j|); given ``ds`` = dE/ds_j (nnei,) the
    answer is dE/drvec_j (nnei x 3). Checked against central finite differences of
    ``sum_j ds_j s_j`` on neighbours inside, across and beyond the switching region."""
    rng = np.random.default_rng(seed)
    r = np.concatenate([rng.uniform(0.3, rs, 3), rng.uniform(rs, rc, 8), rng.uniform(rc, rc + 1, 2)])
    rvec = rng.normal(size=(len(r), 3))
    rvec *= (r / np.linalg.norm(rvec, axis=1))[:, None]
    ds = rng.normal(size=len(r))

    def energy(v):
        rr = np.linalg.norm(v, axis=1)
        return float(np.sum(ds * _switch(rr, rs, rc) / rr))

    h = 1e-6
    want = np.zeros_like(rvec)
    for j in range(len(r)):
        for k in range(3):
            e = np.zeros_like(rvec)
            e[j, k] = h
            want[j, k] = (energy(rvec + e) - energy(rvec - e)) / (2 * h)
    _close(row_backward(ds, rvec, rs, rc), want, "dE/drvec against finite differences",
           rtol=1e-6, atol=1e-7)


def check_observed_order(order_fn, seed=0):
    """``order_fn(steps, errors)`` returns the observed order p of a finite-difference
    error law ``error ≈ C h^p`` (least-squares slope in log-log). Checked on synthetic
    errors of known order, with a little noise."""
    rng = np.random.default_rng(seed)
    steps = np.logspace(-5, -2, 9)
    for p, C in ((1, 3.0), (2, 0.2), (4, 50.0)):
        errors = C * steps ** p * np.exp(0.01 * rng.normal(size=steps.size))
        got = float(order_fn(steps, errors))
        assert abs(got - p) < 0.05, f"order {got:.3g} for errors that fall as h^{p}"


# ---------------------------------------------------------------- tutorial 6: equivariant heads

def check_dipole_head(dipole, M=6, seed=0):
    """``dipole(T, c)``: T is M x 4 (column 0 invariant, columns 1–3 the rotating vectors
    R = T[:, 1:]), c is M invariant coefficients; the answer is mu = R^T c (3,). It must
    turn with the frame: dipole(T') = Q mu when T' = [T[:, :1], R Q^T]."""
    rng = np.random.default_rng(seed)
    T, c = rng.normal(size=(M, 4)), rng.normal(size=M)
    mu = np.asarray(dipole(T, c), dtype=float)
    _close(mu, T[:, 1:].T @ c, "mu = R^T c")
    for det in (+1, -1):
        Q = _orthogonal(rng, det=det)
        T2 = np.column_stack([T[:, :1], T[:, 1:] @ Q.T])
        _close(dipole(T2, c), Q @ mu, f"mu after an orthogonal map (det {det:+d})", rtol=1e-9)


def check_polar_head(polar, M=6, seed=0):
    """``polar(T, A)``: A is an invariant symmetric M x M matrix; the answer is the 3 x 3
    alpha = R^T A R (R = T[:, 1:]), symmetric, and it turns as Q alpha Q^T."""
    rng = np.random.default_rng(seed)
    T = rng.normal(size=(M, 4))
    A = rng.normal(size=(M, M))
    A = A + A.T
    alpha = np.asarray(polar(T, A), dtype=float)
    _close(alpha, T[:, 1:].T @ A @ T[:, 1:], "alpha = R^T A R")
    _close(alpha, alpha.T, "alpha's symmetry")
    Q = _orthogonal(rng, det=+1)
    T2 = np.column_stack([T[:, :1], T[:, 1:] @ Q.T])
    _close(polar(T2, A), Q @ alpha @ Q.T, "alpha after a rotation", rtol=1e-9)


# ---------------------------------------------------------------- tutorial 5: MD time steps

def _oscillator_energy_fluctuation(step, mass, dt, omega, nsteps):
    """Run ``step(x, v, force, mass, dt)`` on a harmonic oscillator (spring k = mass omega^2,
    x(0) = 1, v(0) = 0) and return the energies (nsteps + 1,)."""
    k = mass * omega ** 2
    x, v = np.array([1.0]), np.array([0.0])
    energies = [0.5 * k]
    for _ in range(nsteps):
        x, v = step(x, v, lambda y: -k * y, mass, dt)
        energies.append(float(0.5 * mass * v @ v + 0.5 * k * x @ x))
    return np.array(energies)


def check_velocity_verlet(step, seed=0):
    """``step(x, v, force, mass, dt)`` advances positions and velocities by one velocity
    Verlet step (``force(x)`` returns the forces at x). Checked by behaviour on a harmonic
    oscillator: second order (the error after a fixed time falls 4x when dt halves),
    time-reversible (a step with -dt undoes a step), and the energy does not drift over
    20000 steps at omega dt = 1.5 (it oscillates; it blows up beyond omega dt = 2)."""
    rng = np.random.default_rng(seed)
    errs = []
    for n in (50, 100, 200):  # one period, 2 pi / omega with omega = 1
        x, v = np.array([1.0]), np.array([0.0])
        for _ in range(n):
            x, v = step(x, v, lambda y: -y, 1.0, 2 * np.pi / n)
        errs.append(abs(float(x[0]) - 1.0) + abs(float(v[0])))
    order = np.log2(errs[0] / errs[1]), np.log2(errs[1] / errs[2])
    assert min(order) > 1.9, f"observed orders {np.round(order, 2)} after one period: expected 2"
    x0, v0 = rng.normal(size=3), rng.normal(size=3)

    def force(y):
        return -y - 0.3 * y ** 3

    x1, v1 = step(x0, v0, force, 1.7, 0.3)
    xb, vb = step(x1, v1, force, 1.7, -0.3)
    _close(np.concatenate([xb, vb]), np.concatenate([x0, v0]), "a step with -dt after a step with dt")
    e = _oscillator_energy_fluctuation(step, 1.0, 1.5, 1.0, 20000)
    first, last = np.ptp(e[:2000]), np.ptp(e[-2000:])
    assert np.all(np.isfinite(e)) and last < 1.5 * first, (
        f"at omega dt = 1.5 the energy's range grew from {first:.3g} to {last:.3g}: a drift")


def check_heavy_hydrogen(mass_for_step, m_O=15.999, m_H=1.008):
    """``mass_for_step(dt_fs, period_fs, dt_ref_fs)`` returns the hydrogen mass (amu) that
    gives an O–H stretch of period ``period_fs`` (measured with m_H) the same omega dt at
    the step ``dt_fs`` as the ordinary hydrogen has at ``dt_ref_fs``: the oscillator's
    energy fluctuation under velocity Verlet at dt_fs must equal that of the reference run
    within 1 % — neither larger (too light) nor smaller (heavier than needed). The stretch
    is the O–H pair's relative coordinate, reduced mass m_O m / (m_O + m)."""
    def verlet(x, v, force, mass, dt):
        v = v + 0.5 * dt * force(x) / mass
        x = x + dt * v
        return x, v + 0.5 * dt * force(x) / mass

    for period, dt, dt_ref in ((9.0, 2.0, 1.5), (9.0, 2.0, 0.5), (10.5, 1.0, 0.5)):
        m = float(mass_for_step(dt, period, dt_ref))
        mu_H, omega_H = m_O * m_H / (m_O + m_H), 2 * np.pi / period
        k = mu_H * omega_H ** 2  # the bond's spring constant, amu / fs^2
        assert m > 0, f"a hydrogen mass of {m:.4g} amu"
        mu = m_O * m / (m_O + m)
        omega = np.sqrt(k / mu)
        spread = np.ptp(_oscillator_energy_fluctuation(verlet, mu, dt, omega, 4000))
        spread_ref = np.ptp(_oscillator_energy_fluctuation(verlet, mu_H, dt_ref, omega_H, 4000))
        ratio = spread / spread_ref  # relative to the same energy 0.5 k at the start
        assert abs(ratio - 1) < 0.01, (
            f"period {period} fs, step {dt} fs with m_H = {m:.4g} amu: the energy fluctuates "
            f"{ratio:.3f} times as much as at {dt_ref} fs with m_H = {m_H}")


# ---------------------------------------------------------------- tutorial 7: vector clouds

def check_cloud_invariants(invariants, seed=0):
    """``invariants(x, u)`` (x: n x 2 relative positions, u: n x 2 velocities of a 2-D
    cloud) returns per-point features (n x k): unchanged by rotations *and* reflections of
    the frame (x -> x Q^T, u -> u Q^T), permuted with the points, and telling apart two
    points that differ only in |x|, only in |u|, or only in the angle between x and u."""
    rng = np.random.default_rng(seed)
    x, u = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    f = np.asarray(invariants(x, u), dtype=float)
    assert f.ndim == 2 and f.shape[0] == 7, f"features of a 7-point cloud have shape {f.shape}"
    for det in (+1, -1):
        Q = _orthogonal(rng, dim=2, det=det)
        _close(invariants(x @ Q.T, u @ Q.T), f,
               f"features after a {'rotation' if det > 0 else 'reflection'} of the frame",
               rtol=1e-9, atol=1e-12)
    p = rng.permutation(7)
    _close(invariants(x[p], u[p]), f[p], "features after permuting the points", rtol=1e-9)
    base = np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]])  # |x| = |u| = 1
    for what, (x2, u2) in (("only |x|", (np.array([[1.5, 0.0]]), base[1])),
                           ("only |u|", (base[0], np.array([[0.9, 1.2]]))),
                           ("only the angle between x and u", (base[0], np.array([[0.6, -0.8]]) @
                                                                np.array([[0.0, -1.0], [1.0, 0.0]])))):
        d = np.abs(np.asarray(invariants(x2, u2), dtype=float) - np.asarray(invariants(*base))).max()
        assert d > 1e-6, f"two points that differ in {what} get the same features"


def check_monte_carlo_estimate(estimate, seed=0):
    """``estimate(values, volume)`` returns ``(I, stderr)``: the Monte Carlo estimate
    ``volume * mean(values)`` of an integral from values at uniform points of a region of
    that volume, and its standard error ``volume * std(values, ddof=1) / sqrt(N)``. Checked
    on random values, and on f(x) = x^2 over [0, 2] (I = 8/3): over 400 repetitions the
    errors' RMS agrees with the stated standard error within 15 %."""
    rng = np.random.default_rng(seed)
    v = rng.exponential(size=50)
    I, se = (float(a) for a in estimate(v, 3.0))
    _close(I, 3.0 * v.mean(), "the estimate for 50 values and volume 3")
    _close(se, 3.0 * v.std(ddof=1) / np.sqrt(50), "its standard error")
    for N in (20, 500):
        out = [estimate(rng.uniform(0, 2, N) ** 2, 2.0) for _ in range(400)]
        err = np.array([o[0] for o in out]) - 8.0 / 3.0
        se = float(np.mean([o[1] for o in out]))
        ratio = np.sqrt(np.mean(err ** 2)) / se
        assert abs(ratio - 1) < 0.15, (f"N = {N}: the estimates' RMS error is {ratio:.2f} times "
                                       f"the stated standard error")
