"""Reductions: reduce_sum, reduce_max, reduce_min, reduce_prod, argmax, argmin and
cumsum. Each primitive sits beside its shape rule and derivative rules.

Axes are static tuples of non-negative ints (the user functions normalise them).
"""
import math

import numpy as np

from tracer.core import ONES
from ._kernels import KERNEL_MIN, row_extreme_mask

from tracer import Primitive, ShapedArray, Zero, get_aval
from ._base import deflinear, defjvp2, defjvp_zero, shape_of, dtype_of, zero_like_out


def _check_axes(name, aval, axes):
    for a in axes:
        if not 0 <= a < len(aval.shape):
            raise ValueError(f"{name}: axis {a} is out of range for operand {aval.str_short()} "
                             f"(valid axes are 0..{len(aval.shape) - 1}). Fix: pass axes "
                             f"within the operand's rank.")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}: repeated axis in axes={axes} for operand "
                         f"{aval.str_short()}. Fix: list each axis once.")


def _reduce_aval(name, aval, axes):
    shape = aval.shape
    if len(axes) == 1:
        # one axis (the hot case: a sum over rows or columns): the checks below
        # reduce to a range check
        a = axes[0]
        if type(a) is int and 0 <= a < len(shape):
            return ShapedArray(shape[:a] + shape[a + 1:], aval.dtype, aval.weak_type)
    _check_axes(name, aval, axes)
    shape = tuple(d for i, d in enumerate(aval.shape) if i not in axes)
    return ShapedArray(shape, aval.dtype, aval.weak_type)


def _norm_axes(x, axes):
    nd = len(x.shape) if type(x) is np.ndarray else len(shape_of(x))
    if type(axes) is tuple and len(axes) == 1:
        a = axes[0]
        if type(a) is int and 0 <= a < nd:
            return axes         # already normalised (the hot case)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    out = []
    for a in axes:
        a = int(a)
        if -nd <= a < 0:
            a += nd
        out.append(a)
    return tuple(sorted(out))


def _kept(ndim, axes):
    return tuple(i for i in range(ndim) if i not in axes)


# --- reduce_sum ------------------------------------------------------------------------

def _reduce_sum_impl(x, axes):
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    return np.add.reduce(x, axis=axes, dtype=x.dtype)


reduce_sum_p = Primitive('reduce_sum')
reduce_sum_p.impl = _reduce_sum_impl
reduce_sum_p.abstract_eval = lambda a, axes: _reduce_aval('reduce_sum', a, axes)


# functions of modules importing this one, bound on first use (an import inside a
# rule costs a microsecond per call)
_lazy = None


def _bind_lazy():
    global _lazy
    from .shape_ops import broadcast_in_dim
    from .logical import eq
    from .convert import convert_element_type
    from .arith import mul, div, max as max_
    _lazy = (broadcast_in_dim, eq, convert_element_type, mul, div, max_)
    return _lazy


def _reduce_sum_transpose(ct, x, axes):
    shape = x.aval.shape
    if type(ct) is np.ndarray:
        # eager reverse mode: broadcast_in_dim's implementation, without its bind
        # (small, a copy: the view's values, and cheaper to build)
        kept = ct.reshape(tuple(1 if i in axes else d for i, d in enumerate(shape)))
        if _prod(shape) < _COPY_MAX:
            out = np.empty(shape, ct.dtype)
            out[...] = kept
            out.flags.writeable = False     # (read-only, as the view would be)
            return [out]
        return [np.broadcast_to(kept, shape)]
    broadcast_in_dim = (_lazy or _bind_lazy())[0]
    return [broadcast_in_dim(ct, shape, _kept(len(shape), axes))]


_COPY_MAX = KERNEL_MIN     # elements: below, a copy is cheaper to build than a view
_prod = math.prod
deflinear(reduce_sum_p, _reduce_sum_transpose)
reduce_sum_p.ones_transpose = lambda x, axes: [ONES]   # a broadcast of ones is ones


def reduce_sum(x, axes):
    return reduce_sum_p.bind(x, axes=_norm_axes(x, axes))


# --- reduce_max, reduce_min ------------------------------------------------------------

