"""Vectorisable elementary functions for numba loops.

numba here has no SVML: `math.exp` and friends inside a loop are scalar libm calls,
and a fused loop calling them is slower than NumPy's own SIMD routines. These
versions are branch-free (range reduction, a polynomial, selects for the special
cases), so LLVM vectorises the loops that call them. They compute in float64
(a float32 operand is widened, and the caller rounds the result back), and are
tested against NumPy over the whole float64/float32 range including inf, nan,
denormals and negative zero (tests/test_vecmath.py): within a few ulp.

sin/cos/tan reduce the argument with a three-part pi/2 (exact for |x| <= TRIG_LIMIT);
the code generator runs the libm version (`math.sin`) instead for loops that meet
a larger argument (see `trig_big`).

Also here: the scalar helpers generated code calls (reduction steps whose `+`
may be reassociated so that LLVM vectorises the accumulation, NaN-propagating
max/min, integer division and remainder as NumPy computes them).

All functions are `@njit(cache=True, forceinline=True)`: compiled once (and cached
on disk), then inlined by LLVM into the loops that call them, where they
vectorise. Fast-math flags: the elementary functions carry only `contract`
(a multiply-add may become one FMA: one rounding instead of two, NaN/inf semantics
unchanged), and `radd`/`rmul`, whose single operation carries only `reassoc` (a
sum's rounding order may differ from NumPy's pairwise order, as any loop's does).
"""
import math

import numpy as np
from llvmlite import ir
from numba.core import types

from .jitlib import njit   # a dispatcher compiling for non-literal argument types
from numba.extending import intrinsic

_opts = dict(cache=True, error_model='numpy', forceinline=True)
# the elementary functions may fuse a multiply and an add into one FMA instruction
# (`contract`, one rounding instead of two: never less accurate, and NaN/inf behave
# exactly as without the flag); their polynomials then cost half the instructions
_fopts = dict(_opts, fastmath={'contract'})


# --- bit casts ---------------------------------------------------------------------------

@intrinsic
def _f2i(typingctx, x):
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _i2f(typingctx, x):
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(**_opts)
def _pow2(k):
    """2.0**k for -1022 <= k <= 1023 (k an int64)."""
    return _i2f((k + 1023) << 52)


# --- reduction steps and NaN-aware helpers --------------------------------------------------

@njit(cache=True, error_model='numpy', forceinline=True, fastmath={'reassoc'})
def radd(acc, v):
    return acc + v


@njit(cache=True, error_model='numpy', forceinline=True, fastmath={'reassoc'})
def rmul(acc, v):
    return acc * v


@njit(**_opts)
def fmax(a, b):
    """np.maximum: NaN if either is NaN."""
    return a if (a >= b or a != a) else b


@njit(**_opts)
def fmin(a, b):
    """np.minimum: NaN if either is NaN."""
    return a if (a <= b or a != a) else b


@njit(**_opts)
def fsign(x):
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else x)


@njit(**_opts)
def safe_mul(x, y):
    r = x * y
    return r if (r == r or x != 0) else abs(x)       # 0 * inf and 0 * nan give 0


@njit(**_opts)
def idiv(x, y):
    """Integer division as cotangent's div computes it: trunc(float(x)/float(y))."""
    return np.trunc(np.float64(x) / np.float64(y))


@njit(**_opts)
def irem(x, y):
    """C remainder (sign of the dividend); 0 where y == 0, as NumPy's fmod gives."""
    if y == 0:
        return x - x
    r = x % y
    if r != 0 and (r < 0) != (x < 0):
        r -= y
    return r


@njit(**_opts)
def ipow(x, y):
    """x**y for integers, y >= 0 (NumPy raises for y < 0)."""
    if y < 0:
        raise ValueError("Integers to negative integer powers are not allowed.")
    r = x - x + 1
    b = x
    while y:
        if y & 1:
            r = r * b
        b = b * b
        y >>= 1
    return r


# --- exp, expm1 ------------------------------------------------------------------------------

_INVLN2 = 1.4426950408889634
_LN2HI = 0.6931471803691238      # 32 significant bits: k * _LN2HI is exact for |k| < 2^21
_LN2LO = 1.9082149292705877e-10
_SHIFT = 6755399441055744.0      # 1.5 * 2^52: (v + SHIFT) - SHIFT rounds v to an integer


