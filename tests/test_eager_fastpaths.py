"""Eager reverse-mode fast paths (issue 2): each is checked against the general path
it shortcuts, bit for bit (the fast path switched off with monkeypatch), and against
jit of the same gradient (which traces through the JVP and transpose rules), on
several shapes and dtypes, including the cases where it must fall back.
"""
import importlib

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import dot as dot_mod
from transforms import grad, jvp, jit, vjp
lin_mod = importlib.import_module('transforms.linearize')
tr_mod = importlib.import_module('transforms.transpose')

RNG = np.random.default_rng(11)
DTYPES = [np.float64, np.float32]
SHAPES = [(), (5,), (3, 4)]


def _general_linearize(monkeypatch):
    """Switch off LinearizeTrace's one- and two-operand fast paths."""
    def unary(self, primitive, rule, x, params):
        return self._linearize(primitive, rule, (x,), params)

    def binary(self, primitive, rule, args, params):
        return self._linearize(primitive, rule, args, params)
    monkeypatch.setattr(lin_mod.LinearizeTrace, '_linearize_unary', unary)
    monkeypatch.setattr(lin_mod.LinearizeTrace, '_linearize_binary', binary)


def _general_transpose(monkeypatch):
    monkeypatch.setattr(tr_mod, '_eager_transpose', lambda *a: False)
    monkeypatch.setattr(tr_mod, 'KERNEL_MIN', 0)    # the inlined small-array mul too


def _spy_shortcut(monkeypatch, name):
    """Record, per call of LinearizeTrace.<name>, whether the shortcut applied."""
    calls = []
    orig = getattr(lin_mod.LinearizeTrace, name)

    def spy(self, *args):
        r = orig(self, *args)
        calls.append(r is not None)
        return r
    monkeypatch.setattr(lin_mod.LinearizeTrace, name, spy)
    return calls


def _general_dot(monkeypatch):
    monkeypatch.setattr(dot_mod, '_matmul_transpose', lambda ct, x, y: None)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def _close(a, b, dtype):
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _chain(x, y):
    # unary ops (plain and safe coefficients), products of two tracers, products and
    # sums with scalars and constants
    z = pnp.sin(x) * y
    z = pnp.tanh(z) + x
    z = z * 0.5 - y * y
    z = pnp.exp(z) * pnp.cos(y)
    z = pnp.sqrt(z * z + 1.0) + pnp.log(x * x + 2.0)
    z = z / (y * y + 1.0)
    return pnp.sum(z * x)


def _broadcasting(x, b):
    # operands of different shapes: the fast paths must fall back
    z = x * b + pnp.sin(b)
    z = pnp.tanh(z) - b
    return pnp.sum(z * z)


def _mixed(x, y32):
    # a float32 operand with a float64 one: promotion, the general path
    return pnp.sum(pnp.sin(x) * y32 + x * 2)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
def test_linearize_fast_paths_match_general_path(monkeypatch, dtype, shape):
    x = RNG.standard_normal(shape).astype(dtype)
    y = RNG.standard_normal(shape).astype(dtype)
    g = grad(_chain, argnums=(0, 1))
    fast = g(x, y)
    ref = jit(g)(x, y)
    with monkeypatch.context() as m:
        _general_linearize(m)
        _general_transpose(m)
        general = g(x, y)
    for a, b, c in zip(fast, general, ref):
        _same(a, b)
        _close(a, c, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_linearize_fast_paths_fall_back(monkeypatch, dtype):
    x = RNG.standard_normal((3, 4)).astype(dtype)
    b = RNG.standard_normal((4,)).astype(dtype)
    g = grad(_broadcasting, argnums=(0, 1))
    fast = g(x, b)
    with monkeypatch.context() as m:
        _general_linearize(m)
        _general_transpose(m)
        general = g(x, b)
    for a, c, r in zip(fast, general, jit(g)(x, b)):
        _same(a, c)
        _close(a, r, dtype)
    y32 = RNG.standard_normal((3, 4)).astype(np.float32)
    x64 = x.astype(np.float64)
    gm = grad(_mixed, argnums=(0, 1))
    for a, r in zip(gm(x64, y32), jit(gm)(x64, y32)):
        _close(a, r, np.float32)


def test_linearize_fast_paths_safe_coefficients():
    # sqrt/log at 0 under a zero cotangent: the safe product keeps the gradient finite
    def f(x, y):
        return pnp.sum(pnp.where(x > 0, pnp.sqrt(x), 0.0) * y)
    x = np.array([0.0, 1.0, 4.0])
    y = np.array([2.0, 3.0, 5.0])
    gx, gy = grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.0, 1.5, 1.25])
    np.testing.assert_array_equal(gy, [0.0, 1.0, 2.0])


