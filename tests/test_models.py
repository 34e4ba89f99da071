"""DeepPot.evaluate: forces and virial against finite differences, symmetries, sums, layouts, bad input.

These tests use plain central differences (tests/fd.py), independent of symref.checks.
"""
import numpy as np
import pytest

import symref
from symref.io.data import make_crystal, make_molecule
from fd import num_grad_richardson
from tolerance import assert_close


def model(one_side=True, exclude=(), atom_exclude=(), fit_exclude=(), ntypes=2, sel=None, rcut=4.5):
    cfg = {"type_map": ["A", "B", "C"][:ntypes],
           "descriptor": {"type": "se_e2_a", "rcut": rcut, "rcut_smth": 1.0,
                          "sel": sel or [60] * ntypes, "neuron": [4, 8, 16], "axis_neuron": 4,
                          "resnet_dt": True, "type_one_side": one_side,
                          "exclude_types": list(exclude)},
           "fitting_net": {"neuron": [12, 12], "resnet_dt": True, "exclude_types": list(fit_exclude)},
           "atom_exclude_types": list(atom_exclude)}
    m = symref.model.build.demo_model(cfg, seed=3)
    d = m.descriptor
    for a, b in exclude:
        # deepmd-kit keeps padded slots of an excluded group (row -davg/dstd), so E jumps
        # when an excluded neighbour crosses rcut unless davg[..., 0] of that group is 0
        # (see test_excluded_neighbour_crossing_rcut_is_continuous_only_with_zero_davg)
        for ti, tj in ((a, b), (b, a)):
            d.davg[ti, d.sel_offsets[tj]:d.sel_offsets[tj + 1], 0] = 0.0
    return m


CASES = {
    "crystal/one_side": (dict(one_side=True), "crystal"),
    "crystal/two_side+excl": (dict(one_side=False, exclude=[(0, 1)]), "crystal"),
    "molecule/two_side": (dict(one_side=False, ntypes=3), "molecule"),
    "molecule/atom_excl": (dict(one_side=True, ntypes=3, atom_exclude=[2], fit_exclude=[1]), "molecule"),
}


def system(kind):
    s = make_crystal(seed=1) if kind == "crystal" else make_molecule(natoms=7, seed=2)
    return s.coord[0], s.atype, None if s.box is None else s.box[0]


@pytest.mark.parametrize("case", list(CASES))
def test_forces_match_finite_differences(case):
    kw, kind = CASES[case]
    m = model(**kw)
    coord, atype, box = system(kind)
    res = m.evaluate(coord, atype, box)
    fd = -num_grad_richardson(lambda x: m.evaluate(x, atype, box)["energy"][0], coord, h=5e-4)
    assert_close(res["forces"][0], fd, 1e-7, what=case)
    assert np.abs(res["forces"][0]).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("case", list(CASES))
def test_virial_matches_strain_derivative(case):
    """W_ab = -dE/d eps_ab with x -> x (I + eps), h -> h (I + eps)."""
    kw, kind = CASES[case]
    m = model(**kw)
    coord, atype, box = system(kind)
    res = m.evaluate(coord, atype, box)

    def energy(eps):
        F = np.eye(3) + eps
        return m.evaluate(coord @ F, atype, None if box is None else box @ F)["energy"][0]
    fd = -num_grad_richardson(energy, np.zeros((3, 3)), h=5e-4)
    assert_close(res["virial"][0], fd, 1e-7, what=case)
    np.testing.assert_allclose(res["atom_virial"][0].sum(0), res["virial"][0], atol=1e-12)
    np.testing.assert_allclose(res["atom_energy"][0].sum(), res["energy"][0], rtol=1e-14)


def test_symmetries():
    m = model(one_side=False)
    coord, atype, box = system("crystal")
    ref = m.evaluate(coord, atype, box)
    rng = np.random.default_rng(5)
    for det in (1, -1):
        Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        Q *= det * np.sign(np.linalg.det(Q))
        r = m.evaluate(coord @ Q.T + rng.normal(size=3), atype, box @ Q.T)
        assert_close(r["energy"], ref["energy"], 1e-13, what="E rotation")
        assert_close(r["forces"][0], ref["forces"][0] @ Q.T, 1e-11, what="F rotation")
        assert_close(r["virial"][0], Q @ ref["virial"][0] @ Q.T, 1e-11, what="W rotation")
    perm = np.concatenate([rng.permutation(np.nonzero(atype == t)[0]) for t in (0, 1)])
    r = m.evaluate(coord[perm], atype[perm], box)
    assert_close(r["energy"], ref["energy"], 1e-13, what="E permutation")
    assert_close(r["forces"][0], ref["forces"][0][perm], 1e-12, what="F permutation")
    wrapped = coord + rng.integers(-3, 4, size=coord.shape) @ box
    r = m.evaluate(wrapped, atype, box)
    assert_close(r["energy"], ref["energy"], 1e-13, what="E wrap")
    assert_close(r["virial"], ref["virial"], 1e-12, what="W wrap")


