"""Speed rewrites of scan's rules, checked for unchanged values: the cotangents of a
transposed scan's loop-invariant inputs summed after the loop (one dot_general over
the stacked per-step factors instead of an outer product per step), against unrolled
Python loops, the unoptimised path (no stacking budget) and finite differences."""
import numpy as np
import pytest

import primitives.numpy as pnp
import primitives.control_flow as cf
from primitives import lax
from tracer import make_jaxpr, check_jaxpr, tree_flatten
from transforms import grad, jvp, vmap, jit, value_and_grad
from tests.check_grads import check_grads


def close(a, b, tol):
    fa, fb = tree_flatten(a)[0], tree_flatten(b)[0]
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def rnn_params(H, D, dtype, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(H, H)) / np.sqrt(H)).astype(dtype)
    U = (rng.normal(size=(H, D)) / np.sqrt(D)).astype(dtype)
    b = (0.1 * rng.normal(size=H)).astype(dtype)
    return W, U, b


def make_rnn(form='Wh', reverse=False):
    def cell(W, U, b, h, x):
        if form == 'Wh':        # W @ h with h a vector: outer products per step
            return pnp.tanh(W @ h + U @ x + b)
        if form == 'hWT':       # batched rows: h (B, H) @ W.T: a contraction over B
            return pnp.tanh(h @ W.T + x @ U.T + b)
        if form == 'WTh':       # W.T @ h: the cotangent is transposed back
            return pnp.tanh(W.T @ h + U @ x + b)
        if form == 'twice':     # W used twice: two contributions to one cotangent
            return pnp.tanh(W @ h + 0.5 * (W @ pnp.tanh(h)) + U @ x + b)
        raise ValueError(form)

    def loss(params, h0, X):
        W, U, b = params

        def body(h, x):
            h = cell(W, U, b, h, x)
            return h, pnp.sum(h * h)
        h, ys = lax.scan(body, h0, X, reverse=reverse)
        return pnp.sum(h) + 0.1 * pnp.sum(ys)

    def unrolled(params, h0, X):
        W, U, b = params
        h, acc = h0, 0.0
        order = range(X.shape[0] - 1, -1, -1) if reverse else range(X.shape[0])
        ys = []
        for t in order:
            h = cell(W, U, b, h, X[t])
            ys.append(pnp.sum(h * h))
        total = pnp.sum(h)
        for y in ys:
            acc = acc + y
        return total + 0.1 * acc
    return loss, unrolled


def rnn_args(form, H, D, T, dtype, B=3, seed=1):
    rng = np.random.default_rng(seed)
    params = rnn_params(H, D, dtype, seed)
    if form == 'hWT':
        h0 = (0.1 * rng.normal(size=(B, H))).astype(dtype)
        X = rng.normal(size=(T, B, D)).astype(dtype)
    else:
        h0 = (0.1 * rng.normal(size=H)).astype(dtype)
        X = rng.normal(size=(T, D)).astype(dtype)
    return params, h0, X


def unoptimised(monkeypatch, f):
    """f evaluated with a zero stacking budget: every const cotangent accumulated in
    the carry, as before the rewrite."""
    with monkeypatch.context() as m:
        m.setattr(cf, '_STACK_BUDGET', 0)
        return f()


def top_eqns(closed):
    return [e.primitive.name for e in closed.jaxpr.eqns]


# --- printed IR -------------------------------------------------------------------------