def test_linearize_fast_paths_under_outer_transforms():
    # grad of grad and jvp of grad: the primals are tracers of the outer trace,
    # so the fast paths do not apply
    def f(x):
        return pnp.sum(pnp.sin(x) * x + pnp.tanh(x * x))
    x = RNG.standard_normal(6)
    v = RNG.standard_normal(6)
    hvp = jvp(grad(f), (x,), (v,))[1]
    ref = jit(lambda x, v: jvp(grad(f), (x,), (v,))[1])(x, v)
    _close(hvp, ref, np.float64)
    d2 = grad(lambda x: pnp.sum(grad(f)(x) * v))(x)
    _close(d2, hvp, np.float64)


@pytest.mark.parametrize('n', [-2, 1, 2, 3])
def test_linearize_unary_rule_declines(monkeypatch, n):
    # integer_pow's rule declines exponents below 2 (None): the JVP rule runs
    from primitives import arith
    x = RNG.standard_normal(5) + 3.0
    f = lambda x: pnp.sum(pnp.sin(arith.integer_pow(x, n)))
    fast = grad(f)(x)
    with monkeypatch.context() as m:
        _general_linearize(m)
        _same(fast, grad(f)(x))
    _close(fast, jit(grad(f))(x), np.float64)
    _close(fast, n * x ** (n - 1) * np.cos(x ** n), np.float64)


def test_linearize_fast_path_error_message():
    # a shape error inside a traced binary op: the general path's message
    with pytest.raises(ValueError, match='broadcast'):
        grad(lambda x: pnp.sum(x * pnp.ones(4)))(np.ones(3))


@pytest.mark.parametrize('dtype', DTYPES)
def test_transpose_add_any_with_coeffs_and_many_products(monkeypatch, dtype):
    # add_any with coefficients (a variable used with several scales), add_products
    # with four or more linear pairs (the general loop rescales first: fallback)
    from primitives import arith
    x = RNG.standard_normal((4, 3)).astype(dtype)
    cs = [RNG.standard_normal((4, 3)).astype(dtype) for _ in range(4)]

    def f(x):
        z = arith.add_products_p.bind(x, cs[0], x * 2.0, cs[1], -x, cs[2], x, cs[3])
        w = x * 3.0 - x * 0.25 + z
        return pnp.sum(w * w) * 1e-3

    fast = grad(f)(x)
    with monkeypatch.context() as m:
        _general_transpose(m)
        general = grad(f)(x)
    _same(fast, general)
    _close(fast, jit(grad(f))(x), dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shapes', [((3, 4), (4, 5)), ((6, 2), (2,)), ((1, 7), (7, 1)),
                                    ((4,), (4, 3)), ((5,), (5,))])
def test_matmul_transpose_fast_path(monkeypatch, dtype, shapes):
    sa, sb = shapes
    a = RNG.standard_normal(sa).astype(dtype)
    b = RNG.standard_normal(sb).astype(dtype)

    def f(a, b):
        return pnp.sum(pnp.tanh(a @ b))

    g = grad(f, argnums=(0, 1))
    fast = g(a, b)
    with monkeypatch.context() as m:
        _general_dot(m)
        general = g(a, b)
    for x, y, r in zip(fast, general, jit(g)(a, b)):
        _same(x, y)
        _close(x, r, dtype)
    # one operand constant (the other's transpose only)
    ga = grad(lambda a: f(a, b))(a)
    gb = grad(lambda b: f(a, b))(b)
    _same(ga, fast[0])
    _same(gb, fast[1])


