"""Turn the runners' raw records into the report: one row per workload metric with
each column's figure, the target and PASS/MISS; plus the table and notes as text.

The targets (cotangent's goals; ratios to hand-written NumPy, lower is better):
W1 grad <= 4x, W2 grad <= 1.15x, W3 HVP <= 6x, W4 value_and_grad <= 1.3x;
W5 make_jaxpr(f) <= 10 us per op, make_jaxpr(grad f) and of the HVP <= 0.3x JAX's
time in the same run, equations of grad <= 0.7x JAX's and of the HVP <= 0.6x; the
100,000-op chain traces, differentiates and prints without RecursionError, within
12x the 10,000-op time. W6 jacrev and jacfwd <= 20x; PEG (per-example gradients of
the W2 MLP) vmap(grad) no slower than torch.func.vmap(grad) in the same run, and at
least 10x faster than a Python loop of grads. W8 (an RNN through lax.scan): grad
<= 3x hand-written BPTT, tracing 100,000 steps within 1.5x the time of 1,000
(same equations). W9 (checkpointed blocks of the RNN): saved residual bytes
cut >= 5x at <= 1.5x the time.
"""
COLUMNS = (('cotangent', 'cotangent'), ('numpy', 'numpy'), ('jax', 'jax eager'),
           ('jax_jit', 'jax jit'), ('autograd', 'autograd'), ('torch', 'torch'))
SIDE_OF = {'cotangent': 'cotangent', 'cotangent_jit': 'cotangent', 'jax': 'jax', 'jax_jit': 'jax', 'autograd': 'autograd',
           'torch': 'torch'}

RATIO_ROWS = (
    ('W1', 'grad', 'grad(f), 16 x 100 ops', 4.0),
    ('W1', 'forward', 'f(x) alone', None),
    ('W2', 'grad', 'MLP grad, 6 params', 1.15),
    ('W3', 'hvp', 'HVP jvp(grad f)', 6.0),
    ('W4', 'value_and_grad', 'value_and_grad, 1e6', 1.3),
    ('W6', 'jacrev', 'jacrev(g), W 200x200', 20.0),
    ('W6', 'jacfwd', 'jacfwd(g), W 200x200', 20.0),
    # a column's name as the limit: at most that column's ratio in the same run
    ('PEG', 'vmap_grad', 'per-example grads, vmap(grad)', 'torch'),
    ('PEG', 'loop_grad', 'per-example grads, loop of grad', None),
    ('PEG', 'output_floor', 'allocate + write the output only', None),
    ('W8', 'grad', 'RNN grad, scan of 1,000 steps', 3.0),
)
# targets of cotangent's jit (transforms.jit) column, one extra row each
JIT_TARGETS = {('W1', 'grad'): 0.18, ('W1', 'forward'): None, ('W2', 'grad'): 1.0,
               ('W3', 'hvp'): 1.0, ('W4', 'value_and_grad'): 0.26,
               ('W6', 'jacrev'): 14.0, ('W6', 'jacfwd'): 14.0}
JIT_TARGETS[('W8', 'grad')] = 1.2      # jit(grad) of the RNN scan vs hand BPTT
# W7: first call of jit(value_and_grad(f)) in a fresh process, ms; targets vs JAX's
W7_LABEL = {'mlp': 'MLP (W2)', 'gelu': 'GELU (W4)'}
W7_COLD_LIMIT, W7_WARM_LIMIT = 1.5, 0.3
PEG_SPEEDUP = 10.0   # vmap(grad) at least this many times faster than the loop of grads
W5_LABEL = {'f': 'make_jaxpr(f)', 'grad': 'make_jaxpr(grad f)', 'hvp': 'make_jaxpr(hvp)'}
W5_TIME_TARGET = {'f': ('abs', 10.0), 'grad': ('jax', 0.3), 'hvp': ('jax', 0.3)}
W5_EQN_TARGET = {'f': None, 'grad': 0.7, 'hvp': 0.6}
SCALE_LIMIT = 12.0


def fmt_ratio(r):
    if r is None:
        return None
    if r < 10:
        return f"{r:.2f}"
    if r < 100:
        return f"{r:.1f}"
    return f"{r:.0f}"


def _status(measured, limit):
    if limit is None:
        return ''
    if measured is None:
        return 'ERR'
    return 'PASS' if measured <= limit else 'MISS'


