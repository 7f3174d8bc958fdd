"""Every primitive's batching rule against a Python loop over the batch.

Each case is a function of a few operands built from one primitive (the lax
function that binds it). For several in_axes (0, -1, 1, None for some operands)
and out_axes (0, -1, 1), float32 and float64, vmap's result must equal stacking
the function's results on each batch element; the jaxpr of the vmapped function
must typecheck and evaluate to the same values.
"""
import itertools

import numpy as np
import pytest

from tracer import make_jaxpr, check_jaxpr, eval_jaxpr, Primitive
from transforms import vmap
from primitives import lax
import primitives
from primitives import (arith, unary, trig, logical, convert, reductions, dot, shape_ops,
                        slicing)

B = 3
rng = np.random.default_rng(7)


def gen(spec, dtype, lead=()):
    """A random operand: spec = (shape, kind)."""
    shape, kind = spec
    shape = tuple(lead) + tuple(shape)
    if kind == 'f':
        return rng.standard_normal(shape).astype(dtype)
    if kind == 'pos':
        return rng.uniform(0.5, 2.0, shape).astype(dtype)
    if kind == 'unit':
        return rng.uniform(-0.9, 0.9, shape).astype(dtype)
    if kind == 'gt1':
        return rng.uniform(1.1, 3.0, shape).astype(dtype)
    if kind == 'bool':
        return rng.uniform(size=shape) < 0.5
    if kind == 'int':
        return rng.integers(-5, 6, shape).astype(np.int64)
    if kind.startswith('idx'):
        return rng.integers(0, int(kind[3:]), shape).astype(np.int64)
    if kind.startswith('start'):   # dynamic start indices, some out of range (clamped)
        return rng.integers(-1, int(kind[5:]) + 2, shape).astype(np.int64)
    if kind.startswith('sel'):
        return rng.integers(0, int(kind[3:]), shape).astype(np.int32)
    raise ValueError(kind)


F, POS, UNIT = 'f', 'pos', 'unit'