def test_matmul_transpose_fallbacks(monkeypatch):
    # batched matmul, transposed contraction and a mixed-precision product take the
    # general rule
    a = RNG.standard_normal((2, 3, 4))
    b = RNG.standard_normal((2, 4, 5))
    g = grad(lambda a, b: pnp.sum(pnp.sin(a @ b)), argnums=(0, 1))
    with monkeypatch.context() as m:
        _general_dot(m)
        general = g(a, b)
    for x, y in zip(g(a, b), general):
        _same(x, y)
    c = RNG.standard_normal((4, 3))
    d = RNG.standard_normal((5, 3))
    h = grad(lambda c, d: pnp.sum(pnp.cos(c @ d.T)), argnums=(0, 1))
    for x, r in zip(h(c, d), jit(h)(c, d)):
        _close(x, r, np.float64)
    from primitives import lax
    e = RNG.standard_normal((3, 4)).astype(np.float32)
    f32 = RNG.standard_normal((4, 2)).astype(np.float32)
    k = grad(lambda e: pnp.sum(lax.dot_general(e, f32, (((1,), (0,)), ((), ())),
                                                preferred_element_type=np.float64)))
    np.testing.assert_allclose(k(e), np.broadcast_to(f32.sum(1), (3, 4)), rtol=1e-6)
    assert k(e).dtype == np.float32


def test_vjp_with_nonscalar_cotangent_uses_fast_paths(monkeypatch):
    a = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((4, 2))
    ct = RNG.standard_normal((3, 2))
    f = lambda a, b: pnp.tanh(a @ b) * 2.0 + a @ b
    _, fn = vjp(f, a, b)
    fast = fn(ct)
    with monkeypatch.context() as m:
        _general_dot(m)
        _general_transpose(m)
        _, fn2 = vjp(f, a, b)
        general = fn2(ct)
    for x, y in zip(fast, general):
        _same(x, y)


@pytest.mark.parametrize('shapes', [((3, 4), (4, 5)), ((6, 2), (2,)), ((4,), (4, 3))])
def test_matmul_transpose_traced_cotangent(monkeypatch, shapes):
    # a traced cotangent (make_jaxpr of grad, jvp of grad): the fast path stages the
    # same dot_general as the general rule, so the printed program is unchanged
    from tracer import make_jaxpr
    sa, sb = shapes
    a = RNG.standard_normal(sa)
    b = RNG.standard_normal(sb)
    va = RNG.standard_normal(sa)
    vb = RNG.standard_normal(sb)

    def f(a, b):
        return pnp.sum(pnp.tanh(a @ b) ** 2)

    g = grad(f, argnums=(0, 1))

    def hvp(a, b):
        return jvp(g, (a, b), (va, vb))[1]

    fast_ir = str(make_jaxpr(g)(a, b))
    fast_hvp = hvp(a, b)
    with monkeypatch.context() as m:
        _general_dot(m)
        assert str(make_jaxpr(g)(a, b)) == fast_ir
        general_hvp = hvp(a, b)
    for x, y, r in zip(fast_hvp, general_hvp, jit(hvp)(a, b)):
        _same(x, y)
        _close(x, r, np.float64)


@pytest.mark.parametrize('c', [0.0, 2.0, -3.5, 1e300, 1e-300])
def test_transpose_literal_scales_match_jit(c):
    # mul by a literal: the inlined scale path (and its decline at zero), eager and jit
    x = np.linspace(-1.0, 1.0, 7)
    g = grad(lambda x: pnp.sum(pnp.sin(x) * c * x + 0.5 * x * c))
    want = c * (np.cos(x) * x + np.sin(x)) + 0.5 * c
    np.testing.assert_allclose(g(x), want, rtol=1e-14, atol=0)
    np.testing.assert_allclose(jit(g)(x), want, rtol=1e-14, atol=0)


def test_gradients_never_alias_user_arrays():
    # d/dw sum(x * w) is x itself: the returned gradient must be a copy, or updating
    # it in place would change x (inputs, closed-over constants, views of them)
    x = np.arange(4.0)
    w = np.ones(4)
    cases = [
        grad(lambda w: pnp.sum(x * w))(w),
        grad(lambda w: pnp.sum(w * x))(w),
        grad(lambda w, x: pnp.sum(x * w), argnums=(0, 1))(w, x)[0],
        grad(lambda w: pnp.sum(x.reshape(2, 2) * w.reshape(2, 2)))(w),
        vjp(lambda w: pnp.sum(x * w), w)[1](1.0)[0],
    ]
    from transforms import linear_transpose
    cases.append(linear_transpose(lambda v: pnp.sum(v * x), w)(1.0)[0])
    for g in cases:
        np.testing.assert_array_equal(g, x)
        assert not np.shares_memory(g, x)
    both = grad(lambda w, v: pnp.sum(x * w + x * v), argnums=(0, 1))(w, w.copy())
    assert not np.shares_memory(both[0], both[1]) and not np.shares_memory(both[0], x)


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_cancelled_cotangents_have_scale_zero(dtype):
    """Contributions of grad's seed that cancel (v - v) leave a cotangent of ones
    with scale 0; it must not become the common scale other contributions are
    divided by (this raised ZeroDivisionError)."""
    x = np.array([0.7, -0.71, 0.02, 0.87], dtype)
    v = np.array([1.4, -1.1, -0.75, 1.7], dtype)

    def f(x):
        u = x + x
        y = (u - 1.0) * (2.0 - u)
        return pnp.sum(y - y)
    g = grad(f)(x)
    assert g.dtype == dtype and np.all(g == 0)
    h = jvp(grad(f), (x,), (v,))[1]
    assert np.all(h == 0)

    def f2(x):
        y = pnp.tanh(x) * 3.0
        return pnp.sum(y - y) + pnp.sum(pnp.sin(x) * 2.0)
    np.testing.assert_allclose(grad(f2)(x), 2.0 * np.cos(x), rtol=1e-6)


