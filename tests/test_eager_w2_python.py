"""Eager-grad fast paths that cut the Python work of the MLP workload (W2):

- primitives.numpy: matmul of two matrices of one dtype, sum / max / min over one
  int axis (keepdims), mean of a whole floating array, ufunc calls on tracers
  without keyword arguments;
- transforms/linearize.py: the broadcasting add / sub of a bias, a product with a
  constant array of the same type (logits * onehot), reduce_max /
  reduce_min without ties (reductions.minmax_lin), a 0-d primal divided by a
  scalar (a mean), np.dot for plain matrix products;
- transforms/transpose.py: compact sub and safe_mul-under-ones, bias add_any and
  broadcasting sub of two linear operands, ones times a constant factor, matrix
  products, reshape and reduce_sum, one constant-roots set per pass; reduce_sum's transpose (small, a
  read-only array) and ones in sums built as arrays.

Each is checked against the general path it shortcuts, bit for bit: the numpy
fast paths against the same call spelled so that it takes the general code
(axis=(k,), dtype=...), the linearization shortcuts with the shortcut disabled,
the inline transposes against backward_pass's general loop (all_linear=False),
and the derivatives against finite differences.
"""
import importlib

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import reductions as red_mod
from primitives.dot import dot_general_p
from tracer import make_jaxpr, check_jaxpr, tree_flatten
from tracer.core import instantiate
from transforms import grad, value_and_grad, vjp, jvp
from transforms.linearize import linearize_flat
from transforms.transpose import backward_pass
from benchmarks import workloads as W
from check_grads import check_grads

lin_mod = importlib.import_module("transforms.linearize")
tr_mod = importlib.import_module("transforms.transpose")

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (3, 1), (1, 4), (5, 7), (128, 10)]


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def _same_tree(a, b):
    la, ta = tree_flatten(a)
    lb, tb = tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        _same(x, y)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _mlp_args(dtype, batch, sizes, seed=0, zero_last=False):
    rng = _rng(seed)
    ps = []
    for a, c in zip(sizes[:-1], sizes[1:]):
        ps += [(rng.standard_normal((a, c)) / np.sqrt(a)).astype(dtype),
               (0.01 * rng.standard_normal(c)).astype(dtype)]
    if zero_last:       # every logit equal: ties in the max
        ps[-2] = np.zeros_like(ps[-2])
        ps[-1] = np.zeros_like(ps[-1])
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    onehot = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], batch)]
    return tuple(ps), x, onehot


# (64x300 hidden activations: above KERNEL_MIN, so deferred products and fused sums
# run; the benchmark's own size is checked once, in float32, below)
MLP_CASES = [(5, (7, 6, 4, 3)), (1, (3, 2, 2, 2)), (64, (20, 300, 40, 12))]
W2_CASE = (128, (784, 512, 512, 10))


# --- primitives.numpy fast paths ---------------------------------------------------------

def _pairs(shape, keepdims):
    """(fast, general) spellings of the same reductions."""
    nd = len(shape)
    out = []
    for ax in list(range(-nd, nd)):
        out.append((lambda x, ax=ax: pnp.sum(x, axis=ax, keepdims=keepdims),
                    lambda x, ax=ax: pnp.sum(x, axis=(ax,), keepdims=keepdims)))
        out.append((lambda x, ax=ax: pnp.max(x, axis=ax, keepdims=keepdims),
                    lambda x, ax=ax: pnp.max(x, axis=(ax,), keepdims=keepdims)))
        out.append((lambda x, ax=ax: pnp.min(x, axis=ax, keepdims=keepdims),
                    lambda x, ax=ax: pnp.min(x, axis=(ax,), keepdims=keepdims)))
    if not keepdims:
        out.append((lambda x: pnp.mean(x), lambda x: pnp.mean(x, axis=tuple(range(nd)))))
    return out


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 4)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_numpy_reduction_fast_paths_match_general(dtype, shape, keepdims):
    x = _rng(len(shape)).standard_normal(shape).astype(dtype)
    for fast, general in _pairs(shape, keepdims):
        _same(fast(x), general(x))                       # eager values
        assert str(make_jaxpr(fast)(x)) == str(make_jaxpr(general)(x))
        f = lambda x, fn=fast: pnp.sum(pnp.tanh(fn(x)) * 1.5)
        g = lambda x, fn=general: pnp.sum(pnp.tanh(fn(x)) * 1.5)
        _same_tree(value_and_grad(f)(x), value_and_grad(g)(x))
        t = _rng(1).standard_normal(shape).astype(dtype)
        _same_tree(jvp(fast, (x,), (t,)), jvp(general, (x,), (t,)))


