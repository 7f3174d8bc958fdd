"""Shape primitives: broadcast_in_dim, reshape, transpose, squeeze (and expand_dims),
concatenate, pad and rev. They are linear; eager implementations return views where
NumPy can."""
import math

import numpy as np

from tracer.core import ONES
from tracer import Primitive, ShapedArray, is_undefined, get_aval
from ._base import deflinear, shape_of, dtype_of

_prod = math.prod


# --- broadcast_in_dim ------------------------------------------------------------------

def _bid_shape(operand_shape, shape, broadcast_dimensions):
    """operand dim i lands at output dim broadcast_dimensions[i] (size equal or 1)."""
    bshape = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        bshape[d] = operand_shape[i]
    return tuple(bshape)


def _bid_impl(x, shape, broadcast_dimensions):
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    return np.broadcast_to(x.reshape(_bid_shape(x.shape, shape, broadcast_dimensions)), shape)


def _bid_abstract(a, shape, broadcast_dimensions):
    if len(broadcast_dimensions) != len(a.shape):
        raise ValueError(f"broadcast_in_dim: operand {a.str_short()} has {len(a.shape)} dims "
                         f"but broadcast_dimensions={broadcast_dimensions}")
    for i, d in enumerate(broadcast_dimensions):
        if not 0 <= d < len(shape) or a.shape[i] not in (1, shape[d]):
            raise ValueError(f"broadcast_in_dim: cannot broadcast operand {a.str_short()} to "
                             f"shape {shape} with broadcast_dimensions={broadcast_dimensions}")
    if list(broadcast_dimensions) != sorted(broadcast_dimensions):
        raise ValueError("broadcast_in_dim: broadcast_dimensions must be increasing, "
                         f"got {broadcast_dimensions}")
    return ShapedArray(shape, a.dtype, a.weak_type)


_reduce_sum = None


def _bid_transpose(ct, x, shape, broadcast_dimensions):
    global _reduce_sum
    if _reduce_sum is None:
        from .reductions import reduce_sum as _reduce_sum
    reduce_sum = _reduce_sum
    in_shape = x.aval.shape
    new_dims = [i for i in range(len(shape)) if i not in broadcast_dimensions]
    expanded = [d for i, d in enumerate(broadcast_dimensions)
                if in_shape[i] == 1 and shape[d] != 1]
    axes = tuple(sorted(new_dims + expanded))
    out = reduce_sum(ct, axes) if axes else ct
    if shape_of(out) != in_shape:
        out = reshape(out, in_shape)
    return [out]


broadcast_in_dim_p = Primitive('broadcast_in_dim')
broadcast_in_dim_p.impl = _bid_impl
broadcast_in_dim_p.abstract_eval = _bid_abstract
deflinear(broadcast_in_dim_p, _bid_transpose)


def broadcast_in_dim(x, shape, broadcast_dimensions):
    shape = tuple(int(s) for s in shape)
    broadcast_dimensions = tuple(int(d) for d in broadcast_dimensions)
    if shape_of(x) == shape and broadcast_dimensions == tuple(range(len(shape))):
        return x
    return broadcast_in_dim_p.bind(x, shape=shape, broadcast_dimensions=broadcast_dimensions)


def broadcast_to(x, shape):
    """NumPy-style broadcast (trailing dims aligned)."""
    xs = shape_of(x)
    shape = tuple(shape)
    if xs == shape:
        return x
    lead = len(shape) - len(xs)
    return broadcast_in_dim(x, shape, tuple(range(lead, len(shape))))


# --- reshape ------------------------------------------------------------------------------

def _reshape_abstract(a, new_sizes):
    # math.prod: exact Python ints (np.prod costs microseconds per call: hot when
    # a reshape of a tangent is staged, e.g. keepdims=True under eager grad)
    if _prod(new_sizes) != _prod(a.shape):
        raise ValueError(f"reshape: cannot reshape {a.str_short()} ({a.size} elements) into "
                         f"shape {new_sizes}")
    return ShapedArray(new_sizes, a.dtype, a.weak_type)


def _reshape_impl(x, new_sizes):
    if type(x) is np.ndarray:
        return x.reshape(new_sizes)     # np.reshape's dispatch, without its wrapper
    return np.reshape(x, new_sizes)


