r"""Synthetic, physically shaped data sets for demos, tests and benchmarks (no downloads).

:func:`nonlocal_clouds`: clouds whose label is a *nonlocal*, velocity-weighted
average over the region the cloud samples.  Each cloud b has its own random
linear velocity field and scalar field, in d = 2 or 3 dimensions,

.. math::

    \mathbf u(\mathbf x) = A\mathbf x + \mathbf c,\qquad
    s(\mathbf x) = \cos(\mathbf k\cdot\mathbf x + \varphi),\qquad
    w(\mathbf x) = e^{-|\mathbf x|^2/\ell^2}\,\big(1 + \tfrac12\tanh(\mathbf x\cdot\mathbf u(\mathbf x))\big),

(A, c, k with isotropic Gaussian entries, so the set has no preferred frame), and
the labels are weighted averages over the unit ball (disk) Ω,

.. math::

    y_{\text{scalar}} = \frac{\int_\Omega w\,s}{\int_\Omega w},\qquad
    \mathbf y_{\text{vector}} = \frac{\int_\Omega w\,\mathbf u}{\int_\Omega w},\qquad
    Y_{\text{tensor}} = \frac{\int_\Omega w\,\mathbf u\mathbf u^\top}{\int_\Omega w},

computed with a fixed quadrature of ``n_quad`` uniform points (the same rule for
every cloud).  A cloud of n points is n independent uniform samples of Ω with
``vectors`` = u at each point and ``scalars`` = s: the label depends on the
whole region, and a cloud of n points estimates it with sampling error
~ n^{-1/2}, so a model that averages over its cloud can be trained at one n and
used at another.  ``w`` is upstream/downstream asymmetric through x·u, as in
the transport problem's closures.
"""
from __future__ import annotations

import numpy as np


def _ball(rng, n: int, d: int) -> np.ndarray:
    """n uniform points in the unit ball of R^d (n x d)."""
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * rng.random((n, 1)) ** (1.0 / d)


def _fields(x, A, c, k, phi, ell):
    u = x @ A.T + c  # n x d
    s = np.cos(x @ k + phi)  # n
    w = np.exp(-np.sum(x * x, axis=1) / ell ** 2) * (1.0 + 0.5 * np.tanh(np.sum(x * u, axis=1)))
    return u, s, w


def nonlocal_clouds(n_clouds: int, n_points, dim: int = 2, output: str = "scalar", seed: int = 0,
                    n_quad: int = 4000, ell: float = 0.7):
    """``(clouds, labels)``: ``n_clouds`` clouds of ``n_points`` points each (an int, or
    a (low, high) range drawn per cloud), 1 vector feature (the velocity) and
    1 scalar feature per point; labels (N,), (N, d) or (N, d, d) by ``output``
    (module docstring).  Deterministic for a given ``seed``; the fields and labels
    depend on ``seed`` only, not on ``n_points``, so two calls differing only in
    ``n_points`` give the same problems sampled with clouds of different sizes."""
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if output not in ("scalar", "vector", "tensor"):
        raise ValueError(f"output must be 'scalar', 'vector' or 'tensor', got {output!r}")
    rng = np.random.default_rng([seed, 0])  # fields: independent of the cloud sizes
    rng_pts = np.random.default_rng([seed, 1])  # point samples
    quad = _ball(np.random.default_rng(12345), n_quad, dim)  # the fixed quadrature rule
    clouds, labels = [], []
    for _ in range(n_clouds):
        A = rng.standard_normal((dim, dim)) * 0.7
        c = rng.standard_normal(dim)
        k = rng.standard_normal(dim) * 1.5
        phi = rng.uniform(0, 2 * np.pi)
        n = int(n_points) if np.ndim(n_points) == 0 else int(rng_pts.integers(n_points[0],
                                                                              n_points[1] + 1))
        x = _ball(rng_pts, n, dim)
        u, s, _ = _fields(x, A, c, k, phi, ell)
        clouds.append({"positions": x, "vectors": u[:, None, :], "scalars": s[:, None]})
        uq, sq, wq = _fields(quad, A, c, k, phi, ell)
        if output == "scalar":
            labels.append(np.sum(wq * sq) / np.sum(wq))
        elif output == "vector":
            labels.append(wq @ uq / np.sum(wq))
        else:
            labels.append(np.einsum("p,pa,pb->ab", wq, uq, uq) / np.sum(wq))
    return clouds, np.array(labels)

