"""The three-body descriptor se_e3 (symref.reference.descriptor.se_e3) and a DeepPot on it.

* The reference: D written out pair by pair, backward and tangent against central
  differences, blocks of centres (any block size gives the same numbers), the memory
  check (a sel too large for the machine is refused before allocating, saying how much).
* The model: forces, virial, symmetry and the loss gradient of every parameter group
  through symref.checks (helpers shared with tests/test_se_e2_r.py).
* deepmd-kit itself (marked ``deepmd``): se_e3 models and a hybrid(se_e2_a, se_e3) built
  by deepmd-kit with non-trivial statistics, through its own files; energies vs its
  NumPy backend, forces and (atomic) virials vs its PyTorch backend, 1e-10 relative;
  symref's files read by deepmd-kit; the statistics.
* ``symref check`` on a model file of each new descriptor (se_e2_r, se_e3, hybrid), and
  LAMMPS (periodic mode) driving an se_e3 model.
"""
import copy
import warnings

import numpy as np
import pytest
from fd import num_grad_inplace, num_grad_richardson
from tolerance import assert_allclose_scaled
from test_se_e2_r import (_compare, _through_file, check_loss_gradient, check_model,
                          compare_symref_files, compare_water, crystal_frames, random_rows, rel_err, stats_system,
                          train_with)

import symref
from symref.io.data import load_system, make_crystal
from symref.io.model_dict import model_to_dict
from symref.io.model_file import load_model, model_from_dict, save_model
from symref.model.build import demo_model
from symref.reference.descriptor import se_e3
from symref.reference.descriptor.se_e3 import (check_memory, se_e3_backward, se_e3_backward_dual,
                                               se_e3_forward, se_e3_forward_dual)
from symref.reference.nn import mlp_forward
from symref.train import stats

CFG = {"type_map": ["A", "B"],
       "descriptor": {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40],
                      "neuron": [4, 8], "resnet_dt": True, "exclude_types": [[0, 1]]},
       "fitting_net": {"neuron": [12, 12], "resnet_dt": True}}


@pytest.fixture(scope="module")
def model():
    return demo_model(CFG, seed=3)


@pytest.fixture(scope="module")
def rows(model):
    return random_rows(model.descriptor, 4)


def test_forward_written_out(model, rows):
    """D = sum over p <= q of 1/(sel_p sel_q) sum_ab theta_ab N_pq(theta_ab), theta the dot
    products of the masked spatial columns, every ordered (a, b) of a block."""
    R, atype, keep = rows
    d = model.descriptor
    D, _ = se_e3_forward(R, atype, keep, d)
    off = d.sel_offsets
    want = np.zeros_like(D)
    for i in range(R.shape[0]):
        X = R[i, :, 1:] * keep[i, :, None]
        for p in range(2):
            for q in range(p, 2):
                for a in range(off[p], off[p + 1]):
                    for b in range(off[q], off[q + 1]):
                        th = X[a] @ X[b]
                        G, _ = mlp_forward(np.array([[th]]), d.embeddings[p + 2 * q])
                        want[i] += th * G[0] / (d.sel[p] * d.sel[q])
    assert rel_err(D, want) <= 1e-13


