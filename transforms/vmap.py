"""Vectorizing map: a batching trace carries (value, batch axis) pairs.

A `BatchTracer` stands for a whole batch of logical values: its `val` holds all of
them stacked along axis `bdim`. Each primitive applied to batched operands runs its
batching rule (`primitive.batch`, defined beside the primitive; see
primitives/_batching.py), which applies the primitive (or a few) once to the whole
batch. Operands that are not batched (closed-over arrays, in_axes=None arguments,
values computed only from those) are never boxed: they stay plain values of the
trace below, so they keep their shapes and cost nothing extra.

A batched value may also be a symbolic standard basis (`Basis`, from jacfwd and
jacrev; see primitives/_basis.py): a primitive meeting one runs its structured
rule when it has one that applies, else the basis is materialised first; results
leaving vmap are always materialised.

`vmap(f, in_axes, out_axes, axis_size)` follows JAX's semantics; `batch_jaxpr`
batches a closed jaxpr, for the rules of higher-order primitives.
"""
import inspect

import numpy as np

from tracer import (Trace, Tracer, new_trace, get_aval, ShapedArray, tree_flatten,
                    tree_unflatten, tree_structure, ClosedJaxpr, trace_to_jaxpr, native)
from tracer.errors import ConcretizationTypeError, with_user_line
from tracer.hooks import register_interpreter
import primitives._batching as _B
from primitives._basis import Basis, materialize as _materialize, rules as _basis_rules
from .ad import _own
from .jaxpr_transforms import Memo

_batch_memo = Memo()


_new = object.__new__


class BatchTracer(Tracer):
    __slots__ = ('val', 'bdim', '_aval')

    def __init__(self, trace, val, bdim):
        self._trace = trace
        self.val = val
        self.bdim = bdim
        self._aval = None

    @property
    def aval(self):
        a = self._aval
        if a is None:
            v, b = self.val, self.bdim
            if type(v) is np.ndarray and b is not None:
                s = v.shape
                a = _new(ShapedArray)     # the hot path: skip __init__'s conversions
                a.shape = s[:b] + s[b + 1:]
                a.dtype = v.dtype
                a.weak_type = False
            elif type(v) is Basis:
                a = v.aval
            else:
                a = get_aval(v)
                if b is not None:
                    s = a.shape
                    a = ShapedArray(s[:b] + s[b + 1:], a.dtype, a.weak_type)
            self._aval = a
        return a

    @property
    def dtype(self):
        a = self._aval
        return a.dtype if a is not None else self.aval.dtype


class BatchTrace(Trace):
    def __init__(self, axis_size, name='vmap'):
        self.axis_size = axis_size
        self.name = name

    def pure(self, val):
        return BatchTracer(self, val, None)

    lift = pure

    def process_primitive(self, primitive, args, params):
        vals = []
        dims = []
        batched = False
        structured = False
        for x in args:
            if type(x) is BatchTracer and x._trace is self:
                v = x.val
                vals.append(v)
                d = x.bdim
                dims.append(d)
                if d is not None:
                    batched = True
                    if type(v) is Basis:
                        structured = True
            else:
                vals.append(x)
                dims.append(None)
        if not batched:
            # nothing here is batched: the result is a value of the trace below
            return primitive.bind(*vals, **params)
        if structured:
            # a symbolic basis (jacfwd/jacrev): the primitive's structured rule, if
            # it has a cheaper result; else the basis is materialised
            srule = _basis_rules.get(primitive)
            if srule is not None:
                res = srule(vals, dims, **params)
                if res is not None:
                    out, out_dim = res
                    if primitive.multiple_results:
                        return [o if d is None else BatchTracer(self, o, d)
                                for o, d in zip(out, out_dim)]
                    return out if out_dim is None else BatchTracer(self, out, out_dim)
            vals = [_materialize(v) if type(v) is Basis else v for v in vals]
        rule = primitive.batch
        if rule is None:
            raise TypeError(with_user_line(
                f"vmap: primitive '{primitive.name}' has no batching rule, so it cannot "
                f"be applied to batched operands."))
        out, out_dim = rule(vals, dims, **params)
        if primitive.multiple_results:
            return [o if d is None else BatchTracer(self, o, d) for o, d in zip(out, out_dim)]
        if out_dim is None:
            return out
        return BatchTracer(self, out, out_dim)

    def concrete(self, tracer):
        raise ConcretizationTypeError(with_user_line(
            f"A value {tracer.aval.str_short()} batched by vmap (axis size "
            f"{self.axis_size}) has no single concrete value: it holds one value per "
            f"batch element, so Python cannot branch on it or convert it to a number.\n"
            f"Fix: express the choice elementwise with pnp.where (or lax.select_n / "
            f"lax.cond) instead of Python control flow, or pass the argument unbatched "
            f"(in_axes=None) if it does not vary over the batch."))