def _identity(dtype, for_max):
    """The value an empty max/min reduction yields (like JAX: -inf / +inf, or the
    integer type's extreme)."""
    if dtype.kind == 'f':
        return dtype.type(-np.inf if for_max else np.inf)
    if dtype.kind in 'iu':
        info = np.iinfo(dtype)
        return dtype.type(info.min if for_max else info.max)
    if dtype.kind == 'b':
        return not for_max
    raise TypeError(f"reduce_{'max' if for_max else 'min'}: unsupported dtype {dtype}")


def _make_minmax_impl(ufunc, for_max):
    def impl(x, axes):
        x = np.asarray(x)
        if x.size == 0 or any(x.shape[a] == 0 for a in axes):
            return ufunc.reduce(x, axis=axes, initial=_identity(x.dtype, for_max))
        return ufunc.reduce(x, axis=axes)
    return impl


def _minmax_abstract(name):
    def rule(a, axes):
        if a.dtype.kind == 'c':
            raise TypeError(f"{name}: complex operand {a.str_short()} has no ordering. "
                            f"Fix: reduce the real part or the absolute value.")
        return _reduce_aval(name, a, axes)
    return rule


def _minmax_jvp(g, ans, x, axes):
    # The tangent at the extreme positions, averaged over ties (JAX's choice): built
    # from primitives only, so the rule itself differentiates and stages.
    if type(x) is np.ndarray and (type(ans) is np.ndarray or isinstance(ans, np.generic)):
        return _minmax_jvp_concrete(g, ans, x, axes)
    return _minmax_jvp_general(g, ans, x, axes)


def _minmax_jvp_general(g, ans, x, axes):
    broadcast_in_dim, eq, convert_element_type, mul, div, max_ = _lazy or _bind_lazy()
    shape = shape_of(x)
    dt = dtype_of(g)
    at = convert_element_type(eq(x, broadcast_in_dim(ans, shape, _kept(len(shape), axes))), dt)
    count = reduce_sum(at, axes)
    if any(shape[a] == 0 for a in axes):
        count = max_(count, dt.type(1))   # empty reduction: tangent 0, not 0/0
    return div(reduce_sum(mul(g, at), axes), count)


def _minmax_jvp_concrete(g, ans, x, axes):
    """_minmax_jvp on concrete primals (eager linearization and eager jvp): the
    mask of extreme positions and its counts are computed in NumPy (they are
    constants of the tangent map), so only the tangent's product, sum and (with
    ties, NaN or empty reductions) division are bound. The same numbers as the
    general rule: the mask and counts are its eq / convert / reduce_sum in NumPy,
    and where every count is 1 its division by the count is exact, so it is left
    out."""
    mul, div = (_lazy or _bind_lazy())[3:5]
    dt = dtype_of(g)
    shape = x.shape
    at, count = _extreme_mask(x, ans, axes, dt)
    if at.size and count.size and bool((count == 1).all()):
        return reduce_sum(mul(g, at), axes)
    if any(shape[a] == 0 for a in axes):
        count = np.maximum(count, dt.type(1))   # empty reduction: tangent 0, not 0/0
    return div(reduce_sum(mul(g, at), axes), count)


def _extreme_mask(x, ans, axes, dt):
    """(mask, counts) for a max/min `ans` of array `x` over `axes`: 1 (of dtype
    `dt`) where x attains it, and how many times each output does."""
    kept_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    at = np.equal(x, ans.reshape(kept_shape) if type(ans) is np.ndarray else
                  np.reshape(ans, kept_shape)).astype(dt)
    count = np.add.reduce(at, axis=axes, dtype=dt)
    if type(count) is not np.ndarray:
        count = np.asarray(count)
    return at, count


def minmax_lin(primitive, x, axes):
    """Eager linearization of reduce_max / reduce_min on a non-empty floating array
    `x` where every output is attained once (no ties, no NaN): (out, mask), the
    tangent map being reduce_sum(t * mask, axes) -- the equations _minmax_jvp
    stages there. None otherwise (the JVP rule handles ties and empty axes)."""
    if x.size == 0:
        return None
    if len(axes) == 1 and axes[0] == x.ndim - 1 == 1:
        # rows of a matrix (a classifier's logits): one pass (_kernels.row_extreme_mask)
        res = row_extreme_mask(x, primitive is reduce_max_p)
        if res is not None:
            return res
    out = _REDUCE_UFUNC[primitive].reduce(x, axis=axes)    # the impl (x not empty)
    at, count = _extreme_mask(x, out, axes, x.dtype)
    if not count.size or not np.logical_and.reduce(np.equal(count, 1), axis=None):
        return None
    return out, at


