"""Per-workload measurement inside one runner process: build the implementations of
one *side* (cotangent, or one peer framework) next to the hand-written NumPy
version, check their results against it, time them interleaved with it, and return
raw records (seconds, ratios to this process's NumPy time, equation counts, errors).

Each side runs in its own process, so one framework's imports (and the objects
they leave for the garbage collector to scan) never slow another's figures, and
each ratio's two times come from the same process and the same minutes.

Imported only inside a runner process (after pinning and thread limits).
"""
import platform
import sys
import time
import traceback

import numpy as np

from . import workloads as W
from . import peers as P
from .harness import Settings, time_interleaved, time_once_each, paired_ratio, log

SIDE_COLUMNS = {'cotangent': ('cotangent', 'cotangent_jit'), 'jax': ('jax', 'jax_jit'),
                'autograd': ('autograd',), 'torch': ('torch',)}


# --- the library under test ---------------------------------------------------------------

class Cotangent:
    """cotangent's public API, or the import error that stops it."""

    def __init__(self):
        self.error = None
        try:
            import primitives.numpy as pnp
            from transforms import grad, jvp, value_and_grad, vmap, jacfwd, jacrev
            from tracer import make_jaxpr
            from transforms import jit
        except Exception as e:  # reported in the table
            self.error = f"{type(e).__name__}: {e}"
            log(f"importing cotangent failed:\n{traceback.format_exc()}")
            return
        self.pnp, self.grad, self.jvp = pnp, grad, jvp
        self.value_and_grad, self.make_jaxpr = value_and_grad, make_jaxpr
        self.jit = jit
        self.vmap, self.jacfwd, self.jacrev = vmap, jacfwd, jacrev


# --- checking results --------------------------------------------------------------------

def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        out = []
        for t in tree:
            out.extend(_leaves(t))
        return out
    return [np.asarray(tree)]


def _mismatch(got, want, rtol, atol):
    """None if `got` matches `want` (same structure, shapes, values), else why not."""
    g, w = _leaves(got), _leaves(want)
    if len(g) != len(w):
        return f"wrong result: {len(g)} arrays, expected {len(w)}"
    for i, (a, b) in enumerate(zip(g, w)):
        if a.shape != b.shape:
            return f"wrong result: output {i} has shape {a.shape}, expected {b.shape}"
        if not np.allclose(a, b, rtol=rtol, atol=atol):
            err = float(np.max(np.abs(a.astype(np.float64) - b)))
            return f"wrong result: output {i} differs from hand-written NumPy by up to {err:.3g}"
    return None


def _err(e):
    return f"{type(e).__name__}: {str(e)[:400]}"


# --- W1 - W4: ratios to NumPy -------------------------------------------------------------

def ratio_record(wid, metric, numpy_fn, impls, errors, settings, rtol, atol):
    """Check and time `impls` ({column: peers.Peer}) against `numpy_fn`."""
    ref = numpy_fn()
    ok = {'numpy': numpy_fn}
    for name, impl in impls.items():
        try:
            why = _mismatch(impl.result(), ref, rtol, atol)
        except Exception as e:
            why = _err(e)
            log(f"[{wid} {metric}] {name} failed:\n{traceback.format_exc()}")
        if why is None:
            ok[name] = impl.timed
        else:
            errors[name] = why
    log(f"[{wid} {metric}] timing {', '.join(ok)}")
    times, terr, other, rounds = time_interleaved(ok, settings)
    errors.update(terr)
    base = times.pop('numpy')
    return {'workload': wid, 'metric': metric, 'kind': 'ratio', 'numpy_seconds': base,
            'seconds': times, 'errors': errors, 'clock': settings.clock,
            'other_clock_seconds': other,
            'ratios': {k: paired_ratio(rounds, k, 'numpy') for k in times},
            'ratios_of_medians': {k: (None if t is None or not base else t / base)
                                  for k, t in times.items()}}


def _build(errors, columns, build):
    """Run `build()` -> {column: Peer}; a failure marks every column of the side."""
    try:
        return build()
    except Exception as e:
        for c in columns:
            errors[c] = _err(e)
        log(f"building {'/'.join(columns)} failed:\n{traceback.format_exc()}")
        return {}


def _impls(side, ctx, errors, cot_build, peer_build):
    cols = SIDE_COLUMNS[side]
    if side == 'cotangent':
        if ctx.error is not None:
            errors['cotangent'] = ctx.error
            return {}
        return _build(errors, cols, cot_build)
    for c in cols:
        if c in ctx.absent:
            errors[c] = f"not installed ({ctx.absent[c]})"
    if all(c in errors for c in cols):
        return {}
    return _build(errors, cols, peer_build)


