"""Deferred factors (Primitive.lin_deferred): grad of a large float32 tanh leaves its
derivative 1 - t**2 uncomputed in the forward pass, and the backward pass multiplies
it into the cotangent in one pass. The gradients are those of the computed
derivative bit for bit, whichever way the backward pass consumes the factor."""
import sys

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from primitives.unary import tanh_p
from primitives._kernels import OneMinusSquare, DeferredFactor, KERNEL_MIN
from transforms import grad, value_and_grad, vjp, linearize, jvp
from transforms.transpose import backward_pass
import transforms.deferred_products as dp

lz = sys.modules['transforms.linearize']

N = 2 * KERNEL_MIN


def _data(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(dtype)


W = _data(N, seed=1)
W2 = _data(N, seed=2)
M = _data((64, N // 64), seed=3) / 8
M2 = _data((N // 64, N // 64), seed=4) / 8

FUNCTIONS = {
    # the seed's ones times the factor: the factor's value
    'sum_tanh': lambda x: pnp.sum(pnp.tanh(x)),
    # a cotangent the caller's array gives (not the product's to overwrite)
    'weighted': lambda x: pnp.sum(pnp.tanh(x) * W),
    # x's two cotangents summed in one pass (a product with a deferred factor)
    'reused': lambda x: pnp.sum(pnp.tanh(x) * W) + pnp.sum(x * W2),
    # a factor times a cotangent that is a product itself
    'nested': lambda x: pnp.sum(pnp.tanh(pnp.tanh(x)) * W),
    # a matrix product's fresh cotangent, multiplied in place (an MLP layer)
    'layer': lambda x: pnp.sum(pnp.tanh(pnp.tanh(x.reshape(64, -1)) @ M2) * M),
}


def _computed(monkeypatch, fn, *args):
    """fn(*args) with tanh's derivative computed in the forward pass."""
    with monkeypatch.context() as m:
        m.setattr(tanh_p, 'lin_deferred', None)
        return fn(*args)


@pytest.mark.parametrize('name', sorted(FUNCTIONS))
def test_grad_equals_the_computed_derivative_bit_for_bit(monkeypatch, name):
    f = FUNCTIONS[name]
    x = _data(N)
    copy = x.copy()
    seen = []
    real = OneMinusSquare.times
    monkeypatch.setattr(OneMinusSquare, 'times',
                        lambda self, y, out=None: seen.append(1) or real(self, y, out))
    value, g = value_and_grad(f)(x)
    want_value, want = _computed(monkeypatch, value_and_grad(f), x)
    assert g.dtype == np.float32 and g.shape == x.shape
    np.testing.assert_array_equal(g, want)
    assert value == want_value
    np.testing.assert_array_equal(x, copy)      # the input is not written
    if name != 'sum_tanh':
        assert seen, "the backward pass multiplied by the deferred factor"


def test_grad_matches_the_formula_and_numerical_differences():
    x = _data(N, np.float32)
    g = grad(FUNCTIONS['weighted'])(x)
    t = np.tanh(x)
    np.testing.assert_array_equal(g, W * (1 - t * t))
    # a central difference in float64 on a few coordinates
    x64 = x.astype(np.float64)
    for i in (0, 17, N - 1):
        e = np.zeros(N)
        e[i] = 1e-5
        num = (np.sum(np.tanh(x64 + e) * W) - np.sum(np.tanh(x64 - e) * W)) / 2e-5
        assert abs(num - g[i]) < 1e-4 * max(1.0, abs(num))


def test_only_value_and_grad_gets_deferred_factors():
    x = _data(N)
    fun = lambda x: [pnp.sum(pnp.tanh(x) * W)]
    _, lin = lz.linearize_flat(fun, [x], dce=False)
    assert any(isinstance(r, OneMinusSquare) for r in lin.residuals)
    # linearize and vjp keep their jaxprs: residuals are arrays
    _, lin = lz.linearize_flat(fun, [x])
    assert lin.residuals and all(type(r) is np.ndarray for r in lin.residuals)
    want = W * (1 - np.tanh(x) ** 2)
    _, f_vjp = vjp(lambda x: fun(x)[0], x)
    np.testing.assert_array_equal(f_vjp(np.float32(1))[0], want)
    _, f_jvp = linearize(lambda x: fun(x)[0], x)
    assert f_jvp(np.ones(N, np.float32)) == pytest.approx(float(np.sum(want, dtype=np.float64)),
                                                         rel=1e-5)


def test_backward_pass_general_loop_reads_deferred_factors():
    x = _data(N)
    for f in FUNCTIONS.values():
        outs, lin = lz.linearize_flat(lambda x: [f(x)], [x], dce=False)
        seed = [np.ones((), np.float32)]
        fast = backward_pass(lin.jaxpr, lin.residuals, seed, all_linear=True)
        slow = backward_pass(lin.jaxpr, lin.residuals, seed, all_linear=False)
        np.testing.assert_array_equal(dp.value(fast[0]), dp.value(slow[0]))


def test_equations_with_several_outputs_get_arrays():
    """With a higher-order equation the jaxpr is made of general equations, whose
    rules read arrays: the factors are computed before the backward pass."""
    x = _data(N)

    def f(x):
        y = pnp.tanh(x)
        z, _ = lax.scan(lambda c, _: (c * 2.0, None), y, None, length=3)
        return [pnp.sum(z * W)]
    _, lin = lz.linearize_flat(f, [x], dce=False)
    assert all(not isinstance(r, DeferredFactor) for r in lin.residuals)
    np.testing.assert_array_equal(grad(lambda x: f(x)[0])(x),
                                  (W * 2 * 2 * 2) * (1 - np.tanh(x) ** 2))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_factor_kernels_equal_numpy_with_special_values(dtype):
    t = _data(N, dtype)
    x = _data(N, dtype, seed=5)
    t[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0]
    x[6:12] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30]
    f = OneMinusSquare(t)
    with np.errstate(invalid='ignore', over='ignore'):
        want = x * (1 - t * t)
        np.testing.assert_array_equal(f.value(), 1 - t * t)
        np.testing.assert_array_equal(f.times(x), want)
        out = np.empty_like(x)
        assert f.times(x, out) is out
        np.testing.assert_array_equal(out, want)
        y = x.copy()
        assert f.times(y, y) is y
        np.testing.assert_array_equal(y, want)


def test_small_float64_and_staged_tanh_compute_the_derivative():
    """Only large float32 arrays defer (float64's tanh kernel writes the derivative
    in its own pass); the rule declines everything else."""
    rule = tanh_p.lin_deferred
    assert rule(_data(KERNEL_MIN - 1)) is None
    assert rule(_data(N, np.float64)) is None
    assert rule(_data((N, 2))[:, 0]) is None        # not contiguous
    out, factor = rule(_data(N))
    assert isinstance(factor, OneMinusSquare) and factor.t is out
    # second order (the inner grad's primals are tracers): the derivative is computed
    x = _data(N)
    v = _data(N, seed=9)
    hv = jvp(grad(FUNCTIONS['weighted']), (x,), (v,))[1]
    t = np.tanh(x).astype(np.float64)
    want = W * (-2 * t) * (1 - t * t) * v
    np.testing.assert_allclose(hv, want, rtol=2e-4, atol=1e-5)