def test_backward_and_tangent(model, rows):
    """dR against Richardson differences of <W, D>; Dd the directional derivative; the
    parameter gradients of both backward passes against central differences."""
    R, atype, keep = rows
    d = model.descriptor
    rng = np.random.default_rng(1)
    W = rng.normal(size=(R.shape[0], d.dim_out))
    D, cache = se_e3_forward(R, atype, keep, d)
    dR, grads = se_e3_backward(W, cache, param_grads=True)
    f = lambda x: float(np.sum(W * se_e3_forward(x, atype, keep, d)[0]))  # noqa: E731
    assert rel_err(dR, num_grad_richardson(f, R[:, :, :], 1e-3)) <= 1e-9
    assert not dR[..., 0].any()
    for idx in (0, 2, 3):  # (A, A), (A, B), (B, B); index 1 = (B, A) is never used
        fd_idt = num_grad_inplace(lambda: f(R), d.embeddings[idx][1].idt, 1e-6)
        assert rel_err(grads[idx][1]["idt"], fd_idt) <= 1e-7
    assert 1 not in grads
    Rd = rng.normal(size=R.shape)
    D2, Dd, dcache = se_e3_forward_dual(R, Rd, atype, keep, d)
    h = 1e-5
    fd = (se_e3_forward(R + h * Rd, atype, keep, d)[0]
          - se_e3_forward(R - h * Rd, atype, keep, d)[0]) / (2 * h)
    assert rel_err(D2, D) == 0 and rel_err(Dd, fd) <= 1e-8
    Dbar, Ddbar = rng.normal(size=D.shape), rng.normal(size=D.shape)
    _, dgrads = se_e3_backward_dual(Dbar, Ddbar, dcache)

    def obj():
        a, ad, _ = se_e3_forward_dual(R, Rd, atype, keep, d)
        return float(np.sum(Dbar * a) + np.sum(Ddbar * ad))

    for idx in (0, 2, 3):
        assert rel_err(dgrads[idx][0]["w"], num_grad_inplace(obj, d.embeddings[idx][0].w,
                                                             1e-6)) <= 1e-7
    assert dgrads[1] is None


def test_blocks_give_the_same_numbers(model, rows, monkeypatch):
    """One centre per block against one block of all: the same D, dR and gradients."""
    R, atype, keep = rows
    d = model.descriptor
    W = np.random.default_rng(2).normal(size=(R.shape[0], d.dim_out))

    def run():
        D, c = se_e3_forward(R, atype, keep, d)
        return D, *se_e3_backward(W, c, param_grads=True)

    D1, dR1, g1 = run()
    monkeypatch.setattr(se_e3, "BLOCK_BYTES", 1)
    assert len(se_e3.centre_blocks(d, R.shape[0])) == R.shape[0]
    D2, dR2, g2 = run()
    assert rel_err(D2, D1) <= 1e-15 and rel_err(dR2, dR1) <= 1e-15
    assert rel_err(g2[3][0]["w"], g1[3][0]["w"]) <= 1e-14


def test_memory_check(model, monkeypatch):
    """bytes per centre = max sel_p sel_q x (4 sum(neuron) + 8) x 8; a machine with less
    refuses, naming descriptor.sel and both sizes, before the forward allocates."""
    d = model.descriptor
    need = 40 * 40 * (4 * 12 + 8) * 8
    assert check_memory(d, available=10 ** 12) == need
    with pytest.raises(MemoryError, match=r"descriptor.sel \[30, 40\] needs 0.00 GiB per centre"):
        check_memory(d, available=need - 1)
    monkeypatch.setattr(se_e3, "available_memory", lambda: 1000)
    coord, atype, box = crystal_frames(1)
    with pytest.raises(MemoryError, match="reduce sel"):
        model.evaluate(coord, atype, box, backend="numpy")


def test_checks_and_loss_gradient(model):
    """symref.checks FD (forces, virial) and symmetry on the crystal and a molecule, and
    the loss gradient of every parameter group."""
    check_model(model)
    check_loss_gradient(model)


def test_files_statistics_train(tmp_path, model, monkeypatch, capsys):
    """.dp/.yaml round trip (type se_e3); env_stat has se_e2_a's shape and values (same
    environment matrix); `symref train` on an se_e3 input."""
    coord, atype, box = crystal_frames(1)
    ref = model.evaluate(coord, atype, box, backend="numpy")
    for suffix in (".dp", ".yaml"):
        save_model(model, tmp_path / f"m{suffix}")
        back = load_model(tmp_path / f"m{suffix}")
        assert type(back.descriptor).__name__ == "SeE3"
        for k, v in back.evaluate(coord, atype, box, backend="numpy").items():
            np.testing.assert_array_equal(v, ref[k])
    sys_ = stats_system()
    cfg_a = copy.deepcopy(CFG)
    cfg_a["descriptor"].update(type="se_e2_a", axis_neuron=4)
    for a, b in zip(stats.env_stat(model, [sys_]), stats.env_stat(demo_model(cfg_a), [sys_])):
        np.testing.assert_array_equal(a, b)
    trained = train_with(tmp_path, monkeypatch, capsys, {
        "type": "se_at", "rcut": 3.5, "rcut_smth": 0.5, "sel": [20, 20], "neuron": [4, 8]})
    assert type(trained.descriptor).__name__ == "SeE3"


