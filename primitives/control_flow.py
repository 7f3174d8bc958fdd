"""Control flow as higher-order primitives: cond/switch, while_loop, fori_loop, scan.

Each construct traces the user's functions ONCE into ClosedJaxprs (on abstract
values: the trip count of a scan does not matter) and binds a primitive carrying
them as params:

    cond[branches=(...)]            index, *operands
    while[cond_jaxpr body_jaxpr cond_nconsts body_nconsts]
                                    *cond_consts, *body_consts, *carry
    scan[jaxpr length num_consts num_carry reverse unroll]
                                    *consts, *carry, *xs

Values the functions close over that are tracers of enclosing transforms become
explicit leading operands (the "consts"), so transforms see them.

Each primitive has the rules of the transforms, defined on its sub-jaxprs with the
jaxpr interpreters of tracer.hooks:
- eager evaluation runs generated Python code calling the equations'
  implementations directly (see _jaxpr_util.py); a long scan's carry-independent
  work is hoisted out of the loop first, batched over the xs;
- jvp: the construct applied to the JVP of its bodies (a fixed point decides
  which loop carries have nonzero tangents);
- partial evaluation (linearize, hence grad): the known part runs now, the
  unknown part is staged, joined by residuals. A scan's residuals are stacked
  across iterations; loop-invariant ones are computed once outside the loop and
  residuals that are inputs are passed on, not copied. A cond whose predicate is
  concrete reduces to the selected branch;
- transpose: a cond transposes each branch; a scan runs the transposed body
  backwards over the stacked residuals; the cotangents of its loop-invariant
  inputs are sums over the steps, taken after the loop over stacked per-step
  values (one dot_general for a sum of products) or accumulated in the carry.
  A while_loop has no transpose (reverse mode needs the trip count): JAX's
  error;
- batching (vmap): a batched predicate turns cond into a select and makes a
  while loop run until every batch element is done;
- dce: unused outputs (and what only they need) are pruned from the bodies.
"""
import numpy as np

from tracer import (Primitive, Zero, ClosedJaxpr, Jaxpr, JaxprTracer, Tracer, Literal,
                    ShapedArray, eval_jaxpr, tree_flatten, tree_unflatten, get_aval,
                    tangent_aval, is_undefined, trace_to_jaxpr, float0)
from tracer.errors import with_user_line, ConcretizationTypeError
from tracer.hooks import interpreters
from ._jaxpr_util import (trace_fun, fun_name, uses_and_producers, same_type, permute,
                          add_unused_inputs, prune, used_inputs, depends_on, zeros, stacked,
                          unstacked,
                          python_fn, scan_loop)

__all__ = ['cond', 'switch', 'while_loop', 'fori_loop', 'scan', 'cond_p', 'while_p', 'scan_p']


def _is_float(aval):
    return aval.dtype.kind in 'fc'


def _nonzero(t, aval):
    return type(t) is not Zero and _is_float(aval)


def _unknown(trace, x):
    return type(x) is JaxprTracer and x._trace is trace


def _fmt_avals(avals):
    return '(' + ', '.join(a.str_short() for a in avals) + ')'


def _zeros_for(aval):
    from .shape_ops import broadcast_in_dim
    return broadcast_in_dim(np.zeros((), aval.dtype), aval.shape, ())


def _instantiate(t, aval):
    return _zeros_for(tangent_aval(aval)) if type(t) is Zero else t


def _split(seq, *sizes):
    out = []
    i = 0
    for n in sizes:
        out.append(list(seq[i:i + n]))
        i += n
    out.append(list(seq[i:]))
    return out


# ======================================================================================
# cond / switch
# ======================================================================================

cond_p = Primitive('cond', multiple_results=True)


def _cond_impl(index, *args, branches):
    i = int(index)
    i = 0 if i < 0 else (len(branches) - 1 if i >= len(branches) else i)
    return python_fn(branches[i])(*args)


def _cond_abstract_eval(index, *avals, branches):
    if index.shape != () or index.dtype.kind not in 'iu':
        raise TypeError(f"cond: the branch index must be an integer scalar, got "
                        f"{index.str_short()}")
    for k, b in enumerate(branches):
        want = b.in_avals
        if len(want) != len(avals) or not all(map(same_type, avals, want)):
            raise TypeError(f"cond: branch {k} takes {_fmt_avals(want)} but the operands "
                            f"are {_fmt_avals(avals)}")
        if k and not all(map(same_type, b.out_avals, branches[0].out_avals)):
            raise TypeError(f"cond: branch {k} returns {_fmt_avals(b.out_avals)} but branch 0 "
                            f"returns {_fmt_avals(branches[0].out_avals)}")
    return branches[0].out_avals


def _cond_jvp(primals, tangents, *, branches):
    index, ops = primals[0], primals[1:]
    avals = branches[0].in_avals
    nz = [_nonzero(t, a) for t, a in zip(tangents[1:], avals)]
    jvp = interpreters.jvp_jaxpr
    out_nz = [False] * len(branches[0].out_avals)
    for b in branches:
        out_nz = [x or y for x, y in zip(out_nz, jvp(b, nz)[1])]
    new = tuple(jvp(b, nz, out_nz)[0] for b in branches)
    ts = [t for t, n in zip(tangents[1:], nz) if n]
    outs = cond_p.bind(index, *ops, *ts, branches=new)
    n = len(out_nz)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if z else Zero(tangent_aval(a))
                      for z, a in zip(out_nz, branches[0].out_avals)]


def _merge_residuals(res_avals):
    """Residual slots shared by all branches: per (shape, dtype), as many slots as the
    branch needing most. -> (slot avals, per branch: slot index of each residual)."""
    counts = {}
    for avals in res_avals:
        c = {}
        for a in avals:
            k = (a.shape, a.dtype)
            c[k] = c.get(k, 0) + 1
        for k, n in c.items():
            counts[k] = max(counts.get(k, 0), n)
    slots, first = [], {}
    for (shape, dtype), n in counts.items():
        first[(shape, dtype)] = len(slots)
        slots += [ShapedArray(shape, dtype)] * n
    where = []
    for avals in res_avals:
        used = {}
        w = []
        for a in avals:
            k = (a.shape, a.dtype)
            w.append(first[k] + used.get(k, 0))
            used[k] = used.get(k, 0) + 1
        where.append(w)
    return slots, where


def _cond_partial_eval(trace, args, params):
    branches = params['branches']
    index, ops = args[0], args[1:]
    if _unknown(trace, index):
        return trace.stage(cond_p, args, params)
    if not isinstance(index, Tracer):
        # a concrete predicate (linearize / grad without jit): only one branch runs
        i = min(max(int(index), 0), len(branches) - 1)
        b = branches[i]
        return eval_jaxpr(b.jaxpr, b.consts, *ops)
    uk = [_unknown(trace, x) for x in ops]
    pe = interpreters.partial_eval_jaxpr
    out_uk = [False] * len(branches[0].out_avals)
    for b in branches:
        out_uk = [x or y for x, y in zip(out_uk, pe(b, uk)[2])]
    parts = [pe(b, uk, out_uk) for b in branches]
    res_avals = [k.out_avals[len(k.out_avals) - nres:] if nres else []
                 for k, _, _, nres in parts]
    slots, where = _merge_residuals(res_avals)
    known_avals = [a for a, u in zip(branches[0].in_avals, uk) if not u]
    n_known_out = out_uk.count(False)

    known_branches, unknown_branches = [], []
    for (known, unknown, _, nres), w in zip(parts, where):
        def kfun(*xs, known=known, w=w):
            outs = eval_jaxpr(known.jaxpr, known.consts, *xs)
            res = [None] * len(slots)
            for r, s in zip(outs[n_known_out:], w):
                res[s] = r
            return outs[:n_known_out] + [_zeros_for(a) if r is None else r
                                         for r, a in zip(res, slots)]
        j, c = trace_to_jaxpr(kfun, known_avals, name='cond')
        known_branches.append(ClosedJaxpr(j, c))
        uk_avals = [a for a, u in zip(branches[0].in_avals, uk) if u]

        def ufun(*xs, unknown=unknown, w=w):
            res = [xs[s] for s in w]
            return eval_jaxpr(unknown.jaxpr, unknown.consts, *res, *xs[len(slots):])
        j, c = trace_to_jaxpr(ufun, slots + uk_avals, name='cond')
        unknown_branches.append(ClosedJaxpr(j, c))
    known_ops = [x for x, u in zip(ops, uk) if not u]
    known_outs = cond_p.bind(index, *known_ops, branches=tuple(known_branches))
    res = known_outs[n_known_out:]
    uk_outs = trace.stage(cond_p, [index] + list(res) + [x for x, u in zip(ops, uk) if u],
                          dict(branches=tuple(unknown_branches)))
    k, u = iter(known_outs[:n_known_out]), iter(uk_outs)
    return [next(u) if x else next(k) for x in out_uk]


def _cond_transpose(cts, index, *ops, branches):
    linear = [is_undefined(x) for x in ops]
    cts = [_instantiate(c, a) for c, a in zip(cts, branches[0].out_avals)]
    tr = interpreters.transpose_jaxpr
    new = tuple(tr(b, linear) for b in branches)
    nonlin = [x for x in ops if not is_undefined(x)]
    outs = iter(cond_p.bind(index, *nonlin, *cts, branches=new))
    return [None] + [next(outs) if l else None for l in linear]