reduce_max_p = Primitive('reduce_max')
reduce_max_p.impl = _make_minmax_impl(np.maximum, True)
reduce_max_p.abstract_eval = _minmax_abstract('reduce_max')
defjvp2(reduce_max_p, _minmax_jvp)

reduce_min_p = Primitive('reduce_min')
reduce_min_p.impl = _make_minmax_impl(np.minimum, False)
reduce_min_p.abstract_eval = _minmax_abstract('reduce_min')
defjvp2(reduce_min_p, _minmax_jvp)


_REDUCE_UFUNC = {reduce_max_p: np.maximum, reduce_min_p: np.minimum}


def reduce_max(x, axes):
    """Maximum over `axes` (empty reductions give -inf / the integer minimum)."""
    return reduce_max_p.bind(x, axes=_norm_axes(x, axes))


def reduce_min(x, axes):
    """Minimum over `axes` (empty reductions give +inf / the integer maximum)."""
    return reduce_min_p.bind(x, axes=_norm_axes(x, axes))


# --- reduce_prod -------------------------------------------------------------------------

def _reduce_prod_impl(x, axes):
    x = np.asarray(x)
    return np.multiply.reduce(x, axis=axes, dtype=x.dtype)


reduce_prod_p = Primitive('reduce_prod')
reduce_prod_p.impl = _reduce_prod_impl
reduce_prod_p.abstract_eval = lambda a, axes: _reduce_aval('reduce_prod', a, axes)


def _reduce_prod_jvp(primals, tangents, axes):
    # The tangent is sum_i g_i * prod_{j != i} x_j. Dividing the product by x_i fails
    # at zeros, and "where"-tricks with a count of zeros give wrong second
    # derivatives there. Instead the product is taken as a balanced tree of pairwise
    # multiplications (log2(n) levels, O(n) total work), with the product rule
    # applied at each level: everything is mul/add/slice/pad/reshape, so the rule
    # is exact with any number of zeros and differentiates correctly to any order.
    from .shape_ops import transpose, reshape, pad
    from .slicing import slice as slice_
    from .arith import mul, add
    (x,), (g,) = primals, tangents
    out = reduce_prod_p.bind(x, axes=axes)
    if type(g) is Zero:
        return out, zero_like_out(out)
    shape = shape_of(x)
    kept = _kept(len(shape), axes)
    n = 1
    for a in axes:
        n *= shape[a]
    m = 1
    for a in kept:
        m *= shape[a]
    out_shape = tuple(shape[a] for a in kept)
    if n == 0:
        return out, zero_like_out(out)
    perm = tuple(axes) + kept
    xs, gs = transpose(x, perm), transpose(g, perm)
    xs, gs = reshape(xs, (n, m)), reshape(gs, (n, m))
    dt = dtype_of(x)
    one, zero = dt.type(1), dt.type(0)
    while n > 1:
        if n % 2:
            xs = pad(xs, one, ((0, 1, 0), (0, 0, 0)))
            gs = pad(gs, zero, ((0, 1, 0), (0, 0, 0)))
            n += 1
        h = n // 2
        xa, xb = slice_(xs, (0, 0), (h, m)), slice_(xs, (h, 0), (n, m))
        ga, gb = slice_(gs, (0, 0), (h, m)), slice_(gs, (h, 0), (n, m))
        xs = mul(xa, xb)
        gs = add(mul(ga, xb), mul(xa, gb))
        n = h
    return out, reshape(gs, out_shape)


reduce_prod_p.jvp = _reduce_prod_jvp


def reduce_prod(x, axes):
    return reduce_prod_p.bind(x, axes=_norm_axes(x, axes))


# --- argmax, argmin ----------------------------------------------------------------------

