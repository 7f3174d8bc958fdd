"""numba kernels for eager hot paths where NumPy makes several passes over memory.

Compiled lazily on first use and cached on disk (cache=True); no fastmath, so
NaN and inf behave as in NumPy.
"""
import numba
import numpy as np


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
