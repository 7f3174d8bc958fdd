"""Primitive-level operations, like jax.lax.

Unlike `primitives.numpy`, these functions do not promote dtypes (operands of a
binary op must share one dtype; Python scalars adapt to the other operand) and
take static parameters the way the primitives do (axes tuples, dimension
numbers, padding configs).

It re-exports the primitive modules' user functions (the hyperbolic and inverse
trigonometric functions, `cbrt` and `rem` live in trig.py) and adds a few small
compositions jax.lax also offers.
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


from .trig import (sinh, cosh, asinh, acosh, atanh, asin, acos, atan, atan2, cbrt, rem,
                   _c)


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


# --- control flow support ---
from .control_flow import cond, switch, while_loop, fori_loop, scan
__all__ += ['cond', 'switch', 'while_loop', 'fori_loop', 'scan']
