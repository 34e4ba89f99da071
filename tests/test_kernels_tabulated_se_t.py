"""symref.fast.kernels.tabulated_se_t and tabulated_se_r (compressed se_e3 and se_e2_r on
numba) against their NumPy twins, and the numba path of compressed se_e3, se_e2_r and
hybrid models against the reference.

Each kernel (parallel and serial builds) equals its twin (the reference's table
evaluation, :func:`~symref.reference.tabulation_se_t.tabulated_se_t_forward`) to 1e-12 x
max|ref| elementwise, with θ (s) in every segment of the tables (below the range, the
strides, beyond the end); the twins equal the compressed reference descriptor; evaluate
with backend="numba" equals backend="numpy" on a skewed periodic cell, for se_e3, se_e2_r
and a hybrid with compressed se_e3 and se_e2_r members, without a fallback warning.
"""
import warnings

import numpy as np
import pytest
from test_kernels_se_e3 import TOL, numba_equals_numpy
from tolerance import assert_allclose_scaled

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels import tabulated_se_r as kr
from symref.fast.kernels import tabulated_se_t as kt
from symref.io.compress import compress_descriptor, compress_model
from symref.model.build import demo_model
from symref.reference.descriptor.se_e3 import se_e3_backward, se_e3_forward

SE_E3 = {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40], "neuron": [4, 8],
         "exclude_types": [[0, 1]]}
SE_E2_R = {"type": "se_e2_r", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40],
           "neuron": [4, 8, 16], "exclude_types": [[0, 1]]}


def _compressed(descriptor, seed=3, rmin=0.9, types=2):
    cfg = {"type_map": ["A", "B", "C"][:types], "descriptor": descriptor,
           "fitting_net": {"neuron": [12, 12]}}
    return compress_model(demo_model(cfg, seed=seed), rmin)


