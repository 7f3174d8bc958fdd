"""NumPy-compatible functions that trace (like jax.numpy).

Each function follows NumPy's signature, broadcasting and NumPy 2 dtype promotion
(Python scalars are weak: a float32 array times 2.0 stays float32), and lowers to
primitives. Tracers route NumPy's own functions here through `__array_ufunc__` /
`__array_function__`, and their operators and methods (`x @ w`, `x.sum()`, `x.T`,
`x[idx]`, `x.at[idx].set(v)`) too, so unmodified NumPy code traces.

On plain NumPy inputs (nothing traced) every function computes eagerly and returns
NumPy values; creation functions (zeros, ones, arange, eye, ...) always return
plain NumPy arrays, which are constants to any transform.
"""
import builtins
import math as _math
import operator
import string as _string
import numpy as _np

from tracer import Tracer, get_aval, register_array_api
from tracer.avals import result_dtype, ShapedArray
from tracer.errors import with_user_line
from . import arith, unary, logical, convert, reductions, shape_ops, slicing
from . import dot as _dotmod
from . import lax, trig
from ._base import shape_of, dtype_of

_PY = (int, float, complex, bool)
_PY_DTYPE = {bool: _np.dtype(bool), int: _np.dtype(_np.int64), float: _np.dtype(_np.float64),
             complex: _np.dtype(_np.complex128)}
_BOOL = _np.dtype(bool)

# dtypes, constants and types users reach through `pnp.`
float64, float32, float16 = _np.float64, _np.float32, _np.float16
int64, int32, int16, int8 = _np.int64, _np.int32, _np.int16, _np.int8
uint8, uint16, uint32, uint64 = _np.uint8, _np.uint16, _np.uint32, _np.uint64
bool_, complex64, complex128 = _np.bool_, _np.complex64, _np.complex128
integer, floating, inexact, number, generic = (_np.integer, _np.floating, _np.inexact,
                                               _np.number, _np.generic)
signedinteger, unsignedinteger, complexfloating = (_np.signedinteger, _np.unsignedinteger,
                                                   _np.complexfloating)
pi, e, inf, nan, newaxis, euler_gamma = _np.pi, _np.e, _np.inf, _np.nan, None, _np.euler_gamma
dtype, ndarray, finfo, iinfo = _np.dtype, _np.ndarray, _np.finfo, _np.iinfo
issubdtype, isdtype, promote_types, can_cast = (_np.issubdtype, _np.isdtype, _np.promote_types,
                                                _np.can_cast)


# --- promotion ------------------------------------------------------------------------------

def _aval(x):
    return x.aval if isinstance(x, Tracer) else get_aval(x)


def _weak(x):
    return type(x) in _PY or (isinstance(x, Tracer) and x.aval.weak_type)


_F64 = _np.dtype(_np.float64)


def promote(*args):
    """Cast operands to their NumPy 2 result dtype (weak Python scalars adapt)."""
    if len(args) == 2:
        x, y = args
        tx, ty = type(x), type(y)
        if tx is ty and tx not in _PY and tx is not list and tx is not tuple:
            # two arrays or two tracers of one kind: nothing to do when the dtypes
            # agree and neither is weakly typed
            if tx is _np.ndarray:
                if x.dtype == y.dtype:
                    return x, y
            elif issubclass(tx, Tracer):
                if x.dtype == y.dtype and not x.weak_type and not y.weak_type:
                    return x, y
        # fast path: an inexact array with a Python int/float takes the array's dtype
        if (ty is float or ty is int) and tx not in _PY and tx is not list and tx is not tuple:
            dx = x.dtype
            if dx.kind in 'fc' and not (isinstance(x, Tracer) and x.weak_type):
                return x, (y if dx is _F64 and ty is float else dx.type(y))
        elif (tx is float or tx is int) and ty not in _PY and ty is not list and ty is not tuple:
            dy = y.dtype
            if dy.kind in 'fc' and not (isinstance(y, Tracer) and y.weak_type):
                return (x if dy is _F64 and tx is float else dy.type(x)), y
        dx, dy = getattr(x, 'dtype', None), getattr(y, 'dtype', None)
        if dx is not None and dx == dy and type(x) not in _PY and type(y) not in _PY:
            if not (isinstance(x, Tracer) or isinstance(y, Tracer)):
                return x, y
            if not (x.aval.weak_type if isinstance(x, Tracer) else False) and \
                    not (y.aval.weak_type if isinstance(y, Tracer) else False):
                return x, y
    args = [asarray(a) if isinstance(a, (list, tuple)) else a for a in args]
    avals = [_aval(a) for a in args]
    dt, weak = result_dtype(*avals)
    return tuple(_cast(a, av, dt, weak) for a, av in zip(args, avals))


def _cast(x, aval, dt, weak=False):
    t = type(x)
    if t in _PY:
        if weak and _PY_DTYPE[t] == dt:
            return x                   # stays a weakly typed literal
        return dt.type(x)
    if aval.dtype == dt:
        return x
    return convert.convert_element_type(x, dt, weak_type=weak)


def result_type(*arrays_and_dtypes):
    """NumPy 2's result dtype of the operands (weak Python scalars, traced arrays)."""
    avals = []
    for a in arrays_and_dtypes:
        if isinstance(a, (_np.dtype, type, str)):
            avals.append(ShapedArray((), _np.dtype(a)))     # a dtype is never weak
        else:
            avals.append(_aval(_arr_or_scalar(a)))
    if not avals:
        raise ValueError("at least one array or dtype is required")
    return result_dtype(*avals)[0]


def iscomplexobj(x):
    return _dt(x).kind == 'c'


def isrealobj(x):
    return _dt(x).kind != 'c'


def _arr_or_scalar(x):
    if isinstance(x, (Tracer, _np.ndarray, _np.generic)) or type(x) in _PY:
        return x
    return asarray(x)


def _arr(x):
    """x as an array value: tracers and NumPy arrays as they are; lists, tuples and
    scalars converted (lists holding tracers are stacked)."""
    if isinstance(x, (Tracer, _np.ndarray)):
        return x
    return asarray(x)


def _dt(x):
    if isinstance(x, (list, tuple)):
        return dtype_of(asarray(x))
    return dtype_of(x)


def _nd(x):
    return len(shape_of(x))


def _is_traced(x):
    return isinstance(x, Tracer)


def _astype(x, dt):
    """x in dtype dt (a no-op when it has it; weakly typed tracers stay weak)."""
    dt = _np.dtype(dt)
    if type(x) in _PY:
        return dt.type(x)
    if _dt(x) == dt:
        return x
    return convert.convert_element_type(x, dt)


def _no_out(out, name):
    if out is not None:
        raise TypeError(f"pnp.{name}: the out= argument is not supported: traced arrays are "
                        f"immutable. Fix: use the returned value (y = pnp.{name}(...)).")


def _float_dtype(dt):
    """The floating dtype NumPy computes a transcendental function in (int8 -> float16,
    int16 -> float32, int32/int64 -> float64)."""
    if dt.kind in 'fc':
        return dt
    return _np.promote_types(dt, _np.float16)


def _float_operand(x):
    """Integer and boolean inputs of transcendental functions become floating, as in NumPy."""
    if type(x) in _PY:
        return complex(x) if type(x) is complex else float(x)
    x = _arr_or_scalar(x)
    a = _aval(x)
    if a.dtype.kind in 'fc':
        return x
    return convert.convert_element_type(x, _float_dtype(a.dtype), weak_type=a.weak_type)


def asarray(a, dtype=None, order=None, *, copy=None, like=None):
    if isinstance(a, Tracer):
        return a if dtype is None else _astype(a, dtype)
    if isinstance(a, (list, tuple)) and builtins.any(isinstance(v, Tracer)
                                                      for v in _iter_leaves(a)):
        # Python scalars among traced values stay weak, as in jax.numpy
        out = stack([v if type(v) in _PY else asarray(v) for v in a])
        return out if dtype is None else _astype(out, dtype)
    return _np.asarray(a, dtype=dtype)


def _iter_leaves(x):
    stack_ = [x]
    while stack_:
        v = stack_.pop()
        if isinstance(v, (list, tuple)):
            stack_.extend(v)
        else:
            yield v


def array(object, dtype=None, *, copy=True, order='K', subok=False, ndmin=0, like=None):
    out = asarray(object, dtype)
    if not isinstance(out, Tracer) and copy:
        out = _np.array(out, copy=True)
    if ndmin and _nd(out) < ndmin:
        out = reshape(out, (1,) * (ndmin - _nd(out)) + tuple(shape_of(out)))
    return out


def astype(x, dtype, /, *, copy=True, device=None):
    return convert.convert_element_type(_arr(x), _np.dtype(dtype))


def copy(a, order='K', subok=False):
    """A copy; a traced array is immutable, so it is returned as it is."""
    if isinstance(a, Tracer):
        return a
    return _np.array(a, copy=True)


# --- shape helpers ----------------------------------------------------------------------------

def shape(a):
    return tuple(shape_of(a))


def ndim(a):
    return len(shape_of(a))


def size(a, axis=None):
    s = shape_of(a)
    if axis is None:
        return int(_np.prod(s, dtype=_np.int64))
    return s[axis]


def _axis(axis, nd):
    a = operator.index(axis)
    if not -nd <= a < nd:
        raise _np.exceptions.AxisError(a, nd)
    return a % nd if nd else a


def _axes(axis, nd):
    """Normalised, sorted reduction axes (None = all)."""
    if axis is None:
        return tuple(range(nd))
    if isinstance(axis, (tuple, list)):
        out = [_axis(a, nd) for a in axis]
        if len(set(out)) != len(out):
            raise ValueError("duplicate value in 'axis'")
        return tuple(sorted(out))
    return (_axis(axis, nd),)


# --- elementwise: unary -----------------------------------------------------------------------

def _unary_float(prim_fn, name):
    prim = getattr(prim_fn, 'primitive', None)
    if prim is not None:
        bind = prim.bind

        def f(x, /):
            # fast path: a floating array or tracer goes straight to the primitive
            if type(x) is _np.ndarray:
                if x.dtype.kind in 'fc':
                    return bind(x)
            elif isinstance(x, Tracer):
                r = x.bind_unary(prim)    # the tracer's shortcut (eager linearization)
                if r is not None:
                    return r
                if x.dtype.kind in 'fc':
                    return bind(x)
            return bind(_float_operand(x))
    else:
        def f(x, /):
            return prim_fn(_float_operand(x))
    f.__name__ = name
    f.__qualname__ = name
    f.__doc__ = f"Elementwise {name}, as numpy.{name}."
    return f


sin = _unary_float(unary.sin, 'sin')
cos = _unary_float(unary.cos, 'cos')
tan = _unary_float(unary.tan, 'tan')
tanh = _unary_float(unary.tanh, 'tanh')
exp = _unary_float(unary.exp, 'exp')
log = _unary_float(unary.log, 'log')
log1p = _unary_float(unary.log1p, 'log1p')
expm1 = _unary_float(unary.expm1, 'expm1')
sqrt = _unary_float(unary.sqrt, 'sqrt')
cbrt = _unary_float(lax.cbrt, 'cbrt')
arcsin = _unary_float(lax.asin, 'arcsin')
arccos = _unary_float(lax.acos, 'arccos')
arctan = _unary_float(lax.atan, 'arctan')
sinh = _unary_float(lax.sinh, 'sinh')
cosh = _unary_float(lax.cosh, 'cosh')
arcsinh = _unary_float(lax.asinh, 'arcsinh')
arccosh = _unary_float(lax.acosh, 'arccosh')
arctanh = _unary_float(lax.atanh, 'arctanh')
asin, acos, atan, asinh, acosh, atanh = arcsin, arccos, arctan, arcsinh, arccosh, arctanh

_LN2 = _math.log(2.0)
_LN10 = _math.log(10.0)


def exp2(x, /):
    x = _float_operand(x)
    return arith.pow_p.bind(*promote(2.0, x))


def log2(x, /):
    x = _float_operand(x)
    return divide(unary.log(x), _LN2)


def log10(x, /):
    x = _float_operand(x)
    return divide(unary.log(x), _LN10)


def _bool_as_int8(x):
    x = _arr_or_scalar(x)
    return _astype(x, int8) if _dt(x) == _BOOL and type(x) is not bool else x


def square(x, /):
    return arith.integer_pow(_bool_as_int8(x), 2)


