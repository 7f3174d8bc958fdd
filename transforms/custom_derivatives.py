"""User-defined derivative rules: custom_jvp and custom_vjp, with JAX's semantics.

    @custom_jvp
    def f(x): ...
    @f.defjvp
    def f_jvp(primals, tangents): return f(*primals), tangent_out

    @custom_vjp
    def g(x): ...
    def g_fwd(x): return g(x), residuals
    def g_bwd(residuals, ct): return (ct_x,)
    g.defvjp(g_fwd, g_bwd)

Called on traced arguments, the function is traced once into a jaxpr and bound as
a higher-order primitive carrying it and the rules:

    custom_jvp_call[call_jaxpr jvp name num_consts]   *consts, *args
    custom_vjp_call[bwd call_jaxpr fwd name num_consts]  *consts, *args

Evaluating (eagerly, under jit, or where no derivative is taken) runs the
function's jaxpr; the JVP trace applies the rule instead. For custom_vjp the JVP
rule runs `fwd` and emits `custom_lin` (residuals, tangents -> output tangents),
linear in the tangents, whose transpose calls `bwd`: so grad calls the user's
`bwd` on the backward pass. Called on concrete arguments the function just runs.

Forward mode of a custom_vjp function (jvp, jacfwd, and jvp of its grad) also
works, which JAX does not support: `custom_lin` evaluated forwards is the
transpose of `bwd` (bwd is linear in the cotangent, so it is traced once and
transposed). Derivatives of higher order differentiate through `fwd` and `bwd`
themselves, as in JAX.

Values the function closes over that are being differentiated are not covered by
the rule (it only says how to differentiate with respect to the explicit
arguments): that raises JAX's error, suggesting to pass them as arguments.
"""
import functools
import inspect

import numpy as np

from tracer import (Primitive, Zero, Tracer, ClosedJaxpr, tree_flatten, tree_unflatten,
                    get_aval, tangent_aval, float0, is_undefined, trace_to_jaxpr,
                    ShapedArray)
from tracer.errors import with_user_line
from primitives._jaxpr_util import trace_fun, python_fn, fun_name, same_type

__all__ = ['custom_jvp', 'custom_vjp', 'custom_jvp_call_p', 'custom_vjp_call_p',
           'custom_lin_p']


def _is_float(aval):
    return aval.dtype.kind in 'fc'


@functools.lru_cache(maxsize=256)
def _signature(fun):
    try:
        sig = inspect.signature(fun)
    except (TypeError, ValueError):
        return None
    if all(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
           for p in sig.parameters.values()):
        return False   # nothing to resolve for positional calls
    return sig


def _resolve_args(fun, args, kwargs):
    """Keyword arguments and defaults become positional (as JAX resolves them)."""
    try:
        sig = _signature(fun)
    except TypeError:   # unhashable callable
        sig = inspect.signature(fun)
    if sig is None or (sig is False and not kwargs):
        return tuple(args)
    try:
        ba = (sig or inspect.signature(fun)).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{fun_name(fun)}: {e}") from None
    ba.apply_defaults()
    if ba.kwargs:
        raise TypeError(f"{fun_name(fun)}: keyword-only arguments are not supported by "
                        f"custom_jvp / custom_vjp functions; pass them positionally")
    return ba.args


def _split_nondiff(nondiff_argnums, args):
    nargs = len(args)
    nums = sorted(set(i % nargs for i in nondiff_argnums if -nargs <= i < nargs))
    if len(nums) != len(set(nondiff_argnums)):
        raise ValueError(f"nondiff_argnums={nondiff_argnums} out of range for a call with "
                         f"{nargs} arguments")
    nondiff = [(i, args[i]) for i in nums]
    dyn = [a for i, a in enumerate(args) if i not in nums]
    return nondiff, dyn


def _merge(nondiff, dyn):
    out = list(dyn)
    for i, v in nondiff:
        out.insert(i, v)
    return out


def _closure_error(kind):
    return TypeError(with_user_line(
        f"Detected differentiation of a {kind} function with respect to a closed-over "
        f"value. That isn't supported because the custom {kind[7:].upper()} rule only "
        f"specifies how to differentiate the {kind} function with respect to explicit "
        f"input parameters. Fix: pass the closed-over value as an explicit argument of "
        f"the function (and handle it in the rule)."))


