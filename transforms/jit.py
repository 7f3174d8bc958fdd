"""jit: trace a function once per input signature and run the whole jaxpr as one call.

`jit(f)(*args)` flattens the arguments, looks their signature (pytree structure,
shapes, dtypes, weak types, static arguments) up in a per-function cache, traces
`f` on a miss, and binds the higher-order primitive `jit` with the traced jaxpr.
Evaluating that equation runs the compiled program (transforms/compiler.py).

Because `jit` is a primitive, the other transforms treat a jit call as one
equation with rules of its own, each producing a jit call again:
- jvp: a jit of the JVP of its jaxpr;
- partial evaluation (linearize): the known half runs as one jit call now, the
  unknown half is staged as another, joined by residuals;
- transpose: a jit of the transposed jaxpr.
So grad(jit(f)) runs compiled code both ways, and printed IR shows a `jit` equation
with its jaxpr nested inside.
"""
import inspect
from collections import OrderedDict

import numpy as np

from tracer import (Primitive, Zero, ClosedJaxpr, Jaxpr, JaxprTrace, JaxprTracer, Literal,
                    new_trace, tree_flatten, tree_unflatten, get_aval, tangent_aval,
                    is_undefined, ConcretizationTypeError, native)
from tracer.staging import dce_call_eqn, lift_traced_consts
from tracer.avals import numpy_scalar   # (a literal output: a NumPy scalar, as eager gives)
from tracer.core import ONES
from .jaxpr_transforms import (jvp_jaxpr, partial_eval_jaxpr, transpose_jaxpr,
                               instantiate_zeros, Memo)

jit_p = Primitive('jit', multiple_results=True)


from .compiler import get_executable as _get_executable   # the numba compiler
from primitives._jaxpr_util import unaliased


def _jit_impl(*args, jaxpr, name):
    outs = _get_executable(jaxpr)(*args)
    return unaliased(outs, args, jaxpr.consts)


def _jit_abstract_eval(*avals, jaxpr, name):
    want = jaxpr.in_avals
    if len(avals) != len(want) or any(a.shape != w.shape or a.dtype != w.dtype
                                      for a, w in zip(avals, want)):
        got = ', '.join(a.str_short() for a in avals)
        exp = ', '.join(a.str_short() for a in want)
        raise TypeError(f"jit ({name}): called with ({got}) but its jaxpr takes ({exp}).")
    return jaxpr.out_avals


def _jit_jvp(primals, tangents, *, jaxpr, name):
    nonzeros = [type(t) is not Zero for t in tangents]
    jvp_closed, out_nonzeros = jvp_jaxpr(jaxpr, nonzeros)
    outs = jit_p.bind(*primals, *[t for t in tangents if type(t) is not Zero],
                      jaxpr=jvp_closed, name=f"jvp({name})")
    n = len(jaxpr.out_avals)
    t_out = iter(outs[n:])
    return outs[:n], [next(t_out) if nz else Zero(tangent_aval(a))
                      for nz, a in zip(out_nonzeros, jaxpr.out_avals)]


def _jit_partial_eval(trace, args, params):
    jaxpr, name = params['jaxpr'], params['name']
    unknowns = [type(x) is JaxprTracer and x._trace is trace for x in args]
    known, unknown, out_unknowns, num_res = partial_eval_jaxpr(jaxpr, unknowns)
    known_args = [x for x, u in zip(args, unknowns) if not u]
    n_known = len(known.jaxpr.outvars) - num_res
    known, forwarded = _forward_inputs(known, n_known)
    known_outs = jit_p.bind(*known_args, jaxpr=known, name=name) if known.jaxpr.outvars else []
    computed = iter(known_outs[n_known:])
    # residuals that are inputs of the known part are passed on directly
    residuals = [known_args[i] if i is not None else next(computed) for i in forwarded]
    unknown_outs = trace.stage(jit_p, list(residuals) + [x for x, u in zip(args, unknowns) if u],
                               dict(jaxpr=unknown, name=name))
    k, u = iter(known_outs[:n_known]), iter(unknown_outs)
    return [next(u) if unk else next(k) for unk in out_unknowns]


_forward_memo = Memo()


def _forward_inputs(known, n_known):
    """Drop the residual outputs of `known` that merely return one of its inputs.
    -> (known', for each residual: the index of the input it is, or None)."""
    def build():
        jaxpr = known.jaxpr
        pos = {v: i for i, v in enumerate(jaxpr.invars)}
        res = jaxpr.outvars[n_known:]
        forwarded = [pos.get(v) if type(v) is not Literal else None for v in res]
        if all(i is None for i in forwarded):
            return known, forwarded
        outvars = jaxpr.outvars[:n_known] + [v for v, i in zip(res, forwarded) if i is None]
        return (ClosedJaxpr(Jaxpr(jaxpr.constvars, jaxpr.invars, outvars, jaxpr.eqns),
                            known.consts), forwarded)
    return _forward_memo.get(known, n_known, build)


