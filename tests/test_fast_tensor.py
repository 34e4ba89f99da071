"""Dipole and polarizability models on the fast path (``symref.fast.cpu_tensor``,
``DeepTensor.evaluate(backend="numba")``) against the NumPy reference.

Targets (issue 19): values, atomic values and position derivatives to 1e-12 relative
(to the largest entry of each array), and the tensor-loss parameter gradient to
1e-12 relative, for the dipole and both polarizability heads (``fit_diag`` and full),
with and without ``sel_type``, periodic and open, ``type_one_side`` both ways, in both
execution modes (the serial kernel builds on threads, "blocks"; the parallel builds,
"kernels").  The fast loss gradient's finite-difference check is in
tests/test_tensor_models.py (parametrized over both backends).
"""
import inspect
import warnings

import numpy as np
import pytest
from test_tensor_models import VARIANTS, _model, _system

from symref.fast import cpu_tensor
from symref.model.tensor import DeepTensor
from symref.train.loss import TensorPrefactors, tensor_loss_and_grad

TOL = 1e-12
MODES = ["blocks", "kernels"]


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _evaluate_both(m, coord, atype, box, monkeypatch, mode, **kw):
    ref = m.evaluate(coord, atype, box, backend="numpy", **kw)
    monkeypatch.setenv("SYMREF_NUMBA_MODE", mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the reference
        out = m.evaluate(coord, atype, box, backend="numba", **kw)
    assert out.keys() == ref.keys()
    return ref, out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("one_side", [False, True])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_values_and_derivatives_match_reference(variant, periodic, one_side, mode, monkeypatch):
    """Global and atomic outputs and d(output)/dx of two frames (three types, padded
    slots with nonzero constant rows, many periodic images) equal the reference to 1e-12
    relative, both kernel builds."""
    m = _model(variant, one_side=one_side)
    coord, atype, box = _system(np.random.default_rng(0), 2)
    ref, out = _evaluate_both(m, coord, atype, box if periodic else None, monkeypatch, mode,
                              derivative=True)
    for k in ref:
        assert np.abs(ref[k]).max() > 0, k
        assert _rel(out[k], ref[k]) <= TOL, (k, _rel(out[k], ref[k]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_gradient_matches_reference(variant, mode, monkeypatch):
    """tensor_loss_and_grad(backend="numba") gives the reference's loss and the gradient
    of every parameter array (embedding w, b, idt incl. the padded slots' share; fitting
    nets; bias_atom) to 1e-12 relative."""
    m = _model(variant)
    coord, atype, box = _system(np.random.default_rng(9))
    rng = np.random.default_rng(10)
    shape = m.fitting.out_shape
    label, atom_label = rng.normal(size=(2,) + shape), rng.normal(size=(2, 9) + shape)
    pref = TensorPrefactors(pref=0.7, pref_atomic=1.3)
    lr, gr = tensor_loss_and_grad(m, coord, atype, box, label, atom_label, pref,
                                  backend="numpy")
    monkeypatch.setenv("SYMREF_NUMBA_MODE", mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lf, gf = tensor_loss_and_grad(m, coord, atype, box, label, atom_label, pref,
                                      backend="numba")
    assert abs(lf - lr) <= TOL * lr
    assert gf.keys() == gr.keys()
    for k in gr:
        assert _rel(gf[k], gr[k]) <= TOL, (k, _rel(gf[k], gr[k]))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sel_type_selecting_no_atom_gives_zero(backend):
    """A frame without any atom of the selected types: valid zero outputs and derivatives
    (not an error) on both paths, and a zero loss gradient for the descriptor."""
    m = _model("dipole_sel_type")  # sel_type [0, 2]: type 1 carries nothing
    rng = np.random.default_rng(3)
    coord = rng.uniform(0, 6, size=(1, 5, 3))
    atype = np.ones(5, dtype=int)
    box = np.diag([6.5, 6.1, 6.8])[None]
    out = m.evaluate(coord, atype, box, derivative=True, backend=backend)
    for k in ("dipole", "atom_dipole", "dipole_derivative"):
        assert np.all(np.isfinite(out[k])) and not out[k].any(), k
    assert out["atom_dipole"].shape == (1, 5, 3)
    loss, g = tensor_loss_and_grad(m, coord, atype, box, np.ones((1, 3)), None,
                                   backend=backend)
    assert loss == pytest.approx(3.0 / 3)  # (0 - 1)^2 per component, averaged
    assert all(not v.any() for v in g.values())


def test_numba_is_the_default_and_fallbacks_warn():
    """evaluate's default backend is "numba"; a model the fast path cannot evaluate exactly
    (statistics varying inside a neighbour-type group) and backend="cuda" run the
    reference with a RuntimeWarning naming the reason."""
    assert inspect.signature(DeepTensor.evaluate).parameters["backend"].default == "numba"
    m = _model("dipole")
    coord, atype, box = _system(np.random.default_rng(0), 1)
    ref = m.evaluate(coord, atype, box, backend="numpy")
    m.descriptor.davg = m.descriptor.davg.copy()
    m.descriptor.davg[0, 1] += 0.1  # slot 1 differs from slot 0 of neighbour type 0
    assert cpu_tensor.unsupported_reason(m) is not None
    with pytest.warns(RuntimeWarning, match="varies inside the slots"):
        m.evaluate(coord, atype, box)
    m = _model("dipole")
    with pytest.warns(RuntimeWarning, match="no GPU path"):
        out = m.evaluate(coord, atype, box, backend="cuda")
    np.testing.assert_array_equal(out["dipole"], ref["dipole"])
    with pytest.raises(ValueError, match="backend"):
        tensor_loss_and_grad(m, coord, atype, box, np.zeros((1, 3)), backend="cuda")


def test_one_layer_embedding_nets_train_on_the_reference():
    """One-layer embedding nets evaluate on the fast path (1e-12) but their loss gradient
    comes from the reference, with a warning saying so."""
    cfg = {"type_map": ["O", "H", "C"],
           "descriptor": {"type": "se_e2_a", "sel": [6, 12, 4], "rcut": 3.5, "rcut_smth": 0.5,
                          "neuron": [8], "axis_neuron": 3},
           "fitting_net": {"type": "dipole", "neuron": [10]}}
    from symref.model.build import demo_model

    m = demo_model(cfg, seed=1)
    coord, atype, box = _system(np.random.default_rng(0), 1)
    ref = m.evaluate(coord, atype, box, derivative=True, backend="numpy")
    out = m.evaluate(coord, atype, box, derivative=True)
    for k in ref:
        assert _rel(out[k], ref[k]) <= TOL, k
    with pytest.warns(RuntimeWarning, match="one-layer"):
        _, g = tensor_loss_and_grad(m, coord, atype, box, np.ones((1, 3)), backend="numba")
    _, gr = tensor_loss_and_grad(m, coord, atype, box, np.ones((1, 3)), backend="numpy")
    for k in gr:
        np.testing.assert_array_equal(g[k], gr[k])


@pytest.mark.data
@pytest.mark.parametrize("kind", ["dipole", "polar"])
def test_water_frame_example_model_size(water_frame, kind):
    """192-atom water (../shared/data) with deepmd-kit's water-dipole example sizes
    (embedding 25-50-100, axis 6, fitting 100x3, rcut 4): values and derivatives to
    1e-12 relative."""
    from symref.model.build import demo_model

    coord, atype, box, type_map = water_frame
    cfg = {"type_map": type_map,
           "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 4.0, "rcut_smth": 3.8,
                          "neuron": [25, 50, 100], "axis_neuron": 6, "resnet_dt": False},
           "fitting_net": {"type": kind, "neuron": [100, 100, 100], "sel_type": [0],
                           "resnet_dt": True}}
    m = demo_model(cfg, seed=4)
    ref = m.evaluate(coord, atype, box, derivative=True, backend="numpy")
    out = m.evaluate(coord, atype, box, derivative=True, backend="numba")
    for k in ref:
        assert _rel(out[k], ref[k]) <= TOL, (k, _rel(out[k], ref[k]))


def test_bad_input_same_errors_as_reference():
    """A neighbour count above sel and a type index out of range raise the reference's
    ValueError, word for word, before any kernel runs; truncate=True then matches the
    reference to 1e-12."""
    from symref.model.build import demo_model

    cfg = {"type_map": ["O", "H", "C"],
           "descriptor": {"type": "se_e2_a", "sel": [1, 1, 1], "rcut": 3.5, "rcut_smth": 0.5,
                          "neuron": [4, 8], "axis_neuron": 3},
           "fitting_net": dict(neuron=[10, 10], **VARIANTS["polar_full"])}
    m = demo_model(cfg, seed=2)
    coord, atype, box = _system(np.random.default_rng(0), 1)
    for bad_atype, match in ((atype, "neighbours of type"), (atype + 5, "type")):
        msgs = []
        for backend in ("numpy", "numba"):
            with pytest.raises(ValueError, match=match) as e:
                m.evaluate(coord, bad_atype, box, backend=backend)
            msgs.append(str(e.value))
        assert msgs[0] == msgs[1]
    ref = m.evaluate(coord, atype, box, truncate=True, derivative=True, backend="numpy")
    out = m.evaluate(coord, atype, box, truncate=True, derivative=True, backend="numba")
    for k in ref:
        assert _rel(out[k], ref[k]) <= TOL, k


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant,acts", [("dipole", ("softplus", "relu6")),
                                          ("polar_full", ("sigmoid", "relu")),
                                          ("dipole", ("gelu", "silu"))])
def test_non_tanh_activations_match_reference(variant, acts, mode, monkeypatch):
    """Kernel activations other than tanh (embedding, fitting hidden layers) in tensor models:
    outputs, d(output)/dx and the loss gradient equal the reference's to 1e-12, no fallback."""
    m = _model(variant)
    for net in m.descriptor.embeddings:
        for ly in net:
            ly.activation = acts[0]
    for net in m.fitting.nets:
        for ly in net[:-1]:
            ly.activation = acts[1]
    coord, atype, box = _system(np.random.default_rng(0), 2)
    ref, out = _evaluate_both(m, coord, atype, box, monkeypatch, mode, derivative=True)
    for k in ref:
        assert _rel(out[k], ref[k]) <= TOL, (k, _rel(out[k], ref[k]))
    rng = np.random.default_rng(10)
    shape = m.fitting.out_shape
    label, atom_label = rng.normal(size=(2,) + shape), rng.normal(size=(2, 9) + shape)
    pref = TensorPrefactors(pref=0.7, pref_atomic=1.3)
    lr, gr = tensor_loss_and_grad(m, coord, atype, box, label, atom_label, pref, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lf, gf = tensor_loss_and_grad(m, coord, atype, box, label, atom_label, pref,
                                      backend="numba")
    assert abs(lf - lr) <= TOL * lr
    for k in gr:
        assert _rel(gf[k], gr[k]) <= TOL, (k, _rel(gf[k], gr[k]))