# name -> (function, operand specs)
CASES = {
    # elementwise, one operand
    'neg': (lax.neg, [((3, 4), F)]),
    'sign': (lax.sign, [((3, 4), F)]),
    'abs': (lax.abs, [((3, 4), F)]),
    'exp': (lax.exp, [((3, 4), F)]),
    'log': (lax.log, [((3, 4), POS)]),
    'log1p': (lax.log1p, [((3, 4), POS)]),
    'expm1': (lax.expm1, [((3, 4), F)]),
    'sin': (lax.sin, [((3, 4), F)]),
    'cos': (lax.cos, [((3, 4), F)]),
    'sincos': (unary.sincos, [((3, 4), F)]),
    'tan': (lax.tan, [((3, 4), UNIT)]),
    'tanh': (lax.tanh, [((3, 4), F)]),
    'logistic': (lax.logistic, [((3, 4), F)]),
    'sqrt': (lax.sqrt, [((3, 4), POS)]),
    'rsqrt': (lax.rsqrt, [((3, 4), POS)]),
    'erf': (lax.erf, [((3, 4), F)]),
    'floor': (lax.floor, [((3, 4), F)]),
    'ceil': (lax.ceil, [((3, 4), F)]),
    'round': (lax.round, [((3, 4), F)]),
    'sinh': (lax.sinh, [((3, 4), F)]),
    'cosh': (lax.cosh, [((3, 4), F)]),
    'asinh': (lax.asinh, [((3, 4), F)]),
    'acosh': (lax.acosh, [((3, 4), 'gt1')]),
    'atanh': (lax.atanh, [((3, 4), UNIT)]),
    'asin': (lax.asin, [((3, 4), UNIT)]),
    'acos': (lax.acos, [((3, 4), UNIT)]),
    'atan': (lax.atan, [((3, 4), F)]),
    'cbrt': (lax.cbrt, [((3, 4), F)]),
    'integer_pow': (lambda x: lax.integer_pow(x, 3), [((3, 4), F)]),
    'convert_element_type': (lambda x: lax.convert_element_type(x, np.int32), [((3, 4), F)]),
    'convert_to_f64': (lambda x: lax.convert_element_type(x, np.float64), [((3, 4), F)]),
    'stop_gradient': (lax.stop_gradient, [((3, 4), F)]),
    'not': (lax.bitwise_not, [((3, 4), 'bool')]),
    # elementwise, several operands, with broadcasting of unbatched ones
    'add': (lax.add, [((3, 4), F), ((3, 4), F)]),
    'add_row': (lax.add, [((3, 4), F), ((4,), F)]),
    'add_col': (lax.add, [((3, 1), F), ((3, 4), F)]),
    'add_scalar': (lambda x: lax.add(x, 2.0), [((3, 4), F)]),
    'add_0d': (lax.add, [((), F), ((3, 4), F)]),
    'sub': (lax.sub, [((3, 4), F), ((4,), F)]),
    'mul': (lax.mul, [((2, 3, 4), F), ((3, 1), F)]),
    'div': (lax.div, [((3, 4), F), ((3, 4), POS)]),
    'pow': (lax.pow, [((3, 4), POS), ((3, 4), F)]),
    'max': (lax.max, [((3, 4), F), ((3, 4), F)]),
    'min': (lax.min, [((4,), F), ((3, 4), F)]),
    'atan2': (lax.atan2, [((3, 4), F), ((3, 4), F)]),
    'rem': (lax.rem, [((3, 4), F), ((3, 4), POS)]),
    'safe_mul': (arith.safe_mul, [((3, 4), F), ((3, 4), F)]),
    'add_any': (lambda a, b, c: arith.add_any_p.bind(a, b, c, coeffs=(1.0, -2.0, 0.5)),
                [((3, 4), F), ((3, 4), F), ((3, 4), F)]),
    'add_any_plain': (lambda a, b: arith.add_any_p.bind(a, b), [((3, 4), F), ((3, 4), F)]),
    'add_products': (lambda a, b, c, d: arith.add_products_p.bind(a, b, c, d),
                     [((3, 4), F), ((3, 4), F), ((4,), F), ((3, 4), F)]),
    'eq': (lambda x, y: lax.eq(lax.round(x), lax.round(y)), [((3, 4), F), ((3, 4), F)]),
    'ne': (lambda x, y: lax.ne(lax.round(x), lax.round(y)), [((3, 4), F), ((4,), F)]),
    'lt': (lax.lt, [((3, 4), F), ((3, 4), F)]),
    'le': (lax.le, [((3, 4), F), ((3, 4), F)]),
    'gt': (lax.gt, [((3, 4), F), ((3, 4), F)]),
    'ge': (lax.ge, [((3, 4), F), ((3, 4), F)]),
    'and': (lax.bitwise_and, [((3, 4), 'bool'), ((3, 4), 'bool')]),
    'or': (lax.bitwise_or, [((3, 4), 'int'), ((3, 4), 'int')]),
    'xor': (lax.bitwise_xor, [((3, 4), 'bool'), ((4,), 'bool')]),
    'select_n': (lax.select_n, [((3, 4), 'bool'), ((3, 4), F), ((3, 4), F)]),
    'select_n_bcast': (lax.select_n, [((3, 4), 'bool'), ((4,), F), ((3, 4), F)]),
    'select_n_3': (lax.select_n, [((3, 4), 'sel3'), ((3, 4), F), ((3, 4), F), ((3, 4), F)]),
    'iota': (lambda x: lax.add(x, lax.convert_element_type(lax.iota(np.int64, 4), x.dtype)),
             [((3, 4), F)]),
    # reductions
    'reduce_sum': (lambda x: lax.reduce_sum(x, (1,)), [((3, 4), F)]),
    'reduce_sum_all': (lambda x: lax.reduce_sum(x, (0, 1)), [((3, 4), F)]),
    'reduce_max': (lambda x: lax.reduce_max(x, (0,)), [((3, 4), F)]),
    'reduce_min': (lambda x: lax.reduce_min(x, (0, 2)), [((2, 3, 4), F)]),
    'reduce_prod': (lambda x: lax.reduce_prod(x, (1,)), [((3, 4), F)]),
    'argmax': (lambda x: lax.argmax(x, 1), [((3, 4), F)]),
    'argmin': (lambda x: lax.argmin(x, 0, np.int32), [((3, 4), F)]),
    'cumsum': (lambda x: lax.cumsum(x, 1), [((3, 4), F)]),
    'cumsum_rev': (lambda x: lax.cumsum(x, 0, reverse=True), [((3, 4), F)]),
    # dot_general
    'matmul': (lambda x, y: lax.dot_general(x, y, (((1,), (0,)), ((), ()))),
               [((3, 4), F), ((4, 5), F)]),
    'matvec': (lambda x, y: lax.dot_general(x, y, (((1,), (0,)), ((), ()))),
               [((3, 4), F), ((4,), F)]),
    'vecmat': (lambda x, y: lax.dot_general(x, y, (((0,), (0,)), ((), ()))),
               [((4,), F), ((4, 3), F)]),
    'vdot': (lambda x, y: lax.dot_general(x, y, (((0,), (0,)), ((), ()))),
             [((4,), F), ((4,), F)]),
    'outer': (lambda x, y: lax.dot_general(x, y, (((), ()), ((), ()))),
              [((3,), F), ((4,), F)]),
    'dot_tn': (lambda x, y: lax.dot_general(x, y, (((0,), (0,)), ((), ()))),
               [((4, 3), F), ((4, 5), F)]),
    'dot_batch': (lambda x, y: lax.dot_general(x, y, (((2,), (1,)), ((0,), (0,)))),
                  [((2, 3, 4), F), ((2, 4, 5), F)]),
    'dot_batch_odd': (lambda x, y: lax.dot_general(x, y, (((0,), (2,)), ((2,), (0,)))),
                      [((4, 3, 2), F), ((2, 5, 4), F)]),
    'dot_two_contract': (lambda x, y: lax.dot_general(x, y, (((0, 2), (1, 0)), ((), ()))),
                         [((2, 3, 4), F), ((4, 2, 5), F)]),
    # shape ops
    'broadcast_in_dim': (lambda x: lax.broadcast_in_dim(x, (2, 3, 4), (1, 2)), [((3, 4), F)]),
    'broadcast_in_dim_mid': (lambda x: lax.broadcast_in_dim(x, (3, 2, 4), (0, 2)),
                             [((3, 4), F)]),
    'broadcast_in_dim_unit': (lambda x: lax.broadcast_in_dim(x, (3, 4), (0, 1)),
                              [((3, 1), F)]),
    'reshape': (lambda x: lax.reshape(x, (12,)), [((3, 4), F)]),
    'reshape_2': (lambda x: lax.reshape(x, (2, 2, 3)), [((3, 4), F)]),
    'transpose': (lambda x: lax.transpose(x, (2, 0, 1)), [((2, 3, 4), F)]),
    'squeeze': (lambda x: lax.squeeze(x, (1,)), [((3, 1, 4), F)]),
    'expand_dims': (lambda x: lax.expand_dims(x, (0, 2)), [((3, 4), F)]),
    'concatenate': (lambda x, y, z: lax.concatenate([x, y, z], 0),
                    [((3, 4), F), ((2, 4), F), ((1, 4), F)]),
    'concatenate_1': (lambda x, y: lax.concatenate([x, y], 1), [((3, 4), F), ((3, 2), F)]),
    'pad': (lambda x: lax.pad(x, 0.5, ((1, 2, 0), (0, 1, 1))), [((3, 4), F)]),
    'pad_neg': (lambda x: lax.pad(x, -1.0, ((-1, 2, 1), (1, -2, 0))), [((3, 4), F)]),
    'pad_value': (lambda x, v: lax.pad(x, v, ((1, 1, 1), (2, 0, 0))), [((3, 4), F), ((), F)]),
    'rev': (lambda x: lax.rev(x, (0,)), [((3, 4), F)]),
    'rev_2': (lambda x: lax.rev(x, (0, 1)), [((3, 4), F)]),
    # slicing and indexing
    'slice': (lambda x: lax.slice(x, (1, 0), (3, 4), (1, 2)), [((3, 4), F)]),
    'slice_plain': (lambda x: lax.slice(x, (0, 1), (2, 3)), [((3, 4), F)]),
    'dynamic_slice': (lambda x, i, j: lax.dynamic_slice(x, (i, j), (2, 3)),
                      [((4, 5), F), ((), 'start4'), ((), 'start5')]),
    'dynamic_update_slice': (lambda x, u, i, j: lax.dynamic_update_slice(x, u, (i, j)),
                             [((4, 5), F), ((2, 3), F), ((), 'start4'), ((), 'start5')]),
    'gather': (lambda x, i: lax.gather(x, i, (0,)), [((4, 3), F), ((5, 1), 'idx4')]),
    'gather_1': (lambda x, i: lax.gather(x, i, (1,)), [((4, 3), F), ((2, 2, 1), 'idx3')]),
    'gather_2': (lambda x, i: lax.gather(x, i, (0, 2)), [((4, 3, 2), F), ((5, 2), 'idx2')]),
    'scatter_add': (lambda x, i, u: lax.scatter_add(x, i, u, (0,)),
                    [((4, 3), F), ((5, 1), 'idx4'), ((5, 3), F)]),
    'scatter_add_1': (lambda x, i, u: lax.scatter_add(x, i, u, (1,)),
                      [((4, 3), F), ((2, 1), 'idx3'), ((2, 4), F)]),
    'scatter_add_2': (lambda x, i, u: lax.scatter_add(x, i, u, (0, 2)),
                      [((4, 3, 2), F), ((5, 2), 'idx2'), ((5, 3), F)]),
}


