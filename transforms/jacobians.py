"""Dense Jacobians and Hessians, built on vmap: jacfwd pushes the whole standard
basis of the inputs through one batched JVP, jacrev pulls the standard basis of the
outputs back through one batched VJP, and hessian = jacfwd(jacrev(f)).

The basis is symbolic (primitives/_basis.py): vmap carries it as "slice j is d[j]
times the j-th one-hot" through scalings, sums and reshapes, and a contraction
against it returns the other operand's rows or columns (`W @ basis` is W), so the
dense product with an identity matrix is never formed. It is materialised only
before primitives without such a rule, and results are ordinary arrays.

Results have shape out.shape + in.shape for each (output leaf, input leaf) pair,
nested as the output pytree of input pytrees (a tuple over argnums when argnums is
a tuple), as in JAX.
"""
import numpy as np

from tracer import tree_flatten, tree_unflatten, get_aval, new_trace, Zero, native
from .ad import (split_args, _check_inexact, _own, _zeros, _flat_fun, _vjp_flat,
                 _cts_from_backward)
from .jvp import JVPTrace, JVPTracer, unpack
from .vmap import vmap
from primitives._basis import Basis


def _std_basis(avals):
    """(n, parts): the standard basis of the leaves' total size n, one symbolic part
    per leaf (primitives/_basis.py): slices off..off+k of the batch are the one-hots
    of that leaf (of its shape and dtype), the other slices zero. vmap keeps them
    symbolic through the primitives that have structured rules and materialises
    them (as slices of the identity) only where needed."""
    sizes = [a.size for a in avals]
    n = sum(sizes)
    parts = []
    off = 0
    for a, k in zip(avals, sizes):
        parts.append(Basis(n, off, a.shape, a.dtype))
        off += k
    return n, parts


def _split(x, axis_first, sizes, shapes, lead_shape):
    """Split the basis axis of x (first or last) into one block per leaf, reshaped
    to lead_shape + leaf shape (axis last) or leaf shape + lead_shape (axis first)."""
    from primitives.shape_ops import reshape
    from primitives.slicing import slice as slice_
    xs = tuple(np.shape(x)) if not hasattr(x, 'aval') else x.aval.shape
    out = []
    off = 0
    for k, shape in zip(sizes, shapes):
        if len(sizes) > 1:
            start = [0] * len(xs)
            limit = list(xs)
            d = 0 if axis_first else len(xs) - 1
            start[d], limit[d] = off, off + k
            part = slice_(x, start, limit)
        else:
            part = x
        out.append(reshape(part, shape + lead_shape if axis_first else lead_shape + shape))
        off += k
    return out


def jacfwd(fun, argnums=0, has_aux=False):
    """Jacobian by forward mode: one JVP, vmapped over the inputs' standard basis."""
    def jac(*args, **kwargs):
        single, dyn, f_dyn = split_args('jacfwd', fun, argnums, args, kwargs)
        flat_in, in_tree = tree_flatten(dyn)
        flat_in = [native(x) for x in flat_in]
        _check_inexact('jacfwd', flat_in)
        in_avals = [get_aval(x) for x in flat_in]
        n, basis = _std_basis(in_avals)

        store = {}
        flat = _flat_fun(f_dyn, in_tree, store, has_aux)

        def push(*tangents):
            # jvp on the flat arguments (the public jvp's argument checks are moot:
            # the tangents are the standard basis, of the primals' shapes and dtypes)
            trace = JVPTrace('jacfwd')
            with new_trace(trace):
                outs = flat(*[JVPTracer(trace, p, t) for p, t in zip(flat_in, tangents)])
                pairs = [unpack(trace, o) for o in outs]
            return ([p for p, _ in pairs],
                    [_zeros(t.aval) if type(t) is Zero else t for _, t in pairs],
                    store.get('aux'))

        out_flat, cols_flat, aux = vmap(push, in_axes=0, out_axes=(None, -1, None),
                                        axis_size=n)(*basis)
        out_tree = store['tree']
        sizes = [a.size for a in in_avals]
        shapes = [a.shape for a in in_avals]
        blocks = [_split(c, False, sizes, shapes, get_aval(o).shape)
                  for o, c in zip(out_flat, cols_flat)]
        result = _assemble(blocks, out_tree, in_tree, single)
        return (result, aux) if has_aux else result

    jac.__name__ = f"jacfwd({getattr(fun, '__name__', 'fun')})"
    return jac


def jacrev(fun, argnums=0, has_aux=False):
    """Jacobian by reverse mode: one VJP, vmapped over the outputs' standard basis."""
    def jac(*args, **kwargs):
        single, dyn, f_dyn = split_args('jacrev', fun, argnums, args, kwargs)
        flat_in, in_tree = tree_flatten(dyn)
        _check_inexact('jacrev', flat_in)
        out_flat, lin, store = _vjp_flat(f_dyn, list(flat_in), in_tree, has_aux, 'jacrev')
        out_avals = [get_aval(o) for o in out_flat]
        in_avals = [get_aval(x) for x in flat_in]
        m, basis = _std_basis(out_avals)

        def pull(*cts):
            return _cts_from_backward(lin, list(cts))

        rows = vmap(pull, in_axes=0, out_axes=0, axis_size=m)(*basis)
        out_tree = store['tree']
        sizes = [a.size for a in out_avals]
        shapes = [a.shape for a in out_avals]
        # per input leaf j: one block per output leaf i, of shape out_i + in_j
        per_in = [_split(r, True, sizes, shapes, a.shape) for r, a in zip(rows, in_avals)]
        blocks = [[per_in[j][i] for j in range(len(in_avals))] for i in range(len(out_avals))]
        result = _assemble(blocks, out_tree, in_tree, single)
        return (result, store['aux']) if has_aux else result

    jac.__name__ = f"jacrev({getattr(fun, '__name__', 'fun')})"
    return jac


def _assemble(blocks, out_tree, in_tree, single):
    per_out = []
    for row in blocks:
        inner = tree_unflatten(in_tree, [_own(b) for b in row])   # a tuple over argnums
        per_out.append(inner[0] if single else inner)
    return tree_unflatten(out_tree, per_out)


def hessian(fun, argnums=0, has_aux=False):
    """Dense Hessian: jacfwd of jacrev."""
    return jacfwd(jacrev(fun, argnums, has_aux=has_aux), argnums, has_aux=has_aux)
