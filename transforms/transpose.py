"""Transposition: run a linear jaxpr backwards, from output cotangents to input
cotangents.

Equations that do not depend on a linear input are evaluated forward first (they
are constants of the linear map). Then the linear equations are visited in
reverse; each primitive's transpose rule maps its output cotangent to cotangents
of its linear operands.

Two things keep the transposed program small:
- Cotangents reaching one variable from several uses are summed by one n-ary
  `add_any`, and zeros stay symbolic throughout.
- Constant factors are folded, not emitted: a cotangent is held as (value, scale)
  with `scale` a Python number. `neg`, `sub` and multiplication by a literal only
  change the scale (their `scale_transpose`); every other rule, being linear, runs
  on the unscaled value and passes the scale on. Scales meet in `add_any`'s
  `coeffs`, and are multiplied in only where a value leaves the pass, or when a
  scale strays far from 1 (so unscaled values cannot overflow or underflow).
- A constant scalar cotangent (grad's seed 1.0) is held as the symbolic value
  `ONES` times its scale: `reduce_sum`'s transpose keeps it symbolic, and `mul`'s
  turns it into the other factor (`ones_transpose`), so no array of ones is
  broadcast and multiplied in.
"""
import math

import numpy as np

from tracer import Literal, Zero, UndefinedPrimal, Tracer, Var
from tracer import core as _core
from tracer.core import pause_gc, ONES
from tracer.staging import as_eqn
from tracer.errors import with_user_line
from primitives.arith import add_any_p, mul_p, add_products_p, coerce, safe_mul_p, sub_p
from primitives._base import unbroadcast
from primitives.dot import (dot_general_p as _dot_p, MATMUL_PARAMS as _MATMUL_PARAMS, _DN_LHS_T,
                            matrix_product)
from primitives.shape_ops import broadcast_to, reshape_p
from primitives.reductions import reduce_sum_p
from primitives._kernels import KERNEL_MIN, factor_value
from .deferred_products import Product, times, fused_sum
from .jvp import JVPTracer, dual_product, dual_sum, eager_trace, _new_tracer


def _as_ones(ct):
    """(ONES, scale) for a concrete real scalar cotangent, else None."""
    if type(ct) is np.ndarray:   # the common case: grad's seed
        if ct.ndim != 0 or ct.dtype.kind != 'f':
            return None
        c = float(ct)
        return (ONES, c) if math.isfinite(c) and c != 0.0 else None
    if isinstance(ct, Tracer) or np.ndim(ct) != 0:
        return None
    try:
        c = float(ct)
    except TypeError:
        return None
    if np.iscomplexobj(ct) or not np.isfinite(c) or c == 0.0:
        return None
    return ONES, c


def _materialize(value, aval):
    if value is ONES:
        return broadcast_to(np.ones((), aval.dtype), aval.shape)
    if type(value) is Product:
        return value.value()
    return value

_new = object.__new__
_prod = math.prod
_NOT_CONST = object()   # env.get's default: the variable is linear
_LINEAR = UndefinedPrimal(None)   # marks the linear operand for a scale_transpose rule
_mul_scale = mul_p.scale_transpose

_MAX_EXP = 64   # rescale once |log2(scale)| exceeds this


def backward_pass(jaxpr, consts, cts_out, all_linear=False):
    """Cotangents of jaxpr.invars (Zero where none flows) given cotangents of
    jaxpr.outvars (Zero allowed). `all_linear`: every equation reads a linear
    input (true of what linearize stages), so the forward sweep is skipped."""
    with pause_gc():
        return _backward_pass(jaxpr, consts, cts_out, all_linear)


def _scaled(value, scale):
    if type(value) is Product:
        if scale == 1.0:
            return value.value()
        fused = fused_sum((value,), (scale,))
        if fused is not None:
            return fused
        value = value.value()
    if scale == 1.0:
        return value
    return mul_p.bind(value, coerce(scale, value))


