"""Python source for numba from a jaxpr: fused loops, BLAS calls, views.

The generator walks the equations once, in order, keeping *open clusters*: sets
of elementwise equations with one output shape whose loop nest has not been
written yet. An elementwise equation (or a broadcast_in_dim, an iota) of shape S
joins the open cluster of shape S when its operands are values of that cluster
or already-computed arrays and scalars; a reduction joins the cluster that
produces its operand. Anything else (a dot_general, a reshape, a gather...) is a
*structural* equation: the clusters producing its operands are closed first
(their loop nests written out), then the rule writes its statements. A cluster
also closes when a member would read one of its own reductions, and at the end.

Closing a cluster writes one loop nest over S. Inside, every member is a scalar
local (one pass over memory, no intermediate arrays); a member is stored to an
array only if something outside the cluster (or the function's result) reads it.
Operands of smaller shapes are read with broadcast indices (size-1 dimensions
index 0, missing leading dimensions are dropped). Reductions accumulate in the
same nest: a full reduction in a scalar, a reduction over trailing axes in a
scalar per outer index, others in an output array.

0-d values are plain scalars in the generated code, never 0-d arrays.

Lowering rules live beside their primitives (`p.lowering`, see
primitives/_lowering.py for the interface).
"""
import ast
import re

import numpy as np

from tracer import Literal, DropVar, Var
from primitives._lowering import NotLowerable, Operand, Guarded
from primitives.jitlib import LDST_MAX_NDIM

_F16 = np.dtype(np.float16)


def dtype_supported(dt):
    """dtypes the generated code handles: bool, integers, float32, float64."""
    return dt.kind in 'biu' or (dt.kind == 'f' and dt.itemsize in (4, 8))


def np_dtype(dt):
    dt = np.dtype(dt)
    return 'np.bool_' if dt.kind == 'b' else f'np.{dt.name}'


def literal(val, dtype):
    dt = np.dtype(dtype)
    if dt.kind == 'b':
        return 'True' if bool(val) else 'False'
    if dt.kind == 'f':
        v = float(val)
        if v != v:
            s = 'np.nan'
        elif v == float('inf'):
            s = 'np.inf'
        elif v == float('-inf'):
            s = '(-np.inf)'
        else:
            s = repr(v)
            if s.startswith('-'):
                s = f'({s})'
        return s if dt.itemsize == 8 else f'np.float32({s})'
    if dt.kind in 'iu':
        return f'np.{dt.name}({int(val)})'
    raise NotLowerable(f"literal of dtype {dt.name}")


def cast(expr, dtype):
    return f'{np_dtype(dtype)}({expr})'


# --- constants and numba's types of generated expressions ------------------------------------
# A program's first call is mostly numba compiling it, at a cost per statement of its
# IR: `np.float32(1.0)` is three (a global, an attribute, a call) and so is every cast.
# Typed constants are module globals instead (numba freezes a global's value: one
# statement), and a cast is left out when numba's type of the expression is already
# the target dtype (`expr_dtype`: a small model of numba's typing rules that answers
# None, keeping the cast, for anything it does not know).

class ModuleConsts:
    """The typed constants of one generated module: `_c<k> = np.float32(1.0)`."""

    def __init__(self):
        self.by_text = {}      # 'np.float32(1.0)' -> '_c0'
        self.lines = []
        self.dtypes = {}       # '_c0' -> np.dtype
        self.values = {}       # '_c0' -> the Python value

    def name(self, text, dtype, value):
        n = self.by_text.get(text)
        if n is None:
            n = self.by_text[text] = f'_c{len(self.lines)}'
            self.lines.append(f'{n} = {text}')
            self.dtypes[n] = np.dtype(dtype)
            self.values[n] = value
        return n


_F32, _F64, _I64, _BOOL = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64),
                           np.dtype(np.bool_))
_FLOATS = (_F32, _F64)
_ARITH = {ast.Add: '+', ast.Sub: '-', ast.Mult: '*', ast.Div: '/'}
_NP_SCALARS = {'bool_', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
               'uint64', 'float32', 'float64'}
# vecmath helpers called on float64 return float64
_VM_F64 = {'vm_exp', 'vm_expm1', 'vm_log', 'vm_log1p', 'vm_tanh', 'vm_logistic', 'vm_sin',
           'vm_cos', 'vm_tan', 'vm_rint'}
# float32-native vecmath helpers called on float32 return float32
_VM_F32 = {'vm_exp32', 'vm_tanh32'}


_LOADS = {f'ld{k}' for k in range(1, LDST_MAX_NDIM + 1)}


def _binop_dtype(op, a, b):
    """numba's result type of `a op b` for the cases modelled (same-typed float32/64
    operands; int64 for + - *), else None."""
    if a is None or a != b:
        return None
    if a in _FLOATS:
        return a
    if a == _I64 and op != '/':
        return a
    return None


class _Typer:
    """numba's type of a generated scalar expression, or None when unsure.
    scalars: name -> dtype; arrays: name -> (dtype, ndim); consts: ModuleConsts."""

    def __init__(self, scalars, arrays, consts):
        self.scalars, self.arrays, self.consts = scalars, arrays, consts

    def __call__(self, expr):
        try:
            node = ast.parse(expr, mode='eval').body
        except SyntaxError:
            return None
        return self.ty(node)

    def ty(self, n):
        t = type(n)
        if t is ast.Name:
            return self.scalars.get(n.id) or self.consts.dtypes.get(n.id)
        if t is ast.Subscript:
            if type(n.value) is not ast.Name:
                return None
            arr = self.arrays.get(n.value.id)
            if arr is None:
                return None
            ix = n.slice.elts if type(n.slice) is ast.Tuple else [n.slice]
            if len(ix) != arr[1] or not all(
                    type(i) is ast.Name or (type(i) is ast.Constant and type(i.value) is int)
                    for i in ix):
                return None
            return arr[0]
        if t is ast.Constant:
            v = n.value
            return _BOOL if type(v) is bool else _F64 if type(v) is float else None
        if t is ast.BinOp:
            op = _ARITH.get(type(n.op))
            return None if op is None else _binop_dtype(op, self.ty(n.left), self.ty(n.right))
        if t is ast.UnaryOp:
            if type(n.op) is ast.USub:
                a = self.ty(n.operand)
                return a if a in (_F32, _F64, _I64) else None
            if type(n.op) is ast.Not:
                return _BOOL if self.ty(n.operand) is not None else None
            return None
        if t is ast.Compare:
            if len(n.ops) != 1 or type(n.ops[0]) in (ast.In, ast.NotIn, ast.Is, ast.IsNot):
                return None
            a, b = self.ty(n.left), self.ty(n.comparators[0])
            return _BOOL if a is not None and b is not None and a.kind in 'biuf' \
                and b.kind in 'biuf' else None
        if t is ast.IfExp:
            a, b = self.ty(n.body), self.ty(n.orelse)
            return a if a is not None and a == b and self.ty(n.test) is not None else None
        if t is ast.Call:
            if n.keywords:
                return None
            f = n.func
            if type(f) is ast.Attribute and type(f.value) is ast.Name and f.value.id == 'np' \
                    and f.attr in _NP_SCALARS and len(n.args) == 1:
                return np.dtype(f.attr) if self.ty(n.args[0]) is not None else None
            if type(f) is not ast.Name:
                return None
            args = [self.ty(a) for a in n.args]
            name = f.id
            if name in _LOADS:
                arr = self.arrays.get(n.args[0].id) if n.args and type(n.args[0]) is ast.Name \
                    else None
                # (the indices are loop indices and literals the generator wrote)
                return arr[0] if arr is not None and arr[1] == len(n.args) - 1 else None
            if name in _VM_F64:
                return _F64 if args == [_F64] else None
            if name in _VM_F32:
                return _F32 if args == [_F32] else None
            if len(args) == 2:
                if name == 'radd':
                    return _binop_dtype('+', *args)
                if name == 'rmul':
                    return _binop_dtype('*', *args)
                if name in ('fmax', 'fmin', 'safe_mul'):
                    return args[0] if args[0] in _FLOATS and args[0] == args[1] else None
            if name == 'abs' and len(args) == 1 and args[0] in (_F32, _F64):
                return args[0]
            return None
        return None


