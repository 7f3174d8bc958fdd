"""Forward mode: a JVPTrace carries (primal, tangent) pairs through the program.

A tangent is a value of the trace below, a tracer of a staging trace (when
linearizing), or a symbolic `Zero`. Operations whose tangents are all zero run on
the primals alone; the rest apply their primitive's JVP rule.
"""
import numpy as np

from tracer import Trace, Tracer, Zero, get_aval, ShapedArray
from tracer import core as _core
from tracer.core import _trace_stack as _stack, array_api as _api
from tracer.errors import with_user_line
from primitives.arith import _add_any_impl

_ndarray = np.ndarray
_new = object.__new__


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

    # Operators and unary math: a trace with `fast_ops` (eager linearization) may
    # apply them directly when it is the innermost trace (so `bind` would route the
    # operation to it, and no inner make_jaxpr or jit needs to see it); its
    # shortcut returns None where the general path must run (promote and bind).
    def __mul__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_mul(self, o, False)
            if r is not None:
                return r
        return _api.multiply(self, o)

    def __rmul__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_mul(self, o, True)
            if r is not None:
                return r
        return _api.multiply(o, self)

    def __add__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_add(self, o, 1, False)
            if r is not None:
                return r
        return _api.add(self, o)

    def __radd__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_add(self, o, 1, True)
            if r is not None:
                return r
        return _api.add(o, self)

    def __sub__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_add(self, o, -1, False)
            if r is not None:
                return r
        return _api.subtract(self, o)

    def __rsub__(self, o):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_add(self, o, -1, True)
            if r is not None:
                return r
        return _api.subtract(o, self)

    def __truediv__(self, o):
        tr = self._trace
        if (type(o) is float or type(o) is int) and tr.fast_ops and tr.alive and \
                _stack[-1] is tr:
            r = tr.fast_div(self, o)
            if r is not None:
                return r
        return _api.divide(self, o)

    def __rtruediv__(self, o):
        tr = self._trace
        if (type(o) is float or type(o) is int) and tr.fast_ops and tr.alive and \
                _stack[-1] is tr:
            r = tr.fast_rdiv(self, o)
            if r is not None:
                return r
        return _api.divide(o, self)

    def __neg__(self):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_neg(self)
            if r is not None:
                return r
        return _api.negative(self)

    def __pow__(self, o):
        tr = self._trace
        if type(o) is int and tr.fast_ops and tr.alive and _stack[-1] is tr:
            r = tr.fast_pow(self, o)
            if r is not None:
                return r
        return _api.power(self, o)

    def bind_unary(self, primitive):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            return tr.fast_unary(primitive, self)
        return None

    def bind_reduction(self, primitive, axis, keepdims):
        tr = self._trace
        if tr.fast_ops and tr.alive and _stack[-1] is tr:
            return tr.fast_reduction(primitive, self, axis, keepdims)
        return None


def _new_tracer(trace, primal, tangent, aval=None):
    """JVPTracer(trace, primal, tangent) without the __init__ call (the hot path);
    `aval`: the primal's type, when the caller knows it (else computed on demand)."""
    t = _new(JVPTracer)
    t._trace = trace
    t.primal = primal
    t.tangent = tangent
    t._aval = aval
    return t


class JVPTrace(Trace):
    fast_ops = False    # see JVPTracer.__mul__ (LinearizeTrace has shortcuts)

    def __init__(self, name='jvp'):
        self.name = name

    def pure(self, val):
        return JVPTracer(self, val, Zero.of(val))

    lift = pure

    def process_primitive(self, primitive, args, params):
        rule = primitive.lin
        if rule is not None:
            out = self._jvp_concrete(rule, primitive.lin_safe, args, params)
            if out is not None:
                return out
        return self.process_jvp_rule(primitive, args, params)

    def process_jvp_rule(self, primitive, args, params):
        """process_primitive through the primitive's JVP rule (the general path)."""
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

    def _jvp_concrete(self, rule, safe, args, params):
        """Arrays for primals and tangents (eager forward mode, e.g. the outer jvp
        of a Hessian-vector product): an elementwise primitive's linearization rule
        gives the output and the tangent's coefficients in NumPy, with none of the
        JVP rule's binds. None where it does not apply (the JVP rule runs)."""
        res = apply_lin_rule(self, rule, args, params, _ndarray)
        if res is None:
            return None
        out, coefs, tangents = res
        if type(out) is not _ndarray:
            return None
        shape, dtype = out.shape, out.dtype
        t_out = None
        for t, c in zip(tangents, coefs):
            if t is None or c is None or type(t) is Zero:
                continue
            if t.shape != shape or (t.dtype is not dtype and t.dtype != dtype) or \
                    not coefficient_fits(c, shape, dtype):
                return None
            term = _scaled_tangent(t, c, safe)
            t_out = term if t_out is None else np.add(t_out, term)
        if t_out is None:
            t_out = Zero.of(out)
        return _new_tracer(self, out, t_out)

    def concrete(self, tracer):
        p = tracer.primal
        if isinstance(p, Tracer):
            return p._concrete()
        return p


_SCALARS = (float, int, np.float64, np.float32, np.float16)
_NO = object()


