"""Eager linearization's shortcuts (LinearizeTrace.fast_unary / fast_mul / fast_add,
called by JVPTracer's operators and the `bind_unary` hook of primitives.numpy's float
functions): they must stage exactly the linear jaxpr the general path (promote, bind,
process_primitive) stages, with the same primal values and residuals, bit for bit;
fall back wherever they do not apply; and leave nested transforms (an inner
make_jaxpr or jit, grad of grad, jvp of grad, vmap of grad) and errors unchanged.
"""
import numpy as np
import pytest

import primitives.numpy as pnp
from tracer import make_jaxpr, check_jaxpr, ClosedJaxpr, UnexpectedTracerError
from transforms import grad, jvp, vjp, vmap, jit, value_and_grad
from transforms.linearize import LinearizeTrace, linearize_flat
from benchmarks import workloads as W

RNG = np.random.default_rng(11)


class _general_path:
    """Disable the shortcuts (the general path runs)."""

    def __enter__(self):
        LinearizeTrace.fast_ops = False

    def __exit__(self, *exc):
        LinearizeTrace.fast_ops = True


def _linearized(fun, args):
    # (dce=True: a jaxpr of JaxprEqns; dce=False may hold compact equations, for
    # value_and_grad's backward pass only)
    outs, lin = linearize_flat(lambda *a: [fun(*a)], list(args))
    return outs, str(ClosedJaxpr(lin.jaxpr, lin.residuals)), lin


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)
    # bit for bit (signed zeros and NaN payloads included)
    assert a.tobytes() == b.tobytes()


def _check_same_as_general(fun, *args, n_eqns=None):
    outs, text, lin = _linearized(fun, args)
    with _general_path():
        outs_g, text_g, lin_g = _linearized(fun, args)
    assert text == text_g
    for o, og in zip(outs, outs_g):
        _same(o, og)
    assert len(lin.residuals) == len(lin_g.residuals)
    for r, rg in zip(lin.residuals, lin_g.residuals):
        _same(r, rg)
    check_jaxpr(ClosedJaxpr(lin.jaxpr, lin.residuals))
    if n_eqns is not None:
        assert len(lin.jaxpr.eqns) == n_eqns
    # and the gradients, through the whole of vjp
    ct = np.ones_like(np.asarray(outs[0]))
    g = vjp(fun, *args)[1](ct)
    with _general_path():
        gg = vjp(fun, *args)[1](ct)
    for a, b in zip(g, gg):
        _same(a, b)
    return lin


def _count_fast(monkeypatch):
    """Count the shortcuts that succeed."""
    hits = []
    for name in ('fast_unary', 'fast_mul', 'fast_add'):
        orig = getattr(LinearizeTrace, name)

        def wrapped(self, *a, _orig=orig):
            r = _orig(self, *a)
            if r is not None:
                hits.append(1)
            return r
        monkeypatch.setattr(LinearizeTrace, name, wrapped)
    return hits


