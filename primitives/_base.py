"""What every primitive module shares: shape/dtype rules for elementwise ops, and the
helpers that make a derivative rule one line (`defjvp`, `defjvp2`, `unbroadcast`).

Elementwise primitives accept NumPy broadcasting (a scalar literal or a row vector
needs no broadcast equation); their rules sum cotangents back to each operand's
shape with `unbroadcast`.
"""
import numpy as np

from tracer import Primitive, Zero, Tracer, ShapedArray, get_aval, tangent_aval
from tracer.avals import result_dtype, short_dtype


def shape_of(x):
    if type(x) is np.ndarray:   # the common case, before the tuple isinstance
        return x.shape
    return x.shape if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.shape(x)


def dtype_of(x):
    if type(x) is np.ndarray or isinstance(x, (Tracer, np.ndarray, np.generic)):
        return x.dtype
    return get_aval(x).dtype


def _fmt(avals):
    return ', '.join(a.str_short() + ('(weak)' if a.weak_type else '') for a in avals)


def broadcast_shapes(name, avals):
    shape = avals[0].shape
    for a in avals[1:]:
        s = a.shape
        if s == shape or not s:
            continue
        if not shape:
            shape = s
            continue
        b = _broadcast2(shape, s)
        if b is not None:
            shape = b
            continue
        try:
            shape = np.broadcast_shapes(shape, a.shape)
        except ValueError:
            raise ValueError(
                f"{name}: operand shapes {' and '.join(str(b.shape) for b in avals)} cannot be "
                f"broadcast together (operands {_fmt(avals)}). Fix: reshape or "
                f"expand_dims one operand so trailing dimensions match or are 1.") from None
    return shape


def _broadcast2(s1, s2):
    """NumPy's broadcast of two shapes (tuples of ints), or None where they do not
    broadcast. (np.broadcast_shapes costs microseconds: hot in shape rules.)"""
    n1, n2 = len(s1), len(s2)
    if n1 < n2:
        s1, s2, n1, n2 = s2, s1, n2, n1
    out = list(s1)
    k = n1 - n2
    for i, d in enumerate(s2):
        e = out[k + i]
        if d == e or d == 1:
            continue
        if e == 1:
            out[k + i] = d
            continue
        return None
    return tuple(out)


def same_dtypes(name, avals):
    d0 = avals[0].dtype
    for a in avals[1:]:
        if a.dtype != d0:
            raise TypeError(
                f"{name} requires operands of one dtype, got {_fmt(avals)}. Fix: convert "
                f"with .astype(...) (primitives.numpy promotes automatically; lax does not).")
    return d0


def elementwise_aval(name, avals, dtype=None, allowed=None):
    if len(avals) == 2 and dtype is None:
        a, b = avals
        if a.shape == b.shape and a.dtype is b.dtype and (allowed is None or a.dtype.kind in allowed):
            return a if a.weak_type <= b.weak_type else b   # weak only if both are
    if len(avals) == 1:
        a = avals[0]
        if allowed is not None and a.dtype.kind not in allowed:
            raise TypeError(f"{name} does not accept {a.str_short()} "
                            f"(dtype {a.dtype.name}); it needs a {_kinds(allowed)} operand.")
        if dtype is None:
            return a
        return ShapedArray(a.shape, dtype, a.weak_type and dtype == a.dtype)
    d = same_dtypes(name, avals)
    if allowed is not None and d.kind not in allowed:
        raise TypeError(f"{name} does not accept operands {_fmt(avals)}; it needs "
                        f"{_kinds(allowed)} operands.")
    shape = broadcast_shapes(name, avals)
    weak = True
    for a in avals:
        if not a.weak_type:
            weak = False
            break
    return ShapedArray(shape, d if dtype is None else dtype, weak and dtype is None)


def _kinds(kinds):
    names = {'f': 'floating', 'c': 'complex', 'i': 'signed integer',
             'u': 'unsigned integer', 'b': 'boolean'}
    return '/'.join(names[k] for k in kinds)


FLOAT = 'fc'
NUMERIC = 'fciu'
INTEGRAL = 'iub'
ANY = None


def unary(name, impl, allowed=FLOAT, out_dtype=None):
    """A one-operand elementwise primitive."""
    p = Primitive(name)
    p.impl = impl
    p.elementwise = True

    def abstract_eval(a, **_):
        if out_dtype is None and (allowed is None or a.dtype.kind in allowed):
            return a
        return elementwise_aval(name, [a], out_dtype, allowed)
    p.abstract_eval = abstract_eval
    return p


def binary(name, impl, allowed=NUMERIC, out_dtype=None):
    p = Primitive(name)
    p.impl = impl
    p.elementwise = True
    if out_dtype is None:
        def abstract_eval(a, b, **_):
            # the common cases inline: equal shapes and dtypes, or an array and a
            # weakly typed scalar of its dtype (a Python-number literal)
            if a.dtype is b.dtype and (allowed is None or a.dtype.kind in allowed):
                if a.shape == b.shape:
                    return a if a.weak_type <= b.weak_type else b
                if b.weak_type and not b.shape:
                    return a
                if a.weak_type and not a.shape:
                    return b
            return elementwise_aval(name, [a, b], None, allowed)
    else:
        def abstract_eval(a, b, **_):
            return elementwise_aval(name, [a, b], out_dtype, allowed)
    p.abstract_eval = abstract_eval
    return p


