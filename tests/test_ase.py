"""symref.ase.SymrefCalculator: agreement with DeepPot.evaluate, ASE's finite differences
(forces and stress to <= 1e-6 relative), pbc mixtures against independent fully periodic
or molecular evaluations, type mapping, caching, float32, ensembles, MD and BFGS."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ase", reason="ase is not installed (pip install -e '.[ase]')")
from ase import Atoms  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress  # noqa: E402

from symref.ase import SymrefCalculator, evaluation_box  # noqa: E402
from symref.io.data import make_crystal, make_molecule
from symref.model.build import demo_model

CFG = {"type_map": ["C", "H", "O"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [24, 48, 24],
                      "neuron": [8, 16, 32], "axis_neuron": 4, "resnet_dt": True,
                      "type_one_side": False},
       "fitting_net": {"neuron": [32, 32, 32], "resnet_dt": True}}
WATER_CFG = {"type_map": ["O", "H"],
             "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [24, 48],
                            "neuron": [8, 16, 32], "axis_neuron": 4, "type_one_side": True},
             "fitting_net": {"neuron": [32, 32], "resnet_dt": True}}


@pytest.fixture(scope="module")
def model():
    return demo_model(CFG, seed=0)


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def crystal_atoms():
    c = make_crystal(seed=0)
    return Atoms(["C", "H"] * 4, positions=c.coord[0], cell=c.box[0], pbc=True)


def molecule_atoms(seed=0):
    m = make_molecule(natoms=9, ntypes=3, seed=seed)
    return Atoms([["C", "H", "O"][t] for t in m.atype], positions=m.coord[0])


def slab_atoms(vacuum_c: float):
    """Two layers of a triclinic cell in the a-b plane, cell c = ``vacuum_c`` (pbc T T F)."""
    rng = np.random.default_rng(3)
    a, b = np.array([4.3, 0.0, 0.0]), np.array([1.2, 4.1, 0.0])
    frac = rng.uniform(size=(8, 2))
    z = np.array([0.0, 0.3, 1.1, 1.4, 2.2, 2.5, 3.1, 3.5])
    pos = frac[:, :1] * a + frac[:, 1:] * b + z[:, None] * np.array([0.1, -0.2, 1.0])
    return Atoms(["C", "H", "O", "H"] * 2, positions=pos,
                 cell=[a, b, [0.5, 0.3, vacuum_c]], pbc=[True, True, False])


def test_results_equal_bare_evaluate(model):
    """Energy, atomic energies, forces and stress are exactly evaluate()'s numbers,
    with ASE's sign: stress = -virial/V in Voigt order xx yy zz yz xz xy."""
    atoms = crystal_atoms()
    calc = SymrefCalculator(model)
    atoms.calc = calc
    atype = np.array([0, 1] * 4)
    ref = model.evaluate(atoms.positions[None], atype, np.array(atoms.cell)[None])
    assert atoms.get_potential_energy() == ref["energy"][0]
    assert atoms.get_potential_energy(force_consistent=True) == ref["energy"][0]
    np.testing.assert_array_equal(atoms.get_potential_energies(), ref["atom_energy"][0])
    np.testing.assert_array_equal(atoms.get_forces(), ref["forces"][0])
    s = -ref["virial"][0] / atoms.get_volume()
    tol = 1e-14 * np.abs(s).max()  # W is symmetric to round-off; ASE's Voigt symmetrises it
    np.testing.assert_allclose(atoms.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2],
                                                    s[0, 1]], rtol=0, atol=tol)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), s, rtol=0, atol=tol)
    np.testing.assert_allclose(atoms.get_stresses().sum(axis=0), atoms.get_stress(),
                               rtol=0, atol=tol)
    assert calc.ncalls == 1


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_numerical_forces_and_stress_periodic(model, backend):
    """ASE's own finite differences (central, eps 1e-5) against the analytic forces and
    stress of a triclinic cell shorter than 2 rcut: <= 1e-6 relative (measured ~1e-9)."""
    atoms = crystal_atoms()
    atoms.calc = SymrefCalculator(model, backend=backend)
    f, s = atoms.get_forces(), atoms.get_stress()
    assert rel(calculate_numerical_forces(atoms, eps=1e-5), f) < 1e-6
    assert rel(calculate_numerical_stress(atoms, eps=1e-5), s) < 1e-6
    # and the check can fail: the wrong sign of the stress is far off
    assert rel(calculate_numerical_stress(atoms, eps=1e-5), -s) > 1.0


