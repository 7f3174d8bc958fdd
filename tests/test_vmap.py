"""vmap: JAX's in_axes/out_axes/axis_size semantics, compositions with every other
transform (per-example gradients, grad of vmap, jvp of vmap, vmap of vmap, closures
over outer tracers, make_jaxpr of vmap), the printed IR (golden strings), errors,
and jacfwd/jacrev/hessian built on vmap."""
import collections
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from check_grads import numerical_jvp  # noqa: E402

import primitives.numpy as pnp  # noqa: E402
from primitives import lax  # noqa: E402
from tracer import (make_jaxpr, check_jaxpr, eval_jaxpr, ConcretizationTypeError,  # noqa: E402
                    UnexpectedTracerError)
from transforms import (vmap, grad, jvp, vjp, linearize, value_and_grad, jacfwd,  # noqa: E402
                        jacrev, hessian)

rng = np.random.default_rng(11)


def rand(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def staged_ok(f, *args):
    """The jaxpr of f typechecks and evaluates to f's eager result."""
    closed = make_jaxpr(f)(*args)
    check_jaxpr(closed)
    from tracer import tree_flatten
    want = tree_flatten(f(*args))[0]
    got = eval_jaxpr(closed.jaxpr, closed.consts, *tree_flatten(args)[0])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)
    return closed


# --- in_axes / out_axes / axis_size -----------------------------------------------------------

def test_in_axes_int_negative_none():
    x, y = rand(4, 3), rand(3)
    f = lambda a, b: a * b + 1.0
    np.testing.assert_allclose(vmap(f, in_axes=(0, None))(x, y), x * y + 1)
    np.testing.assert_allclose(vmap(f, in_axes=(-1, None))(x.T, y), x * y + 1)
    np.testing.assert_allclose(vmap(f, in_axes=[1, None])(x.T, y), x * y + 1)   # list ok
    np.testing.assert_allclose(vmap(f, in_axes=-2)(x, x), x * x + 1)


def test_in_axes_pytree_prefix_and_kwargs():
    p = {'w': rand(3, 2), 'b': rand(2)}
    xs = (rand(5, 3), rand(3, 5))

    def f(params, pair, scale=1.0):
        a, b = pair
        return scale * pnp.tanh((a + b) @ params['w'] + params['b'])

    got = vmap(f, in_axes=(None, (0, 1)))(p, xs)
    want = np.stack([f(p, (xs[0][i], xs[1][:, i])) for i in range(5)])
    np.testing.assert_allclose(got, want)
    # a dict prefix: batch only b
    bs = rand(5, 2)
    got = vmap(f, in_axes=({'w': None, 'b': 0}, None))({'w': p['w'], 'b': bs}, (xs[0][0], xs[1][:, 0]))
    want = np.stack([f({'w': p['w'], 'b': bs[i]}, (xs[0][0], xs[1][:, 0])) for i in range(5)])
    np.testing.assert_allclose(got, want)
    # keyword arguments are mapped over axis 0
    sc = rand(5)
    got = vmap(f, in_axes=(None, (0, 1)))(p, xs, scale=sc)
    want = np.stack([f(p, (xs[0][i], xs[1][:, i]), sc[i]) for i in range(5)])
    np.testing.assert_allclose(got, want)


def test_out_axes_and_unbatched_outputs_broadcast():
    x, c = rand(4, 3), rand(3)

    def f(v):
        return {'y': pnp.sin(v), 'c': c * 2.0, 'k': 7.0}

    out = vmap(f, out_axes={'y': -1, 'c': 0, 'k': None})(x)
    np.testing.assert_allclose(out['y'], np.sin(x).T)
    np.testing.assert_allclose(out['c'], np.broadcast_to(c * 2, (4, 3)))
    assert out['c'].flags.writeable
    assert out['k'] == 7.0
    out = vmap(f, out_axes=-1)(x)
    assert out['k'].shape == (4,) and np.all(out['k'] == 7.0)
    np.testing.assert_allclose(out['c'], np.broadcast_to(c * 2, (4, 3)).T)
    # tuple prefix
    a, b = vmap(lambda v: (v, v.sum()), out_axes=(1, 0))(x)
    np.testing.assert_allclose(a, x.T)
    np.testing.assert_allclose(b, x.sum(1))


