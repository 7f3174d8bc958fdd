"""Nested forward-over-reverse on concrete arrays (jvp of grad, W3): eager
linearization whose primals are tracers of an outer eager jvp ("dual numbers")
takes the dual shortcuts of transforms/linearize.py (the primitives' lin and
lin_dual rules, arithmetic, structural primitives, dot_general) instead of the JVP
rules. Each case is checked against the general path (the shortcuts switched off),
against numerical differences of the gradient, and for the shortcut being taken.
"""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from primitives.arith import integer_pow
from tracer import make_jaxpr, eval_jaxpr, check_jaxpr
from transforms import grad, jvp, vjp, linearize, hessian
import importlib
lin_mod = importlib.import_module("transforms.linearize")
jvp_mod = importlib.import_module("transforms.jvp")

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _no_replay(monkeypatch):
    """Top-level jvp(grad(f)) replays a cached transform (transforms/replay.py);
    these tests are about the dual numbers that jvp of grad still uses everywhere
    else (jvp(lambda x: grad(f)(x), ...), inside other transforms), so they switch
    replay off."""
    monkeypatch.setattr(importlib.import_module("transforms.replay"), 'ENABLED', False)

DUAL_METHODS = ('_dual_unary', '_dual_arith', '_dual_structural', '_dual_dot')


def _general(m):
    """Switch the dual shortcuts off (the JVP rules run, as before them)."""
    for name in DUAL_METHODS:
        m.setattr(lin_mod.LinearizeTrace, name, lambda self, *a, **k: None)


def _count_rules(m):
    """Count the LinearizeTrace operations that fall back to a JVP rule."""
    calls = []
    orig = lin_mod.LinearizeTrace.process_jvp_rule

    def spy(self, primitive, args, params):
        calls.append(primitive.name)
        return orig(self, primitive, args, params)
    m.setattr(lin_mod.LinearizeTrace, 'process_jvp_rule', spy)
    return calls


def hvp(f, x, v):
    return jvp(grad(f), (x,), (v,))


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)


def _numerical_hvp(f, x, v, eps=1e-6):
    g = grad(f)
    return (g(x + eps * v) - g(x - eps * v)) / (2 * eps)


def _check(monkeypatch, f, x, v, fallbacks=()):
    """The shortcut's (grad, hvp) against the general path's and numerical
    differences; `fallbacks`: the primitives expected to take a JVP rule."""
    with monkeypatch.context() as m:
        calls = _count_rules(m)
        g_fast, h_fast = hvp(f, x, v)
    assert sorted(set(calls)) == sorted(set(fallbacks)), calls
    with monkeypatch.context() as m:
        _general(m)
        g_gen, h_gen = hvp(f, x, v)
    for fast, gen in ((g_fast, g_gen), (h_fast, h_gen)):
        fast, gen = np.asarray(fast), np.asarray(gen)
        assert fast.shape == gen.shape and fast.dtype == gen.dtype
        np.testing.assert_allclose(fast, gen, **_tol(x.dtype))
    assert np.isfinite(h_fast).all()
    if x.dtype == np.float64:
        np.testing.assert_allclose(h_fast, _numerical_hvp(f, x, v), rtol=1e-6, atol=1e-6)
    return g_fast, h_fast


UNARY = {
    'exp': pnp.exp,
    'expm1': pnp.expm1,
    'sin': pnp.sin,
    'cos': pnp.cos,
    'tan': lambda x: pnp.tan(0.5 * x),
    'tanh': pnp.tanh,
    'logistic': lax.logistic,
    'neg': pnp.negative,
    'square': lambda x: x ** 2,
    'cube': lambda x: x ** 3,
    'pow4': lambda x: integer_pow(x, 4),
    'pow5': lambda x: integer_pow(x, 5),
}
SHAPES = [(7,), (3, 4), ()]


@pytest.mark.parametrize('name', list(UNARY))
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_unary(monkeypatch, name, shape, dtype):
    fn = UNARY[name]
    x = np.asarray(RNG.uniform(-1, 1, shape)).astype(dtype)
    v = np.asarray(RNG.standard_normal(shape)).astype(dtype)
    # sum(f(x)): H = diag(f''), the lin_dual rule itself; sum(f(x) * x) mixes it with
    # the product rule
    _check(monkeypatch, lambda x: pnp.sum(fn(x)), x, v)
    _check(monkeypatch, lambda x: pnp.sum(fn(x) * x), x, v)


