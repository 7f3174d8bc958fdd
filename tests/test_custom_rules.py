"""custom_jvp and custom_vjp: the rules are used (deliberately "wrong" rules show
it), under every transform and to second order, printed nested in jaxprs, and their
outputs are checked."""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, check_jaxpr
from transforms import (grad, jvp, vjp, jit, linearize, hessian, jacfwd, jacrev,
                        custom_jvp, custom_vjp, value_and_grad)
from tests.check_grads import check_grads

X = np.array([0.3, 1.0, -0.5])
Y = np.array([2.0, -1.0, 0.5])


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# --- custom_jvp ------------------------------------------------------------------------

@custom_jvp
def sin2(x):
    """sin, whose rule says the derivative is 2 cos (to see the rule is used)."""
    return pnp.sin(x)


@sin2.defjvp
def sin2_jvp(primals, tangents):
    x, = primals
    t, = tangents
    return sin2(x), 2.0 * pnp.cos(x) * t


def test_custom_jvp_rule_is_used_by_every_transform():
    f = lambda x: sin2(x).sum()
    close(sin2(X), np.sin(X))
    close(grad(f)(X), 2 * np.cos(X))
    close(jvp(sin2, (X,), (np.ones(3),))[1], 2 * np.cos(X))
    close(jit(grad(f))(X), 2 * np.cos(X))
    close(grad(jit(f))(X), 2 * np.cos(X))
    close(jacrev(sin2)(X), np.diag(2 * np.cos(X)))
    close(jacfwd(sin2)(X), np.diag(2 * np.cos(X)))
    out, f_jvp = linearize(sin2, X)
    close(f_jvp(Y), 2 * np.cos(X) * Y)


def test_custom_jvp_second_order_differentiates_the_rule():
    f = lambda x: sin2(x).sum()
    # d/dx of the rule's tangent 2 cos(x) is -2 sin(x)
    close(grad(lambda x: grad(f)(x).sum())(X), -2 * np.sin(X))
    close(jvp(grad(f), (X,), (np.ones(3),))[1], -2 * np.sin(X))
    close(hessian(f)(X), np.diag(-2 * np.sin(X)))
    check_jaxpr(make_jaxpr(grad(grad(lambda x: sin2(x) * 1.0)))(0.4))
    check_jaxpr(make_jaxpr(lambda x: jvp(grad(f), (x,), (x,))[1])(X))


def test_custom_jvp_prints_nested_and_evaluates_under_jit():
    txt = str(make_jaxpr(sin2)(X))
    assert txt == """\
{ lambda ; a:f64[3]. let
    b:f64[3] = custom_jvp_call[call_jaxpr={ lambda ; c:f64[3]. let
          d:f64[3] = sin c
        in (d,) } jvp=sin2_jvp name=sin2 num_consts=0] a
  in (b,) }"""
    close(jit(sin2)(X), np.sin(X))


def test_custom_jvp_a_numerically_stable_rule():
    # the JAX docs example: log1pexp with a stable derivative
    @custom_jvp
    def log1pexp(x):
        return pnp.log(1.0 + pnp.exp(x))

    @log1pexp.defjvp
    def log1pexp_jvp(primals, tangents):
        x, = primals
        t, = tangents
        return log1pexp(x), t * (1.0 - 1.0 / (1.0 + pnp.exp(x)))
    with np.errstate(over='ignore', invalid='ignore'):
        assert grad(log1pexp)(1000.0) == 1.0        # plain autodiff gives nan here
        assert np.isnan(grad(lambda x: pnp.log(1.0 + pnp.exp(x)))(1000.0))
    check_grads(log1pexp, (X,), order=2)


def test_custom_jvp_nondiff_argnums_and_defjvps():
    @custom_jvp
    def f(x, y):
        return x * y

    f.defjvps(lambda t, ans, x, y: 10.0 * t * y, lambda t, ans, x, y: x * t)
    close(grad(f, 0)(2.0, 3.0), 30.0)
    close(grad(f, 1)(2.0, 3.0), 2.0)

    from functools import partial

    @partial(custom_jvp, nondiff_argnums=(0,))
    def app(fn, x):
        return fn(x)

    @app.defjvp
    def app_jvp(fn, primals, tangents):
        x, = primals
        t, = tangents
        return app(fn, x), 3.0 * t
    close(grad(lambda x: app(pnp.sin, x))(0.5), 3.0)
    close(jit(grad(lambda x: app(pnp.sin, x)))(0.5), 3.0)


def test_custom_jvp_with_pytrees_and_keyword_arguments():
    @custom_jvp
    def f(d, scale=2.0):
        return {'s': d['a'] * scale, 't': d['b'] + 1.0}

    @f.defjvp
    def f_jvp(primals, tangents):
        d, scale = primals
        td, ts = tangents
        return f(d, scale), {'s': td['a'] * scale * 5.0, 't': td['b']}
    d = {'a': X, 'b': Y}
    g = grad(lambda d: f(d)['s'].sum() + f(d, scale=1.0)['t'].sum())(d)
    close(g['a'], 10.0 * np.ones(3))
    close(g['b'], np.ones(3))


