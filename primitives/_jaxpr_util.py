"""What the higher-order primitives share: tracing a user function once into a
ClosedJaxpr, fast evaluation of a jaxpr on concrete values (for loop bodies run
thousands of times), and small jaxpr rearrangements their rules need.

Fast evaluation: `python_fn(closed)` turns a jaxpr into a Python function whose
body calls each equation's implementation directly, one line per equation, with
the parameters bound as globals (no environment dictionary, no `bind`
dispatch). Loops (`scan_loop`) are generated the same way, the body inlined in
a `for` loop that writes the stacked outputs into preallocated arrays. Only
used on concrete values: a primitive's impl runs when no argument is traced,
and a higher-order primitive's params hold no tracers.
"""
import builtins
import keyword
import operator
import os
from collections import OrderedDict

import numpy as np

from tracer import (ClosedJaxpr, Jaxpr, JaxprTrace, Literal, DropVar, Var, Tracer,
                    new_trace, tree_flatten, tree_unflatten, ShapedArray)
from tracer.staging import dce, lift_traced_consts
from tracer.eval import last_uses
from tracer.memo import Memo


# --- tracing a user function -----------------------------------------------------------

def trace_fun(fun, in_tree, in_avals, name):
    """Trace `fun(*tree_unflatten(in_tree, args))` on abstract arguments.

    -> (closed, out_tree, lifted): `lifted` are the constants that are tracers of
    enclosing transforms (values the function closes over); they become leading
    inputs of the jaxpr, since a primitive's params must hold no tracers."""
    out_box = []
    trace = JaxprTrace(name)
    with new_trace(trace, dynamic=True):
        args = [trace.new_arg(a) for a in in_avals]
        out = fun(*tree_unflatten(in_tree, args))
        leaves, out_tree = tree_flatten(out)
        out_box.append(out_tree)
        jaxpr, consts = trace.to_jaxpr(leaves)
    closed, lifted = lift_traced_consts(jaxpr, consts)
    return closed, out_tree, lifted


def uses_and_producers(jaxpr):
    """({var: number of reads, outputs counted}, {var: the equation defining it})."""
    uses, producer = {}, {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if type(v) is not Literal:
                uses[v] = uses.get(v, 0) + 1
        for v in eqn.outvars:
            producer[v] = eqn
    for v in jaxpr.outvars:
        if type(v) is not Literal:
            uses[v] = uses.get(v, 0) + 1
    return uses, producer


def fun_name(fun):
    """"'name' (file.py:12)", for error messages."""
    name = getattr(fun, '__name__', None) or type(fun).__name__
    code = getattr(fun, '__code__', None)
    if code is None:
        return f"'{name}'"
    return f"'{name}' ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


def same_type(a, b):
    return a.shape == b.shape and a.dtype == b.dtype


# --- jaxpr rearrangements ----------------------------------------------------------------

def permute(closed, in_order=None, out_order=None):
    """`closed` with its inputs/outputs taken in a new order (lists of indices)."""
    j = closed.jaxpr
    invars = j.invars if in_order is None else [j.invars[i] for i in in_order]
    outvars = j.outvars if out_order is None else [j.outvars[i] for i in out_order]
    return ClosedJaxpr(Jaxpr(j.constvars, invars, outvars, j.eqns), closed.consts)


def add_unused_inputs(closed, avals, where=0):
    """`closed` taking extra inputs (of `avals`) that it ignores, inserted at `where`."""
    j = closed.jaxpr
    extra = [Var(a) for a in avals]
    invars = j.invars[:where] + extra + j.invars[where:]
    return ClosedJaxpr(Jaxpr(j.constvars, invars, j.outvars, j.eqns), closed.consts)


def prune(closed, keep_inputs, keep_outputs):
    """`closed` computing only the kept outputs, taking exactly the kept inputs (the
    caller guarantees the kept outputs read no dropped input)."""
    j = closed.jaxpr
    outvars = [v for v, k in zip(j.outvars, keep_outputs) if k]
    invars = [v for v, k in zip(j.invars, keep_inputs) if k]
    pruned, consts = dce(j.constvars, closed.consts, invars, outvars, j.eqns)
    return ClosedJaxpr(pruned, consts)


def used_inputs(closed, used_outputs):
    """Which inputs the flagged outputs read (through the equations)."""
    j = closed.jaxpr
    outvars = [v for v, u in zip(j.outvars, used_outputs) if u]
    live = set(v for v in outvars if type(v) is not Literal)
    for eqn in reversed(j.eqns):
        if any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if type(v) is not Literal)
    return [v in live for v in j.invars]


