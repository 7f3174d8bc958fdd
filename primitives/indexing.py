"""NumPy indexing of traced arrays (`x[idx]`) and JAX-style functional updates
(`x.at[idx].set(v)`, `.add(v)`, `.subtract(v)`, `.get()`).

`getitem` follows NumPy's rules and lowers to primitives:
- integers and slices (any step; negative steps reverse with `rev`) become one
  static `slice` (+ `squeeze` for the integers);
- `None` / `np.newaxis` insert axes, `...` expands to full slices;
- a traced integer scalar becomes a `dynamic_slice` (its start clamped into range,
  as in JAX; a negative value counts from the end);
- integer arrays (NumPy, lists or traced) are advanced indices: they broadcast
  together and become one `gather`. As in NumPy, integers combined with them
  are advanced indices too, and the broadcast index dimensions take the place of
  the advanced indices when these are adjacent, or go first otherwise (a `None`
  or an `...` between them separates them);
- boolean masks must be concrete (a NumPy array, or a traced value whose concrete
  value is known, as under grad/jvp without jit): they become integer arrays via
  `nonzero`. A mask with no concrete value has a data-dependent result shape and
  raises ConcretizationTypeError suggesting `pnp.where`.

`x.at[idx].set/add/subtract/multiply/divide/power/min/max(v)` return updated copies.
An index of integers (static or traced), unit-step slices, None and ellipsis names a
rectangular region: the update is one `dynamic_update_slice` (read-modify-write ops
add a `dynamic_slice`). Any other index goes through the flat positions
`arange(x.size).reshape(x.shape)[idx]`, so every index form `getitem` accepts works
for updates too, and the update is a `scatter_add` on the flattened array:
- `.add` accumulates repeated indices (like `np.add.at`);
- `.set` with concrete indices gives NumPy's assignment semantics (the last of
  repeated indices wins); with traced integer-array indices, positions hit more
  than once receive the sum of their values (the order of writes is not defined);
- `.multiply/.divide/.power/.min/.max` apply repeated concrete indices in turn (like
  `np.multiply.at`); they do not accept traced integer-array indices.
"""
import builtins
import operator

import numpy as np

from tracer import Tracer
from tracer.errors import ConcretizationTypeError, with_user_line
from . import shape_ops, slicing, logical, convert, arith
from ._base import shape_of, dtype_of

_slice = builtins.slice
_SLICE, _NONE, _INT, _DYN, _ARR, _SEP = 'slice', 'none', 'int', 'dyn', 'arr', 'sep'
_INDEX_DTYPE = np.dtype(np.int64)


def _has_tracer(idx):
    if isinstance(idx, Tracer):
        return True
    if isinstance(idx, (tuple, list)):
        return builtins.any(_has_tracer(i) for i in idx)
    if isinstance(idx, _slice):
        return builtins.any(isinstance(v, Tracer) for v in (idx.start, idx.stop, idx.step))
    return False


def _bad_index(e):
    return IndexError(
        "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer "
        f"or boolean arrays are valid indices (got {type(e).__name__}"
        + (f" of dtype {e.dtype}" if hasattr(e, 'dtype') else '') + ")")


def _concrete_mask(m):
    try:
        return np.asarray(m._concrete())
    except ConcretizationTypeError:
        raise ConcretizationTypeError(with_user_line(
            f"Indexing with a traced boolean mask {m.aval.str_short()} under "
            f"{m._trace.name}: the result's shape would depend on the mask's values, which "
            f"are not known while tracing.\nFix: keep the shape static with "
            f"pnp.where(mask, x, fill) (or pnp.sum(pnp.where(mask, x, 0)) for a masked "
            f"reduction).")) from None


def _static_int(v):
    return None if v is None else operator.index(v)


def _classify(e):
    """One index entry -> (kind, value); masks as ('mask', ndarray)."""
    if e is None:
        return (_NONE, None)
    if e is Ellipsis:
        return ('ell', None)
    if isinstance(e, _slice):
        return (_SLICE, _slice(_static_int(e.start), _static_int(e.stop), _static_int(e.step)))
    if isinstance(e, (bool, np.bool_)):
        raise IndexError("indexing with a scalar boolean (x[True]) is not supported when "
                         "tracing; use x[None] (True) or an empty slice (False)")
    if isinstance(e, (int, np.integer)):
        return (_INT, int(e))
    if isinstance(e, (list, tuple)):
        from .numpy import asarray
        e = asarray(e)
        if not isinstance(e, Tracer) and e.size == 0:
            e = e.astype(np.intp)
    if isinstance(e, Tracer):
        k = e.dtype.kind
        if k == 'b':
            return ('mask', _concrete_mask(e))
        if k in 'iu':
            return (_DYN if not e.shape else _ARR, e)
        raise _bad_index(e)
    if isinstance(e, (np.ndarray, np.generic)):
        e = np.asarray(e)
        if e.dtype == bool:
            return ('mask', e)
        if e.dtype.kind in 'iu':
            return (_ARR, e)
        raise _bad_index(e)
    raise _bad_index(e)


