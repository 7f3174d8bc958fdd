"""Eager-grad shortcuts for the MLP workload (W2): reduce_max's JVP on concrete
primals, dot_general's written-out JVP, add/sub declining their linearization rule
for large broadcasting sums, the cheaper reshape/reduction shape rules. Each is
checked against the general path (bit for bit: the same numbers are computed) and
against the gradient staged by make_jaxpr, where every rule sees tracers.
"""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import reductions as red_mod
from primitives import arith as arith_mod
from primitives.shape_ops import reshape
from primitives.reductions import reduce_max, reduce_min
from tracer import make_jaxpr, eval_jaxpr, check_jaxpr, tree_flatten, ClosedJaxpr
from transforms import grad, jvp, vjp, value_and_grad
from transforms.linearize import linearize_flat
import importlib
lin_mod = importlib.import_module("transforms.linearize")
from benchmarks import workloads as W
from check_grads import check_grads

RNG = np.random.default_rng(5)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    np.testing.assert_array_equal(a, b)


def _staged(f, *args):
    """f(*args) evaluated from its jaxpr: every rule ran on tracers."""
    closed = make_jaxpr(f)(*args)
    check_jaxpr(closed)
    return eval_jaxpr(closed.jaxpr, closed.consts, *tree_flatten(args)[0])


def _general_minmax(monkeypatch):
    monkeypatch.setattr(red_mod, '_minmax_jvp_concrete',
                        lambda g, ans, x, axes: red_mod._minmax_jvp_general(g, ans, x, axes))


# --- reduce_max / reduce_min on concrete primals --------------------------------------

def _ties(dtype):
    x = RNG.standard_normal((6, 5)).astype(dtype)
    x[1, 3] = x[1, 0]           # a tie of two in row 1
    x[2, :] = 0.5               # all five tied in row 2
    x[4, 1:4] = x[4].max() + 1  # three tied maxima
    return x


CASES = {
    'no ties': lambda dt: RNG.standard_normal((6, 5)).astype(dt),
    'ties': _ties,
    'nan': lambda dt: np.where(np.arange(30).reshape(6, 5) == 7, np.nan,
                               RNG.standard_normal((6, 5))).astype(dt),
    'inf': lambda dt: np.where(np.arange(30).reshape(6, 5) % 11 == 0, np.inf,
                               RNG.standard_normal((6, 5))).astype(dt),
}


@pytest.mark.filterwarnings('ignore:invalid value')   # 0/0: a NaN row has no maximum
@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('axes', [(1,), (0,), (0, 1)])
@pytest.mark.parametrize('red', [reduce_max, reduce_min])
def test_minmax_concrete_matches_general(monkeypatch, case, dtype, axes, red):
    x = CASES[case](dtype)
    w = RNG.standard_normal(x.shape).astype(dtype)

    def f(x):
        return pnp.sum(pnp.tanh(red(x * w, axes)))

    g_fast = grad(f)(x)
    t = RNG.standard_normal(x.shape).astype(dtype)
    j_fast = jvp(lambda x: red(x * w, axes), (x,), (t,))[1]
    _same(g_fast, _staged(grad(f), x)[0])
    with monkeypatch.context() as m:
        _general_minmax(m)
        _same(g_fast, grad(f)(x))
        _same(j_fast, jvp(lambda x: red(x * w, axes), (x,), (t,))[1])
    if case == 'nan':
        assert np.isnan(g_fast).any()
    if case == 'ties' and axes == (1,):
        # ties share the derivative: row 2's five maxima get a fifth each
        assert red is reduce_min or np.allclose(
            g_fast[2], (1 - np.tanh(np.max(x[2] * w[2])) ** 2) * w[2] * (x[2] * w[2] == np.max(x[2] * w[2])) / max(
                1, np.sum(x[2] * w[2] == np.max(x[2] * w[2]))))


def test_minmax_concrete_numerical():
    x = RNG.standard_normal((4, 7))
    check_grads(lambda x: reduce_max(x, (1,)) * 2.0, (x,), order=2, modes=('fwd', 'rev'))
    check_grads(lambda x: pnp.max(x, axis=0, keepdims=True), (x,), order=1)