def _backward_pass(jaxpr, consts, cts_out, all_linear):
    env = dict(zip(jaxpr.constvars, consts))
    if all_linear:
        return _transpose_eqns(jaxpr, jaxpr.eqns, env, None, cts_out)
    for v in env:       # (deferred factors: only compact equations read those)
        env[v] = factor_value(env[v])
    linear = set(jaxpr.invars)
    lin_eqns = []
    for eqn in jaxpr.eqns:
        if type(eqn) is tuple:
            eqn = as_eqn(eqn)
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
    return _transpose_eqns(jaxpr, lin_eqns, env, linear, cts_out)


_LO, _HI = 2.0 ** -_MAX_EXP, 2.0 ** _MAX_EXP


def _combine(v, contributions, absolute=False):
    """Sum several (value, scale) contributions to v into one (value, scale).
    absolute: fold every scale into the sum (the result's scale is 1)."""
    scales = []
    values = []
    n_ones = n_arrays = n_products = 0
    for c, s in contributions:      # one pass: a variable may have many (W1's x: 41)
        scales.append(s)
        values.append(c)
        t = type(c)
        if t is _ndarray:
            n_arrays += 1
        elif c is ONES:
            n_ones += 1
        elif t is Product:
            n_products += 1
    n = len(values)
    # the common scale: 1 if any contribution has it, else the most frequent, so the
    # fewest values need multiplying (in add_any's coeffs)
    if absolute or 1.0 in scales:
        scale = 1.0
    else:
        # (a zero scale, from contributions that cancelled, is never the common one:
        # the others are divided by it)
        nonzero = [s for s in scales if s != 0.0]
        scale = max(set(nonzero), key=nonzero.count) if nonzero else 1.0
    if n_ones == n:
        if absolute:
            return _ones_times(v.aval, sum(scales)), 1.0
        return ONES, sum(scales)
    add = add_any_p.bind
    if n_ones:
        one = v.aval.dtype.type(1)
        if n_ones + n_arrays == n:
            # eager: ones of the full shape (a view; small, an array: cheaper to
            # build), so add_any's stacked or fused sums apply, not a multiply and
            # an add per term
            shape = v.aval.shape
            one = np.full(shape, one) if _prod(shape) < KERNEL_MIN else \
                np.broadcast_to(one, shape)
        values = [one if c is ONES else c for c in values]   # add_any broadcasts
    if n_ones + n_arrays == n:
        add = add_any_p.impl    # eager: the implementation itself (nothing to trace)
    elif n_products:
        # eager cotangents with deferred products: one pass for the whole sum
        fused = fused_sum(values, [s / scale for s in scales])
        if fused is not None:
            return fused, scale
        values = [c.value() if type(c) is Product else c for c in values]
    coeffs = None if scales.count(scale) == n else tuple([s / scale for s in scales])
    if n_ones == 0 and type(values[0]) is JVPTracer:
        # cotangents of an outer eager jvp (jvp of grad): add_any's rule directly
        r = dual_sum(values, coeffs)
        if r is not None:
            return r, scale
    if coeffs is None:
        return add(*values), scale
    return add(*values, coeffs=coeffs), scale


