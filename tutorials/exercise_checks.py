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


def check_product_decomposition(decompose, seed=0):
    """``decompose(a, b)`` (two 3-vectors) returns ``(s, v, T)``: the parts of the outer
    product ``a b^T`` that transform as a scalar (l = 0), a vector (l = 1) and a symmetric
    traceless tensor (l = 2) — the smallest Clebsch–Gordan decomposition, 1 x 1 = 0 + 1 + 2:
    ``s = a.b``, ``v = a x b``, ``T = (a b^T + b a^T)/2 - (a.b/3) I``. Checked: they rebuild
    ``a b^T = (s/3) I - (1/2) [v]_x + T`` (``[v]_x w = v x w``), T is symmetric and traceless,
    and under an orthogonal Q: s is unchanged, v -> det(Q) Q v (a pseudovector), T -> Q T Q^T."""
    rng = np.random.default_rng(seed)
    for _ in range(5):
        a, b = rng.normal(size=3), rng.normal(size=3)
        s, v, T = (np.asarray(p, dtype=float) for p in decompose(a, b))
        assert s.shape == () and v.shape == (3,) and T.shape == (3, 3), (
            f"shapes {s.shape}, {v.shape}, {T.shape}; expected (), (3,), (3, 3)")
        cross = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])  # [v]_x
        _close(s / 3 * np.eye(3) - cross / 2 + T, np.outer(a, b), "(s/3) I - [v]_x / 2 + T vs a b^T")
        _close(T, T.T, "T's symmetry")
        _close(np.trace(T), 0.0, "T's trace")
        for det in (+1, -1):
            Q = _orthogonal(rng, det=det)
            s2, v2, T2 = (np.asarray(p, dtype=float) for p in decompose(Q @ a, Q @ b))
            kind = "rotation" if det > 0 else "reflection"
            _close(s2, s, f"s after a {kind}", rtol=1e-9)
            _close(v2, det * Q @ v, f"v after a {kind} (det(Q) Q v)", rtol=1e-9)
            _close(T2, Q @ T @ Q.T, f"T after a {kind}", rtol=1e-9)


# ---------------------------------------------------------------- tutorial 8: invariant inputs

def _disk_clouds(rng, m, n, dim=2):
    """``m`` random clouds of ``n`` points in the unit disk with random vectors u (m x n x dim)."""
    x = rng.uniform(-1, 1, size=(m, n, dim)) * np.sqrt(rng.uniform(0, 1, size=(m, n, 1)))
    return x, rng.normal(size=(m, n, dim))


def check_flux_deep_sets(phi, rho, ell=0.7, seed=0):
    """Tutorial 8's label ``y = sum_j w_j x_j.u_j / sum_j w_j`` (``w_j = exp(-|x_j|^2/ell^2)``)
    written as a Deep Sets function of the per-point invariants only: ``rho(sum_j phi(q_j))``
    with ``q_j = (|x_j|, |u_j|, x_j.u_j)``.

    ``phi(q)``: ``(m, n, 3) -> (m, n, N)``; ``rho(S)``: ``(m, N) -> (m,)``; exact (1e-10) on
    random clouds of 5, 16 and 40 points (one phi and rho for every size)."""
    rng = np.random.default_rng(seed)
    for n in (5, 16, 40):
        x, u = _disk_clouds(rng, 100, n)
        xu = np.sum(x * u, axis=-1)  # m x n
        w = np.exp(-np.sum(x * x, axis=-1) / ell ** 2)  # m x n
        q = np.stack([np.linalg.norm(x, axis=-1), np.linalg.norm(u, axis=-1), xu], axis=-1)
        P = np.asarray(phi(q), dtype=float)
        assert P.ndim == 3 and P.shape[:2] == q.shape[:2], (
            f"phi(q) for q of shape {q.shape} has shape {P.shape}; expected (100, {n}, N)")
        _close(rho(P.sum(axis=1)), np.sum(w * xu, axis=1) / np.sum(w, axis=1),
               f"rho(sum phi) vs the label for clouds of {n} points", rtol=1e-10, atol=1e-12)


def check_invariant_features(features, seed=0):
    """``features(x, u)`` (one cloud: x, u both n x 2) returns a 1-D array that is unchanged
    by rotations and reflections of the frame (x and u together) and by permutations of the
    points, and that still sees the angle between each x_j and u_j: turning every u_j by 90°
    about its point (which changes every x_j.u_j, not |x_j| or |u_j|) changes the features."""
    rng = np.random.default_rng(seed)
    x, u = _disk_clouds(rng, 1, 16)
    x, u = x[0], u[0]
    f = np.asarray(features(x, u), dtype=float)
    assert f.ndim == 1, f"features(x, u) should be 1-D, got shape {f.shape}"
    for name, det in (("rotation", +1), ("reflection", -1)):
        Q = _orthogonal(rng, dim=2, det=det)
        _close(features(x @ Q.T, u @ Q.T), f, f"the features after a {name} of the frame",
               rtol=1e-9, atol=1e-12)
    p = rng.permutation(len(x))
    _close(features(x[p], u[p]), f, "the features after permuting the points", rtol=1e-9, atol=1e-12)
    turned = u @ np.array([[0.0, -1.0], [1.0, 0.0]]).T
    change = np.abs(np.asarray(features(x, turned), dtype=float) - f).max()
    assert change > 1e-3, (f"turning every u_j by 90° changed the features by only {change:.3g}: "
                           "they cannot see x_j.u_j, on which the label depends")


