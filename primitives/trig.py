"""More elementwise math: hyperbolic and inverse trigonometric functions (sinh cosh
asinh acosh atanh asin acos atan atan2), cbrt, and rem (C's fmod, the sign of the
dividend). Each primitive with its implementation and derivative rule together."""
import numpy as np

from ._base import unary, binary, defjvp, defjvp2, dtype_of, FLOAT, NUMERIC
from .arith import coerce, safe_mul, mul_p, add_p, sub_p, div_p, neg_p
from .unary import rsqrt_p


def _c(x, v):
    """The scalar v in x's dtype (a weakly typed literal when traced)."""
    return dtype_of(x).type(v)


def _unary_fn(p):
    def f(x):
        return p.bind(x)
    f.__name__ = p.name
    f.__doc__ = f"Elementwise {p.name} (the `{p.name}` primitive)."
    return f


# --- hyperbolic functions ------------------------------------------------------------

sinh_p = unary('sinh', np.sinh)
cosh_p = unary('cosh', np.cosh)
defjvp(sinh_p, lambda g, x: mul_p.bind(g, cosh_p.bind(x)))
defjvp(cosh_p, lambda g, x: mul_p.bind(g, sinh_p.bind(x)))

asinh_p = unary('asinh', np.arcsinh)
# d/dx asinh x = 1/sqrt(x^2 + 1)
defjvp(asinh_p, lambda g, x: mul_p.bind(
    g, rsqrt_p.bind(add_p.bind(mul_p.bind(x, x), _c(x, 1)))))

acosh_p = unary('acosh', np.arccosh)
# d/dx acosh x = 1/sqrt((x-1)(x+1)), infinite at x = 1
defjvp(acosh_p, lambda g, x: safe_mul(g, rsqrt_p.bind(
    mul_p.bind(sub_p.bind(x, _c(x, 1)), add_p.bind(x, _c(x, 1))))))

atanh_p = unary('atanh', np.arctanh)
# d/dx atanh x = 1/(1 - x^2), infinite at |x| = 1
defjvp(atanh_p, lambda g, x: safe_mul(g, div_p.bind(
    _c(x, 1), sub_p.bind(_c(x, 1), mul_p.bind(x, x)))))

# --- inverse trigonometric functions ---------------------------------------------------

asin_p = unary('asin', np.arcsin)
# d/dx asin x = 1/sqrt(1 - x^2), infinite at |x| = 1
defjvp(asin_p, lambda g, x: safe_mul(g, rsqrt_p.bind(sub_p.bind(_c(x, 1), mul_p.bind(x, x)))))

acos_p = unary('acos', np.arccos)
defjvp(acos_p, lambda g, x: neg_p.bind(
    safe_mul(g, rsqrt_p.bind(sub_p.bind(_c(x, 1), mul_p.bind(x, x))))))

atan_p = unary('atan', np.arctan)
defjvp(atan_p, lambda g, x: div_p.bind(g, add_p.bind(_c(x, 1), mul_p.bind(x, x))))

atan2_p = binary('atan2', np.arctan2, allowed=FLOAT)


def _atan2_jvp_y(g, y, x):
    # d/dy atan2(y, x) = x / (x^2 + y^2)
    return mul_p.bind(g, div_p.bind(x, add_p.bind(mul_p.bind(x, x), mul_p.bind(y, y))))


def _atan2_jvp_x(g, y, x):
    # d/dx atan2(y, x) = -y / (x^2 + y^2)
    return mul_p.bind(g, div_p.bind(neg_p.bind(y), add_p.bind(mul_p.bind(x, x),
                                                              mul_p.bind(y, y))))


defjvp(atan2_p, _atan2_jvp_y, _atan2_jvp_x)

# --- cube root -------------------------------------------------------------------------------

cbrt_p = unary('cbrt', np.cbrt, allowed='f')
# d/dx cbrt x = 1 / (3 cbrt(x)^2), infinite at 0
defjvp2(cbrt_p, lambda g, ans, x: safe_mul(g, div_p.bind(_c(ans, 1 / 3), mul_p.bind(ans, ans))))

# --- remainder with the dividend's sign (C fmod) ---------------------------------------------

rem_p = binary('rem', np.fmod, allowed=NUMERIC)


def _trunc(q):
    from .logical import lt_p, select_n_p
    from .unary import floor_p, ceil_p
    return select_n_p.bind(lt_p.bind(q, _c(q, 0)), floor_p.bind(q), ceil_p.bind(q))


# rem(x, y) = x - trunc(x / y) * y: dx -> g, dy -> -trunc(x / y) g
defjvp(rem_p, lambda g, x, y: g,
       lambda g, x, y: mul_p.bind(g, neg_p.bind(_trunc(div_p.bind(x, y)))))

sinh, cosh, asinh, acosh, atanh = map(_unary_fn, (sinh_p, cosh_p, asinh_p, acosh_p, atanh_p))
asin, acos, atan, cbrt = map(_unary_fn, (asin_p, acos_p, atan_p, cbrt_p))


def atan2(y, x):
    """Elementwise arctangent of y/x in the correct quadrant (the `atan2` primitive)."""
    return atan2_p.bind(coerce(y, x), coerce(x, y))


def rem(x, y):
    """Elementwise remainder with the sign of the dividend (C's fmod, like lax.rem)."""
    return rem_p.bind(coerce(x, y), coerce(y, x))


# --- batching rules ---
from ._batching import elementwise as _bew  # noqa: E402

for _p in (sinh_p, cosh_p, asinh_p, acosh_p, atanh_p, asin_p, acos_p, atan_p, atan2_p,
           cbrt_p, rem_p):
    _p.batch = _bew(_p)
del _p

# --- numba lowering ---
# libm (scalar) versions: correct first; these are rare in hot loops.
from ._lowering import Elementwise as _EW  # noqa: E402


def _lw_math(fn):
    return _EW(lambda ctx, a, avals, out: f"math.{fn}({', '.join(a)})")


sinh_p.lowering = _lw_math('sinh')
cosh_p.lowering = _lw_math('cosh')
asinh_p.lowering = _lw_math('asinh')
acosh_p.lowering = _EW(lambda ctx, a, avals, out: f"np.arccosh({a[0]})")
atanh_p.lowering = _EW(lambda ctx, a, avals, out: f"np.arctanh({a[0]})")
asin_p.lowering = _EW(lambda ctx, a, avals, out: f"np.arcsin({a[0]})")
acos_p.lowering = _EW(lambda ctx, a, avals, out: f"np.arccos({a[0]})")
atan_p.lowering = _lw_math('atan')
atan2_p.lowering = _lw_math('atan2')
cbrt_p.lowering = _EW(lambda ctx, a, avals, out: f"np.cbrt({a[0]})")
rem_p.lowering = _EW(lambda ctx, a, avals, out: (
    f"np.fmod({a[0]}, {a[1]})" if out.dtype.kind == 'f'
    else f"{ctx.helper('irem')}({a[0]}, {a[1]})"))