def test_numerical_forces_molecule_and_stress_in_a_box(model):
    """Molecule (pbc False): forces by finite differences; with a cell (still pbc False)
    the stress -W/V is what ASE's strain derivative gives."""
    atoms = molecule_atoms()
    atoms.calc = SymrefCalculator(model)
    with pytest.raises(PropertyNotImplementedError, match="nonzero volume"):
        atoms.get_stress()
    f = atoms.get_forces()
    assert rel(calculate_numerical_forces(atoms, eps=1e-5), f) < 1e-6
    atoms.cell = np.diag([7.0, 8.0, 9.0])
    assert not atoms.pbc.any()
    s = atoms.get_stress()
    assert rel(calculate_numerical_stress(atoms, eps=1e-5), s) < 1e-6


def test_numerical_forces_and_stress_water_frame(water_frame):
    """A 192-atom water frame (the real data), water-sized demo model: ASE's finite
    differences for 6 atoms and the stress to <= 1e-6 relative."""
    coord, atype, box, type_map = water_frame
    m = demo_model(WATER_CFG, seed=2)
    atoms = Atoms([type_map[t] for t in atype], positions=coord[0], cell=box.reshape(3, 3),
                  pbc=True)
    atoms.calc = SymrefCalculator(m)
    f, s = atoms.get_forces(), atoms.get_stress()
    idx = [0, 1, 63, 64, 100, 191]
    fn = calculate_numerical_forces(atoms, eps=1e-5, iatoms=idx)
    assert rel(fn, f[idx]) < 1e-6
    assert rel(calculate_numerical_stress(atoms, eps=1e-5), s) < 1e-6


def test_slab_equals_periodic_box_with_large_vacuum(model):
    """pbc (T, T, F) with a cell whose c vector gives *no* vacuum at all equals an
    independent fully periodic evaluation with 40 Å of vacuum along c; with pbc all
    True and the small cell the numbers differ (so the test can fail)."""
    slab = slab_atoms(vacuum_c=3.0)  # c shorter than the slab itself
    slab.calc = SymrefCalculator(model)
    ref = slab.copy()
    ref.cell[2] = [0.0, 0.0, 40.0]
    ref.pbc = True
    ref.calc = SymrefCalculator(model)
    assert abs(slab.get_potential_energy() - ref.get_potential_energy()) < 1e-12 * abs(
        ref.get_potential_energy()) + 1e-12
    np.testing.assert_allclose(slab.get_forces(), ref.get_forces(), rtol=0, atol=1e-12)
    # the same atoms with the small cell periodic along c interact with their images
    wrong = slab.copy()
    wrong.pbc = True
    wrong.calc = SymrefCalculator(model)
    assert abs(wrong.get_potential_energy() - ref.get_potential_energy()) > 1e-3
    # the stress of the slab (volume of its own cell) is ASE's strain derivative
    s = slab.get_stress()
    assert rel(calculate_numerical_stress(slab, eps=1e-5), s) < 1e-6
    np.testing.assert_allclose(s * slab.get_volume(), ref.get_stress() * ref.get_volume(),
                               rtol=0, atol=1e-12)


def test_wire_and_molecule_conventions(model):
    """One periodic axis (a wire) equals a fully periodic box with 40 Å of vacuum in the
    other two directions; no periodic axis equals evaluate(box=None)."""
    rng = np.random.default_rng(5)
    pos = np.array([[0.0, 0.0, 0.0], [1.1, 0.2, 0.1], [2.2, -0.3, 0.5], [3.0, 0.8, -0.4],
                    [0.6, 1.2, 0.9], [2.6, 1.3, -1.0]]) + 0.05 * rng.normal(size=(6, 3))
    wire = Atoms(["C", "H", "O", "C", "H", "O"], positions=pos, cell=[[4.2, 0.4, 0.0],
                                                                       [0, 0, 0], [0, 0, 0]],
                 pbc=[True, False, False])
    wire.calc = SymrefCalculator(model)
    ref = wire.copy()
    ref.cell = [[4.2, 0.4, 0.0], [0.0, 40.0, 0.0], [0.0, 0.0, 40.0]]
    ref.pbc = True
    ref.calc = SymrefCalculator(model)
    assert abs(wire.get_potential_energy() - ref.get_potential_energy()) < 1e-11
    np.testing.assert_allclose(wire.get_forces(), ref.get_forces(), rtol=0, atol=1e-12)
    assert "stress" not in wire.calc.results  # zero-volume cell: no stress
    box = evaluation_box(wire.cell, wire.pbc, wire.positions, model.rcut)
    assert np.allclose(box[0], [4.2, 0.4, 0.0])
    assert abs(np.linalg.det(box)) > 0 and np.allclose(box[1:] @ box[0], 0)
    mol = molecule_atoms(seed=1)
    mol.cell = np.eye(3) * 3.0  # a cell smaller than the molecule is ignored without pbc
    mol.calc = SymrefCalculator(model)
    atype = np.array([{"C": 0, "H": 1, "O": 2}[s] for s in mol.get_chemical_symbols()])
    ref_m = model.evaluate(mol.positions, atype, None)
    assert mol.get_potential_energy() == ref_m["energy"][0]
    np.testing.assert_array_equal(mol.get_forces(), ref_m["forces"][0])


