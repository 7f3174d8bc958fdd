"""Primitives, traces and tracers.

Every operation is a `Primitive`; `Primitive.bind` routes it to the trace of the
highest level among its arguments (the innermost transform that sees them), or
evaluates it directly when no argument is traced. Each transform invocation pushes
a new `Trace` with its own level, so nested transforms and closures over outer
tracers never mix up their perturbations.
"""
import gc as _gc

import numpy as np

from .avals import ShapedArray, concrete_aval, tangent_aval, float0
from .errors import (ConcretizationTypeError, TracerArrayConversionError,
                     TracerBoolConversionError, UnexpectedTracerError, with_user_line)


class Primitive:
    """An operation, with its rules attached as attributes by the primitives layer.

    impl(*vals, **params)            -> value(s)       concrete evaluation
    abstract_eval(*avals, **params)  -> aval(s)        shape/dtype rule
    jvp(primals, tangents, **params) -> (out, t_out)   forward-mode rule
    transpose(ct, *args, **params)   -> cts            for linear primitives
    batch(...)                       -> ...            vmap rule
    partial_eval(trace, args, params) -> outs          how a staging trace splits a
        higher-order primitive whose inputs are partly known (see tracer/staging.py)
    lin(*arrays, **params) -> (out, coefs) | None      optional eager linearization
        of an elementwise primitive: its output and, per operand, the coefficient c_i
        of t_out = sum_i c_i * t_i (None: no dependence); see transforms/linearize.py
    lin_dual(x, dx, out, dout, c, **params) -> dc      optional, for a one-operand
        `lin`: the tangent of the coefficient c = f'(x) along dx (f''(x) dx), given
        out = f(x) and dout = c dx; c is the coefficient's array part. Used when
        linearizing under an eager jvp (jvp of grad), see transforms/linearize.py
    lin_deferred(x) -> (out, factor) | None            optional, for a one-operand
        `lin`: the coefficient as a deferred factor (an object with shape, dtype,
        value() and times(x, out)) that reverse mode multiplies into the cotangent
        in one pass, for the inputs where that is cheaper; None elsewhere
    """

    def __init__(self, name, multiple_results=False):
        self.name = name
        self.multiple_results = multiple_results
        self.impl = None
        self.abstract_eval = None
        self.jvp = None
        self.transpose = None
        self.batch = None
        self.lowering = None
        self.partial_eval = None
        self.takes_ones = False  # a multiple-result transpose rule accepts ONES cotangents
        self.dce_rule = None     # (eqn, used_outputs) -> eqn, for higher-order primitives
        self.scale_transpose = None   # optional shortcuts for transposition
        self.ones_transpose = None    # (see transforms/transpose.py)
        self.effectful = False   # effectful equations survive dead-code elimination
        self.cse = True          # identical applications may be shared
        self.elementwise = False  # no operand is larger than the output (broadcasting)
        self.lin = None
        self.lin_dual = None
        self.lin_deferred = None
        self.lin_safe = False     # lin's coefficients may be infinite: scale with safe_mul

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        top = _dynamic_trace
        for x in args:
            if isinstance(x, Tracer):
                t = x._trace
                if not t.alive:
                    _raise_leak(x, self)
                if top is None or t.level > top.level:
                    top = t
        if top is None:
            try:
                return self.impl(*args, **params)
            except Exception as e:
                _explain_impl_error(self, args, params, e)
                raise
        # The trace boxes non-tracer and lower-level arguments itself (it can often
        # avoid building tracers for constants).
        return top.process_primitive(self, args, params)


def _explain_impl_error(primitive, args, params, err):
    """An implementation failed on concrete values: if the shape/dtype rule
    rejects the operands, raise its message (which names the primitive, shapes
    and the fix) instead of NumPy's. Costs nothing unless an error happened."""
    if primitive.abstract_eval is None:
        return
    try:
        avals = [concrete_aval(x) for x in args]
    except TypeError:
        return
    try:
        primitive.abstract_eval(*avals, **params)
    except (TypeError, ValueError) as rule_err:
        raise type(rule_err)(with_user_line(str(rule_err))) from None


