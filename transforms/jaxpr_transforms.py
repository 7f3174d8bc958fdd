"""Interpreters applied to whole jaxprs, for the rules of higher-order primitives.

A higher-order primitive (jit, cond, scan, ...) carries a sub-jaxpr; its rules
transform that jaxpr and bind the primitive again on the result:
- `jvp_jaxpr`: the JVP of a jaxpr, as a jaxpr of (primals, tangents).
- `partial_eval_jaxpr`: split a jaxpr whose inputs are partly known into the part
  computable now and the part that must wait, joined by residuals.
- `transpose_jaxpr`: the transpose of a jaxpr linear in some of its inputs.
Each traces an ordinary interpreter (JVPTrace, a staging trace, backward_pass) over
`eval_jaxpr` into a new jaxpr, so a nested higher-order equation is handled by its
own rule, recursively. Results are memoised per jaxpr object, so a jit or loop
called many times is transformed once.

They are registered in tracer.hooks so that primitives/ (control flow) can use them.
"""
import numpy as np

from tracer import (Zero, ClosedJaxpr, Jaxpr, JaxprTrace, JaxprTracer, new_trace,
                    eval_jaxpr, trace_to_jaxpr, tangent_aval, float0, Tracer)
from tracer.hooks import register_interpreter
from tracer.memo import Memo
from primitives.shape_ops import broadcast_to
from .jvp import JVPTrace, JVPTracer, unpack
from .transpose import backward_pass


def zeros_like_aval(aval):
    if aval.dtype == float0:
        return np.zeros(aval.shape, float0)
    return broadcast_to(np.zeros((), aval.dtype), aval.shape)


def instantiate_zeros(t):
    return zeros_like_aval(t.aval) if type(t) is Zero else t


def _per_output(flag, n):
    if isinstance(flag, (list, tuple)):
        return list(flag)
    return [bool(flag)] * n


# --- jvp ------------------------------------------------------------------------------

_jvp_memo = Memo()


def jvp_jaxpr(closed, nonzeros, instantiate=False):
    nonzeros = tuple(bool(nz) and tangent_aval(a).dtype != float0
                     for nz, a in zip(nonzeros, closed.in_avals))
    inst = tuple(_per_output(instantiate, len(closed.out_avals)))
    return _jvp_memo.get(closed, (nonzeros, inst),
                         lambda: _jvp_jaxpr(closed, nonzeros, inst))


def _jvp_jaxpr(closed, nonzeros, inst):
    in_avals = closed.in_avals
    n = len(in_avals)
    t_avals = [tangent_aval(a) for a, nz in zip(in_avals, nonzeros) if nz]
    out_nonzeros = []

    def fun(*args):
        tangents = iter(args[n:])
        ts = [next(tangents) if nz else Zero(tangent_aval(a))
              for a, nz in zip(in_avals, nonzeros)]
        trace = JVPTrace('jvp')
        with new_trace(trace):
            outs = eval_jaxpr(closed.jaxpr, closed.consts,
                              *[JVPTracer(trace, p, t) for p, t in zip(args[:n], ts)])
            pairs = [unpack(trace, o) for o in outs]
        out_t = []
        for (_, t), i in zip(pairs, inst):
            if type(t) is Zero and not i:
                out_nonzeros.append(False)
            else:
                out_nonzeros.append(True)
                out_t.append(instantiate_zeros(t))
        return [p for p, _ in pairs] + out_t

    jaxpr, consts = trace_to_jaxpr(fun, list(in_avals) + t_avals, name='jvp')
    return ClosedJaxpr(jaxpr, consts), out_nonzeros


# --- partial evaluation -------------------------------------------------------------

_pe_memo = Memo()


def partial_eval_jaxpr(closed, unknowns, instantiate=False):
    unknowns = tuple(bool(u) for u in unknowns)
    inst = tuple(_per_output(instantiate, len(closed.out_avals)))
    return _pe_memo.get(closed, (unknowns, inst),
                        lambda: _partial_eval_jaxpr(closed, unknowns, inst))