def test_isolated_atom_is_bias_plus_zero_environment():
    """An atom with no neighbours: E = fit(D of all-padding rows) + bias_atom_e + out_bias."""
    from symref.reference.nn import mlp_forward
    m = model(one_side=True)
    coord = np.array([[0.0, 0, 0], [20.0, 0, 0], [21.2, 0.3, 0]])
    atype = np.array([1, 0, 1])
    res = m.evaluate(coord, atype)
    d = m.descriptor
    R = -d.davg[1] / d.dstd[1]  # nnei x 4: every slot is padding
    T = np.zeros((d.neuron[-1], 4))
    for tj in range(2):
        sl = slice(d.sel_offsets[tj], d.sel_offsets[tj + 1])
        G = mlp_forward(R[sl, :1], d.embeddings[tj])[0]
        T += G.T @ R[sl]
    T /= d.nnei
    D = (T @ T[: d.axis_neuron].T).reshape(1, -1)
    e = mlp_forward(D, m.fitting.nets[1])[0][0, 0] + m.fitting.bias_atom_e[1] + m.out_bias[1]
    np.testing.assert_allclose(res["atom_energy"][0, 0], e, rtol=1e-13)
    assert np.all(res["forces"][0, 0] == 0)


def test_input_layouts_and_frames():
    m = model()
    coord, atype, box = system("crystal")
    one = m.evaluate(coord, atype, box)
    two = m.evaluate(np.stack([coord, coord + 0.1]).reshape(2, -1), atype, np.stack([box.ravel()] * 2))
    assert two["energy"].shape == (2,) and two["forces"].shape == (2, len(atype), 3)
    assert two["atom_virial"].shape == (2, len(atype), 3, 3)
    np.testing.assert_allclose(two["energy"][0], one["energy"][0], rtol=1e-15)
    np.testing.assert_allclose(two["energy"][1], one["energy"][0], rtol=1e-13)  # translation


def test_float32_close_to_float64():
    m = model(one_side=False)
    coord, atype, box = system("crystal")
    r64 = m.evaluate(coord, atype, box)
    r32 = m.evaluate(coord, atype, box, precision="float32")
    assert r32["energy"].dtype == np.float32
    assert_close(r32["energy"], r64["energy"], 1e-5, what="float32 energy")
    assert_close(r32["forces"], r64["forces"], 1e-3, what="float32 forces")


BAD = [
    (lambda c, a, b: (np.where(np.arange(c.size).reshape(c.shape) == 4, np.nan, c), a, b), ValueError, "frame 0, atom 1 is not finite"),
    (lambda c, a, b: (np.vstack([c, c[:1]]), np.append(a, 0), b), ValueError, "same position"),
    (lambda c, a, b: (c, a, np.zeros((3, 3))), ValueError, "singular"),
    (lambda c, a, b: (c, a, np.ones(4)), ValueError, "box has shape"),
    (lambda c, a, b: (c, np.where(np.arange(len(a)) == 2, -1, a), b), ValueError, "atom 2 .* negative type"),
    (lambda c, a, b: (c, np.where(np.arange(len(a)) == 3, 5, a), b), ValueError, "atom 3 .* type 5 but the model has only 2"),
    (lambda c, a, b: (c[:-1], a, b), ValueError, "coord has shape"),
    (lambda c, a, b: (c, a.astype(float) + 0.5, b), TypeError, "integer"),
    (lambda c, a, b: (np.zeros((0, 3)), np.zeros(0, int), b), ValueError, "empty"),
]


@pytest.mark.parametrize("k", range(len(BAD)))
def test_bad_input_is_a_clear_error(k):
    m = model()
    coord, atype, box = system("crystal")
    make, exc, msg = BAD[k]
    c, a, b = make(coord, atype, box)
    with pytest.raises(exc, match=msg):
        m.evaluate(c, a, b)


def test_left_handed_cell_is_valid():
    m = model()
    coord, atype, box = system("crystal")
    P = np.diag([1.0, 1.0, -1.0])  # mirror: left-handed cell, same structure mirrored
    r = m.evaluate(coord @ P, atype, box @ P)
    assert_close(r["energy"], m.evaluate(coord, atype, box)["energy"], 1e-13, what="mirror")


