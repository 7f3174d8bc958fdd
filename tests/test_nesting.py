"""Nested transforms: higher derivatives, Hessian-vector products in every mode
combination, perturbation confusion, linearize / linear_transpose, has_aux and
argnums, and dense Jacobians/Hessians. Every transformed function is also staged
with make_jaxpr and typechecked."""
import numpy as np
import pytest

import primitives.numpy as pnp
from tracer import make_jaxpr, check_jaxpr, eval_jaxpr, tree_leaves, tree_structure
from transforms import (jvp, vjp, grad, value_and_grad, linearize, linear_transpose,
                        jacfwd, jacrev, hessian)

from check_grads import check_grads, numerical_jvp, assert_allclose

RNG = np.random.default_rng(1234)
A = RNG.standard_normal((4, 4)) * 0.5
W = RNG.standard_normal((2, 3))
X4 = RNG.standard_normal(4)
V4 = RNG.standard_normal(4)


def staged_ok(transformed, *args):
    """make_jaxpr of a transformed function typechecks and evaluates to the same
    values as calling it."""
    closed = make_jaxpr(transformed)(*args)
    check_jaxpr(closed)
    flat_args = tree_leaves(args)
    outs = eval_jaxpr(closed.jaxpr, closed.consts, *flat_args)
    expected = tree_leaves(transformed(*args))
    assert len(outs) == len(expected)
    for o, e in zip(outs, expected):
        np.testing.assert_allclose(np.asarray(o, np.float64) if np.asarray(o).dtype.kind == 'f'
                                   else o, e, rtol=1e-12, atol=1e-12)
    return closed


# --- higher derivatives of scalar functions ------------------------------------------

SCALAR_FUNS = {
    # name: (f, f', f'', f''')
    'sin': (pnp.sin, np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x)),
    'x**4': (lambda x: x ** 4, lambda x: 4 * x ** 3, lambda x: 12 * x ** 2, lambda x: 24 * x),
    'x*sin(x)': (lambda x: x * pnp.sin(x),
                 lambda x: np.sin(x) + x * np.cos(x),
                 lambda x: 2 * np.cos(x) - x * np.sin(x),
                 lambda x: -3 * np.sin(x) - x * np.cos(x)),
    'exp(x)*x**2': (lambda x: pnp.exp(x) * x * x,
                    lambda x: np.exp(x) * (x * x + 2 * x),
                    lambda x: np.exp(x) * (x * x + 4 * x + 2),
                    lambda x: np.exp(x) * (x * x + 6 * x + 6)),
    'tanh(x)*cos(x)': (lambda x: pnp.tanh(x) * pnp.cos(x), None, None, None),
}


