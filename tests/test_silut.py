"""deepmd-kit 3.2's ``silut`` activation (``silut``, ``silut:T``, ``custom_silu[:T]``) on every
path: the reference against deepmd-kit (values from its NumPy backend, derivatives from its
PyTorch ``SiLUT`` by autograd, whole models by its PyTorch backend), the numba kernels
(code ``silut``, T = 3) against the reference, finite differences of forces and of the loss
gradient; a threshold without a kernel code falls back to the reference by name.

deepmd-kit accepts these names in ``activation_function`` (``deepmd.common.VALID_ACTIVATION``
has ``silut``; ``deepmd.dpmodel.utils.network.get_activation_fn`` and
``deepmd.pt.utils.utils.ActivationFn`` parse ``silut:T`` and ``custom_silu``); its model
compression refuses them (tests/test_compress_activations.py).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from symref.io.model_dict import model_from_dict, model_to_dict
from symref.model.build import demo_model
from symref.reference.activation import activation, canonical_activation, silut_constants

# the existing activation tests, run here for silut (kept out of pytest's collection)
from test_fastpath import test_activations_with_kernels_run_on_the_fast_path as _fast_eval
from test_kernels_dual import test_stacked_mlp_matches_reference_dual as _dual
from test_loss import test_fast_backend_matches_reference as _fast_loss
from test_loss import test_non_tanh_forces_and_loss_gradient_pass_symref_checks as _loss_fd

NAMES = ["silut", "silut:2.0", "custom_silu:5", "custom_silu"]
Z = np.concatenate([np.linspace(-40, 40, 8001), [2.0, 3.0, 5.0, -800.0, 800.0]])


@pytest.mark.deepmd
@pytest.mark.parametrize("name", NAMES)
def test_values_equal_deepmd_numpy_backend(name):
    """phi(z) equals deepmd-kit's NumPy backend (``get_activation_fn``) to 4 ulp of
    max(1, |phi|), both branches, the threshold itself and the tails included."""
    pytest.importorskip("deepmd")
    from deepmd.dpmodel.utils.network import get_activation_fn

    ref = get_activation_fn(name)(Z.copy())
    ours = activation(name, Z)[0]
    eps = np.finfo(np.float64).eps
    assert np.all(np.abs(ours - ref) <= 4 * eps * np.maximum(1.0, np.abs(ref)))


@pytest.mark.deepmd
@pytest.mark.parametrize("name", NAMES)
def test_derivatives_equal_deepmd_pytorch_autograd(name):
    """phi' and phi'' equal deepmd-kit's PyTorch ``ActivationFn(name)`` differentiated by
    autograd (its SiLUT backward and double backward) to 1e-14 of max(1, |ref|)."""
    pytest.importorskip("deepmd")
    import deepmd_ref

    deepmd_ref.import_deepmd_pt()
    import torch
    from deepmd.pt.utils.utils import ActivationFn

    z = torch.tensor(Z[np.abs(Z) < 100], dtype=torch.float64, requires_grad=True)
    y = ActivationFn(name)(z)
    (d1,) = torch.autograd.grad(y.sum(), z, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), z)
    _, dh, d2h = activation(name, z.detach().numpy(), second=True)
    for ours, ref in ((dh, d1.detach().numpy()), (d2h, d2.numpy())):
        assert np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))) <= 1e-14


def test_derivatives_are_finite_differences_and_constants():
    """phi' and phi'' are central differences of phi and phi' (h = 1e-6, 1e-8 away from the
    threshold, where phi'' jumps); a = silu'(T), c = silu(T): phi is C¹ at T."""
    for t in (3.0, 2.0):
        name = f"silut:{t}"
        z = np.linspace(-8, 12, 2001)
        z = z[np.abs(z - t) > 1e-3]
        h = 1e-6
        v, d1, d2 = activation(name, z, second=True)
        vp, d1p, _ = activation(name, z + h, second=True)
        vm, d1m, _ = activation(name, z - h, second=True)
        np.testing.assert_allclose(d1, (vp - vm) / (2 * h), rtol=0, atol=1e-8)
        np.testing.assert_allclose(d2, (d1p - d1m) / (2 * h), rtol=0, atol=1e-8)
        a, c = silut_constants(t)
        below, at = activation("silu", np.array([t]), True), activation(name, np.array([t]), True)
        assert abs(at[0][0] - c) == 0.0 and abs(below[0][0] - c) <= 1e-15 * c
        assert abs(at[1][0] - a) <= 1e-15 * a and abs(below[1][0] - a) <= 1e-15 * a