def _cond_dce(eqn, used_outputs):
    branches = eqn.params['branches']
    used_in = [False] * len(branches[0].in_avals)
    for b in branches:
        used_in = [x or y for x, y in zip(used_in, used_inputs(b, used_outputs))]
    new = tuple(prune(b, used_in, used_outputs) for b in branches)
    return eqn.replace(
        invars=eqn.invars[:1] + [v for v, u in zip(eqn.invars[1:], used_in) if u],
        outvars=[v for v, u in zip(eqn.outvars, used_outputs) if u],
        params=dict(eqn.params, branches=new))


cond_p.impl = _cond_impl
cond_p.abstract_eval = _cond_abstract_eval
cond_p.jvp = _cond_jvp
cond_p.partial_eval = _cond_partial_eval
cond_p.transpose = _cond_transpose
cond_p.dce_rule = _cond_dce


def _trace_branches(funs, operands, what, labels):
    flat, in_tree = tree_flatten(operands)
    avals = [get_aval(x) for x in flat]
    traced = []
    for f in funs:
        traced.append(trace_fun(f, in_tree, avals, 'cond'))
    # every branch's output must have one type
    (_, tree0, _), f0 = traced[0], funs[0]
    first = f"{labels[0]} {fun_name(f0)}"
    for k, ((closed, tree, _), f) in enumerate(zip(traced, funs)):
        this = f"{labels[k]} {fun_name(f)}"
        if tree != tree0:
            raise TypeError(with_user_line(
                f"{what}: the branches must return the same types, but {first} returns a "
                f"value of structure {tree0} and {this} returns structure {tree}."))
        for i, (a, b) in enumerate(zip(closed.out_avals, traced[0][0].out_avals)):
            if not same_type(a, b):
                raise TypeError(with_user_line(
                    f"{what}: the branches must return the same types, but output {i} is "
                    f"{b.str_short()} in {first} and {a.str_short()} in {this}. Convert "
                    f"with .astype or broadcast explicitly so every branch returns the "
                    f"same shapes and dtypes."))
    # the consts every branch closes over become shared leading operands
    lifted, pos = [], {}
    for _, _, lf in traced:
        for c in lf:
            if id(c) not in pos:
                pos[id(c)] = len(lifted)
                lifted.append(c)
    branches = []
    for closed, _, lf in traced:
        j = closed.jaxpr
        own = {pos[id(c)]: v for c, v in zip(lf, j.invars[:len(lf)])}
        from tracer import Var
        cvars = [own.get(i) or Var(get_aval(c).strip_weak_type()) for i, c in enumerate(lifted)]
        branches.append(ClosedJaxpr(Jaxpr(j.constvars, cvars + j.invars[len(lf):], j.outvars,
                                          j.eqns), closed.consts))
    return tuple(branches), lifted, flat, tree0


def _index_from_pred(pred):
    from .logical import ne
    from .convert import convert_element_type
    a = get_aval(pred)
    if a.shape != ():
        raise TypeError(with_user_line(
            f"cond: the predicate must be a scalar, got {a.str_short()}. Reduce it (e.g. "
            f"pnp.all / pnp.any) or use pnp.where for an elementwise choice."))
    if a.dtype.kind not in 'biuf':
        raise TypeError(with_user_line(
            f"cond: the predicate must be boolean or a number, got {a.str_short()}"))
    if not isinstance(pred, Tracer):
        return np.int32(1 if bool(pred) else 0)
    if a.dtype.kind != 'b':
        pred = ne(pred, np.zeros((), a.dtype))
    return convert_element_type(pred, np.int32)


def cond(pred, true_fun, false_fun, *operands):
    """true_fun(*operands) if pred else false_fun(*operands), both traced once; the
    result types must agree. Under vmap with a batched predicate both run and the
    results are selected."""
    if not callable(true_fun) or not callable(false_fun):
        raise TypeError("cond(pred, true_fun, false_fun, *operands): true_fun and false_fun "
                        "must be callable")
    index = _index_from_pred(pred)
    branches, lifted, flat, out_tree = _trace_branches((false_fun, true_fun), operands, 'cond',
                                                        ('false_fun', 'true_fun'))
    outs = cond_p.bind(index, *lifted, *flat, branches=branches)
    return tree_unflatten(out_tree, outs)


def switch(index, branches, *operands):
    """branches[index](*operands), index clamped to the valid range."""
    branches = list(branches)
    if not branches or not all(callable(b) for b in branches):
        raise TypeError("switch(index, branches, *operands): branches must be a non-empty "
                        "sequence of callables")
    a = get_aval(index)
    if a.shape != () or a.dtype.kind not in 'iu':
        raise TypeError(with_user_line(
            f"switch: the index must be an integer scalar, got {a.str_short()}"))
    n = len(branches)
    if not isinstance(index, Tracer):
        idx = np.int32(min(max(int(index), 0), n - 1))
    else:
        from .arith import max as max_, min as min_
        from .convert import convert_element_type
        idx = convert_element_type(index, np.int32)
        idx = min_(max_(idx, np.int32(0)), np.int32(n - 1))
    if n == 1:
        return branches[0](*operands)
    closed, lifted, flat, out_tree = _trace_branches(branches, operands, 'switch',
                                                      [f"branch {k}" for k in range(n)])
    outs = cond_p.bind(idx, *lifted, *flat, branches=closed)
    return tree_unflatten(out_tree, outs)


# ======================================================================================
# scan
# ======================================================================================

scan_p = Primitive('scan', multiple_results=True)


def _scan_impl(*args, jaxpr, num_consts, num_carry, length, reverse, unroll):
    consts = args[:num_consts]
    carry = args[num_consts:num_consts + num_carry]
    xs = args[num_consts + num_carry:]
    plan = _hoist_plan(jaxpr, num_consts, num_carry, length) if length >= _HOIST_MIN_LENGTH \
        else None
    if plan is not None:
        pre, body, n_inv, keep_c, keep_x = plan
        try:
            outs = python_fn(pre)(*consts, *xs)
        except Exception:
            # (an optimisation only: on any failure of the batched evaluation the
            # plain loop runs, and raises if the error is the body's own)
            outs = None
        if outs is not None:
            consts = [c for c, k in zip(consts, keep_c) if k] + outs[:n_inv]
            # (a batched result may be a transposed view: rows read faster contiguous)
            xs = [x for x, k in zip(xs, keep_x) if k] + [np.ascontiguousarray(o)
                                                         for o in outs[n_inv:]]
            jaxpr, num_consts = body, len(consts)
    ys = [np.empty((length,) + a.shape, a.dtype) for a in jaxpr.out_avals[num_carry:]]
    loop = scan_loop(jaxpr, num_consts, num_carry)
    carry = loop(consts, carry, xs, ys, range(length - 1, -1, -1) if reverse else range(length))
    return carry + ys


# Eager scans: the work of the body that does not depend on the carry is taken out
# of the loop. What depends only on the consts is computed once, before the loop;
# what depends on the xs (and consts) but not on the carry is computed for all
# steps at once, batched over the stacked xs (the vmap interpreter), and passed to
# the loop as extra xs: an RNN's input projection U @ x_t becomes one matrix
# product. Only when the loop is long enough to repay the batching, and the stacked
# values fit in _STACK_BUDGET.

_HOIST_MIN_LENGTH = 16
_CHECKPOINT_HOIST_BUDGET = 1 << 24  # bytes: stacked values recomputed by a checkpoint


def _hoistable(eqn):
    """A first-order equation with a batching rule (higher-order ones, carrying
    sub-jaxprs, stay in the loop)."""
    if getattr(eqn.primitive, 'batch', None) is None:
        return False
    for p in eqn.params.values():
        if isinstance(p, (ClosedJaxpr, Jaxpr)) or (
                isinstance(p, tuple) and any(isinstance(q, (ClosedJaxpr, Jaxpr)) for q in p)):
            return False
    return True


def _hoist_plan(jaxpr, nc, nk, length):
    return _hoist_memo.get(jaxpr, (nc, nk, length, _STACK_BUDGET, _CHECKPOINT_HOIST_BUDGET),
                           lambda: _build_hoist_plan(jaxpr, nc, nk, length))