def _partial_eval_jaxpr(closed, unknowns, inst):
    in_avals = closed.in_avals
    known_avals = [a for a, u in zip(in_avals, unknowns) if not u]
    result = {}

    def known_fun(*known_args):
        # The known part runs on the dynamic (outer) staging trace; the unknown
        # part is recorded by a second staging trace above it, whose constants
        # that come from below are exactly the residuals.
        unknown_trace = JaxprTrace('partial_eval', cse=False)
        with new_trace(unknown_trace):
            it = iter(known_args)
            args = [unknown_trace.new_arg(a) if u else next(it)
                    for a, u in zip(in_avals, unknowns)]
            outs = eval_jaxpr(closed.jaxpr, closed.consts, *args)
            out_unknowns, known_outs, unknown_outs = [], [], []
            for o, i in zip(outs, inst):
                if type(o) is JaxprTracer and o._trace is unknown_trace:
                    out_unknowns.append(True)
                    unknown_outs.append(o)
                elif i:
                    out_unknowns.append(True)
                    unknown_outs.append(unknown_trace.pure(o))
                else:
                    out_unknowns.append(False)
                    known_outs.append(o)
            jaxpr, residuals = unknown_trace.to_jaxpr(unknown_outs)
        # residuals that are traced (computed by the known part) are passed; those
        # that are concrete constants stay constants of the unknown jaxpr
        res_vars, res_vals, const_vars, const_vals = [], [], [], []
        for v, r in zip(jaxpr.constvars, residuals):
            if isinstance(r, Tracer):
                res_vars.append(v)
                res_vals.append(r)
            else:
                const_vars.append(v)
                const_vals.append(r)
        unknown = Jaxpr(const_vars, res_vars + jaxpr.invars, jaxpr.outvars, jaxpr.eqns)
        result.update(unknown=ClosedJaxpr(unknown, const_vals), out_unknowns=out_unknowns,
                      num_res=len(res_vars))
        return known_outs + res_vals

    jaxpr, consts = trace_to_jaxpr(known_fun, known_avals, name='partial_eval')
    return (ClosedJaxpr(jaxpr, consts), result['unknown'], result['out_unknowns'],
            result['num_res'])


# --- transposition ------------------------------------------------------------------

_transpose_memo = Memo()


def transpose_jaxpr(closed, linear, ones=None):
    """`ones`: optionally, one flag per output whose cotangent is all ones; those
    are not inputs of the transposed jaxpr but constants folded into it."""
    linear = tuple(bool(l) for l in linear)
    ones = tuple(bool(o) for o in ones) if ones is not None else (False,) * len(closed.out_avals)
    return _transpose_memo.get(closed, (linear, ones),
                               lambda: _transpose_jaxpr(closed, linear, ones))


def _transpose_jaxpr(closed, linear, ones):
    jaxpr = closed.jaxpr
    lin_vars = [v for v, l in zip(jaxpr.invars, linear) if l]
    nonlin_vars = [v for v, l in zip(jaxpr.invars, linear) if not l]
    k = len(nonlin_vars)
    # the non-linear inputs become constants of the map being transposed
    as_linear = Jaxpr(list(jaxpr.constvars) + nonlin_vars, lin_vars, jaxpr.outvars,
                      jaxpr.eqns)
    in_avals = [v.aval for v in nonlin_vars] + [v.aval for v, o in zip(jaxpr.outvars, ones)
                                                if not o]

    def fun(*args):
        given = iter(args[k:])
        cts_out = [np.ones((), v.aval.dtype) if o else next(given)
                   for v, o in zip(jaxpr.outvars, ones)]
        cts = backward_pass(as_linear, list(closed.consts) + list(args[:k]), cts_out)
        return [instantiate_zeros(c) for c in cts]

    out, consts = trace_to_jaxpr(fun, in_avals, name='transpose')
    return ClosedJaxpr(out, consts)


register_interpreter('jvp_jaxpr', jvp_jaxpr)
register_interpreter('partial_eval_jaxpr', partial_eval_jaxpr)
register_interpreter('transpose_jaxpr', transpose_jaxpr)
