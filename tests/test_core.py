"""symref.reference.core: each backward is the gradient of its forward ("fake loss" checks).

For a forward ``f`` and a random ``dout``, ``L(x) = <dout, f(x)>``; the backward's
``d_input`` must equal central finite differences of L (float64, h = 1e-6).  The
maps here are bilinear, so the FD error is round-off only and the bound
``1e-10 + 1e-8 max|FD|`` is tight: a dropped or transposed term misses it by O(1).
"""
import numpy as np
import pytest
from fd import num_grad
from tolerance import assert_close

from symref.reference.core import (cloud_sum_backward, cloud_sum_forward, gram_backward,
                                   gram_backward_dual, gram_forward, gram_tangent)

RTOL, ATOL = 1e-8, 1e-10
B, N, M1, C = 3, 5, 4, 4  # clouds, points, embedding width, columns of X


def _is_pair(out):
    """The package convention: every backward returns the pair (d_input, grads)."""
    assert isinstance(out, tuple) and len(out) == 2
    return out


@pytest.mark.parametrize("scale", [1.0, 0.25, "per-cloud"])
def test_cloud_sum_backward_is_the_gradient_of_its_forward(scale):
    """(dG, dX) of cloud_sum_backward equal FD of <dL, L(G, X)> for a unit, a scalar and a
    per-cloud scale; grads is None (no parameters)."""
    rng = np.random.default_rng(1)
    G, X = rng.normal(size=(B, N, M1)), rng.normal(size=(B, N, C))
    s = rng.uniform(0.2, 1.0, size=B) if scale == "per-cloud" else scale
    L, cache = cloud_sum_forward(G, X, s)
    dL = rng.normal(size=L.shape)
    (dG, dX), grads = _is_pair(cloud_sum_backward(dL, cache, need_dX=True))
    assert grads is None
    assert_close(dG, num_grad(lambda g: np.sum(dL * cloud_sum_forward(g, X, s)[0]), G),
                 RTOL, ATOL, what="dG")
    assert_close(dX, num_grad(lambda x: np.sum(dL * cloud_sum_forward(G, x, s)[0]), X),
                 RTOL, ATOL, what="dX")


def test_cloud_sum_backward_without_dX_and_padding():
    """need_dX=False leaves a None in the dX slot and the same dG; padded points
    (X = 0) receive exactly zero dG, as the module docstring states."""
    rng = np.random.default_rng(2)
    G, X = rng.normal(size=(B, N, M1)), rng.normal(size=(B, N, C))
    X[0, 3:] = 0.0  # cloud 0 has 3 real points
    L, cache = cloud_sum_forward(G, X, 1.0 / N)
    dL = rng.normal(size=L.shape)
    (dG, dX), grads = _is_pair(cloud_sum_backward(dL, cache))
    assert dX is None and grads is None
    np.testing.assert_array_equal(dG, cloud_sum_backward(dL, cache, need_dX=True)[0][0])
    assert np.all(dG[0, 3:] == 0.0)


@pytest.mark.parametrize("M2", [1, 2, M1])
def test_gram_backward_is_the_gradient_of_its_forward(M2):
    """dL of gram_backward equals FD of <dD, L L<ᵀ> (both the D̄ L< and the D̄ᵀ L term)."""
    rng = np.random.default_rng(3)
    L = rng.normal(size=(B, M1, C))
    D, cache = gram_forward(L, M2)
    dD = rng.normal(size=D.shape)
    dL, grads = _is_pair(gram_backward(dD, cache))
    assert grads is None
    assert_close(dL, num_grad(lambda x: np.sum(dD * gram_forward(x, M2)[0]), L), RTOL, ATOL,
                 what="dL")


@pytest.mark.parametrize("M2", [1, 3])
def test_gram_backward_dual_is_the_gradient_of_value_and_tangent(M2):
    """(L̄, L̇̄) of gram_backward_dual equal FD of <D̄, D(L)> + <Ḋ̄, Ḋ(L, L̇)> with respect
    to L and to L̇ (Ḋ from gram_tangent)."""
    rng = np.random.default_rng(4)
    L, Ld = rng.normal(size=(B, M1, C)), rng.normal(size=(B, M1, C))
    Dbar, Ddbar = rng.normal(size=(B, M1, M2)), rng.normal(size=(B, M1, M2))

    def loss(x, xd):
        return np.sum(Dbar * gram_forward(x, M2)[0]) + np.sum(Ddbar * gram_tangent(x, xd, M2))

    (Lbar, Ldbar), grads = _is_pair(gram_backward_dual(Dbar, Ddbar, L, Ld, M2))
    assert grads is None
    assert_close(Lbar, num_grad(lambda x: loss(x, Ld), L), RTOL, ATOL, what="L̄")
    assert_close(Ldbar, num_grad(lambda xd: loss(L, xd), Ld), RTOL, ATOL, what="L̇̄")


def test_gram_tangent_is_the_derivative_of_gram_forward():
    """gram_tangent(L, L̇) equals the FD directional derivative of gram_forward along L̇."""
    rng = np.random.default_rng(5)
    L, Ld, M2 = rng.normal(size=(B, M1, C)), rng.normal(size=(B, M1, C)), 2
    h = 1e-6
    fd = (gram_forward(L + h * Ld, M2)[0] - gram_forward(L - h * Ld, M2)[0]) / (2 * h)
    assert_close(gram_tangent(L, Ld, M2), fd, RTOL, ATOL, what="Ḋ")
