"""The compiler behind `jit`: a jaxpr -> one numba function -> an executable.

    get_executable(closed_jaxpr) -> Executable;  Executable(*args) -> list of outputs

Steps (see docs/jit.md):
1. Nested `jit` equations are inlined (their constants become constants of the
   program), dead equations dropped, and matrix-vector products sharing a matrix
   paired into one product (transforms/matvec_pairs.py).
2. transforms/codegen.py writes the Python source of one numba function
   (`@njit(cache=True, error_model='numpy')`): fused loops, BLAS calls, views.
   An equation that cannot be compiled (a dtype numba does not handle, such as
   complex or float16, or a primitive without a lowering) splits the program:
   the compiled segments before and after it become separate functions and the
   equation runs eagerly in between (`primitive.bind`), with one warning naming
   the primitives and dtypes.
3. transforms/compile_cache.py finds or writes the module file and imports it;
   numba compiles on the first call, or loads the machine code cached on disk.

Outputs have the dtypes and shapes eager evaluation gives (0-d outputs are NumPy
scalars). If numba fails to compile a generated function (it should not), the
program falls back to eager evaluation with one warning: never a numba
traceback, never a different result.
"""
import gc
import warnings
from collections import OrderedDict

import numpy as np

from tracer import Literal, DropVar, Var, Jaxpr, ClosedJaxpr, eval_jaxpr
from primitives._lowering import NotLowerable, call_jaxpr
from . import codegen
from . import compile_cache
from .matvec_pairs import pair_matvecs

_HEADER = ("import math\nimport numpy as np\nfrom numba import njit\n")
# LeanPipeline (primitives/jitlib.py): numba's pipeline without the passes generated
# code never needs; no C-callable wrapper (generated functions are only called from
# Python). Both cut compile time (the first call of a program) by ~10%.
# `contract` lets a multiply and an add fuse into one FMA (one rounding instead of
# two; NaN/inf semantics unchanged), as in primitives/vecmath.py.
_OPTIONS = ("error_model='numpy', pipeline_class=LeanPipeline, no_cfunc_wrapper=True, "
            "fastmath={'contract'}")
_DECORATOR = f"@njit(cache=True, {_OPTIONS})"
_DECORATOR_MEM = f"@njit(cache=False, {_OPTIONS})"


class JitFallbackWarning(UserWarning):
    """Part of a jitted program runs eagerly instead of compiled."""


# --- inlining nested jit calls ---------------------------------------------------------------

def _has_nested(jaxpr):
    return any(call_jaxpr(e) is not None for e in jaxpr.eqns)


def flatten(closed):
    """(constvars, consts, invars, eqns, outvars) with nested jit calls inlined."""
    jaxpr = closed.jaxpr
    if not _has_nested(jaxpr):
        return (list(jaxpr.constvars), list(closed.consts), list(jaxpr.invars),
                list(jaxpr.eqns), list(jaxpr.outvars))
    constvars = list(jaxpr.constvars)
    consts = list(closed.consts)
    eqns = []

    def sub_atom(sub, v):
        if type(v) is Literal:
            return v
        return sub.get(v, v)

    def inline(jx, sub):
        for eqn in jx.eqns:
            ins = [sub_atom(sub, v) for v in eqn.invars]
            inner = call_jaxpr(eqn)      # jit, checkpoint, custom_jvp/vjp calls
            if inner is not None:
                isub = {}
                for cv, c in zip(inner.jaxpr.constvars, inner.consts):
                    nv = Var(cv.aval)
                    constvars.append(nv)
                    consts.append(c)
                    isub[cv] = nv
                for iv, a in zip(inner.jaxpr.invars, ins):
                    isub[iv] = a
                inline(inner.jaxpr, isub)
                for ov, iv in zip(eqn.outvars, inner.jaxpr.outvars):
                    if not isinstance(ov, DropVar):
                        sub[ov] = sub_atom(isub, iv)
                continue
            outs = []
            for ov in eqn.outvars:
                if isinstance(ov, DropVar):
                    outs.append(ov)
                else:
                    nv = Var(ov.aval)
                    sub[ov] = nv
                    outs.append(nv)
            eqns.append(eqn.replace(invars=ins, outvars=outs))

    top = {}
    inline(jaxpr, top)
    return constvars, consts, list(jaxpr.invars), eqns, [sub_atom(top, v) for v in jaxpr.outvars]


_dce = codegen.live_eqns   # equations the outputs need


# --- program: segments of compiled code and eager equations ----------------------------------

class Segment:
    __slots__ = ('fname', 'ins', 'outs', 'eqns', 'fn')

    def __init__(self, fname, ins, outs, eqns):
        self.fname, self.ins, self.outs, self.eqns = fname, ins, outs, eqns
        self.fn = None


