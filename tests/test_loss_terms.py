"""The energy loss's atomic-energy (``ae``), prefactor-force (``pf``, ``atom_pref``) and
``relative_f`` terms (symref.train.loss): exact gradient against central finite
differences, the fast path against the reference, and the per-system label rules.
That the loss itself is deepmd-kit's is proved step by step in tests/test_train_vs_dp.py.
"""
import numpy as np
import pytest

from symref.io.data import make_molecule
from symref.model.build import demo_model
from symref.model.params import differentiated
from symref.train.loss import (LossPrefactors, energy_errors, energy_labels, energy_loss,
                               energy_loss_and_grad)

CFG = {"type_map": ["C", "H", "O"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 20, 20],
                      "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": True,
                      "type_one_side": False, "exclude_types": [[0, 2]]},
       "fitting_net": {"neuron": [8, 8], "resnet_dt": True},
       "atom_exclude_types": [2]}
#: every term on, relative forces
PREF = LossPrefactors(pref_e=0.7, pref_f=3.0, pref_v=0.0, pref_ae=2.0, pref_pf=5.0,
                      relative_f=0.5)


@pytest.fixture(scope="module")
def problem():
    model = demo_model(CFG, seed=5)
    s = make_molecule(natoms=9, ntypes=3, seed=4)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * np.random.default_rng(1).normal(
        size=s.coord[0].shape)])
    ev = model.evaluate(coord, s.atype, backend="numpy")
    rng = np.random.default_rng(0)
    labels = (ev["energy"] - 0.2, ev["forces"] + 0.3 * rng.normal(size=ev["forces"].shape))
    extra = {"atom_ener": ev["atom_energy"] + 0.1 * rng.normal(size=ev["atom_energy"].shape),
             "atom_pref": rng.uniform(0.5, 2.0, size=ev["atom_energy"].shape)}
    return model, (coord, s.atype, None), labels, extra


def _loss(model, inputs, labels, extra, pref):
    return energy_loss(model, *inputs, *labels, pref=pref, **extra)


def test_ae_pf_relative_f_gradient_matches_finite_differences(problem):
    """With the e, f, ae and pf terms and relative forces (and an excluded atom type,
    whose atomic energies are 0), dL/dθ of every parameter group (one entry each) matches
    a Richardson-extrapolated central difference of the loss to 1e-6 relative."""
    model, inputs, labels, extra = problem
    _, grads = energy_loss_and_grad(model, *inputs, *labels, pref=PREF, **extra)
    rng = np.random.default_rng(2)
    for name, arr in differentiated(model):
        idx = tuple(int(rng.integers(0, n)) for n in arr.shape)
        old, h, vals = arr[idx], 1e-2, []
        for hh in (h, h / 2):
            arr[idx] = old + hh
            lp = _loss(model, inputs, labels, extra, PREF)
            arr[idx] = old - hh
            lm = _loss(model, inputs, labels, extra, PREF)
            arr[idx] = old
            vals.append((lp - lm) / (2 * hh))
        rich = (4 * vals[1] - vals[0]) / 3
        scale = max(abs(grads[name][idx]), 1e-3 * np.abs(grads[name]).max(), 1e-12)
        assert abs(rich - grads[name][idx]) <= 1e-6 * scale, (name, grads[name][idx], rich)


@pytest.mark.parametrize("term", ["pref_ae", "pref_pf", "relative_f"])
def test_each_term_changes_loss_and_gradient(problem, term):
    """A check that can fail: switching one term off changes the loss and the
    fitting-net gradient by far more than round-off (so the FD test covers each)."""
    from dataclasses import replace

    model, inputs, labels, extra = problem
    l1, g1 = energy_loss_and_grad(model, *inputs, *labels, pref=PREF, **extra)
    off = replace(PREF, **{term: None if term == "relative_f" else 0.0})
    l0, g0 = energy_loss_and_grad(model, *inputs, *labels, pref=off, **extra)
    name = "fitting[0].layer[0].w"
    assert abs(l1 - l0) > 1e-3 * l1
    assert np.abs(g1[name] - g0[name]).max() > 1e-3 * np.abs(g1[name]).max()


