"""Elementwise primitives (arith, unary, logical, convert): values against NumPy,
derivatives to second order in both modes, zero derivatives of integer/boolean
results, and the NaN-safety rules of where/max/sqrt/log."""
import math

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import arith, unary, logical, convert
from tracer import make_jaxpr, check_jaxpr, float0
from transforms import jvp, vjp, grad, value_and_grad, linearize

from check_grads import check_grads, check_jvp, check_vjp, numerical_jvp, assert_allclose

try:
    from primitives import lax as _lax
except ImportError:
    _lax = None


def op(name, module, attr=None):
    """The lax-level function `name`: from primitives.lax when it exists, else from
    the primitive module that defines it."""
    if _lax is not None and hasattr(_lax, name):
        return getattr(_lax, name)
    return getattr(module, attr or name)


L = {
    'neg': op('neg', arith), 'add': op('add', arith), 'sub': op('sub', arith),
    'mul': op('mul', arith), 'div': op('div', arith), 'pow': op('pow', arith),
    'integer_pow': op('integer_pow', arith), 'max': op('max', arith),
    'min': op('min', arith), 'abs': op('abs', arith), 'sign': op('sign', arith),
    'add_any': arith.add_any, 'safe_mul': arith.safe_mul,
    'exp': op('exp', unary), 'log': op('log', unary), 'log1p': op('log1p', unary),
    'expm1': op('expm1', unary), 'sin': op('sin', unary), 'cos': op('cos', unary),
    'tan': op('tan', unary), 'tanh': op('tanh', unary), 'logistic': op('logistic', unary),
    'sqrt': op('sqrt', unary), 'rsqrt': op('rsqrt', unary), 'erf': op('erf', unary),
    'floor': op('floor', unary), 'ceil': op('ceil', unary), 'round': op('round', unary),
    'eq': op('eq', logical), 'ne': op('ne', logical), 'lt': op('lt', logical),
    'le': op('le', logical), 'gt': op('gt', logical), 'ge': op('ge', logical),
    'and': op('bitwise_and', logical), 'or': op('bitwise_or', logical),
    'not': op('bitwise_not', logical), 'select_n': op('select_n', logical),
    'convert_element_type': op('convert_element_type', convert),
    'stop_gradient': op('stop_gradient', convert),
    'iota': op('iota', convert), 'broadcasted_iota': op('broadcasted_iota', convert),
}

_erf_ref = np.vectorize(math.erf, otypes=[np.float64])

# name: (NumPy reference, domain, differentiable)
UNARY = {
    'neg': (np.negative, 'any', True),
    'exp': (np.exp, 'any', True),
    'log': (np.log, 'pos', True),
    'log1p': (np.log1p, 'gt-1', True),
    'expm1': (np.expm1, 'any', True),
    'sin': (np.sin, 'any', True),
    'cos': (np.cos, 'any', True),
    'tan': (np.tan, 'small', True),
    'tanh': (np.tanh, 'any', True),
    'logistic': (lambda x: 1 / (1 + np.exp(-x)), 'any', True),
    'sqrt': (np.sqrt, 'pos', True),
    'rsqrt': (lambda x: 1 / np.sqrt(x), 'pos', True),
    'erf': (_erf_ref, 'any', True),
    'abs': (np.abs, 'nonzero', True),
    'sign': (np.sign, 'nonzero', False),
    'floor': (np.floor, 'nonint', False),
    'ceil': (np.ceil, 'nonint', False),
    'round': (np.round, 'nonint', False),
}

# Second-order reverse mode through safe_mul (used by the derivative rules of these
# ops) fails: safe_mul's transpose rule only handles a linear *first* operand, but its
# JVP rule with respect to the second operand emits safe_mul(x, g) with g linear.

def sample(rng, domain, shape, dtype=np.float64):
    if domain == 'any':
        x = rng.uniform(-2, 2, shape)
    elif domain == 'pos':
        x = rng.uniform(0.5, 3, shape)
    elif domain == 'gt-1':
        x = rng.uniform(-0.5, 2, shape)
    elif domain == 'small':
        x = rng.uniform(-1.2, 1.2, shape)
    elif domain == 'nonzero':
        x = rng.uniform(0.3, 2, shape) * rng.choice([-1.0, 1.0], shape)
    elif domain == 'nonint':
        x = np.floor(rng.uniform(-3, 3, shape)) + rng.uniform(0.1, 0.4, shape) \
            + rng.choice([0.0, 0.5], shape)
    else:
        raise ValueError(domain)
    return np.asarray(x, dtype)


def vtol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-13, atol=1e-14)


SHAPES = [(), (3,), (2, 3)]
DTYPES = [np.float32, np.float64]


# --- check_grads itself ---------------------------------------------------------------

def test_check_grads_accepts_correct_rules():
    x = np.array([0.3, -1.2, 2.0])
    check_grads(lambda a, b: L['sin'](a) * b, (x, x + 1.0), order=2)