def test_w1_chain_same_jaxpr_and_gradient(monkeypatch):
    x, _ = W.w1_data()
    f = W.make_chain(pnp, W.W1_OPS)
    hits = _count_fast(monkeypatch)
    lin = _check_same_as_general(f, x)
    # every op of the chain takes a shortcut (100 ops, 3 runs: linearize + 2 vjp)
    assert len(hits) >= 100
    names = [e.primitive.name for e in lin.jaxpr.eqns]
    assert names.count('add_products') == 20 and names.count('add_any') == 20
    g = grad(f)(x)
    with _general_path():
        _same(g, grad(f)(x))
    np.testing.assert_allclose(g, jit(grad(f))(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, W.w1_numpy_grad(x), rtol=1e-12, atol=1e-13)


OPS = {
    'mul': lambda x, y: x * y,
    'mul_self': lambda x, y: x * x + y,
    'add': lambda x, y: x + y,
    'sub': lambda x, y: x - y,
    'sub_self': lambda x, y: (x - x) * y,
    'rmul_scalar': lambda x, y: 0.5 * x + y * 3.0,
    'int_scalars': lambda x, y: 2 * x + y * 3 - 1,
    'add_scalar': lambda x, y: (x + 0.25) * (1.5 + y),
    'sub_scalar': lambda x, y: (x - 0.25) * (1.5 - y),
    'unit_scalars': lambda x, y: (x * 1.0) + (y * -1.0) + (1 * x) * (-1 * y),
    'zero_scalar': lambda x, y: x * 0.0 + y,
    'nan_scalar': lambda x, y: x * float('nan') + y,
    'unary': lambda x, y: pnp.sin(x) * pnp.cos(y) + pnp.tanh(x) - pnp.exp(y),
    'unary_safe': lambda x, y: pnp.sqrt(x * x + 1.0) + pnp.log(y * y + 2.0),
    'numpy_dispatch': lambda x, y: np.sin(x) * np.exp(y),
    'mixed': lambda x, y: pnp.sin(x * y + 0.5) * (x - y) - 2.0 * pnp.tanh(y),
}


@pytest.mark.parametrize('name', sorted(OPS))
@pytest.mark.parametrize('shape,dtype', [((7,), np.float64), ((2, 3), np.float64),
                                         ((5,), np.float32), ((4,), np.float16)])
def test_ops_same_as_general_path(name, shape, dtype, monkeypatch):
    fun = OPS[name]
    hits = _count_fast(monkeypatch)
    x = (RNG.uniform(0.2, 1.0, shape)).astype(dtype)
    y = (RNG.uniform(0.2, 1.0, shape)).astype(dtype)

    def f(x, y):
        return pnp.sum(fun(x, y))
    _check_same_as_general(f, x, y)
    assert hits     # the shortcuts ran
    # grad transposes the compact equations as they are (value_and_grad's path)
    g = grad(f, argnums=(0, 1))
    fast = g(x, y)
    with _general_path():
        general = g(x, y)
    for a, b in zip(fast, general):
        _same(a, b)


@pytest.mark.parametrize('case', ['scalar0d', 'broadcast', 'int_input', 'const_array',
                                  'float32_with_float64', 'byteswapped', 'bool_mul'])
def test_fallbacks_same_as_general_path(case, monkeypatch):
    x = RNG.uniform(0.2, 1.0, (4,))
    if case == 'scalar0d':
        f = lambda x: pnp.sin(x * x + 1.0) * 2.0
        args = (np.float64(0.3),)
        arrs = (np.array(0.3),)
        _check_same_as_general(f, *arrs)
    elif case == 'broadcast':
        f = lambda x, y: pnp.sum(pnp.sin(x * y) + y - x)
        args = (x, RNG.uniform(0.2, 1.0, (3, 4)))
    elif case == 'int_input':
        f = lambda x, n: pnp.sum(pnp.sin(n) * x + n * x)
        args = (x, np.arange(4))
        _check_same_as_general(lambda x: f(x, np.arange(4)), x)
        return
    elif case == 'const_array':
        c = RNG.uniform(0.2, 1.0, (4,))
        f = lambda x: pnp.sum(x * c + c * x - c + pnp.sin(c) * x)
        args = (x,)
    elif case == 'float32_with_float64':
        f = lambda x, y: pnp.sum(x * y + y - x)
        args = (x.astype(np.float32), x)
    elif case == 'byteswapped':
        # a non-native input is converted where it enters (tests/test_byte_order.py):
        # both paths then see native arrays and agree
        xs = x.astype('>f8')
        f = lambda x: pnp.sum(pnp.sin(x) * x + x)
        args = (xs,)
    elif case == 'bool_mul':
        b = x > 0.5
        f = lambda x: pnp.sum(x * (b * b) + b * x)
        args = (x,)
    _check_same_as_general(f, *args)


def test_two_inputs_equal_types_take_shortcut(monkeypatch):
    # two inputs of one type (distinct aval objects): still the shortcut
    x, y = RNG.uniform(-1, 1, (5,)), RNG.uniform(-1, 1, (5,))
    hits = _count_fast(monkeypatch)
    f = lambda x, y: pnp.sum(x * y + (y - x))
    outs, lin = linearize_flat(lambda x, y: [f(x, y)], [x, y], dce=False)
    assert len(hits) == 3
    _check_same_as_general(f, x, y)


def test_inner_make_jaxpr_captures_ops():
    # an inner dynamic trace (make_jaxpr inside grad) must see every operation
    seen = []

    def f(x):
        def inner(z):
            return pnp.sin(z) * x + 0.5 * z - x
        seen.append(make_jaxpr(inner)(x))
        return pnp.sum(inner(x) * x)
    x = RNG.uniform(-1, 1, (6,))
    g = grad(f)(x)
    names = [e.primitive.name for e in seen[0].jaxpr.eqns]
    assert names.count('sin') == 1 and names.count('mul') == 2 and 'sub' in names
    with _general_path():
        _same(g, grad(f)(x))


def test_inner_jit_and_outer_transforms():
    x = RNG.uniform(-1, 1, (6,))

    def f(x):
        y = jit(lambda z: pnp.tanh(z) * z)(x)
        return pnp.sum(pnp.exp(y * 0.5) * x + y)
    g = grad(f)(x)
    with _general_path():
        gg = grad(f)(x)
    _same(g, gg)
    # grad of grad, jvp of grad, vmap of grad, jit of grad
    h = lambda x: pnp.sum(pnp.sin(x * x) * 0.5 + pnp.cos(x) - x)
    hv = jvp(grad(h), (x,), (np.ones_like(x),))[1]
    with _general_path():
        _same(hv, jvp(grad(h), (x,), (np.ones_like(x),))[1])
    np.testing.assert_allclose(hv, jit(lambda x: jvp(grad(h), (x,), (np.ones_like(x),))[1])(x),
                               rtol=1e-12, atol=1e-12)
    gg2 = grad(lambda x: pnp.sum(grad(h)(x) * x))(x)
    with _general_path():
        _same(gg2, grad(lambda x: pnp.sum(grad(h)(x) * x))(x))
    xs = RNG.uniform(-1, 1, (3, 6))
    vg = vmap(grad(h))(xs)
    for i in range(3):
        np.testing.assert_allclose(vg[i], grad(h)(xs[i]), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(jit(grad(h))(x), grad(h)(x), rtol=1e-12, atol=1e-13)


def test_make_jaxpr_of_grad_prints_linear_jaxpr():
    x = RNG.uniform(-1, 1, (4,))
    h = lambda x: pnp.sum(pnp.sin(x) * x + x * 0.5)
    closed = make_jaxpr(grad(h))(x)
    check_jaxpr(closed)
    text = str(closed)
    assert 'sin' in text and 'cos' in text
    np.testing.assert_allclose(
        np.asarray(__import__('tracer').eval_jaxpr(closed.jaxpr, closed.consts, x)[0]),
        grad(h)(x), rtol=1e-13, atol=1e-14)


def test_closure_over_outer_tracer_not_shortcut():
    # an outer jvp tracer inside grad: the inner trace is the top one, but the
    # operand belongs to the outer trace: the general path, right numbers
    x = RNG.uniform(-1, 1, (5,))

    def outer(a):
        return grad(lambda z: pnp.sum(pnp.sin(z) * a + a * z))(x)
    t = np.ones_like(x)
    out, tout = jvp(outer, (x,), (t,))
    with _general_path():
        out_g, tout_g = jvp(outer, (x,), (t,))
    _same(out, out_g)
    _same(tout, tout_g)
    np.testing.assert_allclose(tout, np.cos(x) + 1.0, rtol=1e-14)


def test_leaked_tracer_still_raises():
    box = []

    def f(x):
        box.append(x * 2.0)
        return pnp.sum(pnp.sin(x) * x)
    x = RNG.uniform(-1, 1, (3,))
    grad(f)(x)
    leaked = box[0]
    for op in (lambda t: t * t, lambda t: t * 2.0, lambda t: 1.0 + t, lambda t: t - t,
               lambda t: pnp.sin(t), lambda t: 3.0 - t):
        with pytest.raises(UnexpectedTracerError):
            op(leaked)


def test_value_and_grad_through_shortcuts():
    x = RNG.uniform(-1, 1, (16,))
    f = W.make_chain(pnp, 20)
    v, g = value_and_grad(f)(x)
    with _general_path():
        vg, gg = value_and_grad(f)(x)
    _same(v, vg)
    _same(g, gg)
    _same(v, W.make_chain(np, 20)(x))


def _general_sum(a):
    from primitives import reductions
    return pnp._sum_or_prod('sum', a, None, None, None, False, None, None, 0,
                            reductions.reduce_max, reductions.reduce_sum, pnp.add)


@pytest.mark.parametrize('shape,dtype', [((7,), np.float64), ((2, 3), np.float32),
                                         ((2, 1, 3), np.float16), ((), np.float64),
                                         ((4,), np.int32), ((3,), np.bool_)])
def test_sum_shortcut_same_as_general(shape, dtype):
    x = (RNG.uniform(-1, 1, shape) * 3).astype(dtype)
    _same(pnp.sum(x), _general_sum(x))
    assert str(make_jaxpr(pnp.sum)(x)) == str(make_jaxpr(_general_sum)(x))
    if dtype in (np.float64, np.float32):
        f = lambda x: pnp.sum(pnp.sin(x) * x)
        g = lambda x: _general_sum(pnp.sin(x) * x)
        _same(grad(f)(x), grad(g)(x))
        assert str(make_jaxpr(grad(f))(x)) == str(make_jaxpr(grad(g))(x))
    # the keyword forms still take the general path
    assert np.shape(pnp.sum(x, keepdims=True)) == (1,) * len(shape)
    _same(pnp.sum(x, axis=None), _general_sum(x))