def all_primitives():
    seen = set()
    for mod in (arith, unary, trig, logical, convert, reductions, dot, shape_ops, slicing):
        for v in vars(mod).values():
            if isinstance(v, Primitive):
                seen.add(v)
    return seen


def test_every_primitive_has_a_batching_rule():
    missing = sorted(p.name for p in all_primitives() if p.batch is None)
    assert not missing, f"primitives without a batching rule: {missing}"


def test_every_primitive_is_exercised():
    used = set()
    for name, (fn, specs) in CASES.items():
        args = [gen(s, np.float64) for s in specs]
        jaxpr = make_jaxpr(vmap(fn))(*[np.stack([a] * 2) for a in args])
        used |= {e.primitive.name for e in jaxpr.jaxpr.eqns}
        used |= {e.primitive.name for e in make_jaxpr(fn)(*args).jaxpr.eqns}
    names = {p.name for p in all_primitives()}
    missing = names - used
    assert not missing, f"primitives without a batching test: {sorted(missing)}"


def take(x, i, axis):
    return np.take(x, i, axis=axis)


def insert_batch(x, axis):
    """x (batch leading) with its batch axis moved to `axis`."""
    return np.moveaxis(x, 0, axis)


def axes_options(specs):
    """in_axes combinations: all at 0, all at -1, all at 1 (where rank allows),
    and each operand in turn unbatched (others at 0), and mixed positions."""
    n = len(specs)
    ranks = [len(s[0]) for s in specs]
    opts = [(0,) * n, (-1,) * n]
    opts.append(tuple(1 if r >= 1 else 0 for r in ranks))
    if n > 1:
        for i in range(n):
            opts.append(tuple(None if j == i else 0 for j in range(n)))
        opts.append(tuple((j % (r + 1)) for j, r in enumerate(ranks)))
        opts.append(tuple(-1 if j % 2 else None for j in range(n - 1)) + (0,))
    out = []
    for o in opts:
        if any(a is not None for a in o) and o not in out:
            out.append(o)
    return out


