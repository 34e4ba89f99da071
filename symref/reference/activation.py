r"""Activation functions of deepmd-kit 3.2 with their first and second derivatives.

One table, :data:`ACTIVATIONS`, maps every name deepmd-kit accepts for
``activation_function`` (``deepmd.common.VALID_ACTIVATION``) that symref implements to a
leaf function ``f(z, second) -> (phi, dphi, d2phi)``: the value, the first derivative
(``None`` meaning 1, the identity) and, only when ``second`` is true, the second derivative
(``None`` meaning 0).  The second derivative feeds the force terms of the loss gradient
(:func:`symref.reference.nn.layer_backward_dual`).  Names are case-insensitive, as in
deepmd-kit (:func:`canonical_activation`).

Definitions, as deepmd-kit 3.2 evaluates them (``deepmd.dpmodel.utils.network.get_activation_fn``
and ``deepmd.pt.utils.utils.ActivationFn``, the backends reading ``.dp``/``.pth`` files):

============  ===========================================  =================================
name          :math:`\phi(z)`                               derivative convention
============  ===========================================  =================================
tanh          :math:`\tanh z`                              :math:`1-\phi^2`
gelu,         :math:`\tfrac12 z(1+\tanh u)`,               smooth; both names are the tanh
gelu_tf       :math:`u = c(z + a z^3)`, :math:`c=\sqrt{2/\pi}`, :math:`a=0.044715`
                                                           approximation in dpmodel and pt
relu          :math:`z\,[z>0]`                             :math:`\phi'(0) = 0` (torch)
relu6         :math:`\min(\max(z,0),6)`                    :math:`\phi' = [0<z<6]`: 0 at 0 and 6
softplus      :math:`\log(1+e^z)`                          :math:`\phi' = \sigma(z)`
sigmoid       :math:`\sigma(z) = 1/(1+e^{-z})`             :math:`\sigma(1-\sigma)`
silu          :math:`z\,\sigma(z)`                         smooth
silut,        :math:`z\sigma(z)` for :math:`z < T`,           C¹ at :math:`z = T`
silut:T       :math:`\tanh(a(z-T)) + c` for :math:`z \ge T`,  (:math:`\phi''` jumps there)
              :math:`a = \mathrm{silu}'(T)`, :math:`c = \mathrm{silu}(T)`
linear, none  :math:`z`                                    1
============  ===========================================  =================================

Derivatives (with :math:`\sigma = \sigma(z)`, :math:`t = \tanh u`,
:math:`u' = c(1 + 3az^2)`, :math:`u'' = 6acz`):

.. math::

    \text{gelu: } \phi' = \tfrac12(1+t) + \tfrac12 z (1-t^2) u', \quad
    \phi'' = (1-t^2)\,u' + \tfrac12 z (1-t^2)\,(u'' - 2 t u'^2);\\
    \text{softplus: } \phi' = \sigma,\ \phi'' = \sigma(1-\sigma);\quad
    \text{sigmoid: } \phi' = \sigma(1-\sigma),\ \phi'' = \sigma(1-\sigma)(1-2\sigma);\\
    \text{silu: } \phi' = \sigma + z\sigma(1-\sigma),\
    \phi'' = \sigma(1-\sigma)\,(2 + z(1-2\sigma));\quad
    \text{tanh: } \phi'' = -2\phi(1-\phi^2);\quad \text{relu, relu6: } \phi'' = 0;\\
    \text{silut, } z \ge T\text{: } t = \tanh(a(z-T)),\ \phi' = a(1-t^2),\
    \phi'' = -2a^2 t(1-t^2)\ \text{(silu's below T)}.

deepmd-kit's TensorFlow backend evaluates ``gelu_tf`` with ``tf.nn.gelu`` (exact erf);
symref follows dpmodel and pt, where both names are the tanh approximation.  ``softplus``
is computed as :math:`\max(z,0) + \log(1+e^{-|z|})` (dpmodel's stable form; torch switches
to :math:`z` above 20, a difference below 3e-9 there).  ``silut`` (deepmd-kit 3.2's
``deepmd.dpmodel.utils.network.get_activation_fn`` and ``deepmd.pt.utils.utils.SiLUT``;
``custom_silu`` is the same function) takes its threshold from the name: ``silut`` and
``custom_silu`` are T = 3, ``silut:2.5`` is T = 2.5; :func:`canonical_activation` writes
every T = 3 spelling as ``silut`` and others as ``silut:T`` (the numba and CUDA kernels
have a code for ``silut``, T = 3; other thresholds run on the reference).
"""
from __future__ import annotations

import functools

import numpy as np

_GELU_C = float(np.sqrt(2.0 / np.pi))
_GELU_A = 0.044715


