"""symref.fast.kernels.tabulated_se_t (compressed se_e3 on numba) against its NumPy twins,
and the numba path of compressed se_e3 and hybrid models against the reference.

Each kernel (parallel and serial builds) equals its twin (the reference's table
evaluation, :func:`~symref.reference.tabulation_se_t.tabulated_se_t_forward`) to 1e-12 x
max|ref| elementwise, with θ in every segment of the tables (below the range, the three
strides, beyond the end); the twins equal the compressed reference descriptor; evaluate
with backend="numba" equals backend="numpy" on a skewed periodic cell, for se_e3 and for
a hybrid with a compressed se_e3 member, without a fallback warning.
"""
import warnings

import numpy as np
import pytest
from test_kernels_se_e3 import TOL, numba_equals_numpy
from tolerance import assert_allclose_scaled

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels import tabulated_se_t as kt
from symref.io.compress import compress_descriptor, compress_model
from symref.model.build import demo_model
from symref.reference.descriptor.se_e3 import se_e3_backward, se_e3_forward

SE_E3 = {"type": "se_e3", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40], "neuron": [4, 8],
         "exclude_types": [[0, 1]]}


def _compressed(descriptor, seed=3, rmin=0.9):
    cfg = {"type_map": ["A", "B"], "descriptor": descriptor,
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


def test_numba_backend_equals_reference():
    """DeepPot.evaluate of a compressed se_e3 model and of a hybrid(se_e2_a, compressed
    se_e3) model: numba vs numpy, every output, skewed periodic cell, no fallback warning."""
    numba_equals_numpy(_compressed(dict(SE_E3)))
    cfg = {"type_map": ["A", "B"], "descriptor": {"type": "hybrid", "list": [
        {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 40], "neuron": [4, 8],
         "axis_neuron": 4}, dict(SE_E3)]}, "fitting_net": {"neuron": [12, 12]}}
    model = demo_model(cfg, seed=4)
    model.descriptor.members[1] = compress_descriptor(model.descriptor.members[1], 0.9)
    numba_equals_numpy(model)


def test_numba_warns_beyond_the_table():
    """A θ beyond a table's end warns on the numba path too, naming the net."""
    from test_se_e2_r import crystal_frames

    cfg = {"type_map": ["A", "B"], "descriptor": dict(SE_E3),
           "fitting_net": {"neuron": [12, 12]}}
    model = demo_model(cfg, seed=3)
    model.descriptor.dstd = model.descriptor.dstd * 0.25  # θ ~ 16 x larger
    model = compress_model(model, 3.5, extrapolate=1.0)  # tables ending near θ = 1
    coord, atype, box = crystal_frames(1)
    with pytest.warns(RuntimeWarning, match=r"se_e3 embedding net \d+: \|theta\|"):
        fast = model.evaluate(coord, atype, box, backend="numba")
    with pytest.warns(RuntimeWarning, match=r"se_e3 embedding net \d+: \|theta\|"):
        ref = model.evaluate(coord, atype, box, backend="numpy")
    assert_allclose_scaled(fast["forces"], ref["forces"], TOL, TOL)  # extrapolated alike