@pytest.mark.parametrize("build", ["parallel", "serial"])
def test_kernels_equal_twins_and_reference(build):
    """Forward (D and max |θ|) and backward kernels vs twins vs the compressed reference
    descriptor; rows scaled so that θ covers every segment of the table and beyond."""
    d = _compressed({**SE_E3, "sel": [5, 7]}).descriptor
    rng = np.random.default_rng(1)
    nloc = 6
    R = rng.normal(size=(nloc, d.nnei, 4)) * np.linspace(0.3, 3.0, nloc)[:, None, None]
    keep = rng.random((nloc, d.nnei)) > 0.2
    X = np.ascontiguousarray(R[..., 1:] * keep[..., None])
    tabs = kt.pack_tables(d.tables)
    ranges, c = ks.pair_table(d.sel)
    th = np.einsum("iad,ibd->iab", X, X)
    tmax = d.tables.info[0][2]
    assert th.min() < -tmax and th.max() > tmax  # both extrapolations exercised
    fwd = kt.se_e3_tabulated_forward if build == "parallel" else \
        kt.se_e3_tabulated_forward.serial
    bwd = kt.se_e3_tabulated_backward if build == "parallel" else \
        kt.se_e3_tabulated_backward.serial
    D, D_ref = np.empty((nloc, d.dim_out)), np.empty((nloc, d.dim_out))
    T, T_ref = np.empty((nloc, len(c))), np.empty((nloc, len(c)))
    fwd(X, ranges, c, *tabs, D, T)
    kt.se_e3_tabulated_forward_ref(X, ranges, c, *tabs, D_ref, T_ref)
    assert_allclose_scaled(D, D_ref, TOL, TOL)
    assert_allclose_scaled(T, T_ref, TOL, TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # θ beyond the table, on purpose
        D_desc, cache = se_e3_forward(R, np.zeros(nloc, dtype=int), keep, d)
        dD = rng.normal(size=D.shape)
        dR, _ = se_e3_backward(dD, cache)
    assert_allclose_scaled(D_ref, D_desc, TOL, TOL)
    dX, dX_ref = np.full_like(X, np.nan), np.full_like(X, np.nan)
    bwd(X, ranges, c, *tabs, dD, dX)
    kt.se_e3_tabulated_backward_ref(X, ranges, c, *tabs, dD, dX_ref)
    assert_allclose_scaled(dX, dX_ref, TOL, TOL)
    assert_allclose_scaled(dX_ref * keep[..., None], dR[..., 1:], TOL, TOL)
    assert (dX[~keep] == 0).all() and np.abs(dX).max() > 1e-3


@pytest.mark.parametrize("build", ["parallel", "serial"])
def test_se_e2_r_kernels_equal_twins_and_reference(build):
    """se_e2_r: forward (D and max s) and backward kernels vs twins vs the compressed
    reference descriptor, s below and beyond the tables, an empty table skipped."""
    from symref.reference.descriptor.se_e2_r import (RES_RESCALE, se_e2_r_backward,
                                                     se_e2_r_forward)

    d = _compressed({**SE_E2_R, "sel": [5, 7, 4]}, types=3).descriptor
    d.tables.data[2], d.tables.info[2] = d.tables.data[2][:0], d.tables.info[2][:0]
    rng = np.random.default_rng(2)
    nloc = 6
    R = rng.normal(size=(nloc, d.nnei, 4)) * np.linspace(0.3, 8.0, nloc)[:, None, None]
    keep = rng.random((nloc, d.nnei)) > 0.2
    s = np.ascontiguousarray(R[..., 0] * keep)
    assert s.min() < d.tables.info[0][0] and s.max() > d.tables.info[0][2]
    tabs = kr.pack_tables(d.tables)
    geo = (kr.table_groups(d.sel, d.tables), RES_RESCALE / d.nnei)
    assert geo[0].shape[0] == 2  # the empty table's type is left out
    fwd = kr.se_e2_r_tabulated_forward if build == "parallel" else \
        kr.se_e2_r_tabulated_forward.serial
    bwd = kr.se_e2_r_tabulated_backward if build == "parallel" else \
        kr.se_e2_r_tabulated_backward.serial
    D, D_ref = np.empty((nloc, d.dim_out)), np.empty((nloc, d.dim_out))
    T, T_ref = np.empty((nloc, 2)), np.empty((nloc, 2))
    fwd(s, *geo, *tabs, D, T)
    kr.se_e2_r_tabulated_forward_ref(s, *geo, *tabs, D_ref, T_ref)
    assert_allclose_scaled(D, D_ref, TOL, TOL)
    np.testing.assert_array_equal(T, T_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # s beyond the table, on purpose
        D_desc, cache = se_e2_r_forward(R, np.zeros(nloc, dtype=int), keep, d)
    assert_allclose_scaled(D_ref, D_desc, TOL, TOL)
    dD = rng.normal(size=D.shape)
    ds, ds_ref = np.full_like(s, np.nan), np.full_like(s, np.nan)
    bwd(s, *geo, *tabs, dD, ds)
    kr.se_e2_r_tabulated_backward_ref(s, *geo, *tabs, dD, ds_ref)
    assert_allclose_scaled(ds, ds_ref, TOL, TOL)
    dR, _ = se_e2_r_backward(dD, cache)
    assert_allclose_scaled(ds_ref * keep, dR[..., 0], TOL, TOL)
    assert (ds[:, 12:] == 0).all() and np.abs(ds).max() > 1e-4


def test_numba_backend_equals_reference():
    """DeepPot.evaluate of compressed se_e3 and se_e2_r models and of a hybrid(se_e2_a,
    compressed se_e3, compressed se_e2_r) model: numba vs numpy, every output, skewed
    periodic cell, no fallback warning."""
    numba_equals_numpy(_compressed(dict(SE_E3)))
    numba_equals_numpy(_compressed(dict(SE_E2_R)))
    cfg = {"type_map": ["A", "B"], "descriptor": {"type": "hybrid", "list": [
        {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40], "neuron": [4, 8],
         "axis_neuron": 4}, dict(SE_E3), dict(SE_E2_R)]}, "fitting_net": {"neuron": [12, 12]}}
    model = demo_model(cfg, seed=4)
    for k in (1, 2):
        model.descriptor.members[k] = compress_descriptor(model.descriptor.members[k], 0.9)
    numba_equals_numpy(model)


@pytest.mark.parametrize("kind, pattern", [
    (SE_E3, r"se_e3 embedding net \d+: \|theta\|"),
    (SE_E2_R, r"compressed embedding net \d+: a neighbour has s = .* beyond the table")])
def test_numba_warns_beyond_the_table(kind, pattern):
    """An input beyond a table's end warns on the numba path too, naming the net, and is
    extrapolated as on the reference."""
    from test_se_e2_r import crystal_frames

    cfg = {"type_map": ["A", "B"], "descriptor": dict(kind),
           "fitting_net": {"neuron": [12, 12]}}
    model = demo_model(cfg, seed=3)
    model.descriptor.dstd = model.descriptor.dstd * 0.25  # inputs ~4-16 x larger
    model = compress_model(model, 3.5, extrapolate=1.0)  # tables ending early
    coord, atype, box = crystal_frames(1)
    with pytest.warns(RuntimeWarning, match=pattern):
        fast = model.evaluate(coord, atype, box, backend="numba")
    with pytest.warns(RuntimeWarning, match=pattern):
        ref = model.evaluate(coord, atype, box, backend="numpy")
    assert_allclose_scaled(fast["forces"], ref["forces"], TOL, TOL)  # extrapolated alike
