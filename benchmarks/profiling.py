"""Profile cotangent's side of one workload with cProfile.

    python -m benchmarks.profiling W1 [--top 15] [--sort tottime] [--seconds 2]

Workloads: W1 (grad), W1f (forward), W2, W3, W4, W5 (make_jaxpr of grad, 2,000
ops), W5h (make_jaxpr of the HVP). Runs pinned to one core with one thread, like
the benchmark runners; prints the per-call time without the profiler first.
"""
import os
import sys

from .harness import THREAD_ENV, MALLOC_ENV, pin_to_core, default_cpu


def _cases():
    import primitives.numpy as pnp
    from transforms import grad, jvp, value_and_grad
    from tracer import make_jaxpr
    from . import workloads as W

    def w1(do_grad):
        x, _ = W.w1_data()
        f = W.make_chain(pnp, W.W1_OPS)
        g = grad(f) if do_grad else f
        return lambda: g(x)

    def w2():
        params, x, onehot = W.w2_data()
        g = grad(W.make_mlp_loss(pnp))
        return lambda: g(params, x, onehot)

    def w3():
        a, x, v = W.w3_data()
        gf = grad(W.make_w3_f(pnp, a))
        return lambda: jvp(gf, (x,), (v,))[1]

    def w4():
        x = W.w4_data()
        vg = value_and_grad(W.make_w4_f(pnp))
        return lambda: vg(x)

    def w5(hvp):
        x, v = W.w1_data()
        if hvp:
            def run():
                f = W.make_chain(pnp, W.W5_OPS)
                return make_jaxpr(lambda x, v: jvp(grad(f), (x,), (v,))[1])(x, v)
            return run
        return lambda: make_jaxpr(grad(W.make_chain(pnp, W.W5_OPS)))(x)

    return {'W1': lambda: w1(True), 'W1f': lambda: w1(False), 'W2': w2, 'W3': w3,
            'W4': w4, 'W5': lambda: w5(False), 'W5h': lambda: w5(True)}


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    ap.add_argument('workload', choices=('W1', 'W1f', 'W2', 'W3', 'W4', 'W5', 'W5h'))
    ap.add_argument('--top', type=int, default=15)
    ap.add_argument('--sort', default='tottime', choices=('tottime', 'cumulative', 'ncalls'))
    ap.add_argument('--seconds', type=float, default=2.0, help='profiled run time, roughly')
    ap.add_argument('--cpu', type=int, default=None)
    args = ap.parse_args(argv)
    want = {**THREAD_ENV, **MALLOC_ENV}
    if any(os.environ.get(k) != v for k, v in want.items()):
        # thread counts and malloc thresholds only take effect when set before the
        # process starts: start again with them, as the benchmark runners are
        env = {**os.environ, **want}
        os.execve(sys.executable, [sys.executable, '-m', 'benchmarks.profiling'] +
                  (sys.argv[1:] if argv is None else list(argv)), env)
    pin_to_core(default_cpu() if args.cpu is None else args.cpu)

    import cProfile
    import io
    import pstats
    import time
    run = _cases()[args.workload]()
    for _ in range(3):
        run()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < 0.5 or n < 3:
        run()
        n += 1
    per_call = (time.perf_counter() - t0) / n
    calls = max(1, int(args.seconds / per_call / 3))  # the profiler slows ~2-3x
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        run()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats(args.sort).print_stats(args.top)
    print(f"{args.workload}: {per_call * 1e6:.1f} us per call unprofiled; "
          f"profile of {calls} calls (ncalls and times are totals over them):")
    print(out.getvalue())


if __name__ == '__main__':
    sys.exit(main())
