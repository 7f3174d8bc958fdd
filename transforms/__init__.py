"""cotangent's transforms: the interpreters (jvp, linearize, transpose) and the
user API built on them."""
from .ad import (jvp, linearize, vjp, grad, value_and_grad, linear_transpose)
from .jacobians import jacfwd, jacrev, hessian
from tracer import make_jaxpr
from .vmap import vmap