@njit(**_fopts)
def _exp_poly(r):
    # exp(r) - 1 - r = r^2 P(r) for |r| <= ln2/2, P of degree 9: a near-minimax fit of
    # relative error (Lawson-weighted least squares in 40-digit arithmetic), 1.8e-17
    # before rounding: two multiply-adds fewer than the Taylor series to r^13
    p = 2.50537731984415e-08
    p = p * r + 2.76260246065177e-07
    p = p * r + 2.7557407513559083e-06
    p = p * r + 2.4801505305291318e-05
    p = p * r + 0.00019841269719070848
    p = p * r + 0.0013888888931540518
    p = p * r + 0.008333333333389512
    p = p * r + 0.04166666666657682
    p = p * r + 0.16666666666666588
    p = p * r + 0.5000000000000006
    return (r * r) * p


@njit(**_fopts)
def vm_exp(x):
    xc = x if x > -746.0 else -746.0
    xc = xc if xc < 710.0 else 710.0
    k = (xc * _INVLN2 + _SHIFT) - _SHIFT
    r = (xc - k * _LN2HI) - k * _LN2LO
    p = 1.0 + (r + _exp_poly(r))
    ki = np.int64(k)
    k1 = ki >> 1
    res = (p * _pow2(k1)) * _pow2(ki - k1)
    return res if x == x else x


def _expm1(x):
    xc = x if x > -50.0 else -50.0
    xc = xc if xc < 710.0 else 710.0
    k = (xc * _INVLN2 + _SHIFT) - _SHIFT
    r = (xc - k * _LN2HI) - k * _LN2LO
    q = r + _exp_poly(r)                  # expm1(r)
    ki = np.int64(k)
    k1 = ki >> 1
    s1 = _pow2(k1)
    s2 = _pow2(ki - k1)
    s = s1 * s2
    small = s * q + (s - 1.0)             # 2^k (q + 1) - 1 without cancellation
    big = ((q + 1.0) * s1) * s2           # the -1 is below an ulp
    res = small if k < 60.0 else big
    res = res if x != 0.0 else x          # keeps -0.0
    return res if x == x else x


vm_expm1 = njit(**_fopts)(_expm1)


# --- log, log1p ------------------------------------------------------------------------------

_SQRT2 = 1.4142135623730951


@njit(**_fopts)
def _log_core(x):
    """log(x) for finite x > 0 (denormals included); garbage elsewhere."""
    small = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if small else x           # 2^54
    bits = _f2i(xs)
    e = ((bits >> 52) & 0x7ff) - 1023
    e = e - 54 if small else e
    m = _i2f((bits & 0x000fffffffffffff) | 0x3ff0000000000000)   # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    # log(1+f) = 2 atanh(s) = 2s + s R(z), R = z (2/3 + 2/5 z + ... ), |s| < 0.172
    R = 2.0 / 23.0
    R = R * z + 2.0 / 21.0
    R = R * z + 2.0 / 19.0
    R = R * z + 2.0 / 17.0
    R = R * z + 2.0 / 15.0
    R = R * z + 2.0 / 13.0
    R = R * z + 2.0 / 11.0
    R = R * z + 2.0 / 9.0
    R = R * z + 2.0 / 7.0
    R = R * z + 2.0 / 5.0
    R = R * z + 2.0 / 3.0
    R = R * z
    hfsq = 0.5 * f * f
    fe = np.float64(e)
    return fe * _LN2HI + (f - (hfsq - (s * (hfsq + R) + fe * _LN2LO)))


@njit(**_fopts)
def vm_log(x):
    res = _log_core(x)
    res = res if x < np.inf else x                      # inf -> inf, nan -> nan
    return res if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


@njit(**_fopts)
def vm_log1p(x):
    u = 1.0 + x
    res = _log_core(u) + (x - (u - 1.0)) / u
    res = res if u != 1.0 else x                          # tiny x (keeps -0.0)
    res = res if x < np.inf else x
    return res if x > -1.0 else (-np.inf if x == -1.0 else np.nan)


# --- tanh, logistic ------------------------------------------------------------------------------