reshape_p = Primitive('reshape')
reshape_p.impl = _reshape_impl
reshape_p.abstract_eval = _reshape_abstract
def _reshape_transpose(ct, x, new_sizes):
    if type(ct) is np.ndarray:
        return [ct.reshape(x.aval.shape)]   # eager reverse mode: the impl, without bind
    return [reshape(ct, x.aval.shape)]


deflinear(reshape_p, _reshape_transpose)


def reshape(x, new_sizes):
    new_sizes = tuple(int(s) for s in new_sizes)
    if shape_of(x) == new_sizes:
        return x
    return reshape_p.bind(x, new_sizes=new_sizes)


# --- shared helpers ---------------------------------------------------------------------------

def _norm_dims(x, dims, extra=0):
    """Static dimension list as a tuple of ints, negatives counted from the end of a
    rank len(shape)+extra array."""
    nd = len(shape_of(x)) + extra
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    return tuple(int(d) + nd if -nd <= int(d) < 0 else int(d) for d in dims)


def _linear_jvp(prim):
    """JVP of a primitive linear in all operands where symbolic-zero tangents become
    broadcast scalar zeros (one cheap equation, or a read-only view when eager)
    rather than materialised arrays or staged constants."""
    from tracer import Zero
    from ._base import zero_like_out

    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        if all(type(t) is Zero for t in tangents):
            return out, zero_like_out(out)
        ts = [broadcast_in_dim(np.zeros((), t.aval.dtype), t.aval.shape, ())
              if type(t) is Zero else t for t in tangents]
        return out, prim.bind(*ts, **params)
    return jvp


# --- transpose ----------------------------------------------------------------------------------

def _transpose_abstract(a, permutation):
    if sorted(permutation) != list(range(len(a.shape))):
        raise ValueError(f"transpose: permutation {permutation} is not a permutation of the "
                         f"{len(a.shape)} axes of operand {a.str_short()}. Fix: pass each of "
                         f"0..{len(a.shape) - 1} exactly once.")
    return ShapedArray(tuple(a.shape[p] for p in permutation), a.dtype, a.weak_type)