def test_rnn_grad_sums_weight_cotangents_after_the_loop():
    loss, _ = make_rnn('Wh')
    params, h0, X = rnn_args('Wh', 6, 4, 9, np.float64)
    closed = make_jaxpr(grad(loss))(params, h0, X)
    check_jaxpr(closed)
    names = top_eqns(closed)
    last_scan = max(i for i, n in enumerate(names) if n == 'scan')
    post = [e for e in closed.jaxpr.eqns[last_scan + 1:] if e.primitive.name == 'dot_general']
    # ct_W = sum_t outer(dz_t, h_{t-1}) and ct_U = sum_t outer(dz_t, x_t): one
    # dot_general each, contracting the step axis
    assert len(post) == 2
    for e in post:
        assert e.params['dimension_numbers'] == (((0,), (0,)), ((), ()))
        assert [v.aval.shape for v in e.invars] in ([(9, 6), (9, 6)], [(9, 6), (9, 4)])
        assert e.outvars[0].aval.shape in ((6, 6), (6, 4))
    assert 'reduce_sum' in names[last_scan + 1:]          # ct_b = sum_t dz_t
    # the transposed scan carries no matrix and computes no outer product
    tscan = closed.jaxpr.eqns[last_scan]
    carry = tscan.outvars[:tscan.params['num_carry']]
    assert all(v.aval.shape == (6,) for v in carry)
    body = tscan.params['jaxpr'].jaxpr
    for e in body.eqns:
        if e.primitive.name == 'add_any':
            assert e.outvars[0].aval.shape == (6,)
        if e.primitive.name == 'dot_general':
            assert e.params['dimension_numbers'][0] != ((), ())
    text = str(closed)
    assert 'dimension_numbers=(([0], [0]), ([], []))' in text


def test_ir_transposed_and_batched_forms():
    for form in ('hWT', 'WTh'):
        loss, _ = make_rnn(form)
        params, h0, X = rnn_args(form, 5, 3, 4, np.float64)
        closed = make_jaxpr(grad(loss))(params, h0, X)
        check_jaxpr(closed)
        names = top_eqns(closed)
        last_scan = max(i for i, n in enumerate(names) if n == 'scan')
        post = [e for e in closed.jaxpr.eqns[last_scan + 1:]
                if e.primitive.name == 'dot_general']
        assert len(post) == 2, (form, names)
        if form == 'hWT':       # the batch rows and the steps are both contracted
            for e in post:
                (lc, rc), _ = e.params['dimension_numbers']
                assert lc[0] == 0 and rc[0] == 0 and len(lc) == 2
        tscan = closed.jaxpr.eqns[last_scan]
        carry = tscan.outvars[:tscan.params['num_carry']]
        assert all(v.aval.shape != (5, 5) for v in carry)


def test_zero_budget_keeps_the_carry_accumulation(monkeypatch):
    loss, _ = make_rnn('Wh')
    params, h0, X = rnn_args('Wh', 6, 4, 9, np.float64)
    closed = unoptimised(monkeypatch, lambda: make_jaxpr(grad(loss))(params, h0, X))
    names = top_eqns(closed)
    last_scan = max(i for i, n in enumerate(names) if n == 'scan')
    assert 'dot_general' not in names[last_scan + 1:]
    tscan = closed.jaxpr.eqns[last_scan]
    carry = tscan.outvars[:tscan.params['num_carry']]
    assert (6, 6) in [v.aval.shape for v in carry]


# --- values ------------------------------------------------------------------------------

CASES = [
    ('Wh', 6, 4, 9, np.float64, False),
    ('Wh', 3, 7, 5, np.float32, False),
    ('Wh', 6, 4, 9, np.float64, True),
    ('hWT', 5, 3, 6, np.float64, False),
    ('hWT', 4, 6, 5, np.float32, True),
    ('WTh', 5, 3, 6, np.float64, False),
    ('twice', 4, 2, 7, np.float64, True),
    ('twice', 4, 5, 3, np.float32, False),
]