def run_w1(settings, side, ctx):
    x, _ = W.w1_data()
    out = []
    for metric in ('grad', 'forward'):
        errors = {}
        if metric == 'grad':
            def numpy_fn():
                return W.w1_numpy_grad(x)
        else:
            f_np = W.make_chain(np, W.W1_OPS)

            def numpy_fn():
                return f_np(x)

        def cot_build(metric=metric):
            f = W.make_chain(ctx.pnp, W.W1_OPS)
            fn = ctx.grad(f) if metric == 'grad' else f
            fj = ctx.jit(fn)
            return {'cotangent': P.Peer(lambda: fn(x), P._same),
                    'cotangent_jit': P.Peer(lambda: fj(x), P._same)}
        impls = _impls(side, ctx, errors, cot_build, lambda: P.w1(ctx, x, metric))
        out.append(ratio_record('W1', metric, numpy_fn, impls, errors, settings,
                                rtol=1e-9, atol=1e-12))
    return out


def run_w2(settings, side, ctx):
    params, x, onehot = W.w2_data()
    errors = {}

    def cot_build():
        g = ctx.grad(W.make_mlp_loss(ctx.pnp))
        gj = ctx.jit(g)
        return {'cotangent': P.Peer(lambda: g(params, x, onehot), P._same),
                'cotangent_jit': P.Peer(lambda: gj(params, x, onehot), P._same)}
    impls = _impls(side, ctx, errors, cot_build, lambda: P.w2(ctx, params, x, onehot))
    return [ratio_record('W2', 'grad', lambda: W.w2_numpy_grad(params, x, onehot), impls,
                         errors, settings, rtol=2e-3, atol=2e-5)]


def run_w3(settings, side, ctx):
    a, x, v = W.w3_data()
    errors = {}

    def cot_build():
        gf = ctx.grad(W.make_w3_f(ctx.pnp, a))
        jvp = ctx.jvp

        def hvp(x, v):
            return jvp(gf, (x,), (v,))[1]
        hj = ctx.jit(hvp)
        return {'cotangent': P.Peer(lambda: hvp(x, v), P._same),
                'cotangent_jit': P.Peer(lambda: hj(x, v), P._same)}
    impls = _impls(side, ctx, errors, cot_build, lambda: P.w3(ctx, a, x, v))
    return [ratio_record('W3', 'hvp', lambda: W.w3_numpy_hvp(a, x, v), impls, errors,
                         settings, rtol=1e-9, atol=1e-11)]


def run_w4(settings, side, ctx):
    x = W.w4_data()
    errors = {}

    def cot_build():
        vg = ctx.value_and_grad(W.make_w4_f(ctx.pnp))
        vj = ctx.jit(vg)
        return {'cotangent': P.Peer(lambda: vg(x), P._same),
                'cotangent_jit': P.Peer(lambda: vj(x), P._same)}
    impls = _impls(side, ctx, errors, cot_build, lambda: P.w4(ctx, x))
    return [ratio_record('W4', 'value_and_grad', lambda: W.w4_numpy_value_and_grad(x),
                         impls, errors, settings, rtol=1e-9, atol=1e-6)]


def run_w6(settings, side, ctx):
    w, x = W.w6_data()
    out = []
    for metric in ('jacrev', 'jacfwd'):
        errors = {}

        def cot_build(metric=metric):
            jac = (ctx.jacrev if metric == 'jacrev' else ctx.jacfwd)(W.make_w6_g(ctx.pnp, w))
            jj = ctx.jit(jac)
            return {'cotangent': P.Peer(lambda: jac(x), P._same),
                    'cotangent_jit': P.Peer(lambda: jj(x), P._same)}
        impls = _impls(side, ctx, errors, cot_build, lambda m=metric: P.w6(ctx, w, x, m))
        out.append(ratio_record('W6', metric, lambda: W.w6_numpy_jacobian(w, x), impls,
                                errors, settings, rtol=1e-9, atol=1e-12))
    return out


