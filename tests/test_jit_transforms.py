"""jit as a higher-order primitive: values, composition with every AD transform,
nesting, the signature cache, static arguments and errors."""
import numpy as np
import pytest

import primitives.numpy as pnp
from tracer import make_jaxpr, check_jaxpr, ConcretizationTypeError
from transforms import jit, grad, jvp, vjp, value_and_grad, linearize, hessian, jacrev
from tests.check_grads import check_grads


def f(x, y):
    return pnp.sum(pnp.sin(x) * y) + pnp.sum(x ** 2)


X = np.array([0.3, -1.2, 2.0])
Y = np.array([2.0, 0.5, -1.0])


def test_values_match_eager():
    np.testing.assert_allclose(jit(f)(X, Y), f(X, Y), rtol=1e-14)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_grad_of_jit_and_jit_of_grad(dtype):
    x, y = X.astype(dtype), Y.astype(dtype)
    want = grad(f)(x, y)
    for g in (grad(jit(f)), jit(grad(f)), jit(grad(jit(f)))):
        got = g(x, y)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(want, np.cos(x) * y + 2 * x, rtol=1e-6)


def test_jvp_vjp_linearize_of_jit():
    t = np.array([1.0, 0.5, -2.0])
    p1, t1 = jvp(jit(f), (X, Y), (t, np.zeros(3)))
    p2, t2 = jvp(f, (X, Y), (t, np.zeros(3)))
    np.testing.assert_allclose([p1, t1], [p2, t2], rtol=1e-14)
    out, f_jvp = linearize(jit(f), X, Y)
    np.testing.assert_allclose(f_jvp(t, np.zeros(3)), t2, rtol=1e-14)
    _, pullback = vjp(jit(f), X, Y)
    gx, gy = pullback(1.0)
    np.testing.assert_allclose(gx, np.cos(X) * Y + 2 * X, rtol=1e-14)
    np.testing.assert_allclose(gy, np.sin(X), rtol=1e-14)


def test_check_grads_through_jit_to_second_order():
    g = jit(lambda x: pnp.tanh(x) * pnp.exp(-x ** 2) + x[::-1] * x)
    check_grads(g, (X,), order=2, modes=("fwd", "rev"))


def test_hessian_and_hvp_of_jit():
    H = hessian(jit(f))(X, Y)
    np.testing.assert_allclose(H, np.diag(-np.sin(X) * Y + 2), rtol=1e-12)
    v = np.array([1.0, 2.0, 3.0])
    hvp = jvp(grad(jit(f)), (X, Y), (v, np.zeros(3)))[1]
    np.testing.assert_allclose(hvp, H @ v, rtol=1e-12)
    hvp2 = jit(lambda x, v: jvp(grad(f), (x, Y), (v, np.zeros(3)))[1])(X, v)
    np.testing.assert_allclose(hvp2, H @ v, rtol=1e-12)


def test_nested_jit_values_and_third_derivative():
    inner = jit(pnp.sin)
    g = jit(lambda x: inner(x) * x)
    d3 = grad(grad(grad(g)))(0.7)
    # d3/dx3 [x sin x] = -3 sin x - x cos x
    np.testing.assert_allclose(d3, -3 * np.sin(0.7) - 0.7 * np.cos(0.7), rtol=1e-12)


def test_closure_over_outer_tracer():
    # d/dx jit(y -> x*y)(3) = 3, and no perturbation confusion in nested grads
    assert grad(lambda x: jit(lambda y: x * y)(3.0))(2.0) == 3.0
    d = grad(lambda x: x * grad(lambda y: jit(lambda z: x + z)(y))(1.0))(5.0)
    assert d == 1.0


def test_printed_ir_of_jit_and_its_grad():
    txt = str(make_jaxpr(jit(f))(X, Y))
    assert txt == """\
{ lambda ; a:f64[3] b:f64[3]. let
    c:f64[] = jit[jaxpr={ lambda ; d:f64[3] e:f64[3]. let
          f:f64[3] = sin d
          g:f64[3] = mul f e
          h:f64[] = reduce_sum[axes=(0,)] g
          i:f64[3] = integer_pow[y=2] d
          j:f64[] = reduce_sum[axes=(0,)] i
          k:f64[] = add h j
        in (k,) } name=f] a b
  in (c,) }"""
    # a nested jaxpr prints on one line only when its equation's line fits 80 columns
    short = str(make_jaxpr(jit(lambda x: -x))(X))
    assert all(len(l) <= 80 for l in short.splitlines())
    assert short.splitlines()[1] == "    b:f64[3] = jit[jaxpr={ lambda ; c:f64[3]. let"
    closed = make_jaxpr(grad(jit(f)))(X, Y)
    check_jaxpr(closed)
    names = [e.params['name'] for e in closed.eqns]
    assert names == ['jvp(f)', 'transpose(jvp(f))']
    # the known half keeps only what the backward pass reads (no primal output,
    # inputs forwarded rather than returned as residuals)
    assert len(closed.eqns[0].params['jaxpr'].jaxpr.outvars) == 1
    # grad's seed is folded: no broadcast of 1.0 in the transposed jaxpr
    t = closed.eqns[1].params['jaxpr'].jaxpr
    assert [e.primitive.name for e in t.eqns] == ['mul', 'add_any']


