"""Derivative checking for tests, in the manner of jax.test_util.check_grads.

    check_grads(f, args, order=2, modes=("fwd", "rev"), eps=None, rtol=None, atol=None)

`f` takes positional floating-point array arguments and returns a pytree of arrays
(non-floating output leaves are ignored: they carry no derivative). The checks:

fwd   jvp(f) along a random direction v equals the central difference
      (f(x + eps v) - f(x - eps v)) / (2 eps), computed in float64.
rev   for random u (output cotangent) and v (input tangent),
      <vjp(f)(u), v> == <u, jvp(f)(v)>           (the dot-product identity, tight), and
      <vjp(f)(u), v> == <u, numerical_jvp(f)(v)>  (against finite differences).

With order > 1 the checks recurse on the derivative functions themselves:
fwd recurses on (x, v) -> jvp(f, x, v) and rev on (x, u) -> vjp(f, x)[1](u), each
checked again in every mode. So order=2 with both modes covers forward-over-forward,
reverse-over-forward, forward-over-reverse (jvp of vjp) and reverse-over-reverse
(vjp of vjp).

Everything is deterministic: directions come from a seeded generator.
Failures raise AssertionError naming the check (e.g. "JVP of VJP"), the argument
shapes and the size of the error.
"""
import numpy as np

from tracer import tree_flatten, tree_unflatten
from transforms import jvp, vjp

__all__ = ['check_grads', 'check_jvp', 'check_vjp', 'numerical_jvp', 'assert_allclose',
           'default_tolerance']

# Tolerances of a derivative against finite differences, by the least precise dtype.
_NUMERIC_TOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 5e-3,
                np.dtype(np.float16): 5e-2}
# Tolerance of analytic-vs-analytic identities (vjp against jvp).
_EXACT_TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4,
              np.dtype(np.float16): 1e-2}
_EPS = {np.dtype(np.float64): 1e-4, np.dtype(np.float32): 1e-3, np.dtype(np.float16): 1e-2}


# --- helpers ------------------------------------------------------------------------

def _dtype(x):
    return np.asarray(x).dtype if not hasattr(x, 'dtype') else np.dtype(x.dtype)


def _is_float(x):
    return _dtype(x).kind == 'f'


def _least_precise(values):
    dts = [_dtype(v) for v in values if _is_float(v)]
    if not dts:
        return np.dtype(np.float64)
    return min(dts, key=lambda d: d.itemsize)


def default_tolerance(values):
    """The finite-difference tolerance for the least precise floating dtype among
    `values` (a list of arrays)."""
    return _NUMERIC_TOL[_least_precise(values)]


def _describe(args):
    return '(' + ', '.join(f"{_dtype(a).name}{list(np.shape(a))}" for a in args) + ')'


def assert_allclose(actual, expected, rtol=1e-7, atol=0.0, err_msg='', check_dtypes=False):
    """np.testing.assert_allclose over matching pytrees (structure and shapes checked
    too; with check_dtypes also the dtypes)."""
    a_leaves, a_tree = tree_flatten(actual)
    e_leaves, e_tree = tree_flatten(expected)
    if a_tree != e_tree:
        raise AssertionError(f"{err_msg}: pytree structures differ: {a_tree} vs {e_tree}")
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        where = f"{err_msg} (leaf {i})" if len(a_leaves) > 1 else err_msg
        if np.shape(a) != np.shape(e):
            raise AssertionError(f"{where}: shapes differ: {np.shape(a)} vs {np.shape(e)}")
        if check_dtypes and _dtype(a) != _dtype(e):
            raise AssertionError(f"{where}: dtypes differ: {_dtype(a)} vs {_dtype(e)}")
        a64 = np.asarray(a, dtype=np.float64) if _dtype(a).kind in 'biuf' else np.asarray(a)
        e64 = np.asarray(e, dtype=np.float64) if _dtype(e).kind in 'biuf' else np.asarray(e)
        np.testing.assert_allclose(a64, e64, rtol=rtol, atol=atol, err_msg=where)