# jitlib calls that return a newly allocated array (which the function may overwrite
# once nothing else reads it)
_FRESH_CALLS = ('empty(', 'full(', 'copy(', 'dot(', 'dot_nn(', 'dot_t(', 'dot_nt(',
                'dot_tt(', 'gemm_nn(', 'gemm_t(', 'gemm_nt(', 'gemm_tt(')
# calls returning an array numba types C-contiguous
_C_CALLS = _FRESH_CALLS + ('reshape(', 'contig(')


class Cluster:
    __slots__ = ('shape', 'members', 'defined', 'red_outs', 'eqn_ids')

    def __init__(self, shape):
        self.shape = shape
        self.members = []      # (eqn_id, eqn)
        self.defined = {}      # var -> local scalar name
        self.red_outs = {}     # outputs of reductions in this cluster (ordered: the
        #                        generated text, hence the cache key, must not depend
        #                        on hash order)
        self.eqn_ids = set()


_HOIST_WINDOW = 48       # how far ahead hoist_into looks


def _squeezed(shape):
    return tuple(n for n in shape if n != 1)


def _member_index(shape, idx):
    """Indices of a value of `shape` in a loop nest over _squeezed(shape) with loop
    indices `idx`: 0 for dimensions of size 1."""
    it = iter(idx)
    return ['0' if n == 1 else next(it) for n in shape]


_IDENT = {
    'sum': lambda dt: False if dt.kind == 'b' else dt.type(0),
    'prod': lambda dt: True if dt.kind == 'b' else dt.type(1),
    'max': lambda dt: (False if dt.kind == 'b' else -np.inf if dt.kind == 'f'
                       else np.iinfo(dt).min),
    'min': lambda dt: (True if dt.kind == 'b' else np.inf if dt.kind == 'f'
                       else np.iinfo(dt).max),
}