def _build_hoist_plan(closed, nc, nk, length):
    """-> None, or (pre, body, n_inv, keep_consts, keep_xs): pre (consts, stacked xs)
    -> (n_inv loop-invariant values, stacked per-step values); body takes (kept
    consts, invariant values, carry, kept xs, per-step values)."""
    if not closed.jaxpr.invars[nc + nk:]:
        return None
    budget = _STACK_BUDGET
    if any(_is_checkpoint_call(e) for e in closed.jaxpr.eqns):
        # evaluated eagerly, checkpoint(f) is f: inlined, its carry-independent work
        # (a block recomputed in a backward loop from its saved input) can leave the
        # loop too, batched over the steps, if its stacked values stay small: a
        # checkpoint asks for a recomputation to save memory
        closed = _inline_checkpoints(closed)
        budget = min(budget, _CHECKPOINT_HOIST_BUDGET)
    j = closed.jaxpr
    consts, carry, xs = _split(j.invars, nc, nk)
    inv = set(j.constvars) | set(consts)     # loop-invariant
    var = set(xs)                            # varies with the step, not with the carry
    pre_eqns, rest = [], []
    for eqn in j.eqns:
        ins = [v for v in eqn.invars if type(v) is not Literal]
        if all(v in inv or v in var for v in ins) and _hoistable(eqn):
            pre_eqns.append(eqn)
            (var if any(v in var for v in ins) else inv).update(eqn.outvars)
        else:
            rest.append(eqn)
    if not pre_eqns:
        return None
    # the values the rest of the body needs from the hoisted part
    needed = []
    for eqn in rest:
        needed += [v for v in eqn.invars if type(v) is not Literal]
    needed += list(j.outvars)
    hoisted = set(v for e in pre_eqns for v in e.outvars)
    seen, inv_out, var_out = set(), [], []
    for v in needed:
        if type(v) is Literal or v in seen or v not in hoisted:
            continue
        seen.add(v)
        (var_out if v in var else inv_out).append(v)
    if not var_out and not inv_out:
        return None
    cost = sum(int(np.prod(v.aval.shape, dtype=np.int64)) * v.aval.dtype.itemsize
               for v in var_out) * length
    if cost > budget:
        return None
    # pre: (consts, xs) -> (invariant outs, per-step outs), batched over the xs
    pre_j = Jaxpr(j.constvars, consts + xs, inv_out + var_out, pre_eqns)
    pre = prune(ClosedJaxpr(pre_j, closed.consts), [True] * (nc + len(xs)),
                [True] * len(pre_j.outvars))
    try:
        pre, _ = interpreters.batch_jaxpr(pre, length, [None] * nc + [0] * len(xs),
                                          [None] * len(inv_out) + [0] * len(var_out))
    except Exception:
        return None     # an equation without a usable batching rule: no hoisting
    # the loop body without the hoisted equations
    used = set()
    for eqn in rest:
        used.update(v for v in eqn.invars if type(v) is not Literal)
    used.update(v for v in j.outvars if type(v) is not Literal)
    keep_c = [v in used for v in consts]
    keep_x = [v in used for v in xs]
    body_j = Jaxpr(j.constvars,
                   [v for v, k in zip(consts, keep_c) if k] + inv_out + carry
                   + [v for v, k in zip(xs, keep_x) if k] + var_out, j.outvars, rest)
    body = prune(ClosedJaxpr(body_j, closed.consts), [True] * len(body_j.invars),
                 [True] * len(j.outvars))
    return pre, body, len(inv_out), keep_c, keep_x


def _is_checkpoint_call(eqn):
    return eqn.primitive.name == 'checkpoint' and isinstance(eqn.params.get('jaxpr'),
                                                            ClosedJaxpr)


def _inline_checkpoints(closed):
    j = closed.jaxpr

    def fun(*args):
        env = dict(zip(j.constvars, closed.consts))
        env.update(zip(j.invars, args))

        def read(v):
            return v.val if type(v) is Literal else env[v]
        for eqn in j.eqns:
            vals = [read(v) for v in eqn.invars]
            if _is_checkpoint_call(eqn):
                inner = eqn.params['jaxpr']
                outs = eval_jaxpr(inner.jaxpr, inner.consts, *vals)
            else:
                outs = eqn.primitive.bind(*vals, **eqn.params)
                if not eqn.primitive.multiple_results:
                    outs = [outs]
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in j.outvars]
    jaxpr, consts = trace_to_jaxpr(fun, closed.in_avals, name='scan')
    return ClosedJaxpr(jaxpr, consts)


from ._jaxpr_util import _Memo
_hoist_memo = _Memo(256)


def _scan_abstract_eval(*avals, jaxpr, num_consts, num_carry, length, reverse, unroll):
    want = jaxpr.in_avals
    if len(avals) != len(want):
        raise TypeError(f"scan: {len(avals)} operands but the body takes {len(want)}")
    for i, (a, w) in enumerate(zip(avals, want)):
        if i >= num_consts + num_carry:
            if a.shape[:1] != (length,) or not same_type(unstacked(a), w):
                raise TypeError(f"scan: xs operand {a.str_short()} does not stack "
                                f"{length} values of the body's {w.str_short()}")
        elif not same_type(a, w):
            raise TypeError(f"scan: operand {i} is {a.str_short()} but the body takes "
                            f"{w.str_short()}")
    outs = jaxpr.out_avals
    for i in range(num_carry):
        if not same_type(outs[i], want[num_consts + i]):
            raise TypeError(f"scan: the body's carry output {i} is {outs[i].str_short()} but "
                            f"its carry input is {want[num_consts + i].str_short()}")
    return list(outs[:num_carry]) + [stacked(a, length) for a in outs[num_carry:]]


def _scan_jvp(primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse, unroll):
    nc, nk = num_consts, num_carry
    avals = jaxpr.in_avals
    nz = [_nonzero(t, a) for t, a in zip(tangents, avals)]
    const_nz, init_nz, xs_nz = _split(nz, nc, nk)
    ny = len(jaxpr.out_avals) - nk
    carry_nz = init_nz
    jvp = interpreters.jvp_jaxpr
    while True:
        _, out_nz = jvp(jaxpr, const_nz + carry_nz + xs_nz, carry_nz + [False] * ny)
        new = [c or (o and _is_float(a)) for c, o, a in zip(carry_nz, out_nz[:nk], avals[nc:])]
        if new == carry_nz:
            break
        carry_nz = new
    closed, out_nz = jvp(jaxpr, const_nz + carry_nz + xs_nz, carry_nz + [False] * ny)
    ys_nz = out_nz[nk:]
    n = len(avals)
    # the JVP jaxpr takes (primals, nonzero tangents); the scan wants
    # (consts, const tangents, carry, carry tangents, xs, xs tangents)
    t_pos = {}
    for i, z in enumerate(const_nz + carry_nz + xs_nz):
        if z:
            t_pos[i] = n + len(t_pos)
    groups = [(0, nc), (nc, nc + nk), (nc + nk, n)]
    in_order = []
    for lo, hi in groups:
        in_order += list(range(lo, hi)) + [t_pos[i] for i in range(lo, hi) if i in t_pos]
    m = nk + ny
    n_ct = sum(carry_nz)
    out_order = (list(range(nk)) + list(range(m, m + n_ct)) + list(range(nk, m))
                 + list(range(m + n_ct, m + n_ct + sum(ys_nz))))
    body = permute(closed, in_order, out_order)
    consts, init, xs = _split(primals, nc, nk)
    c_t, i_t, x_t = _split(tangents, nc, nk)
    args = (consts + [t for t, z in zip(c_t, const_nz) if z]
            + init + [_instantiate(t, a) for t, a, z in zip(i_t, avals[nc:], carry_nz) if z]
            + xs + [t for t, z in zip(x_t, xs_nz) if z])
    outs = scan_p.bind(*args, jaxpr=body, num_consts=nc + sum(const_nz),
                       num_carry=nk + n_ct, length=length, reverse=reverse, unroll=unroll)
    carry_out, carry_t, ys, ys_t = _split(outs, nk, n_ct, ny)
    out_avals = _scan_abstract_eval(*[get_aval(x) for x in primals], jaxpr=jaxpr,
                                    num_consts=nc, num_carry=nk, length=length,
                                    reverse=reverse, unroll=unroll)
    ct, yt = iter(carry_t), iter(ys_t)
    t_out = ([next(ct) if z else Zero(tangent_aval(a)) for z, a in zip(carry_nz, out_avals)]
             + [next(yt) if z else Zero(tangent_aval(a)) for z, a in zip(ys_nz, out_avals[nk:])])
    return carry_out + ys, t_out


def _loop_variant(closed, variant_inputs):
    """Which outputs vary across iterations (depend on a flagged input)."""
    return depends_on(closed, variant_inputs)


