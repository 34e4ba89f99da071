"""Compressed model files and ``symref compress``, against deepmd-kit.

deepmd-kit's own code is the reference: its builder for the tables, ``NeighborStatOP``
for the minimum neighbour distance, ``save_dp_model``/``load_dp_model`` and its NumPy
backend for reading and evaluating the files symref writes.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from symref.cli import main
from symref.io.compress import compress_file, compress_model, min_neighbor_distance
from symref.io.model_file import load_model, read_model_file, save_model
from symref.io.model_dict import model_from_dict, model_to_dict

pytest.importorskip("deepmd")
import deepmd_ref  # noqa: E402
from test_tabulation import MIN_NBOR_DIST, _models  # noqa: E402


def _deepmd_compressed(d, min_nbor_dist, stride=0.01, extrapolate=5):
    from deepmd.dpmodel.model.base_model import BaseModel
    import deepmd.dpmodel.model.model  # noqa: F401

    m = BaseModel.deserialize(copy.deepcopy(d))
    m.min_nbor_dist = min_nbor_dist
    m.enable_compression(extrapolate, stride, 10 * stride, -1)
    return m.serialize()


def _assert_tables_equal(tables, dc):
    v = dc["descriptor"]["compress"]["@variables"]
    assert len(tables.data) == len(v["compress_data"])
    for a, b, ia, ib in zip(tables.data, v["compress_data"], tables.info, v["compress_info"]):
        assert a.shape == np.shape(b)
        np.testing.assert_array_equal(ia, ib)
        assert np.max(np.abs(a - b), initial=0.0) <= 1e-12 * max(1.0, np.max(np.abs(b)))


def test_min_neighbor_distance_equals_deepmd(water_frame):
    """The minimum neighbour distance is deepmd-kit's ``NeighborStatOP`` with
    ``dp compress``'s tiny cutoff (one shell of images) to 1e-12 Å, on the water frame
    and on a small periodic box where the nearest pair is between images."""
    from deepmd.dpmodel.utils.neighbor_stat import NeighborStatOP

    coord, atype, box, _ = water_frame
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 3.0, size=(2, 5, 3))
    small_box = np.tile(np.diag([3.0, 3.2, 3.4]).reshape(1, 9), (2, 1))
    small[:, 0] = [0.05, 1.5, 1.5]
    small[:, 1] = [2.98, 1.52, 1.5]  # nearest pair across the x face
    for c, t, b in ((coord, atype, box), (small, np.zeros(5, dtype=int), small_box)):
        nf = c.shape[0]
        op = NeighborStatOP(2, 1e-6, True)
        rr2, _ = op.call(c.reshape(nf, -1), np.tile(t, (nf, 1)), b.reshape(nf, 9))
        ref = float(np.sqrt(np.min(rr2)))
        got = min_neighbor_distance(c, b.reshape(nf, 3, 3))
        assert abs(got - ref) <= 1e-12
    assert min_neighbor_distance(small, small_box.reshape(2, 3, 3)) < 0.2


def test_min_neighbor_distance_in_blocks(monkeypatch, water_frame):
    """Done in blocks of a few centre atoms (how large frames keep memory bounded) the
    minimum neighbour distance is the same number, the self-distance masked in every
    block (an unmasked diagonal would give 0 and an error)."""
    import symref.io.compress as comp

    coord, atype, box, _ = water_frame
    whole = comp.min_neighbor_distance(coord, box.reshape(-1, 3, 3))
    monkeypatch.setattr(comp, "_PAIR_BLOCK", 3 * len(atype) + 1)  # 3 centres a block
    assert comp.min_neighbor_distance(coord, box.reshape(-1, 3, 3)) == whole


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_symref_compressed_file_loads_in_deepmd(tmp_path, water_frame, suffix):
    """``compress_file`` writes deepmd-kit's format: deepmd-kit loads it and its
    evaluation equals symref's (1e-10 relative); the tables are deepmd-kit's own
    builder's, and ``min_nbor_dist`` is kept in the file's ``@variables``."""
    coord, atype, box, _ = water_frame
    d, _ = _models(True)
    src, out = tmp_path / f"m{suffix}", tmp_path / f"c{suffix}"
    save_model(model_from_dict(copy.deepcopy(d)), src)
    res = compress_file(src, out, min_nbor_dist=MIN_NBOR_DIST)
    assert res["source"] == "option"
    _assert_tables_equal(res["tables"], _deepmd_compressed(d, MIN_NBOR_DIST))
    wrapper = read_model_file(out)
    assert float(np.asarray(wrapper["@variables"]["min_nbor_dist"])) == MIN_NBOR_DIST
    assert wrapper["model"]["descriptor"]["@version"] == 3
    ref = deepmd_ref.dp_eval(out, coord, atype, box)
    ours = load_model(out).evaluate(coord, atype, box, backend="numpy")
    assert abs(ours["energy"][0] - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])


@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_read_deepmd_compressed_file(tmp_path, water_frame, suffix):
    """A compressed model file written by deepmd-kit (``save_dp_model``) is read with its
    tables (bit for bit) and evaluates to deepmd-kit's energies (1e-10 relative); written
    back by symref, the dict is deepmd-kit's again (same tables, @version 3)."""
    from deepmd.dpmodel.utils.serialization import save_dp_model

    coord, atype, box, _ = water_frame
    _, dc = _models(False)
    path = tmp_path / f"dc{suffix}"
    save_dp_model(str(path), {"model": copy.deepcopy(dc), "model_def_script": {}})
    m = load_model(path)
    _assert_tables_equal(m.descriptor.tables, dc)
    ref = deepmd_ref.dp_eval(dc, coord, atype, box)
    out = m.evaluate(coord, atype, box, backend="numpy")
    assert abs(out["energy"][0] - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])
    back = model_to_dict(m)
    assert back["descriptor"]["@version"] == 3
    _assert_tables_equal(m.descriptor.tables, back)


