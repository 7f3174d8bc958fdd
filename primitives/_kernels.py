"""numba kernels for eager hot paths where NumPy makes several passes over memory.

Compiled lazily on first use and cached on disk (cache=True); the only fastmath flag
is 'contract' (fused multiply-add), so NaN and inf behave as in NumPy.
"""
import numba
import numpy as np

from .vecmath import vm_tanh

KERNEL_MIN = 1 << 14    # elements; below this, NumPy's per-call overhead is the smaller cost
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))   # numba has no float16 / long double


@numba.njit(cache=True)
def _lincomb2(a, b, ca, cb, out):
    for i in range(out.size):
        out[i] = ca * a[i] + cb * b[i]


@numba.njit(cache=True)
def _lincomb3(a, b, c, ca, cb, cc, out):
    for i in range(out.size):
        out[i] = ca * a[i] + cb * b[i] + cc * c[i]


@numba.njit(cache=True)
def _lincomb4(a, b, c, d, ca, cb, cc, cd, out):
    for i in range(out.size):
        out[i] = ca * a[i] + cb * b[i] + cc * c[i] + cd * d[i]


@numba.njit(cache=True)
def _axpy(x, c, out):
    # out += c * x
    for i in range(out.size):
        out[i] += c * x[i]


def _takes(x, dtypes=KERNEL_DTYPES, min_size=KERNEL_MIN):
    """Whether a kernel takes `x`: a C-contiguous array of one of `dtypes` with at
    least `min_size` elements (by default, a large one)."""
    return type(x) is np.ndarray and x.dtype in dtypes and x.size >= min_size and \
        x.flags.c_contiguous


def lincomb(xs, coeffs, out):
    """out[:] = sum_k coeffs[k] * xs[k] over flat contiguous arrays of one dtype."""
    n = len(xs)
    if n == 2:
        _lincomb2(xs[0], xs[1], coeffs[0], coeffs[1], out)
    elif n == 3:
        _lincomb3(xs[0], xs[1], xs[2], coeffs[0], coeffs[1], coeffs[2], out)
    else:
        _lincomb4(xs[0], xs[1], xs[2], xs[3], coeffs[0], coeffs[1], coeffs[2], coeffs[3], out)
        for k in range(4, n):
            _axpy(xs[k], coeffs[k], out)
    return out


# tanh in float64: NumPy's takes ~2.3 ns per element here (libm, one at a time); the
# vectorised vm_tanh (primitives/vecmath.py, within 4 ulp) about half that, and
# eager linearization gets the derivative 1 - tanh^2 in the same pass.

@numba.njit(cache=True, fastmath={'contract'})
def _tanh64(x, out):
    for i in range(x.size):
        out[i] = vm_tanh(x[i])


@numba.njit(cache=True, fastmath={'contract'})
def _tanh64_lin(x, out, d):
    for i in range(x.size):
        t = vm_tanh(x[i])
        out[i] = t
        d[i] = 1.0 - t * t


_F64_ONLY = (np.dtype(np.float64),)


# 1 - t^2 (tanh's derivative from its output, for the types tanh64 does not take:
# float32) in one pass instead of NumPy's two; the same product and difference, so
# equal results.

@numba.njit(cache=True)
def _one_minus_square(t, d):
    for i in range(t.size):
        s = t[i] * t[i]
        d[i] = 1 - s


def one_minus_square(t):
    """1 - t*t for a large contiguous floating array, or None."""
    if not _takes(t):
        return None
    d = np.empty_like(t)
    _one_minus_square(t.reshape(-1), d.reshape(-1))
    return d


@numba.njit(cache=True)
def _times_one_minus_square(x, t, one, out):
    for i in range(out.size):
        s = t[i] * t[i]
        out[i] = x[i] * (one - s)     # (`one` has t's dtype: no promotion to float64)


# In place, a kernel of its own: with `out` the same array as `x`, LLVM's run-time
# overlap check of the three-array loop fails and it runs unvectorised (3x slower).
@numba.njit(cache=True)
def _times_one_minus_square_inplace(x, t, one):
    for i in range(x.size):
        s = t[i] * t[i]
        x[i] = x[i] * (one - s)


class DeferredFactor:
    """A linearization coefficient not computed yet (Primitive.lin_deferred): eager
    reverse mode, which only multiplies cotangents by it, asks for `times(x, out)`,
    x times the factor in one pass; anything else for `value()`, the array."""
    __slots__ = ()