def loop_reference(fn, args, in_axes, out_axes):
    outs = []
    for i in range(B):
        outs.append(fn(*[a if ax is None else take(a, i, ax) for a, ax in zip(args, in_axes)]))
    if isinstance(outs[0], (list, tuple)):
        return [np.stack([np.asarray(o[k]) for o in outs], axis=out_axes)
                for k in range(len(outs[0]))]
    return np.stack([np.asarray(o) for o in outs], axis=out_axes)


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def check_case(fn, specs, dtype):
    base = [gen(s, dtype, lead=(B,)) for s in specs]
    for in_axes in axes_options(specs):
        args = []
        for a, ax, s in zip(base, in_axes, specs):
            if ax is None:
                args.append(a[0])
            else:
                r = len(s[0]) + 1
                args.append(insert_batch(a, ax % r))
        for out_axes in (0, -1):
            want = loop_reference(fn, args, in_axes, out_axes)
            f = vmap(fn, in_axes=in_axes, out_axes=out_axes)
            got = f(*args)
            what = f"in_axes={in_axes} out_axes={out_axes}"
            if isinstance(want, list):
                assert len(got) == len(want)
                pairs = list(zip(got, want))
            else:
                pairs = [(got, want)]
            for g, w in pairs:
                assert np.shape(g) == w.shape, what
                assert np.asarray(g).dtype == w.dtype, what
                np.testing.assert_allclose(g, w, err_msg=what, **tol(dtype))
            closed = make_jaxpr(f)(*args)
            check_jaxpr(closed)
            staged = eval_jaxpr(closed.jaxpr, closed.consts, *args)
            for s, (g, _) in zip(staged, pairs):
                np.testing.assert_allclose(s, g, err_msg=what + ' (staged)', **tol(dtype))


@pytest.mark.parametrize('dtype', [np.float32, np.float64], ids=['f32', 'f64'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_batching_rule_matches_loop(name, dtype):
    fn, specs = CASES[name]
    check_case(fn, specs, dtype)


def test_out_axes_positive_middle():
    x = rng.standard_normal((B, 3, 4))
    got = vmap(lambda v: lax.tanh(v), out_axes=1)(x)
    np.testing.assert_allclose(got, np.moveaxis(np.tanh(x), 0, 1))
    got = vmap(lambda v: lax.reduce_sum(v, (0,)), in_axes=2, out_axes=1)(
        np.moveaxis(x, 0, 2))
    np.testing.assert_allclose(got, x.sum(1).T)
