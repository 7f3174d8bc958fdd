"""`python -m benchmarks [--quick] [--only W1,W3] [--json PATH] [--cpu N] [--wall]
[--system-malloc]`

Runs the workloads of BENCHMARKS.md and prints one table: per workload and metric,
each implementation's time as a ratio to the hand-written NumPy version's (the
median, over sampling rounds, of the ratio of two samples taken back to back)
(W5: microseconds per op and equation counts, compared with JAX's), the target and
PASS/MISS.

Each workload runs once per *side* (cotangent, JAX, autograd, PyTorch), each in its
own process pinned to one core with every thread pool limited to one thread; every
process also times the hand-written NumPy version, interleaved with its own, so
each ratio compares two figures taken in the same process at the same time.
Peers that are not installed are skipped (shown as —).

Times are process CPU time by default (all threads of the process; on a machine
shared with other work, time the core spends elsewhere is not counted), `--wall`
for the wall clock; both are in the JSON output.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

from .harness import single_core_env, default_cpu
from .runner import JOBS, JOB_SIDES
from . import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_MODULES = {'jax': 'jax', 'autograd': 'autograd', 'torch': 'torch'}


def _jobs(only):
    if not only:
        return list(JOBS)
    want = [w.strip().upper() for w in only.split(',') if w.strip()]
    bad = [w for w in want if w not in ('W1', 'W2', 'W3', 'W4', 'W5', 'W5-SCALE', 'W6', 'PEG',
                                        'W7', 'W8', 'W9')]
    if bad:
        raise SystemExit(f"--only: unknown workload(s) {', '.join(bad)}; "
                         f"choose from W1, W2, W3, W4, W5 (W5 includes W5-scale), W6, PEG, "
                         f"W7, W8, W9")
    return [j for j in JOBS if j.upper() in want or (j == 'W5-scale' and 'W5' in want)]


def _installed(side):
    mod = PEER_MODULES.get(side)
    return mod is None or importlib.util.find_spec(mod) is not None


def _run(job, side, quick, cpu, timeout, steady_malloc=True, clock='cpu'):
    env = single_core_env(steady_malloc=steady_malloc)
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'result.json')
        cmd = [sys.executable, '-m', 'benchmarks.runner', job, '--side', side, '--out', out]
        if quick:
            cmd.append('--quick')
        cmd += ['--clock', clock]
        if cpu is not None:
            cmd += ['--cpu', str(cpu)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, timeout=timeout,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return report.placeholder(job, side, f"runner timed out after {timeout:g} s")
        if proc.returncode != 0 or not os.path.exists(out):
            tail = ' | '.join(proc.stderr.strip().splitlines()[-6:])
            return report.placeholder(job, side, f"runner exited with {proc.returncode}: {tail}")
        with open(out) as fh:
            result = json.load(fh)
        result['log'] = proc.stderr
        result['runner_seconds'] = time.perf_counter() - t0
        return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true',
                    help='fewer samples, for a smoke run (noisy figures)')
    ap.add_argument('--only', default='', help='comma-separated workloads, e.g. W1,W3')
    ap.add_argument('--json', metavar='PATH', help='also write all results as JSON here')
    ap.add_argument('--cpu', type=int, default=None,
                    help='the core each runner is pinned to (default: the highest allowed)')
    ap.add_argument('--wall', action='store_true',
                    help='time with the wall clock instead of process CPU time')
    ap.add_argument('--system-malloc', action='store_true',
                    help="keep glibc malloc's default thresholds (see harness.MALLOC_ENV)")
    ap.add_argument('--timeout', type=float, default=1800,
                    help='seconds allowed per workload process')
    args = ap.parse_args(argv)
    jobs = _jobs(args.only)
    cpu = default_cpu() if args.cpu is None else args.cpu
    results = []
    t0 = time.perf_counter()
    for job in jobs:
        for side in JOB_SIDES[job]:
            if not _installed(side):
                results.append(report.placeholder(job, side, f"not installed ({side})"))
                continue
            print(f"running {job} [{side}] ...", file=sys.stderr, flush=True)
            results.append(_run(job, side, args.quick, cpu, args.timeout,
                                not args.system_malloc, 'wall' if args.wall else 'cpu'))
    total = time.perf_counter() - t0
    rows = report.build_rows(results)
    versions = {}
    for r in results:
        versions.update(r.get('versions', {}))
    print(f"cotangent benchmarks: {'quick' if args.quick else 'full'} run, {total:.0f} s; "
          f"each process pinned to cpu {cpu}, one thread, "
          f"{'system' if args.system_malloc else 'steady'} malloc thresholds, "
          f"{'wall-clock' if args.wall else 'process CPU'} time")
    print(', '.join(f"{k} {v}" for k, v in versions.items()))
    print("W1-W4: time / time of the hand-written NumPy version, sampled alternately in "
          "the same process (median of the paired ratios; lower is better).")
    print("W5: us per forward op (cotangent/JAX in brackets) and jaxpr equation counts "
          "(nested jaxprs included); scale: seconds.")
    print()
    print(report.format_table(rows))
    absolute = report.format_absolute(rows)
    if absolute:
        print('\nmedian times per call:')
        print(absolute)
    notes = report.format_notes(rows)
    if notes:
        print('\nnotes:')
        print(notes)
    statuses = [r.get('status') for r in rows]
    print(f"\n{statuses.count('PASS')} PASS, {statuses.count('MISS')} MISS, "
          f"{statuses.count('ERR')} ERR")
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump({'total_seconds': total, 'quick': args.quick, 'cpu': cpu,
                       'system_malloc': args.system_malloc,
                       'clock': 'wall' if args.wall else 'cpu',
                       'versions': versions, 'rows': rows, 'runs': results},
                      fh, indent=1, default=str)
        print(f"results written to {args.json}")


if __name__ == '__main__':
    main()
