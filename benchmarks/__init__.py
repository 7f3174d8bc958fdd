"""cotangent's benchmark suite: `python -m benchmarks` (see benchmarks/__main__.py).

Workloads W1-W5 of BENCHMARKS.md, each measured against a hand-written NumPy
version and, when installed, JAX (eager and jit), autograd and PyTorch.
This package imports nothing heavy at import time: the runner processes must limit
thread pools and pin themselves to one core before NumPy is imported.
"""
