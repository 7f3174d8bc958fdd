"""The differentiation API: jvp, linearize, vjp, grad, value_and_grad,
linear_transpose, jacfwd, jacrev, hessian.

vjp is linearize followed by transposition of the linear jaxpr; there is no tape
besides that jaxpr.
"""
import numpy as np

from tracer import (tree_map, Tracer, Zero, get_aval, tangent_aval, new_trace, float0,
                    tree_flatten, tree_unflatten, eval_jaxpr, trace_to_jaxpr,
                    native)
from tracer.core import pause_gc
from tracer.avals import numpy_scalar
from tracer.errors import with_user_line
from .jvp import JVPTrace, JVPTracer, unpack
from .linearize import linearize_flat
from .transpose import backward_pass
from .replay import jvp_of_transform
from tracer.core import _trace_stack


def _zeros(aval):
    return np.zeros(aval.shape, aval.dtype)


def _own(x):
    """Outputs handed to the user: NumPy values (not Python scalars), and never a
    read-only broadcast view."""
    if type(x) is np.ndarray:
        return x.copy() if not x.flags.writeable else x
    return numpy_scalar(x)


_count_nonzero = np.count_nonzero


def _natives(xs):
    """native() of each value; the list itself when none needs converting."""
    for x in xs:
        if type(x) is np.ndarray and not x.dtype.isnative:
            return [native(x) for x in xs]
    return xs


def _check_tangent(p, t, i):
    if type(p) is np.ndarray and type(t) is np.ndarray and p.dtype.kind in 'fc':
        # the common case: a floating array and its tangent
        if t.shape != p.shape or t.dtype != p.dtype:
            return _check_tangent_slow(p, t, i)
        # (a nonzero first element settles it without a pass over the array)
        if t.size and t.item(0) != 0 or _count_nonzero(t):
            return t
        return Zero(tangent_aval(get_aval(p)))
    return _check_tangent_slow(p, t, i)


def _check_tangent_slow(p, t, i):
    pa = get_aval(p)
    ta = get_aval(t)
    want = tangent_aval(pa)
    if ta.shape != pa.shape:
        raise ValueError(f"jvp: primal {i} has shape {pa.shape} but its tangent has shape "
                         f"{ta.shape}; tangents must match their primals' shapes.")
    if want.dtype == float0:
        return Zero(want)
    if ta.dtype != pa.dtype and not (ta.weak_type or pa.weak_type):
        raise TypeError(f"jvp: primal {i} has dtype {pa.dtype.name} but its tangent has dtype "
                        f"{ta.dtype.name}; tangent dtypes must match their primals'.")
    if not isinstance(t, Tracer) and not np.any(t):
        return Zero(want)   # a concrete zero tangent stays symbolic: nothing is computed for it
    return t


def _flat_fun(fun, in_tree, out_store, has_aux=False):
    def flat(*args):
        out = fun(*tree_unflatten(in_tree, list(args)))
        if has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("has_aux=True requires the function to return a pair "
                                "(output, auxiliary data)")
            out, aux = out
            # aux is returned as a value: unbox this transform's tracers now,
            # while the trace is alive (outer tracers stay as they are)
            trace = next((a._trace for a in args if isinstance(a, JVPTracer)), None)
            if trace is not None:
                aux = tree_map(lambda a: unpack(trace, a)[0], aux)
            out_store['aux'] = aux
        leaves, tree = tree_flatten(out)
        out_store['tree'] = tree
        return leaves
    return flat


def _check_arg_tuple(name, x, what):
    if not isinstance(x, (tuple, list)):
        raise TypeError(f"{name}: {what} must be a tuple or list of arguments, got "
                        f"{type(x).__name__}. Write {name}(f, (x,), (t,)) for one argument.")


# --- jvp, linearize --------------------------------------------------------------------

def jvp(fun, primals, tangents, has_aux=False):
    """(fun(*primals), J(primals) @ tangents) for pytrees of arrays."""
    return _jvp(fun, primals, tangents, has_aux, True)


def _jvp_eager(fun, primals, tangents):
    return _jvp(fun, primals, tangents, False, False)