@pytest.mark.parametrize('form,H,D,T,dtype,reverse', CASES)
def test_grads_equal_unrolled_and_unoptimised(monkeypatch, form, H, D, T, dtype, reverse):
    loss, unrolled = make_rnn(form, reverse)
    params, h0, X = rnn_args(form, H, D, T, dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    g = grad(loss, argnums=(0, 1, 2))(params, h0, X)
    close(g, grad(unrolled, argnums=(0, 1, 2))(params, h0, X), tol)
    close(g, unoptimised(monkeypatch, lambda: grad(loss, argnums=(0, 1, 2))(params, h0, X)),
          tol)
    close(jit(grad(loss, argnums=(0, 1, 2)))(params, h0, X), g, tol * 10)
    v, g2 = value_and_grad(loss)(params, h0, X)
    close(g2, g[0], tol)
    np.testing.assert_allclose(v, unrolled(params, h0, X), rtol=tol * 10)


@pytest.mark.parametrize('form,reverse', [('Wh', False), ('hWT', True), ('twice', False)])
def test_grads_against_finite_differences(form, reverse):
    loss, _ = make_rnn(form, reverse)
    params, h0, X = rnn_args(form, 3, 2, 4, np.float64)
    check_grads(lambda W, U, b, h0, X: loss((W, U, b), h0, X), (*params, h0, X), order=2,
                modes=('rev',))


def test_partial_budget_mixes_carry_and_post_loop_sums(monkeypatch):
    # two recurrences in one scan: the weights' per-step factors are two different
    # vectors; with room for one stacked vector only, the first weight's cotangent is
    # summed after the loop and the second one's stays accumulated in the carry
    rng = np.random.default_rng(5)
    W1, W2 = rng.normal(size=(2, 5, 5)) / 2
    X = rng.normal(size=(6, 5))

    def step(W1, W2, h1, h2, x):
        return pnp.tanh(W1 @ h1 + x), pnp.tanh(W2 @ h2 - x)

    def loss(W1, W2, X):
        def body(c, x):
            return step(W1, W2, *c, x), None
        (h1, h2), _ = lax.scan(body, (np.zeros(5), np.ones(5)), X)
        return pnp.sum(h1 * h2)

    def unrolled(W1, W2, X):
        h1, h2 = np.zeros(5), np.ones(5)
        for t in range(X.shape[0]):
            h1, h2 = step(W1, W2, h1, h2, X[t])
        return pnp.sum(h1 * h2)
    want = grad(unrolled, argnums=(0, 1))(W1, W2, X)
    with monkeypatch.context() as m:
        m.setattr(cf, '_STACK_BUDGET', 6 * 5 * 8)
        closed = make_jaxpr(grad(loss, argnums=(0, 1)))(W1, W2, X)
        got = grad(loss, argnums=(0, 1))(W1, W2, X)
    check_jaxpr(closed)
    names = top_eqns(closed)
    last_scan = max(i for i, n in enumerate(names) if n == 'scan')
    assert names[last_scan + 1:].count('dot_general') == 1
    tscan = closed.jaxpr.eqns[last_scan]
    carry = tscan.outvars[:tscan.params['num_carry']]
    assert [v.aval.shape for v in carry].count((5, 5)) == 1
    close(got, want, 1e-12)
    close(grad(loss, argnums=(0, 1))(W1, W2, X), want, 1e-12)


def test_elementwise_weights_and_several_consts():
    # consts entering through elementwise products (no dot): their per-step
    # contributions are stacked and reduce_summed after the loop
    rng = np.random.default_rng(3)
    a, c = rng.normal(size=4), rng.normal(size=(4, 4)) / 2
    s = np.float64(0.7)
    X = rng.normal(size=(6, 4))

    def loss(a, c, s, X):
        def body(h, x):
            h = pnp.sin(a * h + s * (c @ x)) + x * a
            return h, h[0] * s
        h, ys = lax.scan(body, np.zeros(4), X)
        return pnp.sum(h * h) + pnp.sum(ys)

    def unrolled(a, c, s, X):
        h, tot = np.zeros(4), 0.0
        for t in range(X.shape[0]):
            h = pnp.sin(a * h + s * (c @ X[t])) + X[t] * a
            tot = tot + h[0] * s
        return pnp.sum(h * h) + tot
    g = grad(loss, argnums=(0, 1, 2, 3))(a, c, s, X)
    close(g, grad(unrolled, argnums=(0, 1, 2, 3))(a, c, s, X), 1e-12)
    closed = make_jaxpr(grad(loss, argnums=(0, 1, 2)))(a, c, s, X)
    check_jaxpr(closed)
    names = top_eqns(closed)
    last_scan = max(i for i, n in enumerate(names) if n == 'scan')
    assert 'reduce_sum' in names[last_scan + 1:]


def test_zero_length_scan_gives_zero_weight_cotangents():
    loss, _ = make_rnn('Wh')
    params, h0, _ = rnn_args('Wh', 4, 3, 1, np.float64)
    X = np.zeros((0, 3))
    gW, gU, gb = grad(loss)(params, h0, X)
    np.testing.assert_array_equal(gW, np.zeros((4, 4)))
    np.testing.assert_array_equal(gU, np.zeros((4, 3)))
    np.testing.assert_array_equal(gb, np.zeros(4))


def test_vmap_and_jvp_of_grad():
    loss, unrolled = make_rnn('Wh')
    params, h0, X = rnn_args('Wh', 4, 3, 5, np.float64)
    Xs = np.stack([X, 2 * X, -X])
    got = vmap(grad(loss), in_axes=(None, None, 0))(params, h0, Xs)
    for k in range(3):
        close(tuple(g[k] for g in got), grad(unrolled)(params, h0, Xs[k]), 1e-12)
    tangent = tuple(np.ones_like(p) * 0.1 for p in params)
    _, hvp = jvp(lambda p: grad(loss)(p, h0, X), (params,), (tangent,))
    _, hvp_ref = jvp(lambda p: grad(unrolled)(p, h0, X), (params,), (tangent,))
    close(hvp, hvp_ref, 1e-11)


def test_w8_workload_gradient_matches_hand_bptt():
    from benchmarks.workloads import rnn_data, make_rnn_loss, rnn_numpy_grad
    params, X = rnn_data(T=50)
    got = grad(make_rnn_loss(pnp, lax))(params, X)
    close(got, rnn_numpy_grad(params, X), 1e-10)


# --- eager scans: carry-independent work hoisted out of the loop -------------------------

def no_hoisting(monkeypatch, f):
    with monkeypatch.context() as m:
        m.setattr(cf, '_HOIST_MIN_LENGTH', 1 << 40)
        return f()


def scan_eqn(f, *args):
    closed = make_jaxpr(f)(*args)
    return next(e for e in closed.jaxpr.eqns if e.primitive.name == 'scan')


def test_w8_forward_input_projection_is_one_batched_product():
    from benchmarks.workloads import rnn_data, make_rnn_loss
    params, X = rnn_data(T=40)
    e = scan_eqn(make_rnn_loss(pnp, lax), params, X)
    p = e.params
    plan = cf._hoist_plan(p['jaxpr'], p['num_consts'], p['num_carry'], p['length'])
    pre, body, n_inv, keep_c, keep_x = plan
    assert n_inv == 0 and keep_x == [False]          # x_t is only read by U @ x_t
    dots = [q for q in pre.jaxpr.eqns if q.primitive.name == 'dot_general']
    assert len(dots) == 1 and dots[0].outvars[0].aval.shape in ((64, 40), (40, 64))
    assert [q.primitive.name for q in body.jaxpr.eqns].count('dot_general') == 1   # W @ h
    check_jaxpr(pre)
    check_jaxpr(body)
    # too short a scan is not worth batching
    assert cf._HOIST_MIN_LENGTH > 10
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cf, '_STACK_BUDGET', 0)
        assert cf._hoist_plan(p['jaxpr'], p['num_consts'], p['num_carry'], p['length']) is None