def _aval_str(x):
    try:
        return get_aval(x).str_short()
    except TypeError:
        return type(x).__name__


def _conform(x, want, what):
    """`x` as a value of aval `want` (Python scalars take its dtype), else raise
    TypeError(what(got))."""
    a = get_aval(x)
    if same_type(a, want):
        return x
    if a.shape == want.shape and a.weak_type and want.dtype.kind in 'fc':
        from primitives.convert import convert_element_type
        return convert_element_type(x, want.dtype) if isinstance(x, Tracer) \
            else np.asarray(x, want.dtype)
    raise TypeError(what(a.str_short()))


# ======================================================================================
# custom_jvp
# ======================================================================================

custom_jvp_call_p = Primitive('custom_jvp_call', multiple_results=True)


def _cj_impl(*args, call_jaxpr, jvp, name, num_consts):
    return python_fn(call_jaxpr)(*args)


def _cj_abstract(*avals, call_jaxpr, jvp, name, num_consts):
    want = call_jaxpr.in_avals
    if len(avals) != len(want) or not all(map(same_type, avals, want)):
        raise TypeError(f"custom_jvp_call ({name}): called with "
                        f"({', '.join(a.str_short() for a in avals)}) but its jaxpr takes "
                        f"({', '.join(a.str_short() for a in want)})")
    return call_jaxpr.out_avals


def _cj_jvp(primals, tangents, *, call_jaxpr, jvp, name, num_consts):
    avals = call_jaxpr.in_avals
    if any(type(t) is not Zero and _is_float(a)
           for t, a in zip(tangents[:num_consts], avals)):
        raise _closure_error('custom_jvp')
    return jvp(primals[num_consts:], tangents[num_consts:])


class _JVPRule:
    """The user's JVP rule, applied to flat primals and tangents; checks its outputs."""

    def __init__(self, owner, rule, nondiff, in_tree, out_tree, in_avals, out_avals):
        self.owner, self.rule = owner, rule
        self.nondiff, self.in_tree, self.out_tree = nondiff, in_tree, out_tree
        self.in_avals, self.out_avals = in_avals, out_avals
        self.__name__ = getattr(rule, '__name__', 'jvp')

    def __call__(self, primals, tangents):
        ts = [np.zeros(tangent_aval(a).shape, tangent_aval(a).dtype) if type(t) is Zero else t
              for t, a in zip(tangents, self.in_avals)]
        p = tuple(tree_unflatten(self.in_tree, list(primals)))
        t = tuple(tree_unflatten(self.in_tree, ts))
        nondiff = [v for _, v in self.nondiff]
        out = self.rule(*nondiff, p, t)
        return self.check(out)

    def check(self, out):
        rule_n, f_n = fun_name(self.rule), fun_name(self.owner.fun)
        head = f"Custom JVP rule {rule_n} for function {f_n}"
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(with_user_line(
                f"{head} must return a pair (primal_out, tangent_out), got "
                f"{type(out).__name__}"))
        p_out, t_out = out
        pf, ptree = tree_flatten(p_out)
        tf, ttree = tree_flatten(t_out)
        if ptree != self.out_tree:
            raise TypeError(with_user_line(
                f"{head} must produce a primal output with the structure of the function's "
                f"output {self.out_tree}, got {ptree}"))
        if ttree != self.out_tree:
            raise TypeError(with_user_line(
                f"{head} must produce primal and tangent outputs with equal container "
                f"(pytree) structures, got {self.out_tree} and {ttree}"))
        p_res, t_res = [], []
        for i, (p, t, a) in enumerate(zip(pf, tf, self.out_avals)):
            p_res.append(_conform(p, a, lambda got, i=i, a=a: with_user_line(
                f"{head} must produce a primal output of the function's type: output {i} "
                f"of {f_n} is {a.str_short()} but the rule's primal output is {got}")))
            ta = tangent_aval(a)
            if ta.dtype == float0:
                t_res.append(Zero(ta))
                continue
            if type(t) is Zero:
                t_res.append(t)
                continue
            t_res.append(_conform(t, ta, lambda got, i=i, a=a, ta=ta: with_user_line(
                f"{head} must produce primal and tangent outputs with corresponding shapes "
                f"and dtypes: output {i} is {a.str_short()} (its tangent must be "
                f"{ta.str_short()}) but the rule's tangent output is {got}")))
        return p_res, t_res


