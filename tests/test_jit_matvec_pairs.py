"""jit pairs matrix-vector products that share a matrix into one product
(transforms/matvec_pairs.py): the values equal eager evaluation's to rounding, one
BLAS call replaces two, and a pair whose second vector depends on the first
product is left alone."""
import numpy as np
import pytest

import primitives.numpy as pnp
from tracer import make_jaxpr
from transforms import jit, jvp, grad
from transforms.matvec_pairs import pair_matvecs

RNG = np.random.default_rng(5)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _gemm_calls(source):
    return sum(source.count(f'{name}(') for name in ('gemm_nn', 'gemm_nt', 'gemm_t', 'gemm_tt',
                                                      'dot_nn', 'dot_nt', 'dot_t', 'dot_tt'))


def _data(dtype, m=6, k=5):
    a = RNG.standard_normal((m, k)).astype(dtype)
    return a, RNG.standard_normal(k).astype(dtype), RNG.standard_normal(k).astype(dtype), \
        RNG.standard_normal(m).astype(dtype)


CASES = {
    # name: (function of (a, x, v, w), number of BLAS calls once paired)
    'matrix @ vectors': (lambda a, x, v, w: (a @ x) * 2.0 + pnp.tanh(a @ v), 1),
    'vectors @ matrix': (lambda a, x, v, w: (lambda u: pnp.sin(w @ a - u @ a))(w * 2.0), 1),
    # the second vector computed after the first product: fused at the second
    'late second vector': (lambda a, x, v, w: (w @ a) - (pnp.cos(w) @ a), 1),
    # ... unless the first product is read before the second vector exists
    'read in between': (lambda a, x, v, w: pnp.sin(w @ a) - (pnp.cos(w) @ a), 2),
    'three products': (lambda a, x, v, w: a @ x + a @ v + a @ (x * v), 2),
    'two matrices': (lambda a, x, v, w: (a @ x) + (a[::-1] @ v), 2),
    'dependent': (lambda a, x, v, w: a.T @ pnp.tanh(a @ x) + a.T @ w, 2),
    'chain': (lambda a, x, v, w: a @ (a.T @ (a @ x)), 3),
    # the second vector is the first product itself: y2 = M @ y1 cannot pair
    'power': (lambda a, x, v, w: (lambda s: s @ (s @ x))(a[:5]), 2),
}


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_values_and_calls(name, dtype):
    f, n_calls = CASES[name]
    a, x, v, w = _data(dtype)
    fj = jit(f)
    out = fj(a, x, v, w)
    ref = f(a, x, v, w)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, **_tol(dtype))
    assert _gemm_calls(fj.lower(a, x, v, w).source) == n_calls


def test_dependent_second_vector_is_not_paired():
    """y2 = M @ g(y1) cannot be computed with y1: the pass leaves both products."""
    a, x, _, _ = _data(np.float64, 5, 5)
    jx = make_jaxpr(lambda x: a @ pnp.tanh(a @ x))(x)
    eqns = jx.jaxpr.eqns
    assert pair_matvecs(eqns) is eqns


def test_pair_rewrite_shape():
    """The rewrite: reshape, reshape, concatenate, one dot_general, and a slice and
    reshape per product, typed as the products were."""
    a, x, v, _ = _data(np.float64)
    jx = make_jaxpr(lambda x, v: (a @ x, a @ v))(x, v)
    eqns = jx.jaxpr.eqns
    new = pair_matvecs(eqns)
    assert [e.primitive.name for e in new] == [
        'reshape', 'reshape', 'concatenate', 'dot_general', 'slice', 'reshape', 'slice',
        'reshape']
    assert new[-3].outvars[0] is eqns[0].outvars[0] and new[-1].outvars[0] is eqns[1].outvars[0]
    assert new[3].outvars[0].aval.shape == (2, 6)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_hvp_under_jit(dtype):
    """W3's jitted Hessian-vector product: the forward pair A @ x, A @ v is one
    product, and the value is the hand formula's."""
    a = (RNG.standard_normal((8, 8)) / 4).astype(dtype)
    x = RNG.standard_normal(8).astype(dtype)
    v = RNG.standard_normal(8).astype(dtype)
    f = lambda x: pnp.sum(pnp.tanh(a @ x) ** 2) + 0.5 * pnp.sum(x ** 2)
    hvp = jit(lambda x, v: jvp(grad(f), (x,), (v,)))
    g, h = hvp(x, v)
    t = np.tanh(a @ x)
    want_g = a.T @ (2 * t * (1 - t ** 2)) + x
    want_h = a.T @ (2 * (1 - t ** 2) * (1 - 3 * t ** 2) * (a @ v)) + v
    np.testing.assert_allclose(g, want_g, **_tol(dtype))
    np.testing.assert_allclose(h, want_h, **_tol(dtype))
    # forward: A @ [x; v]; backward: [ct; dct] @ A
    assert _gemm_calls(hvp.lower(x, v).source) == 2
