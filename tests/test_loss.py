"""Loss gradients (forces and virial included) against central finite differences.

Every parameter group (embedding and fitting w, b, idt; bias_atom_e) of a
two-type model with type_one_side false, resnet_dt everywhere, on two frames of
a small skewed periodic cell, with energy, force and virial terms.  The
analytic gradient must match a Richardson-extrapolated central difference to
1e-6 relative, and plain central differences at h and h/2 must converge to it
with order ≈ 2 (where the truncation error is above round-off).
"""
import numpy as np
import pytest

from symref.io.data import make_crystal, make_molecule
from symref.reference.env import env_mat_forward, env_mat_tangent
from symref.model.params import differentiated
from symref.train.loss import LossPrefactors, energy_loss, energy_loss_and_grad
from symref.model.build import demo_model
from symref.reference.nn import init_mlp, layer_backward_dual, layer_forward_dual

CFG = {"type_map": ["A", "B"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [60, 60],
                      "neuron": [4, 8, 16], "axis_neuron": 4, "resnet_dt": True,
                      "type_one_side": False},
       "fitting_net": {"neuron": [12, 12], "resnet_dt": True}}
PREF = LossPrefactors(pref_e=1.0, pref_f=10.0, pref_v=0.5)


@pytest.fixture(scope="module")
def problem():
    model = demo_model(CFG, seed=3)
    s = make_crystal(seed=1)
    rng = np.random.default_rng(0)
    coord = np.stack([s.coord[0], s.coord[0] + 0.05 * rng.normal(size=s.coord[0].shape)])
    box = np.repeat(s.box, 2, axis=0)
    ev = model.evaluate(coord, s.atype, box, backend="numpy")
    labels = (ev["energy"] + 0.3, ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape),
              ev["virial"] + 0.2 * rng.normal(size=(2, 3, 3)))
    loss, grads = energy_loss_and_grad(model, coord, s.atype, box, *labels, PREF)
    return model, (coord, s.atype, box), labels, loss, grads


def _group(name):
    kind = name.split(".")[-1] if name != "bias_atom_e" else "bias_atom_e"
    return name.split("[")[0] + "/" + kind


def test_every_parameter_group_matches_finite_differences(problem):
    model, (coord, atype, box), labels, loss, grads = problem
    rng = np.random.default_rng(1)
    seen, orders = set(), []
    for name, arr in differentiated(model):  # trained parameters and the fitting bias
        idx = tuple(int(rng.integers(0, n)) for n in arr.shape)
        old = arr[idx]
        g = grads[name][idx]

        def fd(h):
            arr[idx] = old + h
            lp = energy_loss(model, coord, atype, box, *labels, PREF)
            arr[idx] = old - h
            lm = energy_loss(model, coord, atype, box, *labels, PREF)
            arr[idx] = old
            return (lp - lm) / (2 * h)

        h = 2e-2
        f1, f2 = fd(h), fd(h / 2)
        richardson = (4 * f2 - f1) / 3
        scale = max(abs(g), 1e-3 * np.abs(grads[name]).max(), 1e-12)
        assert abs(richardson - g) <= 1e-6 * scale, (name, g, richardson)
        e1, e2 = abs(f1 - g), abs(f2 - g)
        roundoff = 1e3 * np.finfo(float).eps * abs(loss) / h
        if e2 > max(1e-9 * scale, roundoff):  # truncation error visible above round-off
            orders.append(np.log2(e1 / e2))
            assert 1.7 < orders[-1] < 2.3, (name, e1, e2)
        seen.add(_group(name))
    assert {"embedding/w", "embedding/b", "embedding/idt", "fitting/w", "fitting/b",
            "fitting/idt", "bias_atom_e/bias_atom_e"} <= seen
    assert len(orders) > 20  # the order check actually ran on most parameters


def test_gradient_detects_a_wrong_force_label_term(problem):
    """A check that can fail: dropping the force term changes the gradient a lot."""
    model, (coord, atype, box), labels, _, grads = problem
    _, g_noforce = energy_loss_and_grad(model, coord, atype, box, *labels,
                                        LossPrefactors(PREF.pref_e, 0.0, PREF.pref_v))
    name = "embedding[0].layer[2].w"
    assert np.abs(g_noforce[name] - grads[name]).max() > 1e-3 * np.abs(grads[name]).max()


