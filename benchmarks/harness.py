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


CLOCKS = {
    # CPU time of the whole process (all its threads): on a shared machine, time
    # the pinned core spends on other processes is not counted. Single-threaded work
    # on an idle machine gives the same figure as the wall clock.
    'cpu': time.process_time,
    'wall': time.perf_counter,
}


class Settings:
    """How much to sample, and with which clock. `quick` is for smoke runs; figures
    from it are noisy."""

    def __init__(self, quick=False, clock='cpu'):
        self.quick = quick
        self.clock = clock
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


def _sample(fn, number):
    """(cpu seconds, wall seconds) per call over `number` calls."""
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return (c1 - c0) / number, (w1 - w0) / number


def time_interleaved(fns, settings):
    """Median seconds per call of each zero-argument function in `fns` (a dict).

    Every function is first called `settings.warmup` times. Then samples are taken
    round-robin (one sample of each function in turn, repeated), so that a change
    in machine load affects all of them alike. Each sample times a batch of calls
    long enough to be measured reliably; the garbage collector stays enabled (its
    cost is part of what a user pays) but is run before each batch.
    Returns ({name: seconds or None} on settings.clock, {name: error text} for
    those that raised, {name: seconds} on the other clock, {name: [seconds per call
    of each sample, in round order]} on settings.clock).
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
        for name, (fn, number) in list(live.items()):
            try:
                samples[name].append(_sample(fn, number))
            except Exception as e:
                errors[name] = f"{type(e).__name__}: {e}"
                del live[name]
    primary = 0 if settings.clock == 'cpu' else 1
    times, other, rounds = {}, {}, {}
    for name, s in samples.items():
        if s and name not in errors:
            rounds[name] = [x[primary] for x in s]
            times[name] = statistics.median(rounds[name])
            other[name] = statistics.median(x[1 - primary] for x in s)
    for name in errors:
        times[name] = other[name] = None
    return times, errors, other, rounds


def paired_ratio(rounds, name, base):
    """Median over rounds of (name's sample / base's sample of the same round): the
    two samples were taken back to back, so slow drifts in machine speed cancel."""
    a, b = rounds.get(name), rounds.get(base)
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b) if y > 0)


def time_once_each(fn, n_samples, warmup=1, clock='cpu'):
    """Median seconds of `fn()` for slow functions (each call a sample), on `clock`."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n_samples):
        out.append(_sample(fn, 1)[0 if clock == 'cpu' else 1])
    return statistics.median(out)


def log(msg):
    print(msg, file=sys.stderr, flush=True)
