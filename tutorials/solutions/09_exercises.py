"""Solutions to tutorial 9's exercises (run: ``python tutorials/solutions/09_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_radial_blind_pair, check_se_e3_pair_count  # noqa: E402


# Exercise 9.1: keep the centre's distances, change the angles. A centre O with three H at
# 1.0, 1.2 and 1.5 Å: in (a) the three lie in a plane at 120° from each other; in (b) they
# point along x, y and z (90°). The distance lists agree, the H-H distances do not.
def on_directions(dirs, lengths=(1.0, 1.2, 1.5)):
    dirs = np.asarray(dirs, dtype=float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.vstack([np.zeros(3), np.asarray(lengths)[:, None] * dirs])  # 4 x 3


ang = np.radians([0.0, 120.0, 240.0])
planar = on_directions(np.stack([np.cos(ang), np.sin(ang), 0 * ang], axis=1))
corner = on_directions(np.eye(3))
check_radial_blind_pair(planar, corner, np.array([0, 1, 1, 1]))


# Exercise 9.2: se_e3 feeds every ordered slot pair (a, b) of every type-group pair p <= q to a
# net: sel_p * sel_q values of theta per group pair. For water's [46, 92]: 46*46 + 46*92 + 92*92
# = 14812 per centre, against se_e2_a's 46 + 92 = 138 rows: the cost gap of section 2.
def count(sel):
    return sum(sel[p] * sel[q] for p in range(len(sel)) for q in range(p, len(sel)))


check_se_e3_pair_count(count)
print(f"se_e3 inputs per centre for sel [46, 92]: {count([46, 92])} (se_e2_a: {46 + 92} rows)")
print("tutorial 9 exercises: all checks passed")