def _sin_test_primitive(deriv):
    """A fresh primitive computing sin, whose JVP rule multiplies the tangent by
    deriv(x) (so deriv = cos is right)."""
    from tracer import Primitive
    from primitives._base import defjvp
    p = Primitive('test_sin')
    p.impl = np.sin
    p.abstract_eval = lambda a: a
    defjvp(p, lambda g, x: arith.mul(g, deriv(x)))
    return p


def test_check_grads_catches_wrong_first_derivative():
    x = np.array([0.3, -1.2, 2.0])
    check_grads(_sin_test_primitive(L['cos']).bind, (x,), order=2)
    f = _sin_test_primitive(L['sin']).bind          # derivative sin instead of cos
    with pytest.raises(AssertionError, match="JVP"):
        check_grads(f, (x,), order=1, modes=("fwd",))
    with pytest.raises(AssertionError, match="VJP"):
        check_grads(f, (x,), order=1, modes=("rev",))
    # tolerances are honoured: a huge one lets the wrong derivative through
    check_grads(f, (x,), order=1, modes=("fwd",), rtol=10.0, atol=10.0)


def test_check_grads_catches_wrong_second_derivative():
    # the right first derivative (cos), computed so that its own derivative is zero
    f = _sin_test_primitive(lambda v: L['cos'](L['stop_gradient'](v))).bind
    x = np.array([0.3, -1.2, 2.0])
    check_grads(f, (x,), order=1)
    with pytest.raises(AssertionError, match="of JVP"):
        check_grads(f, (x,), order=2, modes=("fwd",))
    with pytest.raises(AssertionError, match="of VJP"):
        check_grads(f, (x,), order=2, modes=("rev",))


def _linear_test_primitive(transpose_factor):
    """x -> 2x as a fresh linear primitive whose transpose multiplies by
    2 * transpose_factor (so factor 1 is right, anything else wrong)."""
    from tracer import Primitive
    from primitives._base import deflinear
    p = Primitive('test_scale2')
    p.impl = lambda x: np.multiply(x, 2.0)
    p.abstract_eval = lambda a: a
    deflinear(p, lambda ct, x: [arith.mul(p.bind(ct), transpose_factor)])
    return p


def test_check_grads_catches_wrong_transpose():
    x = np.array([0.3, -1.2, 2.0])
    good = _linear_test_primitive(1.0)
    check_grads(lambda v: L['sin'](good.bind(v)), (x,), order=2)
    bad = _linear_test_primitive(1.5)
    f = lambda v: L['sin'](bad.bind(v))
    check_grads(f, (x,), order=2, modes=("fwd",))
    with pytest.raises(AssertionError, match="VJP"):
        check_grads(f, (x,), order=1, modes=("rev",))


def test_numerical_jvp_and_assert_allclose():
    x = np.array([0.5, 1.0])
    t = np.array([1.0, -2.0])
    got = numerical_jvp(lambda a: (np.sin(a), {'c': a * a}), (x,), (t,))
    assert_allclose(got, (np.cos(x) * t, {'c': 2 * x * t}), rtol=1e-7)
    with pytest.raises(AssertionError):
        assert_allclose((1.0,), [1.0])
    with pytest.raises(AssertionError):
        assert_allclose(np.ones(2), np.ones(2) * 1.1, rtol=1e-3)


def test_check_grads_is_deterministic_and_handles_float32():
    x = np.array([0.3, 1.2], np.float32)
    check_grads(L['tanh'], (x,), order=2)
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    _, t1 = check_jvp(L['tanh'], (x,), rng1)
    _, t2 = check_jvp(L['tanh'], (x,), rng2)
    assert t1[0].dtype == np.float32 and np.array_equal(t1[0], t2[0])


# --- unary values -----------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(UNARY))
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
def test_unary_values(name, dtype, shape, request):
    ref, domain, _ = UNARY[name]
    x = sample(np.random.default_rng(1), domain, shape, dtype)
    out = L[name](x)
    assert np.shape(out) == shape
    assert np.asarray(out).dtype == np.dtype(dtype)
    expected = ref(np.asarray(x, np.float64))
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, **vtol(dtype))
    # traced: same values through make_jaxpr + eval
    from tracer import eval_jaxpr
    cj = make_jaxpr(L[name])(x)
    check_jaxpr(cj)
    assert [e.primitive.name for e in cj.jaxpr.eqns] == [name]
    out2, = eval_jaxpr(cj.jaxpr, cj.consts, x)
    np.testing.assert_array_equal(out2, out)


def test_round_is_half_to_even_like_numpy():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51])
    np.testing.assert_array_equal(unary.round(x), np.round(x))