def _plan(params, eqns, outvars, eager):
    """Split eqns into runs: Segment (compiled) or JaxprEqn (eager)."""
    steps = []
    run = []
    for i, eqn in enumerate(eqns):
        if i in eager:
            if run:
                steps.append(run)
                run = []
            steps.append(eqn)
        else:
            run.append(eqn)
    if run:
        steps.append(run)
    # which vars each run needs from before and must hand on
    later_needs = [set() for _ in steps]
    need = set(v for v in outvars if type(v) is not Literal)
    for k in reversed(range(len(steps))):
        later_needs[k] = set(need)
        s = steps[k]
        for eqn in (s if isinstance(s, list) else [s]):
            need.update(v for v in eqn.invars if type(v) is not Literal)
    out = []
    nseg = 0
    for k, s in enumerate(steps):
        if not isinstance(s, list):
            out.append(s)
            continue
        defined = set()
        ins = []
        seen = set()
        for eqn in s:
            for v in eqn.invars:
                if type(v) is not Literal and v not in defined and v not in seen:
                    seen.add(v)
                    ins.append(v)
            defined.update(v for v in eqn.outvars if not isinstance(v, DropVar))
        outs = [v for v in _ordered(s) if v in later_needs[k]]
        out.append(Segment(f'seg{nseg}', ins, outs, s))
        nseg += 1
    return out


def _ordered(eqns):
    for eqn in eqns:
        for v in eqn.outvars:
            if not isinstance(v, DropVar):
                yield v


def _describe(eqn):
    dts = sorted({v.aval.dtype.name for v in list(eqn.invars) + list(eqn.outvars)})
    return f"{eqn.primitive.name} ({'/'.join(dts)})"


def _generate(params, eqns, outvars, const_map=None):
    """-> (source, in-memory source, steps, eager descriptions)."""
    eager = set()
    while True:
        steps = _plan(params, eqns, outvars, eager)
        helpers = set()
        consts = codegen.ModuleConsts()
        funcs = []
        try:
            for s in steps:
                if isinstance(s, Segment):
                    # a single segment covering the program takes the program's
                    # parameters (in order) and returns its outputs
                    if len(steps) == 1:
                        s.ins = list(params)
                        s.outs = [v for v in outvars]
                    gen = codegen.FunctionGen(s.fname, s.ins, s.eqns,
                                              [v for v in s.outs], helpers, consts)
                    gen.const_map = const_map or {}
                    funcs.append(gen.generate())
                    s.ins = list(s.ins) + gen.extra_params   # constants of nested jaxprs
        except NotLowerable as e:
            seg_eqns = s.eqns
            bad = seg_eqns[e.eqn_index]
            eager.add(next(i for i, q in enumerate(eqns) if q is bad))
            continue
        break
    imports = ''
    from primitives import jitlib
    lib = sorted({'LeanPipeline'} | {h for h in helpers if hasattr(jitlib, h)})
    vm = sorted(h for h in helpers if not hasattr(jitlib, h))
    if vm:
        imports += f"from primitives.vecmath import {', '.join(vm)}\n"
    if lib:
        imports += f"from primitives.jitlib import {', '.join(lib)}\n"
    if consts.lines:
        imports += '\n' + '\n'.join(consts.lines) + '\n'
    body = '\n\n'.join('\n'.join(['', _DECORATOR] + f) for f in funcs)
    source = _HEADER + imports + body + '\n'
    mem_source = source.replace(_DECORATOR, _DECORATOR_MEM)
    notes = sorted({_describe(eqns[i]) for i in eager})
    return source, mem_source, steps, notes


# --- the executable ----------------------------------------------------------------------------

def _scalar_converter(dt):
    return dt.type


