"""Control flow (cond, switch, scan, fori_loop, while_loop): values against Python
loops, derivatives against unrolled code and finite differences, nesting with the
other transforms, printed IR, and the errors for bad bodies."""

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, check_jaxpr, tree_flatten
from transforms import grad, jvp, vjp, linearize, jit, hessian, value_and_grad
from tests.check_grads import check_grads

RNG = np.random.default_rng(0)
X3 = np.array([0.5, -0.2, 0.3])
W3 = RNG.normal(size=(3, 3)) / 2
XS = RNG.normal(size=(5, 3))


def close(a, b, tol=1e-12):
    for x, y in zip(tree_flatten(a)[0], tree_flatten(b)[0]):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def typechecked(f, *args):
    closed = make_jaxpr(f)(*args)
    check_jaxpr(closed)
    return closed


# --- cond / switch: values ------------------------------------------------------------

def test_cond_selects_and_takes_pytrees():
    def f(p, x):
        return lax.cond(p, lambda d: {'a': d['x'] * 2, 'b': d['y']},
                        lambda d: {'a': -d['x'], 'b': d['y'] + 1}, {'x': x, 'y': 3.0})
    close(f(True, X3), {'a': 2 * X3, 'b': 3.0})
    close(f(False, X3), {'a': -X3, 'b': 4.0})
    close(jit(f)(np.bool_(False), X3), {'a': -X3, 'b': 4.0})
    # a numeric predicate means `pred != 0`
    assert lax.cond(0.0, lambda: 1.0, lambda: 2.0) == 2.0
    assert lax.cond(np.int64(-3), lambda: 1.0, lambda: 2.0) == 1.0


def test_switch_clamps_its_index():
    fs = [lambda x: x, lambda x: 2 * x, lambda x: 3 * x]
    for i, want in [(-4, 1), (0, 1), (1, 2), (2, 3), (9, 3)]:
        np.testing.assert_allclose(lax.switch(i, fs, X3), want * X3)
        np.testing.assert_allclose(jit(lambda i, x: lax.switch(i, fs, x))(np.int64(i), X3),
                                   want * X3)


def test_cond_closure_over_outer_tracer():
    # the branch closes over the differentiated variable
    def f(w):
        return lax.cond(w.sum() > 0, lambda x: x * w, lambda x: x - w, X3).sum()
    np.testing.assert_allclose(grad(f)(X3), X3)
    np.testing.assert_allclose(grad(f)(-X3), -np.ones(3))


# --- cond: derivatives ------------------------------------------------------------------

def f_cond(x, y):
    return lax.cond(x.sum() > 0, lambda a, b: pnp.sin(a) * b, lambda a, b: a * pnp.cos(b),
                    x, y).sum()


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_cond_derivatives(sign):
    x, y = sign * X3, np.array([1.5, 2.0, -0.7])
    check_grads(f_cond, (x, y), order=2, modes=("fwd", "rev"))
    want = np.cos(x) * y if sign > 0 else np.cos(y)
    np.testing.assert_allclose(grad(f_cond)(x, y), want, rtol=1e-12)
    for g in (jit(grad(f_cond)), grad(jit(f_cond))):
        np.testing.assert_allclose(g(x, y), want, rtol=1e-12)


def test_grad_of_staged_cond_typechecks_and_has_one_residual_signature():
    y = np.array([1.5, 2.0, -0.7])
    closed = typechecked(grad(f_cond), X3, y)
    conds = [e for e in closed.jaxpr.eqns if e.primitive.name == 'cond']
    assert len(conds) == 2          # the known half and the linear (unknown) half
    known, lin = conds
    for b in known.params['branches']:
        assert [a.shape for a in b.out_avals] == [v.aval.shape for v in known.outvars]
    np.testing.assert_allclose(jit(grad(f_cond))(X3, y), np.cos(X3) * y)
    typechecked(lambda x: jvp(grad(f_cond), (x, y), (X3, y))[1], X3)


def test_switch_derivatives_match_each_branch():
    fs = [lambda x: pnp.sin(x), lambda x: x ** 3, lambda x: pnp.exp(-x)]
    for i, d in enumerate([np.cos(X3), 3 * X3 ** 2, -np.exp(-X3)]):
        f = lambda x: lax.switch(i, fs, x).sum()
        np.testing.assert_allclose(grad(f)(X3), d, rtol=1e-12)
        g = jit(grad(lambda x, i: lax.switch(i, fs, x).sum()))
        np.testing.assert_allclose(g(X3, np.int64(i)), d, rtol=1e-12)
        check_grads(lambda x: lax.switch(i, fs, x), (X3,), order=2)