def run_peg(settings, side, ctx):
    """Per-example gradients of the W2 MLP (batch 128, float32): vmap(grad) against
    the hand-vectorised NumPy backprop; and cotangent's Python loop of 128 grads."""
    params, x, onehot = W.w2_data()
    n = x.shape[0]
    settings.samples = 3 if settings.quick else 7
    settings.warmup = 1
    out = []
    ref = W.peg_numpy_grads(params, x, onehot)
    for metric in ('vmap_grad', 'loop_grad', 'output_floor'):
        errors = {}

        def cot_build(metric=metric):
            if metric == 'output_floor':
                # no arithmetic: allocate and write arrays of the output's shapes
                # (343 MB of float32), the least time any per-example gradient
                # computation needs on this machine; checked as the reference
                shapes = [(r.shape, r.dtype) for r in ref]
                return {'cotangent': P.Peer(
                    lambda: tuple(np.ones(s, d) for s, d in shapes), lambda _: ref)}
            loss_one = W.make_mlp_loss_one(ctx.pnp)
            if metric == 'vmap_grad':
                pe = ctx.vmap(ctx.grad(loss_one), in_axes=(None, 0, 0))
                return {'cotangent': P.Peer(lambda: pe(params, x, onehot), P._same)}
            g = ctx.grad(loss_one)

            def loop():
                gs = [g(params, x[i], onehot[i]) for i in range(n)]
                return tuple(np.stack(k) for k in zip(*gs))
            return {'cotangent': P.Peer(loop, P._same)}

        def peer_build(metric=metric):
            return P.peg(ctx, params, x, onehot) if metric == 'vmap_grad' else {}
        if metric == 'output_floor' and side != 'cotangent':
            continue
        impls = _impls(side, ctx, errors, cot_build, peer_build)
        out.append(ratio_record('PEG', metric, lambda: W.peg_numpy_grads(params, x, onehot),
                                impls, errors, settings, rtol=2e-3, atol=2e-5))
    return out


# --- W5: tracing cost and jaxpr size ----------------------------------------------------

def _cot_tracers(cot, x, v, n_ops):
    pnp, grad, jvp, make_jaxpr = cot.pnp, cot.grad, cot.jvp, cot.make_jaxpr

    def tr_f():
        return make_jaxpr(W.make_chain(pnp, n_ops))(x)

    def tr_grad():
        return make_jaxpr(grad(W.make_chain(pnp, n_ops)))(x)

    def tr_hvp():
        f = W.make_chain(pnp, n_ops)
        return make_jaxpr(lambda x, v: jvp(grad(f), (x,), (v,))[1])(x, v)
    return {'f': tr_f, 'grad': tr_grad, 'hvp': tr_hvp}


def run_w5(settings, side, ctx):
    """Seconds of make_jaxpr(f), make_jaxpr(grad f), make_jaxpr(hvp) on a freshly
    built 2,000-op chain, and each jaxpr's equation count."""
    n = W.W5_OPS
    x, v = W.w1_data()
    settings.samples = 3 if settings.quick else 7
    settings.warmup = 1
    errors, fns, counts = {}, {}, {}
    if side == 'cotangent':
        if ctx.error is not None:
            errors = {w: ctx.error for w in ('f', 'grad', 'hvp')}
            trs = {}
        else:
            trs = _cot_tracers(ctx, x, v, n)
    else:
        if ctx.jax is None:
            msg = f"not installed ({ctx.absent.get('jax')})"
            errors = {w: msg for w in ('f', 'grad', 'hvp')}
            trs = {}
        else:
            trs = P.w5_tracers(ctx, x, v, n)
    for what, fn in trs.items():
        try:
            counts[what] = W.count_eqns(fn())
            fns[what] = fn
        except Exception as e:  # RecursionError included
            errors[what] = _err(e)
            log(f"[W5] {side} {what} failed:\n{traceback.format_exc(limit=8)}")
    log(f"[W5] timing {side}: {', '.join(fns)}")
    times, terr, other, _ = time_interleaved(fns, settings)
    errors.update(terr)
    return [{'workload': 'W5', 'metric': 'make_jaxpr', 'kind': 'w5', 'n_ops': n,
             'seconds': times, 'counts': counts, 'errors': errors, 'clock': settings.clock,
             'other_clock_seconds': other}]


