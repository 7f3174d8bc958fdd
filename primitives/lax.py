"""Primitive-level operations, like jax.lax.

Unlike `primitives.numpy`, these functions do not promote dtypes (operands of a
binary op must share one dtype; Python scalars adapt to the other operand) and
take static parameters the way the primitives do (axes tuples, dimension
numbers, padding configs).

Most functions re-export the primitive modules' user functions. The inverse
trigonometric and hyperbolic functions, `cbrt` and `rem` are primitives defined
here, each with its implementation, shape rule and derivative rule, because
NumPy-level code cannot compose them exactly from the other primitives.
(Control flow — cond, scan, while_loop — is added with its own module.)
"""
import numpy as np

from ._base import unary, binary, defjvp, defjvp2, dtype_of, shape_of, FLOAT, NUMERIC
from .arith import (neg, add, sub, mul, div, pow, integer_pow, max, min, abs, sign,
                    add_any, safe_mul, coerce, mul_p, add_p, sub_p, div_p, neg_p)
from .unary import (exp, log, log1p, expm1, sin, cos, tan, tanh, logistic, sqrt, rsqrt,
                    erf, floor, ceil, round, rsqrt_p)
from .logical import (eq, ne, lt, le, gt, ge, bitwise_and, bitwise_or, bitwise_xor,
                      bitwise_not, select_n)
from .convert import convert_element_type, stop_gradient, iota, broadcasted_iota
from .reductions import (reduce_sum, reduce_max, reduce_min, reduce_prod, argmax, argmin,
                         cumsum)
from .dot import dot_general
from .shape_ops import (broadcast_in_dim, broadcast_to, reshape, transpose, squeeze,
                        expand_dims, concatenate, pad, rev)
from .slicing import (slice, dynamic_slice, dynamic_update_slice, gather, scatter_add)

# jax.lax's older spellings of the bitwise operations
and_, or_, xor, not_ = bitwise_and, bitwise_or, bitwise_xor, bitwise_not


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


# --- small compositions jax.lax also offers ------------------------------------------------

def square(x):
    return integer_pow(x, 2)


def reciprocal(x):
    return div(_c(x, 1), x)


def clamp(min, x, max):
    """min <= x <= max elementwise (lax.clamp's argument order)."""
    from .arith import max as max_, min as min_
    return min_(max_(x, min), max)


def dot(x, y, preferred_element_type=None):
    """Vector/matrix products of 1-D and 2-D operands (lax.dot): contracts the last
    dimension of x with the first of y."""
    nx, ny = len(shape_of(x)), len(shape_of(y))
    if not (1 <= nx <= 2 and 1 <= ny <= 2):
        raise TypeError(f"lax.dot takes 1-D or 2-D operands, got shapes {shape_of(x)} and "
                        f"{shape_of(y)}. Fix: use lax.dot_general (or pnp.matmul / "
                        f"pnp.tensordot) for higher ranks.")
    return dot_general(x, y, (((nx - 1,), (0,)), ((), ())), preferred_element_type)


def broadcast(x, sizes):
    """x broadcast with new leading dimensions `sizes` (lax.broadcast)."""
    sizes = tuple(int(s) for s in sizes)
    xs = shape_of(x)
    return broadcast_in_dim(x, sizes + tuple(xs), tuple(range(len(sizes), len(sizes) + len(xs))))


def full(shape, fill_value, dtype=None):
    """An array of `shape` filled with `fill_value` (which may be traced)."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    dt = np.dtype(dtype) if dtype is not None else dtype_of(fill_value)
    v = fill_value
    if type(v) in (int, float, bool, complex) or isinstance(v, np.generic):
        return np.full(shape, v, dt)
    if dtype_of(v) != dt:
        v = convert_element_type(v, dt)
    return broadcast_in_dim(v, shape, ())


def full_like(x, fill_value, dtype=None, shape=None):
    return full(shape_of(x) if shape is None else shape, fill_value,
                dtype_of(x) if dtype is None else dtype)


def zeros_like_array(x):
    return np.zeros(shape_of(x), dtype_of(x))


__all__ = [
    'neg', 'add', 'sub', 'mul', 'div', 'pow', 'integer_pow', 'max', 'min', 'abs', 'sign',
    'add_any', 'exp', 'log', 'log1p', 'expm1', 'sin', 'cos', 'tan', 'tanh', 'logistic',
    'sqrt', 'rsqrt', 'erf', 'floor', 'ceil', 'round', 'eq', 'ne', 'lt', 'le', 'gt', 'ge',
    'bitwise_and', 'bitwise_or', 'bitwise_xor', 'bitwise_not', 'and_', 'or_', 'xor', 'not_',
    'select_n', 'convert_element_type', 'stop_gradient', 'iota', 'broadcasted_iota',
    'reduce_sum', 'reduce_max', 'reduce_min', 'reduce_prod', 'argmax', 'argmin', 'cumsum',
    'dot_general', 'dot', 'broadcast_in_dim', 'broadcast', 'broadcast_to', 'reshape',
    'transpose', 'squeeze', 'expand_dims', 'concatenate', 'pad', 'rev', 'slice',
    'dynamic_slice', 'dynamic_update_slice', 'gather', 'scatter_add', 'sinh', 'cosh',
    'asinh', 'acosh', 'atanh', 'asin', 'acos', 'atan', 'atan2', 'cbrt', 'rem', 'square',
    'reciprocal', 'clamp', 'full', 'full_like', 'zeros_like_array',
]
