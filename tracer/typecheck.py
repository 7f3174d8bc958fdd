"""A type checker for jaxprs: every variable defined before use, once, and every
equation's output types what its primitive's shape rule says. Tests run it after
every transform."""
from .ir import Literal, Jaxpr, ClosedJaxpr, DropVar


class JaxprTypeError(TypeError):
    pass


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype


def check_jaxpr(jaxpr):
    if isinstance(jaxpr, ClosedJaxpr):
        if len(jaxpr.consts) != len(jaxpr.jaxpr.constvars):
            raise JaxprTypeError("ClosedJaxpr: number of consts does not match constvars")
        jaxpr = jaxpr.jaxpr
    defined = set()

    def define(v, where):
        if isinstance(v, DropVar):
            return
        if v in defined:
            raise JaxprTypeError(f"variable {v} defined twice ({where})")
        defined.add(v)

    for v in jaxpr.constvars:
        define(v, 'constvar')
    for v in jaxpr.invars:
        define(v, 'invar')
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if type(v) is not Literal and v not in defined:
                raise JaxprTypeError(f"equation {i} ({eqn.primitive.name}) reads an "
                                     f"undefined variable {v}")
        for p in eqn.params.values():
            for sub in (p if isinstance(p, tuple) else (p,)):
                if isinstance(sub, (Jaxpr, ClosedJaxpr)):
                    check_jaxpr(sub)
        avals = eqn.primitive.abstract_eval(*[v.aval for v in eqn.invars], **eqn.params)
        if not eqn.primitive.multiple_results:
            avals = [avals]
        if len(avals) != len(eqn.outvars):
            raise JaxprTypeError(f"equation {i} ({eqn.primitive.name}): {len(eqn.outvars)} "
                                 f"outputs, its rule gives {len(avals)}")
        for v, a in zip(eqn.outvars, avals):
            if not _same(v.aval, a):
                raise JaxprTypeError(
                    f"equation {i} ({eqn.primitive.name}): output typed "
                    f"{v.aval.str_short()} but the rule gives {a.str_short()}")
            define(v, f"equation {i}")
    for v in jaxpr.outvars:
        if type(v) is not Literal and v not in defined:
            raise JaxprTypeError(f"output {v} is undefined")
    return True