def _expand(idx, shape):
    """The index as a list of [kind, value, dim] entries covering every dimension:
    ellipsis and trailing dims become full slices, masks become integer arrays."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    items = [_classify(e) for e in idx]
    if builtins.sum(1 for k, _ in items if k == 'ell') > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    nd = len(shape)
    consumed = 0
    for k, v in items:
        if k in (_SLICE, _INT, _DYN, _ARR):
            consumed += 1
        elif k == 'mask':
            if v.ndim == 0:
                raise IndexError("indexing with a 0-d boolean array is not supported when "
                                 "tracing")
            consumed += v.ndim
    if consumed > nd:
        raise IndexError(f"too many indices for array: array is {nd}-dimensional, but "
                         f"{consumed} were indexed")
    fill = nd - consumed
    entries = []
    d = 0
    saw_ell = False
    for k, v in items:
        if k == 'ell':
            saw_ell = True
            if fill == 0:
                entries.append([_SEP, None, None])   # separates advanced indices (NumPy)
            for _ in range(fill):
                entries.append([_SLICE, _slice(None), d])
                d += 1
        elif k == _NONE:
            entries.append([_NONE, None, None])
        elif k == 'mask':
            for j in range(v.ndim):
                if v.shape[j] != shape[d + j]:
                    raise IndexError(f"boolean index did not match indexed array along axis "
                                     f"{d + j}; size of axis is {shape[d + j]} but size of "
                                     f"corresponding boolean axis is {v.shape[j]}")
            for j, comp in enumerate(np.nonzero(v)):
                entries.append([_ARR, comp, d])
                d += 1
        else:
            entries.append([k, v, d])
            d += 1
    if not saw_ell:
        for _ in range(fill):
            entries.append([_SLICE, _slice(None), d])
            d += 1
    return entries


def _normalize_scalar(i, n):
    """A traced integer index, negative values counted from the end."""
    return logical.select_n(logical.lt(i, 0), i, arith.add(i, n))


def getitem(x, idx):
    """x[idx] with NumPy's semantics, for traced or plain x and idx."""
    if not isinstance(x, Tracer) and not _has_tracer(idx):
        return np.asarray(x)[idx]
    if not isinstance(x, (Tracer, np.ndarray)):
        x = np.asarray(x)
    shape = tuple(shape_of(x))
    nd = len(shape)
    entries = _expand(idx, shape)
    has_adv = builtins.any(e[0] == _ARR for e in entries)
    if has_adv:
        for e in entries:
            if e[0] == _INT:
                e[0], e[1] = _ARR, np.asarray(e[1])
            elif e[0] == _DYN:
                e[0] = _ARR
    starts, limits, strides = [0] * nd, list(shape), [1] * nd
    revs, squeeze_dims, dyn = [], [], {}
    for kind, v, d in entries:
        if kind == _SLICE:
            n = shape[d]
            start, stop, step = v.indices(n)
            count = len(range(start, stop, step))
            if step < 0:
                revs.append(d)
                start, step = n - 1 - start, -step
            if count == 0:
                starts[d] = limits[d] = 0
            else:
                starts[d], limits[d] = start, start + (count - 1) * step + 1
            strides[d] = step
        elif kind == _INT:
            n = shape[d]
            if not -n <= v < n:
                raise IndexError(f"index {v} is out of bounds for axis {d} with size {n}")
            v %= n
            starts[d], limits[d] = v, v + 1
            squeeze_dims.append(d)
        elif kind == _DYN:
            dyn[d] = v
    y = x
    if revs:
        y = shape_ops.rev(y, tuple(revs))
    if starts != [0] * nd or limits != list(shape) or builtins.any(s != 1 for s in strides):
        y = slicing.slice(y, starts, limits, strides)
    if dyn:
        ys = shape_of(y)
        start_idx = [_normalize_scalar(dyn[d], ys[d]) if d in dyn else 0 for d in range(nd)]
        sizes = [1 if d in dyn else ys[d] for d in range(nd)]
        y = slicing.dynamic_slice(y, start_idx, sizes)
        squeeze_dims += list(dyn)
    if not has_adv:
        y = shape_ops.squeeze(y, tuple(sorted(squeeze_dims)))
        tokens = [k for k, _, _ in entries if k in (_SLICE, _NONE)]
        news = tuple(i for i, k in enumerate(tokens) if k == _NONE)
        return shape_ops.expand_dims(y, news) if news else y
    return _advanced(y, entries, shape)