def test_special_values():
    with np.errstate(all='ignore'):
        np.testing.assert_array_equal(L['log'](np.array([0.0, np.inf])), [-np.inf, np.inf])
        assert np.isnan(L['sqrt'](np.array(-1.0)))
        np.testing.assert_array_equal(L['exp'](np.array([-np.inf, 0.0])), [0.0, 1.0])
        np.testing.assert_allclose(L['logistic'](np.array([-1000.0, 0.0, 1000.0])),
                                   [0.0, 0.5, 1.0])
        np.testing.assert_array_equal(L['erf'](np.array([-np.inf, 0.0, np.inf])),
                                      [-1.0, 0.0, 1.0])
        np.testing.assert_array_equal(L['sign'](np.array([-2.0, 0.0, 3.0])), [-1, 0, 1])


@pytest.mark.parametrize('name', ['neg', 'abs', 'sign'])
def test_unary_integer_operands(name):
    x = np.array([-3, 0, 4], np.int32)
    out = L[name](x)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, UNARY[name][0](x))


def test_float_only_unary_rejects_integers_when_traced():
    with pytest.raises(TypeError, match='sin'):
        make_jaxpr(L['sin'])(np.arange(3))


# --- unary derivatives --------------------------------------------------------------------

DIFF_UNARY = sorted(n for n, (_, _, d) in UNARY.items() if d)


@pytest.mark.parametrize('name', DIFF_UNARY)
@pytest.mark.parametrize('shape', [(), (3,)])
def test_unary_grads(name, shape):
    _, domain, _ = UNARY[name]
    x = sample(np.random.default_rng(2), domain, shape)
    check_grads(L[name], (x,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize('name', DIFF_UNARY)
def test_unary_grads_first_order_and_fwd_over_fwd(name):
    # the part of test_unary_grads that does not involve the safe_mul bug
    _, domain, _ = UNARY[name]
    x = sample(np.random.default_rng(3), domain, (2, 3))
    check_grads(L[name], (x,), order=1, modes=("fwd", "rev"))
    check_grads(L[name], (x,), order=2, modes=("fwd",))


@pytest.mark.parametrize('name', [n
                                  for n in DIFF_UNARY])
def test_unary_grads_float32(name):
    _, domain, _ = UNARY[name]
    x = sample(np.random.default_rng(4), domain, (4,), np.float32)
    check_grads(L[name], (x,), order=1)
    out, f_vjp = vjp(L[name], x)
    ct, = f_vjp(np.ones(4, np.float32))
    assert out.dtype == np.float32 and ct.dtype == np.float32


def test_unary_second_derivatives_exact():
    x = 0.7
    assert np.isclose(grad(grad(L['sin']))(x), -np.sin(x))
    assert np.isclose(grad(grad(L['exp']))(x), np.exp(x))
    assert np.isclose(grad(grad(L['tanh']))(x), -2 * np.tanh(x) * (1 - np.tanh(x) ** 2))
    assert np.isclose(jvp(grad(L['cos']), (x,), (1.0,))[1], -np.cos(x))
    s = 1 / (1 + np.exp(-x))
    assert np.isclose(grad(grad(L['logistic']))(x), s * (1 - s) * (1 - 2 * s))
    assert np.isclose(jvp(grad(L['erf']), (x,), (1.0,))[1],
                      -4 * x / np.sqrt(np.pi) * np.exp(-x * x))


@pytest.mark.parametrize('name', ['sign', 'floor', 'ceil', 'round'])
def test_piecewise_constant_have_zero_derivative(name):
    x = sample(np.random.default_rng(5), 'nonint', (3,))
    out, t = jvp(L[name], (x,), (np.ones(3),))
    assert t.dtype == np.float64 and np.all(t == 0)
    ct, = vjp(L[name], x)[1](np.ones(3))
    assert ct.dtype == np.float64 and np.all(ct == 0)
    assert grad(lambda v: L[name](v) * v)(1.3) == L[name](1.3)
    # the linearized program of a zero-derivative op is empty
    _, f_jvp = linearize(L[name], x)
    assert make_jaxpr(f_jvp)(np.ones(3)).jaxpr.eqns == []
    np.testing.assert_array_equal(f_jvp(np.ones(3)), np.zeros(3))


# --- binary values and derivatives -------------------------------------------------------

# name: (NumPy reference, x domain, y domain)
BINARY = {
    'add': (np.add, 'any', 'any'),
    'sub': (np.subtract, 'any', 'any'),
    'mul': (np.multiply, 'any', 'any'),
    'div': (np.divide, 'any', 'nonzero'),
    'pow': (np.power, 'pos', 'any'),
    'max': (np.maximum, 'any', 'any'),
    'min': (np.minimum, 'any', 'any'),
    'add_any': (np.add, 'any', 'any'),
    'safe_mul': (np.multiply, 'any', 'any'),
}
BIN_SHAPES = [((), ()), ((3,), (3,)), ((3, 1), (4,)), ((), (2, 3)), ((2, 3), ())]


@pytest.mark.parametrize('name', sorted(BINARY))
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shapes', BIN_SHAPES)
def test_binary_values(name, dtype, shapes):
    ref, dx, dy = BINARY[name]
    rng = np.random.default_rng(6)
    x, y = sample(rng, dx, shapes[0], dtype), sample(rng, dy, shapes[1], dtype)
    out = L[name](x, y)
    expect_shape = np.broadcast_shapes(*shapes)
    assert np.shape(out) == expect_shape
    assert np.asarray(out).dtype == np.dtype(dtype)
    np.testing.assert_allclose(np.asarray(out, np.float64),
                               ref(np.asarray(x, np.float64), np.asarray(y, np.float64)),
                               **(dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else
                                  dict(rtol=1e-13, atol=1e-14)))
    cj = make_jaxpr(L[name])(x, y)
    check_jaxpr(cj)
    assert cj.jaxpr.outvars[0].aval.shape == expect_shape


@pytest.mark.parametrize('name', ['add', 'sub', 'mul', 'max', 'min'])
def test_binary_integer_values(name):
    x = np.array([[-3], [0], [5]], np.int32)
    y = np.array([2, -7, 1, 4], np.int32)
    out = L[name](x, y)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, BINARY[name][0](x, y))


def test_integer_div_rounds_toward_zero():
    x = np.array([7, -7, 7, -7], np.int64)
    y = np.array([2, 2, -2, -2], np.int64)
    out = L['div'](x, y)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [3, -3, -3, 3])