class FunctionGen:
    """Generates one numba function: params -> eqns -> outs."""

    def __init__(self, fname, params, eqns, outs, helpers, consts=None):
        self.fname = fname
        self.params = params
        self.eqns = eqns
        self.outs = outs
        self.helpers = helpers           # set of vecmath names the module imports
        self.lines = []
        self.indent = 1
        self.names = {}
        self.counter = 0
        self.avail = set()
        self.open = {}                   # shape -> Cluster
        self.where = {}                  # var -> Cluster (while open)
        self.consumers = {}              # var -> set of eqn ids
        self.out_set = set(v for v in outs if type(v) is not Literal)
        self.owned = set()               # vars holding a fresh array of this function
        self.const_map = {}              # constvar of a nested jaxpr -> hoisted Var
        self.extra_params = []           # hoisted constants this function takes too
        self.inplace = {}                # loop carry output -> (carry input, buffer)
        self.views = {}                  # unit-dimension reshape output -> its base value
        self.contig = set()              # array values numba types C-contiguous
        self.done = set()                # ids of equations lowered ahead of their turn
        self.rowviews = {}               # row of an array -> (array value, index prefix)
        self.cross_row = set()           # reductions accumulated over a rows loop
        self.region_from = 0             # no rows region starts before this equation
        self.sched = None                # (equations being lowered, id of the first)
        self.view_eqns = {}              # eqn id of such a reshape -> its output
        self.consts = consts if consts is not None else ModuleConsts()
        self.scalar_types = {}           # local scalar name -> its dtype (as numba types it)
        self.array_types = {}            # local array name -> (dtype, ndim)
        self.typer = _Typer(self.scalar_types, self.array_types, self.consts)

    # --- helpers for rules -----------------------------------------------------------
    def fresh(self, prefix='t'):
        self.counter += 1
        return f'{prefix}{self.counter}'

    def emit(self, line):
        self.lines.append('    ' * self.indent + line)

    def lit(self, val, dtype):
        """A constant of that dtype: a Python literal for float64 and bool, else a
        module global (see ModuleConsts)."""
        text = literal(val, dtype)
        dt = np.dtype(dtype)
        if dt.kind == 'b' or (dt.kind == 'f' and dt.itemsize == 8 and
                              text[:1] not in ('n', '(')):
            return text
        return self.consts.name(text, dt, val)

    def const_value(self, expr):
        """The value of `expr` when it is a constant this generator emitted, else None."""
        v = self.consts.values.get(expr)
        if v is not None:
            return v
        try:
            v = ast.literal_eval(expr)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        return v if type(v) in (float, int, bool) else None

    def expr_dtype(self, expr):
        """numba's type of the scalar expression `expr`, or None when unsure."""
        return self.typer(expr)

    def cast(self, expr, dtype):
        """`expr` converted to `dtype` (no conversion when numba types it so already)."""
        if self.typer(expr) == np.dtype(dtype):
            return expr
        return cast(expr, dtype)

    def local(self, name, dtype):
        """Declare `name` a local scalar whose every assignment has type `dtype`."""
        self.scalar_types[name] = np.dtype(dtype)
        return name

    def helper(self, name):
        """`name` from primitives.vecmath or primitives.jitlib, imported by the module."""
        self.helpers.add(name)
        return name

    def empty(self, shape, dtype):
        return f"{self.helper('empty')}({tuple(shape)!r}, {np_dtype(dtype)})"

    def full(self, shape, value, dtype):
        return f"{self.helper('full')}({tuple(shape)!r}, {value}, {np_dtype(dtype)})"

    def load(self, name, ix):
        """The element of array `name` at indices `ix` (non-negative, in range)."""
        nd = len(ix)
        if 0 < nd <= LDST_MAX_NDIM:
            return f"{self.helper(f'ld{nd}')}({name}, {', '.join(ix)})"
        return f"{name}[{', '.join(ix)}]"

    def store_value(self, v, ix, value):
        """The statement storing `value` at indices `ix` of value `v`'s array."""
        rv = self.rowviews.get(v)
        if rv is not None:
            return self.store(self.names[rv[0]], rv[1] + ix, value)
        return self.store(self.names[v], ix, value)

    def store(self, name, ix, value):
        """The statement storing `value` at indices `ix` of array `name`."""
        nd = len(ix)
        if 0 < nd <= LDST_MAX_NDIM:
            return f"{self.helper(f'st{nd}')}({name}, {', '.join(ix)}, {value})"
        return f"{name}[{', '.join(ix)}] = {value}"

    def loops(self, shape):
        gen = self

        class _Loops:
            def __enter__(self):
                self.idx = []
                for n in shape:
                    i = gen.fresh('j')
                    gen.emit(f'for {i} in range({n}):')
                    gen.indent += 1
                    self.idx.append(i)
                return self.idx

            def __exit__(self, *exc):
                gen.indent -= len(shape)
                return False
        return _Loops()

    def name(self, v):
        n = self.names.get(v)
        if n is None:
            self.counter += 1
            n = self.names[v] = f'v{self.counter}'
            # every assignment to a value's name has the value's dtype: scalars are
            # assigned cast expressions, arrays are allocated with it
            if v.aval.shape == ():
                self.scalar_types[n] = v.aval.dtype
            else:
                self.array_types[n] = (v.aval.dtype, len(v.aval.shape))
        return n

    # --- main ------------------------------------------------------------------------
    def generate(self):
        for i, eqn in enumerate(self.eqns):
            for v in eqn.invars:
                if type(v) is not Literal:
                    self.consumers.setdefault(v, set()).add(i)
        for v in self.params:
            self.name(v)
            self.avail.add(v)
            self.contig.add(v)
        self.sched = (self.eqns, 0)
        for i, eqn in enumerate(self.eqns):
            if i in self.done:
                continue
            self.eqn_id = i
            try:
                if self.try_region(i):
                    continue
                self.lower_eqn(i, eqn)
            except NotLowerable as e:
                e.eqn_index = getattr(e, 'hoisted_index', i)
                raise
        for c in list(self.open.values()):
            self.close(c)
        outs = []
        for v in self.outs:
            if type(v) is Literal:
                outs.append(self.lit(v.val, v.aval.dtype))
            else:
                self.ensure(v)
                outs.append(self.names[v])
        self.emit(f"return ({''.join(o + ', ' for o in outs)})")
        header = f"def {self.fname}({', '.join(self.names[v] for v in list(self.params) + self.extra_params)}):"
        return [header] + self.lines

    def ensure(self, v):
        """Make `v` available as an array or scalar (closing its cluster)."""
        if type(v) is Literal or v in self.avail:
            return
        base = self.views.get(v)
        if base is not None:
            # a structural rule (or the result) needs the view itself
            self.ensure(base)
            if base.aval.shape == ():
                self.emit(f"{self.name(v)} = {self.full(v.aval.shape, self.names[base], v.aval.dtype)}")
            else:
                self.emit(f"{self.name(v)} = {self.helper('reshape')}({self.names[base]}, "
                          f"{v.aval.shape!r})")
            self.avail.add(v)
            return
        c = self.where.get(v)
        if c is None:
            raise AssertionError(f"codegen: {v} is not defined")
        self.close(c)

    def expr_of(self, v):
        if type(v) is Literal:
            return self.lit(v.val, v.aval.dtype)
        self.ensure(v)
        return self.names[v]

    def lower_eqn(self, i, eqn):
        prim = eqn.primitive
        rule = prim.lowering
        if rule is None:
            raise NotLowerable(f"{prim.name} has no numba lowering")
        for v in list(eqn.invars) + list(eqn.outvars):
            if not dtype_supported(v.aval.dtype):
                raise NotLowerable(f"dtype {v.aval.dtype.name}")
        used = [not isinstance(v, DropVar) and (v in self.consumers or v in self.out_set)
                for v in eqn.outvars]
        if not any(used) and not prim.effectful:
            return
        kind = rule.kind
        if kind in ('elementwise', 'broadcast', 'iota'):
            shape = eqn.outvars[0].aval.shape
            if shape == ():
                self.scalar_eqn(eqn, rule)
            elif not _squeezed(shape):
                self.unit_eqn(eqn, rule)
            else:
                self.join(shape, i, eqn)
        elif kind == 'reshape' and self.view(eqn):
            return
        elif kind == 'reduce':
            x = eqn.invars[0]
            axes = eqn.params['axes']
            if eqn.outvars[0] in self.cross_row:
                if x.aval.shape == ():
                    out = eqn.outvars[0]
                    self.emit(f'{self.names[out]} = '
                              f'{self.red_step(rule.op, out.aval.dtype, self.names[out], self.expr_of(x))}')
                else:
                    self.join(x.aval.shape, i, eqn)
                return
            if not axes or x.aval.shape == () or type(x) is Literal:
                # nothing reduced: an identity (an elementwise copy)
                self.alias(eqn.outvars[0], x)
                return
            if not _squeezed(x.aval.shape):
                self.unit_eqn(eqn, rule)
                return
            self.join(x.aval.shape, i, eqn)
        else:
            ins = [Operand(self.expr_of(v), v.aval) for v in eqn.invars]
            outs = rule.fn(self, ins, [v.aval for v in eqn.outvars], **eqn.params)
            for v, o in zip(eqn.outvars, outs):
                if isinstance(v, DropVar):
                    continue
                n = self.name(v)
                self.emit(f'{n} = {self.cast(o, v.aval.dtype) if v.aval.shape == () else o}')
                self.avail.add(v)
                if o.startswith(_FRESH_CALLS):
                    self.owned.add(v)
                if o.startswith(_C_CALLS):
                    self.contig.add(v)

    def view(self, eqn):
        """A reshape that only inserts or removes dimensions of size 1 is not
        emitted: its output is read from the operand's array (see `element`),
        and made a real view only if a structural rule or the result needs it.
        -> True when handled so."""
        x, out = eqn.invars[0], eqn.outvars[0]
        if type(x) is Literal or isinstance(out, DropVar) or \
                (not x.aval.shape and not out.aval.shape) or \
                _squeezed(x.aval.shape) != _squeezed(out.aval.shape):
            return False
        base = self.views.get(x, x)
        if base.aval.shape and not (base in self.contig or base in self.where or
                                    base in self.rowviews):
            # only views of arrays numba knows contiguous: elements read through a
            # view of a strided one would make the loops reading them strided too
            return False
        if not out.aval.shape:
            # the single element of an array of size 1: a scalar now
            e = self.unit_value(x)
            if e.isidentifier():
                self.names[out] = e
            else:
                self.emit(f'{self.name(out)} = {e}')
            self.avail.add(out)
            return True
        self.views[out] = self.views.get(x, x)
        self.view_eqns[self.eqn_id] = out
        return True

    def unit_value(self, v):
        """The single element of operand `v` (0-d, or an array of size 1)."""
        if type(v) is Literal:
            return self.lit(v.val, v.aval.dtype)
        if v.aval.shape == ():
            return self.expr_of(v)
        base = self.views.get(v)
        self.ensure(v if base is None else base)
        return self.element(v, ['0'] * len(v.aval.shape))

    def unit_eqn(self, eqn, rule):
        """An equation whose values have one element (all dimensions of size 1): no
        loop nest; each value is a scalar, and the value a view of it (made an
        array only if something needs the array, see ensure)."""
        if rule.kind == 'broadcast':
            res = [self.unit_value(eqn.invars[0])]
        elif rule.kind == 'iota':
            res = ['0']
        elif rule.kind == 'reduce':
            dt = eqn.outvars[0].aval.dtype
            res = [self.red_step(rule.op, dt, self.lit(_IDENT[rule.op](dt), dt),
                                 self.unit_value(eqn.invars[0]))]
        else:
            res = self.rule_results(eqn, rule, [self.unit_value(v) for v in eqn.invars])
        for v, r in zip(eqn.outvars, res):
            if isinstance(v, DropVar):
                continue
            target = v
            if v.aval.shape != ():
                target = Var(_ShapedArray((), v.aval.dtype))
                self.views[v] = target
            if rule.kind == 'broadcast' and type(eqn.invars[0]) is Literal:
                self.names[target] = r            # a constant: read as such
            else:
                self.emit(f'{self.name(target)} = {self.cast(r, v.aval.dtype)}')
            self.avail.add(target)

    def alias(self, out, x):
        n = self.name(out)
        self.emit(f'{n} = {self.expr_of(x)}')
        self.avail.add(out)

    def scalar_eqn(self, eqn, rule):
        if rule.kind == 'broadcast':
            self.alias(eqn.outvars[0], eqn.invars[0])
            return
        res = self.rule_results(eqn, rule, [self.expr_of(v) for v in eqn.invars])
        for v, r in zip(eqn.outvars, res):
            if isinstance(v, DropVar):
                continue
            self.emit(f'{self.name(v)} = {self.cast(r, v.aval.dtype)}')
            self.avail.add(v)

    def rule_results(self, eqn, rule, args):
        """The scalar expressions of an elementwise lowering rule's outputs, one
        per outvar (a guarded expression's general form)."""
        res = rule.fn(self, args, [v.aval for v in eqn.invars], eqn.outvars[0].aval,
                      **eqn.params)
        if not eqn.primitive.multiple_results:
            res = [res]
        return [r.slow if isinstance(r, Guarded) else r for r in res]

    def join(self, shape, i, eqn):
        # one loop nest per shape up to dimensions of size 1: (128, 1) and (128,)
        # values share the nest over (128,)
        shape = _squeezed(shape)
        c = self.open.get(shape)
        # operands must be available now, or values of the cluster being joined
        is_reduce = eqn.primitive.lowering.kind == 'reduce'
        for v in eqn.invars:
            if type(v) is Literal or v in self.avail:
                continue
            base = self.views.get(v)
            if base is not None:
                # a view of unit-dimension reshapes: read in the base's array, or
                # as the base's local in the base's own nest
                if base not in self.avail:
                    owner = self.where[base]
                    if owner is c and base in c.defined:
                        continue
                    self.close(owner)
                    if owner is c:
                        c = None
                continue
            owner = self.where[v]
            if owner is c and v in c.defined:
                continue
            self.close(owner)        # its own cluster's reduction, or another cluster
            if owner is c:
                c = None
        if c is None:
            c = self.open[shape] = Cluster(shape)
        c.members.append((i, eqn))
        c.eqn_ids.add(i)
        for v in eqn.outvars:
            if isinstance(v, DropVar):
                continue
            self.where[v] = c
            if is_reduce:
                c.red_outs[v] = None
            elif eqn.primitive.lowering.kind == 'broadcast' and type(eqn.invars[0]) is Literal:
                # a constant: members read it as such (no local; rules see the value)
                c.defined[v] = self.lit(eqn.invars[0].val, v.aval.dtype)
            elif eqn.primitive.lowering.kind == 'broadcast' and \
                    eqn.invars[0].aval.shape == () and eqn.invars[0] in self.avail and \
                    self.names[eqn.invars[0]].isidentifier():
                # a scalar computed before the nest: read by its name
                c.defined[v] = self.names[eqn.invars[0]]
            else:
                c.defined[v] = self.local(self.fresh('e'), v.aval.dtype)

    # --- closing a cluster: the loop nest ----------------------------------------------
    def needs_array(self, v, c):
        if v in self.out_set:
            return True
        for j in self.consumers.get(v, ()):
            if j in c.eqn_ids:
                continue
            w = self.view_eqns.get(j)      # a view of v: read as v's local if in c
            if w is not None and not self.needs_array(w, c):
                continue
            return True
        return False

    def hoist_into(self, c):
        """Before closing `c`, lower into it the equations a little further on that
        could join it now (their operands are available or values of `c`, their
        shape is c's): one loop nest fewer each time one would start a new nest
        of the same shape later. (Equations are pure; one whose operands are
        available depends on nothing not yet lowered.)"""
        eqns, base = self.sched
        here = self.eqn_id - base
        if here is None or here < 0:
            return
        for k in range(here + 1, min(len(eqns), here + 1 + _HOIST_WINDOW)):
            eid = base + k
            if eid in self.done:
                continue
            eqn = eqns[k]
            rule = eqn.primitive.lowering
            kind = rule.kind if rule is not None else None
            if kind in ('elementwise', 'broadcast', 'iota'):
                shape = eqn.outvars[0].aval.shape
            elif kind == 'reduce' and eqn.params['axes'] and type(eqn.invars[0]) is not Literal:
                shape = eqn.invars[0].aval.shape
            elif kind == 'reshape' and self.ready_in(eqn.invars[0], c):
                saved = self.eqn_id
                self.eqn_id = eid
                if self.view(eqn):                # a view: no code, read in place
                    self.done.add(eid)
                self.eqn_id = saved
                continue
            else:
                continue
            if shape == () or _squeezed(shape) != c.shape or eqn.primitive.effectful or \
                    not all(self.ready_in(v, c) for v in eqn.invars) or \
                    not all(dtype_supported(v.aval.dtype)
                            for v in list(eqn.invars) + list(eqn.outvars)):
                continue
            self.done.add(eid)
            saved = self.eqn_id
            self.eqn_id = eid
            try:
                self.lower_eqn(eid, eqn)
            except NotLowerable as e:
                e.hoisted_index = k
                raise
            finally:
                self.eqn_id = saved

    def ready_in(self, v, c):
        """Whether operand `v` can be read by a member of `c` now."""
        if type(v) is Literal or v in self.avail:
            return True
        v = self.views.get(v, v)
        return v in self.avail or v in c.defined

    def close(self, c):
        if c.shape in self.open and self.sched is not None:
            self.hoist_into(c)
        del self.open[c.shape]
        shape = c.shape
        nd = len(shape)
        idx = [f'i{d}' for d in range(nd)]
        stores = {v for v in c.defined if self.needs_array(v, c)}
        for v in c.defined:
            self.name(v)
        for v in c.red_outs:
            self.name(v)
        # the member expressions (fast and slow variants)
        body_fast, body_slow, guards = [], [], []
        reds = []
        for _, eqn in c.members:
            rule = eqn.primitive.lowering
            if rule.kind == 'reduce':
                reds.append(eqn)
                continue
            out = eqn.outvars[0]
            oidx = _member_index(out.aval.shape, idx)
            if rule.kind == 'broadcast':
                res = [self.read_bcast(eqn, c, oidx)]
            elif rule.kind == 'iota':
                res = [f"{oidx[eqn.params['dimension']]}"]
            else:
                args = [self.read(v, c, oidx) for v in eqn.invars]
                res = rule.fn(self, args, [v.aval for v in eqn.invars], out.aval, **eqn.params)
                if not eqn.primitive.multiple_results:
                    res = [res]
            for v, r in zip(eqn.outvars, res):
                if isinstance(v, DropVar):
                    continue
                e = c.defined[v]
                if e == r:
                    pass                       # a constant (see join)
                elif isinstance(r, Guarded):
                    guards.append(r.guard)
                    body_fast.append(f'{e} = {self.cast(r, v.aval.dtype)}')
                    body_slow.append(f'{e} = {self.cast(r.slow, v.aval.dtype)}')
                else:
                    line = f'{e} = {self.cast(r, v.aval.dtype)}'
                    body_fast.append(line)
                    body_slow.append(line)
                if v in stores:
                    st = self.store_value(v, _member_index(v.aval.shape, idx), e)
                    body_fast.append(st)
                    body_slow.append(st)
        flag = None
        if guards:
            flag = self.fresh('big')
            self.emit(f'{flag} = False')
            body_fast.append(f"{flag} = {flag} | {' | '.join(guards)}")
        reuse = {} if guards else self.reusable(c, stores)
        if reuse:
            # stored in place of a dead operand: after every read of this iteration
            late = [self.store(self.names[v], _member_index(v.aval.shape, idx), c.defined[v])
                    for v in reuse]
            body_fast = [ln for ln in body_fast if ln not in late]
        if reuse:
            # the stored member takes the dead operand's name (no alias statement:
            # one variable, one reference count, fewer statements for numba)
            ren = {self.names[v]: self.names[a] for v, a in reuse.items()}
            pat = re.compile(r'\b(' + '|'.join(map(re.escape, ren)) + r')\b')
            body_fast = [pat.sub(lambda m: ren[m.group(1)], ln) for ln in body_fast]
            late = [pat.sub(lambda m: ren[m.group(1)], ln) for ln in late]
            for v, a in reuse.items():
                self.names[v] = self.names[a]
        for v in c.defined:
            if v in reuse:
                self.owned.add(v)
            elif v in stores and v in self.rowviews:
                pass                      # a row of an array allocated before the rows loop
            elif v in stores:
                target = self.store_target(v, c, bool(guards))
                self.emit(f'{self.names[v]} = {target}')
                if target.startswith(_FRESH_CALLS):
                    self.owned.add(v)
        self.write_nest(c, idx, body_fast, reds, stores, late if reuse else ())
        if guards:
            self.emit(f'if {flag}:')
            self.indent += 1
            self.write_nest(c, idx, body_slow, reds, stores)
            self.indent -= 1
        for v in c.defined:
            if v in stores:
                self.avail.add(v)
                self.contig.add(v)        # a fresh array, a dead product's, a carry's copy
            self.where.pop(v, None)
        for v in c.red_outs:
            self.avail.add(v)
            self.where.pop(v, None)

    def reusable(self, c, stores):
        """{stored member: dead operand array it may overwrite}. An operand qualifies
        when this function allocated it (a BLAS result, an earlier loop's store), it
        has the cluster's shape and the member's dtype, and nothing outside this
        cluster (nor the result) reads it: its element i is dead once iteration i has
        read it, so the member's store goes last in the iteration, over it."""
        dead = []
        for _, eqn in c.members:
            for a in eqn.invars:
                if (type(a) is not Literal and a in self.owned and a not in dead
                        and a not in self.out_set and _squeezed(a.aval.shape) == c.shape
                        and self.consumers.get(a, set()) <= c.eqn_ids):
                    dead.append(a)
        reuse = {}
        for v in c.defined:
            if v in stores and v not in self.inplace:    # loop carries: store_target
                a = next((a for a in dead if a.aval.dtype == v.aval.dtype
                          and a.aval.shape == v.aval.shape), None)
                if a is not None:
                    reuse[v] = a
                    dead.remove(a)
        return reuse

    def write_nest(self, c, idx, body, reds, stores, late=()):
        shape = c.shape
        nd = len(shape)
        pro = [[] for _ in range(nd + 1)]   # statements before loop d opens
        epi = [[] for _ in range(nd + 1)]   # statements after loop d closes
        inner = list(body)
        for eqn in reds:
            op = eqn.primitive.lowering.op
            x = eqn.invars[0]
            out = eqn.outvars[0]
            dt = out.aval.dtype
            xshape = x.aval.shape
            axes = set(eqn.params['axes'])
            xidx = _member_index(xshape, idx)
            v = self.read(x, c, xidx)
            ident = self.lit(_IDENT[op](dt), dt)
            # the reduced loops (dimensions of size 1 have none)
            loops = [d for d, n in enumerate(xshape) if n != 1]
            qaxes = tuple(q for q, d in enumerate(loops) if d in axes)
            k = nd - len(qaxes)
            kept = [xidx[d] for d in range(len(xshape)) if d not in axes]
            name = self.names[out]
            cross = out in self.cross_row      # accumulated over a rows loop: see regions
            if qaxes == tuple(range(k, nd)) and not (cross and out.aval.shape != ()):
                # trailing loops: a scalar accumulator per iteration of the outer ones
                acc = name if out.aval.shape == () else self.local(self.fresh('acc'), dt)
                if not cross:
                    pro[k].append(f'{acc} = {ident}')
                inner.append(f'{acc} = {self.red_step(op, dt, acc, v)}')
                if out.aval.shape != ():
                    self.contig.add(out)
                    if out not in self.rowviews:
                        pro[0].append(f'{name} = {self.empty(out.aval.shape, dt)}')
                    epi[k].append(self.store_value(out, kept, acc))
            else:
                self.contig.add(out)
                if not cross:
                    pro[0].append(f'{name} = {self.full(out.aval.shape, ident, dt)}')
                # an accumulation into memory: one operation per element and step,
                # nothing to reassociate (radd/rmul's flag matters for scalar chains)
                inner.append(self.store(name, kept, self.red_step(
                    op, dt, self.load(name, kept), v, chain=False)))
        for line in pro[0]:
            self.emit(line)
        # a dimension of size 1 is an assignment, not a loop: fewer blocks for numba
        # to compile (a program's first call is mostly numba compiling it)
        opened = [shape[d] != 1 for d in range(nd)]
        for d in range(nd):
            if opened[d]:
                self.emit(f'for {idx[d]} in range({shape[d]}):')
                self.indent += 1
            else:
                self.emit(f'{idx[d]} = 0')
            for line in pro[d + 1]:
                self.emit(line)
        for line in inner:
            self.emit(line)
        for line in late:
            self.emit(line)
        for d in reversed(range(nd)):
            if opened[d]:
                self.indent -= 1
            for line in epi[d]:
                self.emit(line)

    def red_step(self, op, dt, acc, v, chain=True):
        """One reduction step. `chain`: the accumulator is a scalar carried across
        iterations (float sums/products then use radd/rmul, which LLVM may
        reassociate to vectorise the chain)."""
        k = dt.kind
        if k == 'b':
            return f'({acc} | {v})' if op in ('sum', 'max') else f'({acc} & {v})'
        if op == 'sum':
            r = f"{self.helper('radd')}({acc}, {v})" if k == 'f' and chain else f'({acc} + {v})'
        elif op == 'prod':
            r = f"{self.helper('rmul')}({acc}, {v})" if k == 'f' and chain else f'({acc} * {v})'
        elif op == 'max':
            r = f"{self.helper('fmax')}({acc}, {v})" if k == 'f' else f'max({acc}, {v})'
        else:
            r = f"{self.helper('fmin')}({acc}, {v})" if k == 'f' else f'min({acc}, {v})'
        return self.cast(r, dt)

    def read(self, v, c, idx):
        """The scalar expression of operand `v` at loop index `idx` of cluster `c`
        (NumPy broadcasting: trailing dimensions aligned)."""
        if type(v) is Literal:
            return self.lit(v.val, v.aval.dtype)
        e = c.defined.get(self.views.get(v, v))
        if e is not None:
            # a value of this nest (or a view of one): the element of this
            # iteration (the value's dimensions of size > 1 are the nest's loops)
            return e
        shape = v.aval.shape
        if shape == ():
            return self.names[v]
        off = len(idx) - len(shape)
        ix = ['0' if n == 1 else idx[off + j] for j, n in enumerate(shape)]
        return self.element(v, ix)

    def element(self, v, ix):
        """The element of array value `v` at indices `ix`: a load from its array,
        or from its base's for a view of unit-dimension reshapes (the same
        element: the base's non-unit dimensions are the view's, in order)."""
        base = self.views.get(v)
        if base is not None:
            it = iter([i for i, n in zip(ix, v.aval.shape) if n != 1])
            ix = ['0' if n == 1 else next(it) for n in base.aval.shape]
            v = base
            if not ix:
                return self.names[v]          # a view of a scalar
        rv = self.rowviews.get(v)
        if rv is not None:
            return self.load(self.names[rv[0]], rv[1] + ix)
        return self.load(self.names[v], ix)

    def read_bcast(self, eqn, c, idx):
        x = eqn.invars[0]
        if type(x) is Literal:
            return self.lit(x.val, x.aval.dtype)
        e = c.defined.get(self.views.get(x, x))
        if e is not None:
            return e
        if x.aval.shape == ():
            return self.names[x]
        dims = eqn.params['broadcast_dimensions']
        ix = ['0' if n == 1 else idx[d] for n, d in zip(x.aval.shape, dims)]
        return self.element(x, ix)