def test_axis_size_without_batched_arguments():
    c = rand(3)
    out = vmap(lambda v: v * 2.0, in_axes=None, axis_size=4)(c)
    np.testing.assert_allclose(out, np.broadcast_to(2 * c, (4, 3)))
    out = vmap(lambda: pnp.ones(2), axis_size=3)()
    assert out.shape == (3, 2)


def test_namedtuple_and_none_leaves():
    P = collections.namedtuple('P', 'a b')
    x = P(rand(4, 2), None)
    out = vmap(lambda p: P(p.a * 2, None), in_axes=(P(0, None),))(x)
    assert isinstance(out, P) and out.b is None
    np.testing.assert_allclose(out.a, x.a * 2)


def test_inputs_are_not_mutated():
    x = rand(4, 3)
    x0 = x.copy()
    idx = np.array([0, 2, 1, 1])
    out = vmap(lambda v, i: v.at[i].add(1.0))(x, idx)
    np.testing.assert_array_equal(x, x0)
    want = x0.copy()
    want[np.arange(4), idx] += 1
    np.testing.assert_allclose(out, want)


def test_numpy_api_under_vmap():
    x = rand(4, 5)
    idx = np.array([0, 4, 2, 2])

    def f(v, i):
        w = pnp.where(v > 0, v, 0.1 * v)
        s = pnp.exp(w - pnp.max(w)) / pnp.sum(pnp.exp(w - pnp.max(w)))
        return w[::-1][pnp.argmax(v)] + pnp.einsum('i,i->', v, v) + s[i] + v[1:3].mean()

    got = vmap(f)(x, idx)
    want = np.array([f(x[k], idx[k]) for k in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    staged_ok(vmap(f), x, idx)


def test_numpy_functions_dispatch_under_vmap():
    x = rand(4, 3)
    got = vmap(lambda v: np.sum(np.sin(v) * v, axis=0))(x)
    np.testing.assert_allclose(got, (np.sin(x) * x).sum(1))


# --- compositions ------------------------------------------------------------------------------

def mlp_params(sizes, dtype):
    ps = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        ps.append((rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype))
        ps.append((0.1 * rng.standard_normal(b)).astype(dtype))
    return tuple(ps)


def loss_one(params, x, y):
    w1, b1, w2, b2 = params
    h = pnp.tanh(x @ w1 + b1)
    logits = h @ w2 + b2
    m = pnp.max(logits)
    return m + pnp.log(pnp.sum(pnp.exp(logits - m))) - pnp.sum(logits * y)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_per_example_gradients_of_an_mlp(dtype):
    params = mlp_params((6, 5, 3), dtype)
    xs = rand(8, 6, dtype=dtype)
    ys = np.eye(3, dtype=dtype)[rng.integers(0, 3, 8)]
    per_ex = vmap(grad(loss_one), in_axes=(None, 0, 0))(params, xs, ys)
    loop = [grad(loss_one)(params, xs[i], ys[i]) for i in range(8)]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for k in range(4):
        assert per_ex[k].dtype == dtype
        assert per_ex[k].shape == (8,) + params[k].shape
        np.testing.assert_allclose(per_ex[k], np.stack([g[k] for g in loop]), rtol=tol, atol=tol)
    closed = make_jaxpr(vmap(grad(loss_one), in_axes=(None, 0, 0)))(params, xs, ys)
    check_jaxpr(closed)
    # batched, not unrolled: one dot_general per matrix product forward and backward
    assert sum(e.primitive.name == 'dot_general' for e in closed.jaxpr.eqns) <= 3


def test_grad_of_vmap_and_value_and_grad():
    params = mlp_params((4, 3, 2), np.float64)
    xs, ys = rand(6, 4), np.eye(2)[rng.integers(0, 2, 6)]

    def batch_loss(p):
        return pnp.mean(vmap(loss_one, in_axes=(None, 0, 0))(p, xs, ys))

    def loop_loss(p):
        return sum(loss_one(p, xs[i], ys[i]) for i in range(6)) / 6

    g1, g2 = grad(batch_loss)(params), grad(loop_loss)(params)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    v, g = value_and_grad(batch_loss)(params)
    np.testing.assert_allclose(v, loop_loss(params))
    check_jaxpr(make_jaxpr(grad(batch_loss))(params))


def test_jvp_vjp_linearize_of_vmap_and_vmap_of_jvp():
    x, t = rand(5, 3), rand(5, 3)
    f = lambda v: pnp.sin(v) * pnp.sum(v ** 2)
    vf = vmap(f)
    y, ty = jvp(vf, (x,), (t,))
    want = [jvp(f, (x[i],), (t[i],)) for i in range(5)]
    np.testing.assert_allclose(y, np.stack([w[0] for w in want]))
    np.testing.assert_allclose(ty, np.stack([w[1] for w in want]))
    y2, ty2 = vmap(lambda a, b: jvp(f, (a,), (b,)))(x, t)
    np.testing.assert_allclose(ty2, ty)
    _, f_jvp = linearize(vf, x)
    np.testing.assert_allclose(f_jvp(t), ty)
    _, pull = vjp(vf, x)
    ct = rand(5, 3)
    (g,) = pull(ct)
    np.testing.assert_allclose(g, np.stack([vjp(f, x[i])[1](ct[i])[0] for i in range(5)]))
    staged_ok(lambda a, b: jvp(vf, (a,), (b,)), x, t)


def test_vmap_of_vmap():
    A, B_ = rand(3, 4, 5), rand(6, 5)
    f = lambda a, b: pnp.tanh(a @ b)
    inner = vmap(f, in_axes=(None, 0))               # over rows of B
    outer = vmap(inner, in_axes=(0, None))           # over the 3 matrices
    got = outer(A, B_)
    want = np.array([[np.tanh(A[i] @ B_[j]) for j in range(6)] for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got2 = vmap(vmap(f, in_axes=(1, None), out_axes=-1), in_axes=(0, None))(
        np.swapaxes(A, 1, 2), B_[0])
    np.testing.assert_allclose(got2, np.tanh(A @ B_[0]), rtol=1e-12)
    staged_ok(outer, A, B_)


def test_closures_over_outer_tracers():
    x, y = rand(4, 3), rand(5, 3)
    # inner vmap closes over the outer vmap's batched value
    f = lambda a: vmap(lambda b: pnp.sum(a * b))(y)
    np.testing.assert_allclose(vmap(f)(x), x @ y.T, rtol=1e-12)
    # vmap inside grad, closing over grad's tracer
    g = grad(lambda s: pnp.sum(vmap(lambda v: s * pnp.sin(v))(x)))(2.0)
    np.testing.assert_allclose(g, np.sin(x).sum())
    # grad inside vmap, closing over vmap's batched value
    h = vmap(lambda a: grad(lambda b: pnp.sum(a * b * b))(y[0]))(x)
    np.testing.assert_allclose(h, 2 * x * y[0])
    # second derivatives through vmap
    hv = grad(lambda s: grad(lambda r: pnp.sum(vmap(lambda v: r ** 3 * v)(x)))(s))(1.5)
    np.testing.assert_allclose(hv, 6 * 1.5 * x.sum())
    staged_ok(vmap(f), x)


def test_per_example_hessians_and_jacobians_under_vmap():
    x = rand(4, 3)
    f = lambda v: pnp.sum(pnp.sin(v) * v[0])
    H = vmap(hessian(f))(x)
    for i in range(4):
        np.testing.assert_allclose(H[i], hessian(f)(x[i]), rtol=1e-12)
    J = vmap(jacrev(pnp.tanh))(x)
    np.testing.assert_allclose(J, np.stack([np.diag(1 - np.tanh(r) ** 2) for r in x]))


# --- printed IR --------------------------------------------------------------------------------

W43 = np.arange(12.0).reshape(4, 3) / 10
B4 = np.arange(4.0) / 10


def test_printed_jaxpr_of_vmap_layer_keeps_weight_unbatched():
    def layer(x):
        return pnp.tanh(W43 @ x + B4)
    closed = make_jaxpr(vmap(layer))(np.ones((5, 3)))
    check_jaxpr(closed)
    assert str(closed) == """\
{ lambda a:f64[4,3] b:f64[4]; c:f64[5,3]. let
    d:f64[4,5] = dot_general[dimension_numbers=(([1], [1]), ([], []))] a c
    e:f64[4,1] = reshape[new_sizes=(4, 1)] b
    f:f64[4,5] = add d e
    g:f64[4,5] = tanh f
    h:f64[5,4] = transpose[permutation=(1, 0)] g
  in (h,) }"""


def test_printed_jaxpr_of_batched_matmuls():
    closed = make_jaxpr(vmap(lambda A, B: A @ B))(np.ones((5, 4, 3)), np.ones((5, 3, 2)))
    assert str(closed) == """\
{ lambda ; a:f64[5,4,3] b:f64[5,3,2]. let
    c:f64[5,4,2] = dot_general[dimension_numbers=(([2], [1]), ([0], [0]))] a b
  in (c,) }"""
    closed = make_jaxpr(vmap(lambda x: pnp.sum(x, axis=0), in_axes=1))(np.ones((3, 5)))
    assert str(closed) == """\
{ lambda ; a:f64[3,5]. let b:f64[5] = reduce_sum[axes=(0,)] a in (b,) }"""


def test_printed_jaxpr_of_per_example_gradients():
    def loss(w, x, y):
        return pnp.sum((pnp.tanh(w @ x) - y) ** 2)
    closed = make_jaxpr(vmap(grad(loss), in_axes=(None, 0, 0)))(
        np.ones((4, 3)), np.ones((5, 3)), np.ones((5, 4)))
    check_jaxpr(closed)
    assert str(closed) == """\
{ lambda ; a:f64[4,3] b:f64[5,3] c:f64[5,4]. let
    d:f64[4,5] = dot_general[dimension_numbers=(([1], [1]), ([], []))] a b
    e:f64[4,5] = tanh d
    f:f64[4,5] = mul e e
    g:f64[4,5] = sub 1.0:f64[] f
    h:f64[4,5] = transpose[permutation=(1, 0)] c
    i:f64[4,5] = sub e h
    j:f64[4,5] = mul i g
    k:f64[5,4] = transpose[permutation=(1, 0)] j
    l:f64[5,4,1] = reshape[new_sizes=(5, 4, 1)] k
    m:f64[5,1,3] = reshape[new_sizes=(5, 1, 3)] b
    n:f64[5,4,3] = mul l m
    o:f64[5,4,3] = mul n 2.0:f64[]
  in (o,) }"""


def test_jacobian_jaxprs_are_batched_not_unrolled():
    W = rand(30, 30)
    g = lambda x: pnp.tanh(W @ x)
    for jac in (jacfwd, jacrev):
        closed = make_jaxpr(jac(g))(rand(30))
        check_jaxpr(closed)
        names = [e.primitive.name for e in closed.jaxpr.eqns]
        assert len(names) < 12, names
        # the forward one; the batched one against the identity is gone: the basis is
        # symbolic (primitives/_basis.py), W @ basis is W itself
        assert names.count('dot_general') == 1


# --- errors -----------------------------------------------------------------------------------

def test_error_mismatched_sizes_names_arguments_axes_and_sizes():
    def f(x, y):
        return x + y
    with pytest.raises(ValueError) as e:
        vmap(f)(rand(3, 2), rand(4, 2))
    msg = str(e.value)
    assert 'inconsistent sizes' in msg
    assert 'argument x (f64[3,2]) has size 3 along axis 0' in msg
    assert 'argument y (f64[4,2]) has size 4 along axis 0' in msg
    with pytest.raises(ValueError, match=r"axis_size=5"):
        vmap(f, axis_size=5)(rand(3, 2), rand(3, 2))
    with pytest.raises(ValueError, match=r"argument p\['b'\] \(f64\[2\]\) has size 2"):
        vmap(lambda p: p['a'] + p['b'][0])({'a': rand(3), 'b': rand(2)})


def test_error_in_axes_does_not_fit():
    def f(x, y):
        return x
    with pytest.raises(ValueError, match=r"argument y \(f64\[3\]\) along axis 1.*rank.*at least 2"):
        vmap(f, in_axes=(0, 1))(rand(3, 2), rand(3))
    with pytest.raises(ValueError, match=r"argument x \(f64\[\]\) along axis 0"):
        vmap(f, in_axes=(0, None))(1.0, 2.0)
    with pytest.raises(ValueError, match=r"len\(in_axes\)=3 for 2 positional"):
        vmap(f, in_axes=(0, 0, 0))(rand(3), rand(3))
    with pytest.raises(ValueError, match=r"tree prefix.*for y"):
        vmap(f, in_axes=(0, (0, 0)))(rand(3), rand(3))
    with pytest.raises(ValueError, match=r"tree prefix.*for x\['a'\]"):
        vmap(f, in_axes=({'a': (0,)}, None))({'a': rand(3)}, 1.0)
    with pytest.raises(TypeError, match="in_axes must be"):
        vmap(f, in_axes='0')(rand(3), rand(3))


def test_error_out_axes():
    x = rand(3, 2)
    with pytest.raises(ValueError, match=r"mapped output but out_axes is None.*output.*f64\[2\]"):
        vmap(lambda v: v * 2, out_axes=None)(x)
    with pytest.raises(ValueError, match=r"out_axes entry 3 for output\[1\].*rank 1"):
        vmap(lambda v: (v, v[0]), out_axes=(0, 3))(x)
    with pytest.raises(ValueError, match=r"tree prefix"):
        vmap(lambda v: v, out_axes=(0, 0))(x)
    with pytest.raises(ValueError, match="at least one non-None value in in_axes"):
        vmap(lambda v: v, in_axes=None)(x)
    # unbatched outputs with out_axes None stay as they are (no error, as in JAX)
    assert vmap(lambda v: 3.0, out_axes=None)(x) == 3.0


def test_python_control_flow_on_batched_values():
    x = rand(3, 2)

    def f(v):
        if v[0] > 0:
            return v
        return -v

    with pytest.raises(ConcretizationTypeError) as e:
        vmap(f)(x)
    msg = str(e.value)
    assert 'vmap' in msg and 'bool[]' in msg and 'pnp.where' in msg and 'lax.cond' in msg
    with pytest.raises(ConcretizationTypeError):
        vmap(lambda v: float(v.sum()))(x)
    # on an unbatched value Python control flow is fine
    out = vmap(lambda v, c: v if c > 0 else -v, in_axes=(0, None))(x, 1.0)
    np.testing.assert_allclose(out, x)


def test_leaked_batch_tracer_is_detected():
    box = []
    vmap(lambda v: box.append(v) or v)(rand(3))
    with pytest.raises(UnexpectedTracerError):
        pnp.sin(box[0])


# --- jacobians ----------------------------------------------------------------------------------

def numerical_jacobian(f, x, eps=1e-6):
    cols = [numerical_jvp(f, (x,), (e.reshape(x.shape),), eps)
            for e in np.eye(x.size)]
    y = np.asarray(f(x))
    return np.stack([np.asarray(c) for c in cols], axis=-1).reshape(y.shape + x.shape)


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['jacfwd', 'jacrev'])
def test_jacobians_against_finite_differences(jac):
    M = rand(3, 2)
    f = lambda X: pnp.sin(X @ M.T) * pnp.sum(X ** 2)
    X = rand(4, 2)
    J = jac(f)(X)
    assert J.shape == (4, 3, 4, 2)
    np.testing.assert_allclose(J, numerical_jacobian(f, X), rtol=1e-6, atol=1e-8)
    staged_ok(jac(f), X)


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['jacfwd', 'jacrev'])
def test_jacobians_argnums_aux_and_pytrees(jac):
    a, b = rand(3), rand(2, 3)

    def f(x, p):
        out = {'s': pnp.sum(x * p['w']), 'v': pnp.tanh(p['w'] @ x) * p['c']}
        return out, {'norm': pnp.sum(x ** 2)}

    p = {'w': b, 'c': 2.0}
    J, aux = jac(f, argnums=(0, 1), has_aux=True)(a, p)
    np.testing.assert_allclose(aux['norm'], np.sum(a ** 2))
    assert J['s'][0].shape == (3,)
    assert J['s'][1]['w'].shape == (2, 3) and np.shape(J['s'][1]['c']) == ()
    assert J['v'][0].shape == (2, 3) and J['v'][1]['w'].shape == (2, 2, 3)
    assert J['v'][1]['c'].shape == (2,)
    np.testing.assert_allclose(J['s'][0], b.sum(0))
    np.testing.assert_allclose(J['v'][1]['c'], np.tanh(b @ a))
    fv = lambda x: f(x, p)[0]['v']
    np.testing.assert_allclose(J['v'][0], numerical_jacobian(fv, a), rtol=1e-6, atol=1e-8)
    fw = lambda w: f(a, {'w': w, 'c': 2.0})[0]['v']
    np.testing.assert_allclose(J['v'][1]['w'], numerical_jacobian(fw, b), rtol=1e-6, atol=1e-8)


def test_hessian_against_finite_differences_and_symmetry():
    A = rand(3, 3)
    f = lambda x: pnp.sum(pnp.tanh(A @ x) ** 2) + pnp.prod(x)
    x = rand(3)
    H = hessian(f)(x)
    assert H.shape == (3, 3)
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-12)
    num = numerical_jacobian(grad(f), x)
    np.testing.assert_allclose(H, num, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(H, jacrev(jacfwd(f))(x), rtol=1e-12, atol=1e-12)
    H2, aux = hessian(lambda x: (f(x), 1.0), has_aux=True)(x)
    np.testing.assert_allclose(H2, H)
    Hm = hessian(lambda m: pnp.sum(pnp.sin(m) ** 2))(rand(2, 2))
    assert Hm.shape == (2, 2, 2, 2)
    staged_ok(hessian(f), x)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_jacobian_dtypes(dtype):
    x = rand(3, dtype=dtype)
    for jac in (jacfwd, jacrev):
        J = jac(lambda v: pnp.sin(v) * 2.0)(x)
        assert J.dtype == dtype
        np.testing.assert_allclose(J, np.diag(2 * np.cos(x)), rtol=1e-6)


# --- jit and the jaxpr-level batching interpreter ---------------------------------------------

def test_vmap_of_jit_and_jit_of_vmap():
    from transforms import jit
    W = rand(4, 3)
    f = lambda x, s: pnp.tanh(W @ x) * s
    xs, ss = rand(5, 3), rand(5)
    want = np.stack([np.tanh(W @ xs[i]) * ss[i] for i in range(5)])
    np.testing.assert_allclose(vmap(jit(f))(xs, ss), want, rtol=1e-12)
    np.testing.assert_allclose(jit(vmap(f))(xs, ss), want, rtol=1e-12)
    np.testing.assert_allclose(vmap(jit(f), in_axes=(0, None))(xs, 2.0),
                               np.tanh(xs @ W.T) * 2.0, rtol=1e-12)
    np.testing.assert_allclose(vmap(jit(f), in_axes=(1, 0), out_axes=1)(xs.T, ss), want.T,
                               rtol=1e-12)
    # derivatives through both orders
    loss = lambda x, s: pnp.sum(jit(f)(x, s) ** 2)
    per_ex = vmap(grad(loss))(xs, ss)
    loop = np.stack([grad(loss)(xs[i], ss[i]) for i in range(5)])
    np.testing.assert_allclose(per_ex, loop, rtol=1e-12)
    g = grad(lambda x: pnp.sum(vmap(jit(f))(x, ss)))(xs)
    np.testing.assert_allclose(g, np.stack([grad(lambda v: pnp.sum(f(v, ss[i])))(xs[i])
                                            for i in range(5)]), rtol=1e-12)
    np.testing.assert_allclose(jit(vmap(grad(loss)))(xs, ss), loop, rtol=1e-12)
    for fn in (vmap(jit(f)), jit(vmap(f)), vmap(grad(loss)), jit(vmap(grad(loss)))):
        check_jaxpr(make_jaxpr(fn)(xs, ss))
    check_jaxpr(make_jaxpr(grad(lambda x: pnp.sum(vmap(jit(f))(x, ss))))(xs))


def test_printed_jaxpr_of_vmap_of_jit():
    from transforms import jit
    W = W43

    def layer(x):
        return pnp.tanh(W @ x)
    closed = make_jaxpr(vmap(jit(layer)))(np.ones((5, 3)))
    check_jaxpr(closed)
    assert str(closed) == """\
{ lambda ; a:f64[5,3]. let
    b:f64[4,5] = jit[jaxpr={ lambda c:f64[4,3]; d:f64[5,3]. let
          e:f64[4,5] = dot_general[dimension_numbers=(([1], [1]), ([], []))] c d
          f:f64[4,5] = tanh e
        in (f,) } name=vmap(layer)] a
    g:f64[5,4] = transpose[permutation=(1, 0)] b
  in (g,) }"""


def test_batch_jaxpr_interpreter_is_registered_and_memoised():
    from tracer.hooks import interpreters
    from transforms.vmap import batch_jaxpr
    assert interpreters.batch_jaxpr is batch_jaxpr
    closed = make_jaxpr(lambda x, y: (pnp.sin(x) * y, y + 1.0, 2.0 * x.sum()))(rand(3), rand(3))
    b1, dims = batch_jaxpr(closed, 4, (0, None))
    assert dims == [0, None, 0]
    assert batch_jaxpr(closed, 4, (0, None))[0] is b1
    check_jaxpr(b1)
    x, y = rand(4, 3), rand(3)
    outs = eval_jaxpr(b1.jaxpr, b1.consts, x, y)
    np.testing.assert_allclose(outs[0], np.sin(x) * y)
    np.testing.assert_allclose(outs[1], y + 1.0)
    np.testing.assert_allclose(outs[2], 2 * x.sum(1))
    # forced output dims: broadcast the unbatched output, move the others
    b2, dims2 = batch_jaxpr(closed, 4, (1, None), (1, 0, 0))
    assert dims2 == [1, 0, 0]
    outs = eval_jaxpr(b2.jaxpr, b2.consts, x.T, y)
    np.testing.assert_allclose(outs[0], (np.sin(x) * y).T)
    np.testing.assert_allclose(outs[1], np.broadcast_to(y + 1.0, (4, 3)))
    with pytest.raises(ValueError, match="out_axes is None"):
        batch_jaxpr(closed, 4, (0, None), (None, None, None))
