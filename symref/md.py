r"""Small helpers for molecular dynamics with :class:`symref.ase.SymrefCalculator`:
energy-conservation statistics and radial distribution functions.

The integrators are ASE's own (``ase.md.verlet.VelocityVerlet``,
``ase.md.langevin.Langevin``); ``benchmarks/md_water.py`` shows the whole run.
"""
from __future__ import annotations

import numpy as np

__all__ = ["energy_drift", "rdf", "frames_rdf"]


def energy_drift(t_ps, etot, natoms: int) -> dict:
    r"""Drift and fluctuation of the total energy of an NVE run.

    A least-squares line :math:`E(t) \approx a + b t` through the total
    energies (eV) at times ``t_ps`` (ps) gives

    * ``drift``: :math:`b / N` in meV/atom/ps (signed),
    * ``fluct``: the standard deviation of the residuals :math:`E - a - bt`,
      divided by N, in meV/atom (the oscillation of the Verlet shadow
      energy, O(dt²), plus noise),
    * ``span``: (max − min of E) / N, meV/atom,
    * ``final_minus_initial``: :math:`(E(t_{end}) - E(0))/N`, meV/atom.
    """
    t = np.asarray(t_ps, dtype=np.float64)
    e = np.asarray(etot, dtype=np.float64)
    if t.shape != e.shape or t.ndim != 1 or t.size < 3:
        raise ValueError(f"need matching 1-D t_ps and etot with >= 3 points, got {t.shape}, {e.shape}")
    A = np.stack([np.ones_like(t), t - t[0]], axis=1)
    coef, *_ = np.linalg.lstsq(A, e, rcond=None)
    resid = e - A @ coef
    scale = 1000.0 / natoms
    return {"drift": float(coef[1] * scale), "fluct": float(resid.std() * scale),
            "span": float((e.max() - e.min()) * scale),
            "final_minus_initial": float((e[-1] - e[0]) * scale),
            "duration_ps": float(t[-1] - t[0]), "npoints": int(t.size)}


def rdf(positions, cell, idx_a, idx_b, rmax: float, nbins: int = 120):
    r"""Radial distribution function :math:`g_{ab}(r)` of periodic frames.

    ``positions``: (nf, natoms, 3) Å; ``cell``: (3, 3) or (nf, 3, 3), rows are
    cell vectors (fully periodic); ``idx_a``, ``idx_b``: atom indices of the two
    groups (equal arrays for a same-species g(r)).  Distances are taken to
    every periodic image within ``rmax``, so any cell is fine.

    .. math::

        g(r) = \frac{V}{N_{pairs}}\,\frac{\langle n(r, r + \Delta r)\rangle}
               {\tfrac{4\pi}{3}\big((r + \Delta r)^3 - r^3\big)}

    with :math:`N_{pairs} = N_a N_b` (:math:`N_a (N_a - 1)` for the same
    group; self pairs are left out) and ``n`` counting ordered pairs a→b.
    Returns ``(r, g)``: bin centres (Å) and g, each (nbins,).
    """
    from symref.reference.neighbors import image_shifts

    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    nf = pos.shape[0]
    cells = np.broadcast_to(np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3), (nf, 3, 3))
    ia, ib = np.asarray(idx_a), np.asarray(idx_b)
    same = ia.shape == ib.shape and np.array_equal(ia, ib)
    edges = np.linspace(0.0, rmax, nbins + 1)
    counts = np.zeros(nbins)
    vol = 0.0
    for f in range(nf):
        h = cells[f]
        shifts = image_shifts(h, rmax) @ h  # nimg x 3
        d = pos[f, ib][None, :, :] - pos[f, ia][:, None, :]  # na x nb x 3
        inv = np.linalg.inv(h)
        d -= np.round(d @ inv) @ h  # nearest image first, then all images within rmax
        r = np.linalg.norm(d[:, :, None, :] + shifts[None, None], axis=-1)  # na x nb x nimg
        counts += np.histogram(r[(r < rmax) & (r > 1e-9)], bins=edges)[0]  # no self pairs
        vol += abs(np.linalg.det(h))
    vol /= nf
    npairs = len(ia) * (len(ia) - 1) if same else len(ia) * len(ib)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = counts / nf * vol / npairs / shell
    return 0.5 * (edges[1:] + edges[:-1]), g


def frames_rdf(systems, type_a: str, type_b: str, rmax: float, nbins: int = 120):
    """:func:`rdf` over all frames of several :class:`symref.io.data.System` (types by name)."""
    pos, cells, sel = [], [], None
    for s in systems:
        if s.box is None or s.type_map is None:
            raise ValueError(f"{s.name}: rdf needs a periodic system with a type_map")
        names = np.asarray(s.type_map)[s.atype]
        ia, ib = np.flatnonzero(names == type_a), np.flatnonzero(names == type_b)
        if sel is not None and (not np.array_equal(sel[0], ia) or not np.array_equal(sel[1], ib)):
            raise ValueError(f"{s.name}: atom order differs from the first system")
        sel = (ia, ib)
        pos.append(s.coord)
        cells.append(s.box)
    return rdf(np.concatenate(pos), np.concatenate(cells), sel[0], sel[1], rmax, nbins)