def test_unary_values():
    """d2/dx2 at known points, in closed form."""
    x = np.array([0.3, -1.2, 2.0])
    v = np.array([1.0, 2.0, -0.5])
    t = np.tanh(x)
    np.testing.assert_allclose(hvp(lambda x: pnp.sum(pnp.tanh(x)), x, v)[1],
                               -2 * t * (1 - t ** 2) * v, rtol=1e-14)
    np.testing.assert_allclose(hvp(lambda x: pnp.sum(x ** 3), x, v)[1], 6 * x * v, rtol=1e-14)
    np.testing.assert_allclose(hvp(lambda x: pnp.sum(pnp.sin(x)), x, v)[1],
                               -np.sin(x) * v, rtol=1e-14)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(hvp(lambda x: pnp.sum(lax.logistic(x)), x, v)[1],
                               s * (1 - s) * (1 - 2 * s) * v, rtol=1e-12)


ARITH = {
    'x*y': lambda x, y: x * y,
    'y*x': lambda x, y: y * x,
    'x+y': lambda x, y: x + y,
    'x-y': lambda x, y: x - y,
    'y-x': lambda x, y: y - x,
    '2.5*x': lambda x, y: 2.5 * x * y,
    'x*3': lambda x, y: x * 3 * y,
    'x+1.5': lambda x, y: (x + 1.5) * y,
    '1.5-x': lambda x, y: (1.5 - x) * y,
    'x-2': lambda x, y: (x - 2) * y,
    'c*x': lambda x, y: C[x.shape].astype(x.dtype) * x * y,
    'x*c': lambda x, y: x * C[x.shape].astype(x.dtype) * y,
    'c-x': lambda x, y: (C[x.shape].astype(x.dtype) - x) * y,
    'x+c': lambda x, y: (x + C[x.shape].astype(x.dtype)) * y,
}
C = {s: np.asarray(RNG.standard_normal(s)) for s in SHAPES}


@pytest.mark.parametrize('name', list(ARITH))
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_arithmetic(monkeypatch, name, shape, dtype):
    op = ARITH[name]
    x = np.asarray(RNG.uniform(-1, 1, shape)).astype(dtype)
    v = np.asarray(RNG.standard_normal(shape)).astype(dtype)
    _check(monkeypatch, lambda x: pnp.sum(op(pnp.tanh(x), pnp.sin(x))), x, v)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_structural(monkeypatch, dtype):
    x = RNG.uniform(-1, 1, (3, 4)).astype(dtype)
    v = RNG.standard_normal((3, 4)).astype(dtype)

    def f(x):
        y = pnp.tanh(x)
        z = pnp.reshape(y, (4, 3)) * pnp.transpose(y)
        s = pnp.sum(z, axis=0)                          # reduce_sum to a vector
        b = pnp.broadcast_to(s, (2, 3)) ** 2
        return pnp.sum(pnp.squeeze(pnp.expand_dims(b, 0), 0))
    _check(monkeypatch, f, x, v)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_dot(monkeypatch, dtype):
    a = (RNG.standard_normal((5, 5)) / 4).astype(dtype)
    b = (RNG.standard_normal((5, 3)) / 4).astype(dtype)
    x = RNG.standard_normal(5).astype(dtype)
    v = RNG.standard_normal(5).astype(dtype)
    _check(monkeypatch, lambda x: pnp.sum(pnp.tanh(a @ x) ** 2), x, v)          # const @ dual
    _check(monkeypatch, lambda x: pnp.sum(pnp.tanh(x @ a) ** 2), x, v)          # dual @ const
    _check(monkeypatch, lambda x: pnp.sum(pnp.sin(x) @ pnp.tanh(x @ a)), x, v)   # dual @ dual
    m = RNG.standard_normal((4, 5)).astype(dtype)
    vm = RNG.standard_normal((4, 5)).astype(dtype)
    _check(monkeypatch, lambda m: pnp.sum(pnp.tanh(m @ b) ** 2), m, vm)         # matrix


def test_w3_takes_the_shortcuts(monkeypatch):
    """The benchmark's HVP runs no JVP rule in linearization, and equals the
    closed form H v = A^T diag(2 (1 - 3 t^2)(1 - t^2)) A v + v."""
    from benchmarks import workloads as W
    a, x, v = W.w3_data()
    f = W.make_w3_f(pnp, a)
    g, h = _check(monkeypatch, f, x, v)
    np.testing.assert_allclose(h, W.w3_numpy_hvp(a, x, v), rtol=1e-10, atol=1e-12)
    t = np.tanh(a @ x)
    np.testing.assert_allclose(g, a.T @ (2 * t * (1 - t ** 2)) + x, rtol=1e-12)