def merge(results):
    """{(workload, metric): merged record} from the runners' results."""
    merged = {}
    for res in results:
        side = res.get('side')
        for rec in res.get('records', []):
            key = (rec['workload'], rec['metric'])
            m = merged.setdefault(key, {'kind': rec['kind'], 'errors': {}, 'by_side': {}})
            m['by_side'][side] = rec
            m['errors'].update(rec.get('errors', {}))
    return merged


JOB_METRICS = {'W1': ('grad', 'forward'), 'W2': ('grad',), 'W3': ('hvp',),
               'W4': ('value_and_grad',), 'W6': ('jacrev', 'jacfwd'),
               'PEG': ('vmap_grad', 'loop_grad', 'output_floor'), 'W8': ('grad',)}


def placeholder(job, side, msg):
    """The result of a runner that did not run (peer not installed: msg starts with
    'not installed') or failed: every figure of its side is missing, with `msg`."""
    cols = [c for c, s in SIDE_OF.items() if s == side]
    if job in JOB_METRICS:
        records = [{'workload': job, 'metric': m, 'kind': 'ratio', 'numpy_seconds': None,
                    'seconds': {}, 'ratios': {}, 'errors': {c: msg for c in cols}}
                   for m in JOB_METRICS[job]]
    elif job == 'W5':
        records = [{'workload': 'W5', 'metric': 'make_jaxpr', 'kind': 'w5', 'seconds': {},
                    'counts': {}, 'errors': {w: msg for w in W5_LABEL}}]
    else:
        records = [{'workload': 'W5', 'metric': 'scale', 'kind': 'scale', 'results': {},
                    'errors': {'cotangent': msg}}]
    return {'job': job, 'side': side, 'records': records, 'error': msg}


def build_rows(results):
    """Report rows from the runners' results (placeholders included)."""
    merged = merge(results)
    rows = []
    for wid, metric, label, limit in RATIO_ROWS:
        m = merged.get((wid, metric))
        if m is None:
            continue  # workload not selected
        cells, ratios, seconds, errors = {}, {}, {}, dict(m['errors'])
        numpy_seconds = {}
        for side, rec in m['by_side'].items():
            if rec.get('numpy_seconds'):
                numpy_seconds[side] = rec['numpy_seconds']
            for col, r in rec['ratios'].items():
                ratios[col] = r
                seconds[col] = rec['seconds'].get(col)
        for col, _ in COLUMNS:
            if col == 'numpy':
                cells[col] = '1.00' if numpy_seconds else None
            elif ratios.get(col) is not None:
                cells[col] = fmt_ratio(ratios[col])
        measured = ratios.get('cotangent')
        if isinstance(limit, str):   # relative to a peer's ratio in the same run
            target, limit = f"<= {limit}", ratios.get(limit)
        else:
            target = f"<= {limit:g}x" if limit else ''
        rows.append({'workload': wid, 'metric': label, 'key': metric, 'cells': cells,
                     'ratios': ratios, 'seconds': seconds, 'numpy_seconds': numpy_seconds,
                     'errors': errors, 'target': target,
                     'measured': measured, 'status': _status(measured, limit)})
        if ratios.get('cotangent_jit') is not None or 'cotangent_jit' in errors:
            jl = JIT_TARGETS.get((wid, metric))
            jm = ratios.get('cotangent_jit')
            # the jit figure sits in the cotangent column of its own row
            rows.append({'workload': wid, 'metric': label + ', jit', 'key': metric + '_jit',
                         'cells': {'cotangent': fmt_ratio(jm)} if jm is not None else {},
                         'ratios': {'cotangent': jm},
                         'seconds': {'cotangent': seconds.get('cotangent_jit')},
                         'numpy_seconds': numpy_seconds, 'errors': {
                             'cotangent': v for k, v in errors.items() if k == 'cotangent_jit'},
                         'target': f"<= {jl:g}x" if jl else '', 'measured': jm,
                         'status': _status(jm, jl)})
    w7 = merged.get(('W7', 'first_call'))
    if w7 is not None:
        rows.extend(_w7_rows(w7))
    rows.extend(_peg_speedup_rows(rows))
    w5 = merged.get(('W5', 'make_jaxpr'))
    if w5 is not None:
        rows.extend(_w5_rows(w5))
    scale = merged.get(('W5', 'scale'))
    if scale is not None:
        rows.extend(_scale_rows(scale))
    # rows a runner computed itself (W8 tracing, W9 checkpointing)
    by_workload = {}
    for r in rows:
        by_workload.setdefault(r['workload'], []).append(r)
    for (wid, _), m in merged.items():
        if m['kind'] == 'figures':
            extra = m['by_side'].get('cotangent', {}).get('rows', [])
            by_workload.setdefault(wid, []).extend(extra)
    return [r for wid in by_workload for r in by_workload[wid]]


