"""The vectorisable tanh kernel against np.tanh: accuracy in ulps, special values."""
import numpy as np

from symref.fast.kernels.activations import tanh_inplace, tanh_inplace_ref


def _ulps(a, b):
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(b), np.finfo(float).tiny))


def test_tanh_within_3_ulp_of_numpy():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=200_000) * 3, np.linspace(-25, 25, 100_001),
                        rng.normal(size=20_000) * 1e-4, [1e-300, -5e-324, 19.0, 19.1, 700.0, -1e308]])
    ours, ref = x.copy(), x.copy()
    tanh_inplace(ours)
    tanh_inplace_ref(ref)
    assert _ulps(ours, ref).max() <= 3.0
    # the check itself can fail: a 1e-15 relative perturbation is many ulps away
    assert _ulps(ours * (1 + 1e-14), ref).max() > 3.0


def test_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 30.0, -30.0])
    y = x.copy()
    tanh_inplace(y)
    assert y[0] == 0.0 and not np.signbit(y[0])
    assert y[1] == 0.0 and np.signbit(y[1])
    np.testing.assert_array_equal(y[2:4], [1.0, -1.0])
    assert np.isnan(y[4])
    np.testing.assert_array_equal(y[5:], [1.0, -1.0])