@pytest.mark.deepmd
@pytest.mark.parametrize("desc_act,fit_act", [("silut", "silut:2.0"), ("custom_silu:1.5", "silut")])
def test_model_equals_deepmd_and_files_round_trip(water_frame, desc_act, fit_act):
    """A deepmd-kit se_e2_a model with silut embedding and fitting nets: symref's evaluation
    (the reference) gives the energy, atomic energies, forces and virial of deepmd-kit's
    PyTorch backend to 1e-10 of the largest entry; the dict symref writes back names the
    activation as symref canonicalises it and deepmd-kit evaluates it to the same numbers."""
    pytest.importorskip("deepmd")
    import deepmd_ref
    from test_tabulation import WATER

    coord, atype, box, _ = water_frame
    d = deepmd_ref.make_deepmd_model_dict(True, 3, stats="type", activation_function=desc_act,
                                          fitting_activation_function=fit_act, **WATER)
    m = model_from_dict(copy.deepcopy(d))
    assert m.descriptor.embeddings[0][0].activation == canonical_activation(desc_act)
    out = m.evaluate(coord, atype, box, backend="numpy")
    back = model_to_dict(m)
    assert back["fitting"]["activation_function"] == canonical_activation(fit_act)
    for dd in (d, back):
        ref = deepmd_ref.pt_eval(dd, coord, atype, box, do_atomic_virial=False)
        for key in ref:
            a = np.asarray(out[key]).reshape(np.shape(ref[key]))
            assert np.max(np.abs(a - ref[key])) <= 1e-10 * max(1.0, np.max(np.abs(ref[key]))), key


def test_numba_paths_take_silut():
    """silut (T = 3) has a kernel code: evaluation equals the reference without fallback
    (and differs from tanh), the fast loss gradient equals the reference's, the stacked dual
    kernels equal the reference dual pass (the existing activation tests, run for silut)."""
    _fast_eval("silut", "silut")
    _fast_loss(False, ("silut", "silut"))
    _dual(1, [4, 8, 16], None, "silut")
    _dual(12, [6, 6], 1, "silut")


def test_forces_and_loss_gradient_pass_fd():
    """Forces are the gradient of the energy and the loss gradient (second derivatives of
    silut) matches finite differences of the loss, silut and silut:2.0 (symref.checks)."""
    _loss_fd("silut", "silut:2.0")


def test_threshold_without_a_code_falls_back_by_name():
    """silut:2.0 has no kernel code: backend="numba" falls back to the reference with a
    RuntimeWarning naming it (the same numbers)."""
    from symref.io.data import make_crystal

    s = make_crystal(seed=3)
    cfg = {"type_map": ["A", "B"],
           "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [60, 60],
                          "neuron": [4, 8], "axis_neuron": 4,
                          "activation_function": "silut:2.0"},
           "fitting_net": {"neuron": [8, 8]}}
    m = demo_model(cfg, seed=1)
    with pytest.warns(RuntimeWarning, match="silut:2.0"):
        out = m.evaluate(s.coord, s.atype, s.box, backend="numba")
    ref = m.evaluate(s.coord, s.atype, s.box, backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg["descriptor"]["activation_function"] = "custom_silu:3"  # = silut: a code
        m = demo_model(cfg, seed=1)
        assert m.descriptor.activation_function == "silut"
        m.evaluate(s.coord, s.atype, s.box, backend="numba")
