"""The hybrid descriptor (symref.reference.descriptor.hybrid) and a DeepPot on it.

* Structure: a hybrid of one member is that member (same numbers); the members read
  the first sel_m[t] slots of each type block of the hybrid's list.
* The model: forces, virial, symmetry and the loss gradient of every parameter group
  through symref.checks (helpers shared with tests/test_se_e2_r.py).
* deepmd-kit itself (marked ``deepmd``): hybrids of se_e2_a and se_r with different
  rcut/sel and their own exclusions, built by deepmd-kit with non-trivial statistics;
  energies vs its NumPy backend, forces and (atomic) virials vs its PyTorch backend,
  1e-10 relative; symref's files read by deepmd-kit; statistics per member.
* ``symref train`` on a hybrid input, and the errors for bad input.
"""
import copy

import numpy as np
import pytest
from test_se_e2_r import (_compare, _through_file, check_loss_gradient, check_model,
                          compare_symref_files, compare_water, crystal_frames, rel_err, stats_system, train_with)

import symref
from symref.io.data import System, load_system, make_crystal
from symref.io.model_file import load_model, model_from_dict, save_model
from symref.model.build import demo_model
from symref.reference.descriptor.hybrid import Hybrid, member_slots
from symref.train import stats

A = {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [50, 60], "neuron": [4, 8, 16],
     "axis_neuron": 4, "resnet_dt": True, "type_one_side": False, "exclude_types": [[0, 0]]}
R = {"type": "se_e2_r", "rcut": 3.0, "rcut_smth": 0.8, "sel": [20, 30], "neuron": [4, 8],
     "resnet_dt": True}
CFG = {"type_map": ["A", "B"], "descriptor": {"type": "hybrid", "list": [A, R]},
       "fitting_net": {"neuron": [12, 12], "resnet_dt": True}}


@pytest.fixture(scope="module")
def model():
    return demo_model(CFG, seed=3)


def test_layout(model):
    """sel is the largest per type, rcut the largest; member m reads the first sel_m[t]
    slots of every type block; dim_out and the nets are the members' in order."""
    h = model.descriptor
    assert h.sel == [50, 60] and h.rcut == 4.0 and h.nnei == 110
    slots = member_slots(h)
    np.testing.assert_array_equal(slots[0], np.arange(110))
    np.testing.assert_array_equal(slots[1], np.r_[0:20, 50:80])
    assert h.dim_out == 16 * 4 + 8
    assert len(h.embeddings) == 4 + 2


def test_one_member_is_that_member(model):
    """A hybrid of the se_e2_r member alone gives that member's model's numbers exactly
    (same nets and statistics, same fitting input)."""
    coord, atype, box = crystal_frames(1)
    single = demo_model({**CFG, "descriptor": R}, seed=4)
    wrapped = copy.deepcopy(single)
    wrapped.descriptor = Hybrid([single.descriptor])
    a = single.evaluate(coord, atype, box, backend="numpy")
    b = wrapped.evaluate(coord, atype, box, backend="numpy")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_checks_forces_virial_symmetry(model):
    """symref.checks: forces and virial FD (order 2, Richardson <= 1e-6) and symmetry
    (<= 1e-12) on the skewed crystal and a molecule."""
    check_model(model)


def test_loss_gradient_every_parameter_group(model):
    """The loss gradient of every array of every member and of the fitting against
    check_gradient_fd; the flat layout names both members' nets."""
    names = check_loss_gradient(model)
    assert "embedding[5].layer[1].idt" in names  # the se_e2_r member's second net


def test_file_roundtrip_and_statistics(tmp_path, model):
    """.dp/.yaml round trip; env_stat returns one (davg, dstd) per member, equal to the
    member's own, and apply_statistics writes them back member by member."""
    coord, atype, box = crystal_frames(2)
    ref = model.evaluate(coord, atype, box, backend="numpy")
    for suffix in (".dp", ".yaml"):
        save_model(model, tmp_path / f"m{suffix}")
        out = load_model(tmp_path / f"m{suffix}").evaluate(coord, atype, box, backend="numpy")
        for k in ref:
            np.testing.assert_array_equal(out[k], ref[k])
    sys_ = System(type_map=None, coord=coord, atype=atype, box=box)
    davg, dstd = stats.env_stat(model, [sys_])
    assert [d.shape for d in davg] == [(2, 110, 4), (2, 50, 1)]
    for k, member in enumerate(model.descriptor.members):
        m_davg, m_dstd = stats.env_stat(member, [sys_])
        np.testing.assert_array_equal(davg[k], m_davg)
        np.testing.assert_array_equal(dstd[k], m_dstd)
    m = copy.deepcopy(model)
    stats.apply_statistics(m, davg, dstd)
    np.testing.assert_array_equal(m.descriptor.members[1].dstd, dstd[1])
    with pytest.raises(ValueError, match=r"descriptor.list\[1\].davg has shape"):
        stats.apply_statistics(m, [davg[0], davg[0]])