def test_minmax_empty_reduction(monkeypatch):
    x = np.zeros((0, 3))
    t = np.zeros((0, 3))
    out, tan = jvp(lambda x: reduce_max(x, (0,)), (x,), (t,))
    assert out.shape == (3,) and np.all(out == -np.inf)
    _same(tan, np.zeros(3))
    x2 = np.zeros((3, 0))
    out2, tan2 = jvp(lambda x: reduce_max(x, (0,)), (x2,), (np.zeros((3, 0)),))
    assert out2.shape == (0,) and tan2.shape == (0,)
    with monkeypatch.context() as m:
        _general_minmax(m)
        _same(tan, jvp(lambda x: reduce_max(x, (0,)), (x,), (t,))[1])


def test_logsumexp_grad_is_softmax():
    z = RNG.standard_normal((8, 10)).astype(np.float32)

    def lse(z):
        m = pnp.max(z, axis=1, keepdims=True)
        return pnp.sum(m + pnp.log(pnp.sum(pnp.exp(z - m), axis=1, keepdims=True)))

    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(grad(lse)(z), e / e.sum(axis=1, keepdims=True),
                               rtol=2e-6, atol=1e-7)
    _same(grad(lse)(z), _staged(grad(lse), z)[0])


# --- dot_general's JVP -------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_dot_jvp_both_one_and_no_tangent(dtype):
    a = RNG.standard_normal((5, 4)).astype(dtype)
    b = RNG.standard_normal((4, 3)).astype(dtype)
    ta = RNG.standard_normal(a.shape).astype(dtype)
    tb = RNG.standard_normal(b.shape).astype(dtype)
    out, t = jvp(lambda a, b: a @ b, (a, b), (ta, tb))
    _same(out, a @ b)
    _same(t, np.add(ta @ b, a @ tb))
    _same(jvp(lambda a, b: a @ b, (a, b), (ta, np.zeros_like(b)))[1], ta @ b)
    _same(jvp(lambda a, b: a @ b, (a, b), (np.zeros_like(a), tb))[1], a @ tb)
    _same(jvp(lambda a, b: a @ b, (a, b), (np.zeros_like(a), np.zeros_like(b)))[1],
          np.zeros((5, 3), dtype))
    # general dimension numbers, and the staged path
    f = lambda a, b: pnp.sum(pnp.tanh(pnp.einsum('ij,jk->ki', a, b)))
    ga, gb = grad(f, argnums=(0, 1))(a, b)
    sa, sb = _staged(grad(f, argnums=(0, 1)), a, b)
    _same(ga, sa)
    _same(gb, sb)


def test_dot_jvp_numerical_and_errors():
    a = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((4, 2))
    v = RNG.standard_normal(4)
    check_grads(lambda a, b: pnp.tanh(a @ b), (a, b), order=2, modes=('fwd', 'rev'))
    check_grads(lambda a, v: a @ v, (a, v), order=2, modes=('fwd', 'rev'))
    from primitives import lax
    mm = lambda a, b: lax.dot_general(a, b, (((1,), (0,)), ((), ())))
    with pytest.raises(ValueError, match=r'dot_general of f64\[3,4\] and f64\[3,4\]'):
        jvp(mm, (a, a), (a, a))
    with pytest.raises(TypeError, match='dot_general.*same dtype'):
        jvp(mm, (a, b.astype(np.float32)), (a, b.astype(np.float32)))


# --- add / sub of a broadcast operand (a bias): staged as one broadcasting add_any / sub -----

