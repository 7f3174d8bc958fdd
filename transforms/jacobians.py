"""Dense Jacobians and Hessians: jacfwd (one JVP per input basis vector), jacrev
(one VJP per output basis vector), hessian = jacfwd(jacrev(f)).

Results have shape out.shape + in.shape for each (output leaf, input leaf) pair,
nested as the output pytree of input pytrees, as in JAX.
"""
import numpy as np

from tracer import tree_flatten, tree_unflatten, get_aval
from .ad import jvp, vjp, split_args, _check_inexact


def _basis(aval):
    n = aval.size
    eye = np.eye(n, dtype=aval.dtype)
    return [eye[i].reshape(aval.shape) for i in range(n)]


def _stack_last(cols, out_shape, in_shape):
    import primitives.numpy as pnp
    if not cols:
        return np.zeros(out_shape + in_shape)
    return pnp.reshape(pnp.stack(cols, axis=-1), out_shape + in_shape)


def _stack_first(rows, out_shape, in_shape):
    import primitives.numpy as pnp
    return pnp.reshape(pnp.stack(rows, axis=0), out_shape + in_shape)


def jacfwd(fun, argnums=0, has_aux=False):
    """Jacobian by forward mode: one JVP per input element."""
    def jac(*args, **kwargs):
        single, dyn, f_dyn = split_args('jacfwd', fun, argnums, args, kwargs)
        flat_in, in_tree = tree_flatten(dyn)
        _check_inexact('jacfwd', flat_in)

        def f_flat(*leaves):
            return f_dyn(*tree_unflatten(in_tree, list(leaves)))

        in_avals = [get_aval(x) for x in flat_in]
        cols = [[] for _ in flat_in]   # per input leaf: list of flat outputs per basis vector
        out_tree = None
        aux = None
        for j, a in enumerate(in_avals):
            for e in _basis(a):
                tangents = [e if k == j else np.zeros(b.shape, b.dtype)
                            for k, b in enumerate(in_avals)]
                res = jvp(f_flat, tuple(flat_in), tuple(tangents), has_aux=has_aux)
                out, t = res[0], res[1]
                if has_aux:
                    aux = res[2]
                t_flat, out_tree = tree_flatten(t)
                cols[j].append(t_flat)
        if out_tree is None:   # no input elements
            out, *rest = (fun(*args, **kwargs),)
            if has_aux:
                out, aux = out
            out_flat, out_tree = tree_flatten(out)
            blocks = [[np.zeros(get_aval(o).shape + a.shape) for a in in_avals] for o in out_flat]
        else:
            out_flat, _ = tree_flatten(out)
            blocks = []
            for oi, o in enumerate(out_flat):
                oshape = get_aval(o).shape
                blocks.append([_stack_last([c[oi] for c in cols[j]], oshape, a.shape)
                               for j, a in enumerate(in_avals)])
        result = _assemble(blocks, out_tree, in_tree, single)
        return (result, aux) if has_aux else result

    jac.__name__ = f"jacfwd({getattr(fun, '__name__', 'fun')})"
    return jac


def jacrev(fun, argnums=0, has_aux=False):
    """Jacobian by reverse mode: one VJP per output element."""
    def jac(*args, **kwargs):
        single, dyn, f_dyn = split_args('jacrev', fun, argnums, args, kwargs)
        flat_in, in_tree = tree_flatten(dyn)
        _check_inexact('jacrev', flat_in)

        res = vjp(f_dyn, *dyn, has_aux=has_aux)
        out, vjp_fn = res[0], res[1]
        aux = res[2] if has_aux else None
        out_flat, out_tree = tree_flatten(out)
        out_avals = [get_aval(o) for o in out_flat]
        in_avals = [get_aval(x) for x in flat_in]
        rows = [[[] for _ in in_avals] for _ in out_avals]
        for i, a in enumerate(out_avals):
            for e in _basis(a):
                cts = [e if k == i else np.zeros(b.shape, b.dtype) for k, b in enumerate(out_avals)]
                g_flat, _ = tree_flatten(vjp_fn(tree_unflatten(out_tree, cts)))
                for j in range(len(in_avals)):
                    rows[i][j].append(g_flat[j])
        blocks = []
        for i, a in enumerate(out_avals):
            blocks.append([_stack_first(rows[i][j], a.shape, b.shape) if rows[i][j]
                           else np.zeros(a.shape + b.shape, b.dtype)
                           for j, b in enumerate(in_avals)])
        result = _assemble(blocks, out_tree, in_tree, single)
        return (result, aux) if has_aux else result

    jac.__name__ = f"jacrev({getattr(fun, '__name__', 'fun')})"
    return jac


def _assemble(blocks, out_tree, in_tree, single):
    per_out = []
    for row in blocks:
        inner = tree_unflatten(in_tree, row)   # a tuple over argnums
        per_out.append(inner[0] if single else inner)
    return tree_unflatten(out_tree, per_out)


def hessian(fun, argnums=0, has_aux=False):
    """Dense Hessian: jacfwd of jacrev."""
    return jacfwd(jacrev(fun, argnums, has_aux=has_aux), argnums, has_aux=has_aux)