def _jit_transpose(cts, *args, jaxpr, name):
    linear = [is_undefined(x) for x in args]
    ones = [c is ONES for c in cts]   # grad's seed: folded into the transposed jaxpr
    jt = transpose_jaxpr(jaxpr, linear, ones)
    nonlin = [x for x in args if not is_undefined(x)]
    cts = [instantiate_zeros(c) for c in cts if c is not ONES]
    outs = iter(jit_p.bind(*nonlin, *cts, jaxpr=jt, name=f"transpose({name})"))
    return [next(outs) if l else None for l in linear]


jit_p.impl = _jit_impl
jit_p.abstract_eval = _jit_abstract_eval
jit_p.jvp = _jit_jvp
jit_p.partial_eval = _jit_partial_eval
jit_p.transpose = _jit_transpose
jit_p.dce_rule = dce_call_eqn
jit_p.takes_ones = True


# --- tracing for jit ------------------------------------------------------------------

class JitTrace(JaxprTrace):
    """The staging trace of jit: a concretization error names the arguments the
    value depends on."""

    def __init__(self, name, arg_names):
        super().__init__(name)
        self.arg_names = arg_names   # one per flat input

    def concrete(self, tracer):
        try:
            super().concrete(tracer)
        except ConcretizationTypeError as e:
            which = self._depends_on(tracer._var)
            if which:
                detail = (f"It depends on {', '.join(which)}, which {self.name} traces "
                          f"abstractly (by shape and dtype only).")
                msg = str(e).replace("\nFix:", f" {detail}\nFix:", 1)
                raise ConcretizationTypeError(msg) from None
            raise

    def _depends_on(self, var):
        # backward sweep over the equations recorded so far (on the error path only)
        need = {var}
        for eqn in reversed(self.eqns):
            if any(v in need for v in eqn.outvars):
                need.update(v for v in eqn.invars if type(v) is not Literal)
        return [n for v, n in zip(self.invars, self.arg_names) if v in need]


def _arg_names(fun, args, static, leaves_per_arg):
    try:
        params = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        params = []
    names = []
    for i, n in enumerate(leaves_per_arg):
        base = params[i] if i < len(params) else f"args[{i}]"
        label = f"argument '{base}'" if i < len(params) else f"argument {i}"
        names.extend([label] * n)
    return names


_SCALARS = (float, int, bool, complex)


def _fast_key(args):
    """A hashable signature of positional NumPy arrays / scalars, or None."""
    key = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            if not a.dtype.isnative:
                return None     # converted on the general path (see _lookup)
            key.append((a.shape, a.dtype))
        elif t in _SCALARS or isinstance(a, np.generic):
            key.append(t)
        else:
            return None
    return tuple(key)