def test_numpy_reduction_fast_paths_decline():
    x = np.arange(12.0).reshape(3, 4)
    # out-of-range and empty axes: the general path's errors and results
    for fn in (pnp.sum, pnp.max, pnp.min):
        with pytest.raises(np.exceptions.AxisError):
            fn(x, axis=2)
        with pytest.raises(np.exceptions.AxisError):
            fn(x, axis=-3)
    e = np.zeros((0, 3))
    _same(pnp.sum(e, axis=0, keepdims=True), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="zero-size"):
        pnp.max(e, axis=0)
    # integer, bool and weakly typed operands keep the general path's dtypes
    xi = np.arange(6, dtype=np.int32).reshape(2, 3)
    _same(pnp.sum(xi, axis=1), np.sum(xi, axis=1))
    _same(pnp.mean(xi), np.asarray(np.mean(xi)))
    _same(pnp.max(xi, axis=1, keepdims=True), np.max(xi, axis=1, keepdims=True))
    jx = make_jaxpr(lambda s: pnp.mean(pnp.broadcast_to(s, (2, 3))))(2.0)
    check_jaxpr(jx)
    # mean of an empty array: NaN, as NumPy's
    with np.errstate(invalid='ignore'):
        assert np.isnan(pnp.mean(np.zeros((0, 2))))


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_matmul_fast_path_matches_general(dtype):
    rng = _rng(3)
    for (m, k, n) in [(1, 1, 1), (3, 4, 5), (128, 784, 16)]:
        a = (10 * rng.standard_normal((m, k))).astype(dtype)
        b = (10 * rng.standard_normal((k, n))).astype(dtype)
        _same(pnp.matmul(a, b), pnp.matmul(a, b, dtype=dtype))
        _same(pnp.matmul(a, b), a @ b)
        if np.dtype(dtype).kind != 'f':
            continue
        f = lambda a, b: pnp.sum(pnp.tanh(a @ b))
        g = lambda a, b: pnp.sum(pnp.tanh(pnp.matmul(a, b, dtype=dtype)))
        assert str(make_jaxpr(f)(a, b)) == str(make_jaxpr(g)(a, b))
        _same_tree(value_and_grad(f, (0, 1))(a, b), value_and_grad(g, (0, 1))(a, b))
        # an array on the left of a traced matrix: NumPy's ufunc dispatch
        h = lambda b: pnp.sum(pnp.tanh(a @ b))
        _same_tree(value_and_grad(h)(b), value_and_grad(lambda b: g(a, b))(b))
    # mixed dtypes, weak types and mismatched shapes: the general path
    a32 = np.ones((2, 3), np.float32)
    a64 = np.ones((3, 2))
    assert pnp.matmul(a32, a64).dtype == np.float64
    with pytest.raises(ValueError, match="mismatch"):
        pnp.matmul(a32, a32)
    assert make_jaxpr(lambda s: pnp.matmul(pnp.full((2, 2), s), a32[:, :2]))(
        1.0).out_avals[0].dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_vector_fast_paths_match_general(dtype):
    """matrix @ vector and vector @ matrix (W3's A @ x): the general path's one
    dot_general, bit for bit, eagerly, staged, and under grad and jvp of grad."""
    rng = _rng(4)
    a = rng.standard_normal((5, 4)).astype(dtype)
    x4 = rng.standard_normal(4).astype(dtype)
    x5 = rng.standard_normal(5).astype(dtype)
    _same(pnp.matmul(a, x4), pnp.matmul(a, x4, dtype=dtype))
    _same(pnp.matmul(x5, a), pnp.matmul(x5, a, dtype=dtype))
    _same(a @ x4, np.matmul(a, x4))
    for f, g, x in [(lambda x: pnp.sum(pnp.tanh(a @ x) ** 2),
                     lambda x: pnp.sum(pnp.tanh(pnp.matmul(a, x, dtype=dtype)) ** 2), x4),
                    (lambda x: pnp.sum(pnp.tanh(x @ a) ** 2),
                     lambda x: pnp.sum(pnp.tanh(pnp.matmul(x, a, dtype=dtype)) ** 2), x5)]:
        assert str(make_jaxpr(f)(x)) == str(make_jaxpr(g)(x))
        _same_tree(value_and_grad(f)(x), value_and_grad(g)(x))
        _same_tree(jvp(grad(f), (x,), (x,)), jvp(grad(g), (x,), (x,)))
    with pytest.raises(ValueError, match="mismatch"):
        pnp.matmul(a, x5)
    with pytest.raises(ValueError, match="mismatch"):
        pnp.matmul(x4, a)
    assert pnp.matmul(x4, x4).shape == ()


