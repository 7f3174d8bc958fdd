"""Gradient checkpointing (rematerialization): checkpoint / remat, with JAX's policies.

`checkpoint(f)` computes what f computes; under reverse mode it saves fewer values
for the backward pass (by default only f's inputs) and recomputes the rest there.

    checkpoint[differentiated jaxpr policy prevent_cse]   *args

It is a higher-order primitive. Its JVP is a checkpoint of the JVP of its jaxpr.
Partial evaluation (what linearize, hence grad, does) is where the policy acts: the
known (primal) half runs now and keeps as residuals only the values the policy
lets it save (plus f's inputs, which the caller holds anyway); the unknown
(tangent) half is staged as a checkpoint equation that first recomputes the other
residuals from those, then applies the linear part. Its transpose is the
transposed jaxpr, which does that recomputation inside the backward pass.

Policies (`checkpoint_policies`): a policy is called as
`policy(primitive, *input_avals, **params)` for each equation of the primal
computation and says whether its output may be saved:
- `nothing_saveable` (the default, policy=None): save only the inputs;
- `everything_saveable`: save everything (as if there were no checkpoint);
- `dots_saveable` / `checkpoint_dots`: save the results of matrix products
  (dot_general), recompute the elementwise work;
- `dots_with_no_batch_dims_saveable`: only dot_generals without batch dimensions.

`print_saved_residuals(f, *args)` lists what grad(f) keeps for the backward pass,
and `saved_residuals` returns it.
"""
import functools
import inspect

from tracer import (Primitive, Zero, ClosedJaxpr, Jaxpr, JaxprTrace, JaxprTracer, Tracer,
                    Literal, new_trace, eval_jaxpr, tree_flatten, tree_unflatten,
                    get_aval, tangent_aval, is_undefined, trace_to_jaxpr)
from tracer.staging import dce_call_eqn
from tracer.hooks import interpreters
from .jaxpr_transforms import instantiate_zeros
from tracer.errors import user_line
from primitives._jaxpr_util import trace_fun, python_fn, prune, same_type, used_inputs

__all__ = ['checkpoint', 'remat', 'checkpoint_policies', 'print_saved_residuals',
           'saved_residuals', 'remat_p']


# --- policies ---------------------------------------------------------------------------

def nothing_saveable(*_, **__):
    """Save nothing but the inputs: recompute everything on the backward pass."""
    return False


def everything_saveable(*_, **__):
    """Save every residual, as without checkpointing."""
    return True


def dots_saveable(prim, *_, **__):
    """Save the results of matrix products; recompute the elementwise work."""
    return prim.name == 'dot_general'


def dots_with_no_batch_dims_saveable(prim, *_, **params):
    """Save the results of dot_generals that have no batch dimensions."""
    if prim.name != 'dot_general':
        return False
    (_, _), (lb, _) = params['dimension_numbers']
    return not lb


class checkpoint_policies:
    """The built-in policies for checkpoint(policy=...), as jax.checkpoint_policies."""
    nothing_saveable = staticmethod(nothing_saveable)
    everything_saveable = staticmethod(everything_saveable)
    dots_saveable = staticmethod(dots_saveable)
    checkpoint_dots = staticmethod(dots_saveable)
    dots_with_no_batch_dims_saveable = staticmethod(dots_with_no_batch_dims_saveable)
    checkpoint_dots_with_no_batch_dims = staticmethod(dots_with_no_batch_dims_saveable)


# --- the primitive ------------------------------------------------------------------------

remat_p = Primitive('checkpoint', multiple_results=True)


def _remat_impl(*args, jaxpr, prevent_cse, differentiated, policy):
    return python_fn(jaxpr)(*args)


def _remat_abstract(*avals, jaxpr, prevent_cse, differentiated, policy):
    want = jaxpr.in_avals
    if len(avals) != len(want) or not all(map(same_type, avals, want)):
        raise TypeError(f"checkpoint: called with ({', '.join(a.str_short() for a in avals)}) "
                        f"but its jaxpr takes ({', '.join(a.str_short() for a in want)})")
    return jaxpr.out_avals


def _remat_jvp(primals, tangents, *, jaxpr, prevent_cse, differentiated, policy):
    avals = jaxpr.in_avals
    nz = [type(t) is not Zero and a.dtype.kind in 'fc' for t, a in zip(tangents, avals)]
    closed, out_nz = interpreters.jvp_jaxpr(jaxpr, nz)
    outs = remat_p.bind(*primals, *[t for t, z in zip(tangents, nz) if z], jaxpr=closed,
                        prevent_cse=prevent_cse, differentiated=True, policy=policy)
    n = len(jaxpr.out_avals)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if z else Zero(tangent_aval(a))
                      for z, a in zip(out_nz, jaxpr.out_avals)]


def _saveable(policy, eqn):
    if policy is None:
        return False
    return bool(policy(eqn.primitive, *[v.aval for v in eqn.invars], **eqn.params))


