"""Unary elementwise math: exp log log1p expm1 sin cos tan tanh logistic sqrt rsqrt
erf floor ceil round. Each primitive, its NumPy (or numba) implementation and its
derivative rule sit together; a rule is one line."""
import math

import numpy as np
import numba

from tracer import Primitive
from ._base import unary, defjvp, defjvp2, defjvp_zero, dtype_of
from .arith import mul_p, add_p, sub_p, div_p, neg_p, safe_mul
from ._kernels import tanh64, one_minus_square, tanh_deferred_derivative, KERNEL_MIN


def _one(x):
    return dtype_of(x).type(1)


def _scalar(x, v):
    return dtype_of(x).type(v)


exp_p = unary('exp', np.exp)
defjvp2(exp_p, lambda g, ans, x: mul_p.bind(g, ans))

log_p = unary('log', np.log)
defjvp(log_p, lambda g, x: safe_mul(g, div_p.bind(_one(x), x)))

log1p_p = unary('log1p', np.log1p)
defjvp(log1p_p, lambda g, x: safe_mul(g, div_p.bind(_one(x), add_p.bind(x, _one(x)))))

expm1_p = unary('expm1', np.expm1)
defjvp2(expm1_p, lambda g, ans, x: mul_p.bind(g, add_p.bind(ans, _one(ans))))

sin_p = unary('sin', np.sin)
cos_p = unary('cos', np.cos)

# sincos(x) -> (sin x, cos x): sin and cos differentiate into each other, so their
# JVPs compute both at once (one equation, one pass, shared by higher orders).
sincos_p = Primitive('sincos', multiple_results=True)
sincos_p.impl = lambda x: (np.sin(x), np.cos(x))
sincos_p.abstract_eval = lambda a: [sin_p.abstract_eval(a)] * 2


def _sincos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = sincos_p.bind(x)
    return [s, c], [mul_p.bind(t, c), neg_p.bind(mul_p.bind(t, s))]


def _sin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = sincos_p.bind(x)
    return s, mul_p.bind(t, c)


def _cos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    s, c = sincos_p.bind(x)
    return c, neg_p.bind(mul_p.bind(t, s))


sincos_p.jvp = _sincos_jvp
sin_p.jvp = _sin_jvp
cos_p.jvp = _cos_jvp

tan_p = unary('tan', np.tan)
defjvp2(tan_p, lambda g, ans, x: mul_p.bind(g, add_p.bind(_one(ans), mul_p.bind(ans, ans))))

def _tanh_impl(x):
    out = tanh64(x)
    return np.tanh(x) if out is None else out


tanh_p = unary('tanh', _tanh_impl)
defjvp2(tanh_p, lambda g, ans, x: mul_p.bind(g, sub_p.bind(_one(ans), mul_p.bind(ans, ans))))


def _logistic_impl(x):
    # 1/(1+exp(-x)) overflows exp for large -x; this form is stable everywhere
    half = np.asarray(x).dtype.type(0.5) if np.asarray(x).dtype.kind == 'f' else 0.5
    return np.tanh(x * half) * half + half


logistic_p = unary('logistic', _logistic_impl)
defjvp2(logistic_p, lambda g, ans, x: mul_p.bind(g, mul_p.bind(ans, sub_p.bind(_one(ans), ans))))

sqrt_p = unary('sqrt', np.sqrt)
defjvp2(sqrt_p, lambda g, ans, x: safe_mul(g, div_p.bind(_scalar(ans, 0.5), ans)))


def _rsqrt_impl(x):
    return np.reciprocal(np.sqrt(x))


rsqrt_p = unary('rsqrt', _rsqrt_impl)
defjvp2(rsqrt_p, lambda g, ans, x: safe_mul(
    g, mul_p.bind(div_p.bind(ans, x), _scalar(ans, -0.5))))


@numba.vectorize(['float32(float32)', 'float64(float64)'], cache=True)
def _erf_kernel(x):
    # NumPy has no erf; numba's math.erf is libm's, accurate to an ulp.
    return math.erf(x)