def reciprocal(x, /):
    return arith.div(1, _bool_as_int8(x))      # integer operands divide as NumPy's do


def negative(x, /):
    return arith.neg(x)


def positive(x, /):
    return x


def abs(x, /):
    if _dt(x) == _BOOL:
        return x
    return arith.abs(x)


absolute = abs


def fabs(x, /):
    return arith.abs(_float_operand(x))


def sign(x, /):
    return arith.sign(x)


def floor(x, /):
    return x if _dt(x).kind in 'iub' else unary.floor(x)


def ceil(x, /):
    return x if _dt(x).kind in 'iub' else unary.ceil(x)


def trunc(x, /):
    if _dt(x).kind in 'iub':
        return x
    return logical.select_n(less(x, 0), unary.floor(x), unary.ceil(x))


fix = trunc


def rint(x, /):
    return unary.round(_float_operand(x))


def round(a, decimals=0, out=None):
    """Round half to even to `decimals` places (NumPy's algorithm: scale, rint, unscale)."""
    _no_out(out, 'round')
    a = _arr_or_scalar(a)
    if _dt(a) == _BOOL:
        a = _float_operand(a)                   # NumPy rounds booleans in float16
    dt = _dt(a)
    decimals = operator.index(decimals)
    if dt.kind in 'iu':
        if decimals >= 0:
            return a
        f = 10 ** (-decimals)
        return _astype(multiply(unary.round(divide(_astype(a, float64), f)), f), dt)
    if decimals == 0:
        return unary.round(a)
    if decimals > 0:
        f = 10.0 ** decimals
        return divide(unary.round(multiply(a, f)), f)
    f = 10.0 ** (-decimals)
    return multiply(unary.round(divide(a, f)), f)


around = round


def deg2rad(x, /):
    return multiply(_float_operand(x), _np.pi / 180.0)


def rad2deg(x, /):
    return multiply(_float_operand(x), 180.0 / _np.pi)


radians, degrees = deg2rad, rad2deg


def conj(x, /):
    if _dt(x).kind == 'c':
        raise TypeError("pnp.conj: complex arrays are not supported by cotangent's primitives")
    return _bool_as_int8(x)


conjugate = conj


def real(val, /):
    if _dt(val).kind == 'c':
        raise TypeError("pnp.real: complex arrays are not supported by cotangent's primitives")
    return val


def imag(val, /):
    real(val)
    return zeros_like(val)


def isnan(x, /):
    if _dt(x).kind not in 'fc':
        return _np.zeros(shape_of(x), bool)
    return logical.ne(x, x)


def isinf(x, /):
    if _dt(x).kind not in 'fc':
        return _np.zeros(shape_of(x), bool)
    return logical.eq(arith.abs(x), _dt(x).type(_np.inf))


def isfinite(x, /):
    if _dt(x).kind not in 'fc':
        return _np.ones(shape_of(x), bool)
    return logical.lt(arith.abs(x), _dt(x).type(_np.inf))


def signbit(x, /):
    """True for negative numbers and -0.0 (NaNs count as positive here)."""
    if _dt(x).kind not in 'fc':
        return less(x, 0)
    # -0.0 and 0.0 compare equal; atan2(x, -1) tells them apart (-pi vs +pi)
    dt = _dt(x)
    neg_ = logical.lt(x, dt.type(0))
    zero = logical.eq(x, dt.type(0))
    negzero = logical.bitwise_and(zero, logical.lt(lax.atan2(x, dt.type(-1)), dt.type(0)))
    return logical.bitwise_or(neg_, negzero)


# --- elementwise: binary --------------------------------------------------------------------

def _binary(prim, name):
    bind = prim.bind

    def f(x, y, /):
        x, y = promote(x, y)
        return bind(x, y)
    f.__name__ = name
    f.__qualname__ = name
    f.__doc__ = f"Elementwise {name} with NumPy broadcasting and promotion."
    return f


_add = _binary(arith.add_p, 'add')
subtract = _binary(arith.sub_p, 'subtract')
_multiply = _binary(arith.mul_p, 'multiply')
_maximum = _binary(arith.max_p, 'maximum')
_minimum = _binary(arith.min_p, 'minimum')
equal = _binary(logical.eq_p, 'equal')
not_equal = _binary(logical.ne_p, 'not_equal')
less = _binary(logical.lt_p, 'less')
less_equal = _binary(logical.le_p, 'less_equal')
greater = _binary(logical.gt_p, 'greater')
greater_equal = _binary(logical.ge_p, 'greater_equal')
bitwise_and = _binary(logical.and_p, 'bitwise_and')
bitwise_or = _binary(logical.or_p, 'bitwise_or')
bitwise_xor = _binary(logical.xor_p, 'bitwise_xor')


def _bool_or(prim_bool, prim_num, name):
    bind_b, bind_n = prim_bool.bind, prim_num.bind

    def f(x, y, /):
        x, y = promote(x, y)
        tx = type(x)
        if tx is bool or (tx not in _PY and x.dtype.kind == 'b'):
            return bind_b(x, y)
        return bind_n(x, y)
    f.__name__ = name
    f.__qualname__ = name
    f.__doc__ = f"Elementwise {name} with NumPy broadcasting and promotion."
    return f


add = _bool_or(logical.or_p, arith.add_p, 'add')            # bool + bool is logical or
multiply = _bool_or(logical.and_p, arith.mul_p, 'multiply')  # bool * bool is logical and
maximum = _bool_or(logical.or_p, arith.max_p, 'maximum')
minimum = _bool_or(logical.and_p, arith.min_p, 'minimum')


def divide(x, y, /):
    x, y = promote(x, y)
    if _dt(x).kind in 'iub':
        x, y = _astype(x, float64), _astype(y, float64)
    return arith.div_p.bind(x, y)


true_divide = divide


def _float_pair(x1, x2):
    """Operands of NumPy's float-only binary ufuncs (arctan2, hypot, logaddexp, ...):
    each integer operand is taken to the smallest float holding it (int8 and uint8
    meet in float16); weak Python scalars promote first, as NEP 50 says."""
    if not (_weak(x1) or _weak(x2)):
        x1, x2 = _arr_or_scalar(x1), _arr_or_scalar(x2)
        d1, d2 = _dt(x1), _dt(x2)
        if d1.kind not in 'fc' or d2.kind not in 'fc':
            f = _np.promote_types(_float_dtype(d1), _float_dtype(d2))
            return _astype(x1, f), _astype(x2, f)
    x1, x2 = promote(x1, x2)
    dt = _dt(x1)
    if dt.kind not in 'fc':
        f = _float_dtype(dt)
        x1, x2 = _astype(x1, f), _astype(x2, f)
    return x1, x2


def _int8_if_bool(x1, x2):
    x1, x2 = promote(x1, x2)
    if _dt(x1) == _BOOL:        # NumPy's integer loops take booleans as int8
        x1, x2 = _astype(x1, int8), _astype(x2, int8)
    return x1, x2


def arctan2(x1, x2, /):
    return trig.atan2_p.bind(*_float_pair(x1, x2))


atan2 = arctan2


def fmod(x1, x2, /):
    return trig.rem_p.bind(*_int8_if_bool(x1, x2))


def remainder(x1, x2, /):
    """x1 mod x2 with the sign of x2 (Python's %), NumPy's algorithm from fmod."""
    x1, x2 = _int8_if_bool(x1, x2)
    mod = trig.rem_p.bind(x1, x2)
    zero = _dt(mod).type(0)
    fix_ = logical.bitwise_and(logical.ne(mod, zero),
                               logical.ne(logical.lt(x2, zero), logical.lt(mod, zero)))
    return logical.select_n(fix_, mod, arith.add(mod, x2))


mod = remainder


def floor_divide(x1, x2, /):
    """Floor of x1 / x2, consistent with remainder: x1 == floor_divide * x2 + remainder."""
    x1, x2 = _int8_if_bool(x1, x2)
    dt = _dt(x1)
    zero, one = dt.type(0), dt.type(1)
    r = trig.rem_p.bind(x1, x2)
    fix_ = logical.bitwise_and(logical.ne(r, zero),
                               logical.ne(logical.lt(x2, zero), logical.lt(r, zero)))
    if dt.kind in 'iu':
        is0 = logical.eq(x2, zero)
        safe = logical.select_n(is0, x2, one)
        q = arith.div(arith.sub(x1, r), safe)                       # exact division
        q = logical.select_n(fix_, q, arith.sub(q, one))
        return logical.select_n(is0, q, zero)                       # NumPy: x // 0 == 0
    q = arith.div(arith.sub(x1, r), x2)
    q = logical.select_n(fix_, q, arith.sub(q, one))
    fq = unary.floor(q)
    fq = logical.select_n(logical.gt(arith.sub(q, fq), dt.type(0.5)), fq, arith.add(fq, one))
    return logical.select_n(logical.eq(x2, zero), fq, arith.div(x1, x2))


def divmod(x1, x2, /):
    return floor_divide(x1, x2), remainder(x1, x2)


def power(x1, x2, /):
    x, y = x1, x2
    if type(y) is int and type(x) not in _PY:
        if _dt(x) == _BOOL:
            x = _astype(x, int64)
        return arith.integer_pow(x, y)
    if isinstance(y, _np.integer) and type(x) not in _PY:
        x, yy = promote(x, y)
        return arith.integer_pow(x, int(y))
    if type(y) is float and y.is_integer() and builtins.abs(y) <= 64 and type(x) not in _PY \
            and _dt(x).kind in 'fc':
        return arith.integer_pow(x, int(y))
    x, y = promote(x, y)
    if _dt(x) == _BOOL:
        x, y = _astype(x, int8), _astype(y, int8)
    return arith.pow_p.bind(x, y)


pow = power


def float_power(x1, x2, /):
    x1, x2 = promote(x1, x2)
    dt = complex128 if _dt(x1).kind == 'c' else float64
    return arith.pow_p.bind(_astype(x1, dt), _astype(x2, dt))


def _nan_ignoring(prim, plain, x1, x2):
    """prim elementwise, ignoring NaNs (NaN only where both operands are NaN)."""
    x1, x2 = promote(x1, x2)
    if _dt(x1).kind not in 'fc':
        return plain(x1, x2)
    m = prim.bind(x1, x2)
    return logical.select_n(isnan(x2), logical.select_n(isnan(x1), m, x2), x1)


def fmax(x1, x2, /):
    """Elementwise maximum ignoring NaNs (NaN only if both are NaN)."""
    return _nan_ignoring(arith.max_p, maximum, x1, x2)


def fmin(x1, x2, /):
    """Elementwise minimum ignoring NaNs (NaN only if both are NaN)."""
    return _nan_ignoring(arith.min_p, minimum, x1, x2)


def logaddexp(x1, x2, /):
    """log(exp(x1) + exp(x2)) without overflow: max + log1p(exp(-|x1 - x2|))."""
    x1, x2 = _float_pair(x1, x2)
    amax = arith.max_p.bind(x1, x2)
    delta = arith.sub(x1, x2)
    stable = arith.add(amax, unary.log1p(unary.exp(arith.neg(arith.abs(delta)))))
    # infinities of one sign make delta NaN; the sum gives the right answer there
    return logical.select_n(isnan(delta), stable, arith.add(x1, x2))


def logaddexp2(x1, x2, /):
    x1, x2 = _float_pair(x1, x2)
    return multiply(logaddexp(multiply(x1, _LN2), multiply(x2, _LN2)), 1.0 / _LN2)


def hypot(x1, x2, /):
    """sqrt(x1**2 + x2**2), scaled by the larger magnitude so it does not overflow."""
    x1, x2 = _float_pair(x1, x2)
    dt = _dt(x1)
    a, b = arith.abs(x1), arith.abs(x2)
    big = arith.max_p.bind(a, b)
    small = arith.min_p.bind(a, b)
    is0 = logical.eq(big, dt.type(0))
    safe_big = logical.select_n(is0, big, dt.type(1))
    ratio = arith.div(small, safe_big)
    r = arith.mul(big, unary.sqrt(arith.add(dt.type(1), arith.mul(ratio, ratio))))
    inf_ = logical.bitwise_or(isinf(x1), isinf(x2))
    return logical.select_n(inf_, r, dt.type(_np.inf))


def copysign(x1, x2, /):
    """|x1| with the sign (bit) of x2."""
    x1, x2 = _float_pair(x1, x2)
    a = arith.abs(x1)
    return logical.select_n(signbit(x2), a, arith.neg(a))


