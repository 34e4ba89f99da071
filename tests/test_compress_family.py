"""Compressed se_e2_r, se_e3 and hybrid models (``dp compress``), against deepmd-kit.

deepmd-kit is the reference: its table builder (``DPTabulate``: the NumPy backend's
``enable_compression`` for se_r; for se_t the builder and the table layout of its
PyTorch descriptor, strides scaled by 10, since that backend's serializer drops the
tables and the NumPy se_t has no ``enable_compression``), its file reader/writer (the
NumPy backend's ``deserialize``/``serialize`` and ``save_dp_model``), its evaluation of
compressed se_r (NumPy backend) and, for se_t, its compiled C++ kernel
``deepmd::tabulate_fusion_se_t_cpu<double>`` of ``libdeepmd.so`` called through ctypes
on deepmd-kit's own environment matrix (the PyTorch op that wraps it is not loadable
with this torch version), with deepmd-kit's own fitting on top.
"""
from __future__ import annotations

import copy
import ctypes
import glob
import os
import warnings

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref import checks
from symref.cli import main
from symref.io import golden
from symref.io.compress import compress_file, compress_model, table_errors
from symref.io.data import make_molecule
from symref.io.model_dict import model_from_dict, model_to_dict
from symref.io.model_file import load_model, read_model_file, save_model

pytest.importorskip("deepmd")
import deepmd_ref  # noqa: E402

RMIN = 0.9
SE_R = {"type": "se_r", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5, "neuron": [4, 8, 16],
        "exclude_types": [[0, 1]]}
SE_T = {"type": "se_e3", "sel": [20, 40], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8],
        "resnet_dt": False}
HYBRID = {"type": "hybrid", "list": [
    {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5, "neuron": [4, 8],
     "axis_neuron": 4},
    dict(SE_T), {"type": "se_r", "sel": [30, 60], "rcut": 5.0, "rcut_smth": 0.5,
                 "neuron": [4, 8]}]}
SECTIONS = {"se_e2_r": SE_R, "se_e3": SE_T, "hybrid": HYBRID}
MEASURED = {}


def _model_dict(kind, seed=41):
    return deepmd_ref.make_deepmd_descriptor_model(seed, copy.deepcopy(SECTIONS[kind]), [16, 16],
                                                   ["O", "H"], stats="type")


# ------------------------------------------------------------------ deepmd-kit's tables
def _dp_compress_descriptor(desc_obj, rmin, stride, extrapolate):
    """Serialized deepmd-kit descriptor with deepmd-kit's own tables."""
    from deepmd.utils.tabulate_math import DPTabulate

    ser = desc_obj.serialize()
    if ser["type"] in ("se_e2_a", "se_r"):  # the NumPy backend's own enable_compression
        desc_obj.enable_compression(rmin, extrapolate, stride, 10 * stride, -1)
        return desc_obj.serialize()
    assert ser["type"] == "se_e3"
    # deepmd/pt/model/descriptor/se_t.py: strides x 10, tables at index ti + tj * ntypes
    s0, s1 = 10 * stride, 100 * stride
    tab = DPTabulate(desc_obj, ser["neuron"], False, ser["exclude_types"],
                     ser["activation_function"])
    lower, upper = tab.build(rmin, extrapolate, s0, s1)
    nt = desc_obj.get_ntypes()
    data, info = [], []
    for idx in range(nt * nt):
        ti, tj = idx % nt, idx // nt
        net = f"filter_{ti}_net_{tj}"
        if ti <= tj:
            data.append(np.asarray(tab.data[net]))
            info.append(np.asarray([lower[net], upper[net], upper[net] * extrapolate, s0, s1,
                                    -1], dtype=np.float64))
        else:
            data.append(np.zeros(0))
            info.append(np.zeros(0))
    ser.update({"@version": 3, "compress": {"@variables": {"compress_data": data,
                                                             "compress_info": info}}})
    return type(desc_obj).deserialize(copy.deepcopy(ser)).serialize()  # as deepmd-kit reads it


