r"""Activations for numba kernels: a vectorisable ``tanh`` (and, at the end, the other
activations behind integer codes, :data:`ACT_CODES`).

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

from symref.reference.activation import ACTIVATIONS, derivatives_from_value

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
def _fma(typingctx, a, b, c):
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
    r = _fma(-nf, _LN2_LO, _fma(-nf, _LN2_HI, t))  # |r| <= ln2/2
    # expm1(r) = r + r^2 q(r), q of degree 12 by Estrin's scheme (short dependency chains)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q01 = _fma(C3, r, C2)
    q23 = _fma(C5, r, C4)
    q45 = _fma(C7, r, C6)
    q67 = _fma(C9, r, C8)
    q89 = _fma(C11, r, C10)
    qab = _fma(C13, r, C12)
    q03 = _fma(q23, r2, q01)
    q47 = _fma(q67, r2, q45)
    q8b = _fma(qab, r2, q89)
    q8c = _fma(C14, r4, q8b)
    q07 = _fma(q47, r4, q03)
    q = _fma(q8c, r8, q07)
    em_r = _fma(q, r2, r)  # expm1(r)
    s = _pow2_of_rounded(kd)  # 2^n, n in [-58, 0]
    m = _fma(s, em_r, s - 1.0)  # expm1(t) in (-1, 0]
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
# (tanh, the vectorised scalars above) are handled by the callers as before; the codes >= 2
# are the activations whose derivatives are functions of the value h = phi(z)
# (symref.reference.activation.derivatives_from_value), since the kernels overwrite z with h.
# They are computed in float64 (a float32 input is promoted, the result rounded once on
# store): scalar libm calls, not vectorised (tanh is the one the benchmarks measure).
ACT_LINEAR, ACT_TANH, ACT_RELU, ACT_RELU6, ACT_SOFTPLUS, ACT_SIGMOID = range(6)
#: activation name (symref.reference.activation) -> kernel code
ACT_CODES = {"linear": ACT_LINEAR, "none": ACT_LINEAR, "tanh": ACT_TANH, "relu": ACT_RELU,
             "relu6": ACT_RELU6, "softplus": ACT_SOFTPLUS, "sigmoid": ACT_SIGMOID}
_CODE_NAMES = {c: n for n, c in ACT_CODES.items() if n != "none"}


def act_code(name: str, path: str = "the numba fast path") -> int:
    """The kernel code of activation ``name``; ValueError naming it and ``path`` when the
    kernels do not implement it (gelu, silu: their derivatives need z, which is not kept)."""
    code = ACT_CODES.get(name)
    if code is None:
        raise ValueError(f"activation {name!r} is not implemented in {path} "
                         f"(kernels have {sorted(ACT_CODES)})")
    return code


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
        e = math.exp(-abs(x))
        return 1.0 / (1.0 + e) if x >= 0.0 else e / (1.0 + e)
    return x


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_deriv(h, act):
    """phi' from the value h for a code >= 2 (1 otherwise); twin :func:`act_deriv_ref`."""
    x = np.float64(h)
    if act == ACT_RELU:
        return 1.0 if x > 0.0 else 0.0
    if act == ACT_RELU6:
        return 1.0 if (x > 0.0 and x < 6.0) else 0.0
    if act == ACT_SOFTPLUS:
        return -math.expm1(-x)
    if act == ACT_SIGMOID:
        return x * (1.0 - x)
    return 1.0


@numba.njit(cache=True, inline="always", error_model="numpy")
def act_second(h, act):
    """phi'' from the value h for a code >= 2 (0 otherwise); twin :func:`act_second_ref`."""
    x = np.float64(h)
    if act == ACT_SOFTPLUS:
        return -math.expm1(-x) * math.exp(-x)
    if act == ACT_SIGMOID:
        return x * (1.0 - x) * (1.0 - 2.0 * x)
    return 0.0


def act_value_ref(z, act):
    """NumPy twin of :func:`act_value` on arrays (the reference table)."""
    return ACTIVATIONS[_CODE_NAMES[act]](np.asarray(z, dtype=np.float64))[0]


def act_deriv_ref(h, act):
    """NumPy twin of :func:`act_deriv` on arrays."""
    return derivatives_from_value(_CODE_NAMES[act], np.asarray(h, dtype=np.float64))[0]


def act_second_ref(h, act):
    """NumPy twin of :func:`act_second` on arrays."""
    return derivatives_from_value(_CODE_NAMES[act], np.asarray(h, dtype=np.float64))[1]


@numba.njit(cache=True, error_model="numpy")
def act_scalars(z, act, out):
    """``out[0/1/2, k]`` <- act_value(z[k]), act_deriv(h), act_second(h) with h = that value
    (the test harness of the three scalars; ``out`` 3 x n float64)."""
    for k in range(z.shape[0]):
        h = act_value(z[k], act)
        out[0, k] = h
        out[1, k] = act_deriv(h, act)
        out[2, k] = act_second(h, act)


def act_scalars_ref(z, act, out):
    """NumPy twin of :func:`act_scalars`."""
    h = act_value_ref(z, act)
    out[0], out[1], out[2] = h, act_deriv_ref(h, act), act_second_ref(h, act)