def test_jit_of_grad_typechecks_and_nests():
    closed = make_jaxpr(jit(grad(jit(f))))(X, Y)
    check_jaxpr(closed)
    assert len(closed.eqns) == 1 and closed.eqns[0].primitive.name == 'jit'


def test_traces_once_per_signature():
    calls = []

    def h(x):
        calls.append(1)
        return x * 2.0
    jh = jit(h)
    jh(np.ones(3)); jh(np.zeros(3)); jh(np.ones(3))
    assert len(calls) == 1
    jh(np.ones(4)); jh(np.ones(3, np.float32)); jh(2.0)
    assert len(calls) == 4
    assert jh(np.ones(3, np.float32)).dtype == np.float32
    assert jh(2.0) == 4.0


def test_static_argnums_and_kwargs_and_pytrees():
    def g(x, n, scale=1.0):
        out = x
        for _ in range(n):
            out = pnp.sin(out)
        return {'y': out * scale, 'n': n}
    jg = jit(g, static_argnums=1)
    r = jg(X, 3, scale=2.0)
    np.testing.assert_allclose(r['y'], 2 * np.sin(np.sin(np.sin(X))), rtol=1e-14)
    assert r['n'] == 3
    with pytest.raises(TypeError, match="unhashable"):
        jit(lambda x, l: x, static_argnums=1)(X, [1, 2])


def test_python_control_flow_names_argument():
    def g(x, y):
        if x.sum() > 0:
            return x
        return y
    with pytest.raises(ConcretizationTypeError) as e:
        jit(g)(X, Y)
    msg = str(e.value)
    assert "argument 'x'" in msg and "argument 'y'" not in msg
    assert "static_argnums" in msg and "lax.cond" in msg
    # under grad without jit, Python control flow works
    assert np.allclose(grad(lambda x: g(x, x).sum())(X), 1.0)


def test_wrong_signature_bind_is_a_type_error():
    closed = make_jaxpr(lambda x: x + 1.0)(X)
    from transforms.jit import jit_p
    with pytest.raises(TypeError, match=r"jit \(g\): called with \(f64\[4\]\)"):
        make_jaxpr(lambda z: jit_p.bind(z, jaxpr=closed, name='g'))(np.ones(4))


def test_jacrev_of_jit_matches_analytic():
    J = jacrev(jit(lambda x: pnp.tanh(x) * 2.0))(X)
    np.testing.assert_allclose(J, np.diag(2 * (1 - np.tanh(X) ** 2)), rtol=1e-12)


def test_outputs_never_alias_inputs_or_constants():
    # compiled programs return inputs/constants as themselves and shape ops as views;
    # a jitted function's results are fresh arrays, as eager NumPy results are
    import primitives.numpy as pnp
    from transforms import jit, jacfwd
    W = np.arange(6.0).reshape(2, 3)
    a = np.arange(6.0)
    cases = [(lambda x: x, a), (lambda x: W, a), (lambda x: pnp.reshape(x, (2, 3)), a),
             (lambda x: x[1:], a), (lambda x: (x, x * 2.0), a),
             (jacfwd(lambda x: W @ x), np.ones(3))]
    for f, arg in cases:
        before_arg, before_W = arg.copy(), W.copy()
        outs = jit(f)(arg)
        outs = outs if isinstance(outs, tuple) else (outs,)
        for o in outs:
            assert isinstance(o, np.ndarray) and o.flags.writeable
            assert not np.shares_memory(o, arg) and not np.shares_memory(o, W)
            o[...] = -7.0
        np.testing.assert_array_equal(arg, before_arg)
        np.testing.assert_array_equal(W, before_W)
    np.testing.assert_array_equal(jit(jacfwd(lambda x: W @ x))(np.ones(3)), W)