@pytest.mark.parametrize('dtype,reverse', [(np.float64, False), (np.float32, True)])
def test_hoisted_scan_values_and_grads(monkeypatch, dtype, reverse):
    # invariant work (W.T, s * b), per-step work (U @ x, an elementwise function of x,
    # a ys output that is hoisted), an xs only read by hoisted work, and an xs read
    # by both
    rng = np.random.default_rng(7)
    H, D, T = 5, 3, 40
    W = (rng.normal(size=(H, H)) / 3).astype(dtype)
    U = (rng.normal(size=(H, D)) / 2).astype(dtype)
    b = rng.normal(size=H).astype(dtype)
    X = rng.normal(size=(T, D)).astype(dtype)
    Z = rng.normal(size=(T, H)).astype(dtype)
    s = dtype(0.3)

    def step(W, U, b, h, x, z):
        px = U @ x
        h = pnp.tanh(W.T @ h + px + s * b) * pnp.cos(z) + z * h
        return h, (px * 2.0, pnp.sum(h))

    def f(W, U, b, X, Z):
        def body(h, xz):
            return step(W, U, b, h, *xz)
        h, (ys, hs) = lax.scan(body, np.zeros(H, dtype), (X, Z), reverse=reverse)
        return pnp.sum(h) + pnp.sum(ys * ys) + pnp.sum(hs)

    def unrolled(W, U, b, X, Z):
        h, tot = np.zeros(H, dtype), 0.0
        order = range(T - 1, -1, -1) if reverse else range(T)
        for t in order:
            h, (y, hsum) = step(W, U, b, h, X[t], Z[t])
            tot = tot + pnp.sum(y * y) + hsum
        return pnp.sum(h) + tot
    args = (W, U, b, X, Z)
    tol = 1e-11 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(f(*args), unrolled(*args), rtol=tol)
    np.testing.assert_allclose(f(*args), no_hoisting(monkeypatch, lambda: f(*args)), rtol=tol)
    g = grad(f, argnums=(0, 1, 2, 3, 4))(*args)
    close(g, grad(unrolled, argnums=(0, 1, 2, 3, 4))(*args), tol)
    close(g, no_hoisting(monkeypatch, lambda: grad(f, argnums=(0, 1, 2, 3, 4))(*args)), tol)
    # the body's plan: per-step U @ x and cos(z) leave the loop, W.T and s * b too
    e = scan_eqn(f, *args)
    p = e.params
    pre, body, n_inv, keep_c, keep_x = cf._hoist_plan(p['jaxpr'], p['num_consts'],
                                                      p['num_carry'], p['length'])
    names = [q.primitive.name for q in pre.jaxpr.eqns]
    assert 'dot_general' in names and 'cos' in names and 'transpose' in names
    assert n_inv >= 1
    assert keep_x == [False, True]


