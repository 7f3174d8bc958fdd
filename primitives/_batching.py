"""What the batching rules share (vmap; see transforms/vmap.py).

A batching rule has the signature

    rule(args, dims, **params) -> (out, out_dim)

`args` are the operands as values of the trace below vmap (NumPy arrays when eager,
tracers of an outer transform otherwise), `dims[i]` is the position of the batch
axis in `args[i]` (an int), or None for an operand that is not batched. At least
one operand is batched. The rule returns the batched result and the position of
its batch axis (lists of both for primitives with multiple results). Rules apply
primitives with `bind` only, so they run under any outer transform.

The batch axis is moved only where a rule needs it somewhere else, and unbatched
operands stay unbatched (a closed-over weight matrix keeps its shape).

The helpers import sibling modules when called (the primitive modules import this
one from their batching blocks).
"""
import numpy as np

from ._base import shape_of

NOT_BATCHED = None


def ndim(x):
    return len(shape_of(x))


def axis_size(args, dims):
    """The size of the batch axis, from the first batched operand."""
    for x, d in zip(args, dims):
        if d is not None:
            return shape_of(x)[d]
    raise ValueError("axis_size: no operand is batched")


def phys(axis, bdim):
    """The physical position of logical axis `axis` in an array batched at `bdim`."""
    return axis + 1 if axis >= bdim else axis


def phys_axes(axes, bdim):
    return tuple(a + 1 if a >= bdim else a for a in axes)


def moveaxis(x, src, dst):
    """x with its axis `src` moved to position `dst` (a transpose; none if equal)."""
    if src == dst:
        return x
    from .shape_ops import transpose
    n = ndim(x)
    perm = [i for i in range(n) if i != src]
    perm.insert(dst, src)
    return transpose(x, tuple(perm))


def broadcast_batch(x, size, dst):
    """An unbatched x given a batch axis of `size` at `dst` (a broadcast: a view
    when eager, one broadcast_in_dim equation when staged)."""
    from .shape_ops import broadcast_in_dim
    shape = list(shape_of(x))
    n = len(shape)
    shape.insert(dst, size)
    dims = tuple(i if i < dst else i + 1 for i in range(n))
    return broadcast_in_dim(x, tuple(shape), dims)


def bdim_to(x, d, size, dst):
    """x (batched at d, or unbatched when d is None) batched at dst."""
    if d is None:
        return broadcast_batch(x, size, dst)
    return moveaxis(x, d, dst)


def bdim_to_front(x, d, size):
    return bdim_to(x, d, size, 0)


def insert_unit(x, pos):
    """x with a size-1 axis inserted at `pos` (a reshape)."""
    from .shape_ops import reshape
    shape = list(shape_of(x))
    shape.insert(pos, 1)
    return reshape(x, tuple(shape))


# --- elementwise primitives (NumPy broadcasting) -------------------------------------------

def _align_elementwise(args, dims):
    """Operands arranged so that NumPy broadcasting lines up their logical axes and
    puts the batch axis at one position; returns (args, out_dim). Operands already
    in place are passed through untouched."""
    ranks = [ndim(x) - (d is not None) for x, d in zip(args, dims)]
    r = max(ranks)
    out_d = None
    for x, d, rk in zip(args, dims, ranks):
        if d is not None and (out_d is None or rk == r):
            out_d = r - rk + d
            if rk == r:
                break
    new = []
    for x, d, rk in zip(args, dims, ranks):
        if d is None:
            # its logical axes align with the output's last rk ones
            if rk > r - out_d:
                x = insert_unit(x, out_d - (r - rk))
        elif r - rk + d != out_d:
            if out_d >= r - rk:
                x = moveaxis(x, d, out_d - (r - rk))
            else:
                # batch axis before the operand's own axes: lead with it and pad
                # with unit axes up to the output's batch position
                from .shape_ops import reshape
                x = moveaxis(x, d, 0)
                s = shape_of(x)
                x = reshape(x, (s[0],) + (1,) * (r - rk - out_d) + tuple(s[1:]))
        new.append(x)
    return new, out_d


def elementwise(prim):
    """The rule of an n-ary elementwise primitive that broadcasts like NumPy."""
    bind = prim.bind
    multiple = prim.multiple_results

    def rule(args, dims, **params):
        if len(args) == 1:
            out = bind(*args, **params)
            return out, ([dims[0]] * len(out) if multiple else dims[0])
        args, out_d = _align_elementwise(args, dims)
        out = bind(*args, **params)
        return out, ([out_d] * len(out) if multiple else out_d)
    rule.__name__ = f"{prim.name}_batch"
    return rule


def batch_elementwise(prim, args, dims, **params):
    """Apply an elementwise primitive to batched operands (for rules composed of
    elementwise steps)."""
    args, out_d = _align_elementwise(list(args), list(dims))
    return prim.bind(*args, **params), out_d


def reduction(prim):
    """The rule of a reduction over static `axes`."""
    bind = prim.bind

    def rule(args, dims, axes, **params):
        (x,), (d,) = args, dims
        new_axes = phys_axes(axes, d)
        out_d = d - sum(1 for a in axes if a < d)
        return bind(x, axes=new_axes, **params), out_d
    rule.__name__ = f"{prim.name}_batch"
    return rule


def same_bdim(args, dims):
    """All operands batched at one position (the first batched operand's);
    unbatched ones are broadcast. Returns (args, bdim)."""
    size = axis_size(args, dims)
    b = next(d for d in dims if d is not None)
    return [x if d == b else bdim_to(x, d, size, b) for x, d in zip(args, dims)], b


def batch_iota(size, shape, dim, dtype):
    """iota along the batch axis: an array of `shape` counting 0..size-1 along dim."""
    from .convert import broadcasted_iota
    return broadcasted_iota(dtype, shape, dim)


__all__ = ['NOT_BATCHED', 'ndim', 'axis_size', 'phys', 'phys_axes', 'moveaxis',
           'broadcast_batch', 'bdim_to', 'bdim_to_front', 'insert_unit', 'elementwise',
           'batch_elementwise', 'reduction', 'same_bdim', 'batch_iota']
