"""Statistics before training (symref.train.stats) against deepmd-kit 3.2 and against closed forms.

* Cross-checks (marked ``deepmd``; they skip when deepmd-kit is not installed,
  and the PyTorch ones when torch is missing): deepmd-kit's own
  ``model.compute_or_load_stat`` (NumPy ``deepmd.dpmodel`` and PyTorch
  ``deepmd.pt`` backends) on sampled data in deepmd-kit's format, and the whole
  PyTorch training pipeline (``DpLoaderSet`` reading the npy systems,
  ``make_stat_input`` sampling ``data_stat_nbatch`` batches) on real water and
  molecule data.  davg, dstd, out_bias and out_std must agree to 1e-10
  relative to the largest reference value.
* Self-contained tests (no deepmd-kit): closed forms on synthetic systems,
  backends, frame counts, ``apply_statistics`` and the error messages.
"""
from __future__ import annotations


import numpy as np
import pytest

import symref.io.model_file
from symref.fast import cpu as fastpath
from symref.train import stats
from symref.io.data import System, load_system, make_crystal, make_molecule, select_frames
from symref.reference.env import smooth_switch
from symref.model.build import build_model

RTOL = 1e-10
deepmd = pytest.mark.deepmd
MOLECULES = ("C1H4O2", "C3H3O4", "C4H3O1")


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def small_model(type_map, sel, rcut=6.0, rcut_smth=0.5, **extra):
    cfg = {"type_map": list(type_map),
           "descriptor": {"type": "se_e2_a", "rcut": rcut, "rcut_smth": rcut_smth, "sel": list(sel),
                          "neuron": [4, 8], "axis_neuron": 4, "type_one_side": False},
           "fitting_net": {"neuron": [8]}}
    cfg.update(extra)
    return build_model(cfg, seed=0)


# =============================================================== deepmd-kit cross-checks
@pytest.fixture(scope="module")
def dp():
    pytest.importorskip("deepmd", reason="deepmd-kit is not installed (pip install -e '.[test]')")
    import deepmd_ref

    return deepmd_ref


def dp_samples(systems, ntypes, to=np.asarray):
    """symref Systems (types already the model's) as deepmd-kit's sampled-data list
    (what ``make_stat_input`` returns: one dict per system, all its frames)."""
    out = []
    for s in systems:
        nf, natoms = s.nframes, s.natoms
        atype = np.tile(s.atype[None], (nf, 1)).astype(np.int64)
        counts = np.stack([np.bincount(a, minlength=ntypes) for a in atype])
        natoms_vec = np.concatenate([np.full((nf, 2), natoms), counts], axis=1).astype(np.int32)
        has_e = s.energy is not None
        energy = s.energy.reshape(nf, 1) if has_e else np.zeros((nf, 1))
        out.append({"coord": to(s.coord.reshape(nf, natoms * 3)),
                    "box": None if s.box is None else to(s.box.reshape(nf, 9)),
                    "atype": to(atype), "natoms": to(natoms_vec), "energy": to(energy),
                    "find_energy": np.float32(1.0 if has_e else 0.0)})
    return out


def dp_reference(dp, model_dict, systems, backend):
    """deepmd-kit's ``compute_or_load_stat`` on ``systems``: the model dict afterwards."""
    ntypes = len(model_dict["type_map"])
    if backend == "numpy":
        import deepmd.dpmodel.model.model  # noqa: F401  (registers the model classes)
        from deepmd.dpmodel.model.base_model import BaseModel

        m = BaseModel.deserialize(dp.as_model_dict(model_dict))
        samples = dp_samples(systems, ntypes)
    else:
        import torch
        from deepmd.pt.model.model import BaseModel

        m = BaseModel.deserialize(dp.as_model_dict(model_dict))
        samples = dp_samples(systems, ntypes, to=torch.as_tensor)
    m.compute_or_load_stat(lambda: samples)
    return m.serialize()


