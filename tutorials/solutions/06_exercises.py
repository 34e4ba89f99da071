"""Solutions to tutorial 6's exercises (run: ``python tutorials/solutions/06_exercises.py``)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from exercise_checks import check_dipole_head, check_polar_head, check_product_decomposition  # noqa: E402


# Exercise 6.1: mu = R^T c with R = T[:, 1:] (M x 3): a combination of rotating vectors
def dipole_head(T, c):
    return T[:, 1:].T @ c  # 3


# Exercise 6.2: alpha = R^T A R: symmetric when A is, and Q alpha Q^T after a rotation
def polar_head(T, A):
    R = T[:, 1:]  # M x 3
    return R.T @ A @ R  # 3 x 3


check_dipole_head(dipole_head)
check_polar_head(polar_head)


# Exercise 6.4: the scalar, vector and traceless-symmetric parts of a b^T (1 x 1 = 0 + 1 + 2)
def decompose(a, b):
    s = a @ b
    return s, np.cross(a, b), (np.outer(a, b) + np.outer(b, a)) / 2 - s / 3 * np.eye(3)


check_product_decomposition(decompose)
print("tutorial 6 exercises: all checks passed")