# --- scan: values --------------------------------------------------------------------

def python_scan(f, init, xs, length=None, reverse=False):
    n = length if xs is None else len(tree_flatten(xs)[0][0])
    idx = range(n - 1, -1, -1) if reverse else range(n)
    carry, ys = init, [None] * n
    for i in idx:
        x = None if xs is None else _index_tree(xs, i)
        carry, ys[i] = f(carry, x)
    return carry, ys


def _index_tree(t, i):
    from tracer import tree_map
    return tree_map(lambda a: a[i], t)


def rnn_cell(w):
    def cell(h, x):
        h = pnp.tanh(w @ h + x)
        return h, {'h': h, 's': h.sum()}
    return cell


@pytest.mark.parametrize('reverse', [False, True])
def test_scan_matches_python_loop(reverse):
    carry, ys = lax.scan(rnn_cell(W3), X3, XS, reverse=reverse)
    c2, ys2 = python_scan(rnn_cell(W3), X3, XS, reverse=reverse)
    close(carry, c2)
    close(ys['h'], np.stack([y['h'] for y in ys2]))
    close(ys['s'], np.array([y['s'] for y in ys2]))


def test_scan_without_xs_and_with_empty_length():
    c, ys = lax.scan(lambda c, x: (c * 2, c), 1.0, None, length=4)
    assert x_is_none_ok(c, ys)
    c, ys = lax.scan(lambda c, x: (c + x, c), np.zeros(3), np.zeros((0, 3)))
    assert ys.shape == (0, 3) and np.all(c == 0)


def x_is_none_ok(c, ys):
    return c == 16.0 and np.array_equal(ys, [1.0, 2.0, 4.0, 8.0])


def test_scan_weak_initial_carry_takes_the_body_dtype():
    xs = np.ones(4, np.float32)
    c, _ = lax.scan(lambda c, x: (c + x, None), 0.0, xs)
    assert c.dtype == np.float32 and c == 4.0
    assert lax.fori_loop(0, 3, lambda i, c: c + xs[0], 0.0).dtype == np.float32


def test_fori_loop_static_is_a_scan_dynamic_is_a_while():
    body = lambda i, x: x * 2 + i
    assert lax.fori_loop(0, 5, body, 1.0) == 1.0 * 32 + (16 * 0 + 8 * 1 + 4 * 2 + 2 * 3 + 4)
    assert lax.fori_loop(3, 1, body, 1.0) == 1.0
    static = typechecked(lambda x: lax.fori_loop(0, 5, body, x), 1.0)
    assert [e.primitive.name for e in static.jaxpr.eqns] == ['scan']
    dynamic = typechecked(lambda x, n: lax.fori_loop(0, n, body, x), 1.0, 5)
    assert 'while' in [e.primitive.name for e in dynamic.jaxpr.eqns]
    assert jit(lambda x, n: lax.fori_loop(0, n, body, x))(1.0, np.int64(5)) == 58.0


def test_while_loop_values():
    def collatz(n):
        return lax.while_loop(lambda c: c[0] != 1,
                              lambda c: (lax.cond(c[0] % 2 == 0, lambda k: k // 2,
                                                  lambda k: 3 * k + 1, c[0]), c[1] + 1),
                              (n, 0))[1]
    assert collatz(np.int64(27)) == 111
    assert jit(collatz)(np.int64(6)) == 8


# --- scan / fori / while: derivatives ----------------------------------------------------

def f_rnn(w, h0, xs):
    h, ys = lax.scan(rnn_cell(w), h0, xs)
    return h.sum() + ys['s'].sum() + 0.1 * (ys['h'] ** 2).sum()


def f_rnn_unrolled(w, h0, xs):
    h, tot, sq = h0, 0.0, 0.0
    for x in xs:
        h = pnp.tanh(w @ h + x)
        tot = tot + h.sum()
        sq = sq + (h ** 2).sum()
    return h.sum() + tot + 0.1 * sq


def test_scan_gradients_equal_the_unrolled_loop():
    for argnums in (0, 1, 2, (0, 1, 2)):
        close(grad(f_rnn, argnums)(W3, X3, XS), grad(f_rnn_unrolled, argnums)(W3, X3, XS))
    t = (np.ones((3, 3)), X3, XS)
    close(jvp(f_rnn, (W3, X3, XS), t), jvp(f_rnn_unrolled, (W3, X3, XS), t))


def test_scan_check_grads_second_order():
    check_grads(f_rnn, (W3, X3, XS[:3]), order=2, modes=("fwd", "rev"))
    check_grads(lambda x: lax.scan(lambda c, a: (c * a, c + a), 1.0, x, reverse=True),
                (np.array([0.5, 2.0, -1.5]),), order=2)