def _scan_partial_eval(trace, args, params):
    jaxpr, nc, nk = params['jaxpr'], params['num_consts'], params['num_carry']
    length, reverse, unroll = params['length'], params['reverse'], params['unroll']
    if all(_unknown(trace, x) for x in args):
        return trace.stage(scan_p, args, params)
    uk = [_unknown(trace, x) for x in args]
    const_uk, init_uk, xs_uk = _split(uk, nc, nk)
    ny = len(jaxpr.out_avals) - nk
    pe = interpreters.partial_eval_jaxpr
    carry_uk = init_uk
    while True:
        known, unknown, out_uk, num_res = pe(jaxpr, const_uk + carry_uk + xs_uk,
                                             carry_uk + [False] * ny)
        new = [c or o for c, o in zip(carry_uk, out_uk[:nk])]
        if new == carry_uk:
            break
        carry_uk = new
    ys_uk = out_uk[nk:]
    consts, init, xs = _split(args, nc, nk)
    k_consts = [x for x, u in zip(consts, const_uk) if not u]
    k_init = [x for x, u in zip(init, carry_uk) if not u]
    k_xs = [x for x, u in zip(xs, xs_uk) if not u]
    nck, nkk, nxk = len(k_consts), len(k_init), len(k_xs)
    n_known_out = len(known.out_avals) - num_res

    # Residuals: inputs of the known body are passed on (a const as a const, an xs
    # as the stacked xs); loop-invariant ones are computed once, before the loop;
    # the rest are stacked outputs of the known scan.
    kj = known.jaxpr
    invar_pos = {v: i for i, v in enumerate(kj.invars)}
    variant = _loop_variant(known, [i >= nck for i in range(len(kj.invars))])
    kinds = []
    for r, var_r in zip(kj.outvars[n_known_out:], variant[n_known_out:]):
        p = invar_pos.get(r) if type(r) is not Literal else None
        if p is not None and p < nck:
            kinds.append(('const', p))
        elif p is not None and p >= nck + nkk:
            kinds.append(('xs', p - nck - nkk))
        elif not var_r:
            kinds.append(('hoist', None))
        else:
            view = _xs_view(kj, r, nck + nkk)
            kinds.append(('view', view) if view is not None else ('stack', None))
    hoisted = [k == 'hoist' for k, _ in kinds]
    if any(hoisted):
        keep = [False] * n_known_out + hoisted
        h = prune(known, [True] * nck + [False] * (nkk + nxk), keep)
        hoist_vals = iter(eval_jaxpr(h.jaxpr, h.consts, *k_consts))
    stack = [k == 'stack' for k, _ in kinds]
    body_k = prune(known, [True] * len(kj.invars), [True] * n_known_out + stack)
    if body_k.jaxpr.outvars:
        k_outs = scan_p.bind(*k_consts, *k_init, *k_xs, jaxpr=body_k, num_consts=nck,
                             num_carry=nkk, length=length, reverse=reverse, unroll=unroll)
    else:
        k_outs = []
    stacked_res = iter(k_outs[n_known_out:])
    const_res, xs_res, const_idx, xs_idx = [], [], [], []
    for i, (kind, p) in enumerate(kinds):
        if kind == 'const':
            const_res.append(k_consts[p]); const_idx.append(i)
        elif kind == 'hoist':
            const_res.append(next(hoist_vals)); const_idx.append(i)
        elif kind == 'xs':
            xs_res.append(k_xs[p]); xs_idx.append(i)
        elif kind == 'view':
            xs_res.append(k_xs[p[0]]); xs_idx.append(i)
        else:
            xs_res.append(next(stacked_res)); xs_idx.append(i)
    # the unknown body takes (residuals, unknown consts, unknown carry, unknown xs):
    # reorder to (const residuals, unknown consts, unknown carry, xs residuals, unknown xs)
    nuc, nuk = sum(const_uk), sum(carry_uk)
    r = num_res
    order = (const_idx + list(range(r, r + nuc + nuk)) + xs_idx
             + list(range(r + nuc + nuk, len(unknown.in_avals))))
    body_u = permute(unknown, order)
    # residuals that are views of an xs (x[k] of a block): the xs is passed and the
    # view taken again in the unknown body, instead of stacking a copy
    first = len(const_res) + nuc + nuk
    views = {first + j: kinds[i][1] for j, i in enumerate(xs_idx) if kinds[i][0] == 'view'}
    if views:
        body_u = _apply_views(body_u, known, nck + nkk, views)
    u_args = (const_res + [x for x, u in zip(consts, const_uk) if u]
              + [x for x, u in zip(init, carry_uk) if u]
              + xs_res + [x for x, u in zip(xs, xs_uk) if u])
    u_outs = trace.stage(scan_p, u_args, dict(jaxpr=body_u, num_consts=len(const_res) + nuc,
                                             num_carry=nuk, length=length, reverse=reverse,
                                             unroll=unroll))
    k_it, u_it = iter(k_outs[:n_known_out]), iter(u_outs)
    return [next(u_it) if u else next(k_it) for u in carry_uk + ys_uk]


_VIEW_OPS = frozenset(['slice', 'squeeze', 'reshape', 'transpose'])


def _stacked_view(x, chain):
    """The view `chain` ((primitive, params) per equation, taking one step's value)
    applied to the stacked values x of all steps at once."""
    n = get_aval(x).shape[0]
    for prim, params in chain:
        name = prim.name
        if name == 'slice':
            st = params['strides']
            new = dict(start_indices=(0,) + tuple(params['start_indices']),
                       limit_indices=(n,) + tuple(params['limit_indices']),
                       strides=None if st is None else (1,) + tuple(st))
        elif name == 'squeeze':
            new = dict(dimensions=tuple(d + 1 for d in params['dimensions']))
        elif name == 'reshape':
            new = dict(new_sizes=(n,) + tuple(params['new_sizes']))
        else:
            new = dict(permutation=(0,) + tuple(d + 1 for d in params['permutation']))
        x = prim.bind(x, **new)
    return x


def _xs_view(jaxpr, r, first_xs, xs_vars=None):
    """If `r` is a chain of view operations (slice, squeeze, ...) of one xs input of
    the jaxpr (the inputs from first_xs on, or those listed): (its xs position, the
    chain's equations in order), else None."""
    producer = {}
    for e in jaxpr.eqns:
        for v in e.outvars:
            producer[v] = e
    chain, v = [], r
    while True:
        e = producer.get(v)
        if e is None:
            break
        ins = [x for x in e.invars if type(x) is not Literal]
        if e.primitive.name not in _VIEW_OPS or len(ins) != 1 or len(e.invars) != 1:
            return None
        chain.append(e)
        v = ins[0]
    if not chain:
        return None
    if xs_vars is not None:
        p = next((i for i, x in enumerate(xs_vars) if x is v), None)
        return None if p is None else (p, tuple(reversed(chain)))
    p = next((i for i, x in enumerate(jaxpr.invars) if x is v), None)
    if p is None or p < first_xs:
        return None
    return p - first_xs, tuple(reversed(chain))


def _apply_views(body, known, first_xs, views):
    """`body` taking, at the positions of `views`, the stacked xs a residual is a
    view of (per step: one xs element) and taking the view itself."""
    kj = known.jaxpr
    in_avals = list(body.in_avals)
    fns = {}
    for pos, (p, chain) in views.items():
        x = kj.invars[first_xs + p]
        in_avals[pos] = x.aval
        fns[pos] = (x, chain)

    def fun(*args):
        args = list(args)
        for pos, (x, chain) in fns.items():
            env = {x: args[pos]}
            for e in chain:
                env[e.outvars[0]] = e.primitive.bind(env[e.invars[0]], **e.params)
            args[pos] = env[chain[-1].outvars[0]]
        return eval_jaxpr(body.jaxpr, body.consts, *args)
    j, c = trace_to_jaxpr(fun, in_avals, name='scan')
    return ClosedJaxpr(j, c)


def _scan_transpose(cts, *args, jaxpr, num_consts, num_carry, length, reverse, unroll):
    nc, nk = num_consts, num_carry
    consts, init, xs = _split(args, nc, nk)
    c_lin = [is_undefined(x) for x in consts]
    x_lin = [is_undefined(x) for x in xs]
    avals = jaxpr.in_avals
    out_avals = jaxpr.out_avals
    ct_carry = [_instantiate(c, a) for c, a in zip(cts[:nk], out_avals)]
    ct_ys = cts[nk:]
    ys_zero = [type(c) is Zero for c in ct_ys]
    # outputs whose cotangent is zero are dropped from the body before transposing
    body = prune(jaxpr, [True] * len(avals), [True] * nk + [not z for z in ys_zero])
    tb, plan = _transposed_scan_body(body, tuple(c_lin), tuple(x_lin), nc, nk, length)
    res_c = [x for x, l in zip(consts, c_lin) if not l]
    res_x = [x for x, l in zip(xs, x_lin) if not l]
    t_xs = res_x + [c for c in ct_ys if type(c) is not Zero]
    lin_c_avals = [a for a, l in zip(avals[:nc], c_lin) if l]
    acc0 = [zeros(tangent_aval(a)) for a, (carried, _) in zip(lin_c_avals, plan) if carried]
    outs = scan_p.bind(*res_c, *acc0, *ct_carry, *t_xs,
                       jaxpr=tb, num_consts=len(res_c), num_carry=len(acc0) + nk,
                       length=length, reverse=not reverse, unroll=unroll)
    n_dx = sum(x_lin)
    acc, ct_init, ct_x, new_ys = _split(outs, len(acc0), nk, n_dx)
    ct_c = _finish_const_cts(plan, acc, t_xs, new_ys)
    ct_c, ct_x = iter(ct_c), iter(ct_x)
    return ([next(ct_c) if l else None for l in c_lin]
            + [c if is_undefined(x) else None for c, x in zip(ct_init, init)]
            + [next(ct_x) if l else None for l in x_lin])


# The cotangent of a loop-invariant linear input (a const: a weight matrix) is a sum
# over the steps of per-step contributions. Accumulating it in the carry costs, per
# step, the contribution (often an outer product of two vectors: O(n*m)) and an add.
# Instead the transposed body outputs the per-step values the contribution is made
# of as stacked ys, and the sum over the steps is taken after the loop in one
# operation: for a contribution dot_general(a_t, b_t), one dot_general of the stacked
# a and b contracting the step axis too (sum_t outer(a_t, b_t) = A^T B); for any other
# loop-variant contribution, a reduce_sum of its stacked values. A factor that is
# itself an xs input of the transposed scan (a stacked residual, a cotangent of ys) is
# used as it is. Contributions that do not vary across steps, or whose stacking would
# need too much memory, stay accumulated in the carry.
#
# plan: one entry per linear const, (carried, terms); terms are
#   ('dot', coeff, a, b, dimension_numbers, preferred_element_type, permutation or None)
#   ('sum', coeff, s)
# with a, b, s sources: ('x', i) the i-th xs operand of the transposed scan, or
# ('y', i) its i-th extra stacked output.

