"""Array helpers that generated code calls instead of NumPy functions.

numba implements `np.empty`, `np.dot`, `reshape`... as overloads that it compiles
afresh in every process, the first time each is used (0.1-0.8 s apiece): that
would dominate the first call of every jitted program. These wrappers are
`@njit(cache=True)`: compiled once per signature and machine, then loaded from
numba's disk cache (primitives/__pycache__), so a new process pays a load, not a
compilation.
"""
import numpy as np
from numba import njit

_opts = dict(cache=True, error_model='numpy')


@njit(**_opts)
def empty(shape, dt):
    return np.empty(shape, dt)


@njit(**_opts)
def full(shape, value, dt):
    return np.full(shape, value, dt)


@njit(**_opts)
def contig(a):
    return np.ascontiguousarray(a)


@njit(**_opts)
def reshape(a, shape):
    """Reshape (a view when `a` is contiguous, else of a contiguous copy)."""
    return np.ascontiguousarray(a).reshape(shape)


@njit(**_opts)
def transpose(a, perm):
    return a.transpose(perm)


@njit(**_opts)
def copy(a):
    return np.copy(a)


@njit(**_opts)
def astype(a, dt):
    return a.astype(dt)


@njit(**_opts)
def dot(a, b):
    """np.dot (BLAS) of float arrays: contiguous or transposed views pass as they are."""
    return np.dot(a, b)


@njit(**_opts)
def dot_t(a, b):
    """a.T @ b."""
    return np.dot(np.ascontiguousarray(a).T, np.ascontiguousarray(b))


@njit(**_opts)
def dot_nt(a, b):
    """a @ b.T."""
    return np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b).T)


@njit(**_opts)
def dot_tt(a, b):
    """a.T @ b.T."""
    return np.dot(np.ascontiguousarray(a).T, np.ascontiguousarray(b).T)


@njit(**_opts)
def dot_nn(a, b):
    return np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b))
