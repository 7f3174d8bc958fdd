"""Compiled (transforms/compiler.py) vs eager evaluation, primitive by primitive.

Every primitive with a numba lowering is exercised in float32 and float64 (and
integer/boolean dtypes where it takes them), on several shapes: broadcasting
against rows and scalars, 0-d and empty arrays. To keep compilation time low, the
primitives are grouped into a few programs (one numba function each), compiled
into a session-scoped temporary cache directory.
"""
import math
import warnings

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, eval_jaxpr
from transforms import grad, value_and_grad, jvp, jit


pytestmark = pytest.mark.usefixtures('jit_cache_dir')   # tests/conftest.py


def compiled_vs_eager(f, *args, rtol=None, atol=None, expect_eager=()):
    from transforms.compiler import Executable, JitFallbackWarning
    closed = make_jaxpr(f)(*args)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        exe = Executable(closed)
    assert not exe.eager_notes, exe.eager_notes
    flat = [a for a in _flat(args)]
    with warnings.catch_warnings():
        warnings.simplefilter('error', JitFallbackWarning)
        got = exe(*flat)
    want = eval_jaxpr(closed.jaxpr, closed.consts, *flat)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        ga, wa = np.asarray(g), np.asarray(w)
        assert ga.shape == wa.shape, (i, closed.jaxpr.outvars[i], ga.shape, wa.shape)
        assert ga.dtype == wa.dtype, (i, ga.dtype, wa.dtype)
        assert isinstance(g, np.ndarray) == isinstance(w, np.ndarray) or ga.ndim == 0, i
        if ga.dtype.kind == 'f':
            tol = rtol if rtol is not None else (2e-5 if ga.dtype == np.float32 else 1e-12)
            np.testing.assert_allclose(ga, wa, rtol=tol, atol=atol if atol is not None else tol,
                                       err_msg=f"output {i}: {_eqn_of(closed, i)}")
        else:
            np.testing.assert_array_equal(ga, wa, err_msg=f"output {i}: {_eqn_of(closed, i)}")
    return exe


def _eqn_of(closed, i):
    v = closed.jaxpr.outvars[i]
    for e in closed.jaxpr.eqns:
        if v in e.outvars:
            return f"{e.primitive.name} {e.params}"
    return str(v)


def _flat(args):
    for a in args:
        if isinstance(a, (tuple, list)):
            yield from _flat(a)
        else:
            yield a


rng = np.random.default_rng(0)
DTYPES = [np.float32, np.float64]


def _data(dt):
    x = rng.uniform(-2, 2, (3, 4)).astype(dt)
    row = rng.uniform(0.5, 2, (4,)).astype(dt)
    s = dt(0.7)
    pos = rng.uniform(0.1, 3, (3, 4)).astype(dt)
    unit = rng.uniform(-0.9, 0.9, (3, 4)).astype(dt)
    empty = np.zeros((0, 4), dt)
    return x, row, s, pos, unit, empty


UNARY_ANY = ['exp', 'expm1', 'sin', 'cos', 'tan', 'tanh', 'logistic', 'erf', 'floor',
             'ceil', 'round', 'neg', 'abs', 'sign', 'sinh', 'cosh', 'asinh', 'atan', 'cbrt',
             'stop_gradient']
UNARY_POS = ['log', 'log1p', 'sqrt', 'rsqrt', 'acosh']
UNARY_UNIT = ['atanh', 'asin', 'acos']
BINARY = ['add', 'sub', 'mul', 'div', 'max', 'min', 'atan2', 'rem', 'safe_mul']


@pytest.mark.parametrize('dt', DTYPES)
def test_elementwise(dt):
    x, row, s, pos, unit, empty = _data(dt)
    x = x.copy()
    x[0, 0] = 0.0
    x[0, 1] = 2.5       # round half to even
    x[1, 0] = -0.5

    def f(x, row, s, pos, unit, empty):
        # one loop over x's shape holds every op on x (fused); 0-d ops are scalars
        outs = []
        for name in UNARY_ANY:
            fn = getattr(lax, name)
            outs += [fn(x), fn(s)]
        for name in UNARY_POS:
            fn = getattr(lax, name)
            outs += [fn(pos + 1.0), fn(s + 1.0)]
        for name in UNARY_UNIT:
            fn = getattr(lax, name)
            outs += [fn(unit), fn(s * 0.5)]
        for name in BINARY:
            fn = getattr(lax, name)
            outs += [fn(x, row), fn(row, x), fn(x, s), fn(s, s)]
        outs += [lax.exp(empty), lax.add(empty, row), lax.sin(empty)]
        outs += [lax.pow(pos, row), lax.pow(pos, s), lax.integer_pow(x, 3),
                 lax.integer_pow(x, 5), lax.integer_pow(pos, -2), lax.integer_pow(x, 0),
                 lax.integer_pow(s, 2)]
        from primitives.unary import sincos
        outs += list(sincos(x)) + list(sincos(s))
        from primitives.arith import add_any_p, add_products_p
        outs += [add_any_p.bind(x, row, x, coeffs=(2.0, -1.0, 0.5)), add_any_p.bind(x, x),
                 add_products_p.bind(x, row, x, x)]
        for cmp in ('eq', 'ne', 'lt', 'le', 'gt', 'ge'):
            outs.append(getattr(lax, cmp)(x, row))
        outs.append(lax.select_n(lax.gt(x, 0.0), x, row))
        outs.append(lax.select_n(lax.gt(s, 0.0), s, dt(1)))
        outs.append(lax.convert_element_type(x, np.int32))
        outs.append(lax.convert_element_type(x, np.bool_))
        outs.append(lax.convert_element_type(lax.gt(x, 0.0), dt))
        outs.append(lax.convert_element_type(x, np.float64 if dt == np.float32 else np.float32))
        outs.append(lax.broadcasted_iota(dt, (3, 4), 1) * x)
        return outs
    compiled_vs_eager(f, x, row, s, pos, unit, empty)