def test_molecule_with_exclusions():
    cfg = {"type_map": ["C", "H", "O"],
           "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 20, 20],
                          "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": False,
                          "type_one_side": True, "exclude_types": [[0, 2]]},
           "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "exclude_types": [1]},
           "atom_exclude_types": [2], "pair_exclude_types": [[1, 1]]}
    model = demo_model(cfg, seed=5)
    s = make_molecule(natoms=9, ntypes=3, seed=4)
    ev = model.evaluate(s.coord, s.atype, backend="numpy")
    labels = (ev["energy"] - 0.2, ev["forces"] * 0.9)
    pref = LossPrefactors(1.0, 5.0, 0.0)
    _, grads = energy_loss_and_grad(model, s.coord, s.atype, None, *labels, pref=pref)
    for name, arr in differentiated(model):  # trained parameters and the fitting bias
        idx = tuple(0 for _ in arr.shape)
        old, h = arr[idx], 1e-2
        vals = []
        for hh in (h, h / 2):
            arr[idx] = old + hh
            lp = energy_loss(model, s.coord, s.atype, None, *labels, pref=pref)
            arr[idx] = old - hh
            lm = energy_loss(model, s.coord, s.atype, None, *labels, pref=pref)
            arr[idx] = old
            vals.append((lp - lm) / (2 * hh))
        rich = (4 * vals[1] - vals[0]) / 3
        scale = max(abs(grads[name][idx]), 1e-3 * np.abs(grads[name]).max(), 1e-12)
        assert abs(rich - grads[name][idx]) <= 1e-6 * scale, name


def test_dual_layer_backward_is_the_gradient_of_its_forward():
    rng = np.random.default_rng(2)
    for nin, nout in ((3, 3), (3, 6), (4, 5)):
        layer = init_mlp(rng, nin, [nout], resnet_dt=True)[0]
        x, xd = rng.normal(size=(5, nin)), rng.normal(size=(5, nin))
        yb, ydb = rng.normal(size=(5, nout)), rng.normal(size=(5, nout))

        def f():
            y, yd, _ = layer_forward_dual(x, xd, layer)
            return np.sum(yb * y) + np.sum(ydb * yd)

        _, _, c = layer_forward_dual(x, xd, layer)
        (xbar, xdbar), g = layer_backward_dual(yb, ydb, c)
        for arr, gr in ((layer.w, g["w"]), (layer.b, g["b"]), (x, xbar), (xd, xdbar)) + \
                (((layer.idt, g["idt"]),) if layer.idt is not None else ()):
            num = np.empty_like(arr)
            for i in np.ndindex(arr.shape):
                o = arr[i]
                arr[i] = o + 1e-6
                fp = f()
                arr[i] = o - 1e-6
                fm = f()
                arr[i] = o
                num[i] = (fp - fm) / 2e-6
            np.testing.assert_allclose(gr, num, rtol=1e-6, atol=1e-8)


def test_env_mat_tangent_is_the_directional_derivative():
    rng = np.random.default_rng(3)
    rij = rng.normal(size=(2, 5, 3)) * 1.5
    mask = np.ones((2, 5), dtype=bool)
    mask[1, 4] = False
    davg, dstd = rng.normal(size=(2, 5, 4)) * 0.1, rng.uniform(0.5, 2, size=(2, 5, 4))
    rdot = rng.normal(size=rij.shape)
    _, cache = env_mat_forward(rij, mask, davg, dstd, 4.0, 0.5, 0.1)
    tangent = env_mat_tangent(rdot, cache)
    h = 1e-6
    num = (env_mat_forward(rij + h * rdot, mask, davg, dstd, 4.0, 0.5, 0.1)[0]
           - env_mat_forward(rij - h * rdot, mask, davg, dstd, 4.0, 0.5, 0.1)[0]) / (2 * h)
    np.testing.assert_allclose(tangent, num, rtol=1e-7, atol=1e-9)
    assert np.all(tangent[1, 4] == 0.0)


@pytest.mark.parametrize("one_side,acts", [(True, ("tanh", "tanh")), (False, ("tanh", "tanh")),
                                           (False, ("softplus", "sigmoid")),
                                           (True, ("relu6", "softplus")),
                                           (False, ("gelu", "silu"))])
def test_fast_backend_matches_reference(one_side, acts):
    """backend="numba" (compact pairs, O(N) search, padded slots once per type pair)
    gives the reference's loss and gradient, with every kind of exclusion, for tanh and
    for activations of the kernels' other codes (descriptor, fitting)."""
    cfg = {"type_map": ["C", "H", "O"],
           "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [20, 20, 20],
                          "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": True,
                          "type_one_side": one_side, "exclude_types": [[0, 2]],
                          "activation_function": acts[0]},
           "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "exclude_types": [1],
                           "activation_function": acts[1]},
           "atom_exclude_types": [2], "pair_exclude_types": [[1, 1]]}
    model = demo_model(cfg, seed=5)
    from symref.fast import cpu_loss
    assert cpu_loss.unsupported_reason(model) is None  # the fast gradient really runs
    for s, box in ((make_molecule(natoms=9, ntypes=3, seed=4), None),):
        ev = model.evaluate(s.coord, s.atype, box, backend="numpy")
        rng = np.random.default_rng(0)
        labels = (ev["energy"] + 0.3, ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape),
                  ev["virial"] + 0.2 * rng.normal(size=(1, 3, 3)))
        l1, g1 = energy_loss_and_grad(model, s.coord, s.atype, box, *labels, PREF, backend="numpy")
        l2, g2 = energy_loss_and_grad(model, s.coord, s.atype, box, *labels, PREF, backend="numba")
        assert abs(l1 - l2) <= 1e-12 * abs(l1)
        for k in g1:
            assert np.abs(g1[k] - g2[k]).max() <= 1e-10 * max(np.abs(g1[k]).max(), 1e-300), k


