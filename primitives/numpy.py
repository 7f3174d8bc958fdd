"""NumPy-compatible functions that trace (like jax.numpy).

Each function follows NumPy's signature, broadcasting and NumPy 2 dtype promotion
(Python scalars are weak), and lowers to primitives. Tracers route NumPy's own
functions here through `__array_ufunc__` / `__array_function__`, so unmodified
NumPy code traces.
"""
import builtins
import numpy as _np

from tracer import Tracer, get_aval, register_array_api
from tracer.avals import result_dtype, ShapedArray
from . import arith, unary, logical, convert, reductions, shape_ops
from ._base import shape_of, dtype_of

_PY = (int, float, complex, bool)

# dtypes, constants and types users reach through `pnp.`
float64, float32, float16 = _np.float64, _np.float32, _np.float16
int64, int32, int16, int8 = _np.int64, _np.int32, _np.int16, _np.int8
uint8, uint32, uint64 = _np.uint8, _np.uint32, _np.uint64
bool_, complex64, complex128 = _np.bool_, _np.complex64, _np.complex128
pi, e, inf, nan, newaxis = _np.pi, _np.e, _np.inf, _np.nan, None
dtype, ndarray, finfo, iinfo = _np.dtype, _np.ndarray, _np.finfo, _np.iinfo


# --- promotion ------------------------------------------------------------------------------

def _aval(x):
    return x.aval if isinstance(x, Tracer) else get_aval(x)


def promote(*args):
    """Cast operands to their NumPy 2 result dtype (weak Python scalars adapt)."""
    if len(args) == 2:
        x, y = args
        tx, ty = type(x), type(y)
        if tx not in _PY and ty not in _PY:
            dx, dy = x.dtype, y.dtype
            if dx == dy:
                if not (isinstance(x, Tracer) or isinstance(y, Tracer)):
                    return x, y
                if not (x.aval.weak_type if isinstance(x, Tracer) else False) and \
                        not (y.aval.weak_type if isinstance(y, Tracer) else False):
                    return x, y
    avals = [_aval(a) for a in args]
    dt, weak = result_dtype(*avals)
    return tuple(_cast(a, av, dt) for a, av in zip(args, avals))


def _cast(x, aval, dt):
    if type(x) in _PY:
        return dt.type(x)
    if aval.dtype == dt:
        return x
    return convert.convert_element_type(x, dt)


def asarray(x, dtype=None):
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    if isinstance(x, (list, tuple)) and any(isinstance(v, Tracer) for v in _iter_leaves(x)):
        out = stack([asarray(v) for v in x])
        return out if dtype is None else astype(out, dtype)
    return _np.asarray(x, dtype=dtype)


def _iter_leaves(x):
    stack_ = [x]
    while stack_:
        v = stack_.pop()
        if isinstance(v, (list, tuple)):
            stack_.extend(v)
        else:
            yield v


def array(x, dtype=None, copy=True):
    out = asarray(x, dtype)
    if not isinstance(out, Tracer) and copy:
        out = _np.array(out, copy=True)
    return out


def astype(x, dtype):
    return convert.convert_element_type(x, _np.dtype(dtype))


def _float_operand(x):
    """Integer inputs to transcendental functions compute in float64 (NumPy)."""
    a = _aval(x)
    if a.dtype.kind in 'fc':
        return x
    return convert.convert_element_type(x, _np.float64) if not type(x) in _PY else float(x)


# --- elementwise ----------------------------------------------------------------------------

def _unary_float(prim_fn, name):
    def f(x, /):
        return prim_fn(_float_operand(x))
    f.__name__ = name
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


def _binary(prim, name):
    bind = prim.bind

    def f(x, y, /):
        x, y = promote(x, y)
        return bind(x, y)
    f.__name__ = name
    f.__doc__ = f"Elementwise {name} with NumPy broadcasting and promotion."
    return f


add = _binary(arith.add_p, 'add')
subtract = _binary(arith.sub_p, 'subtract')
multiply = _binary(arith.mul_p, 'multiply')
maximum = _binary(arith.max_p, 'maximum')
minimum = _binary(arith.min_p, 'minimum')
equal = _binary(logical.eq_p, 'equal')
not_equal = _binary(logical.ne_p, 'not_equal')
less = _binary(logical.lt_p, 'less')
less_equal = _binary(logical.le_p, 'less_equal')
greater = _binary(logical.gt_p, 'greater')
greater_equal = _binary(logical.ge_p, 'greater_equal')


def divide(x, y, /):
    x, y = promote(x, y)
    if _aval(x).dtype.kind in 'iub':
        x, y = astype(x, _np.float64), astype(y, _np.float64)
    return arith.div_p.bind(x, y)


true_divide = divide


def negative(x, /):
    return arith.neg(x)


def power(x, y, /):
    if type(y) is int or (isinstance(y, (_np.integer,)) and not isinstance(x, _np.ndarray)):
        return arith.integer_pow(x, int(y))
    if type(y) is float and float(y).is_integer() and builtins.abs(y) <= 64:
        x, = promote(x) if False else (x,)
        xa = _aval(x)
        if xa.dtype.kind in 'fc':
            return arith.integer_pow(x, int(y))
    x, y = promote(x, y)
    return arith.pow_p.bind(x, y)


def abs(x, /):
    return arith.abs(x)


absolute = abs


def sign(x, /):
    return arith.sign(x)


def where(condition, x=None, y=None, /):
    if x is None and y is None:
        raise TypeError("pnp.where(condition) with one argument (nonzero) has a "
                        "data-dependent shape and cannot be traced; pass x and y.")
    x, y = promote(x, y)
    cond = condition
    if _aval(cond).dtype != _np.dtype(bool):
        cond = not_equal(cond, 0)
    return logical.select_n(cond, y, x)


def _register():
    register_array_api(
        add=add, subtract=subtract, multiply=multiply, divide=divide, negative=negative,
        power=power, abs=abs, equal=equal, not_equal=not_equal, less=less,
        less_equal=less_equal, greater=greater, greater_equal=greater_equal,
    )


_register()
