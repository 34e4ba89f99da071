"""Solutions to tutorial 7's exercises (run: ``python tutorials/solutions/07_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_cloud_invariants, check_monte_carlo_estimate  # noqa: E402


# Exercise 7.1: the three invariants of a pair of 2-D vectors: two lengths and a dot product
# (the cross product x × u is invariant under rotations but flips sign under a reflection)
def invariants(x, u):
    return np.column_stack([np.linalg.norm(x, axis=1), np.linalg.norm(u, axis=1),
                            np.einsum("nd,nd->n", x, u)])  # n x 3


# Exercise 7.2: I ≈ |Ω| mean(c), standard error |Ω| σ / sqrt(N)
def estimate(values, volume):
    values = np.asarray(values, dtype=float)  # N
    return volume * values.mean(), volume * values.std(ddof=1) / np.sqrt(len(values))


check_cloud_invariants(invariants)
check_monte_carlo_estimate(estimate)
print("tutorial 7 exercises: all checks passed")
