"""symref.reference.fitting: each backward is the gradient of its forward ("fake loss" checks).

For a forward ``f`` and a random ``dout``, ``L = <dout, f(inputs, params)>``; the
backward's ``d_input`` and parameter ``grads`` must equal central finite differences
of L (float64, h = 1e-6) for every input and every parameter array (fitting-net
``w``/``b``/``idt`` of each type, the per-type biases).  Bound ``1e-9 + 1e-7 max|FD|``:
the FD error of these smooth maps is ~1e-10, a wrong term costs O(1).  Types in
``exclude_types`` must get no gradient entry, and FD confirms they do not enter.
"""
import numpy as np
import pytest
from fd import num_grad, num_grad_inplace
from tolerance import assert_close

from symref.reference.fitting import (EnergyFitting, TensorFitting, energy_fitting_backward,
                                      energy_fitting_backward_dual, energy_fitting_forward,
                                      energy_fitting_forward_dual, tensor_fitting_backward,
                                      tensor_fitting_forward, tensor_head_backward,
                                      tensor_head_forward, vector_head_backward,
                                      vector_head_forward)
from symref.reference.nn import init_mlp

RTOL, ATOL = 1e-7, 1e-9
M1, M2 = 4, 2
ND = M1 * M2  # descriptor width
ATYPE = np.array([0, 1, 2, 1, 0])  # type 2 is excluded by the fittings below


def _is_pair(out):
    """The package convention: every backward returns the pair (d_input, grads)."""
    assert isinstance(out, tuple) and len(out) == 2
    return out


def _check_net_grads(loss, net_grads, nets, what):
    """Layer grads ``{type: [{"w", "b", "idt"}]}`` against FD of ``loss()``; nets absent
    from ``net_grads`` must not enter the loss (FD zero)."""
    for t, net in enumerate(nets):
        for k, ly in enumerate(net):
            for name in ("w", "b", "idt"):
                arr = getattr(ly, name)
                if arr is None:
                    assert t not in net_grads or net_grads[t][k][name] is None
                    continue
                fd = num_grad_inplace(loss, arr)
                if t in net_grads:
                    assert_close(net_grads[t][k][name], fd, RTOL, ATOL,
                                 what=f"{what} net {t} layer {k} {name}")
                else:
                    assert np.all(fd == 0.0), f"{what}: net {t} has no gradient but enters L"


# ------------------------------------------------------------------ energy
def _energy_fitting(rng):
    nets = [init_mlp(rng, ND, [6, 6], resnet_dt=True, out_dim=1) for _ in range(3)]
    return EnergyFitting([6, 6], nets, rng.normal(size=3), exclude_types=[2])


def test_energy_fitting_backward_is_the_gradient_of_its_forward():
    """dD and the grads {"nets", "bias_atom_e"} equal FD of <dE, E(D)>; without
    param_grads the same dD and grads None."""
    rng = np.random.default_rng(11)
    fit = _energy_fitting(rng)
    D = rng.normal(size=(len(ATYPE), ND))
    E, cache = energy_fitting_forward(D, ATYPE, fit)
    dE = rng.normal(size=E.shape)

    def loss(d=D):
        return float(np.sum(dE * energy_fitting_forward(d, ATYPE, fit)[0]))

    dD, grads = _is_pair(energy_fitting_backward(dE, cache, param_grads=True))
    assert_close(dD, num_grad(loss, D), RTOL, ATOL, what="dD")
    _check_net_grads(loss, grads["nets"], fit.nets, "energy")
    assert_close(grads["bias_atom_e"], num_grad_inplace(loss, fit.bias_atom_e), RTOL, ATOL,
                 what="bias_atom_e")
    dD2, none = _is_pair(energy_fitting_backward(dE, cache))
    assert none is None
    np.testing.assert_array_equal(dD2, dD)


def test_energy_fitting_backward_dual_is_the_gradient_of_value_and_tangent():
    """(D̄, Ḋ̄) and the grads of energy_fitting_backward_dual equal FD of
    <Ē, E(D)> + <Ė̄, Ė(D, Ḋ)> with respect to D, Ḋ and every parameter."""
    rng = np.random.default_rng(12)
    fit = _energy_fitting(rng)
    D, Dd = rng.normal(size=(len(ATYPE), ND)), rng.normal(size=(len(ATYPE), ND))
    _, _, cache = energy_fitting_forward_dual(D, Dd, ATYPE, fit)
    Ebar, Edbar = rng.normal(size=len(ATYPE)), rng.normal(size=len(ATYPE))

    def loss(d=D, dd=Dd):
        E, Ed, _ = energy_fitting_forward_dual(d, dd, ATYPE, fit)
        return float(np.sum(Ebar * E) + np.sum(Edbar * Ed))

    (Dbar, Ddbar), grads = _is_pair(energy_fitting_backward_dual(Ebar, Edbar, cache))
    assert_close(Dbar, num_grad(lambda d: loss(d=d), D), RTOL, ATOL, what="D̄")
    assert_close(Ddbar, num_grad(lambda dd: loss(dd=dd), Dd), RTOL, ATOL, what="Ḋ̄")
    _check_net_grads(loss, grads["nets"], fit.nets, "energy dual")
    assert_close(grads["bias_atom_e"], num_grad_inplace(loss, fit.bias_atom_e), RTOL, ATOL,
                 what="bias_atom_e")