def test_python_scalars_are_weak_at_lax_level():
    x = np.ones(3, np.float32)
    for name in ('add', 'sub', 'mul', 'div', 'max', 'min', 'pow'):
        assert L[name](x, 2.0).dtype == np.float32, name
        assert L[name](2.0, x).dtype == np.float32, name
    assert str(make_jaxpr(lambda v: L['mul'](v, 2.0))(x)) == \
        "{ lambda ; a:f32[3]. let b:f32[3] = mul a 2.0:f32[] in (b,) }"


BIN_GRAD_SHAPES = [((3,), (3,)), ((3, 1), (4,)), ((), (2, 3))]


def _bin_params():
    out = []
    for name in sorted(BINARY):
        for shapes in BIN_GRAD_SHAPES:
            marks = []
            out.append(pytest.param(name, shapes, marks=marks,
                                    id=f"{name}-{shapes[0]}x{shapes[1]}"))
    return out


@pytest.mark.parametrize('name,shapes', _bin_params())
def test_binary_grads(name, shapes):
    _, dx, dy = BINARY[name]
    rng = np.random.default_rng(7)
    x, y = sample(rng, dx, shapes[0]), sample(rng, dy, shapes[1])
    check_grads(L[name], (x, y), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize('name', [n
                                  for n in sorted(BINARY)])
def test_binary_grads_first_order_and_fwd_over_fwd(name):
    _, dx, dy = BINARY[name]
    rng = np.random.default_rng(8)
    x, y = sample(rng, dx, (3, 1)), sample(rng, dy, (4,))
    check_grads(L[name], (x, y), order=1, modes=("fwd", "rev"))
    check_grads(L[name], (x, y), order=2, modes=("fwd",))
    # float32 operands give float32 tangents and cotangents
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    check_grads(L[name], (x32, y32), order=1)
    cts = vjp(L[name], x32, y32)[1](np.ones((3, 4), np.float32))
    assert [c.dtype for c in cts] == [np.float32, np.float32]
    assert [c.shape for c in cts] == [(3, 1), (4,)]


def test_binary_derivatives_exact():
    g = grad(L['div'], argnums=(0, 1))(3.0, 2.0)
    np.testing.assert_allclose(g, (0.5, -0.75))
    g = grad(L['pow'], argnums=(0, 1))(2.0, 3.0)
    np.testing.assert_allclose(g, (12.0, 8.0 * np.log(2.0)))
    g = grad(L['max'], argnums=(0, 1))(2.0, 3.0)
    np.testing.assert_allclose(g, (0.0, 1.0))
    g = grad(L['min'], argnums=(0, 1))(2.0, 3.0)
    np.testing.assert_allclose(g, (1.0, 0.0))


@pytest.mark.parametrize('shapes', [((3, 1), (4,)), ((), (3,)), ((3,), ()), ((4,), (3, 1))],
                         ids=str)
def test_grad_of_sum_of_broadcast_product(shapes):
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    ga, gb = grad(lambda u, v: _sum(L['mul'](u, v)), argnums=(0, 1))(a, b)
    out_shape = np.broadcast_shapes(*shapes)
    ones = np.ones(out_shape)
    # reference: vjp with an explicit array of ones (not grad's symbolic seed)
    ra, rb = vjp(lambda u, v: L['mul'](u, v), a, b)[1](ones)
    np.testing.assert_allclose(ga, ra, rtol=1e-14)
    np.testing.assert_allclose(gb, rb, rtol=1e-14)
    assert np.shape(ga) == shapes[0] and np.shape(gb) == shapes[1]


def test_vjp_of_broadcast_product():
    a, b = np.ones((3, 1)), np.arange(4.0)
    ga, gb = vjp(lambda u, v: L['mul'](u, v), a, b)[1](np.ones((3, 4)))
    np.testing.assert_allclose(ga, np.full((3, 1), 6.0))
    np.testing.assert_allclose(gb, np.full((4,), 3.0))
    ga, gb = vjp(lambda u, v: L['mul'](u, v), 2.0, b)[1](np.ones(4))
    assert ga == 6.0
    np.testing.assert_allclose(gb, np.full((4,), 2.0))


def _sum(x):
    from primitives import reductions
    return reductions.reduce_sum(x, tuple(range(len(np.shape(x)) if not hasattr(x, 'aval')
                                                else x.ndim)))


def test_safe_mul_grad_second_operand():
    g = grad(lambda a, b: L['safe_mul'](a, b), argnums=(0, 1))(2.0, 3.0)
    np.testing.assert_allclose(g, (3.0, 2.0))


def test_safe_mul_derivatives_first_operand():
    assert grad(lambda a: L['safe_mul'](a, 3.0))(2.0) == 3.0
    _, t = jvp(L['safe_mul'], (2.0, 3.0), (1.0, 1.0))
    assert t == 5.0
    check_grads(lambda a: L['safe_mul'](a, np.array([1.0, -2.0])), (np.array([0.5, 2.0]),))
    check_grads(L['safe_mul'], (np.array([0.5, 2.0]), np.array([1.0, -2.0])), modes=("fwd",))


def test_pow_at_zero_base():
    # d/dy 0**y is taken as 0 (not nan), d/dx x**2 at 0 is 0
    g = grad(L['pow'], argnums=(0, 1))(0.0, 2.0)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, (0.0, 0.0))


