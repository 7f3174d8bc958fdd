"""vmap of control flow, custom rules and checkpoint: against a Python loop over the
batch, composed with grad and jit."""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, check_jaxpr
from transforms import (vmap, grad, jvp, jit, jacfwd, jacrev, hessian, custom_jvp,
                        custom_vjp, checkpoint)

XS = np.array([-1.0, 0.5, 2.0, -0.3])


def loop(f, *args, in_axes=0):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    n = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    outs = [f(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)])
            for i in range(n)]
    return np.stack([np.asarray(o) for o in outs])


def close(a, b, tol=1e-12):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_vmap_of_cond_with_batched_predicate_is_a_select():
    f = lambda x: lax.cond(x > 0, pnp.sin, lambda x: x * x, x)
    close(vmap(f)(XS), loop(f, XS))
    names = [e.primitive.name for e in make_jaxpr(vmap(f))(XS).jaxpr.eqns]
    assert 'select_n' in names and 'cond' not in names
    close(vmap(grad(f))(XS), loop(grad(f), XS))
    close(jit(vmap(f))(XS), loop(f, XS))
    # switch with a batched index
    g = lambda i, x: lax.switch(i, [pnp.sin, pnp.cos, lambda x: -x], x)
    idx = np.array([0, 1, 2, 7])
    close(vmap(g)(idx, XS), loop(g, idx, XS))


def test_vmap_of_cond_with_unbatched_predicate_stays_a_cond():
    f = lambda p, x: lax.cond(p, pnp.sin, pnp.cos, x)
    for p in (True, False):
        close(vmap(f, (None, 0))(p, XS), loop(f, p, XS, in_axes=(None, 0)))
    closed = make_jaxpr(vmap(f, (None, 0)))(True, XS)
    check_jaxpr(closed)
    assert [e.primitive.name for e in closed.jaxpr.eqns][-1] == 'cond'


def test_vmap_of_scan_batched_carry_xs_and_consts():
    def f(w, h0, xs):
        return lax.scan(lambda h, x: (pnp.tanh(w * h + x), h), h0, xs)
    W, H0 = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.2, 0.3])
    xs = np.random.default_rng(0).normal(size=(5, 3))
    for axes, args in [((0, 0, 1), (W, H0, xs)), ((None, 0, 1), (0.7, H0, xs)),
                       ((0, None, None), (W, 0.2, xs[:, 0])), ((None, None, 1), (0.7, 0.2, xs))]:
        got = vmap(f, axes)(*args)
        want_c = loop(lambda *a: f(*a)[0], *args, in_axes=axes)
        want_y = loop(lambda *a: f(*a)[1], *args, in_axes=axes)
        close(got[0], want_c)
        close(got[1], want_y)
    # per-example gradients through a scan
    loss = lambda w, xs: f(w, 0.0, xs)[0] ** 2
    close(vmap(grad(loss), (0, 1))(W, xs), loop(grad(loss), W, xs, in_axes=(0, 1)))
    check_jaxpr(make_jaxpr(vmap(grad(loss), (0, 1)))(W, xs))


def test_vmap_of_while_with_batched_predicate_runs_until_all_done():
    f = lambda x: lax.while_loop(lambda c: c[1] < 10.0, lambda c: (c[0] + 1, c[1] * 2.0),
                                 (0, x))
    x = np.array([1.0, 3.0, 20.0, 0.5])
    n, v = vmap(f)(x)
    wn, wv = zip(*[f(a) for a in x])
    np.testing.assert_array_equal(n, wn)
    close(v, wv)
    # unbatched predicate (the bound is shared), batched values
    g = lambda x: lax.fori_loop(0, 3, lambda i, c: c * pnp.sin(c), x)
    close(vmap(g)(XS), loop(g, XS))
    h = lambda x, n: lax.fori_loop(0, n, lambda i, c: c * pnp.sin(c), x)
    close(jit(vmap(h, (0, None)))(XS, np.int64(3)), loop(g, XS))
    close(vmap(h)(XS, np.array([1, 2, 3, 0])),
          np.array([h(x, n) for x, n in zip(XS, [1, 2, 3, 0])]))
    # forward mode through a batched while
    close(vmap(lambda x: jvp(f, (x,), (1.0,))[1][1])(x),
          [jvp(f, (a,), (1.0,))[1][1] for a in x])


def test_jacobians_of_control_flow():
    f = lambda x: lax.scan(lambda c, a: (c * pnp.sin(a + c), c), 1.0, x)[1]
    x = np.array([0.3, -0.5, 1.2])
    close(jacfwd(f)(x), jacrev(f)(x))
    g = lambda x: lax.fori_loop(0, 3, lambda i, c: pnp.sin(c) * c, x).sum()
    H = hessian(g)(x)
    close(H, jacfwd(jacrev(g))(x))


@custom_jvp
def sin2(x):
    return pnp.sin(x)


@sin2.defjvp
def _sin2_jvp(p, t):
    return sin2(p[0]), 2.0 * pnp.cos(p[0]) * t[0]


@custom_vjp
def mulsin(x, y):
    return pnp.sin(x) * y


mulsin.defvjp(lambda x, y: (mulsin(x, y), (pnp.cos(x), pnp.sin(x), y)),
              lambda r, ct: (3.0 * r[0] * r[2] * ct, r[1] * ct))


def test_vmap_of_custom_rules():
    close(vmap(sin2)(XS), np.sin(XS))
    close(vmap(grad(sin2))(XS), 2 * np.cos(XS))
    close(jacrev(sin2)(XS), np.diag(2 * np.cos(XS)))
    close(jacfwd(sin2)(XS), np.diag(2 * np.cos(XS)))
    Y = np.array([1.0, 2.0, -1.0, 0.5])
    close(vmap(grad(mulsin))(XS, Y), 3 * np.cos(XS) * Y)
    close(vmap(grad(mulsin), (0, None))(XS, 2.0), 6 * np.cos(XS))
    close(vmap(grad(mulsin, 1), (0, None))(XS, 2.0), np.sin(XS))
    close(jacrev(mulsin)(XS, Y), np.diag(3 * np.cos(XS) * Y))
    close(jacfwd(mulsin)(XS, Y), np.diag(3 * np.cos(XS) * Y))
    close(hessian(lambda x: mulsin(x, Y).sum())(XS), np.diag(-3 * np.sin(XS) * Y))
    # a batched custom call inside a vmapped grad, under jit
    close(jit(vmap(grad(lambda x: sin2(x) * x)))(XS), 2 * np.cos(XS) * XS + np.sin(XS))


def test_vmap_of_checkpoint():
    g = checkpoint(lambda w, x: pnp.tanh(w * pnp.sin(x)))
    W = np.array([0.5, 1.5, -2.0, 1.0])
    f = lambda w, x: g(w, x) ** 2
    close(vmap(f)(W, XS), loop(f, W, XS))
    close(vmap(grad(f))(W, XS), loop(grad(f), W, XS))
    close(vmap(grad(f), (0, None))(W, 0.3), loop(grad(f), W, 0.3, in_axes=(0, None)))