def _erf_impl(x):
    x = np.asarray(x)
    out = _erf_kernel(x)
    return out[()] if out.ndim == 0 else out


erf_p = unary('erf', _erf_impl, allowed='f')
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
defjvp(erf_p, lambda g, x: mul_p.bind(g, mul_p.bind(
    _scalar(x, _TWO_OVER_SQRT_PI), exp_p.bind(neg_p.bind(mul_p.bind(x, x))))))

floor_p = unary('floor', np.floor)
defjvp_zero(floor_p)
ceil_p = unary('ceil', np.ceil)
defjvp_zero(ceil_p)
round_p = unary('round', np.round)   # half to even, as NumPy
defjvp_zero(round_p)


def _fn(p):
    def f(x):
        return p.bind(x)
    f.primitive = p
    f.__name__ = p.name
    f.__doc__ = f"Elementwise {p.name} (the `{p.name}` primitive)."
    return f


exp, log, log1p, expm1 = _fn(exp_p), _fn(log_p), _fn(log1p_p), _fn(expm1_p)
sin, cos, tan, tanh = _fn(sin_p), _fn(cos_p), _fn(tan_p), _fn(tanh_p)
logistic, sqrt, rsqrt, erf = _fn(logistic_p), _fn(sqrt_p), _fn(rsqrt_p), _fn(erf_p)
floor, ceil, round = _fn(floor_p), _fn(ceil_p), _fn(round_p)


def sincos(x):
    return sincos_p.bind(x)


# --- batching rules ---
from ._batching import elementwise as _bew  # noqa: E402

for _p in (exp_p, log_p, log1p_p, expm1_p, sin_p, cos_p, sincos_p, tan_p, tanh_p,
           logistic_p, sqrt_p, rsqrt_p, erf_p, floor_p, ceil_p, round_p):
    _p.batch = _bew(_p)
del _p

# --- numba lowering ---
# Transcendentals use the vectorisable versions in primitives/vecmath.py (computed
# in float64, rounded back by the generated code); sin/cos/tan fall back to libm
# for loops that meet an argument beyond the fast range reduction.
from ._lowering import Elementwise as _EW, Guarded as _Guarded  # noqa: E402


def _f64(ctx, x, aval):
    return x if aval.dtype.itemsize == 8 else f'np.float64({x})'


def _lw_vm(name, f32=None):
    """`name` in float64 (a float32 operand widened), or `f32` on float32 operands."""
    def lower(ctx, a, avals, out):
        if f32 is not None and avals[0].dtype == np.float32:
            return f"{ctx.helper(f32)}({a[0]})"
        return f"{ctx.helper(name)}({_f64(ctx, a[0], avals[0])})"
    return _EW(lower)


def _lw_libm(expr):
    return _EW(lambda ctx, a, avals, out: expr.format(a[0]))


def _guarded_trig(ctx, fast, slow, x, aval):
    x64 = _f64(ctx, x, aval)
    return _Guarded(f"{ctx.helper(fast)}({x64})", f"math.{slow}({x})",
                   f"{ctx.helper('trig_big')}({x64})")


exp_p.lowering = _lw_vm('vm_exp', 'vm_exp32')
log_p.lowering = _lw_vm('vm_log')
log1p_p.lowering = _lw_vm('vm_log1p')
expm1_p.lowering = _lw_vm('vm_expm1')
tanh_p.lowering = _lw_vm('vm_tanh', 'vm_tanh32')
logistic_p.lowering = _lw_vm('vm_logistic')
sin_p.lowering = _EW(lambda ctx, a, avals, out: _guarded_trig(ctx, 'vm_sin', 'sin', a[0], avals[0]),
                     guarded=True)
cos_p.lowering = _EW(lambda ctx, a, avals, out: _guarded_trig(ctx, 'vm_cos', 'cos', a[0], avals[0]),
                     guarded=True)
tan_p.lowering = _EW(lambda ctx, a, avals, out: _guarded_trig(ctx, 'vm_tan', 'tan', a[0], avals[0]),
                     guarded=True)