def tanh_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = \tanh z`, :math:`\phi' = 1-\phi^2`, :math:`\phi'' = -2\phi\phi'`."""
    h = np.tanh(z)  # ... (shape of z)
    dh = 1.0 - h * h
    return h, dh, (-2.0 * h * dh if second else None)


def gelu_act(z: np.ndarray, second: bool = False):
    r"""GELU, tanh approximation: :math:`\tfrac12 z(1+\tanh(c(z+az^3)))` (module docstring).

    The derivatives use :math:`1-t^2 = \mathrm{sech}^2 u` and, for :math:`u<0`,
    :math:`1+t = 2e^{2u}/(1+e^{2u})`, which do not cancel where :math:`t \to -1`."""
    z2 = z * z
    u = _GELU_C * (z + _GELU_A * z2 * z)
    t = np.tanh(u)
    with np.errstate(over="ignore"):
        s = 1.0 / np.cosh(u) ** 2  # sech^2 u = 1 - t^2 without cancellation (0 for |u| > 710)
    e = np.exp(np.minimum(2.0 * u, 0.0))
    p = np.where(u >= 0, 1.0 + t, 2.0 * e / (1.0 + e))  # 1 + t without cancellation
    du = _GELU_C * (1.0 + 3.0 * _GELU_A * z2)
    h = 0.5 * z * (1.0 + t)  # deepmd-kit's form (the value it computes)
    dh = 0.5 * p + 0.5 * z * s * du
    d2 = None
    if second:
        d2 = s * du + 0.5 * z * s * (6.0 * _GELU_A * _GELU_C * z - 2.0 * t * du * du)
    return h, dh, d2


def relu_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = z[z>0]`, :math:`\phi' = [z>0]` (0 at z = 0, as torch), :math:`\phi''=0`."""
    pos = (z > 0).astype(z.dtype)
    return z * pos, pos, (np.zeros_like(z) if second else None)


def relu6_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = \min(\max(z,0),6)`, :math:`\phi' = [0<z<6]` (torch's hardtanh rule)."""
    h = np.where(z < 0, 0.0, np.where(z > 6, 6.0, z)).astype(z.dtype)
    dh = ((z > 0) & (z < 6)).astype(z.dtype)
    return h, dh, (np.zeros_like(z) if second else None)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """sigma(z) = 1/(1+e^{-z}) without overflow: e^{-|z|} only."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype)


def softplus_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = \log(1+e^z)`, :math:`\phi' = \sigma`, :math:`\phi'' = \sigma(1-\sigma)`."""
    h = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
    sg = _sigmoid(z)
    return h, sg, (sg * (1.0 - sg) if second else None)


def sigmoid_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = \sigma`, :math:`\phi' = \sigma(1-\sigma)`,
    :math:`\phi'' = \sigma(1-\sigma)(1-2\sigma)`."""
    sg = _sigmoid(z)
    d = sg * (1.0 - sg)
    return sg, d, (d * (1.0 - 2.0 * sg) if second else None)


def silu_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = z\sigma`, :math:`\phi' = \sigma + z\sigma(1-\sigma)`,
    :math:`\phi'' = \sigma(1-\sigma)(2 + z(1-2\sigma))`."""
    sg = _sigmoid(z)
    d = sg * (1.0 - sg)
    return z * sg, sg + z * d, (d * (2.0 + z * (1.0 - 2.0 * sg)) if second else None)


#: deepmd-kit's threshold of ``silut`` / ``custom_silu`` without ``:T``
SILUT_THRESHOLD = 3.0


def silut_constants(threshold: float):
    r"""``(a, c) = (silu'(T), silu(T))``, computed as deepmd-kit computes them
    (:math:`\sigma(T) = 1/(1+e^{-T})` in float64)."""
    sg = 1.0 / (1.0 + np.exp(-threshold))
    return float(sg + threshold * sg * (1.0 - sg)), float(threshold * sg)


def silut_act(z: np.ndarray, second: bool = False, threshold: float = SILUT_THRESHOLD):
    r"""silu below the threshold T, :math:`\tanh(a(z-T)) + c` from T on (module
    docstring); the lower branch is :func:`silu_act`."""
    slope, const = silut_constants(threshold)
    hs, ds, d2s = silu_act(z, second)
    u = slope * (z - threshold)  # ... (shape of z)
    t = np.tanh(u)
    with np.errstate(over="ignore"):
        dt = slope * (1.0 / np.cosh(u) ** 2)  # a(1 - t^2) without cancellation (0 for |u| > 710)
    hi = z >= threshold
    h = np.where(hi, t + const, hs)
    dh = np.where(hi, dt, ds)
    return h, dh, (np.where(hi, -2.0 * slope * t * dt, d2s) if second else None)