def test_custom_jvp_rule_output_mismatch_raises_type_error():
    @custom_jvp
    def f(x):
        return x * 2

    @f.defjvp
    def bad_jvp(primals, tangents):
        return f(primals[0]), tangents[0][:2]
    with pytest.raises(TypeError, match=r"Custom JVP rule 'bad_jvp' \(test_custom_rules.py:\d+\)"
                                        r" for function 'f' \(test_custom_rules.py:\d+\) must "
                                        r"produce primal and tangent outputs with corresponding "
                                        r"shapes and dtypes: output 0 is f64\[3\].*output is f64\[2\]"):
        grad(lambda x: f(x).sum())(X)

    @f.defjvp
    def bad_dtype(primals, tangents):
        return f(primals[0]), tangents[0].astype(np.float32)
    with pytest.raises(TypeError, match=r"'bad_dtype'.*f32\[3\]"):
        jvp(f, (X,), (Y,))

    @f.defjvp
    def bad_primal(primals, tangents):
        return primals[0][0], tangents[0]
    with pytest.raises(TypeError, match=r"'bad_primal'.*primal output.*f64\[3\].*f64\[\]"):
        jvp(f, (X,), (Y,))
    with pytest.raises(AttributeError, match="No JVP defined"):
        custom_jvp(lambda x: x)(X)


def test_custom_jvp_closure_over_differentiated_value_is_an_error():
    def outer(w):
        @custom_jvp
        def f(x):
            return x * w

        @f.defjvp
        def f_jvp(p, t):
            return f(p[0]), t[0] * w
        return f(X * w).sum()   # an explicit traced argument, and w closed over
    with pytest.raises(TypeError, match="closed-over value"):
        grad(outer)(2.0)


def test_custom_jvp_inside_scan_and_cond():
    def f(x):
        c, ys = lax.scan(lambda c, a: (c + sin2(a * c), sin2(c)), 0.5, x)
        return c + ys.sum()

    g = grad(f)(X)
    # compare with the unrolled loop using the same custom function
    def unrolled(x):
        c, tot = 0.5, 0.0
        for a in x:
            tot = tot + sin2(c)
            c = c + sin2(a * c)
        return c + tot
    close(g, grad(unrolled)(X))
    close(jit(grad(f))(X), grad(unrolled)(X))
    h = lambda x: lax.cond(x > 0, sin2, pnp.sin, x)
    close(grad(h)(0.5), 2 * np.cos(0.5))
    close(grad(h)(-0.5), np.cos(-0.5))


def test_stop_gradient_in_a_custom_jvp_rule():
    @custom_jvp
    def f(x):
        return x ** 2

    @f.defjvp
    def f_jvp(p, t):
        x, = p
        return f(x), 2 * lax.stop_gradient(x) * t[0]
    close(grad(f)(3.0), 6.0)
    close(grad(grad(f))(3.0), 0.0)   # the stopped factor has no derivative


# --- custom_vjp ------------------------------------------------------------------------

@custom_vjp
def mulsin(x, y):
    return pnp.sin(x) * y


def mulsin_fwd(x, y):
    return mulsin(x, y), (pnp.cos(x), pnp.sin(x), y)


def mulsin_bwd(res, ct):
    c, s, y = res
    return 3.0 * c * y * ct, s * ct      # the x-derivative tripled, to see the rule used


mulsin.defvjp(mulsin_fwd, mulsin_bwd)


def test_custom_vjp_rule_is_used_by_reverse_mode():
    f = lambda x, y: mulsin(x, y).sum()
    gx, gy = grad(f, (0, 1))(X, Y)
    close(gx, 3 * np.cos(X) * Y)
    close(gy, np.sin(X))
    for g in (jit(grad(f)), grad(jit(f)), jit(grad(jit(f)))):
        close(g(X, Y), 3 * np.cos(X) * Y)
    out, pullback = vjp(mulsin, X, Y)
    close(pullback(Y)[0], 3 * np.cos(X) * Y * Y)
    close(jacrev(mulsin)(X, Y), np.diag(3 * np.cos(X) * Y))


def test_custom_vjp_forward_mode_is_the_transposed_bwd():
    # JAX cannot do this (jax issues 16049, 3996): jvp uses the transpose of bwd
    close(jvp(lambda x: mulsin(x, Y), (X,), (np.ones(3),))[1], 3 * np.cos(X) * Y)
    close(jacfwd(mulsin)(X, Y), np.diag(3 * np.cos(X) * Y))
    out, f_jvp = linearize(lambda x: mulsin(x, Y), X)
    close(f_jvp(X), 3 * np.cos(X) * Y * X)


