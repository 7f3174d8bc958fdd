"""jit of control flow, custom rules and checkpoint: compiled loops and branches.

Under `jit`, scan / while_loop / fori_loop / cond / switch lower to Python loops and
branches inside the generated numba function (their bodies inlined), and
custom_jvp / custom_vjp / checkpoint / nested jit calls to their primal jaxprs. Every
test compares with eager evaluation and asserts that nothing fell back to eager
evaluation (no JitFallbackWarning). Programs are grouped to keep numba compilations
few; they compile into a module-scoped temporary cache directory.
"""
import re
import warnings

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from transforms import grad, jvp, vmap, jit, custom_jvp, custom_vjp, checkpoint
from transforms.compiler import JitFallbackWarning


pytestmark = pytest.mark.usefixtures('jit_cache_dir')   # tests/conftest.py


RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _leaves(t):
    if isinstance(t, (tuple, list)):
        return [x for s in t for x in _leaves(s)]
    return [t]


def compiled(f, *args, rtol=None, atol=0.0, dtype=np.float64):
    """jit(f)(*args) vs f(*args): equal values, dtypes and shapes, no fallback.
    Returns (jitted function, its outputs)."""
    want = f(*args)
    jf = jit(f)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        got = jf(*args)
    bad = [str(w.message) for w in rec if issubclass(w.category, JitFallbackWarning)]
    assert not bad, bad
    check(got, want, rtol if rtol is not None else RTOL[dtype], atol)
    return jf, got


def check(got, want, rtol, atol=0.0):
    g, w = _leaves(got), _leaves(want)
    assert len(g) == len(w)
    for a, b in zip(g, w):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        # elements that are small through cancellation are compared relative to the
        # array's scale (a BLAS product may round differently from NumPy's)
        scale = float(np.max(np.abs(b))) if b.size and b.dtype.kind == 'f' else 0.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=max(atol, rtol * scale))


