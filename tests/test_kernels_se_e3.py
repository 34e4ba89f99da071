"""symref.fast.kernels.se_e3 against their NumPy twins, and the se_e3 and se_e2_r numba
paths against the reference.

Each kernel (parallel and serial builds) equals its twin (the reference's formulas on
the unpacked nets) to 1e-12 x max|ref| elementwise, for nets with the residual
shortcuts deepmd-kit uses (x and [x, x]), ragged group sizes and an empty type; the
twins equal the reference descriptor itself (se_e3_forward/backward); DeepPot.evaluate
with backend="numba" equals backend="numpy" to the same tolerance on a periodic cell.
"""
import numpy as np
import pytest
from test_se_e2_r import crystal_frames
from tolerance import assert_allclose_scaled

from symref.fast.kernels import se_e3 as ks
from symref.model.build import demo_model
from symref.reference.descriptor.se_e3 import se_e3_backward, se_e3_forward

TOL = 1e-12


def _desc(sel, neuron, act="tanh"):
    cfg = {"type_map": ["A", "B", "C"][:len(sel)],
           "descriptor": {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": sel,
                          "neuron": neuron, "resnet_dt": True, "activation_function": act},
           "fitting_net": {"neuron": [4]}}
    return demo_model(cfg, seed=2).descriptor


ACT_CASES = [([5, 7], [4, 8, 16], "tanh"), ([3, 0, 6], [2, 4, 4], "tanh"), ([6], [8], "tanh"),
             ([5, 7], [4, 8, 16], "softplus"), ([3, 0, 6], [2, 4, 4], "gelu"),
             ([5, 7], [2, 4, 8], "relu"), ([5, 7], [4, 8], "relu6"), ([6], [4, 8], "sigmoid"),
             ([5, 7], [4, 8, 16], "silu"), ([5, 7], [4, 8], "linear")]


@pytest.mark.parametrize("sel,neuron,act", ACT_CASES)
@pytest.mark.parametrize("build", ["parallel", "serial"])
def test_kernels_equal_twins_and_reference(sel, neuron, act, build):
    """Forward and backward kernels vs twins vs the reference descriptor (exclusion mask
    through X: its zero rows are skipped by the kernels, which leaves D and the kept rows'
    gradients unchanged), for every activation code of the kernels."""
    d = _desc(sel, neuron, act)
    assert {ly.activation for net in d.embeddings for ly in net} == {act}
    rng = np.random.default_rng(1)
    nloc = 5
    R = rng.normal(size=(nloc, d.nnei, 4))  # nloc x nnei x 4
    keep = rng.random((nloc, d.nnei)) > 0.2
    X = np.ascontiguousarray(R[..., 1:] * keep[..., None])
    nets = ks.pack_nets(d.embeddings)
    ranges, c = ks.pair_table(d.sel)
    fwd = ks.se_e3_forward if build == "parallel" else ks.se_e3_forward.serial
    bwd = ks.se_e3_backward if build == "parallel" else ks.se_e3_backward.serial
    D, D_ref = np.empty((nloc, d.dim_out)), np.empty((nloc, d.dim_out))
    fwd(X, ranges, c, *nets, D)
    ks.se_e3_forward_ref(X, ranges, c, *nets, D_ref)
    assert_allclose_scaled(D, D_ref, TOL, TOL)
    D_desc, cache = se_e3_forward(R, np.zeros(nloc, dtype=int), keep, d)
    assert_allclose_scaled(D_ref, D_desc, TOL, TOL)
    dD = rng.normal(size=D.shape)
    dX, dX_ref = np.full_like(X, np.nan), np.full_like(X, np.nan)
    bwd(X, ranges, c, *nets, dD, dX)
    ks.se_e3_backward_ref(X, ranges, c, *nets, dD, dX_ref)
    assert_allclose_scaled(dX, dX_ref, TOL, TOL)
    dR, _ = se_e3_backward(dD, cache)
    assert_allclose_scaled(dX_ref * keep[..., None], dR[..., 1:], TOL, TOL)
    assert (dX[~keep] == 0).all()  # zero rows (excluded here) are left out
    assert np.abs(dX).max() > 1e-3