@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('op', ['add', 'sub'])
@pytest.mark.parametrize('n', [8, 256])      # 8 * 512 below KERNEL_MIN, 256 * 512 above
def test_broadcast_sums(monkeypatch, dtype, op, n):
    x = RNG.standard_normal((n, 512)).astype(dtype)
    b = RNG.standard_normal(512).astype(dtype)
    c = RNG.standard_normal((n, 1)).astype(dtype)
    fn = (lambda u, v: u + v) if op == 'add' else (lambda u, v: u - v)
    p = arith_mod.add_p if op == 'add' else arith_mod.sub_p

    def f(x, b, c):
        # a differentiated bias, a constant broadcast operand, and both orders
        y = pnp.tanh(fn(x, b))
        y = fn(y, c) + fn(c, y)
        return pnp.sum(y * y)

    _, lin = linearize_flat(lambda x, b: [fn(x, b)], [x, b])
    (eqn,) = lin.jaxpr.eqns     # one equation, no broadcast of the bias's tangent
    assert eqn.primitive.name == ('add_any' if op == 'add' else 'sub')
    assert eqn.outvars[0].aval.shape == (n, 512)
    gx, gb = grad(f, argnums=(0, 1))(x, b, c)
    # (eager float64 tanh is the vectorised kernel, within a few ulp of NumPy's)
    sx, sb = _staged(grad(f, argnums=(0, 1)), x, b, c)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, sx, rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, sb, rtol=tol, atol=tol * n)
    with monkeypatch.context() as m:
        m.setattr(p, 'lin', None)       # the JVP rule: broadcast, then add
        hx, hb = grad(f, argnums=(0, 1))(x, b, c)
    np.testing.assert_allclose(gx, hx, rtol=tol, atol=tol)
    np.testing.assert_allclose(gb, hb, rtol=tol, atol=tol * n)


# --- reshape / reduction shape rules ---------------------------------------------------

def test_reshape_rule_and_errors():
    x = RNG.standard_normal((4, 6))
    closed = make_jaxpr(lambda x: reshape(x, (3, 8)))(x)
    assert closed.jaxpr.outvars[0].aval.shape == (3, 8)
    with pytest.raises(ValueError, match=r'reshape: cannot reshape f64\[4,6\]'):
        make_jaxpr(lambda x: reshape(x, (5, 5)))(x)
    with pytest.raises(ValueError, match='reshape'):
        reshape(x, (5, 5))
    g = grad(lambda x: pnp.sum(pnp.sin(reshape(x, (24,)))))(x)
    _same(g, np.cos(x))


def test_reduction_axes_rules():
    x = RNG.standard_normal((3, 4, 5))
    for axes, shape in [((0,), (4, 5)), ((2,), (3, 4)), ((-1,), (3, 4)), (1, (3, 5)),
                        ((0, 2), (4,)), ((2, 0), (4,))]:
        closed = make_jaxpr(lambda x: red_mod.reduce_sum(x, axes))(x)
        assert closed.jaxpr.outvars[0].aval.shape == shape
        _same(red_mod.reduce_sum(x, axes), np.sum(x, axis=axes))
    with pytest.raises(ValueError, match='out of range'):
        make_jaxpr(lambda x: red_mod.reduce_sum(x, (3,)))(x)
    with pytest.raises(ValueError, match='out of range'):
        red_mod.reduce_sum_p.bind(x, axes=(3,))
    with pytest.raises(ValueError, match='repeated axis'):
        make_jaxpr(lambda x: red_mod.reduce_sum_p.bind(x, axes=(1, 1)))(x)


# --- the workload --------------------------------------------------------------------------

def test_w2_grad_matches_hand_and_staged():
    params, x, onehot = W.w2_data(sizes=(64, 128, 128, 10), batch=128)
    f = W.make_mlp_loss(pnp)
    got = grad(f)(params, x, onehot)
    want = W.w2_numpy_grad(params, x, onehot)
    staged = _staged(grad(f), params, x, onehot)
    for g, h, s in zip(got, want, staged):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, h, rtol=2e-4, atol=2e-6)
        np.testing.assert_allclose(g, s, rtol=1e-5, atol=1e-7)
    v, _ = value_and_grad(f)(params, x, onehot)
    np.testing.assert_allclose(v, W.w2_numpy_loss(params, x, onehot), rtol=1e-6)


# --- shape broadcasting and unbroadcast ------------------------------------------------

def test_broadcast2_matches_numpy():
    from primitives._base import _broadcast2
    dims = [(), (1,), (3,), (4,), (1, 3), (4, 1), (4, 3), (2, 1, 3), (2, 4, 3), (0,), (1, 0),
            (4, 0), (5, 4, 1)]
    for s1 in dims:
        for s2 in dims:
            try:
                want = np.broadcast_shapes(s1, s2)
            except ValueError:
                want = None
            assert _broadcast2(s1, s2) == want, (s1, s2)