def dp_compressed(d, rmin=RMIN, stride=0.01, extrapolate=5.0):
    """The model dict ``d`` compressed by deepmd-kit (``dp compress -s stride -e extrapolate``)."""
    m = deepmd_ref._dp_model(d)
    desc = m.atomic_model.descriptor
    out = copy.deepcopy(d)
    if hasattr(desc, "descrpt_list"):
        out["descriptor"]["list"] = [_dp_compress_descriptor(x, rmin, stride, extrapolate)
                                     for x in desc.descrpt_list]
    else:
        out["descriptor"] = _dp_compress_descriptor(desc, rmin, stride, extrapolate)
    return out


def _members(dd):
    return dd["list"] if dd["type"] == "hybrid" else [dd]


def _assert_tables_equal(ours: dict, theirs: dict):
    """Same info, same coefficients (1e-12 relative to the largest), member by member."""
    for a, b in zip(_members(ours["descriptor"]), _members(theirs["descriptor"]), strict=True):
        assert a["@version"] == b["@version"] == 3
        va, vb = a["compress"]["@variables"], b["compress"]["@variables"]
        assert len(va["compress_data"]) == len(vb["compress_data"])
        for k, (da, db, ia, ib) in enumerate(zip(va["compress_data"], vb["compress_data"],
                                                 va["compress_info"], vb["compress_info"])):
            np.testing.assert_array_equal(np.asarray(ia).reshape(-1), np.asarray(ib).reshape(-1))
            da, db = np.asarray(da), np.asarray(db)
            assert da.shape == db.shape, (a["type"], k)
            err = float(np.max(np.abs(da - db), initial=0.0))
            MEASURED[(a["type"], f"table {k}")] = err / max(float(np.max(np.abs(db),
                                                                         initial=0.0)), 1.0)
            assert err <= 1e-12 * max(1.0, float(np.max(np.abs(db), initial=0.0))), (a["type"], k)


@pytest.mark.deepmd
@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
@pytest.mark.parametrize("stride, extrapolate", [(0.01, 5.0), (0.02, 4.0)])
def test_tables_equal_deepmd(kind, stride, extrapolate):
    """``compress_model`` builds deepmd-kit's tables: the same info (range, strides: se_e3's
    scaled by 10) exactly and the same coefficients to 1e-12, for se_e2_r (with
    exclude_types), se_e3 and a hybrid(se_e2_a, se_e3, se_e2_r)."""
    d = _model_dict(kind)
    ours = compress_model(model_from_dict(copy.deepcopy(d)), RMIN, stride=stride,
                          extrapolate=extrapolate)
    _assert_tables_equal(model_to_dict(ours), dp_compressed(d, RMIN, stride, extrapolate))


# ------------------------------------------------------------------ deepmd-kit's se_t kernel
def _se_t_kernel():
    libs = glob.glob(os.path.join(os.path.dirname(__import__("deepmd").__file__), "lib",
                                  "libdeepmd.so"))
    if not libs:
        pytest.skip("deepmd-kit's libdeepmd.so (its C++ kernels) is not installed")
    lib = ctypes.CDLL(libs[0])
    name = "_ZN6deepmd24tabulate_fusion_se_t_cpuIdEEvPT_PKS1_S4_S4_S4_iiii"
    if not hasattr(lib, name):
        pytest.skip("libdeepmd.so has no tabulate_fusion_se_t_cpu<double>")
    fn = getattr(lib, name)
    ptr = ctypes.POINTER(ctypes.c_double)

    def call(table, info, theta):
        """Σ_ab θ_ab G(θ_ab) per centre (nloc x M) by deepmd-kit's compiled kernel."""
        nloc, ni, nj = theta.shape
        m = np.asarray(table).shape[1] // 6
        out = np.zeros((nloc, m))
        args = [np.ascontiguousarray(x, dtype=np.float64) for x in (table, info, theta, theta)]
        fn(out.ctypes.data_as(ptr), *[x.ctypes.data_as(ptr) for x in args], nloc, ni, nj, m)
        return out
    return call