def compare_models(ours, ref_dict, case):
    """symref model ``ours`` against deepmd-kit's serialized model after its statistics."""
    ref = symref.io.model_file.model_from_dict(ref_dict)
    for name, a, b in (("davg", ours.descriptor.davg, ref.descriptor.davg),
                       ("dstd", ours.descriptor.dstd, ref.descriptor.dstd),
                       ("out_bias", ours.out_bias, ref.out_bias),
                       ("out_std", ours.out_std, ref.out_std),
                       ("bias_atom_e", ours.fitting.bias_atom_e, ref.fitting.bias_atom_e)):
        e = rel_err(a, b)
        print(f"{case}: {name} relative deviation {e:.1e}")
        assert e <= RTOL, f"{case}: {name} relative deviation {e:.2e} > {RTOL:.0e}"


def water_frames(shared_data, frames=(0, 7)):
    path = shared_data / "water" / "data_0"
    if not (path / "set.000" / "coord.npy").is_file():
        pytest.skip(f"water system not found: {path}")
    return select_frames(load_system(path), list(frames))


def molecule_frames(shared_data, nframes=(4, 3, 2)):
    out = []
    for name, n in zip(MOLECULES, nframes):
        path = shared_data / "molecules" / name
        if not path.is_dir():
            pytest.skip(f"molecule system not found: {path}")
        out.append(select_frames(load_system(path), np.arange(n)))
    return out


WATER_KW = dict(sel=[46, 92], neuron=[4, 8], axis_neuron=4, fitting_neuron=[8],
                rcut=6.0, rcut_smth=0.5, type_map=["O", "H"])


@deepmd
@pytest.mark.parametrize("backend", ["numpy", "pt"])
def test_water_matches_deepmd(request, dp, shared_data, backend):
    """Periodic water, 2 frames: env statistics and (rank-deficient, one composition) bias."""
    if backend == "pt":
        request.getfixturevalue("pt")
    d = dp.make_deepmd_model_dict(False, 3, **WATER_KW)
    water = water_frames(shared_data)
    ref = dp_reference(dp, d, [water], backend)
    ours = symref.io.model_file.model_from_dict(d)
    res = stats.compute_statistics(ours, [water])
    compare_models(ours, ref, f"water/{backend}")
    # the structure deepmd-kit's statistics have: one value per centre type, no angular mean
    assert np.all(res["davg"][..., 1:] == 0)
    assert np.all(res["dstd"][..., 1:] == res["dstd"][..., 1:2])
    assert fastpath.unsupported_reason(ours) is None
    # one composition: minimum-norm solution, b_H = 2 b_O
    np.testing.assert_allclose(res["out_bias"][1], 2 * res["out_bias"][0], rtol=1e-12)


@deepmd
@pytest.mark.parametrize("backend", ["numpy", "pt"])
@pytest.mark.parametrize("variant", ["plain", "exclusions", "set_davg_zero"])
def test_molecules_match_deepmd(request, dp, shared_data, backend, variant):
    """Three C/H/O molecules without a cell, sel small enough to truncate (deepmd-kit
    keeps the nearest sum(sel) atoms); exclusions at the descriptor, pair and atom level."""
    if backend == "pt":
        request.getfixturevalue("pt")
    kw = dict(sel=[2, 3, 2], neuron=[4, 8], axis_neuron=4, fitting_neuron=[8], rcut=6.0,
              rcut_smth=1.0, type_map=["C", "H", "O"])
    if variant == "exclusions":
        kw.update(exclude_types=[(0, 2)], pair_exclude_types=[(1, 1)], atom_exclude_types=[2])
    d = dp.make_deepmd_model_dict(True, 5, **kw)
    if variant == "set_davg_zero":
        d["descriptor"]["set_davg_zero"] = True
    mols = molecule_frames(shared_data)
    ref = dp_reference(dp, d, mols, backend)
    ours = symref.io.model_file.model_from_dict(d)
    davg_before = ours.descriptor.davg.copy()
    stats.compute_statistics(ours, mols)
    compare_models(ours, ref, f"molecules/{variant}/{backend}")
    if variant == "set_davg_zero":  # deepmd-kit keeps the descriptor's davg
        np.testing.assert_array_equal(ours.descriptor.davg, davg_before)
    if variant == "exclusions":
        assert ours.out_bias[2] == 0.0


