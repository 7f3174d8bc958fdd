"""The interface between primitives and the numba code generator
(transforms/codegen.py).

Each primitive module ends with a `# --- numba lowering ---` block that sets
`p.lowering` to one of the rule kinds below. The code generator turns a jaxpr
into the Python source of one numba function; rules produce source text.

Elementwise(fn)
    fn(ctx, args, avals, out_aval, **params) -> str (or a list of str for a
    multiple-results primitive): a scalar expression computing one element from
    the operands' scalar expressions `args` (strings, already of the operands'
    dtypes). The generator fuses chains of these into one loop nest, handles
    NumPy broadcasting in the loop indices and casts the result to the output
    dtype. `fn` may raise NotLowerable for dtypes/params it cannot handle.

Reshape(fn)
    A Structural rule for reshapes; the generator reads the output of one that
    only inserts or removes dimensions of size 1 from the operand's array.

BroadcastInDim(), Iota(), Reduce(op)
    Marker kinds the generator understands itself: index remapping inside a
    loop, a value of the loop index, and a reduction fused into the loop that
    produces its operand.

Structural(fn)
    fn(ctx, ins, out_avals, **params) -> list of output expressions. `ins` are
    `Operand`s (`.expr` a name, `.aval`, `.scalar` True for a 0-d value, which
    the generated code holds as a plain scalar, never a 0-d array). The rule
    emits statements with `ctx.emit(line)` / `ctx.loops(shape)` and returns, per
    output, the name holding it (a scalar for a 0-d output).

Helpers a rule may use on `ctx`: `lit(value, dtype)` (a literal of that
dtype), `cast(expr, dtype)`, `fresh(prefix)` (a new local name), `emit(line)`,
`loops(shape)` (a context manager opening a loop nest and yielding the index
names), `helper(name)` (imports `name` from primitives.vecmath or primitives.jitlib
and returns it), `empty(shape, dtype)` / `full(shape, value, dtype)` (allocation
expressions).
"""


class NotLowerable(Exception):
    """A rule cannot compile this equation (dtype, parameters): the compiler
    evaluates it eagerly instead (with one warning)."""


class Elementwise:
    """`guarded=True`: `fn` may return Guarded expressions (see below)."""
    __slots__ = ('fn', 'guarded')
    kind = 'elementwise'

    def __init__(self, fn, guarded=False):
        self.fn = fn
        self.guarded = guarded


class Structural:
    __slots__ = ('fn',)
    kind = 'structural'

    def __init__(self, fn):
        self.fn = fn


class Reshape(Structural):
    """A reshape (`fn` as for Structural). One that only inserts or removes
    dimensions of size 1 the generator handles itself: its output is read
    from the operand's array inside fused loops, with no call."""
    __slots__ = ()
    kind = 'reshape'


class BroadcastInDim:
    __slots__ = ()
    kind = 'broadcast'


class Iota:
    __slots__ = ()
    kind = 'iota'


class Reduce:
    """op: 'sum', 'max', 'min' or 'prod'."""
    __slots__ = ('op',)
    kind = 'reduce'

    def __init__(self, op):
        self.op = op


class Guarded(str):
    """An elementwise result with a fast (vectorisable) expression and a slow exact
    one: the generator runs a loop nest again with the slow expressions when
    `guard` held for some element (e.g. a trigonometric argument beyond the fast
    range reduction). A 0-d equation uses the slow expression directly."""

    def __new__(cls, fast, slow, guard):
        s = super().__new__(cls, fast)
        s.slow = slow
        s.guard = guard
        return s


class Operand:
    __slots__ = ('expr', 'aval', 'scalar')

    def __init__(self, expr, aval):
        self.expr = expr
        self.aval = aval
        self.scalar = aval.shape == ()

    def __repr__(self):
        return f"Operand({self.expr}, {self.aval.str_short()})"


def kind_of(dtype):
    return dtype.kind


def is_float(dtype):
    return dtype.kind == 'f'


# --- higher-order primitives (control flow, calls) ---

class Call(Structural):
    """A call-like higher-order primitive whose evaluation is its sub-jaxpr
    (`params[param]`, a ClosedJaxpr) applied to its operands: jit, checkpoint,
    custom_jvp_call, custom_vjp_call. The compiler inlines its equations into
    the surrounding code (fusing across the call boundary); used as a
    Structural rule, it inlines the sub-jaxpr with `ctx.inline_jaxpr`.

    Structural rules of control flow use `ctx.inline_jaxpr(closed, in_exprs)`
    (the sub-jaxpr's code emitted at the current indentation, returning one
    expression per output) and `ctx.block(header)` (a context manager emitting
    `header` — `for ...:`, `if ...:` — and indenting what is emitted inside)."""
    __slots__ = ('param',)
    kind = 'call'

    def __init__(self, param):
        self.param = param

        def fn(ctx, ins, out_avals, **params):
            return ctx.inline_jaxpr(params[param], [o.expr for o in ins])
        super().__init__(fn)


def call_jaxpr(eqn):
    """The ClosedJaxpr a call-like equation evaluates, or None."""
    rule = eqn.primitive.lowering
    if rule is not None and rule.kind == 'call':
        return eqn.params.get(rule.param)
    return None
