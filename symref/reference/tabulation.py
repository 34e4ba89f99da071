r"""Tabulated (compressed) embedding nets: deepmd-kit's ``dp compress`` for se_e2_a.

An embedding net :math:`G = \mathcal N(s)` has one scalar input, so it can be
replaced by a table of piecewise quintic polynomials (deepmd-kit's model
compression).  This module builds the tables exactly as deepmd-kit 3.x builds
them (``deepmd/utils/tabulate.py``, ``deepmd/utils/tabulate_math.py``) and
evaluates them exactly as its NumPy backend does
(``deepmd/dpmodel/utils/tabulate.py``).

**Range.**  With the smallest neighbour distance :math:`r_{min}` and the switch
:math:`w` of :mod:`symref.reference.env`, the normalised first column
:math:`s = (w(r)/r - \mathrm{davg}) / \mathrm{dstd}` of a centre of type
:math:`t` lies in

.. math::

    l_t = \min_c \big\lfloor -\mathrm{davg}[t,0,c] / \mathrm{dstd}[t,0,c] \big\rfloor,\qquad
    u_t = \max_c \big\lceil (w(r_{min})/r_{min} - \mathrm{davg}[t,0,c]) /
           \mathrm{dstd}[t,0,c] \big\rceil,

(deepmd-kit takes slot 0 of the statistics and the min/max over all four
components ``c``, not only ``c = 0``: reproduced as is).  A net of centre type
:math:`t_i` (``type_one_side`` false) uses :math:`[l_{t_i}, u_{t_i}]`; a
``type_one_side`` net uses the min/max over the centre types :math:`t` with
``sel[t] > 0``.  Every net is tabulated, those of ``exclude_types`` pairs too
(deepmd-kit's exclusion test compares tuples with the lists it reads: it never
matches).

**Knots.**  ``x = arange(l, u, h0) ∪ arange(u, e·u, h1) ∪ {e·u}`` with strides
:math:`h_0` (``stride0``, default 0.01), :math:`h_1` (``stride1`` = 10 h0 in
``dp compress``) and extrapolation factor :math:`e` (default 5);
:math:`n_{spline} = \mathrm{int}((u-l)/h_0 + (e u - u)/h_1)` intervals, the first
:math:`\mathrm{int}((u-l)/h_0)` of width :math:`h_0`, the rest :math:`h_1`.

**Coefficients.**  On interval :math:`k`, :math:`t = x - x_k \in [0, h]`, each
output column is :math:`p(t) = \sum_{m=0}^5 c_m t^m` matching value, first and
second derivative of the net at both ends (quintic Hermite interpolation, so
the table is C² across knots).  With :math:`y_0, y_0', y_0''` at :math:`x_k`,
:math:`y_1, y_1', y_1''` at :math:`x_{k+1}` and :math:`\Delta = y_1 - y_0`:
:math:`c_0 = y_0,\ c_1 = y_0',\ c_2 = y_0''/2` from :math:`t = 0`; the three
conditions at :math:`t = h` form a linear system in :math:`c_3, c_4, c_5` with
the solution

.. math::

    c_3 &= \big[20\Delta - (8y_1' + 12y_0')h - (3y_0'' - y_1'')h^2\big] / (2h^3)\\
    c_4 &= \big[-30\Delta + (14y_1' + 16y_0')h + (3y_0'' - 2y_1'')h^2\big] / (2h^4)\\
    c_5 &= \big[12\Delta - 6(y_1' + y_0')h + (y_1'' - y_0'')h^2\big] / (2h^5).

Stored as deepmd-kit stores them: ``data`` (n_spline x 6·M1, column ``6a + m``
is :math:`c_m` of output ``a``) and ``info`` ``[l, u, e·u, h0, h1,
check_frequency]``, one of each per embedding index (``SeE2A.embedding_index``),
empty arrays for nets deepmd-kit does not tabulate.

**Net derivatives.**  Layer by layer, :math:`z = xW + b`, :math:`y = \phi(z) +
\mathrm{sc}(x)`; with :math:`x', x''` the derivatives of the layer input with
respect to :math:`s` (1 and 0 at the input):

.. math::

    y' = \phi'(z)\,(x'W) + \mathrm{sc}(x'),\qquad
    y'' = \phi'(z)\,(x''W) + \phi''(z)\,(x'W)^2 + \mathrm{sc}(x''),

with :math:`\phi, \phi', \phi''` the layer's activation from
:data:`symref.reference.activation.ACTIVATIONS` (one copy of each formula).  As in
deepmd-kit (``deepmd/utils/tabulate_math.py``: ``grad``/``grad_grad``), the derivatives
of tanh and sigmoid are taken from the value :math:`y = \phi(z)` recovered as
``(phi(z) + sc) - sc`` (:func:`symref.reference.activation.derivatives_from_value`), those
of gelu, relu, relu6, softplus and silu from :math:`z`; so the tables agree with
deepmd-kit's to round-off.  deepmd-kit tabulates exactly the activations of
:data:`TABULATED` (its ``ACTIVATION_TO_FUNCTYPE``: tanh, gelu, gelu_tf, relu, relu6,
softplus, sigmoid, silu, linear, none); any other is refused by name, as its
``DPTabulate`` refuses it ("Unsupported activation function").

**Kinks.**  relu and relu6 are not smooth: :math:`\phi'` jumps where a first-layer
pre-activation :math:`z_j(s) = s W_j + b_j` crosses 0 (or 6).  deepmd-kit tabulates them
anyway, with :math:`\phi'' = 0` and the one-sided :math:`\phi'` at each knot, so the
quintic of an interval that contains a kink interpolates a function with a slope jump:
there the table error is :math:`O(h)` in the slope and :math:`O(h^2)` in the value
instead of :math:`O(h^5)`/:math:`O(h^6)`, on that one interval per kink (measured by
:func:`table_error`, which ``symref check`` reports).
deepmd-kit's tabulation ignores the ``resnet_dt`` timestep ``idt`` (it tabulates
:math:`\phi(z)`, not :math:`\phi(z)\,\mathrm{idt}`); so does this module, and
:func:`build_tables` warns when a net has an ``idt`` different from 1.

**Evaluation** (:func:`tabulated_forward`), for :math:`s` with table
:math:`[l, u, s_{max} = e u]`:

* :math:`l \le s < u`: interval :math:`k = \lfloor (s-l)/h_0 \rfloor`, :math:`t = s - (l + k h_0)`;
* :math:`u \le s < s_{max}`: :math:`k = n_0 + \lfloor (s-u)/h_1 \rfloor`, :math:`t = s - (u + (k-n_0) h_1)`,
  :math:`n_0 = \lfloor (u-l)/h_0 \rfloor`;
* :math:`s < l`: first-order extrapolation :math:`p_0(0) + p_0'(0)(s - l)`;
* :math:`s \ge s_{max}`: last interval at its end :math:`t_e`, then
  :math:`p(t_e) + p'(t_e)(s - s_{max})`;

(the index clipped to ``[0, n_spline - 1]``).  So :math:`G` is C¹ everywhere
and C² inside the table; :math:`dG/ds` is :math:`p'(t)` (constant outside).

**Error.**  Quintic Hermite interpolation of a smooth :math:`f` on an interval
of width :math:`h` has :math:`|f - p| \le \frac{(h/2)^6}{6!} \max|f^{(6)}|`;
:func:`table_error` measures the actual maximum difference between table and
net on a dense grid (deepmd-kit's default strides give ~1e-14 in the first
stride and ~1e-9 in the second for deepmd-kit's example model).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from symref.reference.activation import ACTIVATIONS, derivatives_from_value
from symref.reference.nn import Layer, mlp_forward_dual

#: the activations deepmd-kit's tabulation takes (``deepmd.utils.tabulate_math.
#: ACTIVATION_TO_FUNCTYPE``); every other ``activation_function`` is refused
TABULATED = ("tanh", "gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu",
             "linear", "none")
#: activations whose derivatives deepmd-kit's tabulation takes from the value y = phi(z)
_FROM_Y = ("tanh", "sigmoid")

#: deepmd-kit's defaults (``dp compress``: ``-s 0.01 -e 5``, second stride 10x the first)
DEFAULT_STRIDE = 0.01
DEFAULT_EXTRAPOLATE = 5.0


@dataclass
class EmbeddingTables:
    """The tables of one se_e2_a descriptor, in deepmd-kit's ``compress`` layout.

    ``data[k]``: n_spline x 6·M1 coefficients of embedding index ``k`` (empty: not
    tabulated, its group contributes nothing); ``info[k]``: 6 values ``[lower,
    upper, table_max, stride0, stride1, check_frequency]`` (empty likewise).
    """

    data: list[np.ndarray]
    info: list[np.ndarray]

    def __post_init__(self):
        if len(self.data) != len(self.info):
            raise ValueError(f"compress_data has {len(self.data)} tables but compress_info "
                             f"{len(self.info)}")
        for k, (d, i) in enumerate(zip(self.data, self.info)):
            if (np.size(d) == 0) != (np.size(i) == 0):
                raise ValueError(f"table {k}: compress_data and compress_info must both be "
                                 f"empty or both filled")
            if np.size(i) and np.shape(i) != (6,):
                raise ValueError(f"table {k}: compress_info must have 6 values, got shape "
                                 f"{np.shape(i)}")
            if np.size(d) and (np.ndim(d) != 2 or np.shape(d)[1] % 6):
                raise ValueError(f"table {k}: compress_data must be n_spline x 6*M1, got shape "
                                 f"{np.shape(d)}")

    def lower_bound(self) -> float:
        """The smallest ``lower`` over the tables (s below it is extrapolated linearly)."""
        return min(float(i[0]) for i in self.info if np.size(i))

    def upper_bound(self) -> float:
        """The smallest ``table_max`` over the tables (s above it is extrapolated linearly)."""
        return min(float(i[2]) for i in self.info if np.size(i))


# --------------------------------------------------------------------------- range
def spline5_switch(x: float, rmin: float, rmax: float) -> float:
    """deepmd-kit's scalar switch ``w(x)`` (1 below rmin, 0 above rmax, quintic between)."""
    if x < rmin:
        return 1.0
    if x < rmax:
        u = (x - rmin) / (rmax - rmin)
        return u * u * u * (-6 * u * u + 15 * u - 10) + 1
    return 0.0