def depends_on(closed, which_inputs):
    """For each output: does it depend on any of the flagged inputs?"""
    j = closed.jaxpr
    dep = set(v for v, w in zip(j.invars, which_inputs) if w)
    for eqn in j.eqns:
        if any(type(v) is not Literal and v in dep for v in eqn.invars):
            dep.update(eqn.outvars)
    return [type(v) is not Literal and v in dep for v in j.outvars]


def zeros(aval):
    return np.zeros(aval.shape, aval.dtype)


def stacked(aval, length):
    return ShapedArray((length,) + aval.shape, aval.dtype)


def unstacked(aval):
    return ShapedArray(aval.shape[1:], aval.dtype, aval.weak_type)


# --- fast evaluation on concrete values ----------------------------------------------

_Memo = Memo   # generated functions per jaxpr object


_memo = _Memo()


class _Gen:
    """Python source for a jaxpr's equations, with the values it needs as globals."""

    def __init__(self):
        self.glob = {'__builtins__': builtins, 'np': np}
        self.names = {}
        self.bound = set()
        self.count = 0

    def const(self, val, prefix='_k'):
        n = f"{prefix}{len(self.glob)}"
        self.glob[n] = val
        return n

    def fresh(self):
        self.count += 1
        return f"_v{self.count}"

    def bind_var(self, v, name=None):
        if isinstance(v, DropVar):
            return '_'
        n = name or self.fresh()
        self.names[v] = n
        self.bound.add(v)      # a local of the generated function
        return n

    def atom(self, v):
        if type(v) is Literal:
            return self.const(v.val)
        return self.names[v]

    def eqns(self, jaxpr, indent, free=False):
        """The equations' source lines (the calls of `plan`); with `free`, each local
        value is deleted after its last use (peak memory that of the live values,
        as eval_jaxpr)."""
        pad = ' ' * indent
        lines = []
        steps, dead = plan(jaxpr, free)
        for i, (fn, args, params, outvars, multiple) in enumerate(steps):
            if dead is not None and i:
                gone = [self.names[v] for v in dead[i - 1] if v in self.bound]
                if gone:
                    lines.append(f"{pad}del {', '.join(gone)}")
            if fn is None:
                continue
            args = [f"({', '.join(self.atom(v) for v in a)},)" if type(a) is tuple
                    else self.atom(a) for a in args]
            if params:
                if all(k.isidentifier() and not keyword.iskeyword(k) for k in params):
                    args += [f"{k}={self.const(p, '_p')}" for k, p in params.items()]
                else:
                    args.append(f"**{self.const(dict(params), '_p')}")
            call = f"{self.const(fn, '_f')}({', '.join(args)})"
            if multiple:
                outs = [self.bind_var(v) for v in outvars]
                if outs:
                    lines.append(f"{pad}{', '.join(outs)}, = {call}")
                else:
                    lines.append(f"{pad}{call}")
            else:
                lines.append(f"{pad}{self.bind_var(outvars[0])} = {call}")
        return lines

    def compile(self, src, name):
        # the source names its values by position only (_f3, _p4, ...), so code
        # objects are shared by every jaxpr of one structure (a loop body re-traced
        # on each call of grad compiles once)
        code = _code_cache.get(src)
        if code is None:
            code = compile(src, f"<cotangent {name}>", 'exec')
            _code_cache[src] = code
            if len(_code_cache) > 512:
                _code_cache.popitem(last=False)
        else:
            _code_cache.move_to_end(src)
        exec(code, self.glob)
        return self.glob[name]


_code_cache = OrderedDict()


