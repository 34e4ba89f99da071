"""Activation table (symref.reference.activation): derivatives against finite differences,
deepmd-kit's kink conventions, deepmd-kit's own values and torch's derivatives, and the
dual (force-loss) layer backward for every activation."""
import numpy as np
import pytest
from fd import num_grad_inplace

from symref.reference.activation import (ACTIVATIONS, FROM_VALUE, activation, canonical_activation,
                                         derivatives_from_value)
from symref.reference.nn import init_mlp, layer_backward_dual, layer_forward_dual

SMOOTH = ["tanh", "gelu", "softplus", "sigmoid", "silu", "linear"]
# points away from relu/relu6 kinks (0 and 6), covering both tails of each function
Z = np.concatenate([np.linspace(-7.9, 7.9, 41), [-30.0, -12.5, 12.5, 30.0]]) + 1e-3


def _full(name, z):
    """(phi, phi', phi'') with the ``None`` conventions resolved (1 and 0)."""
    h, d, d2 = activation(name, z, second=True)
    return h, (np.ones_like(z) if d is None else d), (np.zeros_like(z) if d2 is None else d2)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivatives_match_finite_differences(name):
    """phi' and phi'' of every activation equal central differences of phi and phi'
    (h = 1e-5: truncation ~1e-10, round-off ~1e-11 relative to the function's scale)."""
    h = 1e-5
    z = Z[np.abs(Z - 6.0) > 1e-2]
    val, d, d2 = _full(name, z)
    vp, dp, _ = _full(name, z + h)
    vm, dm, _ = _full(name, z - h)
    scale = 1.0 + np.abs(val)
    np.testing.assert_allclose((vp - vm) / (2 * h), d, rtol=0, atol=1e-9 * scale.max())
    np.testing.assert_allclose((dp - dm) / (2 * h), d2, rtol=0, atol=1e-8)


def test_kinks_follow_deepmd_kit_torch_convention():
    """relu'(0) = 0, relu6'(0) = relu6'(6) = 0 (torch's threshold/hardtanh backward)."""
    z = np.array([0.0, 6.0, 3.0, -1.0, 7.0])
    assert activation("relu", z)[1].tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]
    assert activation("relu6", z)[1].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert activation("relu6", z)[0].tolist() == [0.0, 6.0, 3.0, 0.0, 6.0]


def test_names_aliases_and_refusal():
    """Lower-casing and None as deepmd-kit reads them; silut's spellings (custom_silu, :T)
    written as silut (T = 3) or silut:T; unknown names and bad thresholds refused by name."""
    assert canonical_activation("GELU") == "gelu"
    assert canonical_activation(None) == "none"
    assert ACTIVATIONS["gelu_tf"] is ACTIVATIONS["gelu"]
    assert ACTIVATIONS["none"] is ACTIVATIONS["linear"]
    for name, canon in (("SiLUT", "silut"), ("custom_silu", "silut"), ("silut:3", "silut"),
                        ("silut:2.5", "silut:2.5"), ("custom_silu:10", "silut:10.0")):
        assert canonical_activation(name) == canon
    for bad in ("swish", "silut:x", "custom_silu:inf"):
        with pytest.raises(ValueError, match=f"fitting_net.activation_function: .*'{bad}'"):
            canonical_activation(bad, "fitting_net.activation_function")


def test_tanh_is_numpys_tanh_bit_for_bit():
    """The tanh entry is np.tanh and 1 - tanh^2 exactly (tanh models keep their numbers)."""
    h, d, _ = activation("tanh", Z)
    assert np.array_equal(h, np.tanh(Z)) and np.array_equal(d, 1.0 - np.tanh(Z) ** 2)


def test_float32_stays_float32():
    """Every activation keeps a float32 input in float32 (the float32 model path)."""
    z = Z.astype(np.float32)
    for name in ACTIVATIONS:
        for a in activation(name, z, second=True):
            assert a is None or a.dtype == np.float32, name