def _jvp(fun, primals, tangents, has_aux, replay):
    if type(primals) is not tuple:
        _check_arg_tuple('jvp', primals, 'primals')
        primals = tuple(primals)
    if type(tangents) is not tuple:
        _check_arg_tuple('jvp', tangents, 'tangents')
        tangents = tuple(tangents)
    flat_p, tree_p = tree_flatten(primals)
    flat_t, tree_t = tree_flatten(tangents)
    flat_p = _natives(flat_p)
    flat_t = _natives(flat_t)
    if tree_p is not tree_t and tree_p != tree_t:
        raise TypeError(f"jvp: primal and tangent arguments must have the same tree "
                        f"structure, got {tree_p} and {tree_t}")
    flat_t = [_check_tangent(p, t, i) for i, (p, t) in enumerate(zip(flat_p, flat_t))]
    if replay and not has_aux and not _trace_stack:
        spec = getattr(fun, '_replay_spec', None)
        if spec is not None:
            # jvp of grad at the top level (a Hessian-vector product): see replay.py
            # (grad's argnums are checked before f runs, as grad checks them)
            _argnums_tuple(spec[2], len(primals), 'grad')
            out = jvp_of_transform(_jvp_eager, spec, flat_p, tree_p, flat_t,
                                   [type(t) is Zero for t in flat_t])
            if out is not None:
                return out
    store = {}
    flat = _flat_fun(fun, tree_p, store, has_aux)
    trace = JVPTrace('jvp')
    with new_trace(trace):
        outs = flat(*[JVPTracer(trace, p, t) for p, t in zip(flat_p, flat_t)])
        pairs = [unpack(trace, o) for o in outs]
    tree = store['tree']
    primals_out = tree_unflatten(tree, [_own(p) for p, _ in pairs])
    tangents_out = tree_unflatten(tree, [_zeros(t.aval) if type(t) is Zero else _own(t)
                                         for _, t in pairs])
    if has_aux:
        return primals_out, tangents_out, store['aux']
    return primals_out, tangents_out


def linearize(fun, *primals, has_aux=False):
    """(fun(*primals), f_jvp) where f_jvp(*tangents) evaluates the linearized jaxpr
    (no re-tracing of fun)."""
    flat_p, in_tree = tree_flatten(primals)
    store = {}
    out_primals, lin = linearize_flat(_flat_fun(fun, in_tree, store, has_aux), flat_p)
    out_tree = store['tree']

    def f_jvp(*tangents):
        flat_t, tree_t = tree_flatten(tangents)
        if tree_t != in_tree:
            raise TypeError(f"linearize: f_jvp expects tangents structured as {in_tree}, "
                            f"got {tree_t}")
        flat_t = [_check_tangent(p, t, i) for i, (p, t) in enumerate(zip(flat_p, flat_t))]
        flat_t = [_zeros(t.aval) if type(t) is Zero else t for t in flat_t]
        outs = iter(eval_jaxpr(lin.jaxpr, lin.residuals, *flat_t))
        res = [_own(next(outs)) if nz else _zeros(a) for nz, a in zip(lin.nonzero, lin.out_avals)]
        return tree_unflatten(out_tree, res)

    f_jvp.jaxpr = lin.jaxpr
    out = tree_unflatten(out_tree, [_own(p) for p in out_primals])
    if has_aux:
        return out, f_jvp, store['aux']
    return out, f_jvp


# --- vjp ---------------------------------------------------------------------------

def _vjp_flat(fun, flat_p, in_tree, has_aux, name='vjp', dce=True):
    store = {}
    out_primals, lin = linearize_flat(_flat_fun(fun, in_tree, store, has_aux), flat_p, name,
                                      dce)
    return out_primals, lin, store


def _flat_cotangent(name, ct, out_tree):
    ct_flat, ct_tree = tree_flatten(ct)
    if ct_tree != out_tree:
        raise TypeError(f"{name}: the cotangent must have the output's structure "
                        f"{out_tree}, got {ct_tree}")
    return ct_flat


def _cts_from_backward(lin, ct_flat):
    cts_out = [c for c, nz in zip(ct_flat, lin.nonzero) if nz]
    cts_in = backward_pass(lin.jaxpr, lin.residuals, cts_out, all_linear=True)
    return _user_cotangents(cts_in, lin.in_avals)


def _user_cotangents(cts, avals):
    """Cotangents handed to the user: NumPy values, zeros for symbolic ones
    (backward_pass never returns one of its constants: see transpose.py)."""
    return [_zeros(a) if type(c) is Zero else _own(c) for c, a in zip(cts, avals)]


def vjp(fun, *primals, has_aux=False):
    """(fun(*primals), vjp_fn[, aux]); vjp_fn(ct) returns one cotangent per primal."""
    flat_p, in_tree = tree_flatten(primals)
    out_primals, lin, store = _vjp_flat(fun, flat_p, in_tree, has_aux)
    out_tree = store['tree']

    def vjp_fn(ct):
        ct_flat = _flat_cotangent('vjp_fn', ct, out_tree)
        for i, (c, a) in enumerate(zip(ct_flat, lin.out_avals)):
            ca = get_aval(c)
            if ca.shape != a.shape:
                raise ValueError(f"vjp_fn: cotangent {i} has shape {ca.shape}, but the "
                                 f"output has shape {a.shape}")
        return tree_unflatten(in_tree, _cts_from_backward(lin, ct_flat))

    out = tree_unflatten(out_tree, [_own(p) for p in out_primals])
    if has_aux:
        return out, vjp_fn, store['aux']
    return out, vjp_fn


# --- grad ----------------------------------------------------------------------------

def _argnums_tuple(argnums, nargs, name):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise ValueError(f"{name}: argnums={argnums!r} is out of range for a function "
                             f"called with {nargs} positional arguments")
    return single, tuple(a % nargs for a in nums)


