"""The hybrid descriptor on the numba path (symref.fast.hybrid) against the reference.

* member_pair_list: the compact pairs of a member's slots are exactly the real slots of
  the reference's padded list restricted to member_slots (same atoms, vectors, order).
* DeepPot.evaluate with backend="numba" (no fallback warning) equals backend="numpy",
  every output (energy, forces, virial, atomic energies and virials), 1e-12 x max|ref|,
  on two frames of a skewed periodic cell and on a molecule, for hybrids of se_e2_a with
  se_e2_r and with se_e3 (different rcut/sel, descriptor and model exclusions), in both
  block modes of symref.fast.cpu.
* What the numba path cannot do exactly falls back with the warning naming the member.
"""
import copy
import warnings
from functools import partial

import numpy as np
import pytest
from test_se_e2_r import crystal_frames
from tolerance import assert_allclose_scaled

from symref.fast import cpu
from symref.fast.hybrid import evaluate_frame, member_pair_list
from symref.fast.kernels.neighbors import build_pair_list
from symref.io.data import make_molecule
from symref.model.build import demo_model
from symref.reference.descriptor.hybrid import member_slots
from symref.reference.neighbors import build_neighbor_list

TOL = 1e-12
A = {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [50, 60], "neuron": [4, 8, 16],
     "axis_neuron": 4, "resnet_dt": True, "type_one_side": False, "exclude_types": [[0, 0]]}
R = {"type": "se_e2_r", "rcut": 3.0, "rcut_smth": 0.8, "sel": [20, 30], "neuron": [4, 8],
     "resnet_dt": True, "exclude_types": [[0, 1]]}
E3 = {"type": "se_e3", "rcut": 3.2, "rcut_smth": 0.6, "sel": [12, 70], "neuron": [2, 4, 8],
      "resnet_dt": True}


def _model(members, **extra):
    cfg = {"type_map": ["A", "B"], "descriptor": {"type": "hybrid", "list": members},
           "fitting_net": {"neuron": [12, 12], "resnet_dt": True}, **extra}
    return demo_model(cfg, seed=3)


def _equal(model, coord, atype, box, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the reference
        fast = model.evaluate(coord, atype, box, backend="numba", **kw)
    ref = model.evaluate(coord, atype, box, backend="numpy")
    for k in ref:
        assert_allclose_scaled(fast[k], ref[k], TOL, TOL, err_msg=k)
    assert np.abs(ref["forces"]).max() > 1e-5  # not trivially zero


def test_member_pair_list_is_the_members_slots():
    """For each member, the compact pairs of member_pair_list are the real entries of the
    reference's padded list on member_slots, centre by centre, in slot order."""
    h = _model([A, R, E3]).descriptor
    coord, atype, box = crystal_frames(1)
    pl = build_pair_list(coord[0], atype, box[0], h.rcut, h.sel)
    nl = build_neighbor_list(coord[0], atype, box[0], h.rcut, h.sel)
    for m, idx in zip(h.members, member_slots(h)):
        mp = member_pair_list(pl, h.sel, m.sel)
        sub, rij = nl.nlist[:, idx], nl.rij[:, idx]
        real = sub >= 0
        np.testing.assert_array_equal(np.diff(mp.ptr), real.sum(axis=1))
        np.testing.assert_array_equal(mp.j, sub[real])
        np.testing.assert_array_equal(mp.rij, rij[real])
        np.testing.assert_array_equal(mp.slot, np.nonzero(real)[1])
        assert mp.counts.max() <= max(m.sel)


@pytest.mark.parametrize("second", [R, E3], ids=["se_e2_r", "se_e3"])
@pytest.mark.parametrize("mode", ["blocks", "kernels"])
def test_numba_equals_reference_periodic(second, mode, monkeypatch):
    """hybrid(se_e2_a, second) and hybrid(second, se_e2_a): every output, numba vs numpy,
    skewed periodic cell, 1e-12; both block modes of symref.fast.cpu."""
    monkeypatch.setenv("SYMREF_NUMBA_MODE", mode)
    coord, atype, box = crystal_frames(2)
    _equal(_model([A, second]), coord, atype, box)
    _equal(_model([second, A], pair_exclude_types=[[1, 1]]), coord, atype, box)


def test_numba_equals_reference_molecule():
    """hybrid(se_e2_a, se_e2_r, se_e3) on a molecule (no box), numba vs numpy, 1e-12; one
    atom type excluded from the energy (atom_exclude_types)."""
    mol = make_molecule(natoms=9, ntypes=2, seed=4)
    _equal(_model([A, R, E3]), mol.coord, mol.atype, None)
    _equal(_model([A, E3], atom_exclude_types=[1]), mol.coord, mol.atype, None)


def test_only_se_e2_a_members_and_small_blocks():
    """Two se_e2_a members (no padded rows are built), the second reading fewer slots than
    the hybrid finds neighbours (its nearest ones only), in blocks of a few atoms each
    (evaluate_frame directly): the reference's numbers."""
    model = _model([A, dict(A, rcut=3.0, sel=[3, 5], exclude_types=[])])
    coord, atype, box = crystal_frames(1)
    pl = build_pair_list(coord[0], atype, box[0], 4.0, [50, 60])
    assert (pl.counts > [3, 5]).all()  # every centre has more neighbours than the member reads
    ref = model.evaluate(coord, atype, box, backend="numpy")
    out = evaluate_frame(model, coord[0], atype, box[0],
                         se_e2_a_forward=partial(cpu.se_e2_a_member_forward, mode="blocks",
                                                 block_pairs=64),
                         se_e2_a_backward=cpu.se_e2_a_member_backward)
    for k in ("energy", "forces", "virial", "atom_energy", "atom_virial"):
        assert_allclose_scaled(out[k], ref[k][0], TOL, TOL, err_msg=k)


def test_fallbacks_name_the_member():
    """A member the kernels cannot evaluate exactly (statistics varying inside a type group
    of an se_e2_a member) makes the numba backend warn naming descriptor.list[k] and run
    the reference; float32 warns too."""
    model = copy.deepcopy(_model([R, A]))
    model.descriptor.members[1].davg[0, 3, 0] += 0.1
    assert cpu.unsupported_reason(model).startswith("descriptor.list[1]: davg[0] varies")
    coord, atype, box = crystal_frames(1)
    with pytest.warns(RuntimeWarning, match=r"descriptor.list\[1\]: davg\[0\] varies"):
        model.evaluate(coord, atype, box, backend="numba")
    with pytest.warns(RuntimeWarning, match="Hybrid runs float64 only on numba"):
        _model([A, R]).evaluate(coord, atype, box, backend="numba", precision="float32")


@pytest.mark.parametrize("act", ["relu", "softplus", "gelu"])
def test_non_tanh_activations(act):
    """deepmd-kit's other activations: the embedding nets of every member (se_e2_a, se_e2_r,
    se_e3) and a non-tanh fitting net run on numba (the kernels take every activation
    code; no fallback warning) and give the reference's numbers."""
    coord, atype, box = crystal_frames(1)
    model = _model([dict(A, activation_function=act), E3])
    for net in model.fitting.nets:  # the fitting runs on numba (symref.fast.cpu)
        for ly in net[:-1]:
            ly.activation = act
    _equal(model, coord, atype, box)
    _equal(_model([A, dict(E3, activation_function=act), dict(R, activation_function=act)]),
           coord, atype, box)
