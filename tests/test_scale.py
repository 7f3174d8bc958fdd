"""A 100,000-operation program traces, differentiates and prints at Python's
default recursion limit, and the staged gradient agrees with the eager one."""
import sys

import numpy as np

import primitives.numpy as pnp
from transforms import grad
from tracer import make_jaxpr, eval_jaxpr, check_jaxpr

N_OPS = 100_000


def chain(x):
    y = x
    for i in range(N_OPS):
        k = i % 4
        if k == 0:
            y = pnp.sin(y)
        elif k == 1:
            y = y * x
        elif k == 2:
            y = pnp.tanh(y)
        else:
            y = y + x
    return pnp.sum(y)


def test_100k_ops_trace_differentiate_and_print():
    assert sys.getrecursionlimit() <= 1000   # Python's default: nothing here raises it
    x = np.linspace(-0.9, 0.9, 4)
    eager = grad(chain)(x)
    staged = make_jaxpr(grad(chain))(x)
    assert len(staged.jaxpr.eqns) > 2 * N_OPS
    check_jaxpr(staged)
    (from_jaxpr,) = eval_jaxpr(staged.jaxpr, staged.consts, x)
    np.testing.assert_allclose(from_jaxpr, eager, rtol=1e-12, atol=1e-12)
    text = str(staged)
    assert text.count('\n') == len(staged.jaxpr.eqns) + 1
    # d/dx of the first op of the chain reaches the input: the gradient is finite
    assert np.all(np.isfinite(eager))
