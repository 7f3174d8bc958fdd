"""Eager linearization rules (`Primitive.lin`, transforms/linearize.py).

On concrete arrays, linearize records each elementwise primitive's tangent map
directly from NumPy coefficients. These tests check that path against the JVP
rules (the general path, taken when the primals are traced), against numerical
differences in both modes and to second order, and that it falls back to the
JVP rule wherever it does not apply.
"""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import arith, unary
from tracer import make_jaxpr, check_jaxpr, ClosedJaxpr
from transforms import grad, jvp, vjp, linearize, jit, hessian
from tests.check_grads import check_grads

RNG = np.random.default_rng(7)

UNARY = {
    'exp': (pnp.exp, lambda x: x),
    'expm1': (pnp.expm1, lambda x: x),
    'log': (pnp.log, lambda x: np.abs(x) + 0.5),
    'log1p': (pnp.log1p, lambda x: np.abs(x)),
    'sin': (pnp.sin, lambda x: x),
    'cos': (pnp.cos, lambda x: x),
    'tan': (pnp.tan, lambda x: x * 0.5),
    'tanh': (pnp.tanh, lambda x: x),
    'sqrt': (pnp.sqrt, lambda x: np.abs(x) + 0.5),
}
BINARY = {
    'add': lambda x, y: x + y,
    'sub': lambda x, y: x - y,
    'mul': lambda x, y: x * y,
    'div': lambda x, y: x / (y * y + 1.0),
    'neg_mul': lambda x, y: -(x * y),
    'pow2': lambda x, y: x ** 2 + y,
    'pow3': lambda x, y: x ** 3 * y,
    'pow5': lambda x, y: x ** 5 - y,
    'scalar_mul': lambda x, y: 0.5 * x + y * 3.0,
    'scalar_div': lambda x, y: x / 4.0 - y,
}


def _eqn_names(closed_or_jaxpr):
    jaxpr = getattr(closed_or_jaxpr, 'jaxpr', closed_or_jaxpr)
    return [e.primitive.name for e in jaxpr.eqns]


@pytest.mark.parametrize('name', sorted(UNARY))
@pytest.mark.parametrize('shape,dtype', [((5,), np.float64), ((3, 4), np.float64),
                                         ((6,), np.float32)])
def test_unary_rule_matches_jvp_rule(name, shape, dtype):
    fn, dom = UNARY[name]
    x = dom(RNG.standard_normal(shape)).astype(dtype)
    t = RNG.standard_normal(shape).astype(dtype)
    # the eager path (lin rule) against the JVP rule (primals traced under jit)
    y, f_jvp = linearize(fn, x)
    yj, tj = jit(lambda x, t: jvp(fn, (x,), (t,)))(x, t)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, yj, rtol=tol, atol=tol)
    np.testing.assert_allclose(f_jvp(t), tj, rtol=tol * 10, atol=tol * 10)
    assert f_jvp(t).dtype == dtype
    # one linear equation per elementwise primitive (cos: its sign folded in)
    assert _eqn_names(f_jvp.jaxpr) in (['mul'], ['safe_mul'])


@pytest.mark.parametrize('name', sorted(UNARY))
def test_unary_rule_check_grads(name):
    fn, dom = UNARY[name]
    x = dom(RNG.standard_normal((4,)))
    check_grads(fn, (x,), order=2, modes=('fwd', 'rev'))


@pytest.mark.parametrize('name', sorted(BINARY))
@pytest.mark.parametrize('shape', [(5,), (2, 3)])
def test_binary_rule_check_grads(name, shape):
    f = BINARY[name]
    x = RNG.standard_normal(shape)
    y = RNG.standard_normal(shape)
    check_grads(f, (x, y), order=2, modes=('fwd', 'rev'))


@pytest.mark.parametrize('name', sorted(BINARY))
def test_binary_rule_matches_traced_path(name):
    f = BINARY[name]
    x = RNG.standard_normal((6,))
    y = RNG.standard_normal((6,))
    gx, gy = grad(lambda x, y: pnp.sum(pnp.sin(f(x, y))), argnums=(0, 1))(x, y)
    jx, jy = jit(grad(lambda x, y: pnp.sum(pnp.sin(f(x, y))), argnums=(0, 1)))(x, y)
    np.testing.assert_allclose(gx, jx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gy, jy, rtol=1e-12, atol=1e-12)


