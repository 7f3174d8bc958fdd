"""Eager nested transforms by replay: jvp of grad without dual numbers.

Eager `jvp(grad(f), primals, tangents)` (a Hessian-vector product) would run f on
tracers of two transforms, every operation a dual number of linearization
tracers, then transpose on dual numbers: several microseconds of Python per
operation and level. Instead, at the top level:

1. f runs once on recording tracers (tracer/record.py). Python control flow still
   follows the values, side effects happen once per call as in eager mode, and
   the result is the straight-line program J this call ran.
2. The transform of J (here jvp of grad) is a jaxpr H that depends only on J's
   structure (`structure_key`) and its floating literals, not on its input or
   constant values: it is staged once and cached, J's constants being inputs.
   When a structure comes back with other literals (a Python float that changes
   from call to call, such as a time step), its transform taking the literals as
   inputs is staged once and used for every new literal value.
3. H runs as one generated Python function calling the implementations directly
   (interpreted on its first use, when compiling would cost more than it saves).

So one program gives the same numbers on every call. A function whose structure
keeps changing (a shape, or a value read with int() that sets a loop count) would
be staged on every call: after MAX_MISSES structures with no reuse, its code runs
eagerly instead.
"""
import weakref

import numpy as np

from tracer import tree_flatten, tree_unflatten, eval_jaxpr, trace_to_jaxpr, ClosedJaxpr
from tracer.record import record, structure_key, lift_literals
from tracer.avals import numpy_scalar
from primitives._jaxpr_util import python_fn, interpreted_fn, unaliased

ENABLED = True
# Programs up to this many equations are replayed (the generated function's
# compilation time grows with its length; longer programs run eagerly).
MAX_EQNS = 2000
CACHE_SIZE = 256
MAX_MISSES = 4

# (structure, literals) -> [runner, output tree, 0, H] of a transform H with the
# literals built in; structure -> [runner, output tree, number of literals, H] of
# one taking them as inputs (H None once compiled). The oldest entry is evicted first.
_cache = {}
_baked = {}     # structures with a transform for some literals
# code object (or callable) -> [structures staged, calls that reused one]; weak,
# so that a callable object and what it holds are not kept alive
_misses = weakref.WeakKeyDictionary()
_NEVER = [float('inf'), 0]   # the stats of code that is not recorded any more


def _never(code):
    if code is not None:
        _misses[code] = _NEVER


def _as_function(jaxpr, consts, out_tree, name):
    """The recorded program as a function of f's arguments."""
    def fun(*args):
        flat, _ = tree_flatten(args)
        return tree_unflatten(out_tree, eval_jaxpr(jaxpr, consts, *flat))
    fun.__name__ = name
    return fun


def _scalar_output(jaxpr, out_tree):
    if len(jaxpr.outvars) != 1 or out_tree.kind is not None:
        return False
    a = jaxpr.outvars[0].aval
    return a.shape == () and a.dtype.kind == 'f'


