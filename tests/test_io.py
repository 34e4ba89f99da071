"""Model files: symref <-> deepmd-kit 3.x serialized dicts, .dp (HDF5), .yaml, .json."""
from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest

from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.fitting import EnergyFitting
from symref.io.model_file import (load_model, model_def_script, model_from_dict, model_to_dict,
                       read_model_file, save_model, write_model_file)
from symref.model.deeppot import DeepPot
from symref.io.data import make_molecule
from symref.reference.nn import init_mlp

# deepmd-kit's PyTorch backend uses torch.jit.script, deprecated in recent torch
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")

FORMATS = [".dp", ".yaml", ".yml", ".json"]

DEEPMD_FORMATS = [".dp", ".yaml"]  # the ones deepmd-kit itself reads and writes


# ------------------------------------------------------------------ helpers
def symref_model(type_one_side=True, precision="float64", seed=0, exclude=()) -> DeepPot:
    """A small random symref model with non-trivial statistics (no deepmd-kit needed)."""
    rng = np.random.default_rng(seed)
    dt = np.float64 if precision == "float64" else np.float32
    type_map = ["O", "H"]
    sel, neuron, axis, fneuron = [5, 7], [3, 6], 2, [5, 5]
    nt, nnei = len(sel), sum(sel)
    nemb = nt if type_one_side else nt * nt
    emb = [init_mlp(rng, 1, neuron, resnet_dt=True, dtype=dt) for _ in range(nemb)]
    davg = np.zeros((nt, nnei, 4))
    davg[..., 0] = rng.normal(scale=0.1, size=(nt, nnei))
    dstd = rng.uniform(0.5, 2.0, size=(nt, nnei, 4))
    desc = SeE2A(rcut=4.0, rcut_smth=0.7, sel=sel, neuron=neuron, axis_neuron=axis,
                 embeddings=emb, davg=davg.astype(dt), dstd=dstd.astype(dt), resnet_dt=True,
                 type_one_side=type_one_side, exclude_types=[tuple(p) for p in exclude],
                 precision=precision)
    nets = [init_mlp(rng, desc.dim_out, fneuron, resnet_dt=True, out_dim=1, dtype=dt)
            for _ in range(nt)]
    fit = EnergyFitting(neuron=fneuron, nets=nets, bias_atom_e=rng.normal(size=nt),
                        resnet_dt=True, precision=precision)
    return DeepPot(type_map=type_map, descriptor=desc, fitting=fit,
                   out_bias=rng.normal(size=nt), out_std=rng.uniform(0.5, 1.5, size=nt))


def model_arrays(m: DeepPot) -> dict:
    """Every array of a symref model, by a readable name."""
    out = {"davg": m.descriptor.davg, "dstd": m.descriptor.dstd,
           "bias_atom_e": m.fitting.bias_atom_e, "out_bias": m.out_bias, "out_std": m.out_std}
    for kind, nets in (("emb", m.descriptor.embeddings), ("fit", m.fitting.nets)):
        for i, net in enumerate(nets):
            for j, ly in enumerate(net):
                for name in ("w", "b", "idt"):
                    out[f"{kind}{i}.{j}.{name}"] = getattr(ly, name)
    return out


def assert_models_identical(a: DeepPot, b: DeepPot) -> None:
    aa, bb = model_arrays(a), model_arrays(b)
    assert aa.keys() == bb.keys()
    for k in aa:
        x, y = aa[k], bb[k]
        if x is None or y is None:
            assert x is None and y is None, k
            continue
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype, (k, x.dtype, y.dtype)
        assert x.shape == y.shape, (k, x.shape, y.shape)
        assert x.tobytes() == y.tobytes(), f"{k} differs"
    assert_dicts_equal(model_to_dict(a), model_to_dict(b))


