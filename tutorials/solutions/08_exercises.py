"""Solutions to tutorial 8's exercises (run: ``python tutorials/solutions/08_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_flux_deep_sets, check_invariant_features  # noqa: E402

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
print("tutorial 8 exercises: all checks passed")
