"""The vectorisable tanh kernel against np.tanh: accuracy in ulps, special values; the other
activations' scalar kernels (value, derivatives from the value) against their NumPy twins."""
import numpy as np
import pytest

from symref.fast.kernels.activations import (ACT_CODES, act_code, act_scalars, act_scalars_ref,
                                             tanh_inplace, tanh_inplace_ref)


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


@pytest.mark.parametrize("name", ["relu", "relu6", "softplus", "sigmoid", "gelu", "silu",
                                  "silut"])
def test_activation_scalars_match_their_numpy_twins(name):
    """act_value, act_deriv, act_second (code >= 2) equal the reference table's numbers to
    atol + |ref| * eps, kinks (0, 6), both tails and float32 input included."""
    z = np.concatenate([np.linspace(-40, 40, 4001), [0.0, -0.0, 6.0, -800.0, 800.0]])
    for zz in (z, z.astype(np.float32)):
        ours, ref = np.empty((3, z.size)), np.empty((3, z.size))
        act_scalars(zz, ACT_CODES[name], ours)
        act_scalars_ref(zz, ACT_CODES[name], ref)
        eps = np.finfo(np.float64).eps  # computed in float64 for either input
        # libm's exp/tanh and NumPy's differ by an ulp; 1 - h in sigmoid' amplifies it ~5x
        atol = 2 * eps
        assert np.all(np.abs(ours - ref) <= atol + 8 * eps * np.abs(ref)), name
        assert not np.all(np.abs(ours * (1 + 1e-13) - ref) <= atol + 8 * eps * np.abs(ref))


def test_activations_without_a_kernel_are_refused_by_name():
    """A name without a kernel code (silut with a threshold other than 3, or a typo) is
    refused naming the activation and the path."""
    for name in ("silut:2.0", "swish"):
        with pytest.raises(ValueError, match=f"activation '{name}' is not implemented in X"):
            act_code(name, "X")
