"""Golden vectors (symref.io.golden) of se_e2_r, se_e3 and hybrid models, against deepmd-kit.

deepmd-kit's NumPy backend on its own neighbour list gives the neighbour list, pair
vectors, environment rows and descriptor (for a hybrid: every member's on its own
columns of the neighbour list) and, through its own embedding nets, se_e2_r's G and
se_e3's G_p_q at the dumped inputs (1e-12 relative); its PyTorch backend the atomic
energies, forces, virial and atomic virial (1e-10 relative).  ``compare`` must name a
single perturbed stage of each descriptor.  Float64 throughout.
"""
import shutil

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.io import golden
from symref.io.data import make_molecule

R_MOL = {"type": "se_e2_r", "sel": [8, 8], "rcut": 5.0, "rcut_smth": 1.0,
         "neuron": [4, 8, 16], "resnet_dt": True}
R_WATER = {"type": "se_e2_r", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5,
           "neuron": [4, 8], "exclude_types": [[0, 1]]}
T_MOL = {"type": "se_e3", "sel": [8, 8], "rcut": 5.0, "rcut_smth": 1.0, "neuron": [4, 8],
         "resnet_dt": True}
T_WATER = {"type": "se_e3", "sel": [20, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8]}
HYBRID = {"type": "hybrid", "list": [
    {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5, "neuron": [4, 8],
     "axis_neuron": 4},
    {"type": "se_e3", "sel": [20, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8]},
    {"type": "se_e2_r", "sel": [30, 60], "rcut": 5.0, "rcut_smth": 0.5, "neuron": [4, 8]}]}
CASES = {"se_e2_r": (R_WATER, R_MOL), "se_e3": (T_WATER, T_MOL), "hybrid": (HYBRID, HYBRID)}
MEASURED = {}


def _molecule():
    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    return mol.coord[0], mol.atype, None


def _system(request, system):
    if system == "molecule":
        return _molecule()
    coord, atype, box, _ = request.getfixturevalue("water_frame")
    return coord[0], atype, box[0].reshape(3, 3)


def _dump(dp, kind, system, seed, coord, atype, box, tmp_path):
    from symref.io.model_dict import model_from_dict

    section = CASES[kind][0 if system == "water" else 1]
    d = dp.make_deepmd_descriptor_model(seed, section, [8, 8], ["O", "H"], stats="type")
    out = golden.dump(model_from_dict(d), coord, atype, box, tmp_path / f"{kind}_{system}")
    return d, golden.load(out)


def _measure(case, stage, ours, ref, tol):
    err = float(np.abs(np.asarray(ours) - np.asarray(ref)).max())
    MEASURED[(case, stage)] = (err, err / max(float(np.abs(ref).max()), 1e-300))
    assert_allclose_scaled(ours, ref, 0, tol, err_msg=f"{case}: {stage}")


def _dp_members(dp, d, coord, atype, box):
    """deepmd-kit's stages of each (member) descriptor on its own neighbour list: a list of
    ``(prefix, descriptor object, nlist (local, -1 beyond the member's rcut), rij, env_mat,
    descriptor)``."""
    nl = dp.dp_neighbor_list(d, coord[None], atype, None if box is None else box[None])
    desc = dp._dp_model(d).atomic_model.descriptor
    ext_c = nl["extended_coord"][:1].reshape(1, -1)
    ext_t, nlist, mapping = nl["extended_atype"][:1], nl["nlist"][:1], nl["mapping"][0]
    if hasattr(desc, "descrpt_list"):
        members = [(f"m{k}_", m, nlist[..., idx])
                   for k, (m, idx) in enumerate(zip(desc.descrpt_list, desc.nlist_cut_idx))]
    else:
        members = [("", desc, nlist)]
    out = []
    for pre, m, nl_m in members:
        radial = m.serialize()["type"] == "se_r"
        rr, diff, _ = m.env_mat.call(ext_c, ext_t, nl_m, m.davg, m.dstd, *[True][:radial])
        rij = np.asarray(diff)[0]
        own = (nl_m[0] >= 0) & (np.linalg.norm(rij, axis=-1) <= m.get_rcut())
        local = np.where(own, mapping[np.maximum(nl_m[0], 0)], -1)
        out.append((pre, m, local, np.where(own[..., None], rij, 0.0), np.asarray(rr)[0],
                    np.asarray(m.call(ext_c, ext_t, nl_m)[0])[0]))
    return out, nl


def _dp_net(m, index):
    """deepmd-kit's embedding net ``index`` of descriptor ``m`` (its NetworkCollection)."""
    return m.embeddings[index]