def env_mat_range(desc, min_nbor_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Per centre type ``(lower, upper)`` (ntypes each, integers as floats) of ``s``.

    ``floor``/``ceil`` per statistics component of slot 0, then min/max over the
    four components (deepmd-kit's ``_get_env_mat_range`` and ``build``).
    """
    if not min_nbor_dist > 0:
        raise ValueError(f"min_nbor_dist must be positive, got {min_nbor_dist}")
    sw = spline5_switch(min_nbor_dist, desc.rcut_smth, desc.rcut)
    davg0 = np.asarray(desc.davg)[:, 0]  # ntypes x 4
    dstd0 = np.asarray(desc.dstd)[:, 0]  # ntypes x 4
    lower = np.floor(-davg0 / dstd0)  # ntypes x 4
    upper = np.ceil(((1 / min_nbor_dist) * sw - davg0) / dstd0)  # ntypes x 4
    return lower.min(axis=1), upper.max(axis=1)


def tabulated_nets(desc) -> list[tuple[int, int]]:
    """``(embedding index, centre type or -1)`` of the nets deepmd-kit tabulates: all of them.

    deepmd-kit skips a net when ``(ti, tj) in exclude_types``, but it keeps
    ``exclude_types`` as read from the input (lists), so a tuple never matches
    and every net is tabulated, excluded pairs included.  A net without layers
    (cleared by deepmd-kit's serializer) gets no table.
    """
    nt = desc.ntypes
    pairs = [(tj, -1) for tj in range(nt)] if desc.type_one_side else \
        [(desc.embedding_index(ii // nt, ii % nt), ii // nt) for ii in range(nt * nt)]
    return [(idx, ti) for idx, ti in pairs if len(desc.embeddings[idx])]


def _net_range(desc, ti: int, lower, upper) -> tuple[float, float]:
    """``(l, u)`` of a net: its centre type's, or (``ti = -1``, ``type_one_side``) the
    extremes over the centre types with ``sel > 0`` (the exclusion test never matches,
    see :func:`tabulated_nets`)."""
    if ti >= 0:
        return lower[ti], upper[ti]
    use = [desc.sel[t] > 0 for t in range(desc.ntypes)]
    return np.min(lower[use]), np.max(upper[use])


# --------------------------------------------------------------------------- net
def net_derivatives(x: np.ndarray, layers: list[Layer]):
    """Value, first and second derivative of an embedding net at the points ``x`` (n).

    Returns ``(y, dy, d2y)``, each n x M1; the formulas of the module docstring,
    in deepmd-kit's operation order (``tabulate_math.DPTabulate._make_data``) so
    that the tables agree to the last bit.  ``idt`` is ignored, as there.
    """
    yy = np.asarray(x, dtype=np.float64).reshape(-1, 1)  # n x 1 (the input s)
    dy, dy2 = np.ones_like(yy), np.zeros_like(yy)  # ds/ds, d2s/ds2
    for ly in layers:
        w = ly.w  # nin x nout
        b = ly.b if ly.b is not None else np.zeros(ly.nout, w.dtype)
        zbar = yy @ w + b  # n x nout
        sc = _sc(yy, ly)
        zz = ACTIVATIONS[ly.activation](yy @ w + b)[0] + sc  # n x nout
        act = zz - sc  # phi(z) as deepmd-kit recovers it
        g, gg = _act_derivatives(ly, zbar, act)
        acc1 = dy2 @ w  # n x nout: x'' W
        acc2 = dy @ w  # n x nout: x' W
        dz = g * acc2 + _sc(dy, ly)
        d2z = g * acc1 + gg * acc2 * acc2 + _sc(dy2, ly)
        yy, dy, dy2 = zz, dz, d2z
    return yy, dy, dy2


def _sc(x, ly: Layer):
    """The layer's shortcut of ``x`` (n x nin): 0, x or [x, x]."""
    if ly.shortcut == 1:
        return x
    if ly.shortcut == 2:
        return np.concatenate([x, x], axis=1)
    return np.zeros((x.shape[0], ly.nout), dtype=x.dtype)


def _act_derivatives(ly: Layer, z, y):
    """``(phi(z), phi'(z), phi''(z))`` of the layer's activation, the derivatives as
    deepmd-kit's ``grad``/``grad_grad`` take them: from ``y`` (the value recovered after the
    shortcut) for tanh and sigmoid, from ``z`` otherwise (module docstring)."""
    name = ly.activation
    if name in _FROM_Y:
        g, gg = derivatives_from_value(name, y)
        return g, gg
    _, g, gg = ACTIVATIONS[name](z, True)
    return (np.ones_like(z) if g is None else g), (np.zeros_like(z) if gg is None else gg)


# --------------------------------------------------------------------------- build
def knots(lower: float, upper: float, extrapolate: float, stride0: float, stride1: float):
    """Knot positions ``xx`` and ``(nspline, n_first)``: the intervals in all and of width stride0."""
    dt = np.float64
    xx = np.arange(lower, upper, stride0, dtype=dt)
    xx = np.append(xx, np.arange(upper, extrapolate * upper, stride1, dtype=dt))
    xx = np.append(xx, np.array([extrapolate * upper], dtype=dt))  # nknots
    nspline = int(np.float64((upper - lower) / stride0 + (extrapolate * upper - upper) / stride1))
    return xx, nspline, int((upper - lower) / stride0)


def quintic_coefficients(vv, dd, d2, tt) -> np.ndarray:
    """Coefficients (nspline x 6·M1) from values/derivatives at nspline+1 knots (each
    (nspline+1) x M1) and widths ``tt`` (nspline x M1): the formulas of the module docstring."""
    n, m = tt.shape
    hh = vv[1:n + 1, :m] - vv[:n, :m]  # nspline x M1
    y0p, y1p, y0pp, y1pp = dd[:n, :m], dd[1:n + 1, :m], d2[:n, :m], d2[1:n + 1, :m]
    out = np.zeros((n, 6 * m), dtype=vv.dtype)  # nspline x 6*M1
    out[:, 0::6] = vv[:n, :m]
    out[:, 1::6] = y0p
    out[:, 2::6] = 0.5 * y0pp
    out[:, 3::6] = (1 / (2 * tt * tt * tt)) * (20 * hh - (8 * y1p + 12 * y0p) * tt
                                               - (3 * y0pp - y1pp) * tt * tt)
    out[:, 4::6] = (1 / (2 * tt * tt * tt * tt)) * (-30 * hh + (14 * y1p + 16 * y0p) * tt
                                                    + (3 * y0pp - 2 * y1pp) * tt * tt)
    out[:, 5::6] = (1 / (2 * tt * tt * tt * tt * tt)) * (12 * hh - 6 * (y1p + y0p) * tt
                                                         + (y1pp - y0pp) * tt * tt)
    return out


def check_tabulable(desc, stride0: float, stride1: float, extrapolate: float) -> None:
    """``ValueError`` for strides or activations the tables cannot take; a warning when an
    embedding layer has a ``resnet_dt`` timestep different from 1 (deepmd-kit's tables
    ignore it, so the compressed model then differs from the net).  Used by every
    descriptor's table builder."""
    if not (stride0 > 0 and stride1 > 0 and extrapolate >= 1):
        raise ValueError(f"need stride0, stride1 > 0 and extrapolate >= 1, got {stride0}, "
                         f"{stride1}, {extrapolate}")
    acts = {str(desc.activation_function).lower()} | {ly.activation for net in desc.embeddings
                                                      for ly in net}
    if not acts <= set(TABULATED):
        bad = sorted(acts - set(TABULATED))
        raise ValueError(f"tabulation (model compression): activation_function {bad[0]!r} "
                         f"cannot be tabulated (deepmd-kit's DPTabulate refuses it; it "
                         f"tabulates {list(TABULATED)})")
    for k, net in enumerate(desc.embeddings):
        if any(ly.idt is not None and not np.all(ly.idt == 1) for ly in net):
            warnings.warn(f"embedding net {k} has resnet_dt timesteps != 1, which deepmd-kit's "
                          "tabulation ignores: the compressed model will differ from the "
                          "uncompressed one", RuntimeWarning, stacklevel=3)
            break


def build_tables(desc, min_nbor_dist: float, extrapolate: float = DEFAULT_EXTRAPOLATE,
                 stride0: float = DEFAULT_STRIDE, stride1: float | None = None,
                 check_frequency: int = -1) -> EmbeddingTables:
    """deepmd-kit's tables for the se_e2_a or se_e2_r descriptor ``desc`` (its
    ``enable_compression``; deepmd-kit's descriptor types "A" and "R" share the range rule,
    the knots and the layout, se_e2_r's one-column statistics included).

    ``stride1`` defaults to ``10 * stride0`` (``dp compress``).  Warns when an
    embedding layer has a ``resnet_dt`` timestep different from 1 (deepmd-kit's
    tables ignore it, so the compressed model then differs from the net).
    """
    stride1 = 10 * stride0 if stride1 is None else stride1
    check_tabulable(desc, stride0, stride1, extrapolate)
    lower, upper = env_mat_range(desc, min_nbor_dist)
    nemb = len(desc.embeddings)
    dtype = np.asarray(desc.davg).dtype
    data = [np.asarray([], dtype=dtype) for _ in range(nemb)]
    info = [np.asarray([], dtype=dtype) for _ in range(nemb)]
    m1 = desc.neuron[-1]
    for idx, ti in tabulated_nets(desc):
        ll, uu = _net_range(desc, ti, lower, upper)
        xx, nspline, nfirst = knots(ll, uu, extrapolate, stride0, stride1)
        vv, dd, d2 = net_derivatives(xx, desc.embeddings[idx])
        tt = np.full((nspline, m1), stride1)  # nspline x M1
        tt[:nfirst, :] = stride0
        data[idx] = quintic_coefficients(vv, dd, d2, tt).astype(dtype)
        info[idx] = np.asarray([ll, uu, uu * extrapolate, stride0, stride1,
                                check_frequency], dtype=dtype)
    return EmbeddingTables(data=data, info=info)


# --------------------------------------------------------------------------- evaluate
def tabulated_forward(s: np.ndarray, data: np.ndarray, info: np.ndarray):
    """Tabulated embedding ``G(s)``: ``s`` (... x 1) -> ``G`` (... x M1); returns ``(G, cache)``.

    The evaluation rules of the module docstring (deepmd-kit's ``tabulate_fusion``).
    ``cache`` holds dG/ds (... x M1).
    """
    lower, upper, table_max, stride0, stride1 = (float(v) for v in info[:5])
    xx = np.asarray(s)[..., 0]  # ...
    nspline, m1 = data.shape[0], data.shape[1] // 6
    last = nspline - 1
    n0 = int(np.floor((upper - lower) / stride0))
    idx = np.where(xx < lower, 0,
                   np.where(xx < upper, np.floor((xx - lower) / stride0),
                            np.where(xx < table_max, n0 + np.floor((xx - upper) / stride1),
                                     last)))
    idx = np.clip(idx, 0, last).astype(np.int64)  # ...
    fidx = idx.astype(xx.dtype)
    t_high = table_max - ((last - n0) * stride1 + upper)
    t = np.where(xx < lower, 0.0,
                 np.where(xx < upper, xx - (fidx * stride0 + lower),
                          np.where(xx < table_max, xx - ((fidx - n0) * stride1 + upper),
                                   t_high)))[..., None]  # ... x 1
    ext = np.where(xx < lower, xx - lower,
                   np.where(xx >= table_max, xx - table_max, 0.0))[..., None]  # ... x 1
    c = data[idx].reshape(xx.shape + (m1, 6))  # ... x M1 x 6
    val = c[..., 0] + (c[..., 1] + (c[..., 2] + (c[..., 3] + (c[..., 4] + c[..., 5] * t) * t)
                                    * t) * t) * t  # ... x M1
    grad = c[..., 1] + (2 * c[..., 2] + (3 * c[..., 3] + (4 * c[..., 4] + 5 * c[..., 5] * t) * t)
                        * t) * t  # ... x M1
    return val + grad * ext, grad


def tabulated_backward(dG: np.ndarray, cache):
    """Backward of :func:`tabulated_forward`: ``dG`` (... x M1) -> ``(ds, None)``, ds (... x 1).

    :math:`\\bar s = \\sum_a \\bar G_a\\, p_a'(t)` (no trained parameters: a table is
    not trained)."""
    return np.sum(dG * cache, axis=-1, keepdims=True), None


class TableError(NamedTuple):
    """Max |table - net| of one tabulated net over each stride: values G and slopes dG/ds."""

    value_first: float
    value_second: float
    slope_first: float
    slope_second: float


def table_error(desc, tables: EmbeddingTables, npoints: int = 20001) -> dict:
    """Max |G_table - G_net| and |dG_table/ds - dG_net/ds| per tabulated net on ``npoints``
    points over each stride (``[lower, upper)``, ``[upper, table_max)``):
    ``{index: TableError}``.  The net is the embedding as the model evaluates it
    uncompressed (``idt`` included; its slope by forward mode,
    :func:`symref.reference.nn.mlp_forward_dual` with ṡ = 1)."""
    out = {}
    for k, (d, i) in enumerate(zip(tables.data, tables.info)):
        if np.size(d) == 0:
            continue
        lo, up, tmax = float(i[0]), float(i[1]), float(i[2])
        val, slope = [], []
        for a, b in ((lo, up), (up, tmax)):
            x = np.linspace(a, b, npoints)[:-1, None]  # n x 1
            g_tab, dg_tab = tabulated_forward(x, d, i)  # n x M1 each
            g_net, dg_net, _ = mlp_forward_dual(x, np.ones_like(x), desc.embeddings[k])
            val.append(float(np.max(np.abs(g_tab - g_net))) if len(x) else 0.0)
            slope.append(float(np.max(np.abs(dg_tab - dg_net))) if len(x) else 0.0)
        out[k] = TableError(val[0], val[1], slope[0], slope[1])
    return out
