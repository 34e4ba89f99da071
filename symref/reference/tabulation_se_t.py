r"""Tabulated three-body embedding nets: deepmd-kit's ``dp compress`` for ``se_e3`` (``se_t``).

The se_e3 net :math:`G = \mathcal N_{pq}(\theta)` has one scalar input, the angular
invariant :math:`\theta_{ab} = X_a\cdot X_b` (:mod:`symref.reference.descriptor.se_e3`),
so deepmd-kit tabulates it like an se_e2_a net (:mod:`symref.reference.tabulation`:
the same quintic Hermite coefficients from the same net derivatives, one copy of
both) but over a range symmetric about 0 and with a third stride segment below it.
Reproduced from deepmd-kit 3.x (``deepmd/utils/tabulate.py`` descriptor type "T",
``deepmd/pt/model/descriptor/se_t.py``, the C++ ``tabulate_fusion_se_t``):

**Strides.**  ``dp compress -s h -e e`` calls ``enable_compression(e, h, 10h)`` and
se_t multiplies both strides by 10: :math:`h_0 = 10h`, :math:`h_1 = 100h` (0.1 and 1
for the default ``h = 0.01``); the stored ``info`` holds these scaled strides.

**Range.**  :math:`|\theta| \le |X_a||X_b|` and a row's direction columns are at
most :math:`w(r)/(r\,\mathrm{dstd})`, so for the smallest neighbour distance
:math:`r_{min}` deepmd-kit takes, per centre type t,

.. math::

    v_{t} = \Big(\frac{w(r_{min})}{r_{min}\,\mathrm{dstd}[t, s, c]}\Big)^2,\quad
    s \in \{1, 2, 3\},\ c \in \{0..3\},\qquad
    l_t = \lfloor \min(-v_t) \rfloor,\qquad u_t = \lceil \max v_t \rceil

(deepmd-kit slices ``dstd[:, 1:4]`` on the *slot* axis, so slots 1..3 and all four
components, the radial one included, enter: reproduced as is).  The net of group
pair (p, q), p <= q, uses the range of p.

**Knots.**  ``x = arange(e l, l, h1) ∪ arange(l, u, h0) ∪ arange(u, e u, h1) ∪ {e u}``,
:math:`n_{spline} = \mathrm{int}((u-l)/h_0 + 2(e u - u)/h_1)`.  The interval widths
used for the coefficients are :math:`h_1` except on intervals
``start .. start + int((u-l)/h0) - 1``, ``start = int((l - e l)/h1) + 1``, which get
:math:`h_0` (deepmd-kit's ``_build_lower``; note the ``+ 1``: the first interval of
the fine segment is fitted with width :math:`h_1` and the first interval of the upper
coarse segment with :math:`h_0`, so the table misfits the net there --
:func:`table_error_se_t` measures it).

**Evaluation** (the C++ ``tabulate_fusion_se_t`` of deepmd-kit 3.x, measured on its
compiled kernel), with ``info = [l, u, m = e u, h0, h1, check_frequency]`` and
:math:`n_a = \mathrm{int}((l + m)/h_1)`, :math:`n_b = n_a + \mathrm{int}((u-l)/h_0)`,
:math:`k_{last} = n_b + \mathrm{int}((m - u)/h_1) - 1`:

* :math:`\theta < -m`: :math:`k = 0`, :math:`t = 0`, then
  :math:`p(0) + p'(0)(\theta + m)` (first-order extrapolation);
* :math:`-m \le \theta < l`: :math:`k = \lfloor(\theta + m)/h_1\rfloor`, :math:`t = \theta - (k h_1 - m)`;
* :math:`l \le \theta < u`: :math:`k = n_a + \lfloor(\theta - l)/h_0\rfloor`, :math:`t = \theta - ((k - n_a) h_0 + l)`;
* :math:`u \le \theta < m`: :math:`k = n_b + \lfloor(\theta - u)/h_1\rfloor`, :math:`t = \theta - ((k - n_b) h_1 + u)`;
* :math:`\theta \ge m`: :math:`k = k_{last}`, :math:`t_e = m - ((k_{last} - n_b) h_1 + u)`, then
  :math:`p(t_e) + p'(t_e)(\theta - m)`.

(the index is clipped to the table's rows).  deepmd-kit's kernel returns
:math:`\sum_{ab}\theta_{ab} G(\theta_{ab})` directly; the reference evaluates
:math:`G` and :math:`dG/d\theta` and lets :mod:`~symref.reference.descriptor.se_e3`
form the sum, the same numbers in another order.
"""
from __future__ import annotations