def _transpose_eqns(jaxpr, lin_eqns, env, linear, cts_out):
    """linear: the set of linear vars, or None when every non-constant var is.

    Cotangents live in `cts`: var -> (value, scale), or a list of such pairs once
    a second contribution arrives (no list is built for the common single use)."""
    cts = {}
    all_linear = linear is None

    def write(v, ct, scale):
        if ct is None or type(ct) is Zero or type(v) is Literal:
            return
        if (v in env) if all_linear else (v not in linear):
            return
        _write(cts, v, ct, scale)

    def read(v):
        """-> (value, scale), or (Zero, 1.0)."""
        e = cts.pop(v, None)
        if e is None:
            return Zero(v.aval), 1.0
        value, scale = e if type(e) is tuple else _combine(v, e)
        if scale != 1.0 and value is not ONES and not _LO < abs(scale) < _HI:
            value, scale = _scaled(value, scale), 1.0
        return value, scale

    for v, ct in zip(jaxpr.outvars, cts_out):
        ones = _as_ones(ct) if type(v) is not Literal else None
        if ones is not None:
            write(v, *ones)
        else:
            write(v, ct, 1.0)
    cts_pop = cts.pop
    env_get = env.get
    for eqn in reversed(lin_eqns):
        if type(eqn) is tuple:
            # a compact equation of eager linearization (tracer/staging.py): its
            # operands, but a literal, have the output's type, so the common cases
            # need no checks
            prim, invars, v = eqn
            e = cts_pop(v, None)
            if e is None:
                continue
            ct, scale = e if type(e) is tuple else _combine(v, e)
            if scale != 1.0 and ct is not ONES and not _LO < abs(scale) < _HI:
                ct, scale = _scaled(ct, scale), 1.0
            # Whatever the cotangent's kind: a sum passes it to both terms; a
            # difference too, negated for the second (sub's scale_transpose); a
            # literal factor only changes the scale (mul's).
            if prim is add_any_p:
                _write(cts, invars[0], ct, scale)
                _write(cts, invars[1], ct, scale)
                continue
            if prim is sub_p:
                a, b = invars
                if type(a) is not Literal and type(b) is not Literal and \
                        a not in env and b not in env:
                    _write(cts, a, ct, scale)
                    _write(cts, b, ct, -scale)
                    continue
            elif prim is mul_p and type(invars[1]) is Literal:
                f = _mul_scale(_LINEAR, invars[1].val)
                if f is not None:
                    _write(cts, invars[0], ct, scale * f[0])
                    continue
            if ct is ONES:
                # grad's seed: ones times a factor is the factor (mul's and
                # add_products' ones_transpose)
                if prim is mul_p or prim is safe_mul_p:
                    # (safe_mul(ones, c) is c: a cotangent of ones has no zero
                    # for safe_mul to guard)
                    b = invars[1]
                    if type(b) is not Literal:
                        c = env[b]
                        if type(c) is not _ndarray:
                            c = factor_value(c)
                        _write(cts, invars[0], c, scale)
                        continue
                elif prim is add_products_p:
                    a1, c1, a2, c2 = invars
                    _write(cts, a1, env[c1], scale)
                    _write(cts, a2, env[c2], scale)
                    continue
            elif type(ct) is _ndarray or type(ct) is Product or type(ct) is JVPTracer:
                # (a JVPTracer: a cotangent of an outer eager jvp, as in jvp of grad;
                # its products are the outer trace's mul)
                small = type(ct) is _ndarray and ct.size < KERNEL_MIN
                if prim is mul_p:
                    a, b = invars
                    if type(b) is not Literal:
                        c = env[b]
                        _write(cts, a, _multiply(ct, c) if small else _product(ct, c), scale)
                        continue
                elif prim is add_products_p:
                    a1, c1, a2, c2 = invars
                    c1 = env[c1]
                    c2 = env[c2]
                    if small:
                        _write(cts, a1, _multiply(ct, c1), scale)
                        _write(cts, a2, _multiply(ct, c2), scale)
                    else:
                        _write(cts, a1, _product(ct, c1), scale)
                        _write(cts, a2, _product(ct, c2), scale)
                    continue
            if prim is mul_p and invars[1] in env:
                # (the general rules read a deferred factor's array)
                env[invars[1]] = factor_value(env[invars[1]])
            eqn = as_eqn(eqn)       # the general path below
        else:
            prim = eqn.primitive
            if prim.multiple_results:
                pairs = [read(v) for v in eqn.outvars]
                if all(type(c) is Zero for c, _ in pairs):
                    continue
                # one scale for all outputs (a nonzero one): fold the others in
                scale = next((s for c, s in pairs if type(c) is not Zero and s != 0.0), 1.0)
                keep_ones = prim.takes_ones
                ct = [c if type(c) is Zero else
                      _scaled(_materialize(c, v.aval), s / scale) if s != scale else
                      c if keep_ones and c is ONES else
                      _materialize(c, v.aval) for (c, s), v in zip(pairs, eqn.outvars)]
            else:
                e = cts_pop(eqn.outvars[0], None)
                if e is None:
                    continue
                if type(e) is tuple:
                    ct, scale = e
                else:
                    ct, scale = _combine(eqn.outvars[0], e)
                if scale != 1.0 and ct is not ONES and not _LO < abs(scale) < _HI:
                    ct, scale = _scaled(ct, scale), 1.0
        invars = eqn.invars
        if all_linear and type(ct) is _ndarray and ct.size < KERNEL_MIN:
            # Eager reverse mode on small arrays: the equations eager linearization
            # stages, transposed inline (what their rules compute, without the calls
            # and the boxing of operands). In an all-linear jaxpr, an operand that is
            # neither a constant nor a literal is linear; a linear operand of the
            # cotangent's shape needs no unbroadcasting.
            if prim is mul_p:
                a, b = invars
                if type(a) is Literal:
                    a, b = b, a
                if type(b) is Literal:
                    # a literal factor only changes the scale (mul's scale_transpose)
                    f = _mul_scale(_LINEAR, b.val)
                    if f is not None:
                        _write(cts, a, ct, scale * f[0])
                        continue
                else:
                    c = env_get(b)
                    if c is None:
                        c, a = env_get(a), b
                    if type(c) is _ndarray and a.aval.shape == ct.shape:
                        _write(cts, a, _multiply(ct, c), scale)
                        continue
            elif prim is add_products_p and len(invars) == 4:
                a1, b1, a2, b2 = invars
                c1 = env_get(b1)
                if c1 is None:
                    c1, a1 = env_get(a1), b1
                c2 = env_get(b2)
                if c2 is None:
                    c2, a2 = env_get(a2), b2
                shape = ct.shape
                if type(c1) is _ndarray and type(c2) is _ndarray and \
                        a1.aval.shape == shape and a2.aval.shape == shape:
                    _write(cts, a1, _multiply(ct, c1), scale)
                    _write(cts, a2, _multiply(ct, c2), scale)
                    continue
            elif prim is add_any_p and len(invars) == 2 and not eqn.params:
                # the cotangent flows to both terms unchanged
                a, b = invars
                shape = ct.shape
                if type(a) is Var and type(b) is Var and a.aval.shape == shape and \
                        b.aval.shape == shape and a not in env and b not in env:
                    _write(cts, a, ct, scale)
                    _write(cts, b, ct, scale)
                    continue
        if all_linear and prim in _INLINE and \
                _transpose_inline(prim, invars, eqn, ct, scale, env, cts):
            continue
        params = eqn.params
        if all_linear and (type(ct) is _ndarray or type(ct) is Product) and (
                prim is mul_p or prim is add_products_p or prim is add_any_p):
            # eager reverse mode's hottest equations (the linear maps eager
            # linearization stages), without the rules' calls and argument boxing:
            # what their rules compute when every operand has the cotangent's shape
            if _eager_transpose(prim, invars, params, ct, scale, env, cts,
                                eqn.outvars[0].aval.shape):
                continue
        if all_linear:
            # a loop, not a comprehension: no extra frame per equation (hot)
            args = []
            for v in invars:
                if type(v) is Literal:
                    args.append(v.val)
                else:
                    a = env_get(v, _NOT_CONST)
                    if a is _NOT_CONST:
                        a = _new(UndefinedPrimal)
                        a.aval = v.aval
                    args.append(a)
        else:
            args = [v.val if type(v) is Literal else
                    (UndefinedPrimal(v.aval) if v in linear else env[v]) for v in invars]
        fold = prim.scale_transpose
        if fold is not None:
            factors = fold(*args, **params)
            if factors is not None:
                for v, f in zip(invars, factors):
                    if f is not None:
                        write(v, ct, scale * f)
                continue
        if type(ct) is Product:
            ct = ct.value()
        if ct is ONES:
            hook = prim.ones_transpose
            if hook is not None:
                outs = hook(*args, **params)
            else:
                outs = _rule(prim)(_materialize(ct, eqn.outvars[0].aval), *args, **params)
        else:
            if scale != 1.0 and (len(args) >= 4 or not prim.elementwise) and (
                    type(ct) is np.ndarray or isinstance(ct, Tracer)):
                # A scale carried past a rule whose linear operands are much larger
                # than the cotangent (a matmul's weight gradient) would cost a
                # multiply over those larger arrays when it is finally applied;
                # apply it to the small cotangent now. (An elementwise operand is
                # no larger than the cotangent: with < 4 operands the sum below
                # stays under 4 * ct.size, so it is not computed.)
                n = 0
                for a in args:
                    if type(a) is UndefinedPrimal:
                        n += _prod(a.aval.shape)
                if 4 * ct.size <= n:
                    ct, scale = _scaled(ct, scale), 1.0
            outs = (prim.transpose or _rule(prim))(ct, *args, **params)
        for v, c in zip(invars, outs):      # write(v, c, scale), its checks inlined
            if c is None or type(c) is Zero or type(v) is Literal:
                continue
            if (v in env) if all_linear else (v not in linear):
                continue
            _write(cts, v, c, scale)
    out = []
    roots = None
    for v in jaxpr.invars:
        e = cts.pop(v, None)
        if e is None:
            out.append(Zero(v.aval))
        elif type(e) is tuple:
            c, scale = e
            if c is ONES and _core._dynamic_trace is None:
                out.append(_ones_times(v.aval, scale))    # a constant gradient
                continue
            if scale == 1.0 and type(c) is _ndarray:
                # ones times a factor is the factor (d/dw sum(x*w) is x), and a
                # constant may be the caller's array, mutable: hand out a copy
                if roots is None:
                    roots = _constant_roots(env)
                if id(c if c.base is None else c.base) in roots:
                    c = c.copy()
            out.append(_scaled(c if type(c) is Product else _materialize(c, v.aval), scale))
        else:
            # leaving the pass: the scales go into add_any's coeffs, not a final mul
            out.append(_scaled(*_combine(v, e, absolute=True)))
    return out


