"""The symbolic standard basis that jacfwd pushes and jacrev pulls through vmap.

A `Basis` stands, inside the vmap interpreter (transforms/vmap.py), for a whole
batch of n values of one per-example shape `shape` (k elements) without storing
them: slice b is `d[j] * e_j` for j = b - off in [0, k) (e_j the one-hot of flat
position j in `shape`, d an array of `shape`, or None for all ones), and zero for
the other slices. jacfwd's tangent for input leaf i and jacrev's cotangent for
output leaf i are such values, with n the total size of all leaves and off the
leaf's offset; one leaf has off=0, n=k: the identity.

When a primitive meets a Basis operand, vmap asks the primitive's structured rule
(registered with `register`, defined at the end of the primitive's own module)
for the result; a rule returns

    (out, out_dim)   out a Basis (out_dim 0) or an ordinary batched value,
    None             when it has nothing cheaper for these operands,

with the signature of a batching rule (`rule(args, dims, **params)`; a Basis
operand has dim 0). Without a rule, or when the rule returns None, the Basis is
materialised (`materialize`: built with ordinary binds, so it is correct under any
outer transform) and the ordinary batching rule runs. Anything leaving vmap is
materialised too: results are always ordinary arrays.

The rules below keep a Basis a Basis where the result is again of that form
(scaling by an unbatched factor, negation, sums of bases of one leaf, reshapes,
dtype conversion) and turn contractions against it into views or row scalings of
the other operand (`W @ basis` is W; `basis.T @ W` is d[:, None] * W): the dense
n x k x m product against the identity is never formed.

Off-diagonal entries are exact zeros: `d[j] * e_j` has no `0 * inf` where d is
infinite (the dense product with an identity matrix would give NaN there).
"""
import numpy as np

from tracer import ShapedArray, Tracer

_new = object.__new__


class Basis:
    """n slices of per-example `shape` and `dtype`: slice off+j is d.flat[j] * e_j."""
    __slots__ = ('n', 'off', 'shape', 'dtype', 'd', '_aval', '_dense')

    def __init__(self, n, off, shape, dtype, d=None):
        self.n = n
        self.off = off
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.d = d
        self._aval = None
        self._dense = None

    @property
    def size(self):
        k = 1
        for s in self.shape:
            k *= s
        return k

    @property
    def aval(self):
        """The per-example aval (what the BatchTracer holding it shows)."""
        a = self._aval
        if a is None:
            a = self._aval = ShapedArray(self.shape, self.dtype)
        return a

    @property
    def batched_shape(self):
        return (self.n,) + self.shape

    def like(self, d, shape=None, dtype=None):
        """This basis' slices (same n, offset) with a new scale / shape / dtype."""
        return Basis(self.n, self.off, self.shape if shape is None else shape,
                     self.dtype if dtype is None else dtype, d)

    def spec(self):
        """A hashable description (everything but the value of d)."""
        return ('basis', self.n, self.off, self.shape, self.dtype, self.d is None)

    def same_rows(self, other):
        return (type(other) is Basis and other.n == self.n and other.off == self.off
                and other.shape == self.shape and other.dtype == self.dtype)

    def __repr__(self):
        return (f"Basis(n={self.n}, off={self.off}, {self.aval.str_short()}, "
                f"d={'ones' if self.d is None else 'array'})")


# --- registry -------------------------------------------------------------------------

rules = {}


def register(prim, rule):
    rules[prim] = rule


# --- constants --------------------------------------------------------------------------

_const_cache = {}


def _cached(key, build):
    hit = _const_cache.get(key)
    if hit is not None:
        return hit
    val = build()
    val.flags.writeable = False
    if val.nbytes <= 1 << 24:          # keep constants up to 16 MB
        if len(_const_cache) >= 64:
            _const_cache.pop(next(iter(_const_cache)))
        _const_cache[key] = val
    return val


def _eye_block(n, off, k, dtype):
    """The (n, k) block of the n x n identity at columns off..off+k."""
    def build():
        e = np.zeros((n, k), dtype)
        if k:
            e[np.arange(off, off + k), np.arange(k)] = 1
        return e
    return _cached(('eye', n, off, k, np.dtype(dtype)), build)


def _mask_block(n, off, k):
    return _cached(('mask', n, off, k), lambda: _eye_block(n, off, k, np.bool_).copy())


def ones(dtype, shape):
    """An array of ones of `shape` (a broadcast of a scalar: a view when eager)."""
    from .shape_ops import broadcast_in_dim
    return broadcast_in_dim(np.ones((), dtype), shape, ())


def scale_of(b):
    """b.d, or ones of b's shape when b.d is None."""
    return ones(b.dtype, b.shape) if b.d is None else b.d


# --- materialisation --------------------------------------------------------------------------

def materialize(b):
    """The dense batch (n,) + shape, batch axis 0, of a Basis."""
    dense = b._dense
    if dense is not None:
        return dense
    n, off, k = b.n, b.off, b.size
    d = b.d
    if d is None:
        dense = _eye_block(n, off, k, b.dtype).reshape(b.batched_shape)
    elif type(d) is np.ndarray:
        dense = np.zeros((n, k), b.dtype)
        if k:
            dense[np.arange(off, off + k), np.arange(k)] = d.reshape(k)
        dense = dense.reshape(b.batched_shape)
    else:
        # traced scale: select it onto the diagonal (a select, not a product with
        # the identity, so an infinite scale leaves exact zeros off the diagonal)
        from .logical import select_n
        from .shape_ops import reshape
        dense = select_n(_mask_block(n, off, k), np.zeros((), b.dtype),
                         reshape(d, (k,)))
        dense = reshape(dense, b.batched_shape)
    b._dense = dense
    return dense


