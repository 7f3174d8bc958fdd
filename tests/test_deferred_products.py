"""Deferred cotangent products (transforms/deferred_products.py): eager reverse mode on
large arrays gives the unfused path's gradients bit for bit, and the true ones."""
import numpy as np
import pytest

import primitives.numpy as pnp
import transforms.deferred_products as dp
from transforms import grad, value_and_grad, vjp, jit, jvp
from transforms.deferred_products import Product, times, fused_sum, kernel_source

N = 1 << 15     # above KERNEL_MIN


def unfused(monkeypatch, fn, *args):
    with monkeypatch.context() as m:
        m.setattr(dp, 'KERNEL_MIN', 1 << 62)
        return fn(*args)


def gelu(x):
    return pnp.sum(0.5 * x * (1 + pnp.tanh(0.79788456 * (x + 0.044715 * x ** 3))))


def chain(x):
    y = pnp.sin(x) * x
    y = pnp.cos(y) * pnp.exp(0.5 * y)
    return pnp.sum(pnp.tanh(y) * x + y * y)


def reuse(x, w):
    # x read many times, products of products, a shared subexpression
    a = pnp.sin(x)
    b = a * w
    c = b * a * x
    return pnp.sum(c * b + a * x * w - pnp.exp(b) * 3.0)


def extreme_scales(x):
    # scales far from 1 (folded literals) meet deferred products
    y = pnp.sin(x) * 1e30
    z = pnp.cos(x) * 1e-30
    return pnp.sum(y * x * 1e-25 + z * x * 1e25)


CASES = [
    (gelu, 1), (chain, 1), (reuse, 2), (extreme_scales, 1),
]


def _args(n_args, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1.5, 1.5, N).astype(dtype) for _ in range(n_args))


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('f,n_args', CASES, ids=[c[0].__name__ for c in CASES])
def test_bitwise_equal_to_unfused_path(monkeypatch, f, n_args, dtype):
    args = _args(n_args, dtype)
    g = grad(f, argnums=tuple(range(n_args)))
    fused = g(*args)
    plain = unfused(monkeypatch, g, *args)
    for a, b in zip(fused, plain):
        assert type(a) is np.ndarray and a.dtype == dtype and a.shape == (N,)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('f,n_args', CASES[:3], ids=[c[0].__name__ for c in CASES[:3]])
def test_matches_jit_and_numerical(f, n_args):
    args = _args(n_args, np.float64, seed=1)
    g = grad(f, argnums=tuple(range(n_args)))(*args)
    gj = jit(grad(f, argnums=tuple(range(n_args))))(*args)
    for a, b in zip(g, gj):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # directional derivative against central differences
    rng = np.random.default_rng(2)
    d = tuple(rng.standard_normal(N) for _ in range(n_args))
    eps = 1e-6
    plus = f(*[a + eps * u for a, u in zip(args, d)])
    minus = f(*[a - eps * u for a, u in zip(args, d)])
    fd = (float(plus) - float(minus)) / (2 * eps)
    ad = sum(float(np.dot(a, u)) for a, u in zip(g, d))
    assert abs(fd - ad) <= 1e-6 * max(1.0, abs(ad))


def test_second_order_unaffected():
    # under an outer jvp the cotangents are tracers: nothing is deferred
    x = _args(1, np.float64, seed=3)[0]
    v = np.random.default_rng(4).standard_normal(N)
    hvp = jvp(grad(gelu), (x,), (v,))[1]
    t = np.tanh(0.79788456 * (x + 0.044715 * x ** 3))
    u_1 = 0.79788456 * (1 + 3 * 0.044715 * x ** 2)
    u_2 = 0.79788456 * 6 * 0.044715 * x
    s = 1 - t ** 2
    # f' = 0.5 (1 + t) + 0.5 x s u'; f'' = s u' + 0.5 x (-2 t s u'^2 + s u'')
    h = s * u_1 + 0.5 * x * (-2 * t * s * u_1 ** 2 + s * u_2)
    np.testing.assert_allclose(hvp, h * v, rtol=1e-10, atol=1e-12)


def test_value_and_grad_and_vjp_outputs_are_arrays():
    x, w = _args(2, np.float64, seed=5)
    val, (gx, gw) = value_and_grad(reuse, argnums=(0, 1))(x, w)
    assert type(gx) is np.ndarray and type(gw) is np.ndarray
    out, pullback = vjp(lambda x: pnp.sin(x) * x * x, x)
    ct = np.random.default_rng(6).standard_normal(N)
    (g,) = pullback(ct)
    np.testing.assert_allclose(g, ct * (np.cos(x) * x * x + 2 * np.sin(x) * x),
                               rtol=1e-12, atol=1e-12)


def test_product_value_order_and_cache():
    rng = np.random.default_rng(7)
    a, b, c = (rng.standard_normal(N) for _ in range(3))
    p = times(times(a, b), c)
    assert type(p) is Product and len(p.factors) == 3
    v = p.value()
    np.testing.assert_array_equal(v, (a * b) * c)
    assert p.value() is v and p.terms() == (v,)
    # a product of a computed product starts from its value
    q = times(p, a)
    assert q.factors[0] is v