def test_elementwise_special_values():
    v = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -1e-310, 1e300, -1e300,
                  710.0, -746.0, 3e5, -2e6, 0.5, -2.5], np.float64)

    def f(v):
        return [lax.exp(v), lax.expm1(v), lax.log(v), lax.log1p(v), lax.tanh(v),
                lax.logistic(v), lax.sin(v), lax.cos(v), lax.tan(v), lax.round(v),
                lax.max(v, 0.0), lax.min(v, 0.0), lax.sign(v), lax.sqrt(v),
                lax.safe_mul(lax.zeros_like_array(v), v)]
    with np.errstate(all='ignore'):
        compiled_vs_eager(f, v, rtol=1e-12, atol=0)


def test_integer_and_bool():
    a = rng.integers(-20, 20, (3, 4)).astype(np.int32)
    b = rng.integers(1, 7, (4,)).astype(np.int32)
    c = rng.integers(-20, 20, (3, 4)).astype(np.int64)
    m = rng.random((3, 4)) > 0.5
    n = rng.random((4,)) > 0.5

    def f(a, b, c, m, n):
        return [lax.add(a, b), lax.sub(a, b), lax.mul(a, b), lax.div(a, b), lax.rem(a, b),
                lax.max(a, b), lax.min(a, b), lax.neg(a), lax.abs(a), lax.sign(a),
                lax.integer_pow(a, 3), lax.integer_pow(b, 7), lax.pow(b, b),
                lax.bitwise_and(a, b), lax.bitwise_or(a, b), lax.bitwise_xor(a, b),
                lax.bitwise_not(a), lax.bitwise_and(m, n), lax.bitwise_or(m, n),
                lax.bitwise_xor(m, n), lax.bitwise_not(m), lax.eq(a, b), lax.lt(c, 0),
                lax.select_n(m, a, b), lax.select_n(lax.convert_element_type(m, np.int32), c, c * 2),
                lax.reduce_sum(a, (1,)), lax.reduce_max(c, (0, 1)), lax.reduce_min(a, (0,)),
                lax.reduce_prod(b, (0,)), lax.reduce_max(m, (1,)), lax.reduce_min(m, (0,)),
                lax.cumsum(a, 1), lax.argmax(a, 1), lax.argmin(c, 0),
                lax.dot_general(a, a, (((1,), (1,)), ((), ()))),
                lax.convert_element_type(a, np.float64), lax.iota(np.int32, 5),
                lax.convert_element_type(m, np.int64) + c]
    compiled_vs_eager(f, a, b, c, m, n)


@pytest.mark.parametrize('dt', DTYPES)
def test_reductions(dt):
    x = rng.standard_normal((3, 4, 5)).astype(dt)
    e = np.zeros((0, 3), dt)
    x2 = x.copy()
    x2[1, 2, 3] = np.nan

    def f(x, e, x2):
        y = lax.exp(x)   # fused: reductions of a loop's value
        outs = []
        for fn in (lax.reduce_sum, lax.reduce_max, lax.reduce_min, lax.reduce_prod):
            for axes in ((0,), (1,), (2,), (0, 1), (1, 2), (0, 2), (0, 1, 2)):
                outs.append(fn(y, axes))
            outs += [fn(e, (0,)), fn(e, (1,)), fn(x2, (2,))]
        outs += [lax.argmax(x, 1), lax.argmin(x, 2), lax.argmax(x2, 2), lax.argmin(x2, 0),
                 lax.argmax(x[0, 0], 0), lax.cumsum(x, 1), lax.cumsum(x, 2, reverse=True),
                 lax.cumsum(e, 0), pnp.sum(y) / pnp.max(y), y - pnp.max(y, axis=2, keepdims=True)]
        return outs
    compiled_vs_eager(f, x, e, x2, rtol=1e-5 if dt == np.float32 else 1e-12)


