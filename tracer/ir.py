"""The IR: variables, literals, equations and jaxprs.

A jaxpr is a typed, first-order program in A-normal form: inputs, a list of
equations each applying one primitive, and outputs. Names are given only when
printed, so building one costs no string work.
"""
import numpy as np

from .avals import ShapedArray, concrete_aval


class Var:
    __slots__ = ('aval',)

    def __init__(self, aval):
        self.aval = aval

    def __repr__(self):
        return f"Var({self.aval.str_short()})"


class DropVar(Var):
    """An equation output that nothing reads (printed `_`)."""
    __slots__ = ()


class Literal:
    """A scalar constant written inline in an equation."""
    __slots__ = ('val', 'aval')

    def __init__(self, val, aval=None):
        self.val = val
        self.aval = concrete_aval(val) if aval is None else aval

    def __repr__(self):
        return f"Literal({self.val!r})"


class JaxprEqn:
    __slots__ = ('primitive', 'invars', 'outvars', 'params', 'source_info')

    def __init__(self, primitive, invars, outvars, params, source_info=None):
        self.primitive = primitive
        self.invars = invars
        self.outvars = outvars
        self.params = params
        self.source_info = source_info

    def replace(self, **kw):
        new = JaxprEqn(self.primitive, self.invars, self.outvars, self.params,
                       self.source_info)
        for k, v in kw.items():
            setattr(new, k, v)
        return new

    def __repr__(self):
        from .printer import pp_eqn
        return pp_eqn(self)


class Jaxpr:
    """constvars; invars -> eqns -> outvars."""
    __slots__ = ('constvars', 'invars', 'outvars', 'eqns', '_last_use')

    def __init__(self, constvars, invars, outvars, eqns):
        self.constvars = list(constvars)
        self.invars = list(invars)
        self.outvars = list(outvars)
        self.eqns = list(eqns)
        self._last_use = None

    @property
    def in_avals(self):
        return [v.aval for v in self.invars]

    @property
    def out_avals(self):
        return [v.aval for v in self.outvars]

    def __str__(self):
        from .printer import pp_jaxpr
        return pp_jaxpr(self)

    __repr__ = __str__


class ClosedJaxpr:
    """A jaxpr with values for its constvars."""
    __slots__ = ('jaxpr', 'consts')

    def __init__(self, jaxpr, consts):
        assert len(jaxpr.constvars) == len(consts)
        self.jaxpr = jaxpr
        self.consts = list(consts)

    @property
    def in_avals(self):
        return self.jaxpr.in_avals

    @property
    def out_avals(self):
        return self.jaxpr.out_avals

    @property
    def eqns(self):
        return self.jaxpr.eqns

    def __str__(self):
        from .printer import pp_jaxpr
        return pp_jaxpr(self.jaxpr)

    __repr__ = __str__


def is_literal_scalar(x):
    """Constants that print inline rather than becoming constvars."""
    t = type(x)
    if t in (bool, int, float, complex):
        return True
    return isinstance(x, np.generic) or (type(x) is np.ndarray and x.ndim == 0)


def literal(x):
    if type(x) is np.ndarray:
        x = x[()]
    return Literal(x)


__all__ = ['Var', 'DropVar', 'Literal', 'JaxprEqn', 'Jaxpr', 'ClosedJaxpr', 'ShapedArray']
