"""Golden vectors (symref.io.golden): every stage of one frame, and the stage-by-stage comparison.

The stages are checked against deepmd-kit's own numbers where deepmd-kit exposes them
(its NumPy backend's neighbour list, pair vectors, environment rows, descriptor and
rot_mat on its own neighbour list, 1e-12; its PyTorch backend's atomic energies, forces,
virial and atomic virial, 1e-10 relative), on a periodic water frame and on a molecule
without a cell.  ``compare`` must find one perturbed stage and name it, report missing
stages and shape mismatches, and pass equal dumps.  Float64 throughout.
"""
import json
import shutil

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.cli import main
from symref.io import golden
from symref.io.data import System, make_molecule, save_system
from symref.io.model_file import save_model
from symref.model.build import demo_model

WATER = dict(sel=[46, 92], neuron=[4, 8], axis_neuron=4, fitting_neuron=[8, 8], rcut=6.0,
             rcut_smth=0.5)
MOLECULE = dict(sel=[8, 8], neuron=[4, 8, 16], axis_neuron=4, fitting_neuron=[8, 8],
                rcut=5.0, rcut_smth=1.0, resnet_dt=True)
#: largest differences measured against deepmd-kit: (case, stage) -> (abs, rel); printed last
MEASURED = {}


def _demo(kind="ener", seed=0):
    fit = {"neuron": [8, 8], "resnet_dt": True}
    if kind != "ener":
        fit.update(type=kind)
    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 40],
                          "neuron": [4, 8], "axis_neuron": 3, "type_one_side": False},
           "fitting_net": fit}
    return demo_model(cfg, seed=seed)


def _molecule():
    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    return mol.coord[0], mol.atype, None


def _deepmd_case(deepmd_ref, model_from_dict, one_side, seed, params, coord, atype, box,
                 tmp_path):
    d = deepmd_ref.make_deepmd_model_dict(one_side, seed, type_map=["O", "H"], **params)
    tmp_path.mkdir(exist_ok=True)
    out = golden.dump(model_from_dict(d), coord, atype, box, tmp_path / "golden")
    return d, golden.load(out)


def _measure(case, stage, ours, ref):
    err = float(np.abs(np.asarray(ours) - np.asarray(ref)).max())
    MEASURED[(case, stage)] = (err, err / max(float(np.abs(ref).max()), 1e-300))


def _systems(request):
    """(name, coord (n, 3), atype, box (3, 3) or None): the water frame, a molecule."""
    water = request.getfixturevalue("water_frame")
    return [("water", water[0][0], water[1], water[2][0].reshape(3, 3)),
            ("molecule", *_molecule())]


@pytest.mark.deepmd
@pytest.mark.parametrize("one_side", [True, False])
@pytest.mark.parametrize("system", ["water", "molecule"])
def test_descriptor_stages_equal_deepmd_numpy(tmp_path, request, one_side, system):
    """nlist equals deepmd-kit's (its extended indices mapped to local atoms: same slots,
    same order, -1 padding); rij, env_mat, descriptor and rot_mat (T[..., 1:]) equal
    deepmd-kit's NumPy backend run on its own neighbour list, to 1e-12 relative."""
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed")
    import deepmd_ref
    from symref.io.model_dict import model_from_dict

    if system == "water":
        _, coord, atype, box = _systems(request)[0]
        params = WATER
    else:
        coord, atype, box = _molecule()
        params = MOLECULE
    d, (manifest, a) = _deepmd_case(deepmd_ref, model_from_dict, one_side, 21, params, coord,
                                    atype, box, tmp_path)
    ref = deepmd_ref.dp_descriptor(d, coord[None], atype, None if box is None else box[None])
    np.testing.assert_array_equal(a["nlist"], ref["nlist"])
    assert (a["nlist"] >= 0).any() and (a["nlist"] < 0).any()  # real neighbours and padding
    case = f"{system}/one_side={one_side}"
    for stage, theirs in (("rij", ref["rij"]), ("env_mat", ref["env_mat"]),
                          ("descriptor", ref["descriptor"]), ("T", ref["rot_mat"])):
        ours = a[stage][..., 1:] if stage == "T" else a[stage]
        _measure(case, stage, ours, theirs)
        assert_allclose_scaled(ours, theirs, 0, 1e-12, err_msg=f"{case}: {stage}")
    assert ("box" in a) == (box is not None)