@pytest.mark.deepmd
@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS)))
def test_values_match_deepmd_kit_dpmodel(name):
    """phi equals deepmd-kit's NumPy get_activation_fn to 1e-15 (relative to 1 + |phi|)."""
    network = pytest.importorskip("deepmd.dpmodel.utils.network")
    z = np.concatenate([Z, [0.0, 6.0]])
    ref = network.get_activation_fn(name)(z)
    np.testing.assert_allclose(activation(name, z)[0], ref, rtol=0,
                               atol=1e-15 * (1 + np.abs(ref)).max())


@pytest.mark.deepmd
@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS)))
def test_derivatives_match_deepmd_kit_torch(name, pt):
    """phi and phi' (including at the kinks 0 and 6) and phi'' equal autograd of deepmd-kit's
    PyTorch ActivationFn (the backend that computes deepmd-kit's forces)."""
    import torch
    from deepmd.pt.utils.utils import ActivationFn

    z = np.concatenate([Z[np.abs(Z) < 19], [0.0, 6.0]])  # torch's softplus is z above 20
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    yt = ActivationFn(name)(zt)
    (dt,) = torch.autograd.grad(yt.sum(), zt, create_graph=True)
    d2t = torch.autograd.grad(dt.sum(), zt, allow_unused=True)[0] if dt.requires_grad else None
    h, d, d2 = _full(name, z)
    np.testing.assert_allclose(h, yt.detach().numpy(), rtol=0, atol=1e-15 * (1 + np.abs(h)).max())
    np.testing.assert_allclose(d, dt.detach().numpy(), rtol=0, atol=2e-14)  # round-off
    d2_ref = np.zeros_like(z) if d2t is None else d2t.numpy()
    # round-off: gelu's 1 - tanh^2 and 1 + tanh cancel in the tails (~3e-14 seen, max |phi''| ~ 1)
    np.testing.assert_allclose(d2, d2_ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - {"none"}))
def test_dual_layer_backward_matches_fd(name):
    """layer_backward_dual is the gradient of <ybar, y> + <ydbar, yd> for every activation:
    the second-derivative term the force loss needs (relu/relu6 off their kinks)."""
    rng = np.random.default_rng(3)
    for nin, nout in ((3, 3), (4, 5)):
        layer = init_mlp(rng, nin, [nout], resnet_dt=True, activation=name)[0]
        x, xd = 2 * rng.normal(size=(6, nin)), rng.normal(size=(6, nin))
        yb, ydb = rng.normal(size=(6, nout)), rng.normal(size=(6, nout))

        def f():
            y, yd, _ = layer_forward_dual(x, xd, layer)
            return np.sum(yb * y) + np.sum(ydb * yd)

        (xbar, xdbar), g = layer_backward_dual(yb, ydb, layer_forward_dual(x, xd, layer)[2])
        pairs = [(layer.w, g["w"]), (layer.b, g["b"]), (x, xbar), (xd, xdbar)]
        if layer.idt is not None:
            pairs.append((layer.idt, g["idt"]))
        for arr, gr in pairs:
            np.testing.assert_allclose(gr, num_grad_inplace(f, arr), rtol=1e-6, atol=1e-8,
                                       err_msg=name)


@pytest.mark.parametrize("name", FROM_VALUE)
def test_derivatives_from_value_equal_the_table(name):
    """phi'(z) and phi''(z) recomputed from h = phi(z) alone (what the numba kernels keep) equal
    the table's, kinks included (relu, relu6 at 0 and 6)."""
    z = np.concatenate([Z, [0.0, 6.0, -800.0]])
    h, d, d2 = _full(name, z)
    dv, d2v = derivatives_from_value(name, h)
    np.testing.assert_allclose(dv, d, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d2v, d2, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="gelu"):
        derivatives_from_value("gelu", h)
