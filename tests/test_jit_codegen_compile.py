"""The code generator's compile-time economies (transforms/codegen.py), checked
against eager evaluation: rows regions (row-local work over a leading dimension
in one loop), views for reshapes of unit dimensions, single-element values as
scalars, element loads/stores through ld/st intrinsics on any layout, typed
constants and the casts left out, helpers compiled for non-literal shapes, and
the garbage collector paused during a first call only."""
import gc
import re

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import arith
from transforms import jit, value_and_grad, grad


pytestmark = pytest.mark.usefixtures('jit_cache_dir')   # tests/conftest.py

rng = np.random.default_rng(7)


def _close(got, want, dt):
    tol = 2e-5 if np.dtype(dt) == np.float32 else 1e-12
    for g, w in zip(got if isinstance(got, (tuple, list)) else [got],
                    want if isinstance(want, (tuple, list)) else [want]):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _nests(src):
    return len(re.findall(r'^\s+for \w+ in range', src, re.M))


def _rows_loss(w, x, onehot):
    # logits -> logsumexp rows -> mean loss (the W2 MLP's head), plus a row softmax
    z = x @ w
    m = pnp.max(z, axis=1, keepdims=True)
    lse = m[:, 0] + pnp.log(pnp.sum(pnp.exp(z - m), axis=1))
    sm = pnp.exp(z - m) / pnp.sum(pnp.exp(z - m), axis=1, keepdims=True)
    return pnp.mean(lse - pnp.sum(z * onehot, axis=1)) + 0.1 * pnp.sum(sm * sm)


@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_rows_region_softmax_head_and_gradient(dt):
    w = rng.standard_normal((6, 5)).astype(dt)
    x = rng.standard_normal((9, 6)).astype(dt)
    onehot = np.eye(5, dtype=dt)[rng.integers(0, 5, 9)]
    f = jit(value_and_grad(_rows_loss))
    _close(f(w, x, onehot), value_and_grad(_rows_loss)(w, x, onehot), dt)
    src = f.lower(w, x, onehot).as_text()
    # one loop over the 9 rows holds the head and its gradient
    assert len(re.findall(r'for (r\d+) in range\(9\)', src)) == 1, src


@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_rows_region_values_read_after_it(dt):
    # per-row scalars, keepdims columns, views of region values, column sums and a
    # full sum over the rows, and a region value read by a matrix product after it
    z = rng.standard_normal((7, 4)).astype(dt)
    v = rng.standard_normal((4, 3)).astype(dt)

    def f(z, v):
        m = pnp.max(z, axis=1, keepdims=True)           # (7, 1)
        e = pnp.exp(z - m)
        s = pnp.sum(e, axis=1)                          # (7,)
        p = e / s[:, None]
        return (s, m, pnp.reshape(m, (7,)), pnp.sum(p * z, axis=0), pnp.sum(p * z),
                (p * 2.0) @ v, pnp.sum(e, axis=1, keepdims=True) * 3.0)

    got = jit(f)(z, v)
    _close(got, f(z, v), dt)


def test_rows_region_with_trigonometry_and_broadcast_rows():
    # sin may take its exact slow path (not in a rows region); rows read whole
    # (a bias row) and per row (a column) mix with row reductions
    x = np.array([[0.5, 3e5, -2.0], [1e22, 0.1, 4.0]])
    b = np.array([0.3, -0.2, 0.1])
    col = np.array([[2.0], [-1.0]])

    def f(x, b, col):
        t = pnp.sin(x) + b
        mx = pnp.max(t * col, axis=1, keepdims=True)
        return pnp.sum(pnp.exp(t * col - mx), axis=1), pnp.sum(pnp.tanh(x * 1e-22) - mx)

    got = jit(f)(x, b, col)
    want = f(x, b, col)
    for g, w_ in zip(got, want):
        np.testing.assert_allclose(g, w_, rtol=1e-13, atol=1e-15)
    x2 = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    loss = lambda x: pnp.sum(f(x, b, col)[0] * np.array([1.0, 3.0]))   # noqa: E731
    np.testing.assert_allclose(jit(grad(loss))(x2), grad(loss)(x2), rtol=1e-12)


def test_unit_dimension_views_and_single_element_values():
    x = rng.standard_normal((5,))
    a = rng.standard_normal((5, 3))

    def f(x, a):
        c = pnp.reshape(x, (5, 1))                      # a view: no copy, no loop split
        y = pnp.tanh(c) * a                             # reads x through the view
        r = pnp.reshape(pnp.sum(y, axis=1), (1, 5))     # (1, 5) view of a reduction
        one = pnp.sum(x).reshape((1, 1)) * 2.0           # a single element: a scalar
        return y, c, r @ a, one, pnp.squeeze(one), pnp.reshape(one, (1,)) + x[:1]

    fj = jit(f)
    got = fj(x, a)
    for g, w_ in zip(got, f(x, a)):
        assert np.asarray(g).shape == np.asarray(w_).shape
        np.testing.assert_allclose(g, w_, rtol=1e-13, atol=1e-15)
    assert 'reshape(' in fj.lower(x, a).as_text()    # materialised for the product/result