custom_jvp_call_p.impl = _cj_impl
custom_jvp_call_p.abstract_eval = _cj_abstract
custom_jvp_call_p.jvp = _cj_jvp


class custom_jvp:
    """A function with a user-defined JVP rule (decorator), as jax.custom_jvp.

    f.defjvp(rule): rule(*nondiff_args, primals, tangents) -> (primal_out, tangent_out),
    primals and tangents being tuples of the (differentiable) arguments.
    f.defjvps(*rules): one rule per argument, rule_i(t_i, primal_out, *primals)."""

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.jvp = None

    def defjvp(self, jvp):
        self.jvp = jvp
        return jvp

    def defjvps(self, *jvps):
        if self.nondiff_argnums:
            raise TypeError("defjvps does not support nondiff_argnums; use defjvp")

        def jvp(primals, tangents):
            out = self(*primals)
            out_flat, out_tree = tree_flatten(out)
            total = None
            for rule, t in zip(jvps, tangents):
                if rule is None:
                    continue
                c = tree_flatten(rule(t, out, *primals))[0]
                total = c if total is None else [a + b for a, b in zip(total, c)]
            if total is None:
                total = [np.zeros(np.shape(o), get_aval(o).dtype) for o in out_flat]
            return out, tree_unflatten(out_tree, total)
        jvp.__name__ = 'defjvps(' + ', '.join(getattr(j, '__name__', 'None') for j in jvps) + ')'
        self.jvp = jvp
        return jvp

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        name = getattr(self.fun, '__name__', 'fun')
        if self.jvp is None:
            raise AttributeError(f"No JVP defined for custom_jvp function {name} using "
                                 f"defjvp.")
        args = _resolve_args(self.fun, args, kwargs)
        nondiff, dyn = _split_nondiff(self.nondiff_argnums, args)
        flat, in_tree = tree_flatten(tuple(dyn))
        if not any(isinstance(x, Tracer) for x in flat):
            return self.fun(*args)
        avals = [get_aval(x) for x in flat]
        closed, out_tree, lifted = trace_fun(
            lambda *d: self.fun(*_merge(nondiff, d)), in_tree, avals, 'custom_jvp')
        rule = _JVPRule(self, self.jvp, nondiff, in_tree, out_tree, avals, closed.out_avals)
        outs = custom_jvp_call_p.bind(*lifted, *flat, call_jaxpr=closed, jvp=rule, name=name,
                                      num_consts=len(lifted))
        return tree_unflatten(out_tree, outs)


# ======================================================================================
# custom_vjp
# ======================================================================================

custom_vjp_call_p = Primitive('custom_vjp_call', multiple_results=True)
custom_lin_p = Primitive('custom_lin', multiple_results=True)


def _cv_impl(*args, call_jaxpr, fwd, bwd, name, num_consts):
    return python_fn(call_jaxpr)(*args)


def _cv_abstract(*avals, call_jaxpr, fwd, bwd, name, num_consts):
    return _cj_abstract(*avals, call_jaxpr=call_jaxpr, jvp=None, name=name,
                        num_consts=num_consts)


