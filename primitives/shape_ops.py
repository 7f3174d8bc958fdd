"""Shape primitives: broadcast_in_dim, reshape (more are added beside them).
They are linear; eager implementations return views where NumPy can."""
import numpy as np

from tracer import Primitive, ShapedArray, is_undefined
from ._base import deflinear, shape_of


# --- broadcast_in_dim ------------------------------------------------------------------

def _bid_shape(operand_shape, shape, broadcast_dimensions):
    """operand dim i lands at output dim broadcast_dimensions[i] (size equal or 1)."""
    bshape = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        bshape[d] = operand_shape[i]
    return tuple(bshape)


def _bid_impl(x, shape, broadcast_dimensions):
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


def _bid_transpose(ct, x, shape, broadcast_dimensions):
    from .reductions import reduce_sum
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
    if int(np.prod(new_sizes, dtype=np.int64)) != a.size:
        raise ValueError(f"reshape: cannot reshape {a.str_short()} ({a.size} elements) into "
                         f"shape {new_sizes}")
    return ShapedArray(new_sizes, a.dtype, a.weak_type)


reshape_p = Primitive('reshape')
reshape_p.impl = lambda x, new_sizes: np.reshape(x, new_sizes)
reshape_p.abstract_eval = _reshape_abstract
deflinear(reshape_p, lambda ct, x, new_sizes: [reshape(ct, x.aval.shape)])


def reshape(x, new_sizes):
    new_sizes = tuple(int(s) for s in new_sizes)
    if shape_of(x) == new_sizes:
        return x
    return reshape_p.bind(x, new_sizes=new_sizes)