def _patch_se_t_compressed(monkeypatch):
    """deepmd-kit's NumPy se_t evaluating its stored tables the way its PyTorch descriptor
    does (deepmd/pt/model/descriptor/se_t.py ``forward``), the table look-up and the sum
    done by deepmd-kit's compiled kernel."""
    from deepmd.dpmodel.descriptor.se_t import DescrptSeT

    kernel = _se_t_kernel()
    plain = DescrptSeT.call

    def call(self, coord_ext, atype_ext, nlist, mapping=None, **kw):
        if not getattr(self, "compress", False):
            return plain(self, coord_ext, atype_ext, nlist, mapping, **kw)
        nf, nloc, nnei = nlist.shape
        rr, _, sw = self.env_mat.call(coord_ext, atype_ext, nlist, self.davg, self.dstd)
        rr = np.asarray(rr).reshape(nf * nloc, nnei, 4)
        mask = np.asarray(self.emask.build_type_exclude_mask(nlist, atype_ext)).reshape(
            nf * nloc, nnei)
        sec = np.cumsum([0] + list(self.sel))
        out = np.zeros((nf * nloc, self.neuron[-1]))
        for idx, (data, info) in enumerate(zip(self.compress_data, self.compress_info)):
            ti, tj = idx % self.ntypes, idx // self.ntypes
            if ti > tj:
                continue
            ri = rr[:, sec[ti]:sec[ti + 1], 1:] * mask[:, sec[ti]:sec[ti + 1], None]
            rj = rr[:, sec[tj]:sec[tj + 1], 1:] * mask[:, sec[tj]:sec[tj + 1], None]
            theta = np.einsum("ijm,ikm->ijk", ri, rj)
            out += kernel(np.asarray(data), np.asarray(info), theta) / (
                self.sel[ti] * self.sel[tj])
        return out.reshape(nf, nloc, -1), None, None, None, sw

    monkeypatch.setattr(DescrptSeT, "call", call)


def _systems(request):
    water = request.getfixturevalue("water_frame")
    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    return [("water", water[0][0], water[1], water[2][0].reshape(3, 3)),
            ("molecule", mol.coord[0], mol.atype, None)]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / max(
        float(np.max(np.abs(np.asarray(b)))), 1e-300)


@pytest.mark.deepmd
@pytest.mark.data
@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_read_deepmd_compressed_file(tmp_path, request, monkeypatch, kind, suffix):
    """A file holding deepmd-kit's compressed model (``save_dp_model``) is read with its
    tables bit for bit, and its energies and atomic energies equal deepmd-kit's evaluation
    of the same tables to 1e-10 relative (water frame, molecule), while differing from the
    uncompressed nets' by more than 1e-8 (coarse tables, step 0.05: the comparison sees
    the tables); se_e3's descriptor equals deepmd-kit's C++ table kernel on deepmd-kit's
    environment matrix to 1e-12."""
    from deepmd.dpmodel.utils.serialization import save_dp_model

    d = _model_dict(kind)
    dc = dp_compressed(d, stride=0.05)  # coarse tables: they differ from the nets visibly
    path = tmp_path / f"dc{suffix}"
    save_dp_model(str(path), {"model": copy.deepcopy(dc), "model_def_script": {}})
    m = load_model(path)
    _assert_tables_equal(model_to_dict(m), dc)
    if kind != "se_e2_r":
        _patch_se_t_compressed(monkeypatch)
    for system, coord, atype, box in _systems(request):
        ref = deepmd_ref.dp_eval(dc, coord[None], atype, None if box is None else box[None])
        ours = m.evaluate(coord[None], atype, None if box is None else box[None],
                          backend="numpy")
        for key in ("energy", "atom_energy"):
            MEASURED[(f"{kind}/{system}", key)] = _rel(ours[key], ref[key])
            assert_allclose_scaled(ours[key], ref[key], 0, 1e-10, err_msg=f"{system} {key}")
        plain = deepmd_ref.dp_eval(d, coord[None], atype, None if box is None else box[None])
        MEASURED[(f"{kind}/{system}", "vs net")] = _rel(ours["atom_energy"], plain["atom_energy"])
        assert _rel(ours["atom_energy"], plain["atom_energy"]) > 1e-8  # the tables are used
        if kind == "se_e3":
            nl = deepmd_ref.dp_neighbor_list(dc, coord[None], atype,
                                             None if box is None else box[None])
            theirs = np.asarray(deepmd_ref._dp_model(dc).atomic_model.descriptor.call(
                nl["extended_coord"].reshape(1, -1), nl["extended_atype"], nl["nlist"])[0])[0]
            _, a = golden.load(golden.dump(m, coord, atype, box, tmp_path / system))
            MEASURED[(f"{kind}/{system}", "descriptor")] = _rel(a["descriptor"], theirs)
            assert_allclose_scaled(a["descriptor"], theirs, 0, 1e-12)