def _arg_abstract(name):
    def rule(a, axes, index_dtype):
        if len(axes) != 1:
            raise ValueError(f"{name}: exactly one axis is supported, got axes={axes}")
        _check_axes(name, a, axes)
        if a.shape[axes[0]] == 0:
            raise ValueError(f"{name}: cannot take {name} over axis {axes[0]} of size 0 "
                             f"(operand {a.str_short()}): an empty sequence has no extreme.")
        if a.dtype.kind == 'c':
            raise TypeError(f"{name}: complex operand {a.str_short()} has no ordering.")
        if np.dtype(index_dtype).kind not in 'iu':
            raise TypeError(f"{name}: index_dtype must be an integer dtype, got "
                            f"{np.dtype(index_dtype).name}")
        shape = tuple(d for i, d in enumerate(a.shape) if i != axes[0])
        return ShapedArray(shape, index_dtype)
    return rule


def _make_arg_impl(np_fn):
    # NumPy's argmax/argmin return the first occurrence, and the first NaN if any.
    def impl(x, axes, index_dtype):
        out = np_fn(x, axis=axes[0])
        if out.dtype != index_dtype:
            out = out.astype(index_dtype)
        return out
    return impl


argmax_p = Primitive('argmax')
argmax_p.impl = _make_arg_impl(np.argmax)
argmax_p.abstract_eval = _arg_abstract('argmax')
defjvp_zero(argmax_p)

argmin_p = Primitive('argmin')
argmin_p.impl = _make_arg_impl(np.argmin)
argmin_p.abstract_eval = _arg_abstract('argmin')
defjvp_zero(argmin_p)


def _arg_params(x, axis, index_dtype):
    nd = len(shape_of(x))
    axis = int(axis)
    if -nd <= axis < 0:
        axis += nd
    index_dtype = np.dtype(index_dtype)
    if index_dtype.kind not in 'iu':
        raise TypeError(f"argmax/argmin: index_dtype must be an integer dtype, got "
                        f"{index_dtype.name}")
    return dict(axes=(axis,), index_dtype=index_dtype)


def argmax(x, axis, index_dtype=np.int64):
    """Index of the (first) maximum along `axis`; NaN counts as the maximum."""
    return argmax_p.bind(x, **_arg_params(x, axis, index_dtype))


def argmin(x, axis, index_dtype=np.int64):
    """Index of the (first) minimum along `axis`; NaN counts as the minimum."""
    return argmin_p.bind(x, **_arg_params(x, axis, index_dtype))


# --- cumsum -------------------------------------------------------------------------------

def _cumsum_impl(x, axis, reverse):
    x = np.asarray(x)
    if x.dtype.kind not in 'fciu':
        _cumsum_abstract(get_aval(x), axis, reverse)
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
    return np.cumsum(x, axis=axis, dtype=x.dtype)


def _cumsum_abstract(a, axis, reverse):
    if not 0 <= axis < len(a.shape):
        raise ValueError(f"cumsum: axis {axis} is out of range for operand {a.str_short()}"
                         + (" (a 0-d operand has no axis; reshape it to 1-d first)"
                            if not a.shape else ""))
    if a.dtype.kind not in 'fciu':
        raise TypeError(f"cumsum: needs a numeric operand, got {a.str_short()}. Fix: "
                        f"convert booleans with convert_element_type(x, int).")
    return a


cumsum_p = Primitive('cumsum')
cumsum_p.impl = _cumsum_impl
cumsum_p.abstract_eval = _cumsum_abstract
# y_i = sum_{j<=i} x_j, so x_j's cotangent is sum_{i>=j} ct_i: the reverse cumsum.
deflinear(cumsum_p, lambda ct, x, axis, reverse: [
    cumsum_p.bind(ct, axis=axis, reverse=not reverse)])


def cumsum(x, axis, reverse=False):
    """Inclusive cumulative sum along `axis` (from the end when reverse=True)."""
    nd = len(shape_of(x))
    axis = int(axis)
    if -nd <= axis < 0:
        axis += nd
    return cumsum_p.bind(x, axis=axis, reverse=bool(reverse))


# --- batching rules ---
from ._batching import reduction as _bred  # noqa: E402

for _p in (reduce_sum_p, reduce_max_p, reduce_min_p, reduce_prod_p, argmax_p, argmin_p):
    _p.batch = _bred(_p)
