"""Data-parallel training (symref.train.parallel): shards, the rank-independent sum, the serial
communicator, and `symref train` under `mpiexec -n 1` and `-n 2` (same loss history and
parameters; only rank 0 writes files).  The MPI tests skip, saying why, without mpi4py
or mpiexec."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.io.data import System, make_molecule, save_system
from symref.model.params import parameters
from symref.train.loss import LossPrefactors, energy_loss_and_grad
from symref.model.build import demo_model
from symref.train.parallel import (
    SERIAL,
    MpiComm,
    SerialComm,
    get_comm,
    mpiexec_path,
    shard_ranges,
    sharded_sum,
    tree_nodes,
    tree_sum,
    world_size_hint,
)
from symref.train.fit import batch_loss_and_grad
from checkout import checkout_env

HERE = Path(__file__).resolve().parent
CFG = {"type_map": ["C", "H", "O"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [12, 12, 12],
                      "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": False,
                      "type_one_side": True},
       "fitting_net": {"neuron": [8, 8], "resnet_dt": True}}


def _teacher_system(natoms, nframes, seed):
    """Frames of a small molecule labelled by a fixed 'teacher' model."""
    teacher = demo_model(CFG, seed=100)
    s = make_molecule(natoms=natoms, ntypes=3, seed=seed)
    rng = np.random.default_rng(seed)
    coord = s.coord + rng.normal(scale=0.08, size=(nframes,) + s.coord.shape[1:])
    ev = teacher.evaluate(coord, s.atype)
    return System(type_map=["C", "H", "O"], atype=s.atype, coord=coord, box=None,
                  energy=ev["energy"], force=ev["forces"], name=f"teacher{natoms}")


# ------------------------------------------------------------------ without MPI
def test_shard_ranges_are_contiguous_and_balanced_by_frames():
    for n in range(23):
        for size in range(1, 6):
            r = shard_ranges(n, size)
            assert len(r) == size and r[0][0] == 0 and r[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(r, r[1:]))
            sizes = [b - a for a, b in r]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes)
    assert shard_ranges(9, 2) == [(0, 4), (4, 9)]  # the tree's first split: one node each
    assert shard_ranges(1, 3) == [(0, 0), (0, 0), (0, 1)]
    with pytest.raises(ValueError):
        shard_ranges(3, 0)


def test_tree_sum_is_the_same_bits_for_any_sharding():
    """Node sums computed shard by shard and finished in the tree equal the single-process
    sum bit for bit; values spanning 20 orders of magnitude make any reassociation show."""
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 8, 13, 16, 31):
        vals = rng.normal(size=(n, 7)) * 10.0 ** rng.integers(-10, 10, size=(n, 1))
        vals0, leaf = vals.copy(), vals.__getitem__
        whole = tree_sum(0, n, leaf)
        for size in range(1, 7):
            known = {}
            for a, b in shard_ranges(n, size):
                nodes = tree_nodes(0, n, a, b)
                covered = sorted(i for lo, hi in nodes for i in range(lo, hi))
                assert covered == list(range(a, b))
                assert len(nodes) <= 2 * max(1, int(np.ceil(np.log2(n + 1))))
                for lo, hi in nodes:
                    known[(lo, hi)] = tree_sum(lo, hi, leaf)
            np.testing.assert_array_equal(tree_sum(0, n, None, known), whole)
        np.testing.assert_array_equal(vals, vals0)  # the leaves were not added into
    seq = np.zeros(7)
    for v in vals:
        seq = seq + v
    assert not np.array_equal(seq, whole)  # the test can tell orders apart


def test_serial_communicator_and_environment_detection(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert world_size_hint() == 1 and get_comm() is SERIAL and get_comm("serial") is SERIAL
    assert world_size_hint({"PMI_SIZE": "4"}) == 4
    assert world_size_hint({"OMPI_COMM_WORLD_SIZE": "2"}) == 2
    assert world_size_hint({"PMI_SIZE": "x"}) == 1
    c = SerialComm()
    assert c.rank == 0 and c.size == 1 and c.is_root
    a = np.arange(4.0)
    assert c.bcast({"k": 1}) == {"k": 1} and c.allgather_obj(3) == [3]
    assert c.any(False, True) == (False, True)
    np.testing.assert_array_equal(c.allgatherv(a, [4]), a)
    c.bcast_array(a)
    c.barrier()
    assert c.check_identical(a) == 0.0
    np.testing.assert_array_equal(sharded_sum(3, lambda i: a * i, 4), a * 3)
    with pytest.raises(ValueError, match="mode"):
        get_comm("threads")


def test_launch_under_mpi_without_mpi4py_is_an_error(monkeypatch):
    """PMI_SIZE=2 (what mpiexec sets) without mpi4py: a clear ImportError instead of two
    independent trainings writing the same files."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` fail
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match="mpi4py"):
        get_comm()
    with pytest.raises(ImportError, match="mpi4py"):
        MpiComm()


