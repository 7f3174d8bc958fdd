"""Linearization: jvp with the tangent half staged into a linear jaxpr.

A JVP trace runs on top of a staging trace whose inputs are the tangents. A JVP rule
computes its primal part with values from below (evaluated at once: the known
half), and applies linear operations to the tangents, which the staging trace
records (the unknown half). That is jvp + partial evaluation in one pass; the
primal-side values the linear equations read become the linear jaxpr's constants:
the residuals that reverse mode keeps.
"""
import math

import numpy as np

from tracer import (Zero, get_aval, tangent_aval, new_trace, JaxprTrace, JaxprTracer,
                    float0, Var)
from tracer.ir import Literal
from tracer.avals import concrete_aval, native
from primitives.arith import (mul_p, safe_mul_p, neg_p, add_any_p, add_p, sub_p,
                              add_products_p)
from .jvp import (JVPTrace, JVPTracer, unpack, _new_tracer, split_operand, _NO,
                  apply_lin_rule, coefficient_fits, _scaled_tangent, product_rule,
                  eager_trace)
from primitives.arith import div_p, integer_pow_p
from primitives.dot import (dot_general_p as _dot_p, MATMUL_PARAMS as _MATMUL_PARAMS,
                            matrix_product)
from primitives.shape_ops import reshape_p, broadcast_in_dim_p, transpose_p, squeeze_p
from primitives.reductions import reduce_sum_p, reduce_max_p, reduce_min_p, minmax_lin
from primitives._kernels import factor_value

# Linear primitives of one operand whose tangent map is the primitive itself: on an
# array primal, linearize runs the implementation and stages the same primitive on
# the tangent, typed by the output (no JVP rule, no shape rule).
_STRUCTURAL = frozenset([reshape_p, broadcast_in_dim_p, transpose_p, squeeze_p, reduce_sum_p])
_DUAL_ARITH = frozenset([mul_p, add_p, sub_p])
_ndarray = np.ndarray
_generic = np.generic
_new = object.__new__
_F64 = np.dtype(np.float64)
_multiply, _add, _subtract = np.multiply, np.add, np.subtract
_true_divide = np.true_divide
_WEAK_F64 = concrete_aval(1.0)   # the (shared) type of a Python float literal


