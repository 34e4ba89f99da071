"""Fused dense-layer kernels (parallel and serial builds) against their NumPy twins."""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast.kernels import dense as kd

CASES = [(1, 25, 0, 1), (25, 50, 2, 1), (50, 100, 2, 1), (240, 240, 1, 1), (1600, 240, 0, 1),
         (240, 1, 0, 0), (25, 50, 2, 2), (50, 50, 1, 3), (1, 25, 0, 4), (240, 240, 1, 5),
         (25, 50, 2, 6), (50, 50, 1, 7), (1, 25, 0, 6)]
# nin, nout, shortcut, act (codes of symref.fast.kernels.activations.ACT_CODES)


def _check(ours, ref):
    assert_allclose_scaled(ours, ref, 1e-13, 1e-15, floor=1.0)


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("nin,nout,sc,act", CASES)
def test_dense_forward_backward_match_numpy(nin, nout, sc, act, serial):
    rng = np.random.default_rng(nin + nout + sc)
    B = 37
    x = rng.normal(size=(B, nin))
    z = rng.normal(size=(B, nout)) * 2
    b = rng.normal(size=nout)
    idt = rng.normal(size=nout) if sc else np.ones(nout)
    fwd = kd.dense_act_forward.serial if serial else kd.dense_act_forward
    bwd = kd.dense_act_backward.serial if serial else kd.dense_act_backward
    z1, z2 = z.copy(), z.copy()
    y1, y2 = np.empty((B, nout)), np.empty((B, nout))
    fwd(z1, b, idt, x, sc, act, y1)
    kd.dense_act_forward_ref(z2, b, idt, x, sc, act, y2)
    _check(z1, z2)
    _check(y1, y2)
    dy = rng.normal(size=(B, nout))
    for dyres in (np.empty((0, 0)), rng.normal(size=(B, nout))):
        outs = []
        for f in (bwd, kd.dense_act_backward_ref):
            dz, dxres = np.empty((B, nout)), np.zeros((B, nin))
            f(dy, dyres, z1, idt, sc, act, dz, dxres)
            outs.append((dz, dxres))
        _check(outs[0][0], outs[1][0])
        _check(outs[0][1], outs[1][1])
