"""The transforms table of the contract: signatures, return structures, dtypes,
Python-scalar inputs, and that linearize/vjp do not re-trace."""
import numpy as np
import pytest

import primitives.numpy as pnp
import tracer
import transforms
from tracer import make_jaxpr, eval_jaxpr, check_jaxpr, float0
from transforms import (jvp, vjp, grad, value_and_grad, linearize, linear_transpose,
                        jacfwd, jacrev, hessian)


class Counted:
    """Wraps f and counts how often it is called (i.e. traced)."""

    def __init__(self, f):
        self.f = f
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.f(*args, **kwargs)


def f2(x, y):
    return pnp.sin(x) * y


X = np.array([0.1, 0.5, -0.8])
Y = np.array([1.5, -2.0, 0.3])


def test_exports():
    assert transforms.make_jaxpr is tracer.make_jaxpr
    for name in ('tree_flatten', 'tree_unflatten', 'tree_map', 'register_pytree_node',
                 'eval_jaxpr', 'make_jaxpr', 'ConcretizationTypeError',
                 'UnexpectedTracerError'):
        assert hasattr(tracer, name), name


# --- jvp ------------------------------------------------------------------------------

def test_jvp_returns_primals_and_tangents():
    out, t = jvp(f2, (X, Y), (np.ones(3), np.zeros(3)))
    np.testing.assert_allclose(out, np.sin(X) * Y, rtol=1e-15)
    np.testing.assert_allclose(t, np.cos(X) * Y, rtol=1e-15)
    out, t = jvp(lambda a: (a, {'s': pnp.sum(a)}), (X,), (Y,))
    assert isinstance(out, tuple) and isinstance(t, tuple) and set(t[1]) == {'s'}
    np.testing.assert_allclose(t[1]['s'], Y.sum(), rtol=1e-15)
    # lists work as the argument containers
    out, t = jvp(f2, [X, Y], [np.zeros(3), np.ones(3)])
    np.testing.assert_allclose(t, np.sin(X), rtol=1e-15)


def test_jvp_has_aux():
    out, t, aux = jvp(lambda a: (a * 2.0, 'aux'), (X,), (Y,), has_aux=True)
    assert aux == 'aux'
    np.testing.assert_allclose(t, 2 * Y)


# --- vjp -------------------------------------------------------------------------------

def test_vjp_fn_returns_a_tuple():
    out, f_vjp = vjp(pnp.sin, X)
    np.testing.assert_allclose(out, np.sin(X))
    cts = f_vjp(np.ones(3))
    assert isinstance(cts, tuple) and len(cts) == 1
    np.testing.assert_allclose(cts[0], np.cos(X), rtol=1e-15)
    out, f_vjp = vjp(f2, X, Y)
    gx, gy = f_vjp(np.ones(3))
    np.testing.assert_allclose(gx, np.cos(X) * Y, rtol=1e-15)
    np.testing.assert_allclose(gy, np.sin(X), rtol=1e-15)


def test_vjp_has_aux_and_reuse_without_retrace():
    f = Counted(lambda a: (pnp.sum(a * a), {'n': 3}))
    out, f_vjp, aux = vjp(f, X, has_aux=True)
    assert aux == {'n': 3}
    assert f.calls == 1
    for s in (1.0, 2.0, -0.5):
        g, = f_vjp(s)
        np.testing.assert_allclose(g, 2 * X * s, rtol=1e-15)
    assert f.calls == 1


# --- grad, value_and_grad ------------------------------------------------------------------

def test_grad_argnums():
    f = lambda x, y: pnp.sum(f2(x, y))
    assert isinstance(grad(f)(X, Y), np.ndarray)
    np.testing.assert_allclose(grad(f)(X, Y), np.cos(X) * Y, rtol=1e-15)
    np.testing.assert_allclose(grad(f, argnums=1)(X, Y), np.sin(X), rtol=1e-15)
    np.testing.assert_allclose(grad(f, argnums=-1)(X, Y), np.sin(X), rtol=1e-15)
    gs = grad(f, argnums=(1, 0))(X, Y)
    assert isinstance(gs, tuple) and len(gs) == 2
    np.testing.assert_allclose(gs[0], np.sin(X), rtol=1e-15)
    np.testing.assert_allclose(gs[1], np.cos(X) * Y, rtol=1e-15)


def test_grad_with_keyword_arguments():
    f = lambda x, scale=1.0: pnp.sum(x * x) * scale
    np.testing.assert_allclose(grad(f)(X, scale=3.0), 6 * X, rtol=1e-15)


def test_value_and_grad():
    f = lambda x, y: pnp.sum(f2(x, y))
    v, g = value_and_grad(f)(X, Y)
    np.testing.assert_allclose(v, np.sum(np.sin(X) * Y), rtol=1e-15)
    np.testing.assert_allclose(g, np.cos(X) * Y, rtol=1e-15)
    v, (gx, gy) = value_and_grad(f, argnums=(0, 1))(X, Y)
    np.testing.assert_allclose(gy, np.sin(X), rtol=1e-15)
    (v, aux), g = value_and_grad(lambda x: (pnp.sum(x), X * 2.0), has_aux=True)(X)
    np.testing.assert_allclose(aux, 2 * X)
    np.testing.assert_allclose(g, np.ones(3))
    g, aux = grad(lambda x: (pnp.sum(x), 'a'), has_aux=True)(X)
    assert aux == 'a'