class LinearizeTrace(JVPTrace):
    """A JVP trace whose tangents are staged (tracers of `builder`).

    On concrete arrays, a primitive with a linearization rule (`Primitive.lin`:
    primals -> (output, one coefficient per operand), the tangent map being
    t_out = sum_i coef_i * t_i) computes its output and coefficients in NumPy, and
    the linear equation is recorded directly: no JVP rule, no binds of the tangent
    operations, no shape rule (the output tangent has its operand's type). That is
    the whole cost of eager reverse mode for elementwise code. Anything else
    (broadcasting, other dtypes, tracers of outer transforms as primals) takes the
    JVP rule, as in `JVPTrace`."""

    fast_ops = True     # JVPTracer's operators and bind_unary call the shortcuts below
    # Whether residuals may be deferred factors (Primitive.lin_deferred): only for a
    # caller that hands the linear jaxpr straight to backward_pass (value_and_grad).
    defer = False

    def __init__(self, name, builder):
        self.name = name
        self.builder = builder

    # --- shortcuts -----------------------------------------------------------------
    # Operators and unary math on tracers of this trace, called by JVPTracer when this
    # trace is the innermost one (so bind would route the operation here): the
    # common case (real floating arrays of one type, or such an array with a Python
    # scalar) is applied without promote, bind and the generic rule plumbing. Each
    # stages exactly the equation the general path stages and computes the same
    # primal with the same NumPy call; anything else returns None and takes the
    # general path.

    def fast_unary(self, primitive, x):
        rule = primitive.lin
        if rule is None:
            return None
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        a = t._aval
        if x._aval is not a and _settle(x, a) is None:
            return self._dual_unary(primitive, x, {})
        dtype = a.dtype     # (a settled aval's dtype is a canonical dtype object)
        shape = a.shape
        res = None
        if self.defer and primitive.lin_deferred is not None:
            res = primitive.lin_deferred(x.primal)
        if res is not None:
            # the coefficient deferred (of the primal's type, as the rule makes it)
            out, c = res
            if type(out) is not _ndarray or out.dtype is not dtype or out.shape != shape:
                return None
        else:
            try:
                out, (c,) = rule(x.primal)
            except Exception:
                return None     # the rule declined (None) or failed: the general path
            if type(out) is not _ndarray or type(c) is not _ndarray or \
                    out.dtype is not dtype or c.dtype is not dtype:
                return None
            if out.shape != shape or c.shape != shape:
                return None
        # stage t * c (_stage and _residual inlined: the hottest path, one unary
        # operation in two of the W1 chain)
        builder = self.builder
        ids = builder._const_ids
        k = id(c)
        cv = ids.get(k)
        if cv is None:
            cv = _new(Var)
            cv.aval = a
            builder.constvars.append(cv)
            builder.constvals.append(c)
            ids[k] = cv
        v = _new(Var)
        v.aval = a
        builder.eqns.append((safe_mul_p if primitive.lin_safe else mul_p, (t._var, cv), v))
        tan = _new(JaxprTracer)
        tan._trace = builder
        tan._aval = a
        tan._var = v
        r = _new(JVPTracer)
        r._trace = self
        r.primal = out
        r.tangent = tan
        r._aval = a
        return r

    def _structural(self, primitive, x, params):
        """A _STRUCTURAL primitive on x, a tracer of this trace: on an array primal
        with a staged tangent, the implementation, and the same primitive staged on
        the tangent typed by the output; None otherwise."""
        p = x.primal
        if type(p) is not _ndarray or type(x.tangent) is not JaxprTracer:
            return None
        try:
            out = primitive.impl(p, **params)
        except Exception:
            return None
        # (a whole reduction gives a NumPy scalar, as on the general path)
        if type(out) is _ndarray or isinstance(out, _generic):
            return _new_tracer(self, out, self.builder.stage_known(
                primitive, [x.tangent], params, concrete_aval(out)))
        return None

    def fast_reduction(self, primitive, x, axis, keepdims):
        """reduce_sum, reduce_max or reduce_min of x over `axis` (valid, not empty),
        then reshaped to keep it if `keepdims` (a sum or max over rows, as in a
        loss): what the two binds return, without them."""
        params = {'axes': (axis,)}
        if primitive is reduce_sum_p:
            r = self._structural(primitive, x, params)
        elif primitive is reduce_max_p or primitive is reduce_min_p:
            r = _lin_minmax(self, primitive, (x,), params)
        else:
            return None
        if r is None or not keepdims:
            return r
        shape = x.primal.shape
        params = {'new_sizes': shape[:axis] + (1,) + shape[axis + 1:]}
        y = self._structural(reshape_p, r, params)
        return reshape_p.bind(r, **params) if y is None else y   # (a 0-d reduction)

    def _with_number(self, x, y):
        """(tangent, its type, y as promote() casts it against x) for a tracer x of
        this trace with an array primal and a Python number y; None otherwise."""
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        a = t._aval
        if x._aval is not a and _settle(x, a) is None:
            return None
        c = _scalar(y, a)
        return None if c is None else (t, a, c)

    def fast_div(self, x, y):
        """x / y for a Python number y: div's linearization on an array primal (the
        output, and the tangent times 1 / y), as bind reaches it through divide."""
        operand = self._with_number(x, y)
        if operand is None:
            return None
        t, a, c = operand
        res = div_p.lin(x.primal, c)
        if res is None:
            return None             # (0 or inf: the JVP rule handles the poles)
        out, (k, _) = res
        if type(out) is not _ndarray or out.dtype is not a.dtype:
            return None
        return _scaled(self, out, t, k, a)    # (1 / c: a scalar of c's kind, as _scalar casts)

    def fast_rdiv(self, x, y):
        """y / x for a Python number y: div's linearization, as bind reaches it."""
        operand = self._with_number(x, y)
        if operand is None:
            return None
        return self._linearize_binary(div_p, div_p.lin, (operand[2], x), {})

    def fast_neg(self, x):
        """-x: neg's linearization, as bind reaches it through negative."""
        if type(x.tangent) is not JaxprTracer:
            return None
        return self._linearize_unary(neg_p, neg_p.lin, x, {})

    def fast_pow(self, x, y):
        """x ** y for a Python int y: what bind reaches through power (integer_pow,
        for the floating x that a staged tangent implies)."""
        if type(x.tangent) is not JaxprTracer:
            return None
        return self._linearize_unary(integer_pow_p, integer_pow_p.lin, x, {'y': y})

    def _tracer_operand(self, o, a):
        """(primal, tangent, tangent type) of the second operand `o`, a JVPTracer,
        when the shortcuts apply to it with a first operand of tangent type `a`."""
        if o._trace is not self:
            return None
        u = o.tangent
        if type(u) is not JaxprTracer:
            return None
        b = u._aval
        if o._aval is not b and _settle(o, b) is None:
            return None
        if b is not a and (b.shape != a.shape or b.dtype != a.dtype):
            return None
        return o.primal, u, b

    def fast_mul(self, x, o, swap):
        """x * o (o * x if swap)."""
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        a = t._aval
        if x._aval is not a and _settle(x, a) is None:
            return self._dual_arith(mul_p, x, o, swap)
        p = x.primal
        to = type(o)
        if to is JVPTracer:
            operand = self._tracer_operand(o, a)
            if operand is None:
                return None
            q, u, b = operand
            if swap:
                t, u, p, q = u, t, q, p
            out = _multiply(p, q)
            if type(out) is not _ndarray:
                return None
            # the product rule: t * q + u * p, one add_products equation
            builder = self.builder
            return _stage(self, out, add_products_p, (
                t._var, _residual(builder, q, a), u._var, _residual(builder, p, a)), a)
        if to is float or to is int:
            c = o if to is float and a.dtype is _F64 else _scalar(o, a)
            if c is None:
                return None
            out = _multiply(c, p) if swap else _multiply(p, c)
            if type(out) is not _ndarray:
                return None
            return _scaled(self, out, t, c, a)
        if to is _ndarray:
            return _fast_mul_array(self, x, o, swap)
        return None

    def fast_add(self, x, o, sign, swap):
        """x + o (sign 1) or x - o (sign -1); o + x or o - x if swap."""
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        a = t._aval
        if x._aval is not a and _settle(x, a) is None:
            return self._dual_arith(add_p if sign == 1 else sub_p, x, o, swap)
        p = x.primal
        to = type(o)
        if to is JVPTracer:
            operand = self._tracer_operand(o, a)
            if operand is None:
                return _fast_add_broadcast(self, x, o, sign, swap)
            q, u, b = operand
            if swap:
                t, u, p, q, b = u, t, q, p, a
            out = _add(p, q) if sign == 1 else _subtract(p, q)
            if type(out) is not _ndarray:
                return None
            # the general path types this equation by its second operand
            return _stage(self, out, add_any_p if sign == 1 else sub_p,
                          (t._var, u._var), b)
        if to is float or to is int:
            c = _scalar(o, a)
            if c is None:
                return None
            if swap:
                out = _add(c, p) if sign == 1 else _subtract(c, p)
            else:
                out = _add(p, c) if sign == 1 else _subtract(p, c)
            if type(out) is not _ndarray:
                return None
            if swap and sign == -1:
                return _stage(self, out, neg_p, (t._var,), a)
            return _new_tracer(self, out, t, a)
        return None

    def process_primitive(self, primitive, args, params):
        if primitive in _STRUCTURAL and len(args) == 1:
            x = args[0]
            if type(x) is JVPTracer and x._trace is self:
                p = x.primal
                if type(p) is JVPTracer:
                    out = self._dual_structural(primitive, x, params)
                    if out is not None:
                        return out
                else:
                    out = self._structural(primitive, x, params)
                    if out is not None:
                        return out
        elif primitive is _dot_p and len(args) == 2:
            out = self._linearize_dot(args, params)
            if out is not None:
                return out
        elif primitive in _PRIMITIVE_SHORTCUTS:
            out = _PRIMITIVE_SHORTCUTS[primitive](self, primitive, args, params)
            if out is not None:
                return out
        rule = primitive.lin
        if rule is not None:
            n = len(args)
            if n == 1:
                out = self._linearize_unary(primitive, rule, args[0], params)
            elif n == 2:
                out = self._linearize_binary(primitive, rule, args, params)
                if out is None and primitive in _DUAL_ARITH:
                    out = self._dual_binary(primitive, args[0], args[1])
            else:
                out = self._linearize(primitive, rule, args, params)
            if out is not None:
                return out
        return self.process_jvp_rule(primitive, args, params)

    def _linearize_dot(self, args, params):
        x, y = args
        px, tx = split_operand(self, x)
        if px is _NO:
            return self._dual_dot(x, y, params)
        py, ty = split_operand(self, y)
        if py is _NO:
            return self._dual_dot(x, y, params)
        if type(px) is not _ndarray or type(py) is not _ndarray:
            return None
        if (tx is not None and type(tx) is not JaxprTracer and type(tx) is not Zero) or \
                (ty is not None and type(ty) is not JaxprTracer and type(ty) is not Zero):
            return None
        try:
            out = _dot_impl(px, py, params)
        except Exception:
            return None
        if not (type(out) is _ndarray or type(out) is _F64_SCALAR or type(out) is _F32_SCALAR):
            return None     # (a vector dot product's NumPy scalar, as on the general path)
        t = _stage_dot(self.builder, out, px, tx, py, ty, params)
        return _new_tracer(self, out, Zero.of(out) if t is None else t)

    # --- nested forward-over-reverse --------------------------------------------------
    # jvp of grad, run eagerly: the primals are themselves tracers of an outer eager
    # JVPTrace, "dual numbers" (array primal, array tangent; see _outer_dual). The
    # general path would run each JVP rule, whose primal half binds to the outer
    # trace operation by operation (the output, then the coefficient from it) and
    # whose tangent half stages a product with that coefficient. Here the output's
    # and the coefficient's outer tangents come from NumPy directly (the coefficient's
    # tangent from the primitive's `lin_dual`, a second-derivative rule), and the
    # staged equation is the one the array shortcuts stage, its residual being the
    # coefficient's dual. Anything else returns None: the general path runs.
    # The tracers made here cache no aval: the shortcuts above read `x._aval is
    # x.tangent._aval` as "x's primal is an array of that type" (see _settle).

    def _dual_unary(self, primitive, x, params):
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        a = t._aval
        d = x.primal
        outer = _outer_dual(d, a)
        if outer is None:
            return None
        p = d.primal
        dp = d.tangent
        try:
            res = primitive.lin(p, **params)
        except Exception:
            return None
        if res is None:
            return None
        out, (c,) = res
        if not _of_type(out, a):
            return None
        base, scalar = c if type(c) is tuple else (c, None)
        if type(base) is float or type(base) is int:
            # a constant coefficient (neg): no residual
            if scalar is not None:
                return None
            out_dual = _new_tracer(outer, out, _scaled_tangent(dp, base, False))
            return _unsettled(_scaled(self, out_dual, t, _scalar(base, a), a))
        if not _of_type(base, a) or (scalar is not None and type(scalar) is not float):
            return None
        dual = primitive.lin_dual
        if dual is None and base is not p and base is not out:
            return None     # (log, sqrt, ...: their JVP rules handle the poles)
        safe = primitive.lin_safe
        dout = _scaled_tangent(dp, c, safe)     # as the outer trace computes it
        out_dual = _new_tracer(outer, out, dout)
        if base is p:
            c_dual = d                          # (x**2: the coefficient is 2 x)
        elif base is out:
            c_dual = out_dual                   # (exp: the coefficient is the output)
        else:
            c_dual = _new_tracer(outer, base, dual(p, dp, out, dout, base, **params))
        r = _stage(self, out_dual, safe_mul_p if safe else mul_p,
                   (t._var, _residual(self.builder, c_dual, a)), a)
        if scalar is not None:
            r = _scaled(self, out_dual, r.tangent, _scalar(scalar, a), a)
        return _unsettled(r)

    def _dual_arith(self, primitive, x, o, swap):
        """x * o, x + o or x - o (primitive mul_p, add_p or sub_p; o first if swap)
        where x's primal is a dual number and o a tracer of this trace with a dual
        primal of the same outer trace, or a constant: the outer trace's product and
        sum rules applied directly, and the equation fast_mul / fast_add stage."""
        t = x.tangent
        a = t._aval
        d = x.primal
        outer = _outer_dual(d, a)
        if outer is None:
            return None
        mul = primitive is mul_p
        to = type(o)
        if to is JVPTracer:
            e = _dual_operand(self, o, a, outer)
            if e is None:
                return None
            u = o.tangent
            if swap:
                t, u, d, e = u, t, e, d
            p, q = d.primal, e.primal
            if mul:
                # the product rule: (p q, dp q + dq p), and t q + u p staged
                out_dual = product_rule(outer, p, d.tangent, q, e.tangent)
                builder = self.builder
                return _unsettled(_stage(self, out_dual, add_products_p, (
                    t._var, _residual(builder, e, a), u._var, _residual(builder, d, a)), a))
            combine = _add if primitive is add_p else _subtract
            out_dual = _new_tracer(outer, combine(p, q), combine(d.tangent, e.tangent))
            return _unsettled(_stage(self, out_dual, add_any_p if primitive is add_p else sub_p,
                                     (t._var, u._var), a))
        c = _dual_constant(o, to, a)
        if c is None:
            return None
        p = d.primal
        left, right = (c, p) if swap else (p, c)
        out = _multiply(left, right) if mul else _add(left, right) if primitive is add_p \
            else _subtract(left, right)
        if not _of_type(out, a):
            return None
        if mul:
            out_dual = _new_tracer(outer, out, _scaled_tangent(d.tangent, c, False))
            if to is _ndarray:      # the residual is the constant array
                return _unsettled(_stage(self, out_dual, mul_p,
                                         (t._var, _residual(self.builder, c, a)), a))
            return _unsettled(_scaled(self, out_dual, t, c, a))
        if swap and primitive is sub_p:
            out_dual = _new_tracer(outer, out, np.negative(d.tangent))
            return _unsettled(_stage(self, out_dual, neg_p, (t._var,), a))
        # a constant added: the tangents pass through
        return _new_tracer(self, _new_tracer(outer, out, d.tangent), t)

    def _dual_binary(self, primitive, x, y):
        """mul, add or sub reaching bind (through promote, or with a constant first
        operand) with a dual operand: _dual_arith."""
        if type(x) is JVPTracer and x._trace is self and type(x.tangent) is JaxprTracer:
            return self._dual_arith(primitive, x, y, False)
        if type(y) is JVPTracer and y._trace is self and type(y.tangent) is JaxprTracer:
            return self._dual_arith(primitive, y, x, True)
        return None

    def _dual_structural(self, primitive, x, params):
        """A _STRUCTURAL primitive on a dual number: linear, so its outer tangent is
        the primitive applied to the outer tangent."""
        t = x.tangent
        if type(t) is not JaxprTracer:
            return None
        d = x.primal
        if _outer_dual(d, t._aval) is None:
            return None
        impl = primitive.impl
        try:
            out = impl(d.primal, **params)
            dout = impl(d.tangent, **params)
        except Exception:
            return None
        if not (type(out) is _ndarray or isinstance(out, _generic)) or type(dout) is not type(out):
            return None
        return _new_tracer(self, _new_tracer(d._trace, out, dout),
                           self.builder.stage_known(primitive, [t], params, concrete_aval(out)))

    def _dual_dot(self, x, y, params):
        """dot_general with dual-number operands (or one constant array): the output
        and its outer tangent by the implementation (what dot's JVP rule computes on
        the outer trace), the tangent staged as _linearize_dot stages it."""
        outer = None
        operands = []
        for z in (x, y):
            if type(z) is JVPTracer and z._trace is self:
                t = z.tangent
                if type(t) is not JaxprTracer:
                    return None
                o = _outer_dual(z.primal, t._aval)
                if o is None or (outer is not None and o is not outer):
                    return None
                outer = o
                operands.append((z.primal, t))
            elif type(z) is _ndarray:
                operands.append((z, None))
            else:
                return None
        if outer is None:
            return None
        (px, tx), (py, ty) = operands
        # dot's JVP rule on the outer trace: (x y, dx y + x dy), by the implementation
        xp = px.primal if tx is not None else px
        yp = py.primal if ty is not None else py
        impl = _dot_p.impl
        try:
            p = impl(xp, yp, **params)
            dp = None if tx is None else impl(px.tangent, yp, **params)
            if ty is not None:
                dq = impl(xp, py.tangent, **params)
                dp = dq if dp is None else _add(dp, dq)
        except Exception:
            return None         # the general path explains the error
        if not (type(p) is _ndarray or type(p) is _F64_SCALAR or type(p) is _F32_SCALAR):
            return None
        return _new_tracer(self, _new_tracer(outer, p, dp),
                           _stage_dot(self.builder, p, px, tx, py, ty, params))

    def _linearize_unary(self, primitive, rule, x, params):
        """_linearize for one operand (unary math: the hot case), without its loops."""
        if type(x) is not JVPTracer or x._trace is not self:
            return self._linearize(primitive, rule, (x,), params)
        p = x.primal
        if type(p) is not _ndarray:
            return self._dual_unary(primitive, x, params) if type(p) is JVPTracer else None
        try:
            res = rule(p, **params)
        except Exception:
            return None         # the general path explains the error
        if res is None:
            return None
        out, coefs = res
        t = x.tangent
        c = coefs[0]
        scalar = None
        if type(c) is tuple and len(c) == 2 and type(c[1]) is float:
            c, scalar = c       # (x**n: n x**(n-1), the factor n kept a scalar)
        if type(out) is _ndarray and type(c) is _ndarray and type(t) is JaxprTracer:
            ta = t._aval
            shape = out.shape
            dtype = out.dtype
            if ta.shape == shape and c.shape == shape and (
                    ta.dtype is dtype or ta.dtype == dtype) and (
                    c.dtype is dtype or c.dtype == dtype):
                tan = self.builder.stage_product(
                    safe_mul_p if primitive.lin_safe else mul_p, t, c)
                if scalar is not None:      # (_record's _scale of the pair)
                    tan = _scale(self.builder, tan, scalar, ta)
                return _new_tracer(self, out, tan)
        return self._record(primitive, out, coefs, (t,))

    def _linearize_binary(self, primitive, rule, args, params):
        """_linearize for two operands, the common cases without its loops: both
        tracers of this trace, or one with a Python/NumPy scalar."""
        x, y = args
        px, tx = split_operand(self, x)
        if px is _NO:
            return None
        py, ty = split_operand(self, y)
        if py is _NO:
            return None
        try:
            res = rule(px, py, **params)
        except Exception:
            return None         # the general path explains the error
        if res is None:
            return None
        out, coefs = res
        if (type(tx) is JaxprTracer and type(ty) is JaxprTracer
                and not primitive.lin_safe and type(out) is _ndarray):
            c1, c2 = coefs
            if type(c1) is int and type(c2) is int and c1 == 1 and (c2 == 1 or c2 == -1):
                # a sum or difference of two tangents of the output's type
                shape = out.shape
                dtype = out.dtype
                a1 = tx._aval
                a2 = ty._aval
                if (a1.dtype is dtype or a1.dtype == dtype) and \
                        (a2.dtype is dtype or a2.dtype == dtype):
                    aval = _sum_tangent_aval(a1, a2, shape)
                    if aval is not None:
                        return _new_tracer(self, out, self.builder.stage_typed(
                            add_any_p if c2 == 1 else sub_p, (tx, ty), aval))
            elif type(c1) is _ndarray and type(c2) is _ndarray:
                # the product rule's case: one add_products of two residuals
                shape = out.shape
                dtype = out.dtype
                a1 = tx._aval
                a2 = ty._aval
                if a1.shape == shape and a2.shape == shape and c1.shape == shape and \
                        c2.shape == shape and (a1.dtype is dtype or a1.dtype == dtype) and \
                        (a2.dtype is dtype or a2.dtype == dtype) and \
                        (c1.dtype is dtype or c1.dtype == dtype) and \
                        (c2.dtype is dtype or c2.dtype == dtype):
                    return _new_tracer(self, out, self.builder.stage_same_type(
                        add_products_p, (tx, c1, ty, c2)))
        return self._record(primitive, out, coefs, (tx, ty))

    def _linearize(self, primitive, rule, args, params):
        res = apply_lin_rule(self, rule, args, params, JaxprTracer)
        if res is None:
            return None
        out, coefs, tangents = res
        return self._record(primitive, out, coefs, tangents)

    def _record(self, primitive, out, coefs, tangents):
        """The output tracer of a linearization rule's (out, coefs), with its tangent
        map staged; None where the rule's result does not fit (the JVP rule runs)."""
        if type(out) is not _ndarray:
            return None
        shape, dtype = out.shape, out.dtype
        terms = []
        for t, c in zip(tangents, coefs):
            if t is None or c is None or type(t) is Zero:
                continue
            if type(t) is not JaxprTracer:
                return None
            ta = t._aval
            if ta.shape != shape or (ta.dtype is not dtype and ta.dtype != dtype) or \
                    not coefficient_fits(c, shape, dtype):
                return None     # broadcasting or promotion: the general rule
            terms.append((t, c))
        if not terms:
            return _new_tracer(self, out, Zero.of(out))
        # the hot cases: one or two products with residual arrays
        if len(terms) == 1:
            t, c = terms[0]
            if type(c) is _ndarray:
                return _new_tracer(self, out, self.builder.stage_product(
                    safe_mul_p if primitive.lin_safe else mul_p, t, c))
        elif len(terms) == 2 and not primitive.lin_safe:
            (t1, c1), (t2, c2) = terms
            if type(c1) is _ndarray and type(c2) is _ndarray:
                return _new_tracer(self, out, self.builder.stage_same_type(
                    add_products_p, (t1, c1, t2, c2)))
        return _new_tracer(self, out, _combine(self.builder, terms, ta, primitive.lin_safe))


