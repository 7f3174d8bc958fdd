"""The demo: `python -m transforms` prints a function's jaxpr, its gradient's and
its Hessian-vector product's jaxprs, and their values; then per-example gradients
with vmap, and the numba source that jit compiles for the gradient."""
import numpy as np

import primitives.numpy as pnp
from transforms import grad, jvp, jit, vmap
from tracer import make_jaxpr


def loss(w, x):
    return pnp.sum(pnp.tanh(x @ w) ** 2)


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    w = rng.normal(size=3)
    v = np.array([1.0, 0.0, 0.0])

    def hvp(w, v):
        # forward-over-reverse: the JVP of the gradient along v
        return jvp(grad(loss), (w, x), (v, pnp.zeros_like(x)))[1]

    print("loss(w, x) = sum(tanh(x @ w) ** 2)\n")
    print("make_jaxpr(loss)(w, x):")
    print(make_jaxpr(loss)(w, x))
    print("\nmake_jaxpr(grad(loss))(w, x):")
    print(make_jaxpr(grad(loss))(w, x))
    print("\nmake_jaxpr(hvp)(w, v)  (jvp of grad):")
    print(make_jaxpr(hvp)(w, v))
    print("\nvalues:")
    print("  loss      =", loss(w, x))
    print("  grad      =", grad(loss)(w, x))
    print("  hvp(w, e0) =", hvp(w, v))

    # The same gradient from plain NumPy code, traced through NumPy's dispatch.
    g_np = grad(lambda w: np.sum(np.tanh(x @ w) ** 2))(w)
    print("  grad of the plain-NumPy version =", g_np)

    # Batching: one gradient per row of x, in one batched program.
    per_example = vmap(grad(loss), in_axes=(None, 0))
    print("\nmake_jaxpr(vmap(grad(loss), in_axes=(None, 0)))(w, rows of x):")
    print(make_jaxpr(per_example)(w, x[:, None, :]))
    print("  per-example grads =\n", per_example(w, x[:, None, :]))

    # Compilation: the whole gradient as one numba function (cached on disk).
    fast = jit(grad(loss))
    print("\njit(grad(loss)).lower(w, x).as_text()  (the source numba compiles):")
    print(fast.lower(w, x).as_text())
    print("  jit(grad(loss))(w, x) =", fast(w, x))


if __name__ == '__main__':
    main()