# --- the trace stack -------------------------------------------------------------

_trace_stack = []
_dynamic_trace = None  # the innermost staging trace that captures every operation


class Trace:
    """One invocation of one transform. Subclasses define how primitives are
    processed on their tracers; `pure`/`lift` box values from below. `level` and
    `alive` are set by new_trace (these class defaults: not yet entered)."""
    name = 'trace'
    level = -1
    alive = False

    def pure(self, val):
        raise NotImplementedError

    def lift(self, tracer):
        return self.pure(tracer)

    def full_raise(self, x):
        if isinstance(x, Tracer):
            t = x._trace
            if t is self:
                return x
            if not t.alive:
                _raise_leak(x, None)
            if t.level > self.level:
                raise UnexpectedTracerError(with_user_line(
                    f"A tracer of an inner transform ({t.name}) reached an outer one "
                    f"({self.name}): a value escaped the function it belonged to."))
            return self.lift(x)
        return self.pure(x)

    def process_primitive(self, primitive, args, params):
        """Apply `primitive` to `args`: tracers of this trace, tracers of lower
        traces, or plain values (use `full_raise` to box the latter two)."""
        raise NotImplementedError

    def concrete(self, tracer):
        """The concrete value behind `tracer`, or a ConcretizationTypeError."""
        raise ConcretizationTypeError(with_user_line(
            f"A traced value {tracer.aval.str_short()} has no concrete value under "
            f"{self.name}: Python cannot branch on it or convert it to a number.\n"
            f"Fix: mark the argument static (jit(f, static_argnums=...)), or express the "
            f"choice with lax.cond / pnp.where instead of Python control flow."))


class pause_gc:
    """Pause Python's cyclic garbage collector while transforms run.

    Tracing allocates millions of small objects and creates no reference cycles
    (reference counting frees them); the collector's repeated full scans would
    make long programs quadratic. The collector is re-enabled when the outermost
    pause ends."""
    __slots__ = ()
    depth = 0
    was_enabled = False

    def __enter__(self):
        if pause_gc.depth == 0:
            pause_gc.was_enabled = _gc.isenabled()
            if pause_gc.was_enabled:
                _gc.disable()
        pause_gc.depth += 1

    def __exit__(self, *exc):
        pause_gc.depth -= 1
        if pause_gc.depth == 0 and pause_gc.was_enabled:
            _gc.enable()
        return False


_pause_gc = pause_gc()


class new_trace:
    """Context manager that pushes `trace` onto the stack (optionally as the
    dynamic trace, which captures operations on constants too)."""
    __slots__ = ('trace', 'dynamic', 'prev_dynamic')

    def __init__(self, trace, dynamic=False):
        self.trace = trace
        self.dynamic = dynamic

    def __enter__(self):
        global _dynamic_trace
        if pause_gc.depth == 0:
            pause_gc.was_enabled = _gc.isenabled()
            if pause_gc.was_enabled:
                _gc.disable()
        pause_gc.depth += 1
        trace = self.trace
        trace.level = len(_trace_stack)
        trace.alive = True
        _trace_stack.append(trace)
        if self.dynamic:
            self.prev_dynamic = _dynamic_trace
            _dynamic_trace = trace
        return trace

    def __exit__(self, *exc):
        global _dynamic_trace
        trace = _trace_stack.pop()
        assert trace is self.trace
        trace.alive = False
        if self.dynamic:
            _dynamic_trace = self.prev_dynamic
        pause_gc.depth -= 1
        if pause_gc.depth == 0 and pause_gc.was_enabled:
            _gc.enable()
        return False


def _raise_leak(tracer, primitive):
    where = f", passed to {primitive.name}," if primitive is not None else ""
    raise UnexpectedTracerError(with_user_line(
        f"Encountered a tracer of {tracer.aval.str_short()} created by {tracer._trace.name}"
        f"{where} used after that transformation returned. A traced value leaked out of "
        f"the function being transformed (stored in a global, an attribute or a "
        f"closure that outlived it). Return it as an output instead."))


# --- symbolic zeros and undefined primals -------------------------------------------

