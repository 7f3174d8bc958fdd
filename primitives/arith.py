"""Arithmetic primitives: neg add sub mul div pow integer_pow max min abs sign,
plus add_any (the n-ary sum that accumulates tangents and cotangents) and
safe_mul (a product that is 0 wherever its first factor is 0, even against inf/nan).
"""
import math

import numpy as np

from tracer import (Primitive, Zero, is_undefined, ShapedArray, Tracer, UndefinedPrimal,
                    get_aval)
from tracer.errors import with_user_line
from ._kernels import lincomb, cube_with_square, KERNEL_MIN, KERNEL_DTYPES   # eager paths
from ._base import (unary, binary, defjvp, defjvp2, deflinear, unbroadcast, shape_of,
                    dtype_of, elementwise_aval, FLOAT, NUMERIC, zero_like_out,
                    broadcast_to_shape)

_PY = (int, float, complex, bool)


def coerce(x, like):
    """A Python scalar takes the dtype of the array it meets (weak typing)."""
    if type(x) in _PY:
        return dtype_of(like).type(x)
    return x


def _lax_operands(name, x, y):
    """The operands of a lax-level binary operation: a Python scalar (or a weakly
    typed value) takes the other operand's dtype; two strongly typed operands must
    have one dtype, as in jax.lax (NumPy would promote silently, but only when the
    operation runs eagerly: staged, the shape rule would reject it)."""
    if type(x) in _PY or type(y) in _PY:
        return coerce(x, y), coerce(y, x)
    dx, dy = dtype_of(x), dtype_of(y)
    if dx is not dy and dx != dy and not (_weak(x) or _weak(y)):
        ax, ay = (get_aval(v).str_short() for v in (x, y))
        raise TypeError(with_user_line(
            f"{name} requires arguments of one dtype, got {ax} and {ay}. Fix: convert one with "
            f"lax.convert_element_type, or use primitives.numpy.{_NUMPY_NAME.get(name, name)}, "
            f"which promotes as NumPy does."))
    return x, y


def _weak(x):
    return isinstance(x, Tracer) and x.weak_type


_NUMPY_NAME = {'add': 'add', 'sub': 'subtract', 'mul': 'multiply', 'div': 'divide',
               'pow': 'power', 'max': 'maximum', 'min': 'minimum'}


# --- linear ones -----------------------------------------------------------------

neg_p = unary('neg', np.negative, allowed=NUMERIC)
deflinear(neg_p, lambda ct, x: [neg(ct)])
# Transposition may fold constant factors instead of emitting equations: a
# `scale_transpose(*args, **params)` returns, per operand, the scalar its cotangent
# is the output cotangent times (None where the rule must run).
neg_p.scale_transpose = lambda x: [-1.0]


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
    return add_p.bind(*_lax_operands('add', x, y))


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
sub_p.scale_transpose = lambda x, y: (
    [1.0, -1.0] if not (is_undefined(x) and is_undefined(y) and x.aval.shape != y.aval.shape)
    and _full_shape(x, y) else None)


def _full_shape(x, y):
    """Each linear operand already has the output's shape (no unbroadcast needed)."""
    shapes = [a.aval.shape if is_undefined(a) else shape_of(a) for a in (x, y)]
    out = np.broadcast_shapes(*shapes)
    return all(not is_undefined(a) or a.aval.shape == out for a in (x, y))


def sub(x, y):
    return sub_p.bind(*_lax_operands('sub', x, y))


def _add_any_impl(*xs, coeffs=None):
    if len(xs) > 2 or coeffs is not None:
        fused = fused_lincomb(xs, coeffs)
        if fused is not None:
            return fused
        if len(xs) >= 6:
            stacked = _stack_small(xs)
            if stacked is not None:
                # many small arrays (a reused input's cotangents): one stack and one
                # product instead of a multiply and an add per term
                if coeffs is None:
                    return stacked.sum(axis=0).reshape(xs[0].shape)
                c = np.asarray(coeffs, dtype=stacked.dtype)
                return np.dot(c, stacked).reshape(xs[0].shape)
    if coeffs is None:
        out = xs[0]
        for x in xs[1:]:
            out = np.add(out, x)
        return out
    out = xs[0] if coeffs[0] == 1 else np.multiply(xs[0], coeffs[0])
    for x, c in zip(xs[1:], coeffs[1:]):
        out = np.add(out, x if c == 1 else np.multiply(x, c))
    return out