def _advanced(y, entries, shape):
    adv = [(v, d) for k, v, d in entries if k == _ARR]
    arrays = []
    for v, d in adv:
        n = shape[d]
        if isinstance(v, Tracer):
            if v.dtype != _INDEX_DTYPE:
                v = convert.convert_element_type(v, _INDEX_DTYPE)
            v = _normalize_scalar(v, n)
        else:
            v = np.asarray(v)
            if v.size:
                lo, hi = v.min(), v.max()
                if lo < -n or hi >= n:
                    bad = lo if lo < -n else hi
                    raise IndexError(f"index {bad} is out of bounds for axis {d} with size {n}")
            v = np.where(v < 0, v + n, v).astype(_INDEX_DTYPE, copy=False)
        arrays.append(v)
    try:
        bshape = np.broadcast_shapes(*[tuple(shape_of(v)) for v in arrays])
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together "
                         "with shapes " + ' '.join(str(tuple(shape_of(v))) for v in arrays)
                         ) from None
    if not builtins.any(isinstance(v, Tracer) for v in arrays):
        indices = np.stack([np.broadcast_to(v, bshape) for v in arrays], axis=-1)
    else:
        parts = [shape_ops.expand_dims(shape_ops.broadcast_to(v, bshape), (len(bshape),))
                 for v in arrays]
        indices = shape_ops.concatenate(parts, len(bshape)) if len(parts) > 1 else parts[0]
    z = slicing.gather(y, indices, tuple(d for _, d in adv))     # bshape + other dims
    nb = len(bshape)
    tokens = [k for k, _, _ in entries if k in (_SLICE, _NONE, _ARR, _SEP)]
    apos = [i for i, k in enumerate(tokens) if k == _ARR]
    adjacent = apos == list(range(apos[0], apos[-1] + 1))
    if adjacent:
        final = ([k for k in tokens[:apos[0]] if k != _SEP] + ['B'] * nb
                 + [k for k in tokens[apos[-1] + 1:] if k != _SEP])
    else:
        final = ['B'] * nb + [k for k in tokens if k in (_SLICE, _NONE)]
    perm = []
    nb_i, nd_i = 0, nb
    for k in final:
        if k == 'B':
            perm.append(nb_i)
            nb_i += 1
        elif k == _SLICE:
            perm.append(nd_i)
            nd_i += 1
    z = shape_ops.transpose(z, tuple(perm))
    news = tuple(i for i, k in enumerate(final) if k == _NONE)
    return shape_ops.expand_dims(z, news) if news else z


# --- functional updates: x.at[idx] ------------------------------------------------------------

def at(x):
    """`x.at` for any array, NumPy arrays included (which have no `.at` attribute):
    `at(x)[idx].set(v)` equals `x.at[idx].set(v)`."""
    return _IndexUpdateHelper(x)


class _IndexUpdateHelper:
    """`x.at`: `x.at[idx]` returns an _IndexUpdateRef with set/add/subtract/get."""
    __slots__ = ('array',)

    def __init__(self, array):
        self.array = array

    def __getitem__(self, idx):
        return _IndexUpdateRef(self.array, idx)

    def __repr__(self):
        return f"_IndexUpdateHelper({self.array!r})"