def test_unbroadcast_arrays_match_bound_path():
    from primitives._base import unbroadcast
    from tracer import ShapedArray
    for dtype in (np.float32, np.float64):
        x = RNG.standard_normal((3, 4, 5)).astype(dtype)
        for shape in [(3, 4, 5), (4, 5), (5,), (1, 5), (4, 1), (1, 1, 1), (), (3, 1, 5), (1,)]:
            aval = ShapedArray(shape, np.dtype(dtype))
            got = unbroadcast(x, aval)
            closed = make_jaxpr(lambda x: unbroadcast(x, aval))(x)
            want = eval_jaxpr(closed.jaxpr, closed.consts, x)[0]
            assert np.shape(got) == shape and np.asarray(got).dtype == dtype
            _same(got, want)


def test_reduce_sum_and_reshape_transposes_on_arrays():
    from transforms import linear_transpose
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    for axes in [(0,), (1,), (2,), (0, 2), (0, 1, 2)]:
        f = lambda x: red_mod.reduce_sum(x, axes)
        ct = RNG.standard_normal(np.shape(np.sum(x, axis=axes))).astype(np.float32)
        got, = vjp(f, x)[1](ct)
        assert got.shape == x.shape and got.dtype == np.float32
        _same(got, np.broadcast_to(np.expand_dims(ct, axes), x.shape))
        rule = red_mod.reduce_sum_p.transpose
        from tracer import UndefinedPrimal, ShapedArray
        out, = rule(np.asarray(ct), UndefinedPrimal(ShapedArray(x.shape, x.dtype)), axes=axes)
        assert not out.flags.writeable      # a broadcast view, as broadcast_in_dim's
        closed = make_jaxpr(lambda c: linear_transpose(f, x)(c))(ct)
        _same(got, eval_jaxpr(closed.jaxpr, closed.consts, ct)[0])
    for shape in [(60,), (12, 5), (3, 20), (1, 60, 1)]:
        f = lambda x: reshape(x, shape)
        ct = RNG.standard_normal(shape).astype(np.float32)
        got, = vjp(f, x)[1](ct)
        _same(got, ct.reshape(x.shape))
    check_grads(lambda x: pnp.sum(pnp.sin(x), axis=(0, 2), keepdims=True), (x.astype(float),),
                order=2, modes=('fwd', 'rev'))


def test_dot_general_dimension_numbers_normalised():
    from primitives import lax
    from primitives.dot import _MATMUL_DN
    a = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((4, 2))
    for dn in [(((1,), (0,)), ((), ())), (([1], [0]), ([], [])),
               (((np.int64(1),), (np.int32(0),)), ((), ())),
               ((np.array([1]), np.array([0])), (np.array([], int), np.array([], int)))]:
        closed = make_jaxpr(lambda a, b: lax.dot_general(a, b, dn))(a, b)
        params = closed.jaxpr.eqns[0].params['dimension_numbers']
        assert params == _MATMUL_DN and all(type(d) is int for d in params[0][0] + params[0][1])
        _same(lax.dot_general(a, b, dn), a @ b)
    c = RNG.standard_normal((2, 3, 4))
    dn = ((np.array([2, 1]), np.array([0, 1])), ((), ()))
    _same(lax.dot_general(c, RNG.standard_normal((4, 3, 5)) * 0 + 1.0, dn),
          np.tensordot(c, np.ones((4, 3, 5)), axes=([2, 1], [0, 1])))


# --- linearize: structural linear primitives and dot_general on array primals ---------------

def _general_linearize(m):
    """Switch off linearize's shortcuts for structural primitives and dot_general."""
    m.setattr(lin_mod, '_STRUCTURAL', frozenset())
    m.setattr(lin_mod.LinearizeTrace, '_linearize_dot', lambda self, args, params: None)