@pytest.mark.deepmd
@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
@pytest.mark.parametrize("system", [pytest.param("water", marks=pytest.mark.data), "molecule"])
def test_descriptor_stages_equal_deepmd_numpy(tmp_path, request, dp, kind, system):
    """nlist (the hybrid's and every member's own), rij, env_mat and descriptor equal
    deepmd-kit's NumPy backend on its own neighbour list (1e-12 relative); se_e2_r's G and
    se_e3's G_p_q equal deepmd-kit's own embedding nets at the dumped s / theta, which are
    the dumped env_mat's (s = R0 k, theta = X X^T), and the descriptor is their reduction."""
    coord, atype, box = _system(request, system)
    d, (manifest, a) = _dump(dp, kind, system, 31, coord, atype, box, tmp_path)
    members, nl = _dp_members(dp, d, coord, atype, box)
    mapping = nl["mapping"][0]
    local = np.where(nl["nlist"][0] >= 0, mapping[np.maximum(nl["nlist"][0], 0)], -1)
    np.testing.assert_array_equal(a["nlist"], local)
    case = f"{kind}/{system}"
    for pre, m, nlist_m, rij, env, desc in members:
        if pre:  # a hybrid member's own neighbour list
            np.testing.assert_array_equal(a[pre + "nlist"], nlist_m)
            assert (nlist_m >= 0).any() and (nlist_m < 0).any()
            _measure(case, pre + "rij", a[pre + "rij"], rij, 1e-12)
        _measure(case, pre + "env_mat", a[pre + "env_mat"], env, 1e-12)
        _measure(case, pre + "descriptor", a[pre + "descriptor"], desc, 1e-12)
        kind_m = {"se_r": "se_e2_r"}.get(m.serialize()["type"], m.serialize()["type"])
        if kind_m == "se_e2_r":  # s = R0 k, k = 0 on excluded type pairs' neighbours
            excl = {tuple(p) for p in m.serialize()["exclude_types"]}
            slot_t = np.repeat(np.arange(2), m.get_sel())
            keep = np.array([[(int(ti), int(tj)) not in excl and (int(tj), int(ti)) not in excl
                              for tj in slot_t] for ti in atype])  # nloc x nnei
            keep |= a[pre + "nlist"] < 0 if pre else a["nlist"] < 0  # padding: kept, as there
            assert (~keep).any() == bool(excl)
            np.testing.assert_array_equal(a[pre + "s"],
                                          np.where(keep, a[pre + "env_mat"][..., 0], 0.0))
            off = np.cumsum([0] + list(m.get_sel()))
            for t in range(len(off) - 1):
                s = a[pre + "s"][:, off[t]:off[t + 1], None]
                _measure(case, f"{pre}G[{t}]", a[pre + "G"][:, off[t]:off[t + 1]],
                         _dp_net(m, (t,)).call(s), 1e-12)
            G_mean = a[pre + "G"].sum(axis=1) / (5 * a[pre + "G"].shape[1])
            assert_allclose_scaled(G_mean, a[pre + "descriptor"], 0, 1e-14)
        elif kind_m == "se_e3":
            X = a[pre + "env_mat"][..., 1:]
            off = np.cumsum([0] + list(m.get_sel()))
            total = 0
            for p in range(2):
                for q in range(p, 2):
                    th = a[f"{pre}theta_{p}_{q}"]
                    assert_allclose_scaled(th, np.einsum("iad,ibd->iab", X[:, off[p]:off[p + 1]],
                                                         X[:, off[q]:off[q + 1]]), 0, 1e-14)
                    _measure(case, f"{pre}G_{p}_{q}", a[f"{pre}G_{p}_{q}"],
                             _dp_net(m, (p, q)).call(th[..., None]), 1e-12)
                    total = total + a[f"{pre}descriptor_{p}_{q}"]
            assert_allclose_scaled(total, a[pre + "descriptor"], 0, 1e-14)
    if kind == "hybrid":
        _measure(case, "descriptor", a["descriptor"],
                 np.concatenate([mm[5] for mm in members], axis=1), 1e-12)
        assert [x["prefix"] for x in manifest["model"]["members"]] == ["m0_", "m1_", "m2_"]
    assert ("box" in a) == (box is not None)


@pytest.mark.deepmd
@pytest.mark.data
@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
def test_outputs_equal_deepmd_pytorch(tmp_path, request, dp, pt, kind):
    """atom_energy, energy, force, virial and atom_virial of the dump equal deepmd-kit's
    PyTorch backend to 1e-10 relative (water frame and molecule); inside the dump,
    energy = Σ atom_energy and virial = Σ atom_virial."""
    for system in ("water", "molecule"):
        coord, atype, box = _system(request, system)
        d, (_, a) = _dump(dp, kind, system, 32, coord, atype, box, tmp_path)
        ref = dp.pt_eval(d, coord[None], atype, None if box is None else box[None])
        case = f"{kind}/{system}"
        for stage, key in (("atom_energy", "atom_energy"), ("energy", "energy"),
                           ("force", "forces"), ("virial", "virial"),
                           ("atom_virial", "atom_virial")):
            _measure(case, stage, a[stage], ref[key][0], 1e-10)
        assert_allclose_scaled(a["atom_energy"].sum(), a["energy"], 0, 1e-14)
        assert_allclose_scaled(a["atom_virial"].sum(axis=0), a["virial"], 0, 1e-14)