def _ones_times(aval, scale):
    """scale * ones of type `aval` (a gradient that is grad's seed times a number,
    as in sum(x / 2)): built directly when eager (bind would compute it at once),
    a broadcast a staging trace records otherwise."""
    if _core._dynamic_trace is None:
        return np.full(aval.shape, scale, aval.dtype)
    return broadcast_to(aval.dtype.type(scale), aval.shape)


def _constant_roots(env):
    """The ids of the arrays whose memory the array values of `env` are (views of):
    an array `x` is (a view of) a constant when id(x.base or x) is among them."""
    return {id(r if r.base is None else r.base) for r in env.values()
            if type(r) is _ndarray}


def _eager_transpose(prim, invars, params, ct, scale, env, cts, out_shape):
    """Transpose one mul / add_products / add_any equation on a concrete cotangent
    `ct` (every non-constant variable being linear), writing into `cts`; False
    (nothing written) where an operand's shape differs from the output's, or
    another case the rules handle. The results are the rules' own: the product of
    the cotangent with each linear operand's constant factor (mul and
    add_products), the cotangent itself times add_any's coefficient."""
    shape = ct.shape
    if prim is add_any_p:
        coeffs = params.get('coeffs') if params else None
        targets = []
        broadcast = False
        for v in invars:
            if type(v) is Literal or v in env:
                continue
            if v.aval.shape != out_shape:
                if coeffs is not None or shape != out_shape:
                    return False
                broadcast = True
            targets.append(v)
        if broadcast:
            # a bias: its cotangent summed down to its shape (add_any's rule,
            # which runs on the cotangent's value)
            if type(ct) is Product:
                ct = ct.value()
            for v in targets:
                a = v.aval
                _write(cts, v, ct if a.shape == out_shape else unbroadcast(ct, a), scale)
        elif coeffs is None:
            for v in targets:
                _write(cts, v, ct, scale)
        else:
            for v, c in zip(invars, coeffs):
                if type(v) is not Literal and v not in env:
                    _write(cts, v, ct, scale * c)
        return True
    if shape != out_shape:
        return False
    n = len(invars)
    if n != 2 and (prim is mul_p or n % 2):
        return False
    writes = []
    for i in range(0, n, 2):
        a = invars[i]
        b = invars[i + 1]
        la = type(a) is not Literal and a not in env
        lb = type(b) is not Literal and b not in env
        if la:
            if lb or type(b) is Literal:
                return False
            c = env[b]
            if type(c) is not _ndarray or c.shape != shape or a.aval.shape != shape:
                return False
            writes.append((a, c, True))
        elif lb:
            if type(a) is Literal:
                return False
            c = env[a]
            if type(c) is not _ndarray or c.shape != shape or b.aval.shape != shape:
                return False
            writes.append((b, c, False))
    if not writes or len(writes) >= 4:
        # (four or more linear operands: the general loop first applies the scale
        # to the cotangent, see _transpose_eqns)
        return False
    # ct * c, or c * ct: the same number (IEEE products commute), deferred when the
    # arrays are large (see deferred_products.py)
    small = type(ct) is _ndarray and ct.size < KERNEL_MIN
    for v, c, first in writes:
        _write(cts, v, np.multiply(ct, c) if small else times(ct, c), scale)
    return True


