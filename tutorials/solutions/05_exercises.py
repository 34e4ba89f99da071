"""Solutions to tutorial 5's exercises (run: ``python tutorials/solutions/05_exercises.py``)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exercise_checks import check_heavy_hydrogen, check_velocity_verlet  # noqa: E402

M_O, M_H = 15.999, 1.008  # amu


# Exercise 5.1: half kick, drift, half kick (Section 3's three lines)
def step(x, v, force, mass, dt):
    v_half = v + 0.5 * dt * force(x) / mass
    x_new = x + dt * v_half
    return x_new, v_half + 0.5 * dt * force(x_new) / mass


# Exercise 5.2: omega = sqrt(k / mu), mu = m_O m / (m_O + m). The same omega dt at dt as at
# dt_ref needs mu' = mu_H (dt / dt_ref)^2 (k is the bond's, unchanged), then m = m_O mu' / (m_O - mu').
# (period_fs does not enter: only the ratio of the steps does.)
def mass_for_step(dt_fs, period_fs, dt_ref_fs):
    mu = M_O * M_H / (M_O + M_H) * (dt_fs / dt_ref_fs) ** 2
    if mu >= M_O:
        raise ValueError(f"no hydrogen mass makes {dt_fs} fs as safe as {dt_ref_fs} fs: "
                         f"the reduced mass would exceed m_O")
    return M_O * mu / (M_O - mu)


check_velocity_verlet(step)
check_heavy_hydrogen(mass_for_step)
print(f"a 2 fs step as safe as 1.5 fs with ordinary hydrogen: m_H = {mass_for_step(2.0, 9.8, 1.5):.2f} "
      f"amu (deuterium: 2.014); as safe as 0.5 fs: {mass_for_step(2.0, 9.8, 0.5):.0f} amu")
print("tutorial 5 exercises: all checks passed")
