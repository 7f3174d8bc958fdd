"""Staging: a trace that records equations into a jaxpr instead of computing.

`JaxprTrace` is the one builder: `make_jaxpr` runs it as the dynamic trace (it then
captures every operation, constants included), and `linearize` runs it under a JVP
trace to stage the tangent (linear) half of a computation while the primal half
runs eagerly below it. Building is O(1) per equation: identical equations are
shared (CSE) as they are emitted, and dead ones dropped (DCE) in one backward sweep.
"""
import numpy as np

from .avals import ShapedArray, native
from . import core as _core
from .core import Trace, Tracer, new_trace, get_aval
from .errors import with_user_line
from .ir import Var, DropVar, Literal, JaxprEqn, Jaxpr, ClosedJaxpr, is_literal_scalar, literal
from . import pytree

_ndarray = np.ndarray
_new = object.__new__


class JaxprTracer(Tracer):
    __slots__ = ('_aval', '_var')

    def __init__(self, trace, aval, var):
        self._trace = trace
        self._aval = aval
        self._var = var

    @property
    def aval(self):
        return self._aval

    @property
    def shape(self):
        return self._aval.shape

    @property
    def dtype(self):
        return self._aval.dtype


def as_eqn(compact):
    """The JaxprEqn of a compact equation (primitive, invars, outvar); see
    JaxprTrace.to_jaxpr."""
    primitive, invars, v = compact
    eqn = _new(JaxprEqn)
    eqn.primitive = primitive
    eqn.invars = list(invars)
    eqn.outvars = [v]
    eqn.params = {}
    eqn.source_info = None
    return eqn