def test_second_order_chain(monkeypatch):
    """Several dual operations feeding each other, 0-d duals (whole sums) included."""
    x = RNG.uniform(-1, 1, 6)
    v = RNG.standard_normal(6)

    def f(x):
        s = pnp.sum(x ** 2)                     # a 0-d dual
        u = pnp.exp(-0.5 * x) * pnp.cos(x)
        return 0.5 * s * s + pnp.sum(u * pnp.tanh(s * x)) - s
    # (s * x broadcasts a 0-d dual: that product takes mul's JVP rule)
    _check(monkeypatch, f, x, v, fallbacks=('mul',))


def test_hessian_and_vjp_under_jvp(monkeypatch):
    """The hessian (jacfwd of grad) and vjp's function under jvp, against the
    general path; rev-over-rev does not use the dual shortcuts and agrees."""
    x = RNG.uniform(-1, 1, 4)
    v = RNG.standard_normal(4)

    def f(x):
        return pnp.sum(pnp.tanh(x) * pnp.exp(x) ** 2)
    h = hessian(f)(x)
    np.testing.assert_allclose(hvp(f, x, v)[1], h @ v, rtol=1e-12)

    def vjp_under_jvp(x):
        _, fn = vjp(lambda x: pnp.sin(x) * x, x)
        return fn(pnp.cos(x))[0]
    fast = jvp(vjp_under_jvp, (x,), (v,))
    with monkeypatch.context() as m:
        _general(m)
        gen = jvp(vjp_under_jvp, (x,), (v,))
    for a, b in zip(fast, gen):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    rr = vjp(lambda x: grad(f)(x), x)[1](v)[0]       # reverse over reverse
    np.testing.assert_allclose(rr, h @ v, rtol=1e-12)


def test_tracers_keep_no_array_aval(monkeypatch):
    """A tracer with a dual primal must not look settled (its cached aval being its
    tangent's means 'an array primal' to the array shortcuts): after any dual
    operation, the next operation still takes a dual shortcut, and the numbers agree."""
    x = RNG.uniform(-1, 1, 5)
    v = RNG.standard_normal(5)
    seen = []

    def f(x):
        y = pnp.tanh(x)
        seen.append(y)
        z = pnp.sin(y) * y + y
        return pnp.sum(z * z)
    _check(monkeypatch, f, x, v)
    y = seen[0]
    assert type(y.primal) is jvp_mod.JVPTracer
    assert y._aval is None or y._aval is not y.tangent._aval


def test_outer_staged_falls_back(monkeypatch):
    """Under make_jaxpr the outer jvp's primals are staged tracers, not arrays: the
    general path runs and the jaxpr evaluates to the eager HVP."""
    a = RNG.standard_normal((4, 4)) / 4
    x = RNG.standard_normal(4)
    v = RNG.standard_normal(4)

    def f(x):
        return pnp.sum(pnp.tanh(a @ x) ** 2) + 0.5 * pnp.sum(x ** 2)
    closed = make_jaxpr(lambda x, v: hvp(f, x, v)[1])(x, v)
    check_jaxpr(closed)
    staged = eval_jaxpr(closed.jaxpr, closed.consts, x, v)[0]
    np.testing.assert_allclose(staged, hvp(f, x, v)[1], rtol=1e-12)


def test_make_jaxpr_between_keeps_operations():
    """A make_jaxpr between the outer jvp and grad (grad of a closed-over dual):
    bind would route the dual's operations to the staging trace, so the shortcut
    must not compute them eagerly."""
    x = RNG.uniform(-1, 1, 3)
    v = RNG.standard_normal(3)

    names = []

    def outer(x):
        closed = make_jaxpr(lambda y: grad(lambda z: pnp.sum(pnp.tanh(z) ** 2) * y)(x))(1.0)
        names.extend(e.primitive.name for e in closed.jaxpr.eqns)
        return eval_jaxpr(closed.jaxpr, closed.consts, 2.0)[0]
    p, t = jvp(outer, (x,), (v,))
    assert 'tanh' in names      # staged, as bind stages it: not computed eagerly
    th = np.tanh(x)
    np.testing.assert_allclose(p, 2.0 * 2 * th * (1 - th ** 2), rtol=1e-12)
    np.testing.assert_allclose(t, 2.0 * (2 * (1 - th ** 2) ** 2 - 4 * th ** 2 * (1 - th ** 2)) * v,
                               rtol=1e-10)