# --- integer_pow ----------------------------------------------------------------------

@pytest.mark.parametrize('y', [-3, -2, -1, 0, 1, 2, 3, 4, 7])
@pytest.mark.parametrize('dtype', DTYPES)
def test_integer_pow_values(y, dtype):
    x = sample(np.random.default_rng(9), 'nonzero', (2, 3), dtype)
    out = L['integer_pow'](x, y)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3)
    np.testing.assert_allclose(out, np.power(np.asarray(x, np.float64), y),
                               rtol=1e-5 if dtype == np.float32 else 1e-13)
    cj = make_jaxpr(lambda v: L['integer_pow'](v, y))(x)
    assert str(cj) == (f"{{ lambda ; a:{'f32' if dtype == np.float32 else 'f64'}[2,3]. let "
                       f"b:{'f32' if dtype == np.float32 else 'f64'}[2,3] = integer_pow[y={y}] a "
                       f"in (b,) }}")


def test_integer_pow_integer_operand():
    x = np.array([-2, 0, 3], np.int64)
    np.testing.assert_array_equal(L['integer_pow'](x, 3), [-8, 0, 27])
    assert L['integer_pow'](x, 3).dtype == np.int64


@pytest.mark.parametrize('y', [y
                               for y in [-3, -2, -1, 0, 1, 2, 3, 4, 7]])
def test_integer_pow_grads(y):
    x = sample(np.random.default_rng(10), 'nonzero', (3,))
    check_grads(lambda v: L['integer_pow'](v, y), (x,), order=2)


@pytest.mark.parametrize('y', [-3, -2, -1])
def test_integer_pow_negative_grads_first_order(y):
    x = sample(np.random.default_rng(10), 'nonzero', (3,))
    check_grads(lambda v: L['integer_pow'](v, y), (x,), order=1)
    check_grads(lambda v: L['integer_pow'](v, y), (x,), order=2, modes=("fwd",))


def test_integer_pow_third_derivative():
    f = lambda v: L['integer_pow'](v, 4)
    assert grad(grad(grad(f)))(1.5) == pytest.approx(24 * 1.5)
    assert grad(grad(f))(0.0) == 0.0


# --- comparisons and logic --------------------------------------------------------------

CMP = {'eq': np.equal, 'ne': np.not_equal, 'lt': np.less, 'le': np.less_equal,
       'gt': np.greater, 'ge': np.greater_equal}


@pytest.mark.parametrize('name', sorted(CMP))
@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.int32])
def test_comparison_values(name, dtype):
    x = np.array([[1], [2], [3]], dtype)
    y = np.array([3, 2, 1, 2], dtype)
    out = L[name](x, y)
    assert out.dtype == np.bool_ and out.shape == (3, 4)
    np.testing.assert_array_equal(out, CMP[name](x, y))
    assert L[name](np.asarray(2.0, dtype), np.asarray(2.0, dtype)) == CMP[name](2, 2)
    cj = make_jaxpr(L[name])(x, y)
    check_jaxpr(cj)
    assert cj.jaxpr.outvars[0].aval.dtype == np.bool_