class JaxprTrace(Trace):
    def __init__(self, name='make_jaxpr', cse=True):
        self.name = name
        self.compact = False    # may hold compact equations (see to_jaxpr)
        self.eqns = []
        self.invars = []
        self.constvars = []
        self.constvals = []
        self._const_ids = {}   # id(value) -> Var; values kept alive in constvals
        self._cse = {} if cse else None
        self._multiple_results = False   # some equation has several outputs

    def new_arg(self, aval):
        var = Var(aval)
        self.invars.append(var)
        return JaxprTracer(self, aval, var)

    def _atom(self, val):
        """The Var (or Literal) standing for a value from outside this trace."""
        if type(val) is not np.ndarray or val.ndim == 0:
            if not isinstance(val, Tracer) and is_literal_scalar(val):
                return literal(val)
        var = self._const_ids.get(id(val))
        if var is None:
            aval = get_aval(val)
            var = Var(aval.strip_weak_type() if isinstance(val, Tracer) else aval)
            self.constvars.append(var)
            self.constvals.append(val)
            self._const_ids[id(val)] = var
        return var

    def pure(self, val):
        var = self._atom(val)
        return JaxprTracer(self, var.aval, var)

    lift = pure

    def process_primitive(self, primitive, args, params):
        pe = primitive.partial_eval
        if pe is not None and self is not _core._dynamic_trace and not all(
                type(x) is JaxprTracer and x._trace is self for x in args):
            # Some inputs are known (values from below, as in linearize): a
            # higher-order primitive splits itself, running its known part now and
            # staging the rest. (The dynamic trace of make_jaxpr stages everything.)
            return pe(self, args, params)
        return self.stage(primitive, args, params)

    def stage(self, primitive, args, params):
        """Record `primitive` applied to `args` as one equation."""
        invars = []
        avals = []
        for x in args:
            tx = type(x)
            if tx is JaxprTracer and x._trace is self:
                v = x._var
            elif tx is _ndarray and x.ndim:
                # an array from below (a residual, when linearizing): the hot case
                v = self._residual(x, None)
            elif isinstance(x, Tracer):
                # a tracer of an outer transform (a residual when linearizing under
                # jvp): full_raise checks levels and liveness, and boxes it as a constant
                v = self.full_raise(x)._var
            else:
                v = self._atom(x)
            invars.append(v)
            avals.append(v.aval)
        try:
            out = primitive.abstract_eval(*avals, **params)
        except (TypeError, ValueError) as e:
            raise type(e)(with_user_line(str(e))) from None
        cse = self._cse
        if cse is not None:
            key = _cse_key(primitive, invars, params)
            if key is not None:
                hit = cse.get(key)
                if hit is not None:
                    return hit
        if primitive.multiple_results:
            self._multiple_results = True
            outvars = [Var(a) for a in out]
            result = [JaxprTracer(self, a, v) for a, v in zip(out, outvars)]
        else:
            # Var(out), JaxprTracer(self, out, v) and JaxprEqn(...) without their
            # __init__ calls: this runs once per staged equation
            v = _new(Var)
            v.aval = out
            outvars = [v]
            result = _new(JaxprTracer)
            result._trace = self
            result._aval = out
            result._var = v
        eqn = _new(JaxprEqn)
        eqn.primitive = primitive
        eqn.invars = invars
        eqn.outvars = outvars
        eqn.params = params
        eqn.source_info = None
        self.eqns.append(eqn)
        if cse is not None and key is not None:
            cse[key] = result
        return result

    def stage_typed(self, primitive, args, aval):
        """Record a single-result equation whose output type the caller knows (a
        linearization rule's elementwise map: the type of the tangent it scales),
        skipping the shape rule. args: tracers of this trace, arrays, scalars."""
        invars = []
        for x in args:
            tx = type(x)
            if tx is JaxprTracer:
                v = x._var
            elif tx is _ndarray and x.ndim:
                v = self._residual(x, None)
            else:
                v = self._atom(x)
            invars.append(v)
        return self._emit(primitive, invars, aval)

    def stage_same_type(self, primitive, args):
        """stage_typed(primitive, args, aval) where every arg is a tracer of this
        trace or an array of the first tracer's type `aval` (residual coefficients),
        and so is the output: the hot case of eager linearization."""
        first = args[0]
        if type(first) is JaxprTracer:
            aval = first._aval
        else:
            aval = next(x._aval for x in args if type(x) is JaxprTracer)
        invars = [x._var if type(x) is JaxprTracer else self._residual(x, aval)
                  for x in args]
        return self._emit(primitive, invars, aval)

    def stage_product(self, primitive, t, c):
        """stage_same_type(primitive, (t, c)) for one tracer `t` of this trace and
        one array `c` of its type (the hottest case: a tangent times a coefficient)."""
        aval = t._aval
        return self._emit(primitive, [t._var, self._residual(c, aval)], aval)

    def _residual(self, x, aval):
        """The constvar of array `x` (registered once per object); `aval` is its
        type if the caller knows it, else None."""
        v = self._const_ids.get(id(x))
        if v is None:
            if aval is None:
                aval = _new(ShapedArray)
                aval.shape = x.shape
                aval.dtype = x.dtype
                aval.weak_type = False
            v = _new(Var)
            v.aval = aval
            self.constvars.append(v)
            self.constvals.append(x)
            self._const_ids[id(x)] = v
        return v

    def stage_known(self, primitive, args, params, aval):
        """Record primitive(*args, **params) whose output type the caller knows
        (skipping the shape rule); args: tracers of this trace or arrays."""
        invars = [x._var if type(x) is JaxprTracer else self._residual(x, None)
                  for x in args]
        return self._emit(primitive, invars, aval, params)

    def _emit(self, primitive, invars, aval, params=None):
        """Append `primitive(*invars, **params)` with output type `aval`; its tracer.
        Var, JaxprEqn and JaxprTracer are built without __init__ calls (hot)."""
        v = _new(Var)
        v.aval = aval
        eqn = _new(JaxprEqn)
        eqn.primitive = primitive
        eqn.invars = invars
        eqn.outvars = [v]
        eqn.params = {} if params is None else params
        eqn.source_info = None
        self.eqns.append(eqn)
        result = _new(JaxprTracer)
        result._trace = self
        result._aval = aval
        result._var = v
        return result

    def to_jaxpr(self, out_tracers, dce=True):
        """The jaxpr computing `out_tracers` from the args, dead code removed.
        dce=False may keep dead code, for a caller that ignores it: it is still
        removed when some equation has several outputs, since a partly used
        higher-order equation is pruned by its dce_rule. Returns (jaxpr, consts).

        Eager linearization may append *compact* equations, tuples (primitive,
        invars, outvar) of a param-less elementwise map whose operands (but a
        literal) have the output's type: a third of the cost of a JaxprEqn. They are
        made JaxprEqns here, except with dce=False, whose only caller
        (value_and_grad) transposes the jaxpr at once with backward_pass, which
        reads them as they are."""
        outvars = [t._var if type(t) is JaxprTracer and t._trace is self else
                   self.full_raise(t)._var for t in out_tracers]
        if not dce and not self._multiple_results:
            # (the builder is done: its lists are handed over, not copied)
            jaxpr = _new(Jaxpr)
            jaxpr.constvars = self.constvars
            jaxpr.invars = self.invars
            jaxpr.outvars = outvars
            jaxpr.eqns = self.eqns
            jaxpr._last_use = None
            return jaxpr, self.constvals
        eqns = self.eqns
        if self.compact:
            eqns = [as_eqn(e) if type(e) is tuple else e for e in eqns]
        return _dce(self.constvars, self.constvals, self.invars, outvars, eqns)


def _literal_key(v):
    return ('lit', type(v.val), repr(v.val), v.aval.dtype.str)


def _cse_key(primitive, invars, params):
    if not getattr(primitive, 'cse', True):
        return None
    parts = [primitive]
    for v in invars:
        parts.append(_literal_key(v) if type(v) is Literal else v)
    if params:
        try:
            p = tuple(sorted(params.items()))
            hash(p)
        except TypeError:
            return None
        parts.append(p)
    return tuple(parts)