def heaviside(x1, x2, /):
    x1, x2 = _float_pair(x1, x2)
    dt = _dt(x1)
    out = logical.select_n(logical.gt(x1, dt.type(0)), dt.type(0), dt.type(1))
    out = logical.select_n(logical.eq(x1, dt.type(0)), out, x2)
    return logical.select_n(isnan(x1), out, x1)


def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None):
    """a limited to [a_min, a_max] (either may be None); NumPy 2's signature."""
    _no_out(out, 'clip')
    if min is not None:
        a_min = min
    if max is not None:
        a_max = max
    a = _arr_or_scalar(a)
    if a_min is not None:
        a = maximum(a, a_min)
    if a_max is not None:
        a = minimum(a, a_max)
    return a


def where(condition, x=None, y=None, /):
    if x is None and y is None:
        raise TypeError("pnp.where(condition) with one argument (nonzero) has a "
                        "data-dependent shape and cannot be traced; pass x and y.")
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    x, y = promote(x, y)
    cond = condition
    if type(cond) in _PY or isinstance(cond, (list, tuple)):
        cond = asarray(cond)
    if _dt(cond) != _BOOL:
        cond = not_equal(cond, 0)
    return logical.select_n(cond, y, x)


def select(condlist, choicelist, default=0):
    """choicelist[i] where condlist[i] is the first true condition, else default."""
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if not condlist:
        raise ValueError("select with an empty condition list is not possible")
    choices = _common(choicelist + [default])
    dt = _dt(choices[0])
    out = choices[-1]
    for c, v in zip(reversed(condlist), reversed(choices[:-1])):
        c = _arr(c)
        if _dt(c) != _BOOL:
            raise TypeError(f"invalid entry in condlist: should be boolean ndarray, got "
                            f"{_dt(c)}")
        out = logical.select_n(c, out, v)
    return _astype(out, dt)


def polyval(p, x):
    """p[0] * x**(n-1) + ... + p[n-1] by Horner's rule (p a sequence or 1-D array)."""
    x = _arr_or_scalar(x)
    coeffs = [p[i] for i in range(shape_of(p)[0])] if isinstance(p, (Tracer, _np.ndarray)) \
        else list(p)
    y = zeros_like(x) if not coeffs else None
    for c in coeffs:
        y = c if y is None else add(multiply(y, x), c)
    if isinstance(x, (Tracer, _np.ndarray)) and shape_of(y) != shape_of(x):
        y = broadcast_to(y, _np.broadcast_shapes(shape_of(y), shape_of(x)))
    return y


def _to_bool(x):
    x = _arr_or_scalar(x)
    if _dt(x) == _BOOL:
        return x
    return logical.ne(x, _dt(x).type(0))


def logical_and(x1, x2, /):
    return logical.and_p.bind(*promote(_to_bool(x1), _to_bool(x2)))


def logical_or(x1, x2, /):
    return logical.or_p.bind(*promote(_to_bool(x1), _to_bool(x2)))


def logical_xor(x1, x2, /):
    return logical.ne_p.bind(*promote(_to_bool(x1), _to_bool(x2)))


def logical_not(x, /):
    return logical.not_p.bind(_to_bool(x))


def invert(x, /):
    return logical.bitwise_not(x)


bitwise_not = bitwise_invert = invert


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = promote(_arr_or_scalar(a), _arr_or_scalar(b))
    if _dt(a).kind not in 'fc':
        a, b = _astype(a, float64), _astype(b, float64)
    close = less_equal(abs(subtract(a, b)), add(atol, multiply(rtol, abs(b))))
    both_inf = logical_and(equal(a, b), logical_or(isinf(a), isinf(b)))
    close = logical_and(logical_or(close, both_inf), logical_and(isfinite(a), isfinite(b)))
    close = logical_or(close, both_inf)
    if equal_nan:
        close = logical_or(close, logical_and(isnan(a), isnan(b)))
    return close


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return all(isclose(a, b, rtol, atol, equal_nan))


def array_equal(a1, a2, equal_nan=False):
    if shape_of(a1) != shape_of(a2):
        return False
    eq = equal(a1, a2)
    if equal_nan:
        eq = logical_or(eq, logical_and(isnan(a1), isnan(a2)))
    return all(eq)


# --- reductions ----------------------------------------------------------------------------

def _sum_dtype(dt):
    """NumPy sums and products of small integers (and booleans) in the platform integer."""
    if dt.kind == 'b' or (dt.kind == 'i' and dt.itemsize < 8):
        return _np.dtype(_np.int64)
    if dt.kind == 'u' and dt.itemsize < 8:
        return _np.dtype(_np.uint64)
    return dt


def _keep(y, in_shape, axes, keepdims):
    if not keepdims:
        return y
    return shape_ops.reshape(y, tuple(1 if i in axes else d for i, d in enumerate(in_shape)))


def _masked(a, where_, fill):
    if where_ is None or where_ is True:
        return a
    return where(where_, a, fill)


def _sum_or_prod(name, a, axis, dtype, out, keepdims, initial, where, identity,
                 reduce_bool, reduce, combine):
    _no_out(out, name)
    a = _arr(a)
    dt = _np.dtype(dtype) if dtype is not None else _sum_dtype(_dt(a))
    a = _astype(a, dt)
    a = _masked(a, where, dt.type(identity))
    in_shape = shape_of(a)
    axes = _axes(axis, len(in_shape))
    y = (reduce_bool if dt == _BOOL else reduce)(a, axes) if axes else a
    if initial is not None:
        y = combine(y, _astype(initial, dt))
    return _keep(y, in_shape, axes, keepdims)


_ALL_AXES = [tuple(range(n)) for n in range(8)]
_div_bind = arith.div_p.bind
_reduce_sum_bind = reductions.reduce_sum_p.bind


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    if axis is None and dtype is None and out is None and initial is None and \
            where is None and not keepdims and \
            (type(a) is _np.ndarray or isinstance(a, Tracer)) and a.dtype.kind == 'f':
        # the common case, a floating array summed whole: one reduce_sum (the
        # general path's equation, its axes already normalised)
        nd = len(a.shape)
        if 0 < nd < 8:
            return _reduce_sum_bind(a, axes=_ALL_AXES[nd])
    if type(axis) is int and dtype is None and out is None and initial is None and \
            where is None and (type(a) is _np.ndarray or isinstance(a, Tracer)) and \
            a.dtype.kind == 'f':
        y = _reduce_one_axis(reductions.reduce_sum_p, a, axis, keepdims)
        if y is not None:
            return y
    return _sum_or_prod('sum', a, axis, dtype, out, keepdims, initial, where, 0,
                        reductions.reduce_max, reductions.reduce_sum, add)


_reshape_bind = shape_ops.reshape_p.bind


def _reduce_one_axis(primitive, a, axis, keepdims):
    """primitive.bind(a, axes=(axis,)) for a floating array or tracer reduced over one
    int axis in range and not empty, then reshaped to keep that axis if keepdims: the
    equations the general paths of sum and max stage (their axis normalised, the
    reshape of _keep), without their argument handling. None where the axis is out
    of range or empty (the general path explains or handles it)."""
    shape = a.shape
    nd = len(shape)
    if not -nd <= axis < nd:
        return None
    if axis < 0:
        axis += nd
    if shape[axis] == 0:
        return None
    if type(a) is not _np.ndarray:
        y = a.bind_reduction(primitive, axis, keepdims)    # the tracer's shortcut
        if y is not None:
            return y
    y = primitive.bind(a, axes=(axis,))
    if keepdims:
        return _reshape_bind(y, new_sizes=shape[:axis] + (1,) + shape[axis + 1:])
    return y


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return _sum_or_prod('prod', a, axis, dtype, out, keepdims, initial, where, 1,
                        reductions.reduce_min, reductions.reduce_prod, multiply)


def _minmax(red, combine, name):
    primitive = {'max': reductions.reduce_max_p, 'min': reductions.reduce_min_p}[name]

    def f(a, axis=None, out=None, keepdims=False, initial=None, where=None):
        if type(axis) is int and out is None and initial is None and where is None and \
                (type(a) is _np.ndarray or isinstance(a, Tracer)) and a.dtype.kind == 'f':
            # the common case (a max over rows or columns): the general path's
            # equations (see _reduce_one_axis)
            y = _reduce_one_axis(primitive, a, axis, keepdims)
            if y is not None:
                return y
        _no_out(out, name)
        a = _arr(a)
        in_shape = shape_of(a)
        axes = _axes(axis, len(in_shape))
        if where is not None and where is not True:
            if initial is None:
                raise ValueError(f"reduction operation '{name}' does not have an identity, "
                                 f"so to use a where mask one has to specify 'initial'")
            a = _masked(a, where, initial)
        if initial is None:
            for ax in axes:
                if in_shape[ax] == 0:
                    raise ValueError(f"zero-size array to reduction operation {name} which "
                                     f"has no identity")
        y = red(a, axes) if axes else a
        if initial is not None:
            y = combine(y, initial)
            if _dt(y) != _dt(a):
                y = _astype(y, _dt(a))
        return _keep(y, in_shape, axes, keepdims)
    f.__name__ = name
    f.__qualname__ = name
    f.__doc__ = f"The {name} over `axis` (None: all), as numpy.{name}."
    return f


max = _minmax(reductions.reduce_max, maximum, 'max')
min = _minmax(reductions.reduce_min, minimum, 'min')
amax, amin = max, min


def all(a, axis=None, out=None, keepdims=False, *, where=None):
    _no_out(out, 'all')
    a = _masked(_to_bool(_arr(a)), where, True)
    in_shape = shape_of(a)
    axes = _axes(axis, len(in_shape))
    y = reductions.reduce_min(a, axes) if axes else a
    return _keep(y, in_shape, axes, keepdims)


def any(a, axis=None, out=None, keepdims=False, *, where=None):
    _no_out(out, 'any')
    a = _masked(_to_bool(_arr(a)), where, False)
    in_shape = shape_of(a)
    axes = _axes(axis, len(in_shape))
    y = reductions.reduce_max(a, axes) if axes else a
    return _keep(y, in_shape, axes, keepdims)


def _count(in_shape, axes, where_):
    """How many elements each reduction over `axes` sees (an int, or an array when
    a `where` mask selects them)."""
    if where_ is None or where_ is True:
        n = 1
        for ax in axes:
            n *= in_shape[ax]
        return n
    w = broadcast_to(asarray(where_), in_shape)
    return sum(w, axis=axes)


def _mean_dtype(dt, dtype):
    if dtype is not None:
        return _np.dtype(dtype)
    return dt if dt.kind in 'fc' else _np.dtype(_np.float64)


def _divide_by_count(s, n, dt):
    if type(n) is int:
        return _astype(divide(s, float(n)), dt)
    return _astype(divide(s, _astype(n, dt)), dt)


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    if axis is None and dtype is None and out is None and where is None and \
            not keepdims and (type(a) is _np.ndarray or (
                isinstance(a, Tracer) and not a.weak_type)) and a.dtype.kind == 'f':
        # the common case, a floating array averaged whole: the general path's
        # reduce_sum and division (its dtype conversions are no-ops here)
        shape = a.shape
        nd = len(shape)
        if 0 < nd < 8:
            n = 1
            for d in shape:
                n *= d
            dt = a.dtype
            # divide(s, float(n)) without its promotion: a float dtype with a
            # Python float keeps the dtype (the float itself against float64)
            return _div_bind(_reduce_sum_bind(a, axes=_ALL_AXES[nd]),
                             float(n) if dt is _F64 else dt.type(float(n)))
    _no_out(out, 'mean')
    a = _arr(a)
    dt = _mean_dtype(_dt(a), dtype)
    a = _astype(a, dt)
    in_shape = shape_of(a)
    axes = _axes(axis, len(in_shape))
    s = sum(a, axis=axes, dtype=dt, where=where)
    y = _divide_by_count(s, _count(in_shape, axes, where), dt)
    return _keep(y, in_shape, axes, keepdims)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
        mean=None, correction=None):
    _no_out(out, 'var')
    if correction is not None:
        ddof = correction
    a = _arr(a)
    dt = _mean_dtype(_dt(a), dtype)
    a = _astype(a, dt)
    in_shape = shape_of(a)
    axes = _axes(axis, len(in_shape))
    m = _mean_fn(a, axis=axes, dtype=dt, keepdims=True, where=where) if mean is None else mean
    c = subtract(a, m)
    ss = sum(multiply(c, c), axis=axes, dtype=dt, where=where)
    n = _count(in_shape, axes, where)
    if type(n) is int:
        y = _astype(divide(ss, float(builtins.max(n - ddof, 0))), dt)
    else:
        y = _astype(divide(ss, maximum(subtract(_astype(n, dt), ddof), 0)), dt)
    return _keep(y, in_shape, axes, keepdims)