# --- linearize shortcuts -------------------------------------------------------------------

def _disable_linearize_shortcuts(monkeypatch):
    monkeypatch.setattr(lin_mod, '_PRIMITIVE_SHORTCUTS', {})
    monkeypatch.setattr(lin_mod.LinearizeTrace, 'fast_reduction', lambda *a: None)
    monkeypatch.setattr(lin_mod, '_fast_add_broadcast', lambda *a: None)
    monkeypatch.setattr(lin_mod, '_fast_mul_array', lambda *a: None)
    monkeypatch.setattr(lin_mod, '_dot_impl',
                        lambda px, py, params: dot_general_p.impl(px, py, **params))


def _mlp_results(args):
    loss = W.make_mlp_loss(pnp)
    out = [value_and_grad(loss)(*args), grad(loss, argnums=1)(*args)]
    flat = lambda *ps: [loss(ps[:6], args[1], args[2])]
    _, lin = linearize_flat(flat, list(args[0]))
    out.append(str(lin.jaxpr))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MLP_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_linearize_shortcuts_match_disabled(monkeypatch, dtype, case, ties):
    args = _mlp_args(dtype, *case, zero_last=ties)
    fast = _mlp_results(args)
    _disable_linearize_shortcuts(monkeypatch)
    slow = _mlp_results(args)
    assert fast[2] == slow[2]           # the same linear jaxpr
    _same_tree(fast[:2], slow[:2])


def test_w2_size_matches_disabled_and_general_loop(monkeypatch):
    args = _mlp_args(np.float32, *W2_CASE)
    ps, x, onehot = args
    loss = W.make_mlp_loss(pnp)
    fast_bw, slow_bw = _both_backward_passes(lambda *p: [loss(p, x, onehot)], list(ps), 1.0)
    _same_tree(fast_bw, slow_bw)
    fast = _mlp_results(args)
    _disable_linearize_shortcuts(monkeypatch)
    slow = _mlp_results(args)
    assert fast[2] == slow[2]
    _same_tree(fast[:2], slow[:2])
    _same_tree(tuple(fast_bw), fast[0][1])


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_bias_and_reduction_shortcuts_match_disabled(monkeypatch, dtype):
    rng = _rng(7)
    x = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    c = rng.standard_normal((6, 1)).astype(dtype)
    fns = [
        lambda x, b, c: pnp.sum(pnp.tanh(x + b)),
        lambda x, b, c: pnp.sum(pnp.tanh(b + x)),          # swapped operands
        lambda x, b, c: pnp.sum(pnp.tanh(x - b) * x),
        lambda x, b, c: pnp.sum(pnp.tanh(b - x) * x),
        lambda x, b, c: pnp.sum(pnp.exp(x - c) + pnp.sin(c - x)),
        lambda x, b, c: pnp.sum(pnp.max(x, axis=1, keepdims=True) * pnp.min(x, axis=0, keepdims=True)),
        lambda x, b, c: pnp.sum(red_mod.reduce_max(x * x, (0, 1)) + x),
        lambda x, b, c: pnp.mean(pnp.tanh(x)) + pnp.mean(c) / 3.0,
        lambda x, b, c: pnp.sum(pnp.tanh(x @ pnp.outer(b, b))),
        lambda x, b, c: pnp.sum(pnp.sin(x) * K) - pnp.sum(K * pnp.cos(x)),   # constants
        lambda x, b, c: pnp.sum(pnp.sin(x) * K[0]) + pnp.sum(pnp.cos(c) * K[:, :1]),
        lambda x, b, c: pnp.sum(pnp.sin(x) * K.astype(np.float64)),           # promotes
    ]
    K = rng.standard_normal((6, 5)).astype(dtype)
    ts = (rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal(5).astype(dtype),
          rng.standard_normal((6, 1)).astype(dtype))

    def run():
        out = []
        for f in fns:
            out.append(value_and_grad(f, (0, 1, 2))(x, b, c))
            out.append(vjp(f, x, b, c)[1](np.ones((), dtype)))
            out.append(jvp(f, (x, b, c), ts))
        return out
    fast = run()
    _disable_linearize_shortcuts(monkeypatch)
    _same_tree(fast, run())