def _transpose_inline(prim, invars, eqn, ct, scale, env, cts):
    """Equations of eager reverse mode through a loss (W2's: x @ w, logits * onehot
    under grad's seed, logits - m with m broadcast), transposed as their rules do
    it, without the calls and argument boxing: True when done (written into
    `cts`), False where the general path runs. Every non-constant variable is
    linear (all_linear)."""
    if prim is _dot_p:
        if ct is ONES:
            return _transpose_vecdot_ones(invars, eqn, scale, env, cts)
        return _transpose_matmul(invars, eqn, ct, scale, env, cts)
    if prim is reshape_p or prim is reduce_sum_p:
        if ct is ONES:
            # a broadcast of ones is ones (reduce_sum's ones_transpose)
            x, = invars
            if prim is not reduce_sum_p or type(x) is Literal or x in env:
                return False
            _write(cts, x, ONES, scale)
            return True
        # one linear operand: the general loop's early scaling and the rule
        tc = type(ct)
        if tc is not _ndarray and tc is not Product:
            return False
        x, = invars
        if type(x) is Literal or x in env:
            return False
        if tc is Product:
            ct = ct.value()
        a = x.aval
        if scale != 1.0 and 4 * ct.size <= _prod(a.shape):
            ct, scale = _scaled(ct, scale), 1.0
        u = _new(UndefinedPrimal)
        u.aval = a
        c, = prim.transpose(ct, u, **eqn.params)
        _write(cts, x, c, scale)
        return True
    if prim is mul_p or prim is safe_mul_p:
        if ct is not ONES:
            return False
        # ones times a constant factor of the output's shape is that factor
        # (mul's ones_transpose; safe_mul(ones, c) is c: ones have no zero to guard)
        a, b = invars
        if type(a) is Literal or type(b) is Literal:
            return False
        c = env.get(b)
        if c is None:
            c, a = env.get(a), b
        shape = eqn.outvars[0].aval.shape
        if type(c) is not _ndarray or c.shape != shape or a.aval.shape != shape or a in env:
            return False
        _write(cts, a, c, scale)
        return True
    if prim is sub_p:
        tc = type(ct)
        if tc is not _ndarray and tc is not Product:
            return False
        # two linear operands of different shapes: sub's rule (its scale_transpose
        # declines), each cotangent summed down to its operand's shape
        a, b = invars
        if type(a) is not Var or type(b) is not Var or a in env or b in env or \
                a.aval.shape == b.aval.shape:
            return False
        if tc is Product:
            ct = ct.value()
        _write(cts, a, unbroadcast(ct, a.aval), scale)
        _write(cts, b, unbroadcast(_negative(ct), b.aval), scale)
        return True
    return False