def test_cli_compress_from_systems(tmp_path, shared_data, capsys):
    """``symref compress MODEL -o OUT -s SYSTEM`` takes r_min from the data as ``dp compress``
    does and builds deepmd-kit's tables for it; ``--step``/``--extrapolate`` are used."""
    from deepmd.dpmodel.utils.neighbor_stat import NeighborStatOP
    from symref.io.data import load_system

    system = shared_data / "water" / "data_0"
    s = load_system(system)
    rr2, _ = NeighborStatOP(2, 1e-6, True).call(
        s.coord.reshape(s.nframes, -1), np.tile(s.atype, (s.nframes, 1)),
        s.box.reshape(s.nframes, 9))
    rmin = float(np.sqrt(np.min(rr2)))
    d, _ = _models(True)
    src, out = tmp_path / "m.dp", tmp_path / "c.dp"
    save_model(model_from_dict(copy.deepcopy(d)), src)
    assert main(["compress", str(src), "-o", str(out), "-s", str(system), "--step", "0.02",
                 "--extrapolate", "4"]) == 0
    assert "from the systems" in capsys.readouterr().out
    wrapper = read_model_file(out)
    assert abs(float(np.asarray(wrapper["@variables"]["min_nbor_dist"])) - rmin) <= 1e-12
    _assert_tables_equal(load_model(out).descriptor.tables,
                         _deepmd_compressed(d, float(np.asarray(
                             wrapper["@variables"]["min_nbor_dist"])), 0.02, 4))


def test_cli_compress_errors(tmp_path, capsys):
    """Without a distance (none given, none in the file) and for an already compressed
    model, ``symref compress`` exits 2 naming the problem."""
    d, _ = _models(True)
    src, out = tmp_path / "m.dp", tmp_path / "c.dp"
    save_model(model_from_dict(copy.deepcopy(d)), src)
    assert main(["compress", str(src), "-o", str(out)]) == 2
    assert "min_nbor_dist" in capsys.readouterr().err
    assert main(["compress", str(src), "-o", str(out), "--min-nbor-dist", "0.9"]) == 0
    assert main(["compress", str(out), "-o", str(tmp_path / "cc.dp")]) == 2
    assert "already compressed" in capsys.readouterr().err


