"""symref.lammps ghost mode (one and two MPI ranks) for se_e2_r, se_e3 and hybrid models.

What is proven: LAMMPS's ``run 0`` in ghost mode (the rank's atoms plus ghost images to
2·rcut + skin, no periodicity, first-shell energies recomputed; these descriptors take the
plain scheme, no folding) reports the energy, forces and virial of ``model.evaluate`` on
the periodic frame to <= 1e-10 relative, on one rank and on two (``mpiexec -n 2``), for a
DFT water frame (192 atoms, 12.4 Å cell) and models with non-trivial statistics and
exclusions; ``symref.lammps.evaluate_cluster`` refuses ``fold`` for them.  Uses the
worker and helpers of tests/test_lammps.py (LAMMPS in subprocesses).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_lammps import check_against_evaluate, run_worker, water

from symref.model.build import demo_model

R = {"type": "se_e2_r", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 40], "neuron": [4, 8],
     "exclude_types": [[0, 1]]}
E3 = {"type": "se_e3", "rcut": 3.5, "rcut_smth": 0.5, "sel": [12, 24], "neuron": [2, 4, 8]}
A = {"type": "se_e2_a", "rcut": 4.5, "rcut_smth": 0.5, "sel": [24, 48], "neuron": [4, 8],
     "axis_neuron": 4}
DESCRIPTORS = {"se_e2_r": R, "se_e3": E3, "hybrid": {"type": "hybrid", "list": [A, E3, R]}}


def _model(name):
    return demo_model({"type_map": ["O", "H"], "descriptor": DESCRIPTORS[name],
                       "fitting_net": {"neuron": [12, 12], "resnet_dt": True}}, seed=3)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, lammps_ok):
    from symref.io.model_file import save_model

    out = {}
    for name in DESCRIPTORS:
        path = tmp_path_factory.mktemp("lmp_family") / f"{name}.json"
        save_model(_model(name), path)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def lammps_ok():
    from test_lammps import _lammps_reason

    reason = _lammps_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", list(DESCRIPTORS))
@pytest.mark.parametrize("nprocs", [1, 2])
def test_ghost_mode_matches_evaluate(tmp_path, model_files, shared_data, name, nprocs):
    """Ghost mode on ``nprocs`` ranks = model.evaluate of the periodic frame (energy,
    forces, virial, 1e-10 relative); every rank saw ghosts and evaluated first-shell
    centres (no folding for these descriptors)."""
    fr = water(shared_data, 1)
    r = run_worker(tmp_path, model_files[name], fr, nprocs, "--mode", "ghost")
    errs = check_against_evaluate(model_files[name], fr, r)
    stats = json.loads(str(r["stats"]))
    assert len(stats) == nprocs and sum(s["local"] for s in stats) == 192
    assert all(s["modes"] == ["ghost"] and s["ghosts"] > 0 and s["shell"] > 0 for s in stats)
    assert np.isfinite(list(errs.values())).all()


def test_cluster_refuses_fold():
    """evaluate_cluster: ``fold`` exists for se_e2_a only; the others say so."""
    from symref.lammps import evaluate_cluster

    coord = np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(ValueError, match="fold is implemented for se_e2_a models only, not SeE3"):
        evaluate_cluster(_model("se_e3"), coord, np.array([0, 1, 1]), ncentre=3, nvirial=3,
                         fold=np.arange(3))
