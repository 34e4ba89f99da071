"""symref.fast.cpu.energy_fitting_blocks (the fitting nets of the se_e2_r, se_e3 and hybrid
numba paths) against its reference twin symref.fast.se_e3.fitting_reference.

Atomic energies and dD = d(sum of alive atoms' energies)/dD agree to 1e-12 x max|ref| for
tanh and the kernels' other activation codes, with resnet shortcuts, a fitting
exclude_types (energy 0, no gradient), atom_exclude_types (energy computed, no gradient),
blocks smaller than a type's atoms, and both kernel modes; with arbitrary seed weights too.
"""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast import cpu
from symref.fast.se_e3 import fitting_reference
from symref.model.build import demo_model

TOL = 1e-12


@pytest.mark.parametrize("act", ["tanh", "softplus", "gelu", "relu6", "silu"])
@pytest.mark.parametrize("mode", ["blocks", "kernels"])
def test_energy_fitting_blocks_is_the_reference(act, mode, monkeypatch):
    """energy_fitting_blocks == fitting_reference (module docstring)."""
    monkeypatch.setenv("SYMREF_NUMBA_MODE", mode)
    cfg = {"type_map": ["A", "B", "C"],
           "descriptor": {"type": "se_e2_r", "rcut": 3.0, "rcut_smth": 0.5, "sel": [4, 4, 4],
                          "neuron": [4, 6]},
           "fitting_net": {"neuron": [8, 8, 8], "resnet_dt": True, "exclude_types": [2],
                           "activation_function": act},
           "atom_exclude_types": [1]}
    model = demo_model(cfg, seed=4)
    rng = np.random.default_rng(0)
    atype = rng.integers(0, 3, size=23)
    D = rng.normal(size=(23, 6))  # nloc x dim
    e_ref, dD_ref = fitting_reference(model, D, atype)
    e, dD = cpu.energy_fitting_blocks(model, D, atype, block_atoms=3)
    assert_allclose_scaled(e, e_ref, TOL, TOL)
    assert_allclose_scaled(dD, dD_ref, TOL, TOL)
    assert np.all(e[atype == 2] == 0) and np.all(dD[atype != 0] == 0)
    assert np.abs(dD[atype == 0]).max() > 1e-3 and np.all(e[atype == 1] != 0)
    weight = rng.random(23)  # any seed weights (symref.lammps: centres of a cluster)
    e_ref, dD_ref = fitting_reference(model, D, atype, weight)
    e, dD = cpu.energy_fitting_blocks(model, D, atype, weight, block_atoms=5)
    assert_allclose_scaled(e, e_ref, TOL, TOL)
    assert_allclose_scaled(dD, dD_ref, TOL, TOL)
    assert np.abs(dD[atype == 1]).max() > 1e-3