def test_product_rule_is_one_equation():
    x = RNG.standard_normal(4)
    y = RNG.standard_normal(4)
    _, f_jvp = linearize(lambda x, y: x * y, x, y)
    assert _eqn_names(f_jvp.jaxpr) == ['add_products']
    np.testing.assert_allclose(f_jvp(np.ones(4), np.zeros(4)), y)
    np.testing.assert_allclose(f_jvp(np.zeros(4), np.ones(4)), x)
    _, f_jvp = linearize(lambda x, y: x + y, x, y)
    assert _eqn_names(f_jvp.jaxpr) == ['add_any']
    _, f_jvp = linearize(lambda x, y: x - y, x, y)
    assert _eqn_names(f_jvp.jaxpr) == ['sub']
    np.testing.assert_allclose(f_jvp(np.ones(4), 3 * np.ones(4)), -2 * np.ones(4))
    # a constant operand contributes no term; a unit coefficient no equation
    _, f_jvp = linearize(lambda x: x + y, x)
    assert _eqn_names(f_jvp.jaxpr) == []
    np.testing.assert_allclose(f_jvp(np.arange(4.0)), np.arange(4.0))


def test_scalar_factor_stays_linear():
    x = RNG.standard_normal(5)
    _, f_jvp = linearize(lambda x: x ** 3, x)
    # the derivative's factor 3 is a literal on the linear side (folded by transpose)
    assert _eqn_names(f_jvp.jaxpr) == ['mul', 'mul']
    np.testing.assert_allclose(f_jvp(np.ones(5)), 3 * x ** 2, rtol=1e-14)
    np.testing.assert_allclose(grad(lambda x: pnp.sum(x ** 3))(x), 3 * x ** 2, rtol=1e-14)


def test_broadcasting_falls_back_to_the_jvp_rule():
    x = RNG.standard_normal((3, 4))
    b = RNG.standard_normal(4)
    f = lambda x, b: pnp.sum(pnp.tanh(x * b + b) ** 2)
    gx, gb = grad(f, argnums=(0, 1))(x, b)
    jx, jb = jit(grad(f, argnums=(0, 1)))(x, b)
    np.testing.assert_allclose(gx, jx, rtol=1e-12)
    np.testing.assert_allclose(gb, jb, rtol=1e-12)
    check_grads(lambda x, b: x * b - b, (x, b), order=2)


def test_mixed_dtypes_fall_back():
    x = RNG.standard_normal(4).astype(np.float32)
    y = RNG.standard_normal(4)
    g = grad(lambda x, y: pnp.sum(x * y), argnums=(0, 1))(x, y)
    assert g[0].dtype == np.float32 and g[1].dtype == np.float64
    np.testing.assert_allclose(g[0], y.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(g[1], x.astype(np.float64), rtol=1e-6)
    # a float32 array with a Python scalar stays float32
    g32 = grad(lambda x: pnp.sum(pnp.sin(x * 0.5) / 3.0))(x)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, np.cos(x * 0.5) * 0.5 / 3.0, rtol=1e-6)


def test_zero_dimensional_and_integer_operands():
    # 0-d arrays give NumPy scalars: the general path
    x = np.array(0.3)
    np.testing.assert_allclose(grad(lambda x: pnp.sin(x) * x)(x),
                               np.cos(0.3) * 0.3 + np.sin(0.3))
    # integer operands carry no tangent
    k = np.arange(4)
    x = RNG.standard_normal(4)
    np.testing.assert_allclose(grad(lambda x: pnp.sum(x * k))(x), k.astype(float))
    y, f_jvp = linearize(lambda x: x * k, x)
    np.testing.assert_allclose(f_jvp(np.ones(4)), k)


def test_safe_rules_give_no_nan_under_zero_cotangent():
    x = np.array([0.0, 1.0, 4.0])
    for f in (pnp.sqrt, pnp.log):
        with np.errstate(divide='ignore', invalid='ignore'):
            _, f_vjp = vjp(f, x)
            ct = f_vjp(np.array([0.0, 1.0, 1.0]))[0]
        assert not np.isnan(ct).any(), (f, ct)
        assert ct[0] == 0.0
    # and the infinite derivative itself is still reported where it is asked for
    with np.errstate(divide='ignore'):
        assert grad(lambda x: pnp.sum(pnp.sqrt(x)))(x)[0] == np.inf
        g = grad(lambda x, y: pnp.sum(x / y), argnums=1)(np.ones(2), np.array([0.0, 2.0]))
    assert g[0] == -np.inf and g[1] == -0.25