def test_fast_backend_matches_reference_with_every_term(problem):
    """backend="numba" (per-atom energy seeds in symref.fast.cpu_loss) gives the
    reference's loss to 1e-12 and gradient to 1e-10 relative."""
    model, inputs, labels, extra = problem
    l1, g1 = energy_loss_and_grad(model, *inputs, *labels, pref=PREF, backend="numpy", **extra)
    l2, g2 = energy_loss_and_grad(model, *inputs, *labels, pref=PREF, backend="numba", **extra)
    assert abs(l1 - l2) <= 1e-12 * abs(l1)
    for k in g1:
        assert np.abs(g1[k] - g2[k]).max() <= 1e-10 * max(np.abs(g1[k]).max(), 1e-300), k


def test_missing_labels(problem):
    """Explicit arrays: a nonzero pref_ae / pref_pf without its labels is a ValueError
    naming them.  Systems (deepmd-kit's find_atom_ener / find_atom_pref): without the file
    the term is off; use_default_pf gives q = 1; rmse_ae/rmse_pf only with the labels."""
    from symref.io.data import System

    model, inputs, labels, extra = problem
    with pytest.raises(ValueError, match="atom_ener"):
        energy_loss_and_grad(model, *inputs, *labels, pref=PREF, atom_pref=extra["atom_pref"])
    with pytest.raises(ValueError, match="atom_pref"):
        energy_loss_and_grad(model, *inputs, *labels, pref=PREF, atom_ener=extra["atom_ener"])
    coord, atype, _ = inputs
    bare = System(["C", "H", "O"], atype, coord, None, labels[0], labels[1])
    ae, q, p = energy_labels(bare, PREF)
    assert ae is None and q is None and p.pref_ae == 0 and p.pref_pf == 0
    from dataclasses import replace

    ae, q, p = energy_labels(bare, replace(PREF, use_default_pf=True))
    assert ae is None and np.all(q == 1) and p.pref_pf == PREF.pref_pf
    assert set(energy_errors(model, bare, PREF)) == {"rmse", "rmse_e", "rmse_f"}
    full = System(["C", "H", "O"], atype, coord, None, labels[0], labels[1], tensors=extra)
    errs = energy_errors(model, full, PREF)
    assert set(errs) == {"rmse", "rmse_e", "rmse_f", "rmse_ae", "rmse_pf"}
    assert errs["rmse"] ** 2 == pytest.approx(_loss(model, inputs, labels, extra, PREF),
                                              rel=1e-12)


@pytest.mark.deepmd
@pytest.mark.parametrize("relative_f", [None, 0.5])
def test_loss_value_and_displayed_errors_are_deepmd_kits(problem, pt, relative_f):
    """deepmd-kit's EnergyStdLoss (PyTorch) on symref's predictions (with the integer atom
    mask its model returns: type 2 excluded) and the same labels, at a learning rate
    mid-schedule: its loss equals symref's (scheduled prefactors rounded to float32 by
    dp_weights, as deepmd-kit's float32 find_* flags round them; 1/N in float32,
    dp_inv_natoms) to 1e-13 relative, and its rmse, rmse_e, rmse_f, rmse_ae, rmse_pf
    equal energy_errors'; with float64 prefactors the loss would differ by ~1e-8
    (checked: the rounding matters)."""
    import torch
    from deepmd.pt.loss.ener import EnergyStdLoss

    from symref.io.data import System
    from symref.train.loss import dp_weights, scheduled_prefactors

    model, (coord, atype, _), labels, extra = problem
    kw = dict(start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000.0, limit_pref_f=1.0,
              start_pref_ae=2.0, limit_pref_ae=0.5, start_pref_pf=50.0, limit_pref_pf=1.0)
    start = LossPrefactors(*(kw[f"start_pref_{q}"] for q in "ef"), 0.0,
                           kw["start_pref_ae"], kw["start_pref_pf"], relative_f)
    limit = LossPrefactors(*(kw[f"limit_pref_{q}"] for q in "ef"), 0.0,
                           kw["limit_pref_ae"], kw["limit_pref_pf"], relative_f)
    lr, lr0 = 1.4677992676220697e-4, 1e-3
    loss_dp = EnergyStdLoss(starter_learning_rate=lr0, relative_f=relative_f, **kw)
    nf, n = coord.shape[:2]
    ev = model.evaluate(coord, atype, backend="numpy")
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    pred = {"energy": t(ev["energy"]).reshape(nf, 1), "force": t(ev["forces"]),
            "atom_energy": t(ev["atom_energy"]).reshape(nf, n, 1),
            # the integer atom mask deepmd-kit's model returns (0 on atom_exclude_types)
            "mask": torch.as_tensor(np.tile(~np.isin(atype, [2]), (nf, 1)).astype(np.int32))}
    label = {"energy": t(labels[0]).reshape(nf, 1), "force": t(labels[1]),
             "atom_ener": t(extra["atom_ener"]),
             "atom_pref": t(np.repeat(extra["atom_pref"], 3, axis=1)),
             **{f"find_{k}": np.float32(1.0) for k in ("energy", "force", "atom_ener",
                                                       "atom_pref")}}
    _, l_dp, more = loss_dp({"atype": torch.as_tensor(np.tile(atype, (nf, 1)))},
                            lambda **_: dict(pred), label, n, lr)
    pref = dp_weights(scheduled_prefactors(start, limit, lr, lr0))
    ours = _loss(model, (coord, atype, None), labels, extra, pref)
    assert abs(ours - l_dp.item()) <= 1e-13 * l_dp.item()
    f64 = _loss(model, (coord, atype, None), labels, extra,
                scheduled_prefactors(start, limit, lr, lr0))
    assert abs(f64 - l_dp.item()) > 1e-10 * l_dp.item()
    s = System(["C", "H", "O"], atype, coord, None, labels[0], labels[1], tensors=extra)
    errs = energy_errors(model, s, pref, backend="numpy")
    for k in ("rmse", "rmse_e", "rmse_f", "rmse_ae", "rmse_pf"):
        assert errs[k] == pytest.approx(float(more[k]), rel=1e-12), k