import numpy as np

from symref.reference.tabulation import (DEFAULT_EXTRAPOLATE, DEFAULT_STRIDE,
                                         EmbeddingTables, TableError, check_tabulable, knots,
                                         net_derivatives, quintic_coefficients, spline5_switch)

#: deepmd-kit's se_t multiplies both strides of ``dp compress`` by this factor
STRIDE_SCALE = 10.0


def env_mat_range_se_t(desc, min_nbor_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Per centre type ``(lower, upper)`` (ntypes each, integers as floats) of θ."""
    if not min_nbor_dist > 0:
        raise ValueError(f"min_nbor_dist must be positive, got {min_nbor_dist}")
    sw = spline5_switch(min_nbor_dist, desc.rcut_smth, desc.rcut)
    var = np.square(sw / (min_nbor_dist * np.asarray(desc.dstd)[:, 1:4]))  # ntypes x 3 x 4
    lower, upper = np.floor(np.min(-var, axis=1)), np.ceil(np.max(var, axis=1))  # ntypes x 4
    return lower.min(axis=1), upper.max(axis=1)


def knots_se_t(lower: float, upper: float, extrapolate: float, stride0: float, stride1: float):
    """Knots ``xx`` of one centre type's range (module docstring): the coarse run below
    ``lower``, then se_e2_a's knots (:func:`symref.reference.tabulation.knots`)."""
    below = np.arange(extrapolate * lower, lower, stride1, dtype=np.float64)
    return np.append(below, knots(lower, upper, extrapolate, stride0, stride1)[0])  # nknots


def build_se_t_tables(desc, min_nbor_dist: float, extrapolate: float = DEFAULT_EXTRAPOLATE,
                      stride0: float = STRIDE_SCALE * DEFAULT_STRIDE,
                      stride1: float | None = None,
                      check_frequency: int = -1) -> EmbeddingTables:
    """deepmd-kit's tables for the se_e3 descriptor ``desc``: one per group pair p <= q at
    embedding index ``p + q * ntypes`` (empty arrays for q < p).  ``stride0``/``stride1``
    are the strides as stored (already scaled by :data:`STRIDE_SCALE`; ``stride1``
    defaults to ``10 * stride0``)."""
    stride1 = 10 * stride0 if stride1 is None else stride1
    check_tabulable(desc, stride0, stride1, extrapolate)
    lower, upper = env_mat_range_se_t(desc, min_nbor_dist)
    nt = desc.ntypes
    nspline = ((upper - lower) / stride0
               + 2 * ((extrapolate * upper - upper) / stride1)).astype(int)  # ntypes
    dtype = np.asarray(desc.davg).dtype
    data = [np.asarray([], dtype=dtype) for _ in range(nt * nt)]
    info = [np.asarray([], dtype=dtype) for _ in range(nt * nt)]
    m = desc.neuron[-1]
    for p in range(nt):
        ll, uu, ns = lower[p], upper[p], int(nspline[p])
        xx = knots_se_t(ll, uu, extrapolate, stride0, stride1)
        tt = np.full((ns, m), stride1)  # ns x M
        start = int((ll - extrapolate * ll) / stride1) + 1
        tt[start:start + int((uu - ll) / stride0), :] = stride0
        for q in range(p, nt):
            idx = desc.embedding_index(p, q)
            vv, dd, d2 = net_derivatives(xx, desc.embeddings[idx])
            data[idx] = quintic_coefficients(vv, dd, d2, tt).astype(dtype)
            info[idx] = np.asarray([ll, uu, uu * extrapolate, stride0, stride1,
                                    check_frequency], dtype=dtype)
    return EmbeddingTables(data=data, info=info)


def tabulated_se_t_forward(x: np.ndarray, data: np.ndarray, info: np.ndarray):
    """Tabulated three-body net ``G(θ)``: ``x`` (... x 1) -> ``(G (... x M), dG/dθ (... x M))``
    by the evaluation rules of the module docstring."""
    lower, upper, tmax, stride0, stride1 = (float(v) for v in info[:5])
    tmin = -tmax
    xx = np.asarray(x)[..., 0]  # ...
    m = data.shape[1] // 6
    n_a = int((lower - tmin) / stride1)
    n_b = n_a + int((upper - lower) / stride0)
    last = n_b + int((tmax - upper) / stride1) - 1
    idx = np.where(xx < tmin, 0,
                   np.where(xx < lower, np.floor((xx - tmin) / stride1),
                            np.where(xx < upper, n_a + np.floor((xx - lower) / stride0),
                                     np.where(xx < tmax, n_b + np.floor((xx - upper) / stride1),
                                              last))))
    idx = np.clip(idx, 0, data.shape[0] - 1).astype(np.int64)  # ...
    fidx = idx.astype(xx.dtype)
    t = np.where(xx < tmin, 0.0,
                 np.where(xx < lower, xx - (fidx * stride1 + tmin),
                          np.where(xx < upper, xx - ((fidx - n_a) * stride0 + lower),
                                   np.where(xx < tmax, xx - ((fidx - n_b) * stride1 + upper),
                                            tmax - ((last - n_b) * stride1 + upper)))))
    ext = np.where(xx < tmin, xx - tmin, np.where(xx >= tmax, xx - tmax, 0.0))[..., None]
    c = data[idx].reshape(xx.shape + (m, 6))  # ... x M x 6
    t = t[..., None]  # ... x 1
    val = c[..., 0] + (c[..., 1] + (c[..., 2] + (c[..., 3] + (c[..., 4] + c[..., 5] * t) * t)
                                    * t) * t) * t  # ... x M
    grad = c[..., 1] + (2 * c[..., 2] + (3 * c[..., 3] + (4 * c[..., 4] + 5 * c[..., 5] * t) * t)
                        * t) * t  # ... x M
    return val + grad * ext, grad


def table_error_se_t(desc, tables: EmbeddingTables, npoints: int = 20001) -> dict:
    """Max |G_table - G_net| and |dG/dθ table - net| per tabulated net: ``{index:
    TableError}``, ``*_first`` over the fine segment ``[l, u)``, ``*_second`` over the two
    coarse ones ``[-m, l)`` and ``[u, m)`` (``npoints`` points each)."""
    from symref.reference.nn import mlp_forward_dual

    out = {}
    for k, (d, i) in enumerate(zip(tables.data, tables.info)):
        if np.size(d) == 0:
            continue
        lo, up, tmax = float(i[0]), float(i[1]), float(i[2])
        errs = []
        for segs in (((lo, up),), ((-tmax, lo), (up, tmax))):
            x = np.concatenate([np.linspace(a, b, npoints)[:-1] for a, b in segs])[:, None]
            g_tab, dg_tab = tabulated_se_t_forward(x, d, i)  # n x M each
            g_net, dg_net, _ = mlp_forward_dual(x, np.ones_like(x), desc.embeddings[k])
            errs.append((float(np.max(np.abs(g_tab - g_net), initial=0.0)),
                         float(np.max(np.abs(dg_tab - dg_net), initial=0.0))))
        out[k] = TableError(errs[0][0], errs[1][0], errs[0][1], errs[1][1])
    return out
