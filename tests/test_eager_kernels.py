"""Eager fast paths for large or many arrays: the float64 tanh kernel (with its
derivative in the same pass) and add_any over many small arrays."""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import arith, unary
from primitives._kernels import tanh64, KERNEL_MIN
from transforms import grad, value_and_grad, vjp, jit

RNG = np.random.default_rng(11)


def _ulp_error(got, want):
    return np.max(np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300)))


def test_tanh_kernel_accuracy_and_special_values():
    x = np.concatenate([RNG.standard_normal(KERNEL_MIN) * 4,
                        RNG.uniform(-1e-8, 1e-8, 1000), RNG.uniform(-30, 30, 1000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 22.0, -22.0, 0.55, -0.55,
                         1e-300, 5e-324, 700.0]])
    with np.errstate(invalid='ignore'):
        y = unary.tanh_p.impl(x)
    want = np.tanh(x)
    finite = np.isfinite(x)
    assert _ulp_error(y[finite], want[finite]) <= 4
    assert np.array_equal(np.isnan(y), np.isnan(want))
    assert np.array_equal(y[~np.isnan(x)], np.where(finite, y, want)[~np.isnan(x)])
    assert np.signbit(y[np.where((x == 0) & np.signbit(x))[0][0]])
    t, d = tanh64(x[finite], with_derivative=True)
    np.testing.assert_array_equal(t, y[finite])
    np.testing.assert_allclose(d, 1 - want[finite] ** 2, rtol=1e-13, atol=2e-15)


def test_tanh_kernel_only_where_it_applies():
    small = RNG.standard_normal(100)
    assert tanh64(small) is None
    big32 = RNG.standard_normal(KERNEL_MIN).astype(np.float32)
    assert tanh64(big32) is None
    np.testing.assert_array_equal(unary.tanh_p.impl(big32), np.tanh(big32))
    strided = RNG.standard_normal(2 * KERNEL_MIN)[::2]
    assert tanh64(strided) is None
    np.testing.assert_array_equal(unary.tanh_p.impl(strided), np.tanh(strided))
    two_d = RNG.standard_normal((128, 256))
    assert _ulp_error(unary.tanh_p.impl(two_d), np.tanh(two_d)) <= 4
    assert unary.tanh_p.impl(two_d).shape == (128, 256)


@pytest.mark.parametrize('shape', [(KERNEL_MIN,), (64, 512)])
def test_tanh_kernel_under_autodiff(shape):
    x = RNG.standard_normal(shape)
    v, g = value_and_grad(lambda x: pnp.sum(pnp.tanh(x) * x))(x)
    t = np.tanh(x)
    np.testing.assert_allclose(v, np.sum(t * x), rtol=1e-12)
    np.testing.assert_allclose(g, t + x * (1 - t * t), rtol=1e-12, atol=1e-15)
    # the value agrees with the eager function exactly: both use the kernel
    assert v == pnp.sum(pnp.tanh(x) * x)
    # second order, through the general path
    _, f_vjp = vjp(grad(lambda x: pnp.sum(pnp.tanh(x))), x)
    np.testing.assert_allclose(f_vjp(np.ones(shape))[0], -2 * t * (1 - t * t), rtol=1e-10,
                               atol=1e-14)


@pytest.mark.parametrize('n', [6, 7, 40])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_add_any_of_many_small_arrays(n, dtype):
    xs = [RNG.standard_normal((3, 5)).astype(dtype) for _ in range(n)]
    coeffs = tuple(float(c) for c in RNG.standard_normal(n))
    out = arith.add_any_p.impl(*xs, coeffs=coeffs)
    want = sum(np.float64(c) * x.astype(np.float64) for c, x in zip(coeffs, xs))
    assert out.dtype == dtype and out.shape == (3, 5)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    plain = arith.add_any_p.impl(*xs)
    assert plain.dtype == dtype and plain.shape == (3, 5)
    np.testing.assert_allclose(plain, sum(x.astype(np.float64) for x in xs), rtol=tol,
                               atol=tol)
    # mixed shapes (broadcasting) take the general loop
    mixed = xs[:-1] + [np.ones((), dtype)]
    np.testing.assert_allclose(arith.add_any_p.impl(*mixed),
                               sum(x.astype(np.float64) for x in xs[:-1]) + 1,
                               rtol=tol, atol=tol)


def test_reused_input_gradient_sums_many_cotangents():
    # x feeds 30 products: its cotangent is one add_any of 30 terms
    x = RNG.standard_normal(8)
    ws = RNG.standard_normal((30, 8))

    def f(x):
        acc = x
        for w in ws:
            acc = pnp.sin(acc) * x + w
        return pnp.sum(acc)

    g = grad(f)(x)
    gj = jit(grad(f))(x)
    np.testing.assert_allclose(g, gj, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_cube_kernel_equals_numpy_and_differentiates(dtype):
    from primitives._kernels import cube_with_square
    x = RNG.standard_normal(KERNEL_MIN + 3).astype(dtype)
    cube, square = cube_with_square(x)
    np.testing.assert_array_equal(cube, x * x * x)
    np.testing.assert_array_equal(square, x * x)
    assert cube_with_square(x[:100]) is None and cube_with_square(x[::2]) is None
    v, g = value_and_grad(lambda x: pnp.sum(x ** 3))(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, 3 * x.astype(np.float64) ** 2,
                               rtol=1e-12 if dtype == np.float64 else 1e-6)
    # the value is the eager one
    assert v == pnp.sum(x * x * x)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_one_minus_square_kernel_equals_numpy(dtype):
    from primitives._kernels import one_minus_square
    t = np.tanh(RNG.standard_normal((128, KERNEL_MIN // 128)) * 3).astype(dtype)
    t.flat[:7] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1e-30]
    d = one_minus_square(t)
    assert d.dtype == dtype and d.shape == t.shape
    np.testing.assert_array_equal(d, 1 - t * t)
    # where it does not apply: small, strided, integer
    assert one_minus_square(t.reshape(-1)[:100]) is None
    assert one_minus_square(t[:, ::2]) is None
    assert one_minus_square(np.ones(KERNEL_MIN, np.int64)) is None


def test_float32_tanh_gradient_uses_one_pass_derivative(monkeypatch):
    """A large float32 tanh's coefficient comes from the kernel, and the gradient
    is the one NumPy's two passes give."""
    from primitives import _kernels
    x = RNG.standard_normal((128, 256)).astype(np.float32)
    calls = []
    real = _kernels._one_minus_square
    monkeypatch.setattr(_kernels, '_one_minus_square', lambda t, d: (calls.append(t.size), real(t, d)))
    g = grad(lambda x: pnp.sum(pnp.tanh(x)))(x)
    assert calls == [x.size]
    t = np.tanh(x)
    np.testing.assert_array_equal(g, 1 - t * t)
    assert g.dtype == np.float32
