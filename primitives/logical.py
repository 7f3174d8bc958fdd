"""Comparisons (eq ne lt le gt ge), bitwise/logical and/or/not, and select_n
(the primitive behind `where`). Comparisons and logic carry no derivative: their
tangents are symbolic zeros."""
import numpy as np

from tracer import Primitive, Zero, is_undefined, ShapedArray
from ._base import (binary, unary, defjvp_zero, elementwise_aval, unbroadcast, shape_of,
                    dtype_of, zero_like_out, instantiate_zero, broadcast_shapes, _fmt)
from .arith import coerce

_BOOL = np.dtype(bool)


def _cmp(name, fn):
    p = binary(name, fn, allowed=None, out_dtype=_BOOL)
    defjvp_zero(p)
    return p


eq_p = _cmp('eq', np.equal)
ne_p = _cmp('ne', np.not_equal)
lt_p = _cmp('lt', np.less)
le_p = _cmp('le', np.less_equal)
gt_p = _cmp('gt', np.greater)
ge_p = _cmp('ge', np.greater_equal)

and_p = binary('and', np.bitwise_and, allowed='iub')
or_p = binary('or', np.bitwise_or, allowed='iub')
xor_p = binary('xor', np.bitwise_xor, allowed='iub')
not_p = unary('not', np.invert, allowed='iub')
for _p in (and_p, or_p, xor_p, not_p):
    defjvp_zero(_p)


def _binfn(p):
    def f(x, y):
        return p.bind(coerce(x, y), coerce(y, x))
    f.__name__ = p.name
    return f


eq, ne, lt, le, gt, ge = map(_binfn, (eq_p, ne_p, lt_p, le_p, gt_p, ge_p))
bitwise_and, bitwise_or, bitwise_xor = map(_binfn, (and_p, or_p, xor_p))


def bitwise_not(x):
    return not_p.bind(x)


# --- select_n ------------------------------------------------------------------------

def _select_n_impl(which, *cases):
    if len(cases) == 1:
        return np.broadcast_to(cases[0], np.broadcast_shapes(np.shape(which), np.shape(cases[0])))
    if len(cases) == 2:
        return np.where(which, cases[1], cases[0])
    return np.choose(which, cases)


def _select_n_abstract(which, *cases):
    if not cases:
        raise TypeError("select_n needs at least one case")
    if which.dtype != _BOOL and which.dtype.kind not in 'iu':
        raise TypeError(f"select_n: the selector must be boolean or integer, got "
                        f"{which.str_short()}")
    if which.dtype == _BOOL and len(cases) > 2:
        raise TypeError(f"select_n: a boolean selector picks between 2 cases, got {len(cases)}")
    case = elementwise_aval('select_n', list(cases))
    shape = broadcast_shapes('select_n', [which, case])
    return ShapedArray(shape, case.dtype, case.weak_type)


select_n_p = Primitive('select_n')
select_n_p.impl = _select_n_impl
select_n_p.abstract_eval = _select_n_abstract


def _select_n_jvp(primals, tangents):
    which, *cases = primals
    out = select_n_p.bind(*primals)
    ts = tangents[1:]
    if all(type(t) is Zero for t in ts):
        return out, zero_like_out(out)
    zero = np.zeros((), dtype_of(out))
    ts = [zero if type(t) is Zero else t for t in ts]   # scalar zeros broadcast, never materialised
    t = select_n_p.bind(which, *ts)
    if shape_of(t) != shape_of(out):
        from ._base import broadcast_to_shape
        t = broadcast_to_shape(t, shape_of(out))
    return out, t


def _select_n_transpose(ct, which, *cases):
    assert not is_undefined(which), "select_n is not linear in its selector"
    zero = np.zeros((), dtype_of(ct))
    out = [None]
    for i, c in enumerate(cases):
        if is_undefined(c):
            branches = [zero] * len(cases)
            branches[i] = ct
            out.append(unbroadcast(select_n_p.bind(which, *branches), c.aval))
        else:
            out.append(None)
    return out


select_n_p.jvp = _select_n_jvp
select_n_p.transpose = _select_n_transpose


def select_n(which, *cases):
    """cases[which], elementwise (`which` boolean picks cases[1] where True)."""
    if len(cases) >= 2:
        ref = next((c for c in cases if type(c) not in (int, float, bool, complex)), cases[0])
        cases = [coerce(c, ref) for c in cases]
    return select_n_p.bind(which, *cases)


# --- batching rules ---
from ._batching import elementwise as _bew  # noqa: E402

# select_n broadcasts its selector and cases like NumPy: elementwise too
for _p in (eq_p, ne_p, lt_p, le_p, gt_p, ge_p, and_p, or_p, xor_p, not_p, select_n_p):
    _p.batch = _bew(_p)
del _p

# --- numba lowering ---
from ._lowering import Elementwise as _EW  # noqa: E402


def _lw_op(op):
    return _EW(lambda ctx, a, avals, out: f'({a[0]} {op} {a[1]})')


for _p, _op in ((eq_p, '=='), (ne_p, '!='), (lt_p, '<'), (le_p, '<='), (gt_p, '>'),
                (ge_p, '>='), (and_p, '&'), (or_p, '|'), (xor_p, '^')):
    _p.lowering = _lw_op(_op)
not_p.lowering = _EW(lambda ctx, a, avals, out: (
    f'(not {a[0]})' if out.dtype.kind == 'b' else f'(~{a[0]})'))


def _lw_select_n(ctx, a, avals, out):
    which, cases = a[0], a[1:]
    if len(cases) == 1:
        return cases[0]
    if avals[0].dtype.kind == 'b':
        return f'({cases[1]} if {which} else {cases[0]})'
    expr = cases[-1]
    for i in range(len(cases) - 2, -1, -1):
        expr = f'({cases[i]} if {which} == {i} else {expr})'
    return expr


select_n_p.lowering = _EW(_lw_select_n)

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
from . import _basis as _SB  # noqa: E402


def _select_n_basis(args, dims):
    """select_n(which, *cases) with an unbatched selector fitting the basis' shape and
    cases that are bases of one leaf or concrete zeros (relu's and where's tangents
    and cotangents): a Basis whose scale selects among the cases' scales."""
    which, *cases = args
    if dims[0] is not None:
        return None
    b = next(c for c in cases if type(c) is _SB.Basis)
    if not _SB.fits(which, b.shape):
        return None
    scales = []
    for c, d in zip(cases, dims[1:]):
        if type(c) is _SB.Basis:
            if not b.same_rows(c):
                return None
            scales.append(_SB.scale_of(c))
        elif d is None and _SB.is_zero_const(c) and _SB.fits(c, b.shape):
            scales.append(np.zeros((), b.dtype))
        else:
            return None
    d = select_n_p.bind(which, *scales)
    return b.like(_SB.to_shape(d, b.shape)), 0


_SB.register(select_n_p, _select_n_basis)