_FAST_DTYPES = tuple(np.dtype(t) for t in (np.float64, np.float32, np.float16))
_F32, _F16 = _FAST_DTYPES[1], _FAST_DTYPES[2]
_F64_SCALAR, _F32_SCALAR = np.float64, np.float32


def _settle(x, a):
    """`a` (the type of x's tangent) if x's primal is an ndarray of at least one
    dimension and of that type, with a (native) real floating dtype; it then becomes x's
    cached aval (being equal to the primal's): later shortcuts check
    `x._aval is x.tangent._aval`. None otherwise (the general path runs)."""
    p = x.primal
    if type(p) is _ndarray and p.shape == a.shape and a.shape and \
            not a.weak_type and p.dtype is a.dtype and (
            a.dtype is _F64 or a.dtype is _F32 or a.dtype is _F16):
        x._aval = a
        return a
    return None


def _stage_dot(builder, out, x, tx, y, ty, params):
    """The tangent of dot_general(x, y) = out, one product per operand whose tangent
    tx / ty is a tracer of `builder` (staged, typed by `out`); None if neither is."""
    a = concrete_aval(out)
    t = None
    if type(tx) is JaxprTracer:
        t = builder.stage_known(_dot_p, [tx, y], params, a)
    if type(ty) is JaxprTracer:
        t2 = builder.stage_known(_dot_p, [x, ty], params, a)
        t = t2 if t is None else builder.stage_known(add_any_p, [t, t2], {}, a)
    return t