def split_args(name, fun, argnums, args, kwargs):
    """-> (single, dyn_args, f_dyn): f_dyn(*dyn_args) calls fun(*args, **kwargs) with
    args[argnums] replaced by dyn_args; `single` when argnums is an int."""
    if argnums == 0 and type(argnums) is int and len(args) == 1 and not kwargs:
        return True, args, fun      # grad(f)(x): nothing to split (the common case)
    single, nums = _argnums_tuple(argnums, len(args), name)

    def f_dyn(*dyn_args):
        full = list(args)
        for i, v in zip(nums, dyn_args):
            full[i] = v
        return fun(*full, **kwargs)

    return single, tuple(args[i] for i in nums), f_dyn


def _check_inexact(name, flat):
    for x in flat:
        if (type(x) is np.ndarray or type(x) is JVPTracer) and x.dtype.kind in 'fc':
            continue    # (the common cases, without building an aval)
        a = get_aval(x)
        if a.dtype.kind not in 'fc':
            raise TypeError(
                f"{name} requires real- or complex-valued inputs (floating dtype), but got "
                f"{a.dtype.name} ({a.str_short()}). Convert with x.astype(float), or use "
                f"vjp/jvp for integer inputs (their derivative is a float0 zero).")


_seeds = {}


def _seed(dtype):
    """grad's output cotangent, 1 of the output's dtype (0-d; shared: never written)."""
    s = _seeds.get(dtype)
    if s is None:
        s = _seeds[dtype] = np.ones((), dtype)
        s.flags.writeable = False
    return s


def value_and_grad(fun, argnums=0, has_aux=False):
    """f -> (f(*args), gradient of f with respect to args[argnums])."""
    def value_and_grad_f(*args, **kwargs):
        # The collector stays paused from linearization to the gradients: the linear
        # jaxpr (about ten objects per operation, no cycles) is alive in between,
        # and a collection would scan all of it (see tracer/core.py pause_gc).
        with pause_gc():
            return _value_and_grad(args, kwargs)

    def _value_and_grad(args, kwargs):
        single, dyn, partial = split_args('grad', fun, argnums, args, kwargs)
        flat_p, in_tree = tree_flatten(dyn)
        _check_inexact('grad', flat_p)

        # The linear jaxpr is transposed at once and dropped: no dead-code pass
        # (transposition skips the equations no cotangent reaches).
        out_primals, lin, store = _vjp_flat(partial, flat_p, in_tree, has_aux, 'grad',
                                            dce=False)
        if len(out_primals) != 1 or store['tree'].kind is not None:
            raise TypeError(with_user_line(
                f"grad requires a function with a single scalar output; "
                f"{getattr(fun, '__name__', 'the function')} returned a "
                f"{'pytree ' + repr(store['tree']) if store['tree'].kind is not None else 'value'}. "
                f"Use jacrev/vjp for non-scalar outputs."))
        ans = out_primals[0]
        a = get_aval(ans)
        if a.shape != ():
            raise TypeError(with_user_line(
                f"grad requires a scalar-output function, but "
                f"{getattr(fun, '__name__', 'the function')} returned shape {a.shape} "
                f"({a.str_short()}). Reduce it (e.g. .sum()) or use jacrev / vjp."))
        if a.dtype.kind != 'f':
            raise TypeError(with_user_line(
                f"grad requires a real floating-point scalar output, got {a.str_short()}."))
        grads = tree_unflatten(in_tree, _cts_from_backward(lin, [_seed(a.dtype)]))
        g = grads[0] if single else grads
        value = _own(ans)
        if has_aux:
            return (value, store['aux']), g
        return value, g

    value_and_grad_f.__name__ = f"value_and_grad({getattr(fun, '__name__', 'fun')})"
    if not has_aux:
        value_and_grad_f._replay_spec = (value_and_grad, fun, argnums)
    return value_and_grad_f


def grad(fun, argnums=0, has_aux=False):
    """The gradient of a scalar-valued function with respect to args[argnums]."""
    vg = value_and_grad(fun, argnums, has_aux)

    def grad_f(*args, **kwargs):
        value, g = vg(*args, **kwargs)
        if has_aux:
            return g, value[1]
        return g

    grad_f.__name__ = f"grad({getattr(fun, '__name__', 'fun')})"
    if not has_aux:
        grad_f._replay_spec = (grad, fun, argnums)
    return grad_f


# --- linear_transpose ----------------------------------------------------------------

def linear_transpose(fun, *primals):
    """The transpose of a linear function; primals give the input shapes/dtypes."""
    flat_p, in_tree = tree_flatten(primals)
    in_avals = [get_aval(p).strip_weak_type() for p in flat_p]
    for a in in_avals:
        if a.dtype.kind not in 'fc':
            raise TypeError(f"linear_transpose requires floating inputs, got {a.str_short()}")
    store = {}
    jaxpr, consts = trace_to_jaxpr(_flat_fun(fun, in_tree, store), in_avals,
                                   name='linear_transpose')
    out_tree = store['tree']

    def f_transpose(ct):
        ct_flat = _flat_cotangent('linear_transpose', ct, out_tree)
        cts = backward_pass(jaxpr, consts, ct_flat)
        return tree_unflatten(in_tree, _user_cotangents(cts, in_avals))

    return f_transpose