def test_minmax_lin_declines_ties_nan_and_empty():
    p = red_mod.reduce_max_p
    x = np.array([[1.0, 3.0, 3.0], [0.0, 1.0, 2.0]])
    assert red_mod.minmax_lin(p, x, (1,)) is None             # a tie in row 0
    out, mask = red_mod.minmax_lin(p, x, (0,))
    _same(out, np.array([1.0, 3.0, 3.0]))
    _same(mask, np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert red_mod.minmax_lin(p, np.array([[np.nan, 1.0]]), (1,)) is None
    assert red_mod.minmax_lin(p, np.zeros((0, 2)), (1,)) is None
    out, mask = red_mod.minmax_lin(red_mod.reduce_min_p, x, (0, 1))
    assert out == 0.0 and mask.sum() == 1.0 and mask[1, 0] == 1.0
    # ties through grad: the general rule (the tangent averaged over the ties)
    g = grad(lambda x: pnp.sum(pnp.max(x, axis=1)))(x)
    _same(g, np.array([[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]]))


def test_div_scalar_shortcut():
    # the mean's division: a 0-d primal by a scalar of its dtype (float32), or by a
    # Python float (float64); other divisions keep their paths
    for dtype in DTYPES:
        x = _rng(2).standard_normal((4, 3)).astype(dtype)
        f = lambda x: pnp.sum(x * x) / 7.0
        v, g = value_and_grad(f)(x)
        assert v.dtype == dtype and g.dtype == dtype
        _same(g, (2 * x) * dtype(1 / 7.0) if dtype == np.float32 else (2 * x) * (1 / 7.0))
        # a factor 1/k of 0 (k infinite): the shortcut declines, the JVP rule's
        # safe_mul path runs
        v2, g2 = value_and_grad(lambda x: pnp.sum(x) / np.inf)(x)
        _same(g2, np.zeros_like(x))
        assert v2 == 0.0


# --- transposition --------------------------------------------------------------------------

def _both_backward_passes(fun, args, seed):
    outs, lin = linearize_flat(fun, list(args), dce=False)
    ct = [np.asarray(seed, o.dtype) if np.ndim(o) == 0 else seed for o in outs]
    fast = backward_pass(lin.jaxpr, lin.residuals, ct, all_linear=True)
    slow = backward_pass(lin.jaxpr, lin.residuals, ct, all_linear=False)
    dense = lambda cs: [instantiate(c) for c in cs]
    return dense(fast), dense(slow)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MLP_CASES)
