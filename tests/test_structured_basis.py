"""The symbolic standard basis of jacfwd / jacrev (primitives/_basis.py).

Every Jacobian here is compared with a reference built without it: one `jvp` per
input element (a one-hot tangent as an ordinary array), and Hessians with one `jvp`
of `grad` per element. Functions are chosen to hit each structured rule (scaling,
division, negation, sums, reshapes, conversions, selects, contractions, full
reductions) and to force materialisation (the basis into sin, a gather, a reversal,
a transpose, a sum with a dense batched value), with several leaves (offsets),
float32, scalar and empty leaves, under jit and vmap. The IR tests check that the
traced Jacobian of W6 contains no product with the identity."""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from primitives._basis import Basis, materialize
from tracer import make_jaxpr, check_jaxpr, tree_flatten, tree_unflatten
from transforms import jacfwd, jacrev, hessian, jvp, grad, jit, vmap

rng = np.random.default_rng(7)


def rand(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def ref_jacobian(f, args, argnums=0):
    """Dense Jacobian by one jvp per input element: a pytree over f's outputs of
    (a pytree over argnums of) arrays out.shape + in.shape."""
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    dyn = tuple(args[i] for i in nums)
    flat_in, in_tree = tree_flatten(dyn)
    out = f(*args)
    flat_out, out_tree = tree_flatten(out)
    cols = [[] for _ in flat_out]          # per output leaf: per input leaf: columns
    for c in cols:
        c.extend([] for _ in flat_in)
    for li, leaf in enumerate(flat_in):
        leaf = np.asarray(leaf)
        for j in range(leaf.size):
            ts = [np.zeros_like(np.asarray(v)) for v in flat_in]
            ts[li].reshape(-1)[j] = 1
            t_dyn = tree_unflatten(in_tree, ts)

            def g(*d):
                full = list(args)
                for i, v in zip(nums, d):
                    full[i] = v
                return f(*full)
            _, tout = jvp(g, dyn, t_dyn)
            for oi, t in enumerate(tree_flatten(tout)[0]):
                cols[oi][li].append(np.asarray(t))
    blocks = []
    for oi, o in enumerate(flat_out):
        row = []
        for li, leaf in enumerate(flat_in):
            shape = np.shape(o) + np.shape(leaf)
            c = cols[oi][li]
            if c:
                arr = np.stack(c, axis=-1).reshape(shape)
            else:
                arr = np.zeros(shape, np.result_type(o))
            row.append(arr)
        inner = tree_unflatten(in_tree, row)
        blocks.append(inner[0] if single else inner)
    return tree_unflatten(out_tree, blocks)


def ref_hessian(f, x):
    cols = []
    for j in range(x.size):
        t = np.zeros_like(x)
        t.reshape(-1)[j] = 1
        cols.append(np.asarray(jvp(grad(f), (x,), (t,))[1]))
    return np.stack(cols, axis=-1).reshape(x.shape + x.shape)


def assert_tree_close(got, want, rtol=1e-12, atol=1e-12):
    g, gt = tree_flatten(got)
    w, wt = tree_flatten(want)
    assert gt == wt, (gt, wt)
    for a, b in zip(g, w):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def n_identity_consts(closed):
    """How many constants of the jaxpr are (blocks of) a floating identity matrix: a
    materialised basis that would be multiplied densely. (A boolean diagonal mask
    builds a diagonal output; it is not multiplied.)"""
    count = 0
    for c in closed.consts:
        c = np.asarray(c)
        if c.ndim >= 2 and c.dtype.kind == 'f' and c.size:
            m = c.reshape(c.shape[0], -1)
            if np.isin(m, (0, 1)).all() and (m.sum(axis=1) <= 1).all() \
                    and m.sum() == min(m.shape):
                count += 1
    return count


W = rand(6, 5)
W2 = rand(3, 6)
C = rand(5)


# --- functions that stay structured --------------------------------------------------------

STRUCTURED = {
    # dot_general (W @ basis for jacfwd, basis @ W for jacrev), mul by an unbatched factor
    'w6': lambda x: pnp.tanh(W @ x),
    # mul/div by scalars and vectors, neg, sub/add of two bases of one leaf
    'scale': lambda x: -(3.0 * x / 2.0 - x * C) / C + x,
    # reshape of the per-example shape, then a contraction over several axes
    'reshape': lambda x: pnp.sin(W2 @ (W @ x).reshape(2, 3).reshape(6)),
    # select_n (where/relu) and max's derivative
    'relu': lambda x: pnp.maximum(W @ x, 0.0) + W @ pnp.where(x > 0, x, 0.0),
    # convert_element_type (to float32 and back)
    'convert': lambda x: (W @ x).astype(np.float32).astype(np.float64) * 2.0,
    # x @ W.T: the contracting axis of the other operand is its last
    'rmatmul': lambda x: pnp.cos(x @ W.T),
    # full reduction of the basis
    'sum': lambda x: pnp.sum(x * C) * W[:, 0] + pnp.exp(x).sum(),
    # sqrt: safe_mul in its derivative
    'sqrt': lambda x: pnp.sqrt(x * x + 1.0),
}


@pytest.mark.parametrize('name', sorted(STRUCTURED))
@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['fwd', 'rev'])
def test_structured_functions_match_dense_reference(name, jac):
    f = STRUCTURED[name]
    x = rand(5)
    want = ref_jacobian(f, (x,))
    # (convert rounds the tangent to float32 on the way forward only)
    tol = 1e-6 if name == 'convert' else 1e-10
    assert_tree_close(jac(f)(x), want, rtol=tol, atol=1e-12)
    # traced: same numbers, and no identity matrix among the constants
    closed = make_jaxpr(jac(f))(x)
    check_jaxpr(closed)
    assert n_identity_consts(closed) == 0, closed