def _peg_speedup_rows(rows):
    """How many times faster vmap(grad) is than the Python loop of grads."""
    by = {r['key']: r for r in rows if r['workload'] == 'PEG'}
    if 'vmap_grad' not in by or 'loop_grad' not in by:
        return []
    v, l = by['vmap_grad']['measured'], by['loop_grad']['measured']
    speed = None if not v or not l else l / v
    rows = [{'workload': 'PEG', 'metric': 'loop / vmap(grad) time', 'key': 'speedup',
             'cells': {'cotangent': fmt_ratio(speed)}, 'errors': {},
             'target': f">= {PEG_SPEEDUP:g}x", 'measured': speed,
             'status': 'ERR' if speed is None else 'PASS' if speed >= PEG_SPEEDUP else 'MISS'}]
    f = by.get('output_floor', {}).get('measured')
    if f and l:
        # the speed-up a vmap that only wrote its output would reach: the ceiling
        rows.append({'workload': 'PEG', 'metric': 'loop / output floor (ceiling)',
                     'key': 'ceiling', 'cells': {'cotangent': fmt_ratio(l / f)},
                     'errors': {}, 'target': '', 'measured': l / f, 'status': ''})
    return rows


def _w5_rows(w5):
    by = w5['by_side']
    cot, jx = by.get('cotangent', {}), by.get('jax', {})
    n = cot.get('n_ops') or jx.get('n_ops') or 2000

    def per_op(rec, what):
        t = rec.get('seconds', {}).get(what)
        return None if t is None else t / n * 1e6

    def errs(what):
        e = {}
        for side, rec in (('cotangent', cot), ('jax', jx)):
            msg = rec.get('errors', {}).get(what)
            if msg:
                e[side] = msg
        return e

    rows = []
    for what in ('f', 'grad', 'hvp'):
        c, j = per_op(cot, what), per_op(jx, what)
        kind, limit = W5_TIME_TARGET[what]
        if kind == 'abs':
            measured, target = c, f"<= {limit:g} us/op"
            ccell = None if c is None else f"{c:.2f}"
        else:
            measured = None if c is None or j is None else c / j
            target = f"<= {limit:g}x jax"
            ccell = None if c is None else f"{c:.2f}" + (
                f" ({measured:.2f}x)" if measured is not None else '')
        rows.append({'workload': 'W5', 'metric': f"{W5_LABEL[what]} us/op, {n:,} ops",
                     'key': f"time_{what}", 'us_per_op': {'cotangent': c, 'jax': j},
                     'cells': {'cotangent': ccell, 'jax': None if j is None else f"{j:.1f}"},
                     'errors': errs(what), 'target': target, 'measured': measured,
                     'status': _status(measured, limit)})
    for what in ('f', 'grad', 'hvp'):
        c, j = cot.get('counts', {}).get(what), jx.get('counts', {}).get(what)
        limit = W5_EQN_TARGET[what]
        measured = None if c is None or j is None else c[1] / j[1]
        ccell = None if c is None else f"{c[1]:,}" + (
            f" ({measured:.2f}x)" if measured is not None else '')
        rows.append({'workload': 'W5', 'metric': f"equations of {W5_LABEL[what]}",
                     'key': f"eqns_{what}",
                     'counts': {'cotangent': c and c[1], 'jax': j and j[1]},
                     'counts_top_level': {'cotangent': c and c[0], 'jax': j and j[0]},
                     'cells': {'cotangent': ccell, 'jax': None if j is None else f"{j[1]:,}"},
                     'errors': errs(what), 'target': f"<= {limit:g}x jax" if limit else '',
                     'measured': measured, 'status': _status(measured, limit)})
    return rows


