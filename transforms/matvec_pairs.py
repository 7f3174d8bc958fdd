"""Compiler pass: two matrix-vector products with one matrix become one product.

A Hessian-vector product computes `A @ x` and `A @ v` (the primal and the tangent of
one matrix product), and its reverse half `ct @ A` and `dct @ A`. Each is a pass over
all of A; stacked, `[x; v] @ A.T` reads A once, and one BLAS call on a (2, k) block
costs little more than one on a vector (W3 jit: 256x256, ~9 us for both against
~16 us for the pair).

The pass rewrites the jaxpr given to the code generator (transforms/compiler.py):

    y1 = dot_general M x1        ->   r1 = reshape[(1, k)] x1;  r2 = reshape[(1, k)] x2
    ...                               s  = concatenate[dimension=0] r1 r2
    y2 = dot_general M x2             p  = dot_general s M     (a (2, m) block)
                                      y1 = reshape[(m,)] (slice p row 0)
                                      y2 = reshape[(m,)] (slice p row 1)

at the position of the first product when the second vector is already computed
there, else at the second's when nothing up to it reads the first. The two rows
come from one BLAS call, so their last bits may differ from two separate products,
as any reassociation under jit may (the compiled code also contracts multiply-adds
into FMAs).
"""
from tracer import Var, Literal, JaxprEqn, ShapedArray
from primitives.dot import dot_general_p, _MATMUL_DN, _DN_LHS_T, _DN_RHS_T
from primitives.shape_ops import reshape_p, concatenate_p
from primitives.slicing import slice_p

_MAT_VEC = _MATMUL_DN      # M @ x: M (m, k), x (k,)
_VEC_MAT = _DN_LHS_T       # x @ M: x (k,), M (k, m)
# the stacked vectors (2, k) against M: contract k with M's axis 1 (M @ x), axis 0 (x @ M)
_STACKED = {_MAT_VEC: _DN_RHS_T, _VEC_MAT: _MATMUL_DN}


def _matvec(eqn):
    """(matrix var, vector var, dimension numbers) of a float matrix-vector product
    whose matrix is a variable; None for any other equation."""
    if eqn.primitive is not dot_general_p or len(eqn.invars) != 2:
        return None
    dn = eqn.params.get('dimension_numbers')
    if dn == _MAT_VEC:
        m, x = eqn.invars
    elif dn == _VEC_MAT:
        x, m = eqn.invars
    else:
        return None
    if type(m) is Literal or type(x) is Literal or len(m.aval.shape) != 2 or \
            len(x.aval.shape) != 1 or m.aval.dtype.kind != 'f' or \
            x.aval.dtype != m.aval.dtype or eqn.outvars[0].aval.dtype != m.aval.dtype or \
            set(eqn.params) != {'dimension_numbers'}:
        return None
    return m, x, dn


def pair_matvecs(eqns):
    """eqns with pairs of matrix-vector products of one matrix fused (see above)."""
    defined_at = {}
    first_use = {}
    products = []           # (index, matrix, vector, dn) of each candidate
    for i, eqn in enumerate(eqns):
        for v in eqn.invars:
            if type(v) is not Literal and v not in first_use:
                first_use[v] = i
        for v in eqn.outvars:
            defined_at[v] = i
        mv = _matvec(eqn)
        if mv is not None:
            products.append((i,) + mv)
    if len(products) < 2:
        return eqns
    at = {}                 # position -> (matrix, x1, x2, dn, y1, y2) of a fused pair
    taken = set()
    for a, (i, m, x, dn) in enumerate(products):
        if i in taken:
            continue
        y1 = eqns[i].outvars[0]
        for j, m2, x2, dn2 in products[a + 1:]:
            if j in taken or m2 is not m or dn2 != dn or x2.aval.shape != x.aval.shape:
                continue
            # at the first product when the second vector exists there; else at the
            # second, when nothing up to it reads the first product (the second
            # vector then cannot depend on it: not y2 = M @ y1)
            if defined_at.get(x2, -1) < i:
                where = i
            elif first_use.get(y1, j + 1) > j:
                where = j
            else:
                continue
            at[where] = (m, x, x2, dn, y1, eqns[j].outvars[0])
            taken.update((i, j))
            break
    if not at:
        return eqns
    out = []
    for i, eqn in enumerate(eqns):
        if i in at:
            out.extend(_fused(*at[i]))
        elif i not in taken:
            out.append(eqn)
    return out


def _fused(m, x1, x2, dn, y1, y2):
    (k,), dt = x1.aval.shape, x1.aval.dtype
    n = y1.aval.shape[0]
    row = ShapedArray((1, k), dt)
    r1, r2 = Var(row), Var(row)
    stacked = Var(ShapedArray((2, k), dt))
    block = Var(ShapedArray((2, n), dt))
    eqns = [JaxprEqn(reshape_p, [x1], [r1], {'new_sizes': (1, k)}),
            JaxprEqn(reshape_p, [x2], [r2], {'new_sizes': (1, k)}),
            JaxprEqn(concatenate_p, [r1, r2], [stacked], {'dimension': 0}),
            JaxprEqn(dot_general_p, [stacked, m], [block],
                     {'dimension_numbers': _STACKED[dn]})]
    for r, y in ((0, y1), (1, y2)):
        piece = Var(ShapedArray((1, n), dt))
        eqns.append(JaxprEqn(slice_p, [block], [piece],
                             {'start_indices': (r, 0), 'limit_indices': (r + 1, n),
                              'strides': None}))
        eqns.append(JaxprEqn(reshape_p, [piece], [y], {'new_sizes': (n,)}))
    return eqns