def test_w6_jacobians_equal_the_hand_formula():
    w = rand(40, 40) / np.sqrt(40)
    x = rand(40)
    g = lambda x: pnp.tanh(w @ x)
    t = np.tanh(w @ x)
    hand = (1 - t ** 2)[:, None] * w
    for jac in (jacrev, jacfwd):
        np.testing.assert_allclose(jac(g)(x), hand, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(jit(jac(g))(x), hand, rtol=1e-12, atol=1e-14)


# --- functions that force materialisation ----------------------------------------------------

IDX = np.array([4, 0, 0, 2])
MATERIALISED = {
    'sin_of_basis': lambda x: W @ x + pnp.sin(x).sum(),      # sin's jvp scales: structured
    'gather': lambda x: pnp.tanh(x[IDX]) * 2.0,
    'rev': lambda x: x[::-1] * C,
    'dense_plus_basis': lambda x: pnp.sum(W, axis=0) * 0 + (W.T @ (W @ x)) + x,
    'cumsum': lambda x: pnp.cumsum(x * x),
    'concat': lambda x: pnp.concatenate([x, 2 * x, W @ x]),
    'outer': lambda x: pnp.outer(x, C) + pnp.outer(C, x),
    'matrix_out': lambda x: (x[:, None] * W.T).T,             # transpose of a basis
    'identity': lambda x: x,
    'sin_direct': lambda x: lax.sin(x) if False else pnp.sin(x),
}


@pytest.mark.parametrize('name', sorted(MATERIALISED))
@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['fwd', 'rev'])
def test_materialising_functions_match_dense_reference(name, jac):
    f = MATERIALISED[name]
    x = rand(5)
    want = ref_jacobian(f, (x,))
    got = jac(f)(x)
    assert_tree_close(got, want, rtol=1e-10, atol=1e-12)
    assert got.flags.writeable
    closed = make_jaxpr(jac(f))(x)
    check_jaxpr(closed)


def test_basis_forced_into_a_primitive_without_rule_under_jit():
    # the basis meets a gather and a reversal inside jit: materialised with binds
    f = MATERIALISED['gather']
    x = rand(5)
    want = ref_jacobian(f, (x,))
    for jac in (jacfwd, jacrev):
        np.testing.assert_allclose(jit(jac(f))(x), want, rtol=1e-10, atol=1e-12)
    f = lambda x: pnp.sin(W @ x)[::-1] * C[0]
    want = ref_jacobian(f, (x,))
    np.testing.assert_allclose(jit(jacrev(f))(x), want, rtol=1e-10, atol=1e-12)


def test_materialize_builds_the_identity_block_and_scaled_diagonal():
    b = Basis(7, 2, (2, 2), np.float64)
    want = np.eye(7)[:, 2:6].reshape(7, 2, 2)
    np.testing.assert_array_equal(materialize(b), want)
    d = np.array([[1.5, -2.0], [np.inf, 0.25]])
    got = materialize(b.like(d))
    want = want * 0
    for j, v in enumerate(d.reshape(-1)):
        want[2 + j].reshape(-1)[j] = v
    np.testing.assert_array_equal(got, want)          # exact zeros next to the inf
    # traced scale: the same values through select_n in a jaxpr
    closed = make_jaxpr(lambda d: materialize(b.like(d)))(d)
    from tracer import eval_jaxpr
    np.testing.assert_array_equal(eval_jaxpr(closed.jaxpr, closed.consts, d)[0], want)