@pytest.mark.parametrize('dt', DTYPES)
def test_structural(dt):
    x = rng.standard_normal((3, 4)).astype(dt)
    y = rng.standard_normal((4, 5)).astype(dt)
    b3 = rng.standard_normal((2, 3, 4)).astype(dt)
    c3 = rng.standard_normal((2, 4, 5)).astype(dt)
    v = rng.standard_normal(4).astype(dt)
    s = dt(1.5)
    idx = np.array([[2], [0], [-1], [1]], np.int64)
    idx2 = np.array([[0, 1], [2, 3], [1, 0]], np.int32)
    start = np.int64(1)

    def f(x, y, b3, c3, v, s, idx, idx2, start):
        dg = lax.dot_general
        outs = [
            dg(x, y, (((1,), (0,)), ((), ()))), dg(x.T, y, (((0,), (0,)), ((), ()))),
            dg(x, x, (((1,), (1,)), ((), ()))), dg(x, v, (((1,), (0,)), ((), ()))),
            dg(v, v, (((0,), (0,)), ((), ()))), dg(v, y, (((0,), (0,)), ((), ()))),
            dg(b3, c3, (((2,), (1,)), ((0,), (0,)))), dg(b3, b3, (((1, 2), (1, 2)), ((), ()))),
            dg(c3, b3, (((1,), (2,)), ((0,), (0,)))), dg(s, x, (((), ()), ((), ()))),
            dg(x, y, (((1,), (0,)), ((), ())), preferred_element_type=np.float64),
            lax.reshape(x, (4, 3)), lax.reshape(x.T, (12,)), lax.reshape(s, (1, 1)),
            lax.reshape(lax.reshape(s, (1,)), ()), lax.transpose(b3, (2, 0, 1)),
            lax.squeeze(lax.reshape(x, (3, 1, 4)), (1,)), lax.expand_dims(v, (0,)),
            lax.broadcast_in_dim(v, (3, 4), (1,)), lax.broadcast_in_dim(s, (2, 2), ()),
            lax.broadcast_in_dim(lax.reshape(v, (4, 1)), (4, 3), (0, 1)),
            lax.concatenate([x, x * 2, lax.reshape(v, (1, 4))], 0),
            lax.concatenate([x, x], 1),
            lax.pad(x, dt(0), ((1, 2, 0), (0, 0, 1))), lax.pad(x, s, ((-1, 1, 0), (2, -1, 2))),
            lax.pad(v, dt(3), ((-2, -1, 1),)),
            lax.rev(x, (0,)), lax.rev(b3, (0, 2)),
            lax.slice(x, (1, 0), (3, 4)), lax.slice(b3, (0, 1, 0), (2, 3, 4), (1, 2, 3)),
            lax.dynamic_slice(x, (start, np.int64(2)), (2, 2)),
            lax.dynamic_slice(x, (np.int64(5), np.int64(-3)), (2, 3)),
            lax.dynamic_update_slice(x, lax.reshape(v[:2], (1, 2)), (start, np.int64(7))),
            lax.gather(x, idx, (0,)), lax.gather(x, idx, (1,)), lax.gather(b3, idx2, (1, 2)),
            lax.gather(v, idx[:1], (0,)),
            lax.scatter_add(x, idx[:2], lax.exp(x[:2]), (0,)),
            lax.scatter_add(b3, idx2 % 2, lax.exp(b3[:, :3, 0].T), (1, 2)) if False else
            lax.scatter_add(b3, idx2 % 2, pnp.ones((3, 2), dt), (1, 2)),
            lax.scatter_add(v, idx[:3] % 4, pnp.ones((3,), dt), (0,)),
            x[1], x[:, 2], x[idx[:, 0]], pnp.sum(x @ y, axis=0), pnp.outer(v, v),
        ]
        return outs
    compiled_vs_eager(f, x, y, b3, c3, v, s, idx, idx2, start,
                      rtol=2e-5 if dt == np.float32 else 1e-12)


def test_empty_arrays_structural():
    x = np.zeros((0, 3))
    y = np.ones((3, 2))

    def f(x, y):
        return [x @ y, lax.reshape(x, (3, 0)), lax.concatenate([x, x], 0), lax.transpose(x, (1, 0)),
                lax.pad(x, 1.0, ((1, 1, 0), (0, 0, 0))), pnp.sum(x, axis=0), lax.cumsum(x, 0)]
    compiled_vs_eager(f, x, y)