def test_numba_backend_equals_reference():
    """DeepPot.evaluate, backend numba vs numpy, every output, skewed periodic cell, with
    descriptor exclude_types (no fallback warning: se_e3 has a numba path)."""
    cfg = {"type_map": ["A", "B"],
           "descriptor": {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40],
                          "neuron": [4, 8], "resnet_dt": True, "exclude_types": [[0, 1]]},
           "fitting_net": {"neuron": [12, 12]}}
    numba_equals_numpy(demo_model(cfg, seed=3))


@pytest.mark.parametrize("sel,act", [([5, 7], "tanh"), ([3, 0, 6], "tanh"), ([5, 7], "softplus"),
                                     ([3, 0, 6], "gelu"), ([5, 7], "relu6"), ([5, 7], "silu")])
@pytest.mark.parametrize("build", ["parallel", "serial"])
def test_se_e2_r_kernels_equal_twins_and_reference(sel, act, build):
    """se_e2_r's forward and backward kernels vs twins vs the reference descriptor (every
    slot, padded and excluded ones included: their G enters the mean), for tanh and other
    activation codes."""
    from symref.reference.descriptor.se_e2_r import (RES_RESCALE, se_e2_r_backward,
                                                     se_e2_r_forward)

    cfg = {"type_map": ["A", "B", "C"][:len(sel)],
           "descriptor": {"type": "se_e2_r", "rcut": 4.0, "rcut_smth": 0.5, "sel": sel,
                          "neuron": [4, 8, 16], "resnet_dt": True, "activation_function": act},
           "fitting_net": {"neuron": [4]}}
    d = demo_model(cfg, seed=2).descriptor
    rng = np.random.default_rng(1)
    nloc = 5
    R = rng.normal(size=(nloc, d.nnei, 4))  # nloc x nnei x 4
    keep = rng.random((nloc, d.nnei)) > 0.2
    x = np.ascontiguousarray(R[..., 0] * keep)  # nloc x nnei
    nets = ks.pack_nets(d.embeddings)
    geo = (ks.group_table(d.sel), RES_RESCALE / d.nnei)
    fwd = ks.se_e2_r_forward if build == "parallel" else ks.se_e2_r_forward.serial
    bwd = ks.se_e2_r_backward if build == "parallel" else ks.se_e2_r_backward.serial
    D, D_ref = np.empty((nloc, d.dim_out)), np.empty((nloc, d.dim_out))
    fwd(x, *geo, *nets, D)
    ks.se_e2_r_forward_ref(x, *geo, *nets, D_ref)
    assert_allclose_scaled(D, D_ref, TOL, TOL)
    D_desc, cache = se_e2_r_forward(R, np.zeros(nloc, dtype=int), keep, d)
    assert_allclose_scaled(D_ref, D_desc, TOL, TOL)
    dD = rng.normal(size=D.shape)
    ds, ds_ref = np.full_like(x, np.nan), np.full_like(x, np.nan)
    bwd(x, *geo, *nets, dD, ds)
    ks.se_e2_r_backward_ref(x, *geo, *nets, dD, ds_ref)
    assert_allclose_scaled(ds, ds_ref, TOL, TOL)
    dR, _ = se_e2_r_backward(dD, cache)
    assert_allclose_scaled(ds_ref * keep, dR[..., 0], TOL, TOL)


def test_se_e2_r_numba_backend_equals_reference():
    """DeepPot.evaluate of an se_e2_r model, numba vs numpy, every output, skewed periodic
    cell with descriptor exclude_types, no fallback warning."""
    from test_se_e2_r import CFG as SE_E2_R

    cfg = {**SE_E2_R, "descriptor": {**SE_E2_R["descriptor"], "exclude_types": [[0, 1]]}}
    numba_equals_numpy(demo_model(cfg, seed=3))


def numba_equals_numpy(model):
    """Every output of evaluate, backend numba (no fallback warning) vs numpy, 1e-12, on
    two frames of the skewed crystal."""
    import warnings

    coord, atype, box = crystal_frames(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fast = model.evaluate(coord, atype, box, backend="numba")
    ref = model.evaluate(coord, atype, box, backend="numpy")
    for k in ref:
        assert_allclose_scaled(fast[k], ref[k], TOL, TOL, err_msg=k)