def test_hoisting_under_vmap_and_with_carry_free_bodies():
    rng = np.random.default_rng(2)
    U = rng.normal(size=(4, 3))
    X = rng.normal(size=(3, 30, 3))         # vmapped over the first axis

    def f(U, X):
        # ys only: the whole body is carry-independent
        _, ys = lax.scan(lambda c, x: (c, pnp.sin(U @ x)), np.zeros(()), X)
        c, _ = lax.scan(lambda c, x: (c + pnp.sum(U @ x), None), np.zeros(()), X)
        return ys, c

    ys, c = vmap(f, in_axes=(None, 0))(U, X)
    for k in range(3):
        np.testing.assert_allclose(ys[k], np.sin(X[k] @ U.T), rtol=1e-13)
        np.testing.assert_allclose(c[k], np.sum(X[k] @ U.T), rtol=1e-12)
    ys1, c1 = f(U, X[0])
    np.testing.assert_allclose(ys1, np.sin(X[0] @ U.T), rtol=1e-13)
    gU = grad(lambda U: pnp.sum(f(U, X[0])[0]) + f(U, X[0])[1])(U)
    want = (np.cos(X[0] @ U.T)).T @ X[0] + np.ones((30, 4)).T @ X[0]
    np.testing.assert_allclose(gU, want, rtol=1e-12)


# --- loop bodies: a sum of outer products as one matrix product ---------------------------