def test_rule_errors_are_explained_by_the_shape_rule():
    with pytest.raises((TypeError, ValueError)) as e:
        grad(lambda x: pnp.sum(x + np.ones(4)))(np.ones(3))
    msg = str(e.value)
    assert 'add' in msg and '(3,)' in msg and '(4,)' in msg, msg


def test_nested_and_closed_over_tracers_take_the_general_path():
    x = RNG.standard_normal(4)
    v = RNG.standard_normal(4)
    f = lambda x: pnp.sum(pnp.tanh(x) * pnp.sin(x) ** 2)
    H = hessian(f)(x)
    _, hv = jvp(grad(f), (x,), (v,))
    np.testing.assert_allclose(hv, H @ v, rtol=1e-10, atol=1e-12)
    # perturbation confusion: d/dx [x * d/dy (x * y)] at y = 2 is 2 x
    g = grad(lambda x: pnp.sum(x * grad(lambda y: pnp.sum(x * y))(2.0 * np.ones(4))))(x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-12)


def test_linear_jaxpr_typechecks_and_w1_chain_is_smaller():
    from benchmarks.workloads import make_chain, w1_data, w1_numpy_grad
    x, _ = w1_data()
    f = make_chain(pnp)
    _, f_jvp = linearize(f, x)
    jaxpr = f_jvp.jaxpr
    check_jaxpr(ClosedJaxpr(jaxpr, [np.zeros(v.aval.shape, v.aval.dtype)
                                    for v in jaxpr.constvars]))
    # cos's sign is folded into its coefficient: no `neg` equations
    assert 'neg' not in _eqn_names(jaxpr)
    assert len(jaxpr.eqns) == 101
    np.testing.assert_allclose(grad(f)(x), w1_numpy_grad(x), rtol=1e-12)


# --- the same rules in eager forward mode (JVPTrace with array primals and tangents) ---

@pytest.mark.parametrize('name', sorted(UNARY))
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_eager_jvp_matches_jvp_rule(name, dtype):
    fn, dom = UNARY[name]
    x = dom(RNG.standard_normal((3, 4))).astype(dtype)
    t = RNG.standard_normal((3, 4)).astype(dtype)
    y, ty = jvp(fn, (x,), (t,))
    yj, tj = jit(lambda x, t: jvp(fn, (x,), (t,)))(x, t)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert ty.dtype == dtype
    np.testing.assert_allclose(y, yj, rtol=tol, atol=tol)
    np.testing.assert_allclose(ty, tj, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize('name', sorted(BINARY))
def test_eager_jvp_of_binary_rules(name):
    f = BINARY[name]
    x, y, tx, ty = RNG.standard_normal((4, 5))
    out, t_out = jvp(f, (x, y), (tx, ty))
    oj, tj = jit(lambda x, y, tx, ty: jvp(f, (x, y), (tx, ty)))(x, y, tx, ty)
    np.testing.assert_allclose(out, oj, rtol=1e-12)
    np.testing.assert_allclose(t_out, tj, rtol=1e-12, atol=1e-14)
    # a zero tangent for one operand
    _, t1 = jvp(f, (x, y), (tx, np.zeros(5)))
    _, t1j = jit(lambda x, y, tx: jvp(f, (x, y), (tx, np.zeros(5))))(x, y, tx)
    np.testing.assert_allclose(t1, t1j, rtol=1e-12, atol=1e-14)


def test_eager_jvp_safe_coefficients():
    x = np.array([0.0, 4.0])
    with np.errstate(divide='ignore', invalid='ignore'):
        _, t = jvp(pnp.sqrt, (x,), (np.array([0.0, 1.0]),))
        assert t[0] == 0.0 and t[1] == 0.25
        _, t = jvp(pnp.sqrt, (x,), (np.array([1.0, 1.0]),))
        assert t[0] == np.inf
        _, t = jvp(pnp.log, (x,), (np.array([0.0, 2.0]),))
        assert t[0] == 0.0 and t[1] == 0.5


def test_hvp_with_eager_forward_rules():
    a = RNG.standard_normal((6, 6)) / 4
    x = RNG.standard_normal(6)
    v = RNG.standard_normal(6)
    f = lambda x: pnp.sum(pnp.tanh(a @ x) ** 2) + 0.5 * pnp.sum(x ** 2) + pnp.sum(pnp.cos(x) * x ** 3)
    _, hv = jvp(grad(f), (x,), (v,))
    np.testing.assert_allclose(hv, hessian(f)(x) @ v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hv, jit(lambda x, v: jvp(grad(f), (x,), (v,))[1])(x, v),
                               rtol=1e-10, atol=1e-12)