def test_element_access_on_any_layout():
    base = rng.standard_normal((6, 8))
    args = [base[::2, 1::3], base.T, np.asfortranarray(base), base[:, ::-1]]

    def f(p, q, r, s):
        return (pnp.sum(pnp.exp(p) * 2.0, axis=0), q * 3.0 - 1.0,
                pnp.max(r, axis=1), s + r, pnp.sum(q * q.T.T))

    got = jit(f)(*args)
    for g, w_ in zip(got, f(*args)):
        np.testing.assert_allclose(g, w_, rtol=1e-13, atol=1e-15)


def test_constants_and_elided_casts_keep_dtypes_and_bits():
    x = rng.uniform(-3, 3, 17).astype(np.float32)
    y = rng.uniform(0.5, 3, 17).astype(np.float32)
    i = rng.integers(-50, 50, 17).astype(np.int32)
    k = rng.integers(-50, 50, 17).astype(np.int64)

    def f(x, y, i, k):
        # float32 throughout. No product is an operand of a sum or difference here:
        # generated code may contract a multiply and an add into one FMA (one
        # rounding, see test_float32_multiply_add_rounds_once_or_as_eager), which
        # would make the bits differ from eager's two roundings
        a = ((x - y) / 3.0 + 2.0) * (x + 1.5) / y
        b = -(x - y) * 0.1 * pnp.maximum(x, y)
        c = i * 3 + i                                  # int32 (numba computes int64)
        d = k * 2 - k + 7
        return a, b, c, d, (i > 2) & (x < y), pnp.sum(a), pnp.max(c)

    g = jit(f)
    got = g(x, y, i, k)
    want = f(x, y, i, k)
    for gv, w_ in zip(got, want):
        gv, w_ = np.asarray(gv), np.asarray(w_)
        assert gv.dtype == w_.dtype, (gv.dtype, w_.dtype)
        if gv.dtype.kind == 'f' and gv.ndim == 0:
            np.testing.assert_allclose(gv, w_, rtol=1e-6)   # a sum: order may differ
        else:
            np.testing.assert_array_equal(gv, w_)
    # the float32 arithmetic is never widened to float64 (constants are float32
    # globals, no cast is needed)
    src = g.lower(x, y, i, k).as_text()
    assert 'float64' not in src, src


def test_float32_multiply_add_rounds_once_or_as_eager():
    # a product feeding a sum may be one FMA (compiler._OPTIONS: fastmath
    # 'contract'): each element is either eager's value (two roundings) or the
    # exactly rounded x*1.5 - y (one rounding; computed exactly in float64 here:
    # x*1.5 and the difference need < 53 bits), nothing else
    x = rng.uniform(-3, 3, 64).astype(np.float32)
    y = rng.uniform(0.5, 3, 64).astype(np.float32)

    def f(x, y):
        return x * 1.5 - y

    got = np.asarray(jit(f)(x, y))
    assert got.dtype == np.float32
    twice = f(x, y)
    once = (x.astype(np.float64) * 1.5 - y.astype(np.float64)).astype(np.float32)
    assert np.all((got == twice) | (got == once)), (got, twice, once)


def test_safe_mul_by_constants():
    # safe_mul(x, c) is a plain product for a finite constant c (x * c is NaN only
    # for NaN/inf x, which are nonzero); 0 * inf still gives 0 through the helper
    x = np.array([0.0, np.inf, -np.inf, np.nan, 2.0])

    def f(x):
        return (arith.safe_mul(x, 2.0), arith.safe_mul(x, 0.0), arith.safe_mul(0.0, x),
                arith.safe_mul(3.0, x))

    got = jit(f)(x)
    for g, w_ in zip(got, f(x)):
        np.testing.assert_array_equal(g, w_)


def test_helpers_compile_for_shapes_not_literals():
    from primitives import jitlib

    def f(x):
        return pnp.exp(x) @ x.T

    for n in (3, 4, 5):
        x = rng.standard_normal((n, 2))
        np.testing.assert_allclose(jit(f)(x), f(x), rtol=1e-12)
    sigs = [str(s) for s in jitlib.empty.signatures] + \
        [str(s) for s in jitlib._gemm_nt.signatures]
    assert not any('Literal' in s for s in sigs), sigs


def test_first_call_pauses_and_restores_the_garbage_collector():
    x = rng.standard_normal(11)

    def f(x):
        return pnp.sin(x) * 3.0 + 1.25

    assert gc.isenabled()
    np.testing.assert_allclose(jit(f)(x), np.sin(x) * 3.0 + 1.25, rtol=1e-15)
    assert gc.isenabled()
    gc.disable()
    try:
        np.testing.assert_allclose(jit(f)(x[:5]), np.sin(x[:5]) * 3.0 + 1.25, rtol=1e-15)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_float32_vecmath_results_need_no_cast():
    # vm_tanh32 / vm_exp32 return float32 for float32 operands: no np.float32(...)
    # around their calls, and the values and dtype are eager's
    x = rng.uniform(-4, 4, 33).astype(np.float32)

    def f(x):
        return pnp.tanh(x) * 2.0 + pnp.exp(x - 1.0)

    g = jit(f)
    got = g(x)
    assert np.asarray(got).dtype == np.float32
    np.testing.assert_allclose(got, f(x), rtol=2e-6, atol=2e-6)
    src = g.lower(x).as_text()
    assert 'vm_tanh32(' in src and 'vm_exp32(' in src, src
    assert 'np.float32(vm_' not in src, src