@pytest.mark.deepmd
@pytest.mark.parametrize("one_side", [True, False])
def test_outputs_equal_deepmd_pytorch(tmp_path, request, pt, one_side):
    """atom_energy, energy, force, virial and atom_virial of the dump equal deepmd-kit's
    PyTorch backend to 1e-10 relative (water frame and molecule); inside the dump,
    energy = Σ atom_energy and virial = Σ atom_virial."""
    import deepmd_ref
    from symref.io.model_dict import model_from_dict

    for system, coord, atype, box in _systems(request):
        params = WATER if system == "water" else MOLECULE
        d, (manifest, a) = _deepmd_case(deepmd_ref, model_from_dict, one_side, 22, params,
                                        coord, atype, box, tmp_path / system)
        ref = deepmd_ref.pt_eval(d, coord[None], atype, None if box is None else box[None])
        case = f"{system}/one_side={one_side}"
        for stage, key in (("atom_energy", "atom_energy"), ("energy", "energy"),
                           ("force", "forces"), ("virial", "virial"),
                           ("atom_virial", "atom_virial")):
            _measure(case, stage, a[stage], ref[key][0])
            assert_allclose_scaled(a[stage], ref[key][0], 0, 1e-10, err_msg=f"{case}: {stage}")
        assert_allclose_scaled(a["atom_energy"].sum(), a["energy"], 0, 1e-14)
        assert_allclose_scaled(a["atom_virial"].sum(axis=0), a["virial"], 0, 1e-14)