def run_w5_scale(settings, side, ctx):
    """make_jaxpr(f), make_jaxpr(grad f) and str() of the latter on 10k and 100k op
    chains, at Python's default recursion limit."""
    res = {}
    if ctx.error is not None:
        return [{'workload': 'W5', 'metric': 'scale', 'kind': 'scale', 'results': {},
                 'errors': {'cotangent': ctx.error}}]
    x, _ = W.w1_data()
    pnp, grad, make_jaxpr = ctx.pnp, ctx.grad, ctx.make_jaxpr
    for n in (10_000, 100_000):
        state = {}

        def tr_f():
            return make_jaxpr(W.make_chain(pnp, n))(x)

        def tr_grad():
            state['jaxpr'] = make_jaxpr(grad(W.make_chain(pnp, n)))(x)

        def to_str():
            return str(state['jaxpr'])
        # the 10k runs are cheap: more samples steady the 100k/10k ratio's denominator;
        # the 100k runs reuse the warm 10k code paths
        samples = settings.slow_samples if n == 100_000 or settings.quick else 5
        warm = 1 if n == 10_000 else 0
        try:
            t0 = time.perf_counter()
            tf = time_once_each(tr_f, samples, warm, settings.clock)
            tg = time_once_each(tr_grad, samples, warm, settings.clock)
            ts = time_once_each(to_str, samples, warm, settings.clock)
            res[n] = {'make_jaxpr_f': tf, 'make_jaxpr_grad': tg, 'str_grad': ts,
                      'total': tf + tg + ts, 'grad_eqns': W.count_eqns(state['jaxpr'])[1],
                      'recursion_limit': sys.getrecursionlimit()}
            log(f"[W5-scale] {n} ops: f {tf:.3f}s grad {tg:.3f}s str {ts:.3f}s "
                f"({time.perf_counter() - t0:.1f}s wall)")
        except Exception as e:  # RecursionError included
            log(f"[W5-scale] {n} failed:\n{traceback.format_exc(limit=12)}")
            res[n] = {'error': _err(e)}
        state.clear()
    return [{'workload': 'W5', 'metric': 'scale', 'kind': 'scale', 'results': res,
             'errors': {}}]


# --- entry ------------------------------------------------------------------------------

# --- W7: first call of jit(value_and_grad(f)) in a fresh process ------------------------

_W7_SCRIPT = '''
import os, sys, time
from benchmarks.runner import _prepare
_prepare(None)
import numpy as np
from benchmarks import workloads as W
what, side = sys.argv[1], sys.argv[2]
if side == 'cotangent':
    import primitives.numpy as ns
    from transforms import jit, value_and_grad
    block = lambda r: r
else:
    import jax
    jax.config.update('jax_enable_x64', True)
    jax.config.update('jax_platforms', 'cpu')
    import jax.numpy as ns
    from jax import jit, value_and_grad
    block = jax.block_until_ready
if what == 'mlp':
    params, x, onehot = W.w2_data()
    args = (params, x, onehot)
    f = W.make_mlp_loss(ns)
else:
    args = (W.w4_data(),)
    f = W.make_w4_f(ns)
fn = jit(value_and_grad(f))
t0 = time.perf_counter()
block(fn(*args))
print((time.perf_counter() - t0) * 1e3)
'''


def _w7_once(what, side, cache_dir):
    import os
    import subprocess
    env = dict(os.environ)
    env['COTANGENT_CACHE_DIR'] = cache_dir
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = repo + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    r = subprocess.run([sys.executable, '-c', _W7_SCRIPT, what, side], env=env, cwd=repo,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'failed')
    return float(r.stdout.split()[-1])


def run_w7(settings, side, ctx):
    """Milliseconds of the first call (trace + compile + run) of
    jit(value_and_grad(f)) for the W2 MLP and W4 GELU, each in a fresh process
    (median of a few): cotangent with an empty cache directory ('cold') and again in
    a second process sharing it ('warm'); JAX's first call (its cold start)."""
    import statistics
    import tempfile
    reps = 1 if settings.quick else 3
    ms, errors = {}, {}
    for what in ('mlp', 'gelu'):
        try:
            if side == 'cotangent':
                cold, warm = [], []
                for _ in range(reps):
                    with tempfile.TemporaryDirectory() as d:
                        cold.append(_w7_once(what, side, d))
                        warm.append(_w7_once(what, side, d))
                ms[f'{what}_cold'] = statistics.median(cold)
                ms[f'{what}_warm'] = statistics.median(warm)
                log(f"[W7] cotangent {what}: cold {cold} warm {warm} ms")
            else:
                if ctx.jax is None:
                    raise RuntimeError(f"not installed ({ctx.absent.get('jax')})")
                with tempfile.TemporaryDirectory() as d:
                    cold = [_w7_once(what, side, d) for _ in range(reps)]
                ms[f'{what}_cold'] = statistics.median(cold)
                log(f"[W7] jax {what}: cold {cold} ms")
        except Exception as e:
            errors['cotangent_jit' if side == 'cotangent' else 'jax_jit'] = _err(e)
            log(f"[W7] {side} {what} failed:\n{traceback.format_exc()}")
    return [{'workload': 'W7', 'metric': 'first_call', 'kind': 'w7', 'ms': ms,
             'errors': errors}]


