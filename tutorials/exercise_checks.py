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


# ---------------------------------------------------------------- tutorial 4: fitting water

def check_energy_bias(energy_bias, seed=0):
    """``energy_bias(counts, energies)``: counts is nframes x ntypes (atoms of each element
    per frame), energies is (nframes,); the answer is the per-element energy (ntypes,)
    minimising ``sum_f (energies_f - counts_f . b)^2``. Checked on frames of varied
    composition (a unique answer, compared with the least-squares solution) and on frames
    of one composition, as tutorial 4's water (only ``counts . b`` is determined: the
    fitted energies must be the least-squares ones, i.e. the mean)."""
    rng = np.random.default_rng(seed)
    b_true = np.array([-93.5, -187.2, -16.1])
    counts = rng.integers(1, 40, size=(30, 3)).astype(float)
    energies = counts @ b_true + rng.normal(scale=0.5, size=30)
    want = np.linalg.lstsq(counts, energies, rcond=None)[0]
    _close(energy_bias(counts, energies), want, "the bias of frames with varied composition",
           rtol=1e-8, atol=1e-8)
    same = np.tile([64.0, 128.0], (12, 1))
    e_same = same @ np.array([-187.0, -93.6]) + rng.normal(scale=0.3, size=12)
    got = np.asarray(energy_bias(same, e_same), dtype=float)
    assert got.shape == (2,), f"bias of shape {got.shape} for 2 elements"
    _close(same @ got, np.full(12, e_same.mean()), "the fitted energies when every frame has "
           "the same composition (only 64 b_O + 128 b_H is determined)", rtol=1e-10, atol=1e-8)


def check_mean_baseline(baseline_rmse, seed=0):
    """``baseline_rmse(train_e, train_n, test_e, test_n)``: the RMSE per atom on the test
    frames (eV/atom) of the model that predicts, for every frame, the *training* frames'
    mean energy per atom (energies ``*_e`` in eV, atom counts ``*_n``). Checked on frames
    of different sizes and a test set whose mean differs from the training one."""
    rng = np.random.default_rng(seed)
    train_n, test_n = rng.integers(50, 200, 20), rng.integers(50, 200, 9)
    train_e = train_n * (-5.0 + 0.01 * rng.normal(size=20))
    test_e = test_n * (-4.97 + 0.01 * rng.normal(size=9))
    mu = np.mean(train_e / train_n)
    want = np.sqrt(np.mean((test_e / test_n - mu) ** 2))
    got = float(baseline_rmse(train_e, train_n, test_e, test_n))
    _close(got, want, "the test RMSE of predicting the training mean energy per atom")


def check_radial_symmetry_function(radial_sf, seed=0):
    """``radial_sf(r, eta, rs, rc)``: tutorial 4's radial Behler–Parrinello function of one
    shell, ``G(r) = exp(-eta (r - rs)^2) f_c(r)`` with ``f_c(r) = (cos(pi r/rc) + 1)/2`` for
    r < rc and 0 beyond, returned with its derivative: ``(G, dG/dr)``, both shaped like r.
    Checked against the closed form and central finite differences, inside and beyond rc."""
    rng = np.random.default_rng(seed)
    eta, rs, rc = 2.0, 2.7, 6.0
    r = np.concatenate([rng.uniform(0.5, rc - 0.05, 40), rng.uniform(rc + 0.05, rc + 2, 5)])
    fc = np.where(r < rc, 0.5 * (np.cos(np.pi * r / rc) + 1), 0.0)
    G, dG = (np.asarray(a, dtype=float) for a in radial_sf(r, eta, rs, rc))
    _close(G, np.exp(-eta * (r - rs) ** 2) * fc, "G(r)")
    h = 1e-6
    Gp, _ = radial_sf(r + h, eta, rs, rc)
    Gm, _ = radial_sf(r - h, eta, rs, rc)
    _close(dG, (np.asarray(Gp) - np.asarray(Gm)) / (2 * h), "dG/dr against finite differences",
           rtol=1e-6, atol=1e-8)