def test_manifest_lists_every_stage_in_data_flow_order(tmp_path):
    """The manifest names each stage with its file, shape, dtype and a description with
    axis names, in data-flow order, plus provenance and the symref version; every file
    it names exists with that shape and dtype; no temporary folder is left behind, and a
    second dump replaces the first."""
    from symref._version import __version__

    m = _demo()
    coord, atype, _ = _molecule()
    box = np.diag([9.0, 9.5, 10.0])
    for _ in range(2):
        out = golden.dump(m, coord, atype, box, tmp_path / "g", model_file="m.yaml",
                          system="sys", frame=3)
    manifest, a = golden.load(out)
    names = [s["name"] for s in manifest["stages"]]
    expected = ["coord", "atype", "box", "nlist", "rij", "env_mat", "embedding_layer_0", "G",
                "T", "descriptor", "fitting_layer_0", "fitting_layer_1", "fitting_out",
                "atom_energy", "energy", "dE_dD", "dE_denv_mat", "dE_drij", "force", "virial",
                "atom_virial"]
    assert names == expected
    assert (manifest["symref_version"], manifest["model_file"], manifest["system"],
            manifest["frame"]) == (__version__, "m.yaml", "sys", 3)
    assert manifest["model"]["kind"] == "energy" and manifest["model"]["nnei"] == 60
    n, nnei, M1, M2 = len(atype), 60, 8, 3
    shapes = {"nlist": (n, nnei), "rij": (n, nnei, 3), "env_mat": (n, nnei, 4),
              "G": (n, nnei, M1), "T": (n, M1, 4), "descriptor": (n, M1 * M2), "energy": (),
              "dE_dD": (n, M1 * M2), "dE_drij": (n, nnei, 3), "atom_virial": (n, 3, 3)}
    for s in manifest["stages"]:
        arr = np.load(out / s["file"])
        assert list(arr.shape) == s["shape"] and str(arr.dtype) == s["dtype"]
        assert s["dtype"] == ("int64" if s["name"] in ("atype", "nlist") else "float64")
        assert "axes" in s["description"] or s["name"] == "energy", s["name"]
        if s["name"] in shapes:
            assert arr.shape == shapes[s["name"]], s["name"]
    ev = m.evaluate(coord, atype, box, backend="numpy")
    np.testing.assert_array_equal(a["force"], ev["forces"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_compare_names_the_perturbed_stage(tmp_path):
    """Equal dumps compare clean; a copy with one stage perturbed by 1e-8 relative is
    reported with that stage as the first divergent one (earlier stages ok); a deleted
    stage is reported as missing, a reshaped one as a shape mismatch, without raising."""
    m = _demo()
    coord, atype, _ = _molecule()
    a = golden.dump(m, coord, atype, None, tmp_path / "a")
    assert golden.compare(a, a).ok
    for stage in ("env_mat", "descriptor", "dE_drij"):
        b = tmp_path / f"b_{stage}"
        shutil.copytree(a, b)
        arr = np.load(b / f"{stage}.npy")
        arr.flat[5] *= 1 + 1e-8
        np.save(b / f"{stage}.npy", arr)
        res = golden.compare(a, b)
        assert res.first_divergent == stage and not res.ok, res.format()
        assert f"first stage beyond tolerance: {stage}" in res.format()
        assert golden.compare(a, b, rtol=1e-6).ok  # within a looser tolerance
    b = tmp_path / "porter"  # a port's folder: no manifest, one stage missing, one reshaped
    shutil.copytree(a, b)
    (b / "manifest.json").unlink()
    (b / "G.npy").unlink()
    np.save(b / "T.npy", np.load(b / "T.npy").reshape(len(atype), -1))
    res = golden.compare(a, b)
    status = {s.name: s.status for s in res.stages}
    assert status["G"] == "missing" and status["T"] == "shape" and status["rij"] == "ok"
    assert res.first_divergent == "T"
    assert "missing from b: G" in res.format()
    nl = np.load(a / "nlist.npy")  # integer stages must be equal
    nl[0, [0, 1]] = nl[0, [1, 0]]
    c = tmp_path / "swapped"
    shutil.copytree(a, c)
    np.save(c / "nlist.npy", nl)
    assert golden.compare(a, c).first_divergent == "nlist"


def test_compressed_model_dump(tmp_path):
    """A compressed model (tabulated embedding, symref.io.compress) dumps G from its
    tables with no hidden embedding layers, and its stages equal evaluate's outputs."""
    from symref.io.compress import compress_model

    coord, atype, _ = _molecule()
    m = compress_model(_demo(), min_nbor_dist=0.8)
    a = golden.load(golden.dump(m, coord, atype, None, tmp_path / "c"))[1]
    assert "G" in a and not any(k.startswith("embedding_layer_") for k in a)
    ev = m.evaluate(coord, atype, None, backend="numpy")
    np.testing.assert_array_equal(a["force"], ev["forces"][0])
    np.testing.assert_array_equal(a["energy"], ev["energy"][0])


def test_tensor_model_dump(tmp_path):
    """A dipole and a polarizability model: the head's stages (fitting_out, rot_mat,
    atomic and global tensor) in order; the atomic tensor equals evaluate's and is the
    head applied to fitting_out and rot_mat (μ_i = gr_iᵀ o_i, α_i = gr_iᵀ diag(p_i) gr_i
    + shift)."""
    coord, atype, _ = _molecule()
    for kind, name in (("dipole", "dipole"), ("polar", "polarizability")):
        m = _demo(kind, seed=4)
        manifest, a = golden.load(golden.dump(m, coord, atype, None, tmp_path / kind))
        names = [s["name"] for s in manifest["stages"]]
        assert names[-4:] == ["fitting_out", "rot_mat", f"atom_{name}", name]
        assert "box" not in names and manifest["model"]["kind"] == kind
        ev = m.evaluate(coord, atype, backend="numpy")  # the stages are the reference's
        np.testing.assert_array_equal(a[f"atom_{name}"], ev[f"atom_{name}"][0])
        assert_allclose_scaled(a[name], ev[name][0], 0, 1e-14)
        np.testing.assert_array_equal(a["rot_mat"], a["T"][:, :, 1:])
        gr, o = a["rot_mat"], a["fitting_out"]
        if kind == "dipole":
            assert_allclose_scaled(np.einsum("imd,im->id", gr, o), a["atom_dipole"], 0, 1e-13)
        else:
            anis = np.einsum("imd,im,ime->ide", gr, o, gr)
            shift = a["atom_polarizability"] - anis  # isotropic: c s I + bias
            assert_allclose_scaled(shift - shift[:, :1, :1] * np.eye(3), 0, 0, 1e-13,
                                   scale_of=a["atom_polarizability"])


@pytest.mark.deepmd
def test_tensor_stages_equal_deepmd(tmp_path):
    """The dipole model's rot_mat and descriptor equal deepmd-kit's NumPy descriptor, and
    its atomic dipoles deepmd-kit's model output, to 1e-12 / 1e-10 relative."""
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed")
    import copy

    import deepmd.dpmodel.model.model  # noqa: F401  (registers the model classes)
    import deepmd_ref
    from deepmd.dpmodel.model.base_model import BaseModel

    from symref.io.model_dict import model_to_dict

    m = _demo("dipole", seed=5)
    coord, atype, _ = _molecule()
    _, a = golden.load(golden.dump(m, coord, atype, None, tmp_path / "g"))
    d = model_to_dict(m)
    ref = deepmd_ref.dp_descriptor(d, coord[None], atype)
    np.testing.assert_array_equal(a["nlist"], ref["nlist"])
    for stage, theirs in (("descriptor", ref["descriptor"]), ("rot_mat", ref["rot_mat"])):
        _measure("molecule/dipole", stage, a[stage], theirs)
        assert_allclose_scaled(a[stage], theirs, 0, 1e-12, err_msg=stage)
    out = BaseModel.deserialize(copy.deepcopy(d)).call(coord.reshape(1, -1), atype[None])
    theirs = np.asarray(out["dipole"]).reshape(a["atom_dipole"].shape)
    _measure("molecule/dipole", "atom_dipole", a["atom_dipole"], theirs)
    assert_allclose_scaled(a["atom_dipole"], theirs, 0, 1e-10)


def test_bad_inputs_are_refused_before_any_work(tmp_path):
    """Several frames, a non-model, a non-empty folder that is not a dump, a bad
    tolerance, a reference folder without manifest: ValueError/TypeError naming it, and
    nothing written."""
    m = _demo()
    coord, atype, _ = _molecule()
    with pytest.raises(ValueError, match="2 frames"):
        golden.dump(m, np.stack([coord, coord]), atype, None, tmp_path / "g")
    with pytest.raises(TypeError, match="DeepPot or DeepTensor"):
        golden.dump(object(), coord, atype, None, tmp_path / "g")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="busy.*not a golden dump"):
        golden.dump(m, coord, atype, None, busy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    with pytest.raises(ValueError, match="manifest.json: missing"):
        golden.compare(busy, busy)
    a = golden.dump(m, coord, atype, None, tmp_path / "a")
    with pytest.raises(ValueError, match="rtol"):
        golden.compare(a, a, rtol=-1)
    bad = tmp_path / "bad"
    shutil.copytree(a, bad)
    (bad / "manifest.json").write_text(json.dumps({"format": "symref-golden"}))
    with pytest.raises(ValueError, match="'stages'"):
        golden.compare(bad, a)


def test_cli_dump_and_compare(tmp_path, capsys):
    """``symref golden MODEL --system DIR --frame K -o OUT`` writes the dump (molecule
    system, no box); ``--compare`` exits 0 on equal dumps and 1 naming the first divergent
    stage; a frame out of range exits 2 naming system and frame, writing nothing."""
    m = _demo()
    save_model(m, tmp_path / "m.yaml")
    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    coord = np.stack([mol.coord[0], mol.coord[0] + 0.01])
    save_system(System(["O", "H"], mol.atype, coord, None), tmp_path / "sys")
    out = tmp_path / "out"
    assert main(["golden", str(tmp_path / "m.yaml"), "--system", str(tmp_path / "sys"),
                 "--frame", "1", "-o", str(out)]) == 0
    manifest, a = golden.load(out)
    assert manifest["frame"] == 1 and "box" not in a
    np.testing.assert_allclose(a["coord"], coord[1])
    assert main(["golden", "--compare", str(out), str(out)]) == 0
    b = tmp_path / "b"
    shutil.copytree(out, b)
    np.save(b / "T.npy", np.load(b / "T.npy") * 1.001)
    capsys.readouterr()
    assert main(["golden", "--compare", str(out), str(b)]) == 1
    assert "first stage beyond tolerance: T" in capsys.readouterr().out
    assert main(["golden", "--compare", str(out), str(b), "--rtol", "1e-2"]) == 0
    assert main(["golden", str(tmp_path / "m.yaml"), "--system", str(tmp_path / "sys"),
                 "--frame", "2", "-o", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "--frame 2" in err and "sys" in err and "2 frames" in err
    assert not (tmp_path / "never").exists()


def test_zz_report_measured_differences():
    """Print the largest differences measured against deepmd-kit (pytest -s shows them)."""
    for (case, stage), (err, rel) in sorted(MEASURED.items()):
        print(f"golden vs deepmd-kit {case:28s} {stage:12s} abs {err:.2e} rel {rel:.2e}")