class _IndexUpdateRef:
    __slots__ = ('array', 'index')

    def __init__(self, array, index):
        self.array = array
        self.index = index

    def __repr__(self):
        return f"_IndexUpdateRef({self.array!r}, {self.index!r})"

    def get(self):
        """x[idx]."""
        return getitem(self.array, self.index)

    def set(self, values):
        """A copy of x with x[idx] = values (NumPy assignment: the last of repeated
        concrete indices wins)."""
        return _update(self.array, self.index, values, 'set')

    def add(self, values):
        """A copy of x with values added at idx; repeated indices accumulate
        (like np.add.at)."""
        return _update(self.array, self.index, values, 'add')

    def subtract(self, values):
        """A copy of x with values subtracted at idx; repeated indices accumulate."""
        return _update(self.array, self.index,
                       arith.neg(_as_dtype(values, np.dtype(dtype_of(self.array)))), 'add')

    def multiply(self, values):
        """A copy of x with x[idx] multiplied by values; repeated concrete indices
        multiply in turn (like np.multiply.at)."""
        return _update(self.array, self.index, values, 'multiply')

    mul = multiply

    def divide(self, values):
        """A copy of x with x[idx] divided by values (cast back to x's dtype)."""
        return _update(self.array, self.index, values, 'divide')

    def power(self, values):
        """A copy of x with x[idx] raised to values."""
        return _update(self.array, self.index, values, 'power')

    def min(self, values):
        """A copy of x with x[idx] = minimum(x[idx], values) (like np.minimum.at)."""
        return _update(self.array, self.index, values, 'min')

    def max(self, values):
        """A copy of x with x[idx] = maximum(x[idx], values) (like np.maximum.at)."""
        return _update(self.array, self.index, values, 'max')


def _as_dtype(v, dt):
    if isinstance(v, Tracer):
        return v if v.dtype == dt else convert.convert_element_type(v, dt)
    return np.asarray(v).astype(dt, copy=False)


def _combine(mode, cur, v):
    """op(x[idx], values) for the read-modify-write updates, in cur's dtype."""
    from . import numpy as pnp
    fn = {'multiply': pnp.multiply, 'divide': pnp.divide, 'power': pnp.power,
          'min': pnp.minimum, 'max': pnp.maximum, 'add': pnp.add}[mode]
    out = fn(cur, v)
    dt = np.dtype(dtype_of(cur))
    return out if dtype_of(out) == dt else convert.convert_element_type(out, dt)


_NP_AT = {'add': np.add, 'multiply': np.multiply, 'divide': np.divide, 'power': np.power,
          'min': np.minimum, 'max': np.maximum}


def _update(x, idx, values, mode):
    if not isinstance(x, (Tracer, np.ndarray)):
        x = np.asarray(x)
    dt = np.dtype(dtype_of(x))
    if not isinstance(x, Tracer) and not isinstance(values, Tracer) and not _has_tracer(idx):
        out = np.array(x, copy=True)
        v = np.asarray(values).astype(dt, copy=False)
        if mode == 'set':
            out[idx] = v
        elif mode in ('divide', 'power') or (mode == 'multiply' and dt == np.bool_):
            pos = np.arange(out.size).reshape(out.shape)[idx]
            flat = out.reshape(-1)
            vb = np.broadcast_to(v, pos.shape).reshape(-1)
            for p, val in zip(pos.reshape(-1), vb):      # in order, like ufunc.at
                flat[p] = _NP_AT[mode](flat[p], val).astype(dt)
        else:
            _NP_AT[mode].at(out, idx, v)
        return out
    region = _basic_region(idx, tuple(shape_of(x)))
    if region is not None:
        return _update_region(x, values, mode, dt, *region)
    if dt == np.bool_:
        if mode not in ('set', 'min', 'max', 'multiply'):
            raise TypeError(f"x.at[idx].{mode} on a boolean array is not supported; convert "
                            f"it to an integer dtype first")
        as_int = convert.convert_element_type(x, np.dtype(np.uint8))
        mode = {'multiply': 'min'}.get(mode, mode)
        r = _update(as_int, idx, _as_dtype(values, np.dtype(np.uint8)), mode)
        return logical.ne(r, np.uint8(0))
    from .numpy import broadcast_to
    shape = tuple(shape_of(x))
    n = int(np.prod(shape, dtype=np.int64))
    pos = getitem(np.arange(n, dtype=_INDEX_DTYPE).reshape(shape), idx)
    pshape = tuple(shape_of(pos))
    m = int(np.prod(pshape, dtype=np.int64))
    v = broadcast_to(_as_dtype(values, dt), pshape)
    v_flat = shape_ops.reshape(v, (m,))
    x_flat = shape_ops.reshape(x, (n,))
    if isinstance(pos, np.ndarray):
        out = _update_flat_concrete(x_flat, pos.reshape(-1), v_flat, mode, n, dt)
        return shape_ops.reshape(out, shape)
    p_col = shape_ops.reshape(pos, (m, 1))
    if mode == 'add':
        return shape_ops.reshape(slicing.scatter_add(x_flat, p_col, v_flat, (0,)), shape)
    if mode != 'set':
        raise TypeError(f"x.at[idx].{mode} with traced integer-array indices is not "
                        f"supported (repeated positions could not be ordered); use .add, "
                        f".set, or concrete indices")
    hits = slicing.scatter_add(np.zeros(n, np.int32), p_col, np.ones(m, np.int32), (0,))
    mask = logical.gt(hits, np.int32(0))
    upd = slicing.scatter_add(np.zeros(n, dt), p_col, v_flat, (0,))
    return shape_ops.reshape(logical.select_n(mask, x_flat, upd), shape)