def jvp_of_transform(jvp, spec, flat_p, tree_p, flat_t, is_zero):
    """jvp(api(fun, argnums), primals, tangents) for spec = (api, fun, argnums) of a
    grad-like transform, by replay; None when the caller should run it eagerly
    (an input that is not a floating array, a function that keeps changing).
    `jvp` is the eager jvp; is_zero flags the symbolically zero tangents."""
    if not ENABLED:
        return None
    api, fun, argnums = spec
    for p in flat_p:
        if type(p) is not np.ndarray or p.dtype.kind != 'f':
            return None
    code = getattr(fun, '__code__', fun)
    try:
        stats = _misses.get(code)
    except TypeError:          # (a callable that cannot be weakly referenced)
        code, stats = None, None
    if stats is not None and stats[0] > MAX_MISSES and stats[1] < stats[0]:
        return None
    name = getattr(fun, '__name__', 'fun')
    jaxpr, consts, out_tree = record(fun, flat_p, tree_p, api.__name__)
    zeros = tuple(is_zero)
    nonzero_t = [t for t, z in zip(flat_t, zeros) if not z]
    entry = key = None
    if len(jaxpr.eqns) > MAX_EQNS:
        _never(code)
    elif _scalar_output(jaxpr, out_tree):
        skey, lits = structure_key(jaxpr)
        key = (api, argnums, tree_p, zeros, skey)
        # the transform with these literals built in (the literal 0.5 of
        # 0.5 * sum(x ** 2) folds into a coefficient)
        baked = (key, tuple([repr(v) for v in lits]))
        try:
            entry = _cache.get(baked)
        except TypeError:      # a param that cannot be compared (an array)
            _never(code)
            key = None
    if key is None:
        # not reusable: the transform of the recorded program, eagerly (this also
        # raises grad's errors for a function whose output is not a scalar)
        f = _as_function(jaxpr, consts, out_tree, name)
        return _jvp_of(jvp, api, argnums, f, tree_p, flat_p, nonzero_t, zeros)
    if stats is None:
        stats = [0, 0]
        if code is not None:
            _misses[code] = stats
    if entry is None and lits and key in _cache:
        # the structure came with other literals before (a step size or a time
        # that changes from call to call): the transform taking them as inputs
        entry = _cache[key]
    if entry is None:
        stats[0] += 1
        if lits and key in _baked:
            entry = _cache[key] = _stage(jvp, api, argnums, lift_literals(jaxpr), tree_p,
                                         out_tree, zeros, name, len(lits))
        else:
            entry = _cache[baked] = _stage(jvp, api, argnums, jaxpr, tree_p, out_tree,
                                           zeros, name, 0)
            _baked[key] = True
        while len(_cache) > CACHE_SIZE:
            del _cache[next(iter(_cache))]
        while len(_baked) > CACHE_SIZE:
            del _baked[next(iter(_baked))]
    else:
        stats[1] += 1
        if entry[3] is not None:
            # reused: now worth generating code for (see _stage)
            entry[0] = python_fn(entry[3], free=True)
            entry[3] = None
    runner, tree, n_lits, _ = entry
    args = [*consts, *lits] if n_lits else list(consts)
    args += flat_p
    args += nonzero_t
    # (outputs as eager jvp returns them: fresh arrays, never an argument, a
    # constant of f or of the transform, nor a view of one; NumPy scalars)
    outs = unaliased(runner(*args), args)
    return tree_unflatten(tree, [numpy_scalar(o) for o in outs])


def _jvp_of(jvp, api, argnums, f, tree_p, primals, tangents, zeros):
    """jvp(api(f, argnums)) at the flat primals; `tangents` are those not flagged
    in `zeros`, the others are concrete zeros (which jvp keeps symbolic)."""
    ts = iter(tangents)
    tans = [np.zeros(p.shape, p.dtype) if z else next(ts) for p, z in zip(primals, zeros)]
    return jvp(api(f, argnums), tree_unflatten(tree_p, list(primals)),
               tree_unflatten(tree_p, tans))


def _stage(jvp, api, argnums, jaxpr, tree_p, out_tree, zeros, name, n_lits):
    """[runner, output tree, n_lits, H] of H = jvp(api(J)) as a function of (J's
    constants, its n_lits lifted literals, the primals, the nonzero tangents).
    The runner interprets H's calls: compiling their generated code (python_fn)
    costs about ten times more, and is done when H is used again. Both make the
    same calls, so the first call's numbers are those of every later one."""
    nc = len(jaxpr.constvars)
    p_avals = [v.aval for v in jaxpr.invars]
    avals = [v.aval for v in jaxpr.constvars] + p_avals
    avals += [a for a, z in zip(p_avals, zeros) if not z]
    n = len(p_avals)
    store = []

    def h(*flat):
        f = _as_function(jaxpr, flat[:nc], out_tree, name)
        out = _jvp_of(jvp, api, argnums, f, tree_p, flat[nc:nc + n], flat[nc + n:], zeros)
        leaves, tree = tree_flatten(out)
        store.append(tree)
        return leaves

    h_jaxpr, h_consts = trace_to_jaxpr(h, avals, name=f'jvp({api.__name__})')
    # the transform's own constants are shared by every call: read-only, so that
    # an output which is one of them is copied before it reaches the user
    h_consts = [_read_only(c) for c in h_consts]
    closed = ClosedJaxpr(h_jaxpr, h_consts)
    return [interpreted_fn(closed), store[0], n_lits, closed]


def _read_only(c):
    if type(c) is np.ndarray and c.flags.writeable:
        c = c.copy()
        c.flags.writeable = False
    return c