@njit(**_fopts)
def vm_tanh(x):
    # t = expm1(2|x|) with the argument clamped to [0, 44]: 2^k never overflows,
    # so one scale factor and no special cases inside (cheaper than vm_expm1)
    ax = abs(x)
    y = 2.0 * (ax if ax < 22.0 else 22.0)
    k = (y * _INVLN2 + _SHIFT) - _SHIFT
    r = (y - k * _LN2HI) - k * _LN2LO
    q = r + _exp_poly(r)                              # expm1(r)
    s = _pow2(np.int64(k))
    t = s * q + (s - 1.0)                             # 2^k (q + 1) - 1
    rr = 1.0 / (t + 2.0)
    # near 1: 1 - (a small, exact-ish term), which is 1.0 exactly from |x| = 22 on
    res = t * rr if ax < 0.55 else 1.0 - 2.0 * rr
    res = math.copysign(res, x)
    # tanh x = x below 2^-28; a NaN fails the comparison too and is returned as is
    return res if ax > 3.725290298461914e-09 else x


@njit(**_fopts)
def vm_logistic(x):
    # as the eager implementation: tanh(x/2)/2 + 1/2
    return vm_tanh(x * 0.5) * 0.5 + 0.5


# --- sin, cos, tan ---------------------------------------------------------------------------

TRIG_LIMIT = 262144.0   # 2^18: |k| < 2^19, so k * _PIO2_1 and k * _PIO2_2 are exact
_TWO_OVER_PI = 0.6366197723675814
_PIO2_1 = 1.5707963267341256       # pi/2 in three parts: 33 + 33 + 53 bits
_PIO2_2 = 6.077100506303966e-11
_PIO2_3 = 2.0222662487959506e-21


@njit(**_fopts)
def _sin_poly(r):
    z = r * r
    p = -1.0 / 121645100408832000.0           # -1/19!
    p = p * z + 1.0 / 355687428096000.0
    p = p * z - 1.0 / 1307674368000.0
    p = p * z + 1.0 / 6227020800.0
    p = p * z - 1.0 / 39916800.0
    p = p * z + 1.0 / 362880.0
    p = p * z - 1.0 / 5040.0
    p = p * z + 1.0 / 120.0
    p = p * z - 1.0 / 6.0
    return r + (r * z) * p


@njit(**_fopts)
def _cos_poly(r):
    z = r * r
    p = -1.0 / 6402373705728000.0             # -1/18!
    p = p * z + 1.0 / 20922789888000.0
    p = p * z - 1.0 / 87178291200.0
    p = p * z + 1.0 / 479001600.0
    p = p * z - 1.0 / 3628800.0
    p = p * z + 1.0 / 40320.0
    p = p * z - 1.0 / 720.0
    p = p * z + 1.0 / 24.0
    hz = 0.5 * z
    w = 1.0 - hz
    # 1 - z/2 + z^2 p, with the rounding error of 1 - z/2 added back
    return w + (((1.0 - w) - hz) + (z * z) * p)