def _update_flat_concrete(x_flat, p_flat, v_flat, mode, n, dt):
    """Update flat x at concrete positions p_flat (possibly repeated) with v_flat."""
    m = p_flat.shape[0]
    if mode == 'add':
        return slicing.scatter_add(x_flat, p_flat[:, None], v_flat, (0,))
    if mode == 'set':
        # NumPy assignment: with repeated positions the last value wins
        first_in_reversed = np.unique(p_flat[::-1], return_index=True)[1]
        if len(first_in_reversed) != m:
            keep = np.sort(m - 1 - first_in_reversed)
            p_flat = p_flat[keep]
            v_flat = slicing.gather(v_flat, keep[:, None], (0,))
        return _scatter_set(x_flat, p_flat, v_flat, n, dt)
    # read-modify-write, in rounds: round r applies the r-th occurrence of each
    # position, so repeated positions combine in order, as ufunc.at does
    order = np.argsort(p_flat, kind='stable')
    sp = p_flat[order]
    group_start = np.r_[0, np.nonzero(np.diff(sp))[0] + 1] if m else np.zeros(0, np.int64)
    rank_sorted = np.arange(m) - np.repeat(group_start, np.diff(np.r_[group_start, m]))
    rank = np.empty(m, np.int64)
    rank[order] = rank_sorted
    for r in range(int(rank.max()) + 1 if m else 0):
        sel = np.nonzero(rank == r)[0]
        pos_r = p_flat[sel]
        v_r = v_flat if len(sel) == m else slicing.gather(v_flat, sel[:, None], (0,))
        cur = slicing.gather(x_flat, pos_r[:, None], (0,))
        x_flat = _scatter_set(x_flat, pos_r, _combine(mode, cur, v_r), n, dt)
    return x_flat


def _scatter_set(x_flat, positions, vals, n, dt):
    """x_flat with x_flat[positions] = vals, for distinct concrete positions."""
    mask = np.zeros(n, bool)
    mask[positions] = True
    upd = slicing.scatter_add(np.zeros(n, dt), positions[:, None], vals, (0,))
    return logical.select_n(mask, x_flat, upd)


def _basic_region(idx, shape):
    """For an index of integers (static or traced), unit-step slices, None and
    ellipsis: (starts, sizes, shape of x[idx]); else None."""
    if isinstance(idx, (list, np.ndarray)) or (isinstance(idx, Tracer) and idx.shape):
        return None
    tup = idx if isinstance(idx, tuple) else (idx,)
    for e in tup:
        if not (e is None or e is Ellipsis or isinstance(e, (_slice, int, np.integer))
                or (isinstance(e, Tracer) and not e.shape and e.dtype.kind in 'iu')):
            return None
        if isinstance(e, (bool, np.bool_)):
            return None
    entries = _expand(idx, shape)
    nd = len(shape)
    starts, sizes = [0] * nd, list(shape)
    probe = []
    for kind, v, d in entries:
        if kind == _SLICE:
            start, stop, step = v.indices(shape[d])
            if step != 1:
                return None
            starts[d], sizes[d] = start, builtins.max(0, stop - start)
            probe.append(v)
        elif kind == _INT:
            n = shape[d]
            if not -n <= v < n:
                raise IndexError(f"index {v} is out of bounds for axis {d} with size {n}")
            starts[d], sizes[d] = v % n, 1
            probe.append(0)
        elif kind == _DYN:
            starts[d], sizes[d] = _normalize_scalar(v, shape[d]), 1
            probe.append(0)
        elif kind == _NONE:
            probe.append(None)
        elif kind != _SEP:
            return None
    view = np.broadcast_to(np.zeros((), np.int8), shape)
    return starts, sizes, view[tuple(probe)].shape


def _update_region(x, values, mode, dt, starts, sizes, res_shape):
    """The update of a rectangular region: one dynamic_update_slice."""
    from .numpy import broadcast_to
    v = broadcast_to(_as_dtype(values, dt), res_shape)
    new = shape_ops.reshape(v, tuple(sizes))
    if mode != 'set':
        cur = slicing.dynamic_slice(x, starts, sizes)
        new = _combine(mode, cur, new)
    return slicing.dynamic_update_slice(x, new, starts)