# --- higher-order primitives: sub-jaxprs inlined ----------------------------------------------
# Control flow (scan, while, cond) lowers to Python loops and branches whose bodies
# are their sub-jaxprs' code, generated by the same machinery (fused loop nests,
# BLAS calls) with fresh names: `FunctionGen.inline_jaxpr`. Call-like primitives
# (jit, checkpoint, custom_jvp_call, custom_vjp_call; primitives/_lowering.Call)
# are expanded into the equations around them. Constants of nested jaxprs become
# parameters of the generated function (`hoist_consts`).

from tracer import ClosedJaxpr as _ClosedJaxpr, ShapedArray as _ShapedArray  # noqa: E402
from primitives._lowering import call_jaxpr as _call_jaxpr  # noqa: E402

_EID_BASE = 1 << 40        # ids of inlined equations (never those of the function's own)


def _sub_closed(params):
    """The ClosedJaxprs among an equation's params (directly or in tuples/lists)."""
    for p in params.values():
        if isinstance(p, _ClosedJaxpr):
            yield p
        elif isinstance(p, (tuple, list)):
            for q in p:
                if isinstance(q, _ClosedJaxpr):
                    yield q


def hoist_consts(eqns):
    """The constants of every jaxpr nested in `eqns` (loop bodies, branches, calls,
    recursively) as new variables: -> (vars, values, {nested constvar: var})."""
    new_vars, values, cmap = [], [], {}
    seen = set()
    stack = [c for e in eqns for c in _sub_closed(e.params)]
    while stack:
        closed = stack.pop()
        if id(closed) in seen:
            continue
        seen.add(id(closed))
        for cv, c in zip(closed.jaxpr.constvars, closed.consts):
            if cv not in cmap:
                nv = Var(cv.aval)
                cmap[cv] = nv
                new_vars.append(nv)
                values.append(c)
        for e in closed.jaxpr.eqns:
            stack.extend(_sub_closed(e.params))
    return new_vars, values, cmap