def test_fast_backend_periodic(problem):
    model, (coord, atype, box), labels, loss, grads = problem
    l2, g2 = energy_loss_and_grad(model, coord, atype, box, *labels, PREF, backend="numba")
    assert abs(loss - l2) <= 1e-12 * abs(loss)
    for k in grads:
        assert np.abs(grads[k] - g2[k]).max() <= 1e-10 * max(np.abs(grads[k]).max(), 1e-300), k


def test_fast_backend_blocks_and_threads(problem, monkeypatch):
    """Tiny blocks (many per embedding group and per fitting type, cut at centre
    boundaries) give the reference gradient, and 1 or 2 threads give the same bits."""
    import numba

    import symref.fast.cpu_loss as fl

    model, (coord, atype, box), labels, loss, grads = problem
    monkeypatch.setattr(fl, "BLOCK_PAIRS", 7)
    monkeypatch.setattr(fl, "BLOCK_ATOMS", 3)
    outs = []
    old = numba.get_num_threads()
    try:
        for nt in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(nt)
            outs.append(energy_loss_and_grad(model, coord, atype, box, *labels, PREF,
                                             backend="numba"))
    finally:
        numba.set_num_threads(old)
    for k in grads:
        assert np.abs(grads[k] - outs[0][1][k]).max() <= 1e-10 * max(np.abs(grads[k]).max(),
                                                                     1e-300), k
        assert np.array_equal(outs[0][1][k], outs[1][1][k]), k


def test_cut_never_splits_a_centre():
    from symref.fast.cpu_loss import _cut

    keys = np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 4])
    ranges = _cut(keys, 1, 10, 3)
    assert ranges[0][0] == 1 and ranges[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    for s, e in ranges[1:]:
        assert keys[s] != keys[s - 1]
    assert (4, 9) in ranges  # a run longer than the block size stays whole


@pytest.mark.parametrize("desc_act,fit_act", [("gelu", "softplus"), ("silu", "sigmoid"),
                                              ("softplus", "gelu_tf")])
def test_non_tanh_forces_and_loss_gradient_pass_symref_checks(desc_act, fit_act):
    """With smooth non-tanh activations, forces match finite differences of the energy and
    the energy+force+virial loss gradient (which needs each activation's second derivative)
    matches finite differences of the loss (symref.checks, reference backend)."""
    from symref.checks import as_calculator, check_forces_fd, check_gradient_fd
    from symref.model.params import flat_parameters, parameters, set_flat_parameters

    cfg = {**CFG, "descriptor": {**CFG["descriptor"], "activation_function": desc_act},
           "fitting_net": {**CFG["fitting_net"], "activation_function": fit_act}}
    model = demo_model(cfg, seed=4)
    assert model.fitting.nets[1][0].activation == fit_act
    s = make_crystal(seed=2)
    coord, atype, box = s.coord[:1], s.atype, s.box[:1]

    class Ref:  # the reference backend, whatever the default
        evaluate = staticmethod(lambda c, a, box=None: model.evaluate(c, a, box, backend="numpy"))

    res = check_forces_fd(as_calculator(Ref, atype), coord[0], box[0], natoms_sample=3, rng=0)
    assert res.passed, str(res)
    rng = np.random.default_rng(5)
    ev = model.evaluate(coord, atype, box, backend="numpy")
    labels = (ev["energy"] + 0.3, ev["forces"] + 0.1 * rng.normal(size=ev["forces"].shape),
              ev["virial"] + 0.2 * rng.normal(size=(1, 3, 3)))
    theta0 = flat_parameters(model)

    def fun(theta):
        set_flat_parameters(model, theta)
        loss, grads = energy_loss_and_grad(model, coord, atype, box, *labels, PREF)
        return loss, np.concatenate([grads[n].reshape(-1) for n, _ in parameters(model)])

    res = check_gradient_fd(fun, theta0, ncomponents=30, rng=1)
    assert res.passed, str(res)
