"""convert_element_type, stop_gradient and iota."""
import numpy as np

from tracer import Primitive, Zero, ShapedArray
from ._base import dtype_of, zero_like_out, shape_of


def _convert_impl(x, new_dtype, weak_type=False):
    return np.asarray(x).astype(new_dtype)


convert_element_type_p = Primitive('convert_element_type')
convert_element_type_p.impl = _convert_impl
convert_element_type_p.abstract_eval = lambda a, new_dtype, weak_type=False: ShapedArray(
    a.shape, new_dtype, weak_type)


def _convert_jvp(primals, tangents, new_dtype, weak_type=False):
    (x,), (t,) = primals, tangents
    out = convert_element_type_p.bind(x, new_dtype=new_dtype, weak_type=weak_type)
    if type(t) is Zero or np.dtype(new_dtype).kind not in 'fc' or dtype_of(x).kind not in 'fc':
        return out, zero_like_out(out)
    return out, convert_element_type_p.bind(t, new_dtype=new_dtype, weak_type=False)


def _convert_transpose(ct, x, new_dtype, weak_type=False):
    return [convert_element_type_p.bind(ct, new_dtype=x.aval.dtype, weak_type=False)]


convert_element_type_p.jvp = _convert_jvp
convert_element_type_p.transpose = _convert_transpose


def convert_element_type(x, new_dtype, weak_type=False):
    new_dtype = np.dtype(new_dtype)
    if dtype_of(x) == new_dtype and not weak_type:
        from tracer import Tracer
        if not isinstance(x, Tracer) or not x.aval.weak_type:
            return x
    return convert_element_type_p.bind(x, new_dtype=new_dtype, weak_type=bool(weak_type))


# stop_gradient: the identity whose tangent is always zero.
stop_gradient_p = Primitive('stop_gradient')
stop_gradient_p.impl = lambda x: x
stop_gradient_p.abstract_eval = lambda a: a


def _stop_gradient_jvp(primals, tangents):
    out = stop_gradient_p.bind(primals[0])
    return out, zero_like_out(out)


stop_gradient_p.jvp = _stop_gradient_jvp


def stop_gradient(x):
    from tracer import tree_map, Tracer
    return tree_map(lambda v: stop_gradient_p.bind(v) if isinstance(v, Tracer) else v, x)


def _iota_impl(dtype, shape, dimension):
    ar = np.arange(shape[dimension], dtype=dtype)
    bshape = [1] * len(shape)
    bshape[dimension] = shape[dimension]
    return np.broadcast_to(ar.reshape(bshape), shape)


iota_p = Primitive('iota')
iota_p.impl = _iota_impl
iota_p.abstract_eval = lambda dtype, shape, dimension: ShapedArray(shape, dtype)


def _iota_jvp(primals, tangents, **params):
    out = iota_p.bind(**params)
    return out, zero_like_out(out)


iota_p.jvp = _iota_jvp


def iota(dtype, size):
    return iota_p.bind(dtype=np.dtype(dtype), shape=(int(size),), dimension=0)


def broadcasted_iota(dtype, shape, dimension):
    return iota_p.bind(dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape),
                       dimension=int(dimension))


def _convert_ones_transpose(x, new_dtype, weak_type=False):
    from tracer.core import ONES
    return [ONES if x.aval.dtype.kind in 'fc' else None]


convert_element_type_p.ones_transpose = _convert_ones_transpose


# --- batching rules ---
from ._batching import elementwise as _bew  # noqa: E402

convert_element_type_p.batch = _bew(convert_element_type_p)
stop_gradient_p.batch = _bew(stop_gradient_p)


def _iota_batch(args, dims, **params):
    # iota has no operands, so nothing of it can be batched: vmap evaluates it as
    # is (unbatched), and the rule exists only to say so
    return iota_p.bind(**params), None


iota_p.batch = _iota_batch

# --- numba lowering ---
from ._lowering import Elementwise as _EW, Iota as _Iota  # noqa: E402


def _lw_convert(ctx, a, avals, out, new_dtype, weak_type=False):
    if np.dtype(new_dtype).kind == 'b' and avals[0].dtype.kind != 'b':
        return f'({a[0]} != 0)'
    return a[0]    # the generated code casts every result to its dtype


convert_element_type_p.lowering = _EW(_lw_convert)
stop_gradient_p.lowering = _EW(lambda ctx, a, avals, out: a[0])
iota_p.lowering = _Iota()

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
from . import _basis as _SB  # noqa: E402


def _convert_basis(args, dims, new_dtype, weak_type=False):
    b, = args
    if weak_type:
        return None
    if b.d is None:
        return b.like(None, dtype=new_dtype), 0
    d = convert_element_type_p.bind(b.d, new_dtype=new_dtype, weak_type=False)
    return b.like(d, dtype=new_dtype), 0


_SB.register(convert_element_type_p, _convert_basis)
