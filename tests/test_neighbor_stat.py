"""symref.io.neighbor_stat: neighbour counts, deepmd-kit's sel "auto" rule, symref neighbor-stat."""
from __future__ import annotations

import numpy as np
import pytest

from symref.io.data import make_crystal, make_molecule, save_system
from symref.io.neighbor_stat import auto_sel, frame_neighbor_stat, neighbor_stat


def _brute(coord, atype, box, rcut, ntypes):
    """Every image n in [-4, 4]^3 (enough for the small cells used here), all pairs."""
    n = np.array([[a, b, c] for a in range(-4, 5) for b in range(-4, 5) for c in range(-4, 5)])
    imgs = [np.zeros(3)] if box is None else n @ box
    best, most = np.inf, np.zeros(ntypes, int)
    for i in range(len(coord)):
        cnt = np.zeros(ntypes, int)
        for s in imgs:
            d = np.linalg.norm(coord + s - coord[i], axis=1)
            if not np.any(s):
                d[i] = np.inf
            best = min(best, d.min())
            for t in range(ntypes):
                cnt[t] += np.count_nonzero((d < rcut) & (atype == t))
        most = np.maximum(most, cnt)
    return best, most


@pytest.mark.parametrize("rcut", [1.7, 3.0, 6.0])
def test_counts_match_a_brute_force_over_images(rcut):
    """Counts per type and the minimum distance equal an all-images brute force, for a
    skewed cell shorter than rcut (several images of one atom) and for a molecule."""
    cry = make_crystal(seed=3)
    mol = make_molecule(natoms=7, ntypes=3, seed=1)
    for s, nt in ((cry, 2), (mol, 3)):
        atype = s.atype % nt
        box = None if s.box is None else s.box[0]
        b, m = frame_neighbor_stat(s.coord[0], atype, box, rcut, nt)
        rb, rm = _brute(s.coord[0], atype, box, rcut, nt)
        assert np.isclose(np.sqrt(b), rb, rtol=1e-14) and list(m) == list(rm)


@pytest.mark.deepmd
def test_neighbor_stat_equals_deepmd_kits():
    """min_nbor_dist and max_nbor_size equal deepmd-kit's NeighborStatOP on two systems."""
    ns = pytest.importorskip("deepmd.dpmodel.utils.neighbor_stat")
    cry = make_crystal(seed=5)
    coord = cry.coord + np.random.default_rng(0).normal(scale=0.1, size=(3,) + cry.coord.shape[1:])
    box = np.repeat(cry.box, 3, axis=0)
    op = ns.NeighborStatOP(2, 5.0, False)
    m2, mx = op(coord.reshape(3, -1), np.tile(cry.atype, (3, 1)), box.reshape(3, 9))
    from dataclasses import replace

    dist, most = neighbor_stat([replace(cry, coord=coord, box=box)], 5.0, 2)
    assert np.isclose(dist, np.sqrt(m2.min()), rtol=1e-14)
    assert most == [int(x) for x in mx.max(axis=0)]


def test_auto_sel_is_deepmd_kits_rule():
    """sel "auto" = 4*ceil(floor(1.1 n)/4), "auto:r" with ratio r (BaseUpdateSel.wrap_up_4)."""
    assert auto_sel([37, 72, 0]) == [40, 80, 0]
    assert auto_sel([37, 72], "auto:1.5") == [56, 108]
    assert auto_sel([4, 8], "auto:1") == [4, 8]
    with pytest.raises(ValueError, match="auto:RATIO"):
        auto_sel([1], "auto:1:2")


def test_bad_rcut_is_refused():
    """rcut inf or <= 0: a ValueError before any counting."""
    s = make_crystal(seed=1)
    for rc in (float("inf"), 0.0, float("nan")):
        with pytest.raises(ValueError, match="rcut must be a finite number > 0"):
            neighbor_stat([s], rc, 2)


def test_cli_prints_deepmd_kits_lines(tmp_path, capsys):
    """`symref neighbor-stat -s SYS -r RCUT`: type_map, min_nbor_dist, max_nbor_size
    (printed as deepmd-kit prints them: %f and the numpy array)."""
    from symref import cli

    s = make_crystal(seed=2)
    s.type_map = ["A", "B"]
    save_system(s, tmp_path / "sys")
    assert cli.main(["neighbor-stat", "-s", str(tmp_path), "-r", "3.0", "-t", "B", "A"]) == 0
    out = capsys.readouterr().out.splitlines()
    b, m = frame_neighbor_stat(s.coord[0], s.atype, s.box[0], 3.0, 2)
    assert out == ["type_map: ['B', 'A']", f"min_nbor_dist: {np.sqrt(b):f}",
                   f"max_nbor_size: [{int(m[1])} {int(m[0])}]"]