def _atom(sub, v):
    return v if type(v) is Literal else sub.get(v, v)


def _expand(jaxpr, sub, out, hoisted):
    """Append jaxpr's equations to `out` with variables renamed through `sub`
    (fresh variables for their outputs); call-like equations are expanded."""
    for eqn in jaxpr.eqns:
        ins = [_atom(sub, v) for v in eqn.invars]
        inner = _call_jaxpr(eqn)
        if inner is not None:
            isub = {cv: hoisted(cv) for cv in inner.jaxpr.constvars}
            for iv, a in zip(inner.jaxpr.invars, ins):
                isub[iv] = a
            _expand(inner.jaxpr, isub, out, hoisted)
            for ov, iv in zip(eqn.outvars, inner.jaxpr.outvars):
                if not isinstance(ov, DropVar):
                    sub[ov] = _atom(isub, iv)
            continue
        outs = []
        for ov in eqn.outvars:
            if isinstance(ov, DropVar):
                outs.append(ov)
            else:
                nv = sub[ov] = Var(ov.aval)
                outs.append(nv)
        new = eqn.replace(invars=ins, outvars=outs)
        out.extend(_outer_product(new) or [new])


def _outer_product(eqn):
    """A dot_general without contraction or batch dimensions (an outer product,
    as the transpose of a matrix-vector product gives) as broadcast_in_dim and
    mul, which fuse with the elementwise code around them (the accumulation of a
    gradient into a loop carry): -> equations, or None."""
    if eqn.primitive.name != 'dot_general' or isinstance(eqn.outvars[0], DropVar):
        return None
    (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
    x, y = eqn.invars
    out = eqn.outvars[0]
    if lc or rc or lb or rb or type(x) is Literal or type(y) is Literal:
        return None
    if x.aval.dtype != out.aval.dtype or y.aval.dtype != out.aval.dtype or \
            x.aval.shape == () or y.aval.shape == () or out.aval.dtype.kind != 'f':
        return None
    from primitives.shape_ops import broadcast_in_dim_p
    from primitives.arith import mul_p
    nx = len(x.aval.shape)
    xb = Var(_ShapedArray(out.aval.shape, out.aval.dtype))
    return [eqn.replace(primitive=broadcast_in_dim_p, invars=[x], outvars=[xb],
                        params=dict(shape=xb.aval.shape, broadcast_dimensions=tuple(range(nx)))),
            eqn.replace(primitive=mul_p, invars=[xb, y], outvars=[out], params={})]


def live_eqns(eqns, outvars):
    """The equations `outvars` depend on (effectful ones always), in order."""
    live = set(v for v in outvars if type(v) is not Literal)
    keep = []
    for eqn in reversed(eqns):
        if eqn.primitive.effectful or any(v in live for v in eqn.outvars
                                          if not isinstance(v, DropVar)):
            keep.append(eqn)
            live.update(v for v in eqn.invars if type(v) is not Literal)
    keep.reverse()
    return keep


def _inline_jaxpr(self, closed, in_exprs, inplace=None):
    """Emit the code of `closed` (a ClosedJaxpr) applied to the scalar/array
    expressions `in_exprs` at the current indentation; -> one expression per
    output (a name, or a literal). The sub-jaxpr's values get fresh names; its
    loop nests open and close inside (clusters of the surrounding code stay
    open around it, untouched).

    `inplace` ({output position: input position}) names outputs that may be
    computed into the array of that input (a loop carry whose buffer the caller
    owns): it is, when the loop nest computing the output reads the input only
    element by element before storing and nothing else reads the input or
    keeps the output (see `store_target`)."""
    jaxpr = closed.jaxpr
    sub = {cv: self.hoisted(cv) for cv in jaxpr.constvars}
    for iv, e in zip(jaxpr.invars, in_exprs):
        nv = Var(iv.aval)
        if not e.isidentifier():
            n = self.fresh('a')
            self.emit(f'{n} = {e}')
            e = n
        self.names[nv] = e
        self.avail.add(nv)
        sub[iv] = nv
    eqns = []
    _expand(jaxpr, sub, eqns, self.hoisted)
    outvars = [_atom(sub, v) for v in jaxpr.outvars]
    eqns = live_eqns(eqns, outvars)
    if inplace:
        for o, i in inplace.items():
            ov, iv = outvars[o], sub[jaxpr.invars[i]]
            if type(ov) is Literal or ov is iv or sum(v is ov for v in outvars) != 1 \
                    or any(v is iv for v in outvars) or ov.aval.shape != iv.aval.shape:
                continue
            self.inplace[ov] = (iv, self.names[iv])
    base = getattr(self, '_next_eid', _EID_BASE)
    self._next_eid = base + len(eqns)
    for k, eqn in enumerate(eqns):
        for v in eqn.invars:
            if type(v) is not Literal:
                self.consumers.setdefault(v, set()).add(base + k)
    self.out_set.update(v for v in outvars if type(v) is not Literal)
    saved_open, saved_id, saved_sched = self.open, getattr(self, 'eqn_id', None), self.sched
    self.open = {}
    self.sched = (eqns, base)
    try:
        self.lower_block(eqns, base)
    finally:
        self.open = saved_open
        self.eqn_id = saved_id
        self.sched = saved_sched
    return [self.expr_of(v) for v in outvars]


def _lower_block(self, eqns, base):
    """Lower `eqns` (equation ids base, base+1, ...; those already done are
    skipped), then close the loop nests they left open."""
    for k, eqn in enumerate(eqns):
        if base + k in self.done:
            continue
        self.eqn_id = base + k
        self.lower_eqn(base + k, eqn)
    for c in list(self.open.values()):
        self.close(c)


def _hoisted(self, cv):
    """The variable holding the constant `cv` of a nested jaxpr (a parameter of
    the generated function)."""
    top = self.const_map.get(cv)
    if top is None:
        raise NotLowerable("a constant of a nested jaxpr was not hoisted")
    if top not in self.avail:
        if not dtype_supported(top.aval.dtype):
            raise NotLowerable(f"dtype {top.aval.dtype.name}")
        self.name(top)
        self.avail.add(top)
        self.contig.add(top)
        self.extra_params.append(top)
    return top


def _store_target(self, v, c, guarded):
    """The array a loop nest stores `v` into: a fresh one, or the buffer of the
    loop carry `v` replaces (see inline_jaxpr's `inplace`) when that is safe:
    the old carry is read only by members of this nest up to the one defining
    `v` (each reading the element it is about to overwrite), not by a reduction
    (those accumulate after the stores), not a second time by a slow pass
    (guarded nests), and neither the old carry nor `v` is read elsewhere."""
    req = self.inplace.get(v)
    if req is not None and not guarded and _squeezed(v.aval.shape) == c.shape:
        cin, buf = req
        pos = {eid: k for k, (eid, _) in enumerate(c.members)}
        vpos = next(k for k, (_, e) in enumerate(c.members) if any(o is v for o in e.outvars))
        ok = cin not in self.out_set and \
            all(j in c.eqn_ids for j in self.consumers.get(v, ()))
        for j in self.consumers.get(cin, ()):
            if j not in pos or pos[j] > vpos or \
                    c.members[pos[j]][1].primitive.lowering.kind == 'reduce':
                ok = False
        if ok:
            return buf
    return self.empty(v.aval.shape, v.aval.dtype)


def _block(self, header):
    """A context manager: emits `header` (ending in ':') and indents what is
    emitted inside (a `pass` when nothing is)."""
    gen = self

    class _Block:
        def __enter__(self):
            gen.emit(header)
            gen.indent += 1
            self.n = len(gen.lines)

        def __exit__(self, *exc):
            if exc[0] is None and len(gen.lines) == self.n:
                gen.emit('pass')
            gen.indent -= 1
            return False
    return _Block()


FunctionGen.inline_jaxpr = _inline_jaxpr
FunctionGen.lower_block = _lower_block
FunctionGen.block = _block
FunctionGen.hoisted = _hoisted
FunctionGen.store_target = _store_target


# --- rows regions: row-local work over a leading dimension in one loop ----------------------
# Softmax, logsumexp and their gradients alternate reductions over a row with
# elementwise work that reads them: per shape, each reduction read by the next step
# would close a loop nest, giving a nest per step. A *rows region* is a run of
# equations that only combine values row by row over the leading dimension n (same
# row of every operand, reductions over the other dimensions) generated as ONE loop
# `for r in range(n):` whose body is those equations with the leading dimension
# removed: the row reductions become scalars of the iteration and the steps inner
# loops. Reductions over the rows (a loss summed over the batch, a bias gradient)
# accumulate across the iterations. Values the region computes are stored, where
# stored at all, in arrays of their full shape allocated before the loop (row r).
#
# Scanning forward from an equation that starts one, the region takes every
# row-local equation not depending on an equation left out; scalar equations
# depending on nothing in it are lowered before it, the rest after it (so the
# program's order of dependencies holds). A region is formed only where it saves
# a loop: a row reduction read by a later equation of the region.

_REGION_WINDOW = 256


def _row_use(v, n, out_ndim):
    """How an operand of an equation over rows (n, ...) of rank out_ndim is read:
    'row' (its own row r), 'all' (the whole value, the same for every row), or None."""
    if type(v) is Literal or v.aval.shape == ():
        return 'all'
    shape = v.aval.shape
    if len(shape) < out_ndim:
        return 'all'                       # broadcast along the leading dimension
    if len(shape) == out_ndim:
        if shape[0] == n:
            return 'row'
        if shape[0] == 1:
            return None                    # (would read row 0 of it: not modelled)
    return None


def _row_class(eqn, n, inside):
    """'row' (row-local), 'cross' (a reduction over the rows) or None (not in a rows
    region over n). `inside`: values computed by the region so far (they may only
    be read row by row)."""
    rule = eqn.primitive.lowering
    if rule is None or eqn.primitive.effectful or \
            not all(dtype_supported(v.aval.dtype) for v in list(eqn.invars) + list(eqn.outvars)):
        return None
    kind = rule.kind
    if kind == 'elementwise':
        if getattr(rule, 'guarded', False):
            return None
        shape = eqn.outvars[0].aval.shape
        if len(shape) < 1 or shape[0] != n or \
                any(v.aval.shape != shape for v in eqn.outvars if not isinstance(v, DropVar)):
            return None
        for v in eqn.invars:
            use = _row_use(v, n, len(shape))
            if use is None or (use == 'all' and v in inside):
                return None
        return 'row'
    if kind == 'broadcast':
        shape = eqn.outvars[0].aval.shape
        if len(shape) < 1 or shape[0] != n:
            return None
        x = eqn.invars[0]
        dims = eqn.params['broadcast_dimensions']
        if type(x) is Literal or x.aval.shape == ():
            return None if x in inside else 'row'
        if 0 in dims:
            return 'row' if dims[0] == 0 and x.aval.shape[0] == n else None
        return None if x in inside else 'row'
    if kind == 'reduce':
        x = eqn.invars[0]
        axes = eqn.params['axes']
        if type(x) is Literal or len(x.aval.shape) < 1 or x.aval.shape[0] != n or not axes:
            return None
        if 0 in axes:
            return 'cross'
        # a reduction over trailing dimensions of the row (others would need an
        # array re-initialised per row)
        row = x.aval.shape[1:]
        loops = [d for d, m in enumerate(row) if m != 1]
        q = [k for k, d in enumerate(loops) if d + 1 in axes]
        return 'row' if q == list(range(len(loops) - len(q), len(loops))) else None
    if kind == 'reshape':
        x, out = eqn.invars[0], eqn.outvars[0]
        if type(x) is Literal or isinstance(out, DropVar) or not x.aval.shape or \
                not out.aval.shape or x.aval.shape[0] != n or out.aval.shape[0] != n or \
                _squeezed(x.aval.shape[1:]) != _squeezed(out.aval.shape[1:]):
            return None
        return 'row'
    return None


def _try_region(self, i):
    """Lower a rows region starting at equation i if there is one worth it:
    -> True when done (equations of the region and around it marked done)."""
    if i < self.region_from:
        return False
    eqns = self.eqns
    e0 = eqns[i]
    rule = e0.primitive.lowering
    if rule is None or rule.kind not in ('elementwise', 'broadcast', 'reduce'):
        return False
    ref = e0.invars[0] if rule.kind == 'reduce' else e0.outvars[0]
    if type(ref) is Literal or len(ref.aval.shape) < 2:
        return False
    n = ref.aval.shape[0]
    if n < 2 or _row_class(e0, n, set()) != 'row':
        return False
    region, pre, after = [], [], []
    inside, left_out, row_reds, crosses = set(), set(), set(), set()
    worth = False
    end = min(len(eqns), i + _REGION_WINDOW)
    for k in range(i, end):
        if k in self.done:
            continue
        eqn = eqns[k]
        ins = [v for v in eqn.invars if type(v) is not Literal]
        outs = [v for v in eqn.outvars if not isinstance(v, DropVar)]
        blocked = any(v in left_out or v in crosses for v in ins)
        cls = None if blocked else _row_class(eqn, n, inside)
        if cls is not None:
            region.append(k)
            if cls == 'cross':
                crosses.update(outs)
            else:
                inside.update(outs)
                if any(v in row_reds for v in ins):
                    worth = True
                if eqn.primitive.lowering.kind == 'reduce':
                    row_reds.update(outs)
            continue
        if eqn.primitive.effectful:
            end = k
            break
        depends = any(v in inside or v in left_out or v in crosses for v in ins)
        if not depends and all(v.aval.shape == () for v in outs) and \
                eqn.primitive.lowering is not None and \
                eqn.primitive.lowering.kind in ('elementwise', 'broadcast'):
            pre.append(k)                  # a scalar computation the region may read
            continue
        kind = eqn.primitive.lowering.kind if eqn.primitive.lowering is not None else None
        if kind not in ('elementwise', 'broadcast', 'reduce', 'reshape', 'iota'):
            end = k                        # structural: what follows mostly depends on it
            break
        after.append(k)
        left_out.update(outs)
    if not worth:
        self.region_from = max(end, i + 1)
        return False
    for k in pre + region + after:
        self.done.add(k)
    for k in pre:
        self.eqn_id = k
        self.lower_eqn(k, eqns[k])
    self.eqn_id = i
    self.emit_region(n, region)
    for k in after:
        self.eqn_id = k
        self.lower_eqn(k, eqns[k])
    self.region_from = end
    return True


def _emit_region(self, n, ks):
    """The equations at positions `ks` (row-local over n) as one loop over the rows."""
    eqns = [self.eqns[k] for k in ks]
    kset = set(ks)
    order = [v for e in eqns for v in e.outvars if not isinstance(v, DropVar)]
    defined = set(order)      # (iterations go through `order`: the text must not
    #                           depend on hash order, see compile_cache)
    # values read after the region (or results); a view read after needs its base
    needed_after = set()
    for v in order:
        if v in self.out_set or any(j not in kset for j in self.consumers.get(v, ())):
            needed_after.add(v)
    for e in reversed(eqns):
        if e.primitive.lowering.kind == 'reshape' and e.outvars[0] in needed_after and \
                e.invars[0] in defined:
            needed_after.add(e.invars[0])
    r = self.fresh('r')
    stripped = {}            # outer value -> its row (a Var of the row's shape)

    def row_var(v):
        s = stripped.get(v)
        if s is None:
            s = stripped[v] = Var(_ShapedArray(v.aval.shape[1:], v.aval.dtype))
        return s

    # operands computed before the region: available now
    row_inputs = {}
    for e in eqns:
        out_nd = len((e.invars[0] if e.primitive.lowering.kind == 'reduce' else e.outvars[0]).aval.shape)
        for v in e.invars:
            if type(v) is Literal or v in defined:
                continue
            self.ensure(v)
            if e.primitive.lowering.kind in ('reduce', 'reshape'):
                row_inputs[v] = True
            elif e.primitive.lowering.kind == 'broadcast':
                if 0 in e.params['broadcast_dimensions'] and v.aval.shape:
                    row_inputs[v] = True
            elif _row_use(v, n, out_nd) == 'row':
                row_inputs[v] = True
    # the stripped equations
    new_eqns = []
    for e in eqns:
        kind = e.primitive.lowering.kind
        out_nd = len((e.invars[0] if kind == 'reduce' else e.outvars[0]).aval.shape)
        ins = []
        for v in e.invars:
            if type(v) is Literal:
                ins.append(v)
            elif v in defined or (v in row_inputs and (
                    kind in ('reduce', 'reshape') or
                    (kind == 'broadcast' and 0 in e.params['broadcast_dimensions']) or
                    (kind == 'elementwise' and _row_use(v, n, out_nd) == 'row'))):
                ins.append(row_var(v))
            else:
                ins.append(v)
        params = dict(e.params)
        if kind == 'reduce':
            out = e.outvars[0]
            params['axes'] = tuple(sorted(a - 1 for a in e.params['axes'] if a != 0))
            if 0 in e.params['axes']:
                outs = [out]                               # accumulated across the rows
            else:
                outs = [row_var(out)]
        elif kind == 'broadcast':
            dims = e.params['broadcast_dimensions']
            params['shape'] = tuple(e.params['shape'][1:])
            params['broadcast_dimensions'] = tuple(d - 1 for d in dims if d != 0)
            outs = [row_var(v) if not isinstance(v, DropVar) else v for v in e.outvars]
        else:
            outs = [row_var(v) if not isinstance(v, DropVar) else v for v in e.outvars]
        new_eqns.append(e.replace(invars=ins, outvars=outs, params=params))
    # rows of values computed before: 0-d ones loaded at the top of the body,
    # others read in place (row r of the array)
    body_loads = []
    for v in row_inputs:
        s = row_var(v)
        if s.aval.shape == ():
            body_loads.append((s, v))
        else:
            self.names[s] = self.names[v]
            self.rowviews[s] = (v, [r])
            self.avail.add(s)
    # rows computed here: arrays of the full shape (allocated if stored)
    for v in order:
        if v in stripped:
            self.name(v)
            self.contig.add(v)             # allocated with empty() if stored
            if stripped[v].aval.shape != ():
                self.rowviews[stripped[v]] = (v, [r])
    # consumers of the stripped values
    base = getattr(self, '_next_eid', _EID_BASE)
    self._next_eid = base + len(new_eqns)
    for k, e in enumerate(new_eqns):
        for v in e.invars:
            if type(v) is not Literal:
                self.consumers.setdefault(v, set()).add(base + k)
    for v in needed_after:
        if v in stripped:
            self.out_set.add(stripped[v])
    # reductions over the rows: accumulators set before the loop
    pre_lines = []
    for e, ne in zip(eqns, new_eqns):
        if e.primitive.lowering.kind == 'reduce' and 0 in e.params['axes']:
            out = e.outvars[0]
            dt = out.aval.dtype
            ident = self.lit(_IDENT[e.primitive.lowering.op](dt), dt)
            name = self.name(out)
            if out.aval.shape == ():
                pre_lines.append(f'{name} = {ident}')
            else:
                pre_lines.append(f'{name} = {self.full(out.aval.shape, ident, dt)}')
            self.cross_row.add(out)
    # the body, generated apart (the arrays it stores into are allocated before it)
    saved_lines, saved_indent = self.lines, self.indent
    saved_open, saved_sched, saved_id = self.open, self.sched, self.eqn_id
    self.lines, self.indent, self.open = [], saved_indent + 1, {}
    self.sched = (new_eqns, base)
    try:
        for s, v in body_loads:
            self.emit(f'{self.name(s)} = {self.load(self.names[v], [r])}')
            self.avail.add(s)
        self.lower_block(new_eqns, base)
        # per-row scalars read after the region: row r of an array of shape (n,)
        for v in order:
            s = stripped.get(v)
            if s is None or v not in needed_after:
                continue
            if s.aval.shape == ():
                self.emit(self.store(self.names[v], [r], self.expr_of(s)))
            elif s in self.views and self.views[s].aval.shape == ():
                self.emit(self.store(self.names[v], [r] + ['0'] * len(s.aval.shape),
                                     self.names[self.views[s]]))
        body = self.lines
    finally:
        self.lines, self.indent = saved_lines, saved_indent
        self.open, self.sched, self.eqn_id = saved_open, saved_sched, saved_id
    # arrays for the values read after the region (and rows stored in the body)
    stored_names = set(re.findall(r'\bst\d\((v\d+),', '\n'.join(body)))
    for v in order:
        if v in stripped and self.names.get(v) in stored_names and v not in self.cross_row:
            self.emit(f'{self.names[v]} = {self.empty(v.aval.shape, v.aval.dtype)}')
            self.owned.add(v)
    for ln in pre_lines:
        self.emit(ln)
    self.emit(f'for {r} in range({n}):')
    self.lines.extend(body)
    # after the loop
    for v in order:
        if v in self.cross_row:
            self.avail.add(v)
            continue
        s = stripped.get(v)
        if s is None:
            continue
        if v in needed_after:
            vb = self.views.get(s)
            outer = None
            if vb is not None and s.aval.shape != () and vb.aval.shape != ():
                outer = next((w for w, t in stripped.items() if t is vb), None)
            if outer is not None:
                # a view of another row value: a view of that value's array
                self.views[v] = self.views.get(outer, outer)
            else:
                self.avail.add(v)


FunctionGen.try_region = _try_region
FunctionGen.emit_region = _emit_region
