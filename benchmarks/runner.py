"""Measure one workload in this process and write its result rows as JSON.

    python -m benchmarks.runner W1 --side cotangent --out result.json [--quick] [--cpu N]
        [--clock cpu|wall]

`python -m benchmarks` starts one runner process per workload and side (cotangent,
jax, autograd, torch) with every thread pool limited to one thread; the runner
pins itself to one core before NumPy or any peer framework is imported.
"""
import os
import sys

from .harness import THREAD_ENV, pin_to_core, default_cpu

JOBS = ('W1', 'W2', 'W3', 'W4', 'W5', 'W5-scale', 'W6', 'PEG', 'W7', 'W8', 'W9')
SIDES = ('cotangent', 'jax', 'autograd', 'torch')
JOB_SIDES = {'W1': SIDES, 'W2': SIDES, 'W3': SIDES, 'W4': SIDES,
             'W5': ('cotangent', 'jax'), 'W5-scale': ('cotangent',),
             'W6': SIDES, 'PEG': ('cotangent', 'jax', 'torch'),
             'W7': ('cotangent', 'jax'), 'W8': ('cotangent',), 'W9': ('cotangent',)}


def _prepare(cpu):
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)
    if 'numpy' in sys.modules:
        raise RuntimeError("benchmarks.runner must start before NumPy is imported")
    return pin_to_core(default_cpu() if cpu is None else cpu)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog='python -m benchmarks.runner')
    ap.add_argument('job', choices=JOBS)
    ap.add_argument('--side', choices=SIDES, default='cotangent')
    ap.add_argument('--out', required=True)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--clock', choices=('cpu', 'wall'), default='cpu')
    ap.add_argument('--cpu', type=int, default=None)
    args = ap.parse_args(argv)
    cpu = _prepare(args.cpu)

    import json
    from . import measure
    result = measure.run_job(args.job, args.side, quick=args.quick, clock=args.clock)
    result['cpu'] = cpu
    with open(args.out, 'w') as fh:
        json.dump(result, fh, indent=1, default=str)


if __name__ == '__main__':
    main()