_negative = np.negative
_dot = np.dot
_INLINE = frozenset([_dot_p, mul_p, safe_mul_p, sub_p, reshape_p, reduce_sum_p])


def _transpose_matmul(invars, eqn, ct, scale, env, cts):
    """A plain matrix product of a linear matrix and a constant one: the rule's
    np.dot (dot.py _matmul_transpose), after the general path's early application
    of the scale to a cotangent much smaller than the linear operand."""
    if eqn.params != _MATMUL_PARAMS:
        return False
    tc = type(ct)
    if tc is not _ndarray and tc is not Product and tc is not JVPTracer:
        return False
    x, y = invars
    if type(x) is Literal or type(y) is Literal:
        return False
    cx = env.get(x)
    cy = env.get(y)
    if cx is None:
        if type(cy) is not _ndarray or cy.ndim != 2:
            return False
        lin, const = x, cy
    elif cy is None:
        if type(cx) is not _ndarray or cx.ndim != 2:
            return False
        lin, const = y, cx
    else:
        return False
    a = lin.aval
    dt = const.dtype
    if tc is JVPTracer:
        return _transpose_matmul_dual(lin is x, lin, const, ct, scale, cts)
    if len(a.shape) != 2 or a.dtype != dt or len(eqn.outvars[0].aval.shape) != 2:
        return False
    if tc is Product:
        ct = ct.value()
    if ct.dtype != dt or ct.ndim != 2:
        return False
    if scale != 1.0 and 4 * ct.size <= _prod(a.shape):
        ct, scale = _scaled(ct, scale), 1.0
    _write(cts, lin, matrix_product(ct, const.T) if lin is x else
           matrix_product(const.T, ct), scale)
    return True