def assert_dicts_equal(a, b, path="") -> None:
    """Exact equality of nested dicts/lists with numpy arrays (dtype, shape and bits)."""
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert set(a) == set(b), f"{path}: keys differ: {set(a) ^ set(b)}"
        for k in a:
            assert_dicts_equal(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_dicts_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{path}: {type(b)}"
        assert a.dtype == b.dtype and a.shape == b.shape, \
            f"{path}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{path}: values differ"
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


def deepmd_dict(**kw) -> dict:
    pytest.importorskip("deepmd")
    import deepmd_ref

    args = dict(type_one_side=True, seed=7, sel=[6, 9], neuron=[4, 8], axis_neuron=4,
                fitting_neuron=[8, 8], rcut=3.5, rcut_smth=0.5)
    args.update(kw)
    return deepmd_ref.make_deepmd_model_dict(**args)


# ------------------------------------------------------------------ symref round trips
@pytest.mark.parametrize("type_one_side", [True, False])
def test_dict_round_trip(type_one_side):
    m = symref_model(type_one_side, exclude=[(0, 1)])
    d = model_to_dict(m)
    assert d["@class"] == "Model" and d["type"] == "standard"
    assert d["descriptor"]["type"] == "se_e2_a"
    assert d["@variables"]["out_bias"].shape == (1, 2, 1)
    assert d["fitting"]["@variables"]["bias_atom_e"].shape == (2, 1)
    assert d["descriptor"]["embeddings"]["ndim"] == (1 if type_one_side else 2)
    assert d["fitting"]["nets"]["networks"][0]["layers"][-1]["activation_function"] == "none"
    assert_models_identical(m, model_from_dict(d))
    json.dumps(model_def_script(m))  # plain JSON


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("type_one_side", [True, False])
@pytest.mark.parametrize("suffix", FORMATS)
def test_file_round_trip(tmp_path, suffix, type_one_side, precision):
    m = symref_model(type_one_side, precision, seed=3)
    path = tmp_path / f"model{suffix}"
    save_model(m, path)
    m2 = load_model(path)
    assert_models_identical(m, m2)
    assert np.asarray(m2.descriptor.davg).dtype == np.dtype(precision)
    # writes are atomic: nothing but the model file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    raw = read_model_file(path)
    assert raw["software"] == "symref" and raw["model"]["@version"] == 2


@pytest.mark.parametrize("suffix", FORMATS)
def test_file_round_trip_keeps_activations(tmp_path, suffix):
    """Non-tanh activations (a different one in descriptor and fitting) are written to and
    read from every format, per layer and per net, and the energy is unchanged."""
    from symref.model.build import demo_model

    cfg = {"type_map": ["A", "B"],
           "descriptor": {"type": "se_e2_a", "rcut": 3.5, "rcut_smth": 0.5, "sel": [6, 9],
                          "neuron": [4, 8], "axis_neuron": 4, "activation_function": "relu6"},
           "fitting_net": {"neuron": [8, 8], "activation_function": "gelu_tf"}}
    m = demo_model(cfg, seed=2)
    path = tmp_path / f"model{suffix}"
    save_model(m, path)
    m2 = load_model(path)
    assert_models_identical(m, m2)
    assert (m2.descriptor.activation_function, m2.fitting.activation_function) == \
        ("relu6", "gelu_tf")
    assert [ly.activation for ly in m2.descriptor.embeddings[1]] == ["relu6", "relu6"]
    assert [ly.activation for ly in m2.fitting.nets[1]] == ["gelu_tf", "gelu_tf", "linear"]
    s = make_molecule(natoms=5, ntypes=2, seed=0)
    e = [mm.evaluate(s.coord, s.atype, backend="numpy")["energy"] for mm in (m, m2)]
    assert np.array_equal(e[0], e[1])


@pytest.mark.parametrize("where,value,msg", [
    ("dstd", 0.0, r"model.descriptor.dstd\[1, 2, 3\] is 0.0: every dstd entry must be finite and > 0"),
    ("dstd", np.nan, r"model.descriptor.dstd\[1, 2, 3\] is nan"),
    ("davg", np.inf, r"model.descriptor.davg\[1, 2, 3\] is inf \(not finite\)"),
    ("w", np.nan, r"model.fitting\[0\].layer\[0\].w\[0, 0\] is nan"),
])
def test_a_model_file_that_would_give_nan_is_refused(tmp_path, where, value, msg):
    """NaN/zero dstd, non-finite davg or weights in a model file: load_model raises naming
    the file, the array and the entry (before: it loaded and gave NaN energies)."""
    m = symref_model(True, seed=3)
    if where == "w":
        m.fitting.nets[0][0].w[0, 0] = value
    else:
        getattr(m.descriptor, where)[1, 2, 3] = value
    save_model(m, tmp_path / "m.json")
    with pytest.raises(ValueError, match=rf"m.json: {msg}"):
        load_model(tmp_path / "m.json")


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "m.dp"
    m1, m2 = symref_model(seed=1), symref_model(seed=2)
    save_model(m1, path)
    save_model(m2, path)
    assert_models_identical(m2, load_model(path))
    # a failing save leaves the old file untouched and no temp file behind
    bad = symref_model(seed=3)
    bad.type_map = ["O"]  # inconsistent with the 2-type descriptor
    with pytest.raises(ValueError):
        save_model(bad, path)
    bad = symref_model(seed=3)
    bad.out_std = np.array([object(), object()], dtype=object)  # HDF5 cannot store it
    with pytest.raises(Exception):
        save_model(bad, path)
    assert_models_identical(m2, load_model(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dp"]


# ------------------------------------------------------------------ error cases
def test_missing_file(tmp_path):
    path = tmp_path / "nope.dp"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_model(path)


@pytest.mark.parametrize("name", ["model.txt", "model.pb", "model"])
def test_unknown_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("{}")
    with pytest.raises(ValueError, match="unknown model file suffix") as e:
        load_model(path)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError, match="unknown model file suffix") as e:
        save_model(symref_model(), path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("suffix", FORMATS)
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    save_model(symref_model(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_hdf5_without_json(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "empty.dp"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="json") as e:
        load_model(path)
    assert str(path) in str(e.value)


def _mutated(mutate):
    d = model_to_dict(symref_model())
    mutate(d)
    return d


UNSUPPORTED = {
    "model @version": (lambda d: d.__setitem__("@version", 99), "@version 99"),
    "descriptor @version": (lambda d: d["descriptor"].__setitem__("@version", 7), "@version 7"),
    "fitting @version": (lambda d: d["fitting"].__setitem__("@version", 5), "@version 5"),
    "layer @version": (lambda d: d["fitting"]["nets"]["networks"][0]["layers"][0]
                       .__setitem__("@version", 3), "@version 3"),
    "descriptor type": (lambda d: d["descriptor"].__setitem__("type", "se_e3_tebd"),
                        "se_e3_tebd.*implements hybrid, se_a, se_a_3be, se_at, se_e2_a, "
                        "se_e2_r, se_e3, se_r"),
    "dpa1": (lambda d: d["descriptor"].__setitem__("type", "dpa1"), "dpa1"),
    "fitting type": (lambda d: d["fitting"].__setitem__("type", "dos"), "dos"),
    "model type": (lambda d: d.__setitem__("type", "zbl"), "zbl"),
    "fparam": (lambda d: d["fitting"].__setitem__("numb_fparam", 2), "numb_fparam"),
    "aparam": (lambda d: d["fitting"].__setitem__("numb_aparam", 1), "numb_aparam"),
    "case embd": (lambda d: d["fitting"].__setitem__("dim_case_embd", 3), "dim_case_embd"),
    "spin": (lambda d: d["descriptor"].__setitem__("spin", {"use_spin": [True]}), "spin"),
    "activation": (lambda d: d["descriptor"].__setitem__("activation_function", "silut:x"),
                   "silut:x"),
    "layer activation": (lambda d: d["fitting"]["nets"]["networks"][1]["layers"][0]
                         .__setitem__("activation_function", "swish"), "swish"),
    "exp switch": (lambda d: d["descriptor"]["env_mat"].__setitem__("use_exp_switch", True),
                   "use_exp_switch"),
    "atom_ener": (lambda d: d["fitting"].__setitem__("atom_ener", [1.0, None]), "atom_ener"),
    "mixed_types": (lambda d: d["fitting"].__setitem__("mixed_types", True), "mixed_types"),
    "precision": (lambda d: d["descriptor"].__setitem__("precision", "bfloat16"), "bfloat16"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_feature_dict(case):
    mutate, words = UNSUPPORTED[case]
    with pytest.raises(ValueError, match=words.replace("@", "@")):
        model_from_dict(_mutated(mutate))


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
@pytest.mark.parametrize("case", ["model @version", "descriptor type", "fparam"])
def test_unsupported_feature_file(tmp_path, suffix, case):
    mutate, words = UNSUPPORTED[case]
    path = tmp_path / f"bad{suffix}"
    write_model_file(path, {"software": "test", "model": _mutated(mutate)})
    with pytest.raises(ValueError, match=words) as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_missing_io_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    monkeypatch.setitem(sys.modules, "yaml", None)
    for suffix, pkg in ((".dp", "h5py"), (".yaml", "pyyaml")):
        with pytest.raises(ImportError, match=rf"{pkg}.*symref\[io\]"):
            save_model(symref_model(), tmp_path / f"m{suffix}")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ deepmd-kit interop
@pytest.mark.deepmd
@pytest.mark.parametrize("type_one_side,excl", [(True, {}), (False, {}),
                                                (True, {"exclude_types": [(0, 1)],
                                                        "atom_exclude_types": [1],
                                                        "pair_exclude_types": [(0, 0)]}),
                                                (False, {"exclude_types": [(1, 1)]})])
def test_deepmd_dict_round_trip(type_one_side, excl):
    """deepmd-kit's serialize() -> symref -> dict reproduces the dict exactly."""
    pytest.importorskip("deepmd")
    d = deepmd_dict(type_one_side=type_one_side, **excl)
    m = model_from_dict(d)
    assert_dicts_equal(d, model_to_dict(m))
    # and deepmd-kit accepts symref's dict
    from deepmd.dpmodel.model.base_model import BaseModel
    import deepmd.dpmodel.model.model  # noqa: F401

    assert_dicts_equal(d, BaseModel.deserialize(model_to_dict(m)).serialize())


@pytest.mark.deepmd
def test_deepmd_float32_model_round_trip():
    pytest.importorskip("deepmd")
    d = deepmd_dict(precision="float32", seed=11)
    assert d["descriptor"]["@variables"]["davg"].dtype == np.float32
    assert_dicts_equal(d, model_to_dict(model_from_dict(d)))


@pytest.mark.deepmd
@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize("suffix", DEEPMD_FORMATS)
def test_load_deepmd_written_file(tmp_path, suffix, wrapped):
    """Files written by deepmd-kit's save_dp_model (wrapper as dp convert-backend, or bare)."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.utils.serialization import save_dp_model

    d = deepmd_dict(type_one_side=False, seed=13)
    data = {"backend": "DP", "model": d, "model_def_script": {}, "@variables":
            {"min_nbor_dist": 0.8}} if wrapped else d
    path = tmp_path / f"deepmd{suffix}"
    save_dp_model(str(path), data)
    m = load_model(path)
    assert_dicts_equal(d, model_to_dict(m))


@pytest.mark.deepmd
@pytest.mark.parametrize("suffix", DEEPMD_FORMATS)
def test_deepmd_reads_symref_file(tmp_path, suffix):
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.utils.serialization import load_dp_model
    from deepmd.dpmodel.model.model import get_model

    d = deepmd_dict(type_one_side=True, seed=17)
    path = tmp_path / f"symref{suffix}"
    save_model(model_from_dict(d), path)
    data = load_dp_model(str(path))
    assert_dicts_equal(d, data["model"])
    # model_def_script is a valid deepmd-kit model config of the same architecture
    rebuilt = get_model(copy.deepcopy(data["model_def_script"])).serialize()
    shapes = lambda t: {k: v.shape for k, v in _flat_arrays(t).items()}  # noqa: E731
    assert shapes(rebuilt) == shapes(d)


def _flat_arrays(t, path=""):
    out = {}
    if isinstance(t, dict):
        for k, v in t.items():
            out.update(_flat_arrays(v, f"{path}/{k}"))
    elif isinstance(t, list):
        for i, v in enumerate(t):
            out.update(_flat_arrays(v, f"{path}[{i}]"))
    elif isinstance(t, np.ndarray):
        out[path] = t
    return out


@pytest.mark.deepmd
@pytest.mark.data
@pytest.mark.parametrize("suffix", DEEPMD_FORMATS)
def test_deepmd_energies_from_symref_file(tmp_path, suffix, water_frame):
    """symref-written file -> deepmd-kit -> the same energies as the original model."""
    pytest.importorskip("deepmd")
    import deepmd_ref

    coord, atype, box, type_map = water_frame
    d = deepmd_dict(type_one_side=False, seed=19, sel=[46, 92], neuron=[4, 8],
                    axis_neuron=4, fitting_neuron=[8, 8], rcut=6.0, rcut_smth=0.5,
                    type_map=type_map)
    path = tmp_path / f"water{suffix}"
    save_model(model_from_dict(d), path)
    ref = deepmd_ref.dp_eval(d, coord, atype, box)
    got = deepmd_ref.dp_eval(path, coord, atype, box)
    np.testing.assert_allclose(got["atom_energy"], ref["atom_energy"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["energy"], ref["energy"], rtol=1e-14, atol=0)
    # deepmd-kit's inference front end loads the file too
    from deepmd.infer import DeepPot as DeepmdDeepPot

    e = DeepmdDeepPot(str(path)).eval(coord.reshape(1, -1), box, atype)[0]
    np.testing.assert_allclose(np.ravel(e), ref["energy"], rtol=1e-13)


@pytest.mark.deepmd
@pytest.mark.data
@pytest.mark.parametrize("type_one_side", [True, False])
def test_deepmd_harness_backends_agree(water_frame, type_one_side, pt):
    """tests/deepmd_ref.py: deepmd-kit's NumPy and PyTorch backends agree on water
    (needs torch: the ``pt`` fixture skips, saying why, without it)."""
    import deepmd_ref

    coord, atype, box, type_map = water_frame
    d = deepmd_dict(type_one_side=type_one_side, seed=23, sel=[46, 92], neuron=[4, 8],
                    axis_neuron=4, fitting_neuron=[8, 8], rcut=6.0, rcut_smth=0.5,
                    type_map=type_map)
    dp = deepmd_ref.dp_eval(d, coord, atype, box)
    pt = deepmd_ref.pt_eval(d, coord, atype, box)
    assert deepmd_ref.import_deepmd_pt.workaround in (True, False)
    nat = len(atype)
    assert dp["energy"].shape == (1,) and dp["atom_energy"].shape == (1, nat)
    assert pt["forces"].shape == (1, nat, 3) and pt["virial"].shape == (1, 3, 3)
    assert pt["atom_virial"].shape == (1, nat, 3, 3)
    np.testing.assert_allclose(pt["atom_energy"], dp["atom_energy"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(pt["energy"], dp["energy"], rtol=1e-12)
    np.testing.assert_allclose(pt["atom_energy"].sum(1), pt["energy"], rtol=1e-12)
    # physics sanity of the reference: Newton's third law, symmetric virial, sums
    assert np.abs(pt["forces"].sum(1)).max() < 1e-10
    np.testing.assert_allclose(pt["virial"], pt["virial"].transpose(0, 2, 1), atol=1e-10)
    np.testing.assert_allclose(pt["atom_virial"].sum(1), pt["virial"], atol=1e-10)
    # the neighbour list deepmd-kit built: typed blocks, ascending distance, -1 padding
    nl = deepmd_ref.dp_neighbor_list(d, coord, atype, box)
    nlist, xe, te = nl["nlist"][0], nl["extended_coord"][0], nl["extended_atype"][0]
    off = np.concatenate([[0], np.cumsum([46, 92])])
    for t in range(2):
        blk = nlist[:, off[t]:off[t + 1]]
        real = blk >= 0
        assert (te[blk[real]] == t).all()
        r = np.linalg.norm(xe[np.maximum(blk, 0)] - xe[:nat, None, :], axis=-1)
        # real slots first, then -1 padding; distances ascending among the real ones
        assert (real[:, :-1] >= real[:, 1:]).all()
        both = real[:, :-1] & real[:, 1:]
        assert (np.diff(r, axis=1)[both] >= 0).all()
        assert (r[real] <= 6.0).all()
