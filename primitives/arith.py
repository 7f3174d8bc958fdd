"""Arithmetic primitives: neg add sub mul div pow integer_pow max min abs sign,
plus add_any (the n-ary sum that accumulates tangents and cotangents) and
safe_mul (a product that is 0 wherever its first factor is 0, even against inf/nan).
"""
import numpy as np

from tracer import Primitive, Zero, is_undefined, ShapedArray
from ._base import (unary, binary, defjvp, defjvp2, deflinear, unbroadcast, shape_of,
                    dtype_of, elementwise_aval, FLOAT, NUMERIC, zero_like_out,
                    broadcast_to_shape)

_PY = (int, float, complex, bool)


def coerce(x, like):
    """A Python scalar takes the dtype of the array it meets (weak typing)."""
    if type(x) in _PY:
        return dtype_of(like).type(x)
    return x


# --- linear ones -----------------------------------------------------------------

neg_p = unary('neg', np.negative, allowed=NUMERIC)
deflinear(neg_p, lambda ct, x: [neg(ct)])


def neg(x):
    return neg_p.bind(x)


add_p = binary('add', np.add)
deflinear(add_p, lambda ct, x, y: [unbroadcast(ct, x.aval) if is_undefined(x) else None,
                                   unbroadcast(ct, y.aval) if is_undefined(y) else None])


def _add_jvp(primals, tangents):
    x, y = primals
    tx, ty = tangents
    out = add_p.bind(x, y)
    if type(tx) is Zero:
        if type(ty) is Zero:
            return out, zero_like_out(out)
        return out, broadcast_to_shape(ty, shape_of(out))
    if type(ty) is Zero:
        return out, broadcast_to_shape(tx, shape_of(out))
    return out, add_any(tx, ty)


add_p.jvp = _add_jvp


def add(x, y):
    return add_p.bind(coerce(x, y), coerce(y, x))


sub_p = binary('sub', np.subtract)


def _sub_transpose(ct, x, y):
    return [unbroadcast(ct, x.aval) if is_undefined(x) else None,
            unbroadcast(neg(ct), y.aval) if is_undefined(y) else None]


deflinear(sub_p, _sub_transpose)


def _sub_jvp(primals, tangents):
    x, y = primals
    tx, ty = tangents
    out = sub_p.bind(x, y)
    if type(ty) is Zero:
        if type(tx) is Zero:
            return out, zero_like_out(out)
        return out, broadcast_to_shape(tx, shape_of(out))
    if type(tx) is Zero:
        return out, broadcast_to_shape(neg(ty), shape_of(out))
    return out, sub_p.bind(tx, ty)


sub_p.jvp = _sub_jvp


def sub(x, y):
    return sub_p.bind(coerce(x, y), coerce(y, x))