def _leaves(tree):
    return tree_flatten(tree)[0]


def _as_arg(x):
    """Arguments as NumPy values (Python numbers become float64 0-d arrays)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return x
    return np.asarray(x, dtype=np.float64)


def _random_like(rng, x):
    x = np.asarray(x)
    return np.asarray(rng.standard_normal(x.shape), dtype=x.dtype)


def _inner(xs, ys):
    total = 0.0
    for x, y in zip(xs, ys):
        total += float(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64)))
    return total


def _norm(xs):
    return float(np.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in xs)))


def _to64(x):
    return np.asarray(x, dtype=np.float64)


def numerical_jvp(f, args, tangents, eps=1e-4):
    """Central difference of `f` at `args` along `tangents`, in float64.

    Returns f's output pytree with each floating leaf replaced by its directional
    derivative (other leaves by float64 zeros)."""
    args64 = [_to64(a) for a in args]
    t64 = [_to64(t) for t in tangents]
    plus = f(*[a + eps * t for a, t in zip(args64, t64)])
    minus = f(*[a - eps * t for a, t in zip(args64, t64)])
    p_leaves, tree = tree_flatten(plus)
    m_leaves = _leaves(minus)
    out = []
    for p, m in zip(p_leaves, m_leaves):
        if _is_float(p):
            out.append((_to64(p) - _to64(m)) / (2 * eps))
        else:
            out.append(np.zeros(np.shape(p)))
    return tree_unflatten(tree, out)


def _float_part(f, args):
    """f restricted to its floating output leaves, as a function returning a tuple,
    and those leaves' values at args."""
    out_leaves = _leaves(f(*args))
    keep = [i for i, o in enumerate(out_leaves) if _is_float(o)]

    def f_float(*xs):
        leaves = _leaves(f(*xs))
        if len(leaves) != len(out_leaves):
            raise AssertionError("check_grads: f's output structure changed between calls")
        return tuple(leaves[i] for i in keep)

    return f_float, [out_leaves[i] for i in keep]