def check_kernel_ridge(kernel_ridge, seed=0):
    """``kernel_ridge(F_train, y_train, F_test, sigma, lam)`` returns the kernel ridge
    predictions at ``F_test`` (rows are feature vectors): ``K(F_test, F_train) alpha`` with
    ``(K(F_train, F_train) + lam I) alpha = y_train`` and the Gaussian kernel
    ``K(a, b) = exp(-|a - b|^2 / (2 sigma^2))``; checked (1e-8) on random data of two sizes and
    widths, and at ``lam`` -> 0 it must reproduce the training labels (interpolation)."""
    rng = np.random.default_rng(seed)
    for m, dim, sigma, lam in ((30, 4, 0.8, 1e-3), (60, 9, 2.5, 1e-1)):
        A, B, y = rng.normal(size=(m, dim)), rng.normal(size=(17, dim)), rng.normal(size=m)
        alpha = np.linalg.solve(np.exp(-((A[:, None] - A[None]) ** 2).sum(-1) / (2 * sigma ** 2))
                                + lam * np.eye(m), y)
        want = np.exp(-((B[:, None] - A[None]) ** 2).sum(-1) / (2 * sigma ** 2)) @ alpha
        _close(kernel_ridge(A, y, B, sigma, lam), want,
               f"predictions for {m} training rows of {dim} features, sigma {sigma}, lam {lam}",
               rtol=1e-8, atol=1e-10)
        _close(kernel_ridge(A, y, A, sigma, 1e-12), y, "predictions at the training rows with lam = 1e-12",
               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- tutorial 9: the family

def _centre_energy(descriptor, coords, atype):
    """The centre atom's (atom 0's) energy under a fixed random model with ``descriptor``."""
    from symref.model.build import demo_model

    model = demo_model({"type_map": ["O", "H"], "descriptor": descriptor,
                        "fitting_net": {"neuron": [16, 16]}}, seed=2)
    return float(model.evaluate(coords[None], atype, None)["atom_energy"][0, 0])


def check_radial_blind_pair(coords_a, coords_b, atype):
    """Two molecules (``natoms x 3`` each, Å, the same ``atype``, atom 0 the centre, every
    neighbour within 3 Å of it) that se_e2_r's centre cannot tell apart but se_e2_a's can: the
    centre's distances to each neighbour are the same in both (1e-9 Å), the two are not
    the same shape (some pair distance differs by > 0.05 Å), se_e2_r gives the centre the same
    energy (1e-12 relative) and se_e2_a gives different energies (> 1e-6 eV)."""
    a, b = np.asarray(coords_a, dtype=float), np.asarray(coords_b, dtype=float)
    atype = np.asarray(atype)
    assert a.shape == b.shape and a.ndim == 2 and a.shape[1] == 3 and a.shape[0] == len(atype) >= 3, (
        f"coords of shapes {a.shape} and {b.shape} for {len(atype)} types; expected two natoms x 3 "
        "arrays with natoms >= 3 (a centre and at least two neighbours)")
    ra, rb = np.linalg.norm(a[1:] - a[0], axis=1), np.linalg.norm(b[1:] - b[0], axis=1)
    assert ra.max() < 3.0 and rb.max() < 3.0, "keep every neighbour within 3 Å of the centre"
    _close(ra, rb, "the centre's distances to its neighbours", rtol=0, atol=1e-9)
    pa = np.linalg.norm(a[:, None] - a[None], axis=-1)
    pb = np.linalg.norm(b[:, None] - b[None], axis=-1)
    assert np.abs(pa - pb).max() > 0.05, ("the two molecules have the same pair distances: they "
                                          "are the same shape, so every descriptor agrees")
    common = {"rcut": 4.0, "rcut_smth": 0.5, "sel": [4, 8]}
    radial = {"type": "se_e2_r", "neuron": [4, 8], **common}
    angular = {"type": "se_e2_a", "neuron": [4, 8], "axis_neuron": 4, **common}
    er = _centre_energy(radial, a, atype), _centre_energy(radial, b, atype)
    assert abs(er[0] - er[1]) <= 1e-12 * max(1.0, abs(er[0])), (
        f"se_e2_r's centre energies differ ({er[0]:.12g} vs {er[1]:.12g} eV)")
    ea = _centre_energy(angular, a, atype), _centre_energy(angular, b, atype)
    assert abs(ea[0] - ea[1]) > 1e-6, f"se_e2_a's centre energies agree ({ea[0]:.12g} eV)"


def check_se_e3_pair_count(count):
    """``count(sel)`` is the number of θ_ab values (inputs of se_e3's embedding nets) per centre
    for neighbour limits ``sel`` (a list, one per type): every ordered slot pair (a, b) of
    every type-group pair p <= q, padded slots included — counted from the slot blocks that
    symref's reference se_e3 (``symref.reference.descriptor.se_e3``) actually evaluates."""
    from symref.model.build import demo_model
    from symref.reference.descriptor.se_e3 import _pairs

    for sel in ([4, 8], [46, 92], [10], [3, 5, 7], [1, 1]):
        desc = demo_model({"type_map": [f"X{t}" for t in range(len(sel))],
                           "descriptor": {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5,
                                          "sel": list(sel), "neuron": [2]},
                           "fitting_net": {"neuron": [4]}}, seed=0).descriptor
        want = sum((sp.stop - sp.start) * (sq.stop - sq.start) for sp, sq, _, _ in _pairs(desc))
        got = count(list(sel))
        assert got == want, f"count({sel}) = {got}, expected {want}"
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
