"""Checks of point-cloud models ``predict(clouds) -> y``: symmetries and cloud-size adaptivity."""
from __future__ import annotations

import numpy as np

from symref.checks.common import CheckResult, _as_rng
from symref.checks.symmetry import _compare, _random_orthogonal


def _transform_clouds(clouds, fn):
    out = []
    for c in clouds:
        get = (c.get if isinstance(c, dict) else (lambda k, c=c: getattr(c, k, None)))
        x, u, s = (None if get(k) is None else np.asarray(get(k), dtype=np.float64)
                   for k in ("positions", "vectors", "scalars"))
        x, u, s = fn(x, u, s)
        out.append({"positions": x, "vectors": u, "scalars": s})
    return out


def check_cloud_symmetry(predict, clouds, output: str = "scalar", rng=None,
                         tol: float = 1e-12, *, translation_scale: float = 10.0) -> list[CheckResult]:
    r"""Symmetries of a point-cloud model ``predict(clouds) -> y`` (one row per cloud).

    ``clouds``: a list of ``{"positions": (n, d), "vectors": (n, k, d) or None,
    "scalars": (n, s) or None}`` (positions relative to each cloud's query point).
    ``output``: ``"scalar"`` (y invariant), ``"vector"`` (y (N, d) ↦ y Qᵀ, i.e.
    :math:`\mathbf y \mapsto Q\mathbf y`) or ``"tensor"`` (Y (N, d, d) ↦ Q Y Qᵀ).
    Checks: ``rotation`` (Haar-random Q, det +1) and ``reflection`` (det −1) applied to
    positions and vectors; ``permutation`` (points of every cloud shuffled);
    ``translation`` (positions made absolute with a random query point, everything
    shifted by a random vector of length ~``translation_scale``, then made relative
    again: checks that rounding in the relative coordinates stays at round-off).
    Relative error = max |difference| / max |y|.
    """
    if output not in ("scalar", "vector", "tensor"):
        raise ValueError(f"output must be 'scalar', 'vector' or 'tensor', got {output!r}")
    gen = _as_rng(rng)
    y = np.asarray(predict(clouds), dtype=np.float64)
    d = np.asarray(clouds[0]["positions"] if isinstance(clouds[0], dict)
                   else clouds[0].positions).shape[1]
    results = []
    for name, det in (("rotation", 1), ("reflection", -1)):
        q = _random_orthogonal(gen, det, d)

        def rot(x, u, s, q=q):
            return x @ q.T, (None if u is None else u @ q.T), s

        yq = np.asarray(predict(_transform_clouds(clouds, rot)), dtype=np.float64)
        expect = y if output == "scalar" else (y @ q.T if output == "vector" else
                                               np.einsum("ab,nbc,dc->nad", q, y, q))
        results.append(_compare(f"{name}/{output}", yq, expect, y, tol, {"Q": q, "dim": d}))
    perms = []

    def perm(x, u, s):
        p = gen.permutation(len(x))
        perms.append(p)
        return x[p], (None if u is None else u[p]), (None if s is None else s[p])

    yp = predict(_transform_clouds(clouds, perm))
    results.append(_compare(f"permutation/{output}", yp, y, y, tol, {"dim": d}))
    x0 = gen.standard_normal(d) * translation_scale
    shift = gen.standard_normal(d) * translation_scale

    def trans(x, u, s):
        return ((x + x0) + shift) - (x0 + shift), u, s

    yt = predict(_transform_clouds(clouds, trans))
    results.append(_compare(f"translation/{output}", yt, y, y, tol,
                            {"query_point": x0, "shift": shift}))
    return results


def check_cloud_adaptivity(predict, sample, sizes=(25, 150, 600), tol: float = 0.1) -> CheckResult:
    """Predictions for the same problems sampled with clouds of different sizes.

    ``sample(n)`` returns the clouds of a fixed set of problems, each sampled with
    n points (e.g. ``lambda n: symref.synthetic.nonlocal_clouds(100, n, seed=3)[0]``);
    ``predict(clouds)`` the model's outputs.  The predictions at each size are
    compared with those at the largest one: relative difference = RMS difference /
    standard deviation of the largest-size predictions.  Passes when the
    difference at the second-largest size is ≤ ``tol`` (a model that averages over
    its cloud converges like n^-1/2; one that sums, or depends on n, does not).
    ``details["rel_diff"]`` lists the difference at every size.
    """
    sizes = sorted(int(n) for n in sizes)
    if len(sizes) < 2 or sizes[0] < 1:
        raise ValueError(f"sizes must hold at least two positive cloud sizes, got {sizes}")
    preds = [np.asarray(predict(sample(n)), dtype=np.float64) for n in sizes]
    ref = preds[-1]
    spread = float(np.std(ref)) or 1.0
    diffs = [float(np.sqrt(np.mean((p - ref) ** 2))) / spread for p in preds[:-1]]
    rel = diffs[-1]
    return CheckResult(name="cloud_adaptivity", max_abs_err=rel * spread, max_rel_err=rel, tol=tol,
                       passed=bool(rel <= tol),
                       details={"sizes": sizes, "rel_diff": dict(zip(sizes[:-1], diffs)),
                                "spread": spread})