class Jitted:
    """A function compiled per input signature; calls bind the `jit` primitive."""

    def __init__(self, fun, static_argnums=(), cache_size=256):
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        self.fun = fun
        self.static_argnums = tuple(static_argnums)
        self.name = getattr(fun, '__name__', 'fun')
        self._cache = OrderedDict()
        self._fast = {}   # signature of plain positional arrays -> cache entry
        self._cache_size = cache_size
        self.__name__ = f"jit({self.name})"
        self.__doc__ = getattr(fun, '__doc__', None)
        self.__wrapped__ = fun

    def _split(self, args, kwargs):
        nargs = len(args)
        static = []
        for i in self.static_argnums:
            j = i % nargs if -nargs <= i < nargs else None
            if j is None:
                raise ValueError(f"jit({self.name}): static_argnums={self.static_argnums} "
                                 f"is out of range for a call with {nargs} positional "
                                 f"arguments")
            static.append(j)
        if static:
            static_vals = []
            for j in sorted(static):
                try:
                    hash(args[j])
                except TypeError:
                    raise TypeError(
                        f"jit({self.name}): static argument {j} has unhashable type "
                        f"{type(args[j]).__name__}; static arguments key the compilation "
                        f"cache, so they must be hashable (e.g. a tuple instead of a "
                        f"list, or pass arrays as non-static arguments).") from None
                static_vals.append((j, args[j]))
            dyn = [a for i, a in enumerate(args) if i not in static]
            return tuple(static_vals), dyn
        return (), list(args)

    def _trace(self, static_vals, dyn, kwargs, flat, in_tree, avals):
        static = dict(static_vals)
        nargs = len(dyn) + len(static)
        out_tree_box = []

        def flat_fun(*tracers):
            d, kw = tree_unflatten(in_tree, list(tracers))
            it = iter(d)
            full = [static[i] if i in static else next(it) for i in range(nargs)]
            out = self.fun(*full, **kw)
            leaves, tree = tree_flatten(out)
            out_tree_box.append(tree)
            return leaves

        per_arg = [len(tree_flatten(a)[0]) for a in dyn]
        names = _arg_names(self.fun, dyn, static, per_arg)
        names += ["a keyword argument"] * (len(avals) - len(names))
        trace = JitTrace(f"jit({self.name})", names)
        with new_trace(trace, dynamic=True):
            args = [trace.new_arg(a) for a in avals]
            outs = flat_fun(*args)
            jaxpr, consts = trace.to_jaxpr(outs)
        closed, lifted = lift_traced_consts(jaxpr, consts)
        return closed, out_tree_box[0], lifted

    def _lookup(self, args, kwargs):
        static_vals, dyn = self._split(args, kwargs)
        flat, in_tree = tree_flatten((dyn, kwargs))
        flat = [native(x) for x in flat]     # numba takes native byte order only
        avals = [get_aval(x) for x in flat]
        key = (static_vals, in_tree, tuple(avals))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit, flat
        closed, out_tree, lifted = self._trace(static_vals, dyn, kwargs, flat, in_tree, avals)
        entry = (closed, out_tree, lifted)
        if not lifted:   # a trace holding outer tracers is valid for this call only
            self._cache[key] = entry
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entry, flat

    def __call__(self, *args, **kwargs):
        key = None
        if not kwargs and not self.static_argnums:
            # fast path: positional arrays and scalars, keyed without flattening
            key = _fast_key(args)
            if key is not None:
                hit = self._fast.get(key)
                if hit is not None:
                    closed, out_tree, single = hit
                    outs = jit_p.bind(*args, jaxpr=closed, name=self.name)
                    if single:
                        return numpy_scalar(outs[0])
                    return tree_unflatten(out_tree, [numpy_scalar(o) for o in outs])
        (closed, out_tree, lifted), flat = self._lookup(args, kwargs)
        if not lifted and not kwargs and not self.static_argnums and key is not None:
            self._fast[key] = (closed, out_tree, out_tree.kind is None)
            if len(self._fast) > self._cache_size:
                self._fast.pop(next(iter(self._fast)))
        outs = jit_p.bind(*lifted, *flat, jaxpr=closed, name=self.name)
        return tree_unflatten(out_tree, [numpy_scalar(o) for o in outs])

    def lower(self, *args, **kwargs):
        """The compiled program for these arguments (transforms/compiler.py):
        `.as_text()` (and `str()`) is the generated numba source."""
        return _get_executable(self.trace(*args, **kwargs))

    def trace(self, *args, **kwargs):
        """The ClosedJaxpr this function runs for these arguments."""
        (closed, _, _), _ = self._lookup(args, kwargs)
        return closed

    def __repr__(self):
        return f"<jit-compiled {self.name}>"


def jit(fun=None, static_argnums=()):
    """Compile `fun` per input signature (shapes, dtypes, pytree structure and the
    values of `static_argnums`); the result gives the same values as `fun`."""
    if fun is None:
        return lambda f: Jitted(f, static_argnums)
    return Jitted(fun, static_argnums)


# --- batching rule ---

def _jit_batch(args, dims, *, jaxpr, name):
    """vmap of a jit call: one jit call of the batched jaxpr (batched once per
    jaxpr and batch signature, see transforms/vmap.py batch_jaxpr)."""
    from primitives._batching import axis_size
    from .vmap import batch_jaxpr
    batched, out_dims = batch_jaxpr(jaxpr, axis_size(args, dims), dims)
    return jit_p.bind(*args, jaxpr=batched, name=f"vmap({name})"), out_dims


jit_p.batch = _jit_batch


# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)

def _jit_basis(args, dims, *, jaxpr, name):
    """vmap of a jit call that receives a symbolic basis (jacrev(jit(f)),
    jacfwd(jit(f))): the jaxpr is batched with the basis as a template, so it stays
    symbolic inside the compiled call too (its scale, if any, is passed in)."""
    from primitives._basis import Basis
    from .vmap import batch_jaxpr, basis_call_args
    n = next(a.n for a in args if type(a) is Basis)
    in_dims = [a if type(a) is Basis else d for a, d in zip(args, dims)]
    batched, out_dims = batch_jaxpr(jaxpr, n, in_dims)
    return jit_p.bind(*basis_call_args(args), jaxpr=batched, name=f"vmap({name})"), out_dims


from primitives._basis import register as _register_basis_rule  # noqa: E402

_register_basis_rule(jit_p, _jit_basis)


# --- numba lowering ---
# A jit call inside a compiled program is its jaxpr, inlined (transforms/compiler.py).
from primitives._lowering import Call as _Call  # noqa: E402

jit_p.lowering = _Call('jaxpr')
