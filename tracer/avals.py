"""Abstract values: what a traced value is known to be (shape, dtype, weak type).

Weak types follow NumPy 2 (NEP 50): a Python scalar takes the dtype of the array it
meets, so `float32_array * 2.0` stays float32.
"""
import numpy as np

# Tangent dtype of integer and boolean values: they have no derivative.
float0 = np.dtype([('float0', np.void, 0)])

_SHORT = {
    'float64': 'f64', 'float32': 'f32', 'float16': 'f16',
    'int64': 'i64', 'int32': 'i32', 'int16': 'i16', 'int8': 'i8',
    'uint64': 'u64', 'uint32': 'u32', 'uint16': 'u16', 'uint8': 'u8',
    'bool': 'bool', 'complex128': 'c128', 'complex64': 'c64',
}


def short_dtype(dtype):
    if dtype == float0:
        return 'float0'
    return _SHORT.get(dtype.name, dtype.name)


class ShapedArray:
    """The type of an array value: shape, dtype and whether the dtype is weak."""
    __slots__ = ('shape', 'dtype', 'weak_type')

    def __init__(self, shape, dtype, weak_type=False):
        self.shape = shape if type(shape) is tuple else tuple(shape)
        self.dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        self.weak_type = weak_type

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def str_short(self):
        return f"{short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"

    def __repr__(self):
        weak = ', weak_type=True' if self.weak_type else ''
        return f"ShapedArray({self.shape}, {self.dtype.name}{weak})"

    __str__ = str_short

    def __eq__(self, other):
        return (type(other) is ShapedArray and self.shape == other.shape
                and self.dtype == other.dtype and self.weak_type == other.weak_type)

    def __hash__(self):
        return hash((self.shape, self.dtype, self.weak_type))

    def strip_weak_type(self):
        return ShapedArray(self.shape, self.dtype) if self.weak_type else self

    def update(self, shape=None, dtype=None, weak_type=None):
        return ShapedArray(self.shape if shape is None else shape,
                           self.dtype if dtype is None else dtype,
                           self.weak_type if weak_type is None else weak_type)


_new = object.__new__

_python_scalar_dtypes = {bool: np.dtype(bool), int: np.dtype(np.int64),
                         float: np.dtype(np.float64), complex: np.dtype(np.complex128)}


_python_scalar_avals = {t: ShapedArray((), dt, weak_type=t is not bool)
                        for t, dt in _python_scalar_dtypes.items()}

# concrete_aval's table: Python scalars (weakly typed) and the common NumPy scalar
# types (a full reduction's result), one shared aval each
_scalar_avals = dict(_python_scalar_avals)
_scalar_avals.update((t, ShapedArray((), np.dtype(t))) for t in (
    np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_, np.complex128,
    np.complex64))


def is_python_scalar(x):
    return type(x) in _python_scalar_dtypes


def native(x):
    """x with NumPy's native byte order: a byte-swapped input array is converted once
    where it enters a transform (NumPy computes in native order, so every value
    derived from it, and every aval, is native)."""
    if type(x) is np.ndarray and not x.dtype.isnative:
        return x.astype(x.dtype.newbyteorder('='))
    return x


def numpy_scalar(x):
    """x, a Python scalar made the NumPy scalar that eager NumPy would give (float
    -> float64, ...): results handed to the user are NumPy values."""
    t = type(x)
    if t is float or t is int or t is bool or t is complex:
        return np.asarray(x)[()]
    return x


def concrete_aval(x):
    """The aval of a concrete (non-tracer) value."""
    t = type(x)
    if t is np.ndarray:
        a = _new(ShapedArray)   # the hot path: skip __init__'s conversions
        a.shape = x.shape
        a.dtype = x.dtype
        a.weak_type = False
        return a
    a = _scalar_avals.get(t)
    if a is not None:
        return a   # shared: avals are never mutated once built
    if isinstance(x, np.generic):
        return ShapedArray((), x.dtype)
    if isinstance(x, np.ndarray):
        return ShapedArray(x.shape, x.dtype)
    if isinstance(x, (bool, int, float, complex)):  # subclasses such as np.float64
        return ShapedArray((), np.asarray(x).dtype, weak_type=not isinstance(x, bool))
    raise TypeError(f"Value {x!r} of type {t.__name__} is not a valid array value: "
                    "cotangent traces numbers, NumPy arrays and their pytrees.")


def is_float_dtype(dtype):
    return dtype.kind in 'fc' if isinstance(dtype, np.dtype) else np.issubdtype(dtype, np.inexact)


def tangent_aval(aval):
    """The aval of a tangent (or cotangent) of a value with this aval."""
    if aval.dtype.kind in 'fc':
        return aval.strip_weak_type() if aval.weak_type else aval
    return ShapedArray(aval.shape, float0)


_weak_proxy = {'b': False, 'i': 0, 'u': 0, 'f': 0.0, 'c': 0j}


def result_dtype(*avals):
    """NumPy 2 promotion where weakly typed avals act as Python scalars.

    Returns (dtype, weak_type): the result is weak only if every operand is."""
    if len(avals) == 2:
        a, b = avals
        if a.dtype == b.dtype:
            return a.dtype, a.weak_type and b.weak_type
    all_weak = True
    operands = []
    for a in avals:
        if a.weak_type:
            operands.append(_weak_proxy[a.dtype.kind])
        else:
            all_weak = False
            operands.append(a.dtype)
    if all_weak:
        return np.result_type(*[a.dtype for a in avals]), True
    return np.result_type(*operands), False