_mean_fn = mean


def _root_of_squares(s):
    """sqrt of a sum of squares, taking the subgradient 0 where it is 0 (sqrt's
    infinite slope there would otherwise turn the zero inner derivative into NaN)."""
    dt = _dt(s)
    is0 = logical.eq(s, dt.type(0))
    root = unary.sqrt(logical.select_n(is0, s, dt.type(1)))
    return logical.select_n(is0, root, dt.type(0))


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None,
        mean=None, correction=None):
    _no_out(out, 'std')
    return _root_of_squares(var(a, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims, where=where,
                    mean=mean, correction=correction))


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    a = _arr(a)
    if weights is None:
        avg = mean(a, axis=axis, keepdims=keepdims)
        if returned:
            in_shape = shape_of(a)
            n = _count(in_shape, _axes(axis, len(in_shape)), None)
            return avg, full_like(avg, n)
        return avg
    w = _arr(weights)
    in_shape = shape_of(a)
    if shape_of(w) != in_shape:
        if axis is None:
            raise TypeError("Axis must be specified when shapes of a and weights differ.")
        if _nd(w) != 1:
            raise TypeError("1D weights expected when shapes of a and weights differ.")
        ax = _axis(axis, len(in_shape))
        if shape_of(w)[0] != in_shape[ax]:
            raise ValueError("Length of weights not compatible with specified axis.")
        w = shape_ops.broadcast_in_dim(w, in_shape, (ax,))
    a, w = promote(a, w)
    if _dt(a).kind not in 'fc':
        a, w = _astype(a, float64), _astype(w, float64)
    scl = sum(w, axis=axis, keepdims=keepdims)
    avg = divide(sum(multiply(a, w), axis=axis, keepdims=keepdims), scl)
    if returned:
        return avg, broadcast_to(scl, shape_of(avg))
    return avg


def _argminmax(red, name):
    def f(a, axis=None, out=None, *, keepdims=False):
        _no_out(out, name)
        a = _arr(a)
        in_shape = shape_of(a)
        if axis is None:
            if size(a) == 0:
                raise ValueError(f"attempt to get {name} of an empty sequence")
            y = red(shape_ops.reshape(a, (size(a),)), 0)
            if keepdims:
                y = shape_ops.reshape(y, (1,) * len(in_shape))
            return y
        ax = _axis(axis, len(in_shape))
        y = red(a, ax)
        return _keep(y, in_shape, (ax,), keepdims)
    f.__name__ = name
    f.__qualname__ = name
    return f


argmax = _argminmax(reductions.argmax, 'argmax')
argmin = _argminmax(reductions.argmin, 'argmin')


def cumsum(a, axis=None, dtype=None, out=None):
    _no_out(out, 'cumsum')
    a = _arr(a)
    if axis is None:
        a = ravel(a)
        axis = 0
    dt = _np.dtype(dtype) if dtype is not None else _sum_dtype(_dt(a))
    a = _astype(a, dt)
    return reductions.cumsum(a, _axis(axis, _nd(a)))


def _cumulative_sum(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    x = _arr(x)
    if axis is None:
        if _nd(x) > 1:
            raise ValueError("axis must be specified for arrays with more than one dimension")
        axis = 0
    y = cumsum(x, axis=axis, dtype=dtype, out=out)
    if include_initial:
        ax = _axis(axis, _nd(y))
        cfg = [(0, 0, 0)] * _nd(y)
        cfg[ax] = (1, 0, 0)
        y = shape_ops.pad(y, _dt(y).type(0), cfg)
    return y


cumulative_sum = _cumulative_sum
cumulative_sum.__name__ = cumulative_sum.__qualname__ = 'cumulative_sum'


def ptp(a, axis=None, out=None, keepdims=False):
    _no_out(out, 'ptp')
    return subtract(max(a, axis=axis, keepdims=keepdims), min(a, axis=axis, keepdims=keepdims))


def count_nonzero(a, axis=None, *, keepdims=False):
    return sum(_to_bool(_arr(a)), axis=axis, keepdims=keepdims)


def _nan_to(a, fill):
    a = _arr(a)
    if _dt(a).kind not in 'fc':
        return a
    return where(isnan(a), fill, a)


def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return sum(_nan_to(a, 0), axis=axis, dtype=dtype, out=out, keepdims=keepdims,
               initial=initial, where=where)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    a = _arr(a)
    if _dt(a).kind not in 'fc':
        return mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    ok = logical_not(isnan(a))
    if where is not None and where is not True:
        ok = logical_and(ok, where)
    return mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=ok)


def nanmax(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return max(_nan_to(a, -_np.inf), axis=axis, out=out, keepdims=keepdims, initial=initial,
               where=where)


def nanmin(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return min(_nan_to(a, _np.inf), axis=axis, out=out, keepdims=keepdims, initial=initial,
               where=where)


# --- shape manipulation -----------------------------------------------------------------------

def _norm_shape(newshape, total):
    if isinstance(newshape, (int, _np.integer)) or (isinstance(newshape, Tracer)
                                                    and not newshape.shape):
        newshape = (operator.index(newshape),)
    newshape = [operator.index(s) for s in newshape]
    unknown = [i for i, s in enumerate(newshape) if s == -1]
    if len(unknown) > 1:
        raise ValueError("can only specify one unknown dimension")
    if builtins.any(s < -1 for s in newshape):
        raise ValueError(f"negative dimensions not allowed in shape {tuple(newshape)}")
    if unknown:
        known = 1
        for s in newshape:
            if s != -1:
                known *= s
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape array of size {total} into shape "
                             f"{tuple(newshape)}")
        newshape[unknown[0]] = total // known
    n = 1
    for s in newshape:
        n *= s
    if n != total:
        raise ValueError(f"cannot reshape array of size {total} into shape {tuple(newshape)}")
    return tuple(newshape)


def reshape(a, /, shape=None, order='C', *, newshape=None, copy=None):
    if shape is None:
        shape = newshape
    if shape is None:
        raise TypeError("reshape() missing the required argument 'shape'")
    a = _arr(a)
    new = _norm_shape(shape, size(a))
    if order == 'C':
        return shape_ops.reshape(a, new)
    if order == 'F':
        rev_in = shape_ops.transpose(a, tuple(range(_nd(a)))[::-1])
        out = shape_ops.reshape(rev_in, new[::-1])
        return shape_ops.transpose(out, tuple(range(len(new)))[::-1])
    raise ValueError(f"reshape: order must be 'C' or 'F', got {order!r}")


def ravel(a, order='C'):
    return reshape(a, (-1,), order=order)


def transpose(a, axes=None):
    a = _arr(a)
    nd = _nd(a)
    if axes is None:
        perm = tuple(range(nd))[::-1]
    else:
        perm = tuple(_axis(ax, nd) for ax in axes)
        if sorted(perm) != list(range(nd)):
            raise ValueError("axes don't match array")
    return shape_ops.transpose(a, perm)


permute_dims = transpose


def matrix_transpose(x, /):
    if _nd(x) < 2:
        raise ValueError("matrix_transpose needs an array of at least 2 dimensions")
    return swapaxes(x, -1, -2)


def swapaxes(a, axis1, axis2):
    a = _arr(a)
    nd = _nd(a)
    i, j = _axis(axis1, nd), _axis(axis2, nd)
    perm = list(range(nd))
    perm[i], perm[j] = perm[j], perm[i]
    return shape_ops.transpose(a, tuple(perm))


def moveaxis(a, source, destination):
    a = _arr(a)
    nd = _nd(a)
    src = [source] if isinstance(source, (int, _np.integer)) else list(source)
    dst = [destination] if isinstance(destination, (int, _np.integer)) else list(destination)
    src = [_axis(s, nd) for s in src]
    dst = [_axis(d, nd) for d in dst]
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number "
                         "of elements")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return shape_ops.transpose(a, tuple(order))


def rollaxis(a, axis, start=0):
    a = _arr(a)
    nd = _nd(a)
    axis = _axis(axis, nd)
    if start < 0:
        start += nd
    if not 0 <= start <= nd:
        raise _np.exceptions.AxisError(f"start={start} out of range")
    if axis < start:
        start -= 1
    return moveaxis(a, axis, start) if axis != start else a


def squeeze(a, axis=None):
    a = _arr(a)
    s = shape_of(a)
    if axis is None:
        dims = tuple(i for i, d in enumerate(s) if d == 1)
    else:
        dims = _axes(axis, len(s))
        for d in dims:
            if s[d] != 1:
                raise ValueError("cannot select an axis to squeeze out which has size not "
                                 "equal to one")
    return shape_ops.squeeze(a, dims)


def expand_dims(a, axis):
    a = _arr(a)
    axes = (axis,) if isinstance(axis, (int, _np.integer)) else tuple(axis)
    nd = _nd(a) + len(axes)
    norm = [_axis(ax, nd) for ax in axes]
    if len(set(norm)) != len(norm):
        raise ValueError("repeated axis")
    return shape_ops.expand_dims(a, tuple(norm))


def _common(arrays, dtype=None):
    arrays = [_arr_or_scalar(x) for x in arrays]
    dt = _np.dtype(dtype) if dtype is not None else result_type(*arrays)
    return [_arr(_astype(x, dt)) if type(x) in _PY else _astype(_arr(x), dt) for x in arrays]


def concatenate(arrays, /, axis=0, out=None, *, dtype=None, casting='same_kind'):
    _no_out(out, 'concatenate')
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    arrays = _common(arrays, dtype)
    if axis is None:
        arrays = [ravel(x) for x in arrays]
        axis = 0
    nd = _nd(arrays[0])
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    ax = _axis(axis, nd)
    for i, x in enumerate(arrays):
        s = shape_of(x)
        if len(s) != nd:
            raise ValueError(f"all the input array dimensions except for the concatenation "
                             f"axis must match exactly, but array 0 has {nd} dimension(s) and "
                             f"the array at index {i} has {len(s)} dimension(s)")
        for d in range(nd):
            if d != ax and s[d] != shape_of(arrays[0])[d]:
                raise ValueError(f"all the input array dimensions except for the "
                                 f"concatenation axis must match exactly, but along dimension "
                                 f"{d}, the array at index 0 has size {shape_of(arrays[0])[d]} "
                                 f"and the array at index {i} has size {s[d]}")
    if not builtins.any(_is_traced(x) for x in arrays):
        return _np.concatenate(arrays, axis=ax)
    return shape_ops.concatenate(arrays, ax)


concat = concatenate


def stack(arrays, axis=0, out=None, *, dtype=None, casting='same_kind'):
    _no_out(out, 'stack')
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    arrays = _common(arrays, dtype)
    s0 = shape_of(arrays[0])
    if builtins.any(shape_of(x) != s0 for x in arrays):
        raise ValueError("all input arrays must have the same shape")
    ax = _axis(axis, len(s0) + 1)
    return concatenate([shape_ops.expand_dims(x, (ax,)) for x in arrays], axis=ax)


def atleast_1d(*arys):
    res = [reshape(_arr(a), (1,)) if _nd(a) == 0 else _arr(a) for a in arys]
    return res[0] if len(res) == 1 else tuple(res)


def atleast_2d(*arys):
    res = []
    for a in arys:
        a = _arr(a)
        n = _nd(a)
        res.append(reshape(a, (1,) * (2 - n) + tuple(shape_of(a))) if n < 2 else a)
    return res[0] if len(res) == 1 else tuple(res)


def atleast_3d(*arys):
    res = []
    for a in arys:
        a = _arr(a)
        s = tuple(shape_of(a))
        if len(s) == 0:
            a = reshape(a, (1, 1, 1))
        elif len(s) == 1:
            a = reshape(a, (1,) + s + (1,))
        elif len(s) == 2:
            a = reshape(a, s + (1,))
        res.append(a)
    return res[0] if len(res) == 1 else tuple(res)


def _seq(tup):
    if isinstance(tup, (Tracer, _np.ndarray)):
        return [tup[i] for i in range(shape_of(tup)[0])]
    return list(tup)