@pytest.mark.parametrize('name', sorted(CMP))
def test_comparison_derivatives_are_float0(name):
    x = np.array([1.0, 2.0, 3.0])
    out, t = jvp(lambda v: L[name](v, 2.0), (x,), (np.ones(3),))
    np.testing.assert_array_equal(out, CMP[name](x, 2.0))
    assert t.dtype == float0 and t.shape == (3,)
    # the linearized program has no equations for a comparison
    _, f_jvp = linearize(lambda v: L[name](v, 2.0), x)
    assert make_jaxpr(f_jvp)(np.ones(3)).jaxpr.eqns == []


@pytest.mark.parametrize('dtype', [np.bool_, np.int32, np.uint8])
def test_bitwise_values(dtype):
    if dtype == np.bool_:
        x = np.array([[True], [False]])
        y = np.array([True, False, True])
    else:
        x = np.array([[5], [12]], dtype)
        y = np.array([3, 6, 255 if dtype == np.uint8 else -1], dtype)
    for name, ref in (('and', np.bitwise_and), ('or', np.bitwise_or)):
        out = L[name](x, y)
        assert out.dtype == np.dtype(dtype) and out.shape == (2, 3)
        np.testing.assert_array_equal(out, ref(x, y))
    out = L['not'](x)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, np.invert(x))
    check_jaxpr(make_jaxpr(lambda a, b: L['not'](L['and'](a, L['or'](a, b))))(x, y))


def test_bitwise_rejects_floats_when_traced():
    with pytest.raises(TypeError):
        make_jaxpr(L['and'])(np.ones(3), np.ones(3))
    with pytest.raises(TypeError):
        make_jaxpr(L['not'])(np.ones(3))


def test_logic_has_zero_derivative():
    def f(v):
        m = L['and'](L['gt'](v, 0.0), L['not'](L['gt'](v, 2.0)))
        return L['select_n'](m, L['neg'](v), L['mul'](v, v))
    x = np.array([-1.0, 1.0, 3.0])
    check_grads(f, (x,), order=2)
    _, t = jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, [-1.0, 2.0, -1.0])


# --- select_n -----------------------------------------------------------------------------

def test_select_n_values():
    which = np.array([True, False, True])
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(L['select_n'](which, a, b), [10.0, 2.0, 30.0])
    idx = np.array([0, 2, 1, 2], np.int32)
    cases = [np.arange(4.0) + 10 * k for k in range(3)]
    np.testing.assert_array_equal(L['select_n'](idx, *cases), np.choose(idx, cases))
    # broadcasting of a scalar case and of the selector
    out = L['select_n'](np.array([[True], [False]]), np.zeros((2, 3)), 1.0)
    np.testing.assert_array_equal(out, [[1, 1, 1], [0, 0, 0]])
    assert out.dtype == np.float64
    assert L['select_n'](which, a.astype(np.float32), 0.0).dtype == np.float32


def test_select_n_shape_rules():
    with pytest.raises(TypeError, match='select_n'):
        make_jaxpr(lambda w, a, b: L['select_n'](w, a, b))(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match='select_n'):
        make_jaxpr(lambda w, a, b, c: L['select_n'](w, a, b, c))(
            np.ones(3, bool), np.ones(3), np.ones(3), np.ones(3))