def _w7_rows(w7):
    cot = w7['by_side'].get('cotangent', {}).get('ms', {})
    jx = w7['by_side'].get('jax', {}).get('ms', {})
    rows = []
    for what, label in W7_LABEL.items():
        j = jx.get(f'{what}_cold')
        for phase, limit in (('cold', W7_COLD_LIMIT), ('warm', W7_WARM_LIMIT)):
            c = cot.get(f'{what}_{phase}')
            measured = None if c is None or not j else c / j
            cell = None if c is None else f"{c:.0f}" + (
                f" ({measured:.2f}x)" if measured is not None else '')
            rows.append({'workload': 'W7', 'key': f'{what}_{phase}',
                         'metric': f"first call ms, {label}, {phase} cache",
                         'cells': {'cotangent': cell,
                                   'jax_jit': None if j is None else f"{j:.0f}"},
                         'errors': dict(w7['errors']),
                         'target': f"<= {limit:g}x jax cold", 'measured': measured,
                         'status': _status(measured, limit)})
    return rows


def _scale_rows(scale):
    rec = scale['by_side'].get('cotangent', {})
    res = {int(k): v for k, v in rec.get('results', {}).items()}
    rows = []
    if not res:
        return [{'workload': 'W5', 'metric': 'scale 10k / 100k ops', 'cells': {},
                 'errors': dict(scale['errors']), 'target': 'no RecursionError',
                 'measured': None, 'status': 'ERR'}]
    for n in (10_000, 100_000):
        r = res.get(n, {'error': 'not run'})
        ok = 'error' not in r
        cell = (f"{r['make_jaxpr_f']:.2f}/{r['make_jaxpr_grad']:.2f}/{r['str_grad']:.2f}"
                if ok else None)
        rows.append({'workload': 'W5', 'metric': f"{n // 1000}k ops: f / grad / str, s",
                     'key': f"scale_{n}", 'scale': r, 'cells': {'cotangent': cell},
                     'errors': {} if ok else {'cotangent': r['error']},
                     'target': 'no RecursionError', 'measured': None,
                     'status': 'PASS' if ok else 'MISS'})
    a, b = res.get(10_000, {}), res.get(100_000, {})
    ratio = b['total'] / a['total'] if 'total' in a and 'total' in b else None
    rows.append({'workload': 'W5', 'metric': '100k / 10k ops time', 'key': 'scale_ratio',
                 'cells': {'cotangent': fmt_ratio(ratio)}, 'errors': {},
                 'target': f"<= {SCALE_LIMIT:g}x", 'measured': ratio,
                 'status': _status(ratio, SCALE_LIMIT)})
    return rows


# --- text ------------------------------------------------------------------------------------

def _cell(row, key):
    cell = row.get('cells', {}).get(key)
    if cell is not None:
        return cell
    err = row.get('errors', {}).get(key)
    if err is None:
        return '—'
    return '—' if err.startswith('not installed') else 'ERR'


def format_table(rows):
    head = ['workload', 'metric'] + [title for _, title in COLUMNS] + ['target', 'result']
    lines = [[r['workload'], r['metric']] + [_cell(r, k) for k, _ in COLUMNS] +
             [r.get('target', ''), r.get('status', '')] for r in rows]
    widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]

    def fmt(cols):
        return '  '.join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cols, widths))).rstrip()
    out = [fmt(head), '  '.join('-' * w for w in widths)]
    prev = None
    for cols in lines:
        if prev is not None and cols[0] != prev:
            out.append('')
        out.append(fmt(cols))
        prev = cols[0]
    return '\n'.join(out)


def _human(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_absolute(rows):
    lines = []
    for r in rows:
        if 'numpy_seconds' not in r or not (r['seconds'] or r['numpy_seconds']):
            continue
        parts = []
        for col, _ in COLUMNS:
            if col == 'numpy':
                np_s = r['numpy_seconds']
                if np_s:
                    vals = sorted(v for v in np_s.values() if v)
                    parts.append(f"numpy {_human(vals[0])}" + (
                        f"..{_human(vals[-1])}" if len(vals) > 1 and vals[-1] > 1.02 * vals[0]
                        else ''))
            elif r['seconds'].get(col):
                parts.append(f"{col} {_human(r['seconds'][col])}")
        lines.append(f"  {r['workload']} {r['metric']}: " + ', '.join(parts))
    return '\n'.join(lines)


def format_notes(rows):
    notes, absent = [], set()
    for r in rows:
        for key, err in sorted(r.get('errors', {}).items()):
            if not err:
                continue
            if err.startswith('not installed'):
                absent.add(key)
                continue
            first = err.strip().splitlines()[0] if err.strip() else err
            notes.append(f"  {r['workload']} {r['metric']} [{key}]: {first[:300]}")
    if absent:
        notes.append(f"  not installed (shown as —): {', '.join(sorted(absent))}")
    return '\n'.join(notes)