class Zero:
    """A symbolic zero tangent or cotangent: never materialised unless needed.
    `Zero.of(value)` defers computing the aval until something asks for it."""
    __slots__ = ('_aval', '_of')

    def __init__(self, aval):
        self._aval = aval
        self._of = None

    @property
    def aval(self):
        a = self._aval
        if a is None:
            a = self._aval = tangent_aval(get_aval(self._of))
            self._of = None
        return a

    def __repr__(self):
        return f"Zero({self.aval.str_short()})"

    @staticmethod
    def of(val):
        z = Zero(None)
        z._of = val
        return z

    from_value = of


class _Ones:
    """A symbolic cotangent of all ones (of its variable's shape and dtype); see
    transforms/transpose.py. Transpose rules may pass it on via `ones_transpose`."""
    __slots__ = ()

    def __repr__(self):
        return 'ONES'


ONES = _Ones()


def zeros_value(aval):
    return np.zeros(aval.shape, aval.dtype)


def instantiate(t):
    return zeros_value(t.aval) if type(t) is Zero else t


class UndefinedPrimal:
    """Marks a linear input in a transpose rule: its value is what is being solved for."""
    __slots__ = ('aval',)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"UndefinedPrimal({self.aval.str_short()})"


def is_undefined(x):
    return type(x) is UndefinedPrimal


# --- tracers ---------------------------------------------------------------------------

class _ArrayAPI:
    """Array methods and NumPy dispatch for tracers, supplied by the primitives layer
    (tracer/ knows no particular primitive)."""

    def __getattr__(self, name):
        if not _array_api_loaded:
            _load_array_api()
            return getattr(self, name)
        raise AttributeError(name)


array_api = _ArrayAPI()
_array_api_loaded = False


def _load_array_api():
    # The methods live in primitives.numpy; load it on first use when the user
    # imported only `tracer`.
    global _array_api_loaded
    _array_api_loaded = True
    import importlib
    importlib.import_module('primitives.numpy')


def register_array_api(**fns):
    global _array_api_loaded
    _array_api_loaded = True
    for k, v in fns.items():
        setattr(array_api, k, v)