def _demo(kind):
    from symref.model.build import demo_model

    section = {k: v for k, v in CASES[kind][1].items()}
    return demo_model({"type_map": ["O", "H"], "descriptor": section,
                       "fitting_net": {"neuron": [8, 8]}}, seed=7)


@pytest.mark.parametrize("kind, stages", [
    ("se_e2_r", ("s", "G", "descriptor", "dE_denv_mat")),
    ("se_e3", ("theta_0_1", "G_1_1", "descriptor_0_0", "descriptor")),
    ("hybrid", ("m0_T", "m1_theta_0_0", "m1_G_0_1", "m2_s", "m2_descriptor", "m1_dE_denv_mat"))])
def test_compare_names_the_perturbed_stage(tmp_path, kind, stages):
    """For each descriptor, a copy of the dump with one of its own stages perturbed by 1e-8
    relative is reported with that stage as the first divergent one (a looser tolerance
    passes it); equal dumps compare clean."""
    coord, atype, _ = _molecule()
    a = golden.dump(_demo(kind), coord, atype, None, tmp_path / "a")
    assert golden.compare(a, a).ok
    for stage in stages:
        b = tmp_path / f"b_{stage}"
        shutil.copytree(a, b)
        arr = np.load(b / f"{stage}.npy")
        k = int(np.argmax(np.abs(arr)))
        arr.flat[k] *= 1 + 1e-8
        np.save(b / f"{stage}.npy", arr)
        res = golden.compare(a, b)
        assert res.first_divergent == stage and not res.ok, res.format()
        assert golden.compare(a, b, rtol=1e-6).ok


def test_manifest_of_the_family(tmp_path):
    """Stage names in data-flow order with the shapes of the module docstring for se_e2_r,
    se_e3 and a hybrid (members under m<k>_, their own nlist of their own sel), the
    manifest's descriptor description, and every file with its listed shape and dtype."""
    coord, atype, _ = _molecule()
    n = len(atype)
    expect = {
        "se_e2_r": ["coord", "atype", "nlist", "rij", "env_mat", "s", "embedding_layer_0",
                    "embedding_layer_1", "G", "descriptor"],
        "se_e3": ["coord", "atype", "nlist", "rij", "env_mat", "theta_0_0", "G_0_0",
                  "descriptor_0_0", "theta_0_1", "G_0_1", "descriptor_0_1", "theta_1_1",
                  "G_1_1", "descriptor_1_1", "descriptor"],
    }
    tail = ["fitting_layer_0", "fitting_layer_1", "fitting_out", "atom_energy", "energy",
            "dE_dD", "dE_denv_mat", "dE_drij", "force", "virial", "atom_virial"]
    for kind in ("se_e2_r", "se_e3", "hybrid"):
        manifest, a = golden.load(golden.dump(_demo(kind), coord, atype, None, tmp_path / kind))
        names = [s["name"] for s in manifest["stages"]]
        if kind in expect:
            assert names == expect[kind] + tail
            assert manifest["model"]["descriptor"] == kind and "M2" not in manifest["model"]
            assert a["env_mat"].shape == (n, 16, 1 if kind == "se_e2_r" else 4)
        for s in manifest["stages"]:
            arr = np.load(tmp_path / kind / s["file"])
            assert list(arr.shape) == s["shape"] and str(arr.dtype) == s["dtype"]
            assert "axes" in s["description"] or s["name"] == "energy", s["name"]
    # the hybrid: members' stages under their prefixes, each with its own slots
    m = manifest["model"]
    assert [x["descriptor"] for x in m["members"]] == ["se_e2_a", "se_e3", "se_e2_r"]
    assert m["nnei"] == 46 + 92
    for k, x in enumerate(m["members"]):
        assert a[f"m{k}_nlist"].shape == (n, x["nnei"])
        assert a[f"m{k}_env_mat"].shape[:2] == (n, x["nnei"])
    assert a["m2_env_mat"].shape == (n, 90, 1) and a["m1_G_0_1"].shape == (n, 20, 40, 8)
    assert names.index("m2_descriptor") < names.index("descriptor") < names.index("fitting_out")
    assert [x for x in names if x.endswith("dE_denv_mat")] == [
        "m0_dE_denv_mat", "m1_dE_denv_mat", "m2_dE_denv_mat"]
    widths = [a[f"m{k}_descriptor"].shape[1] for k in range(3)]
    assert a["descriptor"].shape == (n, sum(widths))
    np.testing.assert_array_equal(a["descriptor"], np.concatenate(
        [a[f"m{k}_descriptor"] for k in range(3)], axis=1))


def test_zz_report_measured_differences():
    """Print the largest differences measured against deepmd-kit (pytest -s shows them)."""
    for (case, stage), (err, rel) in sorted(MEASURED.items()):
        print(f"golden vs deepmd-kit {case:22s} {stage:18s} abs {err:.2e} rel {rel:.2e}")