def _check_structure(what, got, want, name):
    if len(got) != len(want):
        raise AssertionError(f"{name}: {what} has {len(got)} leaves, expected {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        if np.shape(g) != np.shape(w):
            raise AssertionError(f"{name}: {what} {i} has shape {np.shape(g)}, expected "
                                 f"{np.shape(w)}")
        if _dtype(g) != _dtype(w):
            raise AssertionError(f"{name}: {what} {i} has dtype {_dtype(g).name}, expected "
                                 f"{_dtype(w).name}")


# --- the checks -------------------------------------------------------------------------

def check_jvp(f, args, rng, eps=None, rtol=None, atol=None, name='JVP'):
    """jvp(f) along a random direction against central differences."""
    args = tuple(_as_arg(a) for a in args)
    f_float, outs = _float_part(f, args)
    tangents = tuple(_random_like(rng, a) for a in args)
    prec = _least_precise(list(args) + outs)
    eps = _EPS[prec] if eps is None else eps
    tol = _NUMERIC_TOL[prec]
    rtol = tol if rtol is None else rtol
    atol = tol if atol is None else atol
    p_out, t_out = jvp(f_float, args, tangents)
    _check_structure('primal output', list(p_out), outs, name)
    _check_structure('tangent output', list(t_out), outs, name)
    assert_allclose(list(p_out), outs, rtol=_EXACT_TOL[prec], atol=_EXACT_TOL[prec],
                    err_msg=f"{name}: primal output of jvp differs from f(*args) at "
                            f"{_describe(args)}")
    expected = numerical_jvp(f_float, args, tangents, eps)
    assert_allclose(list(t_out), list(expected), rtol=rtol, atol=atol,
                    err_msg=f"{name}: jvp differs from finite differences at {_describe(args)}")
    return f_float, tangents


def check_vjp(f, args, rng, eps=None, rtol=None, atol=None, name='VJP'):
    """vjp(f) against jvp(f) by the dot-product identity, and against finite
    differences."""
    args = tuple(_as_arg(a) for a in args)
    f_float, outs = _float_part(f, args)
    prec = _least_precise(list(args) + outs)
    eps = _EPS[prec] if eps is None else eps
    tol = _NUMERIC_TOL[prec]
    rtol = tol if rtol is None else rtol
    atol = tol if atol is None else atol
    exact = _EXACT_TOL[prec]

    out, vjp_fn = vjp(f_float, *args)
    _check_structure('primal output', list(out), outs, name)
    u = tuple(_random_like(rng, o) for o in outs)
    v = tuple(_random_like(rng, a) for a in args)
    ct = vjp_fn(u)
    if not isinstance(ct, tuple):
        raise AssertionError(f"{name}: vjp_fn returned {type(ct).__name__}, not a tuple")
    _check_structure('cotangent', list(ct), list(args), name)
    _, t_out = jvp(f_float, args, v)
    t_num = numerical_jvp(f_float, args, v, eps)

    ip_vjp = _inner(ct, v)
    ip_jvp = _inner(u, t_out)
    ip_num = _inner(u, t_num)
    scale = max(_norm(u) * _norm(t_out), _norm(ct) * _norm(v), _norm(u) * _norm(t_num))
    if not abs(ip_vjp - ip_jvp) <= exact * (1.0 + scale):
        raise AssertionError(
            f"{name}: <vjp(u), v> = {ip_vjp!r} but <u, jvp(v)> = {ip_jvp!r} at "
            f"{_describe(args)} (difference {abs(ip_vjp - ip_jvp):.3g}, allowed "
            f"{exact * (1.0 + scale):.3g})")
    allowed = atol + rtol * scale
    if not abs(ip_vjp - ip_num) <= allowed:
        raise AssertionError(
            f"{name}: <vjp(u), v> = {ip_vjp!r} but finite differences give "
            f"<u, J v> = {ip_num!r} at {_describe(args)} (difference "
            f"{abs(ip_vjp - ip_num):.3g}, allowed {allowed:.3g})")
    return f_float, u


def check_grads(f, args, order=2, modes=("fwd", "rev"), eps=None, rtol=None, atol=None,
                seed=0):
    """Check f's derivatives up to `order` in `modes` ("fwd", "rev") at `args`."""
    if isinstance(modes, str):
        modes = (modes,)
    for m in modes:
        if m not in ("fwd", "rev"):
            raise ValueError(f"check_grads: unknown mode {m!r}; use 'fwd' and/or 'rev'")
    args = tuple(_as_arg(a) for a in args)
    for i, a in enumerate(args):
        if not _is_float(a):
            raise TypeError(f"check_grads: argument {i} has dtype {_dtype(a).name}; "
                            f"only floating-point arguments can be checked")
    rng = np.random.default_rng(seed)
    _check_grads(f, args, order, modes, eps, rtol, atol, rng, '')


def _check_grads(f, args, order, modes, eps, rtol, atol, rng, prefix):
    n = len(args)
    if not _float_part(f, args)[1]:
        return   # no floating outputs: nothing carries a derivative
    if "fwd" in modes:
        name = f"JVP of {prefix}" if prefix else "JVP"
        f_float, tangents = check_jvp(f, args, rng, eps, rtol, atol, name=name)
        if order > 1:
            def f_jvp(*pt):
                p_out, t_out = jvp(f_float, tuple(pt[:n]), tuple(pt[n:]))
                return tuple(p_out) + tuple(t_out)
            _check_grads(f_jvp, args + tangents, order - 1, modes, eps, rtol, atol, rng,
                         name)
    if "rev" in modes:
        name = f"VJP of {prefix}" if prefix else "VJP"
        f_float, u = check_vjp(f, args, rng, eps, rtol, atol, name=name)
        if order > 1:
            def f_vjp(*pc):
                _, vjp_fn = vjp(f_float, *pc[:n])
                return tuple(vjp_fn(tuple(pc[n:])))
            _check_grads(f_vjp, args + u, order - 1, modes, eps, rtol, atol, rng, name)