def hstack(tup, *, dtype=None, casting='same_kind'):
    arrs = [atleast_1d(a) for a in _seq(tup)]
    if arrs and _nd(arrs[0]) == 1:
        return concatenate(arrs, axis=0, dtype=dtype)
    return concatenate(arrs, axis=1, dtype=dtype)


def vstack(tup, *, dtype=None, casting='same_kind'):
    return concatenate([atleast_2d(a) for a in _seq(tup)], axis=0, dtype=dtype)


row_stack = vstack


def dstack(tup):
    return concatenate([atleast_3d(a) for a in _seq(tup)], axis=2)


def column_stack(tup):
    arrs = []
    for a in _seq(tup):
        a = _arr(a)
        if _nd(a) < 2:
            a = reshape(a, (-1, 1))
        arrs.append(a)
    return concatenate(arrs, axis=1)


def _split_points(n, indices_or_sections, equal):
    if isinstance(indices_or_sections, (int, _np.integer)):
        k = int(indices_or_sections)
        if k <= 0:
            raise ValueError("number sections must be larger than 0.")
        if equal and n % k:
            raise ValueError("array split does not result in an equal division")
        q, r = builtins.divmod(n, k)
        sizes = [q + 1] * r + [q] * (k - r)
        pts, acc = [], 0
        for sz in sizes[:-1]:
            acc += sz
            pts.append(acc)
        return pts
    return [operator.index(i) for i in indices_or_sections]


def _split(ary, indices_or_sections, axis, equal):
    ary = _arr(ary)
    s = shape_of(ary)
    ax = _axis(axis, len(s))
    n = s[ax]
    pts = _split_points(n, indices_or_sections, equal)
    bounds = [0] + pts + [n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        lo = builtins.min(builtins.max(lo if lo >= 0 else lo + n, 0), n)
        hi = builtins.min(builtins.max(hi if hi >= 0 else hi + n, 0), n)
        hi = builtins.max(hi, lo)
        start = [0] * len(s)
        limit = list(s)
        start[ax], limit[ax] = lo, hi
        out.append(slicing.slice(ary, start, limit))
    return out


def split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, True)


def array_split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, False)


def hsplit(ary, indices_or_sections):
    return split(ary, indices_or_sections, axis=1 if _nd(ary) > 1 else 0)


def vsplit(ary, indices_or_sections):
    return split(ary, indices_or_sections, axis=0)


def append(arr, values, axis=None):
    if axis is None:
        return concatenate([ravel(arr), ravel(values)], axis=0)
    return concatenate([arr, values], axis=axis)


def delete(arr, obj, axis=None):
    """arr without the entries `obj` (concrete indices, a slice or a boolean mask)."""
    arr = _arr(arr)
    if axis is None:
        arr = ravel(arr)
        axis = 0
    ax = _axis(axis, _nd(arr))
    if isinstance(obj, Tracer):
        obj = obj._concrete()            # the output shape depends on it
    keep = _np.delete(_np.arange(shape_of(arr)[ax]), obj)
    return take(arr, keep, axis=ax)


def diff(a, n=1, axis=-1, prepend=None, append=None):
    a = _arr(a)
    ax = _axis(axis, _nd(a))
    parts = []
    for extra in (prepend, a, append):
        if extra is None:
            continue
        if extra is a:
            parts.append(a)
            continue
        e_ = _arr(extra)
        if _nd(e_) == 0:
            s = list(shape_of(a))
            s[ax] = 1
            e_ = broadcast_to(e_, tuple(s))
        parts.append(e_)
    if len(parts) > 1:
        a = concatenate(parts, axis=ax)
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n}")
    for _ in range(n):
        m = shape_of(a)[ax]
        hi = _split(a, [1], ax, False)[1]
        lo = _split(a, [builtins.max(m - 1, 0)], ax, False)[0]
        a = not_equal(hi, lo) if _dt(a) == _BOOL else subtract(hi, lo)
    return a


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors (or the z component for 2-vectors), as numpy.cross."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = _prep2(a, b)
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    na, nb = shape_of(a)[-1], shape_of(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    from .indexing import getitem
    comp = lambda x, i: getitem(x, (Ellipsis, i))          # noqa: E731
    a0, a1, b0, b1 = comp(a, 0), comp(a, 1), comp(b, 0), comp(b, 1)
    if na == 2 and nb == 2:
        return subtract(multiply(a0, b1), multiply(a1, b0))
    a2 = comp(a, 2) if na == 3 else _dt(a).type(0)
    b2 = comp(b, 2) if nb == 3 else _dt(b).type(0)
    c = stack(broadcast_arrays(subtract(multiply(a1, b2), multiply(a2, b1)),
                               subtract(multiply(a2, b0), multiply(a0, b2)),
                               subtract(multiply(a0, b1), multiply(a1, b0))), axis=-1)
    return moveaxis(c, -1, axisc)


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = _arr(x)
    dt = _dt(x)
    if dt.kind not in 'fc':
        return x
    info = _np.finfo(dt)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    x = where(isnan(x), dt.type(nan), x)
    x = where(logical.eq(x, dt.type(_np.inf)), dt.type(posinf), x)
    return where(logical.eq(x, dt.type(-_np.inf)), dt.type(neginf), x)


def broadcast_to(array, shape, subok=False):
    array = _arr_or_scalar(array)
    shape = (operator.index(shape),) if isinstance(shape, (int, _np.integer)) else \
        tuple(operator.index(s) for s in shape)
    s = tuple(shape_of(array))
    try:
        ok = _np.broadcast_shapes(s, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"operands could not be broadcast together with remapped shapes "
                         f"[original->remapped]: {s} and requested shape {shape}")
    if type(array) in _PY:
        array = asarray(array)
    return shape_ops.broadcast_to(array, shape)


def broadcast_shapes(*shapes):
    return _np.broadcast_shapes(*shapes)


def broadcast_arrays(*args, subok=False):
    args = [_arr(a) for a in args]
    s = _np.broadcast_shapes(*[shape_of(a) for a in args])
    return tuple(broadcast_to(a, s) for a in args)


def flip(m, axis=None):
    m = _arr(m)
    nd = _nd(m)
    axes = tuple(range(nd)) if axis is None else _axes(axis, nd)
    return shape_ops.rev(m, axes)


def fliplr(m):
    if _nd(m) < 2:
        raise ValueError("Input must be >= 2-d.")
    return flip(m, 1)


def flipud(m):
    if _nd(m) < 1:
        raise ValueError("Input must be >= 1-d.")
    return flip(m, 0)


def roll(a, shift, axis=None):
    a = _arr(a)
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), shape_of(a))
    shifts = (shift,) if isinstance(shift, (int, _np.integer)) else tuple(shift)
    axes = (axis,) if isinstance(axis, (int, _np.integer)) else tuple(axis)
    if len(shifts) == 1 and len(axes) > 1:
        shifts = shifts * len(axes)
    if len(axes) == 1 and len(shifts) > 1:
        axes = axes * len(shifts)
    if len(shifts) != len(axes):
        raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
    total = {}
    for sh, ax in zip(shifts, axes):
        ax = _axis(ax, _nd(a))
        total[ax] = total.get(ax, 0) + operator.index(sh)
    s = shape_of(a)
    for ax, sh in total.items():
        n = s[ax]
        if n == 0:
            continue
        k = sh % n
        if k == 0:
            continue
        first, second = _split(a, [n - k], ax, False)
        a = concatenate([second, first], axis=ax)
    return a


def tile(A, reps):
    A = _arr(A)
    reps = (operator.index(reps),) if isinstance(reps, (int, _np.integer)) else \
        tuple(operator.index(r) for r in reps)
    s = tuple(shape_of(A))
    nd = builtins.max(len(s), len(reps))
    s = (1,) * (nd - len(s)) + s
    reps = (1,) * (nd - len(reps)) + reps
    A = shape_ops.reshape(A, s)
    inter = []
    dims = []
    for i, (r, d) in enumerate(zip(reps, s)):
        inter += [r, d]
        dims.append(2 * i + 1)
    b = shape_ops.broadcast_in_dim(A, tuple(inter), tuple(dims))
    return shape_ops.reshape(b, tuple(r * d for r, d in zip(reps, s)))


def repeat(a, repeats, axis=None):
    a = _arr(a)
    if axis is None:
        a = ravel(a)
        axis = 0
    s = tuple(shape_of(a))
    ax = _axis(axis, len(s))
    if isinstance(repeats, Tracer):
        repeats = repeats._concrete()   # the output shape depends on it
    reps = _np.asarray(repeats)
    if reps.ndim == 0:
        r = int(reps)
        if r < 0:
            raise ValueError("negative dimensions are not allowed")
        b = shape_ops.broadcast_in_dim(a, s[:ax + 1] + (r,) + s[ax + 1:],
                                       tuple(range(ax + 1)) + tuple(range(ax + 2, len(s) + 1)))
        return shape_ops.reshape(b, s[:ax] + (s[ax] * r,) + s[ax + 1:])
    if reps.shape != (s[ax],):
        raise ValueError(f"operands could not be broadcast together with shape {(s[ax],)} "
                         f"{reps.shape}")
    return take(a, _np.repeat(_np.arange(s[ax]), reps), axis=ax)


def _pad_width(pad_width, nd):
    pw = _np.asarray(pad_width)
    if pw.dtype.kind not in 'iu':
        raise TypeError("`pad_width` must be of integral type.")
    return [tuple(int(v) for v in row) for row in _np.broadcast_to(pw, (nd, 2))]


def pad(array, pad_width, mode='constant', **kwargs):
    """Pad with a constant (mode='constant', constant_values=...) or by index
    (modes 'edge', 'reflect', 'symmetric', 'wrap')."""
    array = _arr(array)
    nd = _nd(array)
    pw = _pad_width(pad_width, nd)
    if builtins.any(lo < 0 or hi < 0 for lo, hi in pw):
        raise ValueError("index can't contain negative values")
    if mode in ('constant', 'empty'):     # 'empty' leaves the values undefined: zeros
        cv = kwargs.pop('constant_values', 0) if mode == 'constant' else 0
        if kwargs:
            raise TypeError(f"pad: unsupported keyword arguments {sorted(kwargs)}")
        cvs = _np.asarray(cv) if not isinstance(cv, Tracer) else cv
        if isinstance(cvs, Tracer) or cvs.ndim == 0:
            v = _astype(cv if not isinstance(cv, _np.ndarray) else cv[()], _dt(array))
            return shape_ops.pad(array, v, tuple((lo, hi, 0) for lo, hi in pw))
        # per-axis (before, after) values: pad one axis at a time
        vals = _np.broadcast_to(cvs, (nd, 2))
        for d, (lo, hi) in enumerate(pw):
            for side, amount in ((0, lo), (1, hi)):
                if amount:
                    cfg = [(0, 0, 0)] * nd
                    cfg[d] = (amount, 0, 0) if side == 0 else (0, amount, 0)
                    array = shape_ops.pad(array, _dt(array).type(vals[d, side]), cfg)
        return array
    if mode in ('edge', 'reflect', 'symmetric', 'wrap'):
        if kwargs.get('reflect_type', 'even') != 'even':
            raise ValueError("pad: only reflect_type='even' is supported")
        for d, (lo, hi) in enumerate(pw):
            if lo or hi:
                n = shape_of(array)[d]
                if n == 0:
                    raise ValueError(f"can't extend empty axis {d} using modes other than "
                                     f"'constant' or 'empty'")
                src = _np.pad(_np.arange(n), (lo, hi), mode=mode)
                array = take(array, src, axis=d)
        return array
    raise ValueError(f"pad: mode {mode!r} is not supported when tracing; use 'constant', "
                     f"'edge', 'reflect', 'symmetric' or 'wrap'")


def take(a, indices, axis=None, out=None, mode=None):
    """a's elements at `indices` along `axis` (None: of the flattened a). mode 'wrap'
    wraps indices around, 'clip' clamps them; the default raises on bad concrete
    indices (traced ones are normalised like x[i])."""
    _no_out(out, 'take')
    from .indexing import getitem
    a = _arr(a)
    if axis is None:
        a = ravel(a)
        axis = 0
    ax = _axis(axis, _nd(a))
    n = shape_of(a)[ax]
    if mode in ('wrap', 'clip'):
        idx = indices if isinstance(indices, Tracer) else _np.asarray(indices)
        if mode == 'wrap':
            idx = remainder(idx, n)
        else:
            idx = clip(idx, 0, builtins.max(n - 1, 0))
        indices = idx
    elif mode not in (None, 'raise', 'fill', 'promise_in_bounds'):
        raise ValueError(f"take: mode must be 'raise', 'wrap' or 'clip', got {mode!r}")
    return getitem(a, (slice(None),) * ax + (indices,))