def test_small_or_mismatched_arrays_are_multiplied_at_once():
    a = np.arange(8.0)
    assert type(times(a, a)) is np.ndarray
    big = np.ones(N)
    assert type(times(big, np.ones(N, np.float32))) is np.ndarray     # dtypes differ
    assert type(times(big, np.ones((N, 2))[:, 0])) is np.ndarray      # not contiguous
    assert type(times(np.arange(N), np.arange(N))) is np.ndarray      # not floating


def test_fused_sum_order_and_fallbacks():
    rng = np.random.default_rng(8)
    x, y, z, w = (rng.standard_normal(N) for _ in range(4))
    s = fused_sum([x, times(y, z), times(times(y, z), w)], [0.5, -2.0, 3.0])
    ref = 0.5 * x + (-2.0) * (y * z) + 3.0 * ((y * z) * w)
    np.testing.assert_array_equal(s, ref)
    assert fused_sum([x] * (dp.MAX_TERMS + 1), [1.0] * (dp.MAX_TERMS + 1)) is None
    assert fused_sum([x, np.ones((N, 2))[:, 0]], [1.0, 1.0]) is None


def test_kernel_source_pattern():
    src = kernel_source((1, 2))
    assert "out[i] = c0 * x0_0[i] + c1 * (x1_0[i] * x1_1[i])" in src
    assert "@numba.njit(cache=True)" in src and 'fastmath' not in src


@pytest.mark.parametrize('dtype', [np.float16, np.longdouble])
def test_dtypes_numba_lacks_are_computed_by_numpy(dtype):
    # float16 and long double: no deferral, no fused kernels (numba has neither type)
    x = np.linspace(-1.0, 1.0, N).astype(dtype)
    assert type(times(x, x)) is np.ndarray
    assert fused_sum([x, x], [1.0, 2.0]) is None
    g = grad(lambda x: pnp.sum(pnp.sin(x) * x * x + x * x * 2.0))(x)
    assert g.dtype == dtype
    x64 = x.astype(np.float64)
    want = np.cos(x64) * x64 ** 2 + 2 * np.sin(x64) * x64 + 4 * x64
    tol = 2e-2 if dtype == np.float16 else 1e-12
    np.testing.assert_allclose(g.astype(np.float64), want, rtol=tol, atol=tol)


def test_product_written_into_a_first_factor_nothing_else_holds():
    """A cotangent only the Product holds takes the product in place (no new array);
    one that anything else can see (a caller's array, a view, a second Product) is
    left as it was."""
    rng = np.random.default_rng(9)
    a, c = rng.standard_normal(N), rng.standard_normal(N)
    want = a * c
    p = times(a.copy(), c)          # (a temporary: only p holds it)
    v = p.value()
    assert v is p.factors[0]
    np.testing.assert_array_equal(v, want)

    held = rng.standard_normal(N)
    before = held.copy()
    v = Product((held, c)).value()
    assert v is not held
    np.testing.assert_array_equal(held, before)
    np.testing.assert_array_equal(v, before * c)

    base = rng.standard_normal(N)
    before = base.copy()
    Product((base[:], c)).value()           # a view: its base would see the write
    np.testing.assert_array_equal(base, before)

    shared = rng.standard_normal(N)
    before = shared.copy()
    p1, p2 = Product((shared, c)), Product((shared, 2 * c))
    del shared
    np.testing.assert_array_equal(p1.value(), before * c)
    np.testing.assert_array_equal(p2.value(), before * (2 * c))

    frozen = rng.standard_normal(N)
    frozen.flags.writeable = False
    p = Product((frozen.copy(), c))
    p.factors[0].flags.writeable = False
    np.testing.assert_array_equal(p.value(), frozen * c)


def test_backward_pass_writes_products_in_place_with_unchanged_results(monkeypatch):
    """In a backward pass through matrix products and tanh (an MLP layer), the
    cotangent a matrix product makes is multiplied in place; the gradient is the
    one of the allocating path, bit for bit, and the caller's arrays are untouched."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    w1 = rng.standard_normal((256, 128)).astype(np.float32) / 16
    w2 = rng.standard_normal((128, 64)).astype(np.float32) / 16
    args = (w1, w2)
    copies = [a.copy() for a in (x, w1, w2)]

    def loss(w1, w2):
        return pnp.sum(pnp.tanh(pnp.tanh(x @ w1) @ w2))
    seen = []
    real = dp._sole_owner
    monkeypatch.setattr(dp, '_sole_owner', lambda fs: seen.append(real(fs)) or seen[-1])
    g = grad(loss, argnums=(0, 1))(*args)
    assert True in seen
    monkeypatch.setattr(dp, '_sole_owner', lambda fs: False)
    want = grad(loss, argnums=(0, 1))(*args)
    for a, b in zip(g, want):
        np.testing.assert_array_equal(a, b)
    for a, b in zip((x, w1, w2), copies):
        np.testing.assert_array_equal(a, b)