def test_division_by_a_zero_constant():
    """x / 0.0: the derivative 1/0 is infinite, as NumPy computes it (this raised
    ZeroDivisionError in the JVP rule's scaling shortcut)."""
    x = np.ones(3)
    with np.errstate(divide='ignore'):
        g = grad(lambda x: pnp.sum(x) / 0.0)(x)
        assert np.all(np.isposinf(g))
        t = jvp(lambda x: x / 0.0, (x,), (np.array([1.0, -1.0, 2.0]),))[1]
    np.testing.assert_array_equal(t, [np.inf, -np.inf, np.inf])


@pytest.mark.parametrize('n', [-2, -1, 0, 1, 2, 3, 5])
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_pow_operator_shortcut(monkeypatch, n, shape, dtype):
    """`x ** n` for a Python int (JVPTracer.__pow__ -> LinearizeTrace.fast_pow) stages
    integer_pow as bind does: the same linear jaxpr, gradient and HVP, bit for bit,
    as `pnp.power` (the general path); exponents integer_pow's rule declines fall
    back. Also under an outer jvp (dual numbers, jvp of grad)."""
    x = (RNG.uniform(0.5, 1.5, shape)).astype(dtype)
    v = RNG.standard_normal(shape).astype(dtype)
    calls = _spy_shortcut(monkeypatch, 'fast_pow')
    f_op = lambda x: pnp.sum(pnp.sin(x) ** n * 0.5)
    f_gen = lambda x: pnp.sum(pnp.power(pnp.sin(x), n) * 0.5)
    _, lin_op = lin_mod.linearize_flat(lambda x: [f_op(x)], [x])
    _, lin_gen = lin_mod.linearize_flat(lambda x: [f_gen(x)], [x])
    assert str(lin_op.jaxpr) == str(lin_gen.jaxpr)
    assert calls == [n >= 2 and shape != ()]   # (a 0-d primal: the general path)
    _same(grad(f_op)(x), grad(f_gen)(x))
    for a, b in zip(jvp(grad(f_op), (x,), (v,)), jvp(grad(f_gen), (x,), (v,))):
        _same(a, b)
    # the (n x**(n-1), n) coefficient staged as the general path stages it
    with monkeypatch.context() as m:
        _general_linearize(m)
        _, lin_slow = lin_mod.linearize_flat(lambda x: [f_gen(x)], [x])
        g_slow = grad(f_gen)(x)
    assert str(lin_op.jaxpr) == str(lin_slow.jaxpr)
    _same(grad(f_op)(x), g_slow)
    s = np.sin(x.astype(np.float64))
    _close(grad(f_op)(x), 0.5 * n * s ** (n - 1) * np.cos(x.astype(np.float64)), dtype)


def test_pow_operator_non_int_exponents():
    """Exponents that are not Python ints (floats, NumPy integers, arrays) take
    power's general path; the values still match NumPy's derivative."""
    x = RNG.uniform(0.5, 1.5, 4)
    for y in (2.0, np.int64(2), 0.5, np.full(4, 2.0)):
        g = grad(lambda x: pnp.sum(x ** y))(x)
        _close(g, y * x ** (y - 1), np.float64)


