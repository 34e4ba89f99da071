"""Solutions to tutorial 3's exercises (run: ``python tutorials/solutions/03_exercises.py``)."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_observed_order, check_radial_row_backward  # noqa: E402


# Exercise 3.1: se_e2_r's rows s_j = w(r_j) / r_j. Chain rule:
# ds/dr = w'(r)/r - w(r)/r^2 and dr/drvec = rvec / r, so dE/drvec_j = ds_j (w'/r - w/r^2) rvec_j / r
def radial_row_backward(ds, rvec, rs, rc):
    r = np.linalg.norm(rvec, axis=1)  # nnei
    u = np.clip((r - rs) / (rc - rs), 0.0, 1.0)
    w = u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1
    dw = -30 * u ** 2 * (u - 1) ** 2 / (rc - rs)
    return (ds * (dw / r - w / r ** 2) / r)[:, None] * rvec  # nnei x 3


check_radial_row_backward(radial_row_backward)


# Exercise 3.2: the observed order is the slope of log(error) against log(h)
def observed_order(steps, errors):
    return np.polyfit(np.log(steps), np.log(errors), 1)[0]


check_observed_order(observed_order)
print("tutorial 3 exercises: all checks passed")
