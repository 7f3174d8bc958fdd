"""dot_general: the one contraction primitive behind dot, matmul, tensordot and einsum.

dimension_numbers = ((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch)),
tuples of ints. The output's dimensions are the batch dimensions, then the lhs free
dimensions, then the rhs free dimensions, each group in operand order (JAX's
convention). It is bilinear: its JVP is two dot_generals, and its transpose for
either operand is a dot_general of the cotangent with the other operand followed by
a transpose back into that operand's dimension order.
"""
import numpy as np

from tracer import Primitive, ShapedArray, Zero, get_aval, is_undefined, UndefinedPrimal
from ._base import dtype_of, shape_of, zero_like_out


def _free(ndim, contracting, batch):
    return tuple(d for d in range(ndim) if d not in contracting and d not in batch)


# --- implementation ---------------------------------------------------------------------------

_LARGE_PRODUCT = 1 << 14    # result elements from which matmul's lower memory traffic wins


def matrix_product(x, y):
    """x @ y for two 2-D arrays (transposed views welcome: BLAS reads them as they
    are). np.dot zero-fills its result before BLAS overwrites it, a pass over memory
    that matmul does not make (W2's weight gradients: about 60 us a step); np.dot
    dispatches faster, so it keeps the small products. Both end in the same BLAS
    call."""
    if x.shape[0] * y.shape[1] >= _LARGE_PRODUCT:
        return np.matmul(x, y)
    return np.dot(x, y)