# --- helpers for rules -------------------------------------------------------------------------

def shape_of(x):
    return x.shape if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.shape(x)


def fits(x, shape):
    """x broadcasts into `shape` without enlarging it."""
    xs = shape_of(x)
    if xs == shape:
        return True
    if len(xs) > len(shape):
        return False
    for a, s in zip(xs[::-1], shape[::-1]):
        if a != s and a != 1:
            return False
    return True


def to_shape(x, shape):
    from .shape_ops import broadcast_to
    return broadcast_to(x, shape)


def rows(values, axis, b):
    """`values`, whose axis `axis` holds one entry per slice of b's leaf (k of them),
    padded with zeros to all n slices of the batch (the other leaves' slices)."""
    k = b.size
    if b.n == k:
        return values
    from .shape_ops import pad
    nd = len(shape_of(values))
    cfg = [(0, 0, 0)] * nd
    cfg[axis] = (b.off, b.n - b.off - k, 0)
    return pad(values, np.zeros((), values.dtype), cfg)


def flat_scale(b, axis, nd):
    """b.d flattened to (k,) at position `axis` of a rank-nd array (unit axes after
    it), for scaling rows; None when b.d is None."""
    if b.d is None:
        return None
    from .shape_ops import reshape
    return reshape(b.d, (b.size,) + (1,) * (nd - axis - 1))


def read_only(x):
    """An operand a rule returns unchanged (W @ basis is W), when eager: a read-only
    view, so that a result built from it is copied before it reaches the user and
    never aliases their array. (While staging it stays the constant it was.)"""
    from tracer import core
    if core._dynamic_trace is not None:
        return x
    v = x.view()
    v.flags.writeable = False
    return v


def is_zero_const(x):
    """x is a concrete all-zero value (a symbolic-zero case of a select)."""
    if isinstance(x, Tracer):
        return False
    t = type(x)
    if t is np.ndarray or isinstance(x, np.generic):
        return not x.any()
    return t in (int, float, complex) and x == 0


# --- generic rules --------------------------------------------------------------------------

def scaling_rule(prim, basis_positions=(0, 1)):
    """Rule of an elementwise product-like binary primitive (mul, safe_mul, div):
    a Basis operand at one of `basis_positions` times an unbatched operand that
    broadcasts into its shape is a Basis with d = prim(d, other). Two bases of the
    same leaf give a Basis with d = prim(d1, d2) (a product of one-hots)."""
    bind = prim.bind

    def rule(args, dims, **params):
        x, y = args
        if type(x) is Basis and type(y) is Basis:
            if 1 not in basis_positions or not x.same_rows(y):
                return None
            return x.like(bind(scale_of(x), scale_of(y), **params)), 0
        i = 0 if type(x) is Basis else 1
        b, other = args[i], args[1 - i]
        if i not in basis_positions or dims[1 - i] is not None:
            return None
        if type(other) in (int, float, complex, bool):
            other = b.dtype.type(other)
        if other.dtype != b.dtype or not fits(other, b.shape):
            return None
        if b.d is None:
            # mul and safe_mul by ones are the other factor; div is its reciprocal
            d = bind(np.ones((), b.dtype), other, **params) if i == 0 and \
                prim.name == 'div' else other
        else:
            d = bind(*([b.d, other] if i == 0 else [other, b.d]), **params)
        return b.like(to_shape(d, b.shape)), 0
    rule.__name__ = f"{prim.name}_basis"
    return rule


def linear_sum_rule(prim):
    """Rule of an n-ary sum-like primitive (add, sub, add_any): operands that are all
    bases of one leaf sum to a Basis whose d is the same sum of their scales."""
    bind = prim.bind

    def rule(args, dims, **params):
        b = args[0]
        if type(b) is not Basis:
            return None
        for a in args[1:]:
            if not b.same_rows(a):
                return None
        return b.like(bind(*[scale_of(a) for a in args], **params)), 0
    rule.__name__ = f"{prim.name}_basis"
    return rule


def unary_rule(prim):
    """Rule of a linear elementwise unary primitive (neg): d -> prim(d)."""
    bind = prim.bind

    def rule(args, dims, **params):
        b, = args
        d = bind(scale_of(b), **params)
        return b.like(d, dtype=d.dtype), 0
    rule.__name__ = f"{prim.name}_basis"
    return rule


def reshape_rule(args, dims, new_shape):
    """A per-example reshape keeping the flat order: the one-hots keep their flat
    positions, so the result is a Basis of the new shape."""
    b, = args
    new_shape = tuple(new_shape)
    k = 1
    for s in new_shape:
        k *= s
    if k != b.size:
        return None
    if b.d is None:
        return b.like(None, shape=new_shape), 0
    from .shape_ops import reshape
    return b.like(reshape(b.d, new_shape), shape=new_shape), 0


__all__ = ['Basis', 'register', 'rules', 'materialize', 'scale_of', 'ones', 'fits',
           'to_shape', 'rows', 'flat_scale', 'is_zero_const', 'read_only', 'scaling_rule',
           'linear_sum_rule', 'unary_rule', 'reshape_rule']