def test_grad_calls_f_once():
    f = Counted(lambda x: pnp.sum(pnp.sin(x)))
    grad(f)(X)
    assert f.calls == 1
    value_and_grad(f)(X)
    assert f.calls == 2


# --- linearize ------------------------------------------------------------------------------

def test_linearize_does_not_retrace():
    f = Counted(lambda x, y: (pnp.sin(x) * y, pnp.sum(x * x)))
    out, f_jvp = linearize(f, X, Y)
    assert f.calls == 1
    np.testing.assert_allclose(out[0], np.sin(X) * Y)
    for k in range(3):
        tx, ty = np.full(3, float(k)), np.ones(3)
        t = f_jvp(tx, ty)
        assert isinstance(t, tuple) and len(t) == 2
        np.testing.assert_allclose(t[0], np.cos(X) * Y * tx + np.sin(X) * ty, rtol=1e-14)
        np.testing.assert_allclose(t[1], 2 * X @ tx, rtol=1e-14, atol=1e-15)
    assert f.calls == 1


def test_linearize_single_output_and_scalar():
    out, f_jvp = linearize(pnp.exp, 0.5)
    assert out == pytest.approx(np.exp(0.5))
    assert f_jvp(2.0) == pytest.approx(2 * np.exp(0.5))


# --- linear_transpose ----------------------------------------------------------------------

def test_linear_transpose_returns_a_tuple():
    M = np.arange(6.0).reshape(2, 3)
    f_t = linear_transpose(lambda x: M @ x, np.zeros(3))
    out = f_t(np.array([1.0, -1.0]))
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_allclose(out[0], M.T @ [1.0, -1.0])
    f_t = linear_transpose(lambda x, y: x * 2.0 + y, np.zeros(3), np.zeros(3))
    gx, gy = f_t(np.ones(3))
    np.testing.assert_array_equal(gx, 2.0 * np.ones(3))
    np.testing.assert_array_equal(gy, np.ones(3))


def test_linear_transpose_does_not_call_f_per_cotangent():
    f = Counted(lambda x: x * 3.0)
    f_t = linear_transpose(f, np.zeros(2))
    f_t(np.ones(2))
    f_t(np.ones(2))
    assert f.calls == 1


def test_linear_transpose_unused_input_gets_zero():
    f_t = linear_transpose(lambda x, y: x * 2.0, np.zeros(2), np.zeros(3))
    gx, gy = f_t(np.ones(2))
    np.testing.assert_array_equal(gy, np.zeros(3))
    assert gy.dtype == np.float64


# --- jacobians --------------------------------------------------------------------------

@pytest.mark.parametrize('jac', [jacfwd, jacrev, hessian])
def test_jacobian_output_shapes(jac):
    if jac is hessian:
        f = lambda m: pnp.sum(pnp.sin(m) * m)
        assert jac(f)(np.ones((2, 3))).shape == (2, 3, 2, 3)
        assert np.shape(jac(f)(1.5)) == ()
        return
    f = lambda m: pnp.sin(m) * 2.0
    assert jac(f)(np.ones((2, 3))).shape == (2, 3, 2, 3)
    assert jac(lambda v: pnp.sum(v))(np.ones(4)).shape == (4,)
    assert jac(lambda s: s * np.ones(5))(1.0).shape == (5,)


# --- dtypes --------------------------------------------------------------------------------

def test_float32_in_float32_out():
    x32 = X.astype(np.float32)
    y32 = Y.astype(np.float32)
    f = lambda x, y: pnp.sum(pnp.sin(x) * y * 2.0)
    g = grad(f, argnums=(0, 1))(x32, y32)
    assert [a.dtype for a in g] == [np.float32, np.float32]
    v, gv = value_and_grad(f)(x32, y32)
    assert v.dtype == np.float32 and gv.dtype == np.float32
    out, t = jvp(f, (x32, y32), (np.ones(3, np.float32), np.ones(3, np.float32)))
    assert out.dtype == np.float32 and t.dtype == np.float32
    out, f_vjp = vjp(lambda x: pnp.tanh(x) * 0.5, x32)
    assert out.dtype == np.float32 and f_vjp(np.ones(3, np.float32))[0].dtype == np.float32
    _, f_jvp = linearize(lambda x: pnp.exp(x) * 3.0, x32)
    assert f_jvp(np.ones(3, np.float32)).dtype == np.float32
    assert jacfwd(lambda x: pnp.sin(x))(x32).dtype == np.float32
    assert jacrev(lambda x: pnp.sin(x))(x32).dtype == np.float32
    assert hessian(lambda x: pnp.sum(pnp.sin(x)))(x32).dtype == np.float32
    assert grad(grad(lambda s: pnp.sin(s) * s))(np.float32(0.5)).dtype == np.float32
    np.testing.assert_allclose(g[0], np.cos(x32) * y32 * 2, rtol=1e-6)


