"""Evaluating a jaxpr: bind each equation's primitive in order.

Binding (rather than calling implementations) makes evaluation work under any
enclosing transform. Each value is dropped right after its last use, so peak
memory is that of the live values, not of the whole program.
"""
from .ir import Literal


def last_uses(jaxpr):
    """For each equation index, the vars whose last read is that equation (cached)."""
    if jaxpr._last_use is not None:
        return jaxpr._last_use
    last = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if type(v) is not Literal:
                last[v] = i
    outs = set(v for v in jaxpr.outvars if type(v) is not Literal)
    dead = [[] for _ in jaxpr.eqns]
    for v, i in last.items():
        if v not in outs:
            dead[i].append(v)
    jaxpr._last_use = dead
    return dead


def eval_jaxpr(jaxpr, consts, *args):
    """Evaluate `jaxpr` on `consts` and `args`; returns the list of outputs."""
    if len(args) != len(jaxpr.invars):
        raise TypeError(f"eval_jaxpr: the jaxpr takes {len(jaxpr.invars)} arguments, "
                        f"got {len(args)}")
    if len(consts) != len(jaxpr.constvars):
        raise TypeError(f"eval_jaxpr: the jaxpr takes {len(jaxpr.constvars)} constants, "
                        f"got {len(consts)}")
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    dead = last_uses(jaxpr)
    for eqn, dead_here in zip(jaxpr.eqns, dead):
        invals = [v.val if type(v) is Literal else env[v] for v in eqn.invars]
        out = eqn.primitive.bind(*invals, **eqn.params)
        if eqn.primitive.multiple_results:
            for v, x in zip(eqn.outvars, out):
                env[v] = x
        else:
            env[eqn.outvars[0]] = out
        for v in dead_here:
            del env[v]
    return [v.val if type(v) is Literal else env[v] for v in jaxpr.outvars]