# --------------------------------------------------------- equivariant heads
@pytest.mark.parametrize("kind,fit_diag", [("dipole", True), ("polar", True), ("polar", False)])
def test_tensor_fitting_backward_is_the_gradient_of_its_forward(kind, fit_diag):
    """(dD, dgr) and the grads {"nets", "bias_atom"} of tensor_fitting_backward equal FD
    of <dout, out(D, gr)> for the dipole and both polarizability heads (scale and
    the constant shift included)."""
    rng = np.random.default_rng(13)
    nout = M1 if (kind == "dipole" or fit_diag) else M1 * M1
    nets = [init_mlp(rng, ND, [5], resnet_dt=True, out_dim=nout) for _ in range(3)]
    fit = TensorFitting(kind, [5], nets, rng.normal(size=(3, nout)), M1, exclude_types=[2],
                        fit_diag=fit_diag, scale=rng.uniform(0.5, 2.0, size=3),
                        constant_matrix=rng.normal(size=3))
    D, gr = rng.normal(size=(len(ATYPE), ND)), rng.normal(size=(len(ATYPE), M1, 3))
    out, cache = tensor_fitting_forward(D, gr, ATYPE, fit)
    dout = rng.normal(size=out.shape)

    def loss(d=D, g=gr):
        return float(np.sum(dout * tensor_fitting_forward(d, g, ATYPE, fit)[0]))

    (dD, dgr), grads = _is_pair(tensor_fitting_backward(dout, cache, param_grads=True))
    assert_close(dD, num_grad(lambda d: loss(d=d), D), RTOL, ATOL, what="dD")
    assert_close(dgr, num_grad(lambda g: loss(g=g), gr), RTOL, ATOL, what="dgr")
    _check_net_grads(loss, grads["nets"], fit.nets, kind)
    assert_close(grads["bias_atom"], num_grad_inplace(loss, fit.bias_atom), RTOL, ATOL,
                 what="bias_atom")
    (dD2, dgr2), none = _is_pair(tensor_fitting_backward(dout, cache))
    assert none is None
    np.testing.assert_array_equal(dD2, dD)
    np.testing.assert_array_equal(dgr2, dgr)


def _check_head(forward, backward, a, b, rng, names):
    """``(da, db), None`` of a head's backward equal FD of ``<dout, forward(a, b)>``."""
    out, cache = forward(a, b)
    dout = rng.normal(size=out.shape)
    (da, db), grads = _is_pair(backward(dout, cache))
    assert grads is None
    assert_close(da, num_grad(lambda x: np.sum(dout * forward(x, b)[0]), a), RTOL, ATOL,
                 what=names[0])
    assert_close(db, num_grad(lambda x: np.sum(dout * forward(a, x)[0]), b), RTOL, ATOL,
                 what=names[1])


def test_vector_head_backward_is_the_gradient_of_its_forward():
    """(do, dW) of vector_head_backward equal FD of <ȳ, Wᵀo> (the dipole and VCNN vector head)."""
    rng = np.random.default_rng(14)
    o, W = rng.normal(size=(3, 6)), rng.normal(size=(3, 6, 3))
    _check_head(vector_head_forward, vector_head_backward, o, W, rng, ("do", "dW"))


@pytest.mark.parametrize("full", [False, True])
def test_tensor_head_backward_is_the_gradient_of_its_forward(full):
    """(dP, dW) of tensor_head_backward equal FD of <Ȳ, Wᵀ P W> for diagonal weights and
    for a full, deliberately non-symmetric P (and a non-symmetric Ȳ), so no symmetry
    assumption hides a missing term."""
    rng = np.random.default_rng(15)
    P = rng.normal(size=(3, 5, 5) if full else (3, 5))
    W = rng.normal(size=(3, 5, 3))
    _check_head(tensor_head_forward, tensor_head_backward, P, W, rng, ("dP", "dW"))