@pytest.mark.parametrize("seed", [1.0, 0.375])
def test_inline_transposes_match_general_loop(dtype, case, seed):
    ps, x, onehot = _mlp_args(dtype, *case)
    loss = W.make_mlp_loss(pnp)
    fast, slow = _both_backward_passes(lambda *p: [loss(p[:6], p[6], onehot)],
                                       list(ps) + [x], seed)
    _same_tree(fast, slow)
    if seed == 1.0:
        _same_tree(tuple(fast[:6]), grad(loss)(ps, x, onehot))


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_transposes_more_shapes(dtype):
    rng = _rng(11)
    x = rng.standard_normal((6, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    c = rng.standard_normal((6, 1)).astype(dtype)
    w = rng.standard_normal((5, 5)).astype(dtype)
    k = rng.standard_normal((6, 5)).astype(dtype)
    fns = [
        lambda x, b, c, w: [pnp.sum(pnp.log(pnp.sum(pnp.exp(x - c), axis=1)))],
        lambda x, b, c, w: [pnp.sum((x + b) - (x * b))],
        lambda x, b, c, w: [pnp.sum(pnp.tanh(x @ w + b) * k)],
        lambda x, b, c, w: [pnp.sum(w @ pnp.tanh(x).T)],
        lambda x, b, c, w: [pnp.sum(x * k) * 3.0 - pnp.sum(c)],
        lambda x, b, c, w: [pnp.mean(pnp.log(c * c + 1.0)) - pnp.mean(x - c)],
        lambda x, b, c, w: [pnp.sum(pnp.tanh(x + b), axis=0)],        # a vector output
    ]
    for f in fns:
        n = np.ndim(f(x, b, c, w)[0])
        seed = 2.0 if n == 0 else rng.standard_normal(5).astype(dtype)
        fast, slow = _both_backward_passes(f, [x, b, c, w], seed)
        _same_tree(fast, slow)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inline_matmul_transpose_applies_scale_early(dtype):
    # a scale carried to a matrix product whose linear operand is much larger than
    # the cotangent is applied to the cotangent first (as the general loop does)
    rng = _rng(12)
    x = rng.standard_normal((2, 50)).astype(dtype)
    w = rng.standard_normal((50, 40)).astype(dtype)
    k = rng.standard_normal((2, 40)).astype(dtype)
    for f in (lambda w: [pnp.sum(pnp.tanh(x @ w) * k) * 0.3],
              lambda w: [pnp.sum(pnp.tanh((w.T @ x.T).T) * k) * 0.3]):
        fast, slow = _both_backward_passes(f, [w], 1.7)
        _same_tree(fast, slow)


def test_grad_outputs_are_fresh_writable_arrays():
    # ones times a constant factor is that factor: the gradient must be a copy
    # (the caller's array is never handed back)
    k = np.arange(6.0).reshape(2, 3)
    x = np.ones((2, 3))
    g = grad(lambda x: pnp.sum(x * k))(x)
    _same(g, k)
    assert g is not k and not np.shares_memory(g, k)
    g[0, 0] = 99.0
    assert k[0, 0] == 0.0
    gb = grad(lambda b: pnp.sum(pnp.tanh(x + b)))(np.zeros(3))
    assert gb.flags.writeable


def test_reduce_sum_transpose_small_copy_large_view():
    from tracer import UndefinedPrimal, ShapedArray
    rule = red_mod.reduce_sum_p.transpose
    for shape, axes in [((4, 3), (1,)), ((2, 3, 4), (0, 2)), ((300, 100), (0,))]:
        ct = _rng(4).standard_normal(
            tuple(d for i, d in enumerate(shape) if i not in axes)).astype(np.float32)
        out, = rule(ct, UndefinedPrimal(ShapedArray(shape, np.dtype(np.float32))), axes=axes)
        _same(out, np.broadcast_to(np.expand_dims(ct, axes), shape))
        assert not out.flags.writeable
        if np.prod(shape) < red_mod._COPY_MAX:
            assert not np.shares_memory(out, ct)    # a small array: built, not a view


def test_constant_roots():
    a = np.ones((3, 3))
    env = {0: a, 1: a[1:], 2: 3.0, 3: np.zeros(2)}
    roots = tr_mod._constant_roots(env)
    assert id(a) in roots and len(roots) == 2


# --- derivatives ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", [(5, (7, 6, 4, 3)), (3, (4, 5, 2))])
def test_mlp_grad_checks(case):
    batch, sizes = case
    sizes = sizes if len(sizes) == 4 else sizes + (3,)
    ps, x, onehot = _mlp_args(np.float64, batch, sizes, seed=2)
    loss = W.make_mlp_loss(pnp)
    check_grads(lambda *p: loss(p[:6], p[6], onehot), list(ps) + [x], order=1,
                modes=("rev",))
    check_grads(lambda x: pnp.sum(pnp.max(x, axis=1, keepdims=True) * pnp.mean(x)),
                [x], order=2, modes=("fwd", "rev"))