def linear_act(z: np.ndarray, second: bool = False):
    r""":math:`\phi = z`: derivatives reported as ``None`` (1 and 0)."""
    return z, None, None


#: name -> leaf function ``f(z, second) -> (phi, dphi | None, d2phi | None)``
ACTIVATIONS = {
    "tanh": tanh_act,
    "gelu": gelu_act,
    "gelu_tf": gelu_act,
    "relu": relu_act,
    "relu6": relu6_act,
    "softplus": softplus_act,
    "sigmoid": sigmoid_act,
    "silu": silu_act,
    "silut": silut_act,
    "linear": linear_act,
    "none": linear_act,
}


#: activations whose derivatives are functions of the value h = phi(z) (for these the numba
#: kernels keep h): tanh, relu, relu6, softplus, sigmoid and the identity; gelu and silu are
#: not (the kernels keep z for them)
FROM_VALUE = ("tanh", "relu", "relu6", "softplus", "sigmoid", "linear", "none")


def derivatives_from_value(name: str, h: np.ndarray):
    r"""``(phi', phi'')`` of activation ``name`` as functions of its value ``h = phi(z)``
    (``name`` in :data:`FROM_VALUE`; ValueError otherwise):

    .. math::

        	anh: 1-h^2,\ -2h(1-h^2);\quad \mathrm{relu}: [h>0],\ 0;\quad
        \mathrm{relu6}: [0<h<6],\ 0;\quad
        \mathrm{softplus}: \sigma = -\mathrm{expm1}(-h),\ \sigma e^{-h};\quad
        \mathrm{sigmoid}: h(1-h),\ h(1-h)(1-2h);\quad \mathrm{linear}: 1, 0.

    The kink conventions follow from :math:`h>0 \iff z>0` and :math:`0<h<6 \iff 0<z<6`
    (relu'(0) = relu6'(0) = relu6'(6) = 0, as :data:`ACTIVATIONS`)."""
    if name == "tanh":
        d = 1.0 - h * h
        return d, -2.0 * h * d
    if name == "relu":
        return (h > 0).astype(h.dtype), np.zeros_like(h)
    if name == "relu6":
        return ((h > 0) & (h < 6)).astype(h.dtype), np.zeros_like(h)
    if name == "softplus":
        e = np.exp(-h)  # 1 - sigma
        return -np.expm1(-h), -np.expm1(-h) * e
    if name == "sigmoid":
        d = h * (1.0 - h)
        return d, d * (1.0 - 2.0 * h)
    if name in ("linear", "none"):
        return np.ones_like(h), np.zeros_like(h)
    raise ValueError(f"activation {name!r}: its derivative is not a function of its value "
                     f"(those are {FROM_VALUE})")


def silut_threshold(name: str) -> float | None:
    """The threshold T of a ``silut``/``custom_silu`` name (lower-case): 3 without ``:T``,
    ``float(T)`` with it (ValueError unless a finite number); None for other names."""
    base, sep, arg = name.partition(":")
    if base not in ("silut", "custom_silu"):
        return None
    if not sep:
        return SILUT_THRESHOLD
    try:
        t = float(arg)
    except ValueError:
        t = float("nan")
    if not np.isfinite(t):
        raise ValueError(f"activation {name!r}: the silut threshold after ':' must be a "
                         f"finite number, got {arg!r}")
    return t


def canonical_activation(name, where: str = "activation_function") -> str:
    """``name`` lower-cased (deepmd-kit's rule; ``None`` is ``"none"``), checked against
    :data:`ACTIVATIONS`, ``silut``/``custom_silu`` with or without ``:T`` written as
    ``silut`` (T = 3) or ``silut:T``; ValueError naming ``where`` and the name otherwise."""
    key = "none" if name is None else str(name).lower()
    try:
        t = silut_threshold(key)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if t is not None:
        return "silut" if t == SILUT_THRESHOLD else f"silut:{t!r}"
    if key not in ACTIVATIONS:
        raise ValueError(f"{where}: unsupported activation {name!r}; symref implements "
                         f"{sorted(ACTIVATIONS)} and silut:T")
    return key


def activation_fn(name: str):
    """The leaf function ``f(z, second)`` of a canonical name (:data:`ACTIVATIONS`, or
    silut with the threshold of ``silut:T``)."""
    f = ACTIVATIONS.get(name)
    if f is not None:
        return f
    t = silut_threshold(name)
    if t is None:
        raise ValueError(f"unsupported activation {name!r}")
    return functools.partial(silut_act, threshold=t)


def activation(name: str, z: np.ndarray, second: bool = False):
    """``(phi, dphi, d2phi)`` of the activation ``name`` at ``z`` (see :data:`ACTIVATIONS`)."""
    return activation_fn(canonical_activation(name))(z, second)