def _cv_jvp(primals, tangents, *, call_jaxpr, fwd, bwd, name, num_consts):
    avals = call_jaxpr.in_avals
    if any(type(t) is not Zero and _is_float(a)
           for t, a in zip(tangents[:num_consts], avals)):
        raise _closure_error('custom_vjp')
    outs, res = fwd(primals[num_consts:])
    in_avals = avals[num_consts:]
    nonzeros = tuple(type(t) is not Zero and _is_float(a)
                     for t, a in zip(tangents[num_consts:], in_avals))
    out_float = [_is_float(a) for a in call_jaxpr.out_avals]
    ts = [t for t, nz in zip(tangents[num_consts:], nonzeros) if nz]
    if not ts or not any(out_float):
        return outs, [Zero(tangent_aval(a)) for a in call_jaxpr.out_avals]
    res_flat, res_tree = tree_flatten(res)
    for r in res_flat:
        get_aval(r)   # residuals must be arrays (raises a TypeError naming the value)
    lin = _LinRule(bwd, res_tree, nonzeros, tuple(in_avals), tuple(call_jaxpr.out_avals),
                   fwd.out_tree)
    t_outs = iter(custom_lin_p.bind(*res_flat, *ts, bwd=lin, num_res=len(res_flat)))
    return outs, [next(t_outs) if f else Zero(tangent_aval(a))
                  for f, a in zip(out_float, call_jaxpr.out_avals)]


class _FwdRule:
    def __init__(self, owner, fwd, nondiff, in_tree, out_tree, out_avals):
        self.owner, self.fwd, self.nondiff = owner, fwd, nondiff
        self.in_tree, self.out_tree, self.out_avals = in_tree, out_tree, out_avals
        self.__name__ = getattr(fwd, '__name__', 'fwd')

    def __call__(self, primals):
        args = _merge(self.nondiff, tree_unflatten(self.in_tree, list(primals)))
        out = self.fwd(*args)
        head = (f"Custom VJP fwd rule {fun_name(self.fwd)} for function "
                f"{fun_name(self.owner.fun)}")
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(with_user_line(
                f"{head} must produce a pair (list or tuple of length two) of the primal "
                f"output and the residuals, got {type(out).__name__}"))
        p_out, res = out
        pf, ptree = tree_flatten(p_out)
        if ptree != self.out_tree:
            raise TypeError(with_user_line(
                f"{head} must produce a primal output with the structure of the function's "
                f"output {self.out_tree}, got {ptree}"))
        f_n = fun_name(self.owner.fun)
        pf = [_conform(p, a, lambda got, i=i, a=a: with_user_line(
            f"{head} must produce a primal output equal in type to the output of {f_n}: "
            f"output {i} is {a.str_short()} but fwd produced {got}"))
            for i, (p, a) in enumerate(zip(pf, self.out_avals))]
        return pf, res


class _BwdRule:
    def __init__(self, owner, bwd, nondiff, in_tree):
        self.owner, self.bwd, self.nondiff, self.in_tree = owner, bwd, nondiff, in_tree
        self.__name__ = getattr(bwd, '__name__', 'bwd')

    def __repr__(self):
        return self.__name__


class _LinRule:
    """What custom_lin needs: the bwd rule, the residuals' structure, which inputs have
    tangents, and the primal input/output types."""

    def __init__(self, bwd, res_tree, nonzeros, in_avals, out_avals, out_tree):
        self.bwd, self.res_tree, self.nonzeros = bwd, res_tree, nonzeros
        self.in_avals, self.out_avals, self.out_tree = in_avals, out_avals, out_tree
        self.__name__ = bwd.__name__

    def __repr__(self):
        return self.__name__

    def cotangents(self, res, cts):
        """bwd(res, cts) checked -> cotangent per input (None for none)."""
        from tracer import tree_structure
        b = self.bwd
        owner = b.owner
        cts_full = iter(cts)
        ct_vals = [next(cts_full) if _is_float(a) else
                   np.zeros(a.shape, float0) for a in self.out_avals]
        ct_tree = tree_unflatten(self.out_tree, ct_vals)
        r = tree_unflatten(self.res_tree, list(res))
        got = b.bwd(*[v for _, v in b.nondiff], r, ct_tree)
        head = f"Custom VJP bwd rule {fun_name(b.bwd)} for function {fun_name(owner.fun)}"
        n_args = b.in_tree.num_leaves
        in_struct = tree_unflatten(b.in_tree, [0] * n_args)
        if not isinstance(got, (tuple, list)) or len(got) != len(in_struct):
            raise TypeError(with_user_line(
                f"{head} must produce a tuple of length equal to the number of "
                f"(differentiable) arguments of the function ({len(in_struct)}), got "
                f"{type(got).__name__}"
                f"{' of length ' + str(len(got)) if isinstance(got, (tuple, list)) else ''}"))
        flat = []
        for arg, g in zip(in_struct, got):
            arg_tree = tree_structure(arg)
            if g is None:
                flat += [None] * arg_tree.num_leaves
                continue
            gl, gt = tree_flatten(g)
            if gt != arg_tree:
                raise TypeError(with_user_line(
                    f"{head} must produce cotangents with the structure of the arguments: "
                    f"expected {arg_tree}, got {gt}"))
            flat += gl
        result = []
        for i, (g, a) in enumerate(zip(flat, self.in_avals)):
            if g is None or not _is_float(a):
                result.append(None)
                continue
            ta = tangent_aval(a)
            result.append(_conform(g, ta, lambda got, i=i, ta=ta: with_user_line(
                f"{head} must produce cotangents of the arguments' shapes and dtypes: "
                f"argument leaf {i} is {ta.str_short()} but bwd produced {got}")))
        return result