@deepmd
def test_crystal_with_images_matches_deepmd(dp):
    """A small triclinic cell (many periodic images of every atom, itself included)
    and a generated molecule: deepmd-kit's NumPy backend, environment statistics only
    (energies are synthetic, so the bias is checked too)."""
    systems = []
    for seed in range(2):
        c = make_crystal(seed=seed)
        rng = np.random.default_rng(seed)
        coord = c.coord + rng.normal(scale=0.05, size=(3,) + c.coord.shape[1:])
        systems.append(System(type_map=["A", "B"], atype=c.atype, coord=coord,
                              box=np.repeat(c.box, 3, axis=0), energy=rng.normal(size=3) - 10.0))
    d = dp.make_deepmd_model_dict(False, 9, [40, 40], [4, 8], 4, [8], 4.5, 1.0,
                                  type_map=["A", "B"])
    ref = dp_reference(dp, d, systems, "numpy")
    ours = symref.io.model_file.model_from_dict(d)
    stats.compute_statistics(ours, systems)
    compare_models(ours, ref, "crystal")


@deepmd
def test_training_pipeline_matches_deepmd(pt, dp, shared_data):
    """deepmd-kit's PyTorch trainer path end to end: ``DpLoaderSet`` reads the npy
    systems (float32 -> float64, type_map remapped by name, atoms sorted by type),
    ``make_stat_input`` takes ``data_stat_nbatch`` batches of ``batch_size="auto"``
    frames from each (``shuffle=False``: the first frames), then the model's
    ``compute_or_load_stat``.  symref: ``stat_frames`` + ``compute_statistics``."""
    from deepmd.pt.model.model import BaseModel
    from deepmd.pt.utils.dataloader import DpLoaderSet
    from deepmd.pt.utils.stat import make_stat_input
    from deepmd.utils.data import DataRequirementItem

    paths = [shared_data / "molecules" / m for m in MOLECULES]
    if not all(p.is_dir() for p in paths):
        pytest.skip("molecule systems not found")
    type_map = ["H", "O", "C"]  # not the systems' order (C H O): types are remapped by name
    nbatch = 2
    loader = DpLoaderSet([str(p) for p in paths], "auto", type_map, shuffle=False)
    loader.add_data_requirement([DataRequirementItem("energy", ndof=1, atomic=False,
                                                     must=False, high_prec=True)])
    sampled = make_stat_input(loader.systems, loader.dataloaders, nbatch)
    d = dp.make_deepmd_model_dict(False, 13, [4, 3, 3], [4, 8], 4, [8], 5.0, 0.8,
                                  type_map=type_map)
    m = BaseModel.deserialize(dp.as_model_dict(d))
    m.compute_or_load_stat(lambda: sampled)

    systems = stats.stat_frames([load_system(p) for p in paths], data_stat_nbatch=nbatch)
    assert [s.nframes for s in systems] == [int(x["atype"].shape[0]) for x in sampled] == [10, 8, 8]
    for s, x in zip(systems, sampled):
        np.testing.assert_array_equal(s.energy, x["energy"].numpy()[:, 0])
    ours = symref.io.model_file.model_from_dict(d)
    stats.compute_statistics(ours, systems)
    compare_models(ours, m.serialize(), "pipeline/molecules")


# ========================================================================= self-contained
def simple_cubic(a=2.0, n=2, nframes=1):
    """n³ atoms on a simple cubic lattice of spacing a Å in a periodic cube: every
    atom's environment is inversion symmetric."""
    g = np.arange(n) * a
    x = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    box = np.eye(3) * a * n
    return System(type_map=["X"], atype=np.zeros(len(x), dtype=np.int64),
                  coord=np.repeat(x[None], nframes, axis=0),
                  box=np.repeat(box[None], nframes, axis=0))