def test_custom_vjp_forward_over_reverse_and_reverse_over_reverse():
    f = lambda x: mulsin(x, Y).sum()
    # derivatives of higher order differentiate fwd and bwd: d/dx (3 cos x y) = -3 sin x y
    want = -3 * np.sin(X) * Y
    close(jvp(grad(f), (X,), (np.ones(3),))[1], want)
    close(grad(lambda x: grad(f)(x).sum())(X), want)
    close(hessian(f)(X), np.diag(want))
    close(jvp(lambda x: jvp(lambda x: mulsin(x, Y), (x,), (np.ones(3),))[1],
              (X,), (np.ones(3),))[1], want)
    close(jit(lambda x: jvp(grad(f), (x,), (np.ones(3),))[1])(X), want)
    check_jaxpr(make_jaxpr(lambda x: jvp(grad(f), (x,), (x,))[1])(X))
    check_jaxpr(make_jaxpr(grad(lambda x: grad(f)(x).sum()))(X))


def test_custom_vjp_prints_nested():
    txt = str(make_jaxpr(mulsin)(X, Y))
    assert txt == """\
{ lambda ; a:f64[3] b:f64[3]. let
    c:f64[3] = custom_vjp_call[bwd=mulsin_bwd call_jaxpr={ lambda ; d:f64[3] e:f64[3]. let
          f:f64[3] = sin d
          g:f64[3] = mul f e
        in (g,) } fwd=mulsin_fwd name=mulsin num_consts=0] a b
  in (c,) }"""
    lin = str(make_jaxpr(lambda x: linearize(lambda x: mulsin(x, Y), x)[1](X))(X))
    assert 'custom_lin[bwd=mulsin_bwd num_res=3]' in lin


def test_custom_vjp_gradient_clipping_and_none_cotangents():
    from functools import partial

    @partial(custom_vjp, nondiff_argnums=(0,))
    def clip_gradient(lim, x):
        return x

    def fwd(lim, x):
        return x, None

    def bwd(lim, _, g):
        return (pnp.clip(g, -lim, lim),)
    clip_gradient.defvjp(fwd, bwd)
    close(grad(lambda x: clip_gradient(0.5, 3.0 * x).sum())(X), 0.5 * 3 * np.ones(3))
    # the cotangent 1 of each output is clipped to 0.5, then times d(x*x)/dx
    close(jit(grad(lambda x: clip_gradient(0.5, x * x).sum()))(X), 0.5 * 2 * X)

    @custom_vjp
    def f(x, d):
        return x * d['k']

    f.defvjp(lambda x, d: (f(x, d), d['k']), lambda k, g: (g * k, None))
    g = grad(lambda d: f(X, d).sum())({'k': Y})
    close(g['k'], np.zeros(3))
    close(grad(lambda x: f(x, {'k': Y}).sum())(X), Y)


def test_custom_vjp_in_scan_body():
    def f(x):
        return lax.scan(lambda c, a: (mulsin(c, a), c), 0.7, x)[0]

    def unrolled(x):
        c = 0.7
        for a in x:
            c = mulsin(c, a)
        return c
    close(grad(f)(X), grad(unrolled)(X))
    close(jvp(f, (X,), (Y,))[1], jvp(unrolled, (X,), (Y,))[1])


def test_custom_vjp_rule_output_mismatch_raises_type_error():
    @custom_vjp
    def f(x):
        return x * 2

    def fwd(x):
        return f(x), x

    def bwd_bad_shape(x, g):
        return (g[:2],)
    f.defvjp(fwd, bwd_bad_shape)
    with pytest.raises(TypeError, match=r"Custom VJP bwd rule 'bwd_bad_shape' \("
                                        r"test_custom_rules.py:\d+\) for function 'f'.*"
                                        r"f64\[3\] but bwd produced f64\[2\]"):
        grad(lambda x: f(x).sum())(X)

    def bwd_not_tuple(x, g):
        return g
    f.defvjp(fwd, bwd_not_tuple)
    with pytest.raises(TypeError, match=r"bwd_not_tuple.*must produce a tuple of length"):
        grad(lambda x: f(x).sum())(X)

    def fwd_bad(x):
        return (f(x).astype(np.float32), x)
    f.defvjp(fwd_bad, bwd_bad_shape)
    with pytest.raises(TypeError, match=r"fwd rule 'fwd_bad'.*f64\[3\] but fwd produced f32\[3\]"):
        grad(lambda x: f(x).sum())(X)

    def fwd_not_pair(x):
        return f(x)
    f.defvjp(fwd_not_pair, bwd_bad_shape)
    with pytest.raises(TypeError, match=r"fwd_not_pair.*must produce a pair"):
        grad(lambda x: f(x).sum())(X)
    with pytest.raises(AttributeError, match="No VJP defined"):
        custom_vjp(lambda x: x)(X)


def test_custom_vjp_closure_over_differentiated_value_is_an_error():
    def outer(w):
        @custom_vjp
        def f(x):
            return x * w
        f.defvjp(lambda x: (f(x), None), lambda r, g: (g,))
        return f(X * w).sum()
    with pytest.raises(TypeError, match="closed-over value"):
        grad(outer)(2.0)
    # a closure over a constant is fine
    w = 2.0

    @custom_vjp
    def g(x):
        return x * w
    g.defvjp(lambda x: (g(x), None), lambda r, ct: (ct * w,))
    close(grad(lambda x: g(x).sum())(X), 2 * np.ones(3))