def no_fallback(jf, *args):
    """Call a jitted function again with new values: no warning, no recompilation."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        out = jf(*args)
    assert not [w for w in rec if issubclass(w.category, JitFallbackWarning)]
    return out


# --- scan --------------------------------------------------------------------------------------

@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_scan_forward_reverse_empty_consts(dt):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3)).astype(dt)          # a closed-over constant (hoisted)

    def f(c0, xs):
        def body(c, x):
            c2 = pnp.tanh(A @ c + x) * 0.9
            return c2, (c2 * c2, pnp.sum(c2))
        c, (ys, s) = lax.scan(body, c0, xs)
        # reverse scan with two carries swapping roles and a scalar carry
        def rbody(carry, x):
            a, b, n = carry
            return (b + x, a * 0.5, n + pnp.sum(x)), a - b
        (a, b, n), zs = lax.scan(rbody, (c0, c, np.zeros((), dt)), xs, reverse=True)
        # zero-length scan: the carry passes through, ys are empty
        e, es = lax.scan(lambda c, x: (c + x, c * x), c0, xs[:0])
        return c, ys, s, a, b, n, zs, e, es
    c0 = rng.normal(size=3).astype(dt)
    xs = rng.normal(size=(6, 3)).astype(dt)
    jf, got = compiled(f, c0, xs, dtype=dt)
    assert got[8].shape == (0, 3)
    src = jf.lower(c0, xs).as_text()
    assert 'for k' in src and 'range(5, -1, -1)' in src and 'range(0)' in src
    check(no_fallback(jf, c0 * 2, xs[::-1].copy()), f(c0 * 2, xs[::-1].copy()), RTOL[dt])


def _rnn_loss(params, xs):
    W, U, b = params

    def cell(h, x):
        h = pnp.tanh(W @ h + U @ x + b)
        return h, pnp.sum(h * h)
    h, ss = lax.scan(cell, pnp.zeros(W.shape[0], W.dtype), xs)
    return pnp.sum(h) + 0.1 * pnp.sum(ss)


@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_grad_scan_rnn(dt):
    rng = np.random.default_rng(1)
    params = tuple((rng.normal(size=s) / 3).astype(dt) for s in ((5, 5), (5, 4), (5,)))
    xs = rng.normal(size=(12, 4)).astype(dt)
    jf, got = compiled(grad(_rnn_loss), params, xs, dtype=dt,
                       rtol=1e-4 if dt == np.float32 else 1e-11, atol=1e-6)
    src = jf.lower(params, xs).as_text()
    assert 'range(11, -1, -1)' in src        # the backward pass is a compiled reverse loop
    # the weight cotangents are summed after the loop, each as one product over the
    # stacked per-step factors (ct_W = dZ^T H), not accumulated step by step
    after = src[src.index('range(11, -1, -1)'):]
    assert after.count('gemm_t(') + after.count('dot_t(') >= 2
    # against finite differences of the eager loss (float64 only)
    if dt == np.float64:
        eps = 1e-6
        d = np.zeros_like(params[2])
        d[1] = 1.0
        fd = (_rnn_loss((params[0], params[1], params[2] + eps * d), xs) -
              _rnn_loss((params[0], params[1], params[2] - eps * d), xs)) / (2 * eps)
        assert abs(got[2][1] - fd) < 1e-6


# --- cond / switch -----------------------------------------------------------------------------

@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_cond_and_switch(dt):
    def f(x, i):
        a = lax.cond(pnp.sum(x) > 0, lambda x: pnp.sin(x) * 2.0, lambda x: x - 1.0, x)
        b, s = lax.switch(i, [lambda x: (x * 2.0, pnp.sum(x)),
                              lambda x: (pnp.exp(-x), np.asarray(3.0, dt)),
                              lambda x: (x, pnp.max(x))], x)
        return a, b, s
    x = np.linspace(-1, 2, 4).astype(dt)
    jf, _ = compiled(f, x, 1, dtype=dt)
    assert 'if br' in jf.lower(x, 1).as_text()
    for xv in (x, -x):
        for i in (-3, 0, 1, 2, 7):          # out-of-range indices clamp
            check(no_fallback(jf, xv, i), f(xv, i), RTOL[dt])


def test_grad_cond():
    def f(x, y):
        r = lax.cond(y > 0, lambda x, y: pnp.sum(pnp.sin(x) * y),
                     lambda x, y: pnp.sum(x * x) - y, x, y)
        return r * 2.0
    g = grad(f, argnums=(0, 1))
    x = np.array([0.3, -1.2, 2.0])
    jg, _ = compiled(g, x, 1.5)
    check(no_fallback(jg, x, -0.5), g(x, -0.5), 1e-12)


# --- while / fori --------------------------------------------------------------------------------

@pytest.mark.parametrize('dt', [np.float32, np.float64])
def test_while_data_dependent(dt):
    def f(x, tol):
        # Newton for sqrt, elementwise, until converged: the trip count depends on data
        def cond(c):
            y, k = c
            return (pnp.max(pnp.abs(y * y - x)) > tol) & (k < 100)

        def body(c):
            y, k = c
            return 0.5 * (y + x / y), k + 1
        y, k = lax.while_loop(cond, body, (x + 1.0, 0))
        return y, k
    x = np.array([2.0, 9.0, 0.25], dt)
    tol = dt(1e-5)
    jf, (y, k) = compiled(f, x, tol, dtype=dt)
    assert 'while True' in jf.lower(x, tol).as_text()
    _, k2 = no_fallback(jf, x * 1000, tol)
    assert int(k2) > int(k)
    assert int(k2) == int(f(x * 1000, tol)[1])


def test_jvp_fori_loop():
    def f(x, n):
        # concrete bounds: a scan
        y = lax.fori_loop(0, 5, lambda i, c: pnp.sin(c) * (i + 1.0), x)
        # traced bound: a while loop
        z = lax.fori_loop(0, n, lambda i, c: c * 0.5 + pnp.cos(c), y)
        return pnp.sum(z)

    def h(x, t, n):
        return jvp(lambda x: f(x, n), (x,), (t,))
    x, t = np.array([0.1, 0.7, -0.3]), np.array([1.0, 0.5, -2.0])
    jh, _ = compiled(h, x, t, 4)
    check(no_fallback(jh, x, t, 9), h(x, t, 9), 1e-12)


# --- vmap (batched predicates) ------------------------------------------------------------------

def test_vmap_cond_and_while():
    def f(x):
        a = lax.cond(pnp.sum(x) > 0, lambda x: x * 3.0, lambda x: -x, x)

        def body(c):
            return c * 2.0
        # per-row trip counts
        b = lax.while_loop(lambda c: pnp.sum(c) < 10.0, body, pnp.abs(x) + 0.1)
        return a, b
    xs = np.array([[1.0, 2.0], [-1.0, 0.5], [0.1, 0.1], [-3.0, -1.0]])
    jf, _ = compiled(vmap(f), xs)
    check(no_fallback(jf, xs * 0.01), vmap(f)(xs * 0.01), 1e-12)


# --- nesting ---------------------------------------------------------------------------------

def test_nested_control_flow_and_grad():
    def f(w, xs):
        def outer(c, x):
            # a cond inside the scan body
            c = lax.cond(pnp.sum(x) > 0, lambda c: c * w + x, lambda c: pnp.sin(c) - x, c)
            # an inner reverse scan inside the outer scan
            def inner(d, y):
                return d * 0.9 + y * w, d
            d, ds = lax.scan(inner, c, pnp.stack([x, x * 2.0, -x]), reverse=True)
            return d, pnp.sum(ds)
        c, s = lax.scan(outer, pnp.zeros_like(w), xs)
        # a cond inside a while loop (forward only)
        def wbody(v):
            k, u = v
            u = lax.cond(k % 2 == 0, lambda u: u + 1.0, lambda u: u * 1.5, u)
            return k + 1, u
        _, u = lax.while_loop(lambda v: v[0] < 5, wbody, (0, pnp.sum(c)))
        return pnp.sum(c * c) + pnp.sum(s), u
    w = np.array([0.5, -0.25, 1.0])
    xs = np.random.default_rng(2).normal(size=(7, 3))
    compiled(f, w, xs)
    g = grad(lambda w, xs: f(w, xs)[0])
    compiled(g, w, xs)


# --- custom rules, checkpoint, nested jit ----------------------------------------------------

@custom_jvp
def softplus(x):
    return pnp.log1p(pnp.exp(x))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    x, = primals
    t, = tangents
    return softplus(x), t / (1.0 + pnp.exp(-x))


@custom_vjp
def clip_grad(x):
    return x


clip_grad.defvjp(lambda x: (x, None), lambda _, ct: (pnp.clip(ct, -0.1, 0.1),))


def test_custom_rules_checkpoint_nested_jit():
    inner_jit = jit(lambda h, x: pnp.tanh(h + x))

    def f(w, xs):
        def body(h, x):
            h = checkpoint(lambda h: softplus(w * h) - 0.5)(h)
            h = clip_grad(h) * 1.5
            return inner_jit(h, x), None
        h, _ = lax.scan(body, pnp.zeros_like(w), xs)
        return pnp.sum(softplus(h) * w)
    w = np.array([0.3, -1.0, 2.0])
    xs = np.random.default_rng(3).normal(size=(5, 3))
    compiled(f, w, xs)
    jg, got = compiled(grad(f), w, xs)
    src = jg.lower(w, xs).as_text()
    assert 'range(4, -1, -1)' in src


@custom_vjp
def sin_vjp(x):
    return pnp.sin(x)


sin_vjp.defvjp(lambda x: (pnp.sin(x), pnp.cos(x)), lambda c, ct: (ct * c,))


def test_custom_lin_runs_eagerly_with_a_warning():
    """custom_lin (a custom_vjp's pullback evaluated forwards, under jit(jvp)) calls
    the user's Python bwd: it is the one higher-order primitive left eager."""
    def f(x, t):
        return jvp(lambda x: pnp.sum(sin_vjp(x * x)), (x,), (t,))
    x, t = np.array([1.0, 2.0]), np.array([1.0, 1.0])
    with pytest.warns(JitFallbackWarning, match='custom_lin'):
        got = jit(f)(x, t)
    check(got, f(x, t), 1e-12)


# --- in-place carries: aliasing cases ------------------------------------------------------------

def test_inplace_carry_aliasing():
    def f(a0, b0, xs):
        def body(c, x):
            a, b, acc, m, p, r, g = c
            acc2 = acc + a * x               # elementwise: may update acc in place
            m2 = m * 0.5 + pnp.sum(m)        # reads its own carry in a reduction
            a2 = pnp.sin(a) + 0.1 * b        # guarded (sin): a slow pass may rerun
            p2 = p + x                       # the old p is read after p2 is computed
            q = p * 3.0
            r2 = r * 0.9 + x                 # updated in place (a loop nest of its own)
            g2 = pnp.sin(g) + x              # in place, but guarded
            return (b, a2, acc2, m2, p2, r2, g2), (acc, q)   # b and a swap; old acc is a y
        z = pnp.zeros_like(a0)
        return lax.scan(body, (a0, b0, z, b0 * 2.0, b0[None], pnp.stack([a0, b0]), a0), xs)
    a0, b0 = np.array([0.1, 1e6, -2.0]), np.array([1.0, 2.0, 3.0])
    xs = np.random.default_rng(4).normal(size=(6, 3))
    jf, _ = compiled(f, a0, b0, xs)
    src = jf.lower(a0, b0, xs).as_text()
    # one store target inside the loop is a carry's own buffer (r)
    assert len(re.findall(r'^ {8}v[0-9]+ = c[0-9]+$', src, re.M)) == 1
    # the caller's arrays are never updated in place
    keep = (a0.copy(), b0.copy(), xs.copy())
    no_fallback(jf, a0, b0, xs)
    for k, v in zip(keep, (a0, b0, xs)):
        np.testing.assert_array_equal(k, v)


def test_body_that_cannot_compile_runs_the_construct_eagerly():
    """A body equation numba cannot compile (complex numbers) makes the whole loop
    run eagerly (one warning naming it); the code around it stays compiled."""
    def f(x, xs):
        def body(c, x):
            z = lax.convert_element_type(c, np.complex128) * (1 + 1j)
            return lax.convert_element_type(lax.abs(z), np.float64) * 0.5 + x, None
        c, _ = lax.scan(body, pnp.sin(x), xs)
        return pnp.tanh(c)
    x, xs = np.array([0.3, -0.2]), np.ones((4, 2))
    with pytest.warns(JitFallbackWarning, match='scan'):
        got = jit(f)(x, xs)
    check(got, f(x, xs), 1e-12)