# --- in_axes / out_axes: tree prefixes -------------------------------------------------------
#
# Paths name argument leaves in error messages: a tuple whose first entry is the
# positional index (or the keyword's name) and whose others are keys like "['w']" or
# "[0]"; they are turned into text (with the function's parameter names) only when an
# error is raised.

_SCALARS = (int, float, complex, bool)


def _is_leaf(x):
    return (type(x) is np.ndarray or isinstance(x, (Tracer, np.generic)) or type(x) in _SCALARS
            or type(x) is Basis)


def _children(x):
    """(kind, aux, children, keys) of a pytree node, or None for a leaf. Keys are
    path entries: an int (a position) or the text of a key."""
    t = type(x)
    if t is tuple or t is list:
        return t, None, x, range(len(x))
    if x is None:
        return t, None, (), ()
    if _is_leaf(x):
        return None
    leaves, td = tree_flatten(x, is_leaf=lambda y: y is not x)
    if td.kind is None:
        return None
    if td.kind is dict:
        keys = [f"[{k!r}]" for k in td.aux]
    elif hasattr(td.kind, '_fields') and len(td.kind._fields) == len(leaves):
        keys = [f".{f}" for f in td.kind._fields]
    else:
        keys = range(len(leaves))
    return td.kind, td.aux, leaves, keys


def _is_axis_spec(spec):
    return spec is None or (isinstance(spec, (int, np.integer)) and not isinstance(spec, bool))


def _fmt_path(fun, path):
    head = path[0]
    rest = ''.join(f"[{k}]" if isinstance(k, int) else k for k in path[1:])
    if isinstance(head, str):
        return head + rest
    return _arg_names(fun, head + 1)[head] + rest


def _match_prefix(spec, value, path, out, what, fun):
    """Append (leaf, axis, path) for every leaf of `value`, `spec` being a tree prefix
    of it whose leaves are axes (int) or None."""
    if _is_axis_spec(spec):
        _spread(None if spec is None else int(spec), value, path, out)
        return
    node_s = _children(spec)
    node_v = _children(value)
    if node_s is None or node_v is None or node_s[0] is not node_v[0] \
            or node_s[1] != node_v[1] or len(node_s[2]) != len(node_v[2]):
        raise ValueError(
            f"vmap {what} specification must be a tree prefix of the corresponding value: "
            f"for {_fmt_path(fun, path)} the specification is {spec!r} (structure "
            f"{tree_structure(spec, is_leaf=_is_axis_spec)}) but the value has structure "
            f"{tree_structure(value)}. Fix: give one axis (int or None) per leaf, or one "
            f"for the whole subtree.")
    for s, v, k in zip(node_s[2], node_v[2], node_v[3]):
        _match_prefix(s, v, path + (k,), out, what, fun)


def _spread(axis, value, path, out):
    node = _children(value)
    if node is None:
        out.append((value, axis, path))
        return
    for v, k in zip(node[2], node[3]):
        _spread(axis, v, path + (k,), out)


def _arg_names(fun, nargs):
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(nargs):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                    params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        else:
            names.append(f"args[{i}]")
    return names


def _shape_str(x):
    try:
        return get_aval(x).str_short()
    except TypeError:
        return type(x).__name__