def _outer_dual(d, a):
    """The trace of `d` if it is a dual number of type `a`: a tracer of an eager
    JVPTrace (plain forward mode, alive, with no staging trace above it that bind
    would route operations to) whose primal and tangent are arrays (or NumPy
    scalars) of a's real floating type. None otherwise."""
    outer = eager_trace(d)
    if outer is None:
        return None
    dtype = a.dtype
    if not (dtype is _F64 or dtype is _F32 or dtype is _F16) or a.weak_type:
        return None
    # _of_type(d.primal, a) and _of_type(d.tangent, a), inlined (hot)
    p = d.primal
    t = d.tangent
    tp = type(p)
    if not (tp is _ndarray or tp is _F64_SCALAR or tp is _F32_SCALAR):
        return None
    tt = type(t)
    if not (tt is _ndarray or tt is _F64_SCALAR or tt is _F32_SCALAR):
        return None
    shape = a.shape
    if p.dtype is not dtype or t.dtype is not dtype or p.shape != shape or t.shape != shape:
        return None
    return outer


def _of_type(v, a):
    """Whether `v` is an array or a NumPy scalar of type `a` (a dual's primal or
    tangent: NumPy turns 0-d results into scalars)."""
    tv = type(v)
    return (tv is _ndarray or tv is _F64_SCALAR or tv is _F32_SCALAR) and \
        v.dtype is a.dtype and v.shape == a.shape


