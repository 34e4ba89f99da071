"""symref.md: energy-drift statistics and the radial distribution function."""
from __future__ import annotations

import numpy as np
import pytest

from symref.md import energy_drift, frames_rdf, rdf


def test_energy_drift_recovers_slope_and_fluctuation():
    t = np.linspace(0.0, 10.0, 2001)  # ps
    n = 192
    e = -100.0 + n * 1e-3 * (0.05 * t + 0.02 * np.sin(40 * t))  # eV: 0.05 meV/atom/ps
    s = energy_drift(t, e, n)
    assert s["drift"] == pytest.approx(0.05, abs=2e-4)
    assert s["fluct"] == pytest.approx(0.02 / np.sqrt(2), rel=1e-2)  # std of a sine
    assert s["duration_ps"] == 10.0
    with pytest.raises(ValueError, match="matching"):
        energy_drift(t[:5], e[:4], n)


def test_rdf_simple_cubic_shells_and_ideal_gas():
    """Simple cubic lattice (a = 2 Å, 5^3 atoms, a triclinic-looking but cubic cell
    given by its rows): integrating 4π r² ρ g(r) over the first shell gives exactly 6
    neighbours, the second 12 (at a·√2); uniform random points give g ≈ 1."""
    a, k = 2.0, 5
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    cell = np.eye(3) * a * k
    idx = np.arange(len(grid))
    r, g = rdf(grid, cell, idx, idx, rmax=3.2, nbins=320)
    dr = r[1] - r[0]
    rho = len(grid) / np.linalg.det(cell)
    n_of_r = np.cumsum(4 * np.pi * r ** 2 * rho * g * dr)
    assert n_of_r[np.searchsorted(r, 2.5)] == pytest.approx(6.0, rel=1e-2)
    assert n_of_r[np.searchsorted(r, 3.0)] == pytest.approx(18.0, rel=1e-2)
    assert g[r < 1.9].max() == 0 and g[(r > 2.1) & (r < 2.7)].max() == 0
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(10, 300, 3)) @ np.array([[9.0, 0, 0], [2.0, 9.0, 0], [0, 1.0, 9.0]])
    r, g = rdf(x, np.array([[9.0, 0, 0], [2.0, 9.0, 0], [0, 1.0, 9.0]]), np.arange(100),
               np.arange(100, 300), rmax=4.0, nbins=8)
    assert np.abs(g[2:] - 1).max() < 0.08


def test_frames_rdf_water(shared_data):
    """g_OO of the DFT water frames: first peak near 2.8 Å, nothing below 2.2 Å."""
    from symref.io.data import load_system

    s = load_system(shared_data / "water" / "data_3")
    r, g = frames_rdf([s], "O", "O", rmax=6.0, nbins=60)
    assert 2.6 < r[np.argmax(g)] < 3.0 and 2.0 < g.max() < 4.5
    assert np.all(g[r < 2.2] == 0)
    assert 0.7 < g[-5:].mean() < 1.3