sincos_p.lowering = _EW(lambda ctx, a, avals, out: [
    _guarded_trig(ctx, 'vm_sin', 'sin', a[0], avals[0]),
    _guarded_trig(ctx, 'vm_cos', 'cos', a[0], avals[0])], guarded=True)
sqrt_p.lowering = _lw_libm('np.sqrt({})')
rsqrt_p.lowering = _EW(lambda ctx, a, avals, out: f'({ctx.lit(1, out.dtype)} / np.sqrt({a[0]}))')
erf_p.lowering = _lw_libm('math.erf({})')
floor_p.lowering = _lw_libm('np.floor({})')
ceil_p.lowering = _lw_libm('np.ceil({})')
round_p.lowering = _lw_vm('vm_rint')


# --- eager linearization rules -------------------------------------------------------
# Primitive.lin (see transforms/linearize.py): the output and the derivative, as
# NumPy values, for the same formulas as the JVP rules above.

def _lin_with_ans(impl, coef):
    def lin(x):
        ans = impl(x)
        return ans, (coef(ans, x),)
    return lin


def _sin_lin(x):
    return np.sin(x), (np.cos(x),)


def _cos_lin(x):
    return np.cos(x), (np.negative(np.sin(x)),)


def _exp_lin(x):
    ans = np.exp(x)
    return ans, (ans,)


exp_p.lin = _exp_lin
expm1_p.lin = _lin_with_ans(np.expm1, lambda ans, x: ans + 1)
log_p.lin = _lin_with_ans(np.log, lambda ans, x: np.reciprocal(x))
log1p_p.lin = _lin_with_ans(np.log1p, lambda ans, x: np.reciprocal(x + 1))
sin_p.lin = _sin_lin
cos_p.lin = _cos_lin
tan_p.lin = _lin_with_ans(np.tan, lambda ans, x: ans * ans + 1)


def _tanh_lin(x):
    large = type(x) is np.ndarray and x.size >= KERNEL_MIN
    if large:
        both = tanh64(x, with_derivative=True)    # one pass for large float64 arrays
        if both is not None:
            return both[0], (both[1],)
    ans = np.tanh(x)
    # (the derivative in one pass for large float32 arrays; small ones skip the call)
    d = one_minus_square(ans) if large else None
    return ans, (1 - ans * ans if d is None else d,)


tanh_p.lin = _tanh_lin
tanh_p.lin_deferred = tanh_deferred_derivative
logistic_p.lin = _lin_with_ans(_logistic_impl, lambda ans, x: ans * (1 - ans))
sqrt_p.lin = _lin_with_ans(np.sqrt, lambda ans, x: np.divide(0.5, ans))
rsqrt_p.lin = _lin_with_ans(_rsqrt_impl, lambda ans, x: np.divide(ans, x) * -0.5)
for _p in (log_p, log1p_p, sqrt_p, rsqrt_p):
    _p.lin_safe = True      # infinite at 0: a zero cotangent must not make NaN


# Primitive.lin_dual: the second derivative, as the tangent of the coefficient above
# along dx (dc = f''(x) dx), in terms of out = f(x) and dout = c dx where that is
# cheaper. (The rules with an infinite coefficient, lin_safe, have none: their JVP
# rules handle the singular points.)
exp_p.lin_dual = lambda x, dx, out, dout, c: dout                      # c = out
expm1_p.lin_dual = lambda x, dx, out, dout, c: dout                    # c = out + 1
sin_p.lin_dual = lambda x, dx, out, dout, c: np.negative(np.multiply(out, dx))  # c = cos x
cos_p.lin_dual = lambda x, dx, out, dout, c: np.negative(np.multiply(out, dx))  # c = -sin x
tan_p.lin_dual = lambda x, dx, out, dout, c: np.multiply(np.multiply(out, 2), dout)
tanh_p.lin_dual = lambda x, dx, out, dout, c: np.multiply(np.multiply(out, -2), dout)
logistic_p.lin_dual = lambda x, dx, out, dout, c: np.multiply(
    np.subtract(1, np.multiply(out, 2)), dout)                         # c = out (1 - out)