def _fast_impl(eqn):
    """A direct NumPy function for a few equations whose generic impl is slow in a
    loop body: an outer product (dot_general without contraction or batch
    dimensions; NumPy's tensordot costs ~10x np.multiply.outer for two vectors), and
    matrix-vector / matrix-matrix products (np.dot, without the generic impl's
    dispatch on the dimension numbers, decided here once from the avals), slices and
    squeezes (basic indexing: views, as their impls return)."""
    name = eqn.primitive.name
    if name == 'slice' and eqn.invars[0].aval.ndim >= 1 and type(eqn.invars[0]) is not Literal:
        # the bounds were checked when the jaxpr was built: basic indexing (a view)
        p = eqn.params
        st = p['strides'] or (1,) * len(p['start_indices'])
        return operator.itemgetter(tuple(
            slice(int(a), int(b), int(c)) for a, b, c in zip(p['start_indices'],
                                                             p['limit_indices'], st)))
    if name == 'squeeze' and eqn.invars[0].aval.ndim >= 1 and type(eqn.invars[0]) is not Literal:
        dims = set(d % eqn.invars[0].aval.ndim for d in eqn.params['dimensions'])
        # (the trailing Ellipsis keeps a 0-d result an array, not a NumPy scalar)
        return operator.itemgetter(tuple(0 if d in dims else slice(None)
                                         for d in range(eqn.invars[0].aval.ndim)) + (...,))
    if name == 'dot_general':
        (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
        a, b = eqn.invars
        if eqn.params.get('preferred_element_type') is not None or \
                a.aval.dtype != b.aval.dtype or lb:
            return None
        if not lc:
            return _OUTER
        na, nb = len(a.aval.shape), len(b.aval.shape)
        if len(lc) == 1 and 1 <= na <= 2 and 1 <= nb <= 2:
            return _DOTS[(lc[0] == na - 1, rc[0] == 0)]
    return None


def _outer_sums(jaxpr):
    """Sums of outer products of vectors (add_any of dot_generals without contraction,
    each used only there): -> (the dot equations to skip, {add_any eqn: its dots}).
    Such a sum is emitted as one matrix product of the stacked vectors (sum_k
    outer(a_k, b_k) = A^T B), as backpropagation through unrolled steps produces
    (the weight cotangent of K steps of an RNN). From three products on: for two
    the stacking costs about what it saves."""
    cands = [e for e in jaxpr.eqns if e.primitive.name == 'add_any' and len(e.invars) > 2
             and not any(c != 1 for c in (e.params.get('coeffs') or ()))]
    if not cands:
        return (), {}
    uses, producer = uses_and_producers(jaxpr)
    fused, sums = set(), {}
    for e in cands:
        dots = []
        for v in e.invars:
            d = producer.get(v) if type(v) is not Literal else None
            if (d is None or uses[v] != 1 or _fast_impl(d) is not _OUTER or
                    any(type(x) is Literal or len(x.aval.shape) != 1 for x in d.invars)):
                break
            dots.append(d)
        else:
            a0, b0 = dots[0].invars
            if all(d.invars[0].aval.shape == a0.aval.shape and
                   d.invars[1].aval.shape == b0.aval.shape and
                   d.invars[0].aval.dtype == a0.aval.dtype == d.invars[1].aval.dtype
                   for d in dots) and e.outvars[0].aval.dtype == a0.aval.dtype:
                sums[e] = dots
                fused.update(dots)
    return fused, sums


def _sum_of_outers(lhs, rhs):
    return np.dot(np.array(lhs).T, np.array(rhs))


_OUTER = np.multiply.outer
_DOTS = {(True, True): np.dot,
         (True, False): lambda x, y: np.dot(x, y.T),
         (False, True): lambda x, y: np.dot(x.T, y),
         (False, False): lambda x, y: np.dot(x.T, y.T)}


def plan(jaxpr, free=False):
    """The calls that evaluate `jaxpr`: per equation (fn, args, params, outvars,
    multiple), args being vars, literals and tuples of them; fn None for an
    equation computed by another's call (a product folded into a sum of outer
    products). With `free` (and no such folding), also each equation's
    last_uses, else None. The generated functions and `interpreted_fn` both make
    these calls, so they compute the same numbers."""
    fused, sums = _outer_sums(jaxpr)
    steps = []
    for eqn in jaxpr.eqns:
        if eqn in fused:
            steps.append((None, (), None, eqn.outvars, False))
        elif eqn in sums:
            steps.append((_sum_of_outers, [tuple(e.invars[k] for e in sums[eqn]) for k in (0, 1)],
                          None, eqn.outvars, False))
        else:
            fast = _fast_impl(eqn)
            if fast is not None:
                steps.append((fast, eqn.invars, None, eqn.outvars, False))
            else:
                steps.append((eqn.primitive.impl, eqn.invars, eqn.params, eqn.outvars,
                              eqn.primitive.multiple_results))
    return steps, (last_uses(jaxpr) if free and not fused else None)


def interpreted_fn(closed):
    """python_fn(closed, free=True) without generating code: a loop over `plan`'s
    calls (no compilation, about a microsecond more per equation), for a jaxpr
    that may run only once."""
    j = closed.jaxpr
    steps, dead = plan(j, free=True)

    def run(*args):
        env = dict(zip(j.constvars, closed.consts))
        env.update(zip(j.invars, args))

        def read(v):
            return v.val if type(v) is Literal else env[v]
        for i, (fn, vs, params, outvars, multiple) in enumerate(steps):
            if fn is not None:
                vals = [tuple(map(read, v)) if type(v) is tuple else read(v) for v in vs]
                out = fn(*vals, **params) if params else fn(*vals)
                if multiple:
                    env.update(zip(outvars, out))
                else:
                    env[outvars[0]] = out
            if dead is not None:
                for v in dead[i]:
                    env.pop(v, None)
        return [read(v) for v in j.outvars]
    return run


def unaliased(outs, args, consts=()):
    """A compiled or generated program returns inputs and constants as themselves,
    and shape ops as views: copy any output that shares memory with an argument
    or a constant (or is read-only), so that writing into a result never changes
    the caller's arrays or the program's constants (eager NumPy results are fresh)."""
    owned = None
    for i, o in enumerate(outs):
        if type(o) is not np.ndarray:
            continue
        if not o.flags.writeable:
            alias = True
        else:
            alias = False
            for a in args:
                if type(a) is np.ndarray and (o is a or (o.base is not None and
                                                           np.may_share_memory(o, a))):
                    alias = True
                    break
            if not alias:
                for c in consts:
                    if type(c) is np.ndarray and (o is c or (o.base is not None and
                                                               np.may_share_memory(o, c))):
                        alias = True
                        break
        if alias:
            if owned is None:
                owned = list(outs)
            owned[i] = o.copy()
    return outs if owned is None else owned


def python_fn(closed, free=False):
    """A Python function (*args) -> list of outputs evaluating `closed` on concrete
    values by calling each equation's impl directly; with `free`, each value is
    dropped after its last use."""
    return _memo.get(closed, ('fn', free), lambda: _python_fn(closed, free))


def _python_fn(closed, free=False):
    j = closed.jaxpr
    g = _Gen()
    for v, c in zip(j.constvars, closed.consts):
        g.names[v] = g.const(c, '_c')
    args = [g.bind_var(v, f"_a{i}") for i, v in enumerate(j.invars)]
    lines = [f"def _fn({', '.join(args)}):"]
    lines += g.eqns(j, 4, free)
    lines.append(f"    return [{', '.join(g.atom(v) for v in j.outvars)}]")
    return g.compile('\n'.join(lines) + '\n', '_fn')


def scan_loop(closed, num_consts, num_carry):
    """A Python function (consts, carry, xs, ys_buffers, indices) -> final carry
    running the body of a scan with the body inlined in the loop; ys are written
    into the preallocated buffers."""
    return _memo.get(closed, ('scan', num_consts, num_carry),
                     lambda: _scan_loop(closed, num_consts, num_carry))


def _scan_loop(closed, num_consts, num_carry):
    j = closed.jaxpr
    g = _Gen()
    for v, c in zip(j.constvars, closed.consts):
        g.names[v] = g.const(c, '_c')
    n_xs = len(j.invars) - num_consts - num_carry
    n_ys = len(j.outvars) - num_carry
    consts = [g.bind_var(v, f"_a{i}") for i, v in enumerate(j.invars[:num_consts])]
    carry = [g.bind_var(v, f"_h{i}") for i, v in enumerate(j.invars[num_consts:num_consts + num_carry])]
    xs_in = [f"_xs{i}" for i in range(n_xs)]
    ys_buf = [f"_ys{i}" for i in range(n_ys)]
    x_names = [g.bind_var(v, f"_x{i}") for i, v in enumerate(j.invars[num_consts + num_carry:])]
    params = ['_consts', '_carry', '_xs', '_ysb', '_indices']
    lines = [f"def _loop({', '.join(params)}):"]
    for names, src in ((consts, '_consts'), (carry, '_carry'), (xs_in, '_xs'), (ys_buf, '_ysb')):
        if names:
            lines.append(f"    {', '.join(names)}, = {src}")
    lines.append("    for _i in _indices:")
    body = [f"        {x} = {xs}[_i]" for x, xs in zip(x_names, xs_in)]
    body += g.eqns(j, 8)
    outs = [g.atom(v) for v in j.outvars]
    for buf, y in zip(ys_buf, outs[num_carry:]):
        body.append(f"        {buf}[_i] = {y}")
    if carry:
        body.append(f"        {', '.join(carry)}, = {', '.join(outs[:num_carry])},")
    if not body:
        body.append("        pass")
    lines += body
    lines.append(f"    return [{', '.join(carry)}]")
    return g.compile('\n'.join(lines) + '\n', '_loop')