def test_sum_of_outer_products_is_one_matrix_product():
    from primitives import _jaxpr_util as ju
    from primitives.dot import dot_general
    rng = np.random.default_rng(11)
    outer = ((), ()), ((), ())

    def f(a, b, c, d, e, s):
        # fused: p1 + p2 + p3 (each product used once); not fused: the sum of two,
        # a sum with a product used twice, a scaled sum (coeffs)
        p1, p2, p3 = (dot_general(x, y, outer) for x, y in ((a, b), (c, d), (e, b)))
        fused = lax.add_any(p1, p2, p3)
        q1, q2 = dot_general(a, d, outer), dot_general(c, b, outer)
        two = lax.add_any(q1, q2)
        r1, r2, r3 = (dot_general(x, y, outer) for x, y in ((b, a), (d, c), (b, e)))
        shared = lax.add_any(r1, r2, r3) + r1
        return fused, two, shared, s * fused

    for dtype in (np.float64, np.float32):
        args = [rng.normal(size=5).astype(dtype) for _ in range(5)] + [dtype(2.0)]
        closed = make_jaxpr(f)(*args)
        fused, sums = ju._outer_sums(closed.jaxpr)
        assert len(sums) == 1 and len(fused) == 3
        got = ju.python_fn(closed)(*args)
        a, b, c, d, e, s = args
        want = [np.outer(a, b) + np.outer(c, d) + np.outer(e, b),
                np.outer(a, d) + np.outer(c, b),
                np.outer(b, a) + np.outer(d, c) + np.outer(b, e) + np.outer(b, a)]
        want.append(s * want[0])
        tol = 1e-13 if dtype == np.float64 else 1e-5
        for x, y in zip(got, want):
            assert x.dtype == dtype
            np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_checkpointed_blocks_match_plain_blocks():
    # the checkpointed block's backward sums K outer products per weight (fused),
    # and the checkpoint's cotangent outputs (matrices) stay accumulated in the carry
    from transforms import checkpoint
    rng = np.random.default_rng(4)
    H, K, NB = 33, 5, 20             # H * H > _SMALL_TERM: not stacked to be summed
    assert H * H > cf._SMALL_TERM
    W = rng.normal(size=(H, H)) / 3 / np.sqrt(H)
    U = rng.normal(size=(H, H)) / 3 / np.sqrt(H)
    Xb = rng.normal(size=(NB, K, H))

    def make(ck):
        def loss(W, U, Xb):
            def block(h, xb):
                for k in range(K):
                    h = pnp.tanh(W @ h + U @ xb[k])
                return h
            blk = checkpoint(block) if ck else block
            h, _ = lax.scan(lambda h, xb: (blk(h, xb), None), np.zeros(H), Xb)
            return pnp.sum(h)
        return loss
    plain, ck = make(False), make(True)
    gp = grad(plain, argnums=(0, 1, 2))(W, U, Xb)
    gc = grad(ck, argnums=(0, 1, 2))(W, U, Xb)
    close(gc, gp, 1e-12)
    closed = make_jaxpr(grad(ck, argnums=(0, 1)))(W, U, Xb)
    check_jaxpr(closed)
    tscan = [e for e in closed.jaxpr.eqns if e.primitive.name == 'scan'][-1]
    assert all(len(v.aval.shape) < 3 for v in tscan.outvars)     # no stacked matrices
    assert [v.aval.shape for v in tscan.outvars].count((H, H)) == 2
    # evaluated eagerly, the backward scan inlines the checkpointed block: its
    # recomputation (from the block's input state, a residual, and xb) leaves the
    # loop, batched over the blocks: the K input projections U @ xb[k] and the K
    # recurrent products W @ h
    p = tscan.params
    assert [e.primitive.name for e in p['jaxpr'].jaxpr.eqns].count('checkpoint') == 1
    pre, body, n_inv, keep_c, keep_x = cf._hoist_plan(p['jaxpr'], p['num_consts'],
                                                      p['num_carry'], p['length'])
    assert [e.primitive.name for e in pre.jaxpr.eqns].count('dot_general') == 2 * K
    assert 'checkpoint' not in [e.primitive.name for e in body.jaxpr.eqns]
    check_jaxpr(pre)
    check_jaxpr(body)
    # with a small budget for stacking a checkpoint's recomputed values, the block
    # is recomputed in the loop, as checkpoint asks
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cf, '_CHECKPOINT_HOIST_BUDGET', 1000)
        assert cf._hoist_plan(p['jaxpr'], p['num_consts'], p['num_carry'],
                              p['length']) is None
        close(grad(ck, argnums=(0, 1, 2))(W, U, Xb), gp, 1e-12)


