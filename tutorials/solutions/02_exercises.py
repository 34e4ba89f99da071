"""Solutions to tutorial 2's exercises (run: ``python tutorials/solutions/02_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_descriptor_matrix, check_tells_hexagon_from_octahedron  # noqa: E402


# Exercise 2.1: D = L L_<^T with L = G^T R / n
def descriptor_matrix(G, R, M2):
    L = G.T @ R / len(R)  # M x 4
    return L @ L[:M2].T  # M x M2


check_descriptor_matrix(descriptor_matrix)

# Exercise 2.2 (a): with all six neighbours at the same distance every row of G is the same
# vector g, so L = g (sum_i x_i)^T / n, and sum_i x_i = 0 for both the hexagon and the
# octahedron: the tutorial's D is the zero matrix for both. A first moment cannot see them.
ang = np.arange(6) * np.pi / 3
hexagon = 1.1 * np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1)
octahedron = 1.1 * np.vstack([np.eye(3), -np.eye(3)])
g = np.array([0.3, -1.2, 0.7])  # any embedding value at r = 1.1 Å
for cloud in (hexagon, octahedron):
    G = np.tile(g, (6, 1))  # 6 x 3: equal rows
    assert np.abs(descriptor_matrix(G, cloud, 2)).max() < 1e-15


# Exercise 2.2 (b): second moments ("high-order information"): per channel k the 3 x 3
# matrix S_k = (1/n) sum_i g_k(r_i) x_i x_i^T rotates as Q S_k Q^T, so tr(S_k S_l) is invariant
# (and a sum over points: permutation invariant). For equal g it is g_k g_l (1/n^2) sum_ij (x_i.x_j)^2:
# r^4/2 for the hexagon, r^4/3 for the octahedron.
def second_moment_descriptor(points):
    r = np.linalg.norm(points, axis=1)  # n
    G = np.stack([np.exp(-r), r * np.exp(-r)], axis=1)  # n x 2: any radial embedding
    S = np.einsum("ik,ia,ib->kab", G, points, points) / len(points)  # 2 x 3 x 3
    return np.einsum("kab,lab->kl", S, S)  # 2 x 2 = tr(S_k S_l^T)


check_tells_hexagon_from_octahedron(second_moment_descriptor)
print("tutorial 2 exercises: all checks passed")