_VECDOT_PARAMS = {'dimension_numbers': _DN_LHS_T}     # vector . vector


def _transpose_vecdot_ones(invars, eqn, scale, env, cts):
    """grad's seed through a dot product of two vectors (x @ y, one of them linear):
    the cotangent of the linear one is the other (the rule's ones * y)."""
    if eqn.params != _VECDOT_PARAMS:
        return False
    x, y = invars
    if type(x) is Literal or type(y) is Literal:
        return False
    lin, c = (x, env.get(y)) if x not in env else (y, env.get(x))
    if lin in env or type(c) is not _ndarray or c.shape != lin.aval.shape or \
            c.dtype != lin.aval.dtype:
        return False
    _write(cts, lin, c, scale)
    return True


def _transpose_matmul_dual(lin_first, lin, const, ct, scale, cts):
    """_transpose_matmul for a cotangent of an outer eager jvp (a dual number, as in
    jvp of grad): the rule's product on the primal and on the tangent, the NumPy
    calls its bind on the outer trace ends in. Also (m,k) @ (k,) with the vector
    linear."""
    if eager_trace(ct) is None:
        return False
    p, dp = ct.primal, ct.tangent
    dt = const.dtype
    if type(p) is not _ndarray or type(dp) is not _ndarray or p.dtype is not dt or \
            dp.dtype is not dt or lin.aval.dtype != dt:
        return False
    n = len(lin.aval.shape)
    if n != p.ndim or not (n == 2 or (n == 1 and not lin_first)):
        return False
    if scale != 1.0 and 4 * p.size <= _prod(lin.aval.shape):
        return False        # the general loop scales the cotangent first
    if n == 1:
        out = _new_tracer(ct._trace, _dot(p, const), _dot(dp, const))
    elif lin_first:
        out = _new_tracer(ct._trace, _dot(p, const.T), _dot(dp, const.T))
    else:
        out = _new_tracer(ct._trace, _dot(const.T, p), _dot(const.T, dp))
    _write(cts, lin, out, scale)
    return True


def _write(cts, v, c, scale):
    e = cts.get(v)
    if e is None:
        cts[v] = (c, scale)
    elif type(e) is tuple:
        cts[v] = [e, (c, scale)]
    else:
        e.append((c, scale))


_ndarray = np.ndarray
_multiply = np.multiply
_mul_bind = mul_p.bind


def _product(ct, c):
    """ct * c for a cotangent that is not a small array: deferred where large (see
    deferred_products.py), the outer trace's mul for a JVPTracer (its product rule
    directly, for two dual numbers)."""
    if type(ct) is JVPTracer:
        c = factor_value(c)
        r = dual_product(ct, c)
        return _mul_bind(ct, c) if r is None else r
    return times(ct, c)


def _rule(prim):
    rule = prim.transpose
    if rule is None:
        raise TypeError(with_user_line(
            f"cannot transpose '{prim.name}': the function is not linear in its inputs "
            f"({prim.name} is applied to a value that depends on them, and {prim.name} "
            f"is not linear)."))
    return rule