_STACK_BUDGET = 1 << 26     # bytes of extra stacked outputs a transposed scan may add
_SMALL_TERM = 1024          # elements of a per-step contribution stacked to be summed


def _finish_const_cts(plan, acc, t_xs, new_ys):
    from .dot import dot_general
    from .reductions import reduce_sum
    from .shape_ops import transpose

    def src(s):
        if s[0] == 'xv':
            return _stacked_view(t_xs[s[1]], s[2])
        return t_xs[s[1]] if s[0] == 'x' else new_ys[s[1]]

    def shift(ds):
        return tuple(d + 1 for d in ds)
    acc = iter(acc)
    out = []
    for carried, terms in plan:
        parts, coeffs = ([next(acc)], [1.0]) if carried else ([], [])
        for t in terms:
            if t[0] == 'dot':
                _, coeff, a, b, ((lc, rc), (lb, rb)), pet, perm = t
                dn = (((0,) + shift(lc), (0,) + shift(rc)), (shift(lb), shift(rb)))
                v = dot_general(src(a), src(b), dn, preferred_element_type=pet)
                if perm is not None:
                    v = transpose(v, perm)
            else:
                _, coeff, s = t
                v = reduce_sum(src(s), (0,))
            parts.append(v)
            coeffs.append(coeff)
        out.append(_lincomb(parts, coeffs))
    return out


def _lincomb(parts, coeffs):
    """sum_k coeffs[k] * parts[k] (add_any with scale factors when any is not 1)."""
    from .arith import add_any, add_any_p, mul
    if all(c == 1 for c in coeffs):
        return add_any(*parts)
    if len(parts) == 1:
        return mul(parts[0], np.asarray(coeffs[0], get_aval(parts[0]).dtype))
    return add_any_p.bind(*parts, coeffs=tuple(float(c) for c in coeffs))


def _transposed_scan_body(body, c_lin, x_lin, nc, nk, length):
    return _tbody_memo.get(body, (c_lin, x_lin, nc, nk, length, _STACK_BUDGET),
                           lambda: _build_transposed_body(body, c_lin, x_lin, nc, nk, length))


def _plan_const_cts(bt, n_lc, n_rc, n_xs, length):
    """Decide how each linear const's cotangent is summed over the steps (see above).
    bt: the transposed body (res_c, res_x, ct_carry, ct_y) -> (d_c, d_carry, d_x).
    -> (plan, kept: per const the vars summed in the carry, extra: vars to stack)."""
    j = bt.jaxpr
    uses, producer = uses_and_producers(j)
    xs_vars = j.invars[n_rc:n_rc + n_xs[0]] + j.invars[len(j.invars) - n_xs[1]:]
    xs_pos = {v: i for i, v in enumerate(xs_vars)}
    variant = set(j.invars[n_rc:])
    for eqn in j.eqns:
        if any(type(v) is not Literal and v in variant for v in eqn.invars):
            variant.update(eqn.outvars)
    extra, extra_pos = [], {}
    budget = [_STACK_BUDGET]

    def source(v, new):
        if v in xs_pos:
            return ('x', xs_pos[v])
        view = _xs_view(j, v, n_rc, xs_vars)
        if view is not None:
            return ('xv', view[0], tuple((e.primitive, e.params) for e in view[1]))
        if v in extra_pos:
            return ('y', extra_pos[v])
        if v not in new:
            new.append(v)
        return ('y', len(extra) + new.index(v))

    def afford(new):
        cost = sum(int(np.prod(v.aval.shape, dtype=np.int64)) * v.aval.dtype.itemsize
                   for v in new) * length
        if cost > budget[0]:
            return False
        budget[0] -= cost
        for v in new:
            extra_pos[v] = len(extra)
            extra.append(v)
        return True

    def terms_of(v, c):
        # the summands of v, each with its scale factor (add_any's coeffs)
        e = producer.get(v) if type(v) is not Literal else None
        if (e is not None and e.primitive.name == 'add_any' and uses[v] == 1 and
                all(type(x) is not Literal and same_type(x.aval, v.aval) for x in e.invars)):
            coeffs = e.params.get('coeffs') or (1.0,) * len(e.invars)
            return [t for x, k in zip(e.invars, coeffs) for t in terms_of(x, c * k)]
        return [(v, c)]

    plan, kept = [], []
    for out in j.outvars[:n_lc]:
        keep, post = [], []
        for t, coeff in terms_of(out, 1.0):
            if type(t) is Literal or t not in variant:
                keep.append((t, coeff))
                continue
            e, perm = producer.get(t), None
            if (e is not None and e.primitive.name == 'transpose' and
                    type(e.invars[0]) is not Literal and uses[e.invars[0]] == 1 and
                    getattr(producer.get(e.invars[0]), 'primitive', None) is not None and
                    producer[e.invars[0]].primitive.name == 'dot_general'):
                perm = tuple(e.params['permutation'])
                e = producer[e.invars[0]]
            if (e is not None and e.primitive.name == 'dot_general' and
                    all(type(x) is not Literal and x in variant for x in e.invars)):
                new = []
                a, b = (source(x, new) for x in e.invars)
                if afford(new):
                    post.append(('dot', coeff, a, b, e.params['dimension_numbers'],
                                 e.params.get('preferred_element_type'), perm))
                    continue
            # any other contribution: stacked and summed after the loop when it is
            # small (an add in the loop costs about what a store costs: only the
            # per-equation overhead is saved) or stacked already
            new = []
            s = source(t, new)
            if (not new or t.aval.size <= _SMALL_TERM) and afford(new):
                post.append(('sum', coeff, s))
            else:
                keep.append((t, coeff))
        plan.append((bool(keep) or not post, tuple(post)))
        kept.append(keep)
    return tuple(plan), kept, extra


def _build_transposed_body(body, c_lin, x_lin, nc, nk, length):
    avals = body.in_avals
    linear = list(c_lin) + [True] * nk + list(x_lin)
    bt = interpreters.transpose_jaxpr(body, linear)
    res_c_avals = [a for a, l in zip(avals[:nc], c_lin) if not l]
    lin_c_avals = [a for a, l in zip(avals[:nc], c_lin) if l]
    carry_avals = avals[nc:nc + nk]
    res_x_avals = [a for a, l in zip(avals[nc + nk:], x_lin) if not l]
    y_avals = body.out_avals[nk:]
    n_rc, n_lc, n_rx = len(res_c_avals), len(lin_c_avals), len(res_x_avals)
    plan, kept, extra = _plan_const_cts(bt, n_lc, n_rc, (n_rx, len(y_avals)), length)
    # the transposed body computing the kept contributions, the carry and xs
    # cotangents and the values to stack
    j = bt.jaxpr
    n_kept = [len(k) for k in kept]
    outvars = [v for k in kept for v, _ in k] + j.outvars[n_lc:] + extra
    bt2 = prune(ClosedJaxpr(Jaxpr(j.constvars, j.invars, outvars, j.eqns), bt.consts),
                [True] * len(j.invars), [True] * len(outvars))
    carried = [c for c, _ in plan]
    n_acc = sum(carried)

    def fun(*a):
        res_c, acc, ct_carry, res_x, ct_y = _split(a, n_rc, n_acc, nk, n_rx)
        outs = eval_jaxpr(bt2.jaxpr, bt2.consts, *res_c, *res_x, *ct_carry, *ct_y)
        parts = _split(outs, *n_kept)
        rest = parts.pop()
        acc, new_acc = iter(acc), []
        for c, p, k in zip(carried, parts, kept):
            if c:
                new_acc.append(_lincomb([next(acc)] + p, [1.0] + [cf for _, cf in k]))
        return new_acc + rest

    in_avals = (res_c_avals + [tangent_aval(a) for a, c in zip(lin_c_avals, carried) if c]
                + [tangent_aval(a) for a in carry_avals] + res_x_avals
                + [tangent_aval(a) for a in y_avals])
    j, c = trace_to_jaxpr(fun, in_avals, name='transpose(scan)')
    return ClosedJaxpr(j, c), plan


from ._jaxpr_util import _Memo
_tbody_memo = _Memo(256)


def _scan_dce(eqn, used_outputs):
    p = eqn.params
    jaxpr, nc, nk = p['jaxpr'], p['num_consts'], p['num_carry']
    used_carry = list(used_outputs[:nk])
    used_ys = list(used_outputs[nk:])
    while True:
        ui = used_inputs(jaxpr, used_carry + used_ys)
        new = [c or u for c, u in zip(used_carry, ui[nc:nc + nk])]
        if new == used_carry:
            break
        used_carry = new
    keep_in = ui[:nc] + used_carry + ui[nc + nk:]
    body = prune(jaxpr, keep_in, used_carry + used_ys)
    from tracer import DropVar
    outvars = [v if u else DropVar(v.aval) for v, u, c in
               zip(eqn.outvars[:nk], used_outputs[:nk], used_carry) if c]
    outvars += [v for v, u in zip(eqn.outvars[nk:], used_ys) if u]
    return eqn.replace(invars=[v for v, k in zip(eqn.invars, keep_in) if k], outvars=outvars,
                       params=dict(p, jaxpr=body, num_consts=sum(ui[:nc]),
                                   num_carry=sum(used_carry)))