def _add_any_transpose(ct, *xs, coeffs=None):
    if coeffs is None:
        return [unbroadcast(ct, x.aval) if is_undefined(x) else None for x in xs]
    return [unbroadcast(ct if c == 1 else mul_p.bind(ct, coerce(c, ct)), x.aval)
            if is_undefined(x) else None for x, c in zip(xs, coeffs)]


def _stack_small(xs):
    """xs stacked on a new leading axis, when they are same-shape floating arrays."""
    x0 = xs[0]
    if type(x0) is not np.ndarray or x0.dtype.kind != 'f':
        return None
    shape, dt = x0.shape, x0.dtype
    for x in xs:
        if type(x) is not np.ndarray or x.shape != shape or x.dtype != dt:
            return None
    return np.concatenate(xs, axis=None).reshape(len(xs), -1)


def fused_lincomb(xs, coeffs):
    """sum_k c_k * x_k in one pass (numba) for large same-shape float arrays, else None."""
    x0 = xs[0]
    if type(x0) is not np.ndarray or x0.size < KERNEL_MIN or x0.dtype not in KERNEL_DTYPES:
        return None
    shape, dt = x0.shape, x0.dtype
    for x in xs:
        if type(x) is not np.ndarray or x.shape != shape or x.dtype != dt:
            return None
    c = np.asarray(coeffs if coeffs is not None else (1.0,) * len(xs), dtype=dt)
    flat = tuple(np.ascontiguousarray(x).reshape(-1) for x in xs)
    out = np.empty(x0.size, dt)
    lincomb(flat, c, out)
    return out.reshape(shape)


# add_any[coeffs=(c1, c2, ...)] x1 x2 ... = c1*x1 + c2*x2 + ...: the sum of tangents or
# cotangents; constant scale factors that transposition folds (see
# transforms/transpose.py) land in `coeffs` instead of costing a `mul` each.
add_any_p = Primitive('add_any')
add_any_p.impl = _add_any_impl
add_any_p.elementwise = True
add_any_p.abstract_eval = lambda *avals, coeffs=None: elementwise_aval('add_any', list(avals))
deflinear(add_any_p, _add_any_transpose)
def _add_any_scale_transpose(*xs, coeffs=None):
    shape = None
    same = True
    for x in xs:
        xshape = x.aval.shape if type(x) is UndefinedPrimal else shape_of(x)
        if shape is None:
            shape = xshape
        elif xshape != shape:
            same = False
    if not same:
        for x in xs:
            if type(x) is UndefinedPrimal and x.aval.shape != shape:
                return None   # quick exit (a bias): the rule sums the cotangent down
        out = np.broadcast_shapes(*[x.aval.shape if is_undefined(x) else shape_of(x)
                                    for x in xs])
        if any(is_undefined(x) and x.aval.shape != out for x in xs):
            return None   # some cotangent needs summing down: run the rule
    return [c if type(x) is UndefinedPrimal else None
            for x, c in zip(xs, coeffs or (1.0,) * len(xs))]


add_any_p.scale_transpose = _add_any_scale_transpose


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
    # eager reverse mode: two arrays of the operand's shape (the hot case) multiply
    # directly, without a bind or a broadcasting check
    if type(ct) is np.ndarray:
        if type(x) is UndefinedPrimal:
            if type(y) is np.ndarray and y.shape == ct.shape == x.aval.shape:
                return [np.multiply(ct, y), None]
        elif type(x) is np.ndarray and type(y) is UndefinedPrimal and \
                x.shape == ct.shape == y.aval.shape:
            return [None, np.multiply(x, ct)]
    if type(x) is UndefinedPrimal:
        if type(y) is UndefinedPrimal:
            raise TypeError(f"mul of two linear operands ({x.aval.str_short()}, "
                            f"{y.aval.str_short()}) is not linear: cannot transpose it")
        return [unbroadcast(mul_p.bind(ct, y), x.aval), None]
    return [None, unbroadcast(mul_p.bind(x, ct), y.aval)]


def _mul_jvp(primals, tangents):
    x, y = primals
    tx, ty = tangents
    out = mul_p.bind(x, y)
    if type(tx) is Zero:
        t = mul_p.bind(x, ty)
    elif type(ty) is Zero:
        t = mul_p.bind(tx, y)
    else:
        t = add_products_p.bind(tx, y, x, ty)   # one equation for the product rule
    return out, broadcast_to_shape(t, shape_of(out))