@pytest.mark.parametrize('name', sorted(SCALAR_FUNS))
def test_higher_derivatives(name):
    f, d1, d2, d3 = SCALAR_FUNS[name]
    x = 0.7
    if d1 is None:   # no closed form: compare with finite differences of lower ones
        h = 1e-5
        d1 = lambda v: (f(v + h) - f(v - h)) / (2 * h)
        d2 = lambda v: (grad(f)(v + h) - grad(f)(v - h)) / (2 * h)
        d3 = lambda v: (grad(grad(f))(v + h) - grad(grad(f))(v - h)) / (2 * h)
        tol = 1e-6
    else:
        tol = 1e-12
    np.testing.assert_allclose(grad(f)(x), d1(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad(grad(f))(x), d2(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad(grad(grad(f)))(x), d3(x), rtol=tol, atol=tol)
    # jvp of grad, grad of jvp, jvp of jvp of jvp
    np.testing.assert_allclose(jvp(grad(f), (x,), (1.0,))[1], d2(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad(lambda v: jvp(f, (v,), (1.0,))[1])(x), d2(x),
                               rtol=tol, atol=tol)
    d = lambda g: (lambda v: jvp(g, (v,), (1.0,))[1])
    np.testing.assert_allclose(d(d(d(f)))(x), d3(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(jvp(grad(grad(f)), (x,), (1.0,))[1], d3(x), rtol=tol, atol=tol)
    for g in (grad(f), grad(grad(f)), grad(grad(grad(f))), jvp_fn(grad(f)),
              grad(jvp_fn(f)), jvp_fn(jvp_fn(grad(f)))):
        staged_ok(g, x)


def jvp_fn(f):
    return lambda v: jvp(f, (v,), (1.0,))[1]


def test_check_grads_third_order():
    check_grads(lambda x: x * pnp.sin(x), (np.array([0.3, 1.1]),), order=3)


# --- Hessian-vector products ---------------------------------------------------------------

def f_vec(x):
    return pnp.sum(pnp.tanh(A @ x)) + pnp.sum(x * x * x) / 3.0


def hess_closed_form(x):
    t = np.tanh(A @ x)
    return A.T @ np.diag(-2 * t * (1 - t * t)) @ A + np.diag(2 * x)


def test_hessian_closed_form():
    H = hessian(f_vec)(X4)
    assert H.shape == (4, 4)
    np.testing.assert_allclose(H, hess_closed_form(X4), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H, H.T, atol=1e-14)
    staged_ok(hessian(f_vec), X4)


def test_hvp_fwd_over_rev():
    hvp = lambda x, v: jvp(grad(f_vec), (x,), (v,))[1]
    np.testing.assert_allclose(hvp(X4, V4), hessian(f_vec)(X4) @ V4, rtol=1e-12, atol=1e-12)
    staged_ok(hvp, X4, V4)


def test_hvp_rev_over_rev():
    hvp = lambda x, v: grad(lambda y: pnp.sum(grad(f_vec)(y) * v))(x)
    np.testing.assert_allclose(hvp(X4, V4), hessian(f_vec)(X4) @ V4, rtol=1e-12, atol=1e-12)
    staged_ok(hvp, X4, V4)


def test_hvp_rev_over_fwd():
    hvp = lambda x, v: grad(lambda y: jvp(f_vec, (y,), (v,))[1])(x)
    np.testing.assert_allclose(hvp(X4, V4), hessian(f_vec)(X4) @ V4, rtol=1e-12, atol=1e-12)
    staged_ok(hvp, X4, V4)


def test_hvp_vjp_of_vjp_and_linearize():
    def g(x):
        _, f_vjp = vjp(f_vec, x)
        return f_vjp(1.0)[0]
    _, g_vjp = vjp(g, X4)
    np.testing.assert_allclose(g_vjp(V4)[0], hessian(f_vec)(X4) @ V4, rtol=1e-12, atol=1e-12)
    _, g_lin = linearize(grad(f_vec), X4)
    np.testing.assert_allclose(g_lin(V4), hessian(f_vec)(X4) @ V4, rtol=1e-12, atol=1e-12)
    staged_ok(lambda x, v: vjp(g, x)[1](v)[0], X4, V4)


def test_hessian_of_vector_function_check_grads():
    check_grads(f_vec, (X4,), order=2)
    check_grads(grad(f_vec), (X4,), order=1)


# --- perturbation confusion -------------------------------------------------------------

def d_grad(f):
    return grad(f)


def d_jvp(f):
    return lambda x: jvp(f, (x,), (1.0,))[1]


def d_lin(f):
    return lambda x: linearize(f, x)[1](1.0)


def d_vjp(f):
    return lambda x: vjp(f, x)[1](1.0)[0]


DERIVS = {'grad': d_grad, 'jvp': d_jvp, 'linearize': d_lin, 'vjp': d_vjp}


@pytest.mark.parametrize('outer', sorted(DERIVS))
@pytest.mark.parametrize('inner', sorted(DERIVS))
def test_perturbation_confusion(outer, inner):
    Do, Di = DERIVS[outer], DERIVS[inner]
    # d/dx [x * d/dy (x + y)] = d/dx [x * 1] = 1 (confusion would give 2)
    f = lambda x: x * Di(lambda y: x + y)(1.0)
    for x in (0.0, 2.0, -3.5):
        assert Do(f)(x) == 1.0
    # d/dx [x * d/dy (x * y)] = d/dx [x * x] = 2x
    g = lambda x: x * Di(lambda y: x * y)(1.0)
    assert Do(g)(3.0) == 6.0
    # closure over the outer value inside the inner function's body only
    h = lambda x: Di(lambda y: pnp.sin(x * y))(2.0)      # x cos(2x)
    np.testing.assert_allclose(Do(h)(0.5), np.cos(1.0) - 2 * 0.5 * np.sin(1.0), rtol=1e-12)
    staged_ok(Do(f), 2.0)
    staged_ok(Do(g), 3.0)
    staged_ok(Do(h), 0.5)


def test_perturbation_confusion_three_levels():
    # d/dx [ x * d/dy [ y * d/dz (x + y + z) ] ] = d/dx [x * 1] = 1
    f = lambda x: x * grad(lambda y: y * jvp(lambda z: x + y + z, (1.0,), (1.0,))[1])(1.0)
    assert grad(f)(2.0) == 1.0
    assert jvp(f, (2.0,), (1.0,))[1] == 1.0
    staged_ok(grad(f), 2.0)


# --- linearize and linear_transpose ---------------------------------------------------

def test_linearize_matches_jvp():
    f = lambda x, y: (pnp.sin(x) * y, pnp.sum(pnp.tanh(x * y)))
    x, y = RNG.standard_normal(3), RNG.standard_normal(3)
    out, f_jvp = linearize(f, x, y)
    assert_allclose(out, f(x, y), rtol=1e-15)
    for _ in range(3):
        tx, ty = RNG.standard_normal(3), RNG.standard_normal(3)
        assert_allclose(f_jvp(tx, ty), jvp(f, (x, y), (tx, ty))[1], rtol=1e-13, atol=1e-14)
    # f_jvp is linear
    t1, t2 = RNG.standard_normal(3), RNG.standard_normal(3)
    a = f_jvp(2.0 * t1 + t2, t1)
    b1, b2 = f_jvp(t1, 0.5 * t1), f_jvp(t2, np.zeros(3))
    assert_allclose(a, tuple(2.0 * u + w for u, w in zip(b1, b2)), rtol=1e-12, atol=1e-14)
    staged_ok(lambda a, b: linearize(f, a, b)[1](b, a), x, y)


def test_linear_transpose_of_affine_free_linear_map():
    lin = lambda x: A @ x + 2.0 * x
    f_t = linear_transpose(lin, X4)
    ct = RNG.standard_normal(4)
    out = f_t(ct)
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_allclose(out[0], A.T @ ct + 2 * ct, rtol=1e-13)
    # transposing twice gives back the map
    f_tt = linear_transpose(lambda c: f_t(c)[0], ct)
    np.testing.assert_allclose(f_tt(X4)[0], lin(X4), rtol=1e-13)
    staged_ok(lambda c: f_t(c)[0], ct)


def test_linear_transpose_multiple_args_and_vjp_agree():
    lin = lambda x, y: (W @ x - y, pnp.sum(x) * 3.0)
    x, y = RNG.standard_normal(3), RNG.standard_normal(2)
    ct = (RNG.standard_normal(2), 1.5)
    gx, gy = linear_transpose(lin, x, y)(ct)
    np.testing.assert_allclose(gx, W.T @ ct[0] + 3.0 * 1.5, rtol=1e-13)
    np.testing.assert_allclose(gy, -ct[0], rtol=1e-13)
    vx, vy = vjp(lin, x, y)[1](ct)
    np.testing.assert_allclose(vx, gx, rtol=1e-13)
    np.testing.assert_allclose(vy, gy, rtol=1e-13)
    staged_ok(lambda c0: linear_transpose(lin, x, y)((c0, 1.5)), ct[0])


# --- has_aux, argnums ----------------------------------------------------------------------

def test_vjp_has_aux():
    def f(x):
        y = pnp.sin(x)
        return y * 2.0, {'note': 'aux', 'k': 3}
    x = np.array([0.1, 0.2])
    out, f_vjp, aux = vjp(f, x, has_aux=True)
    np.testing.assert_allclose(out, 2 * np.sin(x))
    assert aux == {'note': 'aux', 'k': 3}
    g, = f_vjp(np.ones(2))
    np.testing.assert_allclose(g, 2 * np.cos(x))
    staged_ok(lambda v: vjp(f, v, has_aux=True)[1](v)[0], x)


def test_traced_aux_is_returned_as_values():
    def f(x):
        y = pnp.sin(x)
        return pnp.sum(y * 2.0), {'y': y}
    x = np.array([0.1, 0.2])
    for aux in (vjp(f, x, has_aux=True)[2], grad(f, has_aux=True)(x)[1],
                value_and_grad(f, has_aux=True)(x)[0][1],
                jvp(f, (x,), (x,), has_aux=True)[2], linearize(f, x, has_aux=True)[2]):
        assert type(aux['y']) is np.ndarray
        np.testing.assert_allclose(aux['y'], np.sin(x))


def test_value_and_grad_argnums_and_has_aux():
    def f(x, y, z):
        loss = pnp.sum(x * y) + z ** 2
        return loss, (np.ones(2), 'tag')
    x, y, z = np.array([1.0, 2.0]), np.array([3.0, -1.0]), 1.5
    (val, aux), g = value_and_grad(f, argnums=(0, 2), has_aux=True)(x, y, z)
    assert val == pytest.approx(1.0 * 3 - 2 + 2.25)
    assert aux[1] == 'tag'
    np.testing.assert_array_equal(aux[0], [1.0, 1.0])
    assert isinstance(g, tuple) and len(g) == 2
    np.testing.assert_array_equal(g[0], y)
    assert g[1] == 3.0
    (val1, _), g1 = value_and_grad(f, argnums=1, has_aux=True)(x, y, z)
    assert val1 == val
    np.testing.assert_array_equal(g1, x)
    g2, aux2 = grad(f, argnums=(1,), has_aux=True)(x, y, z)
    assert isinstance(g2, tuple) and len(g2) == 1
    np.testing.assert_array_equal(g2[0], x)
    g3 = grad(lambda a, b: f(a, b, z)[0], argnums=-1)(x, y)
    np.testing.assert_array_equal(g3, x)
    staged_ok(lambda a, b, c: value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(a, b, c)[1],
              x, y, np.float64(z))


def test_grad_of_value_and_grad():
    f = lambda x: pnp.sin(x) * x
    vg = lambda x: value_and_grad(f)(x)[1]
    np.testing.assert_allclose(grad(vg)(0.3), 2 * np.cos(0.3) - 0.3 * np.sin(0.3))
    staged_ok(grad(vg), 0.3)


# --- jacobians ------------------------------------------------------------------------------

def numerical_jacobian(f, args, argnum, eps=1e-6):
    args = [np.asarray(a, np.float64) for a in args]
    x = args[argnum]
    out0 = np.asarray(f(*args))
    jac = np.zeros(out0.shape + x.shape)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        ts = [np.zeros_like(a) for a in args]
        ts[argnum] = e
        col = numerical_jvp(f, args, ts, eps)
        jac[(Ellipsis,) + idx] = col
    return jac


def f_jac(x, y):
    # x: (3,), y: (2, 2) -> (2,)
    return pnp.tanh(W @ x) * pnp.sum(y * y, axis=1)


X3 = RNG.standard_normal(3)
Y22 = RNG.standard_normal((2, 2))


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['jacfwd', 'jacrev'])
def test_jacobian_shapes_and_values(jac):
    jx = jac(f_jac)(X3, Y22)
    assert jx.shape == (2, 3)
    np.testing.assert_allclose(jx, numerical_jacobian(f_jac, (X3, Y22), 0), rtol=1e-7,
                               atol=1e-8)
    jy = jac(f_jac, argnums=1)(X3, Y22)
    assert jy.shape == (2, 2, 2)
    np.testing.assert_allclose(jy, numerical_jacobian(f_jac, (X3, Y22), 1), rtol=1e-7,
                               atol=1e-8)
    both = jac(f_jac, argnums=(0, 1))(X3, Y22)
    assert isinstance(both, tuple) and len(both) == 2
    np.testing.assert_allclose(both[0], jx, rtol=1e-14)
    np.testing.assert_allclose(both[1], jy, rtol=1e-14)
    staged_ok(jac(f_jac, argnums=(0, 1)), X3, Y22)


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['jacfwd', 'jacrev'])
def test_jacobian_scalar_and_matrix_shapes(jac):
    # scalar -> matrix, matrix -> scalar, matrix -> matrix
    j = jac(lambda s: s * W)(2.0)
    assert np.shape(j) == (2, 3)
    np.testing.assert_allclose(j, W)
    j = jac(lambda m: pnp.sum(m * m))(W)
    assert j.shape == (2, 3)
    np.testing.assert_allclose(j, 2 * W)
    j = jac(lambda m: pnp.sin(m))(W)
    assert j.shape == (2, 3, 2, 3)
    expected = np.zeros((2, 3, 2, 3))
    for i, k in np.ndindex(2, 3):
        expected[i, k, i, k] = np.cos(W[i, k])
    np.testing.assert_allclose(j, expected, atol=1e-15)


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['jacfwd', 'jacrev'])
def test_jacobian_pytree_input_and_output(jac):
    def f(p):
        return {'u': pnp.tanh(W @ p['x']) * p['s'], 'v': pnp.sum(p['y'] * p['y'])}
    p = {'x': X3, 'y': Y22, 's': np.float64(0.7)}
    J = jac(f)(p)
    assert tree_structure(J) == tree_structure({'u': {'s': 0, 'x': 0, 'y': 0},
                                                'v': {'s': 0, 'x': 0, 'y': 0}})
    assert J['u']['x'].shape == (2, 3)
    assert J['u']['y'].shape == (2, 2, 2)
    assert np.shape(J['u']['s']) == (2,)
    assert J['v']['y'].shape == (2, 2)
    assert np.shape(J['v']['s']) == ()
    np.testing.assert_allclose(J['u']['s'], np.tanh(W @ X3), rtol=1e-13)
    np.testing.assert_allclose(J['u']['y'], 0.0)
    np.testing.assert_allclose(J['v']['y'], 2 * Y22, rtol=1e-13)
    fx = lambda x: f({'x': x, 'y': Y22, 's': p['s']})['u']
    np.testing.assert_allclose(J['u']['x'], numerical_jacobian(fx, (X3,), 0), rtol=1e-7,
                               atol=1e-8)
    staged_ok(jac(f), p)


def test_jacfwd_equals_jacrev():
    g = lambda x, y: pnp.reshape(pnp.sin(x), (3, 1)) * y
    x, y = RNG.standard_normal(3), RNG.standard_normal(2)
    for argnums in (0, 1, (0, 1)):
        a = jacfwd(g, argnums)(x, y)
        b = jacrev(g, argnums)(x, y)
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        staged_ok(jacfwd(g, argnums), x, y)
        staged_ok(jacrev(g, argnums), x, y)


def test_hessian_shapes_argnums_and_values():
    def g(x, y):
        return pnp.sum(pnp.tanh(W @ x) * y) + pnp.sum(x ** 3)
    x, y = X3, RNG.standard_normal(2)
    H = hessian(g)(x, y)
    assert H.shape == (3, 3)
    num = numerical_jacobian(lambda v: grad(g)(v, y), (x,), 0)
    np.testing.assert_allclose(H, num, rtol=1e-6, atol=1e-7)
    Hxy = hessian(g, argnums=(0, 1))(x, y)
    assert isinstance(Hxy, tuple) and len(Hxy) == 2
    assert Hxy[0][0].shape == (3, 3) and Hxy[0][1].shape == (3, 2)
    assert Hxy[1][0].shape == (2, 3) and Hxy[1][1].shape == (2, 2)
    np.testing.assert_allclose(Hxy[0][0], H, rtol=1e-13)
    np.testing.assert_allclose(Hxy[0][1], Hxy[1][0].T, rtol=1e-13)
    np.testing.assert_allclose(Hxy[1][1], 0.0, atol=1e-15)   # g is linear in y
    t = np.tanh(W @ x)
    np.testing.assert_allclose(Hxy[1][0], W * (1 - t * t)[:, None], rtol=1e-13)
    # hessian of a matrix input: shape in.shape + in.shape
    Hm = hessian(lambda m: pnp.sum(pnp.sin(m)))(Y22)
    assert Hm.shape == (2, 2, 2, 2)
    staged_ok(hessian(g, argnums=(0, 1)), x, y)