def test_mixed_precision_gradients_follow_inputs():
    x32, y64 = X.astype(np.float32), Y
    gx, gy = grad(lambda a, b: pnp.sum(a * b), argnums=(0, 1))(x32, y64)
    assert gx.dtype == np.float32 and gy.dtype == np.float64
    np.testing.assert_allclose(gx, Y.astype(np.float32), rtol=1e-6)


def test_python_scalar_inputs():
    f = lambda x: x * x * 3.0
    g = grad(f)(2.0)
    assert g == 12.0 and np.asarray(g).dtype == np.float64
    assert grad(lambda a, b: a * b, argnums=1)(2.0, 5.0) == 2.0
    out, t = jvp(f, (2.0,), (1.0,))
    assert (out, t) == (12.0, 12.0)
    out, f_vjp = vjp(f, 2.0)
    assert out == 12.0 and f_vjp(1.0) == (12.0,)
    out, f_jvp = linearize(f, 2.0)
    assert f_jvp(0.5) == 6.0
    assert jacfwd(f)(2.0) == 12.0 and jacrev(f)(2.0) == 12.0 and hessian(f)(2.0) == 6.0
    assert linear_transpose(lambda x: x * 3.0, 1.0)(2.0) == (6.0,)
    assert value_and_grad(f)(1.0) == (3.0, 6.0)
    # a Python float with a float32 array stays float32 (weak typing)
    x32 = np.ones(2, np.float32)
    assert grad(lambda x, s: pnp.sum(x * s), argnums=1)(x32, 2.0) == 2.0
    assert grad(lambda x, s: pnp.sum(x * s))(x32, 2.0).dtype == np.float32


def test_integer_primal_in_jvp_and_vjp():
    n = np.array([1, 2], np.int32)
    out, t = jvp(lambda x, k: x * k, (X[:2].copy(), n), (np.ones(2), np.zeros(2, float0)))
    np.testing.assert_allclose(t, [1.0, 2.0])
    out, f_vjp = vjp(lambda x, k: x * k, X[:2].copy(), n)
    gx, gk = f_vjp(np.ones(2))
    np.testing.assert_allclose(gx, [1.0, 2.0])
    assert gk.dtype == float0 and gk.shape == (2,)


# --- make_jaxpr / eval_jaxpr structure --------------------------------------------------

def test_make_jaxpr_structure_and_eval_jaxpr():
    c = np.array([1.0, 2.0, 3.0])
    closed = make_jaxpr(lambda x, y: (pnp.sin(x) * c, y))(X, 2.0)
    jaxpr = closed.jaxpr
    assert len(jaxpr.invars) == 2 and len(jaxpr.outvars) == 2
    assert len(closed.consts) == len(jaxpr.constvars) == 1
    names = [e.primitive.name for e in jaxpr.eqns]
    assert names == ['sin', 'mul']
    eqn = jaxpr.eqns[1]
    assert eqn.invars[0] is jaxpr.eqns[0].outvars[0]
    assert isinstance(eqn.params, dict)
    outs = eval_jaxpr(jaxpr, closed.consts, X, 2.0)
    assert isinstance(outs, list) and len(outs) == 2
    np.testing.assert_allclose(outs[0], np.sin(X) * c)
    assert outs[1] == 2.0
    check_jaxpr(closed)


def test_make_jaxpr_of_each_transform_typechecks():
    f = lambda x, y: pnp.sum(pnp.tanh(x * y))
    for g in (grad(f), grad(f, argnums=(0, 1)),
              lambda x, y: jvp(f, (x, y), (y, x)),
              lambda x, y: vjp(f, x, y)[1](1.0),
              lambda x, y: linearize(f, x, y)[1](x, y),
              lambda x, y: value_and_grad(f)(x, y),
              jacfwd(f), jacrev(f), hessian(f)):
        closed = make_jaxpr(g)(X, Y)
        check_jaxpr(closed)
        expected = tracer.tree_leaves(g(X, Y))
        got = eval_jaxpr(closed.jaxpr, closed.consts, X, Y)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_demo_runs_and_prints_each_part(capsys, tmp_path, monkeypatch):
    # `python -m transforms` (the README's first command)
    monkeypatch.setenv('COTANGENT_CACHE_DIR', str(tmp_path))
    from transforms.__main__ import main
    main()
    out = capsys.readouterr().out
    for part in ("make_jaxpr(grad(loss))(w, x):", "make_jaxpr(hvp)(w, v)",
                 "make_jaxpr(vmap(grad(loss)", "@njit(cache=True", "def seg0("):
        assert part in out, part
    grads = [l for l in out.splitlines() if l.strip().startswith(('grad      =',
                                                                 'jit(grad(loss))(w, x) ='))]
    assert len(grads) == 2 and grads[0].split('=')[1].strip() == grads[1].split('=')[1].strip()