def test_slices_and_squeezes_in_generated_code_are_views_of_the_right_values():
    from primitives import _jaxpr_util as ju
    rng = np.random.default_rng(12)
    x = rng.normal(size=(4, 1, 6))

    def f(x):
        a = lax.slice(x, (1, 0, 2), (4, 1, 6), (2, 1, 3))
        b = lax.squeeze(x[2:3, :, 5:6], (0, 1, 2))          # to a 0-d value
        c = lax.squeeze(x, (1,))
        return a, b, c, b * 2.0
    closed = make_jaxpr(f)(x)
    names = [e.primitive.name for e in closed.jaxpr.eqns]
    assert 'slice' in names and 'squeeze' in names
    got = ju.python_fn(closed)(x)
    want = [x[1:4:2, 0:1, 2:6:3], x[2, 0, 5], x[:, 0, :], 2 * x[2, 0, 5]]
    for k, (g, w) in enumerate(zip(got, want)):
        assert np.shape(g) == np.shape(w)
        assert k == 3 or isinstance(g, np.ndarray)       # a 0-d squeeze stays an array
        np.testing.assert_array_equal(g, w)
    # in a scan body too
    ys = lax.scan(lambda c, xr: (c + lax.squeeze(xr, (0,))[1], xr[0, 2:4]), 0.0, x)
    np.testing.assert_allclose(ys[0], x[:, 0, 1].sum(), rtol=1e-14)
    np.testing.assert_array_equal(ys[1], x[:, 0, 2:4])


def test_loop_invariant_work_alone_is_hoisted():
    # W.T and sum(W) are computed once; nothing else is carry-independent
    rng = np.random.default_rng(8)
    W = rng.normal(size=(4, 4)) / 3
    X = rng.normal(size=(32, 4))

    def cell(W, h, x):
        return pnp.tanh(W.T @ h + h * pnp.sum(W)) + x

    def f(W, X):
        h, _ = lax.scan(lambda h, x: (cell(W, h, x), None), np.ones(4), X)
        return pnp.sum(h * h)

    def unrolled(W, X):
        h = np.ones(4)
        for t in range(X.shape[0]):
            h = cell(W, h, X[t])
        return pnp.sum(h * h)
    p = scan_eqn(f, W, X).params
    pre, body, n_inv, keep_c, keep_x = cf._hoist_plan(p['jaxpr'], p['num_consts'],
                                                      p['num_carry'], p['length'])
    assert n_inv == 2 and len(pre.jaxpr.outvars) == 2
    assert keep_c == [False] and keep_x == [True]
    np.testing.assert_allclose(f(W, X), unrolled(W, X), rtol=1e-13)
    np.testing.assert_allclose(grad(f)(W, X), grad(unrolled)(W, X), rtol=1e-12)