def factor_value(c):
    """`c` as an array: a DeferredFactor's value, anything else itself."""
    return c.value() if isinstance(c, DeferredFactor) else c


class OneMinusSquare(DeferredFactor):
    """The factor 1 - t*t of a large contiguous floating array `t`, not computed yet.

    tanh's derivative, 1 - tanh(x)**2, is only ever multiplied by a cotangent in eager
    reverse mode. Computed in the forward pass it is a pass that writes a fresh array
    and a later pass that reads it back; deferred, the backward pass forms
    ct * (1 - t*t) in one pass over ct and t (`times`), as a hand-written backprop
    does. The results are the same bits: the same square, difference and product."""
    __slots__ = ('t',)

    def __init__(self, t):
        self.t = t

    @property
    def shape(self):
        return self.t.shape

    @property
    def dtype(self):
        return self.t.dtype

    def value(self):
        """1 - t*t, as an array."""
        return one_minus_square(self.t)

    def times(self, x, out=None):
        """x * (1 - t*t) for a C-contiguous array x of t's shape and dtype (written
        into `out` if given, which may be x)."""
        t = self.t
        one = t.dtype.type(1)
        if out is x:
            _times_one_minus_square_inplace(x.reshape(-1), t.reshape(-1), one)
            return x
        if out is None:
            out = np.empty_like(t)
        _times_one_minus_square(x.reshape(-1), t.reshape(-1), one, out.reshape(-1))
        return out


_F32_ONLY = (np.dtype(np.float32),)


def tanh_deferred_derivative(x):
    """(tanh(x), OneMinusSquare of it) for a large contiguous float32 array x, else
    None. (float64 has tanh64, which writes the derivative in the same pass.)"""
    if not _takes(x, _F32_ONLY):
        return None
    ans = np.tanh(x)
    return ans, OneMinusSquare(ans)


def tanh64(x, with_derivative=False):
    """tanh of a large contiguous float64 array (and 1 - tanh^2), or None."""
    if not _takes(x, _F64_ONLY):
        return None
    out = np.empty_like(x)
    if not with_derivative:
        _tanh64(x.reshape(-1), out.reshape(-1))
        return out
    d = np.empty_like(x)
    _tanh64_lin(x.reshape(-1), out.reshape(-1), d.reshape(-1))
    return out, d


# x**3 with its derivative's factor x**2 (integer_pow under eager linearization): one
# read of x instead of two passes; the same two products as NumPy's, so equal results.

@numba.njit(cache=True)
def _cube_lin(x, square, cube):
    for i in range(x.size):
        s = x[i] * x[i]
        square[i] = s
        cube[i] = s * x[i]


def cube_with_square(x):
    """(x*x*x, x*x) for a large contiguous floating array, or None."""
    if not _takes(x):
        return None
    square = np.empty_like(x)
    cube = np.empty_like(x)
    _cube_lin(x.reshape(-1), square.reshape(-1), cube.reshape(-1))
    return cube, square


# max / min over the last axis of a matrix with short rows (a classifier's logits) and
# where each row attains it: NumPy's reduction runs one short inner loop per row
# (7 us for 128x10 float32, against 1.3 us for argmax), and eager linearization then
# needs the mask of the extremes and their counts: here all of it in one pass.

@numba.njit(cache=True)
def _row_extreme_mask(x, for_max, out, mask):
    rows, cols = x.shape
    for i in range(rows):
        m = x[i, 0]
        for j in range(1, cols):
            v = x[i, j]
            if m != m:
                break                           # NaN: the reduction's result
            if (v > m) if for_max else (v < m):
                m = v
            elif v != v:
                m = v
        if m != m or m == 0:
            return False    # NaN, or a zero whose sign NumPy's reduction settles its own way
        out[i] = m
        n = 0
        for j in range(cols):
            if x[i, j] == m:
                mask[i, j] = 1
                n += 1
            else:
                mask[i, j] = 0
        if n != 1:
            return False                        # a tie
    return True


def row_extreme_mask(x, for_max):
    """(max or min of each row, mask of where it is attained) for a C-contiguous
    float32/float64 matrix whose every row attains its extreme once, is not NaN and
    not zero; None otherwise (the caller's NumPy path decides those)."""
    if not _takes(x, min_size=1) or x.ndim != 2:
        return None
    out = np.empty(x.shape[0], x.dtype)
    mask = np.empty_like(x)
    if not _row_extreme_mask(x, for_max, out, mask):
        return None
    return out, mask