def test_train_command(tmp_path, monkeypatch, capsys):
    """`symref train` with a hybrid descriptor section (its error tables on the numba path,
    no fallback warning): statistics per member, Adam steps,
    the model written and read back as a hybrid."""
    trained = train_with(tmp_path, monkeypatch, capsys, {"type": "hybrid", "list": [
        dict(A, rcut=3.5, sel=[40, 40]), dict(R, sel=[20, 20])]})
    assert isinstance(trained.descriptor, Hybrid)
    assert all((m.dstd != 1).any() for m in trained.descriptor.members)


@pytest.mark.parametrize("where,value,msg", [
    ("dstd", 0.0, r"model.descriptor.list\[1\].dstd\[1, 2, 0\] is 0.0: every dstd entry"),
    ("davg", np.nan, r"model.descriptor.list\[1\].davg\[1, 2, 0\] is nan \(not finite\)")])
def test_a_hybrid_file_that_would_give_nan_is_refused(tmp_path, model, where, value, msg):
    """A zero/NaN dstd or a non-finite davg in one member of a hybrid model file is refused
    naming the member, the array and the entry (as for a single descriptor)."""
    m = copy.deepcopy(model)
    getattr(m.descriptor.members[1], where)[1, 2, 0] = value
    save_model(m, tmp_path / "m.yaml")
    with pytest.raises(ValueError, match=rf"m.yaml: {msg}"):
        load_model(tmp_path / "m.yaml")


def test_train_command_resolves_sel_auto_member_by_member(tmp_path, monkeypatch, capsys):
    """sel "auto" in a hybrid's members: each member gets deepmd-kit's rule applied to the
    training data's neighbour counts at its own rcut (checked against neighbor_stat
    and auto_sel called directly on the system written for the run)."""
    from symref.io.data import load_system
    from symref.io.neighbor_stat import auto_sel, neighbor_stat

    trained = train_with(tmp_path, monkeypatch, capsys, {"type": "hybrid", "list": [
        dict(A, rcut=3.5, sel="auto"), dict(R, sel="auto:1.2")]})
    system = load_system(tmp_path / "sys")
    want = [auto_sel(neighbor_stat([system], rc, 2)[1], sel)
            for rc, sel in ((3.5, "auto"), (3.0, "auto:1.2"))]
    assert [m.sel for m in trained.descriptor.members] == want
    assert want[0] != want[1]


@pytest.mark.parametrize("change,words", [
    ({"list": []}, r"descriptor.list must be a non-empty list"),
    ({"list": [A, dict(R, precision="float32")]},
     r"descriptor.list\[1\].precision 'float32' differs from descriptor.list\[0\].precision"),
    ({"list": [A, dict(R, type_map=["B", "A"])]},
     r"descriptor.list\[1\].type_map \['B', 'A'\] differs from the model's"),
    ({"list": [A, dict(R, rcut_smth=3.0)]}, r"descriptor.list\[1\]: need 0 <= rcut_smth < rcut"),
    ({"list": [A, {"type": "hybrid", "list": [R]}]}, "a hybrid cannot contain a hybrid"),
    ({"list": [A, dict(R, type="dpa1")]}, r"descriptor.list\[1\].type: descriptor type 'dpa1'"),
])
def test_bad_config(change, words):
    """build_model names the offending member and key."""
    cfg = copy.deepcopy(CFG)
    cfg["descriptor"].update(change)
    with pytest.raises(ValueError, match=words):
        symref.build_model(cfg)


def test_bad_model_dict(model):
    """Model files: members disagreeing on precision, a nested hybrid, compressing a
    compressed hybrid."""
    from symref.io.compress import compress_model
    from symref.io.model_dict import model_to_dict

    d = model_to_dict(model)
    bad = copy.deepcopy(d)
    bad["descriptor"]["list"][1]["precision"] = "float32"
    with pytest.raises(ValueError, match=r"model.descriptor: descriptor.list\[1\].precision"):
        model_from_dict(bad)
    bad = copy.deepcopy(d)
    bad["descriptor"]["list"][1] = copy.deepcopy(d["descriptor"])
    with pytest.raises(ValueError, match="a hybrid inside a hybrid"):
        model_from_dict(bad)
    with pytest.raises(ValueError, match=r"already compressed \(descriptor.list\[0\] has"):
        compress_model(compress_model(model, 0.8), 0.8)  # members: tests/test_compress_family