@njit(**_fopts)
def _reduce(x):
    xc = x if abs(x) <= TRIG_LIMIT else 0.0              # big/inf/nan lanes: garbage-free
    k = (xc * _TWO_OVER_PI + _SHIFT) - _SHIFT
    r = ((xc - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    return r, np.int64(k) & 3


@njit(**_fopts)
def trig_big(x):
    """True where vm_sin/vm_cos/vm_tan are not accurate: the caller uses libm."""
    return not (abs(x) <= TRIG_LIMIT)


@njit(**_fopts)
def vm_sin(x):
    r, n = _reduce(x)
    s = _sin_poly(r)
    c = _cos_poly(r)
    v = s if (n & 1) == 0 else c
    v = -v if n >= 2 else v
    v = v if x != 0.0 else x
    return v if abs(x) <= TRIG_LIMIT else x - x         # nan for inf/nan


@njit(**_fopts)
def vm_cos(x):
    r, n = _reduce(x)
    s = _sin_poly(r)
    c = _cos_poly(r)
    v = c if (n & 1) == 0 else s
    v = -v if (n == 1 or n == 2) else v
    return v if abs(x) <= TRIG_LIMIT else x - x


@njit(**_fopts)
def vm_tan(x):
    r, n = _reduce(x)
    s = _sin_poly(r)
    c = _cos_poly(r)
    v = s / c if (n & 1) == 0 else -c / s
    v = v if x != 0.0 else x
    return v if abs(x) <= TRIG_LIMIT else x - x


# --- rounding --------------------------------------------------------------------------------

@njit(**_fopts)
def vm_rint(x):
    """Round half to even (np.round / np.rint), exact for every float64."""
    ax = abs(x)
    r = (ax + 4503599627370496.0) - 4503599627370496.0   # 2^52
    r = r if ax < 4503599627370496.0 else ax              # already integral (and inf/nan)
    r = -r if x < 0.0 else r
    return r if x != 0.0 else x


# --- float32 versions -------------------------------------------------------------------------
#
# In float32 loops the float64 versions above cost a widening, twice the vector
# registers and a float64-accurate polynomial. These compute in float32 throughout
# (16 lanes on AVX-512, shorter polynomials), within a few float32 ulp of NumPy.
# Every constant is a float32 global: a Python float would promote the arithmetic
# to float64.

@intrinsic
def _i2f32(typingctx, x):
    # numba widens int32 arithmetic to int64: take the low 32 bits
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if x.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(x), codegen


_f32 = np.float32
_INVLN2_32 = _f32(1.4426950408889634)
_LN2HI_32 = _f32(0.693145751953125)        # 0x3f317200: k * _LN2HI_32 exact for |k| < 2^8
_LN2LO_32 = _f32(1.4286067653302226e-06)
_SHIFT_32 = _f32(12582912.0)               # 1.5 * 2^23
_ZERO_32, _HALF_32, _ONE_32, _TWO_32 = _f32(0.0), _f32(0.5), _f32(1.0), _f32(2.0)
_E2, _E3, _E4, _E5, _E6, _E7 = (_f32(1 / 2), _f32(1 / 6), _f32(1 / 24), _f32(1 / 120),
                                _f32(1 / 720), _f32(1 / 5040))


@njit(**_fopts)
def _pow2_32(k):
    """2.0**k in float32 for -126 <= k <= 127 (k an int32)."""
    return _i2f32((k + 127) << 23)


@njit(**_fopts)
def _expm1_poly32(r):
    # expm1(r) for |r| <= ln2/2, Taylor to r^7 (remainder < 2^-26 relative)
    p = _E7
    p = p * r + _E6
    p = p * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    return r + (r * r) * p


@njit(**_fopts)
def vm_exp32(x):
    xc = x if x > _f32(-104.0) else _f32(-104.0)
    xc = xc if xc < _f32(89.0) else _f32(89.0)
    k = (xc * _INVLN2_32 + _SHIFT_32) - _SHIFT_32
    r = (xc - k * _LN2HI_32) - k * _LN2LO_32
    p = _ONE_32 + _expm1_poly32(r)
    ki = np.int32(k)
    k1 = ki >> np.int32(1)
    res = (p * _pow2_32(k1)) * _pow2_32(ki - k1)
    return res if x == x else x


# tanh x = x + x^3 P(x^2) on |x| < 0.55: a least-squares fit of relative error,
# within 0.08 float32 ulp before rounding
_T0, _T1, _T2, _T3, _T4, _T5 = (_f32(-0.3333333285931642), _f32(0.13333300990909558),
                                _f32(-0.05396087839695082), _f32(0.021791721661189496),
                                _f32(-0.008442906947067109), _f32(0.002430590850876812))


@njit(**_fopts)
def vm_tanh32(x):
    ax = abs(x)
    y = _TWO_32 * (ax if ax < _f32(10.0) else _f32(10.0))   # tanh(10) is 1 in float32
    k = (y * _INVLN2_32 + _SHIFT_32) - _SHIFT_32
    r = (y - k * _LN2HI_32) - k * _LN2LO_32
    q = _expm1_poly32(r)
    s = _pow2_32(np.int32(k))
    t = s * q + (s - _ONE_32)                        # expm1(2|x|)
    big = _ONE_32 - _TWO_32 / (t + _TWO_32)
    z = x * x                                        # below 0.55: x + x^3 P(x^2)
    p = _T5 * z + _T4
    p = p * z + _T3
    p = p * z + _T2
    p = p * z + _T1
    p = p * z + _T0
    small = x + (x * z) * p
    res = -big if x < _ZERO_32 else big
    res = small if ax < _f32(0.55) else res
    return res if (x == x and x != _ZERO_32) else x   # nan, and +-0 keeps its sign