def _lin_abstract(*avals, bwd, num_res):
    return [tangent_aval(a) for a in bwd.out_avals if _is_float(a)]


def _lin_transpose(cts, *args, bwd, num_res):
    res = args[:num_res]
    out_avals = [a for a in bwd.out_avals if _is_float(a)]
    cts = [np.zeros(tangent_aval(a).shape, tangent_aval(a).dtype) if type(c) is Zero else c
           for c, a in zip(cts, out_avals)]
    ct_in = bwd.cotangents(res, cts)
    out = [None] * num_res
    for c, nz, a in zip(ct_in, bwd.nonzeros, bwd.in_avals):
        if nz:
            out.append(Zero(tangent_aval(a)) if c is None else c)
    return out


def _lin_forward(res, ts, bwd):
    """custom_lin evaluated forwards: the transpose of ct -> bwd(res, ct), traced once
    on the output cotangents and run backwards (in primitives, so it works on tracers
    of enclosing transforms too)."""
    from .transpose import backward_pass
    out_avals = [tangent_aval(a) for a in bwd.out_avals if _is_float(a)]
    tan_in = [a for nz, a in zip(bwd.nonzeros, bwd.in_avals) if nz]

    def fun(*cts):
        got = bwd.cotangents(res, list(cts))
        return [g if g is not None else np.zeros(tangent_aval(a).shape, tangent_aval(a).dtype)
                for g, nz, a in zip(got, bwd.nonzeros, bwd.in_avals) if nz]
    jaxpr, consts = trace_to_jaxpr(fun, out_avals, name='custom_lin')
    outs = backward_pass(jaxpr, consts, list(ts))
    return [np.zeros(a.shape, a.dtype) if type(o) is Zero else o
            for o, a in zip(outs, out_avals)]


def _lin_impl(*args, bwd, num_res):
    return _lin_forward(args[:num_res], args[num_res:], bwd)


def _lin_jvp(primals, tangents, *, bwd, num_res):
    from .ad import jvp
    ts = [np.zeros(get_aval(p).shape, tangent_aval(get_aval(p)).dtype) if type(t) is Zero
          else t for p, t in zip(primals, tangents)]
    res_float = [tangent_aval(get_aval(p)).dtype != float0 for p in primals]
    fl_p = [p for p, f in zip(primals, res_float) if f]
    fl_t = [t for t, f in zip(ts, res_float) if f]

    def fwd(*fl):
        it = iter(fl)
        full = [next(it) if f else p for p, f in zip(primals, res_float)]
        return _lin_forward(full[:num_res], full[num_res:], bwd)
    return jvp(fwd, tuple(fl_p), tuple(fl_t))


custom_vjp_call_p.impl = _cv_impl
custom_vjp_call_p.abstract_eval = _cv_abstract
custom_vjp_call_p.jvp = _cv_jvp
custom_lin_p.impl = _lin_impl
custom_lin_p.abstract_eval = _lin_abstract
custom_lin_p.transpose = _lin_transpose
custom_lin_p.jvp = _lin_jvp