def test_bad_config():
    """rcut_smth >= rcut and a tensor head on se_e3 are refused, naming the key."""
    cfg = copy.deepcopy(CFG)
    cfg["descriptor"]["rcut_smth"] = 4.5
    with pytest.raises(ValueError, match="rcut_smth"):
        symref.build_model(cfg)
    cfg = copy.deepcopy(CFG)
    cfg["fitting_net"]["type"] = "polar"
    with pytest.raises(ValueError, match="needs the equivariant T of an se_e2_a"):
        symref.build_model(cfg)


# ------------------------------------------------------------------ deepmd-kit itself
def make_deepmd_se_e3(seed, sel, neuron, rcut, rcut_smth, type_map, exclude_types=(),
                      stats="slot"):
    """An se_e3 + ener model built by deepmd-kit with non-trivial statistics and biases."""
    import deepmd_ref

    return deepmd_ref.make_deepmd_descriptor_model(
        seed, {"type": "se_e3", "sel": list(sel), "rcut": rcut, "rcut_smth": rcut_smth,
               "neuron": list(neuron), "resnet_dt": True,
               "exclude_types": [list(p) for p in exclude_types]}, [16, 16], type_map,
        stats=stats)


@pytest.mark.deepmd
def test_deepmd_small_skewed_cell(tmp_path, dp, pt):
    """se_e3 with descriptor exclude_types and a hybrid(se_e2_a, se_e3) with different
    rcut, triclinic cell of side ~4.2 Å, .dp files written by deepmd-kit."""
    s = make_crystal(seed=5)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * np.random.default_rng(0).normal(
        size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0).reshape(2, 9)
    d = make_deepmd_se_e3(13, [30, 40], [4, 8], 4.0, 0.5, ["A", "B"], exclude_types=[(0, 1)],
                          stats="type")  # an atom's own images at ±a tie in distance
    ours = _through_file(tmp_path, d, ".dp").evaluate(coord, s.atype, box, backend="numpy")
    _compare("se_e3/skewed", dp, d, ours, coord, s.atype, box)
    hyb = dp.make_deepmd_descriptor_model(17, {"type": "hybrid", "list": [
        {"type": "se_e2_a", "sel": [60, 70], "rcut": 5.0, "rcut_smth": 1.0, "neuron": [4, 8],
         "axis_neuron": 4},
        {"type": "se_e3", "sel": [20, 25], "rcut": 3.5, "rcut_smth": 0.5, "neuron": [4, 8]}]},
        [16, 16], ["A", "B"], stats="type")
    ours = _through_file(tmp_path, hyb, ".dp").evaluate(coord, s.atype, box, backend="numpy")
    _compare("hybrid(se_e2_a, se_e3)/skewed", dp, hyb, ours, coord, s.atype, box)


@pytest.mark.deepmd
@pytest.mark.data
def test_deepmd_molecules_and_water(tmp_path, dp, pt, shared_data):
    """C/H/O molecules (.yaml) and one frame of 64 H2O (.dp, sel 20/40, rcut 4)."""
    d = make_deepmd_se_e3(12, [6, 6, 6], [8, 16], 5.0, 1.0, ["C", "H", "O"])
    model = _through_file(tmp_path, d, ".yaml")
    for name in ("C1H4O2", "C3H3O4"):
        s = load_system(shared_data / "molecules" / name)
        ours = model.evaluate(s.coord[:2], s.atype, backend="numpy")
        _compare(f"se_e3/{name}", dp, d, ours, s.coord[:2], s.atype, None)
    d = make_deepmd_se_e3(14, [20, 40], [4, 8], 4.0, 0.5, ["O", "H"])
    compare_water("se_e3/water", tmp_path, dp, d, shared_data, 1)