def dce(constvars, constvals, invars, outvars, eqns):
    """Drop equations and constants whose results no output needs (one backward sweep)."""
    live = set(v for v in outvars if type(v) is not Literal)
    kept = []
    add = live.add
    for eqn in reversed(eqns):
        outs = eqn.outvars
        if len(outs) == 1:
            if outs[0] not in live and not eqn.primitive.effectful:
                continue
        elif not any(v in live for v in outs) and not eqn.primitive.effectful:
            continue
        elif not all(v in live for v in outs):
            rule = eqn.primitive.dce_rule
            if rule is not None:   # a higher-order primitive prunes its sub-jaxpr
                eqn = rule(eqn, [v in live for v in outs])
            else:
                eqn = eqn.replace(outvars=[v if v in live else DropVar(v.aval) for v in outs])
        kept.append(eqn)
        for v in eqn.invars:
            if type(v) is not Literal:
                add(v)
    kept.reverse()
    cvars, cvals = [], []
    for v, c in zip(constvars, constvals):
        if v in live:
            cvars.append(v)
            cvals.append(c)
    return Jaxpr(cvars, invars, outvars, kept), cvals


_dce = dce


def dce_jaxpr(closed, used_outputs):
    """`closed` computing only the outputs flagged in `used_outputs`, and taking
    only the inputs those need. Returns (closed, used_inputs)."""
    jaxpr = closed.jaxpr
    outvars = [v for v, u in zip(jaxpr.outvars, used_outputs) if u]
    pruned, consts = dce(jaxpr.constvars, closed.consts, jaxpr.invars, outvars, jaxpr.eqns)
    read = set(v for v in outvars if type(v) is not Literal)
    for eqn in pruned.eqns:
        read.update(v for v in eqn.invars if type(v) is not Literal)
    used_inputs = [v in read for v in jaxpr.invars]
    invars = [v for v, u in zip(jaxpr.invars, used_inputs) if u]
    return (ClosedJaxpr(Jaxpr(pruned.constvars, invars, outvars, pruned.eqns), consts),
            used_inputs)


def dce_call_eqn(eqn, used_outputs, param='jaxpr'):
    """The dce_rule of a call-like primitive (its sub-jaxpr in `param` maps its
    inputs to its outputs): drop unused outputs, and the inputs only they read."""
    closed, used_inputs = dce_jaxpr(eqn.params[param], used_outputs)
    return eqn.replace(invars=[v for v, u in zip(eqn.invars, used_inputs) if u],
                       outvars=[v for v, u in zip(eqn.outvars, used_outputs) if u],
                       params=dict(eqn.params, **{param: closed}))


def lift_traced_consts(jaxpr, consts):
    """Constants that are tracers of enclosing transforms (values a traced function
    closes over) become leading inputs, since a primitive's params must hold no
    tracers. -> (ClosedJaxpr, the lifted tracers, to pass as arguments)."""
    traced = [isinstance(c, Tracer) for c in consts]
    if not any(traced):
        return ClosedJaxpr(jaxpr, consts), []
    cvars = [v for v, t in zip(jaxpr.constvars, traced) if not t]
    tvars = [v for v, t in zip(jaxpr.constvars, traced) if t]
    jaxpr = Jaxpr(cvars, tvars + jaxpr.invars, jaxpr.outvars, jaxpr.eqns)
    return (ClosedJaxpr(jaxpr, [c for c, t in zip(consts, traced) if not t]),
            [c for c, t in zip(consts, traced) if t])


def trace_to_jaxpr(fun, in_avals, name='make_jaxpr'):
    """Trace `fun(*tracers) -> list of outputs` with abstract inputs.
    Returns (jaxpr, consts)."""
    trace = JaxprTrace(name)
    with new_trace(trace, dynamic=True):
        args = [trace.new_arg(a) for a in in_avals]
        outs = fun(*args)
        return trace.to_jaxpr(outs)


def _as_aval(x):
    if isinstance(x, ShapedArray):
        return x
    if hasattr(x, 'shape') and hasattr(x, 'dtype') and not hasattr(x, '__array_interface__') \
            and not isinstance(x, Tracer) and type(x).__module__ != 'numpy':
        return ShapedArray(x.shape, x.dtype)  # ShapeDtypeStruct-like
    return get_aval(x)


def make_jaxpr(fun, static_argnums=()):
    """`make_jaxpr(f)(*args)` -> ClosedJaxpr of f at the shapes/dtypes of args."""
    if isinstance(static_argnums, int):
        static_argnums = (static_argnums,)

    def make(*args, **kwargs):
        static = {i: args[i] for i in static_argnums}
        dyn = [a for i, a in enumerate(args) if i not in static]
        flat, in_tree = pytree.tree_flatten((dyn, kwargs))
        out_tree_box = []

        def flat_fun(*tracers):
            d, kw = pytree.tree_unflatten(in_tree, list(tracers))
            it = iter(d)
            full = [static[i] if i in static else next(it) for i in range(len(args))]
            out = fun(*full, **kw)
            out_flat, out_tree = pytree.tree_flatten(out)
            out_tree_box.append(out_tree)
            return out_flat

        jaxpr, consts = trace_to_jaxpr(flat_fun, [_as_aval(native(x)) for x in flat])
        return ClosedJaxpr(jaxpr, consts)

    make.__name__ = f"make_jaxpr({getattr(fun, '__name__', 'fun')})"
    return make