def test_gather_out_of_range_raises():
    from transforms.compiler import Executable
    x = np.arange(4.0)

    def f(x, i):
        return lax.gather(x, i, (0,))
    closed = make_jaxpr(f)(x, np.array([[1], [2]]))
    exe = Executable(closed)
    np.testing.assert_array_equal(exe(x, np.array([[3], [-1]]))[0], [3.0, 3.0])
    with pytest.raises(IndexError):
        exe(x, np.array([[4], [0]]))


def test_trig_large_arguments_take_the_exact_path():
    x = np.array([0.5, 1e6, 1e22, -3e5], np.float64)
    exe = compiled_vs_eager(lambda x: [lax.sin(x) * 2.0, lax.cos(x)], x, rtol=1e-13)
    assert 'vm_sin' in exe.source and 'math.sin' in exe.source


def test_fusion_one_loop_per_shape():
    from transforms.compiler import Executable
    x = rng.standard_normal(1000)

    def f(x):
        return pnp.sum(0.5 * x * (1 + pnp.tanh(0.79788456 * (x + 0.044715 * x ** 3))))
    exe = Executable(make_jaxpr(value_and_grad(f))(x))
    src = exe.source
    assert src.count('for ') == 1, src           # one loop: forward, reduction and gradient
    assert src.count('= empty(') == 1, src      # only the gradient is stored
    v, g = exe(x)
    vw, gw = value_and_grad(f)(x)
    np.testing.assert_allclose(v, vw, rtol=1e-12)
    np.testing.assert_allclose(g, gw, rtol=1e-12)


def test_unsupported_dtype_runs_eagerly_with_one_warning():
    from transforms.compiler import Executable, JitFallbackWarning
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        y = lax.exp(x) * 2.0
        z = lax.convert_element_type(y, np.complex128)
        w = lax.mul(z, z)
        r = lax.convert_element_type(lax.abs(w), np.float64)
        return [lax.sin(r) + y]
    closed = make_jaxpr(f)(x)
    with pytest.warns(JitFallbackWarning) as rec:
        exe = Executable(closed)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert 'complex128' in msg and 'mul' in msg
    got = exe(x)
    want = eval_jaxpr(closed.jaxpr, closed.consts, x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    assert exe.source.count('def seg') == 2


def test_nested_jit_is_inlined():
    from transforms.compiler import Executable
    inner = jit(lambda a: pnp.tanh(a) * 2.0)

    def f(x):
        return inner(x) + inner(x * 3.0)
    x = rng.standard_normal(5)
    closed = make_jaxpr(f)(x)
    assert any(e.primitive.name == 'jit' for e in closed.jaxpr.eqns)
    exe = compiled_vs_eager(f, x)
    assert exe.source.count('def seg') == 1 and exe.source.count('for ') == 1


def test_workload_jaxprs():
    from benchmarks import workloads as W
    # W1 (a shorter chain): grad and forward
    x, v = W.w1_data()
    f1 = W.make_chain(pnp, 20)
    compiled_vs_eager(grad(f1), x)
    # W2: the MLP's gradient (smaller layers), float32
    params, xb, onehot = W.w2_data(sizes=(20, 16, 12, 10), batch=8)
    compiled_vs_eager(grad(W.make_mlp_loss(pnp)), params, xb, onehot, rtol=1e-4, atol=1e-6)
    # W3: Hessian-vector product
    a, x3, v3 = W.w3_data(16)
    gf = grad(W.make_w3_f(pnp, a))
    compiled_vs_eager(lambda x, v: jvp(gf, (x,), (v,))[1], x3, v3)
    # W4: value_and_grad
    x4 = W.w4_data(1000)
    compiled_vs_eager(value_and_grad(W.make_w4_f(pnp)), x4)


def test_dead_products_are_overwritten_in_place():
    # a BLAS result read only by one loop nest receives that nest's stored values
    # (no new array); not when it is an output or read again later
    from transforms.compiler import Executable
    a = rng.standard_normal((5, 4))
    b = rng.standard_normal((4, 6))

    def f(a, b):
        p = a @ b
        t = pnp.tanh(p + 1.0)
        return t, 1.0 - t * t, pnp.sum(p * 2.0, axis=0), (a @ b @ b.T) * 0.5

    def g(a, b):
        p = a @ b
        q = pnp.exp(p)
        return q, p @ b.T

    for fn, reused in ((f, True), (g, False)):
        exe = Executable(make_jaxpr(fn)(a, b))
        import re
        # a product's array receiving a loop nest's stores (st<n>(name, ...))
        products = re.findall(r'^\s+(v\d+) = (?:gemm|dot)\w*\(', exe.source, re.M)
        overwritten = [n for n in products if re.search(rf'\bst\d\({n},', exe.source)]
        assert bool(overwritten) == reused, exe.source
        for got, want in zip(exe(a, b), fn(a, b)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