@pytest.mark.deepmd
def test_deepmd_reads_symref_files_and_statistics(tmp_path, dp, pt, model):
    """symref's se_e3 files evaluated by deepmd-kit; davg/dstd from deepmd-kit's
    compute_or_load_stat (NumPy backend) equal symref's env_stat."""
    from test_stats import dp_reference

    compare_symref_files("se_e3/symref", dp, model, tmp_path)
    sys_ = stats_system()
    d = make_deepmd_se_e3(21, [30, 40], [4, 8], 4.0, 0.5, ["A", "B"], exclude_types=[(0, 1)])
    ref = model_from_dict(dp_reference(dp, d, [sys_], "numpy")).descriptor
    davg, dstd = stats.env_stat(model_from_dict(d), [sys_])
    assert rel_err(davg, ref.davg) <= 1e-10 and rel_err(dstd, ref.dstd) <= 1e-10


@pytest.mark.parametrize("which", ["se_e2_r", "se_e3", "hybrid"])
def test_symref_check_command(tmp_path, capsys, which):
    """`symref check model.yaml` on a model of each new descriptor: every check of
    symref.checks passes on the built-in molecule and crystal (each on its numba path,
    compared there with the reference: a numba fallback warning is an error)."""
    import warnings

    from test_hybrid import CFG as HYBRID
    from test_se_e2_r import CFG as SE_E2_R

    from symref import cli

    cfg = {"se_e2_r": SE_E2_R, "se_e3": CFG, "hybrid": HYBRID}[which]
    save_model(demo_model(cfg, seed=3), tmp_path / "m.yaml")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="backend='numba' cannot evaluate",
                                category=RuntimeWarning)
        assert cli.main(["check", str(tmp_path / "m.yaml")]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "FAIL" not in out


@pytest.mark.data
def test_lammps_periodic_mode(tmp_path, shared_data):
    """LAMMPS (fix external, one rank, mode periodic: model.evaluate on the numba path)
    drives an se_e3 model on 192 water atoms: energy, forces and virial of ``run 0`` equal
    model.evaluate's (tests/test_lammps.py's worker and tolerance)."""
    import test_lammps as tl

    if tl._lammps_reason():
        pytest.skip(tl._lammps_reason())
    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 40],
                          "neuron": [2, 4, 8]},
           "fitting_net": {"neuron": [16, 16]}}
    path = tmp_path / "e3.json"
    save_model(demo_model(cfg, seed=5), path)
    fr = tl.water(shared_data, 1)
    r = tl.run_worker(tmp_path, path, fr, 1, "--mode", "periodic")
    tl.check_against_evaluate(path, fr, r)


@pytest.mark.parametrize("dtype", ["se_e3", "se_e2_r"])
def test_non_tanh_embedding_runs_on_numba_not_as_tanh(dtype):
    """se_e3 / se_e2_r numba kernels take every activation code: an embedding net with
    another activation (softplus here) runs on numba (no fallback warning) and gives the
    reference's numbers to 1e-12 (never a silent tanh: the tanh model's energy differs);
    the reference's forces stay consistent with its energy (symref.checks via
    check_model), and the activation survives a model file round trip."""
    cfg = copy.deepcopy(CFG)
    cfg["descriptor"].update(type=dtype, activation_function="softplus")
    if dtype == "se_e2_r":
        cfg["descriptor"]["type_one_side"] = True
    m = demo_model(cfg, seed=5)
    assert {ly.activation for net in m.descriptor.embeddings for ly in net} == {"softplus"}
    coord, atype, box = crystal_frames(1)
    ref = m.evaluate(coord, atype, box, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the reference
        fast = m.evaluate(coord, atype, box, backend="numba")
    for k in ref:
        assert_allclose_scaled(fast[k], ref[k], 1e-12, 1e-12, err_msg=k)
    tanh = copy.deepcopy(m)
    for net in tanh.descriptor.embeddings:
        for ly in net:
            ly.activation = "tanh"
    assert rel_err(tanh.evaluate(coord, atype, box, backend="numpy")["energy"],
                   ref["energy"]) > 1e-6
    back = model_from_dict(model_to_dict(m))
    assert back.descriptor.activation_function == "softplus"
    assert {ly.activation for net in back.descriptor.embeddings for ly in net} == {"softplus"}
    check_model(m)