class custom_vjp:
    """A function with a user-defined VJP (decorator), as jax.custom_vjp.

    f.defvjp(fwd, bwd): fwd(*args) -> (out, residuals);
    bwd(*nondiff_args, residuals, ct) -> a tuple with one cotangent (pytree, or None
    for zero) per differentiable argument."""

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        name = getattr(self.fun, '__name__', 'fun')
        if self.fwd is None:
            raise AttributeError(f"No VJP defined for custom_vjp function {name} using "
                                 f"defvjp.")
        args = _resolve_args(self.fun, args, kwargs)
        nondiff, dyn = _split_nondiff(self.nondiff_argnums, args)
        flat, in_tree = tree_flatten(tuple(dyn))
        if not any(isinstance(x, Tracer) for x in flat):
            return self.fun(*args)
        avals = [get_aval(x) for x in flat]
        closed, out_tree, lifted = trace_fun(
            lambda *d: self.fun(*_merge(nondiff, d)), in_tree, avals, 'custom_vjp')
        fwd = _FwdRule(self, self.fwd, nondiff, in_tree, out_tree, closed.out_avals)
        bwd = _BwdRule(self, self.bwd, nondiff, in_tree)
        outs = custom_vjp_call_p.bind(*lifted, *flat, call_jaxpr=closed, fwd=fwd, bwd=bwd,
                                      name=name, num_consts=len(lifted))
        return tree_unflatten(out_tree, outs)


# ======================================================================================
# batching (vmap): the function's jaxpr is batched, the rules are vmapped
# ======================================================================================

def _front(args, dims):
    from primitives._batching import moveaxis
    return ([x if d is None else moveaxis(x, d, 0) for x, d in zip(args, dims)],
            [None if d is None else 0 for d in dims])


def _zeros_of(x):
    a = get_aval(x)
    ta = tangent_aval(a)
    return np.zeros(ta.shape, ta.dtype)


class _BatchedJVP:
    """A JVP rule applied to batched primals and tangents (all at axis 0 or unbatched),
    its outputs batched at axis 0."""

    def __init__(self, rule, size, dims, n_out):
        self.rule, self.size, self.dims, self.n_out = rule, size, dims, n_out
        self.__name__ = getattr(rule, '__name__', 'jvp')

    def __repr__(self):
        return self.__name__

    def __call__(self, primals, tangents):
        from .vmap import vmap
        ts = [_zeros_of(p) if type(t) is Zero else t for p, t in zip(primals, tangents)]

        def per_example(p, t):
            outs, t_outs = self.rule(list(p), list(t))
            return list(outs), [_zeros_of(o) if type(z) is Zero else z
                                for o, z in zip(outs, t_outs)]
        axes = list(self.dims)
        outs, t_outs = vmap(per_example, in_axes=(axes, axes), out_axes=0,
                            axis_size=self.size)(list(primals), ts)
        return outs, t_outs


def _cj_batch(args, dims, *, call_jaxpr, jvp, name, num_consts):
    from primitives._batching import axis_size
    from .vmap import batch_jaxpr
    size = axis_size(args, dims)
    args, dims = _front(args, dims)
    n_out = len(call_jaxpr.out_avals)
    batched, _ = batch_jaxpr(call_jaxpr, size, dims, [0] * n_out)
    rule = _BatchedJVP(jvp, size, dims[num_consts:], n_out)
    return custom_jvp_call_p.bind(*args, call_jaxpr=batched, jvp=rule, name=name,
                                  num_consts=num_consts), [0] * n_out


class _BatchedFwd:
    def __init__(self, fwd, size, dims):
        self.fwd, self.size, self.dims = fwd, size, dims
        self.out_tree = fwd.out_tree
        self.__name__ = fwd.__name__

    def __repr__(self):
        return self.__name__

    def __call__(self, primals):
        from .vmap import vmap

        def per_example(p):
            outs, res = self.fwd(list(p))
            return list(outs), res
        return vmap(per_example, in_axes=(list(self.dims),), out_axes=0,
                    axis_size=self.size)(list(primals))