@pytest.mark.parametrize('dtype', DTYPES)
def test_reduce_sum_of_ones_inline(monkeypatch, dtype):
    """grad's seed through a whole sum is ones of the operand's shape, and ones
    times a factor (mul, safe_mul) is the factor, transposed inline: the gradient
    bit for bit as the general rules give it."""
    x = RNG.standard_normal((3, 4)).astype(dtype)
    fs = [lambda x: pnp.sum(pnp.sin(x) * x), lambda x: pnp.sum(pnp.sum(x * x, axis=0)),
          lambda x: 2.0 * pnp.sum(pnp.tanh(x)),
          # safe_mul under the seed (sqrt's and division's coefficients): the factor
          lambda x: pnp.sum(pnp.sqrt(x * x + 1.0)), lambda x: pnp.sum(1.0 / (pnp.exp(x) + 1.0))]
    for f in fs:
        fast = grad(f)(x)
        with monkeypatch.context() as m:
            m.setattr(tr_mod, '_INLINE', frozenset())
            gen = grad(f)(x)
        _same(fast, gen)
    _close(grad(fs[0])(x), np.cos(x) * x + np.sin(x), dtype)


@pytest.mark.parametrize('y', [2.0, 3.0, 0.1, 7, -1.0, 1.0, 0.0, -0.0, float('inf'), float('nan')])
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_div_by_number_shortcut(monkeypatch, y, shape, dtype):
    """`x / y` for a Python number (JVPTracer.__truediv__ -> LinearizeTrace.fast_div)
    stages what pnp.divide's general path stages: the same linear jaxpr and the same
    gradient, bit for bit; 0, inf and nan divisors fall back to div's JVP rule."""
    x = RNG.uniform(0.5, 1.5, shape).astype(dtype)
    calls = _spy_shortcut(monkeypatch, 'fast_div')
    f_op = lambda x: pnp.sum(pnp.sin(x) / y)
    f_gen = lambda x: pnp.sum(pnp.divide(pnp.sin(x), y))
    with np.errstate(all='ignore'):
        _, lin_op = lin_mod.linearize_flat(lambda x: [f_op(x)], [x])
        _, lin_gen = lin_mod.linearize_flat(lambda x: [f_gen(x)], [x])
        assert str(lin_op.jaxpr) == str(lin_gen.jaxpr)
        g_op, g_gen = grad(f_op)(x), grad(f_gen)(x)
    _same(g_op, g_gen)
    finite = y != 0 and np.isfinite(y)
    assert calls == [finite and shape != ()] * 2
    if finite:
        _close(g_op, np.cos(x.astype(np.float64)) / y, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_constant_gradient_built_directly(monkeypatch, dtype):
    """A gradient that is grad's seed times a number (sum(x), sum(x / 2), mean(x))
    is that number in an array of the input's type, writable; under make_jaxpr it is
    still staged (a broadcast and a product)."""
    x = RNG.standard_normal((3, 4)).astype(dtype)
    for f, c in ((lambda x: pnp.sum(x), 1.0), (lambda x: pnp.sum(x / 2.0), 0.5),
                 (lambda x: 3.0 * pnp.sum(x), 3.0), (lambda x: pnp.mean(x), 1 / 12),
                 (lambda x: pnp.sum(x) + 0.5 * pnp.sum(x), 1.5)):
        g = grad(f)(x)
        assert g.dtype == dtype and g.shape == x.shape and g.flags.writeable
        np.testing.assert_array_equal(g, np.full(x.shape, c, dtype))
    from tracer import make_jaxpr
    text = str(make_jaxpr(grad(lambda x: pnp.sum(x / 2.0)))(x))
    assert 'broadcast_in_dim' in text and 'mul' in text


@pytest.mark.parametrize('y', [2.0, 0.1, 7, -1.0, 1.0, 0.0])
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES)
def test_rdiv_and_neg_shortcuts(monkeypatch, y, shape, dtype):
    """`y / x` for a Python number and `-x` (LinearizeTrace.fast_rdiv, fast_neg)
    stage what pnp.divide's and pnp.negative's general paths stage: the same linear
    jaxpr and gradient, bit for bit."""
    x = RNG.uniform(0.5, 1.5, shape).astype(dtype)
    calls = {name: _spy_shortcut(monkeypatch, name) for name in ('fast_rdiv', 'fast_neg')}
    pairs = [(lambda x: pnp.sum(y / pnp.sin(x)), lambda x: pnp.sum(pnp.divide(y, pnp.sin(x)))),
             (lambda x: pnp.sum(-pnp.sin(x) * y),
              lambda x: pnp.sum(pnp.negative(pnp.sin(x)) * y))]
    for f_op, f_gen in pairs:
        _, lin_op = lin_mod.linearize_flat(lambda x: [f_op(x)], [x])
        _, lin_gen = lin_mod.linearize_flat(lambda x: [f_gen(x)], [x])
        assert str(lin_op.jaxpr) == str(lin_gen.jaxpr)
        _same(grad(f_op)(x), grad(f_gen)(x))
    for name in calls:
        assert calls[name] and all(calls[name]) == (shape != ())
    s, c = np.sin(x.astype(np.float64)), np.cos(x.astype(np.float64))
    _close(grad(pairs[0][0])(x), -y * c / s ** 2, dtype)
    _close(grad(pairs[1][0])(x), -y * c, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_vector_dot_product(monkeypatch, dtype):
    """x @ y of two vectors (a NumPy scalar) is linearized by the dot shortcut and
    grad's seed through it gives the other vector, as the general JVP and transpose
    rules do, bit for bit; the gradient never aliases the constant vector."""
    x = RNG.standard_normal(6).astype(dtype)
    y = RNG.standard_normal(6).astype(dtype)
    fs = [lambda x: x @ y, lambda x: y @ x, lambda x: pnp.dot(pnp.sin(x), y) * 2.0,
          lambda x: pnp.tanh(x) @ pnp.cos(x), lambda x: x @ x]
    ones_calls = []
    orig = tr_mod._transpose_vecdot_ones

    def spy(*args):
        r = orig(*args)
        ones_calls.append(r)
        return r
    for f in fs:
        with monkeypatch.context() as m:
            m.setattr(tr_mod, '_transpose_vecdot_ones', spy)
            _, lin_fast = lin_mod.linearize_flat(lambda x: [f(x)], [x])
            g_fast = grad(f)(x)
        with monkeypatch.context() as m:
            m.setattr(lin_mod.LinearizeTrace, '_linearize_dot', lambda self, args, params: None)
            m.setattr(tr_mod, '_transpose_vecdot_ones', lambda *args: False)
            _, lin_gen = lin_mod.linearize_flat(lambda x: [f(x)], [x])
            g_gen = grad(f)(x)
        assert str(lin_fast.jaxpr) == str(lin_gen.jaxpr)
        _same(g_fast, g_gen)
    assert ones_calls[:2] == [True, True]
    g = grad(fs[0])(x)
    _same(g, y)
    assert not np.shares_memory(g, y)


@pytest.mark.parametrize('y', [0.5, 1.5, -0.5, 2.5, 3.0])
@pytest.mark.parametrize('dtype', DTYPES)
def test_pow_by_constant_lin_rule(monkeypatch, y, dtype):
    """pow's linearization rule for a constant scalar exponent (x ** 0.5) gives the
    JVP rule's derivative bit for bit, in reverse and forward mode and to second
    order; at x = 0 a zero tangent stays 0 (safe), the gradient is infinite for y < 1."""
    from primitives import arith
    x = RNG.uniform(0.5, 1.5, (3, 4)).astype(dtype)
    v = RNG.standard_normal((3, 4)).astype(dtype)
    f = lambda x: pnp.sum(pnp.sin(x) ** y)
    fast = (grad(f)(x), jvp(f, (x,), (v,)), jvp(grad(f), (x,), (v,)))
    with monkeypatch.context() as m:
        m.setattr(arith.pow_p, 'lin', None)
        gen = (grad(f)(x), jvp(f, (x,), (v,)), jvp(grad(f), (x,), (v,)))
    _same(fast[0], gen[0])
    for a, b in zip(fast[1] + fast[2], gen[1] + gen[2]):
        _same(a, b)
    s, c = np.sin(x.astype(np.float64)), np.cos(x.astype(np.float64))
    _close(fast[0], y * s ** (y - 1) * c, dtype)
    with np.errstate(all='ignore'):
        z = np.array([0.0, 4.0], dtype)
        _, t = jvp(lambda x: x ** y, (z,), (np.array([0.0, 1.0], dtype),))
        assert t[0] == 0 and t[1] == dtype(y * 4.0 ** (y - 1))
        g0 = grad(lambda x: pnp.sum(x ** y))(z)[0]
        assert (g0 == np.sign(y) * np.inf) if y < 1 else (g0 == 0)