@pytest.mark.deepmd
@pytest.mark.data
@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
def test_symref_compressed_file_loads_in_deepmd(tmp_path, request, monkeypatch, kind):
    """``symref compress`` writes files deepmd-kit reads (NumPy backend ``deserialize``,
    written back with the same tables) and evaluates to symref's energies (1e-10
    relative); the tables are deepmd-kit's builder's; min_nbor_dist is kept."""
    d = _model_dict(kind)
    src, out = tmp_path / "m.dp", tmp_path / "c.dp"
    save_model(model_from_dict(copy.deepcopy(d)), src)
    res = compress_file(src, out, min_nbor_dist=RMIN)
    assert res["source"] == "option" and len(res["parts"]) == (3 if kind == "hybrid" else 1)
    wrapper = read_model_file(out)
    assert float(np.asarray(wrapper["@variables"]["min_nbor_dist"])) == RMIN
    back = deepmd_ref._dp_model(wrapper["model"]).serialize()  # deepmd-kit reads and writes
    _assert_tables_equal(back, dp_compressed(d))
    if kind != "se_e2_r":
        _patch_se_t_compressed(monkeypatch)
    ours_model = load_model(out)
    for system, coord, atype, box in _systems(request)[:1]:
        ref = deepmd_ref.dp_eval(wrapper["model"], coord[None], atype, box[None])
        ours = ours_model.evaluate(coord[None], atype, box[None], backend="numpy")
        MEASURED[(f"{kind}/symref file", "energy")] = _rel(ours["energy"], ref["energy"])
        assert_allclose_scaled(ours["energy"], ref["energy"], 0, 1e-10)


@pytest.mark.parametrize("kind", ["se_e2_r", "se_e3", "hybrid"])
def test_compressed_forces_pass_fd_and_symmetry(kind):
    """Forces and virial of compressed models pass symref.checks' finite-difference
    (Richardson, order 2) and symmetry checks on a periodic molecule-in-a-box (random
    per-slot statistics: rows of other slots fall outside the range deepmd-kit takes from
    slot 0 and are extrapolated linearly, which the checks cover too), and the compressed
    energy differs from the uncompressed one (the tables are used)."""
    from symref.model.build import demo_model

    sec = copy.deepcopy(SECTIONS[kind])
    for m in _members(sec):
        m["type"] = {"se_r": "se_e2_r"}.get(m["type"], m["type"])
        m["sel"] = [12, 12] if m["type"] != "se_e3" else [8, 8]
        m["rcut"] = min(m["rcut"], 4.0)
        m.pop("exclude_types", None)
    model = demo_model({"type_map": ["O", "H"], "descriptor": sec,
                        "fitting_net": {"neuron": [8, 8]}}, seed=3)
    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    box = np.diag([9.0, 9.5, 10.0])
    cm = compress_model(model, 0.8)
    e0 = model.evaluate(mol.coord, mol.atype, box, backend="numpy")["energy"]
    e1 = cm.evaluate(mol.coord, mol.atype, box, backend="numpy")["energy"]
    assert e1[0] != e0[0]
    calc = checks.as_calculator(_Reference(cm), mol.atype)
    res = checks.run_all_checks(calc, mol.coord[0], box, atype=mol.atype,
                                rng=np.random.default_rng(0), natoms_sample=3)
    assert res and all(r.passed for r in res), checks.format_table(res)