class Executable:
    """Runs a compiled program: `exe(*args)` -> list of outputs.

    `source` is the generated Python source; `path` its module file in the
    disk cache (None when kept in memory)."""

    def __init__(self, closed):
        self.closed = closed
        constvars, consts, invars, eqns, outvars = flatten(closed)
        eqns = pair_matvecs(_dce(eqns, outvars))
        # constants of jaxprs nested in loops and branches: parameters too
        hoisted, hoisted_consts, const_map = codegen.hoist_consts(eqns)
        constvars, consts = constvars + hoisted, consts + hoisted_consts
        self.n_args = len(invars)
        params = constvars + invars
        self._params = params
        self._outvars = outvars
        source, mem_source, steps, notes = _generate(params, eqns, outvars, const_map)
        self.source = source
        self.steps = steps
        self.eager_notes = notes
        if notes:
            warnings.warn(
                f"jit: {len(notes)} kind(s) of equation run eagerly, not compiled: "
                f"{', '.join(notes)} (numba handles bool, integer, float32 and float64 "
                f"arrays; these dtypes or primitives have no compiled lowering).",
                JitFallbackWarning, stacklevel=3)
        self.module, self.path = compile_cache.load(source, mem_source)
        for s in steps:
            if isinstance(s, Segment):
                s.fn = getattr(self.module, s.fname)
        self._consts = tuple(self._convert(v, c) for v, c in zip(constvars, consts))
        self._eager_all = False
        self._single = steps[0] if len(steps) == 1 and isinstance(steps[0], Segment) else None
        # argument conversions: 0-d inputs become NumPy scalars of their dtype
        self._conv = [(i, v.aval.dtype.type) for i, v in enumerate(invars)
                      if v.aval.shape == ()]
        self._out_plan = self._make_out_plan(outvars)
        self._first = True

    @staticmethod
    def _convert(v, x):
        if v.aval.shape == ():
            return v.aval.dtype.type(x)
        return np.asarray(x)

    def _make_out_plan(self, outvars):
        plan = []
        simple = True
        for v in outvars:
            if type(v) is Literal:
                plan.append(('lit', v.val))
                simple = False
            elif v.aval.shape == ():
                plan.append(('scalar', v.aval.dtype.type))
                simple = False
            else:
                plan.append(None)
        return None if simple else plan

    def __call__(self, *args):
        if self._eager_all:
            return self._eager(args)
        if self._conv:
            args = list(args)
            for i, t in self._conv:
                args[i] = t(args[i])
        seg = self._single
        if seg is not None:
            try:
                if self._first:
                    outs = self._first_call(seg.fn, self._consts + tuple(args))
                else:
                    outs = seg.fn(*self._consts, *args)
            except _NUMBA_ERRORS as e:
                return self._give_up(e, args)
            plan = self._out_plan
            if plan is None:
                return list(outs)
            return [o if p is None else (p[1] if p[0] == 'lit' else p[1](o))
                    for o, p in zip(outs, plan)]
        try:
            return self._run_steps(args)
        except _NUMBA_ERRORS as e:
            return self._give_up(e, args)

    def _first_call(self, fn, args):
        """The first call compiles (or loads numba's disk cache). A numba cache
        that fails to load (corrupted files) is deleted and the function compiled
        afresh; an error raised after compilation succeeded is the program's own
        (an index out of range) and propagates.

        The cyclic garbage collector is paused meanwhile: numba's compiler
        allocates a great many objects, and the collections they trigger
        (each a pass over every live object of the process) were ~8% of a
        first call."""
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            try:
                out = fn(*args)
            except _NUMBA_ERRORS:
                raise
            except Exception:
                if fn.signatures or self.path is None:
                    raise
                compile_cache.purge_numba_cache(self.path)
                out = fn(*args)
        finally:
            if gc_was_enabled:
                gc.enable()
        self._first = False
        return out

    def _run_steps(self, args):
        env = dict(zip(self._params, self._consts + tuple(args)))

        def read(v):
            return v.val if type(v) is Literal else env[v]
        for s in self.steps:
            if isinstance(s, Segment):
                vals = [read(v) for v in s.ins]
                vals = [v.aval.dtype.type(x) if v.aval.shape == () else x
                        for v, x in zip(s.ins, vals)]
                if self._first:
                    outs = self._first_call(s.fn, tuple(vals))
                else:
                    outs = s.fn(*vals)
                for v, o in zip(s.outs, outs):
                    env[v] = v.aval.dtype.type(o) if v.aval.shape == () else o
            else:
                invals = [read(v) for v in s.invars]
                out = s.primitive.bind(*invals, **s.params)
                if s.primitive.multiple_results:
                    for v, x in zip(s.outvars, out):
                        if not isinstance(v, DropVar):
                            env[v] = x
                else:
                    env[s.outvars[0]] = out
        self._first = False
        outs = []
        for v in self._outvars:
            x = read(v)
            if type(v) is not Literal and v.aval.shape == () and not isinstance(x, np.generic):
                x = v.aval.dtype.type(x)
            outs.append(x)
        return outs

    def _give_up(self, err, args):
        warnings.warn(f"jit: numba could not compile the generated code "
                      f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                      f"this program runs eagerly instead.", JitFallbackWarning, stacklevel=3)
        self._eager_all = True
        return self._eager(args)

    def _eager(self, args):
        c = self.closed
        return eval_jaxpr(c.jaxpr, c.consts, *args)

    def as_text(self):
        """The generated Python source (what numba compiles)."""
        return self.source

    __str__ = as_text

    def __repr__(self):
        return f"<compiled program: {len(self.steps)} step(s), {self.path or 'in memory'}>"


def _numba_errors():
    from numba.core.errors import NumbaError
    return (NumbaError,)


_NUMBA_ERRORS = _numba_errors()

# executables by the identity of their ClosedJaxpr (jit binds the same object on
# every call of one signature), bounded
_by_id = OrderedDict()
_BY_ID_ENTRIES = 1024


def get_executable(closed):
    """The compiled executable of `closed` (a tracer.ClosedJaxpr)."""
    hit = _by_id.get(id(closed))
    if hit is not None and hit[0] is closed:
        return hit[1]
    exe = Executable(closed)
    _by_id[id(closed)] = (closed, exe)
    if len(_by_id) > _BY_ID_ENTRIES:
        _by_id.popitem(last=False)
    return exe


def run(closed, *args):
    return get_executable(closed)(*args)