def _add_any_impl(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = np.add(out, x)
    return out


add_any_p = Primitive('add_any')
add_any_p.impl = _add_any_impl
add_any_p.abstract_eval = lambda *avals: elementwise_aval('add_any', list(avals))
deflinear(add_any_p, lambda ct, *xs: [unbroadcast(ct, x.aval) if is_undefined(x) else None
                                      for x in xs])


def add_any(*xs):
    """Sum of tangents/cotangents (skipping symbolic zeros)."""
    xs = [x for x in xs if type(x) is not Zero]
    if not xs:
        raise ValueError("add_any of only symbolic zeros")
    if len(xs) == 1:
        return xs[0]
    return add_any_p.bind(*xs)


# --- products ---------------------------------------------------------------------

mul_p = binary('mul', np.multiply)


def _mul_transpose(ct, x, y):
    if is_undefined(x):
        return [unbroadcast(mul_p.bind(ct, y), x.aval), None]
    return [None, unbroadcast(mul_p.bind(x, ct), y.aval)]


defjvp(mul_p, lambda g, x, y: mul_p.bind(g, y), lambda g, x, y: mul_p.bind(x, g))
mul_p.transpose = _mul_transpose


def mul(x, y):
    return mul_p.bind(coerce(x, y), coerce(y, x))


def _safe_mul_impl(x, y):
    out = np.multiply(x, y)
    if out.dtype.kind in 'fc' and np.isnan(out).any():
        out = np.where(np.equal(x, 0), np.zeros((), out.dtype), out)
    return out


safe_mul_p = binary('safe_mul', _safe_mul_impl, allowed=FLOAT)


def _safe_mul_transpose(ct, x, y):
    assert is_undefined(x) and not is_undefined(y), "safe_mul is linear in its first operand"
    return [unbroadcast(safe_mul_p.bind(ct, y), x.aval), None]


defjvp(safe_mul_p, lambda g, x, y: safe_mul_p.bind(g, y), lambda g, x, y: safe_mul_p.bind(x, g))
safe_mul_p.transpose = _safe_mul_transpose


def safe_mul(g, c):
    """g * c, except exactly 0 where g is 0 (so a zero cotangent times an infinite
    derivative, as of sqrt or log at 0, stays 0 instead of becoming NaN)."""
    return safe_mul_p.bind(g, coerce(c, g))


div_p = binary('div', np.true_divide)  # integer operands: NumPy true division rules apply


def _div_abstract(a, b):
    out = elementwise_aval('div', [a, b], allowed=NUMERIC)
    if out.dtype.kind in 'iub':
        # lax.div of integers rounds toward zero and keeps the dtype
        return out
    return out


div_p.abstract_eval = lambda a, b: _div_abstract(a, b)


def _div_impl(x, y):
    dt = np.result_type(x, y)
    if dt.kind in 'iu':
        q = np.trunc(np.true_divide(x, y))
        return q.astype(dt)
    return np.true_divide(x, y)


div_p.impl = _div_impl


def _div_transpose(ct, x, y):
    assert not is_undefined(y), "div is linear only in its numerator"
    return [unbroadcast(div_p.bind(ct, y), x.aval), None]


defjvp2(div_p,
        lambda g, ans, x, y: safe_mul(g, div_p.bind(np.ones((), dtype_of(y)), y)),
        lambda g, ans, x, y: neg(safe_mul(g, div_p.bind(ans, y))))
div_p.transpose = _div_transpose


def div(x, y):
    return div_p.bind(coerce(x, y), coerce(y, x))


# --- powers -------------------------------------------------------------------------

def _integer_pow_impl(x, y):
    if y == 2:
        return np.multiply(x, x)
    if y == 3:
        return np.multiply(np.multiply(x, x), x)
    if y < 0 and np.asarray(x).dtype.kind in 'iu':
        raise ValueError(f"integer_pow: negative exponent {y} on an integer operand")
    return np.power(x, y)


integer_pow_p = Primitive('integer_pow')
integer_pow_p.impl = _integer_pow_impl
integer_pow_p.abstract_eval = lambda a, y: elementwise_aval('integer_pow', [a], allowed=NUMERIC)


def _integer_pow_jvp_rule(g, x, y):
    if y == 0:
        return mul_p.bind(g, np.zeros((), dtype_of(g)))
    if y == 1:
        return g
    coef = x if y == 2 else integer_pow_p.bind(x, y=y - 1)
    coef = mul_p.bind(coef, dtype_of(g).type(y))
    return safe_mul(g, coef) if y < 0 else mul_p.bind(g, coef)


defjvp(integer_pow_p, _integer_pow_jvp_rule)


def integer_pow(x, y):
    return integer_pow_p.bind(x, y=int(y))


pow_p = binary('pow', np.power)


def _pow_jvp_x(g, ans, x, y):
    # y * x**(y-1), written as y * ans / x would divide by zero at x == 0
    one = dtype_of(y).type(1)
    return safe_mul(g, mul_p.bind(y, pow_p.bind(x, sub_p.bind(y, one))))


def _pow_jvp_y(g, ans, x, y):
    from .logical import eq, select_n
    from .unary import log
    zero = dtype_of(x).type(0)
    is0 = eq(x, zero)
    safe_x = select_n(is0, x, np.ones((), dtype_of(x)))
    # d/dy x**y = log(x) x**y, taken as 0 where x == 0 (the limit for y > 0)
    coef = select_n(is0, mul_p.bind(log(safe_x), ans), zero)
    return mul_p.bind(g, coef)


defjvp2(pow_p, _pow_jvp_x, _pow_jvp_y)


def pow(x, y):
    return pow_p.bind(coerce(x, y), coerce(y, x))


# --- max, min, abs, sign ---------------------------------------------------------------

max_p = binary('max', np.maximum)
min_p = binary('min', np.minimum)


def _minmax_coef(x, y, pick_x):
    """1 where x wins, 0.5 at ties (JAX's balanced choice), 0 elsewhere."""
    from .logical import eq, select_n
    from .convert import convert_element_type
    dt = dtype_of(x)
    wins = pick_x(x, y)
    tie = eq(x, y)
    half = mul_p.bind(convert_element_type(tie, dt), dt.type(0.5))
    return select_n(wins, half, np.ones((), dt))


def _max_jvp_x(g, x, y):
    from .logical import gt
    return mul_p.bind(g, _minmax_coef(x, y, gt))


def _max_jvp_y(g, x, y):
    from .logical import gt
    return mul_p.bind(g, _minmax_coef(y, x, gt))


def _min_jvp_x(g, x, y):
    from .logical import lt
    return mul_p.bind(g, _minmax_coef(x, y, lt))


def _min_jvp_y(g, x, y):
    from .logical import lt
    return mul_p.bind(g, _minmax_coef(y, x, lt))


defjvp(max_p, _max_jvp_x, _max_jvp_y)
defjvp(min_p, _min_jvp_x, _min_jvp_y)


def max(x, y):
    return max_p.bind(coerce(x, y), coerce(y, x))


def min(x, y):
    return min_p.bind(coerce(x, y), coerce(y, x))


sign_p = unary('sign', np.sign, allowed=NUMERIC)
from ._base import defjvp_zero  # noqa: E402
defjvp_zero(sign_p)


def sign(x):
    return sign_p.bind(x)


abs_p = unary('abs', np.abs, allowed=NUMERIC)
abs_p.abstract_eval = lambda a: (elementwise_aval('abs', [a], allowed=NUMERIC)
                                 if a.dtype.kind != 'c' else
                                 ShapedArray(a.shape, np.finfo(a.dtype).dtype, a.weak_type))
defjvp(abs_p, lambda g, x: mul_p.bind(g, sign_p.bind(x)))


def abs(x):
    return abs_p.bind(x)