mul_p.jvp = _mul_jvp
mul_p.transpose = _mul_transpose


_SCALAR_TYPES = (float, int, np.float64, np.float32, np.float16, np.int64, np.int32)


def _mul_scale_transpose(x, y):
    lin, other = (x, y) if type(x) is UndefinedPrimal else (y, x)
    if type(other) not in _SCALAR_TYPES:
        return None
    c = float(other)
    if not math.isfinite(c) or c == 0.0:
        return None
    return [c, None] if lin is x else [None, c]


mul_p.scale_transpose = _mul_scale_transpose
# With a cotangent of ones, the linear factor's cotangent is the other factor.
def _other_factor(lin, other):
    """ones * other, summed to the linear operand's shape."""
    lin_shape = lin.aval.shape
    other_shape = shape_of(other)
    out_shape = np.broadcast_shapes(lin_shape, other_shape)
    return unbroadcast(broadcast_to_shape(other, out_shape), lin.aval)


mul_p.ones_transpose = lambda x, y: (
    [_other_factor(x, y), None] if is_undefined(x) else [None, _other_factor(y, x)])


def mul(x, y):
    return mul_p.bind(*_lax_operands('mul', x, y))


# add_products(a1, b1, a2, b2, ...) = a1*b1 + a2*b2 + ...: the product rule's
# tangent `tx*y + x*ty` as one equation (and its own JVP stays one equation).

def _add_products_impl(*xs):
    out = np.multiply(xs[0], xs[1])
    for i in range(2, len(xs), 2):
        out = out + np.multiply(xs[i], xs[i + 1])
    return out


def _add_products_abstract(*avals):
    if len(avals) % 2:
        raise TypeError(f"add_products takes pairs of operands, got {len(avals)}")
    a0 = avals[0]
    shape, dt = a0.shape, a0.dtype
    if dt.kind in NUMERIC:
        strong = None
        for a in avals:
            if a.shape != shape or a.dtype is not dt:
                break
            if strong is None and not a.weak_type:
                strong = a
        else:   # one shape and dtype (the product rule's case)
            return a0 if strong is None else strong
    return elementwise_aval('add_products', list(avals), allowed=NUMERIC)


def _add_products_jvp(primals, tangents):
    out = add_products_p.bind(*primals)
    terms = []
    for i in range(0, len(primals), 2):
        a, b = primals[i], primals[i + 1]
        ta, tb = tangents[i], tangents[i + 1]
        if type(ta) is not Zero:
            terms += [ta, b]
        if type(tb) is not Zero:
            terms += [a, tb]
    if not terms:
        return out, zero_like_out(out)
    t = mul_p.bind(*terms) if len(terms) == 2 else add_products_p.bind(*terms)
    return out, broadcast_to_shape(t, shape_of(out))


def _add_products_transpose(ct, *xs):
    cts = [None] * len(xs)
    eager = type(ct) is np.ndarray
    for i in range(0, len(xs), 2):
        a, b = xs[i], xs[i + 1]
        ua, ub = type(a) is UndefinedPrimal, type(b) is UndefinedPrimal
        if ua:
            if ub:
                raise TypeError("add_products: a product of two linear operands is not linear")
            if eager and type(b) is np.ndarray and b.shape == ct.shape == a.aval.shape:
                cts[i] = np.multiply(ct, b)
            else:
                cts[i] = unbroadcast(mul_p.bind(ct, b), a.aval)
        elif ub:
            if eager and type(a) is np.ndarray and a.shape == ct.shape == b.aval.shape:
                cts[i + 1] = np.multiply(a, ct)
            else:
                cts[i + 1] = unbroadcast(mul_p.bind(a, ct), b.aval)
    return cts


add_products_p = Primitive('add_products')
add_products_p.impl = _add_products_impl
add_products_p.elementwise = True
add_products_p.abstract_eval = _add_products_abstract
add_products_p.jvp = _add_products_jvp
add_products_p.transpose = _add_products_transpose


def _add_products_ones_transpose(*xs):
    cts = [None] * len(xs)
    for i in range(0, len(xs), 2):
        a, b = xs[i], xs[i + 1]
        if is_undefined(a) and not is_undefined(b):
            cts[i] = _out_shaped(b, xs, a.aval)
        elif is_undefined(b) and not is_undefined(a):
            cts[i + 1] = _out_shaped(a, xs, b.aval)
    return cts


