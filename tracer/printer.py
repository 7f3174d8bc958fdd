"""The jaxpr printer, in JAX's text form.

    { lambda consts ; args. let
        out:f64[3] = prim[param=value] in1 in2
      in (out,) }

Variables are named a..z, ba, bb, ... in order of appearance, unique across nested
jaxprs; a jaxpr that fits in 80 columns prints on one line. Linear in the number of
equations.
"""
import numpy as np

from .avals import short_dtype
from .ir import Jaxpr, ClosedJaxpr, Literal, DropVar

WIDTH = 80


def _encode(n):
    # a..z, ba..bz, ca..: base 26 with 'a' as the digit 0
    s = chr(ord('a') + n % 26)
    n //= 26
    while n:
        s = chr(ord('a') + n % 26) + s
        n //= 26
    return s


class _Names:
    def __init__(self):
        self.names = {}

    def __call__(self, v):
        name = self.names.get(v)
        if name is None:
            name = self.names[v] = _encode(len(self.names))
        return name


def _atom(v, names):
    if type(v) is Literal:
        val = v.val
        if isinstance(val, (np.bool_, bool)):
            s = str(bool(val))
        elif isinstance(val, (np.floating, float)):
            s = repr(float(val))
        elif isinstance(val, (np.integer, int)):
            s = str(int(val))
        else:
            s = str(val)
        return f"{s}:{v.aval.str_short()}"
    return names(v)


def _binder(v, names):
    if isinstance(v, DropVar):
        return f"_:{v.aval.str_short()}"
    return f"{names(v)}:{v.aval.str_short()}"


def _param(k, v, primitive, names, indent, multiline=False):
    custom = getattr(primitive, 'param_printers', None)
    if custom and k in custom:
        return custom[k](v)
    if isinstance(v, (Jaxpr, ClosedJaxpr)):
        return _pp(v.jaxpr if isinstance(v, ClosedJaxpr) else v, names, indent + 2, multiline)
    if isinstance(v, tuple) and v and all(isinstance(j, (Jaxpr, ClosedJaxpr)) for j in v):
        inner = [_pp(j.jaxpr if isinstance(j, ClosedJaxpr) else j, names, indent + 2)
                 for j in v]
        pad = ' ' * (indent + 2)
        return '(\n' + ''.join(f"{pad}{s}\n" for s in inner) + ' ' * indent + ')'
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, type) and issubclass(v, np.generic):
        return np.dtype(v).name
    if callable(v) and hasattr(v, '__name__'):
        return v.__name__
    return str(v)


def pp_eqn(eqn, names=None, indent=0, multiline=False):
    names = names or _Names()
    outs = ' '.join(_binder(v, names) for v in eqn.outvars)
    params = ''
    if eqn.params:
        params = '[' + ' '.join(
            f"{k}={_param(k, eqn.params[k], eqn.primitive, names, indent, multiline)}"
            for k in sorted(eqn.params)) + ']'
    ins = ' '.join(_atom(v, names) for v in eqn.invars)
    line = f"{outs} = {eqn.primitive.name}{params}{' ' if ins else ''}{ins}"
    if not multiline and indent + len(line.partition('\n')[0]) > WIDTH and any(
            isinstance(p, (Jaxpr, ClosedJaxpr)) for p in eqn.params.values()):
        # a nested jaxpr printed on one line made the equation's line too long
        return pp_eqn(eqn, names, indent, multiline=True)
    return line


def _pp(jaxpr, names, indent, multiline=False):
    consts = ' '.join(_binder(v, names) for v in jaxpr.constvars)
    args = ' '.join(_binder(v, names) for v in jaxpr.invars)
    head = f"{{ lambda {consts}; {args}. let" if consts else f"{{ lambda ; {args}. let"
    eqns = [pp_eqn(e, names, indent + 4) for e in jaxpr.eqns]
    outs = [_atom(v, names) for v in jaxpr.outvars]
    out = '(' + ', '.join(outs) + (',' if len(outs) == 1 else '') + ')'
    one_line = f"{head} {'; '.join(eqns)} in {out} }}"
    if not multiline and len(one_line) + indent <= WIDTH and '\n' not in one_line:
        return one_line
    pad = ' ' * (indent + 4)
    body = ''.join(f"{pad}{e}\n" for e in eqns)
    return f"{head}\n{body}{' ' * (indent + 2)}in {out} }}"


def pp_jaxpr(jaxpr):
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    return _pp(jaxpr, _Names(), 0)