scan_p.impl = _scan_impl
scan_p.abstract_eval = _scan_abstract_eval
scan_p.jvp = _scan_jvp
scan_p.partial_eval = _scan_partial_eval
scan_p.transpose = _scan_transpose
scan_p.dce_rule = _scan_dce


def _carry_mismatch(what, f, in_tree, out_tree, in_avals, out_avals, where):
    """A TypeError describing how a loop body's output differs from its carry."""
    if in_tree != out_tree:
        return TypeError(with_user_line(
            f"{what}: the body function {fun_name(f)} must return the carry with the "
            f"structure it was given: the carry is {in_tree} but the body returned "
            f"{out_tree}{where}."))
    for i, (a, b) in enumerate(zip(in_avals, out_avals)):
        if not same_type(a, b):
            return TypeError(with_user_line(
                f"{what}: the body function {fun_name(f)} changes the type of the carry: "
                f"carry leaf {i} is {a.str_short()} on input but {b.str_short()} on "
                f"output{where}. The carry must keep its shape and dtype across "
                f"iterations (convert with .astype, or start from a value of the right "
                f"type)."))
    return None


def _promote_weak(init_flat, in_avals, out_avals):
    """Weakly typed initial carries (Python scalars) take the dtype the body gives
    them, as in JAX. -> (new init, changed?)"""
    changed = False
    new = list(init_flat)
    for i, (a, b) in enumerate(zip(in_avals, out_avals)):
        if a.weak_type and a.shape == b.shape and a.dtype != b.dtype:
            from .convert import convert_element_type
            x = new[i]
            new[i] = (convert_element_type(x, b.dtype) if isinstance(x, Tracer)
                      else np.asarray(x, b.dtype))
            changed = True
    return new, changed


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """Loop f over the leading axis of xs carrying state:

        def scan(f, init, xs, length=None):
            carry, ys = init, []
            for x in xs:
                carry, y = f(carry, x)
                ys.append(y)
            return carry, stack(ys)

    init, xs and the outputs are pytrees; xs=None scans `length` times with x=None.
    f is traced once, whatever the length."""
    if not callable(f):
        raise TypeError("scan: f must be callable, f(carry, x) -> (carry, y)")
    xs_flat, xs_tree = tree_flatten(xs)
    lengths = set()
    for x in xs_flat:
        a = get_aval(x)
        if not a.shape:
            raise ValueError(with_user_line(
                f"scan: every leaf of xs needs a leading axis to scan over, got a scalar "
                f"{a.str_short()}"))
        lengths.add(a.shape[0])
    if length is not None:
        try:
            length = int(length)
        except (TypeError, ConcretizationTypeError):
            raise TypeError("scan: length must be a concrete integer") from None
        lengths.add(length)
    if len(lengths) > 1:
        raise ValueError(with_user_line(
            f"scan: the leaves of xs must share one leading axis size (and equal `length` "
            f"if given), got sizes {sorted(lengths)}"))
    if not lengths:
        raise ValueError(with_user_line("scan: give xs or length (xs=None needs length)"))
    length = lengths.pop()
    init_flat, init_tree = tree_flatten(init)
    x_avals = [unstacked(get_aval(x)) for x in xs_flat]
    from tracer import tree_structure
    for attempt in range(2):
        init_avals = [get_aval(x) for x in init_flat]
        in_tree = tree_structure(((tree_unflatten(init_tree, init_flat)),
                                  tree_unflatten(xs_tree, xs_flat)))
        closed, out_tree, lifted = trace_fun(lambda c, x: _pair_out(f, c, x), in_tree,
                                             init_avals + x_avals, 'scan')
        if out_tree.kind is not tuple or len(out_tree.children) != 2:
            raise TypeError(with_user_line(
                f"scan: the body function {fun_name(f)} must return a pair (carry, y), "
                f"got a value of structure {out_tree}"))
        carry_tree, ys_tree = out_tree.children
        nk = len(init_flat)
        out_avals = closed.out_avals[:nk] if carry_tree.num_leaves == nk else []
        if attempt == 0 and carry_tree == init_tree:
            init_flat, changed = _promote_weak(init_flat, init_avals, out_avals)
            if changed:
                continue
        break
    err = _carry_mismatch('scan', f, init_tree, carry_tree, init_avals,
                          closed.out_avals[:nk], '')
    if err is not None:
        raise err
    outs = scan_p.bind(*lifted, *init_flat, *xs_flat, jaxpr=closed, num_consts=len(lifted),
                       num_carry=nk, length=length, reverse=bool(reverse), unroll=unroll)
    return tree_unflatten(carry_tree, outs[:nk]), tree_unflatten(ys_tree, outs[nk:])


def _pair_out(f, c, x):
    out = f(c, x)
    if isinstance(out, list) and len(out) == 2:
        out = tuple(out)
    return out


# ======================================================================================
# while_loop
# ======================================================================================

while_p = Primitive('while', multiple_results=True)