def _remat_partial_eval(trace, args, params):
    jaxpr, policy = params['jaxpr'], params['policy']
    uk = [type(x) is JaxprTracer and x._trace is trace for x in args]
    if all(uk):
        return trace.stage(remat_p, args, params)
    known, unknown, out_uk, num_res = interpreters.partial_eval_jaxpr(jaxpr, uk)
    kj = known.jaxpr
    n_known_out = len(kj.outvars) - num_res
    res_vars = kj.outvars[n_known_out:]
    producer = {}
    for eqn in kj.eqns:
        for v in eqn.outvars:
            producer[v] = eqn
    inputs = set(kj.invars)
    # which values of the known part are saved: residuals the policy lets us keep,
    # and saveable values the recomputation of the others needs
    saved, recompute_eqns, targets = [], set(), []
    saved_set = set()

    def need(v):
        stack = [v]
        while stack:
            v = stack.pop()
            if type(v) is Literal or v in inputs or v in saved_set or v not in producer:
                continue
            eqn = producer[v]
            if _saveable(policy, eqn):
                saved_set.add(v)
                saved.append(v)
                continue
            if id(eqn) in recompute_eqns:
                continue
            recompute_eqns.add(id(eqn))
            stack.extend(eqn.invars)

    for r in res_vars:
        if type(r) is Literal or r in inputs or r not in producer:
            continue
        if _saveable(policy, producer[r]):
            if r not in saved_set:
                saved_set.add(r)
                saved.append(r)
        else:
            targets.append(r)
            need(r)
    targets = list(dict.fromkeys(targets))
    # the known part, run now: known outputs and the saved values
    k_outs = kj.outvars[:n_known_out] + saved
    k_run = prune(ClosedJaxpr(Jaxpr(kj.constvars, kj.invars, k_outs, kj.eqns), known.consts),
                  [True] * len(kj.invars), [True] * len(k_outs))
    known_args = [x for x, u in zip(args, uk) if not u]
    k_vals = eval_jaxpr(k_run.jaxpr, k_run.consts, *known_args)
    saved_vals = k_vals[n_known_out:]
    # the recomputation: known inputs and saved values -> the other residuals
    rec_eqns = [e for e in kj.eqns if id(e) in recompute_eqns]
    rec = ClosedJaxpr(Jaxpr(kj.constvars, list(kj.invars) + saved, targets, rec_eqns),
                      known.consts)
    n_kin = len(kj.invars)
    pos_in = {v: i for i, v in enumerate(kj.invars)}
    pos_saved = {v: i for i, v in enumerate(saved)}
    pos_target = {v: i for i, v in enumerate(targets)}
    pos_const = {v: c for v, c in zip(kj.constvars, known.consts)}
    uk_avals = [a for a, u in zip(jaxpr.in_avals, uk) if u]
    in_avals = [v.aval for v in kj.invars] + [v.aval for v in saved] + uk_avals

    def unknown_fun(*a):
        kin, sv, uin = a[:n_kin], a[n_kin:n_kin + len(saved)], a[n_kin + len(saved):]
        rv = eval_jaxpr(rec.jaxpr, rec.consts, *kin, *sv) if targets else []
        res = []
        for r in res_vars:
            if type(r) is Literal:
                res.append(r.val)
            elif r in pos_in:
                res.append(kin[pos_in[r]])
            elif r in pos_saved:
                res.append(sv[pos_saved[r]])
            elif r in pos_const:
                res.append(pos_const[r])
            else:
                res.append(rv[pos_target[r]])
        return eval_jaxpr(unknown.jaxpr, unknown.consts, *res, *uin)

    uj, uc = trace_to_jaxpr(unknown_fun, in_avals, name='checkpoint')
    u_closed = ClosedJaxpr(uj, uc)
    # known inputs the unknown part does not read are not passed
    keep = used_inputs(u_closed, [True] * len(uj.outvars))
    keep = [k or i >= n_kin for i, k in enumerate(keep)]
    u_closed = prune(u_closed, keep, [True] * len(uj.outvars))
    u_args = [x for x, k in zip(known_args + list(saved_vals) + [x for x, u in zip(args, uk) if u],
                                keep) if k]
    u_outs = trace.stage(remat_p, u_args, dict(params, jaxpr=u_closed, differentiated=True))
    k_it, u_it = iter(k_vals[:n_known_out]), iter(u_outs)
    return [next(u_it) if u else next(k_it) for u in out_uk]


def _remat_transpose(cts, *args, jaxpr, prevent_cse, differentiated, policy):
    linear = [is_undefined(x) for x in args]
    cts = [instantiate_zeros(c) for c in cts]
    jt = interpreters.transpose_jaxpr(jaxpr, linear)
    nonlin = [x for x in args if not is_undefined(x)]
    outs = iter(remat_p.bind(*nonlin, *cts, jaxpr=jt, prevent_cse=prevent_cse,
                             differentiated=True, policy=policy))
    return [next(outs) if l else None for l in linear]


