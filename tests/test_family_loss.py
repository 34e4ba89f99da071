"""The loss gradient of se_e2_r, se_e3 and hybrid models on numba (symref.fast.family_loss).

* energy_loss_and_grad with backend="numba" runs symref.fast.family_loss (no fallback
  warning) and gives the reference's loss and the gradient of every parameter array to
  1e-12 x max|reference array|, with energy, force and virial terms, on two frames of a
  skewed periodic cell and on a molecule, for se_e2_r, se_e3 and hybrid(se_e2_a, se_e2_r,
  se_e3), with descriptor, pair, atom and fitting exclusions and non-tanh activations.
* The result does not depend on the block size or the number of threads (bit for bit
  across threads at one block size).
* A model the fast gradient does not cover (an se_e2_a member whose statistics vary
  inside a neighbour-type group) falls back to the reference with a RuntimeWarning that
  names the member, and still gives the reference's numbers.
"""
import warnings

import numba
import numpy as np
import pytest
from test_se_e2_r import crystal_frames

from symref.fast import family_loss
from symref.io.data import make_molecule
from symref.model.build import demo_model
from symref.train.loss import LossPrefactors, energy_loss_and_grad

TOL = 1e-12
PREF = LossPrefactors(pref_e=1.0, pref_f=10.0, pref_v=0.5)
R = {"type": "se_e2_r", "rcut": 3.0, "rcut_smth": 0.8, "sel": [20, 30], "neuron": [4, 8],
     "resnet_dt": True, "exclude_types": [[0, 1]], "activation_function": "softplus"}
E3 = {"type": "se_e3", "rcut": 3.2, "rcut_smth": 0.6, "sel": [12, 40], "neuron": [2, 4, 8],
      "resnet_dt": True, "exclude_types": [[1, 1]], "activation_function": "gelu"}
A = {"type": "se_e2_a", "rcut": 3.6, "rcut_smth": 0.5, "sel": [30, 50], "neuron": [4, 8],
     "axis_neuron": 2, "resnet_dt": True, "type_one_side": False, "exclude_types": [[0, 0]]}
DESCRIPTORS = {"se_e2_r": R, "se_e3": E3, "hybrid": {"type": "hybrid", "list": [A, R, E3]}}


def _model(name, **extra):
    cfg = {"type_map": ["A", "B"], "descriptor": DESCRIPTORS[name],
           "fitting_net": {"neuron": [12, 12], "resnet_dt": True,
                           "activation_function": "silu"}, **extra}
    return demo_model(cfg, seed=3)


def _problem(model, periodic=True):
    if periodic:
        coord, atype, box = crystal_frames(2)
    else:
        s = make_molecule(natoms=9, ntypes=2, seed=4)
        coord, atype, box = s.coord, s.atype, None
    ev = model.evaluate(coord, atype, box, backend="numpy")
    rng = np.random.default_rng(5)
    labels = (ev["energy"] + 0.3, ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape),
              ev["virial"] + 0.2 * rng.normal(size=ev["virial"].shape))
    return coord, atype, box, labels


def _fast(model, coord, atype, box, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the reference
        return energy_loss_and_grad(model, coord, atype, box, *labels, PREF, backend="numba")


def _assert_same(ref, fast, tol=TOL):
    (l1, g1), (l2, g2) = ref, fast
    assert abs(l1 - l2) <= tol * abs(l1)
    assert g1.keys() == g2.keys()
    for k in g1:
        assert np.abs(g1[k] - g2[k]).max() <= tol * max(np.abs(g1[k]).max(), 1e-300), k


@pytest.mark.parametrize("name", list(DESCRIPTORS))
@pytest.mark.parametrize("periodic", [True, False])
def test_fast_loss_gradient_is_the_reference(name, periodic):
    """backend="numba" (family_loss, no fallback) = the reference loss and gradient, every
    parameter array, 1e-12 relative, with every kind of exclusion and non-tanh activations."""
    model = _model(name, pair_exclude_types=[[0, 0]], atom_exclude_types=[1] if periodic else [])
    assert family_loss.unsupported_reason(model) is None
    coord, atype, box, labels = _problem(model, periodic)
    ref = energy_loss_and_grad(model, coord, atype, box, *labels, PREF, backend="numpy")
    _assert_same(ref, _fast(model, coord, atype, box, labels))
    assert any(np.abs(v).max() > 0 for k, v in ref[1].items() if "embedding" in k)


def test_blocks_and_threads_do_not_change_the_gradient(monkeypatch):
    """Small blocks (many per net) give the same gradient to 1e-12; one and two threads at
    the same block size give it bit for bit."""
    model = _model("hybrid")
    coord, atype, box, labels = _problem(model)
    big = _fast(model, coord, atype, box, labels)
    monkeypatch.setattr(family_loss, "BLOCK_SCALARS", 16)
    old = numba.get_num_threads()
    try:
        runs = []
        for nt in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(nt)
            runs.append(_fast(model, coord, atype, box, labels))
    finally:
        numba.set_num_threads(old)
    _assert_same(big, runs[0])
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        assert np.array_equal(runs[0][1][k], runs[1][1][k]), k


def test_uncovered_model_falls_back_with_a_warning():
    """An se_e2_a member with statistics varying inside a type group: RuntimeWarning naming
    descriptor.list[0]; the numbers are the reference's."""
    model = _model("hybrid")
    model.descriptor.members[0].davg[0, 0, 0] += 0.01
    assert "descriptor.list[0]" in family_loss.unsupported_reason(model)
    coord, atype, box, labels = _problem(model)
    ref = energy_loss_and_grad(model, coord, atype, box, *labels, PREF, backend="numpy")
    with pytest.warns(RuntimeWarning, match=r"descriptor\.list\[0\]"):
        fast = energy_loss_and_grad(model, coord, atype, box, *labels, PREF, backend="numba")
    _assert_same(ref, fast, 0.0)


@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_fast_loss_with_atomic_energy_prefactor_force_and_relative_f(name):
    """The ae, pf and relative_f terms of the energy loss (per-atom energy seeds through
    symref.fast.cpu_loss.fitting_dual, weighted force residuals) and an excluded atom type
    give the reference's loss and every gradient array to 1e-12 relative on the numba path
    of se_e2_r, se_e3 and hybrid (the se_e2_a case is in tests/test_loss_terms.py)."""
    model = _model(name, atom_exclude_types=[1])
    coord, atype, box, labels = _problem(model, periodic=False)
    ev = model.evaluate(coord, atype, box, backend="numpy")
    rng = np.random.default_rng(6)
    extra = {"atom_ener": ev["atom_energy"] + 0.1 * rng.normal(size=ev["atom_energy"].shape),
             "atom_pref": rng.uniform(0.5, 2.0, size=ev["atom_energy"].shape)}
    pref = LossPrefactors(pref_e=0.7, pref_f=3.0, pref_v=0.5, pref_ae=2.0, pref_pf=5.0,
                          relative_f=0.5)
    ref = energy_loss_and_grad(model, coord, atype, box, *labels, pref, backend="numpy",
                               **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the reference
        fast = energy_loss_and_grad(model, coord, atype, box, *labels, pref, backend="numba",
                                    **extra)
    _assert_same(ref, fast)