def _dot_impl(x, y, dimension_numbers, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    if preferred_element_type is not None:
        x = np.asarray(x, preferred_element_type)
        y = np.asarray(y, preferred_element_type)
    nx = x.ndim if type(x) is np.ndarray else np.ndim(x)
    ny = y.ndim if type(y) is np.ndarray else np.ndim(y)
    if not lb:
        if len(lc) == 1 and 1 <= nx <= 2 and 1 <= ny <= 2:
            c, d = lc[0], rc[0]
            # the common matmul / matrix-vector cases go straight to BLAS; transposed
            # operands are passed as views (BLAS reads them without a copy)
            if nx == 2 and ny == 2 and type(x) is np.ndarray and type(y) is np.ndarray:
                return matrix_product(x if c == 1 else x.T, y if d == 0 else y.T)
            if c == nx - 1:
                if d == 0:
                    return np.dot(x, y)
                return np.dot(x, y.T)
            if d == 0:
                return np.dot(x.T, y)
            return np.dot(x.T, y.T)
        return np.tensordot(x, y, axes=(lc, rc))
    nb = len(lb)
    if (nx == ny == nb + 2 and lb == rb == tuple(range(nb))
            and lc == (nb + 1,) and rc == (nb,)):
        return np.matmul(x, y)
    # general case: (batch, free, contracting) x (batch, contracting, free) -> matmul
    x, y = np.asarray(x), np.asarray(y)
    xf, yf = _free(nx, lc, lb), _free(ny, rc, rb)
    bshape = tuple(x.shape[d] for d in lb)
    xfs = tuple(x.shape[d] for d in xf)
    yfs = tuple(y.shape[d] for d in yf)
    b = int(np.prod(bshape, dtype=np.int64))
    m = int(np.prod(xfs, dtype=np.int64))
    n = int(np.prod(yfs, dtype=np.int64))
    k = int(np.prod([x.shape[d] for d in lc], dtype=np.int64))
    if k == 1:
        # no contraction: a batched outer product, which matmul runs far slower
        # (inner size 1) than a broadcasting multiply
        xt = np.transpose(x, lb + xf + lc).reshape(b, m, 1)
        yt = np.transpose(y, rb + rc + yf).reshape(b, 1, n)
        return np.multiply(xt, yt).reshape(bshape + xfs + yfs)
    xt = np.transpose(x, lb + xf + lc).reshape(b, m, k)
    yt = np.transpose(y, rb + rc + yf).reshape(b, k, n)
    return np.matmul(xt, yt).reshape(bshape + xfs + yfs)


def _dot_checked_impl(x, y, dimension_numbers, preferred_element_type=None):
    try:
        if dtype_of(x) != dtype_of(y):    # NumPy would promote silently; lax does not
            raise TypeError
        return _dot_impl(x, y, dimension_numbers, preferred_element_type)
    except (ValueError, TypeError, IndexError):
        _dot_abstract(get_aval(x), get_aval(y), dimension_numbers=dimension_numbers,
                      preferred_element_type=preferred_element_type)
        raise


# --- shape rule ------------------------------------------------------------------------------

def _dot_abstract(a, b, dimension_numbers, preferred_element_type=None):
    if dimension_numbers == _MATMUL_DN and preferred_element_type is None:
        # a matrix times a matrix or vector (the hot case): the rule below, inlined
        sa, sb = a.shape, b.shape
        if len(sa) == 2 and sb and sa[1] == sb[0] and a.dtype == b.dtype and \
                a.dtype.kind in 'fciub':
            return ShapedArray(sa[:1] + sb[1:], a.dtype, a.weak_type and b.weak_type)
    (lc, rc), (lb, rb) = dimension_numbers
    def desc():   # built only when an error is raised
        return (f"dot_general of {a.str_short()} and {b.str_short()} with "
                f"dimension_numbers={_pp_dn(dimension_numbers)}")
    if len(lc) != len(rc):
        raise ValueError(f"{desc()}: lhs and rhs must list the same number of contracting "
                         f"dimensions ({len(lc)} vs {len(rc)}).")
    if len(lb) != len(rb):
        raise ValueError(f"{desc()}: lhs and rhs must list the same number of batch "
                         f"dimensions ({len(lb)} vs {len(rb)}).")
    for side, aval, dims in (('lhs', a, lc + lb), ('rhs', b, rc + rb)):
        nd = len(aval.shape)
        for d in dims:
            if not 0 <= d < nd:
                raise ValueError(f"{desc()}: {side} dimension {d} is out of range for a "
                                 f"rank-{nd} operand.")
        if len(set(dims)) != len(dims):
            raise ValueError(f"{desc()}: {side} dimensions repeat; a dimension can be "
                             f"contracting or batch, once.")
    for kind, ldims, rdims in (('contracting', lc, rc), ('batch', lb, rb)):
        for dl, dr in zip(ldims, rdims):
            if a.shape[dl] != b.shape[dr]:
                raise ValueError(f"{desc()}: {kind} dimensions have different sizes "
                                 f"(lhs dim {dl} is {a.shape[dl]}, rhs dim {dr} is "
                                 f"{b.shape[dr]}). Fix: transpose or reshape an operand so "
                                 f"paired dimensions match.")
    if a.dtype != b.dtype:
        raise TypeError(f"{desc()}: operands must have the same dtype. Fix: convert with "
                        f"convert_element_type (primitives.numpy promotes automatically).")
    if a.dtype.kind not in 'fciub':
        raise TypeError(f"{desc()}: unsupported dtype {a.dtype.name}")
    shape = (tuple(a.shape[d] for d in lb)
             + tuple(a.shape[d] for d in _free(len(a.shape), lc, lb))
             + tuple(b.shape[d] for d in _free(len(b.shape), rc, rb)))
    if preferred_element_type is not None:
        return ShapedArray(shape, preferred_element_type)
    return ShapedArray(shape, a.dtype, a.weak_type and b.weak_type)


def _pp_dn(dn):
    (lc, rc), (lb, rb) = dn
    return f"(({list(lc)}, {list(rc)}), ({list(lb)}, {list(rb)}))"


# --- derivative rules -----------------------------------------------------------------------

def _ct_operand(ct, other, my_aval, my_contract, my_batch, other_contract, other_batch,
                other_free, ct_other_free):
    """Cotangent of one operand: contract ct's dims that came from `other`'s free
    dims with those dims, batched over the batch dims. With ct first the result's
    dims are (batch, my free, other's contracting dims in increasing order); with
    `other` first, (batch, other's contracting dims, my free). Whichever already is
    my dimension order is used (the plain matmul cases need no transpose), else a
    transpose restores my order."""
    if _transpose is None:
        _bind_lazy()
    convert_element_type, transpose = _convert_element_type, _transpose
    dt = dtype_of(ct)
    if dtype_of(other) != dt:          # preferred_element_type made ct wider
        other = convert_element_type(other, dt)
    nb = len(my_batch)
    nd = len(my_aval.shape)
    my_free = _free(nd, my_contract, my_batch)
    ordered = sorted(other_contract)
    nc = len(ordered)
    ct_first = [0] * nd
    other_first = [0] * nd
    for i, d in enumerate(my_batch):
        ct_first[d] = other_first[d] = i
    for k, d in enumerate(my_free):
        ct_first[d] = nb + k
        other_first[d] = nb + nc + k
    for j, d in enumerate(my_contract):
        pos = ordered.index(other_contract[j])
        ct_first[d] = nb + len(my_free) + pos
        other_first[d] = nb + pos
    identity = list(range(nd))
    ct_batch = tuple(range(nb))
    if other_first == identity and ct_first != identity:
        r = dot_general_p.bind(other, ct, dimension_numbers=(
            (other_free, ct_other_free), (other_batch, ct_batch)))
    else:
        r = dot_general_p.bind(ct, other, dimension_numbers=(
            (ct_other_free, other_free), (ct_batch, other_batch)))
        r = transpose(r, tuple(ct_first))
    if dtype_of(r) != my_aval.dtype:
        r = convert_element_type(r, my_aval.dtype)
    return r


_MATMUL_DN = (((1,), (0,)), ((), ()))
MATMUL_PARAMS = {'dimension_numbers': _MATMUL_DN}     # a plain matrix product's params
_convert_element_type = _transpose = _add_any_p = None


def _bind_lazy():
    # modules importing this one, bound on first use (not per call: hot in reverse mode)
    global _convert_element_type, _transpose, _add_any_p
    from .convert import convert_element_type
    from .shape_ops import transpose
    from .arith import add_any_p
    _convert_element_type, _transpose, _add_any_p = convert_element_type, transpose, add_any_p


def _dot_transpose(ct, x, y, dimension_numbers, preferred_element_type=None):
    if preferred_element_type is None and dimension_numbers == _MATMUL_DN:
        # a plain matrix product (or matrix-vector product): the contraction the
        # general path below ends in, without its index work (on arrays: its
        # NumPy call, without the binds)
        fast = _matmul_transpose(ct, x, y)
        if fast is not None:
            return fast
    (lc, rc), (lb, rb) = dimension_numbers
    assert not (is_undefined(x) and is_undefined(y)), "dot_general is not linear jointly"
    nb = len(lb)
    if is_undefined(x):
        ny = len(shape_of(y))
        yf = _free(ny, rc, rb)
        nxf = len(x.aval.shape) - len(lc) - nb
        ct_yf = tuple(range(nb + nxf, nb + nxf + len(yf)))
        return [_ct_operand(ct, y, x.aval, lc, lb, rc, rb, yf, ct_yf), None]
    nx = len(shape_of(x))
    xf = _free(nx, lc, lb)
    ct_xf = tuple(range(nb, nb + len(xf)))
    return [None, _ct_operand(ct, x, y.aval, rc, rb, lc, lb, xf, ct_xf)]


_DN_LHS_T = (((0,), (0,)), ((), ()))     # x^T @ ct; also vector @ matrix, vector . vector
_DN_RHS_T = (((1,), (1,)), ((), ()))     # ct @ y^T


def _matmul_transpose(ct, x, y):
    """_dot_transpose for dimension_numbers _MATMUL_DN with operands and cotangent
    of one dtype: (m,k)@(k,n) for either operand, (m,k)@(k,) for the vector; else
    None. The same contraction as the general path (which here needs no transpose
    or conversion): on arrays the NumPy call it ends in, else one dot_general."""
    if type(ct) is np.ndarray:
        dt = ct.dtype
        ct_nd = ct.ndim
    else:
        dt = dtype_of(ct)
        ct_nd = len(shape_of(ct))
    if type(y) is UndefinedPrimal:
        if type(x) is UndefinedPrimal or dtype_of(x) != dt or y.aval.dtype != dt or \
                len(shape_of(x)) != 2:
            return None
        ny = len(y.aval.shape)
        if ny == 2 and ct_nd == 2:
            if type(ct) is np.ndarray and type(x) is np.ndarray:
                return [None, matrix_product(x.T, ct)]  # (k,n) = (m,k)^T (m,n)
            return [None, dot_general_p.bind(x, ct, dimension_numbers=_DN_LHS_T)]
        if ny == 1 and ct_nd == 1:
            if type(ct) is np.ndarray and type(x) is np.ndarray:
                return [None, np.dot(ct, x)]            # (k,) = (m,) (m,k)
            return [None, dot_general_p.bind(ct, x, dimension_numbers=_DN_LHS_T)]
        return None
    if type(x) is UndefinedPrimal and dtype_of(y) == dt and x.aval.dtype == dt and \
            len(shape_of(y)) == 2 and len(x.aval.shape) == 2 and ct_nd == 2:
        if type(ct) is np.ndarray and type(y) is np.ndarray:
            return [matrix_product(ct, y.T), None]      # (m,k) = (m,n) (k,n)^T
        return [dot_general_p.bind(ct, y, dimension_numbers=_DN_RHS_T), None]
    return None


dot_general_p = Primitive('dot_general')
dot_general_p.impl = _dot_checked_impl
dot_general_p.abstract_eval = _dot_abstract
dot_general_p.param_printers = {'dimension_numbers': _pp_dn}


def _dot_jvp(primals, tangents, **params):
    """Bilinear: dot(tx, y) + dot(x, ty), zeros skipped. (defjvp's rule, written
    out: this runs once per matrix product under eager grad, where the generic
    rule's loops and an extra bind of the primal product are measurable.)"""
    x, y = primals
    tx, ty = tangents
    bind = dot_general_p.bind
    if type(x) is np.ndarray and type(y) is np.ndarray:
        out = _dot_checked_impl(x, y, **params)     # what bind runs on arrays
    else:
        out = bind(x, y, **params)
    t = None if type(tx) is Zero else bind(tx, y, **params)
    if type(ty) is not Zero:
        t2 = bind(x, ty, **params)
        if t is None:
            t = t2
        else:
            if _add_any_p is None:
                _bind_lazy()
            t = _add_any_p.bind(t, t2)
    if t is None:
        return out, zero_like_out(out)
    return out, t


dot_general_p.jvp = _dot_jvp
dot_general_p.transpose = _dot_transpose


def dot_general(x, y, dimension_numbers, preferred_element_type=None):
    """lax.dot_general: contract x and y over the paired contracting dimensions,
    batched over the paired batch dimensions. Output: batch, lhs free, rhs free."""
    try:
        matmul = dimension_numbers == _MATMUL_DN
    except ValueError:          # arrays in the dimension numbers: normalised below
        matmul = False
    if matmul:
        dn = _MATMUL_DN         # a matrix product (the hot case): already normalised
    else:
        (lc, rc), (lb, rb) = dimension_numbers
        dn = ((tuple(int(d) for d in lc), tuple(int(d) for d in rc)),
              (tuple(int(d) for d in lb), tuple(int(d) for d in rb)))
    if preferred_element_type is None:
        return dot_general_p.bind(x, y, dimension_numbers=dn)
    return dot_general_p.bind(x, y, dimension_numbers=dn,
                              preferred_element_type=np.dtype(preferred_element_type))


# --- batching rules ---

def _dot_general_batch(args, dims, dimension_numbers, preferred_element_type=None):
    """Batched dot_general. Both operands batched: the batch axis becomes one more
    pair of batch dimensions (output batch axis 0). One operand batched: its batch
    axis is a free dimension, which lands in the output after the batch dimensions
    and the free dimensions before it, so nothing is moved (a matrix times a batch
    of vectors stays one BLAS matrix product)."""
    from ._batching import phys_axes
    (x, y), (bx, by) = args, dims
    (lc, rc), (lb, rb) = dimension_numbers
    params = {} if preferred_element_type is None else {
        'preferred_element_type': preferred_element_type}
    if bx is not None and by is not None:
        if not lc and not lb and preferred_element_type is None:
            return _batched_outer(x, y, bx, by)
        lc, lb = phys_axes(lc, bx), phys_axes(lb, bx)
        rc, rb = phys_axes(rc, by), phys_axes(rb, by)
        dn = ((lc, rc), ((bx,) + lb, (by,) + rb))
        return dot_general_p.bind(x, y, dimension_numbers=dn, **params), 0
    if bx is not None:
        lc, lb = phys_axes(lc, bx), phys_axes(lb, bx)
        free = [d for d in range(len(shape_of(x))) if d not in lc and d not in lb]
        out_d = len(lb) + free.index(bx)
    else:
        rc, rb = phys_axes(rc, by), phys_axes(rb, by)
        nx = len(shape_of(x))
        free = [d for d in range(len(shape_of(y))) if d not in rc and d not in rb]
        out_d = nx - len(lc) + free.index(by)
    dn = ((lc, rc), (lb, rb))
    return dot_general_p.bind(x, y, dimension_numbers=dn, **params), out_d


def _batched_outer(x, y, bx, by):
    """Outer products of two batches (no contraction: the per-example gradient of a
    weight matrix) as one broadcasting multiply, which writes the result in one pass
    (a batched matrix product with inner dimension 1 is about twice as slow). The
    batch axis goes first (a view when eager: reshapes only add unit axes)."""
    from .arith import mul_p
    from .shape_ops import reshape
    from ._batching import moveaxis
    x, y = moveaxis(x, bx, 0), moveaxis(y, by, 0)
    xs, ys = shape_of(x), shape_of(y)
    xr = reshape(x, tuple(xs) + (1,) * (len(ys) - 1))
    yr = reshape(y, (ys[0],) + (1,) * (len(xs) - 1) + tuple(ys[1:]))
    return mul_p.bind(xr, yr), 0


dot_general_p.batch = _dot_general_batch

# --- numba lowering ---
# Floating-point contractions go to BLAS: NumPy's own bundled OpenBLAS through the
# gemm helpers of primitives/jitlib.py (vectors as 1-row/1-column matrices), or
# numba's np.dot (which needs SciPy) when NumPy's CBLAS is not found; batch
# dimensions loop over 2-D products; integer dtypes get plain loops.
from ._lowering import Structural as _Structural, NotLowerable as _NotLowerable  # noqa: E402


def _np_dt(dt):
    return 'np.bool_' if dt.kind == 'b' else f'np.{dt.name}'


def _lw_dot(ctx, ins, outs, dimension_numbers, preferred_element_type=None):
    x, y = ins
    out = outs[0]
    dt = out.dtype
    (lc, rc), (lb, rb) = dimension_numbers
    if dt.kind == 'b':
        raise _NotLowerable("dot_general of booleans")
    xe, ye = x.expr, y.expr
    if x.aval.dtype != dt:
        xe = ctx.cast(xe, dt) if x.scalar else f"{ctx.helper('astype')}({xe}, {_np_dt(dt)})"
    if y.aval.dtype != dt:
        ye = ctx.cast(ye, dt) if y.scalar else f"{ctx.helper('astype')}({ye}, {_np_dt(dt)})"
    if x.scalar or y.scalar:          # no contraction: a scaled copy
        if x.scalar and y.scalar:
            return [f'({xe} * {ye})']
        r = ctx.fresh('d')
        ctx.emit(f'{r} = {xe} * {ye}')
        return [r]
    nx, ny = len(x.aval.shape), len(y.aval.shape)
    flt = dt.kind == 'f'
    if flt:
        from . import jitlib
        if not jitlib.HAVE_BLAS:
            raise _NotLowerable(
                "dot_general needs BLAS: NumPy's bundled OpenBLAS was not found and SciPy "
                "(which numba's np.dot uses) is not installed")
        numpy_blas = jitlib.HAVE_NUMPY_BLAS
    if flt and not lb and len(lc) == 1 and nx <= 2 and ny <= 2:
        c, d = lc[0], rc[0]
        if numpy_blas and (nx == 1 or ny == 1):
            # vectors as 1-row / 1-column matrices, so every case is one gemm
            k = x.aval.shape[c]
            rs = ctx.helper('reshape')
            if nx == 1:
                xe, c = f"{rs}({xe}, (1, {k}))", 1
            if ny == 1:
                ye, d = f"{rs}({ye}, ({k}, 1))", 0
            fn = {(False, False): 'gemm_nn', (True, False): 'gemm_t', (False, True): 'gemm_nt',
                  (True, True): 'gemm_tt'}[(c != 1, d != 0)]
            prod = f"{ctx.helper(fn)}({xe}, {ye})"
            if out.shape == ():
                return [f"{prod}[0, 0]"]
            return [f"{rs}({prod}, {out.shape!r})"]
        fn = {(False, False): 'dot_nn', (True, False): 'dot_t', (False, True): 'dot_nt',
              (True, True): 'dot_tt'}[(c != nx - 1, d != 0)]
        if nx == 2 and ny == 2 or numpy_blas:   # NumPy's own BLAS (primitives/jitlib.py)
            fn = 'gemm' + fn[3:]
        return [f"{ctx.helper(fn)}({xe}, {ye})"]
    # general: (b, m, k) x (b, k, n)
    xf = tuple(i for i in range(nx) if i not in lc and i not in lb)
    yf = tuple(i for i in range(ny) if i not in rc and i not in rb)
    xs, ys = x.aval.shape, y.aval.shape
    b = _prod(xs[i] for i in lb)
    m = _prod(xs[i] for i in xf)
    k = _prod(xs[i] for i in lc)
    n = _prod(ys[i] for i in yf)
    X, Y, R = ctx.fresh('X'), ctx.fresh('Y'), ctx.fresh('R')
    tr, rs = ctx.helper('transpose'), ctx.helper('reshape')
    ctx.emit(f'{X} = {rs}({tr}({xe}, {tuple(lb + xf + lc)!r}), ({b}, {m}, {k}))')
    ctx.emit(f'{Y} = {rs}({tr}({ye}, {tuple(rb + rc + yf)!r}), ({b}, {k}, {n}))')
    ctx.emit(f'{R} = {ctx.empty((b, m, n), dt)}')
    bi = ctx.fresh('bi')
    ctx.emit(f'for {bi} in range({b}):')
    if flt:
        ctx.emit(f"    {R}[{bi}] = {ctx.helper('gemm_nn' if numpy_blas else 'dot_nn')}"
                 f"({X}[{bi}], {Y}[{bi}])")
    else:
        i, j, q, acc = ctx.fresh('i'), ctx.fresh('j'), ctx.fresh('q'), ctx.fresh('acc')
        ctx.emit(f'    for {i} in range({m}):')
        ctx.emit(f'        for {j} in range({n}):')
        ctx.emit(f'            {acc} = {ctx.lit(0, dt)}')
        ctx.emit(f'            for {q} in range({k}):')
        ctx.emit(f'                {acc} = {ctx.cast(f"{acc} + {X}[{bi}, {i}, {q}] * {Y}[{bi}, {q}, {j}]", dt)}')
        ctx.emit(f'            {R}[{bi}, {i}, {j}] = {acc}')
    if out.shape == ():
        return [f'{R}[0, 0, 0]']
    return [f"{ctx.helper('reshape')}({R}, {out.shape!r})"]


def _prod(xs):
    p = 1
    for v in xs:
        p *= v
    return p


dot_general_p.lowering = _Structural(_lw_dot)

# --- structured basis rules ---
# (see primitives/_basis.py: jacfwd's / jacrev's symbolic standard basis under vmap)
from . import _basis as _SB  # noqa: E402


def _dot_general_basis(args, dims, dimension_numbers, preferred_element_type=None):
    """A basis contracted over all its per-example axes against an unbatched
    operand O: slice off+j is d[j] times O's slice at contracting index j, so the
    batch is O itself, its contracting axes merged into the batch axis (a view
    when they are adjacent and in the basis' order: `W @ basis` is W, batched at
    axis 1), its rows scaled by d (`basis.T @ W` is d[:, None] * W), padded with
    the other leaves' zero slices. No product with the identity is formed."""
    from .shape_ops import reshape, transpose
    from .convert import convert_element_type
    from .arith import mul_p
    (x, y), (bx, by) = args, dims
    (lc, rc), (lb, rb) = dimension_numbers
    if lb:
        return None
    if type(x) is _SB.Basis and by is None:
        b, o, bc, oc = x, y, lc, rc
    elif type(y) is _SB.Basis and bx is None:
        b, o, bc, oc = y, x, rc, lc
    else:
        return None
    r = len(b.shape)
    if r == 0 or sorted(bc) != list(range(r)):
        return None        # a scalar basis, or free basis axes: materialise
    o_in = o
    ocs = [oc[bc.index(p)] for p in range(r)]     # O's axis paired with basis axis p
    oshape = shape_of(o)
    k = b.size
    if ocs == list(range(ocs[0], ocs[0] + r)):
        axis = ocs[0]
        if r > 1:
            o = reshape(o, oshape[:axis] + (k,) + oshape[axis + r:])
    else:
        free = [i for i in range(len(oshape)) if i not in ocs]
        o = reshape(transpose(o, tuple(ocs + free)), (k,) + tuple(oshape[i] for i in free))
        axis = 0
    dt = b.dtype if preferred_element_type is None else np.dtype(preferred_element_type)
    if dtype_of(o) != dt:
        o = convert_element_type(o, dt)
    if b.d is not None:
        s = _SB.flat_scale(b, axis, len(shape_of(o)))
        if dtype_of(s) != dt:
            s = convert_element_type(s, dt)
        o = mul_p.bind(o, s)
    out = _SB.rows(o, axis, b)
    if out is o_in and type(out) is np.ndarray:
        out = _SB.read_only(out)
    return out, axis


_SB.register(dot_general_p, _dot_general_basis)
