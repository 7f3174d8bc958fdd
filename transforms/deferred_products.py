"""Deferred products of large eager cotangents, summed in one pass.

Eager reverse mode multiplies a cotangent by a residual at every elementwise `mul`
it transposes (`ct * cos(x)`, `ct * (1 - tanh(x)**2)`, ...), and sums the
cotangents of a variable read several times. On large arrays each of those is a
pass over memory and a fresh array. Here the product is kept as a `Product` of its
factors instead, and computed only when a rule needs its value, or fused into the
sum that combines it with a variable's other cotangents: one generated numba loop
reads every factor and writes the sum, `c0*x0 + c1*(x1*y1) + ...`.

The results are bit for bit those of the unfused path: the products are formed in
the same order (left to right, as the transposition would have computed them),
and the sum has `fused_lincomb`'s order, with no contraction into fused
multiply-adds.

A kernel is generated per pattern (the number of factors of each term) and cached
on disk by numba (transforms/compile_cache.py), compiled for each dtype it meets.
"""
import sys

import numpy as np

from primitives._kernels import KERNEL_MIN, KERNEL_DTYPES, DeferredFactor, factor_value
from . import compile_cache

MAX_FACTORS = 4    # a longer product is computed, then deferred again
MAX_TERMS = 8      # a longer sum is left to add_any


class Product:
    """The elementwise product of `factors` (same-shape, same-dtype, C-contiguous
    floating arrays, the first a cotangent; the others may be DeferredFactors,
    multiplied in by their own kernel), computed on demand (once)."""
    __slots__ = ('factors', 'shape', 'dtype', '_value')

    def __init__(self, factors):
        self.factors = factors
        self.shape = factors[0].shape
        self.dtype = factors[0].dtype
        self._value = None

    def value(self):
        v = self._value
        if v is None:
            fs = self.factors
            if _sole_owner(fs):     # (asked first: no reference of ours is held yet)
                v = _times(fs[0], fs[1], fs[0])
            else:
                v = _times(fs[0], fs[1], None)
            for f in fs[2:]:
                _times(v, f, v)
            self._value = v
        return v

    def terms(self):
        """The arrays to multiply: the value once computed (one read, not several)."""
        v = self._value
        return (v,) if v is not None else self.factors


def _times(x, f, out):
    """x * f for an array x and a factor f (array or DeferredFactor), into `out`
    (None: a new array)."""
    if type(f) is np.ndarray:
        return np.multiply(x, f, out=out)
    return f.times(x, out)


def _first_factor_refs(fs):
    a = fs[0]
    return _getrefcount(a)


_getrefcount = sys.getrefcount
# The count _first_factor_refs sees for an array that only its factors tuple holds
# (measured, not assumed: it depends on how the interpreter counts its own references).
_SOLE_REFS = _first_factor_refs((np.empty(1), None))


def _sole_owner(fs):
    """Whether the first factor can take the product in place: nothing but this
    Product refers to it (a cotangent the backward pass made and handed on, as a
    matrix product's result) and it owns its memory, so no view or other holder can
    see the write. NumPy's temporary elision for `a * b`, for one backward step."""
    return fs[0].base is None and fs[0].flags.writeable and \
        _first_factor_refs(fs) == _SOLE_REFS


def _deferrable(x, shape, dtype):
    if type(x) is np.ndarray:
        return x.shape == shape and x.dtype == dtype and x.flags.c_contiguous
    return isinstance(x, DeferredFactor) and x.shape == shape and x.dtype == dtype


def times(ct, c):
    """ct * c for a concrete cotangent `ct` (array or Product) and a residual array
    `c` of its shape: a Product when both are large floating arrays, else computed."""
    if type(ct) is Product:
        if _deferrable(c, ct.shape, ct.dtype):
            fs = ct.terms()
            if len(fs) < MAX_FACTORS:
                return Product(fs + (c,))
            return Product((ct.value(), c))
        ct = ct.value()
    if ct.size >= KERNEL_MIN and ct.dtype in KERNEL_DTYPES and ct.flags.c_contiguous and \
            _deferrable(c, ct.shape, ct.dtype):
        return Product((ct, c))
    return np.multiply(ct, factor_value(c))


def value(x):
    return x.value() if type(x) is Product else x


def fused_sum(values, coeffs):
    """sum_k coeffs[k] * values[k] (arrays or Products of one shape and dtype) in one
    pass, or None where that does not apply (then the caller takes `value` of each)."""
    if len(values) > MAX_TERMS:
        return None
    first = values[0]
    shape, dtype = first.shape, first.dtype
    if dtype not in KERNEL_DTYPES:
        return None
    arrays = []
    pattern = []
    for x in values:
        fs = x.terms() if type(x) is Product else (x,)
        if type(x) is Product and not all(type(f) is np.ndarray for f in fs):
            fs = (x.value(),)   # (a deferred factor has its own kernel: multiplied first)
        for f in fs:
            if not _deferrable(f, shape, dtype):
                return None
            arrays.append(f.reshape(-1))
        pattern.append(len(fs))
    c = np.array(coeffs, dtype=dtype)
    out = np.empty(arrays[0].size, dtype)
    _kernel(tuple(pattern))(c, out, *arrays)
    return out.reshape(shape)


# --- generated kernels ---------------------------------------------------------------

_kernels = {}


def _kernel(pattern):
    k = _kernels.get(pattern)
    if k is None:
        source = kernel_source(pattern)
        module, _ = compile_cache.load(source, source.replace('cache=True', 'cache=False'))
        k = _kernels[pattern] = module.sum_of_products
    return k


def kernel_source(pattern):
    """numba source of out[i] = sum_k c[k] * prod of term k's factors at i."""
    args = []
    terms = []
    for k, n in enumerate(pattern):
        names = [f"x{k}_{j}" for j in range(n)]
        args += names
        prod = ' * '.join(f"{a}[i]" for a in names)
        terms.append(f"c{k} * ({prod})" if n > 1 else f"c{k} * {prod}")
    lines = ["import numba", "", "",
             "@numba.njit(cache=True)",
             f"def sum_of_products(c, out, {', '.join(args)}):"]
    lines += [f"    c{k} = c[{k}]" for k in range(len(pattern))]
    lines += ["    for i in range(out.size):",
              f"        out[i] = {' + '.join(terms)}", ""]
    return '\n'.join(lines)