def test_select_n_grads():
    which = np.array([True, False, True, False])
    idx = np.array([0, 2, 1, 1], np.int32)
    rng = np.random.default_rng(11)
    a, b, c = (rng.standard_normal(4) for _ in range(3))
    check_grads(lambda x, y: L['select_n'](which, x, y), (a, b), order=2)
    check_grads(lambda x, y, z: L['select_n'](idx, x, y, z), (a, b, c), order=2)
    check_grads(lambda x: L['select_n'](which, x, 0.0), (a,), order=2)
    check_grads(lambda s: L['select_n'](which[:, None], s, np.ones((4, 3))),
                (rng.standard_normal(3),), order=2)
    ga, gb = grad(lambda x, y: _sum(L['select_n'](which, x, y)), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(ga, ~which)
    np.testing.assert_array_equal(gb, which)


# --- convert_element_type, stop_gradient, iota -------------------------------------

@pytest.mark.parametrize('src,dst', [(np.float64, np.float32), (np.float32, np.float64),
                                     (np.float64, np.int32), (np.int32, np.float64),
                                     (np.bool_, np.float32), (np.float32, np.bool_),
                                     (np.int64, np.int8)])
def test_convert_element_type_values(src, dst):
    x = np.array([-2.7, -0.5, 0.0, 1.5, 3.9]).astype(src)
    out = L['convert_element_type'](x, dst)
    assert out.dtype == np.dtype(dst)
    np.testing.assert_array_equal(out, x.astype(dst))
    cj = make_jaxpr(lambda v: L['convert_element_type'](v, dst))(x)
    check_jaxpr(cj)
    assert cj.jaxpr.outvars[0].aval.dtype == np.dtype(dst)


def test_convert_element_type_same_dtype_is_identity():
    x = np.ones(3)
    assert L['convert_element_type'](x, np.float64) is x
    cj = make_jaxpr(lambda v: L['convert_element_type'](v, np.float64))(x)
    assert len(cj.jaxpr.eqns) == 0


def test_convert_element_type_grads():
    x = np.array([0.3, -1.7, 2.2])
    check_grads(lambda v: L['mul'](L['convert_element_type'](v, np.float32), np.float32(3)),
                (x,), order=2)
    check_grads(lambda v: L['convert_element_type'](L['sin'](v), np.float64),
                (x.astype(np.float32),), order=2)
    g = grad(lambda v: L['convert_element_type'](v, np.float32) * 2.0)(np.float64(1.5))
    assert g == 2.0 and g.dtype == np.float64
    g = grad(lambda v: L['convert_element_type'](v, np.float64) * 2.0)(np.float32(1.5))
    assert g == 2.0 and g.dtype == np.float32


def test_convert_to_integer_has_zero_derivative():
    x = np.array([0.3, 1.7, 2.2])
    to_int = lambda v: L['convert_element_type'](v, np.int32)
    out, t = jvp(to_int, (x,), (np.ones(3),))
    np.testing.assert_array_equal(out, [0, 1, 2])
    assert t.dtype == float0
    roundtrip = lambda v: L['mul'](L['convert_element_type'](to_int(v), np.float64), v)
    # d/dx [int(x) * x] = int(x)
    np.testing.assert_allclose(jvp(roundtrip, (x,), (np.ones(3),))[1], [0.0, 1.0, 2.0])
    assert grad(lambda v: _sum(roundtrip(v)))(x).tolist() == [0.0, 1.0, 2.0]
    ct, = vjp(to_int, x)[1](np.zeros(3, float0))
    assert ct.dtype == np.float64 and np.all(ct == 0)


def test_integer_inputs_to_jvp_get_float0_tangents():
    n = np.array([1, 2, 3], np.int32)
    out, t = jvp(lambda k: L['mul'](k, k), (n,), (np.zeros(3, float0),))
    np.testing.assert_array_equal(out, [1, 4, 9])
    assert t.dtype == float0


def test_stop_gradient():
    x = np.array([1.0, -2.0])
    np.testing.assert_array_equal(L['stop_gradient'](x), x)
    f = lambda v: _sum(L['mul'](L['stop_gradient'](v), v))
    np.testing.assert_array_equal(grad(f)(x), x)          # only the second factor
    np.testing.assert_array_equal(grad(grad(lambda v: L['stop_gradient'](v) * v))(3.0), 0.0)
    _, t = jvp(L['stop_gradient'], (x,), (np.ones(2),))
    np.testing.assert_array_equal(t, np.zeros(2))
    _, f_jvp = linearize(L['stop_gradient'], x)
    assert make_jaxpr(f_jvp)(np.ones(2)).jaxpr.eqns == []
    # pytrees pass through
    tree = L['stop_gradient']({'a': x, 'b': (x,)})
    np.testing.assert_array_equal(tree['b'][0], x)
    cj = make_jaxpr(L['stop_gradient'])(x)
    check_jaxpr(cj)
    assert [e.primitive.name for e in cj.jaxpr.eqns] == ['stop_gradient']


def test_iota():
    out = L['iota'](np.int32, 5)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.arange(5))
    out = L['iota'](np.float32, 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])
    out = L['broadcasted_iota'](np.int64, (2, 3), 1)
    np.testing.assert_array_equal(out, np.broadcast_to(np.arange(3), (2, 3)))
    out = L['broadcasted_iota'](np.int64, (2, 3), 0)
    np.testing.assert_array_equal(out, np.broadcast_to(np.arange(2)[:, None], (2, 3)))
    cj = make_jaxpr(lambda v: L['mul'](v, L['iota'](np.float64, 4)))(np.ones(4))
    check_jaxpr(cj)
    assert [e.primitive.name for e in cj.jaxpr.eqns] == ['iota', 'mul']
    # derivative through a product with iota
    g = grad(lambda v: _sum(L['mul'](v, L['iota'](np.float64, 4))))(np.ones(4))
    np.testing.assert_array_equal(g, np.arange(4.0))


# --- zero tangents are never materialised -----------------------------------------------

def _no_zero_arrays(closed):
    """No broadcast of a zero, and no all-zero array constant, in a jaxpr."""
    from tracer import Literal
    for e in closed.jaxpr.eqns:
        if e.primitive.name in ('broadcast_in_dim', 'reshape', 'convert_element_type'):
            v = e.invars[0]
            assert not (type(v) is Literal and v.val == 0), closed
    for c in closed.consts:
        assert not (np.ndim(c) > 0 and np.all(np.asarray(c) == 0)), closed