def _mlp_like(w, b, x):
    h = pnp.tanh(x @ w + b)                     # dot_general, a broadcast bias
    h = h.reshape(h.shape[0], -1, 2)            # reshape
    h = pnp.transpose(h, (1, 0, 2))             # transpose
    s = pnp.sum(h, axis=1)                      # reduce_sum
    e = pnp.expand_dims(s, 0)                   # broadcast_in_dim / reshape
    return pnp.sum(pnp.squeeze(e, 0) ** 2) + pnp.sum(w @ w.T)   # squeeze; dot of two tangents


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_structural_and_dot_shortcuts_match_general_path(monkeypatch, dtype):
    w = RNG.standard_normal((6, 8)).astype(dtype)
    b = RNG.standard_normal(8).astype(dtype)
    x = RNG.standard_normal((5, 6)).astype(dtype)
    g = grad(_mlp_like, argnums=(0, 1))
    fast = g(w, b, x)
    _, lin_fast = linearize_flat(lambda w, b: [_mlp_like(w, b, x)], [w, b])
    with monkeypatch.context() as m:
        _general_linearize(m)
        general = g(w, b, x)
        _, lin_general = linearize_flat(lambda w, b: [_mlp_like(w, b, x)], [w, b])
    for a, c in zip(fast, general):
        _same(a, c)
    names = lambda lin: [e.primitive.name for e in lin.jaxpr.eqns]
    assert names(lin_fast) == names(lin_general)
    check_jaxpr(ClosedJaxpr(lin_fast.jaxpr, lin_fast.residuals))     # well typed
    staged = _staged(g, w, b, x)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for a, s in zip(fast, staged):
        np.testing.assert_allclose(a, s, rtol=tol, atol=tol)


def test_dot_shortcut_cases():
    a = RNG.standard_normal((3, 4))
    v = RNG.standard_normal(4)
    # constant left operand, vector right; both differentiated; integer operand declines
    ga = grad(lambda v: pnp.sum(pnp.sin(a @ v)))(v)
    np.testing.assert_allclose(ga, a.T @ np.cos(a @ v), rtol=1e-13)
    gb = grad(lambda a, v: pnp.sum(a @ v), argnums=(0, 1))(a, v)
    np.testing.assert_allclose(gb[0], np.outer(np.ones(3), v), rtol=1e-13)
    np.testing.assert_allclose(gb[1], a.sum(axis=0), rtol=1e-13)
    k = np.arange(12).reshape(3, 4)
    gk = grad(lambda v: pnp.sum((k @ v) ** 2))(v)
    np.testing.assert_allclose(gk, 2 * k.T @ (k @ v), rtol=1e-12)
    with pytest.raises(ValueError, match='size 5 is different from 4'):
        grad(lambda v: pnp.sum(a @ v))(RNG.standard_normal(5))


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize('m,k,n', [(3, 4, 5), (128, 64, 128), (200, 3, 100)])
def test_matrix_product_is_numpys_either_side_of_its_threshold(dtype, m, k, n):
    """dot_general's matrix product (np.matmul for large results, np.dot for small
    ones), its transposes and eager linearization give NumPy's product, bit for bit,
    with transposed views as operands."""
    from primitives.dot import matrix_product, dot_general_p, _LARGE_PRODUCT
    rng = np.random.default_rng(m * n)
    a = (rng.standard_normal((m, k)) + (1j * rng.standard_normal((m, k)) if dtype == np.complex128
                                        else 0)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = np.dot(a, b)
    for x, y in [(a, b), (a.T.copy().T, b), (np.asfortranarray(a), np.asfortranarray(b))]:
        got = matrix_product(x, y)
        assert got.dtype == want.dtype and got.shape == (m, n)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(matrix_product(b.T, a.T), np.dot(b.T, a.T))
    for dn, x, y in [((((1,), (0,)), ((), ())), a, b), ((((0,), (0,)), ((), ())), a.T.copy(), b),
                     ((((1,), (1,)), ((), ())), a, b.T.copy()),
                     ((((0,), (1,)), ((), ())), a.T.copy(), b.T.copy())]:
        np.testing.assert_array_equal(dot_general_p.impl(x, y, dimension_numbers=dn), want)
    assert (m * n >= _LARGE_PRODUCT) == ((m, n) in [(128, 128), (200, 100)])
    if dtype != np.complex128:
        g = grad(lambda a: pnp.sum(pnp.tanh(a @ b)))(a)
        # (float64 tanh on large arrays is the vectorised kernel: within 4 ulp)
        np.testing.assert_allclose(g, np.dot(1 - np.tanh(want) ** 2, b.T),
                                   rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
