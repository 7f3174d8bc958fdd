"""Linearization: jvp with the tangent half staged into a linear jaxpr.

A JVP trace runs on top of a staging trace whose inputs are the tangents. A JVP rule
computes its primal part with values from below (evaluated at once: the known
half), and applies linear operations to the tangents, which the staging trace
records (the unknown half). That is jvp + partial evaluation in one pass; the
primal-side values the linear equations read become the linear jaxpr's constants:
the residuals that reverse mode keeps.
"""
import numpy as np

from tracer import (Tracer, Zero, get_aval, tangent_aval, new_trace, JaxprTrace,
                    float0)
from .jvp import JVPTrace, JVPTracer, unpack


class LinearFunction:
    """out_tangents = f(*in_tangents), as a linear jaxpr and its residuals."""
    __slots__ = ('jaxpr', 'residuals', 'out_avals', 'nonzero', 'in_avals')

    def __init__(self, jaxpr, residuals, in_avals, out_avals, nonzero):
        self.jaxpr = jaxpr          # invars: one per input; outvars: the nonzero outputs
        self.residuals = residuals
        self.in_avals = in_avals
        self.out_avals = out_avals
        self.nonzero = nonzero      # which outputs have a (possibly) nonzero tangent


def linearize_flat(fun, primals, name='linearize', dce=True):
    """fun: flat list -> flat list. Returns (out_primals, LinearFunction).
    dce=False keeps dead equations and residuals (for a caller that transposes the
    jaxpr at once: transposition never visits them, so removing them costs time)."""
    builder = JaxprTrace(name, cse=False)
    with new_trace(builder):
        in_avals = [tangent_aval(get_aval(p)) for p in primals]
        args = [builder.new_arg(a) for a in in_avals]
        tangents = [t if a.dtype != float0 else Zero(a) for t, a in zip(args, in_avals)]
        jvp_trace = JVPTrace(name)
        with new_trace(jvp_trace):
            outs = fun(*[JVPTracer(jvp_trace, p, t) for p, t in zip(primals, tangents)])
            pairs = [unpack(jvp_trace, o) for o in outs]
        out_primals = [p for p, _ in pairs]
        nonzero = [type(t) is not Zero for _, t in pairs]
        out_avals = [t.aval if type(t) is Zero else tangent_aval(get_aval(p)) for p, t in pairs]
        live = [t for _, t in pairs if type(t) is not Zero]
        jaxpr, residuals = builder.to_jaxpr(live, dce=dce)
    return out_primals, LinearFunction(jaxpr, residuals, in_avals, out_avals, nonzero)
