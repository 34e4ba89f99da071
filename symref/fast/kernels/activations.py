r"""Activations for numba kernels: a vectorisable ``tanh`` (and, at the end, the other
activations behind integer codes, :data:`ACT_CODES`: relu, relu6, softplus, sigmoid, gelu,
silu, silut with deepmd-kit's default threshold 3).

A vectorisable ``tanh`` for numba kernels (float64, and float32 in float32 arithmetic:
:func:`tanh_any` picks one by type), with NumPy twins.

libm's ``tanh`` (what ``math.tanh`` calls inside numba) is a scalar call that
LLVM cannot vectorise, and it costs ~25 ns per value: for se_e2_a it would
dominate the whole evaluation (about 17 000 ``tanh`` per atom).  This version is
branch-free arithmetic LLVM turns into AVX2/AVX-512 code.

.. math::

    \tanh x = \operatorname{sign}(x)\,\frac{-m}{2 + m},\qquad
    m = \operatorname{expm1}(-2|x|) \in (-1, 0],

with ``expm1`` by the usual reduction :math:`t = n\ln 2 + r`, :math:`|r| \le \ln 2 / 2`,
:math:`e^t - 1 = 2^n\,\mathrm{expm1}(r) + (2^n - 1)` (both terms exact in
float64 for the n used here), and ``expm1(r)`` by its Taylor series to
:math:`r^{14}` (truncation < 1e-17 on the interval), evaluated with Estrin's
scheme and fused multiply-adds (``llvm.fma``: exact rounding, so this is
deterministic and not a fastmath contraction).  ``|x|`` is capped at 20,
where :math:`\tanh` is 1 to double precision; NaN propagates.  The result is
within 3 ulp of ``np.tanh`` (tested in ``tests/test_kernels_activations.py``).
The derivative is :math:`1 - \tanh^2 x`, computed by callers from the value.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from symref.reference.activation import (ACTIVATIONS, SILUT_THRESHOLD, derivatives_from_value,
                                         silut_constants)

_LN2_HI = 6.93147180369123816490e-01  # upper bits of ln 2 (exact product with small n)
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e+00


_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52: x + MAGIC rounds x to an integer


@intrinsic
def _pow2_of_rounded(typingctx, kd):
    """``2**n`` from ``kd = n + 1.5*2**52`` (float64, -1022 <= n <= 1023) or
    ``kd = n + 1.5*2**23`` (float32, -126 <= n <= 127), in ``kd``'s type.

    The low mantissa bits of ``kd`` hold n; adding the exponent bias and
    shifting them into the exponent field builds ``2**n`` without a
    float-to-int conversion (AVX2 has no packed one, so this keeps loops
    vectorisable).
    """
    if kd not in (types.float64, types.float32):
        return None
    width, bias, shift = (32, 127, 23) if kd == types.float32 else (64, 1023, 52)
    sig = kd(kd)

    def codegen(context, builder, signature, args):
        ii = ir.IntType(width)
        bits = builder.bitcast(args[0], ii)
        bits = builder.shl(builder.add(bits, ir.Constant(ii, bias)), ir.Constant(ii, shift))
        return builder.bitcast(bits, ir.FloatType() if width == 32 else ir.DoubleType())

    return sig, codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with one rounding (llvm.fma: a single instruction on FMA hardware)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


# Taylor coefficients 1/k! of expm1(r) = r + r^2 (C2 + C3 r + ... + C14 r^12)
_C = [1.0 / math.factorial(k) for k in range(15)]
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14 = _C[2:]


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh_scalar(x):
    """tanh(x) in float64, vectorisable (see module docstring)."""
    ax = -abs(x)
    ax = -20.0 if ax < -20.0 else ax  # NaN fails the test and propagates
    t = 2.0 * ax  # in [-40, 0]
    kd = t * _INV_LN2 + _ROUND_MAGIC
    nf = kd - _ROUND_MAGIC  # n = nearest integer to t / ln2, exact
    r = fma(-nf, _LN2_LO, fma(-nf, _LN2_HI, t))  # |r| <= ln2/2
    # expm1(r) = r + r^2 q(r), q of degree 12 by Estrin's scheme (short dependency chains)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q01 = fma(C3, r, C2)
    q23 = fma(C5, r, C4)
    q45 = fma(C7, r, C6)
    q67 = fma(C9, r, C8)
    q89 = fma(C11, r, C10)
    qab = fma(C13, r, C12)
    q03 = fma(q23, r2, q01)
    q47 = fma(q67, r2, q45)
    q8b = fma(qab, r2, q89)
    q8c = fma(C14, r4, q8b)
    q07 = fma(q47, r4, q03)
    q = fma(q8c, r8, q07)
    em_r = fma(q, r2, r)  # expm1(r)
    s = _pow2_of_rounded(kd)  # 2^n, n in [-58, 0]
    m = fma(s, em_r, s - 1.0)  # expm1(t) in (-1, 0]
    return math.copysign(-m / (2.0 + m), x)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def tanh_inplace(a):
    """``a[k] = tanh(a[k])`` for a 1-D float64 array (pass ``x.reshape(-1)``)."""
    for k in numba.prange(a.shape[0]):
        a[k] = tanh_scalar(a[k])


def tanh_inplace_ref(a):
    """NumPy twin of :func:`tanh_inplace`."""
    np.tanh(a, out=a)


# ------------------------------------------------------------------ float32
# The same scheme in float32 arithmetic (8 lanes per AVX2 vector instead of 4): |x| capped
# at 9.5 (tanh is 1 to float32 precision beyond 9.01), t = -2|x| = n ln2 + r with ln 2
# split so that n*ln2_hi is exact (|n| <= 28), expm1(r) by its Taylor series to r^8
# (truncation < 3e-10 relative for |r| <= ln2/2, far below float32's 6e-8), 2^n built
# from the bits of the rounded value.  Within 2 ulp of float32(tanh(x)) (tested).
_F32 = np.float32
_LN2_HI_32 = _F32(0.693145751953125)  # 16 significant bits: n * _LN2_HI_32 is exact
_LN2_LO_32 = _F32(1.428606765330187045e-06)  # ln 2 - _LN2_HI_32
_INV_LN2_32 = _F32(1.44269504088896338700)
_ROUND_MAGIC_32 = _F32(12582912.0)  # 1.5 * 2**23
_CAP_32 = _F32(-9.5)
_TWO_32 = _F32(2.0)
_ONE_32 = _F32(1.0)
D2, D3, D4, D5, D6, D7, D8 = (_F32(c) for c in _C[2:9])


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh_scalar32(x):
    """tanh(x) in float32 arithmetic, vectorisable (the float32 block above)."""
    ax = -abs(x)
    ax = _CAP_32 if ax < _CAP_32 else ax  # NaN fails the test and propagates
    t = _TWO_32 * ax  # in [-19, 0]
    kd = t * _INV_LN2_32 + _ROUND_MAGIC_32
    nf = kd - _ROUND_MAGIC_32  # n, exact
    r = (t - nf * _LN2_HI_32) - nf * _LN2_LO_32  # |r| <= ln2/2 (first difference exact)
    r2 = r * r
    r4 = r2 * r2
    q = (D2 + D3 * r) + r2 * (D4 + D5 * r) + r4 * ((D6 + D7 * r) + r2 * D8)
    em_r = r + r2 * q  # expm1(r)
    s = _pow2_of_rounded(kd)  # 2^n (float32)
    m = s * em_r + (s - _ONE_32)  # expm1(t) in (-1, 0]
    return math.copysign(-m / (_TWO_32 + m), x)


def tanh_any(x):
    """tanh of a float in a kernel: :func:`tanh_scalar` (float64) or
    :func:`tanh_scalar32` (float32), chosen by type when the kernel is compiled."""
    return np.tanh(x)


@overload(tanh_any, inline="always")
def _tanh_any(x):
    if x == types.float32:
        return lambda x: tanh_scalar32(x)
    return lambda x: tanh_scalar(x)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def tanh32_inplace(a):
    """``a[k] = tanh(a[k])`` for a 1-D float32 array, in float32 arithmetic."""
    for k in numba.prange(a.shape[0]):
        a[k] = tanh_any(a[k])


# ------------------------------------------------------------------ other activations
# Kernels dispatch on an integer code (no Python objects in kernels).  0 (identity) and 1
# (tanh, the vectorised scalars above) are handled by the callers as before.  What a kernel
# keeps after a layer's forward (in the array that held z):
#   codes 2-5 (relu, relu6, softplus, sigmoid): h = phi(z), whose derivatives are functions
#     of h (symref.reference.activation.derivatives_from_value), as for tanh;
#   codes >= KEEP_Z (gelu, silu, silut): z itself, since their derivatives are not functions
#     of h;
#     h is recomputed from z where it is needed (:func:`act_kept`).
# They are computed in float64 (a float32 input is promoted, the result rounded once on
# store): scalar libm calls, not vectorised (tanh is the one the benchmarks measure).
ACT_LINEAR, ACT_TANH, ACT_RELU, ACT_RELU6, ACT_SOFTPLUS, ACT_SIGMOID, ACT_GELU, ACT_SILU, \
    ACT_SILUT = range(9)
KEEP_Z = ACT_GELU  # codes >= KEEP_Z keep z, not h
#: activation name (symref.reference.activation) -> kernel code
ACT_CODES = {"linear": ACT_LINEAR, "none": ACT_LINEAR, "tanh": ACT_TANH, "relu": ACT_RELU,
             "relu6": ACT_RELU6, "softplus": ACT_SOFTPLUS, "sigmoid": ACT_SIGMOID,
             "gelu": ACT_GELU, "gelu_tf": ACT_GELU, "silu": ACT_SILU, "silut": ACT_SILUT}
_CODE_NAMES = {ACT_LINEAR: "linear", ACT_TANH: "tanh", ACT_RELU: "relu", ACT_RELU6: "relu6",
               ACT_SOFTPLUS: "softplus", ACT_SIGMOID: "sigmoid", ACT_GELU: "gelu",
               ACT_SILU: "silu", ACT_SILUT: "silut"}
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
# silut (code ACT_SILUT) is deepmd-kit's default threshold T = 3 (the canonical name "silut");
# "silut:T" for another T has no code and runs on the reference
_SILUT_T = SILUT_THRESHOLD
_SILUT_SLOPE, _SILUT_CONST = silut_constants(SILUT_THRESHOLD)


def act_code(name: str, path: str = "the numba fast path") -> int:
    """The kernel code of activation ``name``; ValueError naming it and ``path`` when the
    kernels do not implement it."""
    code = ACT_CODES.get(name)
    if code is None:
        raise ValueError(f"activation {name!r} is not implemented in {path} "
                         f"(kernels have {sorted(ACT_CODES)})")
    return code


@numba.njit(cache=True, inline="always", error_model="numpy")
def _sigmoid64(x):
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _sech2(u):
    """1 - tanh(u)^2 as 1/cosh(u)^2 (no cancellation; 0 beyond cosh's overflow)."""
    if abs(u) > 700.0:
        return 0.0
    c = math.cosh(u)
    return 1.0 / (c * c)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _gelu_onept(u):
    """1 + tanh(u), as 2 e^{2u} / (1 + e^{2u}) for u < 0 (no cancellation)."""
    if u >= 0.0:
        return 1.0 + math.tanh(u)
    e = math.exp(2.0 * u)
    return 2.0 * e / (1.0 + e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_value(z, act):
    """phi(z) for a code >= 2 (identity otherwise), in float64; twin :func:`act_value_ref`."""
    x = np.float64(z)
    if act == ACT_RELU:
        return x if x > 0.0 else 0.0 * x  # -0.0 below 0, as z * [z > 0]
    if act == ACT_RELU6:
        return 0.0 if x < 0.0 else (6.0 if x > 6.0 else x)
    if act == ACT_SOFTPLUS:
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    if act == ACT_SIGMOID:
        return _sigmoid64(x)
    if act == ACT_GELU:
        return 0.5 * x * (1.0 + math.tanh(_GELU_C * (x + _GELU_A * (x * x) * x)))
    if act == ACT_SILU:
        return x * _sigmoid64(x)
    if act == ACT_SILUT:
        if x >= _SILUT_T:
            return math.tanh(_SILUT_SLOPE * (x - _SILUT_T)) + _SILUT_CONST
        return x * _sigmoid64(x)
    return x


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_kept(v, act):
    """h from the kept value ``v`` (module comment): phi(v) for codes >= KEEP_Z, else v."""
    if act >= KEEP_Z:
        return act_value(v, act)
    return np.float64(v)


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_deriv(v, act):
    """phi' from the kept value ``v`` (h for codes 2-5, z for codes >= KEEP_Z; 1 otherwise);
    twin :func:`act_deriv_ref`."""
    x = np.float64(v)
    if act == ACT_RELU:
        return 1.0 if x > 0.0 else 0.0
    if act == ACT_RELU6:
        return 1.0 if (x > 0.0 and x < 6.0) else 0.0
    if act == ACT_SOFTPLUS:
        return -math.expm1(-x)
    if act == ACT_SIGMOID:
        return x * (1.0 - x)
    if act == ACT_GELU:
        x2 = x * x
        u = _GELU_C * (x + _GELU_A * x2 * x)
        return 0.5 * _gelu_onept(u) + 0.5 * x * _sech2(u) * (_GELU_C * (1.0 + 3.0 * _GELU_A * x2))
    if act == ACT_SILU or (act == ACT_SILUT and x < _SILUT_T):
        sg = _sigmoid64(x)
        return sg + x * (sg * (1.0 - sg))
    if act == ACT_SILUT:
        return _SILUT_SLOPE * _sech2(_SILUT_SLOPE * (x - _SILUT_T))
    return 1.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_second(v, act):
    """phi'' from the kept value ``v`` (0 for codes < 2 and relu, relu6); twin
    :func:`act_second_ref`."""
    x = np.float64(v)
    if act == ACT_SOFTPLUS:
        return -math.expm1(-x) * math.exp(-x)
    if act == ACT_SIGMOID:
        return x * (1.0 - x) * (1.0 - 2.0 * x)
    if act == ACT_GELU:
        x2 = x * x
        u = _GELU_C * (x + _GELU_A * x2 * x)
        t = math.tanh(u)
        s = _sech2(u)
        du = _GELU_C * (1.0 + 3.0 * _GELU_A * x2)
        return s * du + 0.5 * x * s * (6.0 * _GELU_A * _GELU_C * x - 2.0 * t * du * du)
    if act == ACT_SILU or (act == ACT_SILUT and x < _SILUT_T):
        sg = _sigmoid64(x)
        d = sg * (1.0 - sg)
        return d * (2.0 + x * (1.0 - 2.0 * sg))
    if act == ACT_SILUT:
        u = _SILUT_SLOPE * (x - _SILUT_T)
        return -2.0 * _SILUT_SLOPE * math.tanh(u) * (_SILUT_SLOPE * _sech2(u))
    return 0.0


def act_value_ref(z, act):
    """NumPy twin of :func:`act_value` on arrays (the reference table)."""
    return ACTIVATIONS[_CODE_NAMES[act]](np.asarray(z, dtype=np.float64))[0]


def act_kept_ref(v, act):
    """NumPy twin of :func:`act_kept` on arrays."""
    return act_value_ref(v, act) if act >= KEEP_Z else v


def _derivs_ref(v, act):
    v = np.asarray(v, dtype=np.float64)
    if act >= KEEP_Z:  # from z: the reference table
        return ACTIVATIONS[_CODE_NAMES[act]](v, True)[1:]
    return derivatives_from_value(_CODE_NAMES[act], v)


def act_deriv_ref(v, act):
    """NumPy twin of :func:`act_deriv` on arrays."""
    return _derivs_ref(v, act)[0]


def act_second_ref(v, act):
    """NumPy twin of :func:`act_second` on arrays."""
    return _derivs_ref(v, act)[1]


@numba.njit(cache=True, error_model="numpy")
def act_scalars(z, act, out):
    """``out[0/1/2, k]`` <- h, phi', phi'' at z[k] through what a kernel keeps (h for codes
    2-5, z for codes >= KEEP_Z): the test harness of the scalars (``out`` 3 x n float64)."""
    for k in range(z.shape[0]):
        v = np.float64(z[k]) if act >= KEEP_Z else act_value(z[k], act)
        out[0, k] = act_kept(v, act)
        out[1, k] = act_deriv(v, act)
        out[2, k] = act_second(v, act)


def act_scalars_ref(z, act, out):
    """NumPy twin of :func:`act_scalars`."""
    v = np.asarray(z, dtype=np.float64) if act >= KEEP_Z else act_value_ref(z, act)
    out[0], out[1], out[2] = act_kept_ref(v, act), act_deriv_ref(v, act), act_second_ref(v, act)
