"""Byte-swapped (non-native) input arrays: every transform converts them where they
enter, so they give the native arrays' results (no dtype-mismatch error, no jit
fallback)."""
import warnings

import numpy as np
import pytest

import primitives.numpy as pnp
from transforms import grad, jvp, vjp, linearize, jacfwd, jacrev, hessian, vmap, jit
from tracer import make_jaxpr


def f(x):
    return pnp.sum(pnp.sin(x) * x + x ** 3)


def df(x):
    return np.cos(x) * x + np.sin(x) + 3 * x ** 2


@pytest.mark.parametrize('dtype', ['>f8', '>f4'])
def test_transforms_of_byte_swapped_inputs(dtype):
    native = np.linspace(0.1, 1.0, 6).astype(dtype[1:])
    x = native.astype(dtype)
    assert not x.dtype.isnative
    tol = dict(rtol=1e-5 if dtype == '>f4' else 1e-12)
    want = df(native.astype(np.float64))
    np.testing.assert_allclose(grad(f)(x), want, **tol)
    np.testing.assert_allclose(jvp(f, (x,), (np.ones(6, dtype),))[1], want.sum(), **tol)
    np.testing.assert_allclose(vjp(f, x)[1](np.ones((), native.dtype))[0], want, **tol)
    np.testing.assert_allclose(linearize(f, x)[1](np.ones(6, dtype)), want.sum(), **tol)
    np.testing.assert_allclose(jacrev(f)(x), want, **tol)
    np.testing.assert_allclose(jacfwd(f)(x), want, **tol)
    h = hessian(f)(x)
    np.testing.assert_allclose(np.diag(h), (2 * np.cos(native) - np.sin(native) * native
                                            + 6 * native).astype(np.float64), **tol)
    np.testing.assert_allclose(vmap(grad(f))(x.reshape(2, 3)), want.reshape(2, 3), **tol)
    with warnings.catch_warnings():
        warnings.simplefilter('error')      # no fallback from numba to eager
        np.testing.assert_allclose(jit(grad(f))(x), want, **tol)
        np.testing.assert_allclose(jit(grad(f))(x), want, **tol)   # the cached path
    assert 'f' in str(make_jaxpr(grad(f))(x))
    assert grad(f)(x).dtype == native.dtype
