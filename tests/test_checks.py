"""Tests of symref.checks against an independent, analytic reference calculator.

The reference is a switched Morse pair potential (optionally with deliberately broken
variants), summed by brute force over periodic images, with hand-derived forces and virial.
Every check must pass on the correct calculator and fail on the matching broken one.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from symref.checks import (
    CheckResult,
    all_passed,
    as_calculator,
    check_cutoff_continuity,
    check_forces_fd,
    check_symmetry,
    check_virial_fd,
    format_table,
    run_all_checks,
)

RCUT = 5.0
RCUT_SMTH = 1.0


# ============================================================================ reference calculator
def quintic_switch(r, rs, rc):
    """DESIGN.md §2 switch w(r) and dw/dr."""
    span = rc - rs
    u = np.clip((r - rs) / span, 0.0, 1.0)
    w = u**3 * (-6.0 * u**2 + 15.0 * u - 10.0) + 1.0
    dw = -30.0 * u**2 * (u - 1.0) ** 2 / span
    return w, dw


class PairCalc:
    """E = 1/2 sum_{i, j, n} c_ij * phi_{t_i t_j}(x_j + n h - x_i) + E_ext, with

    phi(r_vec) = w(r) [ D (exp(-2a(r - r0)) - 2 exp(-a(r - r0))) + aniso * r_x r_y ]

    ``switch``: "smooth" (C² quintic), "shift" (phi - phi(rc) for r < rc: E continuous, F jumps)
    or "hard" (plain truncation).  Broken variants: ``aniso`` (not rotation invariant, virial not
    symmetric), ``external`` (depends on absolute position: harmonic trap for molecules, a lattice-
    periodic cosine field in fractional coordinates for crystals), ``index_weight`` (c_ij depends on
    atom indices, so permutations within a type change E), ``force_scale``, ``virial_scale``,
    ``virial_transpose``.
    """

    D = np.array([[0.40, 0.30], [0.30, 0.25]])
    A = np.array([[1.40, 1.20], [1.20, 1.60]])
    R0 = np.array([[2.60, 2.80], [2.80, 3.00]])

    def __init__(self, atype, rcut=RCUT, rcut_smth=RCUT_SMTH, switch="smooth", aniso=0.0,
                 external=0.0, index_weight=0.0, force_scale=1.0, virial_scale=1.0,
                 virial_transpose=False):
        self.atype = np.asarray(atype)
        self.rcut, self.rcut_smth, self.switch = rcut, rcut_smth, switch
        self.aniso, self.external, self.index_weight = aniso, external, index_weight
        self.force_scale, self.virial_scale = force_scale, virial_scale
        self.virial_transpose = virial_transpose
        self.ncalls = 0

    def _shifts(self, coord, box):
        if box is None:
            return np.zeros((1, 3))
        hinv = np.linalg.inv(box)
        frac = coord @ hinv
        span = frac.max(axis=0) - frac.min(axis=0)
        m = np.ceil(self.rcut * np.linalg.norm(hinv, axis=0) + span).astype(int)
        return np.array(list(itertools.product(*(range(-k, k + 1) for k in m))), dtype=float)

    def _morse(self, r, ti, tj):
        d, a, r0 = self.D[ti, tj], self.A[ti, tj], self.R0[ti, tj]
        e1, e2 = np.exp(-2.0 * a * (r - r0)), np.exp(-a * (r - r0))
        return d * (e1 - 2.0 * e2), d * (-2.0 * a * e1 + 2.0 * a * e2)

    def __call__(self, coord, box):
        self.ncalls += 1
        coord = np.asarray(coord, dtype=float)
        n = coord.shape[0]
        shifts = self._shifts(coord, box)
        lat = np.zeros((1, 3)) if box is None else shifts @ box
        # r[s, i, j] = x_j + n_s h - x_i
        r = coord[None, None, :, :] - coord[None, :, None, :] + lat[:, None, None, :]
        dist = np.linalg.norm(r, axis=-1)
        zero = np.all(shifts == 0, axis=1)[:, None, None] & np.eye(n, dtype=bool)[None]
        mask = (dist < self.rcut) & ~zero
        s_idx, i_idx, j_idx = np.nonzero(mask)
        rv = r[s_idx, i_idx, j_idx]  # npair x 3 (each unordered pair twice)
        rr = dist[s_idx, i_idx, j_idx]
        ti, tj = self.atype[i_idx], self.atype[j_idx]
        m, dm = self._morse(rr, ti, tj)
        if self.switch == "smooth":
            w, dw = quintic_switch(rr, self.rcut_smth, self.rcut)
        elif self.switch == "shift":
            mc, _ = self._morse(np.full_like(rr, self.rcut), ti, tj)
            m = m - mc
            w, dw = np.ones_like(rr), np.zeros_like(rr)
        elif self.switch == "hard":
            w, dw = np.ones_like(rr), np.zeros_like(rr)
        else:
            raise ValueError(self.switch)
        c = 1.0 + self.index_weight * (i_idx + j_idx)
        rhat = rv / rr[:, None]
        xy = rv[:, 0] * rv[:, 1]
        phi = c * w * (m + self.aniso * xy)
        # g = d phi / d r_vec
        dxy = np.stack([rv[:, 1], rv[:, 0], np.zeros_like(rr)], axis=1)
        g = c[:, None] * ((dw * (m + self.aniso * xy) + w * dm)[:, None] * rhat
                          + (self.aniso * w)[:, None] * dxy)
        energy = 0.5 * phi.sum()
        forces = np.zeros((n, 3))
        np.add.at(forces, i_idx, g)  # F_i = sum_{j,n} g(x_j + n h - x_i)
        virial = -0.5 * np.einsum("pa,pb->ab", rv, g)  # W = -sum_pairs r (x) g
        if self.external:
            k = self.external
            if box is None:  # harmonic trap about the origin
                energy += k * np.sum(coord**2)
                f_ext = -2.0 * k * coord
                forces += f_ext
                virial += np.einsum("ia,ib->ab", coord, f_ext)  # W = -dE/d eps = sum x (x) F_ext
            else:  # lattice-periodic field: invariant under strain of x and h together
                mvec = np.array([1.0, 2.0, -1.0])
                hinv = np.linalg.inv(box)
                phase = 2.0 * np.pi * (coord @ hinv @ mvec)
                energy += k * np.sum(np.cos(phase))
                forces += k * np.sin(phase)[:, None] * (2.0 * np.pi * (hinv @ mvec))[None, :]
        forces = forces * self.force_scale
        virial = virial * self.virial_scale
        if self.virial_transpose:
            virial = virial.T
        return {"energy": float(energy), "forces": forces, "virial": virial}


# ============================================================================ structures
def random_structure(n, box, dmin, seed, span=6.0):
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n:
        if box is None:
            x = rng.uniform(0.0, span, size=3)
        else:
            x = rng.uniform(0.0, 1.0, size=3) @ box
        ok = True
        for y in pts:
            d = x - y
            if box is not None:
                f = d @ np.linalg.inv(box)
                d = (f - np.round(f)) @ box
                # check a few neighbouring images too (skewed cell)
                dd = min(np.linalg.norm(d + np.array(s) @ box)
                         for s in itertools.product((-1, 0, 1), repeat=3))
            else:
                dd = np.linalg.norm(d)
            if dd < dmin:
                ok = False
                break
        if ok:
            pts.append(x)
    return np.array(pts)


MOL_ATYPE = np.array([0, 0, 0, 0, 1, 1, 1, 1])
MOL_COORD = random_structure(8, None, 2.2, seed=1, span=5.5)

CELL = np.array([[7.0, 0.0, 0.0], [1.8, 6.6, 0.0], [-1.2, 1.5, 6.9]])  # skewed triclinic
CELL_ATYPE = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
CELL_COORD = random_structure(10, CELL, 2.3, seed=7)

SYSTEMS = {
    "molecule": (MOL_COORD, None, MOL_ATYPE),
    "crystal": (CELL_COORD, CELL, CELL_ATYPE),
}


@pytest.fixture(params=list(SYSTEMS))
def system(request):
    return SYSTEMS[request.param]


# ============================================================================ the reference itself
def test_reference_calculator_is_sane(system):
    coord, box, atype = system
    out = PairCalc(atype)(coord, box)
    assert np.isfinite(out["energy"]) and abs(out["energy"]) > 0.1
    assert np.max(np.abs(out["forces"])) > 1e-2
    np.testing.assert_allclose(out["forces"].sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out["virial"], out["virial"].T, atol=1e-12)


def test_reference_has_non_trivial_images():
    # rcut exceeds half the cell's perpendicular widths: several images of the same pair count
    areas = np.linalg.norm(np.cross(CELL[[1, 2, 0]], CELL[[2, 0, 1]]), axis=1)
    widths = abs(np.linalg.det(CELL)) / areas
    assert RCUT > 0.5 * widths.min()


# ================================================================ passing on a correct calculator
def test_forces_fd_passes(system):
    coord, box, atype = system
    res = check_forces_fd(PairCalc(atype), coord, box)
    assert res.passed, str(res)
    assert res.details["order_meaningful"]
    assert 1.8 < res.order < 2.2
    assert res.max_rel_err < 1e-7
    assert res.details["atoms"] == list(range(len(coord)))


def test_forces_fd_sampling(system):
    coord, box, atype = system
    calc = PairCalc(atype)
    res = check_forces_fd(calc, coord, box, natoms_sample=3, rng=0)
    assert res.passed, str(res)
    assert len(res.details["atoms"]) == 3
    assert calc.ncalls == 1 + 2 * 2 * 3 * 3
    res2 = check_forces_fd(PairCalc(atype), coord, box, natoms_sample=3, rng=0)
    assert res2.details["atoms"] == res.details["atoms"]


def test_virial_fd_passes(system):
    coord, box, atype = system
    res = check_virial_fd(PairCalc(atype), coord, box)
    assert res.passed, str(res)
    assert res.order is not None and 1.6 <= res.order <= 2.4


def test_virial_fd_passes_non_symmetric():
    # anisotropic (non rotation invariant) energy: W is not symmetric, but FD still agrees
    calc = PairCalc(CELL_ATYPE, aniso=0.02)
    w = calc(CELL_COORD, CELL)["virial"]
    assert np.max(np.abs(w - w.T)) > 1e-3 * np.max(np.abs(w))
    res = check_virial_fd(calc, CELL_COORD, CELL)
    assert res.passed, str(res)
    assert res.details["max_abs_err_transposed"] > 1e3 * res.max_abs_err


def test_symmetry_passes(system):
    coord, box, atype = system
    results = check_symmetry(PairCalc(atype), coord, box, atype=atype, rng=3)
    names = [r.name for r in results]
    expected = ["rotation", "reflection", "translation", "permutation"]
    if box is not None:
        expected.append("image_wrap")
    for t in expected:
        for q in ("energy", "forces", "virial"):
            assert f"{t}/{q}" in names
    assert all_passed(results), format_table(results)
    refl = next(r for r in results if r.name == "reflection/forces")
    assert refl.details["det"] == pytest.approx(-1.0)
    perm = next(r for r in results if r.name == "permutation/energy")
    assert not perm.details["trivial"]
    p = np.array(perm.details["perm"])
    assert np.all(atype[p] == atype)


def test_symmetry_without_virial_or_atype():
    def calc(coord, box):
        out = PairCalc(MOL_ATYPE)(coord, box)
        return {"energy": out["energy"], "forces": out["forces"]}

    results = check_symmetry(calc, MOL_COORD, None, rng=0)
    names = {r.name for r in results}
    assert names == {f"{t}/{q}" for t in ("rotation", "reflection", "translation")
                     for q in ("energy", "forces")}
    assert all_passed(results)


def test_cutoff_continuity_passes(system):
    coord, box, atype = system
    res_e, res_f = check_cutoff_continuity(PairCalc(atype), coord, box, rcut=RCUT)
    assert res_e.name == "cutoff/energy" and res_f.name == "cutoff/forces"
    assert res_e.passed and res_f.passed, format_table([res_e, res_f])
    assert res_e.details["other_crossings"] == []
    # the jumps shrink by orders of magnitude
    je = res_e.details["jumps"]
    assert je[1] < 1e-2 * je[0] or je[1] <= res_e.details["roundoff_floor"]


def test_cutoff_continuity_given_pair():
    calc = PairCalc(MOL_ATYPE)
    res = check_cutoff_continuity(calc, MOL_COORD, None, RCUT, atom=0, neighbor=5)
    assert all_passed(res), format_table(res)
    assert res[0].details["atom"] == 0 and res[0].details["neighbor"] == 5
    # atom only: best neighbour of that atom
    res = check_cutoff_continuity(PairCalc(CELL_ATYPE), CELL_COORD, CELL, RCUT, atom=2)
    assert res[0].details["atom"] == 2
    assert all_passed(res)


def test_run_all_checks_and_table(system):
    coord, box, atype = system
    results = run_all_checks(PairCalc(atype), coord, box, atype=atype, rcut=RCUT, rng=1,
                             natoms_sample=4)
    assert all_passed(results), format_table(results)
    table = format_table(results)
    lines = table.splitlines()
    assert lines[0].split()[0] == "check" and "status" in lines[0]
    assert len({len(line) for line in lines[2:-1]} | {len(lines[0])}) == 1  # aligned
    assert "forces_fd" in table and "virial_fd" in table and "cutoff/forces" in table
    assert lines[-1] == f"{len(results)}/{len(results)} passed"


def test_check_result_str_and_bool():
    r = CheckResult("x", 1e-3, 1e-4, 1e-6, False, {}, order=2.0)
    s = str(r)
    assert "FAIL" in s and "x" in s and "order 2.00" in s and "\n" not in s
    assert not r
    assert CheckResult("y", 0.0, 0.0, 1.0, True)
    assert "PASS" in format_table([[r], CheckResult("y", 0.0, 0.0, 1.0, True)])


def test_as_calculator_wraps_model_api():
    ref = PairCalc(CELL_ATYPE)

    class FakeModel:
        def evaluate(self, coord, atype, box=None):
            assert coord.shape == (1, len(atype), 3)
            assert box is None or box.shape == (1, 3, 3)
            out = ref(coord[0], None if box is None else box[0])
            return {"energy": np.array([out["energy"]]), "forces": out["forces"][None],
                    "virial": out["virial"][None]}

    calc = as_calculator(FakeModel(), CELL_ATYPE)
    out = calc(CELL_COORD, CELL)
    assert isinstance(out["energy"], float)
    assert out["forces"].shape == (10, 3) and out["virial"].shape == (3, 3)
    assert check_forces_fd(calc, CELL_COORD, CELL, natoms_sample=2, rng=0).passed
    assert all_passed(check_symmetry(calc, CELL_COORD, CELL, atype=CELL_ATYPE, rng=0))
    with pytest.raises(TypeError):
        as_calculator(object(), CELL_ATYPE)
    with pytest.raises(TypeError):
        as_calculator(FakeModel(), [0.0, 1.0])


# ================================================================= failing on broken calculators
def test_forces_fd_fails_on_scaled_forces(system):
    coord, box, atype = system
    res = check_forces_fd(PairCalc(atype, force_scale=1.001), coord, box)
    assert not res.passed
    assert res.max_rel_err > 1e-4
    assert res.order is not None and res.order < 1.0  # error does not fall with h


def test_forces_fd_fails_on_sign_error():
    res = check_forces_fd(PairCalc(MOL_ATYPE, force_scale=-1.0), MOL_COORD, None,
                          natoms_sample=2, rng=0)
    assert not res.passed and res.max_rel_err > 1.0


def test_virial_fd_fails_on_scaled_virial(system):
    coord, box, atype = system
    res = check_virial_fd(PairCalc(atype, virial_scale=1.01), coord, box)
    assert not res.passed
    assert 1e-3 < res.max_rel_err < 0.1


def test_virial_fd_fails_on_transposed_non_symmetric_virial():
    calc = PairCalc(CELL_ATYPE, aniso=0.02, virial_transpose=True)
    res = check_virial_fd(calc, CELL_COORD, CELL)
    assert not res.passed
    assert res.details["max_abs_err_transposed"] < 1e-6  # the diagnostic points at the layout


def test_symmetry_fails_on_absolute_position(system):
    coord, box, atype = system
    results = check_symmetry(PairCalc(atype, external=0.05), coord, box, atype=atype, rng=5)
    by = {r.name: r for r in results}
    assert not by["translation/energy"].passed
    assert not by["translation/forces"].passed
    # a trap about the origin is rotation invariant; a field in fractional coordinates is
    # invariant under a joint rotation of atoms and cell and under image wrapping
    assert by["rotation/energy"].passed and by["permutation/energy"].passed
    if box is not None:
        assert by["image_wrap/energy"].passed and by["image_wrap/forces"].passed


def test_symmetry_fails_without_rotation_invariance(system):
    coord, box, atype = system
    results = check_symmetry(PairCalc(atype, aniso=0.02), coord, box, atype=atype, rng=5)
    by = {r.name: r for r in results}
    for t in ("rotation", "reflection"):
        assert not by[f"{t}/energy"].passed
        assert not by[f"{t}/forces"].passed
        assert not by[f"{t}/virial"].passed
    for t in ["translation", "permutation"] + (["image_wrap"] if box is not None else []):
        assert by[f"{t}/energy"].passed and by[f"{t}/forces"].passed


def test_symmetry_fails_on_broken_type_handling(system):
    coord, box, atype = system
    results = check_symmetry(PairCalc(atype, index_weight=0.01), coord, box, atype=atype, rng=5)
    by = {r.name: r for r in results}
    assert not by["permutation/energy"].passed
    assert not by["permutation/forces"].passed
    assert by["rotation/energy"].passed and by["translation/forces"].passed


def test_symmetry_fails_on_wrong_force_transformation():
    # forces returned in a fixed frame (not rotating with the system): energy fine, forces not
    ref = PairCalc(MOL_ATYPE)

    def calc(coord, box):
        out = ref(coord, box)
        return {"energy": out["energy"], "forces": ref(MOL_COORD, None)["forces"]}

    by = {r.name: r for r in check_symmetry(calc, MOL_COORD, None, rng=2)}
    assert by["rotation/energy"].passed and not by["rotation/forces"].passed


@pytest.mark.parametrize("switch, energy_ok", [("hard", False), ("shift", True)])
def test_cutoff_continuity_fails_without_switch(system, switch, energy_ok):
    coord, box, atype = system
    res_e, res_f = check_cutoff_continuity(PairCalc(atype, switch=switch), coord, box, rcut=RCUT)
    assert res_e.passed is energy_ok, format_table([res_e, res_f])
    assert not res_f.passed
    assert not all_passed([res_e, res_f])
    # a genuine jump does not shrink with delta
    jf = res_f.details["jumps"]
    assert jf[-1] > 0.5 * jf[0]


# ============================================================================ input validation
def good_calc(coord, box):
    return PairCalc(MOL_ATYPE)(coord, box)


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((8, 2)), ValueError),
    (np.zeros(24), ValueError),
    (np.zeros((0, 3)), ValueError),
    (np.full((8, 3), np.nan), ValueError),
    (np.array([[np.inf, 0, 0]] * 8), ValueError),
    ("coords", TypeError),
    (None, TypeError),
    (np.zeros((8, 3), dtype=complex), TypeError),
    (np.zeros((8, 3), dtype=bool), TypeError),
])
def test_bad_coord(bad, exc):
    for fn in (check_forces_fd, check_virial_fd, check_symmetry):
        with pytest.raises(exc):
            fn(good_calc, bad)
    with pytest.raises(exc):
        check_cutoff_continuity(good_calc, bad, rcut=RCUT)


@pytest.mark.parametrize("bad", [np.eye(2), np.zeros((3, 4)), np.zeros((3, 3)),
                                 np.full((3, 3), np.nan),
                                 np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]])])
def test_bad_box(bad):
    with pytest.raises(ValueError):
        check_forces_fd(good_calc, MOL_COORD, bad)
    with pytest.raises(ValueError):
        check_symmetry(good_calc, MOL_COORD, bad)


def test_box_as_nine_values_accepted():
    res = check_forces_fd(PairCalc(CELL_ATYPE), CELL_COORD, CELL.reshape(9), natoms_sample=1, rng=0)
    assert res.passed


def test_bad_atype():
    with pytest.raises(ValueError, match="length"):
        check_symmetry(good_calc, MOL_COORD, atype=MOL_ATYPE[:-1])
    with pytest.raises(TypeError):
        check_symmetry(good_calc, MOL_COORD, atype=MOL_ATYPE.astype(float))
    with pytest.raises(ValueError):
        check_symmetry(good_calc, MOL_COORD, atype=-MOL_ATYPE - 1)
    with pytest.raises(ValueError):
        check_symmetry(good_calc, MOL_COORD, atype=MOL_ATYPE[None])


def test_bad_parameters():
    with pytest.raises(TypeError, match="callable"):
        check_forces_fd("not a calc", MOL_COORD)
    with pytest.raises(ValueError, match="h1 > h2"):
        check_forces_fd(good_calc, MOL_COORD, steps=(1e-3, 1e-2))
    with pytest.raises(ValueError):
        check_forces_fd(good_calc, MOL_COORD, steps=(1e-2,))
    with pytest.raises(ValueError):
        check_virial_fd(good_calc, MOL_COORD, steps=(1e-3, -1e-4))
    with pytest.raises(ValueError):
        check_forces_fd(good_calc, MOL_COORD, tol=0.0)
    with pytest.raises(ValueError):
        check_forces_fd(good_calc, MOL_COORD, natoms_sample=0)
    with pytest.raises(TypeError):
        check_forces_fd(good_calc, MOL_COORD, natoms_sample=2.5)
    with pytest.raises(TypeError):
        check_symmetry(good_calc, MOL_COORD, rng="seed")
    with pytest.raises(ValueError, match="rcut"):
        check_cutoff_continuity(good_calc, MOL_COORD)
    with pytest.raises(ValueError, match="decreasing"):
        check_cutoff_continuity(good_calc, MOL_COORD, rcut=RCUT, deltas=(1e-4, 1e-3))
    with pytest.raises(ValueError):
        check_cutoff_continuity(good_calc, MOL_COORD, rcut=RCUT, deltas=(1e-3,))
    with pytest.raises(ValueError, match="different"):
        check_cutoff_continuity(good_calc, MOL_COORD, rcut=RCUT, atom=1, neighbor=1)
    with pytest.raises(ValueError, match="out of range"):
        check_cutoff_continuity(good_calc, MOL_COORD, rcut=RCUT, atom=0, neighbor=99)
    with pytest.raises(ValueError):
        check_cutoff_continuity(good_calc, MOL_COORD, rcut=1e-3)


@pytest.mark.parametrize("result, exc, match", [
    ([1.0, 2.0], TypeError, "dict"),
    ({"energy": 1.0}, ValueError, "forces"),
    ({"energy": np.zeros(2), "forces": np.zeros((8, 3))}, ValueError, "energy"),
    ({"energy": 1.0, "forces": np.zeros((7, 3))}, ValueError, "forces"),
    ({"energy": 1.0, "forces": np.zeros(24)}, ValueError, "forces"),
    ({"energy": np.nan, "forces": np.zeros((8, 3))}, ValueError, "non-finite"),
    ({"energy": 1.0, "forces": np.full((8, 3), np.nan)}, ValueError, "non-finite"),
    ({"energy": 1.0, "forces": np.zeros((8, 3)), "virial": np.zeros(9)}, ValueError, "virial"),
    ({"energy": "one", "forces": np.zeros((8, 3))}, TypeError, "energy"),
])
def test_bad_calculator_output(result, exc, match):
    with pytest.raises(exc, match=match):
        check_forces_fd(lambda c, b: result, MOL_COORD)


def test_virial_required_for_virial_fd():
    with pytest.raises(ValueError, match="virial"):
        check_virial_fd(lambda c, b: {"energy": 0.0, "forces": np.zeros((8, 3))}, MOL_COORD)


def test_calculator_inputs_are_copies():
    seen = []

    def calc(coord, box):
        seen.append(coord.dtype)
        out = PairCalc(MOL_ATYPE)(coord, box)
        coord[:] = 0.0  # a misbehaving calculator must not corrupt the check
        return out

    coord = MOL_COORD.astype(np.float32)
    res = check_forces_fd(calc, coord, natoms_sample=2, rng=0, steps=(1e-2, 5e-3))
    assert res.passed
    assert all(dt == np.float64 for dt in seen)