def test_scan_hessian_and_hvp_match_unrolled():
    args = (W3, X3, XS[:3])
    H1 = hessian(f_rnn, 1)(*args)
    H2 = hessian(f_rnn_unrolled, 1)(*args)
    close(H1, H2, 1e-10)
    v = np.array([1.0, -2.0, 0.5])
    hvp = jvp(grad(f_rnn, 1), args, (np.zeros((3, 3)), v, np.zeros((3, 3))))[1]
    close(hvp, H2 @ v, 1e-10)


def test_grad_of_scan_stacks_only_needed_residuals():
    # the forward scan keeps per step: h_prev (for dW) and 1 - h^2 (tanh'); xs and W
    # are passed on, not stacked
    f = lambda w, xs: lax.scan(rnn_cell(w), X3, xs)[0].sum()
    closed = typechecked(grad(f), W3, XS)
    fwd, bwd = [e for e in closed.jaxpr.eqns if e.primitive.name == 'scan']
    stacked = [v.aval.shape for v in fwd.outvars[1:] if type(v).__name__ != 'DropVar']
    assert stacked == [(5, 3), (5, 3)]
    assert bwd.params['reverse'] and not fwd.params['reverse']


def test_linearize_of_scan_runs_the_known_loop_once():
    out, f_jvp = linearize(lambda w: f_rnn(w, X3, XS), W3)
    assert [e.primitive.name for e in f_jvp.jaxpr.eqns].count('scan') == 1
    t = RNG.normal(size=(3, 3))
    close(f_jvp(t), jvp(lambda w: f_rnn_unrolled(w, X3, XS), (W3,), (t,))[1])


def test_fori_loop_derivatives():
    def f(x):
        return lax.fori_loop(0, 4, lambda i, c: c * pnp.sin(c + i), x).sum()

    def f_py(x):
        for i in range(4):
            x = x * pnp.sin(x + i)
        return x.sum()
    check_grads(f, (X3,), order=2)
    close(grad(f)(X3), grad(f_py)(X3))
    # jvp of grad through fori_loop (a Hessian-vector product)
    v = np.array([1.0, 0.5, -1.0])
    close(jvp(grad(f), (X3,), (v,))[1], hessian(f_py)(X3) @ v, 1e-10)
    typechecked(lambda x: jvp(grad(f), (x,), (v,))[1], X3)


def test_while_loop_forward_mode_and_reverse_mode_error():
    def f(x):
        return lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, pnp.sin(c[1]) * 1.1),
                              (0, x))[1].sum()

    def f_py(x):
        for _ in range(5):
            x = pnp.sin(x) * 1.1
        return x.sum()
    check_grads(f, (X3,), order=2, modes=("fwd",))
    close(jvp(f, (X3,), (np.ones(3),)), jvp(f_py, (X3,), (np.ones(3),)))
    out, f_jvp = linearize(f, X3)
    close(f_jvp(np.ones(3)), jvp(f_py, (X3,), (np.ones(3),))[1])
    with pytest.raises(ValueError, match=r"Reverse-mode differentiation does not work for "
                                         r"lax.while_loop[\s\S]*Try using lax.scan"):
        grad(f)(X3)
    with pytest.raises(ValueError, match="Reverse-mode"):
        # traced bounds (under jit) make fori_loop a while loop
        grad(jit(lambda x, n: lax.fori_loop(0, n, lambda i, c: c * 2.0, x)))(1.0, np.int64(3))
    # concrete NumPy bounds are static: a scan, reverse-differentiable
    assert grad(lambda x, n: lax.fori_loop(0, n, lambda i, c: c * 2.0, x))(1.0, np.int64(3)) == 8
    # a while loop whose carries do not depend on the input is fine under grad
    g = grad(lambda x: x * lax.while_loop(lambda c: c < 10, lambda c: c * 2, 1))
    assert g(3.0) == 16.0


def test_stop_gradient_inside_control_flow():
    def f(x):
        c, ys = lax.scan(lambda c, a: (c * lax.stop_gradient(a) + a, lax.stop_gradient(c)),
                         1.0, x)
        return c + ys.sum() + lax.cond(c > 0, lambda z: lax.stop_gradient(z) * z,
                                       lambda z: z, x[0])
    for a in (np.array([0.5, 2.0, -1.5]), np.array([0.5, 2.0, 1.5])):
        # c1 = a0 (c0 = 1 times a stopped a0) + a0, c2 = c1 sg(a1) + a1, c3 = c2 sg(a2) + a2:
        # dc3 = (da0 a1 + da1) a2 + da2; the ys are stopped; the cond adds sg(x0) x0 or x0
        c3 = (2 * a[0] * a[1] + a[1]) * a[2] + a[2]
        want = np.array([a[1] * a[2] + (a[0] if c3 > 0 else 1.0), a[2], 1.0])
        np.testing.assert_allclose(grad(f)(a), want, rtol=1e-12)
        np.testing.assert_allclose(jit(grad(f))(a), want, rtol=1e-12)
        np.testing.assert_allclose(jvp(f, (a,), (np.ones(3),))[1], want.sum(), rtol=1e-12)