# ------------------------------------------------------------------ deepmd-kit itself
def make_deepmd_hybrid(seed, members, fitting_neuron, type_map, pair_exclude_types=(),
                       stats="slot"):
    """A hybrid + ener model built by deepmd-kit, every member with non-trivial statistics
    (``deepmd_ref.make_deepmd_descriptor_model``); returns ``model.serialize()``."""
    import deepmd_ref

    return deepmd_ref.make_deepmd_descriptor_model(
        seed, {"type": "hybrid", "list": [dict(m) for m in members]}, fitting_neuron, type_map,
        pair_exclude_types=pair_exclude_types, stats=stats)


DP_A = {"type": "se_e2_a", "sel": [60, 70], "rcut": 5.0, "rcut_smth": 1.0, "neuron": [4, 8],
        "axis_neuron": 4, "type_one_side": False, "exclude_types": [[0, 0]]}
DP_R = {"type": "se_r", "sel": [30, 40], "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8],
        "exclude_types": [[0, 1]]}


@pytest.mark.deepmd
def test_deepmd_small_skewed_cell(tmp_path, dp, pt):
    """se_e2_a (rcut 5, type_one_side false) + se_r (rcut 3.5), each with its own
    exclude_types, model pair_exclude_types, triclinic cell of side ~4.2 Å; .dp file
    written by deepmd-kit."""
    d = make_deepmd_hybrid(13, [DP_A, DP_R], [16, 16], ["A", "B"], pair_exclude_types=[(1, 1)],
                           stats="type")  # an atom's own images at ±a tie in distance
    s = make_crystal(seed=5)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * np.random.default_rng(0).normal(
        size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0).reshape(2, 9)
    ours = _through_file(tmp_path, d, ".dp").evaluate(coord, s.atype, box, backend="numpy")
    _compare("hybrid/skewed", dp, d, ours, coord, s.atype, box)


@pytest.mark.deepmd
@pytest.mark.data
def test_deepmd_molecules_and_water(tmp_path, dp, pt, shared_data):
    """C/H/O molecules (.yaml) and 64 H2O (.dp), hybrids written by deepmd-kit; the
    molecule members' small sel (4 and 6 per type) truncate."""
    mol = [dict(DP_A, sel=[6, 6, 6], exclude_types=[[1, 1]]), dict(DP_R, sel=[4, 4, 4])]
    d = make_deepmd_hybrid(12, mol, [16, 16], ["C", "H", "O"])
    model = _through_file(tmp_path, d, ".yaml")
    for name in ("C1H4O2", "C3H3O4"):
        s = load_system(shared_data / "molecules" / name)
        ours = model.evaluate(s.coord[:2], s.atype, backend="numpy")
        _compare(f"hybrid/{name}", dp, d, ours, s.coord[:2], s.atype, None)
    water = [dict(DP_A, sel=[46, 92], rcut=6.0, exclude_types=[]),
             dict(DP_R, sel=[20, 40], rcut=4.0, exclude_types=[])]
    d = make_deepmd_hybrid(14, water, [16, 16], ["O", "H"])
    compare_water("hybrid/water", tmp_path, dp, d, shared_data, 1)


@pytest.mark.deepmd
def test_deepmd_reads_symref_files(tmp_path, dp, pt, model):
    """A hybrid built and written by symref (.dp, .yaml) is evaluated by deepmd-kit to the
    same numbers."""
    compare_symref_files("hybrid/symref", dp, model, tmp_path)


@pytest.mark.deepmd
@pytest.mark.parametrize("backend", ["numpy", "pt"])
def test_deepmd_statistics(dp, backend, request):
    """Every member's davg/dstd from deepmd-kit's compute_or_load_stat on a hybrid equal
    symref's env_stat (skewed cell with images; member exclusions)."""
    if backend == "pt":
        request.getfixturevalue("pt")
    from test_stats import dp_reference

    sys_ = stats_system()
    d = make_deepmd_hybrid(21, [DP_A, DP_R], [8], ["A", "B"])
    ref = model_from_dict(dp_reference(dp, d, [sys_], backend)).descriptor.members
    davg, dstd = stats.env_stat(model_from_dict(d), [sys_])
    for k in range(2):
        assert rel_err(davg[k], ref[k].davg) <= 1e-10
        assert rel_err(dstd[k], ref[k].dstd) <= 1e-10
        assert np.abs(davg[k]).max() > 1e-3
