"""Dual-mode (tangent-carrying) kernels against their NumPy twins, and the stacked
multilayer passes built on them against the reference :func:`symref.reference.nn.mlp_forward_dual` /
:func:`symref.reference.nn.mlp_backward_dual` (which tests/test_loss.py checks by finite differences)."""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast.cpu_loss import mlp_backward_dual_stacked, mlp_forward_dual_stacked
from symref.fast.kernels import dual as kdual
from symref.reference.nn import init_mlp, mlp_backward_dual, mlp_forward_dual

CASES = [(1, 25, 0, 1), (25, 50, 2, 1), (50, 50, 1, 1), (240, 1, 0, 0), (25, 50, 2, 2),
         (50, 50, 1, 3), (1, 25, 0, 4), (6, 6, 1, 5), (25, 50, 2, 6), (6, 6, 1, 7)]
# nin, nout, shortcut, act (codes of symref.fast.kernels.activations.ACT_CODES)


def _check(ours, ref):
    assert ours.shape == ref.shape
    if ref.size:
        assert_allclose_scaled(ours, ref, 1e-13, 1e-15, floor=1.0)


@pytest.mark.parametrize("nin,nout,sc,act", CASES)
def test_dual_act_forward_backward_match_numpy(nin, nout, sc, act):
    rng = np.random.default_rng(nin + nout + sc)
    B = 37
    X = rng.normal(size=(2, B, nin))
    Z = rng.normal(size=(2, B, nout)) * 2
    b, idt = rng.normal(size=nout), rng.normal(size=nout)
    outs = []
    for f in (kdual.dual_act_forward, kdual.dual_act_forward_ref):
        Zc, Y = Z.copy(), np.empty((2, B, nout))
        f(Zc, b, idt, X, sc, act, Y)
        outs.append((Zc, Y))
    for a, r in zip(*outs):
        _check(a, r)
    Zh = outs[0][0]  # [h; ż], what the backward kernel reads
    Ybar = rng.normal(size=(2, B, nout))
    outs = []
    for f in (kdual.dual_act_backward, kdual.dual_act_backward_ref):
        Zbar = np.empty((2, B, nout))
        Xres = np.zeros((2, B, nin)) if sc else np.empty((2, 0, 0))
        gb, gidt = np.ones(nout), np.ones(nout)  # += : start from nonzero
        f(Ybar, Zh, idt, sc, act, Zbar, Xres, gb, gidt)
        outs.append((Zbar, Xres, gb, gidt))
    for a, r in zip(*outs):
        _check(a, r)


def test_pair_kernels_match_numpy():
    rng = np.random.default_rng(1)
    n, P, M1 = 6, 40, 7
    c = np.sort(rng.integers(0, n, size=P))
    R, Rd = rng.normal(size=(P, 4)), rng.normal(size=(P, 4))
    G = rng.normal(size=(2, P, M1))
    outs = []
    for f in (kdual.pair_outer_dual, kdual.pair_outer_dual_ref):
        T, Td = np.ones((n, 4, M1)), np.ones((n, 4, M1))
        f(c, R, Rd, G, T, Td)
        outs.append((T, Td))
    for a, r in zip(*outs):
        _check(a, r)
    Tbar, Tdbar = rng.normal(size=(n, M1, 4)), rng.normal(size=(n, M1, 4))
    outs = []
    for f in (kdual.pair_contract_dual, kdual.pair_contract_dual_ref):
        Gbar = np.empty((2, P, M1))
        f(c, Tbar, Tdbar, R, Rd, Gbar)
        outs.append(Gbar)
    _check(*outs)


@pytest.mark.parametrize("act", ["tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "silu"])
@pytest.mark.parametrize("nin,neuron,out_dim", [(1, [4, 8, 16], None), (12, [6, 6], 1)])
def test_stacked_mlp_matches_reference_dual(nin, neuron, out_dim, act):
    """An embedding-like net (widths doubling: shortcut [x, x]) and a fitting-like net
    (equal widths with idt, linear output), for every activation the kernels have: the
    kernels' derivatives from h (and phi'' in the backward) equal the reference's from z."""
    rng = np.random.default_rng(7)
    layers = init_mlp(rng, nin, neuron, resnet_dt=True, out_dim=out_dim, activation=act)
    B = 23
    x, xd = rng.normal(size=(B, nin)), rng.normal(size=(B, nin))
    y, yd, cache = mlp_forward_dual(x, xd, layers)
    Y, scache = mlp_forward_dual_stacked(np.stack([x, xd]), layers)
    _check(Y[0], y)
    _check(Y[1], yd)
    ybar, ydbar = rng.normal(size=y.shape), rng.normal(size=y.shape)
    (xbar, xdbar), grads = mlp_backward_dual(ybar, ydbar, cache)
    Xbar, sgrads = mlp_backward_dual_stacked(np.stack([ybar, ydbar]), scache)
    _check(Xbar[0], xbar)
    _check(Xbar[1], xdbar)
    for g, sg in zip(grads, sgrads):
        for k in ("w", "b", "idt"):
            assert (g[k] is None) == (sg[k] is None), k
            if g[k] is not None:
                _check(sg[k], g[k])