# --- several leaves (offsets), argnums, pytrees ----------------------------------------------

def test_several_input_leaves_with_offsets():
    A, B = rand(4, 3), rand(4, 2, 2)

    def f(a, p):
        return pnp.tanh(A @ a + pnp.tensordot(B, p['m'], axes=2)) * p['s']

    a, p = rand(3), {'m': rand(2, 2), 's': rand(4)}
    for argnums in (0, 1, (0, 1)):
        want = ref_jacobian(f, (a, p), argnums)
        for jac in (jacfwd, jacrev):
            assert_tree_close(jac(f, argnums)(a, p), want, rtol=1e-10, atol=1e-12)
            if argnums == (0, 1):
                assert_tree_close(jit(jac(f, argnums))(a, p), want, rtol=1e-10, atol=1e-12)


def test_several_output_leaves_with_offsets():
    def f(x):
        h = W @ x
        return {'t': pnp.tanh(h), 'u': (W2 @ h) * 3.0, 's': pnp.sum(x * C), 'r': x.reshape(5, 1)}

    x = rand(5)
    want = ref_jacobian(f, (x,))
    for jac in (jacfwd, jacrev):
        assert_tree_close(jac(f)(x), want, rtol=1e-10, atol=1e-12)
        assert_tree_close(jit(jac(f))(x), want, rtol=1e-10, atol=1e-12)


def test_sum_of_bases_of_different_leaves_is_materialised():
    def f(a, b):
        return (a * 2.0 + b, a - b * C[:3])

    a, b = rand(3), rand(3)
    want = ref_jacobian(f, (a, b), (0, 1))
    for jac in (jacfwd, jacrev):
        assert_tree_close(jac(f, (0, 1))(a, b), want)


def test_has_aux_and_kwargs():
    def f(x, scale=1.0):
        y = pnp.tanh(W @ x) * scale
        return y, {'norm': pnp.sum(y * y)}

    x = rand(5)
    want = ref_jacobian(lambda x: f(x, scale=2.0)[0], (x,))
    for jac in (jacfwd, jacrev):
        J, aux = jac(f, has_aux=True)(x, scale=2.0)
        np.testing.assert_allclose(J, want, rtol=1e-12, atol=1e-14)
        y = np.tanh(W @ x) * 2.0
        np.testing.assert_allclose(aux['norm'], np.sum(y * y), rtol=1e-12)


# --- dtypes, scalars, empty leaves ---------------------------------------------------------------

