"""Timing machinery shared by the workload runners.

Nothing here imports NumPy at module level: the runner process must set the
thread-count environment variables and pin itself to one core before NumPy (or
any peer framework) is imported.
"""
import gc
import os
import statistics
import sys
import time

THREAD_ENV = {
    'OMP_NUM_THREADS': '1',
    'OPENBLAS_NUM_THREADS': '1',
    'MKL_NUM_THREADS': '1',
    'NUMBA_NUM_THREADS': '1',
    'VECLIB_MAXIMUM_THREADS': '1',
}


# glibc returns freed blocks of more than 128 KiB to the system at once by default and
# trims the heap eagerly, so every fresh large temporary (W4: 8 MB arrays) is page-
# faulted in again, and how often depends on what else the process allocated: the
# NumPy baseline of W4 measured 6 ms in one process and 12 ms in another. Fixed
# thresholds keep freed memory for reuse in every process alike, so that ratios taken
# in different processes compare. `--system-malloc` measures with glibc's defaults.
MALLOC_ENV = {
    'MALLOC_MMAP_THRESHOLD_': str(32 * 1024 * 1024),   # glibc's maximum on 64-bit
    'MALLOC_TRIM_THRESHOLD_': str(1024 * 1024 * 1024),
}


def single_core_env(base=None, steady_malloc=True):
    """A copy of the environment with every thread pool limited to one thread (and,
    unless steady_malloc is False, glibc malloc's thresholds fixed)."""
    env = dict(os.environ if base is None else base)
    env.update(THREAD_ENV)
    if steady_malloc:
        env.update(MALLOC_ENV)
    else:
        for k in MALLOC_ENV:
            env.pop(k, None)
    return env


def default_cpu():
    """The core a runner pins itself to: the highest one this process may use."""
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def pin_to_core(cpu):
    """Restrict this process (and the threads it starts later) to one core."""
    if cpu is None or not hasattr(os, 'sched_setaffinity'):
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu


class Settings:
    """How much to sample. `quick` is for smoke runs; figures from it are noisy."""

    def __init__(self, quick=False):
        self.quick = quick
        self.samples = 5 if quick else 15       # timed samples per implementation
        self.sample_time = 0.01 if quick else 0.05   # seconds a sample should last
        self.warmup = 1 if quick else 3         # untimed calls first
        self.max_calls = 10_000                 # per sample, for very fast functions
        self.slow_samples = 1 if quick else 3   # for runs that take seconds each


def _calls_per_sample(fn, settings):
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    if dt <= 0:
        return settings.max_calls
    return max(1, min(settings.max_calls, int(settings.sample_time / dt)))


def time_interleaved(fns, settings):
    """Median seconds per call of each zero-argument function in `fns` (a dict).

    Every function is first called `settings.warmup` times. Then samples are taken
    round-robin (one sample of each function in turn, repeated), so that a change
    in machine load affects all of them alike. Each sample times a batch of calls
    long enough to be measured reliably; the garbage collector stays enabled (its
    cost is part of what a user pays) but is run before each batch.
    Returns {name: seconds or None}, and {name: error text} for those that raised.
    """
    errors = {}
    live = {}
    for name, fn in fns.items():
        try:
            for _ in range(settings.warmup):
                fn()
            live[name] = (fn, _calls_per_sample(fn, settings))
        except Exception as e:  # a failing implementation is reported, not fatal
            errors[name] = f"{type(e).__name__}: {e}"
    samples = {name: [] for name in live}
    for _ in range(settings.samples):
        for name, (fn, number) in live.items():
            gc.collect()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - t0) / number)
    times = {name: (statistics.median(s) if s else None) for name, s in samples.items()}
    for name in errors:
        times[name] = None
    return times, errors


def time_once_each(fn, n_samples, warmup=1):
    """Median seconds of `fn()` for slow functions (each call a sample)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n_samples):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def log(msg):
    print(msg, file=sys.stderr, flush=True)
