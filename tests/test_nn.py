"""MLP layers (deepmd-kit residual rule): backward equals finite differences; shortcut rules."""
import numpy as np
import pytest

from symref.reference.nn import Layer, init_mlp, layer_forward, mlp_backward, mlp_forward
from fd import num_grad
from tolerance import assert_close


@pytest.mark.parametrize("neuron,resnet_dt", [([4, 8, 16], True), ([5, 5, 7], False), ([3, 6, 6], True)])
def test_mlp_backward_matches_fd(neuron, resnet_dt):
    rng = np.random.default_rng(0)
    layers = init_mlp(rng, 3, neuron, resnet_dt=resnet_dt, out_dim=2)
    x = rng.normal(size=(5, 3))
    c = rng.normal(size=(5, 2))  # random cotangent: L = sum(c * out)
    out, cache = mlp_forward(x, layers)
    dx, grads = mlp_backward(c, cache)
    assert_close(dx, num_grad(lambda z: (mlp_forward(z, layers)[0] * c).sum(), x), 1e-7, atol=1e-9, what="dx")
    for k, ly in enumerate(layers):
        for name in ("w", "b", "idt"):
            p = getattr(ly, name)
            if p is None:
                assert grads[k][name] is None
                continue

            def loss(v, ly=ly, name=name):
                old = getattr(ly, name).copy()
                setattr(ly, name, v)
                val = (mlp_forward(x, layers)[0] * c).sum()
                setattr(ly, name, old)
                return val
            assert_close(grads[k][name], num_grad(loss, p), 1e-7, atol=1e-9, what=f"layer {k} {name}")


def test_shortcut_rules():
    """y = tanh(xW+b)*idt + {x, [x,x], 0} by width (deepmd-kit's rule), checked by hand."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3))
    for nout, sc in ((3, x), (6, np.concatenate([x, x], -1)), (4, 0.0)):
        w, b, idt = rng.normal(size=(3, nout)), rng.normal(size=nout), rng.normal(size=nout)
        y, _ = layer_forward(x, Layer(w, b, idt, "tanh", True))
        np.testing.assert_allclose(y, np.tanh(x @ w + b) * idt + sc, rtol=1e-14)
    y, _ = layer_forward(x, Layer(w, b, None, "linear", False))
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-14)


def test_bad_layer():
    with pytest.raises(ValueError, match="activation"):
        Layer(np.zeros((2, 2)), None, None, "swish")
    with pytest.raises(ValueError, match="shape"):
        Layer(np.zeros((2, 3)), np.zeros(2))