def test_env_stat_closed_form_on_a_symmetric_lattice():
    """Simple cubic, a = 2 Å, rcut 3 Å: 6 neighbours at 2 Å, 12 at 2√2 Å; sel 20 (2 padded
    slots, counted with value 0).  The angular mean is exactly 0 by inversion symmetry."""
    rcut, rcut_smth, nnei = 3.0, 1.0, 20
    model = small_model(["X"], [nnei], rcut=rcut, rcut_smth=rcut_smth)
    sysm = simple_cubic()
    davg, dstd, sums = stats.env_stat(model, [sysm], return_sums=True)
    r = np.array([2.0, 2.0 * np.sqrt(2.0)])
    mult = np.array([6, 12])
    w, _ = smooth_switch(r, rcut_smth, rcut)
    n_r = nnei
    s_r = np.sum(mult * w / r)
    q_r = np.sum(mult * (w / r) ** 2)
    q_a = np.sum(mult * (w / r) ** 2)  # (x² + y² + z²) w² / r⁴ = w² / r²
    mean_r = s_r / n_r
    np.testing.assert_allclose(davg[0, :, 0], mean_r, rtol=1e-13)
    np.testing.assert_array_equal(davg[..., 1:], 0.0)
    np.testing.assert_allclose(dstd[0, :, 0], np.sqrt(q_r / n_r - mean_r ** 2), rtol=1e-12)
    np.testing.assert_allclose(dstd[0, :, 1:], np.sqrt(q_a / (3 * n_r)), rtol=1e-12)
    assert abs(sums.sum[0, 1]) < 1e-12 * sums.squared_sum[0, 1] * 8 * n_r  # angular mean 0
    np.testing.assert_array_equal(sums.number[0], [8 * nnei, 3 * 8 * nnei])
    # more frames of the same structure change nothing but the counts
    davg3, dstd3 = stats.env_stat(model, [simple_cubic(nframes=3)])
    np.testing.assert_allclose(davg3, davg, rtol=1e-13)
    np.testing.assert_allclose(dstd3, dstd, rtol=1e-12)


def test_env_stat_protection_and_absent_type():
    """A dimer whose distance is just below rcut: every row is ~0, so both spreads fall
    under the 1e-2 protection; type 1 has no atoms: davg 0, dstd 0.1."""
    model = small_model(["A", "B"], [1, 2], rcut=4.0, rcut_smth=0.5)
    dimer = System(type_map=["A", "B"], atype=np.array([0, 0]),
                   coord=np.array([[[0.0, 0.0, 0.0], [3.999, 0.0, 0.0]]]), box=None)
    davg, dstd = stats.env_stat(model, dimer)
    assert np.all(dstd[0] == stats.STD_PROTECTION)
    assert 0 < davg[0, 0, 0] < 1e-6
    np.testing.assert_array_equal(davg[1], 0.0)
    np.testing.assert_array_equal(dstd[1], stats.STD_DEFAULT)
    # set_davg_zero: davg 0, dstd unchanged; apply_statistics keeps the model's davg
    davg0, dstd0 = stats.env_stat(model, dimer, set_davg_zero=True)
    np.testing.assert_array_equal(davg0, 0.0)
    np.testing.assert_array_equal(dstd0, dstd)


@pytest.mark.parametrize("kind", ["molecule", "crystal"])
def test_backends_agree_and_truncation(kind):
    s = make_molecule(natoms=9, ntypes=3, seed=2) if kind == "molecule" else make_crystal(seed=1)
    tm = s.type_map
    sel = [2] * len(tm)
    model = small_model(tm, sel, rcut=4.0, rcut_smth=0.5, pair_exclude_types=[[0, 1]])
    model.descriptor.exclude_types = [(0, 0)]
    with pytest.raises(ValueError, match="sel"):
        stats.env_stat(model, s, truncate=False)
    a = stats.env_stat(model, s, backend="numba")
    b = stats.env_stat(model, s, backend="numpy")
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=0)
    model.descriptor.sel = [40] * len(tm)  # no truncation: the two modes agree
    model.descriptor.davg = np.zeros((len(tm), 40 * len(tm), 4))
    np.testing.assert_array_equal(stats.env_stat(model, s, truncate=False)[1],
                                  stats.env_stat(model, s)[1])