def test_compressed_unsupported_descriptor():
    """A compressed model of a descriptor symref does not implement is refused, naming
    both the compression and the descriptor type."""
    d = copy.deepcopy(_models(True)[1])
    d["descriptor"]["type"] = "dpa1"  # se_e2_r/se_e3/hybrid: tests/test_compress_family.py
    with pytest.raises(ValueError, match="compressed .*dpa1"):
        model_from_dict(d)


def test_malformed_compress_section():
    """A compress section whose tables do not fit the nets is refused with the shape."""
    d = copy.deepcopy(_models(True)[1])
    v = d["descriptor"]["compress"]["@variables"]
    v["compress_data"][0] = v["compress_data"][0][:, :-6]
    with pytest.raises(ValueError, match=r"compress_data\[0\] has shape"):
        model_from_dict(d)
    v["compress_data"] = v["compress_data"][:1]
    with pytest.raises(ValueError, match="1 tables for 2 embedding nets"):
        model_from_dict(d)


def test_neighbour_beyond_table_warns(water_frame):
    """Tables built for a minimum distance far above the data's (5 Å, no extrapolation
    range, dstd scaled to 0.25 so that s(0.96 Å) > 1 ≥ the table's end): the O-H
    neighbours lie beyond the table; evaluation warns, naming the net and the table's end."""
    coord, atype, box, _ = water_frame
    m = model_from_dict(copy.deepcopy(_models(True)[0]))
    m.descriptor.dstd = m.descriptor.dstd * 0.25
    m = compress_model(m, 5.0, extrapolate=1.0)
    assert max(i[2] for i in m.descriptor.tables.info) <= 1.0
    with pytest.warns(RuntimeWarning, match="compressed embedding net .* beyond the table"):
        m.evaluate(coord, atype, box, backend="numpy")


def test_cli_check_reports_table_error(tmp_path, capsys):
    """``symref check`` on a compressed model states the table error (max |G_table - G_net|
    per stride) it measured, and the checks pass on the compressed model (the built-in
    molecule; the built-in crystal is too dense for this model's sel, an unrelated error)."""
    d, _ = _models(True)
    src, out = tmp_path / "m.dp", tmp_path / "c.dp"
    save_model(model_from_dict(copy.deepcopy(d)), src)
    assert main(["compress", str(src), "-o", str(out), "--min-nbor-dist", "0.9"]) == 0
    main(["check", str(out), "--backend", "numpy", "--sample", "2"])
    cap = capsys.readouterr()
    text = cap.out
    assert "compressed: 2 tabulated embedding nets; max |G_table - G_net|" in text
    first = float(text.split("G_net| ")[1].split(" ")[0])
    assert first <= 1e-12
    slope_first = float(text.split("dG/ds table - net| ")[1].split(",")[0])
    assert slope_first <= 1e-8
    assert "== built-in molecule" in text and "16/16 passed" in text, text + cap.err


@pytest.mark.parametrize("where", ["descriptor", "layer"])
def test_compressing_an_activation_deepmd_cannot_tabulate_is_refused(where):
    """Tables are built for the activations deepmd-kit tabulates (a relu model compresses,
    tests/test_compress_activations.py); a descriptor (or one layer of an embedding net)
    with another activation, here ``silut``, is refused naming the activation and
    compression, never tabulated as something else."""
    from symref.model.build import demo_model

    cfg = {"type_map": ["A", "B"],
           "descriptor": {"type": "se_e2_a", "rcut": 3.5, "rcut_smth": 0.5, "sel": [6, 9],
                          "neuron": [4, 8], "axis_neuron": 4, "activation_function": "relu"},
           "fitting_net": {"neuron": [8, 8]}}
    model = demo_model(cfg, seed=2)
    assert compress_model(model, MIN_NBOR_DIST).descriptor.tables is not None
    if where == "layer":
        model.descriptor.embeddings[1][1].activation = "silut"
    else:
        model.descriptor.activation_function = "silut"
    with pytest.raises(ValueError, match="compression.*'silut' cannot be tabulated"):
        compress_model(model, MIN_NBOR_DIST)