def test_sel_exceeded_names_atom_and_truncate_option():
    m = model(sel=[2, 2])
    coord, atype, box = system("crystal")
    with pytest.raises(ValueError, match=r"atom \d+ has \d+ neighbours of type \d .*sel"):
        m.evaluate(coord, atype, box)
    assert np.isfinite(m.evaluate(coord, atype, box, truncate=True)["energy"]).all()


def test_build_model_config_errors():
    with pytest.raises(ValueError, match="sel"):
        symref.build_model({"type_map": ["A"], "descriptor": {"rcut": 3.0, "sel": "auto"}, "fitting_net": {}})
    with pytest.raises(ValueError, match="'dpa2' is not supported; symref implements .*se_e2_r"):
        symref.build_model({"type_map": ["A"], "descriptor": {"type": "dpa2", "rcut": 3.0, "sel": [3]},
                            "fitting_net": {}})
    with pytest.raises(ValueError, match="missing 'fitting_net'"):
        symref.build_model({"type_map": ["A"], "descriptor": {}})


def test_excluded_neighbour_crossing_rcut_is_continuous_only_with_zero_davg():
    """deepmd-kit's convention, reproduced: an excluded pair's real neighbour contributes a zero
    row, but once it leaves rcut its slot is padding with the row -davg/dstd.  So E is
    continuous across rcut for excluded pairs only when davg[..., 0] of that group is zero."""
    m = model(one_side=False, exclude=[(0, 1)], rcut=4.0)
    atype = np.array([0, 1])
    d = m.descriptor

    def jump():
        e = [m.evaluate(np.array([[0.0, 0, 0], [r, 0, 0]]), atype)["energy"][0] for r in (4.0 - 1e-9, 4.0 + 1e-9)]
        return abs(e[1] - e[0])
    assert jump() < 1e-12
    d.davg[0, d.sel_offsets[1]:d.sel_offsets[2], 0] = 0.1
    assert jump() > 1e-6


def test_pair_exclusion_rule_removes_both_orders_and_checks_types():
    """reference.neighbors.exclude_type_pairs (the one copy of model-level pair exclusion):
    a slot is emptied exactly when (centre type, neighbour type) is an excluded pair in
    either order; padding stays padding; a type outside the model is an error."""
    from symref.reference.neighbors import exclude_type_pairs, type_pair_table

    atype = np.array([0, 1, 2, 1])
    nlist = np.array([[1, 2, 3, -1], [0, 2, 3, -1], [0, 1, 3, -1], [0, 1, 2, -1]])
    out = exclude_type_pairs(nlist, atype, 3, [(1, 0)])
    tc, tn = atype[:, None], atype[np.maximum(nlist, 0)]
    removed = (nlist >= 0) & (((tc == 0) & (tn == 1)) | ((tc == 1) & (tn == 0)))
    np.testing.assert_array_equal(out, np.where(removed, -1, nlist))
    assert exclude_type_pairs(nlist, atype, 3, []) is nlist
    np.testing.assert_array_equal(type_pair_table(3, [(2, 1)]), type_pair_table(3, [(1, 2)]))
    with pytest.raises(ValueError, match=r"\(0, 3\) is outside 0..2"):
        type_pair_table(3, [(0, 3)])


def test_backend_table_and_one_fallback_warning(monkeypatch):
    """Every fast backend of DeepPot.evaluate comes from symref.model.backends; a model the
    backend cannot evaluate runs on the reference with symref.fast.fallback_warning, whose
    warning points at the caller of evaluate; DeepTensor is a sibling, not a DeepPot."""
    from symref.fast import cpu
    from symref.model.backends import BACKENDS
    from symref.model.tensor import DeepTensor

    assert BACKENDS == ("numba", "numpy", "cuda")
    assert not issubclass(DeepTensor, symref.DeepPot)
    assert not hasattr(DeepTensor, "astype") and not hasattr(DeepTensor, "_evaluate_frame")
    m = model()
    coord = np.array([[0.0, 0.0, 0.0], [1.1, 0.2, 0.0], [0.1, 1.3, 0.4], [1.2, 1.1, 0.9]])
    atype = np.array([0, 1, 1, 0])
    monkeypatch.setattr(cpu, "unsupported_reason", lambda model: "a test reason")
    with pytest.warns(RuntimeWarning, match=r"backend='numba'.*a test reason.*NumPy reference") as w:
        out = m.evaluate(coord, atype)
    assert w[0].filename == __file__
    ref = m.evaluate(coord, atype, backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])
    with pytest.raises(ValueError, match="backend must be one of"):
        m.evaluate(coord, atype, backend="gpu")