# --- derivative helpers ---------------------------------------------------------

def zero_like_out(out):
    return Zero.of(out)


def defjvp(prim, *rules):
    """One rule per operand: rule(g, *primals, **params) -> that operand's
    contribution to the output tangent. Zero tangents are skipped symbolically."""
    return _defjvp(prim, rules, with_ans=False)


def defjvp2(prim, *rules):
    """Like defjvp, with the output available: rule(g, ans, *primals, **params)."""
    return _defjvp(prim, rules, with_ans=True)


def _defjvp(prim, rules, with_ans):
    bind = prim.bind
    if len(rules) == 1:
        rule, = rules
        # one operand: the JVP trace only calls this with a nonzero tangent, and the
        # output has the operand's shape
        if with_ans:
            def jvp(primals, tangents, **params):
                out = bind(*primals, **params)
                return out, rule(tangents[0], out, *primals, **params)
        else:
            def jvp(primals, tangents, **params):
                return bind(*primals, **params), rule(tangents[0], *primals, **params)
        prim.jvp = jvp
        return jvp

    def jvp(primals, tangents, **params):
        out = bind(*primals, **params)
        t = None
        for rule, g in zip(rules, tangents):
            if type(g) is Zero or rule is None:
                continue
            c = rule(g, out, *primals, **params) if with_ans else rule(g, *primals, **params)
            t = c if t is None else add_tangents(t, c)
        if t is None:
            return out, zero_like_out(out)
        return out, broadcast_to_shape(t, shape_of(out))
    prim.jvp = jvp
    return jvp


def defjvp_zero(prim):
    """Outputs that carry no derivative (integer/boolean results, piecewise constants)."""
    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        if prim.multiple_results:
            return out, [zero_like_out(o) for o in out]
        return out, zero_like_out(out)
    prim.jvp = jvp
    return jvp


def deflinear(prim, transpose_rule):
    """A primitive linear in all its operands: its JVP is itself applied to the
    tangents (zeros instantiated only where some tangent is nonzero)."""
    bind = prim.bind

    def jvp(primals, tangents, **params):
        out = bind(*primals, **params)
        if len(tangents) == 1:      # one operand (reshape, reduce_sum, ...): the hot case
            t = tangents[0]
            if type(t) is not Zero:
                return out, bind(t, **params)
        if all(type(t) is Zero for t in tangents):
            return out, (zero_like_out(out) if not prim.multiple_results
                         else [zero_like_out(o) for o in out])
        ts = [instantiate_zero(t) for t in tangents]
        return out, prim.bind(*ts, **params)
    prim.jvp = jvp
    prim.transpose = transpose_rule
    return jvp


def instantiate_zero(t):
    if type(t) is Zero:
        return np.zeros(t.aval.shape, t.aval.dtype)
    return t


# Functions of modules that import this one, bound on first use (an import inside
# a hot function costs a microsecond per call).
_add_any = _broadcast_to = _reduce_sum = _reshape = None


def _bind_lazy():
    global _add_any, _broadcast_to, _reduce_sum, _reshape
    from .arith import add_any
    from .shape_ops import broadcast_to, reshape
    from .reductions import reduce_sum
    _add_any, _broadcast_to, _reduce_sum, _reshape = add_any, broadcast_to, reduce_sum, reshape


def add_tangents(a, b):
    if _add_any is None:
        _bind_lazy()
    return _add_any(a, b)


def broadcast_to_shape(x, shape):
    s = x.shape if type(x) is np.ndarray else shape_of(x)
    if s == shape:
        return x
    if _broadcast_to is None:
        _bind_lazy()
    return _broadcast_to(x, shape)


def unbroadcast(x, aval):
    """Sum `x` down to `aval`'s shape: the transpose of NumPy broadcasting."""
    shape = aval.shape
    if type(x) is np.ndarray:
        xs = x.shape
        if xs == shape:
            return x
    else:
        xs = shape_of(x)
        if xs == shape:
            return x
    if _reduce_sum is None:
        _bind_lazy()
    lead = len(xs) - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and xs[i + lead] != 1)
    if type(x) is np.ndarray:
        # an array (eager reverse mode: a bias's cotangent): what reduce_sum's and
        # reshape's implementations compute, without their binds
        y = np.add.reduce(x, axis=axes, dtype=x.dtype) if axes else x
        if y.shape != shape:
            y = np.reshape(y, shape)
        return y
    y = _reduce_sum(x, axes) if axes else x
    if shape_of(y) != shape:
        y = _reshape(y, shape)
    return y


__all__ = ['Primitive', 'Zero', 'ShapedArray', 'unary', 'binary', 'defjvp', 'defjvp2',
           'defjvp_zero', 'deflinear', 'unbroadcast', 'broadcast_to_shape', 'shape_of',
           'dtype_of', 'elementwise_aval', 'add_tangents', 'instantiate_zero', 'short_dtype']