def test_type_mapping_by_symbol_and_unknown_element(model):
    """Atoms are typed by chemical symbol, whatever their order; an element the model
    does not know is a ValueError naming it and its atom indices."""
    atoms = molecule_atoms()
    atoms.calc = SymrefCalculator(model)
    e = atoms.get_potential_energy()
    perm = np.random.default_rng(0).permutation(len(atoms))
    shuffled = atoms[perm]
    shuffled.calc = SymrefCalculator(model)
    assert abs(shuffled.get_potential_energy() - e) < 1e-12 * abs(e)
    np.testing.assert_allclose(shuffled.get_forces(), atoms.get_forces()[perm], atol=1e-13)
    bad = atoms.copy()
    bad.symbols[3] = "Cl"
    bad.symbols[7] = "Cl"
    bad.calc = SymrefCalculator(model)
    with pytest.raises(ValueError, match=r"\['Cl'\] not known.*Cl: atoms \[3, 7\]"):
        bad.get_potential_energy()
    # an explicit map: the model's "C" slot used for Si
    alias = atoms.copy()
    alias.symbols[alias.symbols == "C"] = "Si"
    alias.calc = SymrefCalculator(model, type_map={"Si": 0, "H": 1, "O": 2})
    assert alias.get_potential_energy() == e
    with pytest.raises(ValueError, match="type 5"):
        SymrefCalculator(model, type_map={"Si": 5})


def test_recomputes_only_when_atoms_change(model):
    atoms = crystal_atoms()
    calc = SymrefCalculator(model)
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    atoms.get_potential_energies()
    assert calc.ncalls == 1
    same = atoms.copy()
    same.calc = calc
    same.get_forces()
    assert calc.ncalls == 1  # equal atoms: cached
    atoms.positions[0, 0] += 1e-3
    f1 = atoms.get_forces()
    assert calc.ncalls == 2
    atoms.get_stress()
    assert calc.ncalls == 2
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=False)
    atoms.get_potential_energy()
    assert calc.ncalls == 3
    atoms.pbc = [True, True, False]
    atoms.get_potential_energy()
    assert calc.ncalls == 4
    atoms.numbers[1] = 8
    atoms.get_potential_energy()
    assert calc.ncalls == 5
    assert not np.array_equal(f1, atoms.get_forces())


def test_float32_and_file_and_errors(model, tmp_path):
    from symref.io.model_file import save_model

    atoms = crystal_atoms()
    atoms.calc = SymrefCalculator(model)
    e64, f64 = atoms.get_potential_energy(), atoms.get_forces()
    a32 = atoms.copy()
    a32.calc = SymrefCalculator(model, precision="float32")
    assert a32.get_forces().dtype == np.float64
    assert abs(a32.get_potential_energy() - e64) < 1e-5 * max(1.0, abs(e64))
    assert 0 < rel(a32.get_forces(), f64) < 1e-4  # float32 differs, but not by much
    path = tmp_path / "m.yaml"
    save_model(model, path)
    a2 = atoms.copy()
    a2.calc = SymrefCalculator(str(path))
    assert a2.get_potential_energy() == e64
    with pytest.raises(ValueError, match="backend"):
        SymrefCalculator(model, backend="gpu")
    with pytest.raises(ValueError, match="precision"):
        SymrefCalculator(model, precision="float16")
    with pytest.raises(TypeError, match="energy model"):
        SymrefCalculator(object())
    zero = Atoms("CH", positions=[[0, 0, 0], [1, 0, 0]], cell=[[0, 0, 0], [0, 5, 0], [0, 0, 5]],
                 pbc=True)
    zero.calc = SymrefCalculator(model)
    with pytest.raises(ValueError, match="cell vector 0"):
        zero.get_potential_energy()