def _out_shaped(other, xs, aval):
    out_shape = np.broadcast_shapes(*[x.aval.shape if is_undefined(x) else shape_of(x) for x in xs])
    return unbroadcast(broadcast_to_shape(other, out_shape), aval)


add_products_p.ones_transpose = _add_products_ones_transpose


def _safe_mul_impl(x, y):
    out = np.multiply(x, y)
    if out.dtype.kind in 'fc' and np.isnan(out).any():
        out = np.where(np.equal(x, 0), np.zeros((), out.dtype), out)
    return out


safe_mul_p = binary('safe_mul', _safe_mul_impl, allowed=FLOAT)


def _safe_mul_transpose(ct, x, y):
    if is_undefined(x) and is_undefined(y):
        raise TypeError("safe_mul of two linear operands is not linear: cannot transpose it")
    if is_undefined(x):
        return [unbroadcast(safe_mul_p.bind(ct, y), x.aval), None]
    return [None, unbroadcast(safe_mul_p.bind(x, ct), y.aval)]


defjvp(safe_mul_p, lambda g, x, y: safe_mul_p.bind(g, y), lambda g, x, y: safe_mul_p.bind(x, g))
safe_mul_p.transpose = _safe_mul_transpose


def safe_mul(g, c):
    """g * c, except exactly 0 where g is 0 (so a zero cotangent times an infinite
    derivative, as of sqrt or log at 0, stays 0 instead of becoming NaN)."""
    return safe_mul_p.bind(g, coerce(c, g))


div_p = binary('div', np.true_divide)


# Integer operands divide like lax.div: rounded toward zero, in the operands' dtype.
div_p.abstract_eval = lambda a, b: elementwise_aval('div', [a, b], allowed=NUMERIC)


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


def _div_jvp_x(g, ans, x, y):
    if not isinstance(y, Tracer) and np.ndim(y) == 0:
        c = 1.0 / float(y) if np.isrealobj(y) and float(y) != 0.0 else None
        if c is not None and np.isfinite(c) and c != 0.0:
            # x / constant: a scaling by a literal, which transposition folds
            return mul_p.bind(g, dtype_of(g).type(c))
    return safe_mul(g, div_p.bind(np.ones((), dtype_of(y)), y))


defjvp2(div_p, _div_jvp_x, lambda g, ans, x, y: neg(safe_mul(g, div_p.bind(ans, y))))
div_p.transpose = _div_transpose


def div(x, y):
    return div_p.bind(*_lax_operands('div', x, y))


# --- powers -------------------------------------------------------------------------

def _integer_pow_impl(x, y):
    if y == 2:
        return np.multiply(x, x)
    if y == 3:
        return np.multiply(np.multiply(x, x), x)
    kind = np.asarray(x).dtype.kind
    if y < 0 and kind in 'iu':
        raise ValueError(f"integer_pow: negative exponent {y} on an integer operand")
    if kind == 'f' and 4 <= abs(y) <= 16 and np.ndim(x) > 0:
        # by repeated squaring, as JAX lowers integer_pow: NumPy's float power with
        # an integer exponent is ~20x slower than a few multiplies
        return _pow_by_squaring(x, y)
    return np.power(x, y)


def _pow_by_squaring(x, y):
    """x**y by left-to-right binary exponentiation, in one new buffer."""
    n = abs(y)
    acc = None
    for bit in bin(n)[3:]:      # the bits after the leading one
        acc = np.multiply(x, x) if acc is None else np.multiply(acc, acc, out=acc)
        if bit == '1':
            np.multiply(acc, x, out=acc)
    if y < 0:
        np.divide(1, acc, out=acc)
    return acc


integer_pow_p = Primitive('integer_pow')
integer_pow_p.impl = _integer_pow_impl
integer_pow_p.abstract_eval = lambda a, y: elementwise_aval('integer_pow', [a], allowed=NUMERIC)


def _integer_pow_jvp(primals, tangents, y):
    (x,), (g,) = primals, tangents
    if y == 0 or y == 1:
        out = integer_pow_p.bind(x, y=y)
        return out, (zero_like_out(out) if y == 0 else g)
    if y < 0:
        out = integer_pow_p.bind(x, y=y)
        return out, safe_mul(g, mul_p.bind(integer_pow_p.bind(x, y=y - 1), dtype_of(x).type(y)))
    # x**y = x**(y-1) * x: the primal and the derivative share x**(y-1), and the
    # factor y stays on the linear side, where transposition folds it for free.
    base = x if y == 2 else integer_pow_p.bind(x, y=y - 1)
    out = mul_p.bind(base, x)
    return out, mul_p.bind(mul_p.bind(g, base), dtype_of(x).type(y))