class _Reference:
    """A model evaluated on the NumPy reference (warnings of the numba fallback avoided)."""

    def __init__(self, model):
        self.model = model

    def evaluate(self, coord, atype, box=None):
        return self.model.evaluate(coord, atype, box, backend="numpy")


def test_se_e3_table_error_and_check(tmp_path, capsys):
    """``symref check`` on a compressed se_e3 file states the table error; the table error
    of se_e3 (deepmd-kit's layout reproduced): ≤ 1e-8 in the fine segment except its first
    interval, which deepmd-kit fits with the coarse width (> 1e-4 there), and > 1 on the
    first coarse interval above it, fitted with the fine width but evaluated over the
    coarse one."""
    from symref.model.build import demo_model

    model = demo_model({"type_map": ["O", "H"], "descriptor": {
        "type": "se_e3", "sel": [8, 8], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8]},
        "fitting_net": {"neuron": [8, 8]}}, seed=3)
    src, out = tmp_path / "m.yaml", tmp_path / "c.yaml"
    save_model(model, src)
    assert main(["compress", str(src), "-o", str(out), "--min-nbor-dist", "0.8"]) == 0
    assert "3 embedding nets tabulated" in capsys.readouterr().out
    (where, name, errs), = table_errors(load_model(out).descriptor)
    assert (where, name, len(errs)) == ("descriptor", "se_e3", 3)
    main(["check", str(out), "--backend", "numpy", "--sample", "2"])
    text = capsys.readouterr().out
    assert "compressed: 3 tabulated embedding nets; max |G_table - G_net|" in text
    assert "(fine segment)" in text and "(coarse segments)" in text
    first = float(text.split("G_net| ")[1].split(" ")[0])
    assert first == pytest.approx(max(e.value_first for e in errs), rel=1e-2)
    # the misfitted intervals: the first of the fine segment, the first above it
    from symref.reference.nn import mlp_forward
    from symref.reference.tabulation_se_t import tabulated_se_t_forward

    d = load_model(out).descriptor
    data, info = d.tables.data[0], d.tables.info[0]
    lo, up, s0, s1 = info[0], info[1], info[3], info[4]

    def err(a, b):
        x = np.linspace(a, b, 201)[1:-1, None]
        return np.max(np.abs(tabulated_se_t_forward(x, data, info)[0]
                             - mlp_forward(x, d.embeddings[0])[0]))
    assert err(lo + s0, up) <= 1e-8  # the fine segment after its first interval
    assert err(lo, lo + s0) > 1e-4  # fitted with width s1
    assert err(up, up + s1) > 1.0  # fitted with width s0, evaluated over s1
    assert err(up + s1, up + 2 * s1) < 1e-3  # the next coarse interval is a normal one


def test_beyond_table_and_training_refused():
    """θ beyond a compressed se_e3 table warns naming the net; compressed se_e2_r and se_e3
    descriptors refuse the tangent pass (training)."""
    from symref.model.build import demo_model
    from symref.reference.descriptor.se_e2_r import se_e2_r_forward_dual
    from symref.reference.descriptor.se_e3 import se_e3_forward_dual

    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    for typ, dual in (("se_e2_r", se_e2_r_forward_dual), ("se_e3", se_e3_forward_dual)):
        model = demo_model({"type_map": ["O", "H"], "descriptor": {
            "type": typ, "sel": [8, 8], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8]},
            "fitting_net": {"neuron": [8, 8]}}, seed=3)
        cm = compress_model(model, 0.8)
        R = np.zeros((2, 16, 4))
        with pytest.raises(ValueError, match=f"compressed.*{typ}.*cannot be trained"):
            dual(R, R, np.zeros(2, int), np.ones((2, 16), bool), cm.descriptor)
    model.descriptor.dstd = model.descriptor.dstd * 0.25  # θ ~ 16 x larger
    cm = compress_model(model, 3.5, extrapolate=1.0)  # a table ending near θ = 1
    assert max(float(i[2]) for i in cm.descriptor.tables.info if np.size(i)) <= 2.0
    with pytest.warns(RuntimeWarning, match=r"se_e3 embedding net \d+: \|theta\|"):
        cm.evaluate(mol.coord, mol.atype, backend="numpy")