@pytest.mark.deepmd
def test_gradient_is_deepmd_kits_autograd(problem, pt):
    """The loss gradient of every trained array equals deepmd-kit's: its PyTorch model
    (deserialized from symref's) and EnergyStdLoss with e, f, ae, pf and relative_f,
    backpropagated by torch, to 1e-12 of each array's largest entry.  (Before symref
    rounded 1/N to float32 as deepmd-kit does, the energy term's gradient differed by
    2^-25 relative on water, 3e-8.)"""
    import torch
    from deepmd.pt.loss.ener import EnergyStdLoss
    from deepmd.pt.model.model import BaseModel

    from symref.io.model_file import model_from_dict, model_to_dict
    from symref.model.params import parameters
    from symref.train.loss import dp_weights, scheduled_prefactors

    model, (coord, atype, _), labels, extra = problem
    kw = dict(start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000.0, limit_pref_f=1.0,
              start_pref_ae=2.0, limit_pref_ae=0.5, start_pref_pf=50.0, limit_pref_pf=1.0)
    start = LossPrefactors(0.02, 1000.0, 0.0, 2.0, 50.0, 0.5)
    limit = LossPrefactors(1.0, 1.0, 0.0, 0.5, 1.0, 0.5)
    lr, lr0 = 3e-4, 1e-3
    dpm = BaseModel.deserialize(model_to_dict(model))
    dpm.train()
    nf, n = coord.shape[:2]
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    inp = {"coord": t(coord.reshape(nf, -1)), "atype": torch.as_tensor(np.tile(atype, (nf, 1)))}
    label = {"energy": t(labels[0]).reshape(nf, 1), "force": t(labels[1]),
             "atom_ener": t(extra["atom_ener"]),
             "atom_pref": t(np.repeat(extra["atom_pref"], 3, axis=1)),
             **{f"find_{k}": np.float32(1.0) for k in ("energy", "force", "atom_ener",
                                                       "atom_pref")}}
    _, loss, _ = EnergyStdLoss(starter_learning_rate=lr0, relative_f=0.5, **kw)(
        inp, dpm, label, n, lr)
    loss.backward()
    with torch.no_grad():  # the gradients, named as symref names parameters
        for p in dpm.parameters():
            p.copy_(p.grad if p.grad is not None else torch.zeros_like(p))
    theirs = dict(parameters(model_from_dict(dpm.serialize())))
    pref = dp_weights(scheduled_prefactors(start, limit, lr, lr0))
    ours, grads = energy_loss_and_grad(model, coord, atype, None, *labels, pref=pref, **extra)
    assert abs(ours - loss.item()) <= 1e-13 * loss.item()
    for name, _ in parameters(model):
        g = grads[name]
        assert np.abs(theirs[name] - g).max() <= 1e-12 * max(np.abs(g).max(), 1e-300), name