def test_float32():
    w = W.astype(np.float32)
    f = lambda x: pnp.tanh(w @ x) * np.float32(2) - x[:1] / np.float32(3)
    x = rand(5, dtype=np.float32)
    want = ref_jacobian(f, (x,))
    for jac in (jacfwd, jacrev):
        got = jac(f)(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = jit(jac(f))(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mixed_precision_leaves():
    def f(a, b):
        return pnp.tanh(W[:, :3] @ a) + (W[:, 3:] @ b.astype(np.float64))

    a, b = rand(3), rand(2, dtype=np.float32)
    want = ref_jacobian(f, (a, b), (0, 1))
    for jac in (jacfwd, jacrev):
        got = jac(f, (0, 1))(a, b)
        # jacfwd's blocks have the output's dtype, jacrev's the input's (as in JAX)
        assert got[1].dtype == (np.float64 if jac is jacfwd else np.float32)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)


def test_scalar_input_and_output():
    v = rand(4)
    f = lambda s: pnp.sin(s * v) * 2.0           # scalar in, vector out
    s = np.float64(0.7)
    want = np.cos(s * v) * v * 2.0
    for jac in (jacfwd, jacrev):
        got = jac(f)(s)
        assert got.shape == (4,)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    g = lambda x: pnp.sum(pnp.tanh(W @ x))        # vector in, scalar out
    x = rand(5)
    t = np.tanh(W @ x)
    want = (1 - t ** 2) @ W
    for jac in (jacfwd, jacrev):
        np.testing.assert_allclose(jac(g)(x), want, rtol=1e-12)
    np.testing.assert_allclose(jit(jacrev(g))(x), want, rtol=1e-12)
    h = lambda s: s * 3.0 - s * s                 # scalar to scalar
    for jac in (jacfwd, jacrev):
        np.testing.assert_allclose(jac(h)(s), 3.0 - 2 * s, rtol=1e-14)


def test_empty_leaves():
    W0 = rand(6, 0)
    f = lambda x: W0 @ x + 1.0
    x = np.zeros(0)
    for jac in (jacfwd, jacrev):
        got = jac(f)(x)
        assert got.shape == (6, 0)
    g = lambda a, e: pnp.tanh(W[:, :2] @ a) + pnp.sum(e) * 0.0 + (W0 @ e)
    a, e = rand(2), np.zeros(0)
    want = ref_jacobian(g, (a, e), (0, 1))
    for jac in (jacfwd, jacrev):
        got = jac(g, (0, 1))(a, e)
        assert got[1].shape == (6, 0)
        assert_tree_close(got, want)


# --- Hessians, vmap, jit ------------------------------------------------------------------------------

HESS = {
    'energy': lambda x: pnp.sum(x ** 4) / 4 + x[0] * x[1],
    'sumtanh': lambda x: pnp.sum(pnp.tanh(W @ x)),
    'quad': lambda x: x @ (W.T @ W) @ x / 2 + pnp.sum(C * x),
    'logsumexp': lambda x: pnp.log(pnp.sum(pnp.exp(W @ x))),
    'relu': lambda x: pnp.sum(pnp.maximum(W @ x, 0.0) ** 2),
}


@pytest.mark.parametrize('name', sorted(HESS))
def test_hessian_matches_jvp_of_grad(name):
    f = HESS[name]
    x = rand(5)
    want = ref_hessian(f, x)
    np.testing.assert_allclose(hessian(f)(x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jacrev(jacrev(f))(x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jacrev(jacfwd(f))(x), want, rtol=1e-10, atol=1e-12)
    closed = make_jaxpr(hessian(f))(x)
    check_jaxpr(closed)


def test_hessian_of_tanh_layer_analytic_and_jitted():
    f = HESS['sumtanh']
    x = rand(5)
    t = np.tanh(W @ x)
    want = W.T @ np.diag(-2 * t * (1 - t ** 2)) @ W
    np.testing.assert_allclose(hessian(f)(x), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jit(hessian(f))(x), want, rtol=1e-10, atol=1e-12)


def test_vmap_of_jacobians_and_closed_over_batched_values():
    xs = rand(3, 5)
    g = STRUCTURED['w6']
    want = np.stack([ref_jacobian(g, (x,)) for x in xs])
    for jac in (jacfwd, jacrev):
        np.testing.assert_allclose(vmap(jac(g))(xs), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jit(vmap(jacfwd(g)))(xs), want, rtol=1e-12, atol=1e-14)
    # the weight matrix batched by an outer vmap: the contraction rule's operand is
    # a batched tracer of the outer trace
    Ws = rand(2, 6, 5)
    x = rand(5)

    def jac_w(w, jac):
        return jac(lambda x: pnp.tanh(w @ x))(x)
    for jac in (jacfwd, jacrev):
        got = vmap(lambda w: jac_w(w, jac))(Ws)
        for i in range(2):
            t = np.tanh(Ws[i] @ x)
            np.testing.assert_allclose(got[i], (1 - t ** 2)[:, None] * Ws[i], rtol=1e-12)


def test_jacobian_inside_grad_and_jvp():
    # derivatives of a Jacobian: the basis rules run under outer JVP traces
    x = rand(5)

    def frob(x):
        return pnp.sum(jacrev(STRUCTURED['w6'])(x) ** 2)

    def frob_fwd(x):
        return pnp.sum(jacfwd(STRUCTURED['w6'])(x) ** 2)

    eps = 1e-6
    num = np.array([(frob(x + eps * e) - frob(x - eps * e)) / (2 * eps) for e in np.eye(5)])
    np.testing.assert_allclose(grad(frob)(x), num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad(frob_fwd)(x), num, rtol=1e-6, atol=1e-8)


def test_infinite_derivative_gives_exact_zeros_off_the_diagonal():
    # sqrt at 0: the diagonal entry is inf; the structural zeros stay 0 (a dense
    # product with the identity would make them 0 * inf = NaN)
    x = np.array([0.0, 4.0])
    want = np.array([[np.inf, 0.0], [0.0, 0.25]])
    with np.errstate(divide='ignore', invalid='ignore'):
        for jac in (jacfwd, jacrev):
            np.testing.assert_array_equal(jac(pnp.sqrt)(x), want)
        np.testing.assert_array_equal(jit(jacrev(pnp.sqrt))(x), want)


# --- the traced IR is small -----------------------------------------------------------------------------

def _w6_setup(n=50):
    w = rand(n, n) / np.sqrt(n)
    return (lambda x: pnp.tanh(w @ x)), rand(n), n


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['fwd', 'rev'])
def test_w6_ir_has_no_product_with_the_identity(jac):
    g, x, n = _w6_setup()
    closed = make_jaxpr(jac(g))(x)
    check_jaxpr(closed)
    eqns = closed.jaxpr.eqns
    names = [e.primitive.name for e in eqns]
    # the forward matrix-vector product is the only contraction left
    dots = [e for e in eqns if e.primitive.name == 'dot_general']
    assert len(dots) == 1, names
    assert dots[0].outvars[0].aval.shape == (n,)
    # the hand version: dot, tanh, 1 - t*t, one row/column scaling
    assert names == ['dot_general', 'tanh', 'mul', 'sub', 'reshape', 'mul'], names
    # no identity constant: the only constant is W
    assert len(closed.consts) == 1 and np.shape(closed.consts[0]) == (n, n)
    assert str(closed).count(f'f64[{n},{n}]') == 2       # W, and the Jacobian


def test_results_never_alias_closed_over_arrays():
    # W @ basis is W itself inside vmap; the Jacobian handed out is a fresh array
    w = rand(3, 4)
    w0 = w.copy()
    for jac in (jacfwd, jacrev):
        for f in (lambda x: w @ x, lambda x: x @ w.T):
            J = jac(f)(rand(4))
            np.testing.assert_array_equal(J, w0)
            assert J.flags.writeable and not np.shares_memory(J, w)
            J[...] = 0
            np.testing.assert_array_equal(w, w0)


# --- through an inner jit: the basis stays symbolic inside the compiled call ------------------

def _nested_eqns(closed):
    out = []

    def walk(jaxpr):
        for e in jaxpr.eqns:
            out.append(e)
            for p in e.params.values():
                inner = getattr(p, 'jaxpr', None)
                if inner is not None and hasattr(inner, 'eqns'):
                    walk(inner)
    walk(closed.jaxpr)
    return out


@pytest.mark.parametrize('jac', [jacfwd, jacrev], ids=['fwd', 'rev'])
def test_jacobian_of_jit_keeps_the_basis_symbolic(jac):
    g, x, n = _w6_setup()
    gj = jit(g)
    want = ref_jacobian(g, (x,))
    np.testing.assert_allclose(jac(gj)(x), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jit(jac(gj))(x), want, rtol=1e-12, atol=1e-14)
    closed = make_jaxpr(jac(gj))(x)
    check_jaxpr(closed)
    dots = [e for e in _nested_eqns(closed) if e.primitive.name == 'dot_general']
    assert len(dots) == 1 and dots[0].outvars[0].aval.shape == (n,), closed
    assert n_identity_consts(closed) == 0


def test_jit_receiving_scaled_bases_and_several_leaves():
    h = jit(lambda a, b: pnp.tanh(W[:, :3] @ a) * b[0] + pnp.sin(b[1]) * W[:, 3])
    C3 = C[:3]

    def f(a, b):
        return h(a * C3, b / 2.0)          # scaled bases (d = C3, 1/2) enter the jit

    a, b = rand(3), rand(2)
    want = ref_jacobian(f, (a, b), (0, 1))
    for jac in (jacfwd, jacrev):
        assert_tree_close(jac(f, (0, 1))(a, b), want, rtol=1e-10, atol=1e-12)
    s = lambda a: pnp.sum(f(a, b) * W[:, 4])
    np.testing.assert_allclose(hessian(s)(a), ref_hessian(s, a), rtol=1e-9, atol=1e-12)


def test_jit_that_materialises_the_basis_inside():
    h = jit(lambda x: pnp.tanh(x[IDX]) * x[::-1][:4])
    x = rand(5)
    want = ref_jacobian(h, (x,))
    for jac in (jacfwd, jacrev):
        np.testing.assert_allclose(jac(h)(x), want, rtol=1e-10, atol=1e-12)
