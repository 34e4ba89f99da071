"""Solutions to tutorial 1's exercises (run: ``python tutorials/solutions/01_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_gyration_spectrum, check_sum_decomposition  # noqa: E402


# Exercise 1.1: e2(z) = sum_{i<j} z_i z_j = ((sum z)^2 - sum z^2) / 2, for any set size
def phi_e2(z):
    return np.stack([z, z ** 2], axis=-1)  # (..., n) -> (..., n, 2)


def rho_e2(S):
    return (S[..., 0] ** 2 - S[..., 1]) / 2


def e2(z):
    return 0.5 * (z.sum(axis=1) ** 2 - (z ** 2).sum(axis=1))


check_sum_decomposition(phi_e2, rho_e2, e2)


# Exercise 1.2: z1 z2 z3 for sets of three needs latent width 3 (Newton's identity
# e3 = (p1^3 - 3 p1 p2 + 2 p3) / 6 with the power sums p_k = sum z^k)
def phi_e3(z):
    return np.stack([z, z ** 2, z ** 3], axis=-1)


def rho_e3(S):
    p1, p2, p3 = S[..., 0], S[..., 1], S[..., 2]
    return (p1 ** 3 - 3 * p1 * p2 + 2 * p3) / 6


check_sum_decomposition(phi_e3, rho_e3, lambda z: np.prod(z, axis=1), set_sizes=(3,))


# Exercise 1.3: the gyration tensor's spectrum: invariant to everything, and it tells the
# hexagon (r²/2, r²/2, 0) from the octahedron (r²/3 three times)
def gyration_spectrum(X):
    Xc = X - X.mean(axis=0)  # n x 3
    return np.linalg.eigvalsh(Xc.T @ Xc / len(X))  # 3, ascending


check_gyration_spectrum(gyration_spectrum)
print("tutorial 1 exercises: all checks passed")