class Tracer:
    """A value being traced by one trace. Behaves like a NumPy array."""
    __slots__ = ('_trace',)
    __array_priority__ = 1000

    @property
    def aval(self):
        raise NotImplementedError

    @property
    def shape(self):
        return self.aval.shape

    @property
    def dtype(self):
        return self.aval.dtype

    @property
    def weak_type(self):
        return self.aval.weak_type

    @property
    def ndim(self):
        return len(self.aval.shape)

    @property
    def size(self):
        return self.aval.size

    def __len__(self):
        shape = self.aval.shape
        if not shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return shape[0]

    def __iter__(self):
        if not self.aval.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.aval.shape[0]))

    def __repr__(self):
        return f"Traced<{self.aval.str_short()}>with<{self._trace.name}>"

    # concrete values ------------------------------------------------------------
    def _concrete(self):
        if not self._trace.alive:
            _raise_leak(self, None)
        return self._trace.concrete(self)

    def __bool__(self):
        try:
            return bool(self._concrete())
        except ConcretizationTypeError as e:
            raise TracerBoolConversionError(
                str(e).replace("Python cannot branch on it",
                               "Python control flow (if/while/and/or) cannot branch on it")) from None

    def __float__(self):
        return float(self._concrete())

    def __int__(self):
        return int(self._concrete())

    def __complex__(self):
        return complex(self._concrete())

    def __index__(self):
        return int(np.asarray(self._concrete()).__index__())

    def __array__(self, dtype=None, copy=None):
        raise TracerArrayConversionError(with_user_line(
            f"numpy.asarray() (or another conversion to a NumPy array) was applied to a "
            f"traced value {self.aval.str_short()} under {self._trace.name}. NumPy cannot "
            f"hold a traced value, and converting it would silently drop what the "
            f"transform is computing.\nFix: use primitives.numpy (pnp.asarray, pnp.array) "
            f"or the NumPy function itself on the traced value, which traces through "
            f"NumPy's dispatch; for a shape-only decision use x.shape."))

    def __hash__(self):
        raise TypeError("traced values are unhashable")

    def bind_unary(self, primitive):
        """None, or `primitive.bind(self)` for a unary elementwise primitive without
        params. A hook: the user namespace (primitives.numpy's float functions) calls
        it first, and a tracer type whose trace can apply such an operation more
        directly overrides it. An override returns bind's result exactly, and None
        unless the tracer's dtype is floating (or complex): integer operands are
        converted before bind."""
        return None

    def bind_reduction(self, primitive, axis, keepdims):
        """None, or `primitive.bind(self, axes=(axis,))` for a reduction primitive
        over one valid, non-empty `axis`, then reshaped to keep it if `keepdims`: a
        hook like bind_unary, for primitives.numpy's reductions. An override returns
        exactly what those binds return."""
        return None

    # NumPy dispatch ----------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return array_api.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return array_api.array_function(func, types, args, kwargs)

    # operators -----------------------------------------------------------------------
    def __neg__(self): return array_api.negative(self)
    def __pos__(self): return self
    def __abs__(self): return array_api.abs(self)
    def __invert__(self): return array_api.invert(self)
    def __add__(self, o): return array_api.add(self, o)
    def __radd__(self, o): return array_api.add(o, self)
    def __sub__(self, o): return array_api.subtract(self, o)
    def __rsub__(self, o): return array_api.subtract(o, self)
    def __mul__(self, o): return array_api.multiply(self, o)
    def __rmul__(self, o): return array_api.multiply(o, self)
    def __truediv__(self, o): return array_api.divide(self, o)
    def __rtruediv__(self, o): return array_api.divide(o, self)
    def __floordiv__(self, o): return array_api.floor_divide(self, o)
    def __rfloordiv__(self, o): return array_api.floor_divide(o, self)
    def __mod__(self, o): return array_api.remainder(self, o)
    def __rmod__(self, o): return array_api.remainder(o, self)
    def __pow__(self, o): return array_api.power(self, o)
    def __rpow__(self, o): return array_api.power(o, self)
    def __matmul__(self, o): return array_api.matmul(self, o)
    def __rmatmul__(self, o): return array_api.matmul(o, self)
    def __and__(self, o): return array_api.logical_and_op(self, o)
    def __rand__(self, o): return array_api.logical_and_op(o, self)
    def __or__(self, o): return array_api.logical_or_op(self, o)
    def __ror__(self, o): return array_api.logical_or_op(o, self)
    def __xor__(self, o): return array_api.logical_xor_op(self, o)
    def __rxor__(self, o): return array_api.logical_xor_op(o, self)
    def __eq__(self, o): return array_api.equal(self, o)
    def __ne__(self, o): return array_api.not_equal(self, o)
    def __lt__(self, o): return array_api.less(self, o)
    def __le__(self, o): return array_api.less_equal(self, o)
    def __gt__(self, o): return array_api.greater(self, o)
    def __ge__(self, o): return array_api.greater_equal(self, o)
    def __getitem__(self, idx): return array_api.getitem(self, idx)

    def __setitem__(self, idx, val):
        raise TypeError("Traced arrays are immutable: `x[idx] = y` is not supported. "
                        "Use `x = x.at[idx].set(y)` (or pnp.where) instead.")

    def __getattr__(self, name):
        # Array methods (x.sum(), x.T, x.reshape(...)), supplied by primitives.numpy.
        if name.startswith('__'):
            raise AttributeError(name)
        method = getattr(array_api, 'method_' + name, None)
        if method is None:
            raise AttributeError(f"traced array has no attribute {name!r}")
        return method(self)


def get_aval(x):
    if isinstance(x, Tracer):
        return x.aval
    return concrete_aval(x)


__all__ = ['Primitive', 'Trace', 'Tracer', 'new_trace', 'Zero', 'UndefinedPrimal',
           'is_undefined', 'instantiate', 'zeros_value', 'get_aval', 'register_array_api',
           'array_api', 'ShapedArray', 'float0', 'tangent_aval']