def test_ensemble_uncertainty_on_the_calculator(model):
    """Several models: the first drives, results['model_devi'] is the deviation of the
    ensemble computed independently here from each model's forces and virial."""
    m2, m3 = demo_model(CFG, seed=7), demo_model(CFG, seed=8)
    atoms = crystal_atoms()
    calc = SymrefCalculator([model, m2, m3])
    atoms.calc = calc
    single = atoms.copy()
    single.calc = SymrefCalculator(model)
    assert atoms.get_potential_energy() == single.get_potential_energy()
    d = calc.get_model_devi()
    assert calc.ncalls == 3
    atype = np.array([0, 1] * 4)
    outs = [m.evaluate(atoms.positions, atype, np.array(atoms.cell)) for m in (model, m2, m3)]
    F = np.stack([o["forces"][0] for o in outs])  # 3 x natoms x 3
    per_atom = np.sqrt(np.mean(np.sum((F - F.mean(axis=0)) ** 2, axis=-1), axis=0))
    np.testing.assert_allclose(d["atom_devi_f"], per_atom, rtol=1e-12)
    assert d["max_devi_f"] == pytest.approx(per_atom.max(), rel=1e-12)
    assert d["min_devi_f"] == pytest.approx(per_atom.min(), rel=1e-12)
    W = np.stack([o["virial"][0].ravel() for o in outs]) / len(atoms)
    assert d["max_devi_v"] == pytest.approx(W.std(axis=0).max(), rel=1e-12)
    E = np.array([o["energy"][0] for o in outs]) / len(atoms)
    assert d["devi_e"] == pytest.approx(E.std(), rel=1e-12)
    moved = atoms.copy()
    moved.positions[0] += 0.05
    assert calc.get_model_devi(moved)["max_devi_f"] != d["max_devi_f"]
    same = SymrefCalculator([model, model])
    atoms.calc = same
    assert same.get_model_devi(atoms)["max_devi_f"] == 0.0
    with pytest.raises(ValueError, match="no atoms"):
        SymrefCalculator([model, m2]).get_model_devi()
    with pytest.raises(ValueError, match="ensemble"):
        SymrefCalculator(model).get_model_devi(atoms)
    with pytest.raises(ValueError, match="type_map"):
        SymrefCalculator([model, demo_model(WATER_CFG)])


def _nve(model, dt_fs, nsteps):
    from ase import units
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    atoms = crystal_atoms()
    atoms.calc = SymrefCalculator(model)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.set_momenta(atoms.get_momenta() - atoms.get_momenta().mean(axis=0))
    fsum, es = [], []
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    dyn.attach(lambda: (fsum.append(np.abs(atoms.get_forces().sum(axis=0)).max()),
                        es.append(atoms.get_total_energy())))
    dyn.run(nsteps)
    return atoms, np.array(es), max(fsum)


def test_nve_energy_error_is_second_order_and_net_force_zero(model):
    """Velocity Verlet over 100 fs (300 K, periodic crystal): the net force is zero to
    round-off in every step, the momentum stays zero, and the largest total-energy
    error falls as dt² (ratio ~4 from 0.5 to 0.25 fs): the forces are the exact
    gradient of the energy (inconsistent forces give an error that does not vanish)."""
    atoms, e1, fsum = _nve(model, 0.5, 200)
    assert len(e1) == 201 and fsum < 1e-13
    assert np.abs(atoms.get_momenta().sum(axis=0)).max() < 1e-12
    _, e2, _ = _nve(model, 0.25, 400)
    err1, err2 = np.abs(e1 - e1[0]).max(), np.abs(e2 - e2[0]).max()
    assert err1 / len(atoms) < 1e-4
    assert 3.0 < err1 / err2 < 5.5


def test_bfgs_converges_on_a_real_molecule(model, shared_data):
    """ASE's BFGS on frame 0 of molecules/C1H4O2 (non-periodic) converges to fmax 1e-3
    eV/Å with the symref calculator (a random model: the minimum is not chemistry; the
    trained-model run is benchmarks/bench_calculator.py), lowering the energy."""
    from ase.optimize import BFGS

    from symref.io.data import load_system

    s = load_system(shared_data / "molecules" / "C1H4O2")
    atoms = Atoms([s.type_map[t] for t in s.atype], positions=s.coord[0])
    atoms.calc = SymrefCalculator(model)
    e0 = atoms.get_potential_energy()
    opt = BFGS(atoms, logfile=None)
    assert opt.run(fmax=1e-3, steps=1000)
    assert np.abs(atoms.get_forces()).max() < 1e-3 * 1.0001 * np.sqrt(3)
    assert atoms.get_potential_energy() < e0
