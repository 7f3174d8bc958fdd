"""Slicing and indexing primitives: slice (static), dynamic_slice and
dynamic_update_slice (traced start indices), gather and scatter_add (integer index
arrays). All are linear in their array operands; index operands get no tangent.

gather/scatter_add index convention: `indices` has shape B + (len(axes),); entry
indices[b..., k] indexes operand dimension axes[k]. The gathered (or scattered)
slab has shape B + (operand dims not in `axes`, in order).
"""
import builtins

import numba
import numpy as np

from tracer import Primitive, ShapedArray, Zero, get_aval, is_undefined
from ._base import dtype_of, shape_of, zero_like_out
from .shape_ops import broadcast_in_dim, pad, _inverse_perm

_slice = builtins.slice


def _zeros(shape, dtype):
    """Zeros as a broadcast scalar: one cheap equation when traced, a read-only
    view (no allocation) when eager."""
    return broadcast_in_dim(np.zeros((), dtype), tuple(shape), ())


def _check_index_scalars(name, avals):
    for i, a in enumerate(avals):
        if a.shape != () or a.dtype.kind not in 'iu':
            raise TypeError(f"{name}: start index {i} must be a scalar integer, got "
                            f"{a.str_short()}. Fix: pass one integer per dimension.")


# --- slice ------------------------------------------------------------------------------------

