"""Switch function and environment rows: values by hand, derivatives by finite differences."""
import numpy as np
import pytest

from symref.reference.env import env_mat_backward, env_mat_forward, smooth_switch
from fd import num_grad
from tolerance import assert_close


def test_switch_values_and_slope():
    rs, rc = 0.5, 6.0
    r = np.array([0.1, 0.5, 2.0, 3.25, 5.9, 6.0, 7.0])
    w, dw = smooth_switch(r, rs, rc)
    u = np.clip((r - rs) / (rc - rs), 0, 1)
    np.testing.assert_allclose(w, 1 - 10 * u**3 + 15 * u**4 - 6 * u**5, rtol=0, atol=1e-14)
    assert w[0] == 1 and w[1] == 1 and w[5] == 0 and w[6] == 0
    h = 1e-6
    fd = (smooth_switch(r + h, rs, rc)[0] - smooth_switch(r - h, rs, rc)[0]) / (2 * h)
    np.testing.assert_allclose(dw, fd, atol=1e-8)
    with pytest.raises(ValueError, match="rcut_smth"):
        smooth_switch(r, 6.0, 6.0)


def test_env_mat_rows_and_backward():
    rng = np.random.default_rng(0)
    nloc, nnei = 3, 5
    rij = rng.normal(size=(nloc, nnei, 3)) * 2.0
    mask = rng.uniform(size=(nloc, nnei)) < 0.7
    davg = rng.normal(size=(nloc, nnei, 4)) * 0.1
    dstd = rng.uniform(0.5, 2, size=(nloc, nnei, 4))
    R, cache = env_mat_forward(rij, mask, davg, dstd, 4.0, 1.0, protection=0.0)
    r = np.linalg.norm(rij, axis=-1)
    w, _ = smooth_switch(r, 1.0, 4.0)
    raw = np.concatenate([(w / r)[..., None], (w / r**2)[..., None] * rij], -1) * mask[..., None]
    np.testing.assert_allclose(R, (raw - davg) / dstd, rtol=1e-13)
    c = rng.normal(size=R.shape)
    g, _ = env_mat_backward(c, cache)
    fd = num_grad(lambda z: (env_mat_forward(z, mask, davg, dstd, 4.0, 1.0)[0] * c).sum(), rij)
    assert_close(g, fd * mask[..., None], 1e-8, what="dR/drij")
    assert np.all(g[~mask] == 0)