# --- W8 / W9: an RNN through lax.scan; checkpointed blocks ---------------------------------

class _Abstract:
    """A shape/dtype stand-in for an argument of make_jaxpr (no data)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, np.dtype(dtype)


def _figure(wid, metric, label, cell, target, measured, status, **extra):
    return {'workload': wid, 'metric': label, 'key': metric, 'cells': {'cotangent': cell},
            'errors': {}, 'target': target, 'measured': measured, 'status': status, **extra}


def run_w8(settings, side, ctx):
    params, X = W.rnn_data()
    errors = {}
    records = []

    def cot_build():
        from primitives import lax
        g = ctx.grad(W.make_rnn_loss(ctx.pnp, lax))
        gj = ctx.jit(g)        # both scans compiled to numba loops
        return {'cotangent': P.Peer(lambda: g(params, X), P._same),
                'cotangent_jit': P.Peer(lambda: gj(params, X), P._same)}
    impls = _impls(side, ctx, errors, cot_build, lambda: {})
    records.append(ratio_record('W8', 'grad', lambda: W.rnn_numpy_grad(params, X), impls,
                                errors, settings, rtol=1e-9, atol=1e-9))
    # tracing the scan: make_jaxpr(grad(loss)) at 1,000 and 100,000 steps
    rows, err = [], None
    try:
        from primitives import lax
        loss = W.make_rnn_loss(ctx.pnp, lax)
        abstract_params = tuple(_Abstract(p.shape, p.dtype) for p in params)
        times, eqns = {}, {}
        for T in (1_000, 100_000):
            xa = _Abstract((T, W.RNN_D), np.float64)
            tr = lambda: ctx.make_jaxpr(ctx.grad(loss))(abstract_params, xa)
            times[T] = time_once_each(tr, max(settings.slow_samples, 5), clock=settings.clock)
            eqns[T] = len(tr().jaxpr.eqns)
        ratio = times[100_000] / times[1_000]
        rows.append(_figure('W8', 'trace', 'make_jaxpr(grad) 1k / 100k steps, ms',
                            f"{times[1_000] * 1e3:.2f} / {times[100_000] * 1e3:.2f}", '', None,
                            '', trace_seconds=times, equations=eqns))
        rows.append(_figure('W8', 'trace_ratio', 'trace time 100k / 1k steps',
                            f"{ratio:.2f} ({eqns[1_000]}/{eqns[100_000]} eqns)", '<= 1.5x',
                            ratio, 'PASS' if ratio <= 1.5 and eqns[1_000] == eqns[100_000]
                            else 'MISS'))
    except Exception as e:
        err = _err(e)
        log(f"[W8 trace] failed:\n{traceback.format_exc()}")
        rows.append(_figure('W8', 'trace_ratio', 'trace time 100k / 1k steps', None,
                            '<= 1.5x', None, 'ERR'))
        rows[-1]['errors'] = {'cotangent': err}
    records.append({'workload': 'W8', 'metric': 'trace', 'kind': 'figures', 'rows': rows,
                    'errors': {}})
    return records


def _jit_figures(wid, metric, label, numpy_fn, fn, args, limit, settings):
    """A figures record: jit(fn)(*args) timed against numpy_fn (checked first)."""
    rows = []
    try:
        from transforms import jit
        fj = jit(fn)
        why = _mismatch(fj(*args), numpy_fn(), 1e-9, 1e-9)
        if why:
            raise AssertionError(why)
        times, terr, _, rounds = time_interleaved(
            {'numpy': numpy_fn, 'jit': lambda: fj(*args)}, settings)
        if terr:
            raise RuntimeError(str(terr))
        r = paired_ratio(rounds, 'jit', 'numpy')
        rows.append(_figure(wid, metric, label,
                            f"{r:.2f} ({times['jit'] * 1e3:.2f} / {times['numpy'] * 1e3:.2f} ms)",
                            f'<= {limit:g}x', r, 'PASS' if r <= limit else 'MISS',
                            seconds_pair=times))
    except Exception as e:
        log(f"[{wid} jit] failed:\n{traceback.format_exc()}")
        rows.append(_figure(wid, metric, label, None, f'<= {limit:g}x', None, 'ERR'))
        rows[-1]['errors'] = {'cotangent': _err(e)}
    return {'workload': wid, 'metric': metric, 'kind': 'figures', 'rows': rows, 'errors': {}}


def run_w9(settings, side, ctx):
    params, X = W.rnn_data()
    Xb = X.reshape(W.RNN_T // W.RNN_BLOCK, W.RNN_BLOCK, W.RNN_D)
    rows = []
    try:
        from primitives import lax
        from transforms import checkpoint, saved_residuals
        plain = W.make_rnn_block_loss(ctx.pnp, lax)
        ck = W.make_rnn_block_loss(ctx.pnp, lax, checkpoint)

        def saved(f):
            rs = saved_residuals(f, params, Xb)
            return (sum(a.size * a.dtype.itemsize for a, _ in rs),
                    sum(a.size * a.dtype.itemsize for a, d in rs
                        if not d.startswith('from the argument')))
        (p_all, p_comp), (c_all, c_comp) = saved(plain), saved(ck)
        gp, gc = ctx.grad(plain), ctx.grad(ck)
        want = W.rnn_numpy_grad(params, X)
        for name, g in (('plain', gp), ('checkpointed', gc)):
            why = _mismatch(g(params, Xb), want, 1e-9, 1e-9)
            if why:
                raise AssertionError(f"{name}: {why}")
        times, terr, _, rounds = time_interleaved(
            {'plain': lambda: gp(params, Xb), 'checkpointed': lambda: gc(params, Xb)},
            settings)
        if terr:
            raise RuntimeError(str(terr))
        tr = paired_ratio(rounds, 'checkpointed', 'plain')
        br = p_comp / c_comp
        rows.append(_figure('W9', 'bytes', 'saved residual bytes plain / ckpt',
                            f"{p_comp:,} / {c_comp:,} ({br:.1f}x)", '>= 5x', br,
                            'PASS' if br >= 5 else 'MISS',
                            bytes={'plain': p_comp, 'checkpointed': c_comp,
                                   'plain_with_args': p_all, 'checkpointed_with_args': c_all}))
        rows.append(_figure('W9', 'time', 'grad time ckpt / plain',
                            f"{tr:.2f} ({times['checkpointed'] * 1e3:.1f} / "
                            f"{times['plain'] * 1e3:.1f} ms)", '<= 1.5x', tr,
                            'PASS' if tr <= 1.5 else 'MISS', seconds_pair=times))
    except Exception as e:
        log(f"[W9] failed:\n{traceback.format_exc()}")
        rows.append(_figure('W9', 'bytes', 'checkpointed RNN blocks', None, '', None, 'ERR'))
        rows[-1]['errors'] = {'cotangent': _err(e)}
    out = [{'workload': 'W9', 'metric': 'checkpoint', 'kind': 'figures', 'rows': rows,
            'errors': {}}]
    # jit(grad) of the checkpointed blocks: scan, checkpoint and the unrolled block compiled
    if side == 'cotangent' and ctx.error is None:
        from primitives import lax
        from transforms import checkpoint
        gc = ctx.grad(W.make_rnn_block_loss(ctx.pnp, lax, checkpoint))
        out.append(_jit_figures('W9', 'ckpt_jit', 'ckpt RNN grad, jit(grad) / numpy BPTT',
                                lambda: W.rnn_numpy_grad(params, X), gc, (params, Xb),
                                1.2, settings))
    return out


RUNNERS = {'W1': run_w1, 'W2': run_w2, 'W3': run_w3, 'W4': run_w4, 'W5': run_w5,
           'W5-scale': run_w5_scale, 'W6': run_w6, 'PEG': run_peg, 'W7': run_w7, 'W8': run_w8,
           'W9': run_w9}


def run_job(job, side='cotangent', quick=False, clock='cpu'):
    settings = Settings(quick, clock)
    if side == 'cotangent':
        ctx = Cotangent()
        versions = {}
    else:
        ctx = P.Peers().load((side,))
        versions = ctx.versions()
    t0 = time.perf_counter()
    records = RUNNERS[job](settings, side, ctx)
    for r in records:
        r['side'] = side
    return {
        'job': job, 'side': side, 'records': records, 'quick': quick,
        'wall_seconds': time.perf_counter() - t0,
        'versions': {'python': sys.version.split()[0], 'numpy': np.__version__,
                     'platform': platform.platform(), **versions},
        'settings': {'clock': settings.clock, 'samples': settings.samples, 'sample_time': settings.sample_time,
                     'warmup': settings.warmup, 'slow_samples': settings.slow_samples},
    }