def _flat_in_axes(fun, in_axes, args, kwargs):
    """[(leaf, axis or None, path)] over the positional then keyword arguments."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)   # as JAX does
    if _is_axis_spec(in_axes):
        specs = (in_axes,) * len(args)
    elif isinstance(in_axes, tuple):
        if len(in_axes) != len(args):
            raise ValueError(
                f"vmap in_axes must be an int, None, or a tuple of entries corresponding "
                f"to the positional arguments passed to the function, but got "
                f"len(in_axes)={len(in_axes)} for {len(args)} positional arguments.")
        specs = in_axes
    else:
        raise TypeError(f"vmap in_axes must be an int, None, or a tuple (a pytree prefix "
                        f"of the positional arguments), got {type(in_axes).__name__}: "
                        f"{in_axes!r}")
    out = []
    for i, (s, a) in enumerate(zip(specs, args)):
        if _is_leaf(a) and _is_axis_spec(s):
            out.append((a, None if s is None else int(s), (i,)))
        else:
            _match_prefix(s, a, (i,), out, 'in_axes', fun)
    for k in sorted(kwargs):    # keyword arguments are mapped over axis 0, as in JAX
        _match_prefix(0, kwargs[k], (k,), out, 'in_axes', fun)
    return out


def _normalize_in(fun, triples, axis_size):
    """-> (leaves, axes (normalized, or None), size)."""
    leaves, axes = [], []
    sizes = []
    for x, a, path in triples:
        if a is None:
            leaves.append(_materialize(x) if type(x) is Basis else x)
            axes.append(None)
            continue
        leaves.append(x)
        if type(x) is Basis:
            # a symbolic basis (jacfwd / jacrev) is batched along its leading axis
            shape = x.batched_shape
        else:
            shape = x.shape if type(x) is np.ndarray or isinstance(x, Tracer) else np.shape(x)
        nd = len(shape)
        if not -nd <= a < nd:
            raise ValueError(
                f"vmap was requested to map argument {_fmt_path(fun, path)} "
                f"({_shape_str(x)}) along axis {a}, which implies that its rank should be "
                f"at least {a + 1 if a >= 0 else -a}, but it is only {nd} (its shape is "
                f"{tuple(shape)}). Fix: choose an in_axes entry within its rank, or None "
                f"to leave it unbatched.")
        if a < 0:
            a += nd
        if type(x) is Basis and a != 0:
            leaves[-1] = _B.moveaxis(_materialize(x), 0, a)
        axes.append(a)
        sizes.append((path, a, shape[a], x))
    if axis_size is not None:
        axis_size = int(axis_size)
    if sizes:
        size = sizes[0][2] if axis_size is None else axis_size
        if any(s != size for _, _, s, _ in sizes):
            lines = [f"  * argument {_fmt_path(fun, p)} ({_shape_str(x)}) has size {s} "
                     f"along axis {a}" for p, a, s, x in sizes]
            if axis_size is not None:
                lines.append(f"  * axis_size={axis_size} was given")
            raise ValueError("vmap got inconsistent sizes for the mapped axis:\n"
                             + '\n'.join(lines)
                             + "\nFix: map arguments of one batch size (check in_axes).")
    elif axis_size is None:
        raise ValueError("vmap must have at least one non-None value in in_axes (no "
                         "argument is batched), or be given axis_size=... to fix the "
                         "batch size.")
    else:
        size = axis_size
    return leaves, axes, size


def _move_out(trace, x, axis, size, path, fun=None):
    """A result leaf with its batch axis at `axis` (None: must be unbatched)."""
    if type(x) is BatchTracer and x._trace is trace:
        val, d = x.val, x.bdim
        if type(val) is Basis:
            val = _materialize(val)
        if d is None:
            return _move_out(trace, val, axis, size, path, fun)
        if axis is None:
            raise ValueError(
                f"vmap has mapped output but out_axes is None: "
                f"{_fmt_path(fun, path)} ({x.aval.str_short()}) varies along the batch "
                f"(axis size {size}). Fix: give it an out_axes entry (an int), or make it "
                f"independent of the batched inputs.")
        nd = len(x.aval.shape) + 1
        if not -nd <= axis < nd:
            raise ValueError(f"vmap out_axes entry {axis} for {_fmt_path(fun, path)}"
                             f" ({x.aval.str_short()}) is out of range: the batched output "
                             f"has rank {nd}.")
        return _B.moveaxis(val, d, axis % nd)
    if axis is None:
        return x
    nd = len(x.shape if type(x) is np.ndarray or isinstance(x, Tracer) else np.shape(x)) + 1
    if not -nd <= axis < nd:
        raise ValueError(f"vmap out_axes entry {axis} for {_fmt_path(fun, path)} "
                         f"({_shape_str(x)}) is out of range: the batched output has "
                         f"rank {nd}.")
    # an output that does not depend on the batched inputs is broadcast along the batch
    return _B.broadcast_batch(x, size, axis % nd)


def vmap(fun, in_axes=0, out_axes=0, axis_size=None):
    """Vectorize `fun` over a batch axis of its arguments.

    in_axes: an int, None or a tuple (a pytree prefix of the positional arguments) of
    ints / None: the axis of each argument leaf that is mapped (negative counts from
    the end), None for arguments shared by every batch element. Keyword arguments
    are mapped over axis 0. out_axes: likewise for the outputs; outputs that do not
    depend on the batch are broadcast (out_axes None keeps them as they are).
    axis_size: the batch size, required when no argument is mapped."""
    if not callable(fun):
        raise TypeError(f"vmap: expected a callable, got {type(fun).__name__}")
    if isinstance(out_axes, list):
        out_axes = tuple(out_axes)

    def batched(*args, **kwargs):
        triples = _flat_in_axes(fun, in_axes, args, kwargs)
        leaves, axes, size = _normalize_in(fun, triples, axis_size)
        leaves = [native(x) for x in leaves]
        trace = BatchTrace(size)
        with new_trace(trace):
            boxed = [x if a is None else BatchTracer(trace, x, a)
                     for x, a in zip(leaves, axes)]
            if not kwargs and all(len(t[2]) == 1 for t in triples) \
                    and len(boxed) == len(args):
                out = fun(*boxed)       # every argument is a leaf
            else:
                _, in_tree = tree_flatten((args, kwargs))
                a, kw = tree_unflatten(in_tree, boxed)
                out = fun(*a, **kw)
            if _is_leaf(out) and _is_axis_spec(out_axes):
                return _own(_move_out(trace, out, out_axes, size, ('output',), fun))
            out_triples = []
            _match_prefix(out_axes, out, ('output',), out_triples, 'out_axes', fun)
            flat = [_own(_move_out(trace, x, ax, size, p, fun)) for x, ax, p in out_triples]
        return tree_unflatten(tree_structure(out), flat)

    batched.__name__ = f"vmap({getattr(fun, '__name__', 'fun')})"
    batched.__wrapped__ = fun
    return batched


# --- batching a jaxpr (for higher-order primitives) ---------------------------------------

def batch_jaxpr(closed, axis_size, in_dims, out_dims=None):
    """-> (closed_batched, out_dims): a closed jaxpr computing `closed` on a batch.
    Its inputs are batched at in_dims (None: unbatched); outputs come batched at the
    returned out_dims (None: unbatched), or at the given out_dims when these are
    given (None there asks for an unbatched output; a batched one is an error).
    Memoised per jaxpr object, so a jit called in a loop is batched once.

    An in_dims entry may be a `Basis` (jacfwd's / jacrev's symbolic basis, see
    primitives/_basis.py), a template: that input is the basis inside, kept
    symbolic through the jaxpr. The batched jaxpr then takes, in its place, the
    basis' scale d (of the input's shape) when the template has one, and nothing
    when it has none (`basis_call_args` gives the arguments)."""
    in_dims = tuple(in_dims)
    key = (int(axis_size), tuple(d.spec() if type(d) is Basis else d for d in in_dims),
           None if out_dims is None else tuple(out_dims))
    return _batch_memo.get(closed, key, lambda: _batch_jaxpr(closed, int(axis_size),
                                                             in_dims, out_dims))


def _batch_jaxpr(closed, axis_size, in_dims, out_dims):
    from tracer import eval_jaxpr
    jaxpr, consts = closed.jaxpr, closed.consts
    in_avals = []
    for v, d in zip(jaxpr.invars, in_dims):
        a = v.aval
        if type(d) is Basis:
            if d.d is not None:
                in_avals.append(ShapedArray(d.shape, d.dtype))
            continue
        if d is not None:
            shape = list(a.shape)
            shape.insert(d, axis_size)
            a = ShapedArray(tuple(shape), a.dtype, a.weak_type)
        in_avals.append(a)
    found = []

    def fun(*args):
        trace = BatchTrace(axis_size)
        with new_trace(trace):
            it = iter(args)
            boxed = []
            for d in in_dims:
                if type(d) is Basis:
                    b = d.like(None if d.d is None else next(it))
                    boxed.append(BatchTracer(trace, b, 0))
                else:
                    x = next(it)
                    boxed.append(x if d is None else BatchTracer(trace, x, d))
            outs = eval_jaxpr(jaxpr, consts, *boxed)
            res = []
            for i, o in enumerate(outs):
                if type(o) is BatchTracer and o._trace is trace and o.bdim is None:
                    o = o.val
                batched = type(o) is BatchTracer and o._trace is trace
                if out_dims is None:
                    found.append(o.bdim if batched else None)
                    if batched:
                        o = _materialize(o.val) if type(o.val) is Basis else o.val
                    res.append(o)
                else:
                    res.append(_move_out(trace, o, out_dims[i], axis_size,
                                         ('output', i)))
            return res

    new_jaxpr, new_consts = trace_to_jaxpr(fun, in_avals, name='vmap')
    dims = list(out_dims) if out_dims is not None else found
    return ClosedJaxpr(new_jaxpr, new_consts), [None if d is None else d % (
        len(a.shape) + 1) for d, a in zip(dims, closed.out_avals)]


def basis_call_args(args):
    """The arguments of a jaxpr batched by batch_jaxpr with `args`' bases as
    templates: each basis' scale d, or nothing for a basis without one."""
    return [a.d if type(a) is Basis else a for a in args
            if type(a) is not Basis or a.d is not None]


register_interpreter('batch_jaxpr', batch_jaxpr)

__all__ = ['vmap', 'BatchTrace', 'BatchTracer', 'batch_jaxpr', 'basis_call_args']