def _dual_constant(o, to, a):
    """The constant operand `o` (of type `to`) of a dual shortcut, as the general
    path would use it against a tangent of type `a`: a Python number cast as
    promote() casts it, or an array of type `a`; else None."""
    if to is float or to is int:
        return _scalar(o, a)
    if to is _ndarray and o.dtype is a.dtype and o.shape == a.shape:
        return o
    if (to is _F64_SCALAR or to is _F32_SCALAR) and o.dtype is a.dtype:
        return o
    return None


def _unsettled(r):
    """`r` (a tracer of a dual number) without the aval _stage cached: see _settle."""
    r._aval = None
    return r


def _dual_operand(trace, o, a, outer):
    """The dual primal of `o`, a second operand of the dual shortcuts (a tracer of
    `trace` whose tangent has type `a`, and whose primal is a dual of `outer`)."""
    if o._trace is not trace:
        return None
    u = o.tangent
    if type(u) is not JaxprTracer:
        return None
    b = u._aval
    if b is not a and (b.shape != a.shape or b.dtype != a.dtype):
        return None
    e = o.primal
    return e if _outer_dual(e, a) is outer else None


def _scalar(o, a):
    """The Python scalar `o` as promote() casts it against an array of type `a`, for
    a real floating `a` (kept a Python float against float64), or None."""
    dtype = a.dtype
    if dtype is _F64:
        return o if type(o) is float else _F64.type(o)
    if dtype is _F32 or dtype is _F16:
        return dtype.type(o)
    return None