class _BatchedBwd:
    """bwd applied per batch element: residuals batched at res_dims (0 or None), output
    cotangents at 0; the cotangents of unbatched arguments are summed over the batch."""

    def __init__(self, inner, size, res_dims, arg_dims):
        self.inner, self.size = inner, size
        self.res_dims, self.arg_dims = list(res_dims), list(arg_dims)
        self.owner, self.in_tree, self.nondiff = inner.owner, inner.in_tree, []
        self.__name__ = inner.__name__
        self.bwd = self._call

    def __repr__(self):
        return self.__name__

    def _call(self, res, ct):
        from .vmap import vmap
        from primitives.reductions import reduce_sum
        r_flat, r_tree = tree_flatten(res)
        inner = self.inner
        nondiff = [v for _, v in inner.nondiff]

        def per_example(rf, c):
            return tuple(inner.bwd(*nondiff, tree_unflatten(r_tree, list(rf)), c))
        res_dims = self.res_dims if len(self.res_dims) == len(r_flat) else [0] * len(r_flat)
        got = vmap(per_example, in_axes=(res_dims, 0), out_axes=0,
                   axis_size=self.size)(r_flat, ct)
        # (dims may be None, which a pytree would read as an empty node: go by index)
        index_tree = tree_unflatten(self.in_tree, list(range(len(self.arg_dims))))
        out = []
        for g, idx in zip(got, index_tree):
            if g is None:
                out.append(None)
                continue
            gl, gt = tree_flatten(g)
            dl = [self.arg_dims[i] for i in tree_flatten(idx)[0]]
            out.append(tree_unflatten(gt, [x if dd is not None else reduce_sum(x, (0,))
                                          for x, dd in zip(gl, dl)]))
        return tuple(out)


def _cv_batch(args, dims, *, call_jaxpr, fwd, bwd, name, num_consts):
    from primitives._batching import axis_size
    from .vmap import batch_jaxpr
    size = axis_size(args, dims)
    args, dims = _front(args, dims)
    n_out = len(call_jaxpr.out_avals)
    batched, _ = batch_jaxpr(call_jaxpr, size, dims, [0] * n_out)
    arg_dims = dims[num_consts:]
    return custom_vjp_call_p.bind(
        *args, call_jaxpr=batched, fwd=_BatchedFwd(fwd, size, arg_dims),
        bwd=_BatchedBwd(bwd, size, [], arg_dims), name=name,
        num_consts=num_consts), [0] * n_out


def _lin_batch(args, dims, *, bwd, num_res):
    from primitives._batching import axis_size, bdim_to
    size = axis_size(args, dims)
    args, dims = _front(args, dims)
    res_dims = dims[:num_res]
    # the tangent inputs are all batched at 0 (so the cotangents bwd returns for them
    # are per element); the arguments without a tangent are unbatched
    ts = [bdim_to(t, d, size, 0) for t, d in zip(args[num_res:], dims[num_res:])]
    arg_dims = [0 if nz else None for nz in bwd.nonzeros]
    new = _LinRule(_BatchedBwd(bwd.bwd, size, res_dims, arg_dims), bwd.res_tree,
                   bwd.nonzeros,
                   tuple(ShapedArray((size,) + a.shape, a.dtype) if nz else a
                         for nz, a in zip(bwd.nonzeros, bwd.in_avals)),
                   tuple(ShapedArray((size,) + a.shape, a.dtype) for a in bwd.out_avals),
                   bwd.out_tree)
    outs = custom_lin_p.bind(*args[:num_res], *ts, bwd=new, num_res=num_res)
    return outs, [0] * len(outs)


custom_jvp_call_p.batch = _cj_batch
custom_vjp_call_p.batch = _cv_batch
custom_lin_p.batch = _lin_batch


# --- numba lowering ---
# Evaluating custom_jvp_call / custom_vjp_call is evaluating the primal function's
# jaxpr: compiled code inlines it. custom_lin (a custom_vjp's linear pullback
# evaluated forwards, which appears under jit(jvp(f)) or jit(linearize)) calls the
# user's Python `bwd` when evaluated, so it has no lowering and runs eagerly.
from primitives._lowering import Call as _Call  # noqa: E402

custom_jvp_call_p.lowering = _Call('call_jaxpr')
custom_vjp_call_p.lowering = _Call('call_jaxpr')