def test_linear_jaxpr_under_jvp_typechecks():
    """The linear jaxpr linearize stages on dual primals (float32 literals of the
    tangent's dtype) typechecks."""
    x = RNG.uniform(-1, 1, 4).astype(np.float32)
    v = RNG.standard_normal(4).astype(np.float32)
    jaxprs = []

    def f(x):
        out, f_jvp = linearize(lambda x: 0.5 * pnp.sum(x ** 3) * 2.0 - x * 1.5, x)
        jaxprs.append(f_jvp.jaxpr)
        return out
    jvp(f, (x,), (v,))
    check_jaxpr(jaxprs[0])
    assert any(e.primitive.name == 'mul' for e in jaxprs[0].eqns)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_matmul_transpose_of_outer_cotangents(monkeypatch, dtype):
    """Transposition of a matrix product whose cotangent is an outer jvp's dual
    number computes the rule's NumPy products directly: bit for bit the general
    path's (the rule binding on the outer trace), for matrix @ vector and matrix @
    matrix with either operand linear, scaled cotangents included."""
    tr_mod = importlib.import_module("transforms.transpose")
    a = (RNG.standard_normal((5, 4)) / 3).astype(dtype)
    b = (RNG.standard_normal((4, 3)) / 3).astype(dtype)
    x = RNG.standard_normal(4).astype(dtype)
    m = RNG.standard_normal((5, 4)).astype(dtype)
    cases = [(lambda x: pnp.sum(pnp.tanh(a @ x) ** 2), x),
             (lambda m: pnp.sum(pnp.tanh(m @ b) ** 2) * 3.0, m),
             (lambda m: pnp.sum(pnp.sin(a.T @ m) ** 2), m)]
    calls = []
    orig = tr_mod._transpose_matmul_dual

    def spy(*args):
        r = orig(*args)
        calls.append(r)
        return r
    for f, p in cases:
        t = RNG.standard_normal(p.shape).astype(dtype)
        with monkeypatch.context() as mp:
            mp.setattr(tr_mod, '_transpose_matmul_dual', spy)
            fast = hvp(f, p, t)
        with monkeypatch.context() as mp:
            mp.setattr(tr_mod, '_transpose_matmul_dual', lambda *args: False)
            gen = hvp(f, p, t)
        for u, w in zip(fast, gen):
            assert u.dtype == w.dtype
            np.testing.assert_array_equal(u, w)
    assert calls and all(calls)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_sum_of_outer_cotangents(monkeypatch, dtype):
    """A variable's cotangents that are outer-jvp dual numbers are summed by
    add_any's rule directly (dual_sum): bit for bit the bind path, with and without
    coefficients (x reaches the loss through two branches of different scales)."""
    tr_mod = importlib.import_module("transforms.transpose")
    a = (RNG.standard_normal((5, 5)) / 3).astype(dtype)
    x = RNG.standard_normal(5).astype(dtype)
    t = RNG.standard_normal(5).astype(dtype)
    fs = [lambda x: pnp.sum(pnp.tanh(a @ x) ** 2) + 0.5 * pnp.sum(x ** 2),
          lambda x: pnp.sum(pnp.sin(x) * pnp.cos(x)) + pnp.sum(pnp.exp(x) * x),
          lambda x: pnp.sum(pnp.tanh(x) * 3.0) - pnp.sum(x ** 3) * 0.25]
    calls = []
    orig = tr_mod.dual_sum

    def spy(xs, coeffs):
        r = orig(xs, coeffs)
        calls.append(r is not None)
        return r
    for f in fs:
        with monkeypatch.context() as m:
            m.setattr(tr_mod, 'dual_sum', spy)
            fast = hvp(f, x, t)
        with monkeypatch.context() as m:
            m.setattr(tr_mod, 'dual_sum', lambda xs, coeffs: None)
            gen = hvp(f, x, t)
        for u, w in zip(fast, gen):
            assert u.dtype == w.dtype
            np.testing.assert_array_equal(u, w)
    assert calls and all(calls)