def _residual(builder, c, aval):
    v = builder._const_ids.get(id(c))
    return v if v is not None else builder._residual(c, aval)


def _stage(trace, out, primitive, invars, aval):
    """The JVPTracer of primal `out` (of type `aval`) whose tangent is
    `primitive(*invars)` (a tuple), staged as a compact equation (no params; every
    operand but a literal of type `aval`: see JaxprTrace.to_jaxpr)."""
    v = _new(Var)
    v.aval = aval
    builder = trace.builder
    builder.eqns.append((primitive, invars, v))
    tan = _new(JaxprTracer)
    tan._trace = builder
    tan._aval = aval
    tan._var = v
    r = _new(JVPTracer)
    r._trace = trace
    r.primal = out
    r.tangent = tan
    r._aval = aval
    return r


def _scaled(trace, out, t, c, aval):
    """The JVPTracer of `out` whose tangent is c * t for a scalar c (as _scale)."""
    if c == 1:
        return _new_tracer(trace, out, t, aval)
    if c == -1:
        return _stage(trace, out, neg_p, (t._var,), aval)
    lit = _new(Literal)     # literal(c) for a scalar: Literal(c) without its calls
    lit.val = c
    lit.aval = _WEAK_F64 if type(c) is float else concrete_aval(c)
    return _stage(trace, out, mul_p, (t._var, lit), aval)


