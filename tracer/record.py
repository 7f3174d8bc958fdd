"""Recording: staging a function's run on actual inputs, values available on demand.

`record(fun, args)` runs `fun` once on tracers that stage every operation into a
jaxpr, as make_jaxpr does, but that still have values: when Python asks for one
(`bool(x)`, `float(x)`, `x.item()`, a boolean mask), the equations recorded so far
are evaluated on the actual inputs. So Python control flow follows the values, as
in eager mode, and the result is the straight-line program this call ran.

`structure_key(jaxpr)` is equal for two recordings exactly when they are the same
program up to the values of their inputs, constants and floating literals: with
those as inputs (`lift_literals`), a transform of one is a transform of the other
(transforms/replay.py reuses them).
"""
from . import core as _core
from .core import new_trace, get_aval
from .ir import Literal, Var, Jaxpr
from .staging import JaxprTrace
from . import pytree


class RecordTrace(JaxprTrace):
    """A staging trace over known inputs: every operation is staged (none is split
    into a known and an unknown part), and `concrete` evaluates the recorded prefix."""

    def __init__(self, name, args):
        # (no sharing of identical equations: the recording is transformed, and the
        # transform's own staging shares them)
        super().__init__(name, cse=False)
        self._args = args
        self._env = None      # var -> value, for the equations evaluated so far
        self._done = 0

    def process_primitive(self, primitive, args, params):
        return self.stage(primitive, args, params)

    def concrete(self, tracer):
        env = self._env
        if env is None:
            env = self._env = dict(zip(self.invars, self._args))
        # the constants registered since the last evaluation
        env.update(zip(self.constvars, self.constvals))
        eqns = self.eqns
        # (evaluated with the implementations, under no staging trace: a
        # higher-order primitive's implementation binds its inner equations)
        saved = _core._dynamic_trace
        _core._dynamic_trace = None
        try:
            for i in range(self._done, len(eqns)):
                eqn = eqns[i]
                vals = [v.val if type(v) is Literal else env[v] for v in eqn.invars]
                out = eqn.primitive.impl(*vals, **eqn.params)
                if eqn.primitive.multiple_results:
                    env.update(zip(eqn.outvars, out))
                else:
                    env[eqn.outvars[0]] = out
                self._done = i + 1
        finally:
            _core._dynamic_trace = saved
        return env[tracer._var]


def record(fun, flat_args, in_tree, name):
    """Run fun(*tree_unflatten(in_tree, flat_args)) on recording tracers.
    -> (jaxpr, consts, out_tree)."""
    trace = RecordTrace(name, flat_args)
    with new_trace(trace):
        tracers = [trace.new_arg(get_aval(x).strip_weak_type()) for x in flat_args]
        out = fun(*pytree.tree_unflatten(in_tree, tracers))
        out_flat, out_tree = pytree.tree_flatten(out)
        # (dead equations are kept: a transform of the recording drops them)
        jaxpr, consts = trace.to_jaxpr(out_flat, dce=False)
    return jaxpr, consts, out_tree


def _lifted(v):
    """A floating literal: an input of the program's structure, not part of it (a
    Python float that changes from call to call, like a time step, keeps one
    structure)."""
    return type(v) is Literal and v.aval.dtype.kind in 'fc'


def structure_key(jaxpr):
    """(key, values): a hashable summary of `jaxpr` up to the values of its inputs,
    constants and floating literals (their types, each equation's primitive,
    params and operands: positions of earlier values, other literals by type and
    repr, which tells -0.0 from 0.0, and the outputs), and the floating literals'
    values in the order `lift_literals` makes them constants. (Hashing the key
    raises TypeError when some param is unhashable.)"""
    index = {}
    parts = []
    values = []

    def operands(vs):
        return tuple([index[v] if type(v) is not Literal else _literal_key(v, values)
                      for v in vs])
    for vs in (jaxpr.constvars, jaxpr.invars):
        for v in vs:
            index[v] = len(index)
            a = v.aval
            parts.append((a.shape, a.dtype, a.weak_type))
        parts.append(None)      # (ends the constants, then the inputs)
    for eqn in jaxpr.eqns:
        parts.append(eqn.primitive)
        parts.append(operands(eqn.invars))
        if eqn.params:
            parts.append(tuple(eqn.params.items()))
        for v in eqn.outvars:
            index[v] = len(index)
        parts.append(len(eqn.outvars))
    parts.append(operands(jaxpr.outvars))
    return tuple(parts), values


def _literal_key(v, values):
    a = v.aval
    if _lifted(v):
        values.append(v.val)
        return (type(v.val), a.dtype, a.weak_type)
    return (type(v.val), repr(v.val), a.dtype, a.weak_type)


def lift_literals(jaxpr):
    """`jaxpr` with its floating literals as trailing constvars, in the order of
    structure_key's values."""
    lifted = []

    def atoms(vs):
        out = []
        for v in vs:
            if _lifted(v):
                v = Var(v.aval)
                lifted.append(v)
            out.append(v)
        return out
    eqns = [eqn.replace(invars=atoms(eqn.invars)) for eqn in jaxpr.eqns]
    outvars = atoms(jaxpr.outvars)
    return Jaxpr(jaxpr.constvars + lifted, jaxpr.invars, outvars, eqns)