def test_hoisting_falls_back_to_the_plain_loop(monkeypatch):
    rng = np.random.default_rng(9)
    U = rng.normal(size=(3, 3))
    X = rng.normal(size=(20, 3))

    def f(U, X):
        h, ys = lax.scan(lambda h, x: (pnp.tanh(h + U @ x), U @ x), np.zeros(3), X)
        return h, ys

    def unrolled(U, X):
        h, ys = np.zeros(3), []
        for x in X:
            h = np.tanh(h + U @ x)
            ys.append(U @ x)
        return h, np.stack(ys)
    want = unrolled(U, X)
    p = scan_eqn(f, U, X).params
    # no batching possible: no plan
    with monkeypatch.context() as m:
        def fail(*a, **k):
            raise NotImplementedError("no batching rule")
        m.setattr(cf.interpreters, 'batch_jaxpr', fail)
        assert cf._hoist_plan(p['jaxpr'], p['num_consts'], p['num_carry'], 20) is None
        close(f(U, X), want, 1e-13)
    # the batched part fails when it runs: the plain loop runs instead
    p = scan_eqn(f, U, X).params         # (a new jaxpr: plans are memoised per jaxpr)
    plan = cf._hoist_plan(p['jaxpr'], p['num_consts'], p['num_carry'], 20)
    assert plan is not None
    orig = cf.python_fn
    calls = []

    def python_fn(closed):
        if closed is plan[0]:
            def boom(*a):
                calls.append(1)
                raise FloatingPointError("batched evaluation failed")
            return boom
        return orig(closed)
    with monkeypatch.context() as m:
        m.setattr(cf, 'python_fn', python_fn)
        out = cf.scan_p.bind(U, np.zeros(3), X, **p)
        close((out[0], out[1]), want, 1e-13)
    assert calls == [1]


# --- residuals that are views of the xs --------------------------------------------------

@pytest.mark.parametrize('reverse', [False, True])
def test_xs_views_are_not_stacked_as_residuals(reverse):
    # the body reads its xs element through slices, squeezes, a reshape and a
    # transpose; the forward scan stacks no copy of them, the backward scan takes the
    # views again and the weight cotangents take them of the stacked xs after the loop
    rng = np.random.default_rng(13)
    H, K, NB = 4, 3, 5
    W = rng.normal(size=(H, H)) / 2
    U = rng.normal(size=(H, H)) / 2
    V = rng.normal(size=(H, 2 * H)) / 3
    Xb = rng.normal(size=(NB, K, H))
    Zb = rng.normal(size=(NB, H, 2))

    def block(W, U, V, h, xb, zb):
        for k in range(K):
            h = pnp.tanh(W @ h + U @ xb[k] + V @ zb.T.reshape(2 * H))
        return h

    def loss(W, U, V, Xb, Zb):
        h, _ = lax.scan(lambda h, xz: (block(W, U, V, h, *xz), None), np.zeros(H), (Xb, Zb),
                        reverse=reverse)
        return pnp.sum(h * h)

    def unrolled(W, U, V, Xb, Zb):
        h = np.zeros(H)
        for b in (range(NB - 1, -1, -1) if reverse else range(NB)):
            h = block(W, U, V, h, Xb[b], Zb[b])
        return pnp.sum(h * h)
    args = (W, U, V, Xb, Zb)
    g = grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    close(g, grad(unrolled, argnums=(0, 1, 2, 3, 4))(*args), 1e-12)
    closed = make_jaxpr(grad(loss, argnums=(0, 1, 2)))(*args)
    check_jaxpr(closed)
    fwd, bwd = [e for e in closed.jaxpr.eqns if e.primitive.name == 'scan']
    # stacked residuals per block: h before each step and 1 - h^2 after it, no views
    stacked = fwd.outvars[fwd.params['num_carry']:]
    assert len(stacked) == 2 * K and all(v.aval.shape == (NB, H) for v in stacked)
    after = [e.primitive.name for e in closed.jaxpr.eqns[closed.jaxpr.eqns.index(bwd) + 1:]]
    assert 'slice' in after and 'squeeze' in after and 'transpose' in after
    from transforms import saved_residuals
    kept = [a for a, d in saved_residuals(loss, *args) if not d.startswith('from the argument')]
    # (+ the final state, for sum(h * h), and the broadcast seed of the backward scan)
    assert sum(a.size for a in kept) == 2 * K * NB * H + 2 * H
