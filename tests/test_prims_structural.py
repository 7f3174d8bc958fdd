"""Structural primitives: reductions (max/min/prod/argmax/argmin/cumsum), shape ops
(transpose/squeeze/expand_dims/concatenate/pad/rev), dot_general and slicing
(slice/dynamic_slice/dynamic_update_slice/gather/scatter_add).

For each: values against NumPy (float32 and float64, several shapes), first and
second derivatives against finite differences (check_grads, order 2, fwd and rev),
Hessian-vector products of a scalar function built from the primitive (jvp of grad
and grad of grad), the jaxpr of grad typechecked, and the shape-rule errors.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from check_grads import check_grads  # noqa: E402

from tracer import make_jaxpr, check_jaxpr  # noqa: E402
from transforms import jvp, vjp, grad, linear_transpose  # noqa: E402
from primitives import reductions as R, shape_ops as S, dot as D, slicing as L  # noqa: E402
from primitives import unary, arith  # noqa: E402

rng = np.random.default_rng(1234)
DTYPES = [np.float32, np.float64]


def rand(*shape, dtype=np.float64):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def total(y):
    return R.reduce_sum(y, tuple(range(np.ndim(y) if not hasattr(y, 'ndim') else y.ndim)))


def scalar_of(prim_fn):
    """sum(sin(prim(x))**2): a scalar function built from the primitive."""
    def h(*xs):
        return total(arith.integer_pow(unary.sin(prim_fn(*xs)), 2))
    return h


def check_second_order(prim_fn, *args):
    """jvp of grad and grad of grad against finite differences of grad, for each
    argument; and the jaxpr of grad typechecks."""
    h = scalar_of(prim_fn)
    eps = 1e-5
    for i in range(len(args)):
        def hi(x, i=i):
            a = list(args)
            a[i] = x
            return h(*a)
        x = args[i]
        v = rand(*np.shape(x))
        g = grad(hi)
        num = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
        _, hvp = jvp(g, (x,), (v,))
        np.testing.assert_allclose(hvp, num, rtol=1e-6, atol=1e-6)
        gg = grad(lambda x: total(arith.mul(g(x), v)))(x)
        np.testing.assert_allclose(gg, num, rtol=1e-6, atol=1e-6)
        check_jaxpr(make_jaxpr(g)(x))
        check_jaxpr(make_jaxpr(lambda x: jvp(g, (x,), (v,))[1])(x))


# --- reductions -----------------------------------------------------------------------------

REDUCE_CASES = [((), ()), ((5,), (0,)), ((3, 4), (1,)), ((3, 4), (0, 1)),
                ((2, 3, 4), (0, 2)), ((2, 3, 4), ())]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape,axes', REDUCE_CASES)
def test_reduce_values(shape, axes, dtype):
    x = rand(*shape, dtype=dtype)
    for fn, ref in ((R.reduce_max, np.max), (R.reduce_min, np.min), (R.reduce_prod, np.prod)):
        out = fn(x, axes)
        assert np.asarray(out).dtype == dtype
        np.testing.assert_allclose(out, ref(x, axis=axes), rtol=1e-6)
    # the same under make_jaxpr
    closed = make_jaxpr(lambda x: R.reduce_max(x, axes))(x)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == np.max(x, axis=axes).shape


def test_reduce_negative_axes_and_ints():
    x = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(R.reduce_max(x, (-1,)), x.max(-1))
    np.testing.assert_array_equal(R.reduce_min(x, (0, -2)), x.min((0, 1)))
    np.testing.assert_array_equal(R.reduce_prod(x + 1, (1,)), np.prod(x + 1, 1))
    assert R.reduce_max(x, (0,)).dtype == x.dtype


def test_reduce_empty():
    x = np.ones((0, 3))
    np.testing.assert_array_equal(R.reduce_max(x, (0,)), [-np.inf] * 3)
    np.testing.assert_array_equal(R.reduce_min(x, (0,)), [np.inf] * 3)
    np.testing.assert_array_equal(R.reduce_prod(x, (0,)), [1.0] * 3)
    _, t = jvp(lambda x: R.reduce_max(x, (0,)), (x,), (x,))
    np.testing.assert_array_equal(t, np.zeros(3))
    _, t = jvp(lambda x: R.reduce_prod(x, (0,)), (x,), (x,))
    np.testing.assert_array_equal(t, np.zeros(3))


@pytest.mark.parametrize('shape,axes', REDUCE_CASES)
def test_reduce_derivatives(shape, axes):
    x = rand(*shape)
    for fn in (R.reduce_max, R.reduce_min, R.reduce_prod):
        check_grads(lambda x: fn(x, axes), (x,), order=2)


def test_reduce_second_order():
    x = rand(3, 4)
    for fn in (R.reduce_max, R.reduce_min, R.reduce_prod):
        check_second_order(lambda x: fn(x, (1,)), x)


def test_reduce_max_ties_split_evenly():
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    t = np.array([[1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 3.0, 4.0]])
    out, tout = jvp(lambda x: R.reduce_max(x, (1,)), (x,), (t,))
    np.testing.assert_allclose(out, [3.0, 5.0])
    np.testing.assert_allclose(tout, [3.0, 2.5])
    g = grad(lambda x: total(R.reduce_max(x, (1,))))(x)
    np.testing.assert_allclose(g, [[0, 0.5, 0.5, 0], [0.25] * 4])
    g = grad(lambda x: total(R.reduce_min(x, (0,))))(np.array([[1.0, 2.0], [1.0, 0.0]]))
    np.testing.assert_allclose(g, [[0.5, 0.0], [0.5, 1.0]])
    assert not np.isnan(g).any()
    # the rule stages: jaxpr of the gradient at a tie typechecks
    check_jaxpr(make_jaxpr(grad(lambda x: total(R.reduce_max(x, (1,)))))(x))


def _prod_others(x):
    n = x.size
    return np.array([np.prod(np.delete(x, i)) for i in range(n)])


@pytest.mark.parametrize('x', [
    [2.0, 3.0, 5.0, 7.0, 11.0],
    [2.0, 0.0, 5.0, 7.0, 11.0],
    [0.0, 3.0, 5.0, 0.0, 11.0],
    [0.0, 0.0, 0.0],
    [4.0],
])
def test_reduce_prod_with_zeros(x):
    x = np.array(x)
    f = lambda x: R.reduce_prod(x, (0,))
    np.testing.assert_allclose(grad(f)(x), _prod_others(x))
    _, t = jvp(f, (x,), (np.ones_like(x),))
    np.testing.assert_allclose(t, _prod_others(x).sum())
    # exact Hessian: H_ij = prod of all but i and j (0 on the diagonal), zeros included
    n = x.size
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                H[i, j] = np.prod(np.delete(x, [i, j]))
    eye = np.eye(n)
    np.testing.assert_allclose([jvp(grad(f), (x,), (e,))[1] for e in eye], H)
    np.testing.assert_allclose(
        [[jvp(lambda x: jvp(f, (x,), (e1,))[1], (x,), (e2,))[1] for e2 in eye] for e1 in eye], H)


def test_reduce_prod_zeros_2d():
    x = np.array([[0.0, 2.0, 3.0], [1.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    g = grad(lambda x: total(R.reduce_prod(x, (1,))))(x)
    np.testing.assert_allclose(g, [[6, 0, 0], [0, 0, 0], [4, 4, 4]])
    g = grad(lambda x: total(R.reduce_prod(x, (0,))))(x)
    np.testing.assert_allclose(g, [[2, 0, 0], [0, 4, 6], [0, 0, 0]])


@pytest.mark.parametrize('dtype', DTYPES)
def test_argmax_argmin_values(dtype):
    for shape in [(5,), (3, 4), (2, 3, 4)]:
        x = rand(*shape, dtype=dtype)
        for axis in range(len(shape)):
            for fn, ref in ((R.argmax, np.argmax), (R.argmin, np.argmin)):
                out = fn(x, axis)
                assert out.dtype == np.int64
                np.testing.assert_array_equal(out, ref(x, axis=axis))
    x = np.array([[1.0, 5.0, 5.0, 0.0], [2.0, np.nan, 9.0, np.nan]], dtype=dtype)
    np.testing.assert_array_equal(R.argmax(x, 1), [1, 1])      # first max; first NaN wins
    np.testing.assert_array_equal(R.argmin(x, 1), [3, 1])
    np.testing.assert_array_equal(R.argmax(x, -1, np.int32), [1, 1])
    assert R.argmax(x, 1, np.int32).dtype == np.int32
    closed = make_jaxpr(lambda x: R.argmin(x, 0, np.int32))(x)
    check_jaxpr(closed)
    assert closed.out_avals[0].dtype == np.int32 and closed.out_avals[0].shape == (4,)


def test_argmax_zero_tangent_and_use_in_grad():
    x = rand(3, 4)
    _, t = jvp(lambda x: R.argmax(x, 1), (x,), (np.ones_like(x),))
    from tracer import float0
    assert t.shape == (3,) and t.dtype == float0

    def f(x):   # the row maxima picked by argmax, then summed
        idx = R.argmax(x, 1)
        ind = S.concatenate([S.expand_dims(np.arange(3), (1,)), S.expand_dims(idx, (1,))], 1)
        return total(L.gather(x, ind, (0, 1)))
    g = grad(f)(x)
    want = np.zeros_like(x)
    want[np.arange(3), x.argmax(1)] = 1
    np.testing.assert_array_equal(g, want)
    check_jaxpr(make_jaxpr(grad(f))(x))


@pytest.mark.parametrize('dtype', DTYPES + [np.int64])
def test_cumsum_values(dtype):
    for shape in [(6,), (3, 4), (2, 3, 4)]:
        x = (rand(*shape) * 10).astype(dtype)
        for axis in range(len(shape)):
            np.testing.assert_allclose(R.cumsum(x, axis), np.cumsum(x, axis), rtol=1e-6)
            rev = np.flip(np.cumsum(np.flip(x, axis), axis), axis)
            np.testing.assert_allclose(R.cumsum(x, axis, reverse=True), rev, rtol=1e-6)
            assert R.cumsum(x, axis).dtype == dtype
    np.testing.assert_allclose(R.cumsum(np.arange(4.0), -1), [0, 1, 3, 6])


def test_cumsum_derivatives():
    x = rand(3, 4)
    for axis in (0, 1):
        for reverse in (False, True):
            check_grads(lambda x: R.cumsum(x, axis, reverse), (x,), order=2)
    check_second_order(lambda x: R.cumsum(x, 1), x)
    # transpose of cumsum is the reverse cumsum
    ct = rand(3, 4)
    (t,) = linear_transpose(lambda x: R.cumsum(x, 1), x)(ct)
    np.testing.assert_allclose(t, np.flip(np.cumsum(np.flip(ct, 1), 1), 1))


def test_reduction_errors():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"reduce_max: axis 2 is out of range .*f64\[2,3\]"):
        make_jaxpr(lambda x: R.reduce_max(x, (2,)))(x)
    with pytest.raises(ValueError, match=r"reduce_max: axis 2 is out of range"):
        R.reduce_max(x, (2,))          # eager too
    with pytest.raises(ValueError, match=r"reduce_prod: repeated axis"):
        make_jaxpr(lambda x: R.reduce_prod(x, (0, 0)))(x)
    with pytest.raises(ValueError, match=r"argmax: cannot take argmax over axis 0 of size 0"):
        make_jaxpr(lambda x: R.argmax(x, 0))(np.ones((0, 2)))
    with pytest.raises(ValueError, match=r"argmin: axis 5 is out of range"):
        R.argmin(x, 5)
    with pytest.raises(TypeError, match=r"argmax/argmin: index_dtype must be an integer"):
        R.argmax(x, 0, np.float32)
    with pytest.raises(ValueError, match=r"cumsum: axis 0 is out of range .*0-d"):
        make_jaxpr(lambda x: R.cumsum(x, 0))(1.0)
    with pytest.raises(TypeError, match=r"cumsum: needs a numeric operand"):
        R.cumsum(np.ones(3, bool), 0)


# --- shape ops ----------------------------------------------------------------------------------

SHAPE_OP_CASES = [
    ('transpose', lambda x: S.transpose(x, (2, 0, 1)), lambda x: np.transpose(x, (2, 0, 1)),
     (2, 3, 4)),
    ('transpose2', lambda x: S.transpose(x, (1, 0)), lambda x: x.T, (3, 5)),
    ('squeeze', lambda x: S.squeeze(x, (0, 2)), lambda x: np.squeeze(x, (0, 2)), (1, 3, 1, 2)),
    ('squeeze-neg', lambda x: S.squeeze(x, (-1,)), lambda x: x[..., 0], (2, 1)),
    ('expand_dims', lambda x: S.expand_dims(x, (0, 3)), lambda x: x[None, :, :, None],
     (2, 3)),
    ('expand_dims-neg', lambda x: S.expand_dims(x, (-1,)), lambda x: x[..., None], (2, 3)),
    ('expand_dims-0d', lambda x: S.expand_dims(x, (0, 1)), lambda x: np.reshape(x, (1, 1)),
     ()),
    ('rev', lambda x: S.rev(x, (0, 2)), lambda x: np.flip(x, (0, 2)), (2, 3, 4)),
    ('rev-1d', lambda x: S.rev(x, (0,)), lambda x: x[::-1], (5,)),
    ('pad', lambda x: S.pad(x, 0.5, ((1, 2, 0), (0, 1, 2))),
     lambda x: _np_pad(x, 0.5, ((1, 2, 0), (0, 1, 2))), (2, 3)),
    ('pad-crop', lambda x: S.pad(x, -1.0, ((-1, 2, 1), (2, -2, 0))),
     lambda x: _np_pad(x, -1.0, ((-1, 2, 1), (2, -2, 0))), (4, 5)),
    ('pad-crop-interior', lambda x: S.pad(x, 0.0, ((-2, -1, 2),)),
     lambda x: _np_pad(x, 0.0, ((-2, -1, 2),)), (5,)),
    ('pad-0d', lambda x: S.pad(x, 1.0, ()), lambda x: x, ()),
]


def _np_pad(x, v, cfg):
    """Reference lax.pad: dilate, pad with non-negative amounts, then crop."""
    for d, (lo, hi, interior) in enumerate(cfg):
        n = x.shape[d]
        size = (n - 1) * (interior + 1) + 1 if n else 0
        shape = list(x.shape)
        shape[d] = size
        dil = np.full(shape, v, x.dtype)
        idx = [slice(None)] * x.ndim
        idx[d] = slice(None, None, interior + 1)
        dil[tuple(idx)] = x
        widths = [(0, 0)] * x.ndim
        widths[d] = (max(lo, 0), max(hi, 0))
        p = np.pad(dil, widths, constant_values=v)
        idx = [slice(None)] * x.ndim
        idx[d] = slice(max(-lo, 0), p.shape[d] - max(-hi, 0))
        x = p[tuple(idx)]
    return x


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('name,fn,ref,shape', SHAPE_OP_CASES, ids=[c[0] for c in SHAPE_OP_CASES])
def test_shape_op_values(name, fn, ref, shape, dtype):
    x = rand(*shape, dtype=dtype)
    out = fn(x)
    assert np.asarray(out).dtype == dtype
    np.testing.assert_array_equal(out, ref(x))
    closed = make_jaxpr(fn)(x)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == np.shape(ref(x))


@pytest.mark.parametrize('name,fn,ref,shape', SHAPE_OP_CASES, ids=[c[0] for c in SHAPE_OP_CASES])
def test_shape_op_derivatives(name, fn, ref, shape):
    x = rand(*shape)
    check_grads(fn, (x,), order=2)
    check_second_order(fn, x)


def test_pad_in_padding_value():
    x = rand(3, 4)
    cfg = ((1, -1, 1), (-2, 3, 2))
    f = lambda x, v: S.pad(x, v, cfg)
    v = np.float64(0.3)
    np.testing.assert_array_equal(f(x, v), _np_pad(x, 0.3, cfg))
    check_grads(f, (x, np.asarray(0.3)), order=2)
    check_second_order(f, x, np.asarray(0.3))
    # transpose: ct of the padding value = sum of ct over the padded positions
    ct = rand(*np.shape(f(x, v)))
    cx, cv = linear_transpose(f, x, v)(ct)
    mask = _np_pad(np.zeros_like(x), 1.0, cfg)
    np.testing.assert_allclose(cv, (ct * mask).sum())
    np.testing.assert_allclose(cx, vjp(lambda x: f(x, 0.0), x)[1](ct)[0])
    assert np.shape(cv) == ()
    # interior padding with an empty operand: all padding
    np.testing.assert_array_equal(S.pad(np.ones(0), 2.0, ((1, 1, 3),)), [2.0, 2.0])


@pytest.mark.parametrize('dtype', DTYPES)
def test_concatenate_values(dtype):
    a, b, c = rand(2, 3, dtype=dtype), rand(4, 3, dtype=dtype), rand(1, 3, dtype=dtype)
    np.testing.assert_array_equal(S.concatenate([a, b, c], 0), np.concatenate([a, b, c], 0))
    np.testing.assert_array_equal(S.concatenate([a.T, b.T], -1), np.concatenate([a.T, b.T], 1))
    assert S.concatenate([a], 0) is a
    out = S.concatenate([np.arange(3.0, dtype=dtype), np.zeros(0, dtype)], 0)
    np.testing.assert_array_equal(out, np.arange(3.0))
    closed = make_jaxpr(lambda a, b: S.concatenate([a, b, a], 0))(a, b)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == (8, 3)


def test_concatenate_derivatives():
    a, b, c = rand(2, 3), rand(4, 3), rand(2, 1)
    check_grads(lambda a, b: S.concatenate([a, b, a], 0), (a, b), order=2)
    check_grads(lambda a, c: S.concatenate([c, a], 1), (a, c), order=2)
    check_second_order(lambda a, b: S.concatenate([a, b], 0), a, b)
    # only some operands linear: the constant one gets no cotangent
    ct = rand(6, 3)
    (g,) = vjp(lambda b: S.concatenate([a, b], 0), b)[1](ct)
    np.testing.assert_array_equal(g, ct[2:])
    (ta, tb) = linear_transpose(lambda a, b: S.concatenate([b, a], 0), a, b)(ct)
    np.testing.assert_array_equal(ta, ct[4:])
    np.testing.assert_array_equal(tb, ct[:4])


def test_transpose_rule_and_identity():
    x = rand(2, 3, 4)
    assert S.transpose(x, (0, 1, 2)) is x
    ct = rand(4, 2, 3)
    (t,) = linear_transpose(lambda x: S.transpose(x, (2, 0, 1)), x)(ct)
    np.testing.assert_array_equal(t, np.transpose(ct, (1, 2, 0)))
    jaxpr = make_jaxpr(grad(lambda x: total(unary.sin(S.transpose(x, (2, 0, 1))))))(x)
    assert 'transpose[permutation=(1, 2, 0)]' in str(jaxpr)


def test_shape_op_errors():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"transpose: permutation \(0, 0\) is not a permutation"
                                         r".*f64\[2,3\]"):
        make_jaxpr(lambda x: S.transpose(x, (0, 0)))(x)
    with pytest.raises(ValueError, match=r"transpose: permutation"):
        S.transpose(x, (0, 1, 2))
    with pytest.raises(ValueError, match=r"squeeze: dimension 1 of operand f64\[2,3\] has "
                                         r"size 3, not 1"):
        S.squeeze(x, (1,))
    with pytest.raises(ValueError, match=r"expand_dims: dimensions \(0, 0\) are invalid"):
        S.expand_dims(x, (0, 0))
    with pytest.raises(ValueError, match=r"concatenate: operand shapes must agree except in "
                                         r"dimension 0, got f64\[2,3\], f64\[2,4\]"):
        make_jaxpr(lambda a, b: S.concatenate([a, b], 0))(x, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"concatenate: operand shapes must agree"):
        S.concatenate([x, np.ones((2, 4))], 0)
    with pytest.raises(TypeError, match=r"concatenate: operands must share one dtype"):
        S.concatenate([x, np.ones((2, 3), np.float32)], 0)
    with pytest.raises(ValueError, match=r"concatenate: 0-d operands"):
        S.concatenate([np.float64(1), np.float64(2)], 0)
    with pytest.raises(ValueError, match=r"pad: padding_config has 1 entries but operand "
                                         r"f64\[2,3\] has 2"):
        S.pad(x, 0.0, ((1, 1, 0),))
    with pytest.raises(ValueError, match=r"pad: padding \(-3, 0, 0\) crops dimension 0 .*"
                                         r"negative size"):
        make_jaxpr(lambda x: S.pad(x, 0.0, ((-3, 0, 0), (0, 0, 0))))(x)
    with pytest.raises(ValueError, match=r"pad: interior padding must be >= 0"):
        S.pad(x, 0.0, ((0, 0, -1), (0, 0, 0)))
    with pytest.raises(ValueError, match=r"rev: dimension 2 is out of range"):
        S.rev(x, (2,))


# --- dot_general --------------------------------------------------------------------------------

DOT_CASES = [
    # (lhs shape, rhs shape, ((lc, rc), (lb, rb)), einsum reference)
    ((3, 4), (4, 5), (((1,), (0,)), ((), ())), 'ij,jk->ik'),
    ((3, 4), (4,), (((1,), (0,)), ((), ())), 'ij,j->i'),
    ((4,), (4, 5), (((0,), (0,)), ((), ())), 'j,jk->k'),
    ((4,), (4,), (((0,), (0,)), ((), ())), 'j,j->'),
    ((3, 4), (5, 4), (((1,), (1,)), ((), ())), 'ij,kj->ik'),
    ((4, 3), (4, 5), (((0,), (0,)), ((), ())), 'ji,jk->ik'),
    ((4, 3), (5, 4), (((0,), (1,)), ((), ())), 'ji,kj->ik'),
    ((4, 3), (4,), (((0,), (0,)), ((), ())), 'ji,j->i'),
    ((2, 3, 4), (2, 4, 5), (((2,), (1,)), ((0,), (0,))), 'bij,bjk->bik'),
    ((3, 2, 4), (4, 5, 2), (((2,), (0,)), ((1,), (2,))), 'ibj,jkb->bik'),
    ((2, 3, 4, 5), (4, 2, 3, 6), (((2, 1), (0, 2)), ((0,), (1,))), 'bijl,jbim->blm'),
    ((2, 3, 4), (3, 2, 5), (((0, 1), (1, 0)), ((), ())), 'abk,bac->kc'),
    ((3, 4), (5,), (((), ()), ((), ())), 'ij,k->ijk'),
    ((), (3,), (((), ()), ((), ())), ',k->k'),
    ((2, 3), (3, 2), (((), ()), ((0, 1), (1, 0))), 'ab,ba->ab'),
    ((2, 3, 4), (2, 4), (((2,), (1,)), ((0,), (0,))), 'bij,bj->bi'),
]
DOT_IDS = [c[3] for c in DOT_CASES]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('xs,ys,dn,spec', DOT_CASES, ids=DOT_IDS)
def test_dot_general_values(xs, ys, dn, spec, dtype):
    x, y = rand(*xs, dtype=dtype), rand(*ys, dtype=dtype)
    out = D.dot_general(x, y, dn)
    want = np.einsum(spec, x.astype(np.float64), y.astype(np.float64))
    assert np.asarray(out).dtype == dtype and np.shape(out) == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    closed = make_jaxpr(lambda x, y: D.dot_general(x, y, dn))(x, y)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == want.shape


@pytest.mark.parametrize('xs,ys,dn,spec', DOT_CASES, ids=DOT_IDS)
def test_dot_general_derivatives(xs, ys, dn, spec):
    x, y = rand(*xs), rand(*ys)
    f = lambda x, y: D.dot_general(x, y, dn)
    check_grads(f, (x, y), order=2)
    # exact transposes against einsum
    ct = rand(*np.shape(f(x, y)))
    cx, cy = vjp(f, x, y)[1](ct)
    ins, out = spec.split('->')
    sx, sy = ins.split(',')
    np.testing.assert_allclose(cx, np.einsum(f'{out},{sy}->{sx}', ct, y), atol=1e-12)
    np.testing.assert_allclose(cy, np.einsum(f'{sx},{out}->{sy}', x, ct), atol=1e-12)


def test_dot_general_second_order():
    x, y = rand(2, 3, 4), rand(4, 2, 5)
    dn = (((2,), (0,)), ((0,), (1,)))
    check_second_order(lambda x, y: D.dot_general(x, y, dn), x, y)
    check_jaxpr(make_jaxpr(grad(lambda x, y: total(D.dot_general(x, y, dn)), (0, 1)))(x, y))


def test_dot_general_printing():
    a, b = np.ones(3), np.ones((2, 3))
    f = lambda a, b: total(unary.tanh(D.dot_general(b, a, (((1,), (0,)), ((), ())))))
    text = str(make_jaxpr(f)(a, b))
    assert text == ("{ lambda ; a:f64[3] b:f64[2,3]. let\n"
                    "    c:f64[2] = dot_general[dimension_numbers=(([1], [0]), ([], []))] b a\n"
                    "    d:f64[2] = tanh c\n"
                    "    e:f64[] = reduce_sum[axes=(0,)] d\n"
                    "  in (e,) }")
    eqn = make_jaxpr(lambda a, b: D.dot_general(b, a, (((1,), (0,)), ((), ()))))(a, b).eqns[0]
    assert set(eqn.params) == {'dimension_numbers'}


def test_dot_general_preferred_and_ints():
    x = rand(3, 4, dtype=np.float32)
    y = rand(4, 2, dtype=np.float32)
    dn = (((1,), (0,)), ((), ()))
    out = D.dot_general(x, y, dn, preferred_element_type=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, x.astype(np.float64) @ y.astype(np.float64), rtol=1e-12)
    g = grad(lambda x: total(D.dot_general(x, y, dn, preferred_element_type=np.float64)))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, np.tile(y.sum(1), (3, 1)), rtol=1e-6)
    closed = make_jaxpr(lambda x: D.dot_general(x, y, dn, np.float64))(x)
    assert 'preferred_element_type=float64' in str(closed)
    i, j = np.arange(6).reshape(2, 3), np.arange(3)
    np.testing.assert_array_equal(D.dot_general(i, j, dn), i @ j)
    assert D.dot_general(i, j, dn).dtype == np.int64


def test_dot_general_fast_paths_are_blas(monkeypatch):
    # the 2-D matmul / matrix-vector cases go to np.dot on the operands themselves
    import primitives.dot as dot_mod
    seen = []
    real_dot = np.dot

    class FakeNp:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def dot(a, b):
            seen.append((a, b))
            return real_dot(a, b)

    monkeypatch.setattr(dot_mod, 'np', FakeNp())
    x, y, v = rand(3, 4), rand(4, 5), rand(4)
    D.dot_general(x, y, (((1,), (0,)), ((), ())))
    D.dot_general(x, v, (((1,), (0,)), ((), ())))
    assert seen[0][0] is x and seen[0][1] is y
    assert seen[1][0] is x and seen[1][1] is v


def test_dot_general_errors():
    x, y = np.ones((2, 3)), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"dot_general of f64\[2,3\] and f64\[4,5\] with "
                                         r"dimension_numbers=\(\(\[1\], \[0\]\), \(\[\], \[\]\)\): "
                                         r"contracting dimensions have different sizes"):
        make_jaxpr(lambda x, y: D.dot_general(x, y, (((1,), (0,)), ((), ()))))(x, y)
    with pytest.raises(ValueError, match=r"contracting dimensions have different sizes"):
        D.dot_general(x, y, (((1,), (0,)), ((), ())))   # eager too
    with pytest.raises(ValueError, match=r"same number of contracting"):
        D.dot_general(x, y, (((1,), ()), ((), ())))
    with pytest.raises(ValueError, match=r"lhs dimension 2 is out of range"):
        D.dot_general(x, y, (((2,), (0,)), ((), ())))
    with pytest.raises(ValueError, match=r"batch dimensions have different sizes"):
        D.dot_general(x, y, (((), ()), ((0,), (0,))))
    with pytest.raises(TypeError, match=r"operands must have the same dtype"):
        D.dot_general(x, np.ones(3, np.float32), (((1,), (0,)), ((), ())))


# --- slicing ----------------------------------------------------------------------------------

SLICE_CASES = [
    ((10,), (2,), (7,), None),
    ((10,), (1,), (10,), (3,)),
    ((4, 5), (1, 0), (3, 5), None),
    ((4, 5), (0, 1), (4, 5), (2, 2)),
    ((3, 4, 5), (1, 1, 1), (2, 4, 5), (1, 2, 3)),
    ((5,), (2,), (2,), None),
    ((), (), (), None),
]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape,start,limit,strides', SLICE_CASES)
def test_slice_values(shape, start, limit, strides, dtype):
    x = rand(*shape, dtype=dtype)
    idx = tuple(slice(s, l, None if strides is None else st)
                for s, l, st in zip(start, limit, strides or [None] * len(shape)))
    out = L.slice(x, start, limit, strides)
    np.testing.assert_array_equal(out, x[idx])
    assert np.asarray(out).dtype == dtype
    closed = make_jaxpr(lambda x: L.slice(x, start, limit, strides))(x)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == x[idx].shape


@pytest.mark.parametrize('shape,start,limit,strides', SLICE_CASES)
def test_slice_derivatives(shape, start, limit, strides):
    x = rand(*shape)
    f = lambda x: L.slice(x, start, limit, strides)
    check_grads(f, (x,), order=2)
    check_second_order(f, x)
    # the transpose scatters into zeros (a single pad)
    ct = rand(*np.shape(f(x)))
    (t,) = linear_transpose(f, x)(ct)
    want = np.zeros_like(x)
    idx = tuple(slice(s, l, None if strides is None else st)
                for s, l, st in zip(start, limit, strides or [None] * len(shape)))
    want[idx] = ct
    np.testing.assert_array_equal(t, want)


@pytest.mark.parametrize('dtype', DTYPES)
def test_dynamic_slice_values(dtype):
    x = rand(5, 6, dtype=dtype)
    np.testing.assert_array_equal(L.dynamic_slice(x, (1, 2), (2, 3)), x[1:3, 2:5])
    # starts are clamped so the window fits (like JAX)
    np.testing.assert_array_equal(L.dynamic_slice(x, (4, -3), (2, 3)), x[3:5, 0:3])
    np.testing.assert_array_equal(L.dynamic_slice(x, (np.int32(9), 9), (5, 6)), x)
    np.testing.assert_array_equal(L.dynamic_slice(x, (0, 3), (0, 2)), x[0:0, 3:5])
    np.testing.assert_array_equal(L.dynamic_slice(np.float64(2.0), (), ()), 2.0)
    # traced starts
    closed = make_jaxpr(lambda x, i, j: L.dynamic_slice(x, (i, j), (2, 3)))(x, 1, 4)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == (2, 3)
    from tracer import eval_jaxpr
    (out,) = eval_jaxpr(closed.jaxpr, closed.consts, x, np.int64(1), np.int64(4))
    np.testing.assert_array_equal(out, x[1:3, 3:6])


@pytest.mark.parametrize('dtype', DTYPES)
def test_dynamic_update_slice_values(dtype):
    x, u = rand(5, 6, dtype=dtype), rand(2, 3, dtype=dtype)
    out = L.dynamic_update_slice(x, u, (1, 2))
    want = x.copy()
    want[1:3, 2:5] = u
    np.testing.assert_array_equal(out, want)
    xc = x.copy()
    out = L.dynamic_update_slice(x, u, (7, -1))     # clamped to (3, 0)
    want = x.copy()
    want[3:5, 0:3] = u
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(x, xc)             # input untouched
    closed = make_jaxpr(lambda x, u, i: L.dynamic_update_slice(x, u, (i, 0)))(x, u, 2)
    check_jaxpr(closed)


def test_dynamic_slice_derivatives():
    x = rand(5, 6)
    for starts in [(1, 2), (4, -3)]:
        f = lambda x: L.dynamic_slice(x, starts, (2, 3))
        check_grads(f, (x,), order=2)
        check_second_order(f, x)
    # traced start indices inside grad: jaxpr of grad with the index as an argument
    g = grad(lambda x, i: total(unary.sin(L.dynamic_slice(x, (i, 1), (2, 2)))))
    closed = make_jaxpr(g)(x, 2)
    check_jaxpr(closed)
    want = np.zeros_like(x)
    want[2:4, 1:3] = np.cos(x[2:4, 1:3])
    np.testing.assert_allclose(g(x, 2), want)


def test_dynamic_update_slice_derivatives():
    x, u = rand(5, 6), rand(2, 3)
    for starts in [(1, 2), (7, -1)]:
        f = lambda x, u: L.dynamic_update_slice(x, u, starts)
        check_grads(f, (x, u), order=2)
        check_second_order(f, x, u)
    ct = rand(5, 6)
    cx, cu = vjp(lambda x, u: L.dynamic_update_slice(x, u, (1, 2)), x, u)[1](ct)
    want = ct.copy()
    want[1:3, 2:5] = 0
    np.testing.assert_array_equal(cx, want)
    np.testing.assert_array_equal(cu, ct[1:3, 2:5])
    # only the update linear
    (cu2,) = vjp(lambda u: L.dynamic_update_slice(x, u, (1, 2)), u)[1](ct)
    np.testing.assert_array_equal(cu2, ct[1:3, 2:5])


GATHER_CASES = [
    ((6,), np.array([[4], [0], [4], [5]]), (0,)),
    ((6, 3), np.array([[4], [0], [4]]), (0,)),
    ((3, 6), np.array([[[5], [1]], [[0], [5]]]), (1,)),
    ((4, 3, 5), np.array([[3, 4], [0, 0], [3, 4]]), (0, 2)),
    ((4, 3, 5), np.array([[4, 3], [0, 2]]), (2, 0)),
    ((4, 3), np.array([2, 1]), (0, 1)),
    ((4, 3), np.zeros((2, 0), np.int64), ()),
    ((2, 3, 4), np.array([[1, 2, 3], [1, 2, 3]], np.int32), (0, 1, 2)),
]


def _gather_ref(x, idx, axes):
    rest = [d for d in range(x.ndim) if d not in axes]
    xt = np.transpose(x, tuple(axes) + tuple(rest))
    b = idx.shape[:-1]
    out = np.empty(b + xt.shape[len(axes):], x.dtype)
    for bi in np.ndindex(*b):
        out[bi] = xt[tuple(idx[bi])]
    return out


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape,idx,axes', GATHER_CASES)
def test_gather_values(shape, idx, axes, dtype):
    x = rand(*shape, dtype=dtype)
    out = L.gather(x, idx, axes)
    np.testing.assert_array_equal(out, _gather_ref(x, idx, axes))
    assert np.asarray(out).dtype == dtype
    closed = make_jaxpr(lambda x: L.gather(x, idx, axes))(x)
    check_jaxpr(closed)
    assert closed.out_avals[0].shape == _gather_ref(x, idx, axes).shape


def _scatter_ref(x, idx, u, axes):
    out = x.copy()
    rest = [d for d in range(x.ndim) if d not in axes]
    perm = tuple(axes) + tuple(rest)
    ot = np.transpose(out, perm)            # a view: writes land in out
    for bi in np.ndindex(*idx.shape[:-1]):
        ot[tuple(idx[bi])] += u[bi]
    return out


@pytest.mark.parametrize('dtype', DTYPES + [np.int64, np.int32])
@pytest.mark.parametrize('shape,idx,axes', GATHER_CASES)
def test_scatter_add_values(shape, idx, axes, dtype):
    x = (rand(*shape) * 10).astype(dtype)
    u = (rand(*_gather_ref(x, idx, axes).shape) * 10).astype(dtype)
    xc = x.copy()
    out = L.scatter_add(x, idx, u, axes)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, _scatter_ref(x, idx, u, axes), rtol=1e-6)
    np.testing.assert_array_equal(x, xc)
    closed = make_jaxpr(lambda x, u: L.scatter_add(x, idx, u, axes))(x, u)
    check_jaxpr(closed)


def test_scatter_add_matches_add_at():
    x = rand(100, 8)
    idx = rng.integers(0, 100, size=(1000, 1))
    u = rand(1000, 8)
    want = x.copy()
    np.add.at(want, idx[:, 0], u)
    np.testing.assert_allclose(L.scatter_add(x, idx, u, (0,)), want, rtol=1e-12)


@pytest.mark.parametrize('shape,idx,axes', GATHER_CASES)
def test_gather_scatter_derivatives(shape, idx, axes):
    x = rand(*shape)
    f = lambda x: L.gather(x, idx, axes)
    check_grads(f, (x,), order=2)
    check_second_order(f, x)
    u = rand(*np.shape(f(x)))
    g = lambda x, u: L.scatter_add(x, idx, u, axes)
    check_grads(g, (x, u), order=2)
    check_second_order(g, x, u)
    # transposes: gather -> scatter_add into zeros (repeated indices accumulate)
    (t,) = linear_transpose(f, x)(u)
    np.testing.assert_allclose(t, _scatter_ref(np.zeros_like(x), idx, u, axes))
    ct = rand(*shape)
    cx, cu = vjp(g, x, u)[1](ct)
    np.testing.assert_array_equal(cx, ct)
    np.testing.assert_array_equal(cu, _gather_ref(ct, idx, axes))


def test_slicing_errors():
    x = np.ones((4, 5))
    with pytest.raises(ValueError, match=r"slice: dimension 1 of operand f64\[4,5\] cannot be "
                                         r"sliced from 2 to 7"):
        L.slice(x, (0, 2), (4, 7))
    with pytest.raises(ValueError, match=r"slice: operand f64\[4,5\] has rank 2"):
        make_jaxpr(lambda x: L.slice(x, (0,), (4,)))(x)
    with pytest.raises(ValueError, match=r"slice: strides must be >= 1"):
        L.slice(x, (0, 0), (4, 5), (0, 1))
    with pytest.raises(ValueError, match=r"dynamic_slice: slice size 6 in dimension 1 does not "
                                         r"fit operand f64\[4,5\]"):
        L.dynamic_slice(x, (0, 0), (2, 6))
    with pytest.raises(ValueError, match=r"dynamic_slice: operand f64\[4,5\] has rank 2, but "
                                         r"got 1 start"):
        make_jaxpr(lambda x: L.dynamic_slice(x, (0,), (2, 2)))(x)
    with pytest.raises(TypeError, match=r"dynamic_slice: start index 0 must be a scalar "
                                        r"integer, got f64\[\]"):
        make_jaxpr(lambda x, i: L.dynamic_slice(x, (i, 0), (2, 2)))(x, 1.0)
    with pytest.raises(ValueError, match=r"dynamic_update_slice of operand f64\[4,5\] with "
                                         r"update f64\[5,1\]: the update is larger"):
        L.dynamic_update_slice(x, np.ones((5, 1)), (0, 0))
    with pytest.raises(ValueError, match=r"gather of operand f64\[4,5\] with indices "
                                         r"i64\[3,2\] and axes=\(0,\): indices must have shape"):
        L.gather(x, np.zeros((3, 2), np.int64), (0,))
    with pytest.raises(TypeError, match=r"gather .*: indices must be integers"):
        make_jaxpr(lambda x: L.gather(x, np.zeros((3, 1)), (0,)))(x)
    with pytest.raises(ValueError, match=r"axes must be distinct dimensions"):
        L.gather(x, np.zeros((3, 1), np.int64), (2,))
    with pytest.raises(ValueError, match=r"scatter_add: updates f64\[3,4\] must have shape "
                                         r"\(3, 5\)"):
        L.scatter_add(x, np.zeros((3, 1), np.int64), np.ones((3, 4)), (0,))
    with pytest.raises(TypeError, match=r"scatter_add: updates f32\[3,5\] must have the "
                                        r"operand's dtype"):
        L.scatter_add(x, np.zeros((3, 1), np.int64), np.ones((3, 5), np.float32), (0,))
    with pytest.raises(IndexError, match=r"scatter_add: index out of range"):
        L.scatter_add(x, np.array([[4]]), np.ones((1, 5)), (0,))
    with pytest.raises(IndexError, match=r"scatter_add: index out of range"):
        L.scatter_add(x, np.array([[0, 5]]), np.ones((1,)), (0, 1))
    with pytest.raises(IndexError):
        L.gather(x, np.array([[4]]), (0,))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_integer_pow_by_squaring_matches_numpy_power(dtype):
    # exponents 4..16 run as repeated squaring (as JAX lowers integer_pow), not np.power
    from primitives import lax
    rng = np.random.default_rng(3)
    x = (rng.uniform(0.5, 1.5, 500) * rng.choice([-1, 1], 500)).astype(dtype)
    x0 = x.copy()
    for y in (4, 5, 7, 8, 11, 16, -4, -7, -16):
        got = lax.integer_pow(x, y)
        want = np.power(x, dtype(y))
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(x, x0)          # the operand is not modified
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, 1e-30], dtype)
    with np.errstate(all='ignore'):
        for y in (5, 6, -5, -6):
            got, want = lax.integer_pow(special, y), np.power(special, dtype(y))
            np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