# --- nesting --------------------------------------------------------------------------

def f_scan_of_cond(w):
    def body(c, xi):
        c = lax.cond(xi > 0, lambda c: pnp.sin(c) * w, lambda c: c * c, c)
        return c, c.sum()
    return lax.scan(body, X3, np.array([1., -1., 2., -3.]))[1].sum()


def f_scan_of_cond_py(w):
    c, tot = X3, 0.0
    for xi in [1., -1., 2., -3.]:
        c = pnp.sin(c) * w if xi > 0 else c * c
        tot = tot + c.sum()
    return tot


def test_grad_of_scan_of_cond():
    close(grad(f_scan_of_cond)(X3), grad(f_scan_of_cond_py)(X3))
    check_grads(f_scan_of_cond, (X3,), order=2)
    typechecked(grad(f_scan_of_cond), X3)


def test_jit_composition():
    want = grad(f_scan_of_cond_py)(X3)
    close(grad(jit(f_scan_of_cond))(X3), want)
    close(jit(grad(f_scan_of_cond))(X3), want)
    close(jit(grad(jit(f_scan_of_cond)))(X3), want)
    # a jit inside the scan body
    inner = jit(lambda h, x: pnp.tanh(W3 @ h + x))
    f = lambda h0: lax.scan(lambda h, x: (inner(h, x), None), h0, XS)[0].sum()
    close(grad(f)(X3), grad(lambda h0: f_rnn_unrolled_last(W3, h0, XS))(X3))


def f_rnn_unrolled_last(w, h, xs):
    for x in xs:
        h = pnp.tanh(w @ h + x)
    return h.sum()


def test_nested_scans_and_cond_in_while():
    def f(x):
        def outer(c, row):
            c2, _ = lax.scan(lambda d, e: (d * pnp.cos(e) + e, None), c, row)
            return c2, c2
        return lax.scan(outer, x, XS[:2].T)[1].sum()

    def f_py(x):
        tot, c = 0.0, x
        for row in XS[:2].T:
            for e in row:
                c = c * pnp.cos(e) + e
            tot = tot + c
        return tot
    close(f(0.3), f_py(0.3))
    close(grad(f)(0.3), grad(f_py)(0.3))
    check_grads(f, (0.3,), order=2)

    def g(x):
        return lax.while_loop(lambda c: c[0] < 4,
                              lambda c: (c[0] + 1, lax.cond(c[0] % 2 == 0, pnp.sin, pnp.cos, c[1])),
                              (0, x))[1]
    close(jvp(g, (0.3,), (1.0,))[1],
          jvp(lambda x: pnp.cos(pnp.sin(pnp.cos(pnp.sin(x)))), (0.3,), (1.0,))[1])


# --- tracing is independent of the trip count -------------------------------------------

def test_tracing_a_scan_does_not_depend_on_its_length():
    traces = []

    def body(c, x):
        traces.append(1)
        return pnp.tanh(c + x), c

    def f(xs):
        return lax.scan(body, 0.0, xs)
    small = make_jaxpr(f)(np.zeros(10))
    big = make_jaxpr(f)(np.zeros(100_000))
    assert len(big.jaxpr.eqns) == len(small.jaxpr.eqns) == 1
    assert big.jaxpr.eqns[0].params['length'] == 100_000
    # the loop body is traced once per scan, not once per step (time is measured
    # in benchmarks/, W8)
    assert len(traces) == 2
    gbig = make_jaxpr(grad(lambda xs: f(xs)[0]))(np.zeros(100_000))
    gsmall = make_jaxpr(grad(lambda xs: f(xs)[0]))(np.zeros(10))
    assert len(gbig.jaxpr.eqns) == len(gsmall.jaxpr.eqns)


# --- printed IR -------------------------------------------------------------------------

def test_printed_scan():
    txt = str(make_jaxpr(lambda xs: lax.scan(lambda c, x: (c + x, c * x), 0.0, xs))(np.ones(5)))
    assert txt == """\
{ lambda ; a:f64[5]. let
    b:f64[] c:f64[5] = scan[jaxpr={ lambda ; d:f64[] e:f64[]. let
          f:f64[] = add d e
          g:f64[] = mul d e
        in (f, g) } length=5 num_carry=1 num_consts=0 reverse=False unroll=1] 0.0:f64[] a
  in (b, c) }"""