def test_comparisons_do_not_materialise_zero_tangents():
    def f(v):
        mask = L['gt'](v, 0.0)
        w = L['select_n'](mask, L['mul'](v, 2.0), L['mul'](v, v))
        w = L['mul'](w, L['convert_element_type'](L['lt'](v, 1.0), np.float64))
        w = L['add'](w, L['mul'](L['floor'](v), v))
        w = L['add'](w, L['mul'](L['sign'](v), v))
        w = L['add'](w, L['mul'](L['stop_gradient'](v), v))
        return _sum(w)
    x = np.array([-1.5, 0.5, 2.5])
    cj = make_jaxpr(grad(f))(x)
    check_jaxpr(cj)
    _no_zero_arrays(cj)
    cj = make_jaxpr(lambda v, t: jvp(f, (v,), (t,)))(x, x)
    check_jaxpr(cj)
    _no_zero_arrays(cj)
    # numbers: d/dv sum(select(v>0, v*v, 2v) * (v<1) + floor(v) v + sign(v) v + sg(v) v)
    g = grad(f)(x)
    expected = (np.where(x > 0, 2 * x, 2.0) * (x < 1) + np.floor(x) + np.sign(x) + x)
    np.testing.assert_allclose(g, expected)


# --- NaN rules ----------------------------------------------------------------------------

def test_grad_of_where_sqrt_at_zero_is_zero():
    f = lambda x: pnp.where(x > 0, pnp.sqrt(x), 0.0)
    with np.errstate(divide='ignore', invalid='ignore'):
        assert grad(f)(0.0) == 0.0
        assert grad(f)(4.0) == 0.25
        g = grad(lambda v: _sum(f(v)))(np.array([0.0, 4.0, -1.0]))
        np.testing.assert_array_equal(g, [0.0, 0.25, 0.0])
        assert jvp(f, (0.0,), (1.0,))[1] == 0.0


def test_grad_of_where_log_at_zero_is_zero():
    f = lambda x: pnp.where(x > 0, pnp.log(x), 0.0)
    with np.errstate(divide='ignore', invalid='ignore'):
        assert grad(f)(0.0) == 0.0
        assert grad(f)(2.0) == 0.5
        assert jvp(f, (0.0,), (1.0,))[1] == 0.0


def test_grad_of_zero_times_sqrt_at_zero_is_zero():
    with np.errstate(divide='ignore', invalid='ignore'):
        assert grad(lambda x: 0.0 * pnp.sqrt(x))(0.0) == 0.0
        assert grad(lambda x: 0.0 * pnp.log(x))(0.0) == 0.0
        assert grad(lambda x: 0.0 * L['rsqrt'](x))(0.0) == 0.0
        assert grad(lambda x: 0.0 * L['div'](1.0, x))(0.0) == 0.0


def test_second_derivative_of_where_sqrt_at_zero_is_zero():
    f = lambda x: pnp.where(x > 0, pnp.sqrt(x), 0.0)
    with np.errstate(divide='ignore', invalid='ignore'):
        assert grad(grad(f))(0.0) == 0.0
        assert grad(grad(f))(4.0) == pytest.approx(-0.25 * 4.0 ** -1.5)


def test_fwd_over_rev_of_where_sqrt_at_zero_is_zero():
    f = lambda x: pnp.where(x > 0, pnp.sqrt(x), 0.0)
    with np.errstate(divide='ignore', invalid='ignore'):
        assert jvp(grad(f), (0.0,), (1.0,))[1] == 0.0
        assert jvp(grad(f), (4.0,), (1.0,))[1] == pytest.approx(-0.25 * 4.0 ** -1.5)


@pytest.mark.parametrize('fn,is_max', [(L['max'], True), (pnp.maximum, True),
                                        (L['min'], False), (pnp.minimum, False)],
                         ids=['lax.max', 'pnp.maximum', 'lax.min', 'pnp.minimum'])
def test_max_min_ties_split_evenly(fn, is_max):
    g = grad(fn, argnums=(0, 1))(1.0, 1.0)
    np.testing.assert_array_equal(g, (0.5, 0.5))
    _, t = jvp(fn, (1.0, 1.0), (1.0, 0.0))
    assert t == 0.5
    gx, gy = grad(lambda a, b: _sum(fn(a, b)), argnums=(0, 1))(
        np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0]))
    if is_max:
        np.testing.assert_array_equal(gx, [0.5, 1.0, 0.0])
        np.testing.assert_array_equal(gy, [0.5, 0.0, 1.0])
    else:
        np.testing.assert_array_equal(gx, [0.5, 0.0, 1.0])
        np.testing.assert_array_equal(gy, [0.5, 1.0, 0.0])
    # relu at 0: half
    assert grad(lambda v: fn(v, 0.0))(0.0) == 0.5
    # second derivative of a max is zero (piecewise linear)
    assert grad(grad(lambda v: fn(v, 0.0)))(0.7) == 0.0


def test_abs_derivative_at_zero_is_zero():
    assert grad(L['abs'])(0.0) == 0.0
    assert grad(L['abs'])(-2.0) == -1.0


def test_safe_mul_is_zero_where_first_factor_is_zero():
    with np.errstate(all='ignore'):
        out = L['safe_mul'](np.array([0.0, 2.0, 0.0]), np.array([np.inf, 3.0, np.nan]))
    np.testing.assert_array_equal(out, [0.0, 6.0, 0.0])