def _scale(builder, t, c, aval, safe=False):
    if type(c) is tuple:
        return _scale(builder, _scale(builder, t, c[0], aval, safe), c[1], aval)
    if type(c) is not _ndarray:
        if c == 1:
            return t
        if c == -1:
            return builder.stage_typed(neg_p, [t], aval)
        c = _literal_value(c, aval)     # a literal of the tangent's dtype (lax mul)
        if safe and type(c) in _REAL_SCALARS and math.isfinite(c):
            safe = False    # (safe_mul by a finite number is mul: x / 2.0's tangent)
    return builder.stage_typed(safe_mul_p if safe else mul_p, [t, c], aval)


_REAL_SCALARS = (float, np.float64, np.float32, np.float16)


def _literal_value(c, aval):
    return aval.dtype.type(c) if type(c) is float or type(c) is int else c


def _combine(builder, terms, aval, safe):
    """sum of coef * t over terms, as at most one equation per product."""
    if len(terms) == 1:
        t, c = terms[0]
        return _scale(builder, t, c, aval, safe)
    if len(terms) == 2 and not safe:
        (t1, c1), (t2, c2) = terms
        if type(c1) is not tuple and type(c2) is not tuple:
            u1 = type(c1) is not _ndarray and c1 == 1
            if type(c2) is not _ndarray and (c2 == 1 or c2 == -1) and u1:
                return builder.stage_typed(add_any_p if c2 == 1 else sub_p, [t1, t2], aval)
            # (Python-number coefficients become literals of the tangent's dtype)
            return builder.stage_typed(add_products_p, [
                t1, _literal_value(c1, aval), t2, _literal_value(c2, aval)], aval)
    return builder.stage_typed(add_any_p, [_scale(builder, t, c, aval, safe)
                                           for t, c in terms], aval)


# --- shortcuts for the matrix products, bias adds and reductions of a loss --------
# (W2's MLP: x @ w + b, max(logits, axis=1, keepdims=True), mean). Each stages the
# equations the general path stages, with the same NumPy calls for the primal, and
# declines (None) wherever it would differ.

def _dot_impl(px, py, params):
    """dot_general's implementation on arrays px, py: for a plain matrix product of
    two matrices of one dtype, the matrix_product its implementation ends in
    (without its dispatch)."""
    if params == _MATMUL_PARAMS and px.ndim == 2 and py.ndim == 2 and \
            px.dtype == py.dtype:
        return matrix_product(px, py)
    return _dot_p.impl(px, py, **params)


def _sum_tangent_aval(a1, a2, shape):
    """The type of the staged add_any / sub of tangents of types a1, a2 into an
    output of `shape`, as the general path types it: the second operand's when both
    have the output's shape; for a broadcasting sum (a bias, whose transpose sums
    back down: unbroadcast), the one of the output's shape. None otherwise."""
    if a1.shape == shape and a2.shape == shape:
        return a2
    if (a1.shape == shape or a2.shape == shape) and \
            len(a1.shape) <= len(shape) and len(a2.shape) <= len(shape):
        return a1 if a1.shape == shape else a2
    return None


def _fast_add_broadcast(trace, x, o, sign, swap):
    """x + o or x - o (o + x, o - x if swap) for two tracers of `trace` whose shapes
    differ by broadcasting (a bias): the sum or difference of the tangents typed by
    the operand of the output's shape, as _linearize_binary stages it, without
    promote and bind. None where that path would do anything else."""
    if o._trace is not trace:
        return None
    if swap:
        x, o = o, x             # operand order
    t1 = x.tangent
    t2 = o.tangent
    p1 = x.primal
    p2 = o.primal
    if type(t1) is not JaxprTracer or type(t2) is not JaxprTracer or \
            type(p1) is not _ndarray or type(p2) is not _ndarray:
        return None
    dtype = p1.dtype
    if p2.dtype is not dtype or dtype not in _FAST_DTYPES:
        return None
    w1 = x._aval
    w2 = o._aval
    if (w1 is not None and w1.weak_type) or (w2 is not None and w2.weak_type):
        return None             # promote() would convert
    a1 = t1._aval
    a2 = t2._aval
    if a1.dtype is not dtype or a2.dtype is not dtype:
        return None
    out = _add(p1, p2) if sign == 1 else _subtract(p1, p2)
    if type(out) is not _ndarray or out.dtype is not dtype:
        return None
    aval = _sum_tangent_aval(a1, a2, out.shape)
    if aval is None:
        return None
    return _new_tracer(trace, out, trace.builder.stage_typed(
        add_any_p if sign == 1 else sub_p, (t1, t2), aval))