def test_import_symref_does_not_import_mpi4py():
    env = checkout_env({k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))})
    code = ("import sys, symref, symref.train.fit, symref.cli, symref.train.parallel;"
            "c = symref.train.parallel.get_comm(); assert c.size == 1;"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_batch_loss_is_the_frame_mean_in_tree_order():
    """Mean over frames of all systems (systems of different sizes weigh by frame count);
    the serial communicator gives the same bits as no communicator."""
    model = demo_model(CFG, seed=2)
    data = [_teacher_system(7, 2, 0), _teacher_system(9, 3, 1)]
    pref = LossPrefactors(1.0, 10.0, 0.0)
    f, g = batch_loss_and_grad(model, data, pref)
    f2, g2 = batch_loss_and_grad(model, data, pref, comm=SERIAL)
    assert f == f2 and np.array_equal(g, g2)
    names = [n for n, _ in parameters(model)]
    losses, grads = [], []
    for s in data:
        for k in range(s.nframes):
            lf, gf = energy_loss_and_grad(model, s.coord[k:k + 1], s.atype, None, s.energy[k:k + 1],
                                          s.force[k:k + 1], None, pref, backend="numba")
            losses.append(lf)
            grads.append(np.concatenate([gf[n].reshape(-1) for n in names]))
    np.testing.assert_allclose(f, np.mean(losses), rtol=1e-14)
    assert_allclose_scaled(g, np.mean(grads, axis=0), 1e-12, 1e-14, scale_of=g)


def test_batch_loss_of_a_tensor_model_is_the_frame_mean():
    """Dipole model (deepmd-kit's tensor loss): frame by frame in the tree, the batch loss
    equals the loss of all frames at once (which averages over frames)."""
    from symref.train.loss import TensorPrefactors, tensor_loss_and_grad

    cfg = {"type_map": ["O", "H", "C"],
           "descriptor": {"type": "se_e2_a", "sel": [6, 12, 4], "rcut": 3.5, "rcut_smth": 0.5,
                          "neuron": [4, 8], "axis_neuron": 3, "type_one_side": False},
           "fitting_net": {"neuron": [10, 10], "type": "dipole", "sel_type": [0, 2]}}
    m = demo_model(cfg, seed=3)
    rng = np.random.default_rng(0)
    nf, atype = 3, np.array([0, 1, 1, 0, 1, 1, 2, 1, 0])
    coord = rng.uniform(0, 6, size=(nf, 9, 3))
    box = np.tile(np.diag([6.5, 6.1, 6.8]), (nf, 1, 1))
    label = rng.normal(size=(nf, 3))
    s = System(type_map=cfg["type_map"], atype=atype, coord=coord, box=box, name="dip",
               tensors={"dipole": label})
    pref = TensorPrefactors(pref=0.7, pref_atomic=0.0)
    f, g = batch_loss_and_grad(m, [s], pref)
    f_all, g_all = tensor_loss_and_grad(m, coord, atype, box, label, None, pref)
    np.testing.assert_allclose(f, f_all, rtol=1e-13)
    np.testing.assert_allclose(g, np.concatenate([g_all[n].reshape(-1) for n, _ in
                                                  parameters(m)]), rtol=1e-11, atol=1e-15)


# ------------------------------------------------------------------ under mpiexec


@pytest.fixture(scope="module")
def mpi_env():
    """Environment in which `mpiexec -n 2 python` starts mpi4py; skips, saying why, if none."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install -e '.[test]' or 'symref[mpi]')")
    exe = mpiexec_path()
    if exe is None:
        pytest.skip("no mpiexec on PATH or beside the Python executable (pip install mpich)")
    env = checkout_env({k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))})
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    probe = [exe, "-n", "2", sys.executable, "-c",
             "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2"]
    lib = str(Path(sys.prefix) / "lib")
    why = ""
    for extra in ({}, {"LD_LIBRARY_PATH": lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")}):
        try:
            r = subprocess.run(probe, env={**env, **extra}, capture_output=True, text=True,
                               timeout=60)
        except subprocess.TimeoutExpired:
            why = "timed out after 60 s"
            continue
        if r.returncode == 0:
            return exe, {**env, **extra}
        why = (r.stderr or r.stdout).strip()[-400:]
    pytest.skip(f"`mpiexec -n 2 python -c 'from mpi4py import MPI'` does not work here: {why}")


@pytest.fixture(scope="module")
def mpi_runs(mpi_env, tmp_path_factory):
    """`symref train` (L-BFGS, then Adam) on 9 frames of two systems of 7 and 9 atoms,
    under `mpiexec -n 1` and `-n 2`: {K: (output folder, stdout)}."""
    exe, env = mpi_env
    root = tmp_path_factory.mktemp("mpi")
    a, b = root / "sys7", root / "sys9"
    save_system(_teacher_system(7, 4, 0), a)  # 9 frames: 2 ranks get frames 0-3 and 4-8,
    save_system(_teacher_system(9, 5, 1), b)  # the second shard across both systems
    loss = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
            "limit_pref_f": 1.0}
    common = {"numb_steps": 6, "seed": 3, "save_ckpt": "model.ckpt", "disp_file": "lcurve.out"}
    lbfgs = {"model": CFG, "loss": loss, "optimizer": {"type": "lbfgs", "maxiter": 6},
             "training": {"training_data": {"systems": [str(a), str(b)]}, "save_freq": 2,
                          **common}}
    adam = {"model": CFG, "loss": loss,
            "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 2},
            "training": {"training_data": {"systems": [str(a), str(b)], "batch_size": 3},
                         "validation_data": {"systems": [str(b)], "numb_btch": 2},
                         "disp_freq": 2, "save_freq": 3, **common}}
    inputs = []
    for name, cfg in (("lbfgs", lbfgs), ("adam", adam)):
        p = root / f"{name}.json"
        p.write_text(json.dumps(cfg))
        inputs.append(str(p))
    runs = {}
    for k in (1, 2):
        out = root / f"k{k}"
        r = subprocess.run([exe, "-n", str(k), sys.executable, str(HERE / "mpi_train_driver.py"),
                            str(out), *inputs], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"mpiexec -n {k} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        runs[k] = (out, r.stdout)
    return runs


def _record(out, name, rank):
    return np.load(out / f"{name}_rank{rank}.npz")


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_two_ranks_give_the_single_process_history(mpi_runs, name):
    """Every loss evaluated (L-BFGS line search included; every Adam step) and the final
    parameters: 2 ranks against 1, and rank 1 against rank 0 -- bitwise (the assertion
    allows 1e-10 relative, what the task asks; the sum tree gives 0)."""
    one = _record(mpi_runs[1][0], name, 0)
    r0, r1 = _record(mpi_runs[2][0], name, 0), _record(mpi_runs[2][0], name, 1)
    n = {"lbfgs": 7, "adam": 6}[name]  # at least: L-BFGS evaluates once per iteration and more
    assert len(one["loss"]) >= n and len(r0["loss"]) == len(one["loss"])
    for rec in (r0, r1):
        rel = np.abs(rec["loss"] - one["loss"]) / np.abs(one["loss"])
        assert rel.max() <= 1e-10, rel.max()
        np.testing.assert_allclose(rec["gsq"], one["gsq"], rtol=1e-10)
        np.testing.assert_allclose(rec["x"], one["x"], rtol=1e-10, atol=1e-12)
    print(f"{name}: {len(one['loss'])} losses, max rel diff K=2 vs K=1 "
          f"{(np.abs(r0['loss'] - one['loss']) / np.abs(one['loss'])).max():.1e}, "
          f"parameters bitwise equal: {np.array_equal(r0['x'], one['x'])}")
    assert np.array_equal(r0["x"], r1["x"])  # the ranks agree bit for bit
    assert np.array_equal(r0["loss"], one["loss"]) and np.array_equal(r0["x"], one["x"])


def test_only_rank_zero_writes_files_and_prints(mpi_runs):
    out, stdout = mpi_runs[2]
    for name, files in (("lbfgs", {"model.ckpt.json", "model.yaml"}),
                        ("adam", {"model.ckpt.json", "model.yaml", "lcurve.out"})):
        written = {p.name for p in (out / name / "rank0").iterdir()}
        assert files <= written, written
        assert not list((out / name / "rank1").iterdir())
        single = {p.name for p in (mpi_runs[1][0] / name / "rank0").iterdir()}
        assert written == single
    assert (out / "adam" / "rank0" / "lcurve.out").read_text() == \
        (mpi_runs[1][0] / "adam" / "rank0" / "lcurve.out").read_text()
    assert stdout.count("lbfgs iter     1 ") == 1 and stdout.count("step       2 ") == 1
    assert "2 MPI ranks" in stdout and "2 MPI ranks" not in mpi_runs[1][1]


def test_a_failing_shard_raises_on_every_rank(mpi_env):
    """A frame that fails on rank 1 (say, too many neighbours) makes rank 1 raise its own
    error and rank 0 a ShardError naming it, instead of rank 0 waiting forever."""
    exe, env = mpi_env
    code = "\n".join([
        "import numpy as np",
        "from symref.train.parallel import ShardError, get_comm, sharded_sum",
        "comm = get_comm()",
        "def leaf(i):",
        "    if i == 7:",
        "        raise ValueError('frame 7 is bad')",
        "    return np.full(3, float(i))",
        "try:",
        "    sharded_sum(9, leaf, 3, comm)",
        "except Exception as e:",
        "    print(f'rank {comm.rank}: {type(e).__name__}: {e}', flush=True)",
        "total = sharded_sum(9, lambda i: np.full(3, float(i)), 3, comm)",  # still in step
        "print(f'rank {comm.rank}: total {total[0]}', flush=True)"])
    r = subprocess.run([exe, "-n", "2", sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rank 1: ValueError: frame 7 is bad" in r.stdout
    assert "rank 0: ShardError: MPI rank 1 failed on its shard of the batch: ValueError: " \
           "frame 7 is bad" in r.stdout
    assert r.stdout.count("total 36.0") == 2