del _p


def _cumsum_batch(args, dims, axis, reverse):
    (x,), (d,) = args, dims
    return cumsum_p.bind(x, axis=axis + 1 if axis >= d else axis, reverse=reverse), d


cumsum_p.batch = _cumsum_batch

# --- numba lowering ---
# Reductions are fused by the code generator into the loop producing their
# operand; argmax/argmin and cumsum write their own loops.
from ._lowering import Reduce as _Reduce, Structural as _Structural  # noqa: E402

reduce_sum_p.lowering = _Reduce('sum')
reduce_max_p.lowering = _Reduce('max')
reduce_min_p.lowering = _Reduce('min')
reduce_prod_p.lowering = _Reduce('prod')


def _lw_arg(better):
    def rule(ctx, ins, out_avals, axes, index_dtype):
        x = ins[0]
        out = out_avals[0]
        ax = axes[0]
        shape = x.aval.shape
        n = shape[ax]
        flt = x.aval.dtype.kind == 'f'
        res = ctx.fresh('arg')
        if out.shape:
            ctx.emit(f'{res} = {ctx.empty(out.shape, out.dtype)}')
        with ctx.loops(out.shape) as oi:
            def at(j):
                ix = list(oi)
                ix.insert(ax, j)
                return f"{x.expr}[{', '.join(ix)}]"
            best, bi, j, v = ctx.fresh('b'), ctx.fresh('bi'), ctx.fresh('k'), ctx.fresh('x')
            ctx.emit(f'{best} = {at("0")}')
            ctx.emit(f'{bi} = 0')
            ctx.emit(f'for {j} in range(1, {n}):')
            ctx.emit(f'    {v} = {at(j)}')
            if flt:   # the first NaN wins, as in NumPy
                ctx.emit(f'    if {best} == {best} and ({v} {better} {best} or {v} != {v}):')
            else:
                ctx.emit(f'    if {v} {better} {best}:')
            ctx.emit(f'        {best} = {v}')
            ctx.emit(f'        {bi} = {j}')
            if out.shape:
                ctx.emit(f"{res}[{', '.join(oi)}] = {bi}")
            else:
                ctx.emit(f'{res} = {ctx.cast(bi, out.dtype)}')
        return [res]
    return _Structural(rule)


def _np_dt(dt):
    return 'np.bool_' if dt.kind == 'b' else f'np.{dt.name}'


argmax_p.lowering = _lw_arg('>')
argmin_p.lowering = _lw_arg('<')


def _lw_cumsum(ctx, ins, out_avals, axis, reverse):
    x = ins[0]
    out = out_avals[0]
    shape = out.shape
    n = shape[axis]
    res = ctx.fresh('cs')
    ctx.emit(f'{res} = {ctx.empty(shape, out.dtype)}')
    rest = tuple(s for d, s in enumerate(shape) if d != axis)
    with ctx.loops(rest) as oi:
        acc, j = ctx.fresh('acc'), ctx.fresh('k')
        ix = list(oi)
        ix.insert(axis, j)
        ix = ', '.join(ix)
        ctx.emit(f'{acc} = {ctx.lit(0, out.dtype)}')
        rng = f'range({n} - 1, -1, -1)' if reverse else f'range({n})'
        ctx.emit(f'for {j} in {rng}:')
        ctx.emit(f'    {acc} = {ctx.cast(f"{acc} + {x.expr}[{ix}]", out.dtype)}')
        ctx.emit(f'    {res}[{ix}] = {acc}')
    return [res]


cumsum_p.lowering = _Structural(_lw_cumsum)

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
from . import _basis as _SB  # noqa: E402


def _reduce_sum_basis(args, dims, axes):
    """Summing every per-example axis of a basis leaves each slice's one scale:
    the dense batch of scalars d (padded with the other leaves' zero slices)."""
    b, = args
    if sorted(axes) != list(range(len(b.shape))):
        return None
    from .shape_ops import reshape
    k = b.size
    d = np.ones((k,), b.dtype) if b.d is None else reshape(b.d, (k,))
    return _SB.rows(d, 0, b), 0


_SB.register(reduce_sum_p, _reduce_sum_basis)
