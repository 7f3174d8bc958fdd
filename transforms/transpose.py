"""Transposition: run a linear jaxpr backwards, from output cotangents to input
cotangents.

Equations that do not depend on a linear input are evaluated forward first (they
are constants of the linear map). Then the linear equations are visited in
reverse; each primitive's transpose rule maps its output cotangent to cotangents
of its linear operands. Cotangents reaching one variable from several uses are
summed by a single n-ary `add_any`, and zeros stay symbolic throughout.
"""
from tracer import Literal, Zero, UndefinedPrimal
from tracer.errors import with_user_line
from primitives.arith import add_any


def backward_pass(jaxpr, consts, cts_out):
    """Cotangents of jaxpr.invars (Zero where none flows) given cotangents of
    jaxpr.outvars (Zero allowed)."""
    linear = set(jaxpr.invars)
    env = dict(zip(jaxpr.constvars, consts))
    lin_eqns = []
    for eqn in jaxpr.eqns:
        if any(type(v) is not Literal and v in linear for v in eqn.invars):
            lin_eqns.append(eqn)
            linear.update(eqn.outvars)
        else:
            vals = eqn.primitive.bind(*[v.val if type(v) is Literal else env[v]
                                        for v in eqn.invars], **eqn.params)
            if eqn.primitive.multiple_results:
                env.update(zip(eqn.outvars, vals))
            else:
                env[eqn.outvars[0]] = vals

    cts = {}

    def write(v, ct):
        if ct is None or type(ct) is Zero or type(v) is Literal or v not in linear:
            return
        lst = cts.get(v)
        if lst is None:
            cts[v] = [ct]
        else:
            lst.append(ct)

    def read(v):
        lst = cts.pop(v, None)
        if lst is None:
            return Zero(v.aval)
        return lst[0] if len(lst) == 1 else add_any(*lst)

    for v, ct in zip(jaxpr.outvars, cts_out):
        write(v, ct)
    for eqn in reversed(lin_eqns):
        prim = eqn.primitive
        if prim.multiple_results:
            ct = [read(v) for v in eqn.outvars]
            if all(type(c) is Zero for c in ct):
                continue
        else:
            ct = read(eqn.outvars[0])
            if type(ct) is Zero:
                continue
        args = [UndefinedPrimal(v.aval) if type(v) is not Literal and v in linear
                else (v.val if type(v) is Literal else env[v]) for v in eqn.invars]
        rule = prim.transpose
        if rule is None:
            raise TypeError(with_user_line(
                f"cannot transpose '{prim.name}': the function is not linear in its inputs "
                f"({prim.name} is applied to a value that depends on them, and {prim.name} "
                f"is not linear)."))
        for v, c in zip(eqn.invars, rule(ct, *args, **eqn.params)):
            write(v, c)
    return [read(v) for v in jaxpr.invars]
