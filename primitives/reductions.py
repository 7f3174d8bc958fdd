"""Reductions: reduce_sum (more are added beside it)."""
import numpy as np

from tracer import Primitive, ShapedArray, is_undefined
from ._base import deflinear, shape_of


def _check_axes(name, aval, axes):
    for a in axes:
        if not 0 <= a < len(aval.shape):
            raise ValueError(f"{name}: axis {a} is out of range for operand {aval.str_short()}")


def _reduce_aval(name, aval, axes):
    _check_axes(name, aval, axes)
    shape = tuple(d for i, d in enumerate(aval.shape) if i not in axes)
    return ShapedArray(shape, aval.dtype, aval.weak_type)


def _reduce_sum_impl(x, axes):
    x = np.asarray(x)
    return np.add.reduce(x, axis=axes, dtype=x.dtype)


reduce_sum_p = Primitive('reduce_sum')
reduce_sum_p.impl = _reduce_sum_impl
reduce_sum_p.abstract_eval = lambda a, axes: _reduce_aval('reduce_sum', a, axes)


def _reduce_sum_transpose(ct, x, axes):
    from .shape_ops import broadcast_in_dim
    shape = x.aval.shape
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return [broadcast_in_dim(ct, shape, kept)]


deflinear(reduce_sum_p, _reduce_sum_transpose)


def reduce_sum(x, axes):
    axes = tuple(sorted(int(a) for a in axes))
    return reduce_sum_p.bind(x, axes=axes)