def test_printed_cond_and_while():
    txt = str(make_jaxpr(lambda p, x: lax.cond(p, pnp.sin, lambda x: x * 2, x))(True, 1.0))
    assert txt == """\
{ lambda ; a:bool[] b:f64[]. let
    c:i32[] = convert_element_type[new_dtype=int32 weak_type=False] a
    d:f64[] = cond[branches=(
      { lambda ; e:f64[]. let f:f64[] = mul e 2.0:f64[] in (f,) }
      { lambda ; g:f64[]. let h:f64[] = sin g in (h,) }
    )] c b
  in (d,) }"""
    txt = str(make_jaxpr(lambda x: lax.while_loop(lambda c: c < 10.0, lambda c: c * 2, x))(1.0))
    assert txt == """\
{ lambda ; a:f64[]. let
    b:f64[] = while[body_jaxpr={ lambda ; c:f64[]. let
          d:f64[] = mul c 2.0:f64[]
        in (d,) } body_nconsts=0 cond_jaxpr={ lambda ; e:f64[]. let
          f:bool[] = lt e 10.0:f64[]
        in (f,) } cond_nconsts=0] a
  in (b,) }"""


def test_closed_over_tracers_become_consts():
    def f(w, xs):
        return lax.scan(lambda c, x: (c * w + x, None), 0.0, xs)[0]
    closed = typechecked(f, 2.0, np.ones(3))
    eqn = closed.jaxpr.eqns[0]
    assert eqn.params['num_consts'] == 1 and eqn.invars[0] is closed.jaxpr.invars[0]


# --- errors ---------------------------------------------------------------------------

def test_cond_branch_type_mismatch():
    def tf(x):
        return x

    def ff(x):
        return x.astype(np.float32)
    with pytest.raises(TypeError, match=r"f32\[3\] in false_fun 'ff' \(test_control_flow.py:"
                                        r"\d+\) and f64\[3\] in true_fun 'tf'[\s\S]*"
                                        r"at test_control_flow.py:\d+"):
        lax.cond(True, tf, ff, np.ones(3))
    with pytest.raises(TypeError, match=r"structure"):
        lax.cond(True, tf, lambda x: (x, x), np.ones(3))
    with pytest.raises(TypeError, match=r"branch 0 .* branch 2"):
        lax.switch(0, [tf, tf, lambda x: x[:2]], np.ones(3))


def test_scan_carry_type_change():
    def body(c, x):
        return c[None] * x, x
    with pytest.raises(TypeError, match=r"scan: the body function 'body' \(test_control_flow"
                                        r".py:\d+\) changes the type of the carry: carry leaf 0 "
                                        r"is f64\[\] on input but f64\[1\] on output"
                                        r"[\s\S]*at test_control_flow.py:\d+"):
        lax.scan(body, 0.0, np.ones(3))
    with pytest.raises(TypeError, match=r"f32\[2\] on input but f64\[2\]"):
        lax.scan(lambda c, x: (c * x, None), np.ones(2, np.float32), np.ones((3, 2)))
    with pytest.raises(TypeError, match=r"must return a pair"):
        lax.scan(lambda c, x: c, 0.0, np.ones(3))
    with pytest.raises(ValueError, match=r"leading axis"):
        lax.scan(lambda c, x: (c, x), 0.0, [np.ones(3), np.ones(4)])


def test_while_predicate_and_body_errors():
    def not_bool(c):
        return c
    with pytest.raises(TypeError, match=r"the cond function 'not_bool' \(test_control_flow.py:"
                                        r"\d+\) must return a boolean scalar \(bool\[\]\), got "
                                        r"f64\[\][\s\S]*at test_control_flow.py"):
        lax.while_loop(not_bool, lambda c: c + 1, 0.0)
    with pytest.raises(TypeError, match=r"got bool\[2\]"):
        lax.while_loop(lambda c: c < np.ones(2), lambda c: c + 1, np.zeros(2))

    def body(c):
        return (c + 1).astype(np.float32)
    with pytest.raises(TypeError, match=r"body function 'body'.*f64\[\] on input but f32\[\]"):
        lax.while_loop(lambda c: c < 3, body, np.float64(0.0))
    with pytest.raises(TypeError, match=r"predicate must be a scalar, got bool\[2\]"):
        lax.cond(np.ones(2) > 0, pnp.sin, pnp.cos, 1.0)