def _inverse_perm(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


transpose_p = Primitive('transpose')
transpose_p.impl = lambda x, permutation: np.transpose(x, permutation)
transpose_p.abstract_eval = _transpose_abstract
deflinear(transpose_p, lambda ct, x, permutation: [transpose(ct, _inverse_perm(permutation))])


def transpose(x, permutation):
    """Permute the axes: output axis i is input axis permutation[i]."""
    permutation = _norm_dims(x, permutation)
    if permutation == tuple(range(len(permutation))) and len(permutation) == len(shape_of(x)):
        return x
    return transpose_p.bind(x, permutation=permutation)


# --- squeeze, expand_dims ---------------------------------------------------------------------

def _squeeze_abstract(a, dimensions):
    for d in dimensions:
        if not 0 <= d < len(a.shape):
            raise ValueError(f"squeeze: dimension {d} is out of range for operand "
                             f"{a.str_short()}")
        if a.shape[d] != 1:
            raise ValueError(f"squeeze: dimension {d} of operand {a.str_short()} has size "
                             f"{a.shape[d]}, not 1. Fix: squeeze only size-1 dimensions "
                             f"(reduce or slice the others).")
    if len(set(dimensions)) != len(dimensions):
        raise ValueError(f"squeeze: repeated dimension in {dimensions}")
    shape = tuple(s for i, s in enumerate(a.shape) if i not in dimensions)
    return ShapedArray(shape, a.dtype, a.weak_type)


def _squeeze_impl(x, dimensions):
    x = np.asarray(x)
    return np.squeeze(x, axis=dimensions) if dimensions else x


squeeze_p = Primitive('squeeze')
squeeze_p.impl = _squeeze_impl
squeeze_p.abstract_eval = _squeeze_abstract
deflinear(squeeze_p, lambda ct, x, dimensions: [reshape(ct, x.aval.shape)])


def squeeze(x, dimensions):
    """Remove the size-1 axes `dimensions`."""
    dimensions = tuple(sorted(_norm_dims(x, dimensions)))
    if not dimensions:
        return x
    return squeeze_p.bind(x, dimensions=dimensions)


def expand_dims(x, dimensions):
    """Insert size-1 axes; `dimensions` are their positions in the output (negative ones
    count from the output's end). A reshape, so its rules are reshape's."""
    xs = shape_of(x)
    dims = sorted(_norm_dims(x, dimensions, extra=len(tuple(
        [dimensions] if isinstance(dimensions, (int, np.integer)) else dimensions))))
    nd = len(xs) + len(dims)
    if len(set(dims)) != len(dims) or any(not 0 <= d < nd for d in dims):
        raise ValueError(f"expand_dims: dimensions {dimensions} are invalid for an operand of "
                         f"shape {xs}: they must be distinct positions in the rank-{nd} "
                         f"output (0..{nd - 1}, or negative from the end).")
    it = iter(xs)
    shape = tuple(1 if i in dims else next(it) for i in range(nd))
    return reshape(x, shape)


# --- concatenate --------------------------------------------------------------------------------

def _concat_abstract(*avals, dimension):
    if not avals:
        raise ValueError("concatenate: needs at least one operand")
    a0 = avals[0]
    nd = len(a0.shape)
    desc = ', '.join(a.str_short() for a in avals)
    if nd == 0:
        raise ValueError(f"concatenate: 0-d operands ({desc}) cannot be concatenated. Fix: "
                         f"reshape them to 1-d first.")
    if not 0 <= dimension < nd:
        raise ValueError(f"concatenate: dimension {dimension} is out of range for operands "
                         f"{desc}")
    for a in avals:
        if a.dtype != a0.dtype:
            raise TypeError(f"concatenate: operands must share one dtype, got {desc}. Fix: "
                            f"convert them with convert_element_type first.")
        if len(a.shape) != nd or any(s != t for i, (s, t) in enumerate(zip(a.shape, a0.shape))
                                     if i != dimension):
            raise ValueError(f"concatenate: operand shapes must agree except in dimension "
                             f"{dimension}, got {desc}.")
    shape = list(a0.shape)
    shape[dimension] = sum(a.shape[dimension] for a in avals)
    return ShapedArray(tuple(shape), a0.dtype, all(a.weak_type for a in avals))


def _concat_transpose(ct, *operands, dimension):
    from .slicing import slice as slice_
    shape = shape_of(ct)
    out = []
    start = 0
    for x in operands:
        size = (x.aval if is_undefined(x) else get_aval(x)).shape[dimension]
        if is_undefined(x):
            lo = [0] * len(shape)
            hi = list(shape)
            lo[dimension] = start
            hi[dimension] = start + size
            out.append(slice_(ct, lo, hi))
        else:
            out.append(None)
        start += size
    return out


concatenate_p = Primitive('concatenate')
def _concat_impl(*xs, dimension):
    d0 = dtype_of(xs[0])
    for x in xs:
        if dtype_of(x) != d0:   # NumPy would promote silently; lax does not
            _concat_abstract(*[get_aval(x) for x in xs], dimension=dimension)
    return np.concatenate(xs, axis=dimension)


concatenate_p.impl = _concat_impl
concatenate_p.abstract_eval = _concat_abstract
deflinear(concatenate_p, _concat_transpose)
concatenate_p.jvp = _linear_jvp(concatenate_p)


def concatenate(operands, dimension):
    """Join `operands` (same dtype, same shape except along `dimension`)."""
    operands = list(operands)
    if not operands:
        raise ValueError("concatenate: needs at least one operand")
    dimension = _norm_dims(operands[0], dimension)[0]
    if len(operands) == 1:
        concatenate_p.abstract_eval(get_aval(operands[0]), dimension=dimension)
        return operands[0]
    return concatenate_p.bind(*operands, dimension=dimension)


# --- pad -------------------------------------------------------------------------------------------

def _pad_out_dim(n, lo, hi, interior):
    dilated = (n - 1) * (interior + 1) + 1 if n else 0
    return lo + dilated + hi


def _pad_abstract(a, pv, padding_config):
    if len(padding_config) != len(a.shape):
        raise ValueError(f"pad: padding_config has {len(padding_config)} entries but operand "
                         f"{a.str_short()} has {len(a.shape)} dimensions. Fix: give one "
                         f"(lo, hi, interior) triple per dimension.")
    if pv.shape != ():
        raise ValueError(f"pad: padding_value must be a scalar, got {pv.str_short()}")
    if pv.dtype != a.dtype:
        raise TypeError(f"pad: padding_value {pv.str_short()} must have the operand's dtype "
                        f"({a.str_short()}). Fix: convert it first.")
    shape = []
    for d, ((lo, hi, interior), n) in enumerate(zip(padding_config, a.shape)):
        if interior < 0:
            raise ValueError(f"pad: interior padding must be >= 0, got {interior} in "
                             f"dimension {d}")
        size = _pad_out_dim(n, lo, hi, interior)
        if size < 0:
            raise ValueError(f"pad: padding {(lo, hi, interior)} crops dimension {d} of "
                             f"operand {a.str_short()} to a negative size {size}")
        shape.append(size)
    return ShapedArray(tuple(shape), a.dtype, a.weak_type)


def _pad_impl(x, pv, padding_config):
    x = np.asarray(x)
    if len(padding_config) != x.ndim:
        raise ValueError("pad: padding_config length does not match the operand's rank")
    out_shape, dst, src = [], [], []
    nonempty = True
    for (lo, hi, interior), n in zip(padding_config, x.shape):
        size = _pad_out_dim(n, lo, hi, interior)
        if size < 0 or interior < 0:
            raise ValueError("pad: invalid padding")
        out_shape.append(size)
        s = interior + 1
        # element j lands at lo + j*s; keep those with 0 <= lo + j*s < size
        j0 = 0 if lo >= 0 else (-lo + s - 1) // s
        j1 = min(n, (size - lo + s - 1) // s) if size > lo else 0
        c = j1 - j0
        if c <= 0:
            nonempty = False
            continue
        start = lo + j0 * s
        src.append(slice(j0, j1))
        dst.append(slice(start, start + (c - 1) * s + 1, s))
    out = np.full(out_shape, pv, dtype=x.dtype)
    if nonempty:
        out[tuple(dst)] = x[tuple(src)]
    return out


def _pad_transpose(ct, x, pv, padding_config):
    from .slicing import slice as slice_
    from .reductions import reduce_sum
    from .arith import sub
    ct_x = None
    if is_undefined(x) or is_undefined(pv):
        # x's elements sit at max(lo,0) + j*(interior+1) once what was cropped
        # (negative lo/hi) is padded back with zeros: one strided slice picks them.
        t = ct
        if any(lo < 0 or hi < 0 for lo, hi, _ in padding_config):
            t = pad(t, dtype_of(ct).type(0),
                    tuple((max(-lo, 0), max(-hi, 0), 0) for lo, hi, _ in padding_config))
        start = tuple(max(lo, 0) for lo, _, _ in padding_config)
        limit = tuple(n - max(hi, 0) for n, (_, hi, _) in zip(shape_of(t), padding_config))
        ct_x = slice_(t, start, limit, tuple(i + 1 for _, _, i in padding_config))
    ct_pv = None
    if is_undefined(pv):
        all_axes = tuple(range(len(shape_of(ct))))
        ct_pv = sub(reduce_sum(ct, all_axes), reduce_sum(ct_x, all_axes))
    return [ct_x if is_undefined(x) else None, ct_pv]


pad_p = Primitive('pad')
pad_p.impl = _pad_impl
pad_p.abstract_eval = _pad_abstract
deflinear(pad_p, _pad_transpose)
pad_p.jvp = _linear_jvp(pad_p)


def pad(x, padding_value, padding_config):
    """lax.pad: per dimension (lo, hi, interior); lo/hi may be negative (cropping),
    interior >= 0 inserts that many padding elements between neighbours."""
    from .arith import coerce
    padding_config = tuple((int(lo), int(hi), int(i)) for lo, hi, i in padding_config)
    return pad_p.bind(x, coerce(padding_value, x), padding_config=padding_config)


# --- rev ----------------------------------------------------------------------------------------------

def _rev_abstract(a, dimensions):
    for d in dimensions:
        if not 0 <= d < len(a.shape):
            raise ValueError(f"rev: dimension {d} is out of range for operand {a.str_short()}")
    if len(set(dimensions)) != len(dimensions):
        raise ValueError(f"rev: repeated dimension in {dimensions}")
    return a


rev_p = Primitive('rev')
rev_p.impl = lambda x, dimensions: np.flip(x, dimensions)
rev_p.abstract_eval = _rev_abstract
deflinear(rev_p, lambda ct, x, dimensions: [rev_p.bind(ct, dimensions=dimensions)])


def rev(x, dimensions):
    """Reverse the order of elements along `dimensions`."""
    dimensions = tuple(sorted(_norm_dims(x, dimensions)))
    if not dimensions:
        return x
    return rev_p.bind(x, dimensions=dimensions)


# A cotangent of ones stays ones through pure rearrangements (see transforms/transpose.py).
for _p in (reshape_p, transpose_p, squeeze_p, rev_p):
    _p.ones_transpose = lambda x, **params: [ONES]


# --- batching rules ---

def _bid_batch(args, dims, shape, broadcast_dimensions):
    # the batch axis goes right after the output position of the operand axis before
    # it, so broadcast_dimensions stay increasing and nothing is transposed
    (x,), (d,) = args, dims
    bd = broadcast_dimensions
    out_d = bd[d - 1] + 1 if d > 0 else 0
    new_bd = tuple(b if i < d else b + 1 for i, b in enumerate(bd))
    new_bd = new_bd[:d] + (out_d,) + new_bd[d:]
    new_shape = shape[:out_d] + (shape_of(x)[d],) + shape[out_d:]
    return broadcast_in_dim_p.bind(x, shape=new_shape, broadcast_dimensions=new_bd), out_d


broadcast_in_dim_p.batch = _bid_batch


def _reshape_batch(args, dims, new_sizes):
    # row-major reshapes need the batch axis in front
    from ._batching import moveaxis
    (x,), (d,) = args, dims
    x = moveaxis(x, d, 0)
    return reshape_p.bind(x, new_sizes=(shape_of(x)[0],) + tuple(new_sizes)), 0


reshape_p.batch = _reshape_batch


def _transpose_batch(args, dims, permutation):
    # the batch axis stays where it is; the other axes permute around it
    (x,), (d,) = args, dims
    perm = [p + 1 if p >= d else p for p in permutation]
    perm.insert(d, d)
    return transpose_p.bind(x, permutation=tuple(perm)), d


transpose_p.batch = _transpose_batch


def _squeeze_batch(args, dims, dimensions):
    (x,), (d,) = args, dims
    new = tuple(a + 1 if a >= d else a for a in dimensions)
    return squeeze_p.bind(x, dimensions=new), d - sum(1 for a in dimensions if a < d)


squeeze_p.batch = _squeeze_batch


def _concatenate_batch(args, dims, dimension):
    from ._batching import same_bdim
    args, b = same_bdim(args, dims)
    return concatenate_p.bind(*args, dimension=dimension + 1 if dimension >= b else dimension), b


concatenate_p.batch = _concatenate_batch


def _pad_batch(args, dims, padding_config):
    from ._batching import axis_size, bdim_to, batch_elementwise
    (x, pv), (d, dpv) = args, dims
    size = axis_size(args, dims)
    if dpv is None:
        cfg = padding_config[:d] + ((0, 0, 0),) + padding_config[d:]
        return pad_p.bind(x, pv, padding_config=cfg), d
    # a batched padding value: pad with zeros, then select each element's padding
    # value where the (unbatched) mask of padded positions says so
    from .logical import select_n_p
    x = bdim_to(x, d, size, 0)
    cfg = ((0, 0, 0),) + padding_config
    padded = pad_p.bind(x, np.zeros((), dtype_of(x)), padding_config=cfg)
    inner = np.zeros(shape_of(x)[1:], np.bool_)
    mask = pad_p.bind(inner, np.ones((), np.bool_), padding_config=padding_config)
    out_rank = len(padding_config)
    pvb = reshape(pv, (size,) + (1,) * out_rank)   # a batched scalar: batched at 0
    return batch_elementwise(select_n_p, (mask, padded, pvb), (None, 0, 0))


pad_p.batch = _pad_batch


def _rev_batch(args, dims, dimensions):
    (x,), (d,) = args, dims
    return rev_p.bind(x, dimensions=tuple(a + 1 if a >= d else a for a in dimensions)), d


rev_p.batch = _rev_batch

# --- numba lowering ---
# Views where numba can make them (transpose, rev, reshape of contiguous data);
# broadcast_in_dim is an index remapping inside the fused loops.
from ._lowering import (Structural as _Structural,  # noqa: E402
                        BroadcastInDim as _BroadcastInDim, Reshape as _Reshape)


def _np_dt(dt):
    return 'np.bool_' if dt.kind == 'b' else f'np.{dt.name}'


def _lw_reshape_to(ctx, x, out):
    if x.scalar:
        if out.shape == ():
            return x.expr
        return ctx.full(out.shape, x.expr, out.dtype)
    if out.shape == ():
        return f"{ctx.helper('reshape')}({x.expr}, (1,))[0]"
    return f"{ctx.helper('reshape')}({x.expr}, {out.shape!r})"


broadcast_in_dim_p.lowering = _BroadcastInDim()
reshape_p.lowering = _Reshape(lambda ctx, ins, outs, new_sizes: [_lw_reshape_to(ctx, ins[0], outs[0])])
squeeze_p.lowering = _Reshape(lambda ctx, ins, outs, dimensions: [_lw_reshape_to(ctx, ins[0], outs[0])])
transpose_p.lowering = _Structural(lambda ctx, ins, outs, permutation: [
    ins[0].expr if ins[0].scalar or permutation == tuple(range(len(permutation)))
    else f"{ctx.helper('transpose')}({ins[0].expr}, {permutation!r})"])


def _lw_rev(ctx, ins, outs, dimensions):
    x = ins[0]
    if x.scalar:
        return [x.expr]
    ix = ['::-1' if d in dimensions else ':' for d in range(len(x.aval.shape))]
    return [f"{x.expr}[{', '.join(ix)}]"]


rev_p.lowering = _Structural(_lw_rev)


def _lw_concatenate(ctx, ins, outs, dimension):
    out = outs[0]
    res = ctx.fresh('cat')
    ctx.emit(f'{res} = {ctx.empty(out.shape, out.dtype)}')
    start = 0
    for x in ins:
        k = x.aval.shape[dimension]
        if k:
            ix = [':'] * len(out.shape)
            ix[dimension] = f'{start}:{start + k}'
            ctx.emit(f"{res}[{', '.join(ix)}] = {x.expr}")
        start += k
    return [res]


concatenate_p.lowering = _Structural(_lw_concatenate)


def _lw_pad(ctx, ins, outs, padding_config):
    x, pv = ins
    out = outs[0]
    if x.scalar:
        return [x.expr]
    res = ctx.fresh('pad')
    ctx.emit(f'{res} = {ctx.full(out.shape, pv.expr, out.dtype)}')
    dst, src = [], []
    for (lo, hi, interior), n, size in zip(padding_config, x.aval.shape, out.shape):
        s = interior + 1
        j0 = 0 if lo >= 0 else (-lo + s - 1) // s
        j1 = min(n, (size - lo + s - 1) // s) if size > lo else 0
        c = j1 - j0
        if c <= 0:
            return [res]
        start = lo + j0 * s
        src.append(f'{j0}:{j1}')
        dst.append(f'{start}:{start + (c - 1) * s + 1}:{s}')
    ctx.emit(f"{res}[{', '.join(dst)}] = {x.expr}[{', '.join(src)}]")
    return [res]


pad_p.lowering = _Structural(_lw_pad)

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
# Per-example reshapes that keep the flat order (reshape, squeeze, broadcast_in_dim
# inserting unit axes only) map a basis to a basis of the new shape.
from . import _basis as _SB  # noqa: E402

_SB.register(reshape_p, lambda args, dims, new_sizes: _SB.reshape_rule(args, dims, new_sizes))
_SB.register(squeeze_p, lambda args, dims, dimensions: _SB.reshape_rule(
    args, dims, [s for i, s in enumerate(args[0].shape) if i not in dimensions]))
_SB.register(broadcast_in_dim_p, lambda args, dims, shape, broadcast_dimensions:
             _SB.reshape_rule(args, dims, shape))