integer_pow_p.jvp = _integer_pow_jvp


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
    return pow_p.bind(*_lax_operands('pow', x, y))


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
    return max_p.bind(*_lax_operands('max', x, y))


def min(x, y):
    return min_p.bind(*_lax_operands('min', x, y))


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


# --- batching rules ---
from ._batching import elementwise as _bew  # noqa: E402

for _p in (neg_p, add_p, sub_p, add_any_p, mul_p, add_products_p, safe_mul_p, div_p,
           integer_pow_p, pow_p, max_p, min_p, sign_p, abs_p):
    _p.batch = _bew(_p)
del _p

# --- numba lowering ---
# (see primitives/_lowering.py: elementwise rules return a scalar expression)
from ._lowering import Elementwise as _EW, NotLowerable as _NotLowerable  # noqa: E402


def _lw_binop(op):
    return _EW(lambda ctx, a, avals, out: f'({a[0]} {op} {a[1]})')


def _lw_add_any(ctx, a, avals, out, coeffs=None):
    terms = []
    for i, x in enumerate(a):
        c = 1 if coeffs is None else coeffs[i]
        terms.append(x if c == 1 else f'({x} * {ctx.lit(c, out.dtype)})')
    expr = terms[0]
    for t in terms[1:]:
        expr = f'({expr} + {t})'
    return expr


def _lw_add_products(ctx, a, avals, out):
    expr = f'({a[0]} * {a[1]})'
    for i in range(2, len(a), 2):
        expr = f'({expr} + ({a[i]} * {a[i + 1]}))'
    return expr


def _lw_div(ctx, a, avals, out):
    if out.dtype.kind in 'iu':
        return f"{ctx.helper('idiv')}({a[0]}, {a[1]})"
    return f'({a[0]} / {a[1]})'


def _lw_integer_pow(ctx, a, avals, out, y):
    x = a[0]
    dt = out.dtype
    if y == 0:
        return ctx.lit(1, dt)
    if y == 1:
        return x
    if y == 2:
        return f'({x} * {x})'
    if y == 3:
        return f'(({x} * {x}) * {x})'
    if dt.kind in 'iu':
        if y < 0:
            raise _NotLowerable("integer_pow with a negative exponent on integers")
        return f"{ctx.helper('ipow')}({x}, {y})"
    return f'({x} ** {ctx.lit(y, dt)})'


def _lw_pow(ctx, a, avals, out):
    if out.dtype.kind in 'iu':
        return f"{ctx.helper('ipow')}({a[0]}, {a[1]})"
    if out.dtype.kind == 'b':
        raise _NotLowerable("pow of booleans")
    return f'({a[0]} ** {a[1]})'


def _lw_minmax(name, builtin):
    def rule(ctx, a, avals, out):
        if out.dtype.kind == 'f':
            return f"{ctx.helper(name)}({a[0]}, {a[1]})"
        return f'{builtin}({a[0]}, {a[1]})'
    return _EW(rule)


def _lw_sign(ctx, a, avals, out):
    if out.dtype.kind == 'f':
        return f"{ctx.helper('fsign')}({a[0]})"
    return f'(({a[0]} > 0) - ({a[0]} < 0))'


neg_p.lowering = _EW(lambda ctx, a, avals, out: f'(-{a[0]})')
add_p.lowering = _lw_binop('+')
sub_p.lowering = _lw_binop('-')
mul_p.lowering = _lw_binop('*')
add_any_p.lowering = _EW(_lw_add_any)
add_products_p.lowering = _EW(_lw_add_products)
def _lw_safe_mul(ctx, a, avals, out):
    # safe_mul(x, y) is x * y unless x == 0 and x * y is NaN: a plain product when
    # x is a nonzero constant, or y a finite one (then x * y is NaN only for NaN or
    # infinite x, which are nonzero)
    x, y = ctx.const_value(a[0]), ctx.const_value(a[1])
    if (x is not None and x != 0) or (y is not None and math.isfinite(y)):
        return f'({a[0]} * {a[1]})'
    return f"{ctx.helper('safe_mul')}({a[0]}, {a[1]})"