def _while_impl(*args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cc = args[:cond_nconsts]
    bc = args[cond_nconsts:cond_nconsts + body_nconsts]
    carry = args[cond_nconsts + body_nconsts:]
    cf, bf = python_fn(cond_jaxpr), python_fn(body_jaxpr)
    while cf(*cc, *carry)[0]:
        carry = bf(*bc, *carry)
    return list(carry)


def _while_abstract_eval(*avals, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cc, bc, carry = _split(avals, cond_nconsts, body_nconsts)
    if not all(map(same_type, cc + carry, cond_jaxpr.in_avals)) or \
            len(cc + carry) != len(cond_jaxpr.in_avals):
        raise TypeError(f"while: cond_jaxpr takes {_fmt_avals(cond_jaxpr.in_avals)}, got "
                        f"{_fmt_avals(cc + carry)}")
    if not all(map(same_type, bc + carry, body_jaxpr.in_avals)) or \
            len(bc + carry) != len(body_jaxpr.in_avals):
        raise TypeError(f"while: body_jaxpr takes {_fmt_avals(body_jaxpr.in_avals)}, got "
                        f"{_fmt_avals(bc + carry)}")
    if not all(map(same_type, body_jaxpr.out_avals, carry)):
        raise TypeError(f"while: body_jaxpr returns {_fmt_avals(body_jaxpr.out_avals)} for a "
                        f"carry of {_fmt_avals(carry)}")
    p = cond_jaxpr.out_avals
    if len(p) != 1 or p[0].shape != () or p[0].dtype != np.bool_:
        raise TypeError(f"while: cond_jaxpr must return a boolean scalar, got {_fmt_avals(p)}")
    return list(body_jaxpr.out_avals)


def _while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    nc, nb = cond_nconsts, body_nconsts
    cc, bc, init = _split(primals, nc, nb)
    _, bc_t, init_t = _split(tangents, nc, nb)
    b_avals = body_jaxpr.in_avals
    bc_nz = [_nonzero(t, a) for t, a in zip(bc_t, b_avals[:nb])]
    carry_nz = [_nonzero(t, a) for t, a in zip(init_t, b_avals[nb:])]
    jvp = interpreters.jvp_jaxpr
    while True:
        _, out_nz = jvp(body_jaxpr, bc_nz + carry_nz, carry_nz)
        new = [c or (o and _is_float(a)) for c, o, a in zip(carry_nz, out_nz, b_avals[nb:])]
        if new == carry_nz:
            break
        carry_nz = new
    if not any(carry_nz):
        outs = while_p.bind(*primals, cond_jaxpr=cond_jaxpr, body_jaxpr=body_jaxpr,
                            cond_nconsts=nc, body_nconsts=nb)
        return outs, [Zero(tangent_aval(get_aval(o))) for o in outs]
    closed, _ = jvp(body_jaxpr, bc_nz + carry_nz, carry_nz)
    nk = len(init)
    n = nb + nk
    n_bt = sum(bc_nz)
    # jvp body: (bc, carry, bc_t, carry_t) -> (carry, carry_t); the loop wants
    # (bc, bc_t, carry, carry_t)
    order = list(range(nb)) + list(range(n, n + n_bt)) + list(range(nb, n)) + \
        list(range(n + n_bt, len(closed.in_avals)))
    body = permute(closed, order)
    t_avals = [tangent_aval(a) for a, z in zip(b_avals[nb:], carry_nz) if z]
    cond = add_unused_inputs(cond_jaxpr, t_avals, len(cond_jaxpr.in_avals))
    args = (cc + bc + [t for t, z in zip(bc_t, bc_nz) if z] + init
            + [_instantiate(t, a) for t, a, z in zip(init_t, b_avals[nb:], carry_nz) if z])
    outs = while_p.bind(*args, cond_jaxpr=cond, body_jaxpr=body, cond_nconsts=nc,
                        body_nconsts=nb + n_bt)
    ts = iter(outs[nk:])
    return outs[:nk], [next(ts) if z else Zero(tangent_aval(a))
                       for z, a in zip(carry_nz, b_avals[nb:])]


def _while_partial_eval(trace, args, params):
    cond_jaxpr, body_jaxpr = params['cond_jaxpr'], params['body_jaxpr']
    nc, nb = params['cond_nconsts'], params['body_nconsts']
    uk = [_unknown(trace, x) for x in args]
    cc_uk, bc_uk, carry_uk = _split(uk, nc, nb)
    pe = interpreters.partial_eval_jaxpr
    while True:
        _, _, out_uk, _ = pe(body_jaxpr, bc_uk + carry_uk, carry_uk)
        new = [c or o for c, o in zip(carry_uk, out_uk)]
        if new == carry_uk:
            break
        carry_uk = new
    cond_uk = depends_on(cond_jaxpr, cc_uk + carry_uk)[0]
    if cond_uk or all(carry_uk):
        return trace.stage(while_p, args, params)
    # The carries that do not depend on unknowns are computed now; the unknown ones
    # by the whole loop, staged (it recomputes the known carries it needs).
    cc, bc, init = _split(args, nc, nb)
    nk = len(init)
    known = [not u for u in carry_uk]
    body_k = prune(body_jaxpr, [not u for u in bc_uk] + known, known)
    # (the known carries read no unknown body const: else they would be unknown)
    cond_k = prune(cond_jaxpr, [True] * nc + known, [True])
    k_outs = while_p.bind(*cc, *[x for x, u in zip(bc, bc_uk) if not u],
                          *[x for x, u in zip(init, carry_uk) if not u],
                          cond_jaxpr=cond_k, body_jaxpr=body_k, cond_nconsts=nc,
                          body_nconsts=bc_uk.count(False))
    all_outs = trace.stage(while_p, args, params)
    k_it = iter(k_outs)
    return [o if u else next(k_it) for o, u in zip(all_outs, carry_uk)]


_WHILE_REVERSE_MSG = (
    "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop with "
    "dynamic start/stop values: the number of iterations is not known before the loop "
    "runs, so the values the backward pass needs cannot be saved. Try using lax.scan, or "
    "lax.fori_loop with static trip count (Python int bounds). Forward mode (jvp, "
    "jacfwd) works.")


def _while_transpose(cts, *args, **params):
    raise ValueError(with_user_line(_WHILE_REVERSE_MSG))


while_p.impl = _while_impl
while_p.abstract_eval = _while_abstract_eval
while_p.jvp = _while_jvp
while_p.partial_eval = _while_partial_eval
while_p.transpose = _while_transpose


def while_loop(cond_fun, body_fun, init_val):
    """val = init_val; while cond_fun(val): val = body_fun(val); return val.
    Both functions are traced once; body_fun must keep the carry's types and
    cond_fun must return a boolean scalar. Forward-mode differentiable only."""
    if not callable(cond_fun) or not callable(body_fun):
        raise TypeError("while_loop(cond_fun, body_fun, init_val): cond_fun and body_fun "
                        "must be callable")
    init_flat, init_tree = tree_flatten(init_val)
    from tracer import tree_structure
    for attempt in range(2):
        avals = [get_aval(x) for x in init_flat]
        body, body_tree, body_lift = trace_fun(body_fun, tree_structure((init_val,)), avals,
                                               'while_loop')
        if attempt == 0 and body_tree == init_tree:
            init_flat, changed = _promote_weak(init_flat, avals, body.out_avals)
            if changed:
                init_val = tree_unflatten(init_tree, init_flat)
                continue
        break
    err = _carry_mismatch('while_loop', body_fun, init_tree, body_tree, avals,
                          body.out_avals, '')
    if err is not None:
        raise err
    cond, cond_tree, cond_lift = trace_fun(cond_fun, tree_structure((init_val,)), avals,
                                           'while_loop')
    p = cond.out_avals
    if cond_tree.num_leaves != 1 or p[0].shape != () or p[0].dtype != np.bool_:
        got = _fmt_avals(p) if cond_tree.num_leaves != 1 else p[0].str_short()
        raise TypeError(with_user_line(
            f"while_loop: the cond function {fun_name(cond_fun)} must return a boolean "
            f"scalar (bool[]), got {got}. Reduce it (pnp.all / pnp.any) or compare "
            f"(e.g. x < n)."))
    outs = while_p.bind(*cond_lift, *body_lift, *init_flat, cond_jaxpr=cond, body_jaxpr=body,
                        cond_nconsts=len(cond_lift), body_nconsts=len(body_lift))
    return tree_unflatten(init_tree, outs)


# ======================================================================================
# fori_loop
# ======================================================================================

def _concrete_int(x):
    if isinstance(x, Tracer):
        try:
            v = x._concrete()
        except ConcretizationTypeError:
            return None
        return _concrete_int(v)
    a = np.asarray(x)
    if a.shape != () or a.dtype.kind not in 'iu':
        if a.shape == () and a.dtype.kind == 'b':
            return None
        raise TypeError(f"fori_loop: bounds must be integer scalars, got {get_aval(x).str_short()}")
    return int(a)


def fori_loop(lower, upper, body_fun, init_val, unroll=1):
    """for i in range(lower, upper): val = body_fun(i, val); return val.

    With concrete bounds (Python or NumPy ints) this is a scan of upper - lower steps
    (reverse-mode differentiable); with traced bounds a while_loop (forward mode
    only), as in JAX."""
    lo, hi = _concrete_int(lower), _concrete_int(upper)
    dtype = np.result_type(get_aval(lower).dtype, get_aval(upper).dtype)
    if lo is not None and hi is not None:
        def step(carry, _):
            i, x = carry
            return (i + np.ones((), dtype), body_fun(i, x)), None
        (_, out), _ = scan(step, (np.asarray(lo, dtype), init_val), None,
                           length=max(hi - lo, 0), unroll=unroll)
        return out
    from .convert import convert_element_type

    def as_index(b):
        return convert_element_type(b, dtype) if isinstance(b, Tracer) else np.asarray(b, dtype)

    def cond_fun(c):
        i, n, _ = c
        return i < n

    def body(c):
        i, n, x = c
        return i + np.ones((), dtype), n, body_fun(i, x)
    _, _, out = while_loop(cond_fun, body, (as_index(lower), as_index(upper), init_val))
    return out


# ======================================================================================
# batching (vmap)
# ======================================================================================

def _to_front(x, d):
    from ._batching import moveaxis
    return x if d is None else moveaxis(x, d, 0)


def _batched_aval(aval, size):
    return ShapedArray((size,) + aval.shape, aval.dtype, aval.weak_type)


def _cond_batch(args, dims, *, branches):
    from ._batching import axis_size
    from .shape_ops import broadcast_in_dim
    from .logical import select_n
    from .arith import max as max_, min as min_
    size = axis_size(args, dims)
    index, ops = args[0], [_to_front(x, d) for x, d in zip(args[1:], dims[1:])]
    in_dims = [None if d is None else 0 for d in dims[1:]]
    bj = interpreters.batch_jaxpr
    n_out = len(branches[0].out_avals)
    if dims[0] is not None:
        # a batched predicate: every branch runs on the whole batch, then a select
        # picks each element's result
        idx = min_(max_(_to_front(index, dims[0]), np.int32(0)), np.int32(len(branches) - 1))
        results = []
        for b in branches:
            bb, _ = bj(b, size, in_dims, [0] * n_out)
            results.append(eval_jaxpr(bb.jaxpr, bb.consts, *ops))
        outs = []
        for k, a in enumerate(branches[0].out_avals):
            which = broadcast_in_dim(idx, (size,) + a.shape, (0,))
            outs.append(select_n(which, *[r[k] for r in results]))
        return outs, [0] * n_out
    batched = [False] * n_out
    for b in branches:
        _, od = bj(b, size, in_dims)
        batched = [x or d is not None for x, d in zip(batched, od)]
    out_dims = [0 if x else None for x in batched]
    new = tuple(bj(b, size, in_dims, out_dims)[0] for b in branches)
    return cond_p.bind(index, *ops, branches=new), out_dims


def _scan_batch(args, dims, *, jaxpr, num_consts, num_carry, length, reverse, unroll):
    from ._batching import axis_size, bdim_to, moveaxis
    size = axis_size(args, dims)
    nc, nk = num_consts, num_carry
    c_d, i_d, x_d = _split(dims, nc, nk)
    carry_b = [d is not None for d in i_d]
    bj = interpreters.batch_jaxpr
    const_in = [None if d is None else 0 for d in c_d]
    xs_in = [None if d is None else 0 for d in x_d]
    while True:
        in_dims = const_in + [0 if b else None for b in carry_b] + xs_in
        _, od = bj(jaxpr, size, in_dims)
        new = [c or d is not None for c, d in zip(carry_b, od[:nk])]
        if new == carry_b:
            break
        carry_b = new
    ys_b = [d is not None for d in od[nk:]]
    body, _ = bj(jaxpr, size, in_dims, [0 if b else None for b in carry_b + ys_b])
    consts, init, xs = _split(args, nc, nk)
    consts = [_to_front(x, d) for x, d in zip(consts, c_d)]
    init = [bdim_to(x, d, size, 0) if b else x for x, d, b in zip(init, i_d, carry_b)]
    # the scanned axis stays first; the batch axis goes second
    xs = [x if d is None else moveaxis(x, d, 1) for x, d in zip(xs, x_d)]
    outs = scan_p.bind(*consts, *init, *xs, jaxpr=body, num_consts=nc, num_carry=nk,
                       length=length, reverse=reverse, unroll=unroll)
    return outs, [0 if b else None for b in carry_b] + [1 if b else None for b in ys_b]


def _while_batch(args, dims, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    from ._batching import axis_size, bdim_to
    from .shape_ops import broadcast_in_dim
    from .logical import select_n
    from .reductions import reduce_max
    size = axis_size(args, dims)
    nc, nb = cond_nconsts, body_nconsts
    cc, bc, init = _split(args, nc, nb)
    cc_d, bc_d, i_d = _split(dims, nc, nb)
    cc = [_to_front(x, d) for x, d in zip(cc, cc_d)]
    bc = [_to_front(x, d) for x, d in zip(bc, bc_d)]
    cc_in = [None if d is None else 0 for d in cc_d]
    bc_in = [None if d is None else 0 for d in bc_d]
    bj = interpreters.batch_jaxpr
    carry_b = [d is not None for d in i_d]
    while True:
        carry_in = [0 if b else None for b in carry_b]
        _, od = bj(body_jaxpr, size, bc_in + carry_in)
        new = [c or d is not None for c, d in zip(carry_b, od)]
        _, pd = bj(cond_jaxpr, size, cc_in + carry_in)
        if pd[0] is not None:
            new = [True] * len(carry_b)   # elements stop at different times
        if new == carry_b:
            break
        carry_b = new
    init = [bdim_to(x, d, size, 0) if b else x for x, d, b in zip(init, i_d, carry_b)]
    carry_in = [0 if b else None for b in carry_b]
    if pd[0] is None:
        cond_b, _ = bj(cond_jaxpr, size, cc_in + carry_in, [None])
        body_b, _ = bj(body_jaxpr, size, bc_in + carry_in, carry_in)
        outs = while_p.bind(*cc, *bc, *init, cond_jaxpr=cond_b, body_jaxpr=body_b,
                            cond_nconsts=nc, body_nconsts=nb)
        return outs, carry_in
    # a batched predicate: loop while any element is running; finished elements keep
    # their carry (the body's result is selected per element)
    cond_b, _ = bj(cond_jaxpr, size, cc_in + carry_in, [0])
    body_b, _ = bj(body_jaxpr, size, bc_in + carry_in, carry_in)
    cc_avals = [get_aval(x) for x in cc]
    bc_avals = [get_aval(x) for x in bc]
    carry_avals = [_batched_aval(a, size) for a in body_jaxpr.in_avals[nb:]]

    def any_fun(*a):
        p = eval_jaxpr(cond_b.jaxpr, cond_b.consts, *a)[0]
        return [reduce_max(p, (0,))]

    def body_fun(*a):
        c_consts, b_consts, carry = _split(a, nc, nb)
        p = eval_jaxpr(cond_b.jaxpr, cond_b.consts, *c_consts, *carry)[0]
        new = eval_jaxpr(body_b.jaxpr, body_b.consts, *b_consts, *carry)
        return [select_n(broadcast_in_dim(p, (size,) + tuple(n.shape[1:]), (0,)), old, n)
                for old, n in zip(carry, new)]
    j1, c1 = trace_to_jaxpr(any_fun, cc_avals + carry_avals, name='vmap(while)')
    j2, c2 = trace_to_jaxpr(body_fun, cc_avals + bc_avals + carry_avals, name='vmap(while)')
    outs = while_p.bind(*cc, *cc, *bc, *init, cond_jaxpr=ClosedJaxpr(j1, c1),
                        body_jaxpr=ClosedJaxpr(j2, c2), cond_nconsts=nc, body_nconsts=nc + nb)
    return outs, [0] * len(outs)


cond_p.batch = _cond_batch
scan_p.batch = _scan_batch
while_p.batch = _while_batch


# --- numba lowering ---
# Loops and branches become Python loops and branches in the generated numba code,
# their bodies the sub-jaxprs' code inlined (`ctx.inline_jaxpr`, with fresh names;
# see transforms/codegen.py). Loop carries are locals rebound each iteration (the
# generated code never writes into an existing array, so a carry cannot alias a
# value still read); a scan reads its xs as views `xs[k]` and writes its ys into
# arrays allocated before the loop. Branches assign their outputs to the same
# names (the primitive's type rule makes their shapes and dtypes agree).
from ._lowering import Structural as _Structural  # noqa: E402


def _lw_rebind(ctx, names, exprs):
    """names <- exprs, simultaneously (an expression may read one of the names)."""
    pairs = [(n, e) for n, e in zip(names, exprs) if n != e]
    if len(pairs) == 1:
        ctx.emit(f'{pairs[0][0]} = {pairs[0][1]}')
        return
    tmps = []
    for n, e in pairs:
        t = ctx.fresh('nx')
        ctx.emit(f'{t} = {e}')
        tmps.append(t)
    for (n, _), t in zip(pairs, tmps):
        ctx.emit(f'{n} = {t}')


def _lw_locals(ctx, ops, prefix, owned=()):
    """Locals holding the loop carries; those in `owned` get a copy of their
    initial value (the loop may update them in place)."""
    names = []
    for k, op in enumerate(ops):
        n = ctx.fresh(prefix)
        ctx.emit(f"{n} = {ctx.helper('copy')}({op.expr})" if k in owned else f'{n} = {op.expr}')
        names.append(n)
    return names


def _lw_inplace(body, first_in, n):
    """Carries (positions 0..n-1 of the body's outputs, inputs first_in..) that an
    elementwise loop nest may update in place: -> {output pos: input pos}."""
    jx = body.jaxpr
    made_by = {}
    for e in jx.eqns:
        for v in e.outvars:
            made_by[v] = e
    outs = {}
    for k in range(n):
        ov, iv = jx.outvars[k], jx.invars[first_in + k]
        e = made_by.get(ov)
        if e is None or iv.aval.shape == () or e.primitive.lowering is None or \
                e.primitive.lowering.kind != 'elementwise' or \
                any(v is iv for v in jx.outvars) or sum(v is ov for v in jx.outvars) != 1:
            continue
        outs[k] = first_in + k
    return outs


def _lw_scan(ctx, ins, out_avals, *, jaxpr, num_consts, num_carry, length, reverse,
             unroll):
    consts, carry, xs = _split(ins, num_consts, num_carry)
    inplace = _lw_inplace(jaxpr, num_consts, num_carry)
    cnames = _lw_locals(ctx, carry, 'c', inplace)
    ys = []
    for a in out_avals[num_carry:]:
        y = ctx.fresh('ys')
        ctx.emit(f'{y} = {ctx.empty(a.shape, a.dtype)}')
        ys.append(y)
    k = ctx.fresh('k')
    rng = f'range({length - 1}, -1, -1)' if reverse else f'range({length})'
    with ctx.block(f'for {k} in {rng}:'):
        outs = ctx.inline_jaxpr(jaxpr, [c.expr for c in consts] + cnames +
                                [f'{x.expr}[{k}]' for x in xs], inplace)
        for y, e in zip(ys, outs[num_carry:]):
            ctx.emit(f'{y}[{k}] = {e}')
        _lw_rebind(ctx, cnames, outs[:num_carry])
    return cnames + ys


def _lw_while(ctx, ins, out_avals, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cc, bc, carry = _split(ins, cond_nconsts, body_nconsts)
    inplace = _lw_inplace(body_jaxpr, body_nconsts, len(carry))
    cnames = _lw_locals(ctx, carry, 'c', inplace)
    with ctx.block('while True:'):
        p, = ctx.inline_jaxpr(cond_jaxpr, [c.expr for c in cc] + cnames)
        with ctx.block(f'if not {p}:'):
            ctx.emit('break')
        outs = ctx.inline_jaxpr(body_jaxpr, [c.expr for c in bc] + cnames, inplace)
        _lw_rebind(ctx, cnames, outs)
    return cnames


def _lw_cond(ctx, ins, out_avals, *, branches):
    index, ops = ins[0], ins[1:]
    i = ctx.fresh('br')
    ctx.emit(f'{i} = {index.expr}')
    names = [ctx.fresh('o') for _ in out_avals]
    args = [o.expr for o in ops]
    n = len(branches)
    for k, b in enumerate(branches):
        if n == 1:
            head = None
        elif k == 0:
            head = f'if {i} <= 0:'
        elif k < n - 1:
            head = f'elif {i} == {k}:'
        else:
            head = 'else:'
        if head is None:
            outs = ctx.inline_jaxpr(b, args)
            _lw_rebind(ctx, names, outs)
            continue
        with ctx.block(head):
            outs = ctx.inline_jaxpr(b, args)
            for nm, e, a in zip(names, outs, out_avals):
                ctx.emit(f'{nm} = {ctx.cast(e, a.dtype) if a.shape == () else e}')
    return names


scan_p.lowering = _Structural(_lw_scan)
while_p.lowering = _Structural(_lw_while)
cond_p.lowering = _Structural(_lw_cond)