def apply_lin_rule(trace, rule, args, params, tangent_type):
    """(out, coefs, tangents) of a linearization rule (Primitive.lin) applied to the
    operands' primals (see split_operand), or None where it does not apply: an
    operand it cannot take, a tangent neither Zero nor of `tangent_type` (checked
    before the rule computes anything), or a rule that declines or raises (the JVP
    rule's path then runs, and explains an error)."""
    primals = []
    tangents = []
    for x in args:
        p, t = split_operand(trace, x)
        if p is _NO or (t is not None and type(t) is not tangent_type and
                        type(t) is not Zero):
            return None
        primals.append(p)
        tangents.append(t)
    try:
        res = rule(*primals, **params)
    except Exception:
        return None
    if res is None:
        return None
    return res[0], res[1], tangents


def split_operand(trace, x):
    """(primal, tangent) of an operand for a linearization rule: an array-valued
    tracer of `trace`, or a constant (tangent None). (_NO, None) otherwise: a tracer
    of another trace, or a primal that is not an array (a 0-d result, a tracer)."""
    if type(x) is JVPTracer and x._trace is trace:
        p = x.primal
        return (p, x.tangent) if type(p) is _ndarray else (_NO, None)
    if isinstance(x, Tracer):
        return _NO, None
    return x, None


def coefficient_fits(c, shape, dtype):
    """Whether a linearization coefficient can scale a tangent of type (shape,
    dtype) as it is: an array of that type, an (array, scalar) pair, a Python
    number, or a NumPy scalar of that dtype."""
    tc = type(c)
    if tc is _ndarray:
        return c.shape == shape and (c.dtype is dtype or c.dtype == dtype)
    if tc is tuple:             # (array, scalar): a product, the scalar kept linear
        return coefficient_fits(c[0], shape, dtype) and type(c[1]) in _SCALARS
    if tc is float or tc is int:
        return True
    return tc in _SCALARS and c.dtype == dtype


def _scaled_tangent(t, c, safe):
    """c * t for a coefficient that fits t. `safe`: 0 where t is 0, even if c is
    infinite (safe_mul's semantics)."""
    if type(c) is tuple:
        return _scaled_tangent(_scaled_tangent(t, c[0], safe), c[1], False)
    if type(c) is not _ndarray:
        if c == 1:
            return t
        if c == -1:
            return np.negative(t)
    out = np.multiply(t, c)
    if safe and np.isnan(out).any():
        out = np.where(t == 0, np.zeros((), out.dtype), out)
    return out


def eager_trace(x):
    """The trace of `x` if it is a tracer of a plain JVPTrace (forward mode, not
    linearize) that is alive and below any staging trace that captures everything
    (else bind would route operations on `x` there): operations on its concrete
    values may then be computed directly. None otherwise."""
    if type(x) is not JVPTracer:
        return None
    trace = x._trace
    if type(trace) is not JVPTrace or not trace.alive:
        return None
    dyn = _core._dynamic_trace
    if dyn is not None and dyn.level > trace.level:
        return None
    return trace


def dual_product(x, y):
    """x * y for two JVPTracers of one eager JVPTrace whose primals and tangents are
    arrays of one type ("dual numbers"): mul's rule applied directly, (p q, dp q +
    dq p), as bind would compute it; None for anything else."""
    trace = eager_trace(x)
    if trace is None or type(y) is not JVPTracer or y._trace is not trace:
        return None
    p, q = x.primal, y.primal
    dp, dq = x.tangent, y.tangent
    if type(p) is not _ndarray or type(q) is not _ndarray or type(dp) is not _ndarray or \
            type(dq) is not _ndarray:
        return None
    dtype, shape = p.dtype, p.shape
    if q.dtype is not dtype or dp.dtype is not dtype or dq.dtype is not dtype or \
            q.shape != shape or dp.shape != shape or dq.shape != shape:
        return None
    return product_rule(trace, p, dp, q, dq)


def dual_sum(xs, coeffs):
    """add_any(*xs, coeffs=coeffs) for tracers of one eager JVPTrace (see
    eager_trace): what bind would compute there (forward mode's linearization-rule
    path), without bind; None where that path does not apply."""
    trace = eager_trace(xs[0])
    if trace is None:
        return None
    # (_jvp_concrete's computation for add_any's lin rule, without its generality:
    # the primals summed by add_any's implementation, the tangents scaled and
    # added in order)
    p0 = xs[0].primal
    if type(p0) is not _ndarray:
        return None
    shape, dtype = p0.shape, p0.dtype
    primals = []
    tangents = []
    for x in xs:
        if type(x) is not JVPTracer or x._trace is not trace:
            return None
        p, t = x.primal, x.tangent
        if type(p) is not _ndarray or p.dtype is not dtype or p.shape != shape or (
                type(t) is not Zero and (type(t) is not _ndarray or t.dtype is not dtype
                                         or t.shape != shape)):
            return None
        primals.append(p)
        tangents.append(t)
    out = _add_any_impl(*primals, coeffs=coeffs)
    if type(out) is not _ndarray:
        return None     # (0-d: the general path's scalar handling)
    t_out = None
    for i, t in enumerate(tangents):
        if type(t) is not Zero:
            term = t if coeffs is None else _scaled_tangent(t, coeffs[i], False)
            t_out = term if t_out is None else np.add(t_out, term)
    return _new_tracer(trace, out, Zero.of(out) if t_out is None else t_out)


def product_rule(trace, p, dp, q, dq):
    """The tracer of (p q, dp q + dq p) (arrays of one type)."""
    return _new_tracer(trace, np.multiply(p, q),
                       np.add(np.multiply(dp, q), np.multiply(dq, p)))


def unpack(trace, x):
    """(primal, tangent) of an output of a function traced by `trace`."""
    if isinstance(x, JVPTracer) and x._trace is trace:
        return x.primal, x.tangent
    return x, Zero.of(x)
