"""Solutions to tutorial 8's exercises (run: ``python tutorials/solutions/08_exercises.py``)."""
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_flux_deep_sets, check_invariant_features, check_kernel_ridge  # noqa: E402

ELL = 0.7


# Exercise 8.1: y = sum_j w_j (x_j.u_j) / sum_j w_j is a ratio of two sums over the points, so
# phi(q_j) = [w(|x_j|) x_j.u_j, w(|x_j|)] (N = 2, built from the invariants only) and
# rho([a, b]) = a / b: an exact Deep Sets form, for any number of points.
def phi(q):
    w = np.exp(-q[..., 0] ** 2 / ELL ** 2)  # m x n
    return np.stack([w * q[..., 2], w], axis=-1)  # m x n x 2


def rho(S):
    return S[..., 0] / S[..., 1]


check_flux_deep_sets(phi, rho)


# Exercise 8.2: the tutorial's invariant_features for model (d): per point
# (|x_j|, |u_j|, x_j.u_j) are unchanged by rotations and reflections of the frame; sorting the
# points by |x_j| removes the order. x_j.u_j is what sees the angle between x_j and u_j.
def features(x, u):
    q = np.stack([np.linalg.norm(x, axis=1), np.linalg.norm(u, axis=1), np.sum(x * u, axis=1)], axis=1)
    return q[np.argsort(q[:, 0])].ravel()  # 3 n


check_invariant_features(features)


# Exercise 8.3: kernel ridge regression, the "hand-crafted features + kernel" family of the
# talk (GAP, SOAP): alpha = (K + lam I)^-1 y, prediction K(test, train) alpha.
def gaussian_kernel(A, B, sigma):
    return np.exp(-((A[:, None] - B[None]) ** 2).sum(-1) / (2 * sigma ** 2))  # len(A) x len(B)


def kernel_ridge(F_train, y_train, F_test, sigma, lam):
    alpha = np.linalg.solve(gaussian_kernel(F_train, F_train, sigma) + lam * np.eye(len(F_train)), y_train)
    return gaussian_kernel(F_test, F_train, sigma) @ alpha


check_kernel_ridge(kernel_ridge)

# ... on tutorial 8's task: the features of 8.2, labels from 8.1's phi and rho, sigma chosen on
# validation clouds (a multiple of the median training distance), tested on disjoint clouds
from symref.synthetic import nonlocal_clouds  # noqa: E402


def clouds(count, seed):
    cl, _ = nonlocal_clouds(count, 16, dim=2, seed=seed)
    x, u = np.array([c["positions"] for c in cl]), np.array([c["vectors"][:, 0] for c in cl])
    q = np.stack([np.linalg.norm(x, axis=-1), np.linalg.norm(u, axis=-1), np.sum(x * u, axis=-1)], -1)
    return np.array([features(a, b) for a, b in zip(x, u)]), rho(phi(q).sum(axis=1))


n_train = 64 if os.environ.get("SYMREF_QUICK") else 256
(F, y), (Fv, yv), (Ft, yt) = clouds(n_train, 100), clouds(300, 300), clouds(1000, 200)
mu, sd = F.mean(axis=0), F.std(axis=0)
F, Fv, Ft = (F - mu) / sd, (Fv - mu) / sd, (Ft - mu) / sd
med = np.sqrt(np.median(((F[:, None] - F[None]) ** 2).sum(-1)))
sigma = min((med * c for c in (0.5, 1, 2, 4)),
            key=lambda s: np.mean((kernel_ridge(F, y, Fv, s, 1e-6) - yv) ** 2))
err = np.sqrt(np.mean((kernel_ridge(F, y, Ft, sigma, 1e-6) - yt) ** 2)) / yt.std()
print(f"kernel ridge on invariant features, N = {n_train}: test RMSE / spread {err:.3f} "
      f"(sigma {sigma / med:.1f} x the median distance)")
assert err < (0.5 if n_train < 256 else 0.2)
print("tutorial 8 exercises: all checks passed")
