"""Forward mode: a JVPTrace carries (primal, tangent) pairs through the program.

A tangent is a value of the trace below, a tracer of a staging trace (when
linearizing), or a symbolic `Zero`. Operations whose tangents are all zero run on
the primals alone; the rest apply their primitive's JVP rule.
"""
import numpy as np

from tracer import Trace, Tracer, Zero, get_aval, tangent_aval, ShapedArray

_ndarray = np.ndarray
_new = object.__new__
from tracer.errors import with_user_line


class JVPTracer(Tracer):
    __slots__ = ('primal', 'tangent', '_aval')

    def __init__(self, trace, primal, tangent):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent
        self._aval = None

    @property
    def aval(self):
        a = self._aval
        if a is None:
            p = self.primal
            if type(p) is _ndarray:   # the eager case: skip get_aval's dispatch
                a = _new(ShapedArray)
                a.shape = p.shape
                a.dtype = p.dtype
                a.weak_type = False
                self._aval = a
            else:
                a = self._aval = get_aval(p)
        return a

    @property
    def weak_type(self):   # hot in dtype promotion: an array primal is never weak
        if self._aval is None and type(self.primal) is _ndarray:
            return False
        return self.aval.weak_type

    @property
    def dtype(self):   # hot in dtype promotion: skip a property hop
        a = self._aval
        if a is None:
            p = self.primal
            if type(p) is _ndarray:
                return p.dtype
            a = self._aval = get_aval(p)
        return a.dtype


def _new_tracer(trace, primal, tangent):
    """JVPTracer(trace, primal, tangent) without the __init__ call (the hot path)."""
    t = _new(JVPTracer)
    t._trace = trace
    t.primal = primal
    t.tangent = tangent
    t._aval = None
    return t


class JVPTrace(Trace):
    def __init__(self, name='jvp'):
        super().__init__()
        self.name = name

    def pure(self, val):
        return JVPTracer(self, val, Zero.of(val))

    lift = pure

    def process_primitive(self, primitive, args, params):
        if len(args) == 1:
            # one operand (unary math): the hot case, without the general loop
            x = args[0]
            if type(x) is JVPTracer and x._trace is self:
                t = x.tangent
                rule = primitive.jvp
                if type(t) is not Zero and rule is not None:
                    out, t_out = rule([x.primal], [t], **params)
                    if primitive.multiple_results:
                        return [JVPTracer(self, o, t) for o, t in zip(out, t_out)]
                    return _new_tracer(self, out, t_out)
        primals = []
        tangents = []
        nonzero = False
        for x in args:
            if type(x) is JVPTracer and x._trace is self:
                primals.append(x.primal)
                t = x.tangent
                tangents.append(t)
                if not nonzero and type(t) is not Zero:
                    nonzero = True
            else:
                if isinstance(x, Tracer):
                    x = self.full_raise(x).primal   # checks levels and liveness
                primals.append(x)
                tangents.append(Zero.of(x))
        if not nonzero:
            out = primitive.bind(*primals, **params)
            if primitive.multiple_results:
                return [self.pure(o) for o in out]
            return self.pure(out)
        rule = primitive.jvp
        if rule is None:
            raise TypeError(with_user_line(
                f"cannot differentiate through primitive '{primitive.name}': it has no JVP "
                f"rule. Wrap the computation in stop_gradient if no derivative is needed."))
        out, t_out = rule(primals, tangents, **params)
        if primitive.multiple_results:
            return [JVPTracer(self, o, t) for o, t in zip(out, t_out)]
        return _new_tracer(self, out, t_out)

    def concrete(self, tracer):
        p = tracer.primal
        if isinstance(p, Tracer):
            return p._concrete()
        return p


def unpack(trace, x):
    """(primal, tangent) of an output of a function traced by `trace`."""
    if isinstance(x, JVPTracer) and x._trace is trace:
        return x.primal, x.tangent
    return x, Zero.of(x)