def _slice_out_dim(start, limit, stride):
    return builtins.max(0, (limit - start + stride - 1) // stride)


def _slice_abstract(a, start_indices, limit_indices, strides):
    nd = len(a.shape)
    if len(start_indices) != nd or len(limit_indices) != nd or (
            strides is not None and len(strides) != nd):
        raise ValueError(f"slice: operand {a.str_short()} has rank {nd}, but got "
                         f"start_indices={start_indices}, limit_indices={limit_indices}, "
                         f"strides={strides}. Fix: give one entry per dimension.")
    shape = []
    for d in range(nd):
        s, l, st = start_indices[d], limit_indices[d], 1 if strides is None else strides[d]
        if not 0 <= s <= l <= a.shape[d]:
            raise ValueError(f"slice: dimension {d} of operand {a.str_short()} cannot be "
                             f"sliced from {s} to {l}; need 0 <= start <= limit <= "
                             f"{a.shape[d]}.")
        if st < 1:
            raise ValueError(f"slice: strides must be >= 1, got {strides}")
        shape.append(_slice_out_dim(s, l, st))
    return ShapedArray(tuple(shape), a.dtype, a.weak_type)


def _slice_impl(x, start_indices, limit_indices, strides):
    x = np.asarray(x)
    if strides is None:
        idx = tuple(map(_slice, start_indices, limit_indices))
    else:
        idx = tuple(map(_slice, start_indices, limit_indices, strides))
    if len(idx) != x.ndim or builtins.any(
            not 0 <= i.start <= i.stop <= n for i, n in zip(idx, x.shape)):
        _slice_abstract(get_aval(x), start_indices, limit_indices, strides)
    return x[idx]


def _slice_transpose(ct, x, start_indices, limit_indices, strides):
    # zeros around (and, with strides, between) the slice: one pad
    shape = x.aval.shape
    out = shape_of(ct)
    cfg = []
    for d in range(len(shape)):
        st = 1 if strides is None else strides[d]
        lo = start_indices[d]
        used = (out[d] - 1) * st + 1 if out[d] else 0
        cfg.append((lo, shape[d] - lo - used, st - 1))
    return [pad(ct, dtype_of(ct).type(0), cfg)]


slice_p = Primitive('slice')
slice_p.impl = _slice_impl
slice_p.abstract_eval = _slice_abstract


def _slice_jvp(primals, tangents, **params):
    out = slice_p.bind(primals[0], **params)
    t = tangents[0]
    if type(t) is Zero:
        return out, zero_like_out(out)
    return out, slice_p.bind(t, **params)


slice_p.jvp = _slice_jvp
slice_p.transpose = _slice_transpose


def slice(x, start_indices, limit_indices, strides=None):
    """lax.slice: x[start:limit:stride] per dimension, with static bounds."""
    start_indices = tuple(int(i) for i in start_indices)
    limit_indices = tuple(int(i) for i in limit_indices)
    if strides is not None:
        strides = tuple(int(s) for s in strides)
        if builtins.all(s == 1 for s in strides):
            strides = None
    if (strides is None and limit_indices == shape_of(x)
            and not builtins.any(start_indices)):
        return x    # the whole array
    return slice_p.bind(x, start_indices=start_indices, limit_indices=limit_indices,
                        strides=strides)


# --- dynamic_slice --------------------------------------------------------------------------

def _clamped_starts(starts, shape, sizes):
    # like JAX: each start is clamped so the whole window lies inside the operand
    return [builtins.min(builtins.max(int(s), 0), n - k) for s, n, k in zip(starts, shape, sizes)]


def _dynamic_slice_abstract(a, *starts, slice_sizes):
    nd = len(a.shape)
    if len(starts) != nd or len(slice_sizes) != nd:
        raise ValueError(f"dynamic_slice: operand {a.str_short()} has rank {nd}, but got "
                         f"{len(starts)} start indices and slice_sizes={slice_sizes}. Fix: "
                         f"give one start and one size per dimension.")
    _check_index_scalars('dynamic_slice', starts)
    for d, (k, n) in enumerate(zip(slice_sizes, a.shape)):
        if not 0 <= k <= n:
            raise ValueError(f"dynamic_slice: slice size {k} in dimension {d} does not fit "
                             f"operand {a.str_short()} (need 0 <= size <= {n}).")
    return ShapedArray(tuple(slice_sizes), a.dtype, a.weak_type)


def _dynamic_slice_impl(x, *starts, slice_sizes):
    x = np.asarray(x)
    if len(starts) != x.ndim or len(slice_sizes) != x.ndim or builtins.any(
            not 0 <= k <= n for k, n in zip(slice_sizes, x.shape)):
        _dynamic_slice_abstract(get_aval(x), *[get_aval(s) for s in starts],
                                slice_sizes=slice_sizes)
    starts = _clamped_starts(starts, x.shape, slice_sizes)
    return x[tuple(_slice(s, s + k) for s, k in zip(starts, slice_sizes))]


dynamic_slice_p = Primitive('dynamic_slice')
dynamic_slice_p.impl = _dynamic_slice_impl
dynamic_slice_p.abstract_eval = _dynamic_slice_abstract


def _dynamic_slice_jvp(primals, tangents, slice_sizes):
    x, *starts = primals
    out = dynamic_slice_p.bind(x, *starts, slice_sizes=slice_sizes)
    t = tangents[0]
    if type(t) is Zero:
        return out, zero_like_out(out)
    return out, dynamic_slice_p.bind(t, *starts, slice_sizes=slice_sizes)


def _dynamic_slice_transpose(ct, x, *starts, slice_sizes):
    assert is_undefined(x) and not builtins.any(is_undefined(s) for s in starts)
    zeros = _zeros(x.aval.shape, x.aval.dtype)
    return [dynamic_update_slice_p.bind(zeros, ct, *starts)] + [None] * len(starts)


dynamic_slice_p.jvp = _dynamic_slice_jvp
dynamic_slice_p.transpose = _dynamic_slice_transpose


def dynamic_slice(x, start_indices, slice_sizes):
    """lax.dynamic_slice: the window of shape `slice_sizes` at `start_indices` (scalar
    ints, possibly traced), each start clamped so the window fits."""
    slice_sizes = tuple(int(k) for k in slice_sizes)
    return dynamic_slice_p.bind(x, *start_indices, slice_sizes=slice_sizes)


# --- dynamic_update_slice -----------------------------------------------------------------------

def _dus_abstract(a, u, *starts):
    nd = len(a.shape)
    def desc():   # built only when an error is raised
        return f"dynamic_update_slice of operand {a.str_short()} with update {u.str_short()}"
    if len(u.shape) != nd or len(starts) != nd:
        raise ValueError(f"{desc()}: the update must have the operand's rank and one start "
                         f"index per dimension (got {len(starts)}).")
    if builtins.any(k > n for k, n in zip(u.shape, a.shape)):
        raise ValueError(f"{desc()}: the update is larger than the operand. Fix: slice the "
                         f"update first.")
    if u.dtype != a.dtype:
        raise TypeError(f"{desc()}: the update must have the operand's dtype. Fix: convert it.")
    _check_index_scalars('dynamic_update_slice', starts)
    return ShapedArray(a.shape, a.dtype, a.weak_type)


def _dus_impl(x, u, *starts):
    x, u = np.asarray(x), np.asarray(u)
    if u.ndim != x.ndim or len(starts) != x.ndim or builtins.any(
            k > n for k, n in zip(u.shape, x.shape)) or u.dtype != x.dtype:
        _dus_abstract(get_aval(x), get_aval(u), *[get_aval(s) for s in starts])
    starts = _clamped_starts(starts, x.shape, u.shape)
    out = np.array(x)            # never mutate the input
    out[tuple(_slice(s, s + k) for s, k in zip(starts, u.shape))] = u
    return out


dynamic_update_slice_p = Primitive('dynamic_update_slice')
dynamic_update_slice_p.impl = _dus_impl
dynamic_update_slice_p.abstract_eval = _dus_abstract


def _dus_jvp(primals, tangents):
    x, u, *starts = primals
    tx, tu = tangents[0], tangents[1]
    out = dynamic_update_slice_p.bind(x, u, *starts)
    if type(tx) is Zero and type(tu) is Zero:
        return out, zero_like_out(out)
    if type(tx) is Zero:
        tx = _zeros(tx.aval.shape, tx.aval.dtype)
    if type(tu) is Zero:
        tu = _zeros(tu.aval.shape, tu.aval.dtype)
    return out, dynamic_update_slice_p.bind(tx, tu, *starts)


def _dus_transpose(ct, x, u, *starts):
    # out = x outside the window, u inside it (window position clamped, as in the
    # forward pass): x gets ct with the window zeroed, u gets the window of ct.
    assert not builtins.any(is_undefined(s) for s in starts)
    u_shape = u.aval.shape if is_undefined(u) else shape_of(u)
    ct_x = ct_u = None
    if is_undefined(x):
        ct_x = dynamic_update_slice_p.bind(ct, _zeros(u_shape, dtype_of(ct)), *starts)
    if is_undefined(u):
        ct_u = dynamic_slice_p.bind(ct, *starts, slice_sizes=tuple(u_shape))
    return [ct_x, ct_u] + [None] * len(starts)


dynamic_update_slice_p.jvp = _dus_jvp
dynamic_update_slice_p.transpose = _dus_transpose


def dynamic_update_slice(x, update, start_indices):
    """lax.dynamic_update_slice: x with the window at `start_indices` (clamped so the
    update fits) replaced by `update`. Returns a new array."""
    from .arith import coerce
    return dynamic_update_slice_p.bind(x, coerce(update, x), *start_indices)


# --- gather -----------------------------------------------------------------------------------

def _gather_out_shape(name, a, idx, axes):
    nd = len(a.shape)
    def desc():   # built only when an error is raised
        return (f"{name} of operand {a.str_short()} with indices {idx.str_short()} and "
                f"axes={axes}")
    if idx.dtype.kind not in 'iu':
        raise TypeError(f"{desc()}: indices must be integers. Fix: convert them with "
                        f"convert_element_type(indices, int).")
    if len(set(axes)) != len(axes) or builtins.any(not 0 <= d < nd for d in axes):
        raise ValueError(f"{desc()}: axes must be distinct dimensions of the operand "
                         f"(0..{nd - 1}).")
    if not idx.shape or idx.shape[-1] != len(axes):
        raise ValueError(f"{desc()}: indices must have shape batch + ({len(axes)},), one "
                         f"index per entry of axes; got {idx.shape}.")
    return idx.shape[:-1] + tuple(s for d, s in enumerate(a.shape) if d not in axes)


def _gather_abstract(a, idx, axes):
    return ShapedArray(_gather_out_shape('gather', a, idx, axes), a.dtype, a.weak_type)


def _gather_impl(x, indices, axes):
    x = np.asarray(x)
    indices = np.asarray(indices)
    if indices.ndim == 0 or indices.shape[-1] != len(axes) or builtins.any(
            not 0 <= d < x.ndim for d in axes):
        _gather_abstract(get_aval(x), get_aval(indices), axes)
    if len(axes) == 1:
        a = axes[0]
        out = np.take(x, indices[..., 0], axis=a)
        if a == 0 or x.ndim == 1:
            return out
        nb = indices.ndim - 1
        return np.moveaxis(out, tuple(range(a, a + nb)), tuple(range(nb)))
    if not axes:
        b = indices.shape[:-1]
        return np.broadcast_to(x, b + x.shape)
    rest = [d for d in range(x.ndim) if d not in axes]
    xt = np.transpose(x, tuple(axes) + tuple(rest))
    return xt[tuple(indices[..., k] for k in range(len(axes)))]


gather_p = Primitive('gather')
gather_p.impl = _gather_impl
gather_p.abstract_eval = _gather_abstract


def _gather_jvp(primals, tangents, axes):
    x, indices = primals
    out = gather_p.bind(x, indices, axes=axes)
    t = tangents[0]
    if type(t) is Zero:
        return out, zero_like_out(out)
    return out, gather_p.bind(t, indices, axes=axes)


def _gather_transpose(ct, x, indices, axes):
    assert is_undefined(x) and not is_undefined(indices), "gather is linear in its operand only"
    zeros = _zeros(x.aval.shape, x.aval.dtype)
    return [scatter_add_p.bind(zeros, indices, ct, axes=axes), None]


gather_p.jvp = _gather_jvp
gather_p.transpose = _gather_transpose


def gather(operand, indices, axes):
    """result[b..., rest...] = operand at indices[b..., k] along axes[k] (other dims
    kept in order). Indices must be in range (callers normalise negative ones)."""
    axes = tuple(int(a) for a in axes)
    return gather_p.bind(operand, indices, axes=axes)


# --- scatter_add ------------------------------------------------------------------------------

@numba.njit(cache=True)
def _scatter_add_1d(out, idx, upd):
    """out[idx[i]] += upd[i]; IndexError on an out-of-range index."""
    m = out.shape[0]
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0 or r >= m:
            raise IndexError("scatter_add: index out of range")
        out[r] += upd[i]


@numba.njit(cache=True)
def _scatter_add_rows(out, idx, upd):
    """out[idx[i], :] += upd[i, :]; IndexError on an out-of-range index."""
    m, width = out.shape
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0 or r >= m:
            raise IndexError("scatter_add: index out of range")
        for c in range(width):
            out[r, c] += upd[i, c]


@numba.njit(cache=True)
def _scatter_add_multi(out, idx, dims, upd):
    """out[row(i), :] += upd[i, :], row(i) the row-major flat index of idx[i, :] in
    `dims`; IndexError on an out-of-range index component."""
    n, k = idx.shape
    width = out.shape[1]
    for i in range(n):
        row = 0
        for j in range(k):
            v = idx[i, j]
            if v < 0 or v >= dims[j]:
                raise IndexError("scatter_add: index out of range")
            row = row * dims[j] + v
        for c in range(width):
            out[row, c] += upd[i, c]


def _scatter_abstract(a, idx, u, axes):
    want = _gather_out_shape('scatter_add', a, idx, axes)
    if u.shape != want:
        raise ValueError(f"scatter_add: updates {u.str_short()} must have shape {want} "
                         f"(indices batch shape {idx.shape[:-1]} + operand {a.str_short()} "
                         f"without axes {axes}).")
    if u.dtype != a.dtype:
        raise TypeError(f"scatter_add: updates {u.str_short()} must have the operand's dtype "
                        f"({a.str_short()}). Fix: convert them.")
    if a.dtype.kind not in 'fciu':
        raise TypeError(f"scatter_add: needs a numeric operand, got {a.str_short()}")
    return ShapedArray(a.shape, a.dtype, a.weak_type)


def _scatter_impl(x, indices, updates, axes):
    x, indices, updates = np.asarray(x), np.asarray(indices), np.asarray(updates)
    nd = x.ndim
    if (indices.ndim == 0 or indices.shape[-1] != len(axes) or x.dtype != updates.dtype
            or builtins.any(not 0 <= d < nd for d in axes) or x.dtype.kind not in 'fciu'
            or updates.shape != indices.shape[:-1] + tuple(
                s for d, s in enumerate(x.shape) if d not in axes)):
        _scatter_abstract(get_aval(x), get_aval(indices), get_aval(updates), axes)
    rest = tuple(d for d in range(nd) if d not in axes)
    perm = tuple(axes) + rest
    identity = perm == tuple(range(nd))
    # work on a C-contiguous copy with the indexed axes first: (rows, trailing size)
    out = np.array(x if identity else np.transpose(x, perm), order='C')
    dims = [x.shape[d] for d in axes]
    nrows = int(np.prod(dims, dtype=np.int64))
    width = int(np.prod([x.shape[d] for d in rest], dtype=np.int64))
    n = int(np.prod(indices.shape[:-1], dtype=np.int64))
    upd = np.ascontiguousarray(updates).reshape(n, width)
    if n and width:
        # (the kernels check every index: an out-of-range one raises IndexError)
        if len(axes) == 1:
            idx = indices[..., 0].reshape(n)
            if width == 1:
                _scatter_add_1d(out.reshape(nrows), idx, upd.reshape(n))
            else:
                _scatter_add_rows(out.reshape(nrows, width), idx, upd)
        else:
            _scatter_add_multi(out.reshape(nrows, width), indices.reshape(n, len(axes)),
                               np.array(dims, dtype=np.int64), upd)
    elif n and axes:
        idx = indices.reshape(n, len(axes))
        if idx.min() < 0 or builtins.any(idx[:, j].max() >= dims[j] for j in range(len(axes))):
            raise IndexError("scatter_add: index out of range")
    if identity:
        return out
    return np.transpose(out, _inverse_perm(perm))


scatter_add_p = Primitive('scatter_add')
scatter_add_p.impl = _scatter_impl
scatter_add_p.abstract_eval = _scatter_abstract


def _scatter_jvp(primals, tangents, axes):
    x, indices, u = primals
    tx, tu = tangents[0], tangents[2]
    out = scatter_add_p.bind(x, indices, u, axes=axes)
    if type(tu) is Zero:
        if type(tx) is Zero:
            return out, zero_like_out(out)
        return out, tx
    if type(tx) is Zero:
        tx = _zeros(tx.aval.shape, tx.aval.dtype)
    return out, scatter_add_p.bind(tx, indices, tu, axes=axes)


def _scatter_transpose(ct, x, indices, u, axes):
    assert not is_undefined(indices), "scatter_add is not linear in its indices"
    ct_u = gather_p.bind(ct, indices, axes=axes) if is_undefined(u) else None
    return [ct if is_undefined(x) else None, None, ct_u]


scatter_add_p.jvp = _scatter_jvp
scatter_add_p.transpose = _scatter_transpose


def scatter_add(operand, indices, updates, axes):
    """operand with `updates` added at `indices` (see gather for the layout); repeated
    indices accumulate. Returns a new array."""
    from .arith import coerce
    axes = tuple(int(a) for a in axes)
    return scatter_add_p.bind(operand, indices, coerce(updates, operand), axes=axes)


# --- batching rules ---

def _slice_batch(args, dims, start_indices, limit_indices, strides):
    (x,), (d,) = args, dims
    n = shape_of(x)[d]
    start = start_indices[:d] + (0,) + start_indices[d:]
    limit = limit_indices[:d] + (n,) + limit_indices[d:]
    if strides is not None:
        strides = strides[:d] + (1,) + strides[d:]
    return slice_p.bind(x, start_indices=start, limit_indices=limit, strides=strides), d


slice_p.batch = _slice_batch

_I64 = np.dtype(np.int64)


def _window_indices(size, starts, sdims, ns, ks, batch_column=True):
    """Indices (size, k_0, ..., k_{m-1}, m+1) for a batch of windows: column 0 is the
    batch element, column 1+j the position along the j-th windowed dimension, from
    start j (a scalar, or batched: shape (size,)) clamped so the window fits (as
    dynamic_slice clamps) plus 0..k_j-1. Without batch_column, only the m positions."""
    from .arith import add_p, max_p, min_p
    from .convert import convert_element_type, broadcasted_iota
    from .shape_ops import reshape, broadcast_in_dim, concatenate
    m = len(starts)
    full = (size,) + tuple(ks) + (1,)
    cols = [broadcasted_iota(_I64, full, 0)] if batch_column else []
    for j, (s, sd, n, k) in enumerate(zip(starts, sdims, ns, ks)):
        s = convert_element_type(s, _I64)
        s = min_p.bind(max_p.bind(s, np.int64(0)), np.int64(n - k))
        if sd is not None:
            s = reshape(s, (size,) + (1,) * (m + 1))
        ramp = broadcasted_iota(_I64, (1,) * (j + 1) + (k,) + (1,) * (m - j), j + 1)
        col = add_p.bind(s, ramp)
        cols.append(broadcast_in_dim(col, full, tuple(range(m + 2)))
                    if shape_of(col) != full else col)
    return concatenate(cols, m + 1) if len(cols) > 1 else cols[0]


def _dynamic_slice_batch(args, dims, slice_sizes):
    from ._batching import axis_size, bdim_to
    from .shape_ops import transpose
    x, *starts = args
    d, *sdims = dims
    size = axis_size(args, dims)
    if all(sd is None for sd in sdims):
        return dynamic_slice_p.bind(x, *starts[:d], np.int64(0), *starts[d:],
                                    slice_sizes=slice_sizes[:d] + (size,) + slice_sizes[d:]), d
    # per-element windows: slice the dimensions with a shared start first, then
    # gather the windows of the others (an unbatched operand is not broadcast: the
    # indices alone carry the batch)
    lead = 0 if d is None else 1
    if d is not None:
        x = bdim_to(x, d, size, 0)
    shape = shape_of(x)[lead:]
    nd = len(shape)
    shared = [j for j in range(nd) if sdims[j] is None]
    own = [j for j in range(nd) if sdims[j] is not None]
    if any(slice_sizes[j] != shape[j] for j in shared):
        x = dynamic_slice_p.bind(
            x, *(np.int64(0),) * lead,
            *[starts[j] if sdims[j] is None else np.int64(0) for j in range(nd)],
            slice_sizes=(size,) * lead + tuple(slice_sizes[j] if sdims[j] is None
                                               else shape[j] for j in range(nd)))
    idx = _window_indices(size, [starts[j] for j in own], [sdims[j] for j in own],
                          [shape[j] for j in own], [slice_sizes[j] for j in own],
                          batch_column=d is not None)
    out = gather_p.bind(x, idx, axes=(0,) * lead + tuple(j + lead for j in own))
    # out: batch, the windowed dims, then the others in order
    order = own + shared
    perm = (0,) + tuple(1 + order.index(j) for j in range(nd))
    return transpose(out, perm), 0


dynamic_slice_p.batch = _dynamic_slice_batch


def _dus_batch(args, dims, ):
    from ._batching import axis_size, bdim_to, same_bdim
    from .logical import select_n_p, gt_p
    from .convert import convert_element_type
    x, u, *starts = args
    dx, du, *sdims = dims
    size = axis_size(args, dims)
    if all(sd is None for sd in sdims):
        (x, u), b = same_bdim([x, u], [dx, du])
        return dynamic_update_slice_p.bind(x, u, *starts[:b], np.int64(0), *starts[b:]), b
    # per-element windows: add the update into zeros at its positions (a scatter),
    # and select it where a scatter of ones marks the window
    x = bdim_to(x, dx, size, 0)
    u = bdim_to(u, du, size, 0)
    dt = dtype_of(x)
    if dt == np.bool_:
        x, u = convert_element_type(x, np.uint8), convert_element_type(u, np.uint8)
    shape = shape_of(x)[1:]
    ks = shape_of(u)[1:]
    nd = len(shape)
    idx = _window_indices(size, starts, sdims, shape, ks)
    axes = tuple(range(nd + 1))
    placed = scatter_add_p.bind(_zeros((size,) + shape, dtype_of(x)), idx, u, axes=axes)
    hits = scatter_add_p.bind(_zeros((size,) + shape, np.int32), idx,
                              _ones((size,) + ks, np.int32), axes=axes)
    out = select_n_p.bind(gt_p.bind(hits, np.int32(0)), x, placed)
    if dt == np.bool_:
        out = convert_element_type(out, dt)
    return out, 0


def _ones(shape, dtype):
    return broadcast_in_dim(np.ones((), dtype), tuple(shape), ())


dynamic_update_slice_p.batch = _dus_batch


def _with_batch_column(indices, di, size):
    """Batched indices (batch axis moved to the front) with the batch element's
    number prepended to each index vector."""
    from ._batching import moveaxis
    from .convert import broadcasted_iota
    from .shape_ops import concatenate
    indices = moveaxis(indices, di, 0)
    shape = shape_of(indices)
    col = broadcasted_iota(dtype_of(indices), shape[:-1] + (1,), 0)
    return concatenate([col, indices], len(shape) - 1)


def _gather_batch(args, dims, axes):
    from ._batching import axis_size, phys_axes, moveaxis
    (x, indices), (dx, di) = args, dims
    if di is None:
        new_axes = phys_axes(axes, dx)
        rest = [j for j in range(len(shape_of(x))) if j not in new_axes]
        nbi = len(shape_of(indices)) - 1
        return gather_p.bind(x, indices, axes=new_axes), nbi + rest.index(dx)
    if dx is None:
        ni = len(shape_of(indices))
        if di == ni - 1:       # the batch axis must not be the index-vector axis
            indices = moveaxis(indices, di, 0)
            di = 0
        return gather_p.bind(x, indices, axes=axes), di
    size = axis_size(args, dims)
    idx = _with_batch_column(indices, di, size)
    return gather_p.bind(x, idx, axes=(dx,) + phys_axes(axes, dx)), 0


gather_p.batch = _gather_batch


def _scatter_add_batch(args, dims, axes):
    from ._batching import axis_size, phys_axes, bdim_to
    (x, indices, u), (dx, di, du) = args, dims
    size = axis_size(args, dims)
    b = 0 if dx is None else dx
    x = bdim_to(x, dx, size, b)
    if di is None:
        new_axes = phys_axes(axes, b)
        rest = [j for j in range(len(shape_of(x))) if j not in new_axes]
        nbi = len(shape_of(indices)) - 1
        u = bdim_to(u, du, size, nbi + rest.index(b))
        return scatter_add_p.bind(x, indices, u, axes=new_axes), b
    idx = _with_batch_column(indices, di, size)
    u = bdim_to(u, du, size, 0)
    return scatter_add_p.bind(x, idx, u, axes=(b,) + phys_axes(axes, b)), b


scatter_add_p.batch = _scatter_add_batch

# --- numba lowering ---
# slice and dynamic_slice are views; gather and scatter_add write their loops, with
# the same index checks as the eager kernels (IndexError out of range).
from ._lowering import Structural as _Structural  # noqa: E402


def _np_dt(dt):
    return 'np.bool_' if dt.kind == 'b' else f'np.{dt.name}'


def _lw_slice(ctx, ins, outs, start_indices, limit_indices, strides):
    x = ins[0]
    if x.scalar:
        return [x.expr]
    st = strides or (1,) * len(start_indices)
    ix = [f'{a}:{b}' + (f':{s}' if s != 1 else '') for a, b, s in zip(start_indices, limit_indices, st)]
    return [f"{x.expr}[{', '.join(ix)}]"]


slice_p.lowering = _Structural(_lw_slice)


def _clamped(ctx, starts, shape, sizes):
    names = []
    for s, n, k in zip(starts, shape, sizes):
        v = ctx.fresh('s')
        ctx.emit(f'{v} = min(max(np.int64({s.expr}), 0), {n - k})')
        names.append(v)
    return names


def _lw_dynamic_slice(ctx, ins, outs, slice_sizes):
    x, starts = ins[0], ins[1:]
    if x.scalar:
        return [x.expr]
    ss = _clamped(ctx, starts, x.aval.shape, slice_sizes)
    ix = [f'{s}:{s} + {k}' for s, k in zip(ss, slice_sizes)]
    return [f"{x.expr}[{', '.join(ix)}]"]


dynamic_slice_p.lowering = _Structural(_lw_dynamic_slice)


def _lw_dus(ctx, ins, outs):
    x, u, starts = ins[0], ins[1], ins[2:]
    if x.scalar:
        return [u.expr]
    res = ctx.fresh('dus')
    ctx.emit(f"{res} = {ctx.helper('copy')}({x.expr})")
    ss = _clamped(ctx, starts, x.aval.shape, u.aval.shape)
    ix = [f'{s}:{s} + {k}' for s, k in zip(ss, u.aval.shape)]
    ctx.emit(f"{res}[{', '.join(ix)}] = {u.expr}")
    return [res]


dynamic_update_slice_p.lowering = _Structural(_lw_dus)


def _index_vars(ctx, idx, bi, axes, shape, wrap, what):
    """Read and check the indices at batch position `bi`: one int64 local per axis."""
    ps = []
    for j, d in enumerate(axes):
        p = ctx.fresh('p')
        pos = ', '.join(list(bi) + [str(j)])
        ctx.emit(f'{p} = np.int64({idx.expr}[{pos}])')
        n = shape[d]
        if wrap:
            ctx.emit(f'if {p} < 0:')
            ctx.emit(f'    {p} += {n}')
        ctx.emit(f'if {p} < 0 or {p} >= {n}:')
        ctx.emit(f'    raise IndexError("{what}: index out of range")')
        ps.append(p)
    return ps


def _lw_gather(ctx, ins, outs, axes):
    x, idx = ins
    out = outs[0]
    shape = x.aval.shape
    batch = idx.aval.shape[:-1]
    rest = tuple(s for d, s in enumerate(shape) if d not in axes)
    res = ctx.fresh('g')
    if out.shape:
        ctx.emit(f'{res} = {ctx.empty(out.shape, out.dtype)}')
    with ctx.loops(batch) as bi:
        ps = _index_vars(ctx, idx, bi, axes, shape, True, 'gather')
        with ctx.loops(rest) as ri:
            it = iter(ri)
            src = [ps[axes.index(d)] if d in axes else next(it) for d in range(len(shape))]
            val = f"{x.expr}[{', '.join(src)}]" if shape else x.expr
            if out.shape:
                ctx.emit(f"{res}[{', '.join(list(bi) + list(ri))}] = {val}")
            else:
                ctx.emit(f'{res} = {val}')
    return [res]


gather_p.lowering = _Structural(_lw_gather)


def _lw_scatter_add(ctx, ins, outs, axes):
    x, idx, upd = ins
    shape = x.aval.shape
    if x.scalar:
        raise _NotLowerableS("scatter_add into a 0-d operand")
    batch = idx.aval.shape[:-1]
    rest = tuple(s for d, s in enumerate(shape) if d not in axes)
    res = ctx.fresh('sc')
    ctx.emit(f"{res} = {ctx.helper('copy')}({x.expr})")
    with ctx.loops(batch) as bi:
        ps = _index_vars(ctx, idx, bi, axes, shape, False, 'scatter_add')
        with ctx.loops(rest) as ri:
            it = iter(ri)
            dst = [ps[axes.index(d)] if d in axes else next(it) for d in range(len(shape))]
            u = f"{upd.expr}[{', '.join(list(bi) + list(ri))}]" if not upd.scalar else upd.expr
            ref = f"{res}[{', '.join(dst)}]"
            ctx.emit(f'{ref} = {ctx.cast(f"{ref} + {u}", x.aval.dtype)}')
    return [res]


from ._lowering import NotLowerable as _NotLowerableS  # noqa: E402
scatter_add_p.lowering = _Structural(_lw_scatter_add)