def take_along_axis(arr, indices, axis):
    arr = _arr(arr)
    if axis is None:
        return take(ravel(arr), indices)
    nd = _nd(arr)
    ax = _axis(axis, nd)
    if _nd(indices) != nd:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    from .indexing import getitem
    idx = []
    ishape = shape_of(indices)
    for d in range(nd):
        if d == ax:
            idx.append(indices)
        else:
            sh = [1] * nd
            sh[d] = shape_of(arr)[d]
            idx.append(_np.arange(sh[d]).reshape(sh))
    return getitem(arr, tuple(idx))


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal of axes (axis1, axis2), moved to the end (a gather)."""
    a = _arr(a)
    nd = _nd(a)
    if nd < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    i, j = _axis(axis1, nd), _axis(axis2, nd)
    if i == j:
        raise ValueError("axis1 and axis2 cannot be the same")
    s = shape_of(a)
    r0 = builtins.max(0, -offset)
    c0 = builtins.max(0, offset)
    k = builtins.max(0, builtins.min(s[i] - r0, s[j] - c0))
    idx = _np.stack([_np.arange(k) + r0, _np.arange(k) + c0], axis=-1)
    out = slicing.gather(a, idx, (i, j))        # (k, rest...)
    return moveaxis(out, 0, -1)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _no_out(out, 'trace')
    return sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def diag(v, k=0):
    v = _arr(v)
    if _nd(v) == 2:
        return diagonal(v, k)
    if _nd(v) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = shape_of(v)[0] + builtins.abs(k)
    padded = shape_ops.pad(v, _dt(v).type(0), ((0, builtins.abs(k), 0),))
    mask = _np.eye(n, k=k, dtype=bool)
    if k >= 0:
        full_ = shape_ops.broadcast_in_dim(padded, (n, n), (0,))
    else:
        full_ = shape_ops.broadcast_in_dim(padded, (n, n), (1,))
    return where(mask, full_, _dt(v).type(0))


def tril(m, k=0):
    m = _arr(m)
    s = shape_of(m)
    mask = _np.tri(s[-2], s[-1], k=k, dtype=bool)
    return where(mask, m, _dt(m).type(0))


def triu(m, k=0):
    m = _arr(m)
    s = shape_of(m)
    mask = _np.tri(s[-2], s[-1], k=k - 1, dtype=bool)
    return where(mask, _dt(m).type(0), m)


def meshgrid(*xi, copy=True, sparse=False, indexing='xy'):
    if indexing not in ('xy', 'ij'):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    xs = [ravel(_arr(x)) for x in xi]
    nd = len(xs)
    shapes = [shape_of(x)[0] for x in xs]
    out = []
    for i, x in enumerate(xs):
        pos = i
        if indexing == 'xy' and nd > 1 and i < 2:
            pos = 1 - i
        s = [1] * nd
        s[pos] = shapes[i]
        out.append(reshape(x, tuple(s)))
    if sparse:
        return tuple(out)
    full_shape = [1] * nd
    for i, n in enumerate(shapes):
        pos = (1 - i) if (indexing == 'xy' and nd > 1 and i < 2) else i
        full_shape[pos] = n
    return tuple(broadcast_to(o, tuple(full_shape)) for o in out)


# --- creation (constants) ---------------------------------------------------------------------

def _shape_arg(shape):
    if isinstance(shape, (int, _np.integer)) or (isinstance(shape, Tracer) and not shape.shape):
        return (operator.index(shape),)
    return tuple(operator.index(s) for s in shape)


def zeros(shape, dtype=None, order='C', *, device=None, like=None):
    return _np.zeros(_shape_arg(shape), dtype if dtype is not None else float64)


def ones(shape, dtype=None, order='C', *, device=None, like=None):
    return _np.ones(_shape_arg(shape), dtype if dtype is not None else float64)


empty = zeros


def full(shape, fill_value, dtype=None, order='C', *, device=None, like=None):
    shape = _shape_arg(shape)
    if isinstance(fill_value, Tracer):
        v = fill_value if dtype is None else _astype(fill_value, dtype)
        return broadcast_to(v, shape)
    return _np.full(shape, fill_value, dtype)


def _like_shape(a, shape):
    return tuple(shape_of(a)) if shape is None else _shape_arg(shape)


def zeros_like(a, dtype=None, order='K', subok=True, shape=None, *, device=None):
    return _np.zeros(_like_shape(a, shape), dtype if dtype is not None else _dt(a))


def ones_like(a, dtype=None, order='K', subok=True, shape=None, *, device=None):
    return _np.ones(_like_shape(a, shape), dtype if dtype is not None else _dt(a))


empty_like = zeros_like


def full_like(a, fill_value, dtype=None, order='K', subok=True, shape=None, *, device=None):
    dt = _np.dtype(dtype) if dtype is not None else _dt(a)
    s = _like_shape(a, shape)
    if isinstance(fill_value, Tracer):
        return broadcast_to(_astype(fill_value, dt), s)
    return _np.full(s, fill_value, dt)


def _static_number(v, what):
    if isinstance(v, Tracer):
        if v.dtype.kind in 'iub':
            return operator.index(v)
        return float(v)
    return v


def arange(start, stop=None, step=None, dtype=None, *, device=None, like=None):
    """Evenly spaced values (a constant: the bounds must be concrete)."""
    start = _static_number(start, 'start')
    stop = _static_number(stop, 'stop')
    step = _static_number(step, 'step')
    if stop is None and step is None:
        return _np.arange(start, dtype=dtype)
    if step is None:
        return _np.arange(start, stop, dtype=dtype)
    return _np.arange(start, stop, step, dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *,
             device=None):
    """`num` evenly spaced values; start and stop may be traced (and differentiated)."""
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    if not (_is_traced(start) or _is_traced(stop)):
        return _np.linspace(start, stop, num, endpoint=endpoint, retstep=retstep, dtype=dtype,
                            axis=axis)
    start, stop = _arr(start), _arr(stop)
    dt = result_type(start, stop, float(num))
    start, stop = _astype(start, dt), _astype(stop, dt)
    div = (num - 1) if endpoint else num
    bshape = _np.broadcast_shapes(shape_of(start), shape_of(stop))
    start, stop = broadcast_to(start, bshape), broadcast_to(stop, bshape)
    delta = subtract(stop, start)
    steps = _np.arange(num, dtype=dt).reshape((num,) + (1,) * len(bshape))
    if div > 0:
        step = divide(delta, float(div))
        y = add(multiply(steps, step), start)
    else:
        step = multiply(delta, _np.nan)
        y = add(multiply(steps, delta), start)
    if endpoint and num > 1:
        y = concatenate([slicing.slice(y, (0,) * (len(bshape) + 1), (num - 1,) + bshape),
                         expand_dims(stop, 0)], axis=0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        y = _astype(y, dtype)
    return (y, step) if retstep else y


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    if not builtins.any(_is_traced(v) for v in (start, stop, base)):
        return _np.logspace(start, stop, num, endpoint=endpoint, base=base, dtype=dtype,
                            axis=axis)
    y = linspace(start, stop, num, endpoint=endpoint, axis=axis)
    if _is_traced(base) and _nd(base):
        base = expand_dims(base, axis)
    out = power(base, y)
    return out if dtype is None else _astype(out, dtype)


def eye(N, M=None, k=0, dtype=float, order='C', *, device=None, like=None):
    return _np.eye(N, M, k, dtype=dtype)


def identity(n, dtype=None, *, like=None):
    return _np.identity(n, dtype=dtype if dtype is not None else float64)


def tri(N, M=None, k=0, dtype=float, *, like=None):
    return _np.tri(N, M, k, dtype=dtype)


# --- linear algebra ---------------------------------------------------------------------------

_dot_bind = _dotmod.dot_general_p.bind


def _dot_general(a, b, contract, batch=((), ())):
    return _dotmod.dot_general(a, b, (contract, batch))


def _prep2(a, b):
    a, b = promote(_arr_or_scalar(a), _arr_or_scalar(b))
    return _arr(a), _arr(b)


def dot(a, b, out=None):
    _no_out(out, 'dot')
    if _nd(a) == 0 or _nd(b) == 0:
        return multiply(a, b)
    a, b = _prep2(a, b)
    na, nb = _nd(a), _nd(b)
    sb = shape_of(b)
    kb = 0 if nb == 1 else nb - 2
    if shape_of(a)[-1] != sb[kb]:
        raise ValueError(f"shapes {shape_of(a)} and {sb} not aligned: {shape_of(a)[-1]} "
                         f"(dim {na - 1}) != {sb[kb]} (dim {kb})")
    return _dot_general(a, b, ((na - 1,), (kb,)))


def vdot(a, b, /):
    a, b = _prep2(a, b)
    a, b = ravel(a), ravel(b)          # real dtypes only: conj is the identity
    if shape_of(a) != shape_of(b):
        raise ValueError("cannot reshape array: vdot needs operands of equal size")
    return _dot_general(a, b, ((0,), (0,)))


def inner(a, b, /):
    if _nd(a) == 0 or _nd(b) == 0:
        return multiply(a, b)
    a, b = _prep2(a, b)
    na, nb = _nd(a), _nd(b)
    if shape_of(a)[-1] != shape_of(b)[-1]:
        raise ValueError(f"shapes {shape_of(a)} and {shape_of(b)} not aligned: "
                         f"{shape_of(a)[-1]} (dim {na - 1}) != {shape_of(b)[-1]} (dim {nb - 1})")
    return _dot_general(a, b, ((na - 1,), (nb - 1,)))


def outer(a, b, out=None):
    _no_out(out, 'outer')
    a, b = _prep2(a, b)
    a, b = ravel(a), ravel(b)
    return multiply(shape_ops.expand_dims(a, (1,)), shape_ops.expand_dims(b, (0,)))


_VECMAT_DN = _dotmod._DN_LHS_T    # vector @ matrix: the first axes contracted


def matmul(x1, x2, /, out=None, *, dtype=None):
    """Matrix product with NumPy's rules: 1-D operands are promoted to matrices (the
    added dimension is removed again), leading batch dimensions broadcast."""
    if out is None and dtype is None:
        # the common cases, a matrix times a matrix or vector, or a vector times a
        # matrix, of one (not weak) dtype: the general path's one dot_general,
        # without its promotion and checks
        t1, t2 = type(x1), type(x2)
        if (t1 is _np.ndarray or (isinstance(x1, Tracer) and not x1.weak_type)) and \
                (t2 is _np.ndarray or (isinstance(x2, Tracer) and not x2.weak_type)):
            s1, s2 = x1.shape, x2.shape
            n1, n2 = len(s1), len(s2)
            if x1.dtype == x2.dtype and s1 and s2 and s1[-1] == s2[0]:
                if n1 == 2 and n2 <= 2:         # matrix @ matrix, matrix @ vector
                    return _dot_bind(x1, x2, dimension_numbers=_dotmod._MATMUL_DN)
                if n1 == 1 and n2 == 2:         # vector @ matrix
                    return _dot_bind(x1, x2, dimension_numbers=_VECMAT_DN)
    _no_out(out, 'matmul')
    a, b = _prep2(x1, x2)
    if dtype is not None:
        a, b = _astype(a, dtype), _astype(b, dtype)
    na, nb = _nd(a), _nd(b)
    if na == 0 or nb == 0:
        raise ValueError(f"matmul: Input operand {0 if na == 0 else 1} does not have enough "
                         f"dimensions (has 0, gufunc core with signature (n?,k),(k,m?)->(n?,m?) "
                         f"requires 1)")
    sa, sb = shape_of(a), shape_of(b)
    ka = sa[-1]
    kb = sb[0] if nb == 1 else sb[-2]
    if ka != kb:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, "
                         f"with gufunc signature (n?,k),(k,m?)->(n?,m?) (size {kb} is "
                         f"different from {ka})")
    if nb == 1:
        return _dot_general(a, b, ((na - 1,), (0,)))
    if na == 1:
        return _dot_general(a, b, ((0,), (nb - 2,)))
    if nb == 2:
        return _dot_general(a, b, ((na - 1,), (0,)))
    if na == 2:
        r = _dot_general(a, b, ((1,), (nb - 2,)))        # (n, batch..., m)
        return moveaxis(r, 0, -2)
    batch = _np.broadcast_shapes(sa[:-2], sb[:-2])
    if sa[:-2] != batch:
        a = shape_ops.broadcast_to(a, batch + sa[-2:])
    if sb[:-2] != batch:
        b = shape_ops.broadcast_to(b, batch + sb[-2:])
    nbatch = len(batch)
    bd = tuple(range(nbatch))
    return _dot_general(a, b, ((nbatch + 1,), (nbatch,)), (bd, bd))


def vecdot(x1, x2, /, *, axis=-1):
    a, b = _prep2(x1, x2)
    return sum(multiply(a, b), axis=axis)     # real dtypes: conj is the identity


def tensordot(a, b, axes=2):
    a, b = _prep2(a, b)
    na, nb = _nd(a), _nd(b)
    if isinstance(axes, (int, _np.integer)):
        n = int(axes)
        if n < 0:
            raise ValueError("tensordot: axes must be non-negative")
        ca, cb = tuple(range(na - n, na)), tuple(range(n))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, (int, _np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, _np.integer)) else list(axes_b)
        if len(axes_a) != len(axes_b):
            raise ValueError("shape-mismatch for sum")
        ca = tuple(_axis(x, na) for x in axes_a)
        cb = tuple(_axis(x, nb) for x in axes_b)
    sa, sb = shape_of(a), shape_of(b)
    for i, j in zip(ca, cb):
        if sa[i] != sb[j]:
            raise ValueError("shape-mismatch for sum")
    return _dot_general(a, b, (ca, cb))


def kron(a, b):
    a, b = _prep2(a, b)
    na, nb = _nd(a), _nd(b)
    nd = builtins.max(na, nb)
    a = reshape(a, (1,) * (nd - na) + tuple(shape_of(a)))
    b = reshape(b, (1,) * (nd - nb) + tuple(shape_of(b)))
    sa, sb = shape_of(a), shape_of(b)
    ea = reshape(a, tuple(x for d in sa for x in (d, 1)))
    eb = reshape(b, tuple(x for d in sb for x in (1, d)))
    return reshape(multiply(ea, eb), tuple(p * q for p, q in zip(sa, sb)))


# einsum ---------------------------------------------------------------------------------------

def _einsum_sublists(args):
    """einsum(op0, sublist0, op1, sublist1, ..., [sublist_out]) -> subscripts, operands."""
    args = list(args)
    letters = _string.ascii_letters

    def conv(sub):
        out = []
        for s in sub:
            if s is Ellipsis:
                out.append('...')
            else:
                out.append(letters[operator.index(s)])
        return ''.join(out)
    ops, terms = [], []
    while len(args) >= 2:
        ops.append(args.pop(0))
        terms.append(conv(args.pop(0)))
    spec = ','.join(terms)
    if args:
        spec += '->' + conv(args[0])
    return spec, ops


def _einsum_diag(x, labels):
    """Take diagonals over repeated labels of one operand."""
    while True:
        rep = next((l for l in labels if labels.count(l) > 1), None)
        if rep is None:
            return x, labels
        p = labels.index(rep)
        q = labels.index(rep, p + 1)
        s = shape_of(x)
        if s[p] != s[q]:
            raise ValueError(f"einsum: dimensions in operand for collapsing index '{rep}' "
                             f"don't match ({s[p]} != {s[q]})")
        mshape = [1] * len(s)
        mshape[p] = mshape[q] = s[p]
        mask = _np.eye(s[p], dtype=bool).reshape(mshape)
        x = reductions.reduce_sum(where(mask, x, _dt(x).type(0)), (q,))
        labels = labels[:q] + labels[q + 1:]


def _einsum_sum_out(x, labels, keep):
    axes = tuple(i for i, l in enumerate(labels) if l not in keep)
    if not axes:
        return x, labels
    return reductions.reduce_sum(x, axes), [l for l in labels if l in keep]


def _einsum_pair(a, la, b, lb, keep):
    a, la = _einsum_sum_out(a, la, set(lb) | keep)
    b, lb = _einsum_sum_out(b, lb, set(la) | keep)
    shared = [l for l in la if l in lb]
    sa, sb = list(shape_of(a)), list(shape_of(b))
    for l in shared:
        i, j = la.index(l), lb.index(l)
        if sa[i] != sb[j]:
            if sa[i] == 1:
                sa[i] = sb[j]
                a = shape_ops.broadcast_in_dim(a, tuple(sa), tuple(range(len(sa))))
            elif sb[j] == 1:
                sb[j] = sa[i]
                b = shape_ops.broadcast_in_dim(b, tuple(sb), tuple(range(len(sb))))
            else:
                raise ValueError(f"einsum: operands could not be broadcast together: label "
                                 f"'{l}' has sizes {sa[i]} and {sb[j]}")
    batch = [l for l in shared if l in keep]
    contract = [l for l in shared if l not in keep]
    out = _dot_general(a, b, (tuple(la.index(l) for l in contract),
                              tuple(lb.index(l) for l in contract)),
                       (tuple(la.index(l) for l in batch), tuple(lb.index(l) for l in batch)))
    labels = batch + [l for l in la if l not in shared] + [l for l in lb if l not in shared]
    return out, labels


def einsum(subscripts, *operands, out=None, optimize=False, dtype=None, casting='safe',
           precision=None, preferred_element_type=None):
    """Einstein summation (explicit '->' or implicit output, '...' broadcasting),
    lowered to dot_general, reduce_sum and transpose; pairs are contracted greedily,
    smallest intermediate first."""
    _no_out(out, 'einsum')
    if not isinstance(subscripts, str):
        subscripts, operands = _einsum_sublists((subscripts,) + tuple(operands))
    ops = _common(operands, dtype if dtype is not None else preferred_element_type)
    spec = subscripts.replace(' ', '')
    if '->' in spec:
        lhs, out_spec = spec.split('->')
    else:
        lhs, out_spec = spec, None
    terms = lhs.split(',')
    if len(terms) != len(ops):
        raise ValueError(f"einsum: {len(terms)} operand subscripts given for {len(ops)} "
                         f"operands")
    used = set(c for c in spec if c.isalpha())
    for c in spec:
        if not (c.isalpha() or c in ',.->'):
            raise ValueError(f"einsum: invalid subscript {c!r} in {subscripts!r}")
    spare = [c for c in _string.ascii_letters if c not in used]
    parsed, ell_n = [], 0
    for t, o in zip(terms, ops):
        nd = _nd(o)
        if '...' in t:
            pre, _, post = t.partition('...')
            if '.' in pre or '.' in post:
                raise ValueError(f"einsum: invalid ellipsis in {t!r}")
            k = nd - len(pre) - len(post)
            if k < 0:
                raise ValueError(f"einsum: operand has {nd} dimensions, fewer than the "
                                 f"subscripts {t!r}")
            ell_n = builtins.max(ell_n, k)
            parsed.append((pre, k, post))
        else:
            if '.' in t:
                raise ValueError(f"einsum: invalid subscript {t!r}")
            if len(t) != nd:
                raise ValueError(f"einsum: operand has {nd} dimensions but subscripts {t!r} "
                                 f"give {len(t)}")
            parsed.append((t, 0, ''))
    ell = ''.join(spare[:ell_n])
    labels = [list(pre + ell[ell_n - k:] + post) for pre, k, post in parsed]
    if out_spec is None:
        counts = {}
        for lab in labels:
            for l in lab:
                if l not in ell:
                    counts[l] = counts.get(l, 0) + 1
        out_labels = list(ell) + sorted(l for l, c in counts.items() if c == 1)
    else:
        if '...' in out_spec:
            out_spec = out_spec.replace('...', ell)
        elif ell_n and builtins.any(k for _, k, _ in parsed):
            raise ValueError("einsum: output has more dimensions than subscripts given in "
                             "einstein sum, but no '...' ellipsis provided to broadcast the "
                             "extra dimensions.")
        out_labels = list(out_spec)
        if len(set(out_labels)) != len(out_labels):
            raise ValueError(f"einsum: output subscript {out_spec!r} repeats a label")
        every = set(l for lab in labels for l in lab)
        for l in out_labels:
            if l not in every:
                raise ValueError(f"einsum: output subscript '{l}' does not appear in the "
                                 f"inputs")
    items = []
    for o, lab in zip(ops, labels):
        o, lab = _einsum_diag(o, lab)
        items.append([o, lab])
    out_set = set(out_labels)
    for i in range(len(items)):
        others = set(out_set)
        for j, (_, lab) in enumerate(items):
            if j != i:
                others.update(lab)
        items[i][0], items[i][1] = _einsum_sum_out(items[i][0], items[i][1], others)
    while len(items) > 1:
        best = None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                keep = set(out_set)
                for k, (_, lab) in enumerate(items):
                    if k != i and k != j:
                        keep.update(lab)
                sizes = {}
                for o, lab in (items[i], items[j]):
                    for l, n in zip(lab, shape_of(o)):
                        sizes[l] = builtins.max(sizes.get(l, 1), n)
                res = set(items[i][1]) | set(items[j][1])
                cost = 1
                for l in res:
                    if l in keep:
                        cost *= sizes[l]
                if best is None or cost < best[0]:
                    best = (cost, i, j, keep)
        _, i, j, keep = best
        (a, la), (b, lb) = items[i], items[j]
        r, lr = _einsum_pair(a, la, b, lb, keep)
        items = [it for k, it in enumerate(items) if k not in (i, j)] + [[r, lr]]
    x, lab = items[0]
    x, lab = _einsum_sum_out(x, lab, out_set)
    return shape_ops.transpose(x, tuple(lab.index(l) for l in out_labels))


# --- linalg ----------------------------------------------------------------------------------------

class _Linalg:
    """pnp.linalg: the traced subset of numpy.linalg (norms and products)."""

    @staticmethod
    def norm(x, ord=None, axis=None, keepdims=False):
        x = _arr(x)
        if _dt(x).kind not in 'fc':
            x = _astype(x, float64)
        nd = _nd(x)
        if axis is None:
            if ord is None or (ord in ('f', 'fro') and nd == 2):
                y = _root_of_squares(sum(multiply(x, x)))
                return reshape(y, (1,) * nd) if keepdims else y
            if nd == 1:
                return _Linalg.vector_norm(x, ord=ord, keepdims=keepdims)
            if nd == 2:
                return _Linalg.matrix_norm(x, ord=ord, keepdims=keepdims)
            raise ValueError("Improper number of dimensions to norm.")
        if isinstance(axis, (int, _np.integer)) or len(axis) == 1:
            if isinstance(ord, str):
                raise ValueError(f"Invalid norm order '{ord}' for vectors")
            return _Linalg.vector_norm(x, ord=2 if ord is None else ord, axis=axis,
                                       keepdims=keepdims)
        if len(axis) == 2:
            return _Linalg.matrix_norm(x, ord='fro' if ord is None else ord, axis=tuple(axis),
                                       keepdims=keepdims)
        raise ValueError("Improper number of dimensions to norm.")

    @staticmethod
    def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
        x = _arr(x)
        if _dt(x).kind not in 'fc':
            x = _astype(x, float64)
        a = abs(x)
        if ord == _np.inf:
            return max(a, axis=axis, keepdims=keepdims)
        if ord == -_np.inf:
            return min(a, axis=axis, keepdims=keepdims)
        if ord == 0:
            return _astype(sum(not_equal(x, 0), axis=axis, keepdims=keepdims), _dt(x))
        if ord == 1:
            return sum(a, axis=axis, keepdims=keepdims)
        if ord is None or ord == 2:
            return _root_of_squares(sum(multiply(x, x), axis=axis, keepdims=keepdims))
        p = float(ord)
        return power(sum(power(a, p), axis=axis, keepdims=keepdims), 1.0 / p)

    @staticmethod
    def matrix_norm(x, /, *, keepdims=False, ord='fro', axis=(-2, -1)):
        x = _arr(x)
        if _dt(x).kind not in 'fc':
            x = _astype(x, float64)
        nd = _nd(x)
        r, c = _axis(axis[0], nd), _axis(axis[1], nd)
        if r == c:
            raise ValueError("Duplicate axes given.")
        if ord in ('fro', 'f', None):
            return _root_of_squares(sum(multiply(x, x), axis=(r, c), keepdims=keepdims))
        a = abs(x)
        if ord in (1, -1):
            col = sum(a, axis=r, keepdims=True)
            red = max if ord == 1 else min
            y = red(col, axis=c, keepdims=True)
        elif ord in (_np.inf, -_np.inf):
            row = sum(a, axis=c, keepdims=True)
            red = max if ord == _np.inf else min
            y = red(row, axis=r, keepdims=True)
        else:
            raise ValueError(f"pnp.linalg.norm: matrix norm ord={ord!r} needs a singular value "
                             f"decomposition, which cotangent has no primitive for; "
                             f"supported: 'fro', 1, -1, inf, -inf")
        return y if keepdims else squeeze(y, (r, c))

    matmul = staticmethod(lambda x1, x2, /: matmul(x1, x2))
    outer = staticmethod(lambda x1, x2, /: outer(x1, x2))
    vecdot = staticmethod(lambda x1, x2, /, *, axis=-1: vecdot(x1, x2, axis=axis))
    tensordot = staticmethod(lambda x1, x2, /, *, axes=2: tensordot(x1, x2, axes))
    matrix_transpose = staticmethod(lambda x, /: matrix_transpose(x))
    diagonal = staticmethod(lambda x, /, *, offset=0: diagonal(x, offset, -2, -1))
    trace = staticmethod(lambda x, /, *, offset=0, dtype=None: trace(x, offset, -2, -1, dtype))

    def __repr__(self):
        return "<primitives.numpy.linalg>"


linalg = _Linalg()
_LINALG_NAMES = ('norm', 'vector_norm', 'matrix_norm', 'matmul', 'outer', 'vecdot',
                 'tensordot', 'matrix_transpose', 'diagonal', 'trace')


# --- operators on tracers ----------------------------------------------------------------------

def _bitwise_op(prim, pyname):
    bind = prim.bind

    def f(x, y):
        x, y = promote(x, y)
        dt = _dt(x)
        if dt.kind not in 'iub':
            raise TypeError(f"unsupported operand dtype {dt.name} for {pyname}: bitwise "
                            f"operations need integer or boolean arrays (NumPy's rule)")
        return bind(x, y)
    return f


_and_op = _bitwise_op(logical.and_p, '&')
_or_op = _bitwise_op(logical.or_p, '|')
_xor_op = _bitwise_op(logical.xor_p, '^')


# --- NumPy dispatch: __array_ufunc__ ------------------------------------------------------------

_UFUNC_ALIASES = {'absolute': 'abs', 'conjugate': 'conj', 'true_divide': 'divide'}
_REDUCE = {'add': 'sum', 'multiply': 'prod', 'maximum': 'max', 'minimum': 'min',
           'logical_and': 'all', 'logical_or': 'any', 'fmax': 'nanmax', 'fmin': 'nanmin'}
_UNSUPPORTED_HINT = {
    'nonzero': "its output shape depends on the data; use pnp.where(cond, x, y) instead",
    'argwhere': "its output shape depends on the data; use pnp.where(cond, x, y) instead",
    'flatnonzero': "its output shape depends on the data; use pnp.where(cond, x, y) instead",
    'unique': "its output shape depends on the data",
    'extract': "its output shape depends on the data; use pnp.where(cond, x, y) instead",
    'compress': "its output shape depends on the data; use pnp.where(cond, x, y) instead",
    'put': "it mutates its argument; use x.at[idx].set(v)",
    'place': "it mutates its argument; use x.at[idx].set(v) or pnp.where",
    'copyto': "it mutates its argument; use pnp.where",
    'fill_diagonal': "it mutates its argument; use x.at[idx].set(v)",
}


def _unsupported(qualname, short):
    hint = _UNSUPPORTED_HINT.get(short)
    hint = (f" ({hint})" if hint else
            "; rewrite it with supported primitives.numpy functions (see dir(primitives.numpy)),"
            " or apply it outside the transformed function")
    return TypeError(with_user_line(
        f"{qualname} has no traced implementation in cotangent{hint}."))


def _ufunc_fn(name):
    name = _UFUNC_ALIASES.get(name, name)
    if name in _PUBLIC:
        return globals()[name]
    return None


_UFUNC_CALLS = {}   # ufunc -> its function here, for calls without keyword arguments


def _array_ufunc(ufunc, method, inputs, kwargs):
    if not kwargs and method == '__call__':
        fn = _UFUNC_CALLS.get(ufunc)
        if fn is not None:      # (x @ w with x an array: the general path's call)
            return fn(*inputs)
    name = ufunc.__name__
    kwargs = dict(kwargs)
    out = kwargs.pop('out', None)
    if out is not None and not (isinstance(out, tuple) and builtins.all(o is None for o in out)):
        raise TypeError(with_user_line(
            f"numpy.{name} was called with out=... on a traced array: traced arrays are "
            f"immutable, so results cannot be written into an existing array. Fix: use the "
            f"returned value (y = numpy.{name}(...))."))
    if method == '__call__':
        fn = _ufunc_fn(name)
        if fn is None:
            raise _unsupported(f"numpy.{name}", name)
        if not kwargs and type(ufunc) is _np.ufunc:
            _UFUNC_CALLS[ufunc] = fn
        dt = kwargs.pop('dtype', None)
        wh = kwargs.pop('where', True)
        for k in ('casting', 'order', 'subok', 'signature'):
            kwargs.pop(k, None)
        if kwargs:
            raise TypeError(f"numpy.{name}: keyword arguments {sorted(kwargs)} are not "
                            f"supported on traced arrays")
        if wh is not True:
            raise TypeError(f"numpy.{name}(..., where=...) without out= leaves entries "
                            f"undefined; use pnp.where(mask, numpy.{name}(...), fill) instead")
        if dt is not None:
            inputs = [_astype(_arr_or_scalar(i), dt) for i in inputs]
        return fn(*inputs)
    if method == 'reduce':
        red = _REDUCE.get(name)
        if red is None:
            raise _unsupported(f"numpy.{name}.reduce", name)
        (x,) = inputs
        axis = kwargs.pop('axis', 0)
        kw = {}
        for k in ('keepdims', 'dtype', 'initial', 'where'):
            if k in kwargs:
                v = kwargs.pop(k)
                if k == 'dtype' and red not in ('sum', 'prod'):
                    if v is not None:
                        x = _astype(_arr(x), v)
                    continue
                if k == 'initial' and red in ('all', 'any'):
                    continue
                kw[k] = v
        if kwargs:
            raise TypeError(f"numpy.{name}.reduce: keyword arguments {sorted(kwargs)} are not "
                            f"supported on traced arrays")
        return globals()[red](x, axis=axis, **kw)
    if method == 'accumulate':
        if name != 'add':
            raise _unsupported(f"numpy.{name}.accumulate", name)
        (x,) = inputs
        return cumsum(x, axis=kwargs.pop('axis', 0), dtype=kwargs.pop('dtype', None))
    if method == 'outer':
        fn = _ufunc_fn(name)
        if fn is None or len(inputs) != 2:
            raise _unsupported(f"numpy.{name}.outer", name)
        a, b = _arr(inputs[0]), _arr(inputs[1])
        a = reshape(a, tuple(shape_of(a)) + (1,) * _nd(b))
        return fn(a, b)
    raise TypeError(f"numpy.{name}.{method} has no traced implementation in cotangent"
                    + (" (it mutates its argument; use x.at[idx].add(v) instead)"
                       if method == 'at' else "")
                    + ". Use the plain call numpy." + name + "(...) or primitives.numpy.")


# --- NumPy dispatch: __array_function__ ----------------------------------------------------------

def _array_function(func, types, args, kwargs):
    name = func.__name__
    mod = getattr(func, '__module__', None) or 'numpy'
    if mod.startswith('numpy.linalg'):
        if name in _LINALG_NAMES:
            return getattr(linalg, name)(*args, **kwargs)
        raise _unsupported(f"numpy.linalg.{name}", name)
    if mod == 'numpy' or mod.startswith('numpy._core') or mod.startswith('numpy.lib'):
        if name in _PUBLIC and name not in _NOT_NUMPY:
            return globals()[name](*args, **kwargs)
        raise _unsupported(f"numpy.{name}", name)
    raise _unsupported(f"{mod}.{name}", name)


# --- array methods and properties ----------------------------------------------------------------

def _bound(fn):
    def method(self):
        def call(*args, **kwargs):
            return fn(self, *args, **kwargs)
        call.__name__ = fn.__name__
        return call
    return method


def _shape_varargs(args, kwargs, what='shape'):
    if what in kwargs:
        return kwargs.pop(what)
    if len(args) == 1 and not isinstance(args[0], (int, _np.integer)) and args[0] is not None:
        return args[0]
    return args


def _method_reshape(self):
    def call(*shape, order='C', copy=None, **kw):
        return reshape(self, _shape_varargs(shape, kw), order=order)
    return call


def _method_transpose(self):
    def call(*axes):
        if not axes or (len(axes) == 1 and axes[0] is None):
            return transpose(self)
        if len(axes) == 1 and not isinstance(axes[0], (int, _np.integer)):
            return transpose(self, tuple(axes[0]))
        return transpose(self, axes)
    return call


def _method_astype(self):
    def call(dtype, order='K', casting='unsafe', subok=True, copy=True):
        return astype(self, dtype)
    return call


def _method_item(self):
    def call(*args):
        return _np.asarray(self._concrete()).item(*args)
    return call


def _method_tolist(self):
    def call():
        return _np.asarray(self._concrete()).tolist()
    return call


def _method_clip(self):
    def call(min=None, max=None, out=None, **kw):
        return clip(self, min, max, out=out, **kw)
    return call


def _method_flatten(self):
    def call(order='C'):
        return ravel(self, order)
    return call


def _method_copy(self):
    def call(order='C'):
        return self
    return call


def _method_nonzero(self):
    def call():
        return _np.nonzero(_np.asarray(self._concrete()))
    return call


def _method_repeat(self):
    def call(repeats, axis=None):
        return repeat(self, repeats, axis)
    return call


def _register():
    from .indexing import getitem, _IndexUpdateHelper
    methods = {}
    for name in ('sum', 'mean', 'max', 'min', 'prod', 'var', 'std', 'argmax', 'argmin',
                 'cumsum', 'ravel', 'squeeze', 'swapaxes', 'dot', 'round', 'all', 'any',
                 'conj', 'conjugate', 'diagonal', 'trace', 'take'):
        methods['method_' + name] = _bound(globals()[name])
    methods.update(
        method_reshape=_method_reshape, method_transpose=_method_transpose,
        method_astype=_method_astype, method_item=_method_item, method_tolist=_method_tolist,
        method_clip=_method_clip, method_flatten=_method_flatten, method_copy=_method_copy,
        method_nonzero=_method_nonzero, method_repeat=_method_repeat,
        method_T=lambda self: transpose(self),
        method_mT=lambda self: matrix_transpose(self),
        method_real=lambda self: real(self),
        method_imag=lambda self: imag(self),
        method_at=lambda self: _IndexUpdateHelper(self),
        method_nbytes=lambda self: self.aval.size * self.aval.dtype.itemsize,
        method_itemsize=lambda self: self.aval.dtype.itemsize,
    )
    register_array_api(
        add=add, subtract=subtract, multiply=multiply, divide=divide,
        floor_divide=floor_divide, remainder=remainder, power=power, matmul=matmul,
        negative=negative, abs=abs, invert=invert, equal=equal, not_equal=not_equal,
        less=less, less_equal=less_equal, greater=greater, greater_equal=greater_equal,
        getitem=getitem, logical_and_op=_and_op, logical_or_op=_or_op,
        logical_xor_op=_xor_op, array_ufunc=_array_ufunc, array_function=_array_function,
        **methods)


# Names NumPy dispatch may route to: the public functions defined above.
_NOT_NUMPY = {'promote'}
_PUBLIC = {n for n, v in list(globals().items())
           if not n.startswith('_') and callable(v) and not isinstance(v, type)
           and getattr(v, '__module__', None) == __name__}
_PUBLIC |= {'abs', 'absolute', 'conjugate', 'true_divide', 'amax', 'amin', 'around',
            'fix', 'mod', 'pow', 'concat', 'permute_dims', 'row_stack', 'empty', 'empty_like',
            'asin', 'acos', 'atan', 'asinh', 'acosh', 'atanh', 'atan2', 'radians', 'degrees',
            'bitwise_not', 'bitwise_invert', 'round'}

_register()