remat_p.impl = _remat_impl
remat_p.abstract_eval = _remat_abstract
remat_p.jvp = _remat_jvp
remat_p.partial_eval = _remat_partial_eval
remat_p.transpose = _remat_transpose
remat_p.dce_rule = dce_call_eqn


# --- the API --------------------------------------------------------------------------------

def checkpoint(fun=None, *, prevent_cse=True, policy=None, static_argnums=()):
    """f with the same values and derivatives, whose backward pass recomputes the
    values `policy` does not let it save (by default everything but its inputs).
    Usable as a decorator, with or without arguments."""
    if fun is None:
        return functools.partial(checkpoint, prevent_cse=prevent_cse, policy=policy,
                                 static_argnums=static_argnums)
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)
    static_argnums = tuple(static_argnums)
    if policy is not None and not callable(policy):
        raise TypeError(f"checkpoint: policy must be callable (see checkpoint_policies), "
                        f"got {policy!r}")

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        nargs = len(args)
        static = {i % nargs: args[i] for i in static_argnums if -nargs <= i < nargs}
        if len(static) != len(static_argnums):
            raise ValueError(f"checkpoint: static_argnums={static_argnums} out of range for "
                             f"a call with {nargs} positional arguments")
        dyn = [a for i, a in enumerate(args) if i not in static]
        flat, in_tree = tree_flatten((dyn, kwargs))
        if not any(isinstance(x, Tracer) for x in flat):
            return fun(*args, **kwargs)   # nothing to differentiate: just run it

        def flat_fun(d, kw):
            it = iter(d)
            full = [static[i] if i in static else next(it) for i in range(nargs)]
            return fun(*full, **kw)
        closed, out_tree, lifted = trace_fun(flat_fun, in_tree, [get_aval(x) for x in flat],
                                             'checkpoint')
        outs = remat_p.bind(*lifted, *flat, jaxpr=closed, prevent_cse=bool(prevent_cse),
                            differentiated=False, policy=policy)
        return tree_unflatten(out_tree, outs)
    return wrapped


remat = checkpoint


# --- what the backward pass keeps -------------------------------------------------------------

class _SourceTrace(JaxprTrace):
    """A staging trace that remembers the user's source line of each value."""

    def __init__(self):
        super().__init__('saved_residuals', cse=False)
        self.source = {}

    def stage(self, primitive, args, params):
        out = super().stage(primitive, args, params)
        where = user_line()
        for o in (out if primitive.multiple_results else [out]):
            self.source[o._var] = (primitive.name, where)
        return out


def _arg_labels(fun, args):
    try:
        names = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        names = []
    labels = []
    for i, a in enumerate(args):
        base = names[i] if i < len(names) else f"args[{i}]"
        leaves, tree = tree_flatten(a)
        if tree.kind is None:
            labels.append(base)
        else:
            labels += [f"{base}[{j}]" for j in range(len(leaves))]
    return labels


def saved_residuals(f, *args):
    """[(aval, description)]: the values grad(f) keeps for its backward pass."""
    from .linearize import linearize_flat
    flat, in_tree = tree_flatten(args)
    labels = _arg_labels(f, args)

    def flat_fun(*xs):
        out = f(*tree_unflatten(in_tree, list(xs)))
        return tree_flatten(out)[0]

    trace = _SourceTrace()
    with new_trace(trace, dynamic=True):
        tracers = [trace.new_arg(get_aval(x)) for x in flat]
        _, lin = linearize_flat(flat_fun, tracers, 'saved_residuals')
        residuals = lin.residuals
    arg_pos = {v: i for i, v in enumerate(trace.invars)}
    out = []
    for r in residuals:
        if isinstance(r, JaxprTracer) and r._trace is trace:
            var = r._var
            aval = var.aval
            if var in arg_pos:
                desc = f"from the argument {labels[arg_pos[var]]}"
            elif var in trace.source:
                prim, where = trace.source[var]
                desc = f"output of {prim}" + (f" from {where}" if where else "")
            else:
                desc = "a value computed by the function"
        else:
            aval = get_aval(r)
            desc = "a constant"
        out.append((aval, desc))
    return out


def print_saved_residuals(f, *args):
    """Print what grad(f) keeps for its backward pass: one line per value, with its
    shape/dtype and where it comes from (an argument, or the primitive and source
    line that computed it)."""
    for aval, desc in saved_residuals(f, *args):
        print(f"{aval.str_short()} {desc}")


def _remat_batch(args, dims, *, jaxpr, prevent_cse, differentiated, policy):
    from primitives._batching import axis_size
    from .vmap import batch_jaxpr
    batched, out_dims = batch_jaxpr(jaxpr, axis_size(args, dims), dims)
    return remat_p.bind(*args, jaxpr=batched, prevent_cse=prevent_cse,
                        differentiated=differentiated, policy=policy), out_dims


remat_p.batch = _remat_batch


# --- numba lowering ---
# Evaluating a checkpoint is evaluating its jaxpr (recomputation is a matter of the
# transforms): compiled code inlines it.
from primitives._lowering import Call as _Call  # noqa: E402

remat_p.lowering = _Call('jaxpr')