def _fast_mul_array(trace, x, o, swap):
    """x * o (o * x if swap) for x settled (see _settle) and an array o of x's type
    (logits * onehot): the product and its tangent t * o, as _linearize_binary's
    _record stages it, without promote and bind."""
    a = x._aval
    if o.shape != a.shape or o.dtype is not a.dtype:
        return None
    p = x.primal
    out = _multiply(o, p) if swap else _multiply(p, o)
    if type(out) is not _ndarray:
        return None
    return _new_tracer(trace, out, trace.builder.stage_product(mul_p, x.tangent, o))


def _lin_minmax(trace, primitive, args, params):
    """reduce_max / reduce_min of a floating array whose extremes are unique (no
    ties): the output, and the tangent reduce_sum(t * mask) -- the two equations
    the JVP rule stages there -- without the rule's binds and shape rules."""
    if len(args) != 1:
        return None
    x = args[0]
    if type(x) is not JVPTracer or x._trace is not trace:
        return None
    p = x.primal
    t = x.tangent
    if type(p) is not _ndarray or type(t) is not JaxprTracer:
        return None
    a = t._aval
    dtype = p.dtype
    if a.shape != p.shape or a.dtype is not dtype or a.weak_type or \
            dtype not in _FAST_DTYPES:
        return None
    axes = params['axes']
    res = minmax_lin(primitive, p, axes)
    if res is None:
        return None
    out, mask = res
    builder = trace.builder
    tangent = builder.stage_known(reduce_sum_p, [builder.stage_product(mul_p, t, mask)],
                                  {'axes': axes}, concrete_aval(out))
    return _new_tracer(trace, out, tangent)


def _lin_div_scalar(trace, primitive, args, params):
    """x / c for x with a 0-d primal (a whole reduction, as in a mean) and a
    constant scalar c of x's dtype (as promote leaves it): the output and the
    tangent t * (1/c), a literal factor, as the JVP rule of div stages it."""
    if len(args) != 2:
        return None
    x, y = args
    if type(x) is not JVPTracer or x._trace is not trace:
        return None
    p = x.primal
    t = x.tangent
    if not isinstance(p, _generic) or type(t) is not JaxprTracer:
        return None
    dtype = p.dtype
    ty = type(y)
    if (ty is not float and ty is not type(p)) or dtype not in _FAST_DTYPES or \
            t._aval.dtype is not dtype:
        return None
    y = float(y)
    if y == 0.0:
        return None
    c = 1.0 / y
    if not math.isfinite(c) or c == 0.0:
        return None
    a = t._aval
    if a.weak_type or a.shape != ():
        return None
    # div's implementation on a floating x (its result_type check aside), and the
    # equation builder.stage types by mul's shape rule: the tangent's type
    out = _true_divide(p, args[1])
    return _new_tracer(trace, out, trace.builder.stage_typed(mul_p, [t, dtype.type(c)], a))


_PRIMITIVE_SHORTCUTS = {reduce_max_p: _lin_minmax, reduce_min_p: _lin_minmax,
                        div_p: _lin_div_scalar}


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
    dce=False keeps dead equations and residuals, for a caller that transposes the
    jaxpr at once with backward_pass (transposition never visits them, so removing
    them costs time); residuals may then be deferred factors (Primitive.lin_deferred),
    which only backward_pass reads."""
    builder = JaxprTrace(name, cse=False)
    builder.compact = True      # the shortcuts stage compact equations
    with new_trace(builder):
        jvp_trace = LinearizeTrace(name, builder)
        if not dce:
            # (the jaxpr goes straight to backward_pass: residuals may be deferred)
            jvp_trace.defer = True
        in_avals = []
        ins = []
        for p in primals:
            p = native(p)
            a = tangent_aval(get_aval(p))
            in_avals.append(a)
            t = builder.new_arg(a)
            ins.append(_new_tracer(jvp_trace, p, t if a.dtype != float0 else Zero(a)))
        with new_trace(jvp_trace):
            outs = fun(*ins)
            pairs = [unpack(jvp_trace, o) for o in outs]
        out_primals = []
        nonzero = []
        out_avals = []
        live = []
        for p, t in pairs:
            out_primals.append(p)
            if type(t) is Zero:
                nonzero.append(False)
                out_avals.append(t.aval)
            else:
                nonzero.append(True)
                out_avals.append(tangent_aval(get_aval(p)))
                live.append(t)
        jaxpr, residuals = builder.to_jaxpr(live, dce=dce)
        if jvp_trace.defer and builder._multiple_results:
            # (to_jaxpr made the compact equations JaxprEqns, whose general rules
            # read arrays: deferred factors survive only with compact equations)
            residuals = [factor_value(r) for r in residuals]
    return out_primals, LinearFunction(jaxpr, residuals, in_avals, out_avals, nonzero)