def test_golden_dump_of_compressed_family(tmp_path):
    """Compressed se_e2_r and se_e3 dump G (G_p_q) from their tables (the table at the
    dumped s / theta, not the net), no hidden layers, and the forces equal evaluate's."""
    from symref.model.build import demo_model
    from symref.reference.tabulation import tabulated_forward
    from symref.reference.tabulation_se_t import tabulated_se_t_forward

    mol = make_molecule(natoms=9, ntypes=2, seed=3)
    for typ in ("se_e2_r", "se_e3"):
        model = demo_model({"type_map": ["O", "H"], "descriptor": {
            "type": typ, "sel": [8, 8], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8]},
            "fitting_net": {"neuron": [8, 8]}}, seed=3)
        cm = compress_model(model, 0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _, a = golden.load(golden.dump(cm, mol.coord[0], mol.atype, None, tmp_path / typ))
        assert not any(k.startswith("embedding_layer") for k in a)
        ev = cm.evaluate(mol.coord, mol.atype, backend="numpy")
        np.testing.assert_array_equal(a["force"], ev["forces"][0])
        plain = golden.load(golden.dump(model, mol.coord[0], mol.atype, None,
                                        tmp_path / f"{typ}_plain"))[1]
        G = "G" if typ == "se_e2_r" else "G_0_1"
        assert np.max(np.abs(a[G] - plain[G])) > 0
        t = cm.descriptor.tables
        if typ == "se_e2_r":  # G is the table at s, type block by type block
            for tj, sl in ((0, slice(0, 8)), (1, slice(8, 16))):
                np.testing.assert_array_equal(a["G"][:, sl], tabulated_forward(
                    a["s"][:, sl, None], t.data[tj], t.info[tj])[0])
        else:  # G_0_1 is the table of net 0 + 1 * ntypes at theta_0_1
            np.testing.assert_array_equal(a["G_0_1"], tabulated_se_t_forward(
                a["theta_0_1"][..., None], t.data[2], t.info[2])[0])


def test_zz_report_measured_differences():
    """Print the largest differences measured against deepmd-kit (pytest -s shows them)."""
    for (case, what), rel in sorted(MEASURED.items()):
        print(f"compressed vs deepmd-kit {case:24s} {what:12s} rel {rel:.2e}")


def test_hybrid_check_and_show_name_each_compressed_member(tmp_path, capsys):
    """``symref check`` on a compressed hybrid states the table error of each member on its
    own line (se_e3's per segment), and ``symref show`` names the descriptor and says it is
    compressed."""
    from symref.model.build import demo_model

    model = demo_model({"type_map": ["O", "H"], "descriptor": {"type": "hybrid", "list": [
        {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [12, 12], "neuron": [4, 8],
         "axis_neuron": 3},
        {"type": "se_e3", "rcut": 3.0, "rcut_smth": 0.5, "sel": [6, 6], "neuron": [4, 8]}]},
        "fitting_net": {"neuron": [8, 8]}}, seed=1)
    src, out = tmp_path / "m.yaml", tmp_path / "c.yaml"
    save_model(model, src)
    assert main(["compress", str(src), "-o", str(out), "--min-nbor-dist", "0.8"]) == 0
    assert "5 embedding nets tabulated" in capsys.readouterr().out
    main(["check", str(out), "--backend", "numpy", "--sample", "2"])
    text = capsys.readouterr().out
    assert "compressed descriptor.list[0] (se_e2_a): 2 tabulated embedding nets" in text
    assert "compressed descriptor.list[1] (se_e3): 3 tabulated embedding nets" in text
    assert "== built-in molecule" in text and "16/16 passed" in text
    assert main(["show", str(out), "summary"]) == 0
    assert "descriptor hybrid, rcut 4.0 Å, sel [12, 12]" in capsys.readouterr().out
    assert main(["show", str(src), "summary"]) == 0
    assert "not compressed" in capsys.readouterr().out