safe_mul_p.lowering = _EW(_lw_safe_mul)
div_p.lowering = _EW(_lw_div)
integer_pow_p.lowering = _EW(_lw_integer_pow)
pow_p.lowering = _EW(_lw_pow)
max_p.lowering = _lw_minmax('fmax', 'max')
min_p.lowering = _lw_minmax('fmin', 'min')
sign_p.lowering = _EW(_lw_sign)
abs_p.lowering = _EW(lambda ctx, a, avals, out: f'abs({a[0]})')

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
from . import _basis as _SB  # noqa: E402

_SB.register(mul_p, _SB.scaling_rule(mul_p))
_SB.register(safe_mul_p, _SB.scaling_rule(safe_mul_p))
_SB.register(div_p, _SB.scaling_rule(div_p, basis_positions=(0,)))
_SB.register(neg_p, _SB.unary_rule(neg_p))
for _p in (add_p, sub_p, add_any_p):
    _SB.register(_p, _SB.linear_sum_rule(_p))
del _p


def _add_products_basis(args, dims):
    """sum_i a_i * b_i where each pair is a basis of one leaf times an unbatched
    factor that fits its shape (the product rule under jacfwd of jacrev): a Basis
    scaled by sum_i d_i * factor_i."""
    b = None
    terms = []
    for i in range(0, len(args), 2):
        pair = args[i:i + 2]
        j = 0 if type(pair[0]) is _SB.Basis else 1 if type(pair[1]) is _SB.Basis else None
        if j is None or dims[i + 1 - j] is not None:
            return None
        bj, other = pair[j], pair[1 - j]
        if b is None:
            b = bj
        elif not b.same_rows(bj):
            return None
        if type(other) in _PY:
            other = b.dtype.type(other)
        if dtype_of(other) != b.dtype or not _SB.fits(other, b.shape):
            return None
        terms += [_SB.scale_of(bj), other]
    return b.like(_SB.to_shape(add_products_p.bind(*terms), b.shape)), 0


_SB.register(add_products_p, _add_products_basis)


# --- eager linearization rules -------------------------------------------------------
# Primitive.lin (see transforms/linearize.py): on arrays, the output and the
# coefficient of each operand's tangent. A (array, scalar) coefficient keeps the
# scalar on the linear side, where transposition folds it for free.

neg_p.lin = lambda x: (np.negative(x), (-1,))
add_any_p.lin = lambda *xs, coeffs=None: (
    _add_any_impl(*xs, coeffs=coeffs), (1,) * len(xs) if coeffs is None else coeffs)
add_p.lin = lambda x, y: (np.add(x, y), (1, 1))
sub_p.lin = lambda x, y: (np.subtract(x, y), (1, -1))
mul_p.lin = lambda x, y: (np.multiply(x, y), (y, x))


def _integer_pow_lin(x, y):
    if y < 2:
        return None
    if y == 3:
        both = cube_with_square(x)      # one pass for large arrays
        if both is not None:
            return both[0], ((both[1], 3.0),)
    base = x if y == 2 else _integer_pow_impl(x, y - 1)
    return np.multiply(base, x), ((base, float(y)),)


integer_pow_p.lin = _integer_pow_lin


def _pow_lin(x, y):
    # an array to a constant scalar power (x ** 0.5): _pow_jvp_x's coefficient
    # y x**(y-1), by the same NumPy calls; a traced or array exponent: the JVP rules
    if type(x) is not np.ndarray or type(y) is np.ndarray or x.dtype.kind != 'f':
        return None
    out = np.power(x, y)
    return out, (np.multiply(y, np.power(x, np.subtract(y, dtype_of(y).type(1)))), None)


pow_p.lin = _pow_lin
pow_p.lin_safe = True       # y x**(y-1) is infinite at 0 for y < 1


def _integer_pow_lin_dual(x, dx, out, dout, base, y):
    # base = x**(y-1) (the coefficient's array part, y kept linear): its tangent
    if y == 2:
        return dx
    lower = x if y == 3 else _integer_pow_impl(x, y - 2)
    return np.multiply(np.multiply(lower, float(y - 1)), dx)


integer_pow_p.lin_dual = _integer_pow_lin_dual


def _div_lin(x, y):
    out = _div_impl(x, y)
    if type(y) is np.ndarray:
        return out, (np.divide(1, y), np.negative(np.divide(out, y)))
    if not np.isfinite(y) or y == 0 or not np.isrealobj(y):
        return None
    return out, (1.0 / y, None)


div_p.lin = _div_lin
div_p.lin_safe = True