def composition_systems(bias, ntypes=3, seed=0):
    """Random molecules of varied composition with E = sum_t n_t bias_t exactly."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(4):
        n = 5 + k
        atype = rng.integers(0, ntypes, size=n)
        atype[:ntypes] = np.arange(ntypes)
        nf = 2
        coord = rng.uniform(0, 6, size=(nf, n, 3))
        e = np.full(nf, np.bincount(atype, minlength=ntypes) @ bias)
        out.append(System(type_map=["C", "H", "O"][:ntypes], atype=atype, coord=coord,
                          box=None, energy=e, name=f"mol{k}"))
    return out


def test_energy_bias_recovers_per_type_constants():
    bias = np.array([-150.3, -13.6, -430.9])
    systems = composition_systems(bias)
    b, std = stats.energy_bias(systems, 3, ["C", "H", "O"])
    np.testing.assert_allclose(b, bias, rtol=1e-10)
    assert std.shape == (3,) and np.all(std == std[0]) and std[0] < 1e-9
    # types are re-indexed by name onto the model's type_map
    b2, _ = stats.energy_bias(systems, 3, ["O", "C", "H"])
    np.testing.assert_allclose(b2, bias[[2, 0, 1]], rtol=1e-10)
    # an excluded type is not counted: its bias is 0 (minimum norm)
    e_wo_o = [System(s.type_map, s.atype, s.coord, None,
                     energy=s.energy - np.sum(s.atype == 2) * bias[2]) for s in systems]
    b3, _ = stats.energy_bias(e_wo_o, 3, atom_exclude_types=[2])
    np.testing.assert_allclose(b3, [bias[0], bias[1], 0.0], rtol=1e-10, atol=1e-9)
    # a preset value is kept, the others fitted around it
    b4, _ = stats.energy_bias(systems, 3, preset_bias=[None, -13.6, None])
    np.testing.assert_allclose(b4, bias, rtol=1e-10)
    # systems without energies are skipped (deepmd-kit's find_energy = 0)
    unlabelled = System(["C", "H", "O"], np.array([0, 1]), np.zeros((1, 2, 3)), None)
    unlabelled.coord[0, 1, 0] = 1.0
    np.testing.assert_allclose(stats.energy_bias(systems + [unlabelled], 3)[0], bias, rtol=1e-10)


def test_energy_bias_single_composition_is_minimum_norm():
    """One composition n for all frames: b = n <E> / |n|², residual std = std(E)."""
    atype = np.array([0, 1, 1] * 4)
    e = np.array([-60.0, -61.0, -59.5, -60.25])
    s = System(["O", "H"], atype, np.random.default_rng(0).uniform(0, 5, (4, 12, 3)), None,
               energy=e)
    b, std = stats.energy_bias(s, 2)
    n = np.array([4.0, 8.0])
    np.testing.assert_allclose(b, n * e.mean() / (n @ n), rtol=1e-12)
    np.testing.assert_allclose(std, np.std(e), rtol=1e-10)


def test_apply_and_compute_statistics_write_where_deepmd_does():
    model = small_model(["C", "H", "O"], [8, 8, 8], rcut=4.0, rcut_smth=0.5)
    model.fitting.bias_atom_e = np.array([1.0, 2.0, 3.0])
    bias = np.array([-150.3, -13.6, -430.9])
    systems = composition_systems(bias)
    res = stats.compute_statistics(model, systems)
    np.testing.assert_array_equal(model.descriptor.davg, res["davg"])
    np.testing.assert_array_equal(model.descriptor.dstd, res["dstd"])
    np.testing.assert_allclose(model.out_bias, bias, rtol=1e-10)
    np.testing.assert_array_equal(model.out_std, res["out_std"])
    np.testing.assert_array_equal(model.fitting.bias_atom_e, [1.0, 2.0, 3.0])  # untouched
    assert fastpath.unsupported_reason(model) is None
    # energy_bias's result can be passed whole: out_bias and out_std both written
    model.out_bias, model.out_std = np.zeros(3), np.ones(3)
    eb = stats.energy_bias(systems, 3)
    stats.apply_statistics(model, res["davg"], res["dstd"], eb)
    np.testing.assert_array_equal(model.out_bias, eb.bias)
    np.testing.assert_array_equal(model.out_std, eb.std)
    # deepmd-kit's (1, ntypes, 1) layout is accepted for the bias
    stats.apply_statistics(model, bias=np.zeros((1, 3, 1)))
    np.testing.assert_array_equal(model.out_bias, 0.0)
    # set_davg_zero: dstd written, davg kept
    model.descriptor.set_davg_zero = True
    keep = model.descriptor.davg.copy()
    stats.apply_statistics(model, res["davg"] + 1.0, res["dstd"] * 2.0)
    np.testing.assert_array_equal(model.descriptor.davg, keep)
    np.testing.assert_array_equal(model.descriptor.dstd, res["dstd"] * 2.0)


def test_stat_frames_counts_as_deepmd():
    """min(nframes, data_stat_nbatch * batch), batch = ceil(32 / natoms) for "auto"."""
    assert stats.stat_batch_size(192) == 1
    assert stats.stat_batch_size(7) == 5
    assert stats.stat_batch_size(10) == 4
    assert stats.stat_batch_size(32) == 1
    assert stats.stat_batch_size(7, "auto:64") == 10
    assert stats.stat_batch_size(7, "max:32") == 4
    assert stats.stat_batch_size(100, "max:32") == 1
    assert stats.stat_batch_size(7, 3) == 3
    rng = np.random.default_rng(0)
    big = System(None, np.zeros(192, dtype=np.int64), rng.uniform(0, 9, (80, 192, 3)), None)
    small = System(None, np.zeros(7, dtype=np.int64), rng.uniform(0, 9, (30, 7, 3)), None)
    got = stats.stat_frames([big, small])
    assert [s.nframes for s in got] == [10, 30]
    np.testing.assert_array_equal(got[0].coord, big.coord[:10])
    got = stats.stat_frames([big, small], data_stat_nbatch=2, seed=1)
    assert [s.nframes for s in got] == [2, 10]
    assert [s.nframes for s in stats.stat_frames([big, small], batch_size="filter:100")] == [30]


def test_error_messages():
    model = small_model(["C", "H", "O"], [4, 4, 4], rcut=4.0)
    mol = make_molecule(natoms=6, ntypes=3, seed=0)
    with pytest.raises(ValueError, match="no systems"):
        stats.env_stat(model, [])
    with pytest.raises(ValueError, match="no systems"):
        stats.energy_bias([], 3)
    with pytest.raises(TypeError, match="DeepPot or SeE2A"):
        stats.env_stat("model", [mol])
    with pytest.raises(TypeError, match="System or a path"):
        stats.env_stat(model, [np.zeros((1, 3, 3))])
    with pytest.raises(ValueError, match="none of the 1 system.*energies"):
        stats.energy_bias([mol], 3)
    with pytest.raises(ValueError, match="none of the 1 system.*energies"):
        stats.compute_statistics(model, [mol])
    nan = System(mol.type_map, mol.atype, mol.coord, None, energy=np.array([np.nan]), name="m")
    with pytest.raises(ValueError, match=r"system 0 \(m\): energy of frame 0 is not finite"):
        stats.energy_bias(nan, 3)
    short = System(mol.type_map, mol.atype, mol.coord, None, energy=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="energy has 2 values for 1 frames"):
        stats.energy_bias(short, 3)
    with pytest.raises(ValueError, match="has type 2 but the model has only 2 types"):
        stats.energy_bias(System(None, mol.atype, mol.coord, None, energy=np.ones(1)), 2)
    with pytest.raises(ValueError, match=r"element\(s\) \['O'\] are not in"):
        stats.energy_bias(System(["C", "H", "O"], mol.atype, mol.coord, None,
                                 energy=np.ones(1)), 2, ["C", "H"])
    with pytest.raises(ValueError, match="no frames"):
        stats.env_stat(model, System(mol.type_map, mol.atype, np.zeros((0, 6, 3)), None))
    with pytest.raises(ValueError, match="type_map .* has 2 types"):
        stats.energy_bias(mol, 3, ["C", "H"])
    with pytest.raises(ValueError, match="preset_bias has 2 entries"):
        stats.energy_bias(System(mol.type_map, mol.atype, mol.coord, None, energy=np.ones(1)),
                          3, preset_bias=[1.0, None])
    with pytest.raises(ValueError, match="backend"):
        stats.env_stat(model, mol, backend="gpu")
    with pytest.raises(ValueError, match=r"davg has shape \(3, 4\)"):
        stats.apply_statistics(model, davg=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="dstd must be positive"):
        stats.apply_statistics(model, dstd=np.zeros_like(model.descriptor.dstd))
    with pytest.raises(ValueError, match="unsupported batch_size rule"):
        stats.stat_batch_size(7, "every:3")
    with pytest.raises(ValueError, match="data_stat_nbatch"):
        stats.stat_frames(mol, data_stat_nbatch=0)
    # the neighbour search's sel error names the system and frame
    with pytest.raises(ValueError, match=r"system 0.*frame 0: .*sel"):
        stats.env_stat(small_model(["C", "H", "O"], [1, 1, 1], rcut=6.0), mol, truncate=False)
